//! What the controller needs of the kinds it runs: ReplicaSets as they are, and
//! ReplicationControllers seen as ReplicaSets (as upstream's controller does), with the
//! status written back in the owner's own kind.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;

use crate::controllers::runtime::Object;

/// A kind that keeps a number of pod replicas.
pub trait Replicated: Object + Resource<Scope = NamespaceResourceScope> + serde::Serialize {
    /// The object as a ReplicaSet.
    fn view(&self) -> Result<ReplicaSet, String>;
    /// The object with `status` in place of its own.
    fn with_status(&self, status: ReplicaSetStatus) -> Self;
}

impl Replicated for ReplicaSet {
    fn view(&self) -> Result<ReplicaSet, String> {
        Ok(self.clone())
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicaSet { status: Some(status), ..self.clone() }
    }
}

impl Replicated for ReplicationController {
    fn view(&self) -> Result<ReplicaSet, String> {
        let spec = self.spec.clone().unwrap_or_default();
        // The API server defaults an empty selector to the template's labels.
        let selector = spec
            .selector
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()));
        let status = self.status.clone().map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect()
            }),
            terminating_replicas: None,
        });
        Ok(ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                replicas: spec.replicas,
                min_ready_seconds: spec.min_ready_seconds,
                selector: LabelSelector { match_labels: selector, match_expressions: None },
                template: spec.template,
            }),
            status,
        })
    }

    fn with_status(&self, s: ReplicaSetStatus) -> Self {
        let status = ReplicationControllerStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect()
            }),
        };
        ReplicationController { status: Some(status), ..self.clone() }
    }
}
