//! Compaction policy: keep a time window of history, as kube-apiserver does for etcd.
//!
//! Every `tick` the compactor samples the store's revision. A revision becomes eligible for
//! compaction once it is older than `window`, and the compactor never discards the last
//! `min_retained` revisions, so a quiet store keeps enough history for watchers to resume
//! and a busy one stays bounded. It works over any [`Store`], so the same policy runs for
//! the embedded and the etcd backend.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Revision, Store, StoreError};

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// History younger than this is kept.
    pub window: Duration,
    /// At least this many of the newest revisions are kept.
    pub min_retained: i64,
    /// How often the revision is sampled and compaction considered.
    pub tick: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig { window: Duration::from_secs(300), min_retained: 1000, tick: Duration::from_secs(30) }
    }
}

/// Samples of (when, revision), oldest first; decides what may be compacted.
#[derive(Debug, Default)]
pub struct Policy {
    samples: VecDeque<(Instant, Revision)>,
}

impl Policy {
    /// Records `current` at `now` and returns the revision to compact to, if any is due.
    pub fn observe(
        &mut self,
        cfg: &CompactorConfig,
        now: Instant,
        current: Revision,
        compacted: Revision,
    ) -> Option<Revision> {
        self.samples.push_back((now, current));
        // The newest sample older than the window is the compaction point; older samples are
        // no longer needed once a newer one has aged past the window.
        let mut target = None;
        while let Some(&(at, rev)) = self.samples.front() {
            if now.saturating_duration_since(at) >= cfg.window {
                target = Some(rev);
                self.samples.pop_front();
            } else {
                break;
            }
        }
        if let Some(rev) = target {
            // Keep that sample: it stays the best candidate until a newer one ages out.
            self.samples.push_front((now - cfg.window, rev));
        }
        let target = target?.0.min(current.0 - cfg.min_retained);
        (target > compacted.0).then_some(Revision(target))
    }
}

/// Runs the policy against `store` until `shutdown` resolves.
pub async fn run(store: Arc<dyn Store>, cfg: CompactorConfig, shutdown: impl std::future::Future<Output = ()>) {
    let mut policy = Policy::default();
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let (current, compacted) = match (store.current_revision().await, store.compact_revision().await) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "compactor: reading the store revision failed");
                continue;
            }
        };
        let Some(target) = policy.observe(&cfg, Instant::now(), current, compacted) else { continue };
        match store.compact(target).await {
            Ok(()) => tracing::debug!(rev = target.0, "compacted"),
            // Someone else (an etcd client, another apiserver) compacted further already.
            Err(StoreError::Compacted { .. }) => {}
            Err(e) => tracing::warn!(rev = target.0, error = %e, "compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CompactorConfig {
        CompactorConfig { window: Duration::from_secs(300), min_retained: 1000, tick: Duration::from_secs(30) }
    }

    #[test]
    fn nothing_is_compacted_inside_the_window() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_secs(30 * i);
            assert_eq!(p.observe(&cfg(), now, Revision(10_000 + 5000 * i as i64), Revision(0)), None);
        }
    }

    #[test]
    fn compacts_to_the_revision_seen_a_window_ago() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        let mut last = None;
        for i in 0..=10u64 {
            let now = t0 + Duration::from_secs(30 * i);
            last = p.observe(&cfg(), now, Revision(10_000 + 5000 * i as i64), Revision(0));
        }
        // At 300 s the sample taken at 0 s (revision 10_000) has aged out.
        assert_eq!(last, Some(Revision(10_000)));
        let next = p.observe(&cfg(), t0 + Duration::from_secs(330), Revision(70_000), Revision(10_000));
        assert_eq!(next, Some(Revision(15_000)));
    }

    #[test]
    fn always_keeps_the_minimum_number_of_revisions() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.observe(&cfg(), t0, Revision(1500), Revision(0));
        // Quiet store: the old sample is past the window but only 500 revisions are older
        // than the newest thousand.
        let got = p.observe(&cfg(), t0 + Duration::from_secs(600), Revision(1600), Revision(0));
        assert_eq!(got, Some(Revision(600)));
        let again = p.observe(&cfg(), t0 + Duration::from_secs(630), Revision(1600), Revision(600));
        assert_eq!(again, None);
    }

    #[test]
    fn never_goes_below_what_is_already_compacted() {
        let mut p = Policy::default();
        let t0 = Instant::now();
        p.observe(&cfg(), t0, Revision(5000), Revision(0));
        assert_eq!(p.observe(&cfg(), t0 + Duration::from_secs(301), Revision(9000), Revision(6000)), None);
    }
}
