//! The writer thread (`writer`): gathers the workers' chunks into a batch, writes the batch to
//! InfluxDB when it reaches its line count, its byte size or its age, and acknowledges each
//! record only after InfluxDB has stored it.
//!
//! Receives [`Chunk`]s from every worker over one bounded channel; sends acknowledgements to
//! JetStream and dead letters to `<ns>:dlq`. It leaves when every worker has dropped its
//! sender, after a last flush. While a write is failing it reads no chunks, so the workers
//! stop pulling: the channel and the batch are the only buffers.
//!
//! Failure handling follows the answer (see [`WriteError`]): a rejected batch is split in
//! halves until each bad line stands alone and is dead-lettered (rewriting the good lines is
//! harmless: InfluxDB overwrites a point with the same series and time); a passing failure is
//! retried with exponential backoff and jitter, honouring `Retry-After`; a fatal answer is
//! retried slowly with an error log saying what to fix. Meanwhile the held records are kept
//! alive with in-progress acks, and at the shutdown deadline they are given back (NAK).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver};

use crate::batch::{Batch, Flush, Limits};
use crate::influx::{Influx, WriteError};
use crate::jetstream::{self, Ack, Connection};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::worker::{Chunk, Held};

/// Backoff for passing failures: from `FIRST_BACKOFF`, doubling, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retry period while InfluxDB gives a fatal answer (bad credentials, missing database).
const FATAL_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

pub struct Writer {
    pub influx: Influx,
    pub conn: Connection,
    pub namespace: String,
    pub limits: Limits,
    pub ack_wait: Duration,
    /// See [`crate::config::PullConfig::give_back_delay`].
    pub give_back_delay: Duration,
    pub chunks: Receiver<Chunk>,
    pub shutdown: Shutdown,
    pub stats: Arc<Stats>,
    /// With nothing to write for this long, ping InfluxDB so readiness stays current;
    /// `None` when nothing reads readiness (no `http.listen`).
    pub ping_every: Option<Duration>,
}

/// Why a flush stopped before every record was settled.
struct GaveUp;

struct Running {
    writer: Writer,
    batch: Batch<Held>,
    /// Records `0..settled` of the batch are acknowledged or dead-lettered.
    settled: usize,
    /// A deterministic jitter source; no need for a random crate.
    jitter_state: u64,
    /// The failure being retried, logged once when it starts and once when it ends.
    failing: Option<String>,
    /// Whether the idle pings are failing, so an outage is logged once, not every ping.
    ping_failing: bool,
    /// Whether the batch holds a record delivered while more waited in its stream. Such a
    /// batch is written as soon as every stream has caught up (`Stats::caught_up`) and no
    /// chunk waits, instead of after `interval`: the tail of a backlog is not kept waiting,
    /// while a steady trickle still makes one write per interval, and a stream still behind
    /// keeps its batches full.
    backlog: bool,
}

impl Writer {
    pub fn run(self) {
        let limits = self.limits;
        let mut running = Running {
            writer: self,
            batch: Batch::new(limits),
            settled: 0,
            jitter_state: 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64,
            failing: None,
            ping_failing: false,
            backlog: false,
        };
        running.run();
    }
}

impl Running {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            let timeout = match self.batch.wake_at(now, self.writer.stats.caught_up()) {
                Some(at) => at.saturating_duration_since(now),
                None => self.until_ping(now),
            };
            let chunks = self.writer.chunks.clone();
            channel::select! {
                recv(chunks) -> chunk => match chunk {
                    Ok(mut chunk) => {
                        if let Some(reason) = self.batch.flush_before(&chunk) {
                            self.flush(reason);
                        }
                        self.backlog |= chunk.items().iter().any(|held| held.delivery.pending > 0);
                        self.batch.add(&mut chunk, Instant::now());
                        if let Some(reason) = self.batch.flush_now(Instant::now()) {
                            self.flush(reason);
                        } else if self.backlog
                            && self.writer.stats.caught_up()
                            && self.writer.chunks.is_empty()
                        {
                            self.flush(Flush::CaughtUp);
                        }
                    }
                    Err(_) => {
                        self.flush(Flush::Shutdown);
                        // Acks sit in the client's buffer until its flusher runs; send them
                        // now, before the process exits, or they are lost and redelivered.
                        if let Err(e) = jetstream::flush(&self.writer.conn) {
                            log::warn!("writer: last acknowledgements may not have reached NATS: {e}");
                        }
                        return;
                    }
                },
                default(timeout) => {
                    let caught_up = self.writer.stats.caught_up();
                    if let Some(reason) = self.batch.due(Instant::now(), caught_up) {
                        self.flush(reason);
                    } else if self.batch.lines.is_empty() && self.until_ping(Instant::now()).is_zero() {
                        self.ping();
                    }
                }
            }
        }
    }

    /// How long until InfluxDB should be pinged: `ping_every` after it last answered a write
    /// or a ping.
    fn until_ping(&self, now: Instant) -> Duration {
        let Some(every) = self.writer.ping_every else {
            return Duration::from_secs(3600);
        };
        match self.writer.stats.influx_last_seen() {
            Some(at) => (at + every).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    fn ping(&mut self) {
        let outcome = self.writer.influx.ping();
        match (&outcome, self.ping_failing) {
            (Err(problem), false) => {
                log::warn!("writer: influxdb does not answer: {problem}; not ready until it does");
                self.ping_failing = true;
            }
            (Ok(()), true) => {
                log::info!("writer: influxdb answers again");
                self.ping_failing = false;
            }
            _ => {}
        }
        self.writer.stats.influx_ping(Instant::now(), outcome);
    }

    /// Writes the whole batch, settling every record: acknowledged when stored,
    /// dead-lettered when refused, or given back at the shutdown deadline.
    fn flush(&mut self, reason: Flush) {
        let n = self.batch.lines.len();
        if n == 0 {
            return;
        }
        let started = Instant::now();
        self.settled = 0;
        let outcome = self.store(0..n);
        if outcome.is_err() {
            let given_back = &self.batch.lines.items()[self.settled..];
            let delay = self.writer.give_back_delay;
            for held in given_back {
                let _ = jetstream::ack(&held.message, Ack::Nak(delay));
            }
            Stats::add(&self.writer.stats.given_back, given_back.len() as u64);
            self.writer.stats.hold(-(given_back.len() as i64));
            log::warn!(
                "writer: shutdown deadline reached; gave {} unwritten records back to JetStream",
                given_back.len()
            );
        } else {
            self.batch.written(started, Instant::now());
            Stats::add(&self.writer.stats.batches, 1);
            self.writer.stats.batch_lines.observe(n as u64);
            log::debug!(
                "writer: wrote {n} lines ({} bytes, {reason:?}) in {:?}",
                self.batch.lines.n_bytes(),
                started.elapsed()
            );
        }
        self.batch.clear();
        self.backlog = false;
    }

    /// Writes records `range`, splitting it when InfluxDB rejects some of its lines.
    fn store(&mut self, range: Range<usize>) -> Result<(), GaveUp> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let result = self
                .writer
                .influx
                .write(self.batch.lines.body(range.clone()));
            let stats = &self.writer.stats;
            stats.write_micros.observe_micros(started.elapsed());
            // A rejection of bad lines still shows a working database.
            stats.influx_write(
                Instant::now(),
                match &result {
                    Err(WriteError::Retry { reason, .. }) => Err(reason.clone()),
                    Err(error @ WriteError::Fatal { .. }) => Err(error.to_string()),
                    _ => Ok(()),
                },
            );
            match result {
                Ok(()) => {
                    if let Some(failure) = self.failing.take() {
                        log::info!("writer: InfluxDB is storing again (after: {failure})");
                    }
                    for held in &self.batch.lines.items()[range.clone()] {
                        let _ = jetstream::ack(&held.message, Ack::Done);
                    }
                    Stats::add(&self.writer.stats.written, range.len() as u64);
                    self.writer.stats.hold(-(range.len() as i64));
                    self.settled = range.end;
                    return Ok(());
                }
                Err(error @ (WriteError::Rejected { .. } | WriteError::TooLarge)) => {
                    if range.len() == 1 {
                        self.dead_letter(range.start, &format!("influxdb {error}"));
                        self.settled = range.end;
                        return Ok(());
                    }
                    let middle = range.start + range.len() / 2;
                    self.store(range.start..middle)?;
                    return self.store(middle..range.end);
                }
                Err(WriteError::Retry {
                    reason,
                    retry_after,
                }) => {
                    if self.failing.is_none() {
                        log::warn!("writer: write failed, retrying: {reason}");
                        self.failing = Some(reason);
                    }
                    Stats::add(&self.writer.stats.retries, 1);
                    let wait = match retry_after {
                        Some(after) => after.min(MAX_RETRY_AFTER),
                        None => self.jittered(backoff),
                    };
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    self.wait(wait)?;
                }
                Err(error @ WriteError::Fatal { .. }) => {
                    let text = error.to_string();
                    if self.failing.as_deref() != Some(text.as_str()) {
                        log::error!("writer: InfluxDB refuses every write: {text}; records are held, not acknowledged");
                        self.failing = Some(text);
                    }
                    Stats::add(&self.writer.stats.retries, 1);
                    self.wait(FATAL_BACKOFF)?;
                }
            }
        }
    }

    /// Waits before a retry, keeping the unsettled records alive with in-progress acks well
    /// inside their ack wait. Fails once the shutdown deadline has passed.
    fn wait(&mut self, total: Duration) -> Result<(), GaveUp> {
        let progress_every = (self.writer.ack_wait / 3).max(Duration::from_secs(1));
        let until = Instant::now() + total;
        loop {
            for held in &self.batch.lines.items()[self.settled..] {
                let _ = jetstream::ack(&held.message, Ack::Progress);
            }
            let now = Instant::now();
            if self.writer.shutdown.is_overdue(now) {
                return Err(GaveUp);
            }
            if now >= until {
                return Ok(());
            }
            self.writer
                .shutdown
                .sleep((until - now).min(progress_every));
        }
    }

    /// Spreads retries of several collectors apart: a wait between 50% and 100% of `base`.
    fn jittered(&mut self, base: Duration) -> Duration {
        // xorshift64: plenty for jitter.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let fraction = 0.5 + (x % 1000) as f64 / 2000.0;
        base.mul_f64(fraction)
    }

    fn dead_letter(&self, index: usize, reason: &str) {
        let held = &self.batch.lines.items()[index];
        let Writer {
            conn,
            namespace,
            stats,
            ..
        } = &self.writer;
        // Settled either way: terminated, or left to come back after its ack wait.
        stats.hold(-1);
        match jetstream::dead_letter(conn, namespace, &held.message, &held.delivery, reason) {
            Ok(()) => {
                let _ = jetstream::ack(&held.message, Ack::Term);
                Stats::add(&stats.dead_lettered, 1);
                log::warn!(
                    "writer: dead-lettered record {} of {}: {reason}",
                    held.delivery.stream_sequence, held.message.subject
                );
            }
            Err(e) => log::error!(
                "writer: cannot dead-letter record {} of {} ({reason}): {e}; it will be redelivered",
                held.delivery.stream_sequence, held.message.subject
            ),
        }
    }
}
