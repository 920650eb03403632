//! The walking skeleton end to end, on real servers: a namespace configured the Transfer
//! way is drained into InfluxDB with every value exact, and the process starts, stops and
//! refuses bad configuration as a user expects.

mod util;

use std::time::Duration;

use util::{
    run_to_exit, samples, wait_until, Collector, Influx, NatsServer, Transfer, VictoriaMetrics,
};

/// The minimal configuration of the issue (namespace, nats.hosts, influx.url, influx.api) and
/// the lines of `extra`.
fn v1_config(namespace: &str, nats: &NatsServer, influx: &Influx, extra: &str) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

/// Publishes `n` samples spread over `measurements` and returns each measurement's share.
fn publish_samples(transfer: &Transfer, measurements: &[&str], n: usize) -> Vec<Vec<util::Sample>> {
    let all = samples(n);
    let mut shares: Vec<Vec<util::Sample>> = vec![Vec::new(); measurements.len()];
    for sample in all {
        shares[sample.index % measurements.len()].push(sample);
    }
    for (m, share) in measurements.iter().zip(&shares) {
        let payloads: Vec<Vec<u8>> = share.iter().map(|s| s.bytes()).collect();
        transfer.publish_many(m, &payloads);
    }
    shares
}

fn wait_drained(
    transfer: &Transfer,
    influx: &Influx,
    db: &str,
    measurements: &[&str],
    expected: &[usize],
) -> bool {
    wait_until(Duration::from_secs(60), || {
        measurements
            .iter()
            .zip(expected)
            .all(|(m, n)| influx.count(db, m) == *n && transfer.stream_state(m).0 == 0)
    })
}

#[test]
fn drains_5000_waiting_records_exactly_and_exits_0_on_sigterm() {
    let (nats, influx, transfer) = util::start_servers("beta");
    let measurements = ["access", "errors"];
    for m in measurements {
        transfer.set(m, &format!("{m} logs"));
    }
    let shares = publish_samples(&transfer, &measurements, 5_000);
    assert_eq!(transfer.stream_state("access").0, 2_500);

    let mut collector = Collector::start(&v1_config("beta", &nats, &influx, ""));
    let expected: Vec<usize> = shares.iter().map(Vec::len).collect();
    assert!(
        wait_drained(&transfer, &influx, "beta", &measurements, &expected),
        "not drained; collector log:\n{}",
        collector.log()
    );
    for (m, share) in measurements.iter().zip(&shares) {
        influx
            .check_samples("beta", m, share)
            .unwrap_or_else(|e| panic!("{m}: {e}"));
    }

    collector.stop_cleanly(Duration::from_secs(20));
    let log = collector.log();
    assert!(
        log.contains("namespace beta"),
        "start-up line names the namespace:\n{log}"
    );
    assert!(log.contains("measurement access added"), "{log}");
    assert!(log.contains("written 5000"), "shutdown summary:\n{log}");
}

#[test]
fn sigterm_mid_run_exits_0_and_a_restart_finishes_the_work() {
    let (nats, influx, transfer) = util::start_servers("gamma");
    transfer.set("app", "");
    let shares = publish_samples(&transfer, &["app"], 20_000);
    // Small batches so the drain takes many writes and the signal lands in the middle.
    let small = "batch:\n  max_lines: 200\npull:\n  batch: 100\n";
    let config = v1_config("gamma", &nats, &influx, small);

    let mut first = Collector::start(&config);
    first.assert_within(Duration::from_secs(30), || influx.count("gamma", "app") > 0);
    first.stop_cleanly(Duration::from_secs(20));

    let second = Collector::start(&config);
    assert!(
        wait_drained(&transfer, &influx, "gamma", &["app"], &[20_000]),
        "{}",
        second.log()
    );
    influx.check_samples("gamma", "app", &shares[0]).unwrap();
}

#[test]
fn the_tail_of_a_backlog_is_written_without_waiting_for_the_interval() {
    let (nats, influx, transfer) = util::start_servers("tail");
    transfer.set("app", "");
    // Fewer records than a batch holds, and an interval longer than the wait below: only the
    // flush on catching up with the stream can store them in time.
    let shares = publish_samples(&transfer, &["app"], 1_234);
    let config = v1_config("tail", &nats, &influx, "batch:\n  interval: 5m\n");
    let collector = Collector::start(&config);
    assert!(
        wait_drained(&transfer, &influx, "tail", &["app"], &[1_234]),
        "{}",
        collector.log()
    );
    influx.check_samples("tail", "app", &shares[0]).unwrap();
}

#[test]
fn sigint_stops_it_too() {
    let nats = NatsServer::start();
    let influx = Influx::start();
    influx.create_database("delta");
    let mut collector = Collector::start(&v1_config("delta", &nats, &influx, ""));
    collector.assert_log("measurements: none yet", Duration::from_secs(20));
    collector.interrupt();
    collector.assert_exit(0, Duration::from_secs(20));
    // It created the configuration bucket the Transfer client way, and the dead-letter stream.
    let transfer = Transfer::new(nats.connect(), "delta");
    assert!(transfer
        .stream_info("KV_delta_logs")
        .get("config")
        .is_some());
    assert!(transfer.stream_info("delta:dlq").get("config").is_some());
}

#[test]
fn records_without_time_take_the_stream_timestamp() {
    let (nats, influx, transfer) = util::start_servers("eps");
    transfer.set("m", "");
    transfer.publish("m", br#"{"tags":{"k":"v"},"fields":{"n":1}}"#);
    let collector = Collector::start(&v1_config("eps", &nats, &influx, ""));
    collector.assert_within(Duration::from_secs(30), || influx.count("eps", "m") == 1);
    let points = influx.points("eps", "m");
    let time = points[0]["time"].as_i64().unwrap();
    // The stream's own timestamp is the publish time: after 2020, before now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        time > 1_577_836_800_000_000_000 && time <= now,
        "time {time}"
    );
}

#[test]
fn writes_the_influxdb_v2_request_format() {
    // VictoriaMetrics accepts InfluxDB's /api/v2/write: a real server for the v2 format.
    let nats = NatsServer::start();
    let vm = VictoriaMetrics::start();
    let transfer = Transfer::new(nats.connect(), "zeta");
    transfer.set("cpu", "");
    let payloads: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            format!(r#"{{"tags":{{"host":"h{}"}},"fields":{{"load":{i}.5}},"time":"2026-01-01T00:00:{i:02}Z"}}"#, i % 2)
                .into_bytes()
        })
        .collect();
    transfer.publish_many("cpu", &payloads);
    let config = util::config(&nats.url(), &vm.url())
        .namespace("zeta")
        .without_api()
        .influx("  org: acme\n  token: secret-token\n")
        .yaml();
    let collector = Collector::start(&config);
    collector.assert_within(Duration::from_secs(30), || {
        transfer.stream_state("cpu").0 == 0
    });
    let found = wait_until(Duration::from_secs(20), || {
        vm.flush();
        vm.samples("cpu_load").len() == 50
    });
    assert!(found, "victoria-metrics holds {:?}", vm.samples("cpu_load"));
    let samples = vm.samples("cpu_load");
    let h1: Vec<_> = samples
        .iter()
        .filter(|(tags, _, _)| tags.get("host").map(String::as_str) == Some("h1"))
        .collect();
    assert_eq!(h1.len(), 25);
    assert!(samples.iter().any(|(_, _, v)| *v == 49.5));
}

#[test]
fn bad_config_is_refused_with_exit_2_and_one_line() {
    let cases = [
        ("namespace: a.b\nnats: {hosts: [nats://127.0.0.1:4222]}\ninflux: {url: http://127.0.0.1:8086, api: v1}\n", "namespace"),
        ("namespace: a\nnats: {hosts: []}\ninflux: {url: http://127.0.0.1:8086, api: v1}\n", "nats.hosts"),
        ("namespace: a\nnats: {hosts: [nats://127.0.0.1:4222]}\ninflux: {url: http://127.0.0.1:8086, api: v1, tokn: x}\n", "tokn"),
        ("namespace: a\nnats: {hosts: [nats://127.0.0.1:4222]}\ninflux: {url: 'http://h', api: v1}\npull: {workers: many}\n", "pull.workers"),
        (": : :\n", "config"),
    ];
    for (yaml, needle) in cases {
        let (status, stdout, stderr) = run_to_exit(&[], Some(yaml), Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{yaml:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one line for {yaml:?}: {stderr}"
        );
        assert!(stderr.contains(needle), "{stderr:?} should name {needle}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stdout.is_empty());
    }
    // No config file at the default path.
    let (status, _, stderr) = run_to_exit(&[], None, Duration::from_secs(20));
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("config/config.yml") && stderr.contains("--config"),
        "{stderr}"
    );
}

#[test]
fn unreachable_nats_is_waited_for_with_one_clear_line_until_sigterm() {
    let port = util::free_port();
    let yaml = util::config(&format!("nats://127.0.0.1:{port}"), "http://127.0.0.1:1")
        .namespace("a")
        .yaml();
    let mut collector = Collector::start(&yaml);
    // A server that is not up yet may come: the collector waits, saying so in one line
    // naming the server, and leaves with exit 0 at SIGTERM.
    collector.assert_log("waiting for nats", Duration::from_secs(30));
    let log = collector.log();
    let line = log
        .lines()
        .find(|l| l.contains("waiting for nats"))
        .expect("the line");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    collector.stop_cleanly(Duration::from_secs(20));
    let log = collector.log();
    assert!(log.contains("stopped before NATS was ready"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
