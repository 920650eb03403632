//! Live configuration: measurements added, changed and removed in the `<ns>_logs` bucket
//! take effect on every collector of the namespace without a restart, while records flow;
//! nothing waiting is lost; invalid entries are skipped with one error line each.

mod util;

use std::time::Duration;

use util::{samples, wait_until, Collector, Influx, NatsServer, Sample};

fn config(nats: &NatsServer, influx: &Influx) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace("live")
        .extra("poll_interval: 500ms\n")
        .yaml()
}

fn payloads(samples: &[Sample]) -> Vec<Vec<u8>> {
    samples.iter().map(Sample::bytes).collect()
}

/// Waits until both collectors' logs contain `needle`.
fn both_log(a: &Collector, b: &Collector, needle: &str) {
    for c in [a, b] {
        c.assert_log(needle, Duration::from_secs(20));
    }
}

#[test]
fn two_collectors_follow_adds_changes_and_removes_without_losing_records() {
    let (nats, influx, transfer) = util::start_servers("live");
    transfer.set("a", "first");
    let all = samples(4_000);
    let (a_first, rest) = all.split_at(1_000);
    let (b_records, rest) = rest.split_at(1_000);
    let (a_while_removed, a_after) = rest.split_at(1_000);
    transfer.publish_many("a", &payloads(a_first));

    let one = Collector::start(&config(&nats, &influx));
    let two = Collector::start(&config(&nats, &influx));
    both_log(&one, &two, "measurement a added");
    assert!(wait_until(Duration::from_secs(30), || influx
        .count("live", "a")
        == 1_000));

    // Added: a new measurement is picked up by both, its stream created by the Transfer
    // client, its records written.
    transfer.set("b", "second");
    transfer.publish_many("b", &payloads(b_records));
    both_log(&one, &two, "measurement b added");
    one.assert_within(Duration::from_secs(30), || {
        influx.count("live", "b") == 1_000
    });
    influx.check_samples("live", "b", b_records).unwrap();

    // Changed: the new description is applied without dropping anything.
    transfer.put_raw("a", br#"{"measurement":"a","description":"renamed"}"#);
    both_log(&one, &two, "measurement a changed");

    // Removed: no longer pulled, but its stream and waiting records are kept.
    transfer.delete_key("a");
    both_log(&one, &two, "measurement a removed");
    transfer.publish_many("a", &payloads(a_while_removed));
    // Give both collectors several poll intervals in which they must not pull `a`.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        transfer.stream_state("a").0,
        1_000,
        "records of a removed measurement must wait"
    );
    assert_eq!(influx.count("live", "a"), 1_000);

    // Re-added: the waiting records and new ones drain, through the same durable consumer.
    transfer.set("a", "back");
    transfer.publish_many("a", &payloads(a_after));
    one.assert_within(Duration::from_secs(30), || {
        influx.count("live", "a") == 3_000 && transfer.stream_state("a").0 == 0
    });
    let a_all: Vec<Sample> = a_first
        .iter()
        .chain(a_while_removed)
        .chain(a_after)
        .cloned()
        .collect();
    influx.check_samples("live", "a", &a_all).unwrap();
    assert_eq!(transfer.consumer_names("a"), vec!["collector".to_string()]);
}

#[test]
fn invalid_entries_are_skipped_with_one_error_line_each() {
    let (nats, influx, transfer) = util::start_servers("live");
    transfer.set("good", "");
    let one = Collector::start(&config(&nats, &influx));
    let two = Collector::start(&config(&nats, &influx));
    both_log(&one, &two, "measurement good added");

    transfer.put_raw("broken", b"{not json");
    transfer.put_raw("other", br#"{"measurement":"elsewhere"}"#);
    transfer.put_raw("dotted.key", br#"{"measurement":"dotted.key"}"#);
    both_log(&one, &two, "configuration key dotted.key");
    // A bad edit of a good key keeps its previous state.
    transfer.put_raw("good", b"[]");
    both_log(&one, &two, "configuration key good");
    // More changes make the collectors read the bucket again: no repeated error lines.
    transfer.set("later", "");
    both_log(&one, &two, "measurement later added");
    for c in [&one, &two] {
        let log = c.log();
        for key in ["broken", "other", "dotted.key", "good"] {
            let needle = format!("configuration key {key} ");
            assert_eq!(log.matches(&needle).count(), 1, "{key} once in:\n{log}");
        }
        assert!(log.contains("names measurement `elsewhere`"), "{log}");
        assert!(!log.contains("measurement good removed"), "{log}");
    }
    // `good` is still pulled.
    transfer.publish(
        "good",
        br#"{"fields":{"v":1},"time":"2026-01-01T00:00:00Z"}"#,
    );
    one.assert_within(Duration::from_secs(20), || {
        influx.count("live", "good") == 1
    });
}
