//! The integration-test harness: real servers on loopback, started and stopped
//! by the tests themselves.
//!
//! Every server binds 127.0.0.1 on a port of its own, keeps its data in a fresh
//! directory under the system temp dir whose name starts with the run marker
//! (`collector-test-<run>-`, see [`run_marker`]), and is killed by PID when its
//! guard is dropped. `scripts/test.sh` sets `COLLECTOR_TEST_RUN` so that, when
//! the run ends, it can kill by PID any server a crashed test left behind
//! (their command lines contain the marker through their data paths) without
//! touching another run's servers.
//!
//! A temp dir is removed when its guard drops, except while a test is panicking
//! (or when `COLLECTOR_TEST_KEEP` is set): then its path is printed so the
//! server and collector logs in it can be read.
//!
//! Every helper panics with a message naming what failed: these are tests.
//! Waits are bounded; use [`wait_until`] instead of sleeps.

#![allow(dead_code, unused_imports)]

mod collector;
mod config;
mod http_double;
pub mod identity;
mod influx;
mod influx3;
mod nats;
mod process;
mod prometheus;
mod sample;
mod tls;

pub use collector::{collector_bin, run_binary_to_exit, run_command, run_to_exit, Collector, Run};
pub use config::{config, ConfigYaml};
pub use http_double::{
    Answer, HttpDouble, Request, Seen, Served, Throttle, WriteApi, WriteDouble, NO_ANSWER,
};
pub use influx::{quote_ident, Influx, VictoriaMetrics};
pub use influx3::{influxdb3_bin, quote_sql, report_skip, Influx3, Influx3Options, NO_INFLUXDB3};
pub use nats::{connect_options, JsError, NatsCluster, NatsServer, StreamMessage, Transfer};
pub(crate) use process::DatabaseServer;
pub use prometheus::Prometheus;
pub use sample::{
    latencies, record, rfc3339, sample, sample_payload, sample_payloads, samples, Field, Sample,
};
pub use tls::{Issued, TestCa};

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Starts a NATS server with JetStream and InfluxDB with database `namespace`, and connects
/// a [`Transfer`] client for `namespace` to that NATS server: how most end-to-end tests begin.
pub fn start_servers(namespace: &str) -> (NatsServer, Influx, Transfer) {
    let nats = NatsServer::start();
    let influx = Influx::start();
    influx.create_database(namespace);
    let transfer = Transfer::new(nats.connect(), namespace);
    (nats, influx, transfer)
}

/// Starts a NATS server with JetStream and, with `start`, a server for `namespace` (a write-API
/// double, its bucket or database named after it), and connects a [`Transfer`] client for
/// `namespace` to that NATS server.
pub fn start_with_nats<S>(
    namespace: &str,
    start: impl FnOnce(&str) -> S,
) -> (NatsServer, S, Transfer) {
    let nats = NatsServer::start();
    let server = start(namespace);
    let transfer = Transfer::new(nats.connect(), namespace);
    (nats, server, transfer)
}

/// [`start_servers`] with an `n`-node NATS cluster, where the [`Transfer`] client makes its
/// streams with `n` replicas.
pub fn start_cluster_servers(n: usize, namespace: &str) -> (NatsCluster, Influx, Transfer) {
    let cluster = NatsCluster::start(n);
    let influx = Influx::start();
    influx.create_database(namespace);
    let transfer = Transfer::new(cluster.connect(), namespace).with_replicas(n);
    (cluster, influx, transfer)
}

/// Configures each of `measurements` and publishes `n` samples round-robin over them;
/// returns each one's share (for [`assert_all_stored`]).
pub fn publish_samples<M: AsRef<str>>(
    transfer: &Transfer,
    measurements: &[M],
    n: usize,
) -> Vec<Vec<Sample>> {
    let mut shares: Vec<Vec<Sample>> = vec![Vec::new(); measurements.len()];
    for sample in samples(n) {
        shares[sample.index % measurements.len()].push(sample);
    }
    for (m, share) in measurements.iter().zip(&shares) {
        transfer.set(m.as_ref(), "");
        let payloads: Vec<Vec<u8>> = share.iter().map(Sample::bytes).collect();
        transfer.publish_many(m.as_ref(), &payloads);
    }
    shares
}

/// Waits up to `within` until InfluxDB database `db`, named after the transfer's namespace
/// (as [`start_servers`] creates it), holds each share of `measurements` exactly (by count)
/// and every measurement's stream is empty, then checks every point against its sample.
/// `log` gives the collectors' logs for a failure message.
pub fn assert_all_stored<M: AsRef<str>, S: AsRef<[Sample]>>(
    transfer: &Transfer,
    influx: &Influx,
    measurements: &[M],
    shares: &[S],
    within: Duration,
    log: impl Fn() -> String,
) {
    let db = transfer.namespace();
    let state = || -> Vec<(String, usize, usize, u64)> {
        measurements
            .iter()
            .zip(shares)
            .map(|(m, s)| {
                let m = m.as_ref();
                (
                    m.to_string(),
                    influx.count(db, m),
                    s.as_ref().len(),
                    transfer.stream_state(m).0,
                )
            })
            .collect()
    };
    let drained = wait_until(within, || {
        state()
            .iter()
            .all(|(_, stored, expected, waiting)| stored == expected && *waiting == 0)
    });
    assert!(
        drained,
        "not drained: (measurement, stored, expected, waiting) {:?}\n{}",
        state(),
        log()
    );
    for (m, share) in measurements.iter().zip(shares) {
        influx
            .check_samples(db, m.as_ref(), share.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", m.as_ref(), log()));
    }
}

/// Polls `cond` until it returns true or `timeout` passes; returns whether it
/// became true. Polls quickly at first, then every 100 ms.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The prefix of every temp dir this run creates: `collector-test-<run>-`,
/// where `<run>` is `COLLECTOR_TEST_RUN` (letters and digits) or `local`.
pub fn run_marker() -> String {
    let run = std::env::var("COLLECTOR_TEST_RUN")
        .ok()
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "local".to_string());
    format!("collector-test-{run}-")
}

/// A fresh directory under the system temp dir, removed on drop unless the test
/// is panicking (then its path is printed, so its logs can be read).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/collector-test-<run>-<pid>-<n>-<kind>`.
    pub fn new(kind: &str) -> TempDir {
        static N_DIRS: AtomicUsize = AtomicUsize::new(0);
        let n = N_DIRS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{}-{n}-{kind}", run_marker(), std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("COLLECTOR_TEST_KEEP").is_some() {
            eprintln!("harness: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago. Servers that cannot report
/// the port they bound get one of these; their start-up retries with new ports
/// if the server exits because another process took it in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
pub(crate) fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()))
    };
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(open())
        .stderr(open())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program}: {e} (run scripts/install-deps.sh to install it)")
        })
}

/// Sends `signal` (a name such as `TERM`, `INT`, `STOP`, `CONT`) to `pid` with
/// the `kill` command, so the tests need no libc crate.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("cannot run kill");
    // A process that has already exited (a zombie we have not reaped yet) still
    // accepts signals, so a failure here means something is really wrong.
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// Kills a child with SIGKILL and reaps it. Never blocks for long, never panics.
pub(crate) fn kill_child(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    child.wait().ok()
}

/// Waits up to `timeout` for a child to exit.
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// SIGTERM, then up to `grace` for a clean exit, then SIGKILL.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    send_signal(child.id(), "TERM");
    wait_child(child, grace).or_else(|| kill_child(child))
}

/// Reads a file that may not exist yet as a (lossy) string.
pub fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of a log, for panic messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = read_log(path);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a line-oriented server greeting (such as NATS's `INFO {...}`)
/// arrives on 127.0.0.1:`port` within a second.
pub(crate) fn greets(port: u16, prefix: &str) -> bool {
    let Ok(stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with(prefix)
}

/// An HTTP answer: status and body, whatever the status.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
    /// Response headers with lowercase names.
    pub headers: Vec<(String, String)>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One shared blocking HTTP agent that returns 4xx/5xx as replies, not errors.
pub fn http_agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .timeout_connect(Some(Duration::from_secs(2)))
            .build()
            .into()
    })
}

fn into_reply(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<HttpReply, String> {
    let mut response = result.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok(HttpReply {
        status,
        body,
        headers,
    })
}

/// GET `url` with percent-encoded `query` pairs. `Err` only when no HTTP answer
/// came (connection refused, timeout).
pub fn http_get(url: &str, query: &[(&str, &str)]) -> Result<HttpReply, String> {
    into_reply(
        http_agent()
            .get(url)
            .query_pairs(query.iter().copied())
            .call(),
    )
}

/// The value of a sample `name{labels}` on the collector's `/metrics` at `port`, 0 when
/// absent.
pub fn metric(port: u16, sample: &str) -> f64 {
    let reply = http_get(&format!("http://127.0.0.1:{port}/metrics"), &[]).expect("/metrics");
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// POST `body` to `url` with percent-encoded `query` pairs and extra headers.
pub fn http_post(
    url: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply, String> {
    let mut request = http_agent()
        .post(url)
        .query_pairs(query.iter().copied())
        .header("Content-Type", "text/plain; charset=utf-8");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    into_reply(request.send(body))
}

pub use ::collector::base64::decode as decode_base64;

/// Stops `collector`, started again after another was killed mid-drain, and checks from its
/// shutdown summary ("stopped: fetched N, written N, ...") that it wrote more than the
/// `missing` records: the records written before the kill and never acknowledged were written
/// again (onto the same points: the caller checks that the stored count is exact), or the test
/// proved nothing. `before` is how many `what` (points, rows) were stored at the kill.
pub fn assert_wrote_some_again(collector: &mut Collector, missing: u64, before: u64, what: &str) {
    collector.terminate();
    collector
        .wait_timeout(Duration::from_secs(20))
        .expect("no exit after SIGTERM");
    let log = collector.log();
    let written: u64 = log
        .lines()
        .filter(|line| line.contains("stopped: fetched"))
        .find_map(|line| line.split(", written ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no shutdown summary:\n{log}"));
    eprintln!(
        "{before} {what} before the restart; the second collector wrote {written}, {} of them \
         onto {what} already there",
        written - missing.min(written)
    );
    assert!(
        written > missing,
        "the second collector wrote {written} records, only the {missing} missing: nothing was \
         written twice, so the test proved nothing\n{log}"
    );
}
