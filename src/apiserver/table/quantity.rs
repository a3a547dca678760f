//! Resource quantities in their canonical form (`1536Mi`, `500m`, `2k`, `1e3`), as upstream
//! prints them after a round trip through its `Quantity` type: capacity columns, quota
//! usage and autoscaler targets show this form whatever the object was written with.
//!
//! A quantity is an exact decimal `mantissa × 10^scale` and a format taken from the suffix
//! (binary `Ki…Ei`, decimal SI `n…E`, or a decimal exponent `e3`). The canonical form
//! drops trailing zeros, keeps the format where it can be shown exactly, and otherwise
//! falls back to decimal SI.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// The canonical string of a quantity held as a JSON string or number; an absent value
/// is the zero quantity `0`. Text that is not a quantity is shown as it is.
pub(crate) fn canonical(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "0".to_string(),
        Some(Value::String(s)) => canonical_str(s).unwrap_or_else(|| s.clone()),
        Some(Value::Number(n)) => {
            let s = n.to_string();
            canonical_str(&s).unwrap_or(s)
        }
        Some(other) => other.to_string(),
    }
}

/// The canonical form of `s`, or `None` when `s` is not a quantity.
pub(crate) fn canonical_str(s: &str) -> Option<String> {
    let (mantissa, scale, format) = parse(s.trim())?;
    render(mantissa, scale, format)
}

/// More digits than this cannot be held exactly; such quantities are shown as written.
const MAX_DIGITS: usize = 30;

fn parse(s: &str) -> Option<(i128, i32, Format)> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &s[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &s[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let digits = format!("{}{frac_digits}", int_digits.trim_start_matches('0'));
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let mut scale = -(i32::try_from(frac_digits.len()).ok()?);
    let (format, binary_power, decimal_exponent) = suffix(&s[pos..])?;
    scale = scale.checked_add(decimal_exponent)?;
    let mut format = format;
    if binary_power > 0 {
        mantissa = mantissa.checked_mul(1024i128.checked_pow(binary_power)?)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    // Values below one nano are rounded away from zero to a nano: asking for a sliver of a
    // resource should still ask for some.
    if scale < -9 && mantissa != 0 {
        let drop = u32::try_from(-9 - scale).ok()?;
        let divisor = 10i128.checked_pow(drop)?;
        let (q, r) = (mantissa / divisor, mantissa % divisor);
        mantissa = if r == 0 { q } else { q + mantissa.signum() };
        scale = -9;
    }
    // A binary quantity below one is shown in decimal: there is no binary suffix for it.
    if format == Format::BinarySi && mantissa > 0 && below_one(mantissa, scale) {
        format = Format::DecimalSi;
    }
    Some((mantissa, scale, format))
}

fn below_one(mantissa: i128, scale: i32) -> bool {
    scale < 0 && 10i128.checked_pow(scale.unsigned_abs()).is_some_and(|p| mantissa.abs() < p)
}

/// The format, power of 1024 and power of ten a suffix stands for.
fn suffix(s: &str) -> Option<(Format, u32, i32)> {
    let decimal = |e| Some((Format::DecimalSi, 0, e));
    let binary = |p| Some((Format::BinarySi, p, 0));
    match s {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            let rest = s.strip_prefix('e').or_else(|| s.strip_prefix('E'))?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = rest.strip_prefix('+').unwrap_or(rest).parse().ok()?;
            Some((Format::DecimalExponent, 0, e))
        }
    }
}

/// The canonical string; `None` when the value is too large to shift exactly.
fn render(mantissa: i128, scale: i32, format: Format) -> Option<String> {
    if mantissa == 0 {
        return Some("0".to_string());
    }
    let mut format = format;
    let mut integer = None;
    if format == Format::BinarySi {
        integer = exact_integer(mantissa, scale);
        match integer {
            // Small values read better without a binary suffix.
            Some(i) if i > -1024 && i < 1024 => format = Format::DecimalSi,
            Some(_) => {}
            // A fraction cannot be shown in binary without losing precision.
            None => format = Format::DecimalSi,
        }
    }
    match (format, integer) {
        (Format::BinarySi, Some(value)) => {
            let (mut m, mut power) = (value, 0u32);
            while m.abs() >= 1024 && m % 1024 == 0 {
                m /= 1024;
                power += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].get(power as usize).copied().unwrap_or("");
            Some(format!("{m}{suffix}"))
        }
        _ => {
            let (mut m, mut e) = (mantissa, scale);
            while m % 10 == 0 {
                m /= 10;
                e += 1;
            }
            // The exponent goes down to a multiple of three, so the mantissa stays whole.
            match e.rem_euclid(3) {
                1 => {
                    m = m.checked_mul(10)?;
                    e -= 1;
                }
                2 => {
                    m = m.checked_mul(100)?;
                    e -= 2;
                }
                _ => {}
            }
            let suffix = match format {
                Format::DecimalExponent if e == 0 => String::new(),
                Format::DecimalExponent => format!("e{e}"),
                _ => match e {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    18 => "E",
                    _ => "",
                }
                .to_string(),
            };
            Some(format!("{m}{suffix}"))
        }
    }
}

/// `mantissa × 10^scale` when it is a whole number that fits.
fn exact_integer(mantissa: i128, scale: i32) -> Option<i128> {
    if scale >= 0 {
        mantissa.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)
    } else {
        let p = 10i128.checked_pow(scale.unsigned_abs())?;
        (mantissa % p == 0).then_some(mantissa / p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("0", "0"),
            ("0Gi", "0"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1000Mi", "1000Mi"),
            ("512", "512"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("100m", "100m"),
            ("0.1", "100m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("2000m", "2"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("1500e0", "1500"),
            ("12e1", "120"),
            ("10Ki", "10Ki"),
            ("100Ki", "100Ki"),
            ("1023", "1023"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1.1Ki", "1126400m"),
            ("1n", "1n"),
            ("0.1n", "1n"),
            ("-1.5Gi", "-1536Mi"),
            ("-100m", "-100m"),
            ("+5", "5"),
            ("5G", "5G"),
            ("2.5M", "2500k"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_str(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn not_quantities_are_kept() {
        for bad in ["", "abc", "1Qi", "1e", "1.2.3", "Gi", "1 Gi"] {
            assert_eq!(canonical_str(bad), None, "{bad:?}");
        }
        assert_eq!(canonical(Some(&json!("lots"))), "lots");
        assert_eq!(canonical(None), "0");
        assert_eq!(canonical(Some(&json!(2048))), "2048");
    }
}
