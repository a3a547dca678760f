//! Canary routing: an Ingress annotated `ingress.k3rs.io/canary: "true"` lends its backend
//! to the route of another Ingress with the same host and path, for a share of requests.
//! The annotations and the decision are ingress-nginx's (`nginx.ingress.kubernetes.io/canary-*`)
//! under k3rs' prefix: a header first, then a cookie, then the weight.

use std::collections::BTreeMap;

/// The prefix of k3rs' ingress annotations.
pub const ANNOTATION_PREFIX: &str = "ingress.k3rs.io/";

/// The full name of the annotation `name` (e.g. `canary-weight`).
pub fn annotation(name: &str) -> String {
    format!("{ANNOTATION_PREFIX}{name}")
}

/// When a request goes to the canary.
#[derive(Clone, Debug)]
pub struct CanaryPolicy {
    /// A request header that decides: `always`, `never`, or a value / pattern to match.
    pub header: Option<String>,
    pub header_value: Option<String>,
    pub header_pattern: Option<regex::Regex>,
    /// A cookie that decides: `always` or `never`.
    pub cookie: Option<String>,
    /// Share of the remaining requests, out of `weight_total`.
    pub weight: u32,
    pub weight_total: u32,
}

impl CanaryPolicy {
    /// Reads the `canary-*` annotations; a value that does not parse is an error naming it.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Result<CanaryPolicy, String> {
        let get = |name: &str| annotations.and_then(|a| a.get(&annotation(name))).filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<Option<u32>, String> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("annotation {}: {v:?} is not a whole number", annotation(name)))
                })
                .transpose()
        };
        let weight_total = number("canary-weight-total")?.unwrap_or(100).max(1);
        let weight = number("canary-weight")?.unwrap_or(0);
        if weight > weight_total {
            return Err(format!(
                "annotation {}: {weight} is more than the total {weight_total}",
                annotation("canary-weight")
            ));
        }
        let header_pattern = get("canary-by-header-pattern")
            .map(|p| {
                regex::Regex::new(p).map_err(|e| format!("annotation {}: {e}", annotation("canary-by-header-pattern")))
            })
            .transpose()?;
        Ok(CanaryPolicy {
            header: get("canary-by-header").cloned(),
            header_value: get("canary-by-header-value").cloned(),
            header_pattern,
            cookie: get("canary-by-cookie").cloned(),
            weight,
            weight_total,
        })
    }

    /// Whether a request goes to the canary. `header` and `cookie` look up the request's
    /// header and cookie by name; `roll` is a number drawn uniformly from
    /// `1..=weight_total`.
    pub fn choose<'r>(
        &self,
        header: impl Fn(&str) -> Option<&'r str>,
        cookie: impl Fn(&str) -> Option<&'r str>,
        roll: u32,
    ) -> bool {
        if let Some(v) = self.header.as_deref().and_then(&header) {
            if let Some(want) = &self.header_value {
                if v == want {
                    return true;
                }
            } else if let Some(p) = &self.header_pattern {
                if p.is_match(v) {
                    return true;
                }
            } else if v == "always" {
                return true;
            } else if v == "never" {
                return false;
            }
        }
        if let Some(v) = self.cookie.as_deref().and_then(&cookie) {
            if v == "always" {
                return true;
            } else if v == "never" {
                return false;
            }
        }
        roll <= self.weight
    }
}

/// The value of cookie `name` in a `Cookie` header's value.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<CanaryPolicy, String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (annotation(k), v.to_string())).collect();
        CanaryPolicy::from_annotations(Some(&map))
    }

    fn none(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn weight_is_a_share_of_the_total() {
        let p = policy(&[("canary-weight", "20")]).expect("valid");
        assert_eq!((p.weight, p.weight_total), (20, 100));
        let chosen = (1..=100).filter(|r| p.choose(none, none, *r)).count();
        assert_eq!(chosen, 20);
        let p = policy(&[("canary-weight", "1"), ("canary-weight-total", "1000")]).expect("valid");
        assert_eq!((1..=1000).filter(|r| p.choose(none, none, *r)).count(), 1);
        let p = policy(&[]).expect("valid");
        assert!(!(1..=100).any(|r| p.choose(none, none, r)));
        assert!(policy(&[("canary-weight", "x")]).unwrap_err().contains("canary-weight"));
        assert!(policy(&[("canary-weight", "101")]).is_err());
        assert!(policy(&[("canary-by-header-pattern", "(")]).is_err());
    }

    #[test]
    fn header_beats_cookie_beats_weight() {
        let p = policy(&[("canary-weight", "100"), ("canary-by-header", "X-Canary"), ("canary-by-cookie", "c")])
            .expect("valid");
        let hdr = |v: &'static str| move |n: &str| (n == "X-Canary").then_some(v);
        let ck = |v: &'static str| move |n: &str| (n == "c").then_some(v);
        assert!(!p.choose(hdr("never"), ck("always"), 1));
        assert!(p.choose(hdr("always"), ck("never"), 1));
        assert!(!p.choose(none, ck("never"), 1));
        assert!(p.choose(none, ck("always"), 1));
        // Other values fall through to the weight.
        assert!(p.choose(hdr("maybe"), ck("maybe"), 100));
        let p = policy(&[("canary-weight", "0"), ("canary-by-header", "X-Canary")]).expect("valid");
        assert!(p.choose(hdr("always"), none, 1));
        assert!(!p.choose(hdr("yes"), none, 1));
    }

    #[test]
    fn header_value_and_pattern() {
        let p = policy(&[("canary-by-header", "X-Region"), ("canary-by-header-value", "eu")]).expect("valid");
        let hdr = |v: &'static str| move |n: &str| (n == "X-Region").then_some(v);
        assert!(p.choose(hdr("eu"), none, 1));
        assert!(!p.choose(hdr("us"), none, 1));
        // With a value set, "always" is just another value.
        assert!(!p.choose(hdr("always"), none, 1));
        let p = policy(&[("canary-by-header", "X-Region"), ("canary-by-header-pattern", "^eu-.*")]).expect("valid");
        assert!(p.choose(hdr("eu-west"), none, 1));
        assert!(!p.choose(hdr("us-east"), none, 1));
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie_value("a=1; canary=always; b=2", "canary"), Some("always"));
        assert_eq!(cookie_value("a=1", "canary"), None);
        assert_eq!(cookie_value("", "canary"), None);
        assert_eq!(cookie_value("canary", "canary"), None);
    }
}
