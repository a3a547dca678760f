//! Go's `time.Duration.String()`: the text of metav1.Duration and of the kubelet's back-off
//! messages ("0s", "1.5µs", "20ms", "1m20s", "1h2m3.5s", "-4m0s").

use std::time::Duration;

/// A signed count of nanoseconds as Go prints it.
pub fn go_duration(nanos: i64) -> String {
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

/// A `std` duration as Go prints it; beyond Go's range (292 years) it saturates.
pub fn go_duration_std(d: Duration) -> String {
    go_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
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

/// Parses a Go duration (`1h30m`, `90s`, `1.5h`, as `time.ParseDuration`), non-negative.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn std_durations() {
        assert_eq!(go_duration_std(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration_std(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration_std(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration_std(Duration::from_millis(10_500)), "10.5s");
        assert_eq!(go_duration_std(Duration::MAX), "2562047h47m16.854775807s");
    }
}
