//! The generic registry: create, get, list, update, delete and watch implemented once for
//! every resource over the [`Store`], with a small [`Strategy`] per resource for what
//! differs (defaults, validation, what a status write may change).
//!
//! Objects are stored as JSON under `/registry/<resource>/<namespace>/<name>` (or
//! `/registry/<resource>/<name>` for cluster-scoped ones), without `resourceVersion`: that is
//! the store's modification revision, filled in on the way out.

pub mod allocator;
pub mod conversion;
pub mod eviction;
pub mod meta;
mod quota;
pub mod services;
pub mod strategies;
pub mod validation;
pub mod workloads;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use self::meta::{meta_mut, meta_str, NameRule};
use super::status::{ApiError, Cause};
use crate::store::{KeyRange, RangeOptions, Revision, Store, StoreError, WriteOutcome};

/// What differs between resources.
#[async_trait::async_trait]
pub trait Strategy: Send + Sync {
    /// Fills defaults and clears what a client may not set on create.
    fn prepare_create(&self, _obj: &mut Value) {}
    /// Carries over from `old` what a main-resource update may not change (e.g. status).
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}
    /// Problems with the object, as upstream's validation reports them.
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }
    /// Whether something besides `metadata.finalizers` holds a deleted object (a namespace's
    /// `spec.finalizers`); called when it is marked for deletion, it may also record that
    /// (a namespace's phase becomes Terminating).
    fn holds_deletion(&self, _obj: &mut Value) -> bool {
        false
    }
    /// The grace period a delete must wait for (a scheduled pod's containers get time to
    /// stop); `None` deletes at once (once finalizers allow).
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }
    /// Problems with an update, by default those of the new object.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<Cause> {
        self.validate(new)
    }
    /// Takes what a new object needs from shared pools (a service's cluster IP and node
    /// ports), after validation. With `dry_run` nothing is kept.
    async fn allocate(&self, _store: &Arc<dyn Store>, _obj: &mut Value, _dry_run: bool) -> Result<(), ApiError> {
        Ok(())
    }
    /// Gives back what [`Strategy::allocate`] took, once the object is gone.
    async fn release(&self, _store: &Arc<dyn Store>, _obj: &Value) {}
}

/// Converts between a served version and the version objects are stored in, for a
/// resource served in more than one version (or group) from one storage.
pub trait Conversion: Send + Sync {
    /// A stored object as the served version shows it.
    fn to_served(&self, stored: Value) -> Value;
    /// A served-version object as it is stored.
    fn to_storage(&self, served: Value) -> Value;
}

/// A strategy with no resource-specific rules.
pub struct Plain;
#[async_trait::async_trait]
impl Strategy for Plain {}

/// A served resource.
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub name_rule: NameRule,
    /// Has a `status` subresource: status is kept on main writes and only the status is
    /// taken from status writes.
    pub has_status: bool,
    /// `metadata.generation` tracks changes to everything but metadata and status.
    pub tracks_generation: bool,
    /// The key prefix below `/registry/`: usually the plural.
    pub storage: String,
    pub strategy: Arc<dyn Strategy>,
    /// Set when the stored objects are of another version: everything the registry
    /// handles is in the served version, converted on the way in and out of the store.
    pub conversion: Option<Arc<dyn Conversion>>,
    /// A delete answers with the deleted object rather than a `Status` (upstream's
    /// `ReturnDeletedObject`).
    pub returns_deleted: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// A stored object as this version serves it, with its resourceVersion.
    pub fn decode(&self, bytes: &[u8], rev: Revision) -> Result<Value, ApiError> {
        let obj = decode(bytes, rev)?;
        Ok(match &self.conversion {
            Some(c) => c.to_served(obj),
            None => obj,
        })
    }

    fn encode(&self, obj: &Value) -> Result<Bytes, ApiError> {
        match &self.conversion {
            Some(c) => encode(&c.to_storage(obj.clone())),
            None => encode(obj),
        }
    }

    fn prefix(&self) -> String {
        format!("/registry/{}/", self.storage)
    }

    fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{}/{ns}/{name}", self.storage),
            None => format!("/registry/{}/{name}", self.storage),
        }
    }

    /// The key range of a list: one namespace or all of them.
    fn list_range(&self, namespace: Option<&str>) -> KeyRange {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => KeyRange::prefix(format!("/registry/{}/{ns}/", self.storage)),
            None => KeyRange::prefix(self.prefix()),
        }
    }
}

/// What validating admission sees of a write, as upstream's admission attributes.
pub struct WriteAttributes<'a> {
    pub rt: &'a ResourceType,
    /// `status` for a write of the status subresource; none for the object itself.
    pub subresource: Option<&'a str>,
    /// The object about to be stored, after defaulting and validation.
    pub new: &'a Value,
    /// The stored object, for an update; none for a create.
    pub old: Option<&'a Value>,
    /// Where a plug-in's warnings go, to reach the client as `Warning` headers.
    pub warnings: &'a Warnings,
}

impl WriteAttributes<'_> {
    pub fn name(&self) -> &str {
        meta_str(self.new, "name").unwrap_or("")
    }

    /// The object's namespace (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        meta_str(self.new, "namespace").filter(|_| self.rt.namespaced).unwrap_or("")
    }
}

/// Validating admission: sees the object a write is about to store, after defaulting and
/// validation (and the stored one, for updates), and may refuse it or add warnings.
#[async_trait::async_trait]
pub trait Admit: Send + Sync {
    async fn admit(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError>;
}

/// Warnings a write collects for its response, each text once, as upstream's warning
/// recorder (a write retried on conflict is admitted again).
#[derive(Clone, Debug, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    pub fn add(&self, warning: String) {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !all.contains(&warning) {
            all.push(warning);
        }
    }

    /// The warnings so far, in the order they were added; leaves none.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Options of a write.
#[derive(Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// The requester's admission checks; none for the server's own writes.
    pub admit: Option<Arc<dyn Admit>>,
    /// What admission warned about, for the response.
    pub warnings: Warnings,
}

impl std::fmt::Debug for WriteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions").field("dry_run", &self.dry_run).field("admit", &self.admit.is_some()).finish()
    }
}

impl WriteOptions {
    async fn admit(
        &self,
        rt: &ResourceType,
        subresource: Option<&str>,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match &self.admit {
            Some(a) => a.admit(&WriteAttributes { rt, subresource, new, old, warnings: &self.warnings }).await,
            None => Ok(()),
        }
    }
}

/// Keeps an object or not: a list or watch's label and field selectors.
pub type ObjectFilter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Options of a list.
#[derive(Clone, Default)]
pub struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    /// Keep an object or not (label and field selectors).
    pub filter: Option<ObjectFilter>,
}

/// Options of a delete (`DeleteOptions`).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    /// The deprecated `orphanDependents`, as given.
    pub orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    /// Takes what a `DeleteOptions` body (or an Eviction's `deleteOptions`) sets over what
    /// the query said.
    pub fn merge_json(&mut self, d: &Value) {
        if let Some(p) = d.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation_policy = Some(p.to_string());
        }
        if let Some(g) = d.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace_period_seconds = Some(g);
        }
        if let Some(o) = d.get("orphanDependents").and_then(Value::as_bool) {
            self.orphan_dependents = Some(o);
        }
        if self.orphan_dependents == Some(true) && self.propagation_policy.is_none() {
            self.propagation_policy = Some("Orphan".into());
        }
        if let Some(p) = d.get("preconditions") {
            self.precondition_uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
            self.precondition_resource_version = p.get("resourceVersion").and_then(Value::as_str).map(str::to_string);
        }
        if d.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All")) {
            self.dry_run = true;
        }
    }
}

/// What a delete did.
pub enum Deleted {
    /// Gone from the store; the last state.
    Now(Value),
    /// Finalizers or a grace period hold it; the object as it is now marked.
    Pending(Value),
}

/// The registry: see the module documentation.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
}

fn decode(bytes: &[u8], rev: Revision) -> Result<Value, ApiError> {
    let mut obj: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rev.0.to_string()));
    Ok(obj)
}

fn encode(obj: &Value) -> Result<Bytes, ApiError> {
    let mut obj = obj.clone();
    meta_mut(&mut obj).remove("resourceVersion");
    // Stored in the order responses are written in, so that list items copied from the
    // store come out as upstream orders them.
    Ok(Bytes::from(crate::apiserver::encode::object(&obj)))
}

/// Parses a client-supplied resourceVersion.
pub fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .map(Revision)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store }
    }

    /// Checks `apiVersion`/`kind` of a request body against the resource.
    pub fn check_type(&self, rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
        }
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !av.is_empty() && av != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        for field in ["metadata", "spec", "status"] {
            match obj.get(field) {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(other) => {
                    let got = match other {
                        Value::String(_) => "string",
                        Value::Number(_) => "number",
                        Value::Bool(_) => "bool",
                        _ => "array",
                    };
                    return Err(ApiError::bad_request(format!("{}.{field}: expected an object, got a {got}", rt.kind)));
                }
            }
        }
        if !kind.is_empty() && kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        Ok(())
    }

    fn check_namespace(rt: &ResourceType, obj: &mut Value, namespace: Option<&str>) -> Result<(), ApiError> {
        if !rt.namespaced {
            meta_mut(obj).remove("namespace");
            return Ok(());
        }
        let ns = namespace.unwrap_or("");
        match meta_str(obj, "namespace") {
            Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta_mut(obj).insert("namespace".into(), json!(ns));
                Ok(())
            }
        }
    }

    fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").unwrap_or("");
        let mut causes = meta::validate_meta_shape(obj);
        if name.is_empty() {
            causes.push(Cause::required("metadata.name", "name or generateName is required"));
        } else {
            causes.extend(meta::validate_name(rt.name_rule, name, "metadata.name"));
        }
        if rt.namespaced {
            let ns = meta_str(obj, "namespace").unwrap_or("");
            if ns.is_empty() {
                causes.push(Cause::required("metadata.namespace", ""));
            }
        }
        causes.extend(match old {
            Some(old) => rt.strategy.validate_update(obj, old),
            None => rt.strategy.validate(obj),
        });
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt.group, rt.kind, name, causes))
        }
    }

    /// Refuses creates in a namespace that does not exist or is being deleted.
    async fn check_namespace_open(&self, rt: &ResourceType, namespace: Option<&str>) -> Result<(), ApiError> {
        let Some(ns) = namespace.filter(|_| rt.namespaced) else { return Ok(()) };
        let (_, found) = self.store.get(format!("/registry/namespaces/{ns}").as_bytes(), None).await?;
        let Some(kv) = found else { return Err(ApiError::not_found("", "namespaces", ns)) };
        let obj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
            || obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        {
            let mut e = ApiError::forbidden("", "create", rt.group, rt.plural, Some(ns), None);
            e.message = format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.plural
            );
            e.details.causes = vec![Cause {
                reason: "NamespaceTerminating",
                field: "metadata.namespace".into(),
                message: format!("namespace {ns} is being terminated"),
            }];
            return Err(e);
        }
        Ok(())
    }

    /// Creates an object; returns it as stored.
    pub async fn create(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_type(rt, &obj)?;
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        Self::check_namespace(rt, &mut obj, namespace)?;
        {
            let generate = meta_str(&obj, "generateName").map(str::to_string);
            let m = meta_mut(&mut obj);
            if m.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
                if let Some(g) = generate.filter(|g| !g.is_empty()) {
                    m.insert("name".into(), json!(meta::generate_name(&g)));
                }
            }
            m.insert("uid".into(), json!(meta::new_uid()));
            m.insert("creationTimestamp".into(), json!(crate::domain::time::now_rfc3339()));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            if rt.tracks_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if rt.has_status {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        rt.strategy.prepare_create(&mut obj);
        Self::validate(rt, &obj, None)?;
        // The namespace's lifecycle is checked first, as upstream's NamespaceLifecycle
        // admission runs before the validating plug-ins.
        self.check_namespace_open(rt, namespace).await?;
        opts.admit(rt, None, &obj, None).await?;
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        let key = rt.key(namespace, &name);
        let (_, existing) = self.store.get(key.as_bytes(), None).await?;
        if existing.is_some() {
            return Err(ApiError::already_exists(rt.group, rt.plural, &name));
        }
        rt.strategy.allocate(&self.store, &mut obj, opts.dry_run).await?;
        if let Err(e) = self.admit_quota(rt, namespace, &obj, opts.dry_run).await {
            rt.strategy.release(&self.store, &obj).await;
            return Err(e);
        }
        if opts.dry_run {
            return Ok(obj);
        }
        let written = match rt.encode(&obj) {
            Ok(bytes) => self.store.create(Bytes::from(key), bytes, None).await.map_err(ApiError::from),
            Err(e) => Err(e),
        };
        match written {
            Ok(WriteOutcome::Applied { revision, .. }) => {
                meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.0.to_string()));
                Ok(obj)
            }
            Ok(WriteOutcome::Failed { .. }) => {
                rt.strategy.release(&self.store, &obj).await;
                Err(ApiError::already_exists(rt.group, rt.plural, &name))
            }
            Err(e) => {
                rt.strategy.release(&self.store, &obj).await;
                Err(e)
            }
        }
    }

    /// Reads one object.
    pub async fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let (_, kv) = self.store.get(rt.key(namespace, name).as_bytes(), None).await?;
        let kv = kv.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
        rt.decode(&kv.value, kv.mod_revision)
    }

    /// Lists objects: one page, filtered, at a consistent revision.
    pub async fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        let (items, metadata) = self.list_items(rt, namespace, opts).await?;
        let items = items.into_iter().map(|i| i.into_value(rt)).collect::<Result<Vec<_>, _>>()?;
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// [`Registry::list`] encoded as JSON, without decoding the stored objects when no
    /// selector needs them: their bytes are copied with `resourceVersion` spliced in.
    pub async fn list_json(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Vec<u8>, ApiError> {
        let (items, metadata) = self.list_items(rt, namespace, opts).await?;
        // Upstream's order (kind, apiVersion, metadata, items) and its closing newline.
        let mut out = Vec::with_capacity(64 + items.iter().map(ListItem::len).sum::<usize>());
        out.extend_from_slice(b"{\"kind\":");
        serde_json::to_writer(&mut out, &format!("{}List", rt.kind)).map_err(|e| ApiError::internal(e.to_string()))?;
        out.extend_from_slice(b",\"apiVersion\":");
        serde_json::to_writer(&mut out, &rt.api_version()).map_err(|e| ApiError::internal(e.to_string()))?;
        out.extend_from_slice(b",\"metadata\":");
        crate::apiserver::encode::write_meta(&mut out, &metadata);
        out.extend_from_slice(b",\"items\":[");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(rt, &mut out)?;
        }
        out.extend_from_slice(b"]}\n");
        Ok(out)
    }

    /// One page of a list: the items (decoded only when a selector had to look at them)
    /// and the list's metadata.
    async fn list_items(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<ListItem>, Value), ApiError> {
        let range = rt.list_range(namespace);
        let (mut range, mut at) = match opts.continue_token.as_deref().filter(|c| !c.is_empty()) {
            Some(token) => {
                let t: ContinueToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .or_else(|| base64::engine::general_purpose::STANDARD.decode(token).ok())
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid: invalid continue token"))?;
                if t.v != "meta.k8s.io/v1" || !t.start.as_bytes().starts_with(&range.start) {
                    return Err(ApiError::bad_request(
                        "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                    ));
                }
                (KeyRange { start: Bytes::from(t.start.into_bytes()), end: range.end.clone() }, Some(Revision(t.rv)))
            }
            None => (range, None),
        };
        if at.is_none() {
            let rv = opts.resource_version.as_deref().unwrap_or("");
            let exact = opts.resource_version_match.as_deref() == Some("Exact");
            if !rv.is_empty() && rv != "0" {
                let r = parse_rv(rv)?;
                let current = self.store.current_revision().await?;
                if exact {
                    at = Some(r);
                } else if r > current {
                    return Err(ApiError::from(StoreError::FutureRevision { requested: r, current }));
                }
            }
        }
        let limit = opts.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut next_start: Option<Bytes> = None;
        let mut remaining: Option<i64> = None;
        loop {
            let want = limit.map(|l| (l - items.len()).max(1));
            let page = match self
                .store
                .range(&range, RangeOptions { revision: at, limit: want, ..Default::default() })
                .await
            {
                Err(StoreError::Compacted { .. }) if opts.continue_token.is_some() => {
                    return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                }
                other => other?,
            };
            at = Some(page.revision);
            let mut last_key = None;
            for kv in page.kvs {
                last_key = Some(kv.key.clone());
                match &opts.filter {
                    None => items.push(ListItem::Raw(kv.value, kv.mod_revision)),
                    Some(f) => {
                        let obj = rt.decode(&kv.value, kv.mod_revision)?;
                        if f(&obj) {
                            items.push(ListItem::Decoded(obj));
                        }
                    }
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    break;
                }
            }
            let Some(lk) = last_key else { break };
            if limit.is_some_and(|l| items.len() >= l) {
                // Is there anything after the last key examined?
                let rest = range.after(&lk);
                let probe = self
                    .store
                    .range(&rest, RangeOptions { revision: at, count_only: true, ..Default::default() })
                    .await?;
                if probe.count > 0 {
                    next_start = Some(rest.start.clone());
                    if opts.filter.is_none() {
                        remaining = Some(probe.count);
                    }
                }
                break;
            }
            if !page.more {
                break;
            }
            range = range.after(&lk);
        }
        let rev = at.map(|r| r.0).unwrap_or(0);
        let mut metadata = json!({ "resourceVersion": rev.to_string() });
        if let Some(start) = next_start {
            let token = ContinueToken {
                v: "meta.k8s.io/v1".into(),
                rv: rev,
                start: String::from_utf8_lossy(&start).into_owned(),
            };
            let token =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default());
            metadata["continue"] = json!(token);
            if let Some(r) = remaining {
                metadata["remainingItemCount"] = json!(r);
            }
        }
        Ok((items, metadata))
    }

    /// Replaces an object (`subresource` `status` replaces only its status).
    pub async fn update(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        status_only: bool,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.check_type(rt, &obj)?;
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        Self::check_namespace(rt, &mut obj, namespace)?;
        match meta_str(&obj, "name") {
            Some(n) if n == name => {}
            Some("") | None => {
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            Some(_) => {
                return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
            }
        }
        let key = rt.key(namespace, name);
        let (_, current) = self.store.get(key.as_bytes(), None).await?;
        let current = current.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
        let old = rt.decode(&current.value, current.mod_revision)?;
        let expected = match meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) => {
                let rv = parse_rv(rv)?;
                if rv != current.mod_revision {
                    return Err(ApiError::stale(rt.group, rt.plural, name));
                }
                rv
            }
            None => current.mod_revision,
        };
        let new = self.merge_update(rt, obj, &old, status_only)?;
        opts.admit(rt, status_only.then_some("status"), &new, Some(&old)).await?;
        if opts.dry_run {
            return Ok(new);
        }
        self.write_update(rt, name, key, new, expected).await
    }

    /// Builds the object an update stores from the client's and the stored one.
    fn merge_update(
        &self,
        rt: &ResourceType,
        mut new: Value,
        old: &Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        if status_only {
            // Only the status comes from the client.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        } else {
            if rt.has_status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            rt.strategy.prepare_update(&mut new, old);
        }
        // Fields the server owns.
        {
            let m = meta_mut(&mut new);
            for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match old.get("metadata").and_then(|om| om.get(f)) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            m.remove("selfLink");
        }
        if rt.tracks_generation && !status_only && spec_part(&new) != spec_part(old) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        Self::validate(rt, &new, Some(old))?;
        Ok(new)
    }

    async fn write_update(
        &self,
        rt: &ResourceType,
        name: &str,
        key: String,
        mut new: Value,
        expected: Revision,
    ) -> Result<Value, ApiError> {
        // An object marked for deletion whose last finalizer is gone is deleted now.
        let marked = new.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
        let finalizers = new.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if marked && !finalizers && !rt.strategy.holds_deletion(&mut new.clone()) {
            return match self.store.delete(Bytes::from(key), Some(expected)).await? {
                WriteOutcome::Applied { revision, .. } => {
                    rt.strategy.release(&self.store, &new).await;
                    meta_mut(&mut new).insert("resourceVersion".into(), json!(revision.0.to_string()));
                    Ok(new)
                }
                WriteOutcome::Failed { .. } => Err(ApiError::stale(rt.group, rt.plural, name)),
            };
        }
        match self.store.update(Bytes::from(key), rt.encode(&new)?, expected, None).await? {
            WriteOutcome::Applied { revision, .. } => {
                meta_mut(&mut new).insert("resourceVersion".into(), json!(revision.0.to_string()));
                Ok(new)
            }
            WriteOutcome::Failed { current: None } => Err(ApiError::not_found(rt.group, rt.plural, name)),
            WriteOutcome::Failed { current: Some(_) } => Err(ApiError::stale(rt.group, rt.plural, name)),
        }
    }

    /// Read-modify-write with retries on conflict, as upstream's GuaranteedUpdate: `mutate`
    /// turns the current object into the desired one.
    pub async fn guaranteed_update<F>(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        status_only: bool,
        opts: &WriteOptions,
        mut mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError> + Send,
    {
        let key = rt.key(namespace, name);
        for _ in 0..16 {
            let (_, current) = self.store.get(key.as_bytes(), None).await?;
            let current = current.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            let old = rt.decode(&current.value, current.mod_revision)?;
            let mut desired = mutate(&old)?;
            self.check_type(rt, &desired)?;
            desired["apiVersion"] = json!(rt.api_version());
            desired["kind"] = json!(rt.kind);
            Self::check_namespace(rt, &mut desired, namespace)?;
            if meta_str(&desired, "name") != Some(name) {
                return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
            }
            // A resourceVersion the client put in its patch is a precondition.
            if let Some(rv) = meta_str(&desired, "resourceVersion").filter(|s| !s.is_empty()) {
                if parse_rv(rv)? != current.mod_revision {
                    return Err(ApiError::stale(rt.group, rt.plural, name));
                }
            }
            let new = self.merge_update(rt, desired, &old, status_only)?;
            opts.admit(rt, status_only.then_some("status"), &new, Some(&old)).await?;
            if opts.dry_run {
                return Ok(new);
            }
            match self.write_update(rt, name, key.clone(), new, current.mod_revision).await {
                Err(e) if e.is_conflict() => continue,
                other => return other,
            }
        }
        Err(ApiError::stale(rt.group, rt.plural, name))
    }

    /// `namespaces/<name>/finalize`: replaces `spec.finalizers` and nothing else; a
    /// namespace marked for deletion with no finalizer left is deleted.
    pub async fn finalize(
        &self,
        rt: &ResourceType,
        name: &str,
        finalizers: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let key = rt.key(None, name);
        for _ in 0..16 {
            let (_, current) = self.store.get(key.as_bytes(), None).await?;
            let current = current.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            let mut obj = rt.decode(&current.value, current.mod_revision)?;
            obj["spec"]["finalizers"] = finalizers.clone();
            if opts.dry_run {
                return Ok(obj);
            }
            match self.write_update(rt, name, key.clone(), obj, current.mod_revision).await {
                Err(e) if e.is_conflict() => continue,
                other => return other,
            }
        }
        Err(ApiError::stale(rt.group, rt.plural, name))
    }

    /// Deletes an object, or marks it when finalizers hold it.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = rt.key(namespace, name);
        for _ in 0..16 {
            let (_, current) = self.store.get(key.as_bytes(), None).await?;
            let current = current.ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            let mut obj = rt.decode(&current.value, current.mod_revision)?;
            check_preconditions(rt, name, &obj, current.mod_revision, opts)?;
            let mut finalizers: Vec<Value> =
                obj.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
            if opts.propagation_policy.as_deref() == Some("Foreground")
                && !finalizers.iter().any(|f| f == "foregroundDeletion")
            {
                finalizers.push(json!("foregroundDeletion"));
            }
            if opts.propagation_policy.as_deref() == Some("Orphan") && !finalizers.iter().any(|f| f == "orphan") {
                finalizers.push(json!("orphan"));
            }
            let grace = rt.strategy.deletion_grace(&obj, opts.grace_period_seconds).filter(|g| *g > 0);
            let marked = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            if marked && grace.is_none() {
                // The final delete of a gracefully terminating object (grace period 0).
                meta_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            let held = rt.strategy.holds_deletion(&mut obj);
            if finalizers.is_empty() && !held && grace.is_none() {
                if opts.dry_run {
                    return Ok(Deleted::Now(obj));
                }
                match self.store.delete(Bytes::from(key.clone()), Some(current.mod_revision)).await? {
                    WriteOutcome::Applied { .. } => {
                        rt.strategy.release(&self.store, &obj).await;
                        return Ok(Deleted::Now(obj));
                    }
                    WriteOutcome::Failed { .. } => continue,
                }
            }
            // Held by finalizers or a grace period: mark it and keep it. A later delete may
            // only shorten the grace period.
            let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if marked && (grace.is_none() || current_grace.is_some_and(|c| grace.is_some_and(|g| g >= c))) {
                return Ok(Deleted::Pending(obj));
            }
            {
                let g = grace.unwrap_or(0);
                let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(g);
                let m = meta_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(crate::domain::time::rfc3339(at)));
                m.insert("deletionGracePeriodSeconds".into(), json!(g));
                m.insert("finalizers".into(), Value::Array(finalizers));
                if m.get("finalizers").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                    m.remove("finalizers");
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Pending(obj));
            }
            match self.store.update(Bytes::from(key.clone()), rt.encode(&obj)?, current.mod_revision, None).await? {
                WriteOutcome::Applied { revision, .. } => {
                    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.0.to_string()));
                    return Ok(Deleted::Pending(obj));
                }
                WriteOutcome::Failed { .. } => continue,
            }
        }
        Err(ApiError::stale(rt.group, rt.plural, name))
    }

    pub fn watch_range(&self, rt: &ResourceType, namespace: Option<&str>) -> KeyRange {
        rt.list_range(namespace)
    }
}

/// An item of a list page.
enum ListItem {
    /// As stored, with its modification revision.
    Raw(Bytes, Revision),
    Decoded(Value),
}

impl ListItem {
    fn len(&self) -> usize {
        match self {
            ListItem::Raw(b, _) => b.len() + 32,
            ListItem::Decoded(_) => 512,
        }
    }

    fn into_value(self, rt: &ResourceType) -> Result<Value, ApiError> {
        match self {
            ListItem::Raw(b, rev) => rt.decode(&b, rev),
            ListItem::Decoded(v) => Ok(v),
        }
    }

    /// Writes the item's JSON; stored bytes are copied as they are when no conversion
    /// stands between them and the served version.
    fn write_json(self, rt: &ResourceType, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if let (ListItem::Raw(b, rev), None) = (&self, &rt.conversion) {
            if let Some(at) = metadata_object_start(b) {
                let slot = resource_version_slot(b, at);
                out.extend_from_slice(&b[..slot]);
                if slot > at {
                    out.push(b',');
                }
                out.extend_from_slice(format!("\"resourceVersion\":\"{}\"", rev.0).as_bytes());
                let rest_empty = b[slot..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'}');
                if slot == at && !rest_empty {
                    out.push(b',');
                }
                out.extend_from_slice(&b[slot..]);
                return Ok(());
            }
        }
        crate::apiserver::encode::write_object(out, &self.into_value(rt)?);
        Ok(())
    }
}

/// The offset just inside the `{` of the top-level `"metadata"` object of a JSON object, if
/// it has one. Keys are found by tracking strings and nesting, so a `"metadata"` inside a
/// value or a nested object is never taken for it.
fn metadata_object_start(json: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    // Whether the string that just ended at depth 1 was a key named metadata.
    let mut pending_key = false;
    let mut expect_key = false;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    if json[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && expect_key {
                    pending_key = &json[start..i.min(json.len())] == b"metadata";
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                if depth == 1 && pending_key && json[i] == b'{' {
                    return Some(i + 1);
                }
                depth += 1;
                pending_key = false;
                expect_key = json[i] == b'{' && depth == 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                pending_key = false;
            }
            b',' if depth == 1 => {
                expect_key = true;
                pending_key = false;
            }
            b':' => {}
            c if c.is_ascii_whitespace() => {}
            _ => pending_key = false,
        }
        i += 1;
    }
    None
}

/// Where `resourceVersion` goes in a stored metadata object whose first key starts at `at`:
/// after the string-valued keys upstream writes before it (`name`, `generateName`,
/// `namespace`, `selfLink`, `uid`), as stored objects have them in that order. The offset
/// just after the last of them, or `at` when there is none (or the bytes are not as
/// expected, which only moves `resourceVersion` to the front).
fn resource_version_slot(json: &[u8], at: usize) -> usize {
    const BEFORE: &[&[u8]] = &[b"name", b"generateName", b"namespace", b"selfLink", b"uid"];
    // The end of the JSON string starting at `i` (its opening quote), just past its close.
    let string_end = |mut i: usize| -> Option<usize> {
        if json.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        while i < json.len() {
            match json[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    let mut slot = at;
    loop {
        let key = if slot == at {
            slot
        } else if json.get(slot) == Some(&b',') {
            slot + 1
        } else {
            return slot;
        };
        let Some(key_end) = string_end(key) else { return slot };
        if !BEFORE.contains(&&json[key + 1..key_end - 1]) || json.get(key_end) != Some(&b':') {
            return slot;
        }
        match string_end(key_end + 1) {
            Some(end) => slot = end,
            None => return slot,
        }
    }
}

/// Decodes a stored value into an object with its resourceVersion.
pub fn decode_stored(bytes: &[u8], rev: Revision) -> Result<Value, ApiError> {
    decode(bytes, rev)
}

/// A delete's preconditions (UID and resourceVersion) against the object as stored, with
/// upstream's conflict messages.
pub(crate) fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    mod_revision: Revision,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &opts.precondition_uid {
        if meta_str(obj, "uid") != Some(uid.as_str()) {
            return Err(ApiError::conflict(
                rt.group,
                rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(obj, "uid").unwrap_or("")
                ),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        if parse_rv(rv)? != mod_revision {
            return Err(ApiError::conflict(
                rt.group,
                rt.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {mod_revision}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configmaps() -> ResourceType {
        ResourceType {
            group: "",
            version: "v1",
            plural: "configmaps",
            kind: "ConfigMap",
            namespaced: true,
            name_rule: NameRule::Subdomain,
            has_status: false,
            tracks_generation: false,
            storage: "configmaps".into(),
            strategy: Arc::new(Plain),
            conversion: None,
            returns_deleted: false,
        }
    }

    fn splice(raw: &str, rev: i64) -> Value {
        let mut out = Vec::new();
        ListItem::Raw(Bytes::from(raw.to_string()), Revision(rev)).write_json(&configmaps(), &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn splice_text(raw: &str, rev: i64) -> String {
        let mut out = Vec::new();
        ListItem::Raw(Bytes::from(raw.to_string()), Revision(rev)).write_json(&configmaps(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resource_version_is_spliced_where_upstream_writes_it() {
        assert_eq!(
            splice_text(
                r#"{"kind":"ConfigMap","metadata":{"name":"n","namespace":"d\"x","uid":"u","labels":{"a":"b"}}}"#,
                7
            ),
            r#"{"kind":"ConfigMap","metadata":{"name":"n","namespace":"d\"x","uid":"u","resourceVersion":"7","labels":{"a":"b"}}}"#
        );
        assert_eq!(
            splice_text(r#"{"metadata":{"name":"n","uid":"u"}}"#, 7),
            r#"{"metadata":{"name":"n","uid":"u","resourceVersion":"7"}}"#
        );
        assert_eq!(splice_text(r#"{"metadata":{}}"#, 7), r#"{"metadata":{"resourceVersion":"7"}}"#);
        assert_eq!(
            splice_text(r#"{"metadata":{"labels":{},"name":"n"}}"#, 7),
            r#"{"metadata":{"resourceVersion":"7","labels":{},"name":"n"}}"#
        );
    }

    #[test]
    fn resource_version_is_spliced_into_the_top_level_metadata_only() {
        let v =
            splice(r#"{"a":{"metadata":{"x":1}},"b":"metadata","metadata":{"name":"n"},"spec":{"metadata":{}}}"#, 42);
        assert_eq!(v["metadata"], json!({"name": "n", "resourceVersion": "42"}));
        assert_eq!(v["a"]["metadata"], json!({"x": 1}));
        assert_eq!(v["spec"]["metadata"], json!({}));
        let v = splice(r#"{ "k\"metadata" : 1, "metadata" : { } }"#, 7);
        assert_eq!(v["metadata"], json!({"resourceVersion": "7"}));
        // No metadata object: decoded and re-encoded instead.
        let v = splice(r#"{"kind":"X"}"#, 3);
        assert_eq!(v["metadata"]["resourceVersion"], "3");
    }

    #[test]
    fn the_scanner_never_panics_on_odd_input() {
        for raw in ["", "{", "}", "\"", "{\"metadata\"", "{\"metadata\":", "{\"metadata\":[", "{\"a\":\"\\", "]]]}}}"] {
            let _ = metadata_object_start(raw.as_bytes());
        }
    }
}
