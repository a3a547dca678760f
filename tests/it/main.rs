//! The integration and end-to-end suites, one module each, built as one test binary so the
//! crate is linked once instead of once per suite. Test names carry their suite:
//! `cargo test --test it etcdapi::` runs one suite.

// Tests wait with std::thread::sleep (they are synchronous, not on a runtime), and child test
// processes end with std::process::exit: clippy.toml's bans are for the product's code.
#![allow(clippy::disallowed_methods)]

mod common;

mod apiserver;
mod apiserver_events;
mod apiserver_reviews;
mod apiserver_validation;
mod apiserver_versions;
mod apiserver_watchcache;
mod apiserver_wire;
mod bad_input;
mod cli;
mod controllers;
mod crash;
mod discovery;
mod disk_full;
mod disruption;
mod dnsserver;
mod e2e_dns;
mod e2e_drain;
mod e2e_ingress;
mod e2e_install;
mod e2e_kubectl;
mod e2e_netpol;
mod e2e_pods;
mod e2e_podsecurity;
mod e2e_proxy;
mod e2e_serviceaccount;
mod e2e_sets;
mod e2e_workloads;
mod endpoints;
mod etcd_snapshot;
mod etcdapi;
mod gc;
mod images;
mod ingress;
mod jobs;
mod node_cp;
mod nodelife;
mod openapi;
mod patch_props;
mod pki;
mod podnet;
mod podsecurity;
mod protobuf;
mod protobuf_kubectl;
mod rbac;
mod runtime;
mod scheduling;
mod server;
mod sets;
mod store_conformance;
mod store_etcd_tls;
mod streaming;
mod table;
