//! Fuzzes the record → line-protocol conversion: no input may panic, a refusal must leave the
//! buffer as it was, and every accepted record must come out as exactly one line that
//! InfluxData's own parser reads back as the record's measurement, tags and fields.
//!
//! Input layout: byte 0 chooses unsigned support (bit 0) and the measurement (the other bits);
//! bytes 1..9 are the message timestamp, which also gives the stream sequence; the rest is
//! the payload.

#![no_main]

use std::collections::BTreeMap;

use collector::json::{Failed, Scanner};
use collector::record::{point_time, Encoder, Origin, Unsigned};
use influxdb_line_protocol::{parse_lines, FieldValue};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;

/// Measurements with the characters that need escaping there.
const MEASUREMENTS: [&str; 4] = ["m", "log s", "a,b=c", "温度🚀"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (fallback, payload) = match rest.split_first_chunk::<8>() {
        Some((time, payload)) => (i64::from_le_bytes(*time), payload),
        None => (0, rest),
    };
    let unsigned = if selector & 1 == 0 {
        Unsigned::Allowed
    } else {
        Unsigned::Refused
    };
    let measurement = MEASUREMENTS[usize::from(selector >> 1) % MEASUREMENTS.len()];
    let encoder = Encoder::new(measurement, unsigned).expect("fixed measurements are valid");

    // The payload scanner agrees with serde_json on what is JSON, error message included
    // (bar nesting deeper than the scanner's limit, which serde_json skips without one).
    if let Ok(text) = std::str::from_utf8(payload) {
        let mut scanner = Scanner::new(text);
        let ours = scanner.value().and_then(|_| scanner.finish());
        let theirs = serde_json::from_str::<Box<RawValue>>(text);
        let too_deep =
            ours.is_err() && scanner.failure().to_string().starts_with("recursion limit exceeded");
        match (ours, theirs) {
            (Ok(()), Ok(_)) => {}
            (Err(Failed), _) if too_deep => {}
            (Err(Failed), Err(e)) => assert_eq!(scanner.failure().to_string(), e.to_string()),
            (Err(Failed), Ok(_)) => panic!("scanner refuses what serde_json accepts: {}", scanner.failure()),
            (Ok(()), Err(e)) => panic!("scanner accepts what serde_json refuses: {e}"),
        }
    }

    // The seed corpus keeps its layout: the sequence is read from the same bytes as the
    // timestamp, so the fuzzer still reaches every shift.
    let origin = Origin {
        stream_sequence: fallback as u64,
        timestamp_ns: fallback,
    };
    let mut out = b"earlier\n".to_vec();
    if encoder.encode(payload, origin, &mut out).is_err() {
        assert_eq!(out, b"earlier\n", "a refusal changed the buffer");
        return;
    }
    let text = std::str::from_utf8(&out).expect("a line is UTF-8");
    let line = text
        .strip_prefix("earlier\n")
        .expect("earlier lines are kept");
    assert!(line.ends_with('\n'));
    let lines: Vec<_> = parse_lines(line).collect();
    assert_eq!(lines.len(), 1, "not exactly one line: {line:?}");
    let parsed = match &lines[0] {
        Ok(parsed) => parsed,
        Err(e) => panic!("the reference parser refuses {line:?}: {e}"),
    };
    assert_eq!(parsed.series.measurement.as_str(), measurement);

    // The accepted payload is a JSON object; read it again with serde_json alone and check
    // every tag and field against what the parser read.
    let record: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(payload).expect("an accepted payload is a JSON object");
    let members = |key: &str| -> BTreeMap<String, Box<RawValue>> {
        match record.get(key) {
            Some(raw) if raw.get() != "null" => serde_json::from_str(raw.get()).unwrap(),
            _ => BTreeMap::new(),
        }
    };

    let mut expected_tags = BTreeMap::new();
    for (key, raw) in members("tags") {
        // Classified by the raw text: serde_json's `Value` refuses some valid numbers.
        let value = match raw.get().as_bytes()[0] {
            b'n' => continue,
            b'"' => match serde_json::from_str::<String>(raw.get()).unwrap() {
                s if s.is_empty() => continue,
                s => s,
            },
            b't' | b'f' | b'-' | b'0'..=b'9' => raw.get().to_owned(),
            _ => panic!("tag {key:?} accepted with value {}", raw.get()),
        };
        expected_tags.insert(key, value);
    }
    let read_tags: BTreeMap<String, String> = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(read_tags, expected_tags, "tags of {line:?}");

    let fields = members("fields");
    let n_fields = fields.values().filter(|raw| raw.get() != "null").count();
    assert_eq!(parsed.field_set.len(), n_fields, "fields of {line:?}");
    for (key, read) in &parsed.field_set {
        let raw = fields[key.as_str()].get();
        match (read, raw.as_bytes()[0]) {
            // Numbers are checked against their text: serde_json's `Value` refuses some valid
            // ones (`0e401`) and rounds others.
            (FieldValue::I64(i), b'-' | b'0'..=b'9') => {
                assert!(!raw.contains(['.', 'e', 'E']), "{raw} written as integer");
                assert_eq!(raw.parse::<i64>().ok(), Some(*i));
            }
            (FieldValue::U64(u), b'0'..=b'9') => {
                assert_eq!(unsigned, Unsigned::Allowed);
                assert!(raw.parse::<i64>().is_err());
                assert_eq!(raw.parse::<u64>().ok(), Some(*u));
            }
            (FieldValue::F64(f), b'-' | b'0'..=b'9') => {
                assert!(raw.contains(['.', 'e', 'E']), "{raw} written as float");
                assert_eq!(raw.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{raw}");
            }
            (FieldValue::Boolean(b), b't' | b'f') => assert_eq!(raw, b.to_string()),
            (FieldValue::String(s), b'"') => {
                assert_eq!(s.as_str(), serde_json::from_str::<String>(raw).unwrap());
            }
            (FieldValue::String(s), b'[' | b'{') => {
                // Compact JSON text of the same value: JSON strings cannot hold raw control
                // characters, so a tab or line break could only be leftover whitespace.
                assert!(!s.contains(['\n', '\r', '\t']), "{s:?} is not compact");
                let written = serde_json::from_str::<Value>(s);
                match serde_json::from_str::<Value>(raw) {
                    Ok(value) => assert_eq!(written.unwrap(), value),
                    // Numbers `Value` refuses (`[0e401]`) are refused in both texts alike.
                    Err(_) => assert!(written.is_err()),
                }
            }
            (read, _) => panic!("field {:?}: {raw} read as {read:?}", key.as_str()),
        }
    }

    match record.get("time").map(|raw| raw.get()) {
        None | Some("null") => assert_eq!(parsed.timestamp, Some(fallback)),
        Some(raw) => {
            // The written time, moved by the sequence as `point_time` says, and no further.
            let text: String = serde_json::from_str(raw).expect("an accepted time is a string");
            let written = collector::record::parse_rfc3339(&text).expect("an accepted time parses");
            let expected = point_time(written.ns, written.fraction_digits, origin.stream_sequence);
            assert_eq!(parsed.timestamp, Some(expected), "time of {line:?}");
            assert!(expected.abs_diff(written.ns) < 1_000_000);
        }
    }
});
