//! Self-healing: a stream or its shared consumer deleted at runtime while its measurement is
//! still in the bucket is re-created and pulled again, by every collector of the namespace
//! that notices, with one warning line each; a measurement removed from the bucket is never
//! re-created.
//! Every test is bounded in records and time and checks the exact points InfluxDB holds.

mod util;

use std::time::Duration;

use util::{
    assert_all_stored, samples, wait_until, Collector, DatabaseServer, Influx, NatsCluster, Sample,
    Transfer,
};

/// Quick polls, small pulls and batches.
fn config(namespace: &str, nats_url: &str, influx: &Influx) -> String {
    config_with_pull(namespace, nats_url, influx, "  batch: 100\n")
}

/// [`config`] with `pull` (lines indented by two spaces) for its `pull` section.
fn config_with_pull(namespace: &str, nats_url: &str, influx: &Influx, pull: &str) -> String {
    util::config(nats_url, &influx.url())
        .namespace(namespace)
        .extra(&format!(
            "poll_interval: 500ms\npull:\n{pull}batch:\n  max_lines: 500\n"
        ))
        .yaml()
}

fn payloads(samples: &[Sample]) -> Vec<Vec<u8>> {
    samples.iter().map(Sample::bytes).collect()
}

/// [`assert_all_stored`] for one measurement, `m`, within the minute every drain here is
/// given.
fn assert_stored(
    transfer: &Transfer,
    influx: &Influx,
    m: &str,
    samples: &[Sample],
    log: impl Fn() -> String,
) {
    assert_all_stored(
        transfer,
        influx,
        &[m],
        &[samples],
        Duration::from_secs(60),
        log,
    );
}

/// The warning a collector logs when it repairs `measurement` (one per repair).
fn repairs(collector: &Collector, measurement: &str) -> usize {
    let needle = format!("measurement {measurement}: ");
    collector
        .log()
        .lines()
        .filter(|line| line.contains(&needle) && line.contains("pulling again"))
        .count()
}

/// Deletes the consumer while `collectors` drain 3,000 records, then publishes 500 more:
/// everything is stored, and each collector logged the repair once.
fn consumer_deleted_mid_drain(n_collectors: usize) {
    let (nats, influx, transfer) = util::start_servers("heal");
    transfer.set("a", "");
    let all = samples(3_500);
    let (before, after) = all.split_at(3_000);
    transfer.publish_many("a", &payloads(before));
    let collectors: Vec<Collector> = (0..n_collectors)
        .map(|_| Collector::start(&config("heal", &nats.url(), &influx)))
        .collect();
    for c in &collectors {
        c.assert_log("measurement a added", Duration::from_secs(20));
    }
    let logs = || {
        collectors
            .iter()
            .map(Collector::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert!(
        wait_until(Duration::from_secs(30), || influx.count("heal", "a") > 0),
        "{}",
        logs()
    );
    transfer.delete_consumer("a");
    transfer.publish_many("a", &payloads(after));
    assert_stored(&transfer, &influx, "a", &all, logs);
    // Each collector that noticed the loss logs it once; one whose next pull already found
    // the consumer re-created by the other noticed nothing, and logs nothing.
    assert!(
        wait_until(Duration::from_secs(10), || collectors
            .iter()
            .any(|c| repairs(c, "a") >= 1)),
        "{}",
        logs()
    );
    for c in &collectors {
        assert!(
            repairs(c, "a") <= 1,
            "at most one repair line per collector:\n{}",
            c.log()
        );
    }
    assert_eq!(transfer.consumer_names("a"), vec!["collector".to_string()]);
}

#[test]
fn a_consumer_deleted_mid_drain_is_recreated() {
    consumer_deleted_mid_drain(1);
}

#[test]
fn a_consumer_deleted_mid_drain_is_recreated_by_two_collectors_at_once() {
    consumer_deleted_mid_drain(2);
}

#[test]
fn a_deleted_stream_comes_back_while_its_key_stays_and_not_once_removed() {
    let (nats, influx, transfer) = util::start_servers("heal");
    transfer.set("kept", "");
    transfer.set("gone", "");
    let all = samples(1_000);
    let (first, second) = all.split_at(500);
    transfer.publish_many("kept", &payloads(first));
    let collector = Collector::start(&config("heal", &nats.url(), &influx));
    assert_stored(&transfer, &influx, "kept", first, || collector.log());

    // The stream alone is deleted: its measurement is still configured, so the stream and
    // its consumer come back, and what is published afterwards is stored.
    transfer.delete_stream("kept");
    collector.assert_within(Duration::from_secs(20), || repairs(&collector, "kept") == 1);
    assert!(
        collector.log().contains("re-created the stream"),
        "{}",
        collector.log()
    );
    transfer.publish_many("kept", &payloads(second));
    assert_stored(&transfer, &influx, "kept", &all, || collector.log());

    // Removed as Transfer's `Remove` does it, key then stream: never re-created.
    transfer.remove("gone");
    collector.assert_log("measurement gone removed", Duration::from_secs(20));
    // Several poll intervals and pull expiries in which nothing may bring it back.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!transfer.stream_exists("gone"), "{}", collector.log());
    assert_eq!(repairs(&collector, "gone"), 0, "{}", collector.log());
}

#[test]
fn a_consumer_deleted_through_another_cluster_node_is_recreated() {
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    let influx = Influx::start();
    influx.create_database("heal");
    // The collector talks to node 0 only; the consumer is deleted through node 2.
    let elsewhere = Transfer::new(
        util::connect_options()
            .connect(urls[2].as_str())
            .expect("connect to node 2"),
        "heal",
    )
    .with_replicas(3);
    elsewhere.set("a", "");
    let all = samples(2_000);
    let (before, after) = all.split_at(1_000);
    elsewhere.publish_many("a", &payloads(before));
    let collector = Collector::start(&config("heal", &urls[0], &influx));
    assert_stored(&elsewhere, &influx, "a", before, || collector.log());
    elsewhere.delete_consumer("a");
    collector.assert_within(Duration::from_secs(20), || repairs(&collector, "a") == 1);
    elsewhere.publish_many("a", &payloads(after));
    assert_stored(&elsewhere, &influx, "a", &all, || collector.log());
}

/// A consumer lost while no pull waits on it gives no `409 Consumer Deleted`: the main
/// thread's survey of the consumers finds it and heals it. No pull waits here because
/// InfluxDB is down: the stalled writer has the workers send no new pulls, and the last ones
/// end at their expiry (3 s).
#[test]
fn a_consumer_lost_with_no_pull_waiting_is_found_by_the_survey() {
    let (nats, mut influx, transfer) = util::start_servers("sv");
    transfer.set("a", "");
    let config = config_with_pull("sv", &nats.url(), &influx, "  expires: 3s\n");
    let collector = Collector::start(&config);
    assert!(
        collector.wait_for_log("measurement a added", Duration::from_secs(20)),
        "{}",
        collector.log()
    );
    influx.stop();
    let all = samples(300);
    transfer.publish_many("a", &payloads(&all));
    assert!(
        collector.wait_for_log("write failed, retrying", Duration::from_secs(30)),
        "{}",
        collector.log()
    );
    let waiting = || {
        transfer.consumer_info("a", "collector").unwrap()["num_waiting"]
            .as_u64()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(30), || waiting() == 0),
        "pulls still waiting: {}\n{}",
        waiting(),
        collector.log()
    );
    transfer.delete_consumer("a");
    assert!(
        collector.wait_for_log(
            "consumer missing (periodic check) on stream",
            Duration::from_secs(45)
        ),
        "{}",
        collector.log()
    );
    influx.start_again();
    assert_stored(&transfer, &influx, "a", &all, || collector.log());
    assert_eq!(repairs(&collector, "a"), 1, "{}", collector.log());
}
