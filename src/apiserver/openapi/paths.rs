//! The REST operations of every served resource, as the `paths` of the OpenAPI documents:
//! list, create, delete-collection, read, replace, patch and delete of each resource, and the
//! read/replace/patch or create operations of its subresources, each with the
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions clients key on.
//!
//! kubectl reads two things here: whether a kind's PATCH operation takes the
//! `fieldValidation` parameter (then it leaves field validation to the server) and whether it
//! accepts `application/strategic-merge-patch+json` (then `kubectl apply` sends a strategic
//! merge patch computed from the definitions' patch extensions). Streaming and proxy
//! subresources (`exec`, `attach`, `portforward`, `proxy`, `log`) and the deprecated
//! `/watch/` paths are not described.

use serde_json::{json, Map, Value};

use super::schemas::{gvk, Definitions, API_RESOURCE_LIST, DELETE_OPTIONS, PATCH, STATUS, V3_REF_PREFIX};
use crate::apiserver::discovery::{self, GroupVersionInfo, ResourceInfo, SubresourceInfo};

/// Whether PATCH accepts server-side apply (`application/apply-patch+yaml`). The API server
/// answers 415 to apply patches until server-side apply is built; the documents say so.
pub const SERVER_SIDE_APPLY: bool = false;

/// Media types of request bodies (create, replace) the server decodes.
const CONSUMES: &[&str] = &["application/json", "application/yaml"];
/// Media types of responses.
const PRODUCES: &[&str] = &["application/json", "application/yaml"];
/// Media types of list responses, watches included.
const PRODUCES_LIST: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];

const PATCH_TYPES: &[&str] =
    &["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];
const APPLY_PATCH_TYPE: &str = "application/apply-patch+yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Path,
    Query,
}

/// A non-body parameter.
#[derive(Debug, Clone, Copy)]
struct Param {
    name: &'static str,
    location: In,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param { name, location: In::Query, ty, description }
}

const NAME: Param = Param { name: "name", location: In::Path, ty: "string", description: "" };
const NAMESPACE: Param = Param {
    name: "namespace",
    location: In::Path,
    ty: "string",
    description: "The namespace of the object: the scope of names and of access rules.",
};
const PRETTY: Param = query("pretty", "string", "If 'true', the output is indented for reading.");
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, the change is validated and defaulted but not stored. The only valid value is 'All'.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "The name of the actor making the change, recorded in managedFields: at most 128 printable characters.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "What to do with fields of the body the schema does not know, or that appear twice: 'Ignore' drops them \
     silently, 'Warn' drops them and returns a warning header for each, 'Strict' fails the request with a \
     BadRequest naming every one of them.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Server-side apply only: take ownership of fields other managers own instead of failing with a conflict.",
);
const GRACE_PERIOD: Param = query(
    "gracePeriodSeconds",
    "integer",
    "Seconds the object has before it is deleted; 0 deletes at once; unset uses the kind's default.",
);
const IGNORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "Delete an object the server cannot read or decode, skipping finalizers and checks: use with care.",
);
const ORPHAN: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated in favour of propagationPolicy: if true, dependents are orphaned rather than deleted.",
);
const PROPAGATION: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how dependents are garbage collected: 'Orphan', 'Background' or 'Foreground'.",
);
const ALLOW_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    "boolean",
    "Watch only: the server may send BOOKMARK events carrying a resourceVersion.",
);
const CONTINUE: Param =
    query("continue", "string", "The token a previous, limited list returned, to get the next chunk of results.");
const FIELD_SELECTOR: Param =
    query("fieldSelector", "string", "Only objects whose fields match, e.g. 'metadata.name=x'.");
const LABEL_SELECTOR: Param =
    query("labelSelector", "string", "Only objects whose labels match, e.g. 'app=web,tier!=db'.");
const LIMIT: Param = query(
    "limit",
    "integer",
    "The most objects to return; when more remain, the list's metadata carries a continue token.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    "string",
    "Which state to read: unset for the latest, '0' for any cached one, or a version the result must not be older than.",
);
const RESOURCE_VERSION_MATCH: Param =
    query("resourceVersionMatch", "string", "How resourceVersion applies to a list: 'NotOlderThan' or 'Exact'.");
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    "boolean",
    "Watch only: start the watch with an ADDED event for every existing object, then a bookmark.",
);
const TIMEOUT: Param = query("timeoutSeconds", "integer", "How long a list or watch call may last, in seconds.");
const WATCH: Param = query("watch", "boolean", "Stream the changes to the listed objects instead of listing them.");

const LIST_PARAMS: &[Param] = &[
    ALLOW_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT,
    WATCH,
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[DRY_RUN, GRACE_PERIOD, IGNORE_READ_ERROR, ORPHAN, PROPAGATION];
const DELETE_COLLECTION_PARAMS: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD,
    IGNORE_READ_ERROR,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN,
    PROPAGATION,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT,
];

/// The body of an operation.
#[derive(Debug, Clone)]
struct Body {
    definition: String,
    media_types: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct Operation {
    method: &'static str,
    id: String,
    description: String,
    action: &'static str,
    gvk: Option<(String, String, String)>,
    params: &'static [Param],
    body: Option<Body>,
    /// Status codes and the definition each returns.
    responses: Vec<(u16, String)>,
    produces: &'static [&'static str],
}

/// The operations under one path.
#[derive(Debug, Clone)]
pub(crate) struct PathItem {
    pub path: String,
    name_description: Option<String>,
    namespaced: bool,
    tag: String,
    operations: Vec<Operation>,
}

/// `Apps`, `RbacAuthorization`, `Core`: a group as upstream spells it in operation ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_string();
    }
    group.trim_end_matches(".k8s.io").split('.').map(capitalize).collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `apps_v1`, `rbacAuthorization_v1`, `core_v1`.
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut c = camel.chars();
    let lower: String = match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn gvk_of(defs: &Definitions, group: &str, version: &str, kind: &str) -> Option<(String, String, String, String)> {
    defs.kind(group, version, kind).map(|k| (k.group.clone(), k.version.clone(), k.kind.clone(), k.definition.clone()))
}

/// Every path of one group version: its discovery document and its resources.
pub(crate) fn group_version_paths(defs: &Definitions, gv: &GroupVersionInfo) -> Vec<PathItem> {
    let ids = format!("{}{}", group_camel(gv.group), capitalize(gv.version));
    let tag = tag(gv.group, gv.version);
    let mut out = vec![PathItem {
        path: format!("{}/", prefix(gv.group, gv.version)),
        name_description: None,
        namespaced: false,
        tag: tag.clone(),
        operations: vec![Operation {
            method: "get",
            id: format!("get{ids}APIResources"),
            description: "get available resources".to_string(),
            action: "get",
            gvk: None,
            params: &[],
            body: None,
            responses: vec![(200, API_RESOURCE_LIST.to_string())],
            produces: &["application/json"],
        }],
    }];
    for r in gv.resources() {
        resource_paths(defs, r, &ids, &tag, &mut out);
    }
    out
}

fn resource_paths(defs: &Definitions, r: &ResourceInfo, ids: &str, tag: &str, out: &mut Vec<PathItem>) {
    let Some((g, v, k, definition)) = gvk_of(defs, r.group, r.version, r.kind) else {
        tracing::warn!(kind = r.kind, group = r.group, "no definition for a served kind: left out of OpenAPI");
        return;
    };
    let prefix = prefix(r.group, r.version);
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let base = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let this_gvk = Some((g.clone(), v.clone(), k.clone()));
    let list = gvk_of(defs, r.group, r.version, &r.list_kind());
    let kind = r.kind;

    // Every operation of the resource, lists included, names the resource's kind (the list
    // kind is only its response): kubectl explain takes the kind from any of its paths.
    let mut collection = Vec::new();
    if let (true, Some((_, _, _, ldef))) = (r.supports("list"), list.clone()) {
        collection.push(Operation {
            method: "get",
            id: format!("list{ids}{scope}{kind}"),
            description: format!("list or watch objects of kind {kind}"),
            action: "list",
            gvk: this_gvk.clone(),
            params: LIST_PARAMS,
            body: None,
            responses: vec![(200, ldef)],
            produces: PRODUCES_LIST,
        });
    }
    if r.supports("create") {
        collection.push(create(format!("create{ids}{scope}{kind}"), kind, &this_gvk, &definition));
    }
    if r.supports("deletecollection") {
        collection.push(Operation {
            method: "delete",
            id: format!("delete{ids}Collection{scope}{kind}"),
            description: format!("delete collection of {kind}"),
            action: "deletecollection",
            gvk: this_gvk.clone(),
            params: DELETE_COLLECTION_PARAMS,
            body: Some(Body { definition: DELETE_OPTIONS.to_string(), media_types: vec!["*/*"] }),
            responses: vec![(200, STATUS.to_string())],
            produces: PRODUCES,
        });
    }
    if !collection.is_empty() {
        out.push(PathItem {
            path: base.clone(),
            name_description: None,
            namespaced: r.namespaced,
            tag: tag.to_string(),
            operations: collection,
        });
    }
    if let (true, true, Some((_, _, _, ldef))) = (r.namespaced, r.supports("list"), list) {
        out.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            name_description: None,
            namespaced: false,
            tag: tag.to_string(),
            operations: vec![Operation {
                method: "get",
                id: format!("list{ids}{kind}ForAllNamespaces"),
                description: format!("list or watch objects of kind {kind}"),
                action: "list",
                gvk: this_gvk.clone(),
                params: LIST_PARAMS,
                body: None,
                responses: vec![(200, ldef)],
                produces: PRODUCES_LIST,
            }],
        });
    }

    let mut item = Vec::new();
    if r.supports("get") {
        item.push(read(format!("read{ids}{scope}{kind}"), kind, &this_gvk, &definition));
    }
    if r.supports("update") {
        item.push(replace(format!("replace{ids}{scope}{kind}"), kind, &this_gvk, &definition));
    }
    if r.supports("patch") {
        item.push(patch(format!("patch{ids}{scope}{kind}"), kind, &this_gvk, &definition));
    }
    if r.supports("delete") {
        item.push(Operation {
            method: "delete",
            id: format!("delete{ids}{scope}{kind}"),
            description: format!("delete a {kind}"),
            action: "delete",
            gvk: this_gvk.clone(),
            params: DELETE_PARAMS,
            body: Some(Body { definition: DELETE_OPTIONS.to_string(), media_types: vec!["*/*"] }),
            responses: vec![(200, STATUS.to_string()), (202, STATUS.to_string())],
            produces: PRODUCES,
        });
    }
    if !item.is_empty() {
        out.push(PathItem {
            path: format!("{base}/{{name}}"),
            name_description: Some(format!("name of the {kind}")),
            namespaced: r.namespaced,
            tag: tag.to_string(),
            operations: item,
        });
    }

    for s in r.subresources() {
        if let Some(ops) = subresource_operations(defs, r, s, ids, scope) {
            out.push(PathItem {
                path: format!("{base}/{{name}}/{}", s.name),
                name_description: Some(format!("name of the {}", subject_kind(r, s))),
                namespaced: r.namespaced,
                tag: tag.to_string(),
                operations: ops,
            });
        }
    }
}

/// The kind a subresource path's `{name}` names: the parent's (the Scale of a Deployment is
/// named after the Deployment).
fn subject_kind<'a>(r: &'a ResourceInfo, s: &'a SubresourceInfo) -> &'a str {
    if s.kind == r.kind {
        r.kind
    } else {
        s.kind
    }
}

fn subresource_operations(
    defs: &Definitions,
    r: &ResourceInfo,
    s: &SubresourceInfo,
    ids: &str,
    scope: &str,
) -> Option<Vec<Operation>> {
    // Streaming and proxy subresources take no JSON object.
    if matches!(s.name, "exec" | "attach" | "portforward" | "proxy" | "log") {
        return None;
    }
    let (g, v) = (s.group.unwrap_or(r.group), s.version.unwrap_or(r.version));
    let (sg, sv, sk, definition) = gvk_of(defs, g, v, s.kind)?;
    let this_gvk = Some((sg, sv, sk));
    let sub = capitalize(s.name);
    let kind = r.kind;
    let mut ops = Vec::new();
    let supports = |verb: &str| s.verbs.contains(&verb);
    if supports("get") {
        ops.push(read(format!("read{ids}{scope}{kind}{sub}"), kind, &this_gvk, &definition));
    }
    if supports("update") {
        ops.push(replace(format!("replace{ids}{scope}{kind}{sub}"), kind, &this_gvk, &definition));
    }
    if supports("patch") {
        ops.push(patch(format!("patch{ids}{scope}{kind}{sub}"), kind, &this_gvk, &definition));
    }
    if supports("create") {
        ops.push(create(format!("create{ids}{scope}{kind}{sub}"), s.kind, &this_gvk, &definition));
    }
    (!ops.is_empty()).then_some(ops)
}

fn read(id: String, kind: &str, gvk: &Option<(String, String, String)>, definition: &str) -> Operation {
    Operation {
        method: "get",
        id,
        description: format!("read the specified {kind}"),
        action: "get",
        gvk: gvk.clone(),
        params: &[],
        body: None,
        responses: vec![(200, definition.to_string())],
        produces: PRODUCES,
    }
}

fn replace(id: String, kind: &str, gvk: &Option<(String, String, String)>, definition: &str) -> Operation {
    Operation {
        method: "put",
        id,
        description: format!("replace the specified {kind}"),
        action: "put",
        gvk: gvk.clone(),
        params: WRITE_PARAMS,
        body: Some(Body { definition: definition.to_string(), media_types: CONSUMES.to_vec() }),
        responses: vec![(200, definition.to_string()), (201, definition.to_string())],
        produces: PRODUCES,
    }
}

fn patch(id: String, kind: &str, gvk: &Option<(String, String, String)>, definition: &str) -> Operation {
    let mut media_types = PATCH_TYPES.to_vec();
    if SERVER_SIDE_APPLY {
        media_types.insert(0, APPLY_PATCH_TYPE);
    }
    Operation {
        method: "patch",
        id,
        description: format!("partially update the specified {kind}"),
        action: "patch",
        gvk: gvk.clone(),
        params: PATCH_PARAMS,
        body: Some(Body { definition: PATCH.to_string(), media_types }),
        responses: vec![(200, definition.to_string()), (201, definition.to_string())],
        produces: PRODUCES,
    }
}

fn create(id: String, kind: &str, gvk: &Option<(String, String, String)>, definition: &str) -> Operation {
    Operation {
        method: "post",
        id,
        description: format!("create a {kind}"),
        action: "post",
        gvk: gvk.clone(),
        params: WRITE_PARAMS,
        body: Some(Body { definition: definition.to_string(), media_types: CONSUMES.to_vec() }),
        responses: vec![(200, definition.to_string()), (201, definition.to_string()), (202, definition.to_string())],
        produces: PRODUCES,
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "",
    }
}

impl PathItem {
    /// The definitions the path's operations take and return.
    pub fn definitions(&self) -> impl Iterator<Item = &str> {
        self.operations.iter().flat_map(|op| {
            op.body.iter().map(|b| b.definition.as_str()).chain(op.responses.iter().map(|(_, d)| d.as_str()))
        })
    }

    fn path_params(&self) -> Vec<Param> {
        let mut params = Vec::new();
        if self.name_description.is_some() {
            params.push(NAME);
        }
        if self.namespaced {
            params.push(NAMESPACE);
        }
        params.push(PRETTY);
        params
    }

    fn describe(&self, p: &Param) -> String {
        match (p.name, &self.name_description) {
            ("name", Some(d)) => d.clone(),
            _ => p.description.to_string(),
        }
    }

    /// The Swagger 2.0 path item.
    pub fn v2(&self) -> Value {
        let mut item = Map::new();
        for op in &self.operations {
            let mut params: Vec<Value> = Vec::new();
            if let Some(body) = &op.body {
                params.push(json!({
                    "name": "body",
                    "in": "body",
                    "required": true,
                    "schema": { "$ref": format!("#/definitions/{}", body.definition) },
                }));
            }
            params.extend(op.params.iter().map(|p| self.v2_param(p)));
            let mut responses = Map::new();
            for (code, def) in &op.responses {
                responses.insert(
                    code.to_string(),
                    json!({ "description": status_text(*code), "schema": { "$ref": format!("#/definitions/{def}") } }),
                );
            }
            responses.insert("401".to_string(), json!({ "description": status_text(401) }));
            let mut o = json!({
                "description": op.description,
                "consumes": op.body.as_ref().map_or_else(|| vec!["*/*"], |b| b.media_types.clone()),
                "produces": op.produces,
                "schemes": ["https"],
                "tags": [self.tag],
                "operationId": op.id,
                "responses": responses,
                "x-kubernetes-action": op.action,
            });
            if !params.is_empty() {
                o["parameters"] = Value::Array(params);
            }
            if let Some((g, v, k)) = &op.gvk {
                o["x-kubernetes-group-version-kind"] = gvk(g, v, k);
            }
            item.insert(op.method.to_string(), o);
        }
        let params: Vec<Value> = self.path_params().iter().map(|p| self.v2_param(p)).collect();
        item.insert("parameters".to_string(), Value::Array(params));
        Value::Object(item)
    }

    fn v2_param(&self, p: &Param) -> Value {
        let mut v = json!({
            "name": p.name,
            "in": if p.location == In::Path { "path" } else { "query" },
            "description": self.describe(p),
            "type": p.ty,
            "uniqueItems": true,
        });
        if p.location == In::Path {
            v["required"] = json!(true);
        }
        v
    }

    /// The OpenAPI 3.0 path item.
    pub fn v3(&self) -> Value {
        let mut item = Map::new();
        for op in &self.operations {
            let mut responses = Map::new();
            for (code, def) in &op.responses {
                let content: Map<String, Value> = op
                    .produces
                    .iter()
                    .map(|m| (m.to_string(), json!({ "schema": { "$ref": format!("{V3_REF_PREFIX}{def}") } })))
                    .collect();
                responses.insert(code.to_string(), json!({ "description": status_text(*code), "content": content }));
            }
            responses.insert("401".to_string(), json!({ "description": status_text(401) }));
            let mut o = json!({
                "tags": [self.tag],
                "description": op.description,
                "operationId": op.id,
                "responses": responses,
                "x-kubernetes-action": op.action,
            });
            if !op.params.is_empty() {
                o["parameters"] = Value::Array(op.params.iter().map(|p| self.v3_param(p)).collect());
            }
            if let Some(body) = &op.body {
                let content: Map<String, Value> = body
                    .media_types
                    .iter()
                    .map(|m| {
                        (m.to_string(), json!({ "schema": { "$ref": format!("{V3_REF_PREFIX}{}", body.definition) } }))
                    })
                    .collect();
                o["requestBody"] = json!({ "content": content, "required": true });
            }
            if let Some((g, v, k)) = &op.gvk {
                o["x-kubernetes-group-version-kind"] = gvk(g, v, k);
            }
            item.insert(op.method.to_string(), o);
        }
        let params: Vec<Value> = self.path_params().iter().map(|p| self.v3_param(p)).collect();
        item.insert("parameters".to_string(), Value::Array(params));
        Value::Object(item)
    }

    fn v3_param(&self, p: &Param) -> Value {
        let mut v = json!({
            "name": p.name,
            "in": if p.location == In::Path { "path" } else { "query" },
            "description": self.describe(p),
            "schema": { "type": p.ty, "uniqueItems": true },
        });
        if p.location == In::Path {
            v["required"] = json!(true);
        }
        v
    }
}

/// Every path of every served group version.
pub(crate) fn all_paths(defs: &Definitions) -> Vec<PathItem> {
    discovery::groups().iter().flat_map(|g| g.versions.iter()).flat_map(|gv| group_version_paths(defs, gv)).collect()
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

    #[test]
    fn names_as_upstream_spells_them() {
        assert_eq!(group_camel(""), "Core");
        assert_eq!(group_camel("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_camel("apps"), "Apps");
        assert_eq!(tag("rbac.authorization.k8s.io", "v1"), "rbacAuthorization_v1");
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn deployment_paths() {
        let d = defs();
        let gv = discovery::group_version("apps", "v1");
        let paths = gv.map(|gv| group_version_paths(&d, gv)).unwrap_or_default();
        let item = paths.iter().find(|p| p.path == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        let v3 = item.map(PathItem::v3).unwrap_or_default();
        assert_eq!(v3["patch"]["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(v3["patch"]["x-kubernetes-group-version-kind"], gvk("apps", "v1", "Deployment"));
        assert!(v3["patch"]["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
        let params = v3["patch"]["parameters"].as_array().cloned().unwrap_or_default();
        assert!(params.iter().any(|p| p["name"] == "fieldValidation"));
        let scale = paths.iter().find(|p| p.path.ends_with("/deployments/{name}/scale")).map(PathItem::v2);
        let scale = scale.unwrap_or_default();
        assert_eq!(scale["put"]["x-kubernetes-group-version-kind"], gvk("autoscaling", "v1", "Scale"));
        assert_eq!(scale["put"]["parameters"][0]["schema"]["$ref"], "#/definitions/io.k8s.api.autoscaling.v1.Scale");
        let all = paths.iter().find(|p| p.path == "/apis/apps/v1/deployments").map(PathItem::v2).unwrap_or_default();
        assert_eq!(all["get"]["operationId"], "listAppsV1DeploymentForAllNamespaces");
        // kubectl explain takes a resource's kind from whichever of its paths it finds first.
        assert_eq!(all["get"]["x-kubernetes-group-version-kind"], gvk("apps", "v1", "Deployment"));
        assert_eq!(all["get"]["responses"]["200"]["schema"]["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentList");
    }

    #[test]
    fn every_resource_with_patch_has_a_patch_operation_for_its_kind() {
        let d = defs();
        let paths = all_paths(&d);
        for r in discovery::resources().filter(|r| r.supports("patch")) {
            let found = paths.iter().map(PathItem::v2).any(|p| {
                p["patch"]["x-kubernetes-group-version-kind"] == gvk(r.group, r.version, r.kind)
                    && p["patch"]["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == "fieldValidation"))
            });
            assert!(found, "{} {} has no PATCH operation", r.api_version(), r.kind);
        }
    }
}
