//! The service: the main thread's loop and the threads it owns.
//!
//! The main thread connects, starts the writer and the fixed pool of workers, then polls the
//! configuration bucket `<ns>_logs` every `poll_interval` until a signal arrives. It reads the
//! entries only when the bucket's last sequence moved, ensures each new measurement's stream
//! and shared durable consumer, and tells the worker it assigns the measurement to. On
//! SIGTERM/SIGINT it pulls the shutdown trigger and waits for all the threads at once, within
//! one deadline (`Threads::stop`): the workers stop pulling and hand over what they hold, and
//! the writer, which leaves once every worker has dropped its sender, flushes and
//! acknowledges. A second signal exits at once.
//!
//! ```text
//!  main ──Control──▶ worker-0 ─┐
//!   │   ──Control──▶ worker-1 ─┼─Chunk (bounded)─▶ writer ──HTTP──▶ InfluxDB
//!   │   ...                    ┘                     │
//!   └── polls KV <ns>_logs       pulls ◀── JetStream ──┘ acks
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use crate::batch::{Limits, Sizer};
use crate::catalog::{Assignment, Catalog, Measurement};
use crate::config::{Config, InfluxApi};
use crate::error::{Error, Result, Retry};
use crate::flow::Flow;
use crate::http;
use crate::influx::Influx;
use crate::jetstream::{self, Connection, JetStream, Reconnects};
use crate::record::Unsigned;
use crate::shutdown;
use crate::stats::{Stats, NATS_CONNECTED};
use crate::suspects::{self, Suspects};
use crate::worker::{Chunk, Control, Gone, Worker};
use crate::writer::Writer;

/// Control messages a worker may have queued; the main thread sends a handful per change.
const CONTROL_CAPACITY: usize = 256;
/// Reports of missing consumers the workers may have queued for the main thread. A report
/// that does not fit is not lost for good: the worker pulls again after a pause, and the
/// periodic check finds what is still missing.
const GONE_CAPACITY: usize = 256;
/// Margin past the shutdown deadline for threads to notice it and leave.
const JOIN_MARGIN: Duration = Duration::from_secs(2);
/// With readiness served, how long the writer may go without hearing from InfluxDB before
/// it pings it; well inside `stats::INFLUX_FRESH`.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Installs the SIGINT/SIGTERM handler: the first signal is delivered on the returned
/// channel, a second one exits at once.
pub fn signals() -> Result<Receiver<()>> {
    static SEEN: AtomicBool = AtomicBool::new(false);
    let (sender, receiver) = channel::bounded(1);
    ctrlc::set_handler(move || {
        if SEEN.swap(true, Ordering::SeqCst) {
            eprintln!(
                "collector: second signal, exiting now; unacknowledged records will be redelivered"
            );
            std::process::exit(130);
        }
        let _ = sender.try_send(());
    })
    .map_err(|e| Error::Thread {
        name: "signal handler".into(),
        problem: e.to_string(),
    })?;
    Ok(receiver)
}

/// The threads the main thread starts and joins (the workers and the writer), stopped
/// within one deadline. Each holds a clone of a sender that is dropped when it ends, even by
/// a panic, so one receive waits for all of them.
struct Threads {
    done: Option<Sender<()>>,
    all_done: Receiver<()>,
    /// In the order started; joined only once all have ended, so the order is only that of
    /// the panic reported.
    owned: Vec<(String, JoinHandle<()>)>,
}

/// How the threads ended.
#[derive(Debug, PartialEq, Eq)]
enum Stopped {
    /// Every thread returned in time.
    Finished,
    /// Some thread was still busy at the deadline; it is left behind.
    Busy,
    /// This thread panicked (the first one named, in join order).
    Panicked(String),
}

impl Threads {
    fn new() -> Threads {
        let (done, all_done) = channel::bounded(0);
        Threads {
            done: Some(done),
            all_done,
            owned: Vec::new(),
        }
    }

    /// Starts a thread named `name` running `body`.
    fn start(&mut self, name: String, body: impl FnOnce() + Send + 'static) -> Result<()> {
        let done = self.done.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _done = done; // dropped when the thread ends, whichever way
                body()
            })
            .map_err(|e| Error::Thread {
                name: name.clone(),
                problem: e.to_string(),
            })?;
        self.owned.push((name, handle));
        Ok(())
    }

    /// Waits until every thread has ended or `deadline` passed, then joins them in the
    /// order started (a panic is returned as the thread's name, not lost).
    fn stop(mut self, deadline: Instant) -> Stopped {
        self.done = None;
        let finished = matches!(
            self.all_done.recv_deadline(deadline),
            Err(channel::RecvTimeoutError::Disconnected)
        );
        if !finished {
            return Stopped::Busy;
        }
        let mut panicked = None;
        for (name, handle) in self.owned {
            if handle.join().is_err() && panicked.is_none() {
                panicked = Some(name);
            }
        }
        match panicked {
            Some(name) => Stopped::Panicked(name),
            None => Stopped::Finished,
        }
    }
}

/// Runs the collector until a signal, then stops it within `shutdown_timeout`: starts the
/// writer and the workers, polls the bucket on this thread, then stops them in one deadline.
pub fn run(config: Config, signals: Receiver<()>) -> Result<()> {
    let stats = Arc::new(Stats::default());
    // Room for the largest batch of chunks: while the writer waits on a POST, the workers keep
    // pulling and encoding the next batch; beyond that they stop pulling. Memory is bounded
    // by two batches of the current size, whatever the backlog.
    let chunk_capacity = config
        .pull
        .workers
        .max(config.batch.max_lines.div_ceil(config.pull.batch));
    // How much of that room is used is the writer's to say: the workers queue its next
    // batch and no more (`flow.rs`), so memory follows the batch size the server needs.
    let flow = Arc::new(Flow::new(config.batch.start().lines, config.pull.ack_wait));
    let (to_writer, chunks) = channel::bounded::<Chunk>(chunk_capacity);
    // The writer hands the chunks it emptied back to the workers, which fill them again: a
    // chunk's buffers are larger than glibc's threshold for consolidating its free lists, and
    // allocated by a worker and freed by the writer they cost the writer's free a
    // consolidation each (docs/BENCHMARKS.md). Bounded: the rest are dropped.
    let (recycle, recycled) = channel::bounded::<Chunk>(config.pull.workers * 2);
    // Listening first: a taken port is refused before anything else starts, and the
    // liveness probe answers while the connections are made.
    let http = match config.http_listen {
        Some(listen) => Some(http::start(
            listen,
            http::Sources {
                stats: stats.clone(),
                chunks: chunks.clone(),
                namespace: config.namespace.clone(),
            },
        )?),
        None => None,
    };
    // An https:// InfluxDB whose certificate is refused needs a fix, not a wait: said in one
    // line before anything else starts.
    let mut influx = Influx::new(&config.influx);
    influx.check_tls()?;
    let Some((conn, js)) = wait_for_nats(&config, &signals, flow.reconnects())? else {
        log::info!("stopped before NATS was ready: nothing was pulled");
        if let Some(http) = http {
            http.finish();
        }
        return Ok(());
    };
    announce(&config, &mut influx, &stats);

    let (mut trigger, shutdown) = shutdown::new();
    let shared = Shared {
        config: &config,
        conn,
        replicas: js.replicas(),
        incarnation: suspects::incarnation(),
        shutdown: shutdown.clone(),
        stats: stats.clone(),
        flow,
    };
    let mut threads = Threads::new();
    // It leaves once every worker has dropped its sender, after a last flush.
    let writer = shared.writer(influx, chunks, recycle, http.is_some());
    threads.start("writer".into(), move || writer.run())?;
    let (gone, gone_reports) = channel::bounded::<Gone>(GONE_CAPACITY);
    let mut controls = Vec::with_capacity(config.pull.workers);
    for i in 0..config.pull.workers {
        let (control, receiver) = channel::bounded(CONTROL_CAPACITY);
        let worker = shared.worker(
            i,
            receiver,
            to_writer.clone(),
            recycled.clone(),
            gone.clone(),
        );
        threads.start(worker.name.clone(), move || worker.run())?;
        controls.push(control);
    }
    drop((to_writer, gone));

    let mut poller = Poller::new(js, &config, controls, &stats, shared.flow.clone());
    poller.serve(&signals, &gone_reports);

    log::info!(
        "stopping: no new pulls; flushing within {:?}",
        config.shutdown_timeout
    );
    Stats::set(&stats.stopping, true);
    trigger.pull(config.shutdown_timeout);
    drop(poller); // closes the control channels: the workers' cue to stop
    let stopped = threads.stop(shutdown.deadline().unwrap_or_else(Instant::now) + JOIN_MARGIN);
    let summary = format!(
        "fetched {}, written {}, dead-lettered {}, given back {}",
        Stats::get(&stats.fetched),
        Stats::get(&stats.written),
        Stats::get(&stats.dead_lettered),
        Stats::get(&stats.given_back)
    );
    if stopped == Stopped::Busy {
        // A thread stuck past the deadline (a write hanging until its timeout, say) holds
        // only unacknowledged records, which JetStream redelivers: leaving is safe.
        log::warn!("stopped with threads still busy past the deadline ({summary}); their records will be redelivered");
        return Ok(());
    }
    if let Some(http) = http {
        http.finish();
    }
    if let Stopped::Panicked(name) = stopped {
        return Err(Error::Thread {
            name,
            problem: "panicked; see the log above".into(),
        });
    }
    log::info!("stopped: {summary}");
    Ok(())
}

/// Logs what the collector starts with, and pings InfluxDB once so readiness is current.
fn announce(config: &Config, influx: &mut Influx, stats: &Stats) {
    let target = match config.influx.api {
        InfluxApi::V2 => format!("v2, bucket {}", config.influx.target),
        InfluxApi::V1 => format!("v1, database {}", config.influx.target),
        InfluxApi::V3 => format!("v3, database {}", config.influx.target),
    };
    log::info!(
        "collector {} starting: namespace {}, nats {}, influxdb {} ({target}), {} workers",
        env!("CARGO_PKG_VERSION"),
        config.namespace,
        config.nats.hosts.join(","),
        config.influx.url,
        config.pull.workers
    );
    if !config.secret_sources.is_empty() {
        log::info!("secrets: {}", config.secret_sources.join(", "));
    }
    let pinged = influx.ping();
    if let Err(problem) = &pinged {
        log::warn!("influxdb: {problem}; records are held until it answers");
    }
    stats.influx_ping(Instant::now(), pinged);
}

/// What every thread the main thread starts is given.
struct Shared<'a> {
    config: &'a Config,
    conn: Connection,
    /// The replicas of the streams the collector creates (the suspects bucket among them).
    replicas: usize,
    /// This process's name in the suspects bucket.
    incarnation: String,
    shutdown: shutdown::Shutdown,
    stats: Arc<Stats>,
    flow: Arc<Flow>,
}

impl Shared<'_> {
    /// The writer; it pings InfluxDB while idle when readiness is served (`http`).
    fn writer(
        &self,
        influx: Influx,
        chunks: Receiver<Chunk>,
        recycle: Sender<Chunk>,
        http: bool,
    ) -> Writer {
        let config = self.config;
        Writer {
            influx,
            conn: self.conn.clone(),
            namespace: config.namespace.clone(),
            // The starting size; the sizer grows it up to `batch.max_lines`/`max_bytes`.
            limits: Limits {
                max_lines: config.batch.start().lines,
                max_bytes: config.batch.start().bytes,
                interval: config.batch.interval,
                linger: config.batch.linger,
            },
            give_back_delay: config.pull.give_back_delay(),
            max_deliver: config.pull.max_deliver,
            chunks,
            recycle,
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            flow: self.flow.clone(),
            sizer: Sizer::new(config.batch.start(), config.batch.ceiling()),
            max_ack_pending: usize::try_from(config.pull.max_ack_pending).unwrap_or(usize::MAX),
            ping_every: http.then_some(PING_EVERY),
        }
    }

    /// Worker `i`.
    fn worker(
        &self,
        i: usize,
        control: Receiver<Control>,
        to_writer: Sender<Chunk>,
        recycled: Receiver<Chunk>,
        gone: Sender<Gone>,
    ) -> Worker {
        let config = self.config;
        Worker {
            name: format!("worker-{i}"),
            conn: self.conn.clone(),
            namespace: config.namespace.clone(),
            pull: config.pull.clone(),
            unsigned: match config.influx.api {
                InfluxApi::V2 | InfluxApi::V3 => Unsigned::Allowed,
                InfluxApi::V1 => Unsigned::Refused,
            },
            control,
            to_writer,
            recycled,
            gone,
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            flow: self.flow.clone(),
            suspects: Suspects::new(
                JetStream::new(self.conn.clone()).with_replicas(self.replicas),
                &config.namespace,
                config.pull.max_deliver,
                self.incarnation.clone(),
            ),
        }
    }
}

/// The first wait between start-up attempts, doubled after each failure up to the last.
const START_RETRY_FIRST: Duration = Duration::from_millis(250);
const START_RETRY_MAX: Duration = Duration::from_secs(5);
/// A start-up failure is logged at the first attempt, then every this many attempts (about
/// every 30 s once the wait has reached its maximum), so a long outage is a few lines.
const START_LOG_EVERY: u32 = 6;

/// Connects to NATS and makes sure of the configuration bucket and the dead-letter stream,
/// waiting as long as it takes for what time mends ([`Error::retry`]): a server not up yet,
/// a cluster electing a leader. Returns `None` when a signal arrives while waiting; what no
/// wait can fix (refused credentials or certificates, a bad setting) is returned at once.
/// Meanwhile `/readyz` says the configuration bucket was not read yet.
fn wait_for_nats(
    config: &Config,
    signals: &Receiver<()>,
    reconnects: &Reconnects,
) -> Result<Option<(Connection, JetStream)>> {
    let mut conn: Option<Connection> = None;
    let mut delay = START_RETRY_FIRST;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let prepared = match &conn {
            Some(conn) => Ok(conn.clone()),
            None => jetstream::connect(
                &config.nats,
                &format!("collector {}", config.namespace),
                reconnects,
            ),
        }
        .and_then(|connected| {
            // Kept across attempts: the client reconnects by itself once connected.
            conn = Some(connected.clone());
            Stats::set(&NATS_CONNECTED, true);
            let js = prepare(config, JetStream::new(connected.clone()))?;
            Ok((connected, js))
        });
        match prepared {
            Ok(ready) => {
                if attempt > 1 {
                    log::info!("nats: ready after {attempt} attempts");
                }
                return Ok(Some(ready));
            }
            Err(e) if e.retry() == Retry::Never => return Err(e),
            Err(e) => {
                if attempt == 1 || attempt % START_LOG_EVERY == 0 {
                    log::warn!(
                        "waiting for nats (attempt {attempt}): {e}; retrying, not ready meanwhile"
                    );
                }
                channel::select! {
                    recv(signals) -> _ => return Ok(None),
                    recv(channel::after(delay)) -> _ => {},
                }
                delay = (delay * 2).min(START_RETRY_MAX);
            }
        }
    }
}

/// What the service needs in JetStream before it starts: the replicas of what it creates,
/// the configuration bucket and the dead-letter stream, created when missing.
fn prepare(config: &Config, js: JetStream) -> Result<JetStream> {
    let (replicas, from) = jetstream::resolve_replicas(&js, &config.nats, &config.namespace)?;
    let js = js.with_replicas(replicas);
    let bucket = jetstream::bucket_name(&config.namespace);
    if js.ensure_bucket(&bucket)? {
        log::info!("created configuration bucket {bucket}; waiting for measurements");
    }
    js.ensure_dead_letter_stream(
        &config.namespace,
        config.dead_letter_max_age,
        jetstream::dead_letter_window(
            config.pull.ack_wait,
            config.pull.max_deliver,
            config.dead_letter_max_age,
        ),
    )?;
    log::info!("streams the collector creates get {replicas} replica(s), from {from}");
    Ok(js)
}

/// The main thread's view of the configuration bucket.
struct Poller<'a> {
    js: JetStream,
    config: &'a Config,
    bucket: String,
    /// The bucket stream's last sequence when it was last read.
    revision: Option<u64>,
    catalog: Catalog,
    assignment: Assignment,
    /// Measurements whose stream or consumer could not be ensured yet; retried every poll.
    unready: BTreeSet<String>,
    controls: Vec<Sender<Control>>,
    /// Whether polling is failing (logged once per outage).
    failing: bool,
    first: bool,
    stats: &'a Stats,
    /// When each measurement's consumer is next surveyed.
    survey: SurveySchedule,
    /// Where a consumer's own ack wait is told to the threads that keep records alive.
    flow: Arc<Flow>,
}

/// Each pulled measurement's consumer is surveyed ([`JetStream::survey`]) every this many
/// polls, at most every [`SURVEY_IDLE`], while records wait in it: deliveries keep the lag
/// gauges current while records flow here, the survey catches those another collector drains
/// and those nobody drains. A measurement found with nothing waiting is surveyed again only
/// after [`SURVEY_IDLE`]: hundreds of idle measurements cost a pipelined request each per
/// 30 s. The survey is also the slow check that every pulled measurement still has its
/// consumer, so a loss that no pull noticed is healed too.
const SURVEY_POLLS: u32 = 5;
const SURVEY_IDLE: Duration = Duration::from_secs(30);

/// When each measurement is next surveyed: a pure schedule, unit-tested.
#[derive(Debug, Default)]
struct SurveySchedule {
    surveyed: HashMap<String, Surveyed>,
}

/// One measurement's last survey.
#[derive(Debug, Clone, Copy)]
struct Surveyed {
    /// Due from then on if records were delivered here since.
    busy_at: Instant,
    /// Due from then on in any case.
    idle_at: Instant,
    /// Its `collector_measurement_records_fetched_total` when it was surveyed.
    fetched: u64,
}

impl SurveySchedule {
    /// Of `names`, those due at `now`: never surveyed, or idle for [`SURVEY_IDLE`], or busy
    /// (records waited, or were delivered since: `fetched` tells how many were fetched for a
    /// measurement so far, asked only once its busy period is over) for the busy period.
    fn due<'n>(
        &self,
        now: Instant,
        names: impl Iterator<Item = &'n str>,
        fetched: impl Fn(&str) -> u64,
    ) -> Vec<String> {
        names
            .filter(|name| match self.surveyed.get(*name) {
                None => true,
                Some(last) => {
                    now >= last.idle_at || (now >= last.busy_at && fetched(name) != last.fetched)
                }
            })
            .map(str::to_string)
            .collect()
    }

    /// `name` was surveyed at `now`, when `fetched` records had been fetched for it: due again
    /// after `busy` if records waited in it (or it could not be read) or once more are
    /// delivered, otherwise after [`SURVEY_IDLE`].
    fn surveyed(&mut self, name: &str, now: Instant, waiting: bool, fetched: u64, busy: Duration) {
        let idle = if waiting { busy } else { SURVEY_IDLE.max(busy) };
        let last = Surveyed {
            busy_at: now + busy,
            idle_at: now + idle,
            fetched,
        };
        self.surveyed.insert(name.to_string(), last);
    }

    /// Forgets the measurements not in `names` (removed from the bucket).
    fn keep_only(&mut self, names: &BTreeSet<&str>) {
        self.surveyed
            .retain(|name, _| names.contains(name.as_str()));
    }
}

impl<'a> Poller<'a> {
    fn new(
        js: JetStream,
        config: &'a Config,
        controls: Vec<Sender<Control>>,
        stats: &'a Stats,
        flow: Arc<Flow>,
    ) -> Poller<'a> {
        Poller {
            js,
            config,
            bucket: jetstream::bucket_name(&config.namespace),
            revision: None,
            catalog: Catalog::default(),
            assignment: Assignment::new(config.pull.workers),
            unready: BTreeSet::new(),
            controls,
            failing: false,
            first: true,
            stats,
            survey: SurveySchedule::default(),
            flow,
        }
    }

    /// Polls the bucket every `poll_interval`, surveys the consumers when due and heals what
    /// the workers report gone, until a signal.
    fn serve(&mut self, signals: &Receiver<()>, gone_reports: &Receiver<Gone>) {
        loop {
            self.poll();
            channel::select! {
                recv(signals) -> _ => return,
                recv(gone_reports) -> report => {
                    if let Ok(report) = report {
                        self.heal(&report.measurement, &report.why);
                    }
                },
                recv(channel::after(self.config.poll_interval)) -> _ => {},
            }
        }
    }

    /// The measurement the bucket names `name`, as last read.
    fn measurement(&self, name: &str) -> Option<Measurement> {
        self.catalog
            .measurements()
            .find(|m| m.name == name)
            .cloned()
    }

    fn poll(&mut self) {
        match self.read() {
            Ok(()) => {
                if self.failing {
                    log::info!("configuration bucket {} readable again", self.bucket);
                    self.failing = false;
                }
            }
            Err(e) => {
                if !self.failing {
                    log::warn!("cannot read configuration ({e}); keeping the current measurements and retrying");
                    self.failing = true;
                }
            }
        }
        self.survey(Instant::now());
        let unready: Vec<String> = self.unready.iter().cloned().collect();
        for name in unready {
            let Some(measurement) = self.measurement(&name) else {
                self.unready.remove(&name);
                continue;
            };
            self.start(&measurement);
        }
    }

    fn read(&mut self) -> Result<()> {
        let revision = match self.js.bucket_revision(&self.bucket)? {
            Some(revision) => revision,
            None => {
                // Deleted under us: recreate it as the Transfer client would, and wait.
                self.js.ensure_bucket(&self.bucket)?;
                0
            }
        };
        if self.revision == Some(revision) {
            return Ok(());
        }
        let entries = self.js.bucket_entries(&self.bucket)?;
        self.revision = Some(revision);
        let changes = self.catalog.update(&entries);
        for (key, problem) in &changes.invalid {
            log::error!(
                "configuration key {key} of bucket {} skipped: {problem}",
                self.bucket
            );
        }
        self.start_all(&changes.added);
        for measurement in &changes.changed {
            log::info!(
                "measurement {} changed: description {:?}",
                measurement.name,
                measurement.description
            );
        }
        for name in &changes.removed {
            self.unready.remove(name);
            self.stats.measurement(name).set_pulled(false);
            if let Some(worker) = self.assignment.remove(name) {
                let _ = self.controls[worker].send(Control::Remove(name.clone()));
            }
            log::info!(
                "measurement {name} removed: no longer pulled; its stream {} and waiting records are kept",
                jetstream::stream_name(&self.config.namespace, name)
            );
        }
        Stats::set(&self.stats.config_loaded, true);
        if self.first {
            let names: Vec<&str> = self
                .catalog
                .measurements()
                .map(|m| m.name.as_str())
                .collect();
            log::info!(
                "measurements: {}",
                if names.is_empty() {
                    "none yet".to_string()
                } else {
                    names.join(", ")
                }
            );
            self.first = false;
        }
        Ok(())
    }

    /// Surveys the pulled measurements that are due ([`SurveySchedule`]) in one pipelined
    /// round: sets their lag gauges and heals those whose consumer or stream is gone. A
    /// failure is left for the next round: the gauges keep their last values meanwhile.
    fn survey(&mut self, now: Instant) {
        // Without a connection each request would wait for its timeout, holding up the poll
        // loop (and a signal's answer) for nothing.
        if !Stats::is(&NATS_CONNECTED) {
            return;
        }
        let pulled: BTreeSet<&str> = self
            .catalog
            .measurements()
            .filter(|m| !self.unready.contains(&m.name))
            .filter(|m| self.assignment.worker_of(&m.name).is_some())
            .map(|m| m.name.as_str())
            .collect();
        self.survey.keep_only(&pulled);
        let fetched = |name: &str| Stats::get(&self.stats.measurement(name).fetched);
        let due = self.survey.due(now, pulled.into_iter(), fetched);
        if due.is_empty() {
            return;
        }
        let busy = (self.config.poll_interval * SURVEY_POLLS).min(SURVEY_IDLE);
        let streams: Vec<String> = due
            .iter()
            .map(|name| jetstream::stream_name(&self.config.namespace, name))
            .collect();
        let surveyed = self.js.survey(&streams);
        for (name, result) in due.iter().zip(surveyed) {
            let counters = self.stats.measurement(name);
            let fetched = Stats::get(&counters.fetched);
            match result {
                Ok(jetstream::Surveyed::Lag {
                    pending,
                    ack_pending,
                    oldest_ns,
                    ack_wait,
                }) => {
                    // A consumer created elsewhere (an older collector, by hand) keeps its own
                    // ack wait; records are kept alive by the shortest.
                    if let Some(ack_wait) = ack_wait {
                        if self.flow.consumer_ack_wait(ack_wait) {
                            log::warn!(
                                "measurement {name}: its consumer's ack_wait is {ack_wait:?}, shorter than pull.ack_wait ({:?}); held records are kept alive by it",
                                self.config.pull.ack_wait
                            );
                        }
                    }
                    counters.refreshed(pending, oldest_ns);
                    let waiting = pending + ack_pending > 0;
                    self.survey.surveyed(name, now, waiting, fetched, busy);
                }
                Ok(jetstream::Surveyed::Missing) => {
                    self.survey.surveyed(name, now, true, fetched, busy);
                    self.heal(name, "consumer missing (periodic check)");
                }
                // An answer that is an error concerns this measurement only (its consumer
                // being re-created, say); no answer at all, likely the next one neither:
                // both are tried again at the next round.
                Err(e) => {
                    log::debug!("measurement {name}: cannot survey its consumer: {e}");
                    self.survey.surveyed(name, now, true, fetched, busy);
                }
            }
        }
    }

    /// Ensures a measurement's stream and consumer, then assigns it to a worker.
    fn start(&mut self, measurement: &Measurement) {
        if let Err(e) = self.ensure(measurement) {
            if self.unready.insert(measurement.name.clone()) {
                log::warn!("measurement {}: {e}; retrying every poll", measurement.name);
            }
            return;
        }
        self.assign(measurement);
    }

    /// Hands a measurement whose stream and consumer exist to a worker.
    fn assign(&mut self, measurement: &Measurement) {
        self.unready.remove(&measurement.name);
        self.stats.measurement(&measurement.name).set_pulled(true);
        let worker = self.assignment.add(&measurement.name);
        let _ = self.controls[worker].send(Control::Add(measurement.clone()));
        log::info!(
            "measurement {} added: pulled by worker-{worker}",
            measurement.name
        );
    }

    /// Starts many measurements at once: their streams and consumers are ensured with the
    /// requests of each kind in flight together (one measurement alone goes through
    /// [`Poller::start`]).
    fn start_all(&mut self, measurements: &[Measurement]) {
        if measurements.len() <= 1 {
            for measurement in measurements {
                self.start(measurement);
            }
            return;
        }
        let names: Vec<(String, String)> = measurements
            .iter()
            .map(|m| (m.name.clone(), m.description.clone()))
            .collect();
        let results = self
            .js
            .ensure_all(&self.config.namespace, &names, &self.config.pull);
        for (measurement, result) in measurements.iter().zip(results) {
            match result {
                Ok((stream, _)) => {
                    if stream {
                        log::info!(
                            "created stream {}",
                            jetstream::stream_name(&self.config.namespace, &measurement.name)
                        );
                    }
                    self.assign(measurement);
                }
                Err(e) => {
                    if self.unready.insert(measurement.name.clone()) {
                        log::warn!("measurement {}: {e}; retrying every poll", measurement.name);
                    }
                }
            }
        }
    }

    /// Creates what is missing of a measurement's stream and consumer; says which it created.
    fn ensure(&self, measurement: &Measurement) -> Result<Ensured> {
        let namespace = &self.config.namespace;
        let stream =
            self.js
                .ensure_stream(namespace, &measurement.name, &measurement.description)?;
        if stream {
            log::info!(
                "created stream {}",
                jetstream::stream_name(namespace, &measurement.name)
            );
        }
        let consumer = self
            .js
            .ensure_consumer(namespace, &measurement.name, &self.config.pull)?;
        Ok(Ensured { stream, consumer })
    }

    /// A worker found the consumer or the stream of a measurement missing (or the periodic
    /// check did): re-creates what is missing if the measurement is still configured, and
    /// tells its worker to pull again. Several collectors may do this at once; whoever comes
    /// second finds everything there.
    pub fn heal(&mut self, name: &str, why: &str) {
        // The bucket first: a measurement removed together with its stream (Transfer's
        // `Remove` deletes the key, then the stream) must not come back.
        if let Err(e) = self.read() {
            log::warn!("measurement {name}: {why}; cannot read the configuration to check it ({e}); retrying every poll");
        }
        let Some(measurement) = self.measurement(name) else {
            return;
        };
        let Some(worker) = self.assignment.worker_of(name) else {
            // Not pulled yet: the poll retries it as a whole.
            return;
        };
        let stream = jetstream::stream_name(&self.config.namespace, name);
        let durable = jetstream::DURABLE;
        let ensured = match self.ensure(&measurement) {
            Ok(ensured) => ensured,
            Err(e) => {
                if self.unready.insert(name.to_string()) {
                    log::warn!("measurement {name}: {why}; cannot re-create its stream or consumer: {e}; retrying every poll");
                }
                return;
            }
        };
        let action = match ensured {
            Ensured { stream: true, .. } => {
                format!("re-created the stream and its consumer {durable}")
            }
            Ensured { consumer: true, .. } => format!("re-created its consumer {durable}"),
            _ => format!(
                "its consumer {durable} exists again (re-created by another collector, or back after a failover)"
            ),
        };
        log::warn!("measurement {name}: {why} on stream {stream}; {action}; pulling again");
        let _ = self.controls[worker].send(Control::Add(measurement));
    }
}

/// What [`Poller::ensure`] had to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ensured {
    stream: bool,
    consumer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_with_records_waiting_is_surveyed_often_an_idle_one_seldom() {
        let start = Instant::now();
        let busy = Duration::from_secs(10);
        let mut schedule = SurveySchedule::default();
        let quiet = ["busy", "idle", "new"];
        let none = |_: &str| 0;
        schedule.surveyed("busy", start, true, 0, busy);
        schedule.surveyed("idle", start, false, 0, busy);
        assert_eq!(schedule.due(start, quiet.into_iter(), none), ["new"]);
        assert_eq!(
            schedule.due(start + busy, quiet.into_iter(), none),
            ["busy", "new"]
        );
        assert_eq!(
            schedule.due(start + SURVEY_IDLE, quiet.into_iter(), none),
            ["busy", "idle", "new"]
        );
        // Records delivered since the last survey make an idle one busy.
        let flowing = ["idle"];
        let seven = |_: &str| 7;
        assert!(schedule.due(start, flowing.into_iter(), seven).is_empty());
        assert_eq!(
            schedule.due(start + busy, flowing.into_iter(), seven),
            ["idle"]
        );
        // The idle period is never shorter than the busy one, whatever poll_interval makes it.
        schedule.surveyed("idle", start, false, 0, Duration::from_secs(60));
        assert!(schedule
            .due(start + SURVEY_IDLE, ["idle"].into_iter(), none)
            .is_empty());
        // A removed measurement is forgotten: were it added back, it is due at once.
        schedule.keep_only(&["busy"].into_iter().collect());
        assert_eq!(schedule.due(start, ["idle"].into_iter(), none), ["idle"]);
    }

    #[test]
    fn threads_that_return_are_finished() {
        let mut threads = Threads::new();
        threads.start("a".into(), || {}).unwrap();
        threads.start("b".into(), || {}).unwrap();
        let stopped = threads.stop(Instant::now() + Duration::from_secs(60));
        assert_eq!(stopped, Stopped::Finished);
    }

    #[test]
    fn a_panicking_thread_is_named() {
        let mut threads = Threads::new();
        threads.start("calm".into(), || {}).unwrap();
        threads
            .start("worker-7".into(), || panic!("on purpose, in a test"))
            .unwrap();
        let stopped = threads.stop(Instant::now() + Duration::from_secs(60));
        assert_eq!(stopped, Stopped::Panicked("worker-7".into()));
    }

    #[test]
    fn a_thread_busy_past_the_deadline_is_left_behind() {
        let (release, wait) = channel::bounded::<()>(0);
        let mut threads = Threads::new();
        threads
            .start("stuck".into(), move || {
                let _ = wait.recv();
            })
            .unwrap();
        // A deadline already past: the stuck thread cannot have ended.
        assert_eq!(threads.stop(Instant::now()), Stopped::Busy);
        drop(release);
    }
}
