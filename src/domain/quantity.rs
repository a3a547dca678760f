//! Resource quantities as upstream's `resource.Quantity` reads, compares and prints them:
//! `128Mi`, `100m`, `1.5`, `2e3`, `-1E`, `0.5Gi`.
//!
//! A quantity is an exact decimal `mantissa × 10^scale` and the format its suffix chose
//! (binary `Ki…Ei`, decimal SI `n…E`, or a decimal exponent `e3`). Parsing follows upstream:
//! values are rounded away from zero to a whole nano, binary values are capped at 2^63-1 and
//! a binary value below one remembers itself as decimal. The canonical form (`Display`) is
//! upstream's `String()`: trailing zeros dropped, the exponent brought down to a multiple of
//! three, the format kept where it can be shown exactly and decimal SI otherwise (and a
//! decimal exponent beyond `E`, where SI has no suffix). Like upstream, a parsed quantity
//! whose text its fast path deems canonical prints that text again (`1E6`, `+5` stay as
//! written); [`Quantity::canonical`] always computes the form. Equality and order are by
//! value.
//!
//! One difference from upstream's arbitrary precision: the mantissa is an `i128`, so a
//! quantity of more than 38 significant digits (after nano rounding) is refused with
//! [`QuantityError::TooPrecise`]; no real resource amount comes near it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How a quantity was written, and so how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki`, `Mi`, ... `Ei`: powers of 1024.
    BinarySi,
    /// `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`: powers of 1000.
    DecimalSi,
    /// `e3`, `E-6`: any power of ten.
    DecimalExponent,
}

/// Why a text is not a quantity; `Display` gives upstream's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Beyond what an `i128` mantissa holds exactly (upstream would keep it as a big decimal).
    #[error("quantity has too many significant digits")]
    TooPrecise,
}

/// An exact resource amount: see the module documentation.
#[derive(Debug, Clone)]
pub struct Quantity {
    mantissa: i128,
    /// Power of ten; never below -9 (values are whole nanos).
    scale: i32,
    format: Format,
    /// The parsed text, when upstream keeps it as the printed form.
    written: Option<Box<str>>,
}

/// Upstream's cap on binary quantities (`maxAllowed`).
const MAX_BINARY: i128 = i64::MAX as i128;
/// Significant digits an `i128` holds whatever they are.
const MAX_DIGITS: usize = 38;
const NANO: i32 = -9;

impl Quantity {
    /// Zero in the given format.
    pub const fn zero(format: Format) -> Quantity {
        Quantity { mantissa: 0, scale: 0, format, written: None }
    }

    /// `value × 10^scale` in `format`, rounded away from zero to a nano like a parsed one.
    pub fn new(value: i64, scale: i32, format: Format) -> Quantity {
        let q = Quantity { mantissa: i128::from(value), scale, format, written: None };
        if scale < NANO {
            return q.round_to_nano();
        }
        q
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// -1, 0 or 1.
    pub fn signum(&self) -> i32 {
        self.mantissa.signum() as i32
    }

    /// Parses a quantity held in JSON as a string (surrounding spaces allowed, as upstream's
    /// `UnmarshalJSON` trims them) or a number.
    pub fn from_json(v: &Value) -> Option<Quantity> {
        match v {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.to_string().parse().ok(),
            _ => None,
        }
    }

    /// The value in units of `10^scale`, rounded away from zero (upstream's `ScaledValue`);
    /// saturates at the ends of `i64`.
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let shift = i64::from(self.scale) - i64::from(scale);
        let v = if shift >= 0 {
            u32::try_from(shift)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
                .and_then(|p| self.mantissa.checked_mul(p))
                .unwrap_or(if self.mantissa < 0 { i128::MIN } else { i128::MAX })
        } else {
            match u32::try_from(-shift).ok().and_then(|s| 10i128.checked_pow(s)) {
                Some(p) => div_away_from_zero(self.mantissa, p),
                None => self.mantissa.signum(),
            }
        };
        i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
    }

    /// Whole units, rounded away from zero (upstream's `Value`).
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// Thousandths, rounded away from zero (upstream's `MilliValue`).
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// The sum, in this quantity's format unless it is zero (upstream's `Add`); `None` when
    /// it does not fit.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        let scale = self.scale.min(other.scale);
        let a = align(self.mantissa, self.scale, scale)?;
        let b = align(other.mantissa, other.scale, scale)?;
        let format = if self.is_zero() { other.format } else { self.format };
        Some(Quantity { mantissa: a.checked_add(b)?, scale, format, written: None })
    }

    fn round_to_nano(mut self) -> Quantity {
        if self.scale < NANO {
            self.mantissa =
                match u32::try_from(i64::from(NANO) - i64::from(self.scale)).ok().and_then(|s| 10i128.checked_pow(s)) {
                    Some(p) => div_away_from_zero(self.mantissa, p),
                    None => self.mantissa.signum(),
                };
            self.scale = NANO;
        }
        self
    }

    /// The whole value when it is an integer that fits.
    fn as_integer(&self) -> Option<i128> {
        if self.scale >= 0 {
            self.mantissa.checked_mul(10i128.checked_pow(self.scale.unsigned_abs())?)
        } else {
            let p = 10i128.checked_pow(self.scale.unsigned_abs())?;
            (self.mantissa % p == 0).then_some(self.mantissa / p)
        }
    }

    /// The mantissa without trailing zeros, and the power of ten of its last digit.
    fn normalized(&self) -> (i128, i64) {
        let (mut m, mut e) = (self.mantissa, i64::from(self.scale));
        if m == 0 {
            return (0, 0);
        }
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        (m, e)
    }
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r == 0 {
        q
    } else {
        q + n.signum()
    }
}

fn align(m: i128, from: i32, to: i32) -> Option<i128> {
    m.checked_mul(10i128.checked_pow(u32::try_from(i64::from(from) - i64::from(to)).ok()?)?)
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// By value, exactly: the format does not count (upstream's `Cmp`).
    fn cmp(&self, other: &Quantity) -> Ordering {
        let by_sign = self.mantissa.signum().cmp(&other.mantissa.signum());
        if by_sign != Ordering::Equal || self.mantissa == 0 {
            return by_sign;
        }
        let magnitude = compare_magnitude(self.normalized(), other.normalized());
        if self.mantissa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Compares `|a| × 10^ea` with `|b| × 10^eb` (both without trailing zeros) through their
/// digits, which cannot overflow whatever the exponents.
fn compare_magnitude((a, ea): (i128, i64), (b, eb): (i128, i64)) -> Ordering {
    let (da, db) = (a.unsigned_abs().to_string(), b.unsigned_abs().to_string());
    // The power of ten of the leading digit decides first.
    let lead_a = ea + da.len() as i64;
    let lead_b = eb + db.len() as i64;
    lead_a.cmp(&lead_b).then_with(|| da.cmp(&db))
}

impl FromStr for Quantity {
    type Err = QuantityError;

    /// Upstream's `ParseQuantity`: no surrounding spaces.
    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        parse(s)
    }
}

struct Parts<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    suffix: &'a str,
}

/// Splits `[+-]?[0-9]*(.[0-9]*)?` from a suffix of `[eEinumkKMGTP]*[-+]?[0-9]*`.
fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let mut pos = 0;
    let negative = match b.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let digits_from = |p: usize| p + b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_end = digits_from(pos);
    let int = &s[pos..int_end];
    let (frac, num_end) = if b.get(int_end) == Some(&b'.') {
        let end = digits_from(int_end + 1);
        (&s[int_end + 1..end], end)
    } else {
        ("", int_end)
    };
    if int.is_empty() && frac.is_empty() {
        return Err(QuantityError::Format);
    }
    let letters_end = num_end + b[num_end..].iter().take_while(|c| b"eEinumkKMGTP".contains(c)).count();
    let signed = letters_end + usize::from(matches!(b.get(letters_end), Some(b'+' | b'-')));
    if digits_from(signed) != b.len() {
        return Err(QuantityError::Format);
    }
    Ok(Parts { negative, int, frac, suffix: &s[num_end..] })
}

/// The format, power of 1024 and power of ten a suffix stands for.
fn suffix(s: &str) -> Result<(Format, u32, i32), QuantityError> {
    let decimal = |e| Ok((Format::DecimalSi, 0, e));
    let binary = |p| Ok((Format::BinarySi, p, 0));
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
            let rest = s.strip_prefix(['e', 'E']).ok_or(QuantityError::Suffix)?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            let e = rest.parse::<i32>().map_err(|_| QuantityError::Suffix)?;
            Ok((Format::DecimalExponent, 0, e))
        }
    }
}

fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let parts = split(s)?;
    let (mut format, binary_power, exponent) = suffix(parts.suffix)?;
    let digits = format!("{}{}", parts.int, parts.frac);
    let mut digits = digits.trim_start_matches('0');
    let mut scale = i64::from(exponent) - parts.frac.len() as i64;
    // Trailing zeros go into the exponent, so long round numbers still fit.
    while let Some(d) = digits.strip_suffix('0') {
        digits = d;
        scale += 1;
    }
    if digits.is_empty() {
        return Ok(Quantity::zero(format));
    }
    // A decimal value's digits below a nano are rounded away while still text, so a long
    // fraction need not fit in the mantissa. The last digit is not zero, so something is
    // always dropped and the rest rounds up.
    let mut round_up = false;
    if binary_power == 0 && scale < i64::from(NANO) {
        let drop = usize::try_from(i64::from(NANO) - scale).unwrap_or(usize::MAX);
        digits = &digits[..digits.len().saturating_sub(drop)];
        round_up = true;
        scale = i64::from(NANO);
    }
    if digits.len() > MAX_DIGITS {
        return Err(QuantityError::TooPrecise);
    }
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| QuantityError::Format)? };
    if round_up {
        mantissa += 1;
    }
    let scale = i32::try_from(scale).map_err(|_| QuantityError::TooPrecise)?;
    let mut q = Quantity { mantissa, scale, format, written: None };
    if binary_power > 0 {
        let factor = 1024i128.pow(binary_power);
        q.mantissa = match q.mantissa.checked_mul(factor) {
            Some(m) => m,
            // Only a value far beyond the cap overflows when whole.
            None if q.scale >= 0 => MAX_BINARY,
            None => return Err(QuantityError::TooPrecise),
        };
        q = q.round_to_nano();
        if q > Quantity::new(i64::MAX, 0, format) {
            q = Quantity::new(i64::MAX, 0, format);
        }
        // There is no binary suffix below one.
        if q < Quantity::new(1, 0, format) {
            format = Format::DecimalSi;
            q.format = format;
        }
    }
    if parts.negative {
        q.mantissa = -q.mantissa;
    }
    if keeps_text(&parts, binary_power, exponent) {
        q.written = Some(s.into());
    }
    Ok(q)
}

/// Whether upstream's parser keeps the text as the quantity's printed form: its fast path
/// (at most 18 digits for decimal, fewer the larger a binary suffix) takes text already in
/// canonical shape — a decimal exponent that is a multiple of three with no leading zero or
/// trailing `000`, or a whole binary amount not divisible by 8 — and keeps it verbatim,
/// sign and all.
fn keeps_text(parts: &Parts<'_>, binary_power: u32, exponent: i32) -> bool {
    let stripped = parts.int.trim_start_matches('0');
    let num = if stripped.is_empty() { "0" } else { stripped };
    let digits = num.len() + parts.frac.len();
    let value = |shifted: &str| shifted.parse::<i64>().ok();
    if binary_power == 0 {
        let scale = i64::from(exponent) - parts.frac.len() as i64;
        let shifted = format!("{num}{}", parts.frac);
        digits <= 18
            && scale >= i64::from(NANO)
            && scale % 3 == 0
            && !shifted.ends_with("000")
            && !shifted.starts_with('0')
            && value(&shifted).is_some()
    } else {
        // Upstream estimates the digits a binary suffix adds as 3 per 10 bits.
        let suffix_digits = (binary_power * 10 * 3 / 10) as usize;
        parts.frac.is_empty()
            && num.len() + suffix_digits < 15
            && value(num).is_some_and(|v| v & 7 != 0 && v.checked_mul(1i64 << (10 * binary_power)).is_some())
    }
}

impl fmt::Display for Quantity {
    /// Upstream's `String()`: the kept text, else the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.written {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.canonical()),
        }
    }
}

impl Quantity {
    /// The canonical form: see the module documentation.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, f: &mut impl fmt::Write) -> fmt::Result {
        if self.mantissa == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySi {
            match self.as_integer() {
                // Small values read better without a binary suffix.
                Some(i) if i > -1024 && i < 1024 => format = Format::DecimalSi,
                Some(mut i) => {
                    let mut power = 0;
                    while i % 1024 == 0 && power < 6 {
                        i /= 1024;
                        power += 1;
                    }
                    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                    return write!(f, "{i}{suffix}");
                }
                // A fraction cannot be shown in binary without losing precision.
                None => format = Format::DecimalSi,
            }
        }
        let (m, mut e) = self.normalized();
        // The exponent comes down to a multiple of three, the mantissa taking the zeros (as
        // text, so it cannot overflow).
        let zeros = e.rem_euclid(3);
        e -= zeros;
        let digits = format!("{m}{}", "0".repeat(zeros as usize));
        let si = match e {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (format, si) {
            (Format::DecimalSi, Some(suffix)) => write!(f, "{digits}{suffix}"),
            // Beyond `E` decimal SI has no suffix: the exponent form keeps the value.
            (_, _) if e == 0 => write!(f, "{digits}"),
            _ => write!(f, "{digits}e{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// Written form and upstream's canonical `String()` of it, after apimachinery's
    /// quantity tests and API documentation (values of our own choosing).
    const CANONICAL: &[(&str, &str)] = &[
        ("0", "0"),
        ("0Gi", "0"),
        ("-0", "0"),
        ("0.0000", "0"),
        ("1", "1"),
        ("+5", "5"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("2000m", "2"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        ("0.5", "500m"),
        (".5", "500m"),
        ("3.", "3"),
        ("100m", "100m"),
        ("1n", "1n"),
        ("0.1n", "1n"),
        ("1.0001n", "2n"),
        ("1u", "1u"),
        ("1001u", "1001u"),
        ("12345678n", "12345678n"),
        ("5G", "5G"),
        ("2.5M", "2500k"),
        ("1P", "1P"),
        ("7E", "7E"),
        ("1000E", "1e21"),
        ("1Ki", "1Ki"),
        ("10Ki", "10Ki"),
        ("1024", "1024"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1000Mi", "1000Mi"),
        ("512Ki", "512Ki"),
        ("0.5Ki", "512"),
        ("1023", "1023"),
        ("1.1Ki", "1126400m"),
        ("0.001Ki", "1024m"),
        ("3Ei", "3Ei"),
        ("8Ei", "9223372036854775807"),
        ("100Pi", "100Pi"),
        ("1e3", "1e3"),
        ("1E3", "1e3"),
        ("1e+3", "1e3"),
        ("1e-3", "1e-3"),
        ("1E6", "1e6"),
        ("1500e0", "1500"),
        ("12e1", "120"),
        ("1.5e3", "1500"),
        ("10e-10", "1e-9"),
        ("1e-11", "1e-9"),
        ("-1.5Gi", "-1536Mi"),
        ("-100m", "-100m"),
        ("-0.1n", "-1n"),
        ("-8Ei", "-9223372036854775807"),
        ("000123", "123"),
        ("1000000000000000000000", "1e21"),
    ];

    #[test]
    fn canonical_forms_match_upstream() {
        for (input, want) in CANONICAL {
            assert_eq!(q(input).canonical(), *want, "{input}");
        }
    }

    /// Written form and upstream's `String()` of it: text its parser deems canonical is
    /// printed as written.
    const PRINTED: &[(&str, &str)] = &[
        ("+5", "+5"),
        ("1E3", "1E3"),
        ("1e+3", "1e+3"),
        ("1E6", "1E6"),
        ("3.", "3."),
        ("000123", "000123"),
        ("-100m", "-100m"),
        ("1080m", "1080m"),
        ("300e6", "300e6"),
        ("1Ki", "1Ki"),
        ("3Ki", "3Ki"),
        ("1Pi", "1Pi"),
        ("1024Mi", "1Gi"),
        ("1000Mi", "1000Mi"),
        ("1000m", "1"),
        ("0.1", "100m"),
        ("1.5", "1500m"),
        ("1500e0", "1500e0"),
        ("12e1", "120"),
        ("1e-11", "1e-9"),
        ("1000000000000000000000", "1e21"),
    ];

    #[test]
    fn printed_forms_match_upstream() {
        for (input, want) in PRINTED {
            assert_eq!(q(input).to_string(), *want, "{input}");
        }
        // Arithmetic forgets the text.
        assert_eq!(q("+5").checked_add(&q("0")).map(|s| s.to_string()), Some("5".to_string()));
    }

    #[test]
    fn malformed_input_is_refused() {
        for bad in [
            "",
            " 1",
            "1 ",
            "abc",
            "Gi",
            "+",
            ".",
            "-.",
            "1.2.3",
            "1 Gi",
            "1Qi",
            "1e",
            "1E+",
            "1K",
            "1ki",
            "1Ki3",
            "1e3Ki",
            "1m3",
            "1ee3",
            "--1",
            "1e99999999999",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("1ki".parse::<Quantity>(), Err(QuantityError::Suffix));
        assert_eq!("1Qi".parse::<Quantity>(), Err(QuantityError::Format));
        assert_eq!("1 Gi".parse::<Quantity>(), Err(QuantityError::Format));
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn values_round_away_from_zero() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.0001").milli_value(), 1001);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("-1500m").value(), -2);
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1n").value(), 1);
        assert_eq!(q("1n").scaled_value(-9), 1);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1000E").value(), i64::MAX);
        assert_eq!(q("-1000E").value(), i64::MIN);
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("5").scaled_value(3), 1);
    }

    #[test]
    fn comparisons_and_sums_are_exact() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("-999m"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("1000E") > q("1E"));
        assert_eq!(q("100m").checked_add(&q("1.9")), Some(q("2")));
        assert_eq!(q("100m").checked_add(&q("1.9")).map(|s| s.canonical()), Some("2".to_string()));
        assert_eq!(q("1Gi").checked_add(&q("512Mi")).map(|s| s.to_string()), Some("1536Mi".to_string()));
        assert_eq!(Quantity::new(1500, -3, Format::DecimalSi).to_string(), "1500m");
    }

    #[test]
    fn json_values() {
        assert_eq!(Quantity::from_json(&json!(" 2Gi ")), Some(q("2Gi")));
        assert_eq!(Quantity::from_json(&json!(2048)), Some(q("2048")));
        assert_eq!(Quantity::from_json(&json!(0.5)), Some(q("500m")));
        assert_eq!(Quantity::from_json(&json!(true)), None);
        assert_eq!(Quantity::from_json(&json!("lots")), None);
    }

    /// Any quantity upstream's grammar allows, as text.
    fn written() -> impl Strategy<Value = String> {
        "[-+]?[0-9]{0,20}(\\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3}|[numkMGTPE]|[KMGTPE]i)?"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn canonical_form_reads_back_to_the_same_value(s in written()) {
            if let Ok(a) = s.parse::<Quantity>() {
                let text = a.canonical();
                let b: Quantity = text.parse().map_err(|e| TestCaseError::fail(format!("{s} -> {text}: {e}")))?;
                prop_assert_eq!(&a, &b, "{} -> {}", s, text);
                // The canonical form is a fixed point, and prints as itself.
                prop_assert_eq!(b.canonical(), text.clone());
                prop_assert_eq!(b.to_string(), text);
                // What upstream prints reads back to the same value too.
                let printed: Quantity = a.to_string().parse().map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
                prop_assert_eq!(printed, a);
            }
        }

        #[test]
        fn order_follows_value(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000,
                               sa in -9i32..6, sb in -9i32..6) {
            let (qa, qb) = (Quantity::new(a, sa, Format::DecimalSi), Quantity::new(b, sb, Format::DecimalExponent));
            // Compare exactly in nanos (i128 holds 1e9 × 1e15 × 1e9).
            let nanos = |v: i64, s: i32| i128::from(v) * 10i128.pow((s + 9) as u32);
            prop_assert_eq!(qa.cmp(&qb), nanos(a, sa).cmp(&nanos(b, sb)));
            prop_assert_eq!(qa.canonical().parse::<Quantity>().ok(), Some(qa));
        }

        #[test]
        fn milli_value_rounds_up_positive_amounts(milli in 0i64..10_000_000_000, extra in 0u32..1000) {
            // milli thousandths plus `extra` millionths.
            let text = format!("{}.{:03}{:03}", milli / 1000, milli % 1000, extra);
            let want = if extra == 0 { milli } else { milli + 1 };
            prop_assert_eq!(q(&text).milli_value(), want);
        }
    }
}
