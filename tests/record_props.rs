//! Property tests of the record → line-protocol conversion, checked against InfluxData's own
//! parser (`influxdb-line-protocol`, the parser of InfluxDB 3) rather than against our code:
//! every accepted record must read back as exactly the measurement, tags, typed fields and
//! timestamp of the JSON, and every refusal must be one the mapping rules call for. A
//! record's line depends only on the record and its stream sequence: whatever order, count
//! and batch its deliveries come in, and distinct sequences keep records of one time apart.

use collector::calendar::civil_from_days;
use std::collections::BTreeMap;

use collector::json::{Failed, Scanner};
use collector::record::{parse_rfc3339, parse_rfc3339_ns, Encoder, Origin, RecordError, Unsigned};
use influxdb_line_protocol::{parse_lines, FieldValue};
use proptest::prelude::*;
use proptest::test_runner::Config;

const MEASUREMENT: &str = "log s,x=1";
const FALLBACK: i64 = 1_659_312_000_000_000_123;
const MIN_TIME_NS: i128 = i64::MIN as i128 + 2;
const MAX_TIME_NS: i128 = i64::MAX as i128 - 1;

/// What a field must read back as.
#[derive(Clone, Debug)]
enum Expected {
    Null,
    I64(i64),
    /// Above i64::MAX: written `u` or refused, depending on the database.
    U64(u64),
    /// Beyond the 64-bit range: always refused.
    TooBig,
    F64(f64),
    Bool(bool),
    Str(String),
}

/// One JSON value as it appears in the payload, and what it means.
#[derive(Clone, Debug)]
struct Value {
    json: String,
    expected: Expected,
}

fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        1 => prop::sample::select(vec![
            '"', '\\', ',', '=', ' ', '\t', '\n', '\r', '#', '\'', '\0', '\u{1}', '{', '}',
            'é', '温', '🚀', '\u{a0}', '\u{2028}', 'i', 'u', '.', '-', '0', '9',
        ]),
    ]
}

/// Keys and string values with every character that needs care in line protocol.
fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(name_char(), 0..10).prop_map(String::from_iter)
}

fn plain_key() -> impl Strategy<Value = String> {
    "[a-z_]{1,6}"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![20 => plain_key(), 8 => hostile_string(), 1 => Just("time".to_owned())]
}

/// A JSON string literal for `s`, spelled either as serde_json writes it or with every
/// non-ASCII character as a `\u` escape (surrogate pairs for emoji), so both the borrowed and
/// the decoding paths are exercised.
fn json_string(s: &str, escape_all: bool) -> String {
    if !escape_all {
        return serde_json::to_string(s).unwrap();
    }
    let mut json = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            ' '..='~' => json.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    json.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    json.push('"');
    json
}

fn string_value() -> impl Strategy<Value = Value> {
    (hostile_string(), any::<bool>()).prop_map(|(s, escape_all)| Value {
        json: json_string(&s, escape_all),
        expected: Expected::Str(s),
    })
}

/// A finite double spelled the three ways producers spell them.
fn float_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e16,
            1e15,
            123456.0,
            9007199254740993.0,
            1e-5,
            1e-4,
        ]),
        (-1_000_000i64..1_000_000, 0u32..6)
            .prop_map(|(n, scale)| n as f64 / 10f64.powi(scale as i32)),
    ];
    (number, 0..3usize).prop_map(|(f, spelling)| {
        let json = match spelling {
            0 => serde_json::to_string(&f).unwrap(),
            1 => format!("{f:e}"),
            _ => format!("{f:?}"),
        };
        // `{:e}` writes integral values without a point ("1e0"), still a JSON float.
        Value {
            json,
            expected: Expected::F64(f),
        }
    })
}

fn integer_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => any::<i64>().prop_map(|i| Value {
            json: i.to_string(),
            expected: Expected::I64(i)
        }),
        2 => ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(|u| Value {
            json: u.to_string(),
            expected: Expected::U64(u)
        }),
        1 => ("-?[1-9][0-9]{19,25}").prop_filter_map("beyond 64 bits", |text| {
            (text.parse::<i64>().is_err() && text.parse::<u64>().is_err()).then_some(Value {
                json: text,
                expected: Expected::TooBig,
            })
        }),
    ]
}

/// An object or array (anything else is not a nested value), with nesting inside.
fn nested_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        hostile_string().prop_map(serde_json::Value::from),
    ];
    let any_value = leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        prop::collection::vec(any_value.clone(), 0..4).prop_map(serde_json::Value::Array),
        prop::collection::btree_map(hostile_string(), any_value, 0..4)
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
    ]
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => string_value(),
        2 => float_value(),
        2 => integer_value(),
        1 => any::<bool>().prop_map(|b| Value { json: b.to_string(), expected: Expected::Bool(b) }),
        1 => Just(Value { json: "null".into(), expected: Expected::Null }),
        // Pretty-printed in the payload; the field holds the compact text.
        1 => nested_json().prop_map(|v| Value {
            json: serde_json::to_string_pretty(&v).unwrap(),
            expected: Expected::Str(serde_json::to_string(&v).unwrap()),
        }),
    ]
}

/// What a tag value must read back as: `None` when the tag is dropped, `Err` when the record
/// must be refused (object or array).
#[derive(Clone, Debug)]
struct TagValue {
    json: String,
    expected: Result<Option<String>, ()>,
}

fn tag_value() -> impl Strategy<Value = TagValue> {
    prop_oneof![
        30 => (hostile_string(), any::<bool>()).prop_map(|(s, escape_all)| TagValue {
            json: json_string(&s, escape_all),
            expected: Ok((!s.is_empty()).then_some(s)),
        }),
        3 => Just(TagValue { json: "null".into(), expected: Ok(None) }),
        3 => any::<i64>().prop_map(|i| TagValue { json: i.to_string(), expected: Ok(Some(i.to_string())) }),
        2 => Just(TagValue { json: "-1.50E+3".into(), expected: Ok(Some("-1.50E+3".into())) }),
        2 => any::<bool>().prop_map(|b| TagValue { json: b.to_string(), expected: Ok(Some(b.to_string())) }),
        // Rare, or it would hide every other outcome.
        1 => Just(TagValue { json: "[]".into(), expected: Err(()) }),
    ]
}

/// The `time` member: absent, null, or an RFC 3339 string with its expected nanoseconds and
/// its number of fraction digits.
#[derive(Clone, Debug)]
enum Time {
    Absent,
    Null,
    Text { text: String, ns: i128, digits: u32 },
}

/// The point-identity rule, stated independently of the encoder: a time written with `digits`
/// fraction digits moves by `sequence mod min(10^(9 - digits), 10^6)` ns, down instead of up
/// where up would pass the largest time InfluxDB stores.
fn expected_point_time(ns: i128, digits: u32, sequence: u64) -> i128 {
    let span = 10u64.pow(9 - digits).min(1_000_000);
    let shift = i128::from(sequence % span);
    if ns + shift <= MAX_TIME_NS {
        ns + shift
    } else {
        ns - shift
    }
}

prop_compose! {
    /// An RFC 3339 text for a UTC second, a fraction of 0–9 digits and an offset; the range
    /// goes a little past what i64 nanoseconds hold so both ends are exercised.
    fn rfc3339()(
        utc_seconds in prop_oneof![
            8 => -9_223_372_040i64..9_223_372_040,
            1 => -9_223_372_040i64..-9_223_372_030,
            1 => 9_223_372_030i64..9_223_372_040,
        ],
        n_digits in 0u32..=9,
        fraction in 0u32..1_000_000_000,
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        zulu in 0..4u8,
        lowercase in any::<bool>(),
    ) -> Time {
        let fraction = fraction % 10u32.pow(n_digits);
        let nanos = i128::from(fraction) * 10i128.pow(9 - n_digits);
        let offset_minutes = if zulu > 0 { 0 } else { offset_minutes };
        let local = utc_seconds + offset_minutes * 60;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let second_of_day = local.rem_euclid(86_400);
        let mut text = format!(
            "{year:04}-{month:02}-{day:02}{}{:02}:{:02}:{:02}",
            if lowercase { 't' } else { 'T' },
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        );
        if n_digits > 0 {
            text.push_str(&format!(".{fraction:0width$}", width = n_digits as usize));
        }
        match zulu {
            1 => text.push('Z'),
            2 => text.push('z'),
            _ => {
                let sign = if offset_minutes < 0 { '-' } else { '+' };
                let offset = offset_minutes.abs();
                text.push_str(&format!("{sign}{:02}:{:02}", offset / 60, offset % 60));
            }
        }
        Time::Text { text, ns: i128::from(utc_seconds) * 1_000_000_000 + nanos, digits: n_digits }
    }
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![1 => Just(Time::Absent), 1 => Just(Time::Null), 4 => rfc3339()]
}

/// A JSON object text from members in the given order (so keys arrive unsorted too).
fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(key, json)| format!("{}:{json}", serde_json::to_string(key).unwrap()))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The escaping rules' independent statement: a name is written when it is non-empty, has no
/// line break or tab, and every backslash is followed by a character other than a backslash,
/// quote, comma, equals sign or space.
fn writable(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    !name.is_empty()
        && !chars.iter().any(|c| matches!(c, '\n' | '\r' | '\t'))
        && chars.iter().enumerate().all(|(i, &c)| {
            c != '\\' || !matches!(chars.get(i + 1), None | Some('\\' | '"' | ',' | '=' | ' '))
        })
}

/// Unique keys: JSON objects with repeated keys are refused, tested in the unit tests.
fn unique<T>(members: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut seen = std::collections::HashSet::new();
    members
        .into_iter()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect()
}

/// A record without `time`, stored by the stream at `timestamp_ns` (sequence 1).
fn at(timestamp_ns: i64) -> Origin {
    Origin {
        stream_sequence: 1,
        timestamp_ns,
    }
}

/// The timestamp of one line, as InfluxData's parser reads it.
fn timestamp_of(line: &str) -> Option<i64> {
    match parse_lines(line).next() {
        Some(Ok(parsed)) => parsed.timestamp,
        _ => None,
    }
}

fn field_matches(read: &FieldValue<'_>, expected: &Expected) -> bool {
    match (read, expected) {
        (FieldValue::I64(a), Expected::I64(b)) => a == b,
        (FieldValue::U64(a), Expected::U64(b)) => a == b,
        (FieldValue::F64(a), Expected::F64(b)) => a.to_bits() == b.to_bits(),
        (FieldValue::Boolean(a), Expected::Bool(b)) => a == b,
        (FieldValue::String(a), Expected::Str(b)) => a.as_str() == b,
        _ => false,
    }
}

proptest! {
    #![proptest_config(Config { cases: 1000, ..Config::default() })]

    #[test]
    fn records_read_back_exactly_or_are_refused_for_a_stated_reason(
        tags in prop::collection::vec((key(), tag_value()), 0..5).prop_map(unique),
        fields in prop::collection::vec((key(), field_value()), 0..7).prop_map(unique),
        time in time(),
        unsigned_allowed in any::<bool>(),
        sequence in prop_oneof![1u64..2_000_000, any::<u64>()],
    ) {
        let unsigned = if unsigned_allowed { Unsigned::Allowed } else { Unsigned::Refused };
        let mut members = vec![
            ("tags".to_owned(), object(&tags.iter().map(|(k, v)| (k.clone(), v.json.clone())).collect::<Vec<_>>())),
            ("fields".to_owned(), object(&fields.iter().map(|(k, v)| (k.clone(), v.json.clone())).collect::<Vec<_>>())),
        ];
        match &time {
            Time::Absent => {}
            Time::Null => members.push(("time".into(), "null".into())),
            Time::Text { text, .. } => members.push(("time".into(), serde_json::to_string(text).unwrap())),
        }
        let payload = object(&members);

        // The expectation, straight from the mapping rules.
        let mut refusal: Option<&str> = None;
        let mut expected_tags = BTreeMap::new();
        for (key, value) in &tags {
            match &value.expected {
                Err(()) => refusal = Some("tag value is an array"),
                Ok(None) => {}
                Ok(Some(text)) => {
                    if !writable(key) || !writable(text) || key == "time" {
                        refusal = Some("tag key or value cannot be written");
                    }
                    expected_tags.insert(key.clone(), text.clone());
                }
            }
        }
        let mut expected_fields = BTreeMap::new();
        for (key, value) in &fields {
            match &value.expected {
                Expected::Null => continue,
                Expected::TooBig => refusal = Some("integer beyond 64 bits"),
                Expected::U64(_) if unsigned == Unsigned::Refused => refusal = Some("unsigned refused"),
                _ => {}
            }
            if !writable(key) || key == "time" {
                refusal = Some("field key cannot be written");
            }
            expected_fields.insert(key.clone(), value.expected.clone());
        }
        if expected_fields.is_empty() {
            refusal = Some("no fields");
        }
        let expected_ns = match &time {
            Time::Absent | Time::Null => i128::from(FALLBACK),
            Time::Text { ns, .. } => *ns,
        };
        if !(MIN_TIME_NS..=MAX_TIME_NS).contains(&expected_ns) {
            refusal = Some("time out of range");
        }
        // The stream's timestamp is kept as it is; a written time moves by the sequence.
        let expected_ns = match &time {
            Time::Absent | Time::Null => expected_ns,
            Time::Text { digits, .. } => expected_point_time(expected_ns, *digits, sequence),
        };

        let encoder = Encoder::new(MEASUREMENT, unsigned).unwrap();
        let mut out = b"earlier line\n".to_vec();
        let origin = Origin { stream_sequence: sequence, timestamp_ns: FALLBACK };
        let result = encoder.encode(payload.as_bytes(), origin, &mut out);
        match (result, refusal) {
            (Err(e), Some(_)) => {
                prop_assert_eq!(&out, b"earlier line\n");
                prop_assert!(!e.to_string().contains('\n'));
            }
            (Err(e), None) => prop_assert!(false, "{payload} refused: {e}"),
            (Ok(()), Some(reason)) => prop_assert!(
                false, "{payload} accepted as {:?} though {reason}", String::from_utf8_lossy(&out)
            ),
            (Ok(()), None) => {
                let text = std::str::from_utf8(&out).unwrap();
                let line = text.strip_prefix("earlier line\n").unwrap();
                prop_assert!(line.ends_with('\n'));
                let lines: Vec<_> = parse_lines(line).collect();
                prop_assert_eq!(lines.len(), 1, "{:?} is not one line", line);
                let parsed = match &lines[0] {
                    Ok(parsed) => parsed,
                    Err(e) => return Err(TestCaseError::fail(format!("{line:?}: {e}"))),
                };
                prop_assert_eq!(parsed.series.measurement.as_str(), MEASUREMENT);
                let tags = parsed.series.tag_set.iter().flatten();
                let read_tags: BTreeMap<String, String> =
                    tags.map(|(k, v)| (k.to_string(), v.to_string())).collect();
                prop_assert_eq!(&read_tags, &expected_tags, "{:?}", line);
                prop_assert_eq!(parsed.field_set.len(), expected_fields.len(), "{:?}", line);
                for (key, read) in &parsed.field_set {
                    let expected = expected_fields.get(key.as_str());
                    prop_assert!(
                        expected.is_some_and(|expected| field_matches(read, expected)),
                        "{:?}: field {:?} read as {:?}, expected {:?}", line, key.as_str(), read, expected
                    );
                }
                prop_assert_eq!(parsed.timestamp.map(i128::from), Some(expected_ns));
            }
        }
    }

    #[test]
    fn floats_are_written_as_ryu_writes_them(value in float_value()) {
        let Expected::F64(f) = value.expected else { unreachable!() };
        let encoder = Encoder::new("m", Unsigned::Allowed).unwrap();
        let mut out = Vec::new();
        encoder.encode(format!(r#"{{"fields":{{"f":{}}}}}"#, value.json).as_bytes(), at(1), &mut out).unwrap();
        let expected = format!("m f={} 1\n", ryu::Buffer::new().format_finite(f));
        prop_assert_eq!(String::from_utf8(out).unwrap(), expected, "from {}", value.json);
    }

    #[test]
    fn rfc3339_texts_give_their_nanoseconds(time in rfc3339()) {
        let Time::Text { text, ns, digits } = time else { unreachable!() };
        match parse_rfc3339(&text) {
            Ok(parsed) => {
                prop_assert_eq!(i128::from(parsed.ns), ns, "{}", text);
                prop_assert_eq!(u32::from(parsed.fraction_digits), digits, "{}", text);
                prop_assert_eq!(parse_rfc3339_ns(&text), Ok(parsed.ns));
            }
            Err(RecordError::TimeOutOfRange { .. }) => {
                prop_assert!(i64::try_from(ns).is_err(), "{} refused though in range", text)
            }
            Err(e) => prop_assert!(false, "{text}: {e}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_any_line_parses(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            // JSON-shaped noise reaches much deeper than random bytes.
            prop::collection::vec(
                prop::sample::select(vec![
                    "{", "}", "[", "]", ":", ",", "\"tags\"", "\"fields\"", "\"time\"", "\"a\"",
                    "\"b\\\\\"", "\"\\u0000\"", "\"\\ud800\"", "1", "-0", "1.5e3", "1e400",
                    "18446744073709551616", "true", "null", "\"2022-08-01T00:00:00Z\"", " ",
                ]),
                0..24,
            ).prop_map(|tokens| tokens.concat().into_bytes()),
        ],
        fallback in any::<i64>(),
        sequence in any::<u64>(),
    ) {
        let encoder = Encoder::new("m", Unsigned::Allowed).unwrap();
        let mut out = Vec::new();
        let origin = Origin { stream_sequence: sequence, timestamp_ns: fallback };
        if encoder.encode(&payload, origin, &mut out).is_ok() {
            let line = std::str::from_utf8(&out).unwrap();
            let lines: Vec<_> = parse_lines(line).collect();
            prop_assert_eq!(lines.len(), 1);
            prop_assert!(lines[0].is_ok(), "{:?}", line);
        } else {
            prop_assert!(out.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 500, ..Config::default() })]

    /// Distinct records sharing tags and one written time, each with its own stream sequence,
    /// delivered in any order, any number of times, in batches cut anywhere, each batch
    /// encoded by the same encoder or a fresh one (another collector): every delivery of a
    /// record gives exactly the line the record gives alone, and two records get the same
    /// timestamp exactly when their sequences are congruent modulo the span of their time's
    /// resolution (so distinct sequences within the span give distinct points).
    #[test]
    fn a_records_line_depends_only_on_the_record_and_its_sequence(
        time in rfc3339().prop_filter("a time InfluxDB stores", |time| {
            matches!(time, Time::Text { ns, .. } if (MIN_TIME_NS..=MAX_TIME_NS).contains(ns))
        }),
        first_sequence in prop_oneof![Just(0u64), 0u64..2_000_000, 0u64..u64::MAX / 2],
        gaps in prop::collection::vec(prop_oneof![4 => 1u64..10, 1 => 1u64..1_100_000], 1..10),
        extra_deliveries in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        order in prop::collection::vec(any::<u32>(), 30),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        fresh_encoder in prop::collection::vec(any::<bool>(), 5),
    ) {
        let Time::Text { text, digits, .. } = &time else { unreachable!() };
        let sequences: Vec<u64> = gaps
            .iter()
            .scan(first_sequence, |sequence, gap| {
                *sequence += gap;
                Some(*sequence)
            })
            .collect();
        let payloads: Vec<String> = (0..sequences.len())
            .map(|i| format!(r#"{{"tags":{{"host":"a"}},"fields":{{"i":{i}}},"time":{}}}"#, serde_json::to_string(text).unwrap()))
            .collect();
        let origin = |i: usize| Origin { stream_sequence: sequences[i], timestamp_ns: FALLBACK };

        // Each record encoded alone by its own encoder: the reference.
        let alone: Vec<String> = (0..payloads.len())
            .map(|i| {
                let mut out = Vec::new();
                Encoder::new(MEASUREMENT, Unsigned::Allowed).unwrap().encode(payloads[i].as_bytes(), origin(i), &mut out).unwrap();
                String::from_utf8(out).unwrap()
            })
            .collect();

        // Every record delivered at least once, some again, in a shuffled order.
        let mut deliveries: Vec<usize> = (0..payloads.len()).collect();
        deliveries.extend(extra_deliveries.iter().map(|at| at.index(payloads.len())));
        let mut keyed: Vec<(u32, usize)> = deliveries.iter().enumerate().map(|(k, &i)| (order[k % order.len()], i)).collect();
        keyed.sort();
        let deliveries: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();

        let mut bounds: Vec<usize> = cuts.iter().map(|at| at.index(deliveries.len() + 1)).collect();
        bounds.push(0);
        bounds.push(deliveries.len());
        bounds.sort_unstable();
        let shared = Encoder::new(MEASUREMENT, Unsigned::Allowed).unwrap();
        for (b, batch) in bounds.windows(2).enumerate() {
            let fresh = Encoder::new(MEASUREMENT, Unsigned::Allowed).unwrap();
            let encoder = if fresh_encoder[b % fresh_encoder.len()] { &fresh } else { &shared };
            let mut out = b"earlier line\n".to_vec();
            for &i in &deliveries[batch[0]..batch[1]] {
                encoder.encode(payloads[i].as_bytes(), origin(i), &mut out).unwrap();
            }
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.split_inclusive('\n').skip(1).collect();
            prop_assert_eq!(lines.len(), batch[1] - batch[0]);
            for (line, &i) in lines.iter().zip(&deliveries[batch[0]..batch[1]]) {
                prop_assert_eq!(*line, alone[i].as_str(), "record {} at sequence {}", i, sequences[i]);
            }
        }

        let span = 10u64.pow(9 - digits).min(1_000_000);
        let times: Vec<Option<i64>> = alone.iter().map(|line| timestamp_of(line)).collect();
        for i in 0..times.len() {
            prop_assert!(times[i].is_some(), "{:?}", alone[i]);
            for j in 0..i {
                let congruent = sequences[i] % span == sequences[j] % span;
                prop_assert_eq!(
                    times[i] == times[j],
                    congruent,
                    "{} with {} digits: sequences {} and {} gave {:?} and {:?}",
                    text, digits, sequences[i], sequences[j], times[i], times[j]
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    /// Plain decimals around the limits of the copy-as-is path: 15 and 16 significant digits,
    /// 4 and 5 leading fraction zeros, 16 and 17 integer digits, trailing zeros.
    #[test]
    fn decimal_texts_are_written_as_ryu_writes_them(
        negative in any::<bool>(),
        integer in prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,17}", "[1-9]0{0,17}"],
        fraction in prop_oneof!["0{0,6}[0-9]{1,17}", "0{1,3}", "[0-9]{1,3}0{1,3}"],
    ) {
        let json = format!("{}{integer}.{fraction}", if negative { "-" } else { "" });
        let value: f64 = json.parse().unwrap();
        let encoder = Encoder::new("m", Unsigned::Allowed).unwrap();
        let mut out = Vec::new();
        encoder.encode(format!(r#"{{"fields":{{"f":{json}}}}}"#).as_bytes(), at(1), &mut out).unwrap();
        let expected = format!("m f={} 1\n", ryu::Buffer::new().format_finite(value));
        prop_assert_eq!(String::from_utf8(out).unwrap(), expected, "from {}", json);
    }
}

/// A JSON document for the scanner: a record-like object or any nested value, written
/// compact or pretty, with floats and exponents too.
fn json_document() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap()),
        "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
    ];
    prop_oneof![
        nested_json().prop_map(|v| serde_json::to_string(&v).unwrap()),
        nested_json().prop_map(|v| serde_json::to_string_pretty(&v).unwrap()),
        (number, nested_json()).prop_map(|(n, v)| {
            format!(
                r#"{{"tags":{{"a":"b"}},"fields":{{"n":{n},"v":{}}},"time":null}}"#,
                serde_json::to_string(&v).unwrap()
            )
        }),
    ]
}

/// Bytes that change what a JSON text means: structure, escapes, digits, letters of the
/// literals, control characters and whitespace.
const JSON_BYTES: &[u8] = b"{}[]:,\"\\/ \n\t\r0123456789-+.eEtrufalsnbu\x00\x01\x1fxA";

proptest! {
    #![proptest_config(Config { cases: 4000, ..Config::default() })]

    /// The payload scanner accepts exactly the texts serde_json accepts (below its nesting
    /// limit, which these documents stay under), and hands back the value's own text: checked
    /// on valid documents and on the same documents with a few bytes inserted, deleted or
    /// replaced, which is where a hand-written scanner goes wrong.
    #[test]
    fn the_json_scanner_accepts_what_serde_json_accepts(
        document in json_document(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, prop::sample::select(JSON_BYTES)), 0..4),
    ) {
        let mut bytes = document.into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
        }
        // The scanner reads text; the encoder checks UTF-8 before it.
        let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()); };
        let mut scanner = Scanner::new(text);
        let ours = scanner.value().and_then(|raw| scanner.finish().map(|()| raw));
        let theirs = serde_json::from_str::<serde::de::IgnoredAny>(text);
        match (ours, theirs) {
            (Ok(raw), Ok(_)) => prop_assert_eq!(raw, text.trim_matches([' ', '\n', '\t', '\r'])),
            (Err(Failed), Err(theirs)) => {
                prop_assert_eq!(scanner.failure().to_string(), theirs.to_string(), "for {:?}", text)
            }
            (ours, theirs) => prop_assert!(
                false,
                "{:?}: scanner {:?}, serde_json {:?}",
                text,
                ours.map_err(|_| scanner.failure().to_string()),
                theirs.map_err(|e| e.to_string())
            ),
        }
    }
}
