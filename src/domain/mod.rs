//! Kubernetes domain rules with no I/O: resource quantities, name rules, Go's quoting and
//! durations, RFC 3339 timestamps, pod helpers and disruption budgets. The apiserver, scheduler and kubelet all
//! use these, so none of them reaches into another's internals; nothing here depends on
//! another k3rs module, the store, the network or tokio.

pub mod cron;
pub mod disruption;
pub mod duration;
pub mod names;
pub mod pod;
pub mod quantity;
pub mod quota;
pub mod quote;
pub mod time;
