//! The `date-utils` built-in ForgeHook: parses dates written every which way into ISO 8601,
//! normalizes date fields of records, formats, shifts, compares and converts dates between
//! time zones. Everything except `now` is deterministic; `now` reads the host clock.

mod endpoints;
mod parse;
mod zone;

use leforge_forgehook_sdk::ForgeHook;

pub use endpoints::{parse_dates, ParseDatesInput, ParseDatesOutput};

/// Builds the ForgeHook: its manifest and endpoints.
pub fn hook() -> ForgeHook {
    ForgeHook::new("date-utils", "Date utilities", env!("CARGO_PKG_VERSION"))
        .description(
            "Parses dates written in many formats (ISO 8601, 1/15/24, 15.01.2024, March 5 2024, \
             5-Mar-2024, RFC 2822, Unix timestamps) into ISO 8601, normalizes date fields in \
             records, and formats, adds to, subtracts and converts dates between time zones.",
        )
        .category("data")
        .tags(&["date", "time", "timezone", "iso8601", "parse", "format"])
        .author("LeForge")
        .memory_mb(128)
        .endpoint(
            "parse",
            "Parses one date or date-time into ISO 8601. Accepts ISO 8601, M/D/YY and M/D/YYYY \
             (US order unless day_first), D/M/YYYY with day_first, D.M.YYYY, YYYY/MM/DD, \
             'March 5 2024', 'Mar 5, 2024', '5 March 2024', '5-Mar-2024', RFC 2822, optional \
             times ('3:04 PM', '15:04:05', with an offset or Z), and Unix timestamps in seconds or \
             milliseconds (numbers from 1e11 up are milliseconds; an 8-digit number such as \
             20240115 is YYYYMMDD). Two-digit years 69-99 are 1969-1999, 00-68 are 2000-2068. \
             If the preferred day/month order gives an impossible date the other order is used. \
             Returns valid=false (with iso and date null) instead of an error when the value \
             cannot be read as a date.",
            endpoints::parse,
        )
        .endpoint(
            "parse_dates",
            "Normalizes date fields across many records (e.g. the rows from csv_to_json): every \
             named field is rewritten to ISO 8601 ('YYYY-MM-DD' with output='date', the default, \
             or a full date-time with output='datetime', in UTC unless the value has its own \
             offset). Accepts the same formats as `parse`. Values that cannot be read are left \
             unchanged and listed in `failed`; missing, null and blank values are left alone.",
            endpoints::parse_dates,
        )
        .endpoint(
            "format",
            "Formats a date with a strftime pattern, e.g. '%d/%m/%Y' -> 05/03/2024, '%B %-d, %Y' \
             -> March 5, 2024, '%A' -> Tuesday, '%Y-%m-%dT%H:%M:%S%:z'. The special patterns \
             'iso' and 'rfc2822' give those standard forms. The date may be in any form `parse` \
             accepts; timezone (optional) converts it before formatting.",
            endpoints::format,
        )
        .endpoint(
            "add",
            "Adds an amount of a unit to a date (a negative amount subtracts). Months and years \
             are calendar units and clamp to the end of a shorter month (Jan 31 + 1 month = Feb \
             29 in 2024) and must be whole numbers; the other units may be fractional. The result \
             keeps the input's UTC offset.",
            endpoints::add,
        )
        .endpoint(
            "diff",
            "Computes `to` minus `from` in a unit: fractional for milliseconds to weeks (36 hours \
             = 1.5 days), whole completed calendar months or years for months and years. Negative \
             when `to` is before `from`.",
            endpoints::diff,
        )
        .endpoint(
            "convert_timezone",
            "Expresses a date-time in another time zone (IANA name such as 'America/New_York', \
             'UTC', or an offset such as '+05:30'), with daylight saving applied. A value without \
             its own offset is first read in from_timezone (default UTC).",
            endpoints::convert_timezone,
        )
        .endpoint(
            "now",
            "Returns the current date and time from the host clock, in UTC or the given time \
             zone. Use it to resolve relative dates such as 'today' or 'in 3 days' (with `add`).",
            endpoints::now,
        )
}

#[cfg(target_arch = "wasm32")]
leforge_forgehook_sdk::forgehook!(hook);

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Calls an endpoint through the SDK with JSON, as the host would.
    pub fn call(endpoint: &str, input: Value) -> Result<Value, leforge_forgehook_sdk::Error> {
        super::hook()
            .invoke(endpoint, &input.to_string())
            .map(|out| serde_json::from_str(&out).unwrap())
    }

    /// The error code and message of a call that must fail.
    pub fn fail(endpoint: &str, input: Value) -> (String, String) {
        let e = call(endpoint, input).unwrap_err();
        (e.code, e.message)
    }
}
