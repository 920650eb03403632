//! Proves the test harness itself, without the collector: each server starts on
//! loopback, takes data and gives it back exactly, and survives the faults the
//! collector's tests will inflict on it.

mod util;

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use util::*;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().expect("an object").clone()
}

#[test]
fn transfer_sets_measurements_and_publishes_with_acknowledgements() {
    let nats = NatsServer::start();
    let transfer = Transfer::new(nats.connect(), "beta");
    transfer.set("access", "access log");
    transfer.set("access", "access log");

    let value: Value =
        serde_json::from_slice(&transfer.kv_get("access").expect("key set")).unwrap();
    assert_eq!(
        value,
        json!({"measurement": "access", "description": "access log"})
    );

    let info = transfer.stream_info("beta:logs:access");
    assert_eq!(info["config"]["subjects"], json!(["beta.logs.access"]));
    assert_eq!(info["config"]["retention"], "workqueue");
    assert_eq!(info["config"]["storage"], "file");

    let payloads = sample_payloads(2_000);
    let started = Instant::now();
    transfer.publish_many("access", &payloads);
    eprintln!("2000 acknowledged publishes in {:?}", started.elapsed());
    assert_eq!(transfer.stream_state("access"), (2_000, 0));

    assert_eq!(transfer.stream_message("beta:logs:access", 1), payloads[0]);
    assert_eq!(
        transfer.stream_message("beta:logs:access", 2_000),
        payloads[1_999]
    );

    transfer.publish("access", br#"{"fields":{"n":1}}"#);
    assert_eq!(transfer.stream_state("access"), (2_001, 0));

    transfer.set("access", "changed");
    let info = transfer.stream_info("beta:logs:access");
    assert_eq!(info["config"]["description"], "changed");
    assert_eq!(transfer.stream_state("access"), (2_001, 0));

    transfer.remove("access");
    assert!(!transfer.stream_exists("access"));
    assert_eq!(transfer.kv_get("access"), None);
}

#[test]
fn influx_gives_back_exactly_what_was_written() {
    let mut influx = Influx::start();
    influx.create_database("beta");
    let lines = "cpu,host=a,region=eu\\ west usage=1.5,count=3i,ok=true,msg=\"say \\\"hi\\\"\" 1659312000123456789\n\
                 cpu,host=b usage=2,count=-4i,ok=false,msg=\"x\" 1659312000123456790\n";
    let reply = influx.write("beta", lines);
    assert_eq!(reply.status, 204, "{}", reply.body);

    let expected = vec![
        object(
            json!({"time": 1659312000123456789_i64, "host": "a", "region": "eu west",
                      "usage": 1.5, "count": 3, "ok": true, "msg": "say \"hi\""}),
        ),
        // InfluxDB prints the float 2.0 as 2.
        object(json!({"time": 1659312000123456790_i64, "host": "b",
                      "usage": 2, "count": -4, "ok": false, "msg": "x"})),
    ];
    assert_eq!(influx.points("beta", "cpu"), expected);
    let types: BTreeMap<String, String> = [
        ("count", "integer"),
        ("msg", "string"),
        ("ok", "boolean"),
        ("usage", "float"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(influx.field_types("beta", "cpu"), types);
    assert_eq!(influx.points("beta", "nothing"), vec![]);
    assert_eq!(influx.points("no_such_db", "cpu"), vec![]);

    // The samples' independent line-protocol rendering round-trips, and the
    // checker notices a difference.
    let samples = samples(300);
    let lines: Vec<String> = samples.iter().map(|s| s.to_line("access")).collect();
    let reply = influx.write("beta", &lines.join("\n"));
    assert_eq!(reply.status, 204, "{}", reply.body);
    influx.check_samples("beta", "access", &samples).unwrap();
    let mut wrong = samples.clone();
    wrong[7].fields.insert("seq".to_string(), Field::Float(7.0));
    wrong[8].tags.remove("host");
    let problems = influx.check_samples("beta", "access", &wrong).unwrap_err();
    assert!(problems.contains("sample 7: field seq"), "{problems}");
    assert!(
        problems.contains("sample 8: unexpected tag host"),
        "{problems}"
    );
    assert!(influx
        .check_samples("beta", "access", &samples[..299])
        .is_err());

    influx.stop();
    influx.start_again();
    assert_eq!(influx.points("beta", "cpu"), expected);
    influx.check_samples("beta", "access", &samples).unwrap();
}

#[test]
fn influx_with_auth_refuses_anonymous_requests() {
    let influx = Influx::start_with_auth("admin", "s3cret");
    influx.create_database("beta");
    let anonymous = http_post(
        &format!("{}/write", influx.url()),
        &[("db", "beta")],
        &[],
        b"m v=1i 1",
    )
    .unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let wrong = http_post(
        &format!("{}/write", influx.url()),
        &[("db", "beta"), ("u", "admin"), ("p", "wrong")],
        &[],
        b"m v=1i 1",
    )
    .unwrap();
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(influx.write("beta", "m v=1i 1").status, 204);
    assert_eq!(
        influx.points("beta", "m"),
        vec![object(json!({"time": 1, "v": 1}))]
    );
}

#[test]
fn victoria_metrics_stores_v2_writes_as_measurement_field_metrics() {
    let vm = VictoriaMetrics::start();
    let reply = vm.write_v2(
        "org",
        "beta",
        "cpu,host=a,region=eu\\ west usage=1.5,count=3i,ok=true,msg=\"s\" 1659312000123456789\n\
         cpu,host=b usage=2 1659312001000000000\n",
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let names = ["cpu_count", "cpu_msg", "cpu_ok", "cpu_usage"];
    assert!(
        wait_until(Duration::from_secs(10), || vm.metric_names() == names),
        "metrics: {:?}",
        vm.metric_names()
    );
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let a = labels(&[("host", "a"), ("region", "eu west")]);
    // Milliseconds: the nanoseconds are truncated.
    assert_eq!(
        vm.samples("cpu_usage"),
        vec![
            (a.clone(), 1659312000123, 1.5),
            (labels(&[("host", "b")]), 1659312001000, 2.0)
        ]
    );
    assert_eq!(
        vm.samples("cpu_count"),
        vec![(a.clone(), 1659312000123, 3.0)]
    );
    assert_eq!(vm.samples("cpu_ok"), vec![(a.clone(), 1659312000123, 1.0)]);
    assert_eq!(vm.samples("cpu_msg"), vec![(a, 1659312000123, 0.0)]);
}

#[test]
fn nats_server_kill9_and_restart_keeps_the_stream() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    let transfer = Transfer::new(nats.connect(), "beta");
    transfer.set("access", "access log");
    let payloads = sample_payloads(600);
    transfer.publish_many("access", &payloads[..500]);
    assert_eq!(transfer.stream_state("access"), (500, 0));

    nats.kill9();
    assert!(!nats.is_running());
    nats.restart();
    assert_eq!(nats.port(), port);
    // The same connection reconnects and carries on.
    assert!(wait_until(Duration::from_secs(20), || {
        transfer.connection().rtt().is_ok()
    }));
    assert_eq!(transfer.stream_state("access"), (500, 0));
    transfer.publish_many("access", &payloads[500..]);
    assert_eq!(transfer.stream_state("access"), (600, 0));
}

#[test]
fn nats_cluster_keeps_an_r3_stream_when_its_leader_dies() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3);
    eprintln!("3-node cluster ready in {:?}", started.elapsed());
    assert_eq!(cluster.urls().len(), 3);
    let transfer = Transfer::new(cluster.connect(), "beta").with_replicas(3);
    transfer.set("access", "access log");
    let payloads = sample_payloads(600);
    transfer.publish_many("access", &payloads[..300]);
    assert_eq!(transfer.stream_state("access"), (300, 0));

    let info = transfer.stream_info("beta:logs:access");
    assert_eq!(info["config"]["num_replicas"], 3);
    let leader = info["cluster"]["leader"].as_str().expect("a stream leader");
    let dead = cluster.node_index(leader).expect("the leader is a node");
    cluster.kill9(dead);

    let started = Instant::now();
    transfer.publish_many("access", &payloads[300..]);
    eprintln!(
        "publishing resumed {:?} after the leader died",
        started.elapsed()
    );
    assert_eq!(transfer.stream_state("access"), (600, 0));
    let info = transfer.stream_info("beta:logs:access");
    assert_ne!(
        info["cluster"]["leader"].as_str(),
        Some(cluster.node_name(dead))
    );

    cluster.restart(dead);
    let caught_up = wait_until(Duration::from_secs(30), || {
        let info = transfer.stream_info("beta:logs:access");
        let replicas = info["cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        replicas.len() == 2 && replicas.iter().all(|r| r["current"] == true)
    });
    assert!(caught_up, "node {dead} did not catch up");
    assert_eq!(transfer.stream_state("access"), (600, 0));
}

#[test]
fn samples_are_fixed_distinct_and_typical() {
    assert_eq!(sample_payload(42), sample_payload(42));
    let all = samples(10_000);
    let mut times: Vec<i64> = all.iter().map(|s| s.time_ns).collect();
    times.dedup();
    assert_eq!(times.len(), 10_000, "times are distinct and increasing");
    assert_eq!(
        rfc3339(1_659_312_000_000_000_123, 0),
        "2022-08-01T00:00:00.000000123Z"
    );
    assert_eq!(
        rfc3339(1_659_312_000_000_000_123, 8 * 60),
        "2022-08-01T08:00:00.000000123+08:00"
    );
    assert_eq!(rfc3339(0, -330), "1969-12-31T18:30:00.000000000-05:30");
    assert_eq!(
        rfc3339(951_782_400_000_000_000, 0),
        "2000-02-29T00:00:00.000000000Z"
    );

    let s = &all[0];
    assert_eq!(s.payload["tags"]["zone"], "", "an empty tag to drop");
    assert!(!s.tags.contains_key("zone"));
    assert!(
        s.payload["fields"]["user"].is_null(),
        "a null field to omit"
    );
    assert!(!s.fields.contains_key("user"));
    assert_eq!(
        s.payload["fields"]["extra"],
        json!({"a": 0, "b": [true, "x"]})
    );
    assert_eq!(
        s.fields["extra"],
        Field::String(r#"{"a":0,"b":[true,"x"]}"#.to_string())
    );
    let text = String::from_utf8(s.bytes()).unwrap();
    assert!(
        text.contains(r#""ratio":0.0"#),
        "integral floats keep their fraction: {text}"
    );
    let types = |name: &str| {
        all.iter()
            .filter_map(|s| s.fields.get(name).map(Field::type_name))
            .collect::<std::collections::BTreeSet<_>>()
    };
    for (name, ty) in [
        ("seq", "integer"),
        ("latency_ms", "float"),
        ("ok", "boolean"),
    ] {
        assert_eq!(
            types(name).into_iter().collect::<Vec<_>>(),
            vec![ty],
            "{name}"
        );
    }
    assert!(all.iter().any(|s| s.tags["route"].contains(' ')));
    assert!(all.iter().any(|s| s.time.ends_with("-05:30")));
}

#[test]
fn the_collector_binary_runs_to_exit_under_the_harness() {
    // Whatever the service does with a configuration that is not YAML, it must
    // end by itself: the harness captures its status and output.
    let (status, _stdout, _stderr) =
        run_to_exit(&[], Some("namespace: [unclosed"), Duration::from_secs(30));
    assert!(status.code().is_some(), "exited by a signal: {status:?}");
}

/// The configuration builder puts each line in its section, in the order the tests expect.
#[test]
fn the_yaml_keeps_each_line_in_its_section() {
    let yaml = util::config("nats://a:1, nats://b:2", "http://db:8086")
        .namespace("ns")
        .nats("  replicas: 3\n")
        .influx("  gzip: false\n")
        .http_listen(9100)
        .extra("poll_interval: 500ms\n")
        .yaml();
    assert_eq!(
        yaml,
        "namespace: ns\nnats:\n  hosts: [nats://a:1, nats://b:2]\n  replicas: 3\ninflux:\n  \
         url: http://db:8086\n  api: v1\n  gzip: false\nhttp:\n  listen: 127.0.0.1:9100\n\
         poll_interval: 500ms\n"
    );
    // A file that counts on the default API has no `api` line at all.
    let yaml = util::config("nats://a:1", "http://db:8086")
        .without_api()
        .influx("  org: o\n")
        .yaml();
    assert_eq!(
        yaml,
        "namespace: beta\nnats:\n  hosts: [nats://a:1]\ninflux:\n  url: http://db:8086\n  org: o\n"
    );
}
