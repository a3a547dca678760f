//! What an `Accept` header asks a resource request to be answered with, decided as
//! upstream's content negotiation does: media ranges are ordered by quality (ties keep
//! their order, specific types before wildcards), and the first range the server can serve
//! wins. A range may ask for a conversion (`as`, `g`, `v`): a Table (JSON or YAML only), or
//! a PartialObjectMetadata or PartialObjectMetadataList, each in `meta.k8s.io` `v1` or
//! `v1beta1`; a range asking for any other conversion is passed over. When no range can be
//! served the answer is 406.
//!
//! Protobuf ranges count as servable for the objects themselves and their metadata, as
//! before: k3rs answers them in JSON, which clients decode by the answer's Content-Type.

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

/// Media types the API server negotiates (see the module documentation for protobuf).
const SERVED: &[(&str, &str)] =
    &[("application", "json"), ("application", "yaml"), ("application", "vnd.kubernetes.protobuf")];

/// What a response carries: the object itself or one of the `meta.k8s.io` conversions,
/// with the `meta.k8s.io` version it is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Object,
    Table(TableVersion),
    /// The object's metadata only (`PartialObjectMetadata`).
    Metadata(TableVersion),
    /// A list's items' metadata only (`PartialObjectMetadataList`).
    MetadataList(TableVersion),
}

/// No range of an `Accept` header can be served: upstream's 406 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf")]
pub struct NotAcceptable;

/// What `accept` asks for (see the module documentation); a missing or empty header asks
/// for the object.
pub fn negotiate(accept: Option<&str>) -> Result<Output, NotAcceptable> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Output::Object) };
    for clause in parse(accept) {
        for (kind, subtype) in SERVED {
            let matches = (clause.kind == *kind && (clause.subtype == *subtype || clause.subtype == "*"))
                || (clause.kind == "*" && clause.subtype == "*");
            if !matches {
                continue;
            }
            let (target, group, version) = (clause.param("as"), clause.param("g"), clause.param("v"));
            if target.is_none() && group.is_none() && version.is_none() {
                return Ok(Output::Object);
            }
            let version = match (group, version) {
                (Some("meta.k8s.io"), Some("v1")) => TableVersion::V1,
                (Some("meta.k8s.io"), Some("v1beta1")) => TableVersion::V1Beta1,
                _ => continue,
            };
            match target {
                Some("Table") if *subtype != "vnd.kubernetes.protobuf" => return Ok(Output::Table(version)),
                Some("PartialObjectMetadata") => return Ok(Output::Metadata(version)),
                Some("PartialObjectMetadataList") => return Ok(Output::MetadataList(version)),
                _ => {}
            }
        }
    }
    Err(NotAcceptable)
}

/// Whether `accept` picks a Table, and in which version (see [`negotiate`]).
pub fn wants_table(accept: &str) -> Option<TableVersion> {
    match negotiate(Some(accept)) {
        Ok(Output::Table(v)) => Some(v),
        _ => None,
    }
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
    fn metadata_conversions_and_406() {
        let v1 = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(v1)), Ok(Output::Metadata(TableVersion::V1)));
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1";
        assert_eq!(negotiate(Some(list)), Ok(Output::MetadataList(TableVersion::V1Beta1)));
        // client-go's metadata client: protobuf first, then JSON, then the plain object.
        let client_go = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(negotiate(Some(client_go)), Ok(Output::MetadataList(TableVersion::V1)));
        // An unsupported group or version is passed over; with nothing else, 406.
        for bad in [
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
            "application/json;as=PartialObjectMetadata;g=example.com;v=v1",
            "application/json;as=PartialObjectMetadata",
            "application/json;as=Pod;g=meta.k8s.io;v=v1",
            "text/html",
        ] {
            assert_eq!(negotiate(Some(bad)), Err(NotAcceptable), "{bad}");
        }
        let fallback = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2, application/json";
        assert_eq!(negotiate(Some(fallback)), Ok(Output::Object));
        assert_eq!(negotiate(None), Ok(Output::Object));
        assert_eq!(negotiate(Some("")), Ok(Output::Object));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), Ok(Output::Object));
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
