//! A pod's requests and a node's allocatable the way upstream's scheduler counts them: cpu
//! in millicores, everything else in whole units, rounded up; a pod asks for the sum of
//! its containers (plus restartable init containers), or the largest init container if
//! that is more, plus its overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::domain::quantity::Quantity;

/// Amounts of resources: cpu in millicores, the rest (memory, ephemeral-storage, pods,
/// hugepages, extended resources) in units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Any other named resource.
    pub scalar: BTreeMap<String, i64>,
}

/// A quantity in thousandths (`milli`) or whole units, rounded up as upstream's
/// `MilliValue`/`Value`. `None` for what is not one; requests and capacities are never
/// negative, so such an amount is not a usable one either.
fn quantity(q: &ApiQuantity, milli: bool) -> Option<i64> {
    let q: Quantity = q.0.trim().parse().ok().filter(|q: &Quantity| q.signum() >= 0)?;
    Some(if milli { q.milli_value() } else { q.value() })
}

/// A resource list as the API holds it (`{"cpu": "100m", "memory": "64Mi", ...}`).
pub type ResourceList = BTreeMap<String, ApiQuantity>;

impl Resources {
    pub fn from_list(list: Option<&ResourceList>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &ApiQuantity) {
        match name {
            "cpu" => self.milli_cpu = quantity(q, true).unwrap_or(0),
            "memory" => self.memory = quantity(q, false).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity(q, false).unwrap_or(0),
            other => {
                self.scalar.insert(other.to_string(), quantity(q, false).unwrap_or(0));
            }
        }
    }

    /// A container's requests; a resource with only a limit requests the limit, as upstream
    /// defaulting stores it.
    pub fn of_container(c: &Container) -> Resources {
        let res = c.resources.as_ref();
        let mut r = Resources::from_list(res.and_then(|r| r.limits.as_ref()));
        for (name, q) in res.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            r.set(name, q);
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// What a pod asks of a node: see the module documentation.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&Resources::of_container(c));
    }
    // Init containers run one by one, each beside the sidecars (restartable init
    // containers) started before it; sidecars keep running with the app containers.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = Resources::of_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak.max_with(&during);
        }
    }
    sum.add(&sidecars);
    sum.max_with(&init_peak);
    sum.add(&Resources::from_list(spec.overhead.as_ref()));
    sum
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_round_up_like_upstream() {
        let q = |s: &str| ApiQuantity(s.to_string());
        let milli = |s: &str| quantity(&q(s), true);
        let units = |s: &str| quantity(&q(s), false);
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("1.0001"), Some(1001));
        assert_eq!(units("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(units("1Gi"), Some(1 << 30));
        assert_eq!(units("2k"), Some(2000));
        assert_eq!(units("1e3"), Some(1000));
        assert_eq!(units("1500m"), Some(2));
        assert_eq!(units("110"), Some(110));
        assert_eq!(units("12x"), None);
        assert_eq!(units(""), None);
        assert_eq!(units("-1"), None);
    }

    #[test]
    fn pod_requests_take_the_larger_of_init_and_app_containers_plus_overhead() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "16Mi"}}},
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"memory": "32Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }))
        .unwrap();
        let r = pod_requests(&spec);
        // cpu: max(100 + 200 + sidecar 0, init 1000) + 10.
        assert_eq!(r.milli_cpu, 1010);
        // memory: max(64 + 32, init 16) Mi.
        assert_eq!(r.memory, 96 * 1024 * 1024);
    }
}
