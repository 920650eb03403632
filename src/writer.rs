//! The writer thread (`writer`): gathers the workers' chunks into a batch, writes the batch to
//! InfluxDB when it reaches its line count, its byte size or its age, and acknowledges each
//! record only after InfluxDB has stored it.
//!
//! Receives [`Chunk`]s from every worker over one bounded channel; sends acknowledgements to
//! JetStream and dead letters to `<ns>:dlq`. It leaves when every worker has dropped its
//! sender, after a last flush. While a write is failing it reads no chunks, so the workers
//! stop pulling: the channel and the batch are the only buffers.
//!
//! Failure handling follows the answer (see [`WriteError`]), step by step as the pure
//! [`crate::store_plan`] decides and `store` performs: a rejection naming a type conflict
//! teaches the [`Schema`], and lines whose values convert without loss are rewritten and
//! written again in the same flush; an InfluxDB 3 partial write names its rejected lines, so
//! the others are acknowledged and only the named ones dead-lettered (or converted); a body
//! InfluxDB 3 refuses naming one line has that line settled and the rest written again (a
//! body its v1 or v2 API refuses naming none is sent again through its v3 API, which names
//! it); any other rejected batch is split in halves until each bad line stands alone and is
//! dead-lettered (rewriting the good lines is harmless: InfluxDB overwrites a point with the
//! same series and time); a passing failure is retried with exponential backoff and jitter,
//! honouring `Retry-After`; a fatal answer is retried slowly with an error log saying what to
//! fix. Meanwhile the held records are kept alive with in-progress acks, and at the shutdown
//! deadline they are given back (NAK).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel::{self, Receiver, Sender};

use crate::batch::{Batch, Flush, Limits, Lines, Resized, Size, Sizer};
use crate::flow::Flow;
use crate::influx::{Influx, Server, WriteError};
use crate::jetstream::{self, Connection};
use crate::schema::{self, Schema};
use crate::settle::{self, keep_alive_every, Held};
use crate::shutdown::Shutdown;
use crate::stats::{unix_ms, Stats};
use crate::store_plan::{self, Partial, Route, Step, StorePlan};
use crate::worker::Chunk;

pub struct Writer {
    pub influx: Influx,
    pub conn: Connection,
    pub namespace: String,
    pub limits: Limits,
    /// See [`crate::config::PullConfig::give_back_delay`].
    pub give_back_delay: Duration,
    /// See [`crate::config::PullConfig::max_deliver`]: records delivered more often are
    /// written one by one.
    pub max_deliver: u64,
    pub chunks: Receiver<Chunk>,
    /// Where emptied chunks go back to the workers, to be filled again.
    pub recycle: Sender<Chunk>,
    pub shutdown: Shutdown,
    pub stats: Arc<Stats>,
    /// The pace shared with the workers: stalled, and the lines wanted for the next batch.
    pub flow: Arc<Flow>,
    /// The batch size, from `batch.max_lines`/`max_bytes`'s starting size up to them.
    pub sizer: Sizer,
    /// The consumers' `max_ack_pending`: JetStream delivers no more unacknowledged records
    /// of a stream than that, so a batch bigger than the streams can have on their way
    /// would never fill.
    pub max_ack_pending: usize,
    /// With nothing to write for this long, ping InfluxDB so readiness stays current;
    /// `None` when nothing reads readiness (no `http.listen`).
    pub ping_every: Option<Duration>,
}

/// Why a flush stopped before every record was settled.
struct GaveUp;

struct Running {
    writer: Writer,
    batch: Batch<Held>,
    /// Which records of the batch are acknowledged or dead-lettered; the others are given
    /// back at the shutdown deadline.
    settled: Vec<bool>,
    /// Chunks taken off the channel while a write is retried, kept alive with the batch and
    /// added to it after. Left in the channel they would expire in an outage longer than
    /// `ack_wait` and be redelivered (and written twice); the workers issue no new pulls
    /// while the writer is stalled, so this holds only what pulls already under way bring.
    parked: VecDeque<Chunk>,
    /// Field types learned from InfluxDB's type-conflict answers, so drifted values are
    /// converted where nothing is lost.
    schema: Schema,
    /// The fields whose first conversion was logged, so each is logged once.
    conversions_logged: HashSet<(String, String)>,
    /// The body of a write of records that are not adjacent in the batch.
    scattered: Vec<u8>,
    /// A deterministic jitter source; no need for a random crate.
    jitter_state: u64,
    /// The failure being retried, logged once when it starts and once when it ends.
    failing: Option<String>,
    /// Whether the idle pings are failing, so an outage is logged once, not every ping.
    ping_failing: bool,
    /// The largest batch size logged so far: growth is logged once per new size.
    largest_logged: usize,
    /// Whether the batch holds a record delivered while more waited in its stream. Such a
    /// batch is written as soon as every stream has caught up (`Flow::caught_up`) and no
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
            settled: Vec::new(),
            parked: VecDeque::new(),
            schema: Schema::default(),
            conversions_logged: HashSet::new(),
            scattered: Vec::new(),
            jitter_state: 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64,
            failing: None,
            ping_failing: false,
            largest_logged: 0,
            backlog: false,
        };
        running.apply_size();
        running.run();
    }
}

impl Running {
    fn run(&mut self) {
        loop {
            if let Some(chunk) = self.parked.pop_front() {
                self.take(chunk);
                continue;
            }
            let now = Instant::now();
            let timeout = match self.batch.wake_at(now, self.writer.flow.caught_up()) {
                Some(at) => at.saturating_duration_since(now),
                None => self.until_ping(now),
            };
            let chunks = self.writer.chunks.clone();
            channel::select! {
                recv(chunks) -> chunk => match chunk {
                    Ok(chunk) => {
                        self.writer.flow.taken(chunk.len());
                        self.take(chunk);
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
                    let caught_up = self.writer.flow.caught_up();
                    if let Some(reason) = self.batch.due(Instant::now(), caught_up) {
                        self.flush(reason);
                    } else if self.batch.lines.is_empty() && self.until_ping(Instant::now()).is_zero() {
                        self.ping();
                    }
                }
            }
        }
    }

    /// Adds a worker's chunk to the batch, flushing before when it would not fit and after
    /// when the batch is full or the tail of a backlog.
    fn take(&mut self, mut chunk: Chunk) {
        if let Some(reason) = self.batch.flush_before(&chunk) {
            // The chunk waits out the flush first in line among the parked ones, so a write
            // that hangs or is retried keeps it alive with them; held in a local meanwhile, it
            // expired and was redelivered (one pull's worth in a 15 s freeze).
            self.parked.push_front(chunk);
            self.flush(reason);
            match self.parked.pop_front() {
                Some(waiting) => chunk = waiting,
                // Given back with the batch at the shutdown deadline.
                None => return,
            }
        }
        self.backlog |= chunk.items().iter().any(|held| held.delivery().pending > 0);
        self.batch.add(&mut chunk, Instant::now());
        // Empty now, with its buffers: a worker fills it again (dropped when none needs it).
        let _ = self.writer.recycle.try_send(chunk);
        if let Some(reason) = self.batch.flush_now(Instant::now()) {
            self.flush(reason);
        } else if self.backlog
            && self.writer.flow.caught_up()
            && self.writer.chunks.is_empty()
            && self.parked.is_empty()
        {
            self.flush(Flush::CaughtUp);
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
        // Bounded by the keep-alive period: chunks sent meanwhile wait in the channel, kept
        // alive by nobody until the ping returns and the writer takes them in.
        let every = keep_alive_every(self.writer.flow.ack_wait());
        let outcome = self.writer.influx.ping_within(Some(every));
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
        self.settled.clear();
        self.settled.resize(n, false);
        // Types learned from earlier batches apply before the first write, so a drifted field
        // costs one rejected write, not one per batch.
        let all: Vec<usize> = (0..n).collect();
        self.convert(&all);
        let (together, alone) = suspects(
            self.batch
                .lines
                .items()
                .iter()
                .map(|held| held.delivery().delivered),
            self.writer.max_deliver,
        );
        let mut outcome = self.store(together);
        for index in alone {
            if outcome.is_err() {
                break;
            }
            let held = &self.batch.lines.items()[index];
            log::warn!(
                "writer: record {} of {} was delivered {} times without being stored (pull.max_deliver is {}); writing it on its own",
                held.delivery().stream_sequence,
                held.message().subject,
                held.delivery().delivered,
                self.writer.max_deliver
            );
            outcome = self.store(vec![index]);
        }
        if outcome.is_err() {
            let n_given_back = settle::give_back_all(self.unsettled(), self.writer.give_back_delay);
            self.parked.clear();
            Stats::add(&self.writer.stats.given_back, n_given_back);
            self.writer.stats.hold(-(n_given_back as i64));
            log::warn!(
                "writer: shutdown deadline reached; gave {n_given_back} unwritten records back to JetStream"
            );
        } else {
            if matches!(reason, Flush::Lines | Flush::Bytes) {
                let resized = self.writer.sizer.full_write(n, started.elapsed());
                self.resized(resized);
            }
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
        // The streams behind change from batch to batch, and with them the cap.
        self.apply_size();
    }

    /// Logs a change of the batch size: growth once per new largest size, the rest at debug.
    /// The flush under way applies it when it ends (`apply_size`).
    fn resized(&mut self, resized: Option<Resized>) {
        match resized {
            Some(Resized::Grew(size)) if size.lines > self.largest_logged => {
                self.largest_logged = size.lines;
                log::info!(
                    "writer: batches of up to {} lines ({} bytes) from now on: bigger writes store faster on this server",
                    size.lines,
                    size.bytes
                );
            }
            Some(change) => log::debug!("writer: batch size {change:?}"),
            None => {}
        }
    }

    /// Sizes the batch, and the lines the workers queue for the next one: the sizer's size,
    /// but never more lines than half of what the streams behind may have unacknowledged,
    /// so the next batch fills while this one is written.
    fn apply_size(&mut self) {
        if self.writer.influx.server() == Some(Server::V3) {
            // Learned at start-up's ping, or at the first write once InfluxDB answered.
            if let Some(Resized::Grew(size)) = self.writer.sizer.flushes_per_write() {
                self.largest_logged = self.largest_logged.max(size.lines);
                log::info!(
                    "writer: batches of up to {} lines ({} bytes) from the start: InfluxDB 3 answers each write after its log flush, so a batch a second is what one writer stores",
                    size.lines,
                    size.bytes
                );
            }
        }
        let n_behind = self.writer.flow.n_streams_behind().max(1);
        let cap = (self.writer.max_ack_pending * n_behind / 2).max(1);
        let size = self.writer.sizer.current();
        let size = Size {
            lines: size.lines.min(cap),
            bytes: size.bytes,
        };
        self.batch.resize(size);
        self.writer.flow.want(size.lines);
    }

    /// Writes records `part` (indices into the batch, ascending), settling each one, by
    /// performing the steps [`StorePlan`] draws from InfluxDB's answers. A rejection naming a
    /// type conflict teaches the schema and the lines that convert without loss are rewritten
    /// and written again; a v3 answer naming the rejected lines settles the others at once;
    /// only what stays unexplained is split in halves.
    fn store(&mut self, part: Vec<usize>) -> Result<(), GaveUp> {
        self.store_through(part, Route::Configured, false)
    }

    /// [`Self::store`], writing through `route` from the first write. To InfluxDB 3, through
    /// whichever API, the lines whose rejection the server could not answer
    /// ([`store_plan::cut_at_risk`]) are left out of each write and stored apart through its
    /// v2 API ([`Route::V2OfV3`]), which neither quotes them nor is diagnosed through the v3
    /// API: checked at a write until done once (`sorted`), since the server is known only
    /// once it answered a `/ping`, which may be after a retry.
    fn store_through(
        &mut self,
        mut part: Vec<usize>,
        route: Route,
        mut sorted: bool,
    ) -> Result<(), GaveUp> {
        if part.is_empty() {
            // Nothing to send: no request, so nothing learned about InfluxDB either.
            return Ok(());
        }
        let mut plan = StorePlan::through(route);
        let mut step = Step::Write;
        loop {
            step = match step {
                Step::Write => {
                    if !sorted
                        && plan.route() == Route::Configured
                        && self.writer.influx.writes_to_influxdb_3()
                    {
                        sorted = true;
                        let lines = &self.batch.lines;
                        let apart = store_plan::apart_at_risk(&part, |i| lines.body(i..i + 1));
                        if let Some((at_risk, rest)) = apart {
                            self.store_through(rest, Route::Configured, true)?;
                            return self.store_through(at_risk, Route::V2OfV3, true);
                        }
                    }
                    let started = Instant::now();
                    let result = self.write_part(&part, plan.route());
                    let stats = &self.writer.stats;
                    stats.write_micros.observe_micros(started.elapsed());
                    let step = plan.answer(result, &part, &mut self.jitter_state);
                    self.answered(step.health());
                    step
                }
                Step::Acknowledge => {
                    self.acknowledge(&part);
                    return Ok(());
                }
                Step::Learn {
                    conflicts,
                    convert,
                    error,
                } => {
                    for conflict in &conflicts {
                        self.schema.learn(conflict);
                    }
                    let changed = if convert { self.convert(&part) } else { 0 };
                    plan.converted(changed, self.writer.influx.diagnoses(), error)
                }
                Step::Split { error, shrink } => {
                    if shrink {
                        let bytes = part.iter().map(|&i| self.batch.lines.body(i..i + 1).len());
                        let resized = self.writer.sizer.too_large(part.len(), bytes.sum());
                        self.resized(resized);
                    }
                    return self.split(part, &error);
                }
                Step::SettlePartial(partial) => return self.settle_partial(partial),
                Step::SettleLine { index, message } => {
                    let again = self.settle_rejected(&[(index, message)]);
                    // A line that converted goes again with the rest.
                    part.retain(|&i| i != index || again.contains(&i));
                    if part.is_empty() {
                        return Ok(());
                    }
                    // A loop, not a call: a body may hold thousands of lines refused one at
                    // a time.
                    Step::Write
                }
                Step::Retry { reason, wait } => {
                    if self.failing.is_none() {
                        log::warn!("writer: write failed, retrying: {reason}");
                        self.failing = Some(reason);
                    }
                    Stats::add(&self.writer.stats.retries, 1);
                    self.wait(wait)?;
                    Step::Write
                }
                Step::Fatal { text, wait } => {
                    if self.failing.as_deref() != Some(text.as_str()) {
                        log::error!("writer: InfluxDB refuses every write: {text}; records are held, not acknowledged");
                        self.failing = Some(text);
                    }
                    Stats::add(&self.writer.stats.retries, 1);
                    self.wait(wait)?;
                    Step::Write
                }
            };
        }
    }

    /// Records what a write's answer says about InfluxDB's `health`. A working database ends
    /// the stall and the failure being retried, even when it rejected lines.
    fn answered(&mut self, health: Result<(), String>) {
        let working = health.is_ok();
        self.writer.stats.influx_write(Instant::now(), health);
        if working {
            self.writer.flow.set_stalled(false);
            if let Some(failure) = self.failing.take() {
                log::info!("writer: InfluxDB is storing again (after: {failure})");
            }
        }
    }

    /// Sends the lines of `part` in one request.
    fn write_part(&mut self, part: &[usize], route: Route) -> Result<(), WriteError> {
        let (Some(&first), Some(&last)) = (part.first(), part.last()) else {
            return Ok(());
        };
        let Running {
            writer,
            batch,
            settled,
            parked,
            scattered,
            ..
        } = self;
        let lines = &batch.lines;
        let body: &[u8] = if last - first + 1 == part.len() {
            lines.body(first..last + 1)
        } else {
            scattered.clear();
            for &i in part {
                scattered.extend_from_slice(lines.body(i..i + 1));
            }
            scattered
        };
        let every = keep_alive_every(writer.flow.ack_wait());
        let Writer {
            influx,
            chunks,
            flow,
            ..
        } = writer;
        let mut call = move || match route {
            Route::Configured => influx.write(body),
            Route::Diagnose => influx.diagnose(body),
            Route::V2OfV3 => influx.write_v2_of_v3(body),
        };
        // The request runs on its own short-lived thread while this one keeps every held
        // record alive: a write that takes longer than the ack wait (a frozen server, a slow
        // network, InfluxDB 3's log flush under a big batch) must not let JetStream
        // redeliver what it holds to another collector, whatever `influx.timeout` says.
        let result = std::thread::scope(|scope| {
            let (done, answer) = channel::bounded(1);
            let spawned = std::thread::Builder::new()
                .name("writer-http".into())
                .spawn_scoped(scope, move || {
                    let _ = done.send(call());
                });
            if let Err(e) = spawned {
                return Err(WriteError::Retry {
                    reason: format!("cannot start the write's thread: {e}"),
                    retry_after: None,
                });
            }
            loop {
                match answer.recv_timeout(every) {
                    Ok(result) => return result,
                    Err(channel::RecvTimeoutError::Timeout) => {
                        keep_held_alive(lines, settled, parked, chunks, flow);
                    }
                    Err(channel::RecvTimeoutError::Disconnected) => {
                        return Err(WriteError::Retry {
                            reason: "the write's thread ended without an answer".into(),
                            retry_after: None,
                        })
                    }
                }
            }
        });
        result
    }

    /// Splits a rejected `part` in halves until each bad line stands alone and is
    /// dead-lettered with `error`.
    fn split(&mut self, mut part: Vec<usize>, error: &WriteError) -> Result<(), GaveUp> {
        if part.len() == 1 {
            self.dead_letter(part[0], &format!("influxdb {error}"));
            return Ok(());
        }
        let second = part.split_off(part.len() / 2);
        self.store(part)?;
        self.store(second)
    }

    /// Settles a v3 partial write: InfluxDB stored every line but the rejected ones. When the
    /// list may be cut short (an answer naming 100 lines or more: InfluxDB 3.6.0 names every
    /// one, but nothing promises that), the lines after the last one named are unknown and
    /// written again (see [`crate::influx::plan_partial`]).
    fn settle_partial(&mut self, partial: Partial) -> Result<(), GaveUp> {
        let Partial {
            stored,
            rejected,
            unknown,
        } = partial;
        self.acknowledge(&stored);
        let again = self.settle_rejected(&rejected);
        if !again.is_empty() {
            self.store(again)?;
        }
        if !unknown.is_empty() {
            self.store(unknown)?;
        }
        Ok(())
    }

    /// Settles lines InfluxDB rejected with its `message` each: learns the types named in
    /// type conflicts, and returns the lines that converted, to be written again; the others
    /// are dead-lettered with InfluxDB's message.
    fn settle_rejected(&mut self, rejected: &[(usize, String)]) -> Vec<usize> {
        for (index, message) in rejected {
            let line = self.batch.lines.body(*index..*index + 1);
            if let Some(measurement) = schema::measurement_of(line) {
                if let Some(conflict) = schema::v3_conflict(message, &measurement) {
                    self.schema.learn(&conflict);
                }
            }
        }
        let indices: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
        let mut again = Vec::new();
        self.convert_into(&indices, &mut again);
        for (index, message) in rejected {
            if !again.contains(index) {
                self.dead_letter(*index, &format!("influxdb rejected the line: {message}"));
            }
        }
        again
    }

    /// Acknowledges records stored by InfluxDB.
    fn acknowledge(&mut self, indices: &[usize]) {
        for &i in indices {
            self.batch.lines.items()[i].acknowledge();
            self.settled[i] = true;
        }
        Stats::add(&self.writer.stats.written, indices.len() as u64);
        self.writer.stats.written(
            indices
                .iter()
                .map(|&i| self.batch.lines.items()[i].measurement()),
            unix_ms(SystemTime::now()),
        );
        self.writer.stats.hold(-(indices.len() as i64));
    }

    /// Rewrites the lines of `part` (ascending) whose values convert to the learned types;
    /// returns how many lines changed.
    fn convert(&mut self, part: &[usize]) -> usize {
        let mut changed = Vec::new();
        self.convert_into(part, &mut changed);
        changed.len()
    }

    /// As [`Self::convert`], pushing the indices of the changed lines onto `changed`; counts
    /// each converted value and logs the first conversion of each field.
    fn convert_into(&mut self, part: &[usize], changed: &mut Vec<usize>) {
        if self.schema.is_empty() || part.is_empty() {
            return;
        }
        let schema = &self.schema;
        let mut conversions = Vec::new();
        self.batch.lines.rewrite(|index, line, out| {
            if part.binary_search(&index).is_err() {
                return false;
            }
            let converted = schema.convert_line(line, out);
            if converted.is_empty() {
                return false;
            }
            changed.push(index);
            conversions.extend(converted);
            true
        });
        for converted in conversions {
            self.writer.stats.converted(&converted.measurement, 1);
            let key = (converted.measurement, converted.field);
            if !self.conversions_logged.contains(&key) {
                log::info!(
                    "writer: field {:?} of measurement {:?} is stored as {} in InfluxDB; converting its values without loss from now on",
                    key.1,
                    key.0,
                    converted.to
                );
                self.conversions_logged.insert(key);
            }
        }
    }

    /// Waits before a retry, keeping the unsettled records alive with in-progress acks well
    /// inside their ack wait. Fails once the shutdown deadline has passed.
    fn wait(&mut self, total: Duration) -> Result<(), GaveUp> {
        let progress_every = keep_alive_every(self.writer.flow.ack_wait());
        let until = Instant::now() + total;
        self.writer.flow.set_stalled(true);
        loop {
            keep_held_alive(
                &self.batch.lines,
                &self.settled,
                &mut self.parked,
                &self.writer.chunks,
                &self.writer.flow,
            );
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

    /// The records held and not yet settled: those of the batch not yet acknowledged or
    /// dead-lettered, and the parked chunks.
    fn unsettled(&self) -> impl Iterator<Item = &Held> {
        unsettled(&self.batch.lines, &self.settled, &self.parked)
    }

    /// Dead-letters a record InfluxDB refused ([`Held::dead_letter`]). Settled either way:
    /// terminated, or left to come back after its ack wait.
    fn dead_letter(&mut self, index: usize, reason: &str) {
        self.settled[index] = true;
        self.writer.stats.hold(-1);
        let Writer {
            conn,
            namespace,
            stats,
            ..
        } = &self.writer;
        self.batch.lines.items()[index].dead_letter("writer", conn, namespace, stats, reason);
    }
}

/// The records held and not yet settled: those of `lines` not `settled`, and the parked
/// chunks'.
fn unsettled<'a>(
    lines: &'a Lines<Held>,
    settled: &'a [bool],
    parked: &'a VecDeque<Chunk>,
) -> impl Iterator<Item = &'a Held> {
    lines
        .items()
        .iter()
        .zip(settled)
        .filter(|(_, settled)| !**settled)
        .map(|(held, _)| held)
        .chain(parked.iter().flat_map(|chunk| chunk.items()))
}

/// Takes the chunks queued in the channel in among the parked ones, then keeps every record
/// held alive: the writer's part while a write is retried or in flight, since the workers
/// keep alive only what they have not handed over.
fn keep_held_alive(
    lines: &Lines<Held>,
    settled: &[bool],
    parked: &mut VecDeque<Chunk>,
    chunks: &Receiver<Chunk>,
    flow: &Flow,
) {
    while let Ok(chunk) = chunks.try_recv() {
        flow.taken(chunk.len());
        parked.push_back(chunk);
    }
    unsettled(lines, settled, parked).for_each(Held::keep_alive);
}

// Pure: which records of a flush are written on their own, tested below without a server.
// What `store` does with each answer is decided in `store_plan.rs`.

/// Sorts the records of a batch, by how often each was delivered, into those written together
/// and those written one by one: a record delivered more than `max_deliver` times has come
/// back again and again without being stored. A delivery count alone cannot tell why (a
/// collector stopped or killed while InfluxDB was down gives its records back, and each
/// give-back is a delivery), so such a record is not dead-lettered for its count: written on
/// its own, InfluxDB's answer settles it by itself, and should it be what stops a collector
/// here, the log line before its write names it (one that stops it while it is encoded is
/// counted by `suspects.rs`).
fn suspects(delivered: impl Iterator<Item = u64>, max_deliver: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut together, mut alone) = (Vec::new(), Vec::new());
    for (index, count) in delivered.enumerate() {
        if count > max_deliver {
            alone.push(index);
        } else {
            together.push(index);
        }
    }
    (together, alone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_delivered_past_max_deliver_are_written_one_by_one() {
        let (together, alone) = suspects([1, 11, 10, 3, 12].into_iter(), 10);
        assert_eq!(together, [0, 2, 3]);
        assert_eq!(alone, [1, 4]);
        let (together, alone) = suspects([1, 1].into_iter(), 10);
        assert_eq!((together, alone), (vec![0, 1], vec![]));
    }
}
