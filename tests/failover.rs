//! NATS failover, on a real 3-node nats-server cluster on loopback (and a single server that
//! comes up late): dead letters stay unique while consumer leaders are killed or frozen, a
//! collector started while the cluster has no leader waits for it instead of exiting, and
//! the streams the collector creates get the configured replicas. Every test is bounded in
//! records and time and counts what the servers hold.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use util::{
    free_port, http_get, run_command, sample_payloads, wait_until, Collector, Influx, NatsCluster,
    NatsServer, Transfer,
};

/// A v1 configuration for `hosts`, with `extra` appended.
fn v1_config(namespace: &str, hosts: &[String], influx: &Influx, extra: &str) -> String {
    util::config(&hosts.join(", "), &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

/// The payloads of the dead letters in `<ns>:dlq`, with how many times each is there.
fn dead_letter_counts(transfer: &Transfer) -> BTreeMap<String, usize> {
    let stream = format!("{}:dlq", transfer.namespace());
    let info = transfer.stream_info(&stream);
    let (first, last) = (
        info["state"]["first_seq"].as_u64().unwrap_or(0),
        info["state"]["last_seq"].as_u64().unwrap_or(0),
    );
    let mut counts = BTreeMap::new();
    for seq in first.max(1)..=last {
        let message = wait_answer(|| transfer.get_message(&stream, &json!({ "seq": seq })));
        if let Some(message) = message {
            *counts
                .entry(String::from_utf8_lossy(&message.data).into_owned())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// An API answer, retried for a while as JetStream settles after a fault; `None` for a
/// 404 (a message or stream that is not there).
fn wait_answer<T>(mut request: impl FnMut() -> Result<T, util::JsError>) -> Option<T> {
    let mut answer = None;
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(30), || match request() {
        Ok(value) => {
            answer = Some(value);
            true
        }
        Err(e) if e.code == 404 => true,
        Err(e) => {
            last = e.to_string();
            false
        }
    });
    assert!(ok, "no answer: {last}");
    answer
}

/// The node that leads the shared consumer of `measurement`, once there is one.
fn consumer_leader(cluster: &NatsCluster, transfer: &Transfer, measurement: &str) -> usize {
    let mut leader = None;
    let found = wait_until(Duration::from_secs(30), || {
        leader = transfer
            .consumer_info(measurement, "collector")
            .ok()
            .and_then(|info| cluster.node_index(info["cluster"]["leader"].as_str()?));
        leader.is_some()
    });
    assert!(found, "the consumer on {measurement} has no leader");
    leader.expect("found")
}

#[test]
fn poison_records_are_dead_lettered_once_across_consumer_leader_failovers() {
    const ROUNDS: usize = 4;
    const GOOD_PER_ROUND: usize = 200;
    const POISON_PER_ROUND: usize = 8;

    let (mut cluster, influx, transfer) = util::start_cluster_servers(3, "fo");
    transfer.set("mix", "");
    // An existing dead-letter stream with JetStream's default two-minute window: the
    // collector raises it to outlast its redeliveries (2 × 10 s × 10 deliveries).
    let dlq = json!({
        "name": "fo:dlq",
        "subjects": ["fo.dlq.>"],
        "retention": "limits",
        "storage": "file",
        "num_replicas": 3,
        "duplicate_window": 120_000_000_000u64,
    });
    transfer
        .js_request("$JS.API.STREAM.CREATE.fo:dlq", dlq.to_string().as_bytes())
        .expect("dead-letter stream");
    let config = v1_config(
        "fo",
        &cluster.urls(),
        &influx,
        "pull:\n  batch: 50\n  ack_wait: 10s\nbatch:\n  max_lines: 200\n",
    );
    let mut collectors = [Collector::start(&config), Collector::start(&config)];
    let log = |collectors: &[Collector]| {
        collectors
            .iter()
            .map(Collector::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    let mut poison: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for i in 0..GOOD_PER_ROUND {
            payloads.push(
                format!(r#"{{"tags":{{"k":"r{round}i{i}"}},"fields":{{"n":{i}}},"time":"2026-01-02T00:00:00Z"}}"#)
                    .into_bytes(),
            );
            if i % (GOOD_PER_ROUND / POISON_PER_ROUND) == 0 {
                let bad = format!("not json, round {round} record {i}");
                payloads.push(bad.clone().into_bytes());
                poison.push(bad);
            }
        }
        transfer.publish_many("mix", &payloads);
        // The fault lands while the collectors are busy with this round's records.
        let leader = consumer_leader(&cluster, &transfer, "mix");
        if round % 2 == 0 {
            cluster.kill9(leader);
            std::thread::sleep(Duration::from_secs(2));
            cluster.restart(leader);
        } else {
            cluster.freeze(leader);
            std::thread::sleep(Duration::from_secs(4));
            cluster.thaw(leader);
        }
        consumer_leader(&cluster, &transfer, "mix");
    }

    let n_good = ROUNDS * GOOD_PER_ROUND;
    // An empty work-queue stream means every record was acknowledged or terminated: a lost
    // `+TERM` would leave its record there until it is redelivered and terminated again.
    let drained = wait_until(Duration::from_secs(240), || {
        influx.count("fo", "mix") == n_good && transfer.stream_state("mix").0 == 0
    });
    assert!(
        drained,
        "stored {} of {n_good}, waiting {}:\n{}",
        influx.count("fo", "mix"),
        transfer.stream_state("mix").0,
        log(&collectors)
    );
    let counts = dead_letter_counts(&transfer);
    for payload in &poison {
        assert_eq!(
            counts.get(payload),
            Some(&1),
            "{payload} should be dead-lettered exactly once: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<usize>(), poison.len(), "{counts:?}");
    let window = transfer.stream_info("fo:dlq")["config"]["duplicate_window"].as_u64();
    assert_eq!(window, Some(200_000_000_000), "duplicate window");
    eprintln!(
        "failover: {ROUNDS} faults, {n_good} good records stored once, {} poison records dead-lettered once each",
        poison.len()
    );
    for collector in &mut collectors {
        collector.stop_cleanly(Duration::from_secs(30));
    }
}

/// Waits up to `secs` until the `n` records of measurement `m` are in database `db` and its
/// stream is empty, then until `/readyz` answers 200, then stops the collector cleanly.
fn assert_stores_all_then_ready(
    collector: &mut Collector,
    influx: &Influx,
    transfer: &Transfer,
    db: &str,
    n: usize,
    port: u16,
    secs: u64,
) {
    let stored = wait_until(Duration::from_secs(secs), || {
        influx.count(db, "m") == n && transfer.stream_state("m").0 == 0
    });
    assert!(
        stored,
        "stored {} of {n}:\n{}",
        influx.count(db, "m"),
        collector.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || readyz(port) == 200),
        "readyz {}: {}",
        readyz(port),
        collector.log()
    );
    collector.stop_cleanly(Duration::from_secs(30));
}

/// `/readyz` of a collector listening on `port`: its status, 0 when it does not answer.
fn readyz(port: u16) -> u16 {
    http_get(&format!("http://127.0.0.1:{port}/readyz"), &[]).map_or(0, |r| r.status)
}

/// Waits until `collector` says it is waiting for NATS, then checks that it keeps running,
/// serves `/readyz` as not ready, and logged the wait once.
fn assert_waiting(collector: &mut Collector, port: u16) {
    collector.assert_log("waiting for nats", Duration::from_secs(60));
    assert!(collector.is_running(), "{}", collector.log());
    assert!(
        wait_until(Duration::from_secs(10), || readyz(port) == 503),
        "readyz {}: {}",
        readyz(port),
        collector.log()
    );
    assert!(collector.is_running(), "{}", collector.log());
}

/// SIGTERM, then exit code 0.
#[test]
fn a_collector_started_while_the_cluster_has_no_leader_waits_then_stores_everything() {
    const N: usize = 300;
    let (mut cluster, influx, transfer) = util::start_cluster_servers(3, "el");
    transfer.set("m", "");
    transfer.publish_many("m", &sample_payloads(N));
    // Two of three nodes down: the one left has no quorum, so no leader answers anything.
    cluster.kill9(1);
    cluster.kill9(2);
    let port = free_port();
    let mut collector = Collector::start(&v1_config(
        "el",
        &cluster.urls(),
        &influx,
        &format!("http:\n  listen: 127.0.0.1:{port}\n"),
    ));
    assert_waiting(&mut collector, port);
    std::thread::sleep(Duration::from_secs(3));
    assert!(collector.is_running(), "{}", collector.log());
    assert_eq!(influx.count("el", "m"), 0);
    cluster.restart(1);
    cluster.restart(2);
    assert_stores_all_then_ready(&mut collector, &influx, &transfer, "el", N, port, 120);
}

#[test]
fn a_collector_started_before_its_nats_server_waits_for_it() {
    const N: usize = 200;
    let influx = Influx::start();
    influx.create_database("late");
    let nats_port = free_port();
    let port = free_port();
    let mut collector = Collector::start(&v1_config(
        "late",
        &[format!("nats://127.0.0.1:{nats_port}")],
        &influx,
        &format!("http:\n  listen: 127.0.0.1:{port}\n"),
    ));
    assert_waiting(&mut collector, port);
    let log = collector.log();
    assert!(
        log.contains(&format!("127.0.0.1:{nats_port}")),
        "the wait names the server: {log}"
    );
    let nats = NatsServer::start_on_port(nats_port);
    let transfer = Transfer::new(nats.connect(), "late");
    // The stream first, so the collector never has to create it.
    transfer.add_stream("m", "");
    transfer.set("m", "");
    transfer.publish_many("m", &sample_payloads(N));
    assert_stores_all_then_ready(&mut collector, &influx, &transfer, "late", N, port, 60);
}

/// The configured replicas of `stream`, once it exists.
fn replicas(transfer: &Transfer, stream: &str) -> Option<u64> {
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = transfer
            .js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")
            .ok()
            .and_then(|info| info["config"]["num_replicas"].as_u64());
        found.is_some()
    });
    found
}

/// Starts a collector for the namespace of `transfer` with `nats.replicas` set to
/// `configured` (unset when `None`), lets it create the bucket, the dead-letter stream and
/// (for a key put without its stream) measurement `m`'s stream, checks that it stores
/// records, and returns the replicas of those three streams.
fn created_replicas(
    hosts: &[String],
    transfer: &Transfer,
    influx: &Influx,
    configured: Option<u32>,
) -> [Option<u64>; 3] {
    let namespace = transfer.namespace().to_string();
    influx.create_database(&namespace);
    let replicas_line = configured.map_or(String::new(), |n| format!("  replicas: {n}\n"));
    let config = util::config(&hosts.join(", "), &influx.url())
        .namespace(&namespace)
        .nats(&replicas_line)
        .yaml();
    let mut collector = Collector::start(&config);
    collector.assert_log("streams the collector creates get", Duration::from_secs(60));
    // The key alone, as a Transfer client that left the stream to the collector.
    transfer.put_raw("m", br#"{"measurement":"m","description":""}"#);
    // Asked again until it answers: on a loaded machine the cluster may not answer in time.
    collector.assert_within(Duration::from_secs(60), || {
        transfer.stream_found("m").unwrap_or(false)
    });
    transfer.publish_many("m", &sample_payloads(20));
    collector.assert_within(Duration::from_secs(60), || {
        influx.count(&namespace, "m") == 20
    });
    collector.stop_cleanly(Duration::from_secs(30));
    [
        replicas(transfer, &format!("KV_{namespace}_logs")),
        replicas(transfer, &format!("{namespace}:dlq")),
        replicas(transfer, &format!("{namespace}:logs:m")),
    ]
}

#[test]
fn streams_the_collector_creates_get_the_configured_replicas_on_a_cluster() {
    let cluster = NatsCluster::start(3);
    let influx = Influx::start();
    let hosts = cluster.urls();
    // Unset, on a cluster of 3 with no bucket yet: 3.
    let auto = Transfer::new(cluster.connect(), "auto");
    assert_eq!(created_replicas(&hosts, &auto, &influx, None), [Some(3); 3]);
    // Set: exactly that.
    let two = Transfer::new(cluster.connect(), "two");
    assert_eq!(
        created_replicas(&hosts, &two, &influx, Some(2)),
        [Some(2); 3]
    );
    // Unset with a bucket the Transfer client made R1: everything follows the bucket.
    let follow = Transfer::new(cluster.connect(), "follow");
    follow.ensure_bucket();
    assert_eq!(
        created_replicas(&hosts, &follow, &influx, None),
        [Some(1); 3]
    );

    // `collector check` names the streams of the namespace replicated otherwise.
    auto.with_replicas(1).add_stream("old", "");
    let config = util::config(&hosts.join(", "), &influx.url())
        .namespace("auto")
        .yaml();
    let check = run_command(
        &config,
        0o600,
        &["check"],
        &[],
        b"",
        Duration::from_secs(60),
    );
    assert!(
        check.stdout.contains(
            "⚠ nats: replicas 3 (from the configuration bucket's replicas), but 1 stream(s)"
        ) && check.stdout.contains("auto:logs:old (1)")
            && !check.stdout.contains("auto:dlq ("),
        "{}",
        check.all()
    );
}

#[test]
fn streams_the_collector_creates_get_the_configured_replicas_on_a_single_server() {
    let nats = NatsServer::start();
    let influx = Influx::start();
    let hosts = [nats.url()];
    let auto = Transfer::new(nats.connect(), "solo");
    assert_eq!(created_replicas(&hosts, &auto, &influx, None), [Some(1); 3]);
    let one = Transfer::new(nats.connect(), "one");
    assert_eq!(
        created_replicas(&hosts, &one, &influx, Some(1)),
        [Some(1); 3]
    );
    // More replicas than a lone server can hold: no wait mends that; one line, exit 1.
    let config = util::config(&nats.url(), &influx.url())
        .namespace("three")
        .nats("  replicas: 3\n")
        .yaml();
    let run = run_command(&config, 0o600, &[], &[], b"", Duration::from_secs(60));
    assert_eq!(run.code(), 1, "{}", run.all());
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.all());
    assert!(run.stderr.contains("non-clustered"), "{}", run.all());
}
