//! Controllers: each in its own folder, registered by name in [`CONTROLLERS`] so the server
//! starts them from the table, and `--kube-controller-manager-arg=controllers=...` switches
//! them on and off by name as upstream's flag does.
//!
//! A controller gets a [`Context`]: the typed client, the shared informers, the clock and
//! the few cluster facts that are not API objects (the server CA a pod must trust).

pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;

mod namespaces;

use std::future::Future;
use std::pin::Pin;

pub use self::runtime::Context;

/// The controllers' settings, one section per controller that has any, as upstream's
/// controller manager configuration has them (`--kube-controller-manager-arg`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub podgc: podgc::Options,
    pub node_lifecycle: nodelifecycle::Config,
}

/// A controller's entry point: runs until the context's stop resolves.
pub type Start = fn(Context) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// A controller's row in the table.
pub struct Registration {
    /// Upstream's name (`--controllers`), e.g. `replicaset-controller`.
    pub name: &'static str,
    /// The older name upstream still accepts, e.g. `replicaset`.
    pub alias: &'static str,
    pub start: Start,
}

/// Every controller.
pub const CONTROLLERS: &[Registration] = &[
    Registration { name: "namespace-controller", alias: "namespace", start: |c| Box::pin(namespace::run(c)) },
    Registration {
        name: "clusterrole-aggregation-controller",
        alias: "clusterrole-aggregation",
        start: |c| Box::pin(clusterroleaggregation::run(c)),
    },
    Registration {
        name: "serviceaccount-controller",
        alias: "serviceaccount",
        start: |c| Box::pin(serviceaccount::run(c)),
    },
    Registration {
        name: "root-ca-certificate-publisher-controller",
        alias: "root-ca-cert-publisher",
        start: |c| Box::pin(rootca::run(c)),
    },
    Registration { name: "deployment-controller", alias: "deployment", start: |c| Box::pin(deployment::run(c)) },
    Registration {
        name: "replicaset-controller",
        alias: "replicaset",
        start: |c| Box::pin(replicaset::run_replicasets(c)),
    },
    Registration {
        name: "replicationcontroller-controller",
        alias: "replicationcontroller",
        start: |c| Box::pin(replicaset::run_replication_controllers(c)),
    },
    Registration {
        name: "garbage-collector-controller",
        alias: "garbagecollector",
        start: |c| Box::pin(garbagecollector::run(c)),
    },
    Registration { name: "pod-garbage-collector-controller", alias: "podgc", start: |c| Box::pin(podgc::run(c)) },
    Registration { name: "job-controller", alias: "job", start: |c| Box::pin(job::run(c)) },
    Registration {
        name: "ttl-after-finished-controller",
        alias: "ttl-after-finished",
        start: |c| Box::pin(ttlafterfinished::run(c)),
    },
    Registration { name: "cronjob-controller", alias: "cronjob", start: |c| Box::pin(cronjob::run(c)) },
    Registration {
        name: "node-lifecycle-controller",
        alias: "nodelifecycle",
        start: |c| Box::pin(nodelifecycle::run(c)),
    },
    Registration {
        name: "taint-eviction-controller",
        alias: "taint-eviction-controller",
        start: |c| Box::pin(tainteviction::run(c)),
    },
    Registration { name: "statefulset-controller", alias: "statefulset", start: |c| Box::pin(statefulset::run(c)) },
    Registration { name: "daemonset-controller", alias: "daemonset", start: |c| Box::pin(daemonset::run(c)) },
    Registration { name: "disruption-controller", alias: "disruption", start: |c| Box::pin(disruption::run(c)) },
    Registration {
        name: "endpoint-controller",
        alias: "endpoint",
        start: |c| Box::pin(endpointslice::run_endpoints(c)),
    },
    Registration {
        name: "endpointslice-controller",
        alias: "endpointslice",
        start: |c| Box::pin(endpointslice::run_slices(c)),
    },
    Registration {
        name: "endpointslice-mirroring-controller",
        alias: "endpointslicemirroring",
        start: |c| Box::pin(endpointslice::run_mirroring(c)),
    },
    Registration {
        name: "resourcequota-controller",
        alias: "resourcequota",
        start: |c| Box::pin(resourcequota::run(c)),
    },
];

fn lookup(name: &str) -> Option<&'static Registration> {
    CONTROLLERS.iter().find(|r| r.name == name || r.alias == name)
}

/// Which controllers run, from upstream's `--controllers` list: `*` for all, `name` to add
/// one, `-name` to leave one out (names or their aliases). An unknown name is an error.
pub fn select(list: &[String]) -> Result<Vec<&'static Registration>, String> {
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut all = list.is_empty();
    for item in list {
        let (disable, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item.as_str()),
        };
        if name == "*" && !disable {
            all = true;
            continue;
        }
        let r = lookup(name).ok_or_else(|| format!("{item:?} is not in the list of known controllers"))?;
        if disable {
            off.push(r.name)
        } else {
            on.push(r.name)
        }
    }
    Ok(CONTROLLERS.iter().filter(|r| !off.contains(&r.name) && (all || on.contains(&r.name))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_lists_as_upstream() {
        let s = |l: &[&str]| {
            select(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|v| v.iter().map(|r| r.name).collect::<Vec<_>>())
        };
        assert_eq!(s(&[]).unwrap().len(), CONTROLLERS.len());
        assert_eq!(s(&["*"]).unwrap().len(), CONTROLLERS.len());
        for off in ["-replicaset", "-replicaset-controller"] {
            let without = s(&["*", off]).unwrap();
            assert!(!without.contains(&"replicaset-controller") && without.contains(&"namespace-controller"));
        }
        assert_eq!(s(&["namespace"]).unwrap(), ["namespace-controller"]);
        assert!(s(&["*", "-nope"]).unwrap_err().contains("nope"));
    }
}
