//! ResourceQuota admission on create (upstream's `ResourceQuota` plugin): an object whose
//! usage would take a quota of its namespace over `status.hard` is refused with upstream's
//! 403, a pod must specify the compute resources a quota limits, and an admitted object is
//! charged to `status.used` at once (compare-and-swap on the quota), so that creates in a
//! row are counted before the quota controller recounts.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{decode, encode, Registry, ResourceType};
use crate::apiserver::status::ApiError;
use crate::domain::quota::{self, Usage};
use crate::store::{KeyRange, RangeOptions, WriteOutcome};

/// How often a quota whose status changed under us is re-read.
const RETRIES: usize = 16;

fn resources_it_uses(rt: &ResourceType, hard: &Usage) -> BTreeSet<String> {
    hard.keys().filter(|k| quota::is_used_by(rt.group, rt.plural, k)).cloned().collect()
}

impl Registry {
    /// Admits a new object of `rt` against the quotas of its namespace and charges them.
    pub(super) async fn admit_quota(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        obj: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let Some(ns) = namespace.filter(|_| rt.namespaced) else { return Ok(()) };
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let forbidden = |reason: String| ApiError::forbidden_because(rt.group, rt.plural, &name, &reason);
        let range = KeyRange::prefix(format!("/registry/resourcequotas/{ns}/"));
        let quotas = self.store.range(&range, RangeOptions::default()).await?.kvs;
        if quotas.is_empty() {
            return Ok(());
        }
        let requested = quota::usage(rt.group, rt.plural, obj);

        // Every quota is checked before any is charged.
        let mut interesting = Vec::new();
        for kv in &quotas {
            let q = decode(&kv.value, kv.mod_revision)?;
            let qname = q.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let hard = quota::read(q.pointer("/status/hard"));
            let used = quota::read(q.pointer("/status/used"));
            let required = resources_it_uses(rt, &hard);
            if required.is_empty() {
                continue;
            }
            if rt.group.is_empty() && rt.plural == "pods" {
                quota::pod_constraints(obj, &required).map_err(|e| forbidden(format!("failed quota: {qname}: {e}")))?;
            }
            if required.iter().any(|r| !used.contains_key(r)) {
                let list: Vec<&str> = required.iter().map(String::as_str).collect();
                return Err(forbidden(format!("status unknown for quota: {qname}, resources: {}", list.join(","))));
            }
            check(&qname, &hard, &used, &requested).map_err(forbidden)?;
            interesting.push(kv.key.clone());
        }
        if dry_run || requested.is_empty() {
            return Ok(());
        }
        for key in interesting {
            self.charge(&key, &requested).await.map_err(|e| e.map_reason(&forbidden))?;
        }
        Ok(())
    }

    /// Adds `requested` to one quota's `status.used`, re-checking against a fresh read when
    /// another write got there first.
    async fn charge(&self, key: &Bytes, requested: &Usage) -> Result<(), Charge> {
        for _ in 0..RETRIES {
            let (_, kv) = self.store.get(key, None).await.map_err(|e| Charge::Api(e.into()))?;
            // Deleted meanwhile: nothing to charge.
            let Some(kv) = kv else { return Ok(()) };
            let mut q = decode(&kv.value, kv.mod_revision).map_err(Charge::Api)?;
            let qname = q.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let hard = quota::read(q.pointer("/status/hard"));
            let used = quota::read(q.pointer("/status/used"));
            let new = check(&qname, &hard, &used, requested).map_err(Charge::Exceeded)?;
            if new.is_empty() {
                return Ok(());
            }
            if !q.pointer("/status/used").is_some_and(Value::is_object) {
                q["status"]["used"] = json!({});
            }
            for (k, v) in new {
                q["status"]["used"][k] = json!(v.to_string());
            }
            let bytes = encode(&q).map_err(Charge::Api)?;
            match self.store.update(key.clone(), bytes, kv.mod_revision, None).await {
                Ok(WriteOutcome::Applied { .. }) => return Ok(()),
                Ok(WriteOutcome::Failed { .. }) => continue,
                Err(e) => return Err(Charge::Api(e.into())),
            }
        }
        Err(Charge::Api(ApiError::internal("the quota kept changing; try again")))
    }
}

/// Why a charge failed.
enum Charge {
    Exceeded(String),
    Api(ApiError),
}

impl Charge {
    fn map_reason(self, forbidden: &impl Fn(String) -> ApiError) -> ApiError {
        match self {
            Charge::Exceeded(reason) => forbidden(reason),
            Charge::Api(e) => e,
        }
    }
}

/// The new usage of what `requested` uses, or upstream's refusal text.
fn check(qname: &str, hard: &Usage, used: &Usage, requested: &Usage) -> Result<Usage, String> {
    quota::charge(hard, used, requested).map_err(|e| {
        format!(
            "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
            quota::pretty(&e.requested),
            quota::pretty(&e.used),
            quota::pretty(&e.limited)
        )
    })
}
