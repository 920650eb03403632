//! The pull scheme: long-lived pull requests with idle heartbeats. These tests run with an
//! ack wait of 5 minutes, far beyond their own time limits, so a record left pending on a
//! pull nobody reads (after a stop, or a removal) would make them fail instead of merely
//! waiting out the ack wait; and hundreds of measurements drain exactly and fairly.

mod util;
mod v2_double;

use std::time::Duration;

use util::{
    assert_all_stored, publish_samples, samples, wait_until, Collector, Influx, NatsServer, Sample,
    Transfer,
};
use v2_double::{InfluxV2Double, Mode, Throttle};

/// Small pulls and batches, and an ack wait no test waits out.
const TUNING: &str = "pull:\n  batch: 100\n  ack_wait: 5m\n  max_deliver: 2\n\
                      batch:\n  max_lines: 500\npoll_interval: 500ms\n";

fn v1_config(namespace: &str, nats: &NatsServer, influx: &Influx, extra: &str) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

/// How long a drain may take until every record is stored ([`assert_all_stored`]): far short
/// of the 5-minute ack wait, so that a record left pending fails the test.
const DRAIN: Duration = Duration::from_secs(90);

/// The logs of two collectors, for a failure message.
fn both_logs(first: &Collector, second: &Collector) -> String {
    format!("{}\n----\n{}", first.log(), second.log())
}

fn payloads(samples: &[Sample]) -> Vec<Vec<u8>> {
    samples.iter().map(Sample::bytes).collect()
}

#[test]
fn sigterm_mid_drain_leaves_nothing_pending_for_the_other_collector() {
    let (nats, influx, transfer) = util::start_servers("stop");
    let ms: Vec<String> = vec!["x".into(), "y".into()];
    let shares = publish_samples(&transfer, &ms, 20_000);
    let config = v1_config(
        "stop",
        &nats,
        &influx,
        &format!("{TUNING}shutdown_timeout: 5s\n"),
    );
    let mut first = Collector::start(&config);
    let second = Collector::start(&config);
    first.assert_within(Duration::from_secs(60), || {
        influx.count("stop", "x") >= 1_000
    });
    first.stop_cleanly(Duration::from_secs(15));
    // With a 5-minute ack wait, a record the first collector left pending would hold this
    // past its 90 s limit: everything it had was written, or given back to the second.
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || {
        both_logs(&first, &second)
    });
}

#[test]
fn a_removed_measurement_keeps_its_records_and_the_others_lose_nothing() {
    let (nats, influx, transfer) = util::start_servers("rm");
    let busy: Vec<String> = vec!["busy".into()];
    transfer.set("removed", "");
    // Idle measurements bring heartbeats to the worker's inbox all along.
    for i in 0..60 {
        transfer.set(&format!("idle{i}"), "");
    }
    // Pulls that expire after 10 s, so what the removed measurement's pulls took comes back
    // within this test's bounds.
    let tuning = TUNING.replace("pull:\n", "pull:\n  expires: 10s\n");
    let config = v1_config("rm", &nats, &influx, &tuning);
    let collector = Collector::start(&config);
    collector.assert_log("measurement removed added", Duration::from_secs(20));
    // `busy` drains while `removed` is removed: the removal must drop none of its records on
    // the way (a dropped one would wait out the 5-minute ack wait).
    let busy_samples = samples(10_000);
    transfer.set("busy", "");
    let publisher = {
        let transfer = Transfer::new(nats.connect(), "rm");
        let payloads = payloads(&busy_samples);
        std::thread::spawn(move || transfer.publish_many("busy", &payloads))
    };
    collector.assert_within(Duration::from_secs(30), || influx.count("rm", "busy") > 0);
    transfer.delete_key("removed");
    collector.assert_log("measurement removed removed", Duration::from_secs(20));
    // Its two pulls of 10 cannot be withdrawn and run to their expiry. The first 15 records
    // fill one and leave room for 5 in the other; each is given back for after that expiry,
    // so it is delivered twice in all, once here and once when the measurement returns.
    // Given back sooner (2 s), 5 of them would be taken again by the pull with room and
    // delivered a third time when it returns: past pull.max_deliver 2, suspects (checked
    // below). Had the worker dropped its inbox to end the pulls instead, what the server sent
    // in the moment before it heard of it would wait out the 5-minute ack wait (found in CI:
    // 20 records).
    let waiting = samples(300);
    let (first, rest) = waiting.split_at(15);
    transfer.publish_many("removed", &payloads(first));
    std::thread::sleep(Duration::from_secs(4));
    transfer.publish_many("removed", &payloads(rest));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(transfer.stream_state("removed").0, 300);
    assert_eq!(influx.count("rm", "removed"), 0);
    publisher.join().expect("publisher");
    assert_all_stored(&transfer, &influx, &busy, &[busy_samples], DRAIN, || {
        collector.log()
    });

    transfer.set("removed", "");
    assert_all_stored(
        &transfer,
        &influx,
        &["removed".to_string()],
        &[waiting],
        DRAIN,
        || collector.log(),
    );
    assert!(
        !collector.log().contains("dead-lettered"),
        "{}",
        collector.log()
    );
    // No record was delivered more than twice: the first suspect creates the bucket.
    assert!(
        !collector.log().contains("suspects: created bucket"),
        "{}",
        collector.log()
    );
}

#[test]
fn two_hundred_measurements_drain_exactly() {
    let (nats, influx, transfer) = util::start_servers("many");
    let ms: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    let shares = publish_samples(&transfer, &ms, 10_000);
    let collector = Collector::start(&v1_config("many", &nats, &influx, TUNING));
    assert_all_stored(&transfer, &influx, &ms, &shares, DRAIN, || collector.log());
}

/// A configuration for the v2 double that leaves `influx.api` to its default.
fn v2_config(namespace: &str, nats: &NatsServer, double: &InfluxV2Double, extra: &str) -> String {
    double
        .config(namespace, nats)
        .without_api()
        .extra(extra)
        .yaml()
}

#[test]
fn a_flooded_measurement_does_not_hold_up_the_others() {
    const HOT: usize = 20_000;
    let (nats, double, transfer) = InfluxV2Double::start_with_nats("fair");
    let others: Vec<String> = (0..199).map(|i| format!("m{i:03}")).collect();
    transfer.set("hot", "");
    for m in &others {
        transfer.set(m, "");
    }
    let tuning = "pull:\n  batch: 500\n  ack_wait: 5m\n";
    let config = v2_config("fair", &nats, &double, tuning);
    let collector = Collector::start(&config);
    collector.assert_log("measurement m198 added", Duration::from_secs(60));
    // InfluxDB answers the next write with 503 and `Retry-After: 10`: the collector holds
    // still while `hot` is flooded and then every other measurement gets one record.
    double.set_mode(Mode::Throttle(Throttle {
        count: 1,
        status: 503,
        retry_after_secs: 10,
    }));
    transfer.publish("hot", &samples(1)[0].bytes());
    collector.assert_within(Duration::from_secs(20), || !double.seen().is_empty());
    let hot = samples(HOT);
    transfer.publish_many("hot", &payloads(&hot));
    for (i, m) in others.iter().enumerate() {
        transfer.publish(m, &samples(i + 1)[i].bytes());
    }
    // The first record is the flood's first too: one point.
    let n_points = HOT + others.len();
    assert!(
        wait_until(Duration::from_secs(120), || double.n_points() == n_points),
        "{} of {n_points} points\n{}",
        double.n_points(),
        collector.log()
    );
    // In the order written: how many `hot` lines went before the last of the others. Every
    // measurement has its own pulls outstanding, so the others wait behind what is already
    // buffered (the batch and the chunk channel, about two batches), not behind the flood.
    let order: Vec<String> = double
        .seen()
        .into_iter()
        .filter(|seen| seen.status / 100 == 2)
        .flat_map(|seen| seen.measurements)
        .collect();
    let last_other = order
        .iter()
        .rposition(|m| m != "hot")
        .expect("the others were written");
    let hot_before = order[..last_other].iter().filter(|m| *m == "hot").count();
    let bound = 2 * 5_000 + 2 * 500;
    eprintln!("{hot_before} of {HOT} hot lines written before the last of the others");
    assert!(
        hot_before <= bound,
        "{hot_before} hot lines were written before the last of the others (bound {bound})\n{}",
        collector.log()
    );
}

#[test]
fn a_lone_record_is_written_without_waiting_for_the_interval_and_a_backlog_in_full_batches() {
    let (nats, double, transfer) = InfluxV2Double::start_with_nats("fresh");
    transfer.set("lone", "");
    publish_samples(&transfer, &["bulk"], 10_000);
    // An interval no test waits out: only the quiet rule (and the end of a backlog) writes
    // anything short of a full batch.
    let tuning = "pull:\n  batch: 100\nbatch:\n  max_lines: 500\n  interval: 5m\n";
    let config = v2_config("fresh", &nats, &double, tuning);
    let collector = Collector::start(&config);
    assert!(
        wait_until(Duration::from_secs(60), || double.n_points() == 10_000),
        "{} of 10000\n{}",
        double.n_points(),
        collector.log()
    );
    // Under the backlog the batches were full (a batch is written when the next pull's
    // chunk would not fit, so full is 400 to 500 lines here): only its tail may be short.
    // (A write of no lines is the start-up probe.)
    let sizes: Vec<usize> = double.seen().iter().map(|seen| seen.n_lines).collect();
    let short = sizes.iter().filter(|&&n| n > 0 && n < 400).count();
    assert!(short <= 2, "batch sizes {sizes:?}");

    // Idle now: one record is written on its own, long before the 5-minute interval.
    transfer.publish("lone", &samples(1)[0].bytes());
    collector.assert_within(Duration::from_secs(20), || double.n_points() == 10_001);
}

/// Found by the chaos soak: under a steady trickle the long pulls of a stopping collector
/// never go quiet, and every SIGTERM waited out the whole `shutdown_timeout` (12 s each, so a
/// rolling restart of three took well over half a minute). A stop now waits for quiet pulls
/// at most 2 s. Here the pulls are far too large to fill before the 60 s shutdown timeout and
/// the records come every few milliseconds for about 25 s, so the old wait would keep the
/// collector stopping until the load ends, past this test's 12 s bound; what the server sent
/// while the inbox was dropped comes back after the 5 s ack wait, to the collector started
/// next.
#[test]
fn a_stop_under_a_steady_trickle_does_not_wait_out_the_shutdown_timeout() {
    let (nats, influx, transfer) = util::start_servers("trickle");
    transfer.set("t", "");
    let all = samples(10_000);
    let config = v1_config(
        "trickle",
        &nats,
        &influx,
        "pull:\n  batch: 5000\n  ack_wait: 5s\nshutdown_timeout: 60s\n",
    );
    let mut first = Collector::start(&config);
    // About 400 records a second for 25 s, a few every 10 ms, so records keep arriving
    // throughout the stop.
    let publisher = {
        let transfer = Transfer::new(nats.connect(), "trickle");
        let chunks: Vec<Vec<Vec<u8>>> = all.chunks(4).map(payloads).collect();
        std::thread::spawn(move || {
            for chunk in chunks {
                transfer.publish_many("t", &chunk);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    first.assert_within(Duration::from_secs(30), || {
        influx.count("trickle", "t") >= 300
    });
    first.stop_cleanly(Duration::from_secs(12));
    let second = Collector::start(&config);
    publisher.join().expect("the publisher panicked");
    assert_all_stored(
        &transfer,
        &influx,
        &["t".to_string()],
        &[all],
        DRAIN,
        || both_logs(&first, &second),
    );
}
