//! Point identity on real servers (nats-server, the collector binary, InfluxDB 1.6): distinct
//! records with the same tags and the same coarse `time` stay distinct points, each at its
//! written time plus its stream sequence modulo the span of the time's resolution, and a
//! record written again after a `kill -9` lands on the very same point.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use util::{wait_until, Collector, DatabaseServer, Influx, NatsServer, Transfer};

/// 2026-01-01T00:00:00Z in nanoseconds.
const T0: i64 = 1_767_225_600_000_000_000;

const N_RECORDS: usize = 10_000;

/// One measurement of the test: every record has these tags and this written time.
struct Case {
    measurement: &'static str,
    time: &'static str,
    time_ns: i64,
    /// `min(10^(9 - fraction digits), 10^6)`: the rule's span for `time`.
    span: u64,
}

/// 10,000 records at one whole second, and 10,000 at one millisecond written with a trailing
/// zero (`.120`, three digits).
const CASES: [Case; 2] = [
    Case {
        measurement: "seconds",
        time: "2026-01-01T00:00:00Z",
        time_ns: T0,
        span: 1_000_000,
    },
    Case {
        measurement: "millis",
        time: "2026-01-01T08:00:00.120+08:00",
        time_ns: T0 + 120_000_000,
        span: 1_000_000,
    },
];

/// Record `i` of a case: the same tags and time for all, distinct fields.
fn payload(case: &Case, i: usize) -> Vec<u8> {
    format!(
        r#"{{"tags":{{"app":"shop","host":"web 1"}},"fields":{{"i":{i},"msg":"record {i}, \"quoted\""}},"time":"{}"}}"#,
        case.time
    )
    .into_bytes()
}

fn config(namespace: &str, nats: &NatsServer, influx: &Influx, extra: &str) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

/// The stream sequence of every record still in the stream of `measurement`, by the record's
/// `i` field, read from JetStream itself (so the test does not rely on publish order).
fn sequences(transfer: &Transfer, measurement: &str, into: &mut BTreeMap<u64, u64>) {
    let stream = transfer.stream_name(measurement);
    let info = transfer.stream_info(&stream);
    let first = info["state"]["first_seq"].as_u64().unwrap();
    let last = info["state"]["last_seq"].as_u64().unwrap();
    for (seq, data) in transfer.stream_messages(&stream, first, last) {
        let record: Value = serde_json::from_slice(&data).unwrap();
        let i = record["fields"]["i"].as_u64().unwrap();
        assert!(into.insert(i, seq).is_none(), "record {i} stored twice");
    }
}

/// Points in `measurement`, counted by InfluxDB (cheaper than reading them all).
fn count(influx: &Influx, db: &str, measurement: &str) -> u64 {
    let answer = influx.query(db, &format!("SELECT COUNT(\"i\") FROM \"{measurement}\""));
    answer["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

/// Every point of the case is exactly one record: its tags, its fields, at its written time
/// plus its sequence modulo the span; 10,000 points for 10,000 records.
/// Whether every case's stream is empty and InfluxDB holds `N_RECORDS` points of it.
fn all_stored(transfer: &Transfer, influx: &Influx, db: &str) -> bool {
    CASES.iter().all(|case| {
        transfer.stream_state(case.measurement).0 == 0
            && count(influx, db, case.measurement) == N_RECORDS as u64
    })
}

fn check_points(influx: &Influx, db: &str, case: &Case, sequences: &BTreeMap<u64, u64>) {
    let points = influx.points(db, case.measurement);
    assert_eq!(points.len(), N_RECORDS, "{}", case.measurement);
    let types = influx.field_types(db, case.measurement);
    assert_eq!(types.get("i").map(String::as_str), Some("integer"));
    assert_eq!(types.get("msg").map(String::as_str), Some("string"));
    let mut seen = vec![false; N_RECORDS];
    for point in &points {
        let i = point["i"].as_u64().expect("field i") as usize;
        assert!(!seen[i], "{}: record {i} stored twice", case.measurement);
        seen[i] = true;
        let seq = sequences[&(i as u64)];
        let expected_time = case.time_ns + (seq % case.span) as i64;
        assert_eq!(
            point["time"].as_i64(),
            Some(expected_time),
            "{}: record {i} (sequence {seq})",
            case.measurement
        );
        assert_eq!(point["app"], "shop");
        assert_eq!(point["host"], "web 1");
        assert_eq!(point["msg"], format!("record {i}, \"quoted\""));
        assert_eq!(point.len(), 5, "{point:?}");
    }
}

#[test]
fn ten_thousand_records_of_one_second_or_one_millisecond_are_ten_thousand_points() {
    let (nats, influx, transfer) = util::start_servers("idn");
    let mut by_case = Vec::new();
    for case in &CASES {
        transfer.set(case.measurement, "");
        let payloads: Vec<Vec<u8>> = (0..N_RECORDS).map(|i| payload(case, i)).collect();
        transfer.publish_many(case.measurement, &payloads);
        let mut map = BTreeMap::new();
        sequences(&transfer, case.measurement, &mut map);
        assert_eq!(map.len(), N_RECORDS);
        by_case.push(map);
    }

    let collector = Collector::start(&config("idn", &nats, &influx, ""));
    collector.assert_within(Duration::from_secs(120), || {
        all_stored(&transfer, &influx, "idn")
    });
    for (case, sequences) in CASES.iter().zip(&by_case) {
        check_points(&influx, "idn", case, sequences);
    }
}

/// Records written to InfluxDB whose acknowledgements never reached JetStream, then a
/// `kill -9` of the collector mid-drain: a new collector gets them again and writes them to
/// the very same points, so InfluxDB still holds exactly one point per record.
#[test]
fn records_written_again_after_kill_9_land_on_the_same_points() {
    let (mut nats, influx, transfer) = util::start_servers("idk");
    let mut by_case: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(), BTreeMap::new()];
    // A short ack wait, so what the killed collector held comes back soon; small batches, so
    // the drain takes many writes.
    let config = config(
        "idk",
        &nats,
        &influx,
        "pull:\n  batch: 200\n  ack_wait: 5s\nbatch:\n  max_lines: 400\n",
    );

    // Part of the records is drained and acknowledged normally first.
    let first_part = 2_000;
    for (case, map) in CASES.iter().zip(&mut by_case) {
        transfer.set(case.measurement, "");
        let payloads: Vec<Vec<u8>> = (0..first_part).map(|i| payload(case, i)).collect();
        transfer.publish_many(case.measurement, &payloads);
        sequences(&transfer, case.measurement, map);
    }
    let mut first = Collector::start(&config);
    let settled = wait_until(Duration::from_secs(60), || {
        CASES.iter().all(|case| {
            transfer.stream_state(case.measurement).0 == 0
                && count(&influx, "idk", case.measurement) == first_part as u64
        })
    });
    assert!(settled, "{}", first.log());

    // InfluxDB hangs; the rest arrives and the collector takes in what it can hold.
    influx.pause();
    for (case, map) in CASES.iter().zip(&mut by_case) {
        let payloads: Vec<Vec<u8>> = (first_part..N_RECORDS).map(|i| payload(case, i)).collect();
        transfer.publish_many(case.measurement, &payloads);
        sequences(&transfer, case.measurement, map);
        assert_eq!(map.len(), N_RECORDS);
    }
    let holding = wait_until(Duration::from_secs(30), || {
        CASES.iter().all(|case| {
            transfer
                .consumer_info(case.measurement, "collector")
                .is_ok_and(|info| info["num_ack_pending"].as_u64().unwrap_or(0) > 0)
        })
    });
    assert!(holding, "{}", first.log());

    // NATS dies, InfluxDB comes back: what the collector held is written, and its
    // acknowledgements are lost with the server. Then the collector is killed mid-drain.
    nats.kill9();
    influx.resume();
    let total = |influx: &Influx| -> u64 {
        CASES
            .iter()
            .map(|case| count(influx, "idk", case.measurement))
            .sum()
    };
    let written_unacked = wait_until(Duration::from_secs(60), || {
        total(&influx) > 2 * first_part as u64
    });
    assert!(written_unacked, "{}", first.log());
    first.kill9();
    let before_restart = total(&influx);
    assert!(
        before_restart < 2 * N_RECORDS as u64,
        "the collector finished before it could be killed mid-drain"
    );

    nats.restart();
    let transfer = Transfer::new(nats.connect(), "idk");
    let mut second = Collector::start(&config);
    second.assert_within(Duration::from_secs(120), || {
        all_stored(&transfer, &influx, "idk")
    });
    for (case, sequences) in CASES.iter().zip(&by_case) {
        check_points(&influx, "idk", case, sequences);
    }

    // The records written before the kill and never acknowledged were written again (the
    // second collector wrote more than was missing), onto the same points.
    util::assert_wrote_some_again(
        &mut second,
        2 * N_RECORDS as u64 - before_restart,
        before_restart,
        "points",
    );
}
