//! The soak's pure core: which record number `n` is which record, the time InfluxDB must
//! store it at, the fault schedule drawn from the seed, and the comparison of a stored point
//! with the record it came from. No IO, no clock: `examples/soak/main.rs` does the IO, and
//! `tests/soak_model.rs` runs the unit tests at the bottom of this file.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The namespace's measurements; each record goes to one of them, chosen by its number.
pub const MEASUREMENTS: [&str; 6] = ["m0", "m1", "m2", "m3", "m4", "m5"];

/// splitmix64: a seeded generator with no dependency, so a seed reproduces a run's schedule
/// and record mix on any machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The splitmix64 finaliser: a well-mixed hash of one word.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stateless hash of (seed, salt, n): each record's choices depend on its number only, so
/// the checker regenerates any record without the publisher keeping its payload.
fn hash(seed: u64, salt: u64, n: u64) -> u64 {
    mix64(seed ^ mix64(salt ^ mix64(n)))
}

/// What a record is: good with a `time` of some precision or without one, or poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `time` with whole seconds (0 fraction digits).
    Seconds,
    /// `time` with 3 fraction digits.
    Millis,
    /// `time` with 6 fraction digits.
    Micros,
    /// `time` with 9 fraction digits.
    Nanos,
    /// No `time`: stored at the JetStream message timestamp.
    NoTime,
    /// Poison: the payload is not JSON.
    NotJson,
    /// Poison: `fields` holds only nulls.
    NoFields,
    /// Poison: a string in the integer field `n`, which InfluxDB refuses.
    TypeConflict,
}

impl Kind {
    #[cfg(test)]
    pub const ALL: [Kind; 8] = [
        Kind::Seconds,
        Kind::Millis,
        Kind::Micros,
        Kind::Nanos,
        Kind::NoTime,
        Kind::NotJson,
        Kind::NoFields,
        Kind::TypeConflict,
    ];

    pub fn is_poison(self) -> bool {
        matches!(self, Kind::NotJson | Kind::NoFields | Kind::TypeConflict)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Seconds => "s",
            Kind::Millis => "ms",
            Kind::Micros => "us",
            Kind::Nanos => "ns",
            Kind::NoTime => "none",
            Kind::NotJson => "not-json",
            Kind::NoFields => "no-fields",
            Kind::TypeConflict => "type-conflict",
        }
    }

    /// Fraction digits written in `time`, for the kinds that have one.
    fn digits(self) -> Option<u32> {
        match self {
            Kind::Seconds => Some(0),
            Kind::Millis => Some(3),
            Kind::Micros => Some(6),
            Kind::Nanos => Some(9),
            _ => None,
        }
    }

    /// Words of which the dead letter's `Collector-Error` must contain one (case-insensitive):
    /// the cause named, in whatever wording (InfluxDB 1.x says "field type conflict"; a
    /// collector that converts drifted types may say the value cannot be converted to the
    /// field's type). `None` for good records, which have no business in the dead letters.
    pub fn reason_words(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::NotJson => Some(&["json"]),
            Kind::NoFields => Some(&["fields"]),
            Kind::TypeConflict => Some(&["conflict", "type"]),
            _ => None,
        }
    }
}

/// The load's make-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Whether good records carry `time` at second, millisecond and microsecond precision
    /// (many records per series per second or millisecond: only the point-identity rule keeps
    /// them apart), besides nanoseconds and no `time`.
    pub coarse_time: bool,
    /// Poison records per thousand.
    pub poison_per_mille: u64,
}

/// Which record number `n` is.
pub fn kind_of(seed: u64, n: u64, mix: Mix) -> Kind {
    let h = hash(seed, 1, n);
    if h % 1000 < mix.poison_per_mille {
        return [Kind::NotJson, Kind::NoFields, Kind::TypeConflict][((h >> 10) % 3) as usize];
    }
    if mix.coarse_time {
        [
            Kind::Seconds,
            Kind::Millis,
            Kind::Micros,
            Kind::Nanos,
            Kind::NoTime,
        ][((h >> 20) % 5) as usize]
    } else {
        [Kind::Nanos, Kind::NoTime][((h >> 20) % 2) as usize]
    }
}

/// The index in [`MEASUREMENTS`] of record `n`'s measurement.
pub fn measurement_of(seed: u64, n: u64) -> usize {
    (hash(seed, 2, n) % MEASUREMENTS.len() as u64) as usize
}

/// One expected column of a stored point.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Tag(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// A record as published, and what InfluxDB must hold for it.
#[derive(Debug, Clone)]
pub struct Record {
    pub n: u64,
    pub kind: Kind,
    pub measurement: usize,
    pub payload: Vec<u8>,
    /// The `time` text written in the payload, if any.
    pub time: Option<String>,
    /// Every tag and field of its point (none for poison).
    pub columns: BTreeMap<String, Expect>,
}

/// Builds record `n`. `gen_ns` is the wall clock when the publisher made it: `time` texts
/// name that instant cut to their precision, so the points lie within the run.
pub fn record(seed: u64, n: u64, gen_ns: i64, mix: Mix) -> Record {
    let kind = kind_of(seed, n, mix);
    let measurement = measurement_of(seed, n);
    let h = hash(seed, 3, n);
    let host = format!("h{}", h % 4);
    let mut columns = BTreeMap::new();
    let mut time = None;
    let payload: Vec<u8> = match kind {
        Kind::NotJson => format!("not json: soak record {n} {{").into_bytes(),
        Kind::NoFields => json!({
            "tags": {"host": host, "poison": n.to_string()},
            "fields": {"gone": null},
        })
        .to_string()
        .into_bytes(),
        Kind::TypeConflict => json!({
            "tags": {"host": host, "kind": "conflict"},
            "fields": {"n": format!("poison {n}")},
        })
        .to_string()
        .into_bytes(),
        _ => {
            let mut tags = Map::new();
            tags.insert("host".into(), json!(host));
            tags.insert("kind".into(), json!(kind.name()));
            columns.insert("host".into(), Expect::Tag(host.clone()));
            columns.insert("kind".into(), Expect::Tag(kind.name().into()));
            if (h >> 4) & 1 == 1 {
                // Escaping in the series key: a space, a comma and an equals sign.
                tags.insert("zone".into(), json!("eu west,1=a"));
                columns.insert("zone".into(), Expect::Tag("eu west,1=a".into()));
            }
            if (h >> 5) & 1 == 1 {
                // An empty tag value is dropped.
                tags.insert("empty".into(), json!(""));
            }
            let v = n as f64 / 7.0;
            let f = ((h >> 8) % 100) as f64;
            let ok = (h >> 6) & 1 == 1;
            let msg = format!("record \"{n}\" ü \\ end");
            let mut fields = Map::new();
            fields.insert("n".into(), json!(n));
            fields.insert("v".into(), json!(v));
            fields.insert("f".into(), json!(f));
            fields.insert("ok".into(), json!(ok));
            fields.insert("msg".into(), json!(msg));
            columns.insert("n".into(), Expect::Int(n as i64));
            columns.insert("v".into(), Expect::Float(v));
            columns.insert("f".into(), Expect::Float(f));
            columns.insert("ok".into(), Expect::Bool(ok));
            columns.insert("msg".into(), Expect::Str(msg));
            if (h >> 7) & 1 == 1 {
                // A nested value is stored as its compact JSON text.
                fields.insert("obj".into(), json!({"a": [1, 2], "s": "x y"}));
                columns.insert("obj".into(), Expect::Str(r#"{"a":[1,2],"s":"x y"}"#.into()));
            }
            if (h >> 9) & 1 == 1 {
                fields.insert("gone".into(), Value::Null);
            }
            let mut top = Map::new();
            top.insert("tags".into(), Value::Object(tags));
            top.insert("fields".into(), Value::Object(fields));
            if let Some(digits) = kind.digits() {
                let unit = 10i64.pow(9 - digits);
                let instant = gen_ns - gen_ns.rem_euclid(unit);
                let offset_min = [0, 480, -330][((h >> 12) % 3) as usize];
                let text = format_rfc3339(instant, digits, offset_min);
                top.insert("time".into(), json!(text));
                time = Some(text);
            }
            Value::Object(top).to_string().into_bytes()
        }
    };
    Record {
        n,
        kind,
        measurement,
        payload,
        time,
        columns,
    }
}

/// The point-identity rule: the time InfluxDB must store a record at. With `time` written
/// with `f` fraction digits, the parsed instant plus `stream_sequence % span`, where
/// `span = min(10^(9-f), 1_000_000)` ns: distinct records of one stream never share a
/// timestamp however coarse their `time`, and a redelivery gives the very same one. Without
/// `time`, the JetStream message timestamp (`message_ns`; `None` when unknown). `None` also
/// when `time` does not parse.
///
/// The collector implements the same rule itself (`collector::record::point_time`); the test
/// `the_encoder_accepts_good_records_and_refuses_poison` compares the two over the records
/// `record` makes, so the checker's rule is written independently and proven equal.
pub fn expected_time_ns(
    time: Option<&str>,
    stream_sequence: u64,
    message_ns: Option<i64>,
) -> Option<i64> {
    let Some(text) = time else {
        return message_ns;
    };
    let parsed = collector::record::parse_rfc3339_ns(text).ok()?;
    let span = 10u64.pow(9 - fraction_digits(text)).min(1_000_000);
    Some(parsed + (stream_sequence % span) as i64)
}

/// Fraction digits written in an RFC 3339 text (trailing zeros count).
fn fraction_digits(text: &str) -> u32 {
    match text.as_bytes().get(19) {
        Some(b'.') => text.as_bytes()[20..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
            .min(9) as u32,
        _ => 0,
    }
}

/// `instant` (ns since the epoch) as RFC 3339 in the zone `offset_min` minutes east of UTC,
/// with exactly `digits` fraction digits (the instant must be a multiple of that unit).
pub fn format_rfc3339(instant: i64, digits: u32, offset_min: i64) -> String {
    let local = instant + offset_min * 60_000_000_000;
    let secs = local.div_euclid(1_000_000_000);
    let nanos = local.rem_euclid(1_000_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    );
    if digits > 0 {
        let fraction = nanos / 10i64.pow(9 - digits);
        text.push_str(&format!(".{fraction:0width$}", width = digits as usize));
    }
    if offset_min == 0 {
        text.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.abs();
        text.push_str(&format!("{sign}{:02}:{:02}", a / 60, a % 60));
    }
    text
}

/// Days since 1970-01-01 → (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Differences between a stored point (InfluxDB's JSON row: column → value, nulls left out,
/// `time` excluded by the caller) and the columns the record must give.
pub fn compare_columns(
    expected: &BTreeMap<String, Expect>,
    point: &Map<String, Value>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, want) in expected {
        let got = point.get(name);
        let same = match (want, got) {
            (Expect::Tag(w) | Expect::Str(w), Some(Value::String(g))) => w == g,
            (Expect::Int(w), Some(g)) => g.as_i64() == Some(*w) && !g.is_f64(),
            // InfluxDB's JSON prints an integral float without a fraction; the field's type is
            // checked once per measurement instead.
            (Expect::Float(w), Some(g)) => g.as_f64().is_some_and(|g| g.to_bits() == w.to_bits()),
            (Expect::Bool(w), Some(Value::Bool(g))) => w == g,
            _ => false,
        };
        if !same {
            let shown = got.map_or("absent".to_string(), Value::to_string);
            problems.push(format!("{name} = {shown}, sent {want:?}"));
        }
    }
    for (name, value) in point {
        if name != "time" && !expected.contains_key(name) {
            problems.push(format!("{name} = {value}, not sent"));
        }
    }
    problems
}

/// The field types every measurement must have in InfluxDB.
pub const FIELD_TYPES: [(&str, &str); 6] = [
    ("f", "float"),
    ("msg", "string"),
    ("n", "integer"),
    ("obj", "string"),
    ("ok", "boolean"),
    ("v", "float"),
];

/// A fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `kill -9` a collector, start it again.
    Kill,
    /// SIGTERM a collector (it must exit 0), start it again.
    Term,
    /// SIGTERM and restart the three collectors one after the other, each ready first.
    Rolling,
    /// `kill -9` a NATS node, start it again.
    NatsKill,
    /// SIGSTOP a NATS node for a few seconds.
    NatsFreeze,
    /// Stop InfluxDB, start it again.
    InfluxStop,
    /// SIGSTOP InfluxDB for longer than a write's timeout.
    InfluxFreeze,
    /// Delete a stream's shared consumer.
    ConsumerDelete,
    /// Remove a measurement from the KV bucket and put it back.
    KvRemove,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Kill,
        Fault::Term,
        Fault::Rolling,
        Fault::NatsKill,
        Fault::NatsFreeze,
        Fault::InfluxStop,
        Fault::InfluxFreeze,
        Fault::ConsumerDelete,
        Fault::KvRemove,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Term => "term",
            Fault::Rolling => "rolling",
            Fault::NatsKill => "nats-kill",
            Fault::NatsFreeze => "nats-freeze",
            Fault::InfluxStop => "influx-stop",
            Fault::InfluxFreeze => "influx-freeze",
            Fault::ConsumerDelete => "consumer-delete",
            Fault::KvRemove => "kv-remove",
        }
    }

    pub fn is_nats(self) -> bool {
        matches!(self, Fault::NatsKill | Fault::NatsFreeze)
    }
}

/// The name of the load condition that can be listed with the faults.
pub const COARSE_TIME: &str = "coarse-time";

/// What `--faults` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSet {
    pub faults: Vec<Fault>,
    pub coarse_time: bool,
}

/// Parses `--faults`: a comma-separated list of fault names and `coarse-time`, or `all`, or
/// `none`.
pub fn parse_faults(list: &str) -> Result<FaultSet, String> {
    let mut set = FaultSet {
        faults: Vec::new(),
        coarse_time: false,
    };
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "none" => {}
            "all" => {
                set.faults = Fault::ALL.to_vec();
                set.coarse_time = true;
            }
            COARSE_TIME => set.coarse_time = true,
            _ => match Fault::ALL.iter().find(|f| f.name() == word) {
                Some(&fault) if !set.faults.contains(&fault) => set.faults.push(fault),
                Some(_) => {}
                None => {
                    let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    return Err(format!(
                        "--faults: unknown `{word}`; known: {}, {COARSE_TIME}, all, none",
                        names.join(", ")
                    ));
                }
            },
        }
    }
    set.faults.sort();
    Ok(set)
}

/// One planned fault: when (seconds after the load started), what, and a number that picks
/// its target and lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    pub at_s: f64,
    pub fault: Fault,
    pub pick: u64,
}

/// The faults of a run: from `start_s` until `end_s`, one every `gap_s.0..gap_s.1` seconds,
/// the kinds dealt from a shuffled deck of `faults` (every kind once before any twice), so a
/// short run still sees each kind.
pub fn schedule(
    seed: u64,
    faults: &[Fault],
    start_s: f64,
    end_s: f64,
    gap_s: (f64, f64),
) -> Vec<Planned> {
    let mut rng = Rng::new(seed ^ 0x5eed_fa17);
    let mut plan = Vec::new();
    if faults.is_empty() {
        return plan;
    }
    let mut deck: Vec<Fault> = Vec::new();
    let mut at = start_s;
    while at < end_s {
        if deck.is_empty() {
            deck = faults.to_vec();
            rng.shuffle(&mut deck);
        }
        let fault = deck.pop().expect("refilled above");
        plan.push(Planned {
            at_s: at,
            fault,
            pick: rng.next_u64(),
        });
        at += rng.between(gap_s.0, gap_s.1);
    }
    plan
}

/// The two collector builds of an upgrade soak (`--upgrade-from`), by index: 0 is the binary
/// under test, 1 the older build it replaces.
pub const VERSIONS: [&str; 2] = ["new", "old"];

/// Which build (an index into [`VERSIONS`]) start `start` (0 for the first) of collector
/// `slot` of `n_slots` runs in an upgrade soak: a coin drawn from the seed, the slot and the
/// start number, so a seed gives every collector the same sequence of versions whatever the
/// timing. The first starts never all draw the same build: where they would, collector
/// `seed % n_slots` runs the other one, so both share the consumer from the first record on.
pub fn version_of(seed: u64, n_slots: usize, slot: usize, start: u32) -> usize {
    let coin = |slot: usize, start: u32| {
        (hash(seed, 4, (slot as u64) << 32 | u64::from(start)) & 1) as usize
    };
    let drawn = coin(slot, start);
    if start == 0 && n_slots > 1 && slot == (seed % n_slots as u64) as usize {
        let first = coin(0, 0);
        if (1..n_slots).all(|s| coin(s, 0) == first) {
            return 1 - drawn;
        }
    }
    drawn
}

/// For each fault end (seconds), how long until the backlog was first at or below
/// `threshold` at that moment or after, from `samples` of (seconds, backlog) in time order;
/// `None` if it never was.
pub fn recovery_s(samples: &[(f64, u64)], fault_ends: &[f64], threshold: u64) -> Vec<Option<f64>> {
    fault_ends
        .iter()
        .map(|&end| {
            samples
                .iter()
                .find(|&&(t, backlog)| t >= end && backlog <= threshold)
                .map(|&(t, _)| t - end)
        })
        .collect()
}

/// `90`, `90s`, `10m`, `1h`, `1m30s` → seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(format!(
                    "duration `{text}`: unknown unit `{c}` (use s, m or h)"
                ))
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("duration `{text}`: a number must come before `{c}`"))?;
        total += value * unit;
        number.clear();
        any = true;
    }
    if !number.is_empty() {
        total += number
            .parse::<u64>()
            .map_err(|e| format!("duration `{text}`: {e}"))?;
        any = true;
    }
    if !any || total == 0 {
        return Err(format!(
            "duration `{text}`: must be more than 0, e.g. 90s or 10m"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: Mix = Mix {
        coarse_time: true,
        poison_per_mille: 20,
    };

    #[test]
    fn expected_time_follows_the_point_identity_rule() {
        let check = |time: Option<&str>, seq: u64, message: Option<i64>, want: Option<i64>| {
            assert_eq!(
                expected_time_ns(time, seq, message),
                want,
                "{time:?} seq {seq}"
            );
        };
        let s = 1_764_460_800_000_000_000i64; // 2025-11-30T00:00:00Z
        check(Some("2025-11-30T00:00:00Z"), 7, None, Some(s + 7));
        // The span is capped at 1 ms worth of sequences.
        check(Some("2025-11-30T00:00:00Z"), 1_000_007, None, Some(s + 7));
        check(
            Some("2025-11-30T00:00:00.5Z"),
            1_123_456,
            None,
            Some(s + 500_000_000 + 123_456),
        );
        // Trailing zeros count as written digits.
        check(
            Some("2025-11-30T00:00:00.500Z"),
            123_456,
            None,
            Some(s + 500_000_000 + 123_456),
        );
        check(
            Some("2025-11-30T00:00:00.000001Z"),
            1234,
            None,
            Some(s + 1000 + 234),
        );
        check(
            Some("2025-11-30T00:00:00.000000001Z"),
            1234,
            None,
            Some(s + 1),
        );
        check(
            Some("2025-11-30T08:00:00.25+08:00"),
            3,
            None,
            Some(s + 250_000_000 + 3),
        );
        check(None, 99, Some(42), Some(42));
        check(None, 99, None, None);
        check(Some("yesterday"), 1, None, None);
    }

    #[test]
    fn time_texts_name_the_instant_cut_to_their_precision() {
        let gen_ns = 1_764_462_345_123_456_789i64;
        for (digits, instant) in [
            (0, 1_764_462_345_000_000_000),
            (3, 1_764_462_345_123_000_000),
            (6, 1_764_462_345_123_456_000),
            (9, gen_ns),
        ] {
            for offset in [0, 480, -330] {
                let text = format_rfc3339(instant, digits, offset);
                assert_eq!(fraction_digits(&text), digits, "{text}");
                assert_eq!(
                    collector::record::parse_rfc3339_ns(&text).ok(),
                    Some(instant),
                    "{text}"
                );
            }
        }
        assert_eq!(format_rfc3339(0, 3, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(0, 0, -330), "1969-12-31T18:30:00-05:30");
        assert_eq!(
            format_rfc3339(951_782_400_000_000_000, 0, 0),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn records_are_reproducible_and_every_kind_occurs() {
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..5000 {
            let a = record(9, n, 1_764_462_345_123_456_789, MIX);
            let b = record(9, n, 1_764_462_345_123_456_789, MIX);
            assert_eq!(a.payload, b.payload);
            seen.insert(a.kind);
            assert_eq!(a.columns.is_empty(), a.kind.is_poison(), "{n}");
            assert_eq!(a.time.is_some(), a.kind.digits().is_some());
        }
        assert_eq!(seen.len(), Kind::ALL.len(), "{seen:?}");
        let fine = Mix {
            coarse_time: false,
            ..MIX
        };
        for n in 0..2000 {
            assert!(matches!(
                kind_of(9, n, fine),
                Kind::Nanos | Kind::NoTime | Kind::NotJson | Kind::NoFields | Kind::TypeConflict
            ));
        }
    }

    #[test]
    fn the_encoder_accepts_good_records_and_refuses_poison() {
        // The collector's own encoder, to be sure the load means what the checker assumes:
        // a good record encodes, NotJson and NoFields are refused before InfluxDB, and a type
        // conflict only InfluxDB can see.
        let encoder = collector::record::Encoder::new("m0", collector::record::Unsigned::Refused)
            .expect("measurement m0");
        for n in 0..3000 {
            let r = record(5, n, 1_764_462_345_123_456_789, MIX);
            let mut out = Vec::new();
            // Sequences from 1 to far past the 1 ms span, so every shift is exercised.
            let stream_sequence = 1 + n * 997;
            let origin = collector::record::Origin {
                stream_sequence,
                timestamp_ns: 1,
            };
            let result = encoder.encode(&r.payload, origin, &mut out);
            if result.is_ok() {
                let line = String::from_utf8(out.clone()).expect("UTF-8");
                let stored: i64 = line
                    .trim_end()
                    .rsplit(' ')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .expect("a timestamp ends the line");
                assert_eq!(
                    Some(stored),
                    expected_time_ns(r.time.as_deref(), stream_sequence, Some(1)),
                    "record {n} ({:?}, time {:?}, sequence {stream_sequence})",
                    r.kind,
                    r.time
                );
            }
            match r.kind {
                Kind::NotJson | Kind::NoFields => {
                    let reason = result
                        .expect_err("poison refused")
                        .to_string()
                        .to_lowercase();
                    let words = r.kind.reason_words().expect("poison has reason words");
                    assert!(words.iter().any(|w| reason.contains(w)), "{reason}");
                }
                _ => assert!(result.is_ok(), "{n} {:?}: {result:?}", r.kind),
            }
        }
    }

    #[test]
    fn compare_columns_names_each_difference() {
        let r = record(1, 10, 1_764_462_345_123_456_789, MIX);
        let r = if r.kind.is_poison() {
            record(1, 11, 1_764_462_345_123_456_789, MIX)
        } else {
            r
        };
        let mut point = Map::new();
        for (name, e) in &r.columns {
            let v = match e {
                Expect::Tag(s) | Expect::Str(s) => json!(s),
                Expect::Int(i) => json!(i),
                Expect::Float(f) => json!(f),
                Expect::Bool(b) => json!(b),
            };
            point.insert(name.clone(), v);
        }
        point.insert("time".into(), json!(1));
        assert_eq!(compare_columns(&r.columns, &point), Vec::<String>::new());
        point.insert("n".into(), json!(r.n + 1));
        point.insert("extra".into(), json!(true));
        point.remove("msg");
        let problems = compare_columns(&r.columns, &point);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("n = ")));
        assert!(problems.iter().any(|p| p.starts_with("msg = absent")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("extra = true, not sent")));
        // Floats read back bit for bit (serde_json's `float_roundtrip`; its default parser
        // reads this one a unit in the last place off).
        let read: Value = serde_json::from_str("91.71428571428571").unwrap();
        assert_eq!(
            read.as_f64().map(f64::to_bits),
            Some((642.0f64 / 7.0).to_bits())
        );
        // An integral float comes back from InfluxDB without a fraction.
        let mut cols = BTreeMap::new();
        cols.insert("f".to_string(), Expect::Float(3.0));
        let mut p = Map::new();
        p.insert("f".into(), serde_json::from_str("3").unwrap());
        assert!(compare_columns(&cols, &p).is_empty());
    }

    #[test]
    fn faults_parse_and_every_kind_is_scheduled_in_a_short_run() {
        let set = parse_faults("kill,term,coarse-time").unwrap();
        assert_eq!(set.faults, vec![Fault::Kill, Fault::Term]);
        assert!(set.coarse_time);
        assert_eq!(parse_faults("all").unwrap().faults.len(), Fault::ALL.len());
        assert_eq!(parse_faults("none").unwrap().faults, vec![]);
        assert!(parse_faults("kill,bogus").unwrap_err().contains("bogus"));

        let plan = schedule(3, &Fault::ALL, 5.0, 70.0, (3.0, 7.0));
        assert_eq!(plan, schedule(3, &Fault::ALL, 5.0, 70.0, (3.0, 7.0)));
        assert_ne!(plan, schedule(4, &Fault::ALL, 5.0, 70.0, (3.0, 7.0)));
        for fault in Fault::ALL {
            assert!(plan.iter().any(|p| p.fault == fault), "{fault:?} missing");
        }
        assert!(plan.iter().all(|p| (5.0..70.0).contains(&p.at_s)));
        assert!(plan.windows(2).all(|w| w[1].at_s - w[0].at_s >= 3.0));
        assert!(schedule(3, &[], 5.0, 70.0, (3.0, 7.0)).is_empty());
    }

    #[test]
    fn versions_are_drawn_from_the_seed_and_the_first_starts_mix_them() {
        for seed in 0..200 {
            let first: Vec<usize> = (0..3).map(|slot| version_of(seed, 3, slot, 0)).collect();
            assert!(
                first.contains(&0) && first.contains(&1),
                "seed {seed}: {first:?}"
            );
            for slot in 0..3 {
                for start in 0..20 {
                    let v = version_of(seed, 3, slot, start);
                    assert!(v < VERSIONS.len());
                    assert_eq!(v, version_of(seed, 3, slot, start), "reproducible");
                }
            }
        }
        // Later starts are coins: over many, both builds about half the time.
        let old: usize = (0..3)
            .flat_map(|slot| (1..1000).map(move |start| version_of(7, 3, slot, start)))
            .sum();
        assert!((1300..1700).contains(&old), "{old} of 2997 starts old");
        // One collector: its first start is a coin like any other.
        assert!((0..64).any(|seed| version_of(seed, 1, 0, 0) == 0));
        assert!((0..64).any(|seed| version_of(seed, 1, 0, 0) == 1));
    }

    #[test]
    fn recovery_is_the_first_sample_at_or_below_the_threshold_after_the_end() {
        let samples = [(0.0, 10), (1.0, 500), (2.0, 300), (3.0, 90), (4.0, 800)];
        assert_eq!(
            recovery_s(&samples, &[0.5, 3.5, 1.0], 100),
            vec![Some(2.5), None, Some(2.0)]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1m30s"), Ok(90));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
