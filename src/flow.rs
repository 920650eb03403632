//! The pace the writer sets for the workers: whether it is stalled (no write stores anything),
//! and how many lines it wants queued for its next batch. Control shared by the threads, kept
//! apart from the counters in `stats.rs`, which are only exported.
//!
//! The writer sets both; the workers read them before each round of pull requests, and
//! count the lines they send and the writer takes. Relaxed atomics: a worker that reads a
//! value a moment old only sends one round of pulls early or late.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Flow {
    stalled: AtomicBool,
    /// Lines sent to the writer's channel and not yet taken.
    queued: AtomicUsize,
    /// Lines the writer wants ready for its next batch: its batch size.
    wanted: AtomicUsize,
}

impl Flow {
    /// A flow whose writer wants `wanted` lines queued.
    pub fn new(wanted: usize) -> Flow {
        Flow {
            stalled: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            wanted: AtomicUsize::new(wanted),
        }
    }

    /// Whether the workers may ask for more records: the writer stores, and fewer lines wait
    /// in the channel than its next batch takes. Once that many wait, new pulls would only
    /// hold more records in memory while the write under way finishes.
    pub fn room(&self) -> bool {
        !self.is_stalled()
            && self.queued.load(Ordering::Relaxed) < self.wanted.load(Ordering::Relaxed)
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// The writer: whether its write is failing (set) or storing again (cleared).
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Relaxed);
    }

    /// The writer: how many lines its next batch takes.
    pub fn want(&self, lines: usize) {
        self.wanted.store(lines, Ordering::Relaxed);
    }

    /// A worker sent `lines` lines to the writer's channel.
    pub fn sent(&self, lines: usize) {
        self.queued.fetch_add(lines, Ordering::Relaxed);
    }

    /// The writer took `lines` lines off the channel.
    pub fn taken(&self, lines: usize) {
        // Never below zero, whatever order the two counts arrive in.
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                Some(queued.saturating_sub(lines))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_until_the_next_batch_is_queued_and_never_while_stalled() {
        let flow = Flow::new(1_000);
        assert!(flow.room());
        flow.sent(600);
        assert!(flow.room());
        flow.sent(400);
        assert!(!flow.room(), "a whole batch waits");
        flow.want(2_000);
        assert!(flow.room(), "the writer grew its batch");
        flow.taken(1_000);
        flow.taken(5);
        assert!(flow.room());
        flow.sent(3);
        flow.set_stalled(true);
        assert!(!flow.room());
        assert!(flow.is_stalled());
        flow.set_stalled(false);
        assert!(flow.room());
    }
}
