//! How Go's `%v` prints decoded JSON, and the Go type names upstream's strategic-merge
//! errors mention: error texts quote values this way, and clients match on them.

use serde_json::Value;

/// Go's `%v` of a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`, numbers without quotes.
pub fn go_v(v: &Value) -> String {
    let mut s = String::new();
    write_v(&mut s, v);
    s
}

fn write_v(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_v(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                if let Some(x) = m.get(k) {
                    write_v(out, x);
                }
            }
            out.push(']');
        }
    }
}

/// Integers as integers; other numbers as Go's `%v` of a float64 (exponent form outside
/// 1e-4 ≤ |x| < 1e21).
fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        // Rust writes 1e21 and 1e-7; Go writes 1e+21 and 1e-07.
        let e = format!("{f:e}");
        match e.split_once('e') {
            Some((mant, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mant}e{sign}{digits:0>2}")
            }
            None => e,
        }
    } else {
        f.to_string()
    }
}

/// The Go type a decoded JSON value has in upstream's patch code (which keeps integers as
/// int64).
pub fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_like_go() {
        assert_eq!(go_v(&json!({"b": [1, "x"], "a": null, "c": {"d": true}})), "map[a:<nil> b:[1 x] c:map[d:true]]");
        assert_eq!(go_v(&json!(1.5)), "1.5");
        assert_eq!(go_v(&json!(1e21)), "1e+21");
        assert_eq!(go_v(&json!(0.00001)), "1e-05");
        assert_eq!(go_type(&json!(1)), "int64");
        assert_eq!(go_type(&json!(1.0)), "float64");
    }
}
