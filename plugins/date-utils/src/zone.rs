//! Time zones given by users: IANA names (with daylight saving) or fixed UTC offsets.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use leforge_forgehook_sdk::Error;

#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Fixed(FixedOffset),
    Iana(Tz),
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::Fixed(Utc.fix())
    }

    /// `Europe/Paris`, `utc`, `Z`, `+02:00`, `-0530`, `+2`, `UTC+01:00`.
    pub fn parse(text: &str) -> Result<Zone, Error> {
        let t = text.trim();
        let unknown = || {
            Error::invalid_input(format!(
                "unknown timezone {text:?}: use an IANA name such as \"Europe/Paris\" or \
                 \"America/New_York\", \"UTC\", or an offset such as \"+02:00\""
            ))
        };
        let upper = t.to_ascii_uppercase();
        for prefix in ["UTC", "GMT"] {
            if let Some(rest) = upper.strip_prefix(prefix) {
                if rest.is_empty() {
                    return Ok(Zone::utc());
                }
                if rest.starts_with(['+', '-']) {
                    return parse_offset(rest).map(Zone::Fixed).ok_or_else(unknown);
                }
            }
        }
        if upper == "Z" {
            return Ok(Zone::utc());
        }
        if t.starts_with(['+', '-']) {
            return parse_offset(t).map(Zone::Fixed).ok_or_else(unknown);
        }
        if let Ok(tz) = t.parse::<Tz>() {
            return Ok(Zone::Iana(tz));
        }
        // Models often get the case of a zone name wrong ("america/new_york").
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(t))
            .map(|tz| Zone::Iana(*tz))
            .ok_or_else(unknown)
    }

    /// The instant at which this zone's wall clock shows `naive`. In a daylight-saving gap
    /// (a wall time that never happens) the time an hour later is used, as clocks do; in an
    /// overlap, the earlier instant.
    pub fn localize(&self, naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
        match self {
            Zone::Fixed(offset) => offset.from_local_datetime(&naive).single(),
            Zone::Iana(tz) => tz
                .from_local_datetime(&naive)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(naive + TimeDelta::hours(1)))
                        .earliest()
                })
                .map(|dt| dt.fixed_offset()),
        }
    }

    /// The same instant on this zone's wall clock.
    pub fn convert(&self, at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        match self {
            Zone::Fixed(offset) => at.with_timezone(offset),
            Zone::Iana(tz) => at.with_timezone(tz).fixed_offset(),
        }
    }
}

/// `+02:00`, `+0200`, `+02`, `-5`, `+5:30`.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = if let Some((h, m)) = rest.split_once(':') {
        (h, m)
    } else if rest.len() == 4 {
        (&rest[..2], &rest[2..])
    } else {
        (rest, "0")
    };
    if h.is_empty() || h.len() > 2 || m.len() > 2 || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}
