//! The pace the writer sets for the workers: whether it is stalled (no write stores anything),
//! and how many lines it wants queued for its next batch. Control shared by the threads, kept
//! apart from the counters in `stats.rs`, which are only exported.
//!
//! The writer sets both; the workers read them before each round of pull requests, and
//! count the lines they send and the writer takes. Relaxed atomics: a worker that reads a
//! value a moment old only sends one round of pulls early or late.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct Flow {
    stalled: AtomicBool,
    /// Lines sent to the writer's channel and not yet taken. Signed: the writer may take a
    /// chunk before the worker that sent it has counted it, and for that moment the count is
    /// below zero; clamped at zero instead, it lost that chunk's lines for good and the
    /// workers stopped pulling.
    queued: AtomicI64,
    /// Lines the writer wants ready for its next batch: its batch size.
    wanted: AtomicUsize,
    /// The shortest ack wait of the consumers pulled, in nanoseconds: `pull.ack_wait`, or a
    /// consumer's own when one created elsewhere has a shorter one. Held records are kept
    /// alive by it.
    ack_wait_ns: AtomicU64,
}

impl Flow {
    /// A flow whose writer wants `wanted` lines queued, for consumers of `ack_wait`.
    pub fn new(wanted: usize, ack_wait: Duration) -> Flow {
        Flow {
            stalled: AtomicBool::new(false),
            queued: AtomicI64::new(0),
            wanted: AtomicUsize::new(wanted),
            ack_wait_ns: AtomicU64::new(nanos(ack_wait)),
        }
    }

    /// The ack wait held records are kept alive by ([`crate::settle::keep_alive_every`]).
    pub fn ack_wait(&self) -> Duration {
        Duration::from_nanos(self.ack_wait_ns.load(Ordering::Relaxed))
    }

    /// The main thread read a consumer's own ack wait; returns whether it is shorter than
    /// any before, and so now the one records are kept alive by.
    pub fn consumer_ack_wait(&self, ack_wait: Duration) -> bool {
        let ack_wait = nanos(ack_wait).max(1);
        self.ack_wait_ns.fetch_min(ack_wait, Ordering::Relaxed) > ack_wait
    }

    /// Whether the workers may ask for more records: the writer stores, and fewer lines wait
    /// in the channel than its next batch takes. Once that many wait, new pulls would only
    /// hold more records in memory while the write under way finishes.
    pub fn room(&self) -> bool {
        !self.is_stalled()
            && self.queued.load(Ordering::Relaxed) < lines(self.wanted.load(Ordering::Relaxed))
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
        self.queued.fetch_add(self::lines(lines), Ordering::Relaxed);
    }

    /// The writer took `lines` lines off the channel.
    pub fn taken(&self, lines: usize) {
        self.queued.fetch_sub(self::lines(lines), Ordering::Relaxed);
    }
}

fn lines(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_until_the_next_batch_is_queued_and_never_while_stalled() {
        let flow = Flow::new(1_000, Duration::from_secs(30));
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

    #[test]
    fn a_chunk_taken_before_its_sender_counted_it_is_not_lost() {
        // The writer takes a chunk off the channel before the worker that sent it counts it.
        let flow = Flow::new(10, Duration::from_secs(30));
        flow.taken(10);
        flow.sent(10);
        assert!(flow.room(), "nothing waits in the channel");
    }

    #[test]
    fn the_shortest_consumer_ack_wait_keeps_records_alive() {
        let flow = Flow::new(1_000, Duration::from_secs(30));
        assert_eq!(flow.ack_wait(), Duration::from_secs(30));
        assert!(!flow.consumer_ack_wait(Duration::from_secs(30)), "the same");
        assert!(!flow.consumer_ack_wait(Duration::from_secs(60)), "longer");
        assert_eq!(flow.ack_wait(), Duration::from_secs(30));
        assert!(flow.consumer_ack_wait(Duration::from_secs(6)));
        assert_eq!(flow.ack_wait(), Duration::from_secs(6));
        assert!(!flow.consumer_ack_wait(Duration::from_secs(10)));
        assert_eq!(flow.ack_wait(), Duration::from_secs(6));
    }
}
