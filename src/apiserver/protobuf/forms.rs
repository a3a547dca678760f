//! Go's text forms of the apimachinery value types that JSON shows as strings: metav1.Time
//! and MicroTime (RFC 3339 in UTC, through [`crate::domain::time`]). metav1.Duration is
//! [`crate::domain::duration::go_duration`].

use serde_json::Value;

use crate::domain::time::{try_format, Precision};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which marshals as `null`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// A timestamp as metav1.Time (`micro == false`) or metav1.MicroTime renders it in JSON.
pub(super) fn timestamp(seconds: i64, nanos: i64, micro: bool) -> Result<Value, String> {
    // time.Unix accepts nanoseconds outside [0, 1e9) and carries them into the seconds.
    let (mut seconds, mut nanos) = (seconds, nanos);
    if !(0..NANOS_PER_SECOND).contains(&nanos) {
        seconds = seconds.checked_add(nanos.div_euclid(NANOS_PER_SECOND)).ok_or("timestamp out of range")?;
        nanos = nanos.rem_euclid(NANOS_PER_SECOND);
    }
    if seconds == GO_ZERO_TIME_UNIX && nanos == 0 {
        return Ok(Value::Null);
    }
    let outside = || format!("timestamp {seconds}s is outside the years 0000-9999 RFC 3339 can write");
    let t = time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.replace_nanosecond(u32::try_from(nanos).ok()?).ok())
        .ok_or_else(outside)?;
    let precision = if micro { Precision::Micros } else { Precision::Seconds };
    try_format(t, precision).map(Value::String).ok_or_else(outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_go_does() {
        assert_eq!(timestamp(0, 0, false), Ok(Value::from("1970-01-01T00:00:00Z")));
        assert_eq!(timestamp(1_700_000_000, 999_999_999, false), Ok(Value::from("2023-11-14T22:13:20Z")));
        assert_eq!(timestamp(1_700_000_000, 123_456_789, true), Ok(Value::from("2023-11-14T22:13:20.123456Z")));
        assert_eq!(timestamp(951_782_400, 0, false), Ok(Value::from("2000-02-29T00:00:00Z")));
        assert_eq!(timestamp(-1, 0, true), Ok(Value::from("1969-12-31T23:59:59.000000Z")));
        // nanos outside [0, 1e9) carry into seconds
        assert_eq!(timestamp(10, -1, true), Ok(Value::from("1970-01-01T00:00:09.999999Z")));
        assert_eq!(timestamp(GO_ZERO_TIME_UNIX, 0, false), Ok(Value::Null));
        assert_eq!(timestamp(253_402_300_799, 0, false), Ok(Value::from("9999-12-31T23:59:59Z")));
        assert!(timestamp(253_402_300_800, 0, false).is_err());
        assert!(timestamp(i64::MAX, i64::MAX, false).is_err());
        assert!(timestamp(i64::MIN, 0, false).is_err());
    }
}
