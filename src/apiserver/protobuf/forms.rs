//! Go's text forms of the apimachinery value types that JSON shows as strings: metav1.Time
//! and MicroTime (RFC 3339 in UTC) and metav1.Duration (Go's `time.Duration.String`).

use serde_json::Value;

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
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(format!("timestamp {seconds}s is outside the years 0000-9999 RFC 3339 can write"));
    }
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let text = if micro {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z", nanos / 1000)
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    };
    Ok(Value::String(text))
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01, after Howard
/// Hinnant's `civil_from_days`; exact for every day an i64 of seconds can reach.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration(nanos).String()`: "0s", "1.5µs", "20ms", "1h2m3.5s", "-4m0s".
pub(super) fn go_duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // Built back to front, as the units grow leftwards.
    let mut out: Vec<char> = Vec::with_capacity(32);
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".to_string();
        }
        let (unit, precision) = match u {
            0..=999 => ("ns", 0),
            1_000..=999_999 => ("µs", 3),
            _ => ("ms", 6),
        };
        out.extend(unit.chars().rev());
        u = push_fraction(&mut out, u, precision);
        push_int(&mut out, u);
    } else {
        out.push('s');
        u = push_fraction(&mut out, u, 9);
        push_int(&mut out, u % 60);
        let minutes = u / 60;
        if minutes > 0 {
            out.push('m');
            push_int(&mut out, minutes % 60);
            let hours = minutes / 60;
            if hours > 0 {
                out.push('h');
                push_int(&mut out, hours);
            }
        }
    }
    if negative {
        out.push('-');
    }
    out.iter().rev().collect()
}

/// Pushes (reversed) the `precision` low decimal digits of `v` as a fraction without
/// trailing zeros (and no point when they are all zero); returns the integer part.
fn push_fraction(out: &mut Vec<char>, mut v: u64, precision: u32) -> u64 {
    let mut printing = false;
    for _ in 0..precision {
        let digit = (v % 10) as u8;
        printing = printing || digit != 0;
        if printing {
            out.push(char::from(b'0' + digit));
        }
        v /= 10;
    }
    if printing {
        out.push('.');
    }
    v
}

fn push_int(out: &mut Vec<char>, mut v: u64) {
    loop {
        out.push(char::from(b'0' + (v % 10) as u8));
        v /= 10;
        if v == 0 {
            break;
        }
    }
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

    #[test]
    fn durations_render_as_go_does() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (20_000_000, "20ms"),
            (1_000_000_000, "1s"),
            (90 * 1_000_000_000, "1m30s"),
            (3_600 * 1_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-240 * 1_000_000_000, "-4m0s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(go_duration(nanos), text, "{nanos}ns");
        }
    }
}
