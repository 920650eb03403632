//! Delivery guarantees under faults, each on real servers on loopback (the one double is the
//! InfluxDB v2 error-behaviour server in `v2_double`, since no real InfluxDB 2.x installs
//! here). Every test is bounded in records and time, and checks by counting what InfluxDB
//! holds: the exact expected points, so a lost record or a duplicate fails it.

mod util;
mod v2_double;

use std::time::{Duration, Instant};

use serde_json::Value;
use util::{
    assert_all_stored, publish_samples, wait_until, Collector, DatabaseServer, Influx, NatsServer,
    Transfer,
};
use v2_double::{InfluxV2Double, Mode, Throttle};

fn v1_config(namespace: &str, nats_url: &str, influx: &Influx, extra: &str) -> String {
    util::config(nats_url, &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

fn v2_config(namespace: &str, nats: &NatsServer, double: &InfluxV2Double, extra: &str) -> String {
    double.config(namespace, nats).extra(extra).yaml()
}

/// Small batches, so a drain is many writes and a fault lands in the middle of it.
const SMALL: &str = "pull:\n  batch: 100\nbatch:\n  max_lines: 500\n";

fn total(influx: &Influx, db: &str, measurements: &[&str]) -> usize {
    measurements.iter().map(|m| influx.count(db, m)).sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `Name: value` header lines (after the `NATS/1.0` line) as a map.
fn header_map(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// How many write requests the double has received (its `/ping`s left out).
fn n_writes(double: &InfluxV2Double) -> usize {
    double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v2/write"))
        .count()
}

/// How long a drain here may take until every record is stored ([`assert_all_stored`]).
const DRAIN: Duration = Duration::from_secs(120);

/// The v2 double refusing every write with 503 and `Retry-After: 60`, for as long as it stays
/// in this mode: nothing can be written.
const REFUSING: Mode = Mode::Throttle(Throttle {
    count: usize::MAX,
    status: 503,
    retry_after_secs: 60,
});

/// NATS and the v2 double (in `mode`) for `namespace`, `n` samples published to its
/// measurement `m`, and the [`Transfer`] client that published them.
fn v2_servers(namespace: &str, mode: Mode, n: usize) -> (NatsServer, InfluxV2Double, Transfer) {
    let (nats, double, transfer) = InfluxV2Double::start_with_nats(namespace);
    double.set_mode(mode);
    publish_samples(&transfer, &["m"], n);
    (nats, double, transfer)
}

/// Starts a collector with `config` and waits until it has sent a write (one more than the
/// double has seen so far), which the [`REFUSING`] double refuses.
fn start_refused(config: &str, double: &InfluxV2Double) -> Collector {
    let collector = Collector::start(config);
    let n_seen = n_writes(double);
    collector.assert_within(Duration::from_secs(30), || n_writes(double) > n_seen);
    collector
}

/// Waits up to 10 s until the stream of `m` is empty: every record acknowledged.
fn assert_acknowledged(transfer: &Transfer, m: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || transfer.stream_state(m).0 == 0),
        "{} records of {m} still waiting",
        transfer.stream_state(m).0
    );
}

fn consumer(transfer: &Transfer, m: &str) -> Value {
    transfer
        .consumer_info(m, "collector")
        .unwrap_or_else(|e| panic!("consumer on {m}: {e}"))
}

#[test]
fn kill_9_mid_drain_loses_nothing() {
    let (nats, influx, transfer) = util::start_servers("k9");
    let ms = ["a", "b", "c"];
    let shares = publish_samples(&transfer, &ms, 30_000);
    let config = v1_config("k9", &nats.url(), &influx, SMALL);

    let mut first = Collector::start(&config);
    first.assert_within(Duration::from_secs(60), || {
        total(&influx, "k9", &ms) >= 3_000
    });
    first.kill9();
    let before_restart = total(&influx, "k9", &ms);
    let second = Collector::start(&config);
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || second.log());
    eprintln!(
        "kill -9: sent 30000, stored {}, before restart {before_restart}",
        total(&influx, "k9", &ms)
    );
}

#[test]
fn influxdb_down_for_10s_holds_memory_flat_and_catches_up() {
    let (nats, mut influx, transfer) = util::start_servers("down");
    let ms = ["app"];
    let shares = publish_samples(&transfer, &ms, 20_000);
    let mut collector = Collector::start(&v1_config("down", &nats.url(), &influx, SMALL));
    collector.assert_within(Duration::from_secs(60), || total(&influx, "down", &ms) > 0);

    influx.stop();
    let rss_at_stop = rss_kib(collector.pid());
    let mut rss_max = rss_at_stop;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        rss_max = rss_max.max(rss_kib(collector.pid()));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        collector.is_running(),
        "the collector must stay up:\n{}",
        collector.log()
    );
    // Nothing was acknowledged while the database was down: everything not stored waits.
    let waiting = transfer.stream_state("app").0 as usize;
    influx.start_again();
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || collector.log());
    let log = collector.log();
    assert!(log.contains("write failed, retrying"), "{log}");
    assert!(log.contains("InfluxDB is storing again"), "{log}");
    // Bounded buffers: the outage may not grow memory by more than a few MiB.
    assert!(
        rss_max <= rss_at_stop + 16 * 1024,
        "RSS grew from {rss_at_stop} KiB to {rss_max} KiB during the outage"
    );
    eprintln!("influx down: sent 20000, waiting during outage {waiting}, RSS {rss_at_stop}..{rss_max} KiB");
}

#[test]
fn sigterm_one_of_two_collectors_mid_drain_loses_nothing() {
    let (nats, influx, transfer) = util::start_servers("two");
    let ms = ["x", "y"];
    let shares = publish_samples(&transfer, &ms, 30_000);
    let config = v1_config(
        "two",
        &nats.url(),
        &influx,
        &format!("{SMALL}shutdown_timeout: 5s\n"),
    );
    let mut first = Collector::start(&config);
    let second = Collector::start(&config);
    first.assert_within(Duration::from_secs(60), || {
        total(&influx, "two", &ms) >= 2_000
    });
    // Exits 0 within its shutdown deadline (5 s) plus process start-up slack.
    first.stop_cleanly(Duration::from_secs(15));
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || second.log());
}

#[test]
fn a_nats_node_lost_mid_drain_loses_nothing() {
    let (mut cluster, influx, transfer) = util::start_cluster_servers(3, "ha");
    let ms = ["r3"];
    let shares = publish_samples(&transfer, &ms, 10_000);
    let hosts = cluster.urls().join(", ");
    let collector = Collector::start(&v1_config("ha", &hosts, &influx, SMALL));
    collector.assert_within(Duration::from_secs(60), || {
        total(&influx, "ha", &ms) >= 1_000
    });
    cluster.kill9(0);
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || collector.log());
}

#[test]
fn a_nats_restart_mid_drain_resumes_the_pulls() {
    let (mut nats, influx, transfer) = util::start_servers("rs");
    let ms = ["m"];
    let shares = publish_samples(&transfer, &ms, 10_000);
    let collector = Collector::start(&v1_config("rs", &nats.url(), &influx, SMALL));
    collector.assert_within(Duration::from_secs(60), || {
        total(&influx, "rs", &ms) >= 1_000
    });
    nats.kill9();
    std::thread::sleep(Duration::from_secs(1));
    nats.restart();
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || collector.log());
}

#[test]
fn poison_records_are_dead_lettered_and_the_rest_lands() {
    let (nats, influx, transfer) = util::start_servers("px");
    transfer.set("mix", "");
    // Establish `n` as an integer field, so a float `n` later is a type conflict.
    transfer.publish(
        "mix",
        br#"{"fields":{"n":1},"time":"2026-01-01T00:00:00Z"}"#,
    );
    let poison: Vec<(&[u8], &str)> = vec![
        (b"not json at all", "json"),
        (br#"{"tags":{"a":"b"},"fields":{}}"#, "field"),
        (
            br#"{"fields":{"n":1.5},"time":"2026-01-01T00:00:01Z"}"#,
            "conflict",
        ),
        (
            br#"{"fields":{"big":18446744073709551615},"time":"2026-01-01T00:00:02Z"}"#,
            "big",
        ),
        (br#"{"fields":{"v":1},"time":"yesterday"}"#, "time"),
    ];
    let good: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            format!(
                r#"{{"tags":{{"k":"v{i}"}},"fields":{{"n":{i}}},"time":"2026-01-02T00:00:00Z"}}"#
            )
            .into_bytes()
        })
        .collect();
    // Interleave: poison records sit inside batches of good ones.
    for (i, chunk) in good.chunks(40).enumerate() {
        transfer.publish_many("mix", chunk);
        transfer.publish("mix", poison[i].0);
    }
    let collector = Collector::start(&v1_config("px", &nats.url(), &influx, ""));
    let done = wait_until(Duration::from_secs(60), || {
        transfer.stream_state("mix").0 == 0 && influx.count("px", "mix") == 201
    });
    assert!(
        done,
        "stored {}, waiting {}:\n{}",
        influx.count("px", "mix"),
        transfer.stream_state("mix").0,
        collector.log()
    );
    let letters = transfer.dead_letter_messages();
    assert_eq!(letters.len(), poison.len(), "{letters:?}");
    for (payload, word) in &poison {
        let letter = letters
            .iter()
            .find(|letter| letter.data == *payload)
            .unwrap_or_else(|| {
                panic!(
                    "{} not dead-lettered: {letters:?}",
                    String::from_utf8_lossy(payload)
                )
            });
        assert_eq!(letter.subject, "px.dlq.mix");
        let headers = header_map(&letter.headers);
        let reason = headers
            .get("Collector-Error")
            .map(|r| r.to_lowercase())
            .unwrap_or_default();
        assert!(reason.contains(word), "{word}: {headers:?}");
        assert_eq!(
            headers.get("Collector-Stream").map(String::as_str),
            Some("px:logs:mix"),
            "{headers:?}"
        );
        assert!(
            headers
                .get("Collector-Sequence")
                .is_some_and(|s| s.parse::<u64>().is_ok()),
            "{headers:?}"
        );
        assert_eq!(
            headers.get("Collector-Subject").map(String::as_str),
            Some("px.logs.mix"),
            "{headers:?}"
        );
    }
    assert_eq!(
        collector.log().matches("dead-lettered record").count(),
        poison.len()
    );
    eprintln!(
        "poison: sent {} good + {} poison, stored {}, dead-lettered {}",
        201,
        poison.len(),
        influx.count("px", "mix"),
        letters.len()
    );
}

#[test]
fn shutdown_deadline_gives_unwritten_records_back() {
    let (nats, double, transfer) = v2_servers("gb", REFUSING, 300);
    let config = v2_config("gb", &nats, &double, "shutdown_timeout: 2s\n");
    let mut collector = start_refused(&config, &double);
    collector.stop_cleanly(Duration::from_secs(15));
    assert!(collector.log().contains("gave"), "{}", collector.log());
    // Given back, not left to time out: nothing is pending acknowledgement, all still waits.
    // Given back, not left to time out: a collector started now gets every record at once
    // (after the give-back delay of pull.expires + 1 s), long before the 30 s ack wait.
    assert_eq!(double.n_points(), 0);
    double.set_mode(Mode::Normal);
    let second = Collector::start(&v2_config("gb", &nats, &double, ""));
    let rewritten = wait_until(Duration::from_secs(15), || double.n_points() == 300);
    assert!(
        rewritten,
        "{} points; {}\n{}",
        double.n_points(),
        consumer(&transfer, "m"),
        second.log()
    );
    assert_acknowledged(&transfer, "m");
}

/// Regression (found by the soak): records given back by collectors stopped while InfluxDB
/// was down came back more than `pull.max_deliver` times and were dead-lettered, though
/// nothing was wrong with them. Now they are written on their own and stored.
#[test]
fn a_record_redelivered_past_max_deliver_is_written_on_its_own_not_dead_lettered() {
    let (nats, double, transfer) = v2_servers("md", REFUSING, 5);
    let config = v2_config(
        "md",
        &nats,
        &double,
        "shutdown_timeout: 1s\npull:\n  max_deliver: 2\n",
    );
    // Two runs that cannot write: each gives the records back at its deadline.
    for _ in 0..2 {
        let mut collector = start_refused(&config, &double);
        collector.stop_cleanly(Duration::from_secs(15));
    }
    // The third delivery is past max_deliver: each record is written on its own and stored.
    double.set_mode(Mode::Normal);
    let n_before = n_writes(&double);
    let collector = Collector::start(&config);
    collector.assert_within(Duration::from_secs(30), || {
        transfer.stream_state("m").0 == 0
    });
    assert_eq!(double.n_points(), 5, "{}", collector.log());
    assert!(transfer.dead_letter_messages().is_empty());
    let log = collector.log();
    let alone =
        "was delivered 3 times without being stored (pull.max_deliver is 2); writing it on its own";
    assert_eq!(log.matches(alone).count(), 5, "{log}");
    assert_eq!(n_writes(&double) - n_before, 5, "one write per record");
}

#[test]
fn v2_401_and_404_hold_records_until_fixed() {
    for (mode, fix) in [
        (Mode::Unauthorized, "check influx.token"),
        (Mode::BucketNotFound, "create the bucket"),
    ] {
        let (nats, double, transfer) = v2_servers("fa", mode.clone(), 100);
        let collector = Collector::start(&v2_config("fa", &nats, &double, ""));
        collector.assert_log(fix, Duration::from_secs(30));
        // Held: not acknowledged, not dead-lettered.
        assert_eq!(transfer.stream_state("m").0, 100);
        assert_eq!(transfer.dead_letter_messages().len(), 0);
        assert_eq!(
            collector.log().matches("refuses every write").count(),
            1,
            "logged once:\n{}",
            collector.log()
        );
        double.set_mode(Mode::Normal);
        // The fatal retry period is 10 s: the next attempt succeeds.
        assert!(
            wait_until(Duration::from_secs(60), || double.n_points() == 100),
            "{mode:?}:\n{}",
            collector.log()
        );
        assert_acknowledged(&transfer, "m");
    }
}

#[test]
fn v2_413_splits_the_batch() {
    let (nats, double, transfer) = v2_servers("big", Mode::Normal, 1_000);
    double.set_max_body_bytes(4_000);
    // Compressed (on loopback bodies are plain unless told), so the limit meets gzip bodies.
    let collector = Collector::start(&v2_config("big", &nats, &double, "  gzip: true\n"));
    collector.assert_within(Duration::from_secs(60), || double.n_points() == 1_000);
    assert_acknowledged(&transfer, "m");
    assert!(double.seen().iter().any(|s| s.status == 413));
    // The limit is on the decompressed size, so the halves are still split until they fit.
    assert!(double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v2/write"))
        .all(|s| s.gzip));
    assert_eq!(transfer.dead_letter_messages().len(), 0);
}

#[test]
fn v2_429_and_503_honour_retry_after() {
    for status in [429u16, 503] {
        let (nats, double, transfer) = v2_servers(
            "th",
            Mode::Throttle(Throttle {
                count: 2,
                status,
                retry_after_secs: 2,
            }),
            200,
        );
        let collector = Collector::start(&v2_config("th", &nats, &double, ""));
        collector.assert_within(Duration::from_secs(60), || double.n_points() == 200);
        let seen = double.seen();
        let writes: Vec<_> = seen
            .iter()
            .filter(|s| s.path.starts_with("/api/v2/write"))
            .collect();
        assert_eq!(writes[0].status, status);
        assert_eq!(writes[1].status, status);
        // The retries came no sooner than the server asked.
        for pair in writes.windows(2).take(2) {
            let gap = pair[1].at.duration_since(pair[0].at);
            assert!(
                gap >= Duration::from_millis(1_900),
                "retried after {gap:?}, Retry-After was 2 s"
            );
        }
        assert_acknowledged(&transfer, "m");
    }
}

#[test]
fn v2_partial_write_dead_letters_exactly_the_rejected_lines() {
    let (nats, double, transfer) = InfluxV2Double::start_with_nats("pw");
    transfer.set("m", "");
    let payloads: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let field = if i % 97 == 5 { "reject" } else { "v" };
            format!(r#"{{"fields":{{"{field}":{i}}},"time":"2026-01-01T00:00:00.{i:09}Z"}}"#)
                .into_bytes()
        })
        .collect();
    transfer.publish_many("m", &payloads);
    // Plain bodies this time (`influx.gzip: false`, said although it is the default on
    // loopback), so both encodings meet the bisection.
    let collector = Collector::start(&v2_config("pw", &nats, &double, "  gzip: false\n"));
    collector.assert_within(Duration::from_secs(60), || {
        transfer.stream_state("m").0 == 0
    });
    let letters = transfer.dead_letter_messages();
    let rejected = (0..300).filter(|i| i % 97 == 5).count();
    assert_eq!(letters.len(), rejected, "{letters:?}");
    assert!(letters
        .iter()
        .all(|letter| letter.headers.contains("partial write")
            && String::from_utf8_lossy(&letter.data).contains("reject")));
    assert_eq!(double.n_points(), 300 - rejected);
    assert!(double.seen().iter().all(|s| !s.gzip));
}

#[test]
fn a_second_signal_exits_at_once() {
    let (nats, double, transfer) = v2_servers("ss", REFUSING, 50);
    // A long deadline: the first signal alone would keep it retrying for a minute.
    let config = v2_config("ss", &nats, &double, "shutdown_timeout: 60s\n");
    let mut collector = start_refused(&config, &double);
    collector.terminate();
    collector.assert_log("stopping", Duration::from_secs(10));
    collector.terminate();
    // A second signal must exit at once.
    collector.assert_exit(130, Duration::from_secs(10));
    assert!(
        collector.log().contains("second signal"),
        "{}",
        collector.log()
    );
    // Nothing was acknowledged: the records wait for the next collector.
    assert_eq!(transfer.stream_state("m").0, 50);
}

/// A record whose dead letter is stored already (another delivery, here or in another
/// collector, published it and its `+TERM` was lost) is terminated again, and the dead-letter
/// stream answers "duplicate": `collector_records_dead_lettered_total` counts each record
/// once, so the repeat adds nothing.
#[test]
// The `nats` crate marks its header map deprecated in favour of async-nats; the collector
// and the harness use it on purpose (synchronous threads), so do these tests.
#[allow(deprecated)]
fn a_repeat_dead_letter_is_counted_once() {
    let (nats, influx, transfer) = util::start_servers("rd");
    let mut collector = Collector::start(&v1_config("rd", &nats.url(), &influx, ""));
    // The collector makes the dead-letter stream at start.
    collector.assert_within(Duration::from_secs(30), || {
        transfer
            .js_request("$JS.API.STREAM.INFO.rd:dlq", b"")
            .is_ok()
    });
    // A poison record in a stream the collector does not pull yet (no key in the bucket).
    transfer.add_stream("bad", "");
    transfer.publish("bad", b"not json at all");
    let stream = transfer.stream_name("bad");
    let stored = transfer
        .js_request(
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            serde_json::json!({ "seq": 1 }).to_string().as_bytes(),
        )
        .expect("the poison record is stored");
    let time = stored["message"]["time"].as_str().unwrap_or("");
    let timestamp_ns = collector::record::parse_rfc3339_ns(time).expect("stream time");
    // Its dead letter, as an earlier delivery would have published it.
    let mut headers = nats::header::HeaderMap::new();
    let id = format!("{stream}:1:{timestamp_ns}");
    headers.insert("Nats-Msg-Id", id.as_str());
    let reply = transfer
        .connection()
        .request_with_headers_or_timeout(
            "rd.dlq.bad",
            Some(&headers),
            Some(Duration::from_secs(5)),
            b"not json at all",
        )
        .expect("the earlier dead letter is stored");
    let answer: Value = serde_json::from_slice(&reply.data).expect("publish acknowledgement");
    assert_eq!(answer["seq"].as_u64(), Some(1), "{answer}");
    // Now the collector pulls it and dead-letters it again: a repeat.
    transfer.set("bad", "");
    collector.assert_within(Duration::from_secs(30), || {
        transfer.stream_state("bad").0 == 0
    });
    collector.stop_cleanly(Duration::from_secs(15));
    let log = collector.log();
    assert!(log.contains("this delivery is a repeat"), "{log}");
    assert!(log.contains("dead-lettered 0,"), "{log}");
    assert_eq!(transfer.dead_letters().len(), 1);
}

/// `collector_records_fetched_total` of the collector serving `/metrics` on `port`.
fn fetched(port: u16) -> u64 {
    let metrics = util::http_get(&format!("http://127.0.0.1:{port}/metrics"), &[])
        .expect("/metrics answers")
        .body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("collector_records_fetched_total "))
        .and_then(|n| n.parse().ok())
        .expect("collector_records_fetched_total")
}

/// [`v1_config`] with the metrics endpoint on a free port, for [`fetched`]: the port and the
/// configuration.
fn v1_config_with_metrics(
    namespace: &str,
    nats_url: &str,
    influx: &Influx,
    extra: &str,
) -> (u16, String) {
    let port = util::free_port();
    let config = util::config(nats_url, &influx.url())
        .namespace(namespace)
        .extra(extra)
        .http_listen(port)
        .yaml();
    (port, config)
}

/// Lets `collector` store its first records, stops InfluxDB for 12 s (two ack waits of 5 s and
/// more: anything held but not kept alive expires), starts it again and waits until every
/// record of `shares` is stored.
fn through_a_12_s_outage(
    collector: &Collector,
    influx: &mut Influx,
    transfer: &Transfer,
    ms: &[&str],
    shares: &[Vec<util::Sample>],
) {
    let db = transfer.namespace();
    collector.assert_within(Duration::from_secs(60), || total(influx, db, ms) > 0);
    influx.stop();
    std::thread::sleep(Duration::from_secs(12));
    influx.start_again();
    assert_all_stored(transfer, influx, ms, shares, DRAIN, || collector.log());
}

/// Regression: in an outage longer than `pull.ack_wait`, the chunks the workers had queued
/// for the writer were kept alive by nobody, expired, and were redelivered (and written
/// twice). Now the stalled writer takes them in and keeps them alive, and the workers issue
/// no new pulls meanwhile.
#[test]
fn an_outage_longer_than_ack_wait_redelivers_nothing() {
    let (nats, mut influx, transfer) = util::start_servers("long");
    let ms = ["app"];
    let shares = publish_samples(&transfer, &ms, 50_000);
    let (port, config) = v1_config_with_metrics(
        "long",
        &nats.url(),
        &influx,
        "pull:\n  batch: 100\n  ack_wait: 5s\nbatch:\n  max_lines: 500\n",
    );
    let collector = Collector::start(&config);
    through_a_12_s_outage(&collector, &mut influx, &transfer, &ms, &shares);
    // Each record was delivered once: had any expired, it would have been fetched again.
    assert_eq!(fetched(port), 50_000, "{}", collector.log());
}

/// Regression: nothing kept records alive while one blocking write was in flight, nor the
/// chunks queued behind it, so a write that hung longer than `pull.ack_wait` (InfluxDB frozen
/// with SIGSTOP: connections accepted, no answer) had its records redelivered to the other
/// collector while it still ran, and the two fetched much of the backlog twice. Now the
/// writer keeps every record it holds alive while the request runs: two collectors, an ack
/// wait of 5 s, a write timeout of 30 s and a 15 s freeze fetch each record once.
#[test]
fn a_write_hanging_longer_than_ack_wait_redelivers_nothing() {
    let (nats, influx, transfer) = util::start_servers("hang");
    let ms = ["app"];
    let shares = publish_samples(&transfer, &ms, 40_000);
    let ports = [util::free_port(), util::free_port()];
    let collectors: Vec<Collector> = ports
        .iter()
        .map(|&port| {
            let config = util::config(&nats.url(), &influx.url())
                .namespace("hang")
                .influx("  timeout: 30s\n")
                .extra("pull:\n  batch: 100\n  ack_wait: 5s\nbatch:\n  max_lines: 500\n")
                .http_listen(port)
                .yaml();
            Collector::start(&config)
        })
        .collect();
    collectors[0].assert_within(Duration::from_secs(60), || total(&influx, "hang", &ms) > 0);
    influx.pause();
    // Three ack waits: anything held but not kept alive would expire and be redelivered.
    std::thread::sleep(Duration::from_secs(15));
    influx.resume();
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || {
        collectors
            .iter()
            .map(Collector::log)
            .collect::<Vec<_>>()
            .join("\n")
    });
    // Without the keep-alive in flight, 40,632; with it but not for the chunk the writer
    // held while that write hung (`writer.rs` `take`), 40,100.
    let total: u64 = ports.iter().map(|&port| fetched(port)).sum();
    assert_eq!(
        total, 40_000,
        "records fetched by the two collectors together"
    );
}

/// A consumer created elsewhere keeps its own `ack_wait` (here 4 s, by hand, while the
/// collector's `pull.ack_wait` is the default 30 s): the collector reads it from the
/// consumer's info, says so, and keeps held records alive by it, so a 12 s outage of InfluxDB
/// redelivers nothing. Kept alive by the configured 30 s, they expired and came back.
#[test]
fn a_consumer_with_a_shorter_ack_wait_of_its_own_keeps_records_alive_by_it() {
    let (nats, mut influx, transfer) = util::start_servers("own");
    let ms = ["app"];
    transfer.add_stream("app", "");
    let stream = transfer.stream_name("app");
    let consumer = serde_json::json!({
        "stream_name": stream,
        "config": {
            "durable_name": "collector",
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": 4_000_000_000u64,
            "max_ack_pending": 20_000,
            "max_waiting": 512,
            "filter_subject": "own.logs.app",
            "replay_policy": "instant",
        }
    });
    transfer
        .js_request(
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.collector"),
            &serde_json::to_vec(&consumer).unwrap(),
        )
        .expect("consumer created");
    let shares = publish_samples(&transfer, &ms, 30_000);
    let (port, config) = v1_config_with_metrics("own", &nats.url(), &influx, SMALL);
    // `collector check` says the consumer's own wait differs from the configuration's.
    let (status, stdout, stderr) =
        util::run_to_exit(&["check"], Some(&config), Duration::from_secs(60));
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "⚠ nats: pull.ack_wait is 30s, but the consumer of 1 measurement(s) has its own: app (4s);"
        ),
        "{stdout}"
    );
    let collector = Collector::start(&config);
    collector.assert_log("its consumer's ack_wait is 4s", Duration::from_secs(60));
    through_a_12_s_outage(&collector, &mut influx, &transfer, &ms, &shares);
    // Kept alive by the configured 30 s, thousands expire in the outage and are fetched again.
    let n = fetched(port);
    assert_eq!(n, 30_000, "{}", collector.log());
}

/// Good records handed around during a database outage are never taken for a record that
/// kills the process (`suspects.rs`): with `pull.max_deliver: 2`, a collector stopped
/// (SIGTERM: it gives its records back) and killed (kill -9: they expire after `ack_wait`)
/// three times each while InfluxDB is down delivers the records it holds more than twice, so they
/// are suspects, marked in the suspects bucket while they are encoded; the deaths happen
/// while they are held, not encoded, and none counts. Every record is stored once InfluxDB
/// is back, and none is dead-lettered.
#[test]
fn records_handed_around_in_an_outage_are_never_dead_lettered_as_killers() {
    let (nats, mut influx, transfer) = util::start_servers("handed");
    let ms = ["app"];
    // Fewer than one pull, so that every restart takes them all in and encodes them.
    let shares = publish_samples(&transfer, &ms, 30);
    influx.stop();
    let config = v1_config(
        "handed",
        &nats.url(),
        &influx,
        "pull:\n  batch: 100\n  ack_wait: 5s\n  max_deliver: 2\nshutdown_timeout: 2s\n",
    );
    let mut collector = Collector::start(&config);
    // Six deliveries and more: enough for three deaths to be counted, were the marks of
    // records encoded and then held taken for deaths.
    for round in 0..6 {
        // Long enough to pull, fail a write and hold what it pulled.
        std::thread::sleep(Duration::from_secs(3));
        if round % 2 == 0 {
            collector.stop_cleanly(Duration::from_secs(60));
        } else {
            collector.kill9();
            // What it held expires, to be delivered again.
            std::thread::sleep(Duration::from_secs(6));
        }
        collector.restart();
    }
    collector.assert_log("suspects: created bucket", Duration::from_secs(30));
    influx.start_again();
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || collector.log());
    let letters = transfer.dead_letters();
    assert!(letters.is_empty(), "{letters:?}\n{}", collector.log());
    // Each was marked at its 3rd to 7th delivery: a mark left behind after an encoding
    // would have counted deaths from the 4th on, and dead-lettered it at the 6th.
    assert!(
        collector.log().contains("was delivered 7 times"),
        "{}",
        collector.log()
    );
    assert!(
        !collector.log().contains("died handling"),
        "{}",
        collector.log()
    );
}
