//! When a pod on a node with NoExecute taints must go, with no I/O: upstream's toleration
//! matching (each taint takes the first toleration that tolerates it), the shortest
//! tolerationSeconds among those used, and the eviction scheduled from when the controller
//! first saw the pod under the taints; once scheduled, it keeps its time until it is
//! cancelled (the taints go, or are tolerated for ever) or made immediate (one is not
//! tolerated).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::jiff::Timestamp;

/// Whether `t` tolerates `taint`: an empty effect or key matches any; `Exists` ignores the
/// value; `Equal` (the default) compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    let key = t.key.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect || !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The tolerations used to tolerate every taint (the first match of each), or `None` if
/// one taint is not tolerated.
pub fn matching<'a>(taints: &[Taint], tolerations: &'a [Toleration]) -> Option<Vec<&'a Toleration>> {
    taints.iter().map(|taint| tolerations.iter().find(|t| tolerates(t, taint))).collect()
}

/// How long the `used` tolerations hold: the shortest tolerationSeconds (zero or less
/// means not at all), `None` for ever.
pub fn min_toleration(used: &[&Toleration]) -> Option<Duration> {
    if used.is_empty() {
        return Some(Duration::ZERO);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Some(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    min.map(|s| Duration::from_secs(s.unsigned_abs()))
}

/// An eviction the controller has scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// When the controller first saw the pod under the taints.
    pub since: Timestamp,
    pub at: Timestamp,
}

/// What to do with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No taints, or tolerated for ever: nothing (a scheduled eviction is cancelled).
    Keep,
    /// Delete it now.
    Evict,
    /// Delete it at `at` unless things change.
    Wait(Scheduled),
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// The plan for a pod with `tolerations` on a node with `no_execute` taints, given what was
/// scheduled for it before.
pub fn plan(no_execute: &[Taint], tolerations: &[Toleration], scheduled: Option<Scheduled>, now: Timestamp) -> Plan {
    if no_execute.is_empty() {
        return Plan::Keep;
    }
    let Some(used) = matching(no_execute, tolerations) else { return Plan::Evict };
    let Some(hold) = min_toleration(&used) else { return Plan::Keep };
    let s = scheduled.unwrap_or(Scheduled { since: now, at: after(now, hold) });
    if s.at <= now {
        return Plan::Evict;
    }
    Plan::Wait(s)
}
