//! Resource quantities as the table printers show them: as upstream's `Quantity.String()`
//! prints them after decoding (`1536Mi`, `500m`, `2k`, `1e3`; text already in canonical
//! shape is kept as written), so capacity columns, quota usage and autoscaler targets read
//! as upstream's do. The parsing and printing are [`crate::domain::quantity`]'s.

use serde_json::Value;

use crate::domain::quantity::Quantity;

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

/// The canonical form of `s` (surrounding spaces allowed, as in JSON), or `None` when `s` is
/// not a quantity.
pub(crate) fn canonical_str(s: &str) -> Option<String> {
    s.trim().parse::<Quantity>().ok().map(|q| q.to_string())
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
            // Upstream prints text its parser deems canonical as written.
            ("1E6", "1E6"),
            ("1500e0", "1500e0"),
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
            ("+5", "+5"),
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
