//! The metrics and health listener (`http.listen`), on its own thread `http`.
//!
//! Serves three read-only endpoints with `tiny_http` (a small synchronous server: no runtime,
//! one thread of ours plus its own acceptor):
//! - `/metrics`: the counters, gauges and histograms of [`Stats`] in the Prometheus text
//!   format 0.0.4;
//! - `/healthz`: 200 while the process runs (a liveness probe: restart only a hung process);
//! - `/readyz`: 200 when NATS is connected, InfluxDB answers and the configuration bucket has
//!   been read, else 503 with the reason (a readiness probe, and what rolling restarts wait
//!   for).
//!
//! Receives nothing from the other threads but reads their [`Stats`] and the writer channel's
//! length; sends nothing. It never talks to NATS or InfluxDB itself: the writer pings InfluxDB
//! when it has had nothing to write for a while, so a probe is answered at once from what is
//! known. [`render_metrics`] is pure and unit-tested.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel::Receiver;

use crate::error::{Error, Result};
use crate::stats::{unix_ms, HistogramSnapshot, Lag, Stats, NATS_CONNECTED};
use crate::worker::Chunk;

/// What the `http` thread reads.
pub struct Sources {
    pub stats: Arc<Stats>,
    /// The writer's channel, for its length only: a receiver (not a sender) so the writer
    /// still sees the channel close when the workers leave.
    pub chunks: Receiver<Chunk>,
    pub namespace: String,
}

/// The running listener.
pub struct Http {
    server: Arc<tiny_http::Server>,
    finishing: Arc<AtomicBool>,
    handle: JoinHandle<()>,
    addr: SocketAddr,
}

/// Binds `listen` and starts the `http` thread. A bind failure is a configuration error: the
/// address is taken or not this host's.
pub fn start(listen: SocketAddr, sources: Sources) -> Result<Http> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| Error::config("http.listen", format!("cannot listen on {listen}: {e}")))?;
    let addr = server.server_addr().to_ip().unwrap_or(listen);
    let server = Arc::new(server);
    let finishing = Arc::new(AtomicBool::new(false));
    let (serving, stop) = (server.clone(), finishing.clone());
    let handle = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || serve(&serving, &stop, &sources))
        .map_err(|e| Error::Thread {
            name: "http".into(),
            problem: e.to_string(),
        })?;
    log::info!("http: serving /metrics, /healthz and /readyz on {addr}");
    Ok(Http {
        server,
        finishing,
        handle,
        addr,
    })
}

impl Http {
    /// The bound address (the real port when `http.listen` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and joins the thread. Called last, after the data path has stopped,
    /// so `/readyz` says `stopping` for the whole shutdown.
    pub fn finish(self) {
        self.finishing.store(true, Ordering::SeqCst);
        self.server.unblock();
        if self.handle.join().is_err() {
            log::error!("http: the thread panicked");
        }
    }
}

fn serve(server: &tiny_http::Server, finishing: &AtomicBool, sources: &Sources) {
    // `recv` fails when `finish` unblocks it, or on an accept error, which tiny_http
    // reports and survives.
    loop {
        let request = match server.recv() {
            Ok(request) => request,
            Err(_) if finishing.load(Ordering::SeqCst) => return,
            Err(e) => {
                log::warn!("http: {e}");
                // An accept error that repeats (no file descriptors left) must not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let (status, content_type, body) = answer(request.method(), request.url(), sources);
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
            response = response.with_header(header);
        }
        if let Err(e) = request.respond(response) {
            log::debug!("http: cannot answer: {e}");
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text exposition format's content type.
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Status, content type and body for one request.
fn answer(method: &tiny_http::Method, url: &str, sources: &Sources) -> (u16, &'static str, String) {
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return (405, TEXT, "only GET\n".into());
    }
    let path = url.split('?').next().unwrap_or("");
    let now = Instant::now();
    match path {
        "/metrics" => {
            let gauges = Gauges {
                backlog_chunks: sources.chunks.len() as u64,
                nats_connected: Stats::is(&NATS_CONNECTED),
                influx_up: sources.stats.influx_check(now).is_ok(),
                ready: sources.stats.readiness(now).is_ok(),
                namespace: &sources.namespace,
                now_unix_ms: unix_ms(SystemTime::now()),
                resident_bytes: resident_bytes(),
            };
            (200, METRICS, render_metrics(&sources.stats, &gauges))
        }
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match sources.stats.readiness(now) {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(reason) => (503, TEXT, format!("not ready: {reason}\n")),
        },
        _ => (
            404,
            TEXT,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// The values that are not in [`Stats`], read by the `http` thread at scrape time.
pub struct Gauges<'a> {
    pub backlog_chunks: u64,
    pub nats_connected: bool,
    pub influx_up: bool,
    pub ready: bool,
    pub namespace: &'a str,
    /// The wall clock, for the age of the oldest waiting record.
    pub now_unix_ms: u64,
    /// The process's resident memory, when the system says (Linux's `/proc`).
    pub resident_bytes: Option<u64>,
}

/// The resident set size from `/proc/self/status` (`VmRSS: <n> kB`); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// The Prometheus text format (0.0.4) of every metric.
pub fn render_metrics(stats: &Stats, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(4096);
    let info_labels = format!(
        "version=\"{}\",namespace=\"{}\"",
        escape_label(env!("CARGO_PKG_VERSION")),
        escape_label(gauges.namespace)
    );
    metric(
        &mut out,
        "collector_info",
        "gauge",
        "The collector's version and namespace.",
        &[(&info_labels, "1".into())],
    );
    let counters: [(&str, &str, u64); 6] = [
        (
            "collector_records_fetched_total",
            "Records received from JetStream.",
            Stats::get(&stats.fetched),
        ),
        (
            "collector_records_written_total",
            "Records stored in InfluxDB and acknowledged.",
            Stats::get(&stats.written),
        ),
        (
            "collector_records_dead_lettered_total",
            "Records moved to the dead-letter stream.",
            Stats::get(&stats.dead_lettered),
        ),
        (
            "collector_records_given_back_total",
            "Records given back to JetStream unwritten at the shutdown deadline.",
            Stats::get(&stats.given_back),
        ),
        (
            "collector_write_retries_total",
            "InfluxDB write attempts that failed and were retried.",
            Stats::get(&stats.retries),
        ),
        (
            "collector_batches_written_total",
            "Batches stored in InfluxDB.",
            Stats::get(&stats.batches),
        ),
    ];
    for (name, help, value) in counters {
        metric(&mut out, name, "counter", help, &[("", value.to_string())]);
    }
    for (name, help, values) in [
        (
            "collector_measurement_records_fetched_total",
            "Records received from JetStream, per measurement.",
            stats.by_measurement(),
        ),
        (
            "collector_field_conversions_total",
            "Field values converted without loss to the type InfluxDB stores, per measurement.",
            stats.conversions(),
        ),
    ] {
        let per_measurement: Vec<(String, String)> = values
            .into_iter()
            .map(|(measurement, n)| (measurement_label(&measurement), n.to_string()))
            .collect();
        metric(&mut out, name, "counter", help, &per_measurement);
    }
    // Lag per measurement. With several collectors on a namespace each reports what it
    // knows; dashboards and alerts take the max by measurement.
    let lag = stats.lag(gauges.now_unix_ms);
    let labels: Vec<String> = lag
        .iter()
        .map(|(name, _)| measurement_label(name))
        .collect();
    // One family: the value `f` gives each measurement, `None` leaving it out.
    let family = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&Lag) -> Option<String>| {
        let samples: Vec<(&str, String)> = labels
            .iter()
            .zip(&lag)
            .filter_map(|(labels, (_, lag))| Some((labels.as_str(), f(lag)?)))
            .collect();
        metric(out, name, "gauge", help, &samples);
    };
    family(
        &mut out,
        "collector_measurement_pending",
        "Records waiting in the measurement's stream for delivery, as the latest delivery or consumer info said.",
        &|lag| Some(lag.pending.to_string()),
    );
    family(
        &mut out,
        "collector_measurement_oldest_age_seconds",
        "Age of the oldest record in the measurement's stream, that is not yet written; 0 when it is empty.",
        &|lag| Some(lag.oldest_age_seconds.to_string()),
    );
    family(
        &mut out,
        "collector_measurement_last_write_timestamp_seconds",
        "When this collector last stored records of the measurement, in seconds since the epoch.",
        &|lag| Some(lag.last_write_seconds?.to_string()),
    );
    let gauge_values: [(&str, &str, u64); 6] = [
        (
            "collector_records_held",
            "Records fetched and not yet acknowledged, dead-lettered or given back.",
            stats.n_held(),
        ),
        (
            "collector_writer_backlog_chunks",
            "Chunks waiting in the channel to the writer.",
            gauges.backlog_chunks,
        ),
        (
            "collector_nats_connected",
            "1 while the NATS connection is up.",
            u64::from(gauges.nats_connected),
        ),
        (
            "collector_influxdb_up",
            "1 while InfluxDB answers writes or pings.",
            u64::from(gauges.influx_up),
        ),
        (
            "collector_config_loaded",
            "1 once the configuration bucket has been read.",
            u64::from(Stats::is(&stats.config_loaded)),
        ),
        (
            "collector_ready",
            "1 when /readyz answers 200.",
            u64::from(gauges.ready),
        ),
    ];
    for (name, help, value) in gauge_values {
        metric(&mut out, name, "gauge", help, &[("", value.to_string())]);
    }
    if let Some(bytes) = gauges.resident_bytes {
        // The name every Prometheus client library uses, so standard dashboards find it.
        metric(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            &[("", bytes.to_string())],
        );
    }
    histogram(
        &mut out,
        "collector_batch_lines",
        "Lines per batch stored in InfluxDB.",
        &stats.batch_lines.snapshot(),
        1.0,
    );
    histogram(
        &mut out,
        "collector_write_duration_seconds",
        "Duration of each write request to InfluxDB, whatever its answer.",
        &stats.write_micros.snapshot(),
        1e6,
    );
    out
}

/// One metric family: HELP, TYPE, then one sample per `(labels, value)`.
fn metric<L: AsRef<str>>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(L, String)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let labels = labels.as_ref();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A histogram family; bounds and sum are divided by `divisor` (1e6 turns microseconds into
/// seconds).
fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot, divisor: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for &(bound, count) in &snapshot.buckets {
        let le = bound as f64 / divisor;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count);
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum as f64 / divisor);
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}

/// The label of a per-measurement sample.
fn measurement_label(measurement: &str) -> String {
    format!("measurement=\"{}\"", escape_label(measurement))
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges<'static> {
        Gauges {
            backlog_chunks: 2,
            nats_connected: true,
            influx_up: false,
            ready: false,
            namespace: "beta",
            now_unix_ms: 1_700_000_010_000,
            resident_bytes: Some(20 << 20),
        }
    }

    /// The sample line of `name` (with its labels) in `text`.
    fn sample<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find(|line| line.split(' ').next() == Some(name))
            .and_then(|line| line.rsplit(' ').next())
    }

    #[test]
    fn counters_gauges_and_histograms_are_rendered() {
        let stats = Stats::default();
        Stats::add(&stats.fetched, 7);
        Stats::add(&stats.written, 5);
        Stats::add(&stats.measurement("access").fetched, 7);
        let audit = stats.measurement("audit");
        audit.set_pulled(true);
        audit.refreshed(12, Some(1_700_000_000_000_000_000));
        stats.written(["audit"].into_iter(), 1_700_000_009_500);
        stats.hold(2);
        stats.batch_lines.observe(5);
        stats.write_micros.observe_micros(Duration::from_millis(3));
        let text = render_metrics(&stats, &gauges());

        for (name, value) in [
            ("collector_records_fetched_total", "7"),
            ("collector_records_written_total", "5"),
            (
                "collector_measurement_records_fetched_total{measurement=\"access\"}",
                "7",
            ),
            ("collector_records_held", "2"),
            ("collector_measurement_pending{measurement=\"audit\"}", "12"),
            (
                "collector_measurement_oldest_age_seconds{measurement=\"audit\"}",
                "10",
            ),
            (
                "collector_measurement_last_write_timestamp_seconds{measurement=\"audit\"}",
                "1700000009.5",
            ),
            ("collector_writer_backlog_chunks", "2"),
            ("collector_nats_connected", "1"),
            ("collector_influxdb_up", "0"),
            ("collector_batch_lines_bucket{le=\"1\"}", "0"),
            ("collector_batch_lines_bucket{le=\"10\"}", "1"),
            ("collector_batch_lines_bucket{le=\"+Inf\"}", "1"),
            ("collector_batch_lines_sum", "5"),
            ("collector_write_duration_seconds_bucket{le=\"0.001\"}", "0"),
            ("collector_write_duration_seconds_bucket{le=\"0.005\"}", "1"),
            ("collector_write_duration_seconds_bucket{le=\"30\"}", "1"),
            ("collector_write_duration_seconds_sum", "0.003"),
            ("collector_write_duration_seconds_count", "1"),
            ("process_resident_memory_bytes", "20971520"),
        ] {
            assert_eq!(sample(&text, name), Some(value), "{name}");
        }
        // Lag only for measurements pulled now; "access" is counted but not pulled.
        assert!(!text.contains("collector_measurement_pending{measurement=\"access\"}"));
        assert!(text.contains("collector_info{version=\""));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = render_metrics(&Stats::default(), &gauges());
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| typed.last().is_some_and(|t| t == base))
                    .unwrap_or(name);
                assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
