//! The endpoints: input and output types (their doc comments become the JSON Schemas'
//! descriptions) and the glue between JSON and the parser.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, Months, SecondsFormat, TimeDelta, Timelike, Utc};
use leforge_forgehook_sdk::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::parse::{parse_number, parse_text, parse_with_format, Options, Parsed};
use crate::zone::Zone;

/// A date as text in any accepted format, or a Unix timestamp in seconds or milliseconds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DateValue {
    Text(String),
    Number(f64),
}

impl DateValue {
    fn describe(&self) -> String {
        match self {
            DateValue::Text(s) => format!("{s:?}"),
            DateValue::Number(n) => n.to_string(),
        }
    }
}

fn iso(at: &DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn day(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%d").to_string()
}

fn zone_or_utc(timezone: Option<&str>) -> Result<Zone, Error> {
    timezone.map(Zone::parse).unwrap_or_else(|| Ok(Zone::utc()))
}

fn read(value: &DateValue, opts: &Options) -> Option<Parsed> {
    match value {
        DateValue::Text(s) => parse_text(s, opts),
        DateValue::Number(n) => parse_number(*n, opts),
    }
}

/// Reads a date that an endpoint cannot do without: unreadable is an input error.
fn require(value: &DateValue, field: &str, opts: &Options) -> Result<Parsed, Error> {
    read(value, opts).ok_or_else(|| {
        Error::invalid_input(format!(
            "`{field}`: cannot read {} as a date; use ISO 8601 (2024-03-05 or \
             2024-03-05T10:00:00Z), a form such as 3/5/2024 or March 5 2024, or a Unix timestamp",
            value.describe()
        ))
    })
}

/// Rejects strftime patterns chrono cannot use, before formatting could fail half-way.
fn check_pattern(pattern: &str, field: &str) -> Result<(), Error> {
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(Error::invalid_input(format!(
            "`{field}`: {pattern:?} is not a valid strftime pattern (e.g. \"%Y-%m-%d %H:%M\")"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseInput {
    /// The date to parse: text such as "1/15/24", "2024-02-20", "March 5 2024", or a Unix
    /// timestamp (seconds, or milliseconds from 1e11 up).
    pub value: DateValue,
    /// A strftime-style pattern to use instead of auto-detection, e.g. "%d|%m|%Y %H:%M".
    #[serde(default)]
    pub input_format: Option<String>,
    /// Read ambiguous numeric dates day first: 05/03/2024 is 5 March instead of May 3.
    #[serde(default)]
    #[schemars(default = "no")]
    pub day_first: bool,
    /// Time zone of values without an offset (and in which Unix timestamps are expressed):
    /// an IANA name such as "Europe/Paris", "UTC", or an offset such as "+02:00". Default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
}

fn no() -> bool {
    false
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ParseOutput {
    /// ISO 8601 date-time with offset, e.g. "2024-01-15T00:00:00Z"; null when not valid.
    pub iso: Option<String>,
    /// The calendar date, "YYYY-MM-DD"; null when not valid.
    pub date: Option<String>,
    /// Whether the value could be read as a date.
    pub valid: bool,
}

pub fn parse(input: ParseInput) -> Result<ParseOutput, Error> {
    let opts = Options {
        day_first: input.day_first,
        zone: zone_or_utc(input.timezone.as_deref())?,
    };
    let parsed = match &input.input_format {
        Some(format) => {
            check_pattern(format, "input_format")?;
            match &input.value {
                DateValue::Text(s) => parse_with_format(s, format, &opts),
                DateValue::Number(n) => parse_with_format(&n.to_string(), format, &opts),
            }
        }
        None => read(&input.value, &opts),
    };
    Ok(match parsed {
        Some(p) => ParseOutput {
            iso: Some(iso(&p.at)),
            date: Some(day(&p.at)),
            valid: true,
        },
        None => ParseOutput {
            iso: None,
            date: None,
            valid: false,
        },
    })
}

/// What `parse_dates` writes into each field.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    #[default]
    Date,
    Datetime,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseDatesInput {
    /// The records (JSON objects) whose date fields to normalize.
    pub records: Vec<Map<String, Value>>,
    /// Names of the fields holding dates, e.g. ["date"].
    pub fields: Vec<String>,
    /// Read ambiguous numeric dates day first (05/03/2024 = 5 March). Default false (US).
    #[serde(default)]
    #[schemars(default = "no")]
    pub day_first: bool,
    /// "date" writes YYYY-MM-DD (default); "datetime" writes a full ISO 8601 date-time.
    #[serde(default)]
    #[schemars(default = "default_output")]
    pub output: OutputKind,
}

fn default_output() -> &'static str {
    "date"
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Failure {
    /// Position of the record in `records` (0-based).
    pub index: usize,
    /// The field that could not be read.
    pub field: String,
    /// The value, unchanged.
    pub value: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ParseDatesOutput {
    /// The records with the named fields rewritten; everything else unchanged.
    pub records: Vec<Map<String, Value>>,
    /// Values that could not be read as dates (left unchanged in `records`).
    pub failed: Vec<Failure>,
}

pub fn parse_dates(input: ParseDatesInput) -> Result<ParseDatesOutput, Error> {
    if input.fields.is_empty() {
        return Err(Error::invalid_input(
            "`fields` must name at least one field, e.g. [\"date\"]",
        ));
    }
    let opts = Options {
        day_first: input.day_first,
        zone: Zone::utc(),
    };
    let mut records = input.records;
    let mut failed = Vec::new();
    for (index, record) in records.iter_mut().enumerate() {
        for field in &input.fields {
            let Some(value) = record.get_mut(field) else {
                continue;
            };
            let parsed = match &*value {
                Value::Null => continue,
                Value::String(s) if s.trim().is_empty() => continue,
                Value::String(s) => parse_text(s, &opts),
                Value::Number(n) => n.as_f64().and_then(|n| parse_number(n, &opts)),
                _ => None,
            };
            match parsed {
                Some(p) => {
                    *value = Value::String(match input.output {
                        OutputKind::Date => day(&p.at),
                        OutputKind::Datetime => iso(&p.at),
                    })
                }
                None => failed.push(Failure {
                    index,
                    field: field.clone(),
                    value: value.clone(),
                }),
            }
        }
    }
    Ok(ParseDatesOutput { records, failed })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatInput {
    /// The date, in any form `parse` accepts.
    pub date: DateValue,
    /// A strftime pattern such as "%d/%m/%Y", "%B %-d, %Y" or "%Y-%m-%dT%H:%M:%S%:z", or
    /// "iso" / "rfc2822".
    pub format: String,
    /// Convert to this time zone before formatting (IANA name or offset). Values without
    /// an offset are read as UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Read ambiguous numeric dates day first. Default false.
    #[serde(default)]
    #[schemars(default = "no")]
    pub day_first: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FormatOutput {
    /// The formatted date.
    pub formatted: String,
}

pub fn format(input: FormatInput) -> Result<FormatOutput, Error> {
    let zone = input.timezone.as_deref().map(Zone::parse).transpose()?;
    let opts = Options {
        day_first: input.day_first,
        zone: Zone::utc(),
    };
    let parsed = require(&input.date, "date", &opts)?;
    let at = match zone {
        Some(z) => z.convert(parsed.at),
        None => parsed.at,
    };
    let formatted = match input.format.as_str() {
        "iso" => iso(&at),
        "rfc2822" => at.to_rfc2822(),
        pattern => {
            check_pattern(pattern, "format")?;
            let mut out = String::new();
            // write! reports a specifier the value cannot supply as an error, where
            // to_string() would panic.
            write!(out, "{}", at.format(pattern)).map_err(|_| {
                Error::invalid_input(format!("`format`: cannot format a date with {pattern:?}"))
            })?;
            out
        }
    };
    Ok(FormatOutput { formatted })
}

/// A unit of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

impl Unit {
    /// Length in milliseconds of the fixed-length units.
    fn millis(self) -> Option<f64> {
        Some(match self {
            Unit::Milliseconds => 1.0,
            Unit::Seconds => 1e3,
            Unit::Minutes => 60e3,
            Unit::Hours => 3_600e3,
            Unit::Days => 86_400e3,
            Unit::Weeks => 604_800e3,
            Unit::Months | Unit::Years => return None,
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddInput {
    /// The starting date, in any form `parse` accepts (read as UTC without an offset).
    pub date: DateValue,
    /// How many units to add; negative to subtract. Whole numbers for months and years.
    pub amount: f64,
    /// The unit of `amount`.
    pub unit: Unit,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DateTimeOutput {
    /// ISO 8601 date-time with offset.
    pub iso: String,
    /// The calendar date, "YYYY-MM-DD".
    pub date: String,
}

pub fn add(input: AddInput) -> Result<DateTimeOutput, Error> {
    let opts = Options {
        day_first: false,
        zone: Zone::utc(),
    };
    let start = require(&input.date, "date", &opts)?.at;
    if !input.amount.is_finite() {
        return Err(Error::invalid_input("`amount` must be a finite number"));
    }
    let out_of_range = || Error::invalid_input("the result is outside the supported date range");
    let result = match input.unit.millis() {
        Some(ms) => {
            let total = input.amount * ms;
            if total.abs() > 8.64e15 {
                return Err(out_of_range());
            }
            start
                .checked_add_signed(TimeDelta::milliseconds(total.round() as i64))
                .ok_or_else(out_of_range)?
        }
        None => {
            if input.amount.fract() != 0.0 {
                return Err(Error::invalid_input(
                    "`amount` must be a whole number for months and years",
                ));
            }
            let months = input.amount * if input.unit == Unit::Years { 12.0 } else { 1.0 };
            if months.abs() > 1.2e6 {
                return Err(out_of_range());
            }
            let m = Months::new(months.abs() as u32);
            if months >= 0.0 {
                start.checked_add_months(m)
            } else {
                start.checked_sub_months(m)
            }
            .ok_or_else(out_of_range)?
        }
    };
    Ok(DateTimeOutput {
        iso: iso(&result),
        date: day(&result),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffInput {
    /// The earlier date (any form `parse` accepts; UTC without an offset).
    pub from: DateValue,
    /// The later date.
    pub to: DateValue,
    /// The unit of the result.
    pub unit: Unit,
}

// A Number rather than f64 so that whole results are integers (3, not 3.0).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffOutput {
    /// `to` minus `from` in `unit` (fractional for fixed-length units, whole completed
    /// months or years for calendar units).
    pub value: serde_json::Number,
}

pub fn diff(input: DiffInput) -> Result<DiffOutput, Error> {
    let opts = Options {
        day_first: false,
        zone: Zone::utc(),
    };
    let from = require(&input.from, "from", &opts)?.at;
    let to = require(&input.to, "to", &opts)?.at;
    let value = match input.unit.millis() {
        Some(ms) => (to - from).num_milliseconds() as f64 / ms,
        None => {
            let months = whole_months(from, to) as f64;
            if input.unit == Unit::Years {
                (months / 12.0).trunc()
            } else {
                months
            }
        }
    };
    Ok(DiffOutput {
        value: json_number(value),
    })
}

/// Completed calendar months from `from` to `to` (negative when `to` is earlier), comparing
/// both on `from`'s wall clock.
fn whole_months(from: DateTime<FixedOffset>, to: DateTime<FixedOffset>) -> i64 {
    let to = to.with_timezone(&from.offset().clone());
    let (a, b) = (from.naive_local(), to.naive_local());
    let mut months =
        (b.year() as i64 - a.year() as i64) * 12 + (b.month() as i64 - a.month() as i64);
    // The rest of the month, as (day, time) within it.
    let rest = |d: &chrono::NaiveDateTime| (d.day(), d.num_seconds_from_midnight(), d.nanosecond());
    if months > 0 && rest(&b) < rest(&a) {
        months -= 1;
    } else if months < 0 && rest(&b) > rest(&a) {
        months += 1;
    }
    months
}

fn json_number(x: f64) -> serde_json::Number {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        serde_json::Number::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertInput {
    /// The date-time to convert, in any form `parse` accepts.
    pub date: DateValue,
    /// The target time zone: IANA name ("Asia/Tokyo"), "UTC", or offset ("-03:00").
    pub to_timezone: String,
    /// The time zone of `date` when it has no offset of its own. Default UTC.
    #[serde(default)]
    pub from_timezone: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConvertOutput {
    /// ISO 8601 date-time in the target zone.
    pub iso: String,
    /// The calendar date in the target zone, "YYYY-MM-DD".
    pub date: String,
    /// The target zone's UTC offset at that instant, e.g. "+09:00".
    pub offset: String,
}

pub fn convert_timezone(input: ConvertInput) -> Result<ConvertOutput, Error> {
    let to = Zone::parse(&input.to_timezone)?;
    let opts = Options {
        day_first: false,
        zone: zone_or_utc(input.from_timezone.as_deref())?,
    };
    let at = to.convert(require(&input.date, "date", &opts)?.at);
    Ok(ConvertOutput {
        iso: iso(&at),
        date: day(&at),
        offset: at.offset().to_string(),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NowInput {
    /// Express the current time in this zone (IANA name or offset). Default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NowOutput {
    /// The current date-time, ISO 8601 with offset.
    pub iso: String,
    /// Today's date in the zone, "YYYY-MM-DD".
    pub date: String,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: i64,
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> u64 {
    leforge_forgehook_sdk::host::now_ms()
}

// The host functions only exist inside a component; native unit tests use the system clock.
#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn now(input: NowInput) -> Result<NowOutput, Error> {
    let zone = zone_or_utc(input.timezone.as_deref())?;
    let ms = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let utc = DateTime::<Utc>::from_timestamp_millis(ms)
        .ok_or_else(|| Error::new(Error::INTERNAL, "the host clock is out of range"))?;
    let at = zone.convert(utc.fixed_offset());
    Ok(NowOutput {
        iso: iso(&at),
        date: day(&at),
        unix_ms: ms,
    })
}

#[cfg(test)]
mod tests {
    use crate::test_support::{call, fail};
    use serde_json::json;

    #[test]
    fn parse_endpoint() {
        let ok = |input| call("parse", input).unwrap();
        assert_eq!(
            ok(json!({"value": "1/15/24"})),
            json!({"iso": "2024-01-15T00:00:00Z", "date": "2024-01-15", "valid": true})
        );
        assert_eq!(
            ok(json!({"value": "05/03/2024", "day_first": true}))["date"],
            "2024-03-05"
        );
        assert_eq!(
            ok(json!({"value": 1705276800})),
            json!({"iso": "2024-01-15T00:00:00Z", "date": "2024-01-15", "valid": true})
        );
        assert_eq!(
            ok(json!({"value": "2024-07-01 23:30", "timezone": "America/New_York"})),
            json!({"iso": "2024-07-01T23:30:00-04:00", "date": "2024-07-01", "valid": true})
        );
        assert_eq!(
            ok(json!({"value": "15|01|2024", "input_format": "%d|%m|%Y"}))["date"],
            "2024-01-15"
        );
        assert_eq!(
            ok(json!({"value": "not a date"})),
            json!({"iso": null, "date": null, "valid": false})
        );
    }

    #[test]
    fn parse_rejects_bad_options() {
        let (code, msg) = fail(
            "parse",
            json!({"value": "2024-01-01", "timezone": "Mars/Base"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("unknown timezone \"Mars/Base\""), "{msg}");
        let (code, msg) = fail("parse", json!({"value": "x", "input_format": "%Q"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.contains("not a valid strftime pattern"), "{msg}");
        let (code, _) = fail("parse", json!({"value": true}));
        assert_eq!(code, "INVALID_INPUT");
        let (code, _) = fail("parse", json!({}));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn parse_dates_normalizes_the_seed_records() {
        let out = call(
            "parse_dates",
            json!({
                "records": [
                    {"name": "John", "date": "1/15/24", "amount": 1500, "region": "West"},
                    {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
                    {"name": "Bob", "date": "March 5 2024", "amount": 1200, "region": "West"}
                ],
                "fields": ["date"]
            }),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "records": [
                    {"name": "John", "date": "2024-01-15", "amount": 1500, "region": "West"},
                    {"name": "Jane", "date": "2024-02-20", "amount": 2000, "region": "East"},
                    {"name": "Bob", "date": "2024-03-05", "amount": 1200, "region": "West"}
                ],
                "failed": []
            })
        );
    }

    #[test]
    fn parse_dates_reports_failures_and_leaves_them_unchanged() {
        let out = call(
            "parse_dates",
            json!({
                "records": [
                    {"d": "05/03/2024", "e": "2024-01-01T10:00:00+02:00"},
                    {"d": "soon", "e": null},
                    {"d": true},
                    {"d": "", "e": 20240115}
                ],
                "fields": ["d", "e"],
                "day_first": true,
                "output": "datetime"
            }),
        )
        .unwrap();
        assert_eq!(
            out["records"],
            json!([
                {"d": "2024-03-05T00:00:00Z", "e": "2024-01-01T10:00:00+02:00"},
                {"d": "soon", "e": null},
                {"d": true},
                {"d": "", "e": "2024-01-15T00:00:00Z"}
            ])
        );
        assert_eq!(
            out["failed"],
            json!([
                {"index": 1, "field": "d", "value": "soon"},
                {"index": 2, "field": "d", "value": true}
            ])
        );
        let (code, msg) = fail("parse_dates", json!({"records": [], "fields": []}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("`fields` must name at least one field"));
        let (code, msg) = fail(
            "parse_dates",
            json!({"records": [], "fields": ["d"], "output": "time"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("at `output`: unknown variant `time`"),
            "{msg}"
        );
        let (code, _) = fail("parse_dates", json!({"records": [1], "fields": ["d"]}));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn format_endpoint() {
        let f = |input| call("format", input).unwrap()["formatted"].clone();
        assert_eq!(
            f(json!({"date": "2024-03-05", "format": "%d/%m/%Y"})),
            "05/03/2024"
        );
        assert_eq!(
            f(json!({"date": "March 5 2024", "format": "%A, %B %-d, %Y"})),
            "Tuesday, March 5, 2024"
        );
        assert_eq!(
            f(json!({"date": "2024-03-05T23:00:00Z", "format": "iso", "timezone": "Asia/Tokyo"})),
            "2024-03-06T08:00:00+09:00"
        );
        assert_eq!(
            f(json!({"date": "2024-03-05T10:00:00Z", "format": "rfc2822"})),
            "Tue, 5 Mar 2024 10:00:00 +0000"
        );
        let (code, msg) = fail("format", json!({"date": "2024-03-05", "format": "%Y-%"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.contains("not a valid strftime pattern"), "{msg}");
        let (code, msg) = fail("format", json!({"date": "someday", "format": "%Y"}));
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("`date`: cannot read \"someday\" as a date"),
            "{msg}"
        );
    }

    #[test]
    fn add_endpoint() {
        let a = |input| call("add", input).unwrap();
        assert_eq!(
            a(json!({"date": "2024-01-31", "amount": 1, "unit": "months"})),
            json!({"iso": "2024-02-29T00:00:00Z", "date": "2024-02-29"})
        );
        assert_eq!(
            a(json!({"date": "2024-03-05T10:00:00+01:00", "amount": -1.5, "unit": "days"}))["iso"],
            "2024-03-03T22:00:00+01:00"
        );
        assert_eq!(
            a(json!({"date": "2024-02-29", "amount": 1, "unit": "years"}))["date"],
            "2025-02-28"
        );
        assert_eq!(
            a(json!({"date": "2024-12-31", "amount": 2, "unit": "weeks"}))["date"],
            "2025-01-14"
        );
        let (code, msg) = fail(
            "add",
            json!({"date": "2024-01-01", "amount": 1.5, "unit": "months"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(msg, "`amount` must be a whole number for months and years");
        let (code, msg) = fail(
            "add",
            json!({"date": "2024-01-01", "amount": 1, "unit": "fortnights"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(
            msg.starts_with("at `unit`: unknown variant `fortnights`"),
            "{msg}"
        );
        let (code, msg) = fail(
            "add",
            json!({"date": "2024-01-01", "amount": 1e300, "unit": "days"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert_eq!(msg, "the result is outside the supported date range");
    }

    #[test]
    fn diff_endpoint() {
        let d = |from: &str, to: &str, unit: &str| {
            call("diff", json!({"from": from, "to": to, "unit": unit})).unwrap()["value"].clone()
        };
        assert_eq!(d("2024-01-15", "2024-03-05", "days"), json!(50));
        assert_eq!(
            d("2024-01-01T00:00:00Z", "2024-01-02T12:00:00Z", "days"),
            json!(1.5)
        );
        assert_eq!(d("2024-03-05", "2024-01-15", "days"), json!(-50));
        assert_eq!(d("2024-01-31", "2024-02-29", "months"), json!(0));
        assert_eq!(d("2024-01-15", "2024-03-15", "months"), json!(2));
        assert_eq!(d("2024-03-15", "2024-01-16", "months"), json!(-1));
        assert_eq!(d("2000-02-29", "2024-02-28", "years"), json!(23));
        assert_eq!(
            d("2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00Z", "hours"),
            json!(0)
        );
        let (code, msg) = fail(
            "diff",
            json!({"from": "x", "to": "2024-01-01", "unit": "days"}),
        );
        assert_eq!(code, "INVALID_INPUT");
        assert!(msg.starts_with("`from`: cannot read \"x\""), "{msg}");
    }

    #[test]
    fn convert_timezone_endpoint() {
        assert_eq!(
            call(
                "convert_timezone",
                json!({"date": "2024-07-01T12:00:00Z", "to_timezone": "europe/paris"})
            )
            .unwrap(),
            json!({"iso": "2024-07-01T14:00:00+02:00", "date": "2024-07-01", "offset": "+02:00"})
        );
        assert_eq!(
            call(
                "convert_timezone",
                json!({"date": "2024-01-01 09:00", "from_timezone": "Asia/Tokyo", "to_timezone": "UTC"})
            )
            .unwrap()["iso"],
            "2024-01-01T00:00:00Z"
        );
        let (code, _) = fail(
            "convert_timezone",
            json!({"date": "2024-01-01", "to_timezone": "+25:00"}),
        );
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn now_endpoint_reads_the_clock() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let out = call("now", json!({})).unwrap();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ms = out["unix_ms"].as_i64().unwrap();
        assert!(before <= ms && ms <= after);
        assert!(out["iso"].as_str().unwrap().ends_with('Z'));
        let out = call("now", json!({"timezone": "+05:30"})).unwrap();
        assert!(out["iso"].as_str().unwrap().ends_with("+05:30"));
        let (code, _) = fail("now", json!({"timezone": "nowhere"}));
        assert_eq!(code, "INVALID_INPUT");
    }
}
