//! Watches: history from the file, then live commits from the writer's broadcast.
//!
//! A watch first subscribes to the broadcast, then reads history up to the revision current
//! at that moment, then follows the broadcast, skipping what history already delivered.
//! Subscribing before reading is what makes the hand-over gap-free: any commit the
//! history read did not see is still queued for the subscriber. A watcher that falls more
//! than the broadcast's capacity behind is dropped by the broadcast, never waited for; it
//! then subscribes again and re-reads the missed revisions from the file, so writers never
//! wait on watchers and watchers never lose events (unless compaction removed them, which
//! ends the watch with [`StoreError::Compacted`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, Notify};

use super::{read, Committed, Shared};
use crate::store::{Event, KeyRange, Result, Revision, StoreError, Watch, WatchItem};

/// Most events one history read returns, and one live item carries: a commit of a large
/// range delete holds hundreds of thousands, which would make one oversized response.
const HISTORY_CHUNK: usize = 1000;

#[derive(Default)]
struct ProgressRequest {
    wanted: AtomicBool,
    notify: Notify,
}

struct WatchState {
    shared: Arc<Shared>,
    range: KeyRange,
    /// The lowest revision not yet delivered.
    next: Revision,
    rx: Option<broadcast::Receiver<Arc<Committed>>>,
    /// History still to read from the file, up to this revision.
    replay_to: Option<Revision>,
    progress: Arc<ProgressRequest>,
    /// Events of a received commit not yet handed out, oldest first (the commit counts as
    /// delivered in `next` already).
    backlog: VecDeque<Event>,
    done: bool,
}

pub(super) fn start(shared: Arc<Shared>, range: KeyRange, next: Revision) -> Watch {
    let progress = Arc::new(ProgressRequest::default());
    let state = WatchState {
        shared,
        range,
        next,
        rx: None,
        replay_to: None,
        progress: progress.clone(),
        backlog: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        let item = st.step().await?;
        Some((item, st))
    });
    let request = Arc::new(move || {
        progress.wanted.store(true, Ordering::SeqCst);
        progress.notify.notify_one();
    });
    Watch::new(Box::pin(stream), request)
}

impl WatchState {
    fn fail(&mut self, e: StoreError) -> Option<Result<WatchItem>> {
        self.done = true;
        Some(Err(e))
    }

    fn check_compaction(&mut self, from: Revision) -> Option<StoreError> {
        let compacted = self.shared.state().compact_rev;
        (from < compacted).then_some(StoreError::Compacted { requested: from, compacted })
    }

    async fn step(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if self.done {
                return None;
            }
            if !self.backlog.is_empty() {
                let n = self.backlog.len().min(HISTORY_CHUNK);
                return Some(Ok(WatchItem::Events(self.backlog.drain(..n).collect())));
            }
            if self.rx.is_none() {
                let Some(rx) = self.shared.subscribe() else { return self.fail(StoreError::Closed) };
                self.rx = Some(rx);
                self.replay_to = Some(self.shared.state().rev);
            }
            if let Some(to) = self.replay_to {
                if self.next > to {
                    self.replay_to = None;
                    continue;
                }
                let from = self.next;
                if let Some(e) = self.check_compaction(from) {
                    return self.fail(e);
                }
                let shared = self.shared.clone();
                let range = self.range.clone();
                let read = tokio::task::spawn_blocking(move || {
                    shared.with_reader(|conn| read::history(conn, &range, from, to, HISTORY_CHUNK))
                })
                .await;
                let (events, next) = match read {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => return self.fail(e),
                    Err(e) => return self.fail(StoreError::InvalidArgument(format!("history read failed: {e}"))),
                };
                // Compaction racing the read may have removed part of what it covered.
                if let Some(e) = self.check_compaction(from) {
                    return self.fail(e);
                }
                self.next = next;
                if !events.is_empty() {
                    return Some(Ok(WatchItem::Events(events)));
                }
                continue;
            }
            let Some(rx) = self.rx.as_mut() else { continue };
            if self.progress.wanted.load(Ordering::SeqCst) && rx.is_empty() {
                self.progress.wanted.store(false, Ordering::SeqCst);
                return Some(Ok(WatchItem::Progress(Revision(self.next.0 - 1))));
            }
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(commit) => {
                        let next = self.next;
                        self.backlog.extend(
                            commit
                                .events
                                .iter()
                                .filter(|e| e.kv.mod_revision >= next && self.range.contains(&e.kv.key))
                                .cloned(),
                        );
                        if commit.revision >= self.next {
                            self.next = commit.revision.next();
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, from = self.next.0, "watcher fell behind; re-reading history");
                        self.rx = None;
                    }
                    Err(RecvError::Closed) => return self.fail(StoreError::Closed),
                },
                _ = self.progress.notify.notified() => {}
            }
        }
    }
}
