//! The documents themselves: the Swagger 2.0 document of everything (JSON and gnostic
//! protobuf), the OpenAPI 3.0 document of each group version, and the `/openapi/v3` index
//! pointing at each with its hash. Each is rendered once, on first use, and kept.
//!
//! The hash of a document is what upstream uses as its ETag and in `?hash=`: the SHA-512 of
//! its JSON bytes in upper-case hex. The v2 protobuf shares the JSON's ETag (responses vary
//! on `Accept`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::paths::{self, prefix};
use super::schemas::{self, Definitions};
use super::{proto, OpenApiError};
use crate::apiserver::discovery;

/// A rendered document.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The body.
    pub body: Bytes,
    /// Upper-case hex SHA-512 of the JSON form (without quotes).
    pub etag: Arc<str>,
    /// When it was rendered, for `Last-Modified`.
    pub rendered_at: SystemTime,
}

/// Upper-case hex SHA-512, as upstream's handlers compute ETags and hashes.
pub fn hash(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA512, data);
    let mut out = String::with_capacity(128);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn rendered(body: Vec<u8>) -> Rendered {
    let etag = hash(&body);
    Rendered { body: Bytes::from(body), etag: Arc::from(etag), rendered_at: SystemTime::now() }
}

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": discovery::git_version() })
}

/// `group/version` of every served group version as it appears in v3 paths: `api/v1`,
/// `apis/apps/v1`, ...
pub fn v3_group_versions() -> Vec<String> {
    discovery::groups()
        .iter()
        .flat_map(|g| g.versions.iter())
        .map(|gv| prefix(gv.group, gv.version).trim_start_matches('/').to_string())
        .collect()
}

fn load() -> Result<Definitions, OpenApiError> {
    Definitions::load()
}

/// The Swagger 2.0 JSON document.
pub fn build_v2(defs: &Definitions) -> Result<Vec<u8>, OpenApiError> {
    let mut paths = Map::new();
    for item in paths::all_paths(defs) {
        paths.insert(item.path.clone(), item.v2());
    }
    let definitions: Map<String, Value> =
        defs.schemas.iter().map(|(name, schema)| (name.clone(), schemas::to_v2(Some(name), schema))).collect();
    let doc = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
                "description": "Bearer token authentication",
            },
        },
        "security": [{ "BearerToken": [] }],
    });
    serde_json::to_vec(&doc).map_err(|e| OpenApiError::EncodeFailed(format!("the v2 document: {e}")))
}

/// The OpenAPI 3.0 JSON document of one group version (`api/v1`, `apis/apps/v1`), or
/// `None` when it is not served.
pub fn build_v3(defs: &Definitions, group_version: &str) -> Result<Option<Vec<u8>>, OpenApiError> {
    let Some(gv) = discovery::groups()
        .iter()
        .flat_map(|g| g.versions.iter())
        .find(|gv| prefix(gv.group, gv.version).trim_start_matches('/') == group_version)
    else {
        return Ok(None);
    };
    let items = paths::group_version_paths(defs, gv);
    let mut paths = Map::new();
    for item in &items {
        paths.insert(item.path.clone(), item.v3());
    }
    // The kinds of the group version are described even when no path returns them (a kind
    // whose only operation is `create` still names its list), as are the generic bodies.
    let kind_defs: Vec<&str> = defs
        .kinds
        .iter()
        .filter(|k| k.group == gv.group && k.version == gv.version)
        .map(|k| k.definition.as_str())
        .collect();
    let roots = items.iter().flat_map(|i| i.definitions()).chain(kind_defs).chain([
        schemas::DELETE_OPTIONS,
        schemas::STATUS,
        schemas::WATCH_EVENT,
    ]);
    let components: Map<String, Value> =
        defs.closure(roots).into_iter().filter_map(|name| defs.schemas.get(&name).map(|s| (name, s.clone()))).collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{ "BearerToken": [] }],
    });
    serde_json::to_vec(&doc)
        .map(Some)
        .map_err(|e| OpenApiError::EncodeFailed(format!("the {group_version} document: {e}")))
}

/// The `/openapi/v3` index and the hash of each group version's document.
type V3Index = (Rendered, BTreeMap<String, String>);

/// The rendered documents of the process, made on first use.
pub(crate) struct Cache {
    /// The protobuf form: what client-go asks for, so what is kept.
    v2_protobuf: OnceLock<Result<Rendered, OpenApiError>>,
    /// The JSON form, kept only once asked for.
    v2_json: OnceLock<Result<Rendered, OpenApiError>>,
    v3_hashes: OnceLock<Result<V3Index, OpenApiError>>,
    v3_docs: Mutex<BTreeMap<String, Rendered>>,
}

pub(crate) static CACHE: Cache = Cache {
    v2_protobuf: OnceLock::new(),
    v2_json: OnceLock::new(),
    v3_hashes: OnceLock::new(),
    v3_docs: Mutex::new(BTreeMap::new()),
};

impl Cache {
    /// The v2 document as JSON.
    pub fn v2_json(&self) -> Result<&Rendered, OpenApiError> {
        self.v2_json.get_or_init(|| Ok(rendered(build_v2(&load()?)?))).as_ref().map_err(Clone::clone)
    }

    /// The v2 document in protobuf, with the ETag of its JSON form (rendering the JSON to
    /// hash it, without keeping it).
    pub fn v2_protobuf(&self) -> Result<&Rendered, OpenApiError> {
        self.v2_protobuf
            .get_or_init(|| {
                let json = build_v2(&load()?)?;
                let pb = proto::encode_v2(&json)?;
                tracing::debug!(json = json.len(), protobuf = pb.len(), "rendered the OpenAPI v2 document");
                Ok(Rendered { body: Bytes::from(pb), etag: Arc::from(hash(&json)), rendered_at: SystemTime::now() })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The `/openapi/v3` index and the hash of every group version's document. Computing
    /// the hashes renders every document; only their hashes are kept (the documents are
    /// kept once asked for).
    pub fn v3_index(&self) -> Result<&V3Index, OpenApiError> {
        self.v3_hashes
            .get_or_init(|| {
                let defs = load()?;
                let mut hashes = BTreeMap::new();
                for gv in v3_group_versions() {
                    if let Some(doc) = build_v3(&defs, &gv)? {
                        hashes.insert(gv, hash(&doc));
                    }
                }
                let index = index_json(&hashes)?;
                Ok((rendered(index), hashes))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The document of one group version, or `None` when it is not served.
    pub fn v3(&self, group_version: &str) -> Result<Option<Rendered>, OpenApiError> {
        if let Some(r) = self.v3_docs.lock().map_err(|_| OpenApiError::Poisoned)?.get(group_version) {
            return Ok(Some(r.clone()));
        }
        let defs = load()?;
        let Some(doc) = build_v3(&defs, group_version)? else { return Ok(None) };
        let r = rendered(doc);
        self.v3_docs.lock().map_err(|_| OpenApiError::Poisoned)?.insert(group_version.to_string(), r.clone());
        Ok(Some(r))
    }
}

/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}`.
fn index_json(hashes: &BTreeMap<String, String>) -> Result<Vec<u8>, OpenApiError> {
    let paths: Map<String, Value> = hashes
        .iter()
        .map(|(gv, h)| (gv.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{gv}?hash={h}") })))
        .collect();
    serde_json::to_vec(&json!({ "paths": paths })).map_err(|e| OpenApiError::EncodeFailed(format!("the v3 index: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Definitions {
        match Definitions::load() {
            Ok(d) => d,
            Err(e) => panic!("loading the embedded definitions: {e}"),
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("document is not JSON: {e}"))
    }

    #[test]
    fn hash_is_upper_hex_sha512() {
        let h = hash(b"abc");
        assert_eq!(h.len(), 128);
        assert!(h.starts_with("DDAF35A193617ABACC417349AE204131"), "{h}");
    }

    #[test]
    fn v3_documents_are_self_contained() {
        let d = defs();
        for gv in v3_group_versions() {
            let doc = build_v3(&d, &gv).ok().flatten().unwrap_or_else(|| panic!("{gv} not rendered"));
            let doc = parse(&doc);
            assert_eq!(doc["openapi"], "3.0.0");
            let components = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
            schemas::collect_refs(&doc, &mut |r| assert!(components.contains_key(r), "{gv}: dangling {r}"));
        }
        assert!(build_v3(&d, "apis/apps/v1beta1").ok().flatten().is_none());
        assert!(build_v3(&d, "apis/nope/v1").ok().flatten().is_none());
    }

    #[test]
    fn apps_document_describes_deployments() {
        let d = defs();
        let doc = parse(&build_v3(&d, "apis/apps/v1").ok().flatten().unwrap_or_default());
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment["x-kubernetes-group-version-kind"], json!([schemas::gvk("apps", "v1", "Deployment")]));
        // Pod templates come along, with their patch metadata.
        let containers = &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object());
        // Kinds of other group versions do not claim a GVK here.
        assert!(doc["components"]["schemas"].get("io.k8s.api.core.v1.Pod").is_none());
    }

    #[test]
    fn v2_document_has_everything() {
        let d = defs();
        let doc = parse(&build_v2(&d).unwrap_or_default());
        assert_eq!(doc["swagger"], "2.0");
        let defs_v2 = doc["definitions"].as_object().cloned().unwrap_or_default();
        assert!(defs_v2.contains_key("io.k8s.api.apps.v1.Deployment"));
        assert!(defs_v2.contains_key("io.k8s.api.core.v1.PodList"));
        let text = String::from_utf8(build_v2(&d).unwrap_or_default()).unwrap_or_default();
        assert!(!text.contains("#/components/"), "v2 must only reference #/definitions/");
        // Swagger 2.0 clients ignore allOf: described references are plain `$ref`s (the
        // protobuf encoder refuses any keyword it has no field for, allOf included).
        assert!(super::proto::encode_v2(&build_v2(&d).unwrap_or_default()).is_ok());
        let strategy = &doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy");
        assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["consumes"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("application/strategic-merge-patch+json"))));
    }

    #[test]
    fn index_points_at_hashed_documents() {
        let (index, hashes) = match CACHE.v3_index() {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        let index = parse(&index.body);
        let apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap_or_default();
        let doc = CACHE.v3("apis/apps/v1").ok().flatten().unwrap_or_else(|| panic!("no apps/v1"));
        assert_eq!(apps, format!("/openapi/v3/apis/apps/v1?hash={}", doc.etag));
        assert_eq!(hashes.get("apis/apps/v1").map(String::as_str), Some(&*doc.etag));
        assert!(index["paths"]["api/v1"].is_object());
        assert_eq!(index["paths"].as_object().map(|p| p.len()), Some(v3_group_versions().len()));
    }
}
