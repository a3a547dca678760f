//! Timestamps as Kubernetes writes them, through the `time` crate's RFC 3339 formatting:
//! metav1.Time (whole seconds), metav1.MicroTime (six fraction digits) and the
//! nine-digit form the runtime's container states use, all in UTC.
//!
//! RFC 3339 can only write the years 0000-9999 (the `time` crate reaches back to -9999); the
//! infallible forms clamp an earlier time to the start of year 0, and [`try_format`] says
//! when that would be needed.

use time::format_description::well_known::Rfc3339;
use time::format_description::BorrowedFormatItem;
use time::macros::{datetime, format_description};
use time::{OffsetDateTime, UtcOffset};

/// How many fraction digits a timestamp shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// `2006-01-02T15:04:05Z`: metav1.Time.
    Seconds,
    /// `2006-01-02T15:04:05.000000Z`: metav1.MicroTime.
    Micros,
    /// `2006-01-02T15:04:05.000000000Z`.
    Nanos,
}

const MICROS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
const NANOS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

const FIRST: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
const LAST: OffsetDateTime = datetime!(9999-12-31 23:59:59.999_999_999 UTC);

/// Go's zero `time.Time`, 0001-01-01T00:00:00Z: what an unset time prints as.
pub const GO_ZERO_TIME: OffsetDateTime = datetime!(0001-01-01 00:00:00 UTC);

/// `t` in UTC at `precision`; `None` when its year is outside 0000-9999. Fractions are
/// truncated, as Go's layouts do.
pub fn try_format(t: OffsetDateTime, precision: Precision) -> Option<String> {
    let t = t.to_offset(UtcOffset::UTC);
    if !(FIRST..=LAST).contains(&t) {
        return None;
    }
    match precision {
        Precision::Seconds => t.replace_nanosecond(0).ok()?.format(&Rfc3339).ok(),
        Precision::Micros => t.format(MICROS).ok(),
        Precision::Nanos => t.format(NANOS).ok(),
    }
}

/// `t` in UTC at `precision`, clamped to the years RFC 3339 can write.
pub fn format(t: OffsetDateTime, precision: Precision) -> String {
    let t = t.to_offset(UtcOffset::UTC).clamp(FIRST, LAST);
    // Within the range every layout formats; the fallback is the start of the range.
    try_format(t, precision).unwrap_or_else(|| "0000-01-01T00:00:00Z".to_string())
}

/// A time as metav1.Time writes it: RFC 3339, whole seconds, UTC.
pub fn rfc3339(t: OffsetDateTime) -> String {
    format(t, Precision::Seconds)
}

/// Now, as metav1.Time writes it.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// A UNIX time in nanoseconds (every `i64` is within the `time` crate's range).
pub fn from_unix_nanos(ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A UNIX time in nanoseconds with nine fraction digits:
/// `2016-10-06T00:07:09.669794202Z`.
pub fn rfc3339_nanos(ns: i64) -> String {
    format(from_unix_nanos(ns), Precision::Nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let t = datetime!(2023-11-14 22:13:20.123_456_789 UTC);
        assert_eq!(format(t, Precision::Seconds), "2023-11-14T22:13:20Z");
        assert_eq!(format(t, Precision::Micros), "2023-11-14T22:13:20.123456Z");
        assert_eq!(format(t, Precision::Nanos), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(format(datetime!(2000-02-29 00:00 UTC), Precision::Micros), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(datetime!(2025-03-01 13:04:05 +01:00)), "2025-03-01T12:04:05Z");
        assert_eq!(rfc3339(GO_ZERO_TIME), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn unix_nanos() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(1_475_712_429_669_794_202), "2016-10-06T00:07:09.669794202Z");
        assert_eq!(rfc3339_nanos(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339_nanos(i64::MIN), "1677-09-21T00:12:43.145224192Z");
    }

    #[test]
    fn years_outside_rfc3339_clamp_or_fail() {
        // The `time` crate stops at 9999 itself; the last instant still formats.
        assert_eq!(format(LAST, Precision::Nanos), "9999-12-31T23:59:59.999999999Z");
        let early = datetime!(-0001-12-31 00:00 UTC);
        assert_eq!(try_format(early, Precision::Micros), None);
        assert_eq!(format(early, Precision::Seconds), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn now_is_whole_seconds_in_utc() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
