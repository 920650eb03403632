//! Counters shared by the threads, read for the shutdown summary and the metrics endpoint.
//!
//! Plain relaxed atomics: each counter is independent and only ever read for reporting.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Records received from JetStream.
    pub fetched: AtomicU64,
    /// Records stored in InfluxDB and acknowledged.
    pub written: AtomicU64,
    /// Records moved to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Write attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Batches stored.
    pub batches: AtomicU64,
    /// Records given back (NAK) at shutdown because they could not be written in time.
    pub given_back: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
