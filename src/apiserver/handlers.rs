//! HTTP handling of resource requests: decoding bodies and query options, calling the
//! registry, encoding answers. Every failure leaves here as a `Status`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::registry::{DeleteOptions, Deleted, ListOptions, ResourceType, WriteOptions};
use super::request::ResourceRequest;
use super::status::{ApiError, Reason};
use super::table::Output;
use super::watch::{self, WatchRequest};
use super::ApiServer;

/// Largest request body accepted, as upstream's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: Option<String>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub dry_run: Option<String>,
    pub field_validation: Option<String>,
    pub field_manager: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<String>,
    pub pretty: Option<String>,
    pub force: Option<String>,
    pub include_object: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true") | Some("1"))
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(WriteOptions::default()),
            Some("All") => Ok(WriteOptions { dry_run: true, ..Default::default() }),
            Some(other) => {
                Err(ApiError::bad_request(format!("Invalid dry run value: {other}: supported values: \"All\"")))
            }
        }
    }
}

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = super::encode::body(v);
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Decodes a JSON or YAML request body into an object.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let mime = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match mime {
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("Object 'Kind' is missing in '{}': {e}", String::from_utf8_lossy(&body[..body.len().min(200)])))
        })?,
        "application/vnd.kubernetes.protobuf" => {
            super::protobuf::decode_request(body).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml"
            )))
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    }
    Ok(v)
}

/// `fieldValidation`: unknown and duplicate fields of a JSON or YAML body are an error
/// (`Strict`), warnings (`Warn`, the default as upstream) or nothing (`Ignore`).
fn field_validation(rt: &ResourceType, q: &Query, headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, ApiError> {
    let mode = q.field_validation.as_deref().unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore" | "") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {mode:?}"
        )));
    }
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    // Protobuf carries no unknown fields by construction; YAML is checked after conversion.
    let raw: Vec<u8> = if ct.starts_with("application/json") || ct.is_empty() {
        body.to_vec()
    } else if ct.contains("yaml") {
        match serde_saphyr::from_slice::<Value>(body) {
            Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
            Err(_) => return Ok(Vec::new()),
        }
    } else {
        return Ok(Vec::new());
    };
    let errors = super::openapi::strict_errors(rt.group, rt.version, rt.kind, &raw);
    if errors.is_empty() {
        return Ok(Vec::new());
    }
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            super::openapi::join_strict_errors(&errors)
        )));
    }
    Ok(errors.iter().map(|e| e.to_string()).collect())
}

/// The package of upstream's internal Go types of a group, as its error messages name
/// them (`*core.ConfigMap`, `*apps.Deployment`, `*rbac.Role`).
fn go_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

/// Adds `Warning` headers, as upstream sends for `fieldValidation=Warn` and admission:
/// the text quoted with its quotes and backslashes escaped, in UTF-8.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_bytes(text.as_bytes()) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

impl ApiServer {
    pub(crate) async fn serve_resource(
        &self,
        caller: &super::Identity,
        r: ResourceRequest,
        headers: &HeaderMap,
        query: Option<&str>,
        body: Bytes,
    ) -> Response {
        match self.resource(caller, r, headers, query, body).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    fn find(&self, r: &ResourceRequest) -> Result<Arc<ResourceType>, ApiError> {
        self.types
            .get(&(r.group.clone(), r.version.clone(), r.resource.clone()))
            .cloned()
            .ok_or_else(|| ApiError::new(Reason::NotFound, "the server could not find the requested resource"))
    }

    async fn resource(
        &self,
        caller: &super::Identity,
        r: ResourceRequest,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        if r.group.is_empty()
            && r.verb == "create"
            && (r.resource == "bindings" || (r.resource == "pods" && r.subresource.as_deref() == Some("binding")))
        {
            return self.binding(&r, headers, raw_query, &body).await;
        }
        if r.group.is_empty()
            && r.verb == "create"
            && r.resource == "pods"
            && r.subresource.as_deref() == Some("eviction")
        {
            return self.eviction(&r, headers, raw_query, &body).await;
        }
        if r.group.is_empty()
            && r.verb == "create"
            && r.resource == "serviceaccounts"
            && r.subresource.as_deref() == Some("token")
        {
            return self.token_request(&r, headers, &body).await;
        }
        let rt = self.find(&r)?;
        let q = Query::parse(raw_query)?;
        let ns = if rt.namespaced { r.namespace.as_deref() } else { None };
        if rt.namespaced && ns.is_none() && !matches!(r.verb, "list" | "watch") {
            return Err(ApiError::new(Reason::NotFound, "the server could not find the requested resource"));
        }
        if r.subresource.as_deref() == Some("scale")
            && super::discovery::lookup(rt.group, rt.version, rt.plural)
                .is_some_and(|i| i.subresource("scale").is_some())
        {
            return self.scale(&rt, ns, r.name.as_deref().unwrap_or(""), r.verb, headers, &q, body).await;
        }
        let status_only = match r.subresource.as_deref() {
            None => false,
            Some("status") if rt.has_status => true,
            Some("finalize") if rt.plural == "namespaces" && r.verb == "update" => {
                let obj = decode_body(headers, &body)?;
                let name = r.name.as_deref().unwrap_or("");
                let opts = q.write_options()?;
                let finalizers = obj.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                let done = self.registry.finalize(&rt, name, finalizers, &opts).await?;
                return Ok(json_response(StatusCode::OK, &done));
            }
            Some(_) => return Err(ApiError::new(Reason::NotFound, "the server could not find the requested resource")),
        };
        let name = r.name.as_deref().unwrap_or("");
        let reg = &self.registry;
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let output = super::table::negotiate(accept).map_err(|e| ApiError::not_acceptable(e.to_string()))?;
        // What a single object is answered as: itself, or its metadata.
        let single = |obj: Value| match output {
            Output::Metadata(v) => Ok(super::table::partial_object(&obj, v)),
            Output::MetadataList(_) => Err(ApiError::conversion_not_acceptable(format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list (*{}.{})",
                go_package(rt.group),
                rt.kind
            ))),
            Output::Object | Output::Table(_) => Ok(obj),
        };
        // `kubectl get` asks for server-side printing.
        let table = match output {
            Output::Table(version) if !status_only => {
                let include = super::table::IncludeObject::parse(q.include_object.as_deref())
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(super::table::TableOptions { version, include, headers: true })
            }
            _ => None,
        };
        let now = time::OffsetDateTime::now_utc();
        match r.verb {
            "get" => {
                let obj = reg.get(&rt, ns, name).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &match table {
                        Some(t) => {
                            super::table::render_object(rt.group, rt.version, rt.kind, &obj, t.include, t.version, now)
                        }
                        None => single(obj)?,
                    },
                ))
            }
            "list" => {
                let opts = ListOptions {
                    limit: q.limit.filter(|l| *l > 0).map(|l| l as usize),
                    continue_token: q.continue_token.clone(),
                    resource_version: q.resource_version.clone(),
                    resource_version_match: q.resource_version_match.clone(),
                    filter: self.filter(&rt, &q)?,
                };
                if let Output::Metadata(_) = output {
                    return Err(ApiError::conversion_not_acceptable(format!(
                        "you requested PartialObjectMetadata, but the requested object is a list (*{}.{}List)",
                        go_package(rt.group),
                        rt.kind
                    )));
                }
                if let Output::MetadataList(v) = output {
                    let list = reg.list(&rt, ns, &opts).await?;
                    return Ok(json_response(StatusCode::OK, &super::table::partial_list(&list, v)));
                }
                match table {
                    Some(t) => {
                        let list = reg.list(&rt, ns, &opts).await?;
                        let items = list["items"].as_array().cloned().unwrap_or_default();
                        let table =
                            super::table::render_with(rt.group, rt.version, rt.kind, &items, &list["metadata"], t, now);
                        Ok(json_response(StatusCode::OK, &table))
                    }
                    None => {
                        let body = reg.list_json(&rt, ns, &opts).await?;
                        let mut resp = (StatusCode::OK, body).into_response();
                        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                        Ok(resp)
                    }
                }
            }
            "watch" => {
                let req = WatchRequest {
                    resource_version: q.resource_version.clone(),
                    allow_bookmarks: truthy(&q.allow_watch_bookmarks),
                    send_initial_events: truthy(&q.send_initial_events),
                    timeout: q.timeout_seconds.filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64)),
                    filter: self.filter(&rt, &q)?,
                    render: match output {
                        // Each event's object as its metadata (upstream's watch encoder
                        // converts every event; a List conversion is served the same way).
                        Output::Metadata(v) | Output::MetadataList(v) => {
                            Some(std::sync::Arc::new(move |obj: &Value| super::table::partial_object(obj, v))
                                as super::watch::Render)
                        }
                        _ => table.map(|t| {
                            let first = std::sync::atomic::AtomicBool::new(true);
                            let (group, version, kind) = (rt.group, rt.version, rt.kind);
                            std::sync::Arc::new(move |obj: &Value| {
                                let headers = first.swap(false, std::sync::atomic::Ordering::SeqCst);
                                let opts = super::table::TableOptions { headers, ..t };
                                super::table::render_watch_row(
                                    group,
                                    version,
                                    kind,
                                    obj,
                                    opts,
                                    time::OffsetDateTime::now_utc(),
                                )
                            }) as super::watch::Render
                        }),
                    },
                };
                let range =
                    match r.name.as_deref() {
                        // `watch/namespaces/x/pods/name` (or a fieldSelector on the name) narrows it.
                        Some(_) => return Err(ApiError::bad_request(
                            "watching a single object by path is not supported; use fieldSelector=metadata.name=<name>",
                        )),
                        None => reg.watch_range(&rt, ns),
                    };
                let stream = watch::start(reg.store.clone(), rt.clone(), range, req).await?;
                let mut resp = Response::new(Body::from_stream(stream));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp.headers_mut().insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                Ok(resp)
            }
            "create" => {
                if status_only || !name.is_empty() {
                    return Err(ApiError::method_not_allowed(
                        "the server does not allow this method on the requested resource",
                    ));
                }
                let obj = decode_body(headers, &body)?;
                let mut warnings = field_validation(&rt, &q, headers, &body)?;
                let opts = self.admitted(q.write_options()?, caller);
                let created = reg.create(&rt, ns, obj, &opts).await?;
                warnings.extend(opts.warnings.take());
                Ok(with_warnings(json_response(StatusCode::CREATED, &single(created)?), &warnings))
            }
            "update" => {
                let obj = decode_body(headers, &body)?;
                let mut warnings = field_validation(&rt, &q, headers, &body)?;
                let opts = self.admitted(q.write_options()?, caller);
                let updated = reg.update(&rt, ns, name, obj, status_only, &opts).await?;
                warnings.extend(opts.warnings.take());
                Ok(with_warnings(json_response(StatusCode::OK, &single(updated)?), &warnings))
            }
            "patch" => {
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let patch_type = super::options::patch_type(ct)?;
                let (group, version, kind) = (rt.group, rt.version, rt.kind);
                let mut warnings = Vec::new();
                let opts = self.admitted(q.write_options()?, caller);
                let patched = reg
                    .guaranteed_update(&rt, ns, name, status_only, &opts, |current| {
                        let (obj, w) = super::options::apply_patch_validated(
                            patch_type,
                            group,
                            version,
                            kind,
                            current,
                            &body,
                            q.field_validation.as_deref(),
                        )?;
                        warnings = w;
                        Ok(obj)
                    })
                    .await?;
                warnings.extend(opts.warnings.take());
                Ok(with_warnings(json_response(StatusCode::OK, &single(patched)?), &warnings))
            }
            "delete" => {
                let mut opts = DeleteOptions {
                    dry_run: q.write_options()?.dry_run,
                    grace_period_seconds: q.grace_period_seconds,
                    propagation_policy: q.propagation_policy.clone(),
                    ..Default::default()
                };
                opts.orphan_dependents = q.orphan_dependents.as_deref().and_then(|o| o.parse().ok());
                if opts.orphan_dependents == Some(true) && opts.propagation_policy.is_none() {
                    opts.propagation_policy = Some("Orphan".into());
                }
                if !body.is_empty() {
                    opts.merge_json(&decode_body(headers, &body)?);
                }
                if let Some(p) = opts.propagation_policy.as_deref() {
                    if !matches!(p, "Orphan" | "Background" | "Foreground") {
                        return Err(ApiError::invalid(
                            rt.group,
                            "DeleteOptions",
                            "",
                            vec![super::status::Cause::not_supported(
                                "propagationPolicy",
                                p,
                                &["Foreground", "Background", "Orphan", "nil"],
                            )],
                        ));
                    }
                }
                // Upstream answers 202 for an object that is only being deleted when the
                // client set orphanDependents=false, 200 otherwise.
                let pending_code =
                    if opts.orphan_dependents == Some(false) { StatusCode::ACCEPTED } else { StatusCode::OK };
                match reg.delete(&rt, ns, name, &opts).await? {
                    Deleted::Now(obj) if rt.returns_deleted => Ok(json_response(StatusCode::OK, &single(obj)?)),
                    Deleted::Now(obj) => {
                        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                        let status = super::status::success(name, rt.group, rt.plural, uid);
                        Ok(json_response(StatusCode::OK, &status))
                    }
                    Deleted::Pending(obj) => Ok(json_response(pending_code, &single(obj)?)),
                }
            }
            "deletecollection" => {
                let opts = ListOptions { filter: self.filter(&rt, &q)?, ..Default::default() };
                let list = reg.list(&rt, ns, &opts).await?;
                let dopts = DeleteOptions {
                    dry_run: q.write_options()?.dry_run,
                    propagation_policy: q.propagation_policy.clone(),
                    ..Default::default()
                };
                for item in list["items"].as_array().cloned().unwrap_or_default() {
                    let n = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    let ins = item.pointer("/metadata/namespace").and_then(Value::as_str);
                    match reg.delete(&rt, ins.or(ns), n, &dopts).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                let mut out = list;
                out["items"] = json!([]);
                Ok(json_response(StatusCode::OK, &out))
            }
            other => Err(ApiError::method_not_allowed(format!("verb {other} is not supported"))),
        }
    }
}

impl ApiServer {
    /// `pods/<name>/binding` and the deprecated `bindings` collection: see
    /// [`super::registry::Registry::bind_pod`].
    async fn binding(
        &self,
        r: &ResourceRequest,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let pods = self.resource_type("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
        let q = Query::parse(raw_query)?;
        let ns = r
            .namespace
            .as_deref()
            .ok_or_else(|| ApiError::new(Reason::NotFound, "the server could not find the requested resource"))?;
        let binding = decode_body(headers, body)?;
        let url_name = if r.resource == "pods" { r.name.as_deref() } else { None };
        let done = self.registry.bind_pod(&pods, ns, url_name, &binding, &q.write_options()?).await?;
        Ok(json_response(StatusCode::CREATED, &done))
    }
}

impl ApiServer {
    /// `pods/<name>/eviction`: see [`super::registry::Registry::evict_pod`].
    async fn eviction(
        &self,
        r: &ResourceRequest,
        headers: &HeaderMap,
        raw_query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let pods = self.resource_type("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
        let pdbs = self
            .resource_type("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))?;
        let q = Query::parse(raw_query)?;
        let ns = r
            .namespace
            .as_deref()
            .ok_or_else(|| ApiError::new(Reason::NotFound, "the server could not find the requested resource"))?;
        let eviction = decode_body(headers, body)?;
        let (code, status) = self
            .registry
            .evict_pod(&pods, &pdbs, ns, r.name.as_deref().unwrap_or(""), &eviction, q.write_options()?.dry_run)
            .await?;
        Ok(json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::CREATED), &status))
    }
}

/// The autoscaling/v1 `Scale` of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|sel| {
            // ReplicationControllers have a plain label map, the others a LabelSelector.
            if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
                super::selector::LabelSelector::from_metav1_json(Some(sel)).map(|s| s.to_string()).unwrap_or_default()
            } else {
                sel.as_object()
                    .map(|m| {
                        let mut pairs: Vec<String> =
                            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
                        pairs.sort();
                        pairs.join(",")
                    })
                    .unwrap_or_default()
            }
        })
        .unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

impl ApiServer {
    /// `<resource>/<name>/scale`: read or change `spec.replicas` through a `Scale`.
    #[allow(clippy::too_many_arguments)]
    async fn scale(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        verb: &str,
        headers: &HeaderMap,
        q: &Query,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let reg = &self.registry;
        let opts = q.write_options()?;
        let desired_replicas = |scale: &Value| -> Result<Value, ApiError> {
            match scale.pointer("/spec/replicas") {
                Some(r) if r.as_i64().is_some_and(|n| n >= 0) => Ok(r.clone()),
                Some(r) => Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![super::status::Cause::invalid("spec.replicas", r, "must be greater than or equal to 0")],
                )),
                None => Ok(json!(0)),
            }
        };
        let updated = match verb {
            "get" => return Ok(json_response(StatusCode::OK, &scale_of(&reg.get(rt, ns, name).await?))),
            "update" => {
                let scale = decode_body(headers, &body)?;
                let replicas = desired_replicas(&scale)?;
                let precondition =
                    scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
                reg.guaranteed_update(rt, ns, name, false, &opts, |cur| {
                    if let Some(rv) = precondition.as_deref().filter(|s| !s.is_empty()) {
                        if cur.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv) {
                            return Err(ApiError::stale(rt.group, rt.plural, name));
                        }
                    }
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = replicas.clone();
                    Ok(next)
                })
                .await?
            }
            "patch" => {
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let patch_type = super::options::patch_type(ct)?;
                reg.guaranteed_update(rt, ns, name, false, &opts, |cur| {
                    let scale = super::options::apply_patch(patch_type, "autoscaling", "Scale", &scale_of(cur), &body)?;
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = desired_replicas(&scale)?;
                    Ok(next)
                })
                .await?
            }
            _ => {
                return Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ))
            }
        };
        Ok(json_response(StatusCode::OK, &scale_of(&updated)))
    }
}
