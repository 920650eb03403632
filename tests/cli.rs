//! The admin commands end to end, as a user runs them: the real binary against a real
//! nats-server and a real influxd 1.6.7, checked through the servers themselves (the KV
//! bucket, the streams, the database), error paths included.

mod util;

use std::time::Duration;

use collector::config::Config;
use collector::jetstream::{JetStream, Outgoing};
use serde_json::{json, Value};
use util::{
    run_command, run_to_exit, wait_until, Collector, DatabaseServer, Influx, NatsServer, Run,
    Transfer,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `collector ARGS... --config <file>` with `stdin` as its standard input.
fn run(config_yaml: &str, args: &[&str], stdin: &[u8]) -> Run {
    run_command(config_yaml, 0o600, args, &[], stdin, TIMEOUT)
}

/// Like [`run`] with nothing on stdin.
fn cli(config_yaml: &str, args: &[&str]) -> Run {
    run(config_yaml, args, b"")
}

/// A v1 configuration; `extra` lines go under `influx:`.
fn config(namespace: &str, nats_url: &str, influx_url: &str, extra: &str) -> String {
    util::config(nats_url, influx_url)
        .namespace(namespace)
        .influx(extra)
        .yaml()
}

/// A configuration for commands that never reach InfluxDB.
fn nats_only(nats: &NatsServer) -> String {
    config("beta", &nats.url(), "http://127.0.0.1:9", "")
}

/// `STREAM.MSG.GET` through the harness: `(headers, data)`, or `None` when there is no such
/// message.
fn stored(transfer: &Transfer, stream: &str, request: Value) -> Option<(String, Vec<u8>)> {
    match transfer.get_message(stream, &request) {
        Ok(message) => Some((message.headers, message.data)),
        Err(e) if e.err_code == 10037 => None,
        Err(e) => panic!("$JS.API.STREAM.MSG.GET.{stream}: {e}"),
    }
}

/// The value of `key` in the bucket `beta_logs`, `None` when absent or deleted.
fn kv_value(transfer: &Transfer, key: &str) -> Option<Value> {
    let last = json!({ "last_by_subj": format!("$KV.beta_logs.{key}") });
    let (headers, data) = stored(transfer, "KV_beta_logs", last)?;
    // The `nats` crate writes `Name:value`, Go clients `Name: value`.
    let deleted = headers.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(name, value)| name == "KV-Operation" && value.trim() == "DEL")
    });
    if deleted {
        return None;
    }
    Some(serde_json::from_slice(&data).expect("a JSON value"))
}

fn stored_payload(transfer: &Transfer, stream: &str, seq: u64) -> Vec<u8> {
    stored(transfer, stream, json!({ "seq": seq }))
        .unwrap_or_else(|| panic!("no message {seq} in {stream}"))
        .1
}

#[test]
fn usage_errors_exit_2_with_their_usage_and_help_exits_0() {
    let refused: &[(&[&str], &str, &str)] = &[
        (
            &["bogus"],
            "unknown command `bogus`",
            "usage: collector [-c PATH]",
        ),
        (
            &["streams"],
            "which command",
            "usage: collector streams (list",
        ),
        (
            &["streams", "set"],
            "MEASUREMENT is missing",
            "usage: collector streams set",
        ),
        (
            &["streams", "set", "a.b"],
            "not a measurement name",
            "usage: collector streams set",
        ),
        (
            &["streams", "remove", "x", "--json"],
            "`--json` is not an option",
            "usage: collector streams remove",
        ),
        (
            &["streams", "list", "--config"],
            "`--config` needs a value",
            "usage: collector streams list",
        ),
        (
            &["publish", "m", "--tag", "h=a"],
            "needs at least one --field",
            "usage: collector publish",
        ),
        (
            &["publish", "m", "--field", "n"],
            "is not KEY=VALUE",
            "usage: collector publish",
        ),
        (
            &["publish", "m", "--field", "n=1", "--time", "noon"],
            "--time",
            "usage: collector publish",
        ),
        (
            &["check", "now"],
            "unexpected argument `now`",
            "usage: collector check",
        ),
        (&["dlq"], "which command", "usage: collector dlq (list"),
        (
            &["dlq", "list", "-m", "a b"],
            "not a measurement name",
            "usage: collector dlq list",
        ),
        (
            &["dlq", "replay", "--yes"],
            "`--yes` is not an option",
            "usage: collector dlq replay",
        ),
    ];
    for (args, problem, usage) in refused {
        let (status, stdout, stderr) = run_to_exit(args, None, TIMEOUT);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(problem), "{args:?}: {stderr}");
        assert!(stderr.contains(usage), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    let helps: &[(&[&str], &str)] = &[
        (&["--help"], "usage: collector [-c PATH] [COMMAND]"),
        (&["run", "--help"], "usage: collector run"),
        (&["streams", "-h"], "usage: collector streams (list"),
        (
            &["streams", "list", "--help"],
            "usage: collector streams list",
        ),
        (
            &["streams", "set", "--help"],
            "usage: collector streams set",
        ),
        (
            &["streams", "remove", "--help"],
            "usage: collector streams remove",
        ),
        (&["publish", "--help"], "usage: collector publish"),
        (&["check", "--help"], "usage: collector check"),
        (&["dlq", "--help"], "usage: collector dlq (list"),
        (&["dlq", "list", "--help"], "usage: collector dlq list"),
        (&["dlq", "replay", "--help"], "usage: collector dlq replay"),
        (&["help", "publish"], "usage: collector publish"),
    ];
    for (args, usage) in helps {
        let (status, stdout, stderr) = run_to_exit(args, None, TIMEOUT);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stdout.starts_with(usage), "{args:?}: {stdout}");
        assert!(stdout.contains("-c, --config PATH"), "{args:?}: {stdout}");
    }

    // A command that needs the configuration says which file it could not read.
    let (status, _, stderr) = run_to_exit(&["streams", "list"], None, TIMEOUT);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read config file"), "{stderr}");
    let bad = cli("namespace: a.b\n", &["streams", "list"]).expect(2);
    assert!(
        bad.stderr.contains("config key `namespace`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn streams_set_list_and_remove_like_the_transfer_client() {
    let nats = NatsServer::start();
    let yaml = nats_only(&nats);
    let transfer = Transfer::new(nats.connect(), "beta");

    let empty = cli(&yaml, &["streams", "list", "--json"]).expect(0);
    assert_eq!(empty.json(), json!([]));

    let set = cli(
        &yaml,
        &["streams", "set", "access", "--description", "web logs"],
    )
    .expect(0);
    assert!(set.stdout.contains("key added"), "{}", set.stdout);
    assert!(
        set.stdout.contains("stream beta:logs:access created"),
        "{}",
        set.stdout
    );
    assert_eq!(
        kv_value(&transfer, "access"),
        Some(json!({"measurement": "access", "description": "web logs"}))
    );
    let info = transfer.stream_info("beta:logs:access");
    assert_eq!(info["config"]["subjects"], json!(["beta.logs.access"]));
    assert_eq!(info["config"]["retention"], "workqueue");
    assert_eq!(info["config"]["description"], "web logs");

    // Idempotent: nothing written the second time, not even the KV entry (collectors would
    // read the bucket again for nothing). Without --description the description stays.
    let revision = transfer.stream_info("KV_beta_logs")["state"]["last_seq"].clone();
    let again = cli(&yaml, &["streams", "set", "access"]).expect(0);
    assert!(again.stdout.contains("key unchanged"), "{}", again.stdout);
    assert!(
        again.stdout.contains("stream beta:logs:access unchanged"),
        "{}",
        again.stdout
    );
    assert_eq!(
        transfer.stream_info("KV_beta_logs")["state"]["last_seq"],
        revision
    );

    // A consumer as the collector creates it, records waiting, an entry without a stream and
    // a broken entry, as other clients may leave them.
    let pull = Config::parse(&yaml, &|_| None).expect("config").pull;
    let js = JetStream::new(nats.connect());
    js.ensure_consumer("beta", "access", &pull)
        .expect("consumer");
    transfer.publish_many("access", &[br#"{"fields":{"n":1}}"#; 3]);
    transfer.put_raw(
        "idle",
        br#"{"measurement":"idle","description":"no stream yet"}"#,
    );
    transfer.put_raw("broken", b"not json");

    let list = cli(&yaml, &["streams", "list", "--json"]).expect(0);
    let items = list.json();
    let by_name = |name: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["measurement"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {items}"))
    };
    assert_eq!(items.as_array().unwrap().len(), 3, "{items}");
    // The age of the oldest waiting record: the records were published moments ago (the
    // clock is read, so only its range is checked), then left out of the exact comparison.
    let mut access = by_name("access");
    let age = access["stream"]["oldest_age_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("no oldest_age_seconds in {access}"));
    assert!(age < 600, "{access}");
    access["stream"]
        .as_object_mut()
        .unwrap()
        .remove("oldest_age_seconds");
    assert_eq!(
        access,
        json!({
            "measurement": "access",
            "description": "web logs",
            "stream": {"name": "beta:logs:access", "messages": 3},
            "consumer": {"name": "collector", "pending": 3, "ack_pending": 0, "redelivered": 0},
        })
    );
    assert_eq!(
        by_name("idle"),
        json!({"measurement": "idle", "description": "no stream yet", "stream": null, "consumer": null})
    );
    assert!(
        by_name("broken")["problem"]
            .as_str()
            .unwrap()
            .contains("not a JSON object"),
        "{items}"
    );

    let table = cli(&yaml, &["streams", "list"]).expect(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    assert!(
        lines[0].starts_with("MEASUREMENT  DESCRIPTION"),
        "{}",
        table.stdout
    );
    let row = |name: &str| {
        let line = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{}", table.stdout));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    let access = row("access");
    assert_eq!(access[..6], ["access", "web logs", "3", "3", "0", "0"]);
    assert!(
        access.len() == 7 && access[6].ends_with('s'),
        "OLDEST is an age: {access:?}"
    );
    assert_eq!(
        row("idle"),
        ["idle", "no stream yet", "-", "-", "-", "-", "-"]
    );
    // The columns line up: every line has its MESSAGES column ending at the same place.
    let end = lines[0].find("MESSAGES").unwrap() + "MESSAGES".len();
    for line in &lines[1..] {
        let last = line.chars().nth(end - 1).unwrap_or(' ');
        assert!(last == '-' || last.is_ascii_digit(), "{}", table.stdout);
    }

    // A new description updates the key and the stream, records untouched.
    let changed = cli(&yaml, &["streams", "set", "access", "-d", "access log"]).expect(0);
    assert!(changed.stdout.contains("key updated"), "{}", changed.stdout);
    assert!(
        changed.stdout.contains("description updated"),
        "{}",
        changed.stdout
    );
    assert_eq!(
        transfer.stream_info("beta:logs:access")["config"]["description"],
        "access log"
    );
    assert_eq!(transfer.stream_state("access").0, 3);

    // Records wait: refused, nothing removed.
    let refused = cli(&yaml, &["streams", "remove", "access"]).expect(1);
    assert!(
        refused
            .stderr
            .contains("3 record(s) are waiting in stream beta:logs:access"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(transfer.stream_exists("access"));
    assert!(kv_value(&transfer, "access").is_some());

    let removed = cli(&yaml, &["streams", "remove", "access", "--yes"]).expect(0);
    assert!(
        removed.stdout.contains("deleted with 3 record(s)"),
        "{}",
        removed.stdout
    );
    assert!(!transfer.stream_exists("access"));
    assert_eq!(kv_value(&transfer, "access"), None);

    // An entry without a stream goes; nothing at all is a mistake worth an exit 1.
    cli(&yaml, &["streams", "remove", "idle"]).expect(0);
    assert_eq!(kv_value(&transfer, "idle"), None);
    let nothing = cli(&yaml, &["streams", "remove", "access"]).expect(1);
    assert!(
        nothing.stderr.contains("nothing to remove"),
        "{}",
        nothing.stderr
    );

    let left = cli(&yaml, &["streams", "list", "--json"]).expect(0).json();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
}

#[test]
fn publish_types_fields_reads_stdin_and_the_collector_writes_them() {
    let nats = NatsServer::start();
    let influx = Influx::start();
    influx.create_database("beta");
    let yaml = config("beta", &nats.url(), &influx.url(), "");
    let transfer = Transfer::new(nats.connect(), "beta");

    // No stream yet: refused, with the command that fixes it.
    let missing = cli(&yaml, &["publish", "access", "--field", "n=1"]).expect(1);
    assert!(
        missing.stderr.contains("collector streams set access"),
        "{}",
        missing.stderr
    );
    transfer.set("access", "access log");

    let one = cli(
        &yaml,
        &[
            "publish",
            "access",
            "--tag",
            "host=web-1",
            "--tag",
            "region=eu west",
            "--field",
            "n=12",
            "--field",
            "x=1.5",
            "--field",
            "e=1e3",
            "--field",
            "whole=2.0",
            "--field",
            "ok=true",
            "--field",
            "msg=hello world",
            "--field",
            "code=\"12\"",
            "--time",
            "2022-08-01T10:00:00.123456789+08:00",
        ],
    )
    .expect(0);
    assert!(
        one.stdout
            .contains("published 1 record(s) to beta.logs.access"),
        "{}",
        one.stdout
    );
    let payload: Value =
        serde_json::from_slice(&stored_payload(&transfer, "beta:logs:access", 1)).unwrap();
    assert_eq!(
        payload,
        json!({
            "tags": {"host": "web-1", "region": "eu west"},
            "fields": {"n": 12, "x": 1.5, "e": 1000.0, "whole": 2.0, "ok": true,
                       "msg": "hello world", "code": "12"},
            "time": "2022-08-01T10:00:00.123456789+08:00",
        })
    );

    // 1000 records from stdin, pipelined; a bad line anywhere publishes none.
    let mut lines = String::new();
    for i in 0..1000 {
        lines.push_str(&format!(
            "{{\"tags\":{{\"host\":\"h{}\"}},\"fields\":{{\"i\":{i}}},\"time\":\"2022-08-01T00:00:{:02}.{:09}Z\"}}\n",
            i % 3,
            i / 100,
            i
        ));
        if i == 500 {
            lines.push('\n'); // blank lines are skipped
        }
    }
    let many = run(&yaml, &["publish", "access"], lines.as_bytes()).expect(0);
    assert!(
        many.stdout.contains("published 1000 record(s)"),
        "{}",
        many.stdout
    );
    assert_eq!(transfer.stream_state("access").0, 1001);
    assert_eq!(
        stored_payload(&transfer, "beta:logs:access", 1001),
        lines.lines().last().unwrap().as_bytes()
    );

    let bad = run(
        &yaml,
        &["publish", "access"],
        b"{\"fields\":{\"n\":1}}\n{\"fields\":{}}\n[1,2]\n",
    )
    .expect(1);
    assert!(
        bad.stderr.contains("line 3: an array, not a JSON object"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("nothing was published"),
        "{}",
        bad.stderr
    );
    let bad = run(&yaml, &["publish", "access"], b"{\"fields\":\n").expect(1);
    assert!(bad.stderr.contains("line 1: not JSON"), "{}", bad.stderr);
    assert_eq!(transfer.stream_state("access").0, 1001);

    // A stream without a bucket entry takes the records, with a warning: no collector
    // would pull them.
    transfer.add_stream("orphan", "");
    let orphan = cli(&yaml, &["publish", "orphan", "--field", "n=1"]).expect(0);
    assert!(orphan.stderr.contains("warning"), "{}", orphan.stderr);
    assert_eq!(transfer.stream_state("orphan").0, 1);

    // The collector writes them with the types the command gave.
    let mut collector = Collector::start(&yaml);
    assert!(
        wait_until(TIMEOUT, || influx.count("beta", "access") == 1001),
        "not drained ({} points); collector log:\n{}",
        influx.count("beta", "access"),
        collector.log()
    );
    let types = influx.field_types("beta", "access");
    for (field, kind) in [
        ("n", "integer"),
        ("x", "float"),
        ("e", "float"),
        ("whole", "float"),
        ("ok", "boolean"),
        ("msg", "string"),
        ("code", "string"),
        ("i", "integer"),
    ] {
        assert_eq!(
            types.get(field).map(String::as_str),
            Some(kind),
            "{field}: {types:?}"
        );
    }
    let points = influx.points("beta", "access");
    let first = points
        .iter()
        .find(|p| p.get("n").is_some_and(|n| !n.is_null()))
        .expect("the --field record");
    // 10:00:00.123456789+08:00 is 02:00:00.123456789Z.
    assert_eq!(first["time"], json!(1_659_319_200_123_456_789_i64));
    assert_eq!(first["region"], "eu west");
    collector.terminate();
    collector.wait_timeout(Duration::from_secs(20));
}

#[test]
fn check_passes_on_good_servers_and_says_what_to_fix_otherwise() {
    let mut nats = NatsServer::start();
    let mut influx = Influx::start_with_auth("admin", "s3cret-pw");
    influx.create_database("beta");
    let transfer = Transfer::new(nats.connect(), "beta");
    transfer.set("access", "");
    let good = config(
        "beta",
        &nats.url(),
        &influx.url(),
        "  username: admin\n  password: s3cret-pw\n",
    );

    let ok = cli(&good, &["check"]).expect(0);
    let lines: Vec<&str> = ok.stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with('✔')).count(),
        8,
        "{}",
        ok.stdout
    );
    assert!(!ok.stdout.contains('✘'), "{}", ok.stdout);
    for needle in [
        "nats: connected to",
        "JetStream enabled",
        "bucket beta_logs exists (1 measurements)",
        "nats: replicas 1 (from the configuration bucket's replicas), as every one of the namespace's 2 stream(s)",
        "InfluxDB 1.6.7",
        "database `beta` exists",
        "write permission on database `beta`",
        "all checks passed",
    ] {
        assert!(ok.stdout.contains(needle), "{needle}: {}", ok.stdout);
    }
    // The probe wrote nothing.
    assert!(influx.query("beta", "SHOW MEASUREMENTS")["results"][0]["series"].is_null());

    // A wrong database: both InfluxDB checks fail and say how to fix it.
    let wrong_db = good.replace("api: v1\n", "api: v1\n  database: nope\n");
    let failed = cli(&wrong_db, &["check"]).expect(1);
    assert!(
        failed
            .stdout
            .contains("✘ influxdb: database `nope` does not exist"),
        "{}",
        failed.stdout
    );
    assert!(
        failed
            .stdout
            .contains("fix: create it (CREATE DATABASE \"nope\")"),
        "{}",
        failed.stdout
    );
    assert!(
        failed.stdout.contains("2 check(s) failed"),
        "{}",
        failed.stdout
    );

    // A wrong password: refused, and no password is ever printed.
    let wrong_password = good.replace("s3cret-pw", "not-it-either");
    let refused = cli(&wrong_password, &["check"]).expect(1);
    assert!(
        refused.stdout.contains("authorization failed"),
        "{}",
        refused.stdout
    );
    assert!(
        refused
            .stdout
            .contains("fix: check influx.username and influx.password"),
        "{}",
        refused.stdout
    );
    for run in [&ok, &failed, &refused] {
        assert!(!run.stdout.contains("s3cret-pw") && !run.stderr.contains("s3cret-pw"));
        assert!(!run.stdout.contains("not-it-either") && !run.stderr.contains("not-it-either"));
    }

    // No bucket for this namespace.
    let other = good.replace("namespace: beta", "namespace: gamma");
    let no_bucket = cli(&other, &["check"]).expect(1);
    assert!(
        no_bucket
            .stdout
            .contains("✘ nats: bucket gamma_logs does not exist"),
        "{}",
        no_bucket.stdout
    );
    assert!(
        no_bucket
            .stdout
            .contains("collector streams set MEASUREMENT"),
        "{}",
        no_bucket.stdout
    );

    // InfluxDB stopped: one failure for it (the later checks would only repeat it).
    influx.stop();
    let down = cli(&good, &["check"]).expect(1);
    let crosses: Vec<&str> = down.stdout.lines().filter(|l| l.starts_with('✘')).collect();
    assert_eq!(crosses.len(), 1, "{}", down.stdout);
    assert!(
        crosses[0].contains("cannot reach InfluxDB"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains("fix: start InfluxDB"),
        "{}",
        down.stdout
    );

    // NATS stopped too.
    nats.kill9();
    let both = cli(&good, &["check"]).expect(1);
    assert!(
        both.stdout.contains("✘ nats: connect to"),
        "{}",
        both.stdout
    );
    assert!(
        both.stdout.contains("fix: start nats-server"),
        "{}",
        both.stdout
    );

    // A bad configuration is exit 2, with the key named.
    let bad = cli(&good.replace("api: v1", "api: v4"), &["check"]).expect(2);
    assert!(
        bad.stdout.contains("✘ config: config key `influx.api`"),
        "{}",
        bad.stdout
    );
}

/// A dead letter as the collector publishes it: the payload unchanged, the reason and its
/// origin in headers, acknowledged by the dead-letter stream.
fn dead_letter(measurement: &str, origin: &str, seq: u64, payload: &[u8]) -> Outgoing {
    let headers = [
        ("Collector-Error", "fields: no field".to_string()),
        ("Collector-Stream", format!("beta:logs:{measurement}")),
        ("Collector-Sequence", seq.to_string()),
        ("Collector-Subject", origin.to_string()),
    ];
    Outgoing {
        subject: format!("beta.dlq.{measurement}"),
        payload: payload.to_vec(),
        // As the collector names a dead letter: its stream, sequence and stream timestamp.
        id: format!("beta:logs:{measurement}:{seq}:1700000000000000000"),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[test]
fn dlq_list_and_replay() {
    let nats = NatsServer::start();
    let yaml = nats_only(&nats);
    let transfer = Transfer::new(nats.connect(), "beta");

    // No dead-letter stream yet: nothing to list or replay, and no failure.
    assert_eq!(
        cli(&yaml, &["dlq", "list", "--json"]).expect(0).json(),
        json!([])
    );
    let none = cli(&yaml, &["dlq", "replay"]).expect(0);
    assert!(none.stdout.contains("replayed 0"), "{}", none.stdout);

    let js = JetStream::new(nats.connect());
    js.ensure_dead_letter_stream("beta", Duration::from_secs(3600), Duration::from_secs(120))
        .expect("dlq stream");
    transfer.set("access", "");
    transfer.set("errors", "");
    let long = format!("{{\"fields\":{{}},\"pad\":\"{}\"}}", "x".repeat(200));
    let access: Vec<Vec<u8>> = vec![
        br#"{"fields":{}}"#.to_vec(),
        long.clone().into_bytes(),
        b"line one\nline two".to_vec(),
    ];
    let mut letters: Vec<Outgoing> = access
        .iter()
        .enumerate()
        .map(|(i, payload)| dead_letter("access", "beta.logs.access", 10 + i as u64, payload))
        .collect();
    letters.push(dead_letter(
        "errors",
        "beta.logs.errors",
        4,
        b"\xff\xfe not utf-8",
    ));
    // Its stream is gone, and a forged origin outside the namespace's measurements.
    letters.push(dead_letter("gone", "beta.logs.gone", 1, b"{}"));
    letters.push(dead_letter("errors", "alpha.logs.errors", 5, b"{}"));
    let acks = js.publish_all(&letters).expect("published");
    assert_eq!(acks, (1..=6).map(Ok).collect::<Vec<_>>());

    let all = cli(&yaml, &["dlq", "list", "--json"]).expect(0).json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(
        all[1],
        json!({
            "sequence": 2,
            "measurement": "access",
            "time": all[1]["time"],
            "reason": "fields: no field",
            "stream": "beta:logs:access",
            "stream_sequence": 11,
            "subject": "beta.logs.access",
            "payload": long,
        })
    );
    assert_eq!(all[2]["payload"], "line one\nline two");
    assert_eq!(all[3]["payload_base64"], "//4gbm90IHV0Zi04");

    let only = cli(&yaml, &["dlq", "list", "-m", "errors", "--json"])
        .expect(0)
        .json();
    let sequences: Vec<u64> = only
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [4, 6]);

    let table = cli(&yaml, &["dlq", "list", "--measurement", "access"]).expect(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", table.stdout);
    assert!(
        lines[0].starts_with("SEQ  MEASUREMENT  REASON"),
        "{}",
        table.stdout
    );
    assert!(
        lines[2].ends_with('…') && lines[2].len() < 150,
        "{}",
        table.stdout
    );
    assert!(lines[3].contains("line one\\nline two"), "{}", table.stdout);

    // Replaying one measurement moves exactly its dead letters back, unchanged.
    let replay = cli(&yaml, &["dlq", "replay", "--measurement", "access"]).expect(0);
    assert!(
        replay.stdout.contains("replayed 3 dead letter(s)"),
        "{}",
        replay.stdout
    );
    assert_eq!(transfer.stream_state("access").0, 3);
    for (i, payload) in access.iter().enumerate() {
        assert_eq!(
            &stored_payload(&transfer, "beta:logs:access", 1 + i as u64),
            payload
        );
    }
    // A replayed record is a new record of its stream: it carries the replay's own
    // `Nats-Msg-Id`, never the dead letter's, nor its `Collector-*` headers.
    for i in 0..access.len() as u64 {
        let (headers, _) = stored(&transfer, "beta:logs:access", json!({ "seq": 1 + i }))
            .expect("a replayed record");
        assert!(
            headers.contains("collector-replay-beta:dlq-")
                && !headers.contains("beta:logs:access:1")
                && !headers.contains("Collector-"),
            "{headers}"
        );
    }
    let left = cli(&yaml, &["dlq", "list", "--json"]).expect(0).json();
    assert_eq!(left.as_array().unwrap().len(), 3, "{left}");

    // The rest: one goes back; the one whose stream is gone and the forged one stay.
    let rest = cli(&yaml, &["dlq", "replay"]).expect(1);
    assert!(
        rest.stdout.contains("replayed 1 dead letter(s)"),
        "{}",
        rest.stdout
    );
    assert!(
        rest.stderr
            .contains("no stream stores subject beta.logs.gone"),
        "{}",
        rest.stderr
    );
    assert!(
        rest.stderr
            .contains("`alpha.logs.errors` is not a measurement subject"),
        "{}",
        rest.stderr
    );
    assert!(
        rest.stderr.contains("2 dead letter(s) stay in beta:dlq"),
        "{}",
        rest.stderr
    );
    assert_eq!(
        stored_payload(&transfer, "beta:logs:errors", 1),
        b"\xff\xfe not utf-8"
    );
    let stayed: Vec<u64> = cli(&yaml, &["dlq", "list", "--json"])
        .expect(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(stayed, [5, 6]);
}
