//! The EndpointSlice reconciler's plan (upstream's `reconciler.reconcile`), a pure function:
//! given the endpoints a Service should have, grouped by port set, and the slices it has,
//! which slices to create, update and delete. Endpoints stay in the slice they are in when
//! they can; new ones fill slices with room before new slices are made; a slice holds at
//! most `max` endpoints; a Service with no endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::{is_headless, PortsKey, HEADLESS_LABEL, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::controllers::runtime::owner;

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What to write.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The labels a slice of `svc` carries: the Service's own (but for the reserved ones), the
/// headless label when headless, the Service's name and the manager.
pub fn labels(svc: &Service, managed_by: &str) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    }
    l.insert(SERVICE_NAME_LABEL.into(), svc.metadata.name.clone().unwrap_or_default());
    l.insert(MANAGED_BY_LABEL.into(), managed_by.into());
    l
}

/// What every slice of one owner carries, and whether an owner with no endpoints keeps an
/// empty placeholder slice (the EndpointSlice controller's do; mirrored ones do not).
#[derive(Clone, Debug)]
pub struct Template {
    pub namespace: Option<String>,
    pub generate_name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub owner: OwnerReference,
    pub placeholder: bool,
}

impl Template {
    /// The EndpointSlice controller's slices of `svc`, named by the API server from
    /// `<service>-`.
    pub fn of_service(svc: &Service, managed_by: &str) -> Template {
        Template {
            namespace: svc.metadata.namespace.clone(),
            generate_name: prefix(svc.metadata.name.as_deref().unwrap_or("")),
            labels: labels(svc, managed_by),
            annotations: None,
            owner: owner::controller_ref(svc),
            placeholder: true,
        }
    }

    /// A new slice.
    pub fn slice(&self, address_type: &str, ports: &PortsKey) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(self.generate_name.clone()),
                namespace: self.namespace.clone(),
                labels: Some(self.labels.clone()),
                annotations: self.annotations.clone(),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            address_type: address_type.into(),
            endpoints: vec![],
            ports: Some(ports.0.clone()),
        }
    }

    fn meta_differs(&self, s: &EndpointSlice) -> bool {
        s.metadata.labels.as_ref() != Some(&self.labels)
            || (self.annotations.is_some() && s.metadata.annotations != self.annotations)
    }

    fn set_meta(&self, s: &mut EndpointSlice) {
        s.metadata.labels = Some(self.labels.clone());
        if self.annotations.is_some() {
            s.metadata.annotations = self.annotations.clone();
        }
    }
}

/// Upstream's name prefix: the owner's name and a dash, cut so that the generated name fits.
pub fn prefix(name: &str) -> String {
    let mut p: String = name.chars().take(57).collect();
    p.push('-');
    p
}

/// Plans the writes that make `existing` (the slices kept for the owner of `template`) hold
/// `desired`, all of `address_type`.
pub fn plan(
    template: &Template,
    address_type: &str,
    desired: &BTreeMap<PortsKey, Vec<Endpoint>>,
    existing: &[EndpointSlice],
    max: usize,
) -> Plan {
    let max = max.max(1);
    let mut out = Plan::default();
    let mut existing: Vec<&EndpointSlice> = existing.iter().collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    // Slices of another address family, or not owned by this very owner, go.
    let (mut mine, other): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) = existing.into_iter().partition(|s| {
        s.address_type == address_type
            && s.metadata.owner_references.iter().flatten().any(|r| r.uid == template.owner.uid)
    });
    out.delete.extend(other.into_iter().cloned());

    let total: usize = desired.values().map(Vec::len).sum();
    if total == 0 && !template.placeholder {
        out.delete.extend(mine.into_iter().cloned());
        return out;
    }
    if total == 0 {
        // One placeholder: keep an existing one that is already empty, else reuse one.
        let empty_key = PortsKey(vec![]);
        let placeholder =
            mine.iter().position(|s| s.endpoints.is_empty() && PortsKey::of(s.ports.as_ref()) == empty_key);
        let keep = placeholder.unwrap_or(0);
        for (i, s) in mine.iter().enumerate() {
            if i != keep {
                out.delete.push((*s).clone());
            }
        }
        match mine.get(keep) {
            Some(s) => {
                let mut s = (*s).clone();
                let changed =
                    !s.endpoints.is_empty() || PortsKey::of(s.ports.as_ref()) != empty_key || template.meta_differs(&s);
                if changed {
                    s.endpoints = vec![];
                    s.ports = Some(vec![]);
                    template.set_meta(&mut s);
                    out.update.push(s);
                }
            }
            None => out.create.push(template.slice(address_type, &empty_key)),
        }
        return out;
    }

    for (key, eps) in desired {
        let mut placed: HashSet<&[String]> = HashSet::new();
        let by_addr: BTreeMap<&[String], &Endpoint> = eps.iter().map(|e| (e.addresses.as_slice(), e)).collect();
        // (slice, changed) for this key's existing slices, with what they keep.
        let mut kept: Vec<(EndpointSlice, bool)> = Vec::new();
        let (same, rest): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) =
            mine.into_iter().partition(|s| PortsKey::of(s.ports.as_ref()) == *key);
        mine = rest;
        for s in same {
            let mut new_eps = Vec::new();
            for e in &s.endpoints {
                let k = e.addresses.as_slice();
                if let Some(want) = by_addr.get(k) {
                    if placed.insert(k) {
                        new_eps.push((*want).clone());
                    }
                }
            }
            let mut s = s.clone();
            let changed = new_eps != s.endpoints || template.meta_differs(&s);
            s.endpoints = new_eps;
            template.set_meta(&mut s);
            kept.push((s, changed));
        }
        let mut left: Vec<&Endpoint> = eps.iter().filter(|e| !placed.contains(e.addresses.as_slice())).collect();
        // Fill slices with room: first those being written anyway, then the fullest.
        kept.sort_by_key(|(s, changed)| (!*changed, std::cmp::Reverse(s.endpoints.len())));
        for (s, changed) in kept.iter_mut() {
            while s.endpoints.len() < max {
                let Some(e) = left.pop() else { break };
                s.endpoints.push(e.clone());
                *changed = true;
            }
        }
        for (mut s, changed) in kept {
            if s.endpoints.is_empty() {
                out.delete.push(s);
            } else if changed {
                s.endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
                out.update.push(s);
            }
        }
        for chunk in left.chunks(max) {
            let mut s = template.slice(address_type, key);
            s.endpoints = chunk.iter().map(|e| (*e).clone()).collect();
            out.create.push(s);
        }
    }
    // Slices whose port set no longer exists.
    out.delete.extend(mine.into_iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::super::desired::tests::{pod, port, svc};
    use super::super::desired::{desired, PortsKey};
    use super::*;

    fn apply(existing: &mut Vec<EndpointSlice>, plan: Plan, next: &mut u32) {
        let del: Vec<_> = plan.delete.iter().map(|s| s.metadata.name.clone()).collect();
        existing.retain(|s| !del.contains(&s.metadata.name));
        for u in plan.update {
            let i = existing.iter().position(|s| s.metadata.name == u.metadata.name).unwrap();
            existing[i] = u;
        }
        for mut c in plan.create {
            *next += 1;
            c.metadata.name = Some(format!("{}{next}", c.metadata.generate_name.clone().unwrap()));
            existing.push(c);
        }
    }

    fn web() -> Service {
        svc("web", &[("app", "web")], vec![port("http", 80, IntOrString::String("http".into()))])
    }

    #[test]
    fn no_endpoints_gives_one_placeholder_and_it_is_kept() {
        let s = web();
        let d = desired(&s, [], |_| None);
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &d, &[], 100);
        assert_eq!(p.create.len(), 1);
        let ph = &p.create[0];
        assert!(ph.endpoints.is_empty() && ph.ports.as_ref().unwrap().is_empty());
        assert_eq!(ph.metadata.generate_name.as_deref(), Some("web-"));
        let l = ph.metadata.labels.as_ref().unwrap();
        assert_eq!(l[SERVICE_NAME_LABEL], "web");
        assert_eq!(l[MANAGED_BY_LABEL], "m");
        assert_eq!(ph.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-web");
        let mut existing = vec![];
        let mut n = 0;
        apply(&mut existing, p, &mut n);
        assert!(plan(&Template::of_service(&s, "m"), "IPv4", &d, &existing, 100).is_empty());
    }

    #[test]
    fn at_most_max_per_slice_and_small_changes_touch_one_slice() {
        let s = web();
        let pods: Vec<_> = (0..250)
            .map(|i| pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 200, i % 200 + 2), &[("app", "web")], true))
            .collect();
        let d = desired(&s, &pods, |_| None);
        let mut existing = vec![];
        let mut n = 0;
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &d, &existing, 100);
        assert_eq!(p.create.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(), [100, 100, 50]);
        apply(&mut existing, p, &mut n);
        assert!(
            plan(&Template::of_service(&s, "m"), "IPv4", &d, &existing, 100).is_empty(),
            "steady state writes nothing"
        );

        // One pod goes not-ready: one slice is updated.
        let mut pods2 = pods.clone();
        pods2[7].status.as_mut().unwrap().conditions = None;
        let d2 = desired(&s, &pods2, |_| None);
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &d2, &existing, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        apply(&mut existing, p, &mut n);

        // A new pod fills the slice with room instead of making a new one.
        pods2.push(pod("new", "10.42.9.9", &[("app", "web")], true));
        let d3 = desired(&s, &pods2, |_| None);
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &d3, &existing, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        assert_eq!(p.update[0].endpoints.len(), 51);
        apply(&mut existing, p, &mut n);
        let all: usize = existing.iter().map(|s| s.endpoints.len()).sum();
        assert_eq!(all, 251);

        // All pods gone: one placeholder remains.
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &desired(&s, [], |_| None), &existing, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 2));
        apply(&mut existing, p, &mut n);
        assert_eq!(existing.len(), 1);
        assert!(existing[0].endpoints.is_empty());
    }

    #[test]
    fn port_changes_move_endpoints_and_foreign_slices_go() {
        let s = web();
        let pods = [pod("a", "10.42.0.5", &[("app", "web")], true)];
        let d = desired(&s, &pods, |_| None);
        let mut existing = vec![];
        let mut n = 0;
        let p = plan(&Template::of_service(&s, "m"), "IPv4", &d, &existing, 100);
        apply(&mut existing, p, &mut n);
        let mut s2 = s.clone();
        s2.spec.as_mut().unwrap().ports = Some(vec![port("http", 80, IntOrString::Int(9999))]);
        let d2 = desired(&s2, &pods, |_| None);
        let p = plan(&Template::of_service(&s2, "m"), "IPv4", &d2, &existing, 100);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
        assert_eq!(p.create[0].ports.as_ref().unwrap()[0].port, Some(9999));
        // A slice owned by an older Service of the same name is deleted.
        let mut s3 = s.clone();
        s3.metadata.uid = Some("other".into());
        let p = plan(&Template::of_service(&s3, "m"), "IPv4", &d, &existing, 100);
        assert_eq!((p.create.len(), p.delete.len()), (1, 1));
        assert_eq!(PortsKey::of(p.create[0].ports.as_ref()), *d.keys().next().unwrap());
    }

    #[test]
    fn service_labels_and_headless_label_are_copied() {
        let mut s = web();
        s.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let l = labels(&s, "m");
        assert_eq!(l["team"], "a");
        assert!(l.contains_key(HEADLESS_LABEL));
    }
}
