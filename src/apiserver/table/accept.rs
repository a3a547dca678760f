//! Whether an `Accept` header asks for a Table, decided as upstream's content negotiation
//! does: media ranges are ordered by quality (ties keep their order, specific types before
//! wildcards), and the first range the server can serve wins, whether or not it asks for
//! a Table. A Table range counts only for JSON or YAML and for `meta.k8s.io` `v1` or
//! `v1beta1`; any other conversion (`as=Foo`, another group or version) is passed over.

use super::TableVersion;

/// One media range of an `Accept` header.
#[derive(Debug)]
struct Clause<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

impl Clause<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

fn parse(header: &str) -> Vec<Clause<'_>> {
    let mut clauses = Vec::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let range = pieces.next().unwrap_or("");
        let mut types = range.split('/');
        let kind = types.next().unwrap_or("").trim();
        let subtype = match (types.next(), types.next()) {
            (None, _) if kind == "*" => "*",
            (Some(sub), None) => sub.trim(),
            _ => continue,
        };
        let mut clause = Clause { kind, subtype, q: 1.0, params: Vec::new() };
        for param in pieces {
            let Some((key, value)) = param.split_once('=') else { continue };
            let key = key.trim();
            if key == "q" {
                clause.q = value.trim().parse().unwrap_or(0.0);
            } else {
                clause.params.push((key, value.trim()));
            }
        }
        clauses.push(clause);
    }
    // An insertion sort with upstream's ordering keeps equal ranges in header order.
    let before = |a: &Clause<'_>, b: &Clause<'_>| {
        a.q > b.q || (a.kind != "*" && b.kind == "*") || (a.subtype != "*" && b.subtype == "*")
    };
    for i in 1..clauses.len() {
        let mut j = i;
        while j > 0 && before(&clauses[j], &clauses[j - 1]) {
            clauses.swap(j, j - 1);
            j -= 1;
        }
    }
    clauses
}

/// Media types the API server encodes objects in.
const SERVED: &[(&str, &str)] = &[("application", "json"), ("application", "yaml")];

/// What the first servable range of `accept` asks for: `Some` for a Table (and its
/// version), `None` for the objects themselves. A missing header or one with no Table
/// range gives `None`.
pub fn wants_table(accept: &str) -> Option<TableVersion> {
    for clause in parse(accept) {
        for (kind, subtype) in SERVED {
            let matches = (clause.kind == *kind && (clause.subtype == *subtype || clause.subtype == "*"))
                || (clause.kind == "*" && clause.subtype == "*");
            if !matches {
                continue;
            }
            let target = clause.param("as")?;
            let group = clause.param("g").unwrap_or("");
            let version = clause.param("v").unwrap_or("");
            if target == "Table" && group == "meta.k8s.io" {
                match version {
                    "v1" => return Some(TableVersion::V1),
                    "v1beta1" => return Some(TableVersion::V1Beta1),
                    _ => {}
                }
            }
            // PartialObjectMetadata conversions are served as such, not as a Table.
            if matches!(target, "PartialObjectMetadata" | "PartialObjectMetadataList")
                && group == "meta.k8s.io"
                && matches!(version, "v1" | "v1beta1")
            {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectl_gets_a_v1_table() {
        assert_eq!(wants_table(KUBECTL), Some(TableVersion::V1));
        let old = "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json";
        assert_eq!(wants_table(old), Some(TableVersion::V1Beta1));
        assert_eq!(wants_table("application/yaml;as=Table;v=v1;g=meta.k8s.io"), Some(TableVersion::V1));
        assert_eq!(wants_table("application/json; as=Table; g=meta.k8s.io; v=v1"), Some(TableVersion::V1));
    }

    #[test]
    fn plain_requests_get_objects() {
        for accept in ["", "application/json", "*/*", "application/json, */*", "application/yaml"] {
            assert_eq!(wants_table(accept), None, "{accept:?}");
        }
    }

    #[test]
    fn order_and_quality_decide() {
        assert_eq!(wants_table("application/json,application/json;as=Table;v=v1;g=meta.k8s.io"), None);
        let weighted = "application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io";
        assert_eq!(wants_table(weighted), Some(TableVersion::V1));
        let beta_first =
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0.8,application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(wants_table(beta_first), Some(TableVersion::V1Beta1));
        let wildcard_first = "*/*,application/json;as=Table;v=v1;g=meta.k8s.io";
        assert_eq!(wants_table(wildcard_first), Some(TableVersion::V1));
    }

    #[test]
    fn unusable_table_ranges_are_passed_over() {
        // Protobuf is not served; an unknown version or group is no Table.
        let accept = "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v2;g=meta.k8s.io,application/json;as=Table;v=v1,application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(wants_table(accept), Some(TableVersion::V1Beta1));
        assert_eq!(wants_table("application/json;as=Table;v=v2;g=meta.k8s.io"), None);
        assert_eq!(wants_table("text/html;as=Table;v=v1;g=meta.k8s.io"), None);
        let partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io";
        assert_eq!(wants_table(partial), None);
        assert_eq!(wants_table("garbage;;;,/,a/b/c"), None);
    }
}
