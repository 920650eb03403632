//! The metrics and health listener (`http.listen`) on real servers: the metrics move as
//! records flow and parse as Prometheus text; `/readyz` follows InfluxDB and NATS; JSON logs
//! are one object per line. Bounded in records and time; no timing assertions.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value};
use util::{
    free_port, http_get, http_post, sample_payloads, wait_until, Collector, DatabaseServer,
    HttpReply, Influx, NatsServer,
};

fn config(namespace: &str, nats: &NatsServer, influx: &Influx, port: u16, extra: &str) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace(namespace)
        .http_listen(port)
        .extra("poll_interval: 500ms\n")
        .extra(extra)
        .yaml()
}

fn get(port: u16, path: &str) -> Option<HttpReply> {
    http_get(&format!("http://127.0.0.1:{port}{path}"), &[]).ok()
}

/// A scrape: the raw text, and its samples as a real Prometheus text parser reads them.
struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    fn take(port: u16) -> Metrics {
        let reply = get(port, "/metrics").expect("/metrics answers");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Metrics::parse(reply.body)
    }

    fn parse(text: String) -> Metrics {
        // The parser skips what it cannot read; a line it skips is a line we got wrong.
        for line in text.lines() {
            assert!(
                !matches!(LineInfo::parse(line), LineInfo::Ignored),
                "not Prometheus text: {line:?}"
            );
            if let LineInfo::Sample { value, .. } = LineInfo::parse(line) {
                assert!(value.parse::<f64>().is_ok(), "not a number in {line:?}");
            }
        }
        let lines = text.lines().map(|line| Ok(line.to_string()));
        let scrape = Scrape::parse(lines).expect("the scrape parses");
        Metrics { text, scrape }
    }

    /// The value of a counter or gauge with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.scrape.samples.iter().find(|s| {
            s.metric == name
                && labels.len() == s.labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        });
        match found.map(|s| &s.value) {
            Some(Value::Counter(v) | Value::Gauge(v)) => *v,
            other => panic!("{name}{labels:?}: {other:?} in\n{}", self.text),
        }
    }

    /// `(le, cumulative count)` of a histogram, and its `_count` and `_sum`.
    fn histogram(&self, name: &str) -> (Vec<(f64, f64)>, f64, f64) {
        let found = self.scrape.samples.iter().find(|s| s.metric == name);
        let Some(Value::Histogram(buckets)) = found.map(|s| &s.value) else {
            panic!("{name} is not a histogram in\n{}", self.text);
        };
        let buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        let plain = |suffix: &str| {
            let line = format!("{name}_{suffix} ");
            self.text
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name}_{suffix} missing"))
        };
        (buckets, plain("count"), plain("sum"))
    }

    /// Checks a histogram's shape: increasing bounds, non-decreasing counts, `+Inf` last and
    /// equal to `_count`. Returns `_count`.
    fn check_histogram(&self, name: &str) -> f64 {
        let (buckets, count, sum) = self.histogram(name);
        assert!(buckets.len() >= 2, "{name}: {buckets:?}");
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{name}: bounds {buckets:?}");
            assert!(pair[0].1 <= pair[1].1, "{name}: counts {buckets:?}");
        }
        let (last_bound, last_count) = *buckets.last().unwrap();
        assert!(last_bound.is_infinite(), "{name}: no +Inf bucket");
        assert_eq!(last_count, count, "{name}: +Inf bucket and _count differ");
        assert!(sum >= 0.0);
        count
    }
}

/// Asserts that `/readyz` answers 200 within 30 s; its answer and the log are shown otherwise.
#[track_caller]
fn assert_ready(port: u16, collector: &Collector) {
    let ready = wait_until(Duration::from_secs(30), || {
        get(port, "/readyz").is_some_and(|r| r.status == 200)
    });
    assert!(
        ready,
        "never ready: {:?}\n{}",
        get(port, "/readyz"),
        collector.log()
    );
}

#[test]
fn metrics_move_as_records_flow_and_parse_as_prometheus_text() {
    let (nats, influx, transfer) = util::start_servers("mx");
    transfer.set("access", "");
    transfer.set("audit", "");
    let port = free_port();
    let json_logs_small_batches =
        "log:\n  format: json\npull:\n  batch: 100\nbatch:\n  max_lines: 200\n";
    let collector = Collector::start(&config("mx", &nats, &influx, port, json_logs_small_batches));

    assert_ready(port, &collector);
    let before = Metrics::take(port);
    assert_eq!(before.value("collector_records_written_total", &[]), 0.0);
    assert_eq!(before.value("collector_ready", &[]), 1.0);
    assert_eq!(before.value("collector_nats_connected", &[]), 1.0);
    assert_eq!(before.value("collector_config_loaded", &[]), 1.0);
    assert_eq!(before.check_histogram("collector_batch_lines"), 0.0);

    let payloads = sample_payloads(1_000);
    transfer.publish_many("access", &payloads[..600]);
    transfer.publish_many("audit", &payloads[600..]);
    // Three records that can never be written: dead-lettered, counted, not retried.
    transfer.publish_many("audit", &[&b"not json"[..], b"{}", b"[1]"]);

    let mut after = Metrics::take(port);
    let settled = wait_until(Duration::from_secs(60), || {
        after = Metrics::take(port);
        after.value("collector_records_written_total", &[]) == 1_000.0
            && after.value("collector_records_dead_lettered_total", &[]) == 3.0
            && after.value("collector_records_held", &[]) == 0.0
    });
    assert!(settled, "records did not settle:\n{}", after.text);
    assert_eq!(influx.count("mx", "access"), 600);
    assert_eq!(influx.count("mx", "audit"), 400);

    let by_measurement = |m: &str| {
        after.value(
            "collector_measurement_records_fetched_total",
            &[("measurement", m)],
        )
    };
    assert_eq!(by_measurement("access"), 600.0);
    assert_eq!(by_measurement("audit"), 403.0);
    assert_eq!(after.value("collector_records_fetched_total", &[]), 1_003.0);
    let batches = after.value("collector_batches_written_total", &[]);
    assert!(
        batches >= 5.0,
        "1000 records in batches of at most 200 lines: {batches}"
    );
    assert_eq!(after.check_histogram("collector_batch_lines"), batches);
    let (_, _, lines) = after.histogram("collector_batch_lines");
    assert_eq!(lines, 1_000.0, "every stored line is in one batch");
    assert!(after.check_histogram("collector_write_duration_seconds") >= batches);
    assert_eq!(after.value("collector_writer_backlog_chunks", &[]), 0.0);
    assert_eq!(after.value("collector_influxdb_up", &[]), 1.0);
    assert_eq!(after.value("collector_records_given_back_total", &[]), 0.0);
    let info = after
        .scrape
        .samples
        .iter()
        .find(|s| s.metric == "collector_info")
        .expect("collector_info");
    assert_eq!(info.labels.get("namespace"), Some("mx"));
    assert!(after
        .scrape
        .docs
        .contains_key("collector_records_written_total"));

    // The other endpoints and methods.
    assert_eq!(get(port, "/healthz").map(|r| r.status), Some(200));
    assert_eq!(get(port, "/nothing").map(|r| r.status), Some(404));
    let post = http_post(&format!("http://127.0.0.1:{port}/metrics"), &[], &[], b"");
    assert_eq!(post.map(|r| r.status), Ok(405));

    // log.format: json — every line one object with the agreed keys.
    let log = collector.log();
    let mut levels = BTreeMap::new();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(value[key].is_string(), "{key} missing in {line}");
        }
        *levels
            .entry(value["level"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(levels.get("INFO").is_some_and(|n| *n >= 2), "{log}");
    assert!(log.contains("dead-lettered"), "{log}");
}

#[test]
fn readiness_follows_influxdb_and_nats() {
    let (mut nats, mut influx, transfer) = util::start_servers("rd");
    transfer.set("access", "");
    let port = free_port();
    let collector = Collector::start(&config("rd", &nats, &influx, port, ""));
    let readyz = || get(port, "/readyz");
    let is_ready = || readyz().is_some_and(|r| r.status == 200);
    let not_ready_because =
        |needle: &str| readyz().is_some_and(|r| r.status == 503 && r.body.contains(needle));

    assert!(
        wait_until(Duration::from_secs(30), is_ready),
        "never ready: {:?}\n{}",
        readyz(),
        collector.log()
    );

    // InfluxDB stopped while idle: the writer's ping notices.
    influx.stop();
    assert!(
        wait_until(Duration::from_secs(30), || not_ready_because("influxdb")),
        "still {:?}",
        readyz()
    );
    assert_eq!(get(port, "/healthz").map(|r| r.status), Some(200));
    assert_eq!(Metrics::take(port).value("collector_influxdb_up", &[]), 0.0);
    // Records arriving meanwhile are held, and the reason becomes the failing writes.
    transfer.publish_many("access", &sample_payloads(100));
    assert!(
        wait_until(Duration::from_secs(30), || not_ready_because(
            "writes failing"
        )),
        "still {:?}",
        readyz()
    );
    influx.start_again();
    assert!(
        wait_until(Duration::from_secs(60), is_ready),
        "not ready again: {:?}",
        readyz()
    );
    assert!(wait_until(Duration::from_secs(30), || influx
        .count("rd", "access")
        == 100));
    let metrics = Metrics::take(port);
    assert_eq!(metrics.value("collector_influxdb_up", &[]), 1.0);
    assert!(metrics.value("collector_write_retries_total", &[]) >= 1.0);

    // NATS lost: not ready until the connection is back.
    nats.kill9();
    assert!(
        wait_until(Duration::from_secs(30), || not_ready_because("nats")),
        "still {:?}",
        readyz()
    );
    assert_eq!(
        Metrics::take(port).value("collector_nats_connected", &[]),
        0.0
    );
    nats.restart();
    assert!(
        wait_until(Duration::from_secs(60), is_ready),
        "not ready after NATS came back: {:?}",
        readyz()
    );
}

/// The value of a per-measurement gauge, or `None` when the scrape has no such sample.
fn measurement_gauge(metrics: &Metrics, name: &str, measurement: &str) -> Option<f64> {
    metrics
        .scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("measurement") == Some(measurement))
        .map(|s| match s.value {
            Value::Gauge(v) => v,
            ref other => panic!("{name}: not a gauge: {other:?}"),
        })
}

#[test]
fn lag_per_measurement_while_records_wait_and_after_a_drain() {
    let (nats, mut influx, transfer) = util::start_servers("lg");
    transfer.set("slow", "");
    transfer.set("idle", "");
    let port = free_port();
    // Small pulls, so most records wait in the stream while InfluxDB is down; a short poll
    // so the lag is re-read from JetStream every 2.5 s.
    let collector = Collector::start(&config(
        "lg",
        &nats,
        &influx,
        port,
        "pull:\n  batch: 10\nbatch:\n  max_lines: 10\n",
    ));
    assert_ready(port, &collector);
    let gauge = |m: &Metrics, name: &str, measurement: &str| {
        measurement_gauge(m, &format!("collector_measurement_{name}"), measurement)
    };
    let idle = Metrics::take(port);
    assert_eq!(gauge(&idle, "pending", "idle"), Some(0.0), "{}", idle.text);
    assert_eq!(gauge(&idle, "oldest_age_seconds", "idle"), Some(0.0));
    assert_eq!(gauge(&idle, "last_write_timestamp_seconds", "idle"), None);

    // InfluxDB down: the collector holds what it pulled, the rest waits in the stream.
    influx.stop();
    transfer.publish_many("slow", &sample_payloads(500));
    let server_pending = || {
        transfer.consumer_info("slow", "collector").unwrap()["num_pending"]
            .as_u64()
            .unwrap() as f64
    };
    let mut waiting = Metrics::take(port);
    let settled = wait_until(Duration::from_secs(60), || {
        waiting = Metrics::take(port);
        let pending = gauge(&waiting, "pending", "slow");
        // The same count as the server's, once the pulls have stopped and it was re-read.
        pending.is_some_and(|p| p > 0.0 && p == server_pending())
            && gauge(&waiting, "oldest_age_seconds", "slow").is_some_and(|age| age > 0.0)
    });
    assert!(
        settled,
        "lag never showed:\n{}\n{}",
        waiting.text,
        collector.log()
    );
    let pending = gauge(&waiting, "pending", "slow").unwrap();
    let fetched = waiting.value(
        "collector_measurement_records_fetched_total",
        &[("measurement", "slow")],
    );
    assert!(pending + fetched <= 500.0, "{pending} + {fetched}");
    // Published within this test; not a timing assertion, a sanity bound on the unit.
    let age = gauge(&waiting, "oldest_age_seconds", "slow").unwrap();
    assert!(age < 600.0, "age in seconds: {age}");
    assert_eq!(
        gauge(&waiting, "last_write_timestamp_seconds", "slow"),
        None
    );
    assert_eq!(gauge(&waiting, "pending", "idle"), Some(0.0));

    // Back up: everything drains, nothing waits, and the write time is known.
    let before_drain = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    influx.start_again();
    let mut drained = Metrics::take(port);
    let done = wait_until(Duration::from_secs(90), || {
        drained = Metrics::take(port);
        drained.value("collector_records_written_total", &[]) == 500.0
            && gauge(&drained, "pending", "slow") == Some(0.0)
            && gauge(&drained, "oldest_age_seconds", "slow") == Some(0.0)
    });
    assert!(
        done,
        "never drained:\n{}\n{}",
        drained.text,
        collector.log()
    );
    let last_write = gauge(&drained, "last_write_timestamp_seconds", "slow")
        .unwrap_or_else(|| panic!("no last write time:\n{}", drained.text));
    // Written after InfluxDB came back (a millisecond of rounding allowed).
    assert!(
        last_write >= before_drain - 0.001,
        "{last_write} < {before_drain}"
    );
    assert_eq!(
        gauge(&drained, "last_write_timestamp_seconds", "idle"),
        None
    );
    assert_eq!(influx.count("lg", "slow"), 500);
}

#[test]
fn a_taken_listen_address_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = util::config("nats://127.0.0.1:1", "http://127.0.0.1:1")
        .namespace("x")
        .http_listen(port)
        .yaml();
    let (status, _, stderr) = util::run_to_exit(&[], Some(&yaml), Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
}
