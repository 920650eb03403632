//! The chaos soak (issue #14; docs/RELIABILITY.md), run by `scripts/soak.sh`.
//!
//! ```text
//! soak [--duration 10m] [--seed N] [--rate R] [--faults LIST] [--poison PER_MILLE]
//!      [--rss-limit MIB] [--drain-timeout 3m] [--max-print N] [--plant] [--influx v1|v3]
//!      [--upgrade-from PATH]
//! ```
//!
//! Starts on loopback, with the test harness (`tests/util`), a 3-node NATS cluster, InfluxDB
//! 1.6 (or, with `--influx v3`, InfluxDB 3 Core as production runs it, written with
//! `influx.api: v3`; `tests/util/influx3.rs` finds its binary) and three collectors (`COLLECTOR_BIN`) on the namespace `soak` with six measurements,
//! their streams R3. For the duration, a publisher sends numbered records at a steady rate,
//! each acknowledged by JetStream (`Nats-Msg-Id` per record, resent until acknowledged, so
//! the stream sequence of every record is known), while faults drawn from the seed strike.
//! Then it waits for the streams to drain and checks everything exactly: every good record in
//! InfluxDB once with its tags, fields and time; every poison record in `soak:dlq` once with
//! its reason; streams and consumers empty; peak RSS under the bound; a clean exit on
//! SIGTERM. Exit code 0 when all holds, 1 otherwise (each difference is printed with the
//! faults around it), 2 for a bad command line. `--plant` is the checker's self-test: four
//! differences planted after the drain must be reported, and nothing else.
//!
//! `--upgrade-from PATH` mixes two builds: every start of a collector (the first, the restart
//! after each `kill`, `term` and `rolling` fault or an exit of its own) runs `COLLECTOR_BIN` or the
//! older build at PATH, drawn from the seed ([`model::version_of`]), so the two share the
//! consumer and take over each other's records, as in a rolling upgrade or its rollback.
#![allow(deprecated)] // the `nats` crate, as in src/jetstream/

#[path = "../../tests/util/mod.rs"]
mod util;

mod model;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::{Fault, FaultSet, Kind, Mix, Planned, MEASUREMENTS, VERSIONS};
use serde_json::{json, Value};
use util::{
    connect_options, decode_base64, free_port, http_get, run_binary_to_exit, send_signal,
    wait_until, Collector, DatabaseServer, Influx, Influx3, Influx3Options, NatsCluster, TempDir,
    Transfer,
};

const NAMESPACE: &str = "soak";
const N_COLLECTORS: usize = 3;
/// Publishes awaiting their acknowledgement at most.
const WINDOW: usize = 1000;
/// A publish unanswered this long is sent again (same `Nats-Msg-Id`).
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// The collectors' write timeout: an InfluxDB freeze outlasts it.
const INFLUX_TIMEOUT_S: u64 = 5;
/// The consumer's ack wait (the collectors create it): shorter than the default 30 s, so
/// records held by a killed collector come back within the drain.
const ACK_WAIT_S: u64 = 10;
/// A stored time of a record without `time` (its message timestamp) must lie within its
/// publish window widened by this much, for clock steps between the servers and us.
const WINDOW_SLACK_NS: i64 = 1_000_000_000;

struct Args {
    duration_s: u64,
    seed: u64,
    rate: u64,
    faults: FaultSet,
    poison_per_mille: u64,
    rss_limit_mib: u64,
    drain_timeout_s: u64,
    max_print: usize,
    /// Plant four differences before the check and require it to find exactly them.
    plant: bool,
    /// The collectors' `influx.api` and the database behind it: `v1` (InfluxDB 1.6) or `v3`
    /// (InfluxDB 3 Core).
    influx: &'static str,
    /// An older collector build: each collector start runs it or `COLLECTOR_BIN`.
    upgrade_from: Option<String>,
}

fn usage() -> &'static str {
    "usage: soak [--duration 10m] [--seed N] [--rate R] [--faults LIST] [--poison PER_MILLE] \
     [--rss-limit MIB] [--drain-timeout 3m] [--max-print N] [--plant] [--influx v1|v3] \
     [--upgrade-from PATH]"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration_s: 600,
        seed: random_seed(),
        rate: 2000,
        faults: model::parse_faults("all").expect("all is a fault list"),
        poison_per_mille: 20,
        rss_limit_mib: 128,
        drain_timeout_s: 180,
        max_print: 40,
        plant: false,
        influx: "v1",
        upgrade_from: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(usage().to_string());
        }
        if flag == "--plant" {
            args.plant = true;
            continue;
        }
        let value = it
            .next()
            .ok_or(format!("{flag} needs a value; {}", usage()))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("{flag} {v}: {e}; {}", usage()))
        };
        match flag.as_str() {
            "--duration" => args.duration_s = model::parse_duration(&value)?,
            "--seed" => args.seed = number(&value)?,
            "--rate" => args.rate = number(&value)?.max(1),
            "--faults" => args.faults = model::parse_faults(&value)?,
            "--poison" => args.poison_per_mille = number(&value)?.min(1000),
            "--rss-limit" => args.rss_limit_mib = number(&value)?,
            "--drain-timeout" => args.drain_timeout_s = model::parse_duration(&value)?,
            "--max-print" => args.max_print = number(&value)? as usize,
            "--influx" => {
                args.influx = match value.as_str() {
                    "v1" => "v1",
                    "v3" => "v3",
                    _ => return Err(format!("--influx {value}: v1 or v3; {}", usage())),
                }
            }
            "--upgrade-from" => args.upgrade_from = Some(value),
            _ => return Err(format!("unknown option {flag}; {}", usage())),
        }
    }
    if args.plant && args.influx == "v3" {
        // It deletes a point, and InfluxDB 3 Core deletes tables and databases, not rows.
        return Err("--plant needs --influx v1: InfluxDB 3 cannot delete a point".into());
    }
    Ok(args)
}

fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    model::Rng::new(nanos ^ u64::from(std::process::id()) << 32).next_u64() % 1_000_000_000
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A lock that survives a panicked holder: a fault that failed is reported, and the run goes on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn stream_name(m: usize) -> String {
    format!("{NAMESPACE}:logs:{}", MEASUREMENTS[m])
}

/// Something that happened during the run: a fault (start to end) or a finding.
#[derive(Clone, Debug)]
struct Event {
    kind: String,
    target: String,
    start_s: f64,
    end_s: f64,
    note: String,
}

/// One collector process slot: the process (restarted in place) and its peak RSS over every
/// start.
struct Slot {
    index: usize,
    name: String,
    collector: Collector,
    http_port: u16,
    peak_kib: u64,
    n_starts: u32,
    /// The build it runs now (an index into [`VERSIONS`]) and its starts on each.
    version: usize,
    starts_by_version: [u32; 2],
    /// Whether two builds take turns (`--upgrade-from`), so names carry the version.
    upgrade: bool,
}

impl Slot {
    /// Its name, and with `--upgrade-from` the build it runs: `collector-1 (old)`.
    fn who(&self) -> String {
        if self.upgrade {
            format!("{} ({})", self.name, VERSIONS[self.version])
        } else {
            self.name.clone()
        }
    }

    fn note_peak(&mut self) {
        if let Some(kib) = self.collector.peak_rss_kib() {
            self.peak_kib = self.peak_kib.max(kib);
        }
    }
}

/// The last lines of a collector's log, on one line, for a finding.
fn log_tail(slot: &Slot) -> String {
    let text = util::read_log(slot.collector.log_path());
    let last: Vec<&str> = text.lines().rev().take(3).collect();
    let joined: Vec<&str> = last.into_iter().rev().collect();
    format!(
        "{} (log {})",
        joined.join(" | "),
        slot.collector.log_path().display()
    )
}

/// An error that ends the run; every temp dir is kept (the servers' and collectors' logs)
/// because this is set before they drop.
fn fail<T>(text: String) -> Result<T, String> {
    std::env::set_var("COLLECTOR_TEST_KEEP", "1");
    Err(text)
}

/// The database the collectors write to.
enum Db {
    /// InfluxDB 1.6, written with `influx.api: v1`.
    V1(Influx),
    /// InfluxDB 3 Core with its default WAL flush (1 s), written with `influx.api: v3`.
    V3(Influx3),
}

impl Db {
    fn start(api: &str) -> Db {
        let db = match api {
            "v3" => Db::V3(Influx3Options::production().start()),
            _ => Db::V1(Influx::start()),
        };
        match &db {
            Db::V1(influx) => influx.create_database(NAMESPACE),
            Db::V3(influx) => influx.create_database(NAMESPACE),
        }
        db
    }

    fn api(&self) -> &'static str {
        match self {
            Db::V1(_) => "v1",
            Db::V3(_) => "v3",
        }
    }

    /// The server's name in fault events.
    fn name(&self) -> &'static str {
        match self {
            Db::V1(_) => "influxd",
            Db::V3(_) => "influxdb3",
        }
    }

    fn url(&self) -> String {
        match self {
            Db::V1(influx) => influx.url(),
            Db::V3(influx) => influx.url(),
        }
    }

    /// Field name → `integer`, `float`, `boolean` or `string`.
    fn field_types(&self, db: &str, measurement: &str) -> BTreeMap<String, String> {
        match self {
            Db::V1(influx) => influx.field_types(db, measurement),
            Db::V3(influx) => influx.field_types(db, measurement),
        }
    }

    /// A page of points (each with `time` in integer nanoseconds), in an order that stays put.
    fn points_page(
        &self,
        db: &str,
        measurement: &str,
        limit: usize,
        offset: usize,
    ) -> Vec<serde_json::Map<String, Value>> {
        match self {
            Db::V1(influx) => influx.points_page(db, measurement, limit, offset),
            Db::V3(influx) => influx.points_page(db, measurement, limit, offset),
        }
    }

    fn stop(&mut self) {
        match self {
            Db::V1(influx) => influx.stop(),
            Db::V3(influx) => influx.stop(),
        }
    }

    fn start_again(&mut self) {
        match self {
            Db::V1(influx) => influx.start_again(),
            Db::V3(influx) => influx.start_again(),
        }
    }

    fn pause(&self) {
        match self {
            Db::V1(influx) => influx.pause(),
            Db::V3(influx) => influx.pause(),
        }
    }

    fn resume(&self) {
        match self {
            Db::V1(influx) => influx.resume(),
            Db::V3(influx) => influx.resume(),
        }
    }

    /// InfluxDB 1.6, for `--plant` (refused with `--influx v3`).
    fn v1(&self) -> &Influx {
        match self {
            Db::V1(influx) => influx,
            Db::V3(_) => panic!("--plant runs with --influx v1 only"),
        }
    }
}

/// What the threads share.
struct Shared {
    start: Instant,
    /// When the load started (seconds after `start`); faults and records are timed from it.
    load_start_s: Mutex<f64>,
    events: Mutex<Vec<Event>>,
    findings: Mutex<Vec<String>>,
    slots: Vec<Mutex<Slot>>,
    cluster: Mutex<NatsCluster>,
    influx: Mutex<Db>,
    /// One lock per measurement, so two KV faults never overlap on the same key.
    kv_locks: Vec<Mutex<()>>,
    nats_url: String,
    /// Set while the run is over: the supervisor stops restarting collectors.
    finishing: AtomicBool,
    /// The collector builds: the binary under test, then the `--upgrade-from` one if given.
    builds: Vec<PathBuf>,
    seed: u64,
    /// The build each collector runs (or last ran), read by the monitor.
    running: Vec<AtomicUsize>,
    /// With `--upgrade-from`, the monitor's samples and those in which both builds ran.
    side_by_side: (AtomicU64, AtomicU64),
}

impl Shared {
    /// Seconds since the load started.
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64() - *lock(&self.load_start_s)
    }

    fn event(&self, kind: &str, target: &str, start_s: f64, note: String) {
        let event = Event {
            kind: kind.to_string(),
            target: target.to_string(),
            start_s,
            end_s: self.t(),
            note,
        };
        println!(
            "soak: {:7.1}s–{:.1}s {} {}{}",
            event.start_s,
            event.end_s,
            event.kind,
            event.target,
            if event.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", event.note)
            }
        );
        lock(&self.events).push(event);
    }

    fn finding(&self, text: String) {
        println!("soak: {:7.1}s FINDING: {text}", self.t());
        lock(&self.findings).push(format!("{:.1}s: {text}", self.t()));
    }

    /// Starts a collector again (it has exited or been killed) on the build its next start
    /// draws; returns `, restarted as old` (or `new`) with `--upgrade-from`, else nothing, for
    /// the fault's note.
    fn restart(&self, slot: &mut Slot) -> String {
        let version = version_for(&self.builds, self.seed, slot.index, slot.n_starts);
        slot.collector.restart_binary(&self.builds[version]);
        slot.n_starts += 1;
        slot.version = version;
        slot.starts_by_version[version] += 1;
        self.running[slot.index].store(version, Ordering::Relaxed);
        if slot.upgrade {
            format!(", restarted as {}", VERSIONS[version])
        } else {
            String::new()
        }
    }

    fn transfer(&self) -> Transfer {
        let conn = connect_options()
            .connect(self.nats_url.as_str())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.nats_url));
        Transfer::new(conn, NAMESPACE).with_replicas(3)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            std::env::set_var("COLLECTOR_TEST_KEEP", "1");
            ExitCode::from(1)
        }
    }
}

fn collector_config(urls: &[String], influx: &Db, http_port: u16, replicas: bool) -> String {
    let replicas = if replicas { "  replicas: 3\n" } else { "" };
    let (influx_url, api) = (influx.url(), influx.api());
    format!(
        "namespace: {NAMESPACE}\n\
         nats:\n  hosts: [{}]\n{replicas}\
         influx:\n  url: {influx_url}\n  api: {api}\n  timeout: {INFLUX_TIMEOUT_S}s\n\
         pull:\n  ack_wait: {ACK_WAIT_S}s\n\
         http:\n  listen: 127.0.0.1:{http_port}\n\
         log:\n  level: info\n",
        urls.join(", ")
    )
}

/// Whether `binary` knows `nats.replicas` (a configuration it refuses exits 2 naming the key).
fn supports_replicas(binary: &Path, urls: &[String], influx: &Db) -> bool {
    let yaml = collector_config(urls, influx, 0, true);
    let (status, stdout, stderr) =
        run_binary_to_exit(binary, &["check"], Some(&yaml), Duration::from_secs(60));
    !(status.code() == Some(2) && format!("{stdout}{stderr}").contains("replicas"))
}

/// The build (an index into `builds`) start `start` of collector `slot` runs: the only one,
/// or with `--upgrade-from` the one drawn from the seed.
fn version_for(builds: &[PathBuf], seed: u64, slot: usize, start: u32) -> usize {
    if builds.len() < 2 {
        0
    } else {
        model::version_of(seed, N_COLLECTORS, slot, start)
    }
}

/// Waits (up to 30 s) until a collector serves `/healthz`, which it does only after its
/// signal handler is in place. A SIGTERM in the milliseconds between exec and that point ends
/// the process by the signal, before it has pulled anything; a supervisor stops a service
/// that has started, and so does the soak.
fn wait_started(port: u16) {
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_until(Duration::from_secs(30), || {
        http_get(&url, &[]).is_ok_and(|r| r.status == 200)
    });
}

fn wait_ready(port: u16, timeout: Duration) -> bool {
    let url = format!("http://127.0.0.1:{port}/readyz");
    wait_until(timeout, || {
        http_get(&url, &[]).is_ok_and(|r| r.status == 200)
    })
}

fn run(args: &Args) -> Result<bool, String> {
    let mix = Mix {
        coarse_time: args.faults.coarse_time,
        poison_per_mille: args.poison_per_mille,
    };
    let fault_names: Vec<&str> = args.faults.faults.iter().map(|f| f.name()).collect();
    println!(
        "soak: seed {} duration {}s rate {}/s faults [{}] coarse-time {} poison {}‰ influx {} \
         binary {}{}",
        args.seed,
        args.duration_s,
        args.rate,
        fault_names.join(","),
        if mix.coarse_time { "on" } else { "off" },
        args.poison_per_mille,
        args.influx,
        util::collector_bin(),
        args.upgrade_from
            .as_ref()
            .map_or(String::new(), |old| format!(" upgrade-from {old}"))
    );
    let mut builds = vec![PathBuf::from(util::collector_bin())];
    if let Some(old) = &args.upgrade_from {
        builds.push(PathBuf::from(old));
    }
    let upgrade = builds.len() > 1;
    let report_dir = TempDir::new("soak");

    // The servers; streams and bucket R3, as the Transfer client would make them for a cluster.
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let nats_url = cluster.url();
    let influx = Db::start(args.influx);
    let transfer = Transfer::new(cluster.connect(), NAMESPACE).with_replicas(3);
    for m in MEASUREMENTS {
        transfer.set(m, "soak");
    }
    // Streams just created elect their leaders; the collectors start once they have, as they
    // would against streams that exist (a start during an election is what the faults test).
    let streams: Vec<String> = (0..MEASUREMENTS.len())
        .map(stream_name)
        .chain([format!("KV_{}", transfer.bucket())])
        .collect();
    let led = wait_until(Duration::from_secs(60), || {
        streams.iter().all(|s| {
            transfer
                .js_request(&format!("$JS.API.STREAM.INFO.{s}"), b"")
                .is_ok_and(|info| {
                    info["cluster"]["leader"]
                        .as_str()
                        .is_some_and(|l| !l.is_empty())
                })
        })
    });
    if !led {
        return fail("the streams have no leader 60 s after their creation".into());
    }
    // Every build must take the configuration: a collector's restart may run either.
    let replicas = builds
        .iter()
        .all(|binary| supports_replicas(binary, &urls, &influx));
    println!(
        "soak: {} nats.replicas{}",
        match (upgrade, replicas) {
            (false, true) => "this collector accepts",
            (false, false) => "this collector refuses",
            (true, true) => "both builds accept",
            (true, false) => "a build refuses",
        },
        if replicas {
            ": set to 3"
        } else {
            ": the streams it creates get its default"
        }
    );

    let mut slots = Vec::new();
    for i in 0..N_COLLECTORS {
        let http_port = free_port();
        let config = collector_config(&urls, &influx, http_port, replicas);
        let version = version_for(&builds, args.seed, i, 0);
        let mut starts_by_version = [0; 2];
        starts_by_version[version] = 1;
        slots.push(Mutex::new(Slot {
            index: i,
            name: format!("collector-{i}"),
            collector: Collector::start_binary(&builds[version], &config, &[], &[]),
            http_port,
            peak_kib: 0,
            n_starts: 1,
            version,
            starts_by_version,
            upgrade,
        }));
    }
    let running = slots
        .iter()
        .map(|slot| AtomicUsize::new(lock(slot).version))
        .collect();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        load_start_s: Mutex::new(0.0),
        events: Mutex::new(Vec::new()),
        findings: Mutex::new(Vec::new()),
        slots,
        cluster: Mutex::new(cluster),
        influx: Mutex::new(influx),
        kv_locks: MEASUREMENTS.iter().map(|_| Mutex::new(())).collect(),
        nats_url,
        finishing: AtomicBool::new(false),
        builds,
        seed: args.seed,
        running,
        side_by_side: (AtomicU64::new(0), AtomicU64::new(0)),
    });
    if upgrade {
        let first: Vec<String> = shared.slots.iter().map(|s| lock(s).who()).collect();
        println!("soak: upgrade soak, first starts: {}", first.join(", "));
    }
    for slot in &shared.slots {
        let mut slot = lock(slot);
        // A collector that exits during start-up is a finding; it is started once more.
        for attempt in 1..=2 {
            if wait_ready(slot.http_port, Duration::from_secs(60)) {
                break;
            }
            let status = slot.collector.wait_timeout(Duration::ZERO);
            let tail = log_tail(&slot);
            if attempt == 2 || status.is_none() {
                return fail(format!(
                    "{} never became ready ({}); its log ends: {tail}",
                    slot.who(),
                    status.map_or("still running".into(), |s| s.to_string()),
                ));
            }
            shared.finding(format!(
                "{} exited during start-up ({}); its log ends: {tail}",
                slot.who(),
                status.map_or("?".into(), |s| s.to_string()),
            ));
            shared.restart(&mut slot);
        }
    }
    println!("soak: 3 collectors ready; load starts");

    // The load, and a monitor sampling the backlog and supervising the collectors.
    let stop_load = Arc::new(AtomicBool::new(false));
    let types_ready = Arc::new(AtomicBool::new(false));
    let n_acked = Arc::new(AtomicU64::new(0));
    *lock(&shared.load_start_s) = shared.start.elapsed().as_secs_f64();
    let publisher = {
        let (shared, stop, ready, acked) = (
            shared.clone(),
            stop_load.clone(),
            types_ready.clone(),
            n_acked.clone(),
        );
        let (seed, rate) = (args.seed, args.rate);
        thread::Builder::new()
            .name("publisher".into())
            .spawn(move || publish(&shared, seed, mix, rate, &stop, &ready, &acked))
            .expect("spawn the publisher")
    };
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (shared, stop) = (shared.clone(), stop_monitor.clone());
        thread::Builder::new()
            .name("monitor".into())
            .spawn(move || monitor(&shared, &stop))
            .expect("spawn the monitor")
    };

    // Poison (a string in the integer field `n`) only once InfluxDB knows `n` as an integer in
    // every measurement: a conflict first in a fresh measurement would make `n` a string.
    let typed = wait_until(Duration::from_secs(90), || {
        let influx = lock(&shared.influx);
        MEASUREMENTS.iter().all(|m| {
            influx
                .field_types(NAMESPACE, m)
                .get("n")
                .is_some_and(|t| t == "integer")
        })
    });
    if !typed {
        stop_load.store(true, Ordering::Relaxed);
        stop_monitor.store(true, Ordering::Relaxed);
        return fail("no record reached InfluxDB within 90 s of the load's start".into());
    }
    types_ready.store(true, Ordering::Relaxed);

    // The faults.
    let duration = args.duration_s as f64;
    let warm = shared.t();
    let plan = model::schedule(
        args.seed,
        &args.faults.faults,
        (warm + 3.0).max(5.0),
        duration - 5.0,
        (3.0, 8.0),
    );
    let mut fault_threads = Vec::new();
    for planned in plan {
        let wait = planned.at_s - shared.t();
        if wait > 0.0 {
            thread::sleep(Duration::from_secs_f64(wait));
        }
        let shared = shared.clone();
        fault_threads.push(
            thread::Builder::new()
                .name(format!("fault-{}", planned.fault.name()))
                .spawn(move || run_fault(&shared, planned))
                .expect("spawn a fault"),
        );
    }
    let left = duration - shared.t();
    if left > 0.0 {
        thread::sleep(Duration::from_secs_f64(left));
    }
    for handle in fault_threads {
        let _ = handle.join();
    }
    stop_load.store(true, Ordering::Relaxed);
    let load_end_s = shared.t();
    let Ok(published) = publisher.join() else {
        return fail("the publisher panicked".into());
    };
    println!(
        "soak: {:.1}s load stopped: {} records acknowledged by JetStream; waiting for the drain",
        shared.t(),
        n_acked.load(Ordering::Relaxed)
    );

    // The drain: every stream empty (a work-queue record leaves only when acknowledged, and
    // the collectors acknowledge only what InfluxDB stored).
    let drained = {
        let transfer = shared.transfer();
        wait_until(Duration::from_secs(args.drain_timeout_s), || {
            (0..MEASUREMENTS.len()).all(|m| {
                transfer
                    .js_request(&format!("$JS.API.STREAM.INFO.{}", stream_name(m)), b"")
                    .is_ok_and(|v| v["state"]["messages"].as_u64() == Some(0))
            })
        })
    };
    let drain_s = shared.t() - load_end_s;
    // A last few samples after the drain, then the monitor stops.
    thread::sleep(Duration::from_secs(1));
    stop_monitor.store(true, Ordering::Relaxed);
    shared.finishing.store(true, Ordering::Relaxed);
    let Ok(samples) = monitor.join() else {
        return fail("the monitor panicked".into());
    };
    if drained {
        println!("soak: drained {drain_s:.1}s after the load stopped");
    } else {
        shared.finding(format!(
            "the streams did not drain within {}s after the load stopped",
            args.drain_timeout_s
        ));
    }

    // Peak RSS, then SIGTERM: every collector still running must exit 0.
    let mut peaks = Vec::new();
    for slot in &shared.slots {
        let mut slot = lock(slot);
        slot.note_peak();
        peaks.push((
            slot.name.clone(),
            slot.peak_kib,
            slot.n_starts,
            slot.starts_by_version,
        ));
        let name = slot.who();
        if slot.collector.is_running() {
            wait_started(slot.http_port);
            slot.collector.terminate();
            match slot.collector.wait_timeout(Duration::from_secs(40)) {
                Some(status) if status.success() => {}
                Some(status) => {
                    shared.finding(format!("{name} exited with {status} on SIGTERM at the end"))
                }
                None => {
                    shared.finding(format!(
                        "{name} still running 40 s after SIGTERM at the end"
                    ));
                    slot.collector.kill9();
                }
            }
        }
    }
    for (name, kib, _, _) in &peaks {
        if *kib > args.rss_limit_mib * 1024 {
            shared.finding(format!(
                "{name} peak RSS {} MiB above the bound of {} MiB",
                kib / 1024,
                args.rss_limit_mib
            ));
        }
    }

    // The exact check, and the report.
    let planted = if args.plant {
        plant(args, mix, &shared, &published)
    } else {
        Vec::new()
    };
    let mut check = check(args, mix, &shared, &published);
    let mut planted_ok = true;
    for (category, n) in &planted {
        let needle = format!("n={n} ");
        let found = check
            .problems
            .iter()
            .position(|(c, line)| c == category && line.starts_with(&needle));
        match found {
            Some(i) => {
                check.problems.remove(i);
                check.state.push(format!("planted {category} n={n}: found"));
            }
            None => {
                planted_ok = false;
                check
                    .problems
                    .push(("planted, not found", format!("{category} n={n}")));
            }
        }
    }
    let mut events = lock(&shared.events).clone();
    events.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let findings = lock(&shared.findings).clone();
    let ok = planted_ok
        && check.problems.is_empty()
        && findings.is_empty()
        && published.unacked.is_empty()
        && drained;
    let side_by_side = (
        shared.side_by_side.0.load(Ordering::Relaxed),
        shared.side_by_side.1.load(Ordering::Relaxed),
    );
    let ending = Ending {
        load_end_s,
        side_by_side,
        drained,
        drain_s,
        peaks,
        samples,
        events,
        findings,
    };
    let out = report(args, mix, &check, &published, &ending, ok, &report_dir);
    print!("{out}");
    let _ = std::fs::write(report_dir.join("report.txt"), &out);
    if !ok {
        // Keeps every server's and collector's temp dir (and this report) for reading; each
        // kept path is printed as its owner drops.
        std::env::set_var("COLLECTOR_TEST_KEEP", "1");
    }
    Ok(ok)
}

/// The checker's self-test (`--plant`): once the collectors have stopped, plants one
/// difference of each kind the check counts, and returns (category, record number) for each,
/// which the check must then report. In InfluxDB: a good record's point deleted (missing),
/// a second point for another one (duplicated), a field of a third one overwritten (altered);
/// in the dead letters, a poison record's dead letter published again (dead-lettered twice).
fn plant(
    args: &Args,
    mix: Mix,
    shared: &Shared,
    published: &Published,
) -> Vec<(&'static str, u64)> {
    let pick = |want: &dyn Fn(Kind) -> bool, skip: usize| {
        published
            .sent
            .iter()
            .enumerate()
            .filter(|(n, s)| s.seq != 0 && want(model::kind_of(args.seed, *n as u64, mix)))
            .map(|(n, _)| n as u64)
            .nth(skip)
            .expect("the load has records of every kind")
    };
    let record = |n: u64| model::record(args.seed, n, published.sent[n as usize].gen_ns, mix);
    let line = |r: &model::Record, payload: &[u8], fallback_ns: i64| {
        let encoder = collector::record::Encoder::new(
            MEASUREMENTS[r.measurement],
            collector::record::Unsigned::Refused,
        )
        .expect("a valid measurement");
        let mut out = Vec::new();
        encoder
            .encode(
                payload,
                collector::record::Origin {
                    stream_sequence: published.sent[r.n as usize].seq,
                    timestamp_ns: fallback_ns,
                },
                &mut out,
            )
            .expect("a good record encodes");
        String::from_utf8(out).expect("line protocol is UTF-8")
    };
    let mut planted = Vec::new();
    let db = lock(&shared.influx);
    let influx = db.v1();

    let missing = record(pick(&|k| k == Kind::Nanos, 0));
    let time = model::expected_time_ns(missing.time.as_deref(), 0, None).expect("a time");
    influx.exec_in(
        NAMESPACE,
        &format!(
            "DELETE FROM {} WHERE time >= {time} AND time <= {time}",
            util::quote_ident(MEASUREMENTS[missing.measurement])
        ),
    );
    planted.push(("missing", missing.n));

    let twice = record(pick(&|k| k == Kind::NoTime, 0));
    let stored = line(
        &twice,
        &twice.payload,
        published.sent[twice.n as usize].gen_ns - 1000,
    );
    let reply = influx.write(NAMESPACE, &stored);
    assert!(reply.status == 204, "planting a duplicate: {}", reply.body);
    planted.push(("duplicated", twice.n));

    let altered = record(pick(&|k| k == Kind::Nanos, 1));
    let mut payload: Value = serde_json::from_slice(&altered.payload).expect("JSON");
    payload["fields"]["msg"] = json!("planted");
    let changed = line(&altered, payload.to_string().as_bytes(), 0);
    let reply = influx.write(NAMESPACE, &changed);
    assert!(
        reply.status == 204,
        "planting an alteration: {}",
        reply.body
    );
    planted.push(("altered", altered.n));
    drop(db);

    let poison = record(pick(&|k| k.is_poison(), 0));
    let transfer = shared.transfer();
    let mut headers = nats::HeaderMap::new();
    headers.insert("Collector-Stream", stream_name(poison.measurement));
    headers.insert(
        "Collector-Sequence",
        published.sent[poison.n as usize].seq.to_string(),
    );
    headers.insert("Collector-Error", "planted copy: json fields type conflict");
    let subject = format!("{NAMESPACE}.dlq.{}", MEASUREMENTS[poison.measurement]);
    let ack = transfer.connection().request_with_headers_or_timeout(
        &subject,
        Some(&headers),
        Some(Duration::from_secs(10)),
        &poison.payload,
    );
    assert!(ack.is_ok(), "planting a dead letter: {ack:?}");
    planted.push(("dead-lettered twice", poison.n));
    println!("soak: planted {planted:?}");
    planted
}

/// How the run ended, for the report.
struct Ending {
    load_end_s: f64,
    drained: bool,
    drain_s: f64,
    /// (collector, peak RSS KiB, starts, starts on each build).
    peaks: Vec<(String, u64, u32, [u32; 2])>,
    /// With `--upgrade-from`: the monitor's samples, and those in which both builds ran.
    side_by_side: (u64, u64),
    /// The backlog over time: (seconds, records in the streams).
    samples: Vec<(f64, u64)>,
    /// The faults in start order.
    events: Vec<Event>,
    findings: Vec<String>,
}

/// The report: counts, faults, recovery, drain, peak RSS, stream state, findings, every
/// difference (the first `--max-print` of each kind; all in `differences.txt`), the fault log
/// and the verdict.
fn report(
    args: &Args,
    mix: Mix,
    check: &Check,
    published: &Published,
    ending: &Ending,
    ok: bool,
    report_dir: &TempDir,
) -> String {
    let fault_names: Vec<&str> = args.faults.faults.iter().map(|f| f.name()).collect();
    let threshold = (args.rate * 2).max(200);
    let ends: Vec<f64> = ending
        .events
        .iter()
        .filter(|e| Fault::ALL.iter().any(|f| f.name() == e.kind))
        .map(|e| e.end_s)
        .collect();
    let recoveries = model::recovery_s(&ending.samples, &ends, threshold);
    let mut out = String::new();
    let _ = writeln!(out, "\n==== soak report (seed {}) ====", args.seed);
    let _ = writeln!(
        out,
        "reproduce: scripts/soak.sh --duration {}s --seed {} --rate {} --faults {}{}{}",
        args.duration_s,
        args.seed,
        args.rate,
        if fault_names.is_empty() {
            "none".to_string()
        } else {
            fault_names.join(",")
        },
        if mix.coarse_time { ",coarse-time" } else { "" },
        args.upgrade_from
            .as_ref()
            .map_or(String::new(), |old| format!(" --upgrade-from {old}"))
    );
    let _ = writeln!(
        out,
        "records published {} (good {}, poison {}; {} publishes resent after an error or no answer), achieved {:.0}/s",
        check.n_good + check.n_poison,
        check.n_good,
        check.n_poison,
        published.n_resent,
        (check.n_good + check.n_poison) as f64 / (ending.load_end_s.max(1.0))
    );
    let _ = writeln!(
        out,
        "stored {} | dead-lettered {} | missing {} ({} of them still in their stream) | duplicated {} | altered {} | unacknowledged publishes {}",
        check.n_stored,
        check.n_dead_lettered,
        check.n_missing,
        check.n_stranded,
        check.n_duplicated,
        check.n_altered,
        published.unacked.len()
    );
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &ending.events {
        *by_kind.entry(e.kind.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        out,
        "faults: {}",
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        }
    );
    let worst = ends
        .iter()
        .zip(&recoveries)
        .zip(
            ending
                .events
                .iter()
                .filter(|e| Fault::ALL.iter().any(|f| f.name() == e.kind)),
        )
        .max_by(|a, b| {
            let key = |r: &Option<f64>| r.unwrap_or(f64::INFINITY);
            key(a.0 .1).total_cmp(&key(b.0 .1))
        });
    match worst {
        Some(((_, Some(r)), e)) => {
            let _ = writeln!(
                out,
                "longest recovery: {r:.1}s after {} {} ended at {:.1}s (backlog back to ≤ {threshold} records)",
                e.kind, e.target, e.end_s
            );
        }
        Some(((_, None), e)) => {
            let _ = writeln!(
                out,
                "longest recovery: never — the backlog did not get back to ≤ {threshold} records after {} {} ended at {:.1}s",
                e.kind, e.target, e.end_s
            );
        }
        None => {
            let _ = writeln!(out, "longest recovery: no faults");
        }
    }
    let _ = writeln!(
        out,
        "drain after the load stopped: {}",
        if ending.drained {
            format!("{:.1}s", ending.drain_s)
        } else {
            format!("not within {}s", args.drain_timeout_s)
        }
    );
    if let Some(old) = &args.upgrade_from {
        let total = |v: usize| -> u32 { ending.peaks.iter().map(|p| p.3[v]).sum() };
        let (samples, both) = ending.side_by_side;
        let _ = writeln!(
            out,
            "starts by version: new {} ({}), old {} ({}); both ran at once in {both} of {samples} \
             monitor samples ({:.0}%)",
            total(0),
            util::collector_bin(),
            total(1),
            old,
            100.0 * both as f64 / samples.max(1) as f64
        );
    }
    for (name, kib, starts, by_version) in &ending.peaks {
        let versions = if args.upgrade_from.is_some() {
            format!(" ({} new, {} old)", by_version[0], by_version[1])
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "peak RSS {name}: {:.1} MiB over {starts} start(s){versions} (bound {} MiB)",
            *kib as f64 / 1024.0,
            args.rss_limit_mib
        );
    }
    for line in &check.state {
        let _ = writeln!(out, "{line}");
    }
    if !ending.findings.is_empty() {
        let _ = writeln!(out, "findings during the run:");
        for f in &ending.findings {
            let _ = writeln!(out, "  {f}");
        }
    }
    if !published.unacked.is_empty() {
        let _ = writeln!(
            out,
            "{} publishes never acknowledged (their records may or may not be stored), first: {:?}",
            published.unacked.len(),
            &published.unacked[..published.unacked.len().min(20)]
        );
    }
    let diff_path = report_dir.join("differences.txt");
    if !check.problems.is_empty() {
        let mut all = String::new();
        let mut by_category: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for (category, line) in &check.problems {
            by_category.entry(category).or_default().push(line);
            let _ = writeln!(all, "{category}: {line}");
        }
        let _ = std::fs::write(&diff_path, all);
        let _ = writeln!(
            out,
            "differences, record by record (all {} in {}):",
            check.problems.len(),
            diff_path.display()
        );
        for (category, lines) in by_category {
            let _ = writeln!(out, "  {category}: {}", lines.len());
            for line in lines.iter().take(args.max_print) {
                let _ = writeln!(out, "    {line}");
            }
            if lines.len() > args.max_print {
                let _ = writeln!(out, "    … and {} more", lines.len() - args.max_print);
            }
        }
    }
    let _ = writeln!(out, "fault log:");
    for e in &ending.events {
        let _ = writeln!(
            out,
            "  {:7.1}s–{:.1}s {} {} {}",
            e.start_s, e.end_s, e.kind, e.target, e.note
        );
    }
    let _ = writeln!(out, "result: {}", if ok { "PASS" } else { "FAIL" });
    out
}

/// What the publisher knows of record `n`.
#[derive(Clone, Copy, Default)]
struct Sent {
    /// 0 while not acknowledged.
    seq: u64,
    /// 0 for a number skipped (poison during the warm-up): never published.
    gen_ns: i64,
    acked_ns: i64,
}

struct Published {
    sent: Vec<Sent>,
    n_resent: u64,
    unacked: Vec<u64>,
}

/// Publishes records `0, 1, …` at `rate` per second until `stop`, each to its measurement's
/// subject with `Nats-Msg-Id: soak-<seed>-<n>`, up to [`WINDOW`] awaiting their PubAck; one
/// unanswered after [`RESEND_AFTER`] or answered with an error is sent again, so each is
/// stored exactly once and its stream sequence learnt (a duplicate is acknowledged with the
/// original's sequence, or with 0 while the original is not yet applied: then it is sent again).
/// After `stop`, waits up to 2 minutes for the outstanding ones.
fn publish(
    shared: &Shared,
    seed: u64,
    mix: Mix,
    rate: u64,
    stop: &AtomicBool,
    types_ready: &AtomicBool,
    n_acked: &AtomicU64,
) -> Published {
    let conn = connect_options()
        .connect(shared.nats_url.as_str())
        .expect("the publisher cannot connect");
    let inbox = conn.new_inbox();
    let sub = conn
        .subscribe(&format!("{inbox}.*"))
        .expect("subscribe the ack inbox");
    let started = Instant::now();
    let mut sent: Vec<Sent> = Vec::new();
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut retry: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut last_gen = 0i64;
    let mut n_resent = 0u64;
    let mut last_scan = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let mut last_error = String::new();

    let send = |n: u64, s: &Sent| {
        let record = model::record(seed, n, s.gen_ns, mix);
        let subject = format!("{NAMESPACE}.logs.{}", MEASUREMENTS[record.measurement]);
        let mut headers = nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("soak-{seed}-{n}"));
        conn.publish_with_reply_or_headers(
            &subject,
            Some(&format!("{inbox}.{n}")),
            Some(&headers),
            &record.payload,
        )
    };

    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) && stopped_at.is_none() {
            stopped_at = Some(now);
        }
        if stopped_at.is_none() {
            let target = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while (sent.len() as u64) < target && in_flight.len() < WINDOW {
                let n = sent.len() as u64;
                let gen_ns = now_ns().max(last_gen + 1);
                if !types_ready.load(Ordering::Relaxed) && model::kind_of(seed, n, mix).is_poison()
                {
                    sent.push(Sent::default());
                    continue;
                }
                last_gen = gen_ns;
                let s = Sent {
                    seq: 0,
                    gen_ns,
                    acked_ns: 0,
                };
                sent.push(s);
                match send(n, &s) {
                    Ok(()) => {
                        in_flight.insert(n, now);
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        retry.push_back((now + Duration::from_millis(200), n));
                    }
                }
            }
        }
        while in_flight.len() < WINDOW {
            match retry.front() {
                Some(&(at, n)) if at <= now => {
                    retry.pop_front();
                    if sent[n as usize].seq != 0 {
                        continue;
                    }
                    n_resent += 1;
                    match send(n, &sent[n as usize]) {
                        Ok(()) => {
                            in_flight.insert(n, now);
                        }
                        Err(e) => {
                            last_error = e.to_string();
                            retry.push_back((now + Duration::from_millis(200), n));
                        }
                    }
                }
                _ => break,
            }
        }

        let mut next = sub.next_timeout(Duration::from_millis(5)).ok();
        while let Some(message) = next.take() {
            let n = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&n| (n as usize) < sent.len());
            if let Some(n) = n {
                in_flight.remove(&n);
                let answer: Value = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
                match answer.get("seq").and_then(Value::as_u64) {
                    // A clustered stream answers a duplicate that arrives before the original
                    // is applied with sequence 0: resent until the real sequence comes back.
                    Some(seq) if seq != 0 && !message.is_no_responders() => {
                        let s = &mut sent[n as usize];
                        if s.seq == 0 {
                            s.seq = seq;
                            s.acked_ns = now_ns();
                            n_acked.fetch_add(1, Ordering::Relaxed);
                        } else if s.seq != seq {
                            shared.finding(format!(
                                "record {n} acknowledged at two stream sequences, {} and {seq} (stored twice)",
                                s.seq
                            ));
                        }
                    }
                    _ => {
                        last_error = if message.is_no_responders() {
                            "no responders".to_string()
                        } else {
                            answer.to_string()
                        };
                        if sent[n as usize].seq == 0 {
                            retry.push_back((Instant::now() + Duration::from_millis(200), n));
                        }
                    }
                }
            }
            next = sub.try_next();
        }

        let now = Instant::now();
        if now.duration_since(last_scan) >= Duration::from_millis(200) {
            last_scan = now;
            let expired: Vec<u64> = in_flight
                .iter()
                .filter(|(_, &at)| now.duration_since(at) >= RESEND_AFTER)
                .map(|(&n, _)| n)
                .collect();
            for n in expired {
                in_flight.remove(&n);
                retry.push_back((now, n));
            }
        }
        if let Some(at) = stopped_at {
            if in_flight.is_empty() && retry.is_empty() {
                break;
            }
            if at.elapsed() > Duration::from_secs(120) {
                println!(
                    "soak: publisher gives up on {} publishes; last error: {last_error}",
                    in_flight.len() + retry.len()
                );
                break;
            }
        }
    }
    let unacked = sent
        .iter()
        .enumerate()
        .filter(|(_, s)| s.gen_ns != 0 && s.seq == 0)
        .map(|(n, _)| n as u64)
        .collect();
    Published {
        sent,
        n_resent,
        unacked,
    }
}

/// Every 500 ms: the backlog (records in the six streams), each collector's peak RSS, and a
/// collector that exited by itself is reported and started again (as systemd would), so the
/// run goes on. Returns the backlog samples (seconds since the load started, records).
fn monitor(shared: &Shared, stop: &AtomicBool) -> Vec<(f64, u64)> {
    let transfer = shared.transfer();
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut backlog = Some(0u64);
        for m in 0..MEASUREMENTS.len() {
            let info = transfer.js_request(&format!("$JS.API.STREAM.INFO.{}", stream_name(m)), b"");
            backlog = match (backlog, info) {
                (Some(b), Ok(v)) => Some(b + v["state"]["messages"].as_u64().unwrap_or(0)),
                _ => None,
            };
        }
        if let Some(b) = backlog {
            samples.push((shared.t(), b));
        }
        if shared.builds.len() > 1 {
            let first = shared.running[0].load(Ordering::Relaxed);
            let both = shared
                .running
                .iter()
                .any(|v| v.load(Ordering::Relaxed) != first);
            shared.side_by_side.0.fetch_add(1, Ordering::Relaxed);
            shared
                .side_by_side
                .1
                .fetch_add(u64::from(both), Ordering::Relaxed);
        }
        for slot in &shared.slots {
            // A slot a fault holds is that fault's business.
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            slot.note_peak();
            if !slot.collector.is_running() && !shared.finishing.load(Ordering::Relaxed) {
                let status = slot.collector.wait_timeout(Duration::ZERO);
                shared.finding(format!(
                    "{} exited by itself ({}); its log ends: {}",
                    slot.who(),
                    status.map_or("?".into(), |s| s.to_string()),
                    log_tail(&slot)
                ));
                shared.restart(&mut slot);
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    samples
}

/// Runs one fault to its end, recording it; a fault that fails (a server that does not come
/// back) is a finding, and the run goes on.
fn run_fault(shared: &Shared, planned: Planned) {
    // Set again by `inject` once it holds what it strikes (another fault may hold it first).
    let mut start = shared.t();
    let name = planned.fault.name();
    let result = catch_unwind(AssertUnwindSafe(|| inject(shared, planned, &mut start)));
    match result {
        Ok((target, note)) => shared.event(name, &target, start, note),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            shared.event(name, "", start, "failed".into());
            shared.finding(format!("fault {name} failed: {text}"));
        }
    }
}

/// The fault itself; returns its target and a note, and sets `start` when it strikes.
fn inject(shared: &Shared, planned: Planned, start: &mut f64) -> (String, String) {
    let mut rng = model::Rng::new(planned.pick);
    let pause = |lo: f64, hi: f64, rng: &mut model::Rng| {
        let s = rng.between(lo, hi);
        thread::sleep(Duration::from_secs_f64(s));
        s
    };
    match planned.fault {
        Fault::Kill => {
            let i = rng.below(N_COLLECTORS as u64) as usize;
            let mut slot = lock(&shared.slots[i]);
            *start = shared.t();
            let target = slot.who();
            slot.note_peak();
            slot.collector.kill9();
            let down = pause(0.5, 3.0, &mut rng);
            let now = shared.restart(&mut slot);
            (target, format!("down {down:.1}s{now}"))
        }
        Fault::Term => {
            let i = rng.below(N_COLLECTORS as u64) as usize;
            let mut slot = lock(&shared.slots[i]);
            *start = shared.t();
            let target = slot.who();
            let note = terminate_and_restart(shared, &mut slot);
            (target, note)
        }
        Fault::Rolling => {
            let mut notes = Vec::new();
            for (k, slot) in shared.slots.iter().enumerate() {
                let mut slot = lock(slot);
                if k == 0 {
                    *start = shared.t();
                }
                let who = slot.who();
                let mut note = terminate_and_restart(shared, &mut slot);
                let started = Instant::now();
                if wait_ready(slot.http_port, Duration::from_secs(60)) {
                    let _ = write!(note, ", ready in {:.1}s", started.elapsed().as_secs_f64());
                } else {
                    note.push_str(", not ready within 60s");
                }
                notes.push(format!("{who}: {note}"));
            }
            ("all collectors".into(), notes.join("; "))
        }
        Fault::NatsKill => {
            let mut cluster = lock(&shared.cluster);
            *start = shared.t();
            let i = rng.below(cluster.n_nodes() as u64) as usize;
            cluster.kill9(i);
            let down = pause(2.0, 6.0, &mut rng);
            cluster.restart(i);
            (format!("node n{i}"), format!("down {down:.1}s"))
        }
        Fault::NatsFreeze => {
            let cluster = lock(&shared.cluster);
            *start = shared.t();
            let i = rng.below(cluster.n_nodes() as u64) as usize;
            let pid = cluster.pid(i).expect("the node runs");
            send_signal(pid, "STOP");
            let frozen = pause(2.0, 6.0, &mut rng);
            send_signal(pid, "CONT");
            (format!("node n{i}"), format!("frozen {frozen:.1}s"))
        }
        Fault::InfluxStop => {
            let mut influx = lock(&shared.influx);
            *start = shared.t();
            influx.stop();
            let down = pause(1.0, 5.0, &mut rng);
            influx.start_again();
            (influx.name().into(), format!("down {down:.1}s"))
        }
        Fault::InfluxFreeze => {
            let influx = lock(&shared.influx);
            *start = shared.t();
            influx.pause();
            let frozen = pause(
                INFLUX_TIMEOUT_S as f64 + 1.0,
                INFLUX_TIMEOUT_S as f64 * 3.0,
                &mut rng,
            );
            influx.resume();
            (influx.name().into(), format!("frozen {frozen:.1}s"))
        }
        Fault::ConsumerDelete => {
            let m = rng.below(MEASUREMENTS.len() as u64) as usize;
            let transfer = shared.transfer();
            let subject = format!("$JS.API.CONSUMER.DELETE.{}.collector", stream_name(m));
            let result = retry_request(&transfer, &subject, b"");
            (format!("consumer of {}", stream_name(m)), result)
        }
        Fault::KvRemove => {
            let m = rng.below(MEASUREMENTS.len() as u64) as usize;
            let _guard = lock(&shared.kv_locks[m]);
            *start = shared.t();
            let transfer = shared.transfer();
            let key = MEASUREMENTS[m];
            let subject = format!("$KV.{}.{key}", transfer.bucket());
            // A delete marker, as the KV API writes it.
            let mut headers = nats::HeaderMap::new();
            headers.insert("KV-Operation", "DEL");
            let removed = wait_until(Duration::from_secs(60), || {
                transfer
                    .connection()
                    .request_with_headers_or_timeout(
                        &subject,
                        Some(&headers),
                        Some(Duration::from_secs(5)),
                        b"",
                    )
                    .is_ok_and(|r| !String::from_utf8_lossy(&r.data).contains("\"error\""))
            });
            let gone = pause(3.0, 8.0, &mut rng);
            let value = json!({"measurement": key, "description": "soak"}).to_string();
            let back = retry_request(&transfer, &subject, value.as_bytes());
            assert!(removed, "could not delete key {key}");
            (
                format!("key {key}"),
                format!("removed {gone:.1}s, put back: {back}"),
            )
        }
    }
}

/// SIGTERM a collector (it must exit 0 within its shutdown timeout and a margin) and start it
/// again.
fn terminate_and_restart(shared: &Shared, slot: &mut Slot) -> String {
    wait_started(slot.http_port);
    slot.note_peak();
    slot.collector.terminate();
    let started = Instant::now();
    let note = match slot.collector.wait_timeout(Duration::from_secs(40)) {
        Some(status) if status.success() => {
            format!("exit 0 in {:.1}s", started.elapsed().as_secs_f64())
        }
        Some(status) => {
            shared.finding(format!("{} exited with {status} on SIGTERM", slot.who()));
            format!("exit {status}")
        }
        None => {
            shared.finding(format!(
                "{} still running 40 s after SIGTERM; killed",
                slot.who()
            ));
            "killed after 40s".into()
        }
    };
    let now = shared.restart(slot);
    note + &now
}

/// A JetStream API request retried for up to a minute (a node may be down); says how it went.
fn retry_request(transfer: &Transfer, subject: &str, body: &[u8]) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(60), || {
        match transfer.js_request(subject, body) {
            Ok(_) => true,
            Err(e) if e.code == 404 => {
                last = e.to_string();
                true
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    match (ok, last.is_empty()) {
        (true, true) => "done".into(),
        (true, false) => last,
        (false, _) => format!("failed: {last}"),
    }
}

/// The outcome of the exact check.
#[derive(Default)]
struct Check {
    n_good: u64,
    n_poison: u64,
    n_stored: u64,
    n_dead_lettered: u64,
    n_missing: u64,
    /// Of the missing, those still in their stream (never settled rather than lost).
    n_stranded: u64,
    n_duplicated: u64,
    n_altered: u64,
    /// (category, one line per difference).
    problems: Vec<(&'static str, String)>,
    /// Stream and consumer state lines for the report.
    state: Vec<String>,
}

impl Check {
    /// Counts an altered record (a point or dead letter unlike what was sent, or none sent
    /// at all) and says how, under `category`.
    fn altered(&mut self, category: &'static str, how: String) {
        self.n_altered += 1;
        self.problems.push((category, how));
    }

    /// Counts a record stored or dead-lettered more than once and says how, under `category`.
    fn duplicated(&mut self, category: &'static str, how: String) {
        self.n_duplicated += 1;
        self.problems.push((category, how));
    }
}

fn check(args: &Args, mix: Mix, shared: &Shared, published: &Published) -> Check {
    let mut c = Check::default();
    let events = lock(&shared.events).clone();
    let sent = &published.sent;
    let load_start_ns = now_ns() - (shared.t() * 1e9) as i64;
    let at_s = |ns: i64| (ns - load_start_ns) as f64 / 1e9;
    // The faults that overlap a record's life: from 5 s before its publish until its ack
    // wait after the acknowledgement (when a redelivery could still happen).
    let around = |n: u64| -> String {
        let s = &sent[n as usize];
        let (from, to) = (
            at_s(s.gen_ns) - 5.0,
            at_s(s.acked_ns.max(s.gen_ns)) + ACK_WAIT_S as f64 + 5.0,
        );
        let near: Vec<String> = events
            .iter()
            .filter(|e| e.end_s >= from && e.start_s <= to)
            .map(|e| format!("{} {} {:.1}–{:.1}s", e.kind, e.target, e.start_s, e.end_s))
            .collect();
        if near.is_empty() {
            "no fault around it".into()
        } else {
            format!("faults around it: {}", near.join(", "))
        }
    };
    let describe = |r: &model::Record| {
        let s = &sent[r.n as usize];
        format!(
            "n={} {} {} seq {} published {:.1}s acked {:.1}s",
            r.n,
            MEASUREMENTS[r.measurement],
            r.kind.name(),
            s.seq,
            at_s(s.gen_ns),
            at_s(s.acked_ns)
        )
    };

    // The records JetStream stored, poison and good; per measurement (stream sequence, n)
    // sorted, to find the record of a dead letter (a vector: millions of records in a long run).
    let mut by_seq: Vec<Vec<(u64, u64)>> = vec![Vec::new(); MEASUREMENTS.len()];
    for (n, s) in sent.iter().enumerate() {
        if s.seq == 0 {
            continue;
        }
        let m = model::measurement_of(args.seed, n as u64);
        by_seq[m].push((s.seq, n as u64));
        if model::kind_of(args.seed, n as u64, mix).is_poison() {
            c.n_poison += 1;
        } else {
            c.n_good += 1;
        }
    }
    for seqs in &mut by_seq {
        seqs.sort_unstable();
    }
    let record_at = |m: usize, seq: u64| {
        let seqs = &by_seq[m];
        seqs.binary_search_by_key(&seq, |&(s, _)| s)
            .ok()
            .map(|i| seqs[i].1)
    };

    // InfluxDB: every point, by its number `n`.
    let mut seen_time: Vec<i64> = vec![i64::MIN; sent.len()];
    let mut seen_count: Vec<u8> = vec![0; sent.len()];
    let influx = lock(&shared.influx);
    for (m, name) in MEASUREMENTS.iter().enumerate() {
        let types = influx.field_types(NAMESPACE, name);
        for (field, ty) in &types {
            let want = model::FIELD_TYPES
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, t)| *t);
            if want != Some(ty.as_str()) {
                c.altered(
                    "altered",
                    format!(
                        "{name}: field {field} has type {ty}, sent {}",
                        want.unwrap_or("nothing")
                    ),
                );
            }
        }
        let mut offset = 0;
        loop {
            let page = influx.points_page(NAMESPACE, name, 10_000, offset);
            offset += page.len();
            let last = page.len() < 10_000;
            for point in page {
                let time = point
                    .get("time")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MIN);
                let n = point
                    .get("n")
                    .and_then(Value::as_i64)
                    .filter(|&n| n >= 0 && (n as usize) < sent.len());
                let Some(n) = n.map(|n| n as u64) else {
                    c.altered(
                        "altered",
                        format!("{name}: a point no record gave: {}", Value::Object(point)),
                    );
                    continue;
                };
                let s = sent[n as usize];
                let record = model::record(args.seed, n, s.gen_ns, mix);
                if s.seq == 0 || record.measurement != m || record.kind.is_poison() {
                    c.altered(
                        "altered",
                        format!(
                            "{name}: point for n={n}, which was not sent as a good record here: {}",
                            Value::Object(point)
                        ),
                    );
                    continue;
                }
                seen_count[n as usize] = seen_count[n as usize].saturating_add(1);
                if seen_count[n as usize] > 1 {
                    let (first, around) = (seen_time[n as usize], around(n));
                    let how = format!("another point at {time} (first at {first}); {around}");
                    c.duplicated("duplicated", format!("{}: {how}", describe(&record)));
                    continue;
                }
                seen_time[n as usize] = time;
                let mut problems = model::compare_columns(&record.columns, &point);
                match model::expected_time_ns(record.time.as_deref(), s.seq, None) {
                    Some(want) if want != time => problems.push(format!(
                        "time {time}, expected {want} (time {:?})",
                        record.time
                    )),
                    Some(_) => {}
                    // Without `time`: the message timestamp, which the stream no longer holds;
                    // it must lie within the publish window.
                    None => {
                        if time < s.gen_ns - WINDOW_SLACK_NS || time > s.acked_ns + WINDOW_SLACK_NS
                        {
                            problems.push(format!(
                                "time {time} outside its publish window {}..{}",
                                s.gen_ns, s.acked_ns
                            ));
                        }
                    }
                }
                if problems.is_empty() {
                    c.n_stored += 1;
                } else {
                    let how = format!("{}; {}", problems.join("; "), around(n));
                    c.altered("altered", format!("{}: {how}", describe(&record)));
                }
            }
            if last {
                break;
            }
        }
    }
    drop(influx);

    // The dead letters.
    let transfer = shared.transfer();
    let dlq = format!("{NAMESPACE}:dlq");
    let mut dlq_count: Vec<u8> = vec![0; sent.len()];
    match read_stream(&transfer, &dlq) {
        Err(e) => c
            .problems
            .push(("dead letters", format!("cannot read {dlq}: {e}"))),
        Ok(letters) => {
            for letter in letters {
                let headers = &letter.headers;
                let origin = headers.get("Collector-Stream").and_then(|s| {
                    MEASUREMENTS
                        .iter()
                        .position(|m| *s == format!("{NAMESPACE}:logs:{m}"))
                });
                let seq = headers
                    .get("Collector-Sequence")
                    .and_then(|s| s.parse::<u64>().ok());
                let reason = headers.get("Collector-Error").cloned().unwrap_or_default();
                let Some(n) = origin.zip(seq).and_then(|(m, seq)| record_at(m, seq)) else {
                    c.altered(
                        "dead letters",
                        format!(
                            "dead letter {} from no record sent: headers {headers:?}, payload {}",
                            letter.seq,
                            String::from_utf8_lossy(&letter.data[..letter.data.len().min(200)])
                        ),
                    );
                    continue;
                };
                let s = sent[n as usize];
                let record = model::record(args.seed, n, s.gen_ns, mix);
                dlq_count[n as usize] = dlq_count[n as usize].saturating_add(1);
                if dlq_count[n as usize] > 1 {
                    let how = format!("(dead letter {}): {reason}; {}", letter.seq, around(n));
                    c.duplicated(
                        "dead-lettered twice",
                        format!("{} {how}", describe(&record)),
                    );
                    continue;
                }
                let mut problems = Vec::new();
                if letter.data != record.payload {
                    problems.push("payload changed".to_string());
                }
                match record.kind.reason_words() {
                    None => problems.push(format!("a good record dead-lettered: {reason}")),
                    Some(words) if !words.iter().any(|w| reason.to_lowercase().contains(w)) => {
                        problems.push(format!("reason `{reason}` says none of {words:?}"))
                    }
                    Some(_) => {}
                }
                if problems.is_empty() {
                    c.n_dead_lettered += 1;
                } else {
                    let (problems, around) = (problems.join("; "), around(n));
                    let how = format!("(dead letter {}): {problems}; {around}", letter.seq);
                    c.altered("dead letters", format!("{} {how}", describe(&record)));
                }
            }
        }
    }

    // Missing: good records with no point, poison with no dead letter. One still in its
    // stream was never settled (stranded); one that is not was lost.
    let mut waiting: std::collections::HashSet<(usize, u64)> = std::collections::HashSet::new();
    for m in 0..MEASUREMENTS.len() {
        if let Ok(stored) = read_stream(&transfer, &stream_name(m)) {
            waiting.extend(stored.iter().map(|s| (m, s.seq)));
        }
    }
    for (n, s) in sent.iter().enumerate() {
        if s.seq == 0 {
            continue;
        }
        let kind = model::kind_of(args.seed, n as u64, mix);
        let missing = if kind.is_poison() {
            dlq_count[n] == 0
        } else {
            seen_count[n] == 0 && dlq_count[n] == 0
        };
        if missing {
            c.n_missing += 1;
            let record = model::record(args.seed, n as u64, s.gen_ns, mix);
            let place = if kind.is_poison() {
                "from the dead letters"
            } else {
                "from InfluxDB"
            };
            let mut expected = model::expected_time_ns(record.time.as_deref(), s.seq, None)
                .map_or(String::new(), |t| format!(" (expected at {t})"));
            if waiting.contains(&(record.measurement, s.seq)) {
                c.n_stranded += 1;
                expected.push_str(", still in its stream");
            }
            c.problems.push((
                "missing",
                format!(
                    "{}: missing {place}{expected}; {}",
                    describe(&record),
                    around(n as u64)
                ),
            ));
        }
    }

    // Streams and consumers: empty; with NATS faults, every stream on 3 replicas.
    let nats_faults = args.faults.faults.iter().any(|f| f.is_nats());
    let mut streams: Vec<String> = (0..MEASUREMENTS.len()).map(stream_name).collect();
    streams.push(dlq);
    streams.push(format!("KV_{}", transfer.bucket()));
    for (i, stream) in streams.iter().enumerate() {
        let info = match transfer.js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"") {
            Ok(info) => info,
            Err(e) => {
                c.problems.push(("streams", format!("{stream}: {e}")));
                continue;
            }
        };
        let messages = info["state"]["messages"].as_u64().unwrap_or(0);
        let replicas = info["config"]["num_replicas"].as_u64().unwrap_or(1);
        let mut line = format!("stream {stream}: {messages} messages, {replicas} replica(s)");
        if i < MEASUREMENTS.len() {
            if messages != 0 {
                c.problems.push((
                    "streams",
                    format!("{stream} still holds {messages} records"),
                ));
            }
            match transfer.js_request(&format!("$JS.API.CONSUMER.INFO.{stream}.collector"), b"") {
                Ok(consumer) => {
                    let pending = consumer["num_pending"].as_u64().unwrap_or(0);
                    let ack_pending = consumer["num_ack_pending"].as_u64().unwrap_or(0);
                    let _ = write!(
                        line,
                        "; consumer: {pending} pending, {ack_pending} awaiting ack"
                    );
                    if pending + ack_pending != 0 {
                        c.problems.push(("streams", format!("consumer of {stream}: {pending} pending, {ack_pending} awaiting ack")));
                    }
                }
                Err(e) => {
                    let _ = write!(line, "; consumer: {e}");
                    c.problems
                        .push(("streams", format!("consumer of {stream}: {e}")));
                }
            }
        }
        if nats_faults && replicas < 3 {
            c.problems.push((
                "streams",
                format!(
                    "{stream} has {replicas} replica(s): a NATS node loss can stop it (expected 3)"
                ),
            ));
        }
        c.state.push(line);
    }
    c
}

/// A stored message of a stream.
struct Stored {
    seq: u64,
    headers: BTreeMap<String, String>,
    data: Vec<u8>,
}

/// Every message of `stream`, by pipelined `STREAM.MSG.GET` requests (a request-reply each
/// would wait on the client's flusher), up to 256 in flight.
fn read_stream(transfer: &Transfer, stream: &str) -> Result<Vec<Stored>, String> {
    let info = transfer
        .js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")
        .map_err(|e| e.to_string())?;
    let first = info["state"]["first_seq"].as_u64().unwrap_or(0).max(1);
    let last = info["state"]["last_seq"].as_u64().unwrap_or(0);
    let conn = transfer.connection();
    let inbox = conn.new_inbox();
    let sub = conn
        .subscribe(&format!("{inbox}.*"))
        .map_err(|e| e.to_string())?;
    let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
    let mut out = Vec::new();
    let mut next = first;
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut last_progress = Instant::now();
    let mut done = std::collections::HashSet::new();
    while next <= last || !in_flight.is_empty() {
        while next <= last && in_flight.len() < 256 {
            let body = json!({ "seq": next }).to_string();
            conn.publish_request(&subject, &format!("{inbox}.{next}"), body.as_bytes())
                .map_err(|e| e.to_string())?;
            in_flight.insert(next, Instant::now());
            next += 1;
        }
        let _ = conn.flush_timeout(Duration::from_secs(5));
        if let Ok(message) = sub.next_timeout(Duration::from_millis(100)) {
            let Some(seq) = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            in_flight.remove(&seq);
            if !done.insert(seq) {
                continue;
            }
            last_progress = Instant::now();
            let answer: Value = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
            let m = &answer["message"];
            if m.is_null() {
                // Deleted (a sequence removed by the stream's limits): nothing to read.
                continue;
            }
            let headers = String::from_utf8_lossy(&decode_base64(m["hdrs"].as_str().unwrap_or("")))
                .into_owned();
            out.push(Stored {
                seq,
                headers: headers
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect(),
                data: decode_base64(m["data"].as_str().unwrap_or("")),
            });
        }
        let now = Instant::now();
        let expired: Vec<u64> = in_flight
            .iter()
            .filter(|(_, &at)| now.duration_since(at) > Duration::from_secs(5))
            .map(|(&s, _)| s)
            .collect();
        for seq in expired {
            let body = json!({ "seq": seq }).to_string();
            conn.publish_request(&subject, &format!("{inbox}.{seq}"), body.as_bytes())
                .map_err(|e| e.to_string())?;
            in_flight.insert(seq, now);
        }
        if last_progress.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "no answer for 60 s; {} messages unread",
                in_flight.len()
            ));
        }
    }
    out.sort_by_key(|s| s.seq);
    Ok(out)
}
