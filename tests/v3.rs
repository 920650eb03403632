//! InfluxDB 3 native writes (`influx.api: v3`) through the whole pipeline: nats-server, the
//! collector binary, and the InfluxDB 3 write-API double in `v3_double`, which answers as
//! InfluxDB 3 Core 3.6.0 does (`tests/influxdb3.rs` runs these cases against the real server
//! where it can answer them; `docs/INFLUXDB3.md`). Partial writes settle line by line without
//! bisecting; drifted numbers are converted; 401/404/429 behave as for v2.

mod util;
mod v3_double;

use std::time::Duration;

use util::{latencies, record, wait_until, Collector, NatsServer, Transfer};
use v3_double::{InfluxV3Double, Mode, Throttle};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

fn v3_config(namespace: &str, nats: &NatsServer, double: &InfluxV3Double, extra: &str) -> String {
    double.config(namespace, nats).extra(extra).yaml()
}

/// Publishes records 1 to `n` to measurement `m`, each with its number as the field `v`.
fn publish_values(transfer: &Transfer, n: usize) {
    transfer.set("m", "");
    let payloads: Vec<Vec<u8>> = (1..=n)
        .map(|i| record("{}", &format!(r#"{{"v":{i}}}"#), i))
        .collect();
    transfer.publish_many("m", &payloads);
}

/// Lines sent over all write requests.
fn n_lines_sent(double: &InfluxV3Double) -> usize {
    double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v3/write_lp"))
        .map(|s| s.n_lines)
        .sum()
}

fn settled(transfer: &Transfer, measurement: &str) -> bool {
    wait_until(Duration::from_secs(60), || {
        transfer.stream_state(measurement).0 == 0
    })
}

#[test]
fn conflicting_lines_are_settled_one_by_one_without_bisecting() {
    let (nats, double, transfer) = InfluxV3Double::start_with_nats("v3ns");
    // Another client fixed the schema: `latency` float, `host` a tag.
    double.seed(&format!("m,host=a latency=1.5 {T0}\n"));
    transfer.set("m", "");
    // 300 records: every 10th an integer latency (converted), every 37th a string latency and
    // every 41st a field named like the tag (both rejected for good).
    let kind = |i: usize| match i {
        _ if i % 37 == 5 => "string",
        _ if i % 41 == 7 => "clash",
        _ if i % 10 == 3 => "integer",
        _ => "float",
    };
    let payloads: Vec<Vec<u8>> = (1..=300)
        .map(|i| match kind(i) {
            "string" => record(r#"{"host":"b"}"#, r#"{"latency":"slow"}"#, i),
            "clash" => record(r#"{}"#, &format!(r#"{{"latency":{i}.5,"host":"x"}}"#), i),
            "integer" => record(r#"{"host":"b"}"#, &format!(r#"{{"latency":{i}}}"#), i),
            _ => record(r#"{"host":"b"}"#, &format!(r#"{{"latency":{i}.5}}"#), i),
        })
        .collect();
    transfer.publish_many("m", &payloads);
    let collector = Collector::start(&v3_config("v3ns", &nats, &double, ""));
    assert!(settled(&transfer, "m"), "{}", collector.log());

    let n = |k: &str| (1..=300).filter(|&i| kind(i) == k).count();
    let (n_rejected, n_converted) = (n("string") + n("clash"), n("integer"));
    // Stored: the seed, every float and every converted integer, as floats.
    let points = double.points();
    assert_eq!(points.len(), 1 + 300 - n_rejected, "{}", collector.log());
    for i in (1..=300).filter(|&i| kind(i) == "integer") {
        let key = format!("m,host=b {}", T0 + i as i64);
        assert_eq!(
            points[&key],
            format!("m,host=b latency={i}.0 {}", T0 + i as i64)
        );
    }
    // Dead-lettered: exactly the rejected records, each with the server's own message.
    transfer.assert_dead_lettered(n_rejected, |payload| {
        if payload.contains("slow") {
            "invalid column type for column 'latency', expected iox::column_type::field::float, got iox::column_type::field::string"
        } else {
            "invalid column type for column 'host', expected iox::column_type::tag, got iox::column_type::field::string"
        }
    });
    // No bisecting: every line went out once, and the converted ones at most once more (not
    // at all when an earlier batch had already taught the type).
    let sent = n_lines_sent(&double);
    eprintln!(
        "{} write requests, {sent} lines sent, {n_converted} converted, {n_rejected} rejected",
        double.n_writes()
    );
    assert!(
        (300..=300 + n_converted).contains(&sent),
        "{sent} lines sent: {:?}",
        double.seen()
    );
    // Bearer token on every request, gzip bodies as configured by default.
    assert!(double
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer apiv3_t0ken")));
    assert!(double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v3/write_lp"))
        .all(|s| s
            .path
            .contains("db=v3ns&precision=nanosecond&accept_partial=true")
            && !s.path.contains("no_sync")));
}

#[test]
fn more_than_100_rejected_lines_are_all_settled() {
    let (nats, double, transfer) = InfluxV3Double::start_with_nats("many");
    // InfluxDB 3 Core 3.6.0 names every rejected line; its documentation said at most 100, and
    // the collector reads an answer naming 100 as possibly cut short: the double cuts it.
    double.set_max_line_errors(100);
    double.seed(&format!("m latency=1.5 {T0}\n"));
    transfer.set("m", "");
    // 400 records, 250 of them rejected (a string into the float field).
    let bad = |i: usize| i % 8 < 5;
    transfer.publish_many("m", &latencies(400, bad));
    let collector = Collector::start(&v3_config(
        "many",
        &nats,
        &double,
        "  no_sync: true\npull:\n  batch: 400\n",
    ));
    assert!(settled(&transfer, "m"), "{}", collector.log());
    let n_bad = (1..=400).filter(|&i| bad(i)).count();
    assert_eq!(double.points().len(), 1 + 400 - n_bad);
    assert_eq!(transfer.dead_letters().len(), n_bad);
    eprintln!(
        "{} write requests, {} lines sent, {n_bad} rejected",
        double.n_writes(),
        n_lines_sent(&double)
    );
    // Lines past the 100th named one are written again, never split in halves: 250 rejected
    // lines take a few requests, where bisecting would take hundreds.
    assert!(
        double.n_writes() <= 12,
        "{} writes: {:?}",
        double.n_writes(),
        double.seen()
    );
    assert!(double
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v3/write_lp"))
        .all(|s| s.path.ends_with("&no_sync=true")));
}

#[test]
fn a_whole_body_refusal_settles_the_named_line_and_writes_the_rest() {
    let (nats, double, transfer) = InfluxV3Double::start_with_nats("aon");
    double.set_mode(Mode::AllOrNothing);
    double.seed(&format!("m latency=1.5 {T0}\n"));
    transfer.set("m", "");
    // 100 records: every 20th a string (refused), every 25th an integer (converted).
    let kind = |i: usize| match i {
        _ if i % 20 == 3 => "string",
        _ if i % 25 == 4 => "integer",
        _ => "float",
    };
    let payloads: Vec<Vec<u8>> = (1..=100)
        .map(|i| match kind(i) {
            "string" => record("{}", r#"{"latency":"slow"}"#, i),
            "integer" => record("{}", &format!(r#"{{"latency":{i}}}"#), i),
            _ => record("{}", &format!(r#"{{"latency":{i}.5}}"#), i),
        })
        .collect();
    transfer.publish_many("m", &payloads);
    let collector = Collector::start(&v3_config("aon", &nats, &double, ""));
    assert!(settled(&transfer, "m"), "{}", collector.log());
    let n_strings = (1..=100).filter(|&i| kind(i) == "string").count();
    assert_eq!(
        double.points().len(),
        1 + 100 - n_strings,
        "{}",
        collector.log()
    );
    let letters = transfer.dead_letters();
    assert_eq!(letters.len(), n_strings, "{letters:?}");
    assert!(letters
        .iter()
        .all(|(_, reason, _)| reason.contains("expected iox::column_type::field::float")));
    // One request per refused or converted line, plus one per batch that stores the rest
    // (a few batches at most): each answer settles one line, nothing is split in halves,
    // which would take dozens of requests.
    let n_integers = (1..=100).filter(|&i| kind(i) == "integer").count();
    assert!(
        double.n_writes() <= n_strings + n_integers + 4,
        "{} writes",
        double.n_writes()
    );
}

#[test]
fn table_and_column_limits_are_named_in_the_dead_letter() {
    let (nats, double, transfer) = InfluxV3Double::start_with_nats("lim");
    // Tables: only the seeded one; columns: time + 3.
    double.seed(&format!("m a=1.5 {T0}\n"));
    double.set_limits(1, 4);
    transfer.set("m", "");
    transfer.set("other", "");
    let fits = record("{}", r#"{"a":2.5,"b":1.5,"c":1.5}"#, 1);
    let too_wide = record("{}", r#"{"a":2.5,"d":1.5,"e":1.5}"#, 2);
    transfer.publish_many("m", &[fits, too_wide]);
    transfer.publish_many("other", &[record("{}", r#"{"a":1.5}"#, 3)]);
    let collector = Collector::start(&v3_config("lim", &nats, &double, ""));
    assert!(
        settled(&transfer, "m") && settled(&transfer, "other"),
        "{}",
        collector.log()
    );
    transfer.assert_dead_letter_reasons(&[
        "number of columns per table limit of 4",
        "number of tables limit of 1",
    ]);
    assert_eq!(double.points().len(), 2);
}

#[test]
fn v3_401_and_404_hold_records_until_fixed() {
    for (mode, fix) in [
        (Mode::Unauthorized, "check influx.token"),
        (Mode::DatabaseNotFound, "database (v1, v3)"),
    ] {
        let (nats, double, transfer) = InfluxV3Double::start_with_nats("fa");
        double.set_mode(mode.clone());
        publish_values(&transfer, 50);
        let collector = Collector::start(&v3_config("fa", &nats, &double, ""));
        collector.assert_log(fix, Duration::from_secs(30));
        // Held: not acknowledged, not dead-lettered.
        assert_eq!(transfer.stream_state("m").0, 50);
        assert_eq!(transfer.dead_letters().len(), 0);
        double.set_mode(Mode::Normal);
        // The fatal retry period is 10 s: the next attempt succeeds.
        assert!(
            wait_until(Duration::from_secs(60), || double.points().len() == 50),
            "{mode:?}:\n{}",
            collector.log()
        );
        assert!(settled(&transfer, "m"));
    }
}

#[test]
fn v3_429_honours_retry_after() {
    let (nats, double, transfer) = InfluxV3Double::start_with_nats("th");
    double.set_mode(Mode::Throttle(Throttle {
        count: 2,
        status: 429,
        retry_after_secs: 2,
    }));
    publish_values(&transfer, 100);
    let collector = Collector::start(&v3_config("th", &nats, &double, ""));
    collector.assert_within(Duration::from_secs(60), || double.points().len() == 100);
    let writes: Vec<_> = double
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/api/v3/write_lp"))
        .collect();
    assert_eq!((writes[0].status, writes[1].status), (429, 429));
    // The retries came no sooner than the server asked (a lower bound: a slow machine only
    // makes the gaps longer).
    for pair in writes.windows(2).take(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(1_900),
            "retried after {gap:?}, Retry-After was 2 s"
        );
    }
    assert!(settled(&transfer, "m"));
    assert_eq!(transfer.dead_letters().len(), 0);
}
