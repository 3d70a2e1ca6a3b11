//! The lenient date parser behind every endpoint: ISO 8601, RFC 2822, US and European
//! numeric dates, month names, and Unix timestamps.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::zone::Zone;

/// Unix times at or above this magnitude are taken as milliseconds: as seconds they would be
/// past the year 5000, as milliseconds they are after 1973.
const MS_THRESHOLD: f64 = 1e11;

/// A parsed point in time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parsed {
    pub at: DateTime<FixedOffset>,
    /// The input named a day but no time of day.
    pub date_only: bool,
}

/// How to read ambiguous input.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `05/03/2024` is 5 March rather than May 3.
    pub day_first: bool,
    /// The zone of values that carry no offset, and of Unix timestamps in the output.
    pub zone: Zone,
}

/// What the text said, before a zone is applied.
enum Found {
    Naive(NaiveDateTime, bool),
    Fixed(DateTime<FixedOffset>, bool),
    Unix(f64),
}

/// Parses a number as a Unix timestamp (seconds, or milliseconds when large), except that
/// an 8-digit integer that is a valid `YYYYMMDD` date is read as one.
pub fn parse_number(n: f64, opts: &Options) -> Option<Parsed> {
    if n.fract() == 0.0 && (10_000_000.0..100_000_000.0).contains(&n) {
        if let Some(p) = parse_text(&format!("{}", n as i64), opts) {
            return Some(p);
        }
    }
    resolve(Found::Unix(n), opts)
}

pub fn parse_text(text: &str, opts: &Options) -> Option<Parsed> {
    resolve(find(text.trim(), opts.day_first)?, opts)
}

/// Parses with an explicit strftime-style format (`%d/%m/%Y %H:%M`).
pub fn parse_with_format(text: &str, format: &str, opts: &Options) -> Option<Parsed> {
    let text = text.trim();
    let found = if let Ok(dt) = DateTime::parse_from_str(text, format) {
        Found::Fixed(dt, false)
    } else if let Ok(dt) = NaiveDateTime::parse_from_str(text, format) {
        Found::Naive(dt, false)
    } else if let Ok(d) = NaiveDate::parse_from_str(text, format) {
        Found::Naive(d.and_time(NaiveTime::MIN), true)
    } else {
        return None;
    };
    resolve(found, opts)
}

fn resolve(found: Found, opts: &Options) -> Option<Parsed> {
    match found {
        Found::Fixed(at, date_only) => Some(Parsed { at, date_only }),
        Found::Naive(naive, date_only) => Some(Parsed {
            at: opts.zone.localize(naive)?,
            date_only,
        }),
        Found::Unix(n) => {
            if !n.is_finite() {
                return None;
            }
            let ms = if n.abs() >= MS_THRESHOLD {
                n
            } else {
                n * 1000.0
            };
            if ms.abs() > 8.64e15 {
                return None;
            }
            let ms = ms.round() as i64;
            let at = Utc.timestamp_millis_opt(ms).single()?.fixed_offset();
            Some(Parsed {
                at: opts.zone.convert(at),
                date_only: false,
            })
        }
    }
}

fn find(s: &str, day_first: bool) -> Option<Found> {
    if s.is_empty() {
        return None;
    }
    if let Some(found) = digits_only(s) {
        return found;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(Found::Fixed(dt, false));
    }
    if s.bytes().any(|b| b.is_ascii_alphabetic()) {
        if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
            return Some(Found::Fixed(dt, false));
        }
    }
    let (date_part, time_part) = split_time(s);
    let date = parse_date_part(date_part, day_first)?;
    match time_part {
        None => Some(Found::Naive(date.and_time(NaiveTime::MIN), true)),
        Some(t) => {
            let (time, offset) = parse_time_part(t)?;
            let naive = date.and_time(time);
            match offset {
                Some(off) => Some(Found::Fixed(
                    off.from_local_datetime(&naive).single()?,
                    false,
                )),
                None => Some(Found::Naive(naive, false)),
            }
        }
    }
}

/// `20240115` (basic ISO date), otherwise a Unix timestamp such as `1705276800` or
/// `1705276800123.5`. `None` when `s` is not all digits.
fn digits_only(s: &str) -> Option<Option<Found>> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    if int.len() == 8 && frac.is_none() && !s.starts_with('-') {
        let y: i32 = int[..4].parse().ok()?;
        let m: u32 = int[4..6].parse().ok()?;
        let d: u32 = int[6..].parse().ok()?;
        if let Some(date) = NaiveDate::from_ymd_opt(y, m, d) {
            return Some(Some(Found::Naive(date.and_time(NaiveTime::MIN), true)));
        }
    }
    Some(s.parse::<f64>().ok().map(Found::Unix))
}

/// Splits at the time of day (`HH:MM...`), if any: `("2024-02-20", Some("10:00:00Z"))`.
fn split_time(s: &str) -> (&str, Option<&str>) {
    let bytes = s.as_bytes();
    let Some(colon) = s.find(':') else {
        return (s, None);
    };
    let mut start = colon;
    while start > 0 && bytes[start - 1].is_ascii_digit() && colon - start < 2 {
        start -= 1;
    }
    if start == colon {
        return (s, None);
    }
    let mut date = s[..start].trim_end();
    // "2024-02-20T10:00", "March 5, 2024 at 10:00", "5 March 2024, 10:00"
    for suffix in [" at", " AT", ","] {
        if let Some(d) = date.strip_suffix(suffix) {
            date = d.trim_end();
        }
    }
    if let Some(d) = date.strip_suffix(['T', 't']) {
        if d.ends_with(|c: char| c.is_ascii_digit()) {
            date = d;
        }
    }
    (date, Some(&s[start..]))
}

/// `HH:MM[:SS[.fff]]`, then optionally `AM`/`PM`, then optionally a zone (`Z`, `UTC`,
/// `GMT+01:00`, `+0530`), then optionally a parenthesized zone name, which is ignored.
fn parse_time_part(t: &str) -> Option<(NaiveTime, Option<FixedOffset>)> {
    let bytes = t.as_bytes();
    let mut i = 0;
    let number = |i: &mut usize, max_len: usize| -> Option<u32> {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() && *i - start < max_len {
            *i += 1;
        }
        if *i == start {
            return None;
        }
        t[start..*i].parse().ok()
    };
    let mut hour = number(&mut i, 2)?;
    if bytes.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    let minute = number(&mut i, 2)?;
    let mut second = 0;
    let mut nanos = 0;
    if bytes.get(i) == Some(&b':') {
        i += 1;
        second = number(&mut i, 2)?;
        if matches!(bytes.get(i), Some(b'.') | Some(b',')) {
            i += 1;
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &t[start..i];
            if digits.is_empty() {
                return None;
            }
            let kept = &digits[..digits.len().min(9)];
            nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        }
    }
    let mut rest = t[i..].trim_start();
    let lower = rest.to_ascii_lowercase();
    for (marker, pm) in [("a.m.", false), ("p.m.", true), ("am", false), ("pm", true)] {
        if lower.starts_with(marker) {
            if hour == 0 || hour > 12 {
                return None;
            }
            hour = match (hour, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, true) => h + 12,
                (h, false) => h,
            };
            rest = rest[marker.len()..].trim_start();
            break;
        }
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    // A trailing "(Central European Standard Time)" as JavaScript prints it.
    if let Some(open) = rest.find('(') {
        if rest.ends_with(')') {
            rest = rest[..open].trim_end();
        }
    }
    if rest.is_empty() {
        return Some((time, None));
    }
    let offset = match Zone::parse(rest).ok()? {
        Zone::Fixed(offset) => offset,
        // A zone name after a time is not something to guess at with a fixed offset.
        Zone::Iana(_) => return None,
    };
    Some((time, Some(offset)))
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Num(&'a str),
    Month(u32),
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn month_of(word: &str) -> Option<u32> {
    if word == "sept" {
        return Some(9);
    }
    MONTHS
        .iter()
        .position(|m| word == *m || (word.len() == 3 && m.starts_with(word)))
        .map(|i| i as u32 + 1)
}

fn is_weekday(word: &str) -> bool {
    WEEKDAYS
        .iter()
        .any(|d| word == *d || (word.len() >= 3 && d.starts_with(word)))
}

/// The date before any time of day: numeric (`1/15/24`, `15.01.2024`, `2024/01/15`,
/// `2024-1-5`) or with a month name (`March 5 2024`, `Mar 5, 2024`, `5 March 2024`,
/// `5-Mar-2024`, `Tuesday, 5th of March 2024`).
fn parse_date_part(s: &str, day_first: bool) -> Option<NaiveDate> {
    let mut tokens = Vec::new();
    let mut first_separator: Option<u8> = None;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            tokens.push(Token::Num(&s[start..i]));
        } else if b.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let word = s[start..i].to_ascii_lowercase();
            let after_number = matches!(tokens.last(), Some(Token::Num(_)))
                && start > 0
                && bytes[start - 1].is_ascii_digit();
            if after_number && matches!(word.as_str(), "st" | "nd" | "rd" | "th") {
                continue;
            }
            if let Some(m) = month_of(&word) {
                tokens.push(Token::Month(m));
            } else if !(is_weekday(&word) || word == "of" || word == "the") {
                return None;
            }
        } else if matches!(b, b' ' | b',' | b'/' | b'-' | b'.') {
            if first_separator.is_none() && !tokens.is_empty() && b != b' ' && b != b',' {
                first_separator = Some(b);
            }
            i += 1;
        } else {
            return None;
        }
    }
    let months = tokens
        .iter()
        .filter(|t| matches!(t, Token::Month(_)))
        .count();
    let nums: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Num(n) => Some(*n),
            Token::Month(_) => None,
        })
        .collect();
    if months == 1 {
        let month = tokens.iter().find_map(|t| match t {
            Token::Month(m) => Some(*m),
            Token::Num(_) => None,
        })?;
        let [a, b] = nums.as_slice() else {
            return None;
        };
        let (year, day) = if a.len() >= 3 { (a, b) } else { (b, a) };
        if day.len() > 2 {
            return None;
        }
        return NaiveDate::from_ymd_opt(year_of(year)?, month, day.parse().ok()?);
    }
    if months != 0 {
        return None;
    }
    let [a, b, c] = nums.as_slice() else {
        return None;
    };
    if a.len() == 4 {
        if b.len() > 2 || c.len() > 2 {
            return None;
        }
        return NaiveDate::from_ymd_opt(a.parse().ok()?, b.parse().ok()?, c.parse().ok()?);
    }
    if a.len() > 2 || b.len() > 2 {
        return None;
    }
    let year = year_of(c)?;
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    // Dotted dates (15.01.2024) are day-first wherever they are written.
    let prefer_day_first = day_first || first_separator == Some(b'.');
    let (first, second) = if prefer_day_first {
        ((b, a), (a, b))
    } else {
        ((a, b), (b, a))
    };
    // When the preferred reading is impossible (month 15) the other one is the only sense.
    NaiveDate::from_ymd_opt(year, first.0, first.1)
        .or_else(|| NaiveDate::from_ymd_opt(year, second.0, second.1))
}

/// Four digits as is; two digits as POSIX strptime `%y` reads them: 69–99 → 1969–1999,
/// 00–68 → 2000–2068.
fn year_of(digits: &str) -> Option<i32> {
    let n: i32 = digits.parse().ok()?;
    match digits.len() {
        4 => Some(n),
        2 if n >= 69 => Some(1900 + n),
        2 => Some(2000 + n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(day_first: bool) -> Options {
        Options {
            day_first,
            zone: Zone::utc(),
        }
    }

    fn iso(s: &str) -> String {
        let p = parse_text(s, &opts(false)).unwrap_or_else(|| panic!("cannot parse {s:?}"));
        p.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    #[test]
    fn accepted_forms() {
        for (input, expect) in [
            ("2024-02-20", "2024-02-20T00:00:00Z"),
            ("2024-02-20T10:30:00Z", "2024-02-20T10:30:00Z"),
            (
                "2024-02-20T10:30:00.250+05:30",
                "2024-02-20T10:30:00.250+05:30",
            ),
            ("2024-02-20 10:30", "2024-02-20T10:30:00Z"),
            ("2024-02-20T10:30:00-0500", "2024-02-20T10:30:00-05:00"),
            ("1/15/24", "2024-01-15T00:00:00Z"),
            ("1/15/2024", "2024-01-15T00:00:00Z"),
            ("12/31/69", "1969-12-31T00:00:00Z"),
            ("1/1/68", "2068-01-01T00:00:00Z"),
            ("15.01.2024", "2024-01-15T00:00:00Z"),
            ("2024/01/15", "2024-01-15T00:00:00Z"),
            ("2024.1.5", "2024-01-05T00:00:00Z"),
            ("March 5 2024", "2024-03-05T00:00:00Z"),
            ("Mar 5, 2024", "2024-03-05T00:00:00Z"),
            ("5 March 2024", "2024-03-05T00:00:00Z"),
            ("5-Mar-2024", "2024-03-05T00:00:00Z"),
            ("05-mar-24", "2024-03-05T00:00:00Z"),
            ("Tuesday, 5th of March 2024", "2024-03-05T00:00:00Z"),
            ("Sept 9 2024 3:04 PM", "2024-09-09T15:04:00Z"),
            ("March 5, 2024 at 12:00 am", "2024-03-05T00:00:00Z"),
            (
                "Tue, 05 Mar 2024 10:00:00 +0100",
                "2024-03-05T10:00:00+01:00",
            ),
            ("Tue, 05 Mar 2024 10:00:00 GMT", "2024-03-05T10:00:00Z"),
            (
                "Tue Mar 05 2024 10:00:00 GMT+0100 (Central European Standard Time)",
                "2024-03-05T10:00:00+01:00",
            ),
            ("1/15/2024 23:59:59 UTC", "2024-01-15T23:59:59Z"),
            ("20240115", "2024-01-15T00:00:00Z"),
            ("1705276800", "2024-01-15T00:00:00Z"),
            ("1705276800000", "2024-01-15T00:00:00Z"),
            ("1705276800.5", "2024-01-15T00:00:00.500Z"),
        ] {
            assert_eq!(iso(input), expect, "{input}");
        }
    }

    #[test]
    fn day_first_and_impossible_months() {
        let d = |s: &str, day_first: bool| {
            parse_text(s, &opts(day_first))
                .map(|p| p.at.date_naive().to_string())
                .unwrap_or_default()
        };
        assert_eq!(d("05/03/2024", false), "2024-05-03");
        assert_eq!(d("05/03/2024", true), "2024-03-05");
        assert_eq!(d("15/01/2024", false), "2024-01-15");
        assert_eq!(d("1/15/2024", true), "2024-01-15");
        assert_eq!(d("31/31/2024", false), "");
    }

    #[test]
    fn rejected_forms() {
        for input in [
            "",
            "hello",
            "2024-02-30",
            "13/13/2024",
            "March 2024",
            "5 Foo 2024",
            "1/15/024",
            "2024-02-20 25:00",
            "2024-02-20 10:00 Mars/Phobos",
            "13:00 pm 1/1/2024",
            "nan",
        ] {
            assert!(parse_text(input, &opts(false)).is_none(), "{input:?}");
        }
    }

    #[test]
    fn naive_values_take_the_zone_and_numbers_read_as_unix_or_yyyymmdd() {
        let paris = Options {
            day_first: false,
            zone: Zone::parse("Europe/Paris").unwrap(),
        };
        let p = parse_text("2024-07-01 12:00", &paris).unwrap();
        assert_eq!(p.at.to_rfc3339(), "2024-07-01T12:00:00+02:00");
        let p = parse_number(1705276800.0, &paris).unwrap();
        assert_eq!(p.at.to_rfc3339(), "2024-01-15T01:00:00+01:00");
        let p = parse_number(20240115.0, &opts(false)).unwrap();
        assert!(p.date_only);
        assert_eq!(p.at.date_naive().to_string(), "2024-01-15");
        assert!(parse_number(f64::INFINITY, &opts(false)).is_none());
    }

    #[test]
    fn explicit_formats() {
        let p = parse_with_format("15|01|2024", "%d|%m|%Y", &opts(false)).unwrap();
        assert_eq!(p.at.to_rfc3339(), "2024-01-15T00:00:00+00:00");
        assert!(p.date_only);
        let p =
            parse_with_format("2024-01-15 10:00 +0200", "%Y-%m-%d %H:%M %z", &opts(false)).unwrap();
        assert_eq!(p.at.to_rfc3339(), "2024-01-15T10:00:00+02:00");
        assert!(parse_with_format("x", "%Y", &opts(false)).is_none());
    }
}
