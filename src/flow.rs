//! Control shared by the threads, kept apart from the counters in `stats.rs`, which are only
//! exported: the pace the writer sets for the workers (whether it is stalled, how many lines
//! it wants queued for its next batch), how many streams the workers found behind (which the
//! writer sizes and times batches by), the ack wait records are kept alive by (which the
//! main thread reads from the consumers), and how often the connection was re-established
//! (after which the workers issue their pulls again).
//!
//! Relaxed atomics: a thread that reads a value a moment old only sends one round of pulls,
//! or writes one batch, early or late.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::jetstream::Reconnects;

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
    /// Streams whose latest delivered record had more records waiting behind it. When it is
    /// back to 0 the workers have caught up, and the writer writes the tail of a backlog at
    /// once instead of after `batch.interval`.
    streams_behind: AtomicI64,
    /// The shortest ack wait of the consumers pulled, in nanoseconds: `pull.ack_wait`, or a
    /// consumer's own when one created elsewhere has a shorter one. Held records are kept
    /// alive by it.
    ack_wait_ns: AtomicU64,
    /// Counted by the connection's reconnect callback: the service connects with it.
    reconnects: Reconnects,
}

impl Flow {
    /// A flow whose writer wants `wanted` lines queued, for consumers of `ack_wait`.
    pub fn new(wanted: usize, ack_wait: Duration) -> Flow {
        Flow {
            stalled: AtomicBool::new(false),
            queued: AtomicI64::new(0),
            wanted: AtomicUsize::new(wanted),
            streams_behind: AtomicI64::new(0),
            ack_wait_ns: AtomicU64::new(nanos(ack_wait)),
            reconnects: Reconnects::default(),
        }
    }

    /// How often the service's connection was re-established: it connects with this count
    /// ([`crate::jetstream::connect`]), the workers watch it.
    pub fn reconnects(&self) -> &Reconnects {
        &self.reconnects
    }

    /// A worker: one of its streams fell behind (`true`) or caught up (`false`).
    pub fn behind(&self, behind: bool) {
        self.streams_behind
            .fetch_add(if behind { 1 } else { -1 }, Ordering::Relaxed);
    }

    /// How many streams had records waiting behind the latest one delivered.
    pub fn n_streams_behind(&self) -> usize {
        usize::try_from(self.streams_behind.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Whether every stream pulled has delivered all it holds, as far as its latest record
    /// tells.
    pub fn caught_up(&self) -> bool {
        self.streams_behind.load(Ordering::Relaxed) <= 0
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

    /// How many lines the writer's next batch takes.
    pub fn wanted(&self) -> usize {
        self.wanted.load(Ordering::Relaxed)
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
