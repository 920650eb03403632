//! A worker thread (`worker-N`): pulls the records of the measurements assigned to it, turns
//! each into a line of line protocol, and hands the lines with their messages to the writer.
//!
//! Receives [`Control`] messages from the main thread (a measurement added or removed) and
//! records from JetStream on its own inbox; sends [`Chunk`]s to the writer over a bounded
//! channel. It keeps up to two pull requests outstanding per measurement, so the server is
//! already sending the next batch while this one is encoded, and issues none while the writer
//! is not taking chunks: a slow database slows the pulls instead of growing memory.
//!
//! A record that can never be written (not JSON, refused by the encoder, delivered too often)
//! is dead-lettered here and terminated; it never reaches the writer.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, SendTimeoutError, Sender};

use crate::batch::Lines;
use crate::catalog::Measurement;
use crate::config::PullConfig;
use crate::jetstream::{self, Ack, Arrival, Connection, Delivery, Message, Subscription};
use crate::record::{Encoder, Origin, Unsigned};
use crate::shutdown::Shutdown;
use crate::stats::{MeasurementStats, Stats};
use std::sync::Arc;

/// A record on its way to InfluxDB: the message to acknowledge and where it came from.
#[derive(Debug)]
pub struct Held {
    pub message: Message,
    pub delivery: Delivery,
}

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

/// How long after its own expiry a pull request is given up as lost (a reconnect drops
/// outstanding pulls silently; without this the measurement would go stale).
const LOST_PULL_GRACE: Duration = Duration::from_secs(2);
/// How often the loop wakes with nothing to do, to re-issue pulls and notice lost ones.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// After a stop, the worker leaves this long before the shutdown deadline at the latest,
/// leaving the writer time to write what the last pulls brought.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// One outstanding pull request.
#[derive(Debug)]
struct Pull {
    remaining: usize,
    expires_at: Instant,
}

/// A measurement this worker pulls.
struct Consumer {
    stream: String,
    reply: String,
    encoder: Encoder,
    pulls: VecDeque<Pull>,
    /// Removed by the main thread: no new pulls; dropped once the outstanding ones end.
    removing: bool,
    /// Records fetched and waiting for this measurement (shared with the metrics endpoint).
    counters: Arc<MeasurementStats>,
    /// Whether its latest record had more waiting behind it in the stream (counted in
    /// `Stats::streams_behind` while true).
    behind: bool,
}

pub struct Worker {
    pub name: String,
    pub conn: Connection,
    pub namespace: String,
    pub pull: PullConfig,
    pub unsigned: Unsigned,
    pub control: Receiver<Control>,
    pub to_writer: Sender<Chunk>,
    pub shutdown: Shutdown,
    pub stats: Arc<Stats>,
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
}

impl Worker {
    /// Runs until the control channel closes (the service is stopping), then hands over what
    /// it holds and returns.
    pub fn run(self) {
        let inbox_prefix = self.conn.new_inbox();
        let inbox = match self.conn.subscribe(&format!("{inbox_prefix}.*")) {
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
        let mut running = Running {
            worker: self,
            inbox,
            inbox_prefix,
            consumers: BTreeMap::new(),
            chunk: Chunk::with_capacity(chunk_lines, chunk_lines * 256),
            chunk_lines,
            pull_failing: false,
        };
        running.run();
    }
}

impl Running {
    fn run(&mut self) {
        let never = channel::never();
        let mut stopping = false;
        loop {
            let now = Instant::now();
            if !stopping {
                self.issue_pulls(now);
            }
            self.forget_lost_pulls(now);
            let control = if stopping {
                &never
            } else {
                &self.worker.control
            };
            let inbox = self.inbox.receiver().clone();
            channel::select! {
                recv(control) -> message => match message {
                    Ok(message) => self.apply(message),
                    Err(_) => stopping = true,
                },
                recv(inbox) -> message => {
                    if let Ok(message) = message {
                        self.arrive(message);
                        // Take what else is already here, up to one pull's worth, so the
                        // writer gets chunks rather than single records.
                        while self.chunk.len() < self.chunk_lines {
                            match inbox.try_recv() {
                                Ok(message) => self.arrive(message),
                                Err(_) => break,
                            }
                        }
                    }
                },
                default(IDLE_TICK) => {},
            }
            self.hand_over();
            let stats = &self.worker.stats;
            self.consumers.retain(|_, c| {
                let keep = !(c.removing && c.pulls.is_empty());
                if !keep && c.behind {
                    stats.behind(false);
                }
                keep
            });
            if stopping {
                // Leave once every pull request has ended (filled, expired or lost), so none
                // is left on the server to swallow records after this inbox is gone; but in
                // time for the writer to write what arrived before the deadline.
                let outstanding = self.consumers.values().any(|c| !c.pulls.is_empty());
                let cutoff = self
                    .worker
                    .shutdown
                    .deadline()
                    .map(|d| d.checked_sub(STOP_MARGIN).unwrap_or(d));
                if !outstanding || cutoff.is_some_and(|cutoff| Instant::now() >= cutoff) {
                    break;
                }
            }
        }
        // Records the server sends after this are redelivered to another collector once
        // their ack wait runs out: nothing is lost, they only wait.
        let _ = self.inbox.clone().unsubscribe();
        self.hand_over();
        // Records that arrived after the last look are given back for immediate redelivery.
        while let Ok(message) = self.inbox.receiver().try_recv() {
            if let Arrival::Record(_) = jetstream::classify(&message) {
                let _ = jetstream::ack(&message, Ack::Nak(self.worker.pull.give_back_delay()));
            }
        }
        let _ = jetstream::flush(&self.worker.conn);
    }

    fn apply(&mut self, control: Control) {
        match control {
            Control::Add(measurement) => {
                if let Some(consumer) = self.consumers.get_mut(&measurement.name) {
                    consumer.removing = false;
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
                self.consumers.insert(
                    measurement.name.clone(),
                    Consumer {
                        stream: jetstream::stream_name(&self.worker.namespace, &measurement.name),
                        reply: format!("{}.{}", self.inbox_prefix, measurement.name),
                        encoder,
                        pulls: VecDeque::new(),
                        removing: false,
                        counters: self.worker.stats.measurement(&measurement.name),
                        behind: false,
                    },
                );
            }
            Control::Remove(name) => {
                if let Some(consumer) = self.consumers.get_mut(&name) {
                    log::debug!("{}: stops pulling {name}", self.worker.name);
                    consumer.removing = true;
                }
            }
        }
    }

    /// Keeps two pulls outstanding per measurement.
    fn issue_pulls(&mut self, now: Instant) {
        let Worker {
            conn, pull, name, ..
        } = &self.worker;
        for consumer in self.consumers.values_mut().filter(|c| !c.removing) {
            while consumer.pulls.len() < 2 {
                match jetstream::request_pull(
                    conn,
                    &consumer.stream,
                    &consumer.reply,
                    pull.batch,
                    pull.expires,
                ) {
                    Ok(()) => {
                        if self.pull_failing {
                            log::info!("{name}: pulling again");
                            self.pull_failing = false;
                        }
                        consumer.pulls.push_back(Pull {
                            remaining: pull.batch,
                            expires_at: now + pull.expires,
                        });
                    }
                    Err(e) => {
                        if !self.pull_failing {
                            log::warn!(
                                "{name}: cannot send a pull request for {}: {e}; retrying",
                                consumer.stream
                            );
                            self.pull_failing = true;
                        }
                        return;
                    }
                }
            }
        }
    }

    fn forget_lost_pulls(&mut self, now: Instant) {
        for consumer in self.consumers.values_mut() {
            while consumer
                .pulls
                .front()
                .is_some_and(|p| now > p.expires_at + LOST_PULL_GRACE)
            {
                log::debug!(
                    "{}: a pull on {} was lost; re-issuing",
                    self.worker.name,
                    consumer.stream
                );
                consumer.pulls.pop_front();
            }
        }
    }

    fn arrive(&mut self, message: Message) {
        match jetstream::classify(&message) {
            Arrival::Record(delivery) => self.record(message, delivery),
            Arrival::PullEnded {
                code, description, ..
            } => {
                let measurement = message.subject.rsplit('.').next().unwrap_or("");
                if let Some(consumer) = self.consumers.get_mut(measurement) {
                    consumer.pulls.pop_front();
                    if code == 409 {
                        log::warn!(
                            "{}: pull on {} ended: {code} {description}",
                            self.worker.name,
                            consumer.stream
                        );
                    }
                }
            }
            Arrival::Heartbeat | Arrival::Unknown => {}
        }
    }

    fn record(&mut self, message: Message, delivery: Delivery) {
        Stats::add(&self.worker.stats.fetched, 1);
        let measurement = message.subject.rsplit('.').next().unwrap_or("");
        let Some(consumer) = self.consumers.get_mut(measurement) else {
            // Pulled for a measurement removed since: give it back for whoever pulls it next.
            let _ = jetstream::ack(&message, Ack::Nak(self.worker.pull.give_back_delay()));
            return;
        };
        consumer.counters.delivered(delivery.pending);
        if consumer.behind != (delivery.pending > 0) {
            consumer.behind = delivery.pending > 0;
            self.worker.stats.behind(consumer.behind);
        }
        if let Some(front) = consumer.pulls.front_mut() {
            front.remaining -= 1;
            if front.remaining == 0 {
                consumer.pulls.pop_front();
            }
        }
        if consumer.removing {
            // A pull issued before the measurement was removed brought it: leave it in the
            // stream with the others, for when the measurement is added again.
            let _ = jetstream::ack(&message, Ack::Nak(self.worker.pull.give_back_delay()));
            return;
        }
        if delivery.delivered > self.worker.pull.max_deliver {
            // The history: how often it came back, and what last stopped a write here.
            let last_failure = match self.worker.stats.last_write_failure() {
                Some(failure) => format!("; last write failure here: {failure}"),
                None => String::new(),
            };
            let reason = format!(
                "delivered {} times without being stored (pull.max_deliver is {}){last_failure}",
                delivery.delivered, self.worker.pull.max_deliver
            );
            self.dead_letter(Held { message, delivery }, &reason);
            return;
        }
        let encoder = &consumer.encoder;
        let held = Held { message, delivery };
        let encoded = self.chunk.push(held, |held, out| {
            // Both come from the `$JS.ACK` subject and are the same on every delivery, so a
            // redelivered record gives the very same point.
            let origin = Origin {
                stream_sequence: held.delivery.stream_sequence,
                timestamp_ns: held.delivery.timestamp_ns,
            };
            encoder.encode(&held.message.data, origin, out)
        });
        match encoded {
            Ok(()) => self.worker.stats.hold(1),
            Err((held, error)) => self.dead_letter(held, &error.to_string()),
        }
    }

    /// Moves a record to the dead-letter stream, then terminates it. If the dead-letter
    /// publish fails the record is left unacknowledged and comes back after its ack wait.
    fn dead_letter(&self, held: Held, reason: &str) {
        let Worker {
            conn,
            namespace,
            name,
            stats,
            ..
        } = &self.worker;
        match jetstream::dead_letter(conn, namespace, &held.message, &held.delivery, reason) {
            Ok(()) => {
                if let Err(e) = jetstream::terminate(conn, &held.message) {
                    log::warn!(
                        "{name}: +TERM of dead-lettered record {} of {} not confirmed ({e}); if it comes back, its dead letter is stored once",
                        held.delivery.stream_sequence, held.message.subject
                    );
                }
                Stats::add(&stats.dead_lettered, 1);
                log::warn!(
                    "{name}: dead-lettered record {} of {}: {reason}",
                    held.delivery.stream_sequence, held.message.subject
                );
            }
            Err(e) => log::error!(
                "{name}: cannot dead-letter record {} of {} ({reason}): {e}; it will be redelivered",
                held.delivery.stream_sequence, held.message.subject
            ),
        }
    }

    /// Sends the chunk to the writer. While the writer is not taking it (InfluxDB slow or
    /// down), keeps the held records alive with in-progress acks and takes in what the
    /// outstanding pulls still deliver, so nothing expires and nothing new is requested.
    fn hand_over(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let progress_every = (self.worker.pull.ack_wait / 3).max(Duration::from_secs(1));
        let mut chunk = std::mem::take(&mut self.chunk);
        loop {
            match self.worker.to_writer.send_timeout(chunk, progress_every) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) => {
                    chunk = back;
                    while let Ok(message) = self.inbox.receiver().try_recv() {
                        std::mem::swap(&mut self.chunk, &mut chunk);
                        self.arrive(message);
                        std::mem::swap(&mut self.chunk, &mut chunk);
                    }
                    for held in chunk.items() {
                        let _ = jetstream::ack(&held.message, Ack::Progress);
                    }
                }
                Err(SendTimeoutError::Disconnected(back)) => {
                    // The writer is gone (it only leaves after every worker): give the
                    // records back so another collector writes them now.
                    log::error!(
                        "{}: the writer stopped; giving {} records back",
                        self.worker.name,
                        back.len()
                    );
                    let delay = self.worker.pull.give_back_delay();
                    for held in back.items() {
                        let _ = jetstream::ack(&held.message, Ack::Nak(delay));
                    }
                    self.worker.stats.hold(-(back.len() as i64));
                    return;
                }
            }
        }
    }
}
