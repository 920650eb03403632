//! Hostile records through the real pipeline into the real InfluxDB 1.6: every stored value
//! is compared with what was sent, and every record that cannot be stored is in the
//! dead-letter stream with its reason.

mod util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::{wait_until, Collector};

/// 2026-01-01T00:00:00Z in nanoseconds; record `i` is at this plus `i` seconds unless its
/// payload says otherwise.
const T0: i64 = 1_767_225_600_000_000_000;

fn at(i: i64) -> String {
    format!("2026-01-01T00:00:{i:02}Z")
}

/// A record that must be stored with exactly these tags and fields at this written time
/// (moved by its stream sequence, see [`point_time`]).
struct Stored {
    payload: Value,
    time_ns: i64,
    tags: Vec<(&'static str, &'static str)>,
    fields: Vec<(&'static str, Value)>,
}

/// Where a point with written time `time_ns` (the text `time`) and stream sequence `sequence`
/// is stored, by the rule stated on its own here: plus the sequence modulo the producer's unit
/// (10^(9 - fraction digits) ns), at most 10^6.
fn point_time(time_ns: i64, time: &str, sequence: u64) -> i64 {
    let n_digits = time.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    });
    let span = 10u64.pow(9 - n_digits as u32).min(1_000_000);
    time_ns + (sequence % span) as i64
}

#[test]
fn hostile_records_arrive_exactly_or_are_dead_lettered_with_a_reason() {
    let stored = vec![
        Stored {
            payload: json!({"fields": {"s_quote": "say \"hi\" to 'them'"}, "time": at(1)}),
            time_ns: T0 + 1_000_000_000,
            tags: vec![],
            fields: vec![("s_quote", json!("say \"hi\" to 'them'"))],
        },
        Stored {
            payload: json!({"fields": {"s_backslash": "C:\\logs\\x.txt and a trailing \\"}, "time": at(2)}),
            time_ns: T0 + 2_000_000_000,
            tags: vec![],
            fields: vec![("s_backslash", json!("C:\\logs\\x.txt and a trailing \\"))],
        },
        Stored {
            payload: json!({"tags": {"city": "東京"}, "fields": {"s_unicode": "🚀 émoji ok ✓"}, "time": at(3)}),
            time_ns: T0 + 3_000_000_000,
            tags: vec![("city", "東京")],
            fields: vec![("s_unicode", json!("🚀 émoji ok ✓"))],
        },
        Stored {
            payload: json!({"fields": {"s_lines": "line one\nline two\r\n\ttabbed"}, "time": at(4)}),
            time_ns: T0 + 4_000_000_000,
            tags: vec![],
            fields: vec![("s_lines", json!("line one\nline two\r\n\ttabbed"))],
        },
        Stored {
            payload: json!({"tags": {"my key": "a,b=c d"}, "fields": {"f k,=x": 1}, "time": at(5)}),
            time_ns: T0 + 5_000_000_000,
            tags: vec![("my key", "a,b=c d")],
            fields: vec![("f k,=x", json!(1))],
        },
        Stored {
            payload: json!({"fields": {"i_max": i64::MAX, "i_min": i64::MIN}, "time": at(6)}),
            time_ns: T0 + 6_000_000_000,
            tags: vec![],
            fields: vec![("i_max", json!(i64::MAX)), ("i_min", json!(i64::MIN))],
        },
        Stored {
            payload: serde_json::from_str(&format!(
                r#"{{"fields": {{"f_max": 1.7976931348623157e308, "f_tiny": 5e-324, "f_int": 1.0, "f_tenth": 0.1, "f_neg": -2.5e-8}}, "time": "{}"}}"#,
                at(7)
            ))
            .unwrap(),
            time_ns: T0 + 7_000_000_000,
            tags: vec![],
            fields: vec![
                ("f_max", json!(f64::MAX)),
                ("f_tiny", json!(5e-324)),
                ("f_int", json!(1.0)),
                ("f_tenth", json!(0.1)),
                ("f_neg", json!(-2.5e-8)),
            ],
        },
        Stored {
            payload: json!({"fields": {"s_nested": {"a": [1, 2.5, {"b": null}], "c": "d"}}, "time": at(8)}),
            time_ns: T0 + 8_000_000_000,
            tags: vec![],
            fields: vec![("s_nested", json!(r#"{"a":[1,2.5,{"b":null}],"c":"d"}"#))],
        },
        Stored {
            payload: json!({"tags": {"gone": null, "empty": "", "kept": "k"}, "fields": {"b_flag": true, "nothing": null}, "time": at(9)}),
            time_ns: T0 + 9_000_000_000,
            tags: vec![("kept", "k")],
            fields: vec![("b_flag", json!(true))],
        },
        Stored {
            payload: json!({"tags": {"num": 42, "yes": false}, "fields": {"b_flag": false}, "time": "2026-01-01T08:00:10.123456789+08:00"}),
            time_ns: T0 + 10_123_456_789,
            tags: vec![("num", "42"), ("yes", "false")],
            fields: vec![("b_flag", json!(false))],
        },
        Stored {
            payload: json!({"fields": {"s_empty": ""}, "time": "2025-12-31T18:30:11.5-05:30", "extra": "ignored"}),
            time_ns: T0 + 11_500_000_000,
            tags: vec![],
            fields: vec![("s_empty", json!(""))],
        },
    ];
    // Records that can never be stored, with the reason their dead-letter line must give.
    let refused: Vec<(Value, &str)> = vec![
        (
            json!({"tags": {"t": "ends with \\"}, "fields": {"v": 1}, "time": at(20)}),
            r#"tag "t": value has a backslash"#,
        ),
        (
            json!({"fields": {"u_big": 18_446_744_073_709_551_615u64}, "time": at(21)}),
            r#"field "u_big": integer 18446744073709551615 does not fit"#,
        ),
        (
            json!({"fields": {"bad\nkey": 1}, "time": at(22)}),
            r#"field key "bad\nkey": contains a line break"#,
        ),
        (
            json!({"tags": {"obj": {"a": 1}}, "fields": {"v": 1}, "time": at(23)}),
            r#"tag "obj": value is an object"#,
        ),
        (
            json!({"fields": {"v": 1}, "time": "2026-13-01T00:00:00Z"}),
            r#"time "2026-13-01T00:00:00Z" is not rfc 3339"#,
        ),
        (
            json!({"fields": {"time": 1}, "time": at(24)}),
            r#"field key "time""#,
        ),
    ];

    let (nats, influx, transfer) = util::start_servers("hx");
    transfer.set("m", "");
    let mut payloads: Vec<Vec<u8>> = stored
        .iter()
        .map(|s| s.payload.to_string().into_bytes())
        .collect();
    payloads.extend(refused.iter().map(|(p, _)| p.to_string().into_bytes()));
    transfer.publish_many("m", &payloads);
    // Each record's stream sequence, read back from the stream before anything drains it.
    let sequence_of: BTreeMap<Vec<u8>, u64> = (1..=payloads.len() as u64)
        .map(|seq| (transfer.stream_message("hx:logs:m", seq), seq))
        .collect();
    let config = util::config(&nats.url(), &influx.url())
        .namespace("hx")
        .yaml();
    let collector = Collector::start(&config);
    let drained = wait_until(Duration::from_secs(60), || {
        transfer.stream_state("m").0 == 0 && influx.count("hx", "m") >= stored.len()
    });
    assert!(drained, "{}", collector.log());

    // Every stored record: exactly its tags and fields, nothing else, at its time.
    let points = influx.points("hx", "m");
    assert_eq!(points.len(), stored.len(), "{points:#?}");
    let by_time: BTreeMap<i64, &serde_json::Map<String, Value>> = points
        .iter()
        .map(|p| (p["time"].as_i64().unwrap(), p))
        .collect();
    let types = influx.field_types("hx", "m");
    for record in &stored {
        let sequence = sequence_of[&record.payload.to_string().into_bytes()];
        let time_ns = point_time(
            record.time_ns,
            record.payload["time"].as_str().unwrap(),
            sequence,
        );
        let point = by_time
            .get(&time_ns)
            .unwrap_or_else(|| panic!("no point at {time_ns} for {}", record.payload));
        let mut expected: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &record.tags {
            expected.insert(k.to_string(), json!(v));
        }
        for (k, v) in &record.fields {
            expected.insert(k.to_string(), v.clone());
        }
        let got: BTreeMap<String, Value> = point
            .iter()
            .filter(|(k, _)| *k != "time")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{}",
            record.payload
        );
        for (key, want) in &expected {
            let have = &got[key];
            let same = match (want.as_f64(), have.as_f64()) {
                (Some(a), Some(b)) if want.is_f64() => a.to_bits() == b.to_bits(),
                _ => want == have,
            };
            assert!(
                same,
                "{key}: stored {have}, sent {want} ({})",
                record.payload
            );
        }
        for (key, value) in &record.fields {
            let want_type = match value {
                Value::Bool(_) => "boolean",
                Value::String(_) => "string",
                v if v.is_f64() => "float",
                _ => "integer",
            };
            assert_eq!(
                types.get(*key).map(String::as_str),
                Some(want_type),
                "type of {key}"
            );
        }
    }

    // Every refused record: in the dead-letter stream, unchanged, with its reason.
    let info = transfer.stream_info("hx:dlq");
    assert_eq!(
        info["state"]["messages"].as_u64(),
        Some(refused.len() as u64),
        "{}",
        collector.log()
    );
    let log = collector.log();
    for (payload, word) in &refused {
        let line = log
            .lines()
            .find(|l| l.contains("dead-lettered") && l.contains(word))
            .unwrap_or_else(|| {
                panic!("no dead-letter line mentioning {word:?} for {payload}:\n{log}")
            });
        assert!(line.contains("hx.logs.m"), "{line}");
    }
}

/// 200 records with distinct times, the 58th (index 57) carrying `marker` in a field: the
/// encoder's test hook (`record.rs` `test_hook`, debug builds) acts on it.
fn marked_payloads(marker: &str) -> Vec<Vec<u8>> {
    (0..200)
        .map(|i| {
            let message = if i == 57 { marker } else { "fine" };
            serde_json::to_vec(&json!({
                "tags": {"host": "a"},
                "fields": {"n": i, "message": message},
                "time": format!("2026-01-01T00:00:00.{i:09}Z"),
            }))
            .unwrap()
        })
        .collect()
}

/// A record that makes the collector panic while it is encoded (the encoder's test hook,
/// debug builds only: the marker in its payload) is caught at its boundary: dead-lettered
/// with `collector bug: panicked: …`, named in an error line, and the worker goes on with the
/// records before and after it; the process stays up.
#[test]
fn a_record_that_makes_the_encoder_panic_is_dead_lettered_and_the_rest_stored() {
    let (nats, influx, transfer) = util::start_servers("panics");
    transfer.set("m", "");
    let payloads = marked_payloads("__collector_test_panic__");
    transfer.publish_many("m", &payloads);
    let config = util::config(&nats.url(), &influx.url())
        .namespace("panics")
        .yaml();
    let mut collector = Collector::start(&config);
    collector.assert_within(Duration::from_secs(60), || {
        influx.count("panics", "m") == 199 && transfer.stream_state("m").0 == 0
    });
    let letters = transfer.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (_, reason, payload) = &letters[0];
    assert!(
        reason.starts_with("collector bug: panicked: test hook"),
        "{reason}"
    );
    assert_eq!(payload, &payloads[57], "dead-lettered unchanged");
    collector.assert_log(
        "the collector panicked encoding record",
        Duration::from_secs(5),
    );
    assert!(
        collector.is_running(),
        "one record must not end the process"
    );
}

/// A record that ends the process while it is encoded (the encoder's abort hook, debug builds
/// only: the marker in its payload) cannot be caught. Redelivered after each death, it becomes
/// a suspect past `pull.max_deliver` deliveries; each process that dies with its key written
/// in the suspects bucket counts one death, and at the third it is dead-lettered with a
/// reason that says so. Two collectors, restarted as they die, share the record: exactly
/// max_deliver (2) unmarked deaths and 3 marked ones, then every other record is stored and
/// the processes stay up.
#[test]
fn a_record_that_kills_the_process_is_dead_lettered_after_three_deaths() {
    let (nats, influx, transfer) = util::start_servers("aborts");
    transfer.set("m", "");
    let payloads = marked_payloads("__collector_test_abort__");
    transfer.publish_many("m", &payloads);
    let config = util::config(&nats.url(), &influx.url())
        .namespace("aborts")
        .extra("pull:\n  ack_wait: 5s\n  max_deliver: 2\n")
        .yaml();
    let mut collectors = [Collector::start(&config), Collector::start(&config)];
    let mut deaths = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        for collector in collectors.iter_mut() {
            if !collector.is_running() {
                deaths += 1;
                collector.restart();
            }
        }
        if influx.count("aborts", "m") == 199
            && transfer.stream_state("m").0 == 0
            && !transfer.dead_letters().is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after 180 s ({deaths} deaths):\n{}\n{}",
            collectors[0].log(),
            collectors[1].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let letters = transfer.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (_, reason, payload) = &letters[0];
    assert_eq!(
        reason,
        "collector bug: the process died handling this record 3 times"
    );
    assert_eq!(payload, &payloads[57], "dead-lettered unchanged");
    assert_eq!(
        deaths,
        5,
        "2 deliveries before it was a suspect, then 3 marked: {}\n{}",
        collectors[0].log(),
        collectors[1].log()
    );
    let logs = format!("{}{}", collectors[0].log(), collectors[1].log());
    assert_eq!(
        logs.matches("test hook: a record marked to abort the process")
            .count(),
        5,
        "every death was the record's: {logs}"
    );
    assert!(
        logs.contains("the process died handling this record 3 times; dead-lettering it"),
        "{logs}"
    );
    for collector in collectors.iter_mut() {
        assert!(collector.is_running(), "{}", collector.log());
        collector.stop_cleanly(Duration::from_secs(30));
    }
}
