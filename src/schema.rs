//! Field types learned from InfluxDB, and the lossless conversions they allow.
//!
//! Run by the writer thread. InfluxDB fixes a field's type by its first value, so a producer
//! that once sent `"latency": 1.5` and now sends `"latency": 2` has every new record refused
//! with a type conflict. The writer reads the conflict from InfluxDB's own answer
//! ([`conflicts`] for the v1/v2 text, [`v3_conflict`] for a v3 per-line error), remembers the
//! stored type in a [`Schema`], and rewrites the lines whose value converts without loss
//! ([`Schema::convert_line`]): an integer into a float field when the float holds it exactly
//! (|n| ≤ 2^53), a float with an integral value into an integer field. Everything else (a
//! string or a bool against a number, `2.5` into an integer field, 2^53 + 1 into a float
//! field) is left as it is, so InfluxDB refuses it again and the record is dead-lettered with
//! InfluxDB's reason.
//!
//! The rewrite works on the encoded line, not on the JSON: the encoder's output is exact, so
//! reading a number back from the line gives the record's value, and the encoder (shared with
//! the workers) stays as it is. Pure: no IO, no logging, no clock.

use std::collections::HashMap;
use std::fmt;

/// A field type as InfluxDB names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    /// The type from InfluxDB's spelling: `float`, `integer`, … in v1/v2 messages, and the last
    /// part of `iox::column_type::field::float` in v3 ones.
    fn from_name(name: &str) -> Option<FieldType> {
        match name.rsplit("::").next()? {
            "float" => Some(FieldType::Float),
            "integer" => Some(FieldType::Integer),
            "unsigned" | "uinteger" => Some(FieldType::Unsigned),
            "string" => Some(FieldType::String),
            "boolean" | "bool" => Some(FieldType::Boolean),
            _ => None,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        })
    }
}

/// A type conflict InfluxDB reported: `field` of `measurement` is stored as `stored`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub measurement: String,
    pub field: String,
    pub stored: FieldType,
}

/// Every type conflict named in a v1 or v2 answer, e.g. `partial write: field type conflict:
/// input field "f" on measurement "m" is type integer, already exists as type float
/// dropped=1` (v2 wraps the same text in its `message`). InfluxDB writes the names between
/// quotes without escaping them, so a name is read up to the fixed text that follows it.
pub fn conflicts(message: &str) -> Vec<Conflict> {
    const FIELD: &str = "input field \"";
    const ON: &str = "\" on measurement \"";
    const IS: &str = "\" is type ";
    const EXISTS: &str = ", already exists as type ";
    let mut found = Vec::new();
    let mut rest = message;
    while let Some(at) = rest.find(FIELD) {
        rest = &rest[at + FIELD.len()..];
        let parsed = (|| {
            let (field, after) = rest.split_once(ON)?;
            let (measurement, after) = after.split_once(IS)?;
            let (_input, after) = after.split_once(EXISTS)?;
            let stored: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
                .collect();
            Some(Conflict {
                measurement: measurement.to_string(),
                field: field.to_string(),
                stored: FieldType::from_name(&stored)?,
            })
        })();
        found.extend(parsed);
    }
    found
}

/// The type conflict in one v3 per-line error, e.g. `invalid column type for column 'temp',
/// expected iox::column_type::field::float, got iox::column_type::field::integer`. The v3
/// message does not name the table, so the caller passes the measurement of the line it is
/// about (see [`measurement_of`]).
pub fn v3_conflict(message: &str, measurement: &str) -> Option<Conflict> {
    const COLUMN: &str = "invalid column type for column '";
    const EXPECTED: &str = "', expected ";
    let at = message.find(COLUMN)?;
    let (field, after) = message[at + COLUMN.len()..].split_once(EXPECTED)?;
    let stored = after.split([',', ' ']).next()?;
    // Only a field column converts; a tag or time column stays a conflict.
    if !stored.contains("field::") {
        return None;
    }
    Some(Conflict {
        measurement: measurement.to_string(),
        field: field.to_string(),
        stored: FieldType::from_name(stored)?,
    })
}

/// One field a line had converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub measurement: String,
    pub field: String,
    pub to: FieldType,
}

/// Learned field types, per measurement.
#[derive(Debug, Default)]
pub struct Schema {
    types: HashMap<String, HashMap<String, FieldType>>,
}

impl Schema {
    /// Remembers a stored type; true when it is news (unknown before, or changed: InfluxDB 1.x
    /// keeps types per shard, so a field may differ between time ranges, and the latest answer
    /// wins).
    pub fn learn(&mut self, conflict: &Conflict) -> bool {
        let fields = self.types.entry(conflict.measurement.clone()).or_default();
        fields.insert(conflict.field.clone(), conflict.stored) != Some(conflict.stored)
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The learned type of a field, if any.
    pub fn field_type(&self, measurement: &str, field: &str) -> Option<FieldType> {
        self.types.get(measurement)?.get(field).copied()
    }

    /// Writes `line` (one line protocol line, with or without its `\n`) into `out` with every
    /// field value converted to its learned type where that loses nothing, and returns the
    /// fields it converted. With nothing converted `out` is left as it was, so the caller can
    /// keep the line it has.
    pub fn convert_line(&self, line: &[u8], out: &mut Vec<u8>) -> Vec<Converted> {
        let mut converted = Vec::new();
        if self.types.is_empty() {
            return converted;
        }
        // Lines of measurements without learned types are the common case: they cost one
        // scan of the measurement name.
        let measurement = unescape(&line[..measurement_end(line)]);
        let Some(learned) = self.types.get(&measurement) else {
            return converted;
        };
        let Some(parsed) = parse_line(line) else {
            return converted;
        };
        let start = out.len();
        let mut copied = 0;
        for field in &parsed.fields {
            let key = unescape(&line[field.key.clone()]);
            let Some(&to) = learned.get(&key) else {
                continue;
            };
            let Some(value) = convert_value(&line[field.value.clone()], to) else {
                continue;
            };
            out.extend_from_slice(&line[copied..field.value.start]);
            out.extend_from_slice(value.as_bytes());
            copied = field.value.end;
            converted.push(Converted {
                measurement: measurement.clone(),
                field: key,
                to,
            });
        }
        if converted.is_empty() {
            out.truncate(start);
        } else {
            out.extend_from_slice(&line[copied..]);
        }
        converted
    }
}

/// The measurement of a line, unescaped, or `None` for a line that is not line protocol.
pub fn measurement_of(line: &[u8]) -> Option<String> {
    parse_line(line).map(|parsed| unescape(&line[..parsed.measurement_end]))
}

/// Where the (escaped) measurement of a line ends: at its first unescaped `,` or space.
fn measurement_end(line: &[u8]) -> usize {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 1,
            b',' | b' ' => return i,
            _ => {}
        }
        i += 1;
    }
    line.len()
}

/// The largest magnitude up to which every integer is exactly a 64-bit float.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// The value text of `raw` (a line protocol field value) as type `to`, when it is of another
/// numeric type and converts without loss; `None` otherwise.
fn convert_value(raw: &[u8], to: FieldType) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let (last, digits) = (*raw.last()?, &text[..text.len() - 1]);
    let from = match last {
        b'i' => Number::Integer(digits.parse().ok()?),
        b'u' => Number::Unsigned(digits.parse().ok()?),
        b'"' => return None,
        _ if matches!(raw[0], b't' | b'T' | b'f' | b'F') => return None,
        _ => Number::Float(text.parse().ok()?),
    };
    match (from, to) {
        (Number::Integer(n), FieldType::Float) if n.unsigned_abs() <= MAX_EXACT_INTEGER => {
            Some(float_text(n as f64))
        }
        (Number::Unsigned(n), FieldType::Float) if n <= MAX_EXACT_INTEGER => {
            Some(float_text(n as f64))
        }
        (Number::Float(x), FieldType::Integer)
            if is_integral_in(x, -(2f64.powi(63)), 2f64.powi(63)) =>
        {
            Some(format!("{}i", x as i64))
        }
        (Number::Float(x), FieldType::Unsigned) if is_integral_in(x, 0.0, 2f64.powi(64)) => {
            Some(format!("{}u", x as u64))
        }
        (Number::Unsigned(n), FieldType::Integer) if n <= i64::MAX as u64 => Some(format!("{n}i")),
        (Number::Integer(n), FieldType::Unsigned) if n >= 0 => Some(format!("{n}u")),
        _ => None,
    }
}

enum Number {
    Integer(i64),
    Unsigned(u64),
    Float(f64),
}

/// Whether `x` is a whole number in `low..high` (so `as` converts it exactly).
fn is_integral_in(x: f64, low: f64, high: f64) -> bool {
    x.is_finite() && x.fract() == 0.0 && x >= low && x < high
}

/// A float as the encoder writes one (ryu's shortest text, `2.0` for two), so a converted
/// line is the very line a JSON float would have given.
fn float_text(x: f64) -> String {
    ryu::Buffer::new().format_finite(x).to_string()
}

/// Where the parts of a line are.
struct ParsedLine {
    measurement_end: usize,
    fields: Vec<FieldSpan>,
}

struct FieldSpan {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// Finds the measurement and the field keys and values of a line as the encoder writes it:
/// names escape `,`, `=` and space with a backslash, string values are quoted with `\"` and
/// `\\` escaped inside.
fn parse_line(line: &[u8]) -> Option<ParsedLine> {
    let mut i = 0;
    // The measurement and tags end at the first unescaped space.
    let mut measurement_end = None;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 1,
            b',' if measurement_end.is_none() => measurement_end = Some(i),
            b' ' => break,
            _ => {}
        }
        i += 1;
    }
    let measurement_end = measurement_end.unwrap_or(i);
    if i >= line.len() {
        return None;
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        let key_start = i;
        while i < line.len() && line[i] != b'=' {
            if line[i] == b'\\' {
                i += 1;
            }
            i += 1;
        }
        if i >= line.len() {
            return None;
        }
        let key = key_start..i;
        i += 1;
        let value_start = i;
        if line.get(i) == Some(&b'"') {
            i += 1;
            while i < line.len() && line[i] != b'"' {
                if line[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            while i < line.len() && !matches!(line[i], b',' | b' ' | b'\n') {
                i += 1;
            }
        }
        if i > line.len() || i == value_start {
            return None;
        }
        fields.push(FieldSpan {
            key,
            value: value_start..i,
        });
        match line.get(i) {
            Some(b',') => i += 1,
            _ => break,
        }
    }
    Some(ParsedLine {
        measurement_end,
        fields,
    })
}

/// A name with its backslash escapes removed.
fn unescape(name: &[u8]) -> String {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'\\' && matches!(name.get(i + 1), Some(b',' | b'=' | b' ')) {
            i += 1;
        }
        out.push(name[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(measurement: &str, field: &str, stored: FieldType) -> Conflict {
        Conflict {
            measurement: measurement.into(),
            field: field.into(),
            stored,
        }
    }

    #[test]
    fn conflicts_are_read_from_v1_and_v2_answers() {
        // influxd 1.6.7's answer, and the v2 API's 422 message around the same text.
        let v1 = r#"partial write: field type conflict: input field "latency" on measurement "api" is type integer, already exists as type float dropped=1"#;
        assert_eq!(
            conflicts(v1),
            [conflict("api", "latency", FieldType::Float)]
        );
        let v2 = r#"failure writing points to database: partial write: field type conflict: input field "n" on measurement "m, x" is type float, already exists as type integer dropped=3"#;
        assert_eq!(conflicts(v2), [conflict("m, x", "n", FieldType::Integer)]);
        let two = r#"field type conflict: input field "a" on measurement "m" is type string, already exists as type boolean; field type conflict: input field "b" on measurement "m" is type float, already exists as type unsigned"#;
        assert_eq!(
            conflicts(two),
            [
                conflict("m", "a", FieldType::Boolean),
                conflict("m", "b", FieldType::Unsigned)
            ]
        );
        assert!(conflicts("unable to parse 'm x': invalid field format").is_empty());
        assert!(conflicts(r#"input field "a" on measurement "m" is type"#).is_empty());
    }

    #[test]
    fn conflicts_are_read_from_v3_line_errors() {
        let message = "invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::integer";
        assert_eq!(
            v3_conflict(message, "home"),
            Some(conflict("home", "temp", FieldType::Float))
        );
        let tag = "invalid column type for column 'host', expected iox::column_type::tag, got iox::column_type::field::string";
        assert_eq!(v3_conflict(tag, "home"), None);
        assert_eq!(v3_conflict("No fields were provided", "home"), None);
    }

    #[test]
    fn learning_says_what_is_news() {
        let mut schema = Schema::default();
        assert!(schema.is_empty());
        assert!(schema.learn(&conflict("m", "f", FieldType::Float)));
        assert!(!schema.learn(&conflict("m", "f", FieldType::Float)));
        assert!(schema.learn(&conflict("m", "f", FieldType::Integer)));
        assert_eq!(schema.field_type("m", "f"), Some(FieldType::Integer));
        assert_eq!(schema.field_type("m", "g"), None);
    }

    /// Converts `line` with `m.f` learned as `to`; the converted line, or `None` when kept.
    fn check(to: FieldType, line: &str, expected: Option<&str>) {
        let mut schema = Schema::default();
        schema.learn(&conflict("m x", "f g", to));
        schema.learn(&conflict("m x", "h", to));
        let mut out = b"before|".to_vec();
        let converted = schema.convert_line(line.as_bytes(), &mut out);
        match expected {
            Some(expected) => {
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("before|{expected}"),
                    "{line}"
                );
                assert!(!converted.is_empty());
                assert!(converted
                    .iter()
                    .all(|c| c.measurement == "m x" && c.to == to));
            }
            None => {
                assert_eq!(out, b"before|", "{line} should be kept");
                assert!(converted.is_empty(), "{line}");
            }
        }
    }

    #[test]
    fn integers_into_float_fields_when_exact() {
        use FieldType::Float;
        check(Float, "m\\ x f\\ g=2i 1\n", Some("m\\ x f\\ g=2.0 1\n"));
        check(
            Float,
            "m\\ x,t=a\\ b f\\ g=-7i,h=3i 1\n",
            Some("m\\ x,t=a\\ b f\\ g=-7.0,h=3.0 1\n"),
        );
        check(Float, "m\\ x f\\ g=0i", Some("m\\ x f\\ g=0.0"));
        check(
            Float,
            "m\\ x f\\ g=9007199254740992i 1\n",
            Some("m\\ x f\\ g=9007199254740992.0 1\n"),
        );
        check(
            Float,
            "m\\ x f\\ g=-9007199254740992i 1\n",
            Some("m\\ x f\\ g=-9007199254740992.0 1\n"),
        );
        check(Float, "m\\ x f\\ g=12u 1\n", Some("m\\ x f\\ g=12.0 1\n"));
        // 2^53 + 1 has no float of its own.
        check(Float, "m\\ x f\\ g=9007199254740993i 1\n", None);
        check(Float, "m\\ x f\\ g=18446744073709551615u 1\n", None);
        check(Float, "m\\ x f\\ g=1.5 1\n", None);
        check(Float, "m\\ x f\\ g=\"2i\" 1\n", None);
        check(Float, "m\\ x f\\ g=true 1\n", None);
        // Another measurement, another field, or a field name that only looks alike.
        check(Float, "m f\\ g=2i 1\n", None);
        check(Float, "m\\ x f=2i 1\n", None);
        check(Float, "m\\ x s=\"f\\ g=2i,h=3i\",k=1i 1\n", None);
    }

    #[test]
    fn integral_floats_into_integer_fields() {
        use FieldType::{Integer, Unsigned};
        check(Integer, "m\\ x f\\ g=2.0 1\n", Some("m\\ x f\\ g=2i 1\n"));
        check(Integer, "m\\ x f\\ g=-0.0 1\n", Some("m\\ x f\\ g=0i 1\n"));
        check(
            Integer,
            "m\\ x f\\ g=1e3,s=\"x\" 1\n",
            Some("m\\ x f\\ g=1000i,s=\"x\" 1\n"),
        );
        check(
            Integer,
            "m\\ x f\\ g=9.2233720368547748e18 1\n",
            Some("m\\ x f\\ g=9223372036854774784i 1\n"),
        );
        check(Integer, "m\\ x f\\ g=2.5 1\n", None);
        check(Integer, "m\\ x f\\ g=9.223372036854775808e18 1\n", None);
        check(Integer, "m\\ x f\\ g=1e300 1\n", None);
        check(Integer, "m\\ x f\\ g=\"2\" 1\n", None);
        check(Integer, "m\\ x f\\ g=false 1\n", None);
        check(Integer, "m\\ x f\\ g=5u 1\n", Some("m\\ x f\\ g=5i 1\n"));
        check(Unsigned, "m\\ x f\\ g=5i 1\n", Some("m\\ x f\\ g=5u 1\n"));
        check(Unsigned, "m\\ x f\\ g=-5i 1\n", None);
        check(Unsigned, "m\\ x f\\ g=3.0 1\n", Some("m\\ x f\\ g=3u 1\n"));
        check(Unsigned, "m\\ x f\\ g=-3.0 1\n", None);
    }

    #[test]
    fn strings_and_bools_never_convert() {
        check(FieldType::String, "m\\ x f\\ g=2i 1\n", None);
        check(FieldType::Boolean, "m\\ x f\\ g=1i 1\n", None);
    }

    #[test]
    fn lines_that_are_not_line_protocol_are_kept() {
        for line in [
            "",
            "m\\ x",
            "m\\ x f\\ g",
            "m\\ x f\\ g= 1",
            "m\\ x f\\ g=\"open",
        ] {
            check(FieldType::Float, line, None);
        }
        assert_eq!(
            measurement_of(b"a\\,b\\ c,t=1 f=1i 5\n").as_deref(),
            Some("a,b c")
        );
        assert_eq!(measurement_of(b"nothing"), None);
    }
}
