//! Point identity, the same cases on every server that has them (`tests/identity.rs` on
//! InfluxDB 1.6, `tests/influxdb3.rs` on InfluxDB 3): distinct records with the same tags and
//! the same coarse `time` stay distinct points, each at its written time plus its stream
//! sequence modulo the span of the time's resolution, and a record written again after a
//! `kill -9` lands on the very same point.

use super::{Collector, DatabaseServer, NatsServer, Transfer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

/// 2026-01-01T00:00:00Z in nanoseconds.
const T0: i64 = 1_767_225_600_000_000_000;

/// How many records each case has.
pub const N_RECORDS: usize = 10_000;

/// One measurement (table) of the tests: every record has these tags and this written time.
pub struct Case {
    pub measurement: &'static str,
    time: &'static str,
    time_ns: i64,
    /// `min(10^(9 - fraction digits), 10^6)`: the rule's span for `time`.
    span: u64,
}

/// 10,000 records at one whole second, and 10,000 at one millisecond written with a trailing
/// zero (`.120`, three digits).
pub const CASES: [Case; 2] = [
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

/// The stream sequence of every record of a case, by the record's `i` field.
pub type Sequences = BTreeMap<u64, u64>;

/// What the tests need of the database server under test, besides hanging it.
pub trait Points: DatabaseServer {
    /// How many points of `case` database `db` holds.
    fn count_case(&self, db: &str, case: &Case) -> usize;
    /// Every point of `case` in `db`, its fields and tags by name and its `time` in
    /// nanoseconds, after checking the fields' types (`i` an integer, `msg` a string).
    fn typed_points(&self, db: &str, case: &Case) -> Vec<Map<String, Value>>;
}

/// Record `i` of a case: the same tags and time for all, distinct fields.
fn payload(case: &Case, i: usize) -> Vec<u8> {
    format!(
        r#"{{"tags":{{"app":"shop","host":"web 1"}},"fields":{{"i":{i},"msg":"record {i}, \"quoted\""}},"time":"{}"}}"#,
        case.time
    )
    .into_bytes()
}

/// Publishes records `range` of every case to its measurement (configured first) and adds
/// their stream sequences, read from JetStream itself (so the test does not rely on publish
/// order), to `by_case`.
fn publish(transfer: &Transfer, range: Range<usize>, by_case: &mut [Sequences]) {
    for (case, into) in CASES.iter().zip(by_case) {
        transfer.set(case.measurement, "");
        let payloads: Vec<Vec<u8>> = range.clone().map(|i| payload(case, i)).collect();
        transfer.publish_many(case.measurement, &payloads);
        let stream = transfer.stream_name(case.measurement);
        let info = transfer.stream_info(&stream);
        let first = info["state"]["first_seq"].as_u64().unwrap();
        let last = info["state"]["last_seq"].as_u64().unwrap();
        for (seq, data) in transfer.stream_messages(&stream, first, last) {
            let record: Value = serde_json::from_slice(&data).unwrap();
            let i = record["fields"]["i"].as_u64().unwrap();
            assert!(into.insert(i, seq).is_none(), "record {i} stored twice");
        }
    }
}

/// Whether every case's stream is empty and `db` holds `n` points of it.
fn all_stored(transfer: &Transfer, store: &impl Points, db: &str, n: usize) -> bool {
    CASES.iter().all(|case| {
        transfer.stream_state(case.measurement).0 == 0 && store.count_case(db, case) == n
    })
}

/// Points of every case in `db`.
fn total(store: &impl Points, db: &str) -> usize {
    CASES.iter().map(|case| store.count_case(db, case)).sum()
}

/// Every point of the case is exactly one record: its tags, its fields, at its written time
/// plus its sequence modulo the span; `N_RECORDS` points for `N_RECORDS` records.
fn check_points(store: &impl Points, db: &str, case: &Case, sequences: &Sequences) {
    let points = store.typed_points(db, case);
    assert_eq!(points.len(), N_RECORDS, "{}", case.measurement);
    let mut seen = vec![false; N_RECORDS];
    for point in &points {
        let i = point["i"].as_u64().expect("field i") as usize;
        assert!(!seen[i], "{}: record {i} stored twice", case.measurement);
        seen[i] = true;
        let seq = sequences[&(i as u64)];
        assert_eq!(
            point["time"].as_i64(),
            Some(case.time_ns + (seq % case.span) as i64),
            "{}: record {i} (sequence {seq})",
            case.measurement
        );
        assert_eq!(point["app"], "shop");
        assert_eq!(point["host"], "web 1");
        assert_eq!(point["msg"], format!("record {i}, \"quoted\""));
        assert_eq!(point.len(), 5, "{point:?}");
    }
}

/// `N_RECORDS` records of each case, all with the same tags and time, published to the
/// namespace of `transfer` and drained by a collector of `config` into its database `db`:
/// `N_RECORDS` distinct points each.
pub fn records_of_one_time_are_as_many_points(
    transfer: &Transfer,
    store: &impl Points,
    db: &str,
    config: &str,
) {
    let mut by_case = vec![Sequences::new(); CASES.len()];
    publish(transfer, 0..N_RECORDS, &mut by_case);
    for sequences in &by_case {
        assert_eq!(sequences.len(), N_RECORDS);
    }
    let collector = Collector::start(config);
    collector.assert_within(Duration::from_secs(120), || {
        all_stored(transfer, store, db, N_RECORDS)
    });
    for (case, sequences) in CASES.iter().zip(&by_case) {
        check_points(store, db, case, sequences);
    }
}

/// Records written to the server whose acknowledgements never reached JetStream (NATS killed
/// while the collector held them), then a `kill -9` of the collector mid-drain: a new
/// collector gets them again and writes them to the very same points, so the server still
/// holds exactly one point per record. `config` wants a short ack wait, so that what the
/// killed collector held comes back soon, and small batches, so that the drain takes many
/// writes; `db` is the namespace of `nats`' records; `what` names the points ("rows").
pub fn records_written_again_after_kill_9_land_on_the_same_points(
    nats: &mut NatsServer,
    store: &impl Points,
    db: &str,
    config: &str,
    what: &str,
) {
    let transfer = Transfer::new(nats.connect(), db);
    let mut by_case = vec![Sequences::new(); CASES.len()];
    // Part of the records is drained and acknowledged normally first.
    let first_part = 2_000;
    publish(&transfer, 0..first_part, &mut by_case);
    let mut first = Collector::start(config);
    first.assert_within(Duration::from_secs(60), || {
        all_stored(&transfer, store, db, first_part)
    });

    // The server hangs; the rest arrives and the collector takes in what it can hold.
    store.pause();
    publish(&transfer, first_part..N_RECORDS, &mut by_case);
    for sequences in &by_case {
        assert_eq!(sequences.len(), N_RECORDS);
    }
    first.assert_within(Duration::from_secs(30), || {
        CASES.iter().all(|case| {
            transfer
                .consumer_info(case.measurement, "collector")
                .is_ok_and(|info| info["num_ack_pending"].as_u64().unwrap_or(0) > 0)
        })
    });

    // NATS dies, the server comes back: what the collector held is written, and its
    // acknowledgements are lost with NATS. Then the collector is killed mid-drain.
    nats.kill9();
    store.resume();
    first.assert_within(Duration::from_secs(60), || {
        total(store, db) > CASES.len() * first_part
    });
    first.kill9();
    let before_restart = total(store, db);
    assert!(
        before_restart < CASES.len() * N_RECORDS,
        "the collector finished before it could be killed mid-drain"
    );

    nats.restart();
    let transfer = Transfer::new(nats.connect(), db);
    let mut second = Collector::start(config);
    second.assert_within(Duration::from_secs(120), || {
        all_stored(&transfer, store, db, N_RECORDS)
    });
    for (case, sequences) in CASES.iter().zip(&by_case) {
        check_points(store, db, case, sequences);
    }

    // The records written before the kill and never acknowledged were written again (the
    // second collector wrote more than was missing), onto the same points.
    super::assert_wrote_some_again(
        &mut second,
        (CASES.len() * N_RECORDS - before_restart) as u64,
        before_restart as u64,
        what,
    );
}
