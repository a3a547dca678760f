//! Name rules of apimachinery's validation — DNS-1123 labels and subdomains, DNS-1035
//! labels, qualified names (label and annotation keys), label values — and the texts upstream
//! explains a failure with.
//!
//! The predicates are upstream's: a pattern plus a length limit, checked separately so a
//! caller can report each. A subdomain is limited to 253 bytes in all, not 63 per label, as
//! upstream's regular expression is. Callers that need DNS host names (node names, TLS SANs)
//! compose [`is_dns1123_label`] per dot-separated part.

/// Longest DNS-1123 label (and DNS-1035 label, label value, qualified-name part).
pub const LABEL_MAX_LEN: usize = 63;
/// Longest DNS-1123 subdomain.
pub const SUBDOMAIN_MAX_LEN: usize = 253;

pub const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
pub const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
pub const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
pub const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
pub const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
pub const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
pub const WILDCARD_DNS1123_SUBDOMAIN_FMT: &str =
    "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
pub const WILDCARD_DNS1123_SUBDOMAIN_ERR: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character";
pub const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
pub const QUALIFIED_NAME_ERR: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
pub const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, whatever the length.
pub fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else { return false };
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Labels of [`matches_dns1123_label`] joined by dots, whatever the length.
pub fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, whatever the length.
pub fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, whatever the length: the name part of a
/// qualified name, and a non-empty label value.
pub fn matches_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else { return false };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label: namespace and service names, container names.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= LABEL_MAX_LEN && matches_dns1123_label(s)
}

/// A DNS-1123 subdomain: the names of most objects.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= SUBDOMAIN_MAX_LEN && matches_dns1123_subdomain(s)
}

/// A DNS-1035 label: a DNS-1123 label starting with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    s.len() <= LABEL_MAX_LEN && matches_dns1035_label(s)
}

/// A label value: empty, or a qualified-name part of at most 63 bytes.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= LABEL_MAX_LEN && matches_qualified_name(s))
}

/// The explanation upstream gives when a value does not match a pattern, examples included
/// (the doubled spaces between examples are upstream's).
pub fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(ex);
        s.push_str("', ");
    }
    s.push_str("regex used for validation is '");
    s.push_str(re);
    s.push_str("')");
    s
}

/// Upstream's `MaxLenError`, used for object names.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// The length error of label keys and values, which upstream counts in bytes.
pub fn max_bytes_error(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

/// Why a value is not a DNS-1123 subdomain, in upstream's words.
pub fn dns1123_subdomain_error() -> String {
    regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, &["example.com"])
}

/// Why a value is not a DNS-1123 label, in upstream's words.
pub fn dns1123_label_error() -> String {
    regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, &["my-name", "123-abc"])
}

/// Why a value is not a DNS-1035 label, in upstream's words.
pub fn dns1035_label_error() -> String {
    regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, &["my-name", "abc-123"])
}

/// Why a host is not a wildcard DNS-1123 subdomain, in upstream's words.
pub fn wildcard_dns1123_subdomain_error() -> String {
    regex_error(WILDCARD_DNS1123_SUBDOMAIN_ERR, WILDCARD_DNS1123_SUBDOMAIN_FMT, &["*.example.com"])
}

/// Why a name part is not a qualified name, in upstream's words.
pub fn qualified_name_error() -> String {
    regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
}

/// Why a non-empty value is not a label value, in upstream's words.
pub fn label_value_error() -> String {
    regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"])
}

/// Upstream's `IsDNS1123Subdomain`: why `value` is not a subdomain; empty when it is one.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > SUBDOMAIN_MAX_LEN {
        errs.push(max_len_error(SUBDOMAIN_MAX_LEN));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(dns1123_subdomain_error());
    }
    errs
}

/// Why `key` is not a valid label key (an optional DNS-subdomain prefix and `/`, then a name
/// of at most 63 bytes), as upstream's `IsQualifiedName`; empty when it is valid.
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > SUBDOMAIN_MAX_LEN {
                    errs.push(format!("prefix part {}", max_bytes_error(SUBDOMAIN_MAX_LEN)));
                }
                if !matches_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {}", dns1123_subdomain_error()));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                qualified_name_error()
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_MAX_LEN {
        errs.push(format!("name part {}", max_bytes_error(LABEL_MAX_LEN)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!("name part {}", qualified_name_error()));
    }
    errs
}

/// Why `value` is not a valid label value (empty, or at most 63 bytes of the qualified-name
/// alphabet); empty when it is valid.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_MAX_LEN {
        errs.push(max_bytes_error(LABEL_MAX_LEN));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(label_value_error());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "0", "a-b", "123-abc", &"x".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "é", &"x".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(matches_dns1123_label(&"x".repeat(64)));
    }

    #[test]
    fn dns1123_subdomains_limit_the_whole_not_each_label() {
        for ok in ["a", "a.b-c", "example.com", "1.2.3.4", &format!("{}.x", "l".repeat(64)), &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "A.b", "a_b", "a.-b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn dns1035_labels_start_with_a_letter() {
        assert!(is_dns1035_label("my-name"));
        assert!(!is_dns1035_label("1abc"));
        assert!(!is_dns1035_label(""));
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "a.b_c-d", "MyValue", &"v".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
            assert!(label_value_errors(ok).is_empty(), "{ok}");
        }
        assert!(!is_label_value("-bad"));
        assert_eq!(label_value_errors(&"v".repeat(64)), vec!["must be no more than 63 bytes".to_string()]);
        assert_eq!(label_value_errors("a b").len(), 1);
        assert!(label_value_errors("_a")[0]
            .contains("regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'"));
    }

    #[test]
    fn label_keys() {
        for ok in ["a", "app", "app.kubernetes.io/name", "k8s.io/x_y-z.1", "A1", &"x".repeat(63)] {
            assert!(label_key_errors(ok).is_empty(), "{ok}: {:?}", label_key_errors(ok));
        }
        assert_eq!(label_key_errors("/a"), vec!["prefix part must be non-empty".to_string()]);
        let e = label_key_errors("Example.com/a");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("prefix part a lowercase RFC 1123 subdomain"), "{e:?}");
        let e = label_key_errors("a/b/c");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a valid label key must consist of"), "{e:?}");
        assert!(e[0].ends_with("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        let e = label_key_errors("");
        assert_eq!(e[0], "name part must be non-empty");
        assert_eq!(e.len(), 2);
        assert_eq!(label_key_errors(&"x".repeat(64)), vec!["name part must be no more than 63 bytes".to_string()]);
        assert_eq!(
            label_key_errors("-a"),
            vec!["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()]
        );
    }

    #[test]
    fn messages_are_upstreams() {
        assert_eq!(
            dns1123_subdomain_error(),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            dns1123_label_error(),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(
            dns1035_label_error(),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
        assert_eq!(
            wildcard_dns1123_subdomain_error(),
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        let long = "a".repeat(254);
        assert_eq!(dns1123_subdomain_errors(&long), vec!["must be no more than 253 characters".to_string()]);
        assert_eq!(dns1123_subdomain_errors("A").len(), 1);
        assert!(dns1123_subdomain_errors("a.b").is_empty());
    }
}
