//! A work queue as upstream's controllers use one: an item is queued at most once, never
//! handed to two workers at once (one added while it is being worked on runs again after),
//! and one that fails comes back after a back-off that grows with its failures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    active: HashSet<T>,
    /// Added while active: queued again when done.
    again: HashSet<T>,
    failures: HashMap<T, u32>,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                again: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if s.active.contains(&item) {
            s.again.insert(item);
            return;
        }
        if s.queued.insert(item.clone()) {
            s.queue.push_back(item);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// The next item, waiting for one; the caller must call [`Queue::done`] with it.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(item) = s.queue.pop_front() {
                    s.queued.remove(&item);
                    s.active.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Another worker may take the rest.
                        self.ready.notify_one();
                    }
                    return item;
                }
            }
            notified.await;
        }
    }

    /// Ends work on `item`; a failure brings it back after `backoff(failures so far)`.
    pub fn done(self: &Arc<Self>, item: T, ok: bool, backoff: fn(u32) -> Duration) {
        let mut s = self.lock();
        s.active.remove(&item);
        let again = s.again.remove(&item);
        if ok {
            s.failures.remove(&item);
        } else {
            let n = s.failures.entry(item.clone()).or_insert(0);
            let delay = backoff(*n);
            *n += 1;
            drop(s);
            let q = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                q.add(item);
            });
            return;
        }
        drop(s);
        if again {
            self.add(item);
        }
    }

    /// Items waiting (not counting those being worked on).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: u32) -> Duration {
        Duration::ZERO
    }

    #[tokio::test]
    async fn an_item_is_queued_once_and_never_worked_on_twice_at_once() {
        let q = Queue::new();
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, 1);
        // Added while being worked on: not handed out, but queued again when done.
        q.add(1);
        assert_eq!(q.next().await, 2);
        assert!(q.is_empty());
        q.done(2, true, none);
        q.done(1, true, none);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, 1);
    }

    #[tokio::test]
    async fn a_failed_item_comes_back_after_its_backoff() {
        let q = Queue::new();
        q.add("x");
        let x = q.next().await;
        q.done(x, false, |n| Duration::from_millis(10 * (1 + u64::from(n))));
        assert!(q.is_empty());
        let again = tokio::time::timeout(Duration::from_secs(5), q.next()).await.expect("requeued");
        assert_eq!(again, "x");
    }
}
