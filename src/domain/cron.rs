//! Cron schedules as upstream's CronJobs read them (robfig/cron v3's `ParseStandard`): five
//! fields (minute, hour, day of month, month, day of week) of comma-separated `*`, `?`,
//! values, ranges `a-b` and steps `/n` (`a/n` meaning `a-max/n`), month and weekday names
//! (`jan`, `mon`, any case); the macros `@yearly`/`@annually`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight`, `@hourly` and `@every <duration>`; and an optional `TZ=`/`CRON_TZ=`
//! prefix naming the zone. As in robfig, when neither day field is a star the days of month
//! and of week are alternatives, else both must match; a wall-clock time the zone skips
//! (a DST gap) does not fire, and one it repeats fires at each instant.
//!
//! No crate parses exactly this: `cron` wants a seconds field, `croner` adds `L`, `W`, `#`
//! and seconds and works on chrono; `saffron` is unmaintained. The fire times are computed
//! with jiff, which k8s-openapi already brings, over a zone the caller loads.

use std::time::Duration;

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::{AmbiguousOffset, TimeZone};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::domain::duration::parse_go_duration;

/// How far ahead a schedule is searched before it is called impossible (robfig's 5 years).
const SEARCH_YEARS: i16 = 5;

/// Why a schedule does not parse; the text is robfig's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The `TZ=` prefix's zone name, if any.
    pub zone: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every`: a fixed period (whole seconds, at least one).
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Either day field was `*` or `?` (robfig's star bit).
    day_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name: u32,
}

const MINUTE: Bounds = Bounds { min: 0, max: 59, names: &[], first_name: 0 };
const HOUR: Bounds = Bounds { min: 0, max: 23, names: &[], first_name: 0 };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[], first_name: 0 };
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    first_name: 1,
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"], first_name: 0 };

impl Schedule {
    /// Parses a schedule.
    pub fn parse(text: &str) -> Result<Schedule, ParseError> {
        let mut text = text.trim();
        let mut zone = None;
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            let (tz, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            zone = tz.split_once('=').map(|(_, z)| z.to_string());
            text = rest.trim();
        }
        if text.starts_with('@') {
            return Ok(Schedule { zone, kind: descriptor(text)? });
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return err(format!("expected exactly 5 fields, found {}: {text:?}", fields.len()));
        }
        let (minute, _) = field(fields[0], &MINUTE)?;
        let (hour, _) = field(fields[1], &HOUR)?;
        let (dom, dom_star) = field(fields[2], &DOM)?;
        let (month, _) = field(fields[3], &MONTH)?;
        let (dow, dow_star) = field(fields[4], &DOW)?;
        Ok(Schedule {
            zone,
            kind: Kind::Fields(Fields { minute, hour, dom, month, dow, day_star: dom_star || dow_star }),
        })
    }

    /// The first fire time strictly after `after`, in `tz`; none within five years.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(period) => {
                // robfig: the next whole second at least a period later.
                let secs = after.as_second() + period.as_secs() as i64;
                Timestamp::from_second(secs).ok()
            }
            Kind::Fields(f) => f.next(after, tz),
        }
    }
}

fn descriptor(text: &str) -> Result<Kind, ParseError> {
    let five = |s: &str| match Schedule::parse(s) {
        Ok(Schedule { kind, .. }) => Ok(kind),
        Err(e) => Err(e),
    };
    match text {
        "@yearly" | "@annually" => five("0 0 1 1 *"),
        "@monthly" => five("0 0 1 * *"),
        "@weekly" => five("0 0 * * 0"),
        "@daily" | "@midnight" => five("0 0 * * *"),
        "@hourly" => five("0 * * * *"),
        _ => match text.strip_prefix("@every ") {
            Some(d) => {
                let d = parse_go_duration(d.trim())
                    .ok_or_else(|| ParseError(format!("failed to parse duration {text}")))?;
                // robfig rounds down to whole seconds, and at least one.
                Ok(Kind::Every(Duration::from_secs(d.as_secs().max(1))))
            }
            None => err(format!("unrecognized descriptor: {text}")),
        },
    }
}

/// One field as a bit set, and whether it was a star.
fn field(text: &str, b: &Bounds) -> Result<(u64, bool), ParseError> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (r, s) = range(part, b)?;
        bits |= r;
        star |= s;
    }
    Ok((bits, star))
}

fn range(expr: &str, b: &Bounds) -> Result<(u64, bool), ParseError> {
    let (span, step) = match expr.split_once('/') {
        Some((span, step)) => (span, Some(step)),
        None => (expr, None),
    };
    let mut star = false;
    let (start, mut end, single) = if span == "*" || span == "?" {
        star = true;
        (b.min, b.max, false)
    } else {
        let bounds: Vec<&str> = span.split('-').collect();
        match bounds.as_slice() {
            [one] => {
                let v = value(one, b)?;
                (v, v, true)
            }
            [lo, hi] => (value(lo, b)?, value(hi, b)?, false),
            _ => return err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let step = number(s)?;
            if single {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };
    if start < b.min {
        return err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star))
}

fn value(text: &str, b: &Bounds) -> Result<u32, ParseError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.first_name);
    }
    number(text)
}

fn number(text: &str) -> Result<u32, ParseError> {
    match text.parse::<i64>() {
        Ok(v) if v < 0 => err(format!("negative number ({v}) not allowed: {text}")),
        Ok(v) => u32::try_from(v).or_else(|_| err(format!("value too large: {text}"))),
        Err(_) => err(format!("failed to parse int from {text}")),
    }
}

impl Fields {
    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after).date();
        let limit = start.year().saturating_add(SEARCH_YEARS);
        // The day before, for an instant whose local day began earlier in a repeated hour.
        let mut day = start.yesterday().ok()?;
        while day.year() <= limit {
            if self.month & (1 << day.month()) != 0 && self.day_matches(day) {
                for hour in (0..24).filter(|h| self.hour & (1 << h) != 0) {
                    for minute in (0..60).filter(|m| self.minute & (1 << m) != 0) {
                        let dt = day.at(hour, minute, 0, 0);
                        if let Some(t) = instants(tz, dt).into_iter().find(|t| *t > after) {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// The instants a wall-clock time names in `tz`: none in a gap, two in a fold.
fn instants(tz: &TimeZone, dt: DateTime) -> Vec<Timestamp> {
    let at = |o: k8s_openapi::jiff::tz::Offset| o.to_timestamp(dt).ok();
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => at(offset).into_iter().collect(),
        AmbiguousOffset::Gap { .. } => vec![],
        AmbiguousOffset::Fold { before, after } => {
            let mut v: Vec<Timestamp> = [at(before), at(after)].into_iter().flatten().collect();
            v.sort();
            v
        }
    }
}

/// `t` as RFC 3339 in `tz` (Go's `time.RFC3339`: whole seconds, `Z` for a zero offset).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let offset = tz.to_offset(t);
    let dt = offset.to_datetime(t);
    let secs = offset.seconds();
    let zone = if secs == 0 {
        "Z".to_string()
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.abs();
        format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The span from `a` to `b` as a std duration (zero if `b` is earlier).
pub fn until(a: Timestamp, b: Timestamp) -> Duration {
    let d: SignedDuration = b.duration_since(a);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_parse_as_robfig_parses_them() {
        let bad = [
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("* * * * * *", "expected exactly 5 fields, found 6: \"* * * * * *\""),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("x * * * *", "failed to parse int from x"),
            ("@often", "unrecognized descriptor: @often"),
            ("", "expected exactly 5 fields, found 0: \"\""),
        ];
        for (text, want) in bad {
            assert_eq!(Schedule::parse(text).unwrap_err().0, want, "{text}");
        }
        let good = [
            "*/15 0-6,20 ? JAN-mar,Dec mon-FRI",
            "5/10 * * * *",
            "@hourly",
            "@every 1h30m",
            "TZ=Europe/Paris 0 9 * * *",
        ];
        for text in good {
            assert!(Schedule::parse(text).is_ok(), "{text}");
        }
        assert_eq!(Schedule::parse("CRON_TZ=Asia/Tokyo @daily").unwrap().zone.as_deref(), Some("Asia/Tokyo"));
    }

    #[test]
    fn next_fire_times_in_utc() {
        let cases = [
            ("* * * * *", "2024-03-01T10:00:30Z", "2024-03-01T10:01:00Z"),
            ("* * * * *", "2024-03-01T10:01:00Z", "2024-03-01T10:02:00Z"),
            ("*/15 * * * *", "2024-03-01T10:16:00Z", "2024-03-01T10:30:00Z"),
            ("5/20 * * * *", "2024-03-01T10:46:00Z", "2024-03-01T11:05:00Z"),
            ("0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            ("@yearly", "2024-03-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@weekly", "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z"),
            ("@monthly", "2024-12-15T00:00:00Z", "2025-01-01T00:00:00Z"),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            ("0 0 13 * 5", "2024-03-01T00:00:00Z", "2024-03-08T00:00:00Z"),
            ("0 0 13 * 5", "2024-03-09T00:00:00Z", "2024-03-13T00:00:00Z"),
            // One a star: both must (every Friday, any day of month).
            ("0 0 * * fri", "2024-03-01T00:00:00Z", "2024-03-08T00:00:00Z"),
            ("0 0 ? * 1", "2024-03-01T00:00:00Z", "2024-03-04T00:00:00Z"),
            ("@every 90s", "2024-03-01T00:00:00Z", "2024-03-01T00:01:30Z"),
        ];
        for (text, after, want) in cases {
            let s = Schedule::parse(text).unwrap();
            assert_eq!(s.next(utc(after), &TimeZone::UTC), Some(utc(want)), "{text} after {after}");
        }
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next(utc("2024-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }

    #[test]
    fn zones_shift_and_skip_wall_clock_times() {
        // A zone with DST, built from a POSIX rule (no zoneinfo needed): UTC-5, UTC-4 in
        // summer, changing at 02:00 on the second Sunday of March and first of November.
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let cases = [
            ("0 9 * * *", "2024-03-01T00:00:00Z", "2024-03-01T14:00:00Z"),
            ("0 9 * * *", "2024-07-01T00:00:00Z", "2024-07-01T13:00:00Z"),
            // 02:30 does not exist on 2024-03-10: that day is skipped.
            ("30 2 * * *", "2024-03-09T08:00:00Z", "2024-03-11T06:30:00Z"),
            // 01:30 happens twice on 2024-11-03: both fire.
            ("30 1 * * *", "2024-11-03T00:00:00Z", "2024-11-03T05:30:00Z"),
            ("30 1 * * *", "2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z"),
        ];
        for (text, after, want) in cases {
            let s = Schedule::parse(text).unwrap();
            assert_eq!(s.next(utc(after), &ny), Some(utc(want)), "{text} after {after}");
        }
        assert_eq!(rfc3339_in(utc("2024-07-01T13:00:00Z"), &ny), "2024-07-01T09:00:00-04:00");
        assert_eq!(rfc3339_in(utc("2024-07-01T13:00:00Z"), &TimeZone::UTC), "2024-07-01T13:00:00Z");
    }
}
