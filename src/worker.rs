//! A worker thread (`worker-N`): pulls the records of the measurements assigned to it, turns
//! each into a line of line protocol, and hands the lines with their messages to the writer.
//!
//! Receives [`Control`] messages from the main thread (a measurement added or removed) and
//! records from JetStream on its own inbox; sends [`Chunk`]s to the writer over a bounded
//! channel. It keeps up to two pull requests outstanding per measurement, so the server is
//! already sending the next batch while this one is encoded, and issues none while the writer
//! is not taking chunks: a slow database slows the pulls instead of growing memory.
//!
//! A record that can never be encoded (not JSON, refused by the encoder) is dead-lettered here
//! and terminated; it never reaches the writer. One delivered too often is not dead-lettered
//! for its count: it is marked in the suspects bucket while it is encoded, so that one whose
//! encoding kills the process is counted and dead-lettered after a few deaths (`suspects.rs`),
//! and the writer writes it on its own (`writer.rs` `suspects`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, SendTimeoutError, Sender};

use crate::batch::Lines;
use crate::catalog::Measurement;
use crate::config::PullConfig;
use crate::flow::Flow;
use crate::jetstream::{self, Arrival, Connection, Delivery, Message, Subscription};
use crate::pulls::{may_ask, pull_size, Abandoned, Pulls, STOP_QUIET};
use crate::record::{Encoder, Origin, Unsigned};
use crate::settle::{self, keep_alive_every};
use crate::shutdown::Shutdown;
use crate::stats::{MeasurementStats, Stats};
use crate::suspects::{Before, Suspects};
use std::sync::Arc;

pub use crate::settle::Held;

/// Lines of one or more pulls with their records.
pub type Chunk = Lines<Held>;

/// What the main thread tells a worker.
#[derive(Debug)]
pub enum Control {
    /// Start pulling this measurement (or keep pulling it, when already pulled).
    Add(Measurement),
    /// Stop pulling it once the records already requested have arrived.
    Remove(String),
}

/// How soon a failed pull request is sent again.
const PULL_RETRY: Duration = Duration::from_millis(200);
/// How often a worker looks for room in the writer's queue while its next batch is queued.
const ROOM_POLL: Duration = Duration::from_millis(2);
/// While a stream is behind, how long a worker lets records gather in its inbox before it
/// hands over a chunk that is not full, napping [`GATHER_NAP`] at a time. Blocked on an empty
/// inbox, it was woken by the `nats` reader thread for every few records, a futex call and a
/// context switch each: about a tenth of the process's CPU under a backlog
/// (docs/BENCHMARKS.md). A nap does not register it as waiting, so the reader's sends wake
/// nobody, and the writer gets fuller chunks, fewer wake-ups there too.
const GATHER_FOR: Duration = Duration::from_millis(1);
const GATHER_NAP: Duration = Duration::from_micros(200);
/// The delay before a record of a measurement this worker does not pull, and knows no
/// abandoned pulls of, may be redelivered (a pull it had forgotten, brought late).
const STRAY_GIVE_BACK_DELAY: Duration = Duration::from_secs(2);
/// After a stop, the worker leaves this long before the shutdown deadline at the latest,
/// leaving the writer time to write what the last pulls brought.
const STOP_MARGIN: Duration = Duration::from_secs(1);
/// The longest a stop waits for its pulls to go quiet before the inbox is dropped: records
/// keep coming under a steady load, and a rolling restart should not wait out the whole
/// `shutdown_timeout` for each collector.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A measurement this worker pulls.
struct Consumer {
    stream: String,
    /// `<inbox>.<generation>.<measurement>`: where its pulls reply.
    reply: String,
    encoder: Encoder,
    /// Its outstanding pulls, what they brought, and whether it is paused for a repair.
    pulls: Pulls,
    /// Records fetched and waiting for this measurement (shared with the metrics endpoint).
    counters: Arc<MeasurementStats>,
    /// Whether its latest record had more waiting behind it in the stream (counted in
    /// `Flow::n_streams_behind` while true).
    behind: bool,
}

impl Consumer {
    /// Records whether records wait behind its latest one, counting the change in
    /// `Flow::n_streams_behind`.
    fn set_behind(&mut self, behind: bool, flow: &Flow) {
        if self.behind != behind {
            self.behind = behind;
            flow.behind(behind);
        }
    }
}

/// A worker's report to the main thread: the consumer or the stream of a measurement is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub measurement: String,
    /// What showed it, e.g. `409 Consumer Deleted`.
    pub why: String,
}

pub struct Worker {
    pub name: String,
    pub conn: Connection,
    pub namespace: String,
    pub pull: PullConfig,
    pub unsigned: Unsigned,
    pub control: Receiver<Control>,
    pub to_writer: Sender<Chunk>,
    /// Chunks the writer emptied, to be filled again instead of allocated.
    pub recycled: Receiver<Chunk>,
    /// Where a missing consumer or stream is reported; bounded, and a full channel only
    /// delays the repair to the pause's end or the main thread's periodic check.
    pub gone: Sender<Gone>,
    pub shutdown: Shutdown,
    pub stats: Arc<Stats>,
    /// The writer's pace: whether it stores, and how many lines it wants queued.
    pub flow: Arc<Flow>,
    /// Marks the records delivered too often while they are encoded, so a record that kills
    /// the process is dead-lettered after a few deaths (`suspects.rs`).
    pub suspects: Suspects,
}

/// The state of a running worker.
struct Running {
    worker: Worker,
    inbox: Subscription,
    inbox_prefix: String,
    consumers: BTreeMap<String, Consumer>,
    chunk: Chunk,
    /// The largest chunk sent in one go: one pull's worth.
    chunk_lines: usize,
    pull_failing: bool,
    /// The connection's reconnect count ([`Flow::reconnects`]) when the pulls were last
    /// issued.
    reconnects: u64,
    /// The pulls that measurements removed from this worker left on the server, until they
    /// have expired: what they bring is given back for after that.
    abandoned: BTreeMap<String, Abandoned>,
    /// Where the next round of pulls starts: the first measurement behind that waited for
    /// its share of the budget in the last one ([`may_ask`]).
    next_first: Option<String>,
    /// The control channel closed: no new pulls; leave once the outstanding ones are quiet.
    stopping: bool,
    /// When the stop began: a stop waits for quiet pulls at most [`STOP_WAIT`].
    stop_began: Option<Instant>,
}

impl Worker {
    /// Runs until the control channel closes (the service is stopping), then hands over what
    /// it holds and returns.
    pub fn run(self) {
        let (inbox_prefix, inbox) = match subscribe_inbox(&self.conn) {
            Ok(inbox) => inbox,
            Err(e) => {
                log::error!(
                    "{}: cannot subscribe to its pull inbox: {e}; it pulls nothing",
                    self.name
                );
                return;
            }
        };
        let chunk_lines = self.pull.batch;
        let reconnects = self.flow.reconnects().count();
        let running = Running {
            worker: self,
            inbox,
            inbox_prefix,
            consumers: BTreeMap::new(),
            chunk: Chunk::with_capacity(chunk_lines, chunk_lines * 256),
            chunk_lines,
            pull_failing: false,
            reconnects,
            abandoned: BTreeMap::new(),
            next_first: None,
            stopping: false,
            stop_began: None,
        };
        running.run();
    }
}

/// A fresh inbox for pull replies: `_INBOX.<id>.<generation>.<measurement>` all arrive on
/// one subscription.
fn subscribe_inbox(conn: &Connection) -> std::io::Result<(String, Subscription)> {
    let prefix = conn.new_inbox();
    let subscription = conn.subscribe(&format!("{prefix}.*.*"))?;
    Ok((prefix, subscription))
}

/// Whether a worker holding `held` records of a chunk of `chunk_lines`, its inbox empty, naps
/// to let more gather ([`GATHER_FOR`]): only while some stream is behind, so more records are
/// on their way, and the chunk is not full, and not past `until`. Caught up, a record is
/// handed over at once, so freshness pays nothing.
fn keep_gathering(
    held: usize,
    chunk_lines: usize,
    caught_up: bool,
    now: Instant,
    until: Instant,
) -> bool {
    !caught_up && held > 0 && held < chunk_lines && now < until
}

fn reply_subject(prefix: &str, generation: u64, measurement: &str) -> String {
    format!("{prefix}.{generation}.{measurement}")
}

/// The measurement and generation a pull reply subject names.
fn reply_parts(subject: &str) -> (&str, Option<u64>) {
    let generation = subject.rsplit('.').nth(1).and_then(|g| g.parse().ok());
    (jetstream::measurement_of(subject), generation)
}

/// Unsubscribes a pull inbox, its last handle, and returns what is left in it once the
/// server has confirmed the unsubscription. The client discards what the server sends from
/// the moment it unsubscribes until the server has read the `UNSUB`: those records come back
/// after their ack wait, nothing is lost. The flush right after the `UNSUB` keeps that window
/// to a round trip; `Subscription::drain` would flush first and leave the `UNSUB` to the
/// client's flusher, up to 5 ms later, and `Subscription::unsubscribe` would discard what is
/// already queued.
fn end_subscription(conn: &Connection, subscription: Subscription) -> Vec<Message> {
    let queued = subscription.receiver().clone();
    // Dropping the last handle unsubscribes and leaves what is queued to be read.
    drop(subscription);
    let _ = jetstream::flush(conn);
    queued.try_iter().collect()
}

impl Running {
    /// Until stopped: tend the pulls, take in what arrives, hand it to the writer.
    fn run(mut self) {
        loop {
            self.tend_pulls(Instant::now());
            self.receive();
            self.hand_over();
            if self.stopping && self.may_leave(Instant::now()) {
                break;
            }
        }
        self.leave();
    }

    /// Keeps two pulls outstanding per measurement (none once stopping), forgets lost ones and
    /// abandoned ones that have expired.
    fn tend_pulls(&mut self, now: Instant) {
        self.abandoned
            .retain(|_, abandoned| !abandoned.is_over(now));
        if !self.stopping {
            self.issue_pulls(now);
        }
        self.forget_lost_pulls(now);
    }

    /// Waits for one control message, pull reply or wake-up, and takes it in; a closed
    /// control channel starts the stop.
    fn receive(&mut self) {
        let control = if self.stopping {
            channel::never()
        } else {
            self.worker.control.clone()
        };
        let inbox = self.inbox.receiver().clone();
        channel::select! {
            recv(control) -> message => match message {
                Ok(message) => self.apply(message),
                Err(_) => {
                    self.stopping = true;
                    self.stop_began = Some(Instant::now());
                }
            },
            recv(inbox) -> message => {
                if let Ok(message) = message {
                    self.take_in(message, &inbox);
                }
            },
            default(self.next_wake(Instant::now(), self.stopping)) => {},
        }
    }

    /// Takes in `first` and what else is in `inbox`, up to one pull's worth, so the writer
    /// gets chunks rather than single records; while a stream is behind, naps for more to
    /// gather ([`keep_gathering`]).
    fn take_in(&mut self, first: Message, inbox: &Receiver<Message>) {
        // One clock read for all that is taken in at once: the pull bookkeeping counts in
        // heartbeats and seconds, and a read per record cost more than the bookkeeping itself.
        let mut now = Instant::now();
        let gather_until = now + GATHER_FOR;
        self.arrive(first, now);
        loop {
            while self.chunk.len() < self.chunk_lines {
                match inbox.try_recv() {
                    Ok(message) => self.arrive(message, now),
                    Err(_) => break,
                }
            }
            let caught_up = self.worker.flow.caught_up();
            if !keep_gathering(
                self.chunk.len(),
                self.chunk_lines,
                caught_up,
                now,
                gather_until,
            ) {
                return;
            }
            std::thread::sleep(GATHER_NAP);
            now = Instant::now();
        }
    }

    /// Once stopping: whether no pull request can still be sending records (each has ended,
    /// filled, expired or lost, or has been silent for a moment, so nothing is on its way to
    /// the inbox that is about to go), or the writer needs the rest of the time to write
    /// what arrived before the deadline.
    fn may_leave(&self, now: Instant) -> bool {
        let busy = self.consumers.values().any(|c| !c.pulls.is_quiet(now));
        // Under a steady load long pulls never go quiet: after STOP_WAIT the worker leaves
        // anyway, and what the server sends during the unsubscription comes back after its
        // ack wait (nothing is lost; a stop stays as short as with the 2 s pulls of before).
        let waited = self
            .stop_began
            .is_some_and(|began| now >= began + STOP_WAIT);
        let cutoff = self
            .worker
            .shutdown
            .deadline()
            .map(|d| d.checked_sub(STOP_MARGIN).unwrap_or(d));
        !busy || waited || cutoff.is_some_and(|cutoff| now >= cutoff)
    }

    /// Hands over the last records, drops the inbox and gives back what came after.
    fn leave(mut self) {
        self.hand_over();
        let Running { worker, inbox, .. } = self;
        // Dropping the inbox ends every pull request of this worker on the server (a pull
        // whose reply subject has no interest is discarded), so records given back from now
        // on go to another collector at once instead of to a pull nobody reads.
        let left = end_subscription(&worker.conn, inbox);
        // Records that arrived after the last look are given back for immediate redelivery.
        for message in left {
            if let Arrival::Record(delivery) = jetstream::classify(&message) {
                Held::new(message, delivery).give_back(worker.pull.give_back_delay());
            }
        }
        let _ = jetstream::flush(&worker.conn);
    }

    /// How long the loop may sleep: until the next pull could expire or be lost, or a
    /// paused measurement resumes; at most a heartbeat, and briefly while stopping.
    fn next_wake(&self, now: Instant, stopping: bool) -> Duration {
        if stopping {
            return STOP_QUIET / 2;
        }
        let heartbeat = self.worker.pull.idle_heartbeat();
        let mut wake = now + heartbeat;
        for consumer in self.consumers.values() {
            if let Some(until) = consumer.pulls.paused_until() {
                wake = wake.min(until);
            }
        }
        if self.pull_failing || self.worker.flow.is_stalled() {
            wake = wake.min(now + PULL_RETRY);
        } else if !self.worker.flow.room() {
            // Soon after the writer takes the queued lines, so its next batch is pulled
            // while it writes this one.
            wake = wake.min(now + ROOM_POLL);
        }
        wake.saturating_duration_since(now)
    }

    fn apply(&mut self, control: Control) {
        match control {
            Control::Add(measurement) => {
                if let Some(consumer) = self.consumers.get_mut(&measurement.name) {
                    // Ready again after a repair: whatever was outstanding died with the
                    // consumer.
                    if consumer.pulls.resume() {
                        consumer.reply = reply_subject(
                            &self.inbox_prefix,
                            consumer.pulls.generation(),
                            &measurement.name,
                        );
                    }
                    return;
                }
                let encoder = match Encoder::new(&measurement.name, self.worker.unsigned) {
                    Ok(encoder) => encoder,
                    Err(e) => {
                        log::error!(
                            "{}: measurement {}: {e}; not pulled",
                            self.worker.name,
                            measurement.name
                        );
                        return;
                    }
                };
                log::debug!("{}: pulling {}", self.worker.name, measurement.name);
                let now = Instant::now();
                let pulls = match self.abandoned.remove(&measurement.name) {
                    Some(abandoned) => abandoned.pulled_again(now),
                    None => Pulls::new(now),
                };
                self.consumers.insert(
                    measurement.name.clone(),
                    Consumer {
                        stream: jetstream::stream_name(&self.worker.namespace, &measurement.name),
                        reply: reply_subject(
                            &self.inbox_prefix,
                            pulls.generation(),
                            &measurement.name,
                        ),
                        encoder,
                        pulls,
                        counters: self.worker.stats.measurement(&measurement.name),
                        behind: false,
                    },
                );
            }
            Control::Remove(name) => {
                let Some(mut consumer) = self.consumers.remove(&name) else {
                    return;
                };
                log::debug!("{}: stops pulling {name}", self.worker.name);
                consumer.set_behind(false, &self.worker.flow);
                let abandoned = Abandoned::at_removal(
                    &consumer.pulls,
                    Instant::now(),
                    self.worker.pull.expires,
                );
                self.abandoned.insert(name, abandoned);
            }
        }
    }

    /// Keeps two pulls outstanding per measurement, those of measurements behind within the
    /// worker's share of the writer's next batch ([`may_ask`]), with one flush for all it
    /// sends.
    fn issue_pulls(&mut self, now: Instant) {
        let reconnects = self.worker.flow.reconnects().count();
        if reconnects != self.reconnects {
            // Pulls waiting on a server this connection left are gone; those on a consumer
            // leader elsewhere may live on, and then only end at their expiry.
            self.reconnects = reconnects;
            for consumer in self.consumers.values_mut() {
                consumer.pulls.forget(now);
            }
        }
        if !self.worker.flow.room() {
            // The writer cannot store what it has, or its next batch is already queued: no
            // new pulls (bounded memory). What the pulls under way bring is taken in (and
            // kept alive while the writer is stalled).
            return;
        }
        let Worker {
            conn,
            pull,
            name,
            flow,
            ..
        } = &self.worker;
        let heartbeat = pull.idle_heartbeat();
        let wanted_lines = flow.wanted();
        // What the measurements behind have asked for and not received: a pull for one of
        // them goes out only while this is under the worker's share ([`may_ask`]).
        let mut requested: usize = self
            .consumers
            .values()
            .filter(|consumer| consumer.behind)
            .map(|consumer| consumer.pulls.requested())
            .sum();
        let mut n_sent = 0;
        // The first measurement behind that had to wait for its share: the next round starts
        // there, so the budget goes round all of them instead of to the first by name.
        let mut deferred: Option<String> = None;
        let inbox_prefix = &self.inbox_prefix;
        let pull_failing = &mut self.pull_failing;
        let mut tend = |measurement: &String, consumer: &mut Consumer| -> Result<(), ()> {
            if consumer.pulls.resume_if_due(now) {
                consumer.reply =
                    reply_subject(inbox_prefix, consumer.pulls.generation(), measurement);
            }
            let size = pull_size(pull.batch, consumer.behind);
            for _ in 0..consumer.pulls.wanted() {
                if consumer.behind && !may_ask(requested, wanted_lines, pull.workers) {
                    deferred.get_or_insert_with(|| measurement.clone());
                    return Ok(());
                }
                match jetstream::request_pull(
                    conn,
                    &consumer.stream,
                    &consumer.reply,
                    size,
                    pull.expires,
                    heartbeat,
                ) {
                    Ok(()) => {
                        consumer.pulls.issued(now, size, pull.expires);
                        n_sent += 1;
                        if consumer.behind {
                            requested += size;
                        }
                    }
                    Err(e) => {
                        if !*pull_failing {
                            log::warn!(
                                "{name}: cannot send a pull request for {}: {e}; retrying",
                                consumer.stream
                            );
                            *pull_failing = true;
                        }
                        return Err(());
                    }
                }
            }
            Ok(())
        };
        let first = self.next_first.take();
        let first = first.as_deref().unwrap_or("");
        let sent = self
            .consumers
            .range_mut::<str, _>((Bound::Included(first), Bound::Unbounded))
            .try_for_each(|(measurement, consumer)| tend(measurement, consumer));
        if sent.is_ok() {
            let _ = self
                .consumers
                .range_mut::<str, _>((Bound::Unbounded, Bound::Excluded(first)))
                .try_for_each(|(measurement, consumer)| tend(measurement, consumer));
        }
        self.next_first = deferred;
        // One round trip for the round: the pulls leave now, not within the client's 5 ms
        // flush delay. It also paces the worker: while it waits, what arrives gathers in the
        // inbox and is taken in as one chunk. Left to the client's flusher instead, the
        // worker woke for every few records: 9 % more CPU for 3 % more rate (200
        // measurements behind, docs/BENCHMARKS.md).
        if n_sent > 0 {
            match jetstream::flush(conn) {
                Ok(()) if self.pull_failing => {
                    log::info!("{name}: pulling again");
                    self.pull_failing = false;
                }
                Ok(()) => {}
                // Not sent, or sent and not confirmed: the heartbeats tell which.
                Err(_) => {}
            }
        }
    }

    /// Forgets pull requests that can no longer bring anything: past their expiry with no
    /// status to say so, or silent for two heartbeats (a lost pull, ADR-37).
    fn forget_lost_pulls(&mut self, now: Instant) {
        let heartbeat = self.worker.pull.idle_heartbeat();
        for consumer in self.consumers.values_mut() {
            if consumer.pulls.forget_lost(now, heartbeat) {
                log::debug!(
                    "{}: pulls on {} were lost; re-issuing",
                    self.worker.name,
                    consumer.stream
                );
            }
        }
    }

    fn arrive(&mut self, message: Message, now: Instant) {
        let classified = jetstream::classify(&message);
        if let Arrival::Record(delivery) = classified {
            self.record(message, delivery, now);
            return;
        }
        // A status message (heartbeat, end of a pull) comes on the pull's own reply subject.
        let (measurement, generation) = reply_parts(&message.subject);
        match classified {
            Arrival::Record(_) => {}
            Arrival::Heartbeat => {
                if let Some(consumer) = self.consumers.get_mut(measurement) {
                    consumer.pulls.heartbeat(now);
                    // The server had nothing to send: whatever was waiting when this worker
                    // last heard went to another collector.
                    consumer.set_behind(false, &self.worker.flow);
                }
            }
            Arrival::PullEnded {
                code, description, ..
            } => {
                let Some(consumer) = self.consumers.get_mut(measurement) else {
                    return;
                };
                if !consumer.pulls.ended(now, generation) {
                    // A pull from before a repair: already forgotten.
                    return;
                }
                if matches!(code, 404 | 408) {
                    // Nothing left to send, likewise.
                    consumer.set_behind(false, &self.worker.flow);
                }
                match PullEnd::of(code, &description) {
                    PullEnd::Done => {}
                    PullEnd::Refused => log::warn!(
                        "{}: pull on {} ended: {code} {description}",
                        self.worker.name,
                        consumer.stream
                    ),
                    PullEnd::Gone => {
                        // Its other pull died with the consumer; the main thread re-creates
                        // what is missing and says when to pull again.
                        if !consumer.pulls.gone(now) {
                            return;
                        }
                        let why = if description.is_empty() {
                            format!("{code}")
                        } else {
                            format!("{code} {description}")
                        };
                        log::debug!(
                            "{}: pull on {} ended: {why}; reported",
                            self.worker.name,
                            consumer.stream
                        );
                        let _ = self.worker.gone.try_send(Gone {
                            measurement: measurement.to_string(),
                            why,
                        });
                    }
                }
            }
            Arrival::Unknown => {}
        }
    }

    fn record(&mut self, message: Message, delivery: Delivery, now: Instant) {
        Stats::add(&self.worker.stats.fetched, 1);
        let measurement = jetstream::measurement_of(&message.subject);
        let Some(consumer) = self.consumers.get_mut(measurement) else {
            // Pulled for a measurement removed since: given back for whoever pulls it next,
            // once the pulls it left here have expired, so it is not brought here again.
            let delay = self
                .abandoned
                .get(measurement)
                .map_or(Duration::ZERO, |abandoned| abandoned.give_back_for(now))
                .max(STRAY_GIVE_BACK_DELAY);
            Held::new(message, delivery).give_back(delay);
            return;
        };
        consumer.counters.delivered(delivery.pending);
        consumer.set_behind(delivery.pending > 0, &self.worker.flow);
        consumer.pulls.record(now);
        let held = Held::new(message, delivery);
        // A record delivered too often is marked while it is encoded, and one whose encoding
        // has ended processes before is dead-lettered (`suspects.rs`).
        let (held, guard) = if self.worker.suspects.is_suspect(held.delivery()) {
            match screen_suspect(&mut self.worker, held) {
                Some(screened) => screened,
                None => return,
            }
        } else {
            (held, None)
        };
        let encoder = &consumer.encoder;
        let encoded = self.chunk.push(held, |held, out| {
            // Both come from the `$JS.ACK` subject and are the same on every delivery, so a
            // redelivered record gives the very same point.
            let origin = Origin {
                stream_sequence: held.delivery().stream_sequence,
                timestamp_ns: held.delivery().timestamp_ns,
            };
            // A panic while encoding one record is caught at its boundary: that record is
            // dead-lettered and the worker goes on. Left to unwind, it would end the worker,
            // and the record, redelivered, would end the next one, on every collector.
            let start = out.len();
            let data = &held.message().data;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                encoder.encode(data, origin, out)
            })) {
                Ok(result) => result.map_err(|error| Refusal::Record(error.to_string())),
                Err(panic) => {
                    out.truncate(start);
                    Err(Refusal::Panicked(panic_message(panic.as_ref())))
                }
            }
        });
        if let Some(key) = guard {
            self.worker.suspects.after(&key);
        }
        match encoded {
            Ok(()) => self.worker.stats.hold(1),
            Err((held, Refusal::Record(reason))) => self.dead_letter(held, &reason),
            Err((held, Refusal::Panicked(message))) => {
                log::error!(
                    "{}: the collector panicked encoding record {} of {}: {message}; dead-lettering it (a bug: please report it with the dead letter)",
                    self.worker.name,
                    held.delivery().stream_sequence,
                    held.message().subject
                );
                self.dead_letter(held, &format!("collector bug: panicked: {message}"));
            }
        }
    }

    /// Dead-letters a record that can never be written ([`Held::dead_letter`]).
    fn dead_letter(&self, held: Held, reason: &str) {
        let Worker {
            conn,
            namespace,
            name,
            stats,
            ..
        } = &self.worker;
        held.dead_letter(name, conn, namespace, stats, reason);
    }

    /// Sends the chunk to the writer. While the writer is not taking it (InfluxDB slow or
    /// down), keeps the held records alive with in-progress acks and takes in what the
    /// outstanding pulls still deliver, so nothing expires and nothing new is requested.
    fn hand_over(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let progress_every = keep_alive_every(self.worker.flow.ack_wait());
        // One the writer emptied, or a new one likely the size of this one: a pull's worth
        // under a backlog, a record or two when idle.
        let next = match self.worker.recycled.try_recv() {
            Ok(emptied) if emptied.is_empty() => emptied,
            _ => Chunk::with_capacity(self.chunk.len(), self.chunk.n_bytes()),
        };
        let mut chunk = std::mem::replace(&mut self.chunk, next);
        loop {
            let lines = chunk.len();
            match self.worker.to_writer.send_timeout(chunk, progress_every) {
                Ok(()) => {
                    self.worker.flow.sent(lines);
                    return;
                }
                Err(SendTimeoutError::Timeout(back)) => {
                    chunk = back;
                    let now = Instant::now();
                    while let Ok(message) = self.inbox.receiver().try_recv() {
                        std::mem::swap(&mut self.chunk, &mut chunk);
                        self.arrive(message, now);
                        std::mem::swap(&mut self.chunk, &mut chunk);
                    }
                    chunk.items().iter().for_each(Held::keep_alive);
                }
                Err(SendTimeoutError::Disconnected(back)) => {
                    // The writer is gone (it only leaves after every worker): give the
                    // records back so another collector writes them now.
                    log::error!(
                        "{}: the writer stopped; giving {} records back",
                        self.worker.name,
                        back.len()
                    );
                    let n = settle::give_back_all(back.items(), self.worker.pull.give_back_delay());
                    self.worker.stats.hold(-(n as i64));
                    return;
                }
            }
        }
    }
}

/// Why a record did not become a line.
enum Refusal {
    /// It can never be written (`record::RecordError`, said as its text).
    Record(String),
    /// Encoding it panicked: a bug of the collector's, caught at the record's boundary.
    Panicked(String),
}

/// Marks a suspect before it is encoded: returns it with its key (to delete once encoded),
/// or `None` when it was dead-lettered (processes died encoding it) or given back (another
/// collector is encoding it).
fn screen_suspect(worker: &mut Worker, held: Held) -> Option<(Held, Option<String>)> {
    let measurement = jetstream::measurement_of(&held.message().subject);
    match worker.suspects.before(measurement, held.delivery()) {
        Before::Encode => Some((held, None)),
        Before::Guarded(key) => Some((held, Some(key))),
        Before::DeadLetter { key, reason } => {
            log::error!(
                "{}: record {} of {}: {reason}; dead-lettering it (a bug: please report it with the dead letter)",
                worker.name,
                held.delivery().stream_sequence,
                held.message().subject
            );
            held.dead_letter(
                &worker.name,
                &worker.conn,
                &worker.namespace,
                &worker.stats,
                &reason,
            );
            worker.suspects.after(&key);
            None
        }
        Before::Taken => {
            held.give_back(worker.pull.give_back_delay());
            None
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// How a status that ends a pull request is dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullEnd {
    /// Expired, or nothing to send: issue the next one.
    Done,
    /// Refused for a reason worth a warning (a limit, a bad request); issue the next one.
    Refused,
    /// The consumer or its stream is gone: 409 `Consumer Deleted`, or 503 no responders (a
    /// pull sent to a consumer that does not exist has nobody to answer it).
    Gone,
}

impl PullEnd {
    fn of(code: u16, description: &str) -> PullEnd {
        match code {
            404 | 408 => PullEnd::Done,
            409 if description.eq_ignore_ascii_case("consumer deleted") => PullEnd::Gone,
            // A new leader for the consumer: pulls on the old one end; the next go to it.
            409 if description.to_ascii_lowercase().contains("leadership") => PullEnd::Done,
            503 => PullEnd::Gone,
            _ => PullEnd::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_gather_only_while_a_stream_is_behind_and_for_a_moment() {
        let now = Instant::now();
        let until = now + GATHER_FOR;
        // (held, caught up, at): whether to nap, and why.
        let cases = [
            ((10, false, now), true, "behind: more on the way"),
            ((10, true, now), false, "caught up: handed over at once"),
            ((500, false, now), false, "a full chunk goes"),
            ((10, false, until), false, "not past the moment"),
            ((0, false, now), false, "a status alone is no record"),
        ];
        for ((held, caught_up, at), gathers, why) in cases {
            assert_eq!(
                keep_gathering(held, 500, caught_up, at, until),
                gathers,
                "{why}"
            );
        }
    }

    #[test]
    fn reply_subjects_name_generation_and_measurement() {
        let subject = reply_subject("_INBOX.abc", 3, "access");
        assert_eq!(subject, "_INBOX.abc.3.access");
        assert_eq!(reply_parts(&subject), ("access", Some(3)));
        assert_eq!(reply_parts("stray"), ("stray", None));
    }

    #[test]
    fn pull_ends() {
        let check = |code, description, expected| {
            assert_eq!(
                PullEnd::of(code, description),
                expected,
                "{code} {description}"
            )
        };
        check(404, "No Messages", PullEnd::Done);
        check(408, "Request Timeout", PullEnd::Done);
        check(409, "Consumer Deleted", PullEnd::Gone);
        check(409, "Leadership Change", PullEnd::Done);
        check(409, "Exceeded MaxWaiting", PullEnd::Refused);
        check(409, "Exceeded MaxRequestBatch of 256", PullEnd::Refused);
        check(
            400,
            "Bad Request - heartbeat value too large",
            PullEnd::Refused,
        );
        check(503, "", PullEnd::Gone);
    }
}
