//! Restart and image-pull back-off as upstream's kubelet applies it: 10 s, doubling on each
//! failure up to 5 min; a container that ran for 10 min before failing starts over at 10 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    until: Instant,
}

/// Back-off per key (pod uid + container name, or pod uid + image).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// Records a failure at `now`; `ran_for` is how long the container ran (None for a pull).
    /// Returns the delay before the next attempt.
    pub fn failed(&mut self, key: &str, now: Instant, ran_for: Option<Duration>) -> Duration {
        let reset = ran_for.is_some_and(|d| d >= RESET_AFTER);
        let delay = match self.entries.get(key) {
            Some(e) if !reset => (e.delay * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries.insert(key.to_string(), Entry { delay, until: now + delay });
        delay
    }

    /// When the key is backing off at `now`, the delay in force and the time left.
    pub fn waiting(&self, key: &str, now: Instant) -> Option<(Duration, Duration)> {
        self.entries.get(key).filter(|e| e.until > now).map(|e| (e.delay, e.until - now))
    }

    /// Forgets a key (the pod is gone, or a pull succeeded).
    pub fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key starting with `prefix` (all of one pod's entries).
    pub fn clear_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_minutes() {
        let mut b = Backoff::default();
        let t = Instant::now();
        let delays: Vec<u64> = (0..7).map(|_| b.failed("k", t, Some(Duration::from_secs(1))).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.waiting("k", t).map(|(d, _)| d.as_secs()), Some(300));
        assert!(b.waiting("k", t + Duration::from_secs(301)).is_none());
    }

    #[test]
    fn a_long_run_resets_it() {
        let mut b = Backoff::default();
        let t = Instant::now();
        b.failed("k", t, None);
        b.failed("k", t, None);
        assert_eq!(b.failed("k", t, Some(Duration::from_secs(601))).as_secs(), 10);
    }

    #[test]
    fn keys_are_independent_and_clearable() {
        let mut b = Backoff::default();
        let t = Instant::now();
        b.failed("u1/a", t, None);
        b.failed("u1/b", t, None);
        b.failed("u2/a", t, None);
        b.clear_prefix("u1/");
        assert!(b.waiting("u1/a", t).is_none() && b.waiting("u1/b", t).is_none());
        assert!(b.waiting("u2/a", t).is_some());
    }
}
