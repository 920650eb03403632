//! Record mapping: one JetStream payload in, one InfluxDB line-protocol line out.
//!
//! The worker threads run this module: each fetched message's payload (the Transfer client's
//! `{"tags": {...}, "fields": {...}, "time": "..."}` JSON) and where it sits in its stream
//! (its [`Origin`]: stream sequence and JetStream timestamp) go into [`Encoder::encode`],
//! which appends exactly one line to the batch buffer the worker hands to the writer, or
//! returns a [`RecordError`] saying why the record can never be written, so the worker
//! dead-letters it instead. The module is pure — no IO, no logging, no clock — because the
//! same record must always give the same line: a redelivered record has to produce the very
//! same point so InfluxDB overwrites it instead of duplicating it, and a pure function can be
//! tested exhaustively as a plain function.
//!
//! InfluxDB keeps one point per measurement, tag set and timestamp, so distinct records that
//! share all three would silently merge. [`point_time`] keeps them apart by moving a written
//! time by the record's stream sequence, by less than the producer's own resolution: a pure
//! function of the record and its sequence, never of arrival order or batch position.
//!
//! Names (measurement, tag keys and values, field keys) are written only when InfluxDB 1.x
//! and 2.x (the Go parser) and InfluxDB 3.x (whose parser is the `influxdb-line-protocol`
//! crate the tests check against) read them back as the same text; anything they would read
//! differently is refused with a reason rather than written ambiguously.

use crate::calendar::{days_from_civil, days_in_month};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use crate::json::{self, Failed, Scanner};

/// Whether the target database accepts unsigned integers (`u` suffix): InfluxDB v2 does, v1 does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsigned {
    Allowed,
    Refused,
}

/// Where a record sits in its JetStream stream, read from the `$JS.ACK` reply subject of its
/// delivery: the same for every delivery of the record, whichever collector gets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The record's sequence number in its stream: unique within the stream.
    pub stream_sequence: u64,
    /// When the stream stored the record, in nanoseconds since the epoch: the point's time
    /// when the payload has no `time`.
    pub timestamp_ns: i64,
}

/// A `time` as the producer wrote it: its instant and how finely it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenTime {
    /// Nanoseconds since the epoch.
    pub ns: i64,
    /// How many fraction-of-second digits the text has (0 to 9), trailing zeros included:
    /// `…:00Z` has 0, `…:00.120Z` has 3. This is the producer's resolution.
    pub fraction_digits: u8,
}

/// The timestamp of the point a record with a written `time` becomes: the written time
/// `time_ns` plus `stream_sequence mod span` nanoseconds, where `span` is the producer's unit
/// (`10^(9 - fraction_digits)` ns) capped at 1 ms.
///
/// InfluxDB keeps one point per measurement, tag set and timestamp, so without this, distinct
/// records with the same tags and the same coarse `time` (1,000 log lines in one second)
/// would overwrite each other. The shift depends only on the record's stream sequence, which
/// every redelivery carries unchanged, so a redelivered record still gives the very same
/// point; and it adds no tag, so series cardinality does not grow.
///
/// - 0 to 3 digits (seconds, milliseconds): + (sequence mod 1,000,000) ns, under 1 ms;
/// - 6 digits (microseconds): + (sequence mod 1000) ns; 9 digits: unchanged.
///
/// The point stays within the producer's own unit (and under 1 ms away), and records of one
/// unit keep their stream order except where the sequence wraps at the span.
///
/// Near the top of the range InfluxDB stores, where the shifted time would pass
/// 2262-04-11T23:47:16.854775806Z (only times in the last millisecond before it), the shift
/// is subtracted instead, so such a record is still stored, still distinct from the others of
/// its time, and still the same point on redelivery. `time_ns` is a time InfluxDB stores
/// (already checked); the result then is one too. More than 9 digits counts as 9.
pub fn point_time(time_ns: i64, fraction_digits: u8, stream_sequence: u64) -> i64 {
    // The span is min(10^(9 - digits), 10^6): under a millisecond, so a point never moves by
    // as much as the coarsest resolution a reader usually looks at. Each arm divides by a
    // constant, which compiles to a multiplication instead of a 64-bit division.
    let shift = match fraction_digits {
        0..=3 => stream_sequence % 1_000_000,
        4 => stream_sequence % 100_000,
        5 => stream_sequence % 10_000,
        6 => stream_sequence % 1_000,
        7 => stream_sequence % 100,
        8 => stream_sequence % 10,
        _ => 0,
    };
    // Below 1,000,000, so the conversion is exact.
    let shift = shift as i64;
    match time_ns.checked_add(shift) {
        Some(shifted) if shifted <= MAX_TIME_NS => shifted,
        _ => time_ns.saturating_sub(shift),
    }
}

/// Encodes records of one measurement. Built once per measurement (escapes the measurement once).
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The measurement as it is written at the start of every line, already escaped.
    measurement: Box<[u8]>,
    unsigned: Unsigned,
}

/// Why a record can never be written. Display is one lowercase line naming the offending key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordError {
    /// The payload is not UTF-8 JSON, or a string in it is not valid Unicode; `message` says
    /// where.
    NotJson { message: String },
    /// The payload (`key` = "payload"), its `tags` or its `fields` is JSON but not an object.
    NotAnObject { key: &'static str, found: JsonKind },
    /// A key appears twice in the payload, in `tags` or in `fields` (`section`); which one
    /// was meant is unknowable, so neither is written.
    DuplicateKey { section: &'static str, key: String },
    /// `fields` is absent, empty, or holds only nulls: InfluxDB needs at least one field.
    NoFields,
    /// The measurement, a tag key, a tag value or a field key cannot be written as is.
    /// `key` is the measurement itself for [`Part::Measurement`], otherwise the tag or field key.
    BadName {
        part: Part,
        key: String,
        problem: NameProblem,
    },
    /// A tag value is an object or an array; tags are flat strings.
    TagNotScalar { key: String, found: JsonKind },
    /// An integer field above `i64::MAX` for a database without an unsigned type.
    UnsignedRefused { key: String, value: u64 },
    /// An integer field above `u64::MAX` or below `i64::MIN`; `text` is the JSON number.
    IntegerOutOfRange { key: String, text: String },
    /// A float field whose magnitude is too large for a 64-bit float (e.g. `1e400`).
    FloatOutOfRange { key: String, text: String },
    /// `time` is present but neither a string nor null.
    TimeNotString { found: JsonKind },
    /// `time` is not RFC 3339 as accepted here; `reason` says what is wrong.
    TimeUnparsable { text: String, reason: &'static str },
    /// `time` (or the message timestamp standing in for it) is outside the nanosecond range
    /// InfluxDB stores, -9223372036854775806 to 9223372036854775806 (a little narrower than
    /// `i64`; InfluxDB refuses the ends).
    TimeOutOfRange { text: String },
    /// The escaped measurement and tags are longer than InfluxDB's 65535-byte series key.
    SeriesKeyTooLong { n_bytes: usize },
}

/// Which name of the line a [`RecordError::BadName`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

/// What is wrong with a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    Empty,
    /// `\n` or `\r`: a line break ends the line in every parser.
    LineBreak,
    /// The InfluxDB 3.x parser (and the reference crate) treats a tab as a separator in
    /// names and has no escape for it, while InfluxDB 1.x/2.x keep it.
    Tab,
    /// A backslash at the end, or before `\`, `"`, `,`, `=` or a space. InfluxDB 1.x/2.x keep
    /// `\\` as two backslashes and drop the backslash of `\"` in measurements and field keys,
    /// while InfluxDB 3.x reads `\\` as one backslash and keeps `\"`; a trailing backslash
    /// escapes the separator that follows it in 1.x/2.x and is refused by 3.x. No spelling
    /// reads back the same everywhere.
    AmbiguousBackslash,
    /// `time` as a tag key makes InfluxDB refuse the point; as a field key InfluxDB silently
    /// drops the field.
    ReservedTime,
    /// A NUL character in the measurement: the InfluxDB 3.x parser refuses it.
    Nul,
    /// A measurement starting with `#` turns the line into a comment that every parser skips.
    Comment,
}

/// The JSON type of a value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl JsonKind {
    /// The kind of a raw JSON value, from its first byte (the value is already known to be
    /// valid JSON without leading whitespace).
    fn of_raw(raw: &str) -> JsonKind {
        match raw.as_bytes().first() {
            Some(b'n') => JsonKind::Null,
            Some(b't' | b'f') => JsonKind::Bool,
            Some(b'"') => JsonKind::String,
            Some(b'[') => JsonKind::Array,
            Some(b'{') => JsonKind::Object,
            _ => JsonKind::Number,
        }
    }
}

/// The nanosecond bounds InfluxDB 1.x and 2.x accept (`models.MinNanoTime`/`MaxNanoTime`);
/// a line outside them is refused with "time outside range".
const MIN_TIME_NS: i64 = i64::MIN + 2;
const MAX_TIME_NS: i64 = i64::MAX - 1;

/// InfluxDB refuses a point whose series key (escaped measurement and tags) is longer.
const MAX_SERIES_KEY_BYTES: usize = 65535;

impl Encoder {
    pub fn new(measurement: &str, unsigned: Unsigned) -> Result<Encoder, RecordError> {
        let bad = |problem| RecordError::BadName {
            part: Part::Measurement,
            key: measurement.to_owned(),
            problem,
        };
        if measurement.starts_with('#') {
            return Err(bad(NameProblem::Comment));
        }
        if measurement.contains('\0') {
            return Err(bad(NameProblem::Nul));
        }
        let mut escaped = Vec::with_capacity(measurement.len());
        write_name(&mut escaped, measurement, Part::Measurement).map_err(bad)?;
        Ok(Encoder {
            measurement: escaped.into_boxed_slice(),
            unsigned,
        })
    }

    /// Appends exactly one line plus a trailing '\n' to `out`. `origin` is where the record sits
    /// in its stream: its sequence keeps records of the same written `time` apart
    /// ([`point_time`]), and its timestamp is the point's time when the payload has no `time`.
    /// The line depends on nothing else, so every delivery of a record gives the same line.
    /// On error `out` is left exactly as it was.
    pub fn encode(
        &self,
        payload: &[u8],
        origin: Origin,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let start = out.len();
        #[cfg(debug_assertions)]
        test_hook::break_if_marked(payload);
        let result = self.encode_line(payload, origin, out);
        if result.is_err() {
            // The line is built in place to avoid a copy; a refused record must leave no trace
            // in the batch, so whatever part of it was written goes again.
            out.truncate(start);
        }
        result
    }

    fn encode_line(
        &self,
        payload: &[u8],
        origin: Origin,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        // Checking UTF-8 once up front lets the scanner hand out every string and raw value
        // as `&str` without validating each again.
        let text = std::str::from_utf8(payload).map_err(|e| RecordError::NotJson {
            message: format!("payload is not utf-8: {e}"),
        })?;
        let top = read_payload(text)?;
        let payload = match top {
            Top::Object(payload) => payload,
            Top::Other(found) => {
                return Err(RecordError::NotAnObject {
                    key: "payload",
                    found,
                })
            }
        };
        if let Some(key) = payload.duplicate {
            return Err(RecordError::DuplicateKey {
                section: "payload",
                key: key.into_owned(),
            });
        }
        let tags = payload.tags.range("tags")?;
        let fields = payload.fields.range("fields")?;
        let mut entries = payload.entries;
        // The stream's timestamp is already in nanoseconds and unique to the record, so it
        // counts as written with 9 digits: it is kept as it is.
        let written = match payload.time {
            Some(raw) if raw != "null" => time_from_raw(raw)?,
            _ => WrittenTime {
                ns: origin.timestamp_ns,
                fraction_digits: 9,
            },
        };
        let time_ns = written.ns;
        if !(MIN_TIME_NS..=MAX_TIME_NS).contains(&time_ns) {
            let text = match payload.time {
                // Only a string that parsed gets here.
                Some(raw) if raw != "null" => {
                    json_string(raw).map_or_else(|_| raw.to_owned(), Cow::into_owned)
                }
                _ => format!("{time_ns} ns (the message timestamp)"),
            };
            return Err(RecordError::TimeOutOfRange { text });
        }
        let time_ns = point_time(time_ns, written.fraction_digits, origin.stream_sequence);

        // Sorted by key (byte order, as Go's bytes.Compare) so the same record always gives
        // the same line and InfluxDB need not sort the tags itself.
        sort_and_check(&mut entries[tags.clone()], "tags")?;
        sort_and_check(&mut entries[fields.clone()], "fields")?;

        let line_start = out.len();
        out.extend_from_slice(&self.measurement);
        for (key, raw) in &entries[tags] {
            write_tag(out, key, raw)?;
        }
        let n_series_bytes = out.len() - line_start;
        if n_series_bytes > MAX_SERIES_KEY_BYTES {
            return Err(RecordError::SeriesKeyTooLong {
                n_bytes: n_series_bytes,
            });
        }

        let mut n_fields = 0usize;
        for &(ref key, raw) in &entries[fields] {
            if raw == "null" {
                continue;
            }
            out.push(if n_fields == 0 { b' ' } else { b',' });
            n_fields += 1;
            self.write_field(out, key, raw)?;
        }
        if n_fields == 0 {
            return Err(RecordError::NoFields);
        }

        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(time_ns).as_bytes());
        out.push(b'\n');
        Ok(())
    }

    fn write_field(&self, out: &mut Vec<u8>, key: &str, raw: &str) -> Result<(), RecordError> {
        if key == "time" {
            return Err(bad_name(Part::FieldKey, key, NameProblem::ReservedTime));
        }
        write_name(out, key, Part::FieldKey).map_err(|p| bad_name(Part::FieldKey, key, p))?;
        out.push(b'=');
        match JsonKind::of_raw(raw) {
            // Nulls are skipped before this point; `null` would not reach the line.
            JsonKind::Bool | JsonKind::Null => out.extend_from_slice(raw.as_bytes()),
            JsonKind::String => {
                out.push(b'"');
                decode_json_string(raw, out, Quoting::Field).map_err(|problem| {
                    RecordError::NotJson {
                        message: format!("field {}: {problem}", Shown(key)),
                    }
                })?;
                out.push(b'"');
            }
            JsonKind::Array | JsonKind::Object => {
                out.push(b'"');
                write_compact_json_as_field(out, raw);
                out.push(b'"');
            }
            JsonKind::Number => self.write_number(out, key, raw)?,
        }
        Ok(())
    }

    fn write_number(&self, out: &mut Vec<u8>, key: &str, raw: &str) -> Result<(), RecordError> {
        // JSON decides the type by spelling, not by value: `1.0` and `1e3` are floats even
        // though they are integral, so the field keeps one type whatever the producer's values.
        if raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            if is_ryu_text(raw.as_bytes()) {
                out.extend_from_slice(raw.as_bytes());
                return Ok(());
            }
            // Rust's parser is correctly rounded, unlike serde_json's default fast path, so
            // the value is the nearest double to the producer's text.
            let value: f64 = raw.parse().map_err(|_| float_out_of_range(key, raw))?;
            if !value.is_finite() {
                return Err(float_out_of_range(key, raw));
            }
            // ryu writes the shortest text that reads back to the same bits (`1.0`, `5e-324`,
            // `1.7976931348623157e308`); InfluxDB 1.x and 3.x both read these exponent forms.
            out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
            return Ok(());
        }
        if let Ok(value) = raw.parse::<i64>() {
            // A JSON integer is already in canonical decimal form, except for `-0`.
            if value == 0 {
                out.push(b'0');
            } else {
                out.extend_from_slice(raw.as_bytes());
            }
            out.push(b'i');
            return Ok(());
        }
        match raw.parse::<u64>() {
            Ok(value) if self.unsigned == Unsigned::Allowed => {
                out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
                out.push(b'u');
                Ok(())
            }
            // Writing it as a float would silently change the value and fix the field's type
            // to float for good; the record is refused instead.
            Ok(value) => Err(RecordError::UnsignedRefused {
                key: key.to_owned(),
                value,
            }),
            Err(_) => Err(RecordError::IntegerOutOfRange {
                key: key.to_owned(),
                text: raw.to_owned(),
            }),
        }
    }
}

/// Whether `raw`, a JSON number with a fraction or an exponent, is already exactly the text
/// ryu writes for its value, so it can be copied instead of parsed and formatted again (which
/// is most of a record's float cost). True for the plain decimals producers usually send
/// (`12.5`, `0.001`, `3.0`) when:
/// - there is no exponent and no superfluous trailing zero (only `.0` for integral values);
/// - there are at most 15 significant digits: every such decimal reads back from its double
///   unchanged (`f64::DIGITS`), so no shorter text names the same double, and ryu's shortest
///   digits are exactly these;
/// - the magnitude is where ryu uses plain notation, 1e-5 to below 1e16.
fn is_ryu_text(raw: &[u8]) -> bool {
    let unsigned = raw.strip_prefix(b"-").unwrap_or(raw);
    let Some(point) = unsigned.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (integer, fraction) = (&unsigned[..point], &unsigned[point + 1..]);
    // JSON has already guaranteed digits on both sides of the point and no leading zero
    // other than a lone `0`; what is left to rule out is an exponent.
    if !fraction.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let is_zero = |d: &u8| *d == b'0';
    if fraction == b"0" {
        // An integral value: ryu writes its digits, the zeros up to the point, and `.0`.
        let n_trailing_zeros = integer.iter().rev().take_while(|d| is_zero(d)).count();
        return integer == b"0" || (integer.len() <= 16 && integer.len() - n_trailing_zeros <= 15);
    }
    if fraction.last().is_some_and(is_zero) {
        return false;
    }
    if integer == b"0" {
        let n_leading_zeros = fraction.iter().take_while(|d| is_zero(d)).count();
        n_leading_zeros <= 4 && fraction.len() - n_leading_zeros <= 15
    } else {
        integer.len() + fraction.len() <= 15
    }
}

fn bad_name(part: Part, key: &str, problem: NameProblem) -> RecordError {
    RecordError::BadName {
        part,
        key: key.to_owned(),
        problem,
    }
}

fn float_out_of_range(key: &str, raw: &str) -> RecordError {
    RecordError::FloatOutOfRange {
        key: key.to_owned(),
        text: raw.to_owned(),
    }
}

/// Appends `,key=value` for one tag, or nothing when the value is empty or null.
fn write_tag(out: &mut Vec<u8>, key: &str, raw: &str) -> Result<(), RecordError> {
    let value: Cow<'_, str> = match JsonKind::of_raw(raw) {
        JsonKind::Null => return Ok(()),
        JsonKind::String => json_string(raw).map_err(|problem| RecordError::NotJson {
            message: format!("tag {}: {problem}", Shown(key)),
        })?,
        // Numbers and booleans keep their JSON spelling; it needs no escaping.
        JsonKind::Bool | JsonKind::Number => Cow::Borrowed(raw),
        found @ (JsonKind::Array | JsonKind::Object) => {
            return Err(RecordError::TagNotScalar {
                key: key.to_owned(),
                found,
            })
        }
    };
    if value.is_empty() {
        return Ok(());
    }
    if key == "time" {
        return Err(bad_name(Part::TagKey, key, NameProblem::ReservedTime));
    }
    out.push(b',');
    write_name(out, key, Part::TagKey).map_err(|p| bad_name(Part::TagKey, key, p))?;
    out.push(b'=');
    write_name(out, &value, Part::TagValue).map_err(|p| bad_name(Part::TagValue, key, p))?;
    Ok(())
}

/// Sorts entries by key and refuses a key that appears twice.
fn sort_and_check(entries: &mut [Entry<'_>], section: &'static str) -> Result<(), RecordError> {
    // Go's encoding/json writes map keys sorted, so most records arrive sorted: one pass
    // confirms it, and that no key repeats, without moving anything.
    if entries
        .windows(2)
        .all(|pair| key_order(&pair[0].0, &pair[1].0) == Ordering::Less)
    {
        return Ok(());
    }
    entries.sort_unstable_by(|a, b| key_order(&a.0, &b.0));
    match entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        Some(pair) => Err(RecordError::DuplicateKey {
            section,
            key: pair[0].0.clone().into_owned(),
        }),
        None => Ok(()),
    }
}

/// Byte order, as Go's `bytes.Compare` (and `str`'s `Ord`), compared inline: keys are short
/// and usually differ in their first bytes, where a `memcmp` call costs more than the loop.
fn key_order(a: &str, b: &str) -> Ordering {
    a.as_bytes().iter().cmp(b.as_bytes().iter())
}

/// Marks the bytes that need more than a plain copy in a name, so the common name (letters,
/// digits, `_`, `-`, `.`) is checked with one table lookup per byte and copied in one go.
const NAME_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table[b'\t' as usize] = true;
    table[b' ' as usize] = true;
    table[b',' as usize] = true;
    table[b'=' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `name` escaped for `part`: comma and space always, equals sign except in the
/// measurement (as the line protocol reference says).
fn write_name(out: &mut Vec<u8>, name: &str, part: Part) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    let bytes = name.as_bytes();
    if !bytes.iter().any(|&b| NAME_SPECIAL[b as usize]) {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' | b'\r' => return Err(NameProblem::LineBreak),
            b'\t' => return Err(NameProblem::Tab),
            b',' | b' ' => out.extend_from_slice(&[b'\\', b]),
            b'=' if part != Part::Measurement => out.extend_from_slice(&[b'\\', b]),
            b'\\' => match bytes.get(i + 1) {
                None | Some(b'\\' | b'"' | b',' | b'=' | b' ') => {
                    return Err(NameProblem::AmbiguousBackslash)
                }
                // Before any other character a backslash is kept as is by every parser.
                Some(_) => out.push(b),
            },
            _ => out.push(b),
        }
    }
    Ok(())
}

/// The text of a JSON string given as its raw JSON (quotes included). Borrowed unless it has
/// escapes, which are rare in tags and `time`.
fn json_string(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    let mut text = Vec::with_capacity(inner.len());
    decode_json_string(raw, &mut text, Quoting::None)?;
    // Decoding valid UTF-8 and pushing whole characters gives valid UTF-8.
    String::from_utf8(text)
        .map(Cow::Owned)
        .map_err(|_| "invalid utf-8")
}

/// Whether a decoded JSON string is to become a line-protocol string field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    None,
    /// `"` and `\` get a backslash, as a string field value needs.
    Field,
}

/// Appends the text of a raw JSON string (quotes included), quoted as `quoting` says;
/// everything else (newlines too) is written raw. Decodes JSON escapes in place so a string
/// field never costs an allocation.
fn decode_json_string(raw: &str, out: &mut Vec<u8>, quoting: Quoting) -> Result<(), &'static str> {
    let text = &raw[1..raw.len() - 1];
    let inner = text.as_bytes();
    // Without a backslash a JSON string holds no `"` or `\` either (both must be escaped in
    // JSON), so the bytes are already a valid field value. (`str::find` of one ASCII byte
    // is a word-at-a-time memchr, several times faster than a byte loop on a long message.)
    let Some(first) = text.find('\\') else {
        out.extend_from_slice(inner);
        return Ok(());
    };
    out.extend_from_slice(&inner[..first]);
    let mut i = first;
    while i < inner.len() {
        if inner[i] != b'\\' {
            // Plain bytes up to the next escape are copied in one go. Escapes decode to whole
            // characters, so `i` is always on a character boundary here.
            let end = text[i..].find('\\').map_or(inner.len(), |n| i + n);
            out.extend_from_slice(&inner[i..end]);
            i = end;
            continue;
        }
        // The scanner has validated the escapes' syntax (it does not decode values): a
        // valid letter follows every backslash and four hex digits follow every `u`. Lone
        // surrogates pass that check, so they are caught here.
        let decoded = match inner[i + 1] {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let (c, len) = decode_unicode_escape(&inner[i..])?;
                i += len - 2;
                c
            }
        };
        i += 2;
        if quoting == Quoting::Field && matches!(decoded, '"' | '\\') {
            out.push(b'\\');
        }
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
    }
    Ok(())
}

/// Decodes `\uXXXX` (or a `\uD8XX\uDCXX` surrogate pair) at the start of `escape`, returning
/// the character and how many bytes it took.
fn decode_unicode_escape(escape: &[u8]) -> Result<(char, usize), &'static str> {
    let high = hex4(&escape[2..6]);
    if !(0xD800..0xE000).contains(&high) {
        // Not a surrogate, so a valid scalar value.
        return Ok((char::from_u32(high).unwrap_or('\u{fffd}'), 6));
    }
    if high >= 0xDC00 {
        return Err("lone trailing surrogate in a \\u escape");
    }
    if escape.len() < 12 || escape[6] != b'\\' || escape[7] != b'u' {
        return Err("lone leading surrogate in a \\u escape");
    }
    let low = hex4(&escape[8..12]);
    if !(0xDC00..0xE000).contains(&low) {
        return Err("lone leading surrogate in a \\u escape");
    }
    let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    Ok((char::from_u32(c).unwrap_or('\u{fffd}'), 12))
}

/// The value of four hex digits (already validated by the scanner).
fn hex4(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |acc, &d| {
        (acc << 4) | char::from(d).to_digit(16).unwrap_or(0)
    })
}

/// Appends a raw JSON object or array as a string field: its JSON text with the whitespace
/// between tokens removed, escaped for line protocol. Keys keep their order and numbers and
/// strings their spelling, so nothing of the producer's text is lost or rounded (a
/// re-serialization through `serde_json::Value` would sort keys and turn `1e400` or a
/// 30-digit integer into an error or a rounded float).
fn write_compact_json_as_field(out: &mut Vec<u8>, raw: &str) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn time_from_raw(raw: &str) -> Result<WrittenTime, RecordError> {
    match JsonKind::of_raw(raw) {
        JsonKind::String => {
            let text = json_string(raw).map_err(|problem| RecordError::NotJson {
                message: format!("time: {problem}"),
            })?;
            parse_rfc3339(&text)
        }
        found => Err(RecordError::TimeNotString { found }),
    }
}

/// Parses RFC3339 (0–9 fraction digits, `Z`/`z` or ±hh:mm) to ns since the epoch; pub because the CLI reuses it.
///
/// The layout is `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, `T` and `Z` in either case as
/// RFC 3339 allows. A leap second (`:60`) is refused, as Go's `time.Parse` does, because
/// nanoseconds since the epoch cannot name it.
pub fn parse_rfc3339_ns(text: &str) -> Result<i64, RecordError> {
    parse_rfc3339(text).map(|written| written.ns)
}

/// [`parse_rfc3339_ns`] that also says how many fraction digits the text has, counted while
/// parsing: the encoder needs both for [`point_time`].
pub fn parse_rfc3339(text: &str) -> Result<WrittenTime, RecordError> {
    let (ns, fraction_digits) =
        rfc3339_to_ns(text.as_bytes()).map_err(|reason| RecordError::TimeUnparsable {
            text: text.to_owned(),
            reason,
        })?;
    let ns = i64::try_from(ns).map_err(|_| RecordError::TimeOutOfRange {
        text: text.to_owned(),
    })?;
    Ok(WrittenTime {
        ns,
        fraction_digits,
    })
}

/// The parser behind [`parse_rfc3339`], free of allocation until it fails: nanoseconds and
/// the number of fraction digits. The nanoseconds are an i128 so the edge cases stay exact:
/// near the lower end the whole seconds alone are below i64::MIN nanoseconds while seconds
/// plus fraction are not.
fn rfc3339_to_ns(b: &[u8]) -> Result<(i128, u8), &'static str> {
    const LAYOUT: &str = "expected YYYY-MM-DDTHH:MM:SS";
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(LAYOUT);
    }
    // A digit's value, or more than 9 for any other byte: the digits of the date and time are
    // checked in one pass, then read without further checks.
    let digit = |i: usize| u32::from(b[i].wrapping_sub(b'0'));
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if DIGITS.iter().any(|&i| digit(i) > 9) {
        return Err(LAYOUT);
    }
    let two = |i: usize| digit(i) * 10 + digit(i + 1);
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minute out of range");
    }
    if second > 59 {
        return Err("second out of range (leap seconds are not supported)");
    }

    let mut i = 19;
    let mut nanos = 0;
    let mut n_fraction_digits = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start == 9 {
                return Err("more than 9 fraction digits");
            }
            nanos = nanos * 10 + digit(i);
            i += 1;
        }
        if i == start {
            return Err("no digit after the decimal point");
        }
        const SCALE: [u32; 9] = [
            1,
            10,
            100,
            1_000,
            10_000,
            100_000,
            1_000_000,
            10_000_000,
            100_000_000,
        ];
        n_fraction_digits = i - start;
        nanos *= SCALE[9 - n_fraction_digits];
    }

    const OFFSET: &str = "expected Z or an offset ±hh:mm";
    let offset_seconds = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            if [i + 1, i + 2, i + 4, i + 5].iter().any(|&j| digit(j) > 9) {
                return Err(OFFSET);
            }
            let (hours, minutes) = (two(i + 1), two(i + 4));
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return Err(OFFSET),
    };

    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    // At most 9, checked in the loop above.
    let n_fraction_digits = n_fraction_digits as u8;
    Ok((
        i128::from(seconds) * 1_000_000_000 + i128::from(nanos),
        n_fraction_digits,
    ))
}

// ---------------------------------------------------------------------------------------
// Decoding: the payload is read into borrowed slices by the JSON scanner. Tag and field
// values stay raw JSON text until they are written, so no value is converted twice and
// numbers keep the producer's exact spelling.

/// One tag or field: its key (borrowed unless the JSON key had escapes) and raw JSON value.
type Entry<'a> = (Cow<'a, str>, &'a str);

/// The top-level JSON value: the payload object, or the kind of whatever else it was.
enum Top<'a> {
    Object(Payload<'a>),
    Other(JsonKind),
}

struct Payload<'a> {
    /// The tags and the fields, in one vector so a record costs one allocation.
    entries: Vec<Entry<'a>>,
    tags: Members,
    fields: Members,
    time: Option<&'a str>,
    /// The first top-level key seen twice.
    duplicate: Option<Cow<'a, str>>,
}

/// `tags` or `fields`: where its members are in [`Payload::entries`], or what it was instead
/// of an object.
enum Members {
    Absent,
    Object(Range<usize>),
    Other(JsonKind),
}

impl Members {
    fn range(&self, key: &'static str) -> Result<Range<usize>, RecordError> {
        match self {
            // A null `tags` or `fields` is read as an empty one, as Go's decoder does.
            Members::Absent | Members::Other(JsonKind::Null) => Ok(0..0),
            Members::Object(range) => Ok(range.clone()),
            Members::Other(found) => Err(RecordError::NotAnObject { key, found: *found }),
        }
    }
}

/// Reads the whole payload, checking all of it is JSON (keys nobody reads too).
fn read_payload(text: &str) -> Result<Top<'_>, RecordError> {
    let mut scanner = Scanner::new(text);
    let top = read_top(&mut scanner).and_then(|top| {
        scanner.finish()?;
        Ok(top)
    });
    top.map_err(|stop| match stop {
        Stop::Record(e) => e,
        Stop::Json(Failed) => RecordError::NotJson {
            message: scanner.failure().to_string(),
        },
    })
}

/// Why reading a payload stopped: not JSON (the scanner knows where), or a record error.
enum Stop {
    Json(Failed),
    Record(RecordError),
}

impl From<Failed> for Stop {
    fn from(failed: Failed) -> Stop {
        Stop::Json(failed)
    }
}

impl From<RecordError> for Stop {
    fn from(e: RecordError) -> Stop {
        Stop::Record(e)
    }
}

fn read_top<'a>(scanner: &mut Scanner<'a>) -> Result<Top<'a>, Stop> {
    if scanner.peek_value()? != b'{' {
        return Ok(Top::Other(JsonKind::of_raw(scanner.value()?)));
    }
    let mut payload = Payload {
        // Sixteen covers the usual record, so the vector is allocated once.
        entries: Vec::with_capacity(16),
        tags: Members::Absent,
        fields: Members::Absent,
        time: None,
        duplicate: None,
    };
    let mut seen = [false; 3];
    let mut object = scanner.object()?;
    while let Some(key) = scanner.next_key(&mut object)? {
        let key = key_text(key)?;
        let slot = match key.as_ref() {
            "tags" => 0,
            "fields" => 1,
            "time" => 2,
            _ => {
                scanner.value()?;
                continue;
            }
        };
        if seen[slot] && payload.duplicate.is_none() {
            payload.duplicate = Some(key);
        }
        seen[slot] = true;
        match slot {
            0 => payload.tags = read_members(scanner, &mut payload.entries)?,
            1 => payload.fields = read_members(scanner, &mut payload.entries)?,
            _ => payload.time = Some(scanner.value()?),
        }
    }
    Ok(Top::Object(payload))
}

/// Reads `tags` or `fields`, appending its members to the payload's one vector.
fn read_members<'a>(
    scanner: &mut Scanner<'a>,
    entries: &mut Vec<Entry<'a>>,
) -> Result<Members, Stop> {
    if scanner.peek_value()? != b'{' {
        return Ok(Members::Other(JsonKind::of_raw(scanner.value()?)));
    }
    let start = entries.len();
    let mut object = scanner.object()?;
    while let Some(key) = scanner.next_key(&mut object)? {
        let key = key_text(key)?;
        entries.push((key, scanner.value()?));
    }
    Ok(Members::Object(start..entries.len()))
}

/// A key's text, borrowed from the payload unless it has escapes. (Inlined, with the rare
/// escaped key out of line: a large error type returned through memory for every key cost
/// more than reading the key.)
#[inline(always)]
fn key_text(key: json::Str<'_>) -> Result<Cow<'_, str>, Stop> {
    if !key.escaped {
        return Ok(Cow::Borrowed(key.inner()));
    }
    decode_key(key)
}

#[cold]
#[inline(never)]
fn decode_key(key: json::Str<'_>) -> Result<Cow<'_, str>, Stop> {
    json_string(key.raw).map_err(|problem| {
        Stop::Record(RecordError::NotJson {
            message: format!("key {}: {problem}", Shown(key.inner())),
        })
    })
}

// ---------------------------------------------------------------------------------------
// Messages.

/// A key or value in a message: quoted and escaped (so a newline in it cannot break the
/// message's single line) and cut at 80 characters (so a megabyte key cannot swell a
/// dead-letter header).
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 80;
        match self.0.char_indices().nth(MAX_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Empty => "is empty",
            NameProblem::LineBreak => "contains a line break, which would end the line",
            NameProblem::Tab => {
                "contains a tab, which InfluxDB 3 reads as a separator and cannot escape"
            }
            NameProblem::AmbiguousBackslash => {
                "has a backslash at its end or before a backslash, quote, comma, equals sign \
                 or space, which InfluxDB 1.x/2.x and 3.x read differently"
            }
            NameProblem::ReservedTime => "is \"time\", which InfluxDB refuses or drops",
            NameProblem::Nul => "contains a NUL character, which InfluxDB 3 refuses",
            NameProblem::Comment => "starts with '#', which makes the line a comment",
        })
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotJson { message } => write!(f, "payload is not json: {message}"),
            RecordError::NotAnObject { key, found } => {
                write!(f, "{key} is {found}, not a json object")
            }
            RecordError::DuplicateKey { section, key } => {
                write!(f, "{section}: key {} appears twice", Shown(key))
            }
            RecordError::NoFields => {
                f.write_str("fields: nothing to write (absent, empty or only nulls)")
            }
            RecordError::BadName { part, key, problem } => match part {
                Part::Measurement => write!(f, "measurement {}: {problem}", Shown(key)),
                Part::TagKey => write!(f, "tag key {}: {problem}", Shown(key)),
                Part::TagValue => write!(f, "tag {}: value {problem}", Shown(key)),
                Part::FieldKey => write!(f, "field key {}: {problem}", Shown(key)),
            },
            RecordError::TagNotScalar { key, found } => write!(
                f,
                "tag {}: value is {found}; a tag is a string, number or boolean",
                Shown(key)
            ),
            RecordError::UnsignedRefused { key, value } => write!(
                f,
                "field {}: integer {value} does not fit InfluxDB v1 (no unsigned type)",
                Shown(key)
            ),
            RecordError::IntegerOutOfRange { key, text } => write!(
                f,
                "field {}: integer {} is outside the 64-bit range",
                Shown(key),
                Shown(text)
            ),
            RecordError::FloatOutOfRange { key, text } => write!(
                f,
                "field {}: number {} is too large for a 64-bit float",
                Shown(key),
                Shown(text)
            ),
            RecordError::TimeNotString { found } => {
                write!(f, "time is {found}, not an rfc 3339 string")
            }
            RecordError::TimeUnparsable { text, reason } => {
                write!(f, "time {} is not rfc 3339: {reason}", Shown(text))
            }
            RecordError::TimeOutOfRange { text } => write!(
                f,
                "time {} is outside the range InfluxDB stores \
                 (1677-09-21T00:12:43.145224194Z to 2262-04-11T23:47:16.854775806Z)",
                Shown(text)
            ),
            RecordError::SeriesKeyTooLong { n_bytes } => write!(
                f,
                "tags: measurement and tags take {n_bytes} bytes, more than the 65535 InfluxDB accepts"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// A panic or an abort on demand, in debug builds only (the builds the tests run), so the
/// worker's handling of a record that breaks the encoder is tested through the real binary:
/// a record whose payload holds [`test_hook::PANIC_MARKER`] makes the encoder panic (caught
/// at the record's boundary), one holding [`test_hook::ABORT_MARKER`] ends the process
/// (counted by the suspects bucket, `suspects.rs`). Release builds have no such record.
#[cfg(debug_assertions)]
pub mod test_hook {
    pub const PANIC_MARKER: &[u8] = b"__collector_test_panic__";
    pub const ABORT_MARKER: &[u8] = b"__collector_test_abort__";

    pub fn break_if_marked(payload: &[u8]) {
        let holds = |marker: &[u8]| payload.windows(marker.len()).any(|w| w == marker);
        if holds(PANIC_MARKER) {
            panic!("test hook: a record marked to make the encoder panic");
        }
        if holds(ABORT_MARKER) {
            eprintln!("test hook: a record marked to abort the process");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message timestamp used when a payload has no `time`.
    const FALLBACK: i64 = 7;

    /// The stream sequence the table tests encode with: a multiple of every span, so
    /// [`point_time`] shifts nothing and the expected times are the written ones. The shift
    /// itself is tested on its own below.
    const SEQUENCE: u64 = 3_000_000;

    fn encode_with(
        measurement: &str,
        unsigned: Unsigned,
        payload: &[u8],
        fallback: i64,
    ) -> (Result<(), RecordError>, Vec<u8>) {
        encode_at(measurement, unsigned, payload, fallback, SEQUENCE)
    }

    fn encode_at(
        measurement: &str,
        unsigned: Unsigned,
        payload: &[u8],
        fallback: i64,
        stream_sequence: u64,
    ) -> (Result<(), RecordError>, Vec<u8>) {
        let encoder = Encoder::new(measurement, unsigned).expect("test measurement is valid");
        // A previous line already in the batch must survive both success and refusal.
        let mut out = b"previous line\n".to_vec();
        let origin = Origin {
            stream_sequence,
            timestamp_ns: fallback,
        };
        let result = encoder.encode(payload, origin, &mut out);
        (result, out)
    }

    /// Encodes `json` for measurement `m` (unsigned allowed, fallback time 7) and compares the
    /// line, then makes sure the reference parser reads it as exactly one line.
    fn check(json: &str, expected_line: &str) {
        check_with("m", Unsigned::Allowed, json, expected_line);
    }

    fn check_with(measurement: &str, unsigned: Unsigned, json: &str, expected_line: &str) {
        let (result, out) = encode_with(measurement, unsigned, json.as_bytes(), FALLBACK);
        if let Err(e) = result {
            panic!("{json} was refused: {e}");
        }
        let line = std::str::from_utf8(&out["previous line\n".len()..]).unwrap();
        assert_eq!(line, format!("{expected_line}\n"), "for {json}");
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(line).collect();
        assert_eq!(parsed.len(), 1, "{line:?} is not one line");
        if let Err(e) = &parsed[0] {
            panic!("reference parser refuses {line:?}: {e}");
        }
    }

    /// Encodes `json` for measurement `m` and expects a refusal whose message contains
    /// `expected`, on one line, with `out` untouched.
    fn refused(json: &str, expected: &str) {
        refused_bytes_with(Unsigned::Allowed, json.as_bytes(), FALLBACK, expected);
    }

    fn refused_bytes_with(unsigned: Unsigned, payload: &[u8], fallback: i64, expected: &str) {
        let (result, out) = encode_with("m", unsigned, payload, fallback);
        let shown = String::from_utf8_lossy(payload);
        let error = match result {
            Ok(()) => panic!(
                "{shown} was accepted as {:?}",
                String::from_utf8_lossy(&out)
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(expected),
            "{shown}: {error:?} does not contain {expected:?}"
        );
        assert!(!error.contains('\n'), "{error:?} is not one line");
        assert!(
            error.starts_with(|c: char| !c.is_uppercase()),
            "{error:?} does not start lowercase"
        );
        assert_eq!(out, b"previous line\n", "{shown}: out was changed");
    }

    #[test]
    fn tags_are_sorted_and_empty_or_null_ones_dropped() {
        for (json, line) in [
            (
                r#"{"tags":{"host":"a","region":"west"},"fields":{"v":1},"time":"2022-08-01T00:00:00Z"}"#,
                "m,host=a,region=west v=1i 1659312000000000000",
            ),
            (
                r#"{"tags":{"b":"2","a":"1","c":"3"},"fields":{"x":true}}"#,
                "m,a=1,b=2,c=3 x=true 7",
            ),
            // Byte order, as Go's bytes.Compare: uppercase before lowercase.
            (
                r#"{"tags":{"b":"1","B":"2","a":"3"},"fields":{"x":1}}"#,
                "m,B=2,a=3,b=1 x=1i 7",
            ),
            (
                r#"{"tags":{"a":"","b":"x","c":null},"fields":{"x":1}}"#,
                "m,b=x x=1i 7",
            ),
            (r#"{"tags":{"a":""},"fields":{"x":1}}"#, "m x=1i 7"),
            (r#"{"tags":{},"fields":{"x":1}}"#, "m x=1i 7"),
            (r#"{"tags":null,"fields":{"x":1}}"#, "m x=1i 7"),
            (r#"{"fields":{"x":1}}"#, "m x=1i 7"),
            // A dropped tag's key is not written, so it cannot be wrong.
            (
                r#"{"tags":{"":"","time":null},"fields":{"x":1}}"#,
                "m x=1i 7",
            ),
            // Numbers and booleans keep their JSON spelling.
            (
                r#"{"tags":{"n":42,"f":1.50,"t":true,"u":false,"e":-1E+5},"fields":{"x":1}}"#,
                "m,e=-1E+5,f=1.50,n=42,t=true,u=false x=1i 7",
            ),
            // Unknown top-level keys are ignored, whatever they hold.
            (
                r#"{"level":"info","fields":{"x":1},"extra":{"a":[1,{"b":null}]},"n":[]}"#,
                "m x=1i 7",
            ),
            // Whitespace around the JSON is fine.
            (" \n{ \"fields\" : { \"x\" : 1 } }\n ", "m x=1i 7"),
        ] {
            check(json, line);
        }
    }

    #[test]
    fn fields_keep_their_json_types() {
        for (json, line) in [
            (r#"{"fields":{"i":-42}}"#, "m i=-42i 7"),
            (r#"{"fields":{"i":0}}"#, "m i=0i 7"),
            (r#"{"fields":{"i":-0}}"#, "m i=0i 7"),
            (
                r#"{"fields":{"i":9223372036854775807}}"#,
                "m i=9223372036854775807i 7",
            ),
            (
                r#"{"fields":{"i":-9223372036854775808}}"#,
                "m i=-9223372036854775808i 7",
            ),
            (
                r#"{"fields":{"u":9223372036854775808}}"#,
                "m u=9223372036854775808u 7",
            ),
            (
                r#"{"fields":{"u":18446744073709551615}}"#,
                "m u=18446744073709551615u 7",
            ),
            // Floats stay floats even when integral.
            (r#"{"fields":{"f":1.0}}"#, "m f=1.0 7"),
            (r#"{"fields":{"f":-1.0}}"#, "m f=-1.0 7"),
            (r#"{"fields":{"f":1e3}}"#, "m f=1000.0 7"),
            (r#"{"fields":{"f":1E3}}"#, "m f=1000.0 7"),
            (r#"{"fields":{"f":2.5e+2}}"#, "m f=250.0 7"),
            (r#"{"fields":{"f":0.0}}"#, "m f=0.0 7"),
            (r#"{"fields":{"f":-0.0}}"#, "m f=-0.0 7"),
            (r#"{"fields":{"f":0.1}}"#, "m f=0.1 7"),
            (r#"{"fields":{"f":1.5e-7}}"#, "m f=1.5e-7 7"),
            (r#"{"fields":{"f":1e16}}"#, "m f=1e16 7"),
            (r#"{"fields":{"f":1e300}}"#, "m f=1e300 7"),
            (r#"{"fields":{"f":5e-324}}"#, "m f=5e-324 7"),
            (
                r#"{"fields":{"f":4.9406564584124654e-324}}"#,
                "m f=5e-324 7",
            ),
            (
                r#"{"fields":{"f":1.7976931348623157e308}}"#,
                "m f=1.7976931348623157e308 7",
            ),
            (r#"{"fields":{"f":123456789.125}}"#, "m f=123456789.125 7"),
            // Around the limits of copying a decimal as is (see `is_ryu_text`).
            (r#"{"fields":{"f":12.50}}"#, "m f=12.5 7"),
            (r#"{"fields":{"f":100.0}}"#, "m f=100.0 7"),
            (r#"{"fields":{"f":100.00}}"#, "m f=100.0 7"),
            (r#"{"fields":{"f":0.00001}}"#, "m f=0.00001 7"),
            (r#"{"fields":{"f":0.000001}}"#, "m f=1e-6 7"),
            (
                r#"{"fields":{"f":1000000000000000.0}}"#,
                "m f=1000000000000000.0 7",
            ),
            (r#"{"fields":{"f":10000000000000000.0}}"#, "m f=1e16 7"),
            (
                r#"{"fields":{"f":123456789012345.6}}"#,
                "m f=123456789012345.6 7",
            ),
            (
                r#"{"fields":{"f":0.30000000000000004}}"#,
                "m f=0.30000000000000004 7",
            ),
            (r#"{"fields":{"f":0.300000000000000001}}"#, "m f=0.3 7"),
            // Correctly rounded: 2^53 + 1 is halfway and rounds to even.
            (
                r#"{"fields":{"f":9007199254740993.0}}"#,
                "m f=9007199254740992.0 7",
            ),
            // Below the smallest subnormal reads as zero, as every JSON reader does.
            (r#"{"fields":{"f":1e-400}}"#, "m f=0.0 7"),
            (r#"{"fields":{"t":true,"f":false}}"#, "m f=false,t=true 7"),
            (r#"{"fields":{"s":"hello"}}"#, r#"m s="hello" 7"#),
            (r#"{"fields":{"s":""}}"#, r#"m s="" 7"#),
            (r#"{"fields":{"a":null,"b":1,"c":null}}"#, "m b=1i 7"),
            (
                r#"{"fields":{"z":1,"a":2,"m":"x","B":3.5}}"#,
                r#"m B=3.5,a=2i,m="x",z=1i 7"#,
            ),
        ] {
            check(json, line);
        }
    }

    #[test]
    fn nested_values_become_their_compact_json_text() {
        for (json, line) in [
            (
                r#"{"fields":{"o":{ "a" : 1, "b" : [ 1 , 2 ] }}}"#,
                r#"m o="{\"a\":1,\"b\":[1,2]}" 7"#,
            ),
            (
                "{\"fields\":{\"o\":{\n\t\"b\": 2,\r\n \"a\": 1\n}}}",
                r#"m o="{\"b\":2,\"a\":1}" 7"#,
            ),
            (
                r#"{"fields":{"a":[1, "x", null, true]}}"#,
                r#"m a="[1,\"x\",null,true]" 7"#,
            ),
            (r#"{"fields":{"a":[]}}"#, r#"m a="[]" 7"#),
            (r#"{"fields":{"o":{}}}"#, r#"m o="{}" 7"#),
            // Whitespace inside strings stays; JSON escapes stay as JSON text.
            (
                r#"{"fields":{"o":{"k": "a b \"q\" \\ \n"}}}"#,
                r#"m o="{\"k\":\"a b \\\"q\\\" \\\\ \\n\"}" 7"#,
            ),
            // Numbers keep their spelling, even beyond what a double holds.
            (
                r#"{"fields":{"o":[1.50, 1e400, 123456789012345678901234567890]}}"#,
                r#"m o="[1.50,1e400,123456789012345678901234567890]" 7"#,
            ),
        ] {
            check(json, line);
        }
    }

    #[test]
    fn time_is_parsed_or_falls_back_to_the_message_timestamp() {
        for (json, line) in [
            (r#"{"fields":{"x":1}}"#, "m x=1i 7"),
            (r#"{"fields":{"x":1},"time":null}"#, "m x=1i 7"),
            (
                r#"{"fields":{"x":1},"time":"2022-08-01T12:34:56.123456789+08:00"}"#,
                "m x=1i 1659328496123456789",
            ),
            (
                r#"{"fields":{"x":1},"time":"2022-08-01t04:34:56.123z"}"#,
                "m x=1i 1659328496123000000",
            ),
            (
                r#"{"time":"1970-01-01T00:00:00Z","fields":{"x":1}}"#,
                "m x=1i 0",
            ),
            (
                r#"{"time":"1969-12-31T23:59:59.999999999Z","fields":{"x":1}}"#,
                "m x=1i -1",
            ),
            // A JSON escape in `time` is decoded first.
            (
                r#"{"time":"1970-01-01T00:00:01\u005a","fields":{"x":1}}"#,
                "m x=1i 1000000000",
            ),
            // The ends InfluxDB accepts.
            (
                r#"{"time":"2262-04-11T23:47:16.854775806Z","fields":{"x":1}}"#,
                "m x=1i 9223372036854775806",
            ),
            (
                r#"{"time":"1677-09-21T00:12:43.145224194Z","fields":{"x":1}}"#,
                "m x=1i -9223372036854775806",
            ),
        ] {
            check(json, line);
        }
    }

    #[test]
    fn names_are_escaped_as_the_line_protocol_reference_says() {
        for (measurement, json, line) in [
            // Measurement: comma and space only; an equals sign is plain there.
            ("my m,x=y", r#"{"fields":{"x":1}}"#, r"my\ m\,x=y x=1i 7"),
            (
                "cpu",
                r#"{"tags":{"a b":"c,d=e f"},"fields":{"x":1}}"#,
                r"cpu,a\ b=c\,d\=e\ f x=1i 7",
            ),
            (
                "cpu",
                r#"{"tags":{"k,=":"v"},"fields":{"x":1}}"#,
                r"cpu,k\,\==v x=1i 7",
            ),
            ("cpu", r#"{"fields":{"f k,=":1}}"#, r"cpu f\ k\,\==1i 7"),
            // Quotes need no escape in names.
            (
                "cpu",
                r#"{"tags":{"q\"":"\"v\""},"fields":{"\"f\"":1}}"#,
                r#"cpu,q"="v" "f"=1i 7"#,
            ),
            // A backslash before an ordinary character is kept as is by every parser.
            (
                "c\\p",
                r#"{"tags":{"path":"C:\\temp\\x"},"fields":{"a\\b":1}}"#,
                r"c\p,path=C:\temp\x a\b=1i 7",
            ),
            // Unicode, emoji and control characters other than tab and line breaks are plain.
            (
                "温度",
                r#"{"tags":{"città":"Zürich 🚀","c":"\u0001"},"fields":{"ключ":"значение"}}"#,
                "温度,c=\u{1},città=Zürich\\ 🚀 ключ=\"значение\" 7",
            ),
        ] {
            check_with(measurement, Unsigned::Allowed, json, line);
        }
    }

    #[test]
    fn string_fields_escape_quote_and_backslash_and_keep_newlines_raw() {
        for (json, line) in [
            (r#"{"fields":{"s":"say \"hi\""}}"#, r#"m s="say \"hi\"" 7"#),
            (r#"{"fields":{"s":"C:\\temp\\"}}"#, r#"m s="C:\\temp\\" 7"#),
            (r#"{"fields":{"s":"\\"}}"#, r#"m s="\\" 7"#),
            (r#"{"fields":{"s":"a,b=c d"}}"#, r#"m s="a,b=c d" 7"#),
            (
                "{\"fields\":{\"s\":\"a\\nb\\r\\nc\\td\"}}",
                "m s=\"a\nb\r\nc\td\" 7",
            ),
            (r#"{"fields":{"s":"\/\b\f"}}"#, "m s=\"/\u{8}\u{c}\" 7"),
            (
                r#"{"fields":{"s":"\u00e9\ud83d\ude00\u0041"}}"#,
                r#"m s="é😀A" 7"#,
            ),
            // Escaped quote and backslash given as \u escapes are escaped for line protocol.
            (r#"{"fields":{"s":"\u0022\u005c"}}"#, r#"m s="\"\\" 7"#),
            // A field string may look like line protocol; it stays inside its quotes.
            (
                r#"{"fields":{"s":"x=1i 2\nm y=2"}}"#,
                "m s=\"x=1i 2\nm y=2\" 7",
            ),
        ] {
            check(json, line);
        }
    }

    #[test]
    fn unsigned_integers_follow_the_database() {
        check_with(
            "m",
            Unsigned::Refused,
            r#"{"fields":{"i":9223372036854775807,"n":-1}}"#,
            "m i=9223372036854775807i,n=-1i 7",
        );
        refused_bytes_with(
            Unsigned::Refused,
            br#"{"fields":{"cpu":18446744073709551615}}"#,
            FALLBACK,
            r#"field "cpu": integer 18446744073709551615 does not fit InfluxDB v1 (no unsigned type)"#,
        );
        refused_bytes_with(
            Unsigned::Refused,
            br#"{"fields":{"cpu":9223372036854775808}}"#,
            FALLBACK,
            r#"field "cpu": integer 9223372036854775808 does not fit InfluxDB v1"#,
        );
    }

    #[test]
    fn payloads_that_are_not_records_are_refused() {
        for (json, expected) in [
            ("", "payload is not json: EOF while parsing a value"),
            ("not json", "payload is not json: expected ident"),
            (r#"{"fields":{"x":1}"#, "payload is not json: EOF"),
            (
                r#"{"fields":{"x":1}} x"#,
                "payload is not json: trailing characters",
            ),
            (
                r#"{"fields":{"x":01}}"#,
                "payload is not json: invalid number",
            ),
            (
                "{\"fields\":{\"s\":\"a\nb\"}}",
                "payload is not json: control character",
            ),
            (r#"{"fields":{"x":NaN}}"#, "payload is not json"),
            ("[]", "payload is an array, not a json object"),
            (
                r#"[{"fields":{"x":1}}]"#,
                "payload is an array, not a json object",
            ),
            (r#""x""#, "payload is a string, not a json object"),
            ("12", "payload is a number, not a json object"),
            ("null", "payload is null, not a json object"),
            ("true", "payload is a boolean, not a json object"),
            (
                r#"{"tags":[1],"fields":{"x":1}}"#,
                "tags is an array, not a json object",
            ),
            (
                r#"{"tags":"a=b","fields":{"x":1}}"#,
                "tags is a string, not a json object",
            ),
            (r#"{"fields":[1]}"#, "fields is an array, not a json object"),
            (r#"{"fields":1.5}"#, "fields is a number, not a json object"),
            ("{}", "fields: nothing to write"),
            (r#"{"tags":{"a":"b"}}"#, "fields: nothing to write"),
            (r#"{"fields":{}}"#, "fields: nothing to write"),
            (r#"{"fields":null}"#, "fields: nothing to write"),
            (
                r#"{"fields":{"a":null,"b":null}}"#,
                "fields: nothing to write",
            ),
            (
                r#"{"fields":{"x":1},"fields":{"y":2}}"#,
                r#"payload: key "fields" appears twice"#,
            ),
            (
                r#"{"tags":{"a":"1","a":"2"},"fields":{"x":1}}"#,
                r#"tags: key "a" appears twice"#,
            ),
            (
                r#"{"fields":{"x":1,"y":2,"x":3}}"#,
                r#"fields: key "x" appears twice"#,
            ),
            (
                r#"{"fields":{"x":1,"\u0078":null}}"#,
                r#"fields: key "x" appears twice"#,
            ),
            // A lone surrogate passes JSON syntax but is no text.
            (
                r#"{"fields":{"s":"a\ud800"}}"#,
                r#"field "s": lone leading surrogate"#,
            ),
            (
                r#"{"fields":{"s":"\udc00"}}"#,
                r#"field "s": lone trailing surrogate"#,
            ),
            (
                r#"{"fields":{"s":"\ud800\u0041"}}"#,
                r#"field "s": lone leading surrogate"#,
            ),
            (
                r#"{"tags":{"t":"\ud800"},"fields":{"x":1}}"#,
                r#"tag "t": lone leading surrogate"#,
            ),
            (
                r#"{"fields":{"\ud800":1}}"#,
                r#"payload is not json: key "\\ud800": lone leading surrogate"#,
            ),
        ] {
            refused(json, expected);
        }
        refused_bytes_with(
            Unsigned::Allowed,
            b"{\"fields\":{\"s\":\"\xff\"}}",
            FALLBACK,
            "payload is not json: payload is not utf-8",
        );
    }

    #[test]
    fn values_influxdb_cannot_store_are_refused() {
        for (json, expected) in [
            (
                r#"{"fields":{"n":18446744073709551616}}"#,
                r#"field "n": integer "18446744073709551616" is outside the 64-bit range"#,
            ),
            (
                r#"{"fields":{"n":-9223372036854775809}}"#,
                r#"field "n": integer "-9223372036854775809" is outside the 64-bit range"#,
            ),
            (
                r#"{"fields":{"f":1e400}}"#,
                r#"field "f": number "1e400" is too large for a 64-bit float"#,
            ),
            (
                r#"{"fields":{"f":-1.8e308}}"#,
                r#"field "f": number "-1.8e308" is too large"#,
            ),
            (
                r#"{"tags":{"t":{"a":1}},"fields":{"x":1}}"#,
                r#"tag "t": value is an object; a tag is a string, number or boolean"#,
            ),
            (
                r#"{"tags":{"t":[]},"fields":{"x":1}}"#,
                r#"tag "t": value is an array"#,
            ),
        ] {
            refused(json, expected);
        }
    }

    #[test]
    fn names_that_cannot_be_written_unambiguously_are_refused() {
        const BACKSLASH: &str = "has a backslash at its end or before a backslash";
        for (json, expected) in [
            (
                r#"{"tags":{"":"v"},"fields":{"x":1}}"#,
                r#"tag key "": is empty"#,
            ),
            (r#"{"fields":{"":1}}"#, r#"field key "": is empty"#),
            (
                r#"{"tags":{"a\nb":"v"},"fields":{"x":1}}"#,
                r#"tag key "a\nb": contains a line break"#,
            ),
            (
                r#"{"tags":{"k":"a\nb"},"fields":{"x":1}}"#,
                r#"tag "k": value contains a line break"#,
            ),
            (
                r#"{"tags":{"k":"a\rb"},"fields":{"x":1}}"#,
                r#"tag "k": value contains a line break"#,
            ),
            (
                r#"{"fields":{"a\r":1}}"#,
                r#"field key "a\r": contains a line break"#,
            ),
            (
                r#"{"tags":{"k":"a\tb"},"fields":{"x":1}}"#,
                r#"tag "k": value contains a tab"#,
            ),
            (
                r#"{"tags":{"a\tb":"v"},"fields":{"x":1}}"#,
                r#"tag key "a\tb": contains a tab"#,
            ),
            (
                r#"{"fields":{"a\tb":1}}"#,
                r#"field key "a\tb": contains a tab"#,
            ),
            // The trailing backslash: `k=v\` would escape the separator that follows in
            // InfluxDB 1.x/2.x, and no spelling of it reads back the same in 1.x and 3.x.
            (r#"{"tags":{"k":"v\\"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"tags":{"k\\":"v"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"fields":{"f\\":1}}"#, BACKSLASH),
            (
                r#"{"tags":{"k":"\\\\server\\share"},"fields":{"x":1}}"#,
                BACKSLASH,
            ),
            (r#"{"tags":{"k":"a\\,b"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"tags":{"k":"a\\=b"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"tags":{"k":"a\\ b"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"tags":{"k":"a\\\"b"},"fields":{"x":1}}"#, BACKSLASH),
            (r#"{"fields":{"a\\\"b":1}}"#, BACKSLASH),
            (
                r#"{"tags":{"time":"v"},"fields":{"x":1}}"#,
                r#"tag key "time": is "time""#,
            ),
            (
                r#"{"fields":{"time":1,"x":2}}"#,
                r#"field key "time": is "time", which InfluxDB refuses or drops"#,
            ),
        ] {
            refused(json, expected);
        }
    }

    #[test]
    fn measurements_that_cannot_be_written_are_refused() {
        for (measurement, expected) in [
            ("", r#"measurement "": is empty"#),
            ("a\nb", r#"measurement "a\nb": contains a line break"#),
            ("a\rb", "contains a line break"),
            ("a\tb", "contains a tab"),
            ("a\0b", "contains a NUL character"),
            ("#m", "starts with '#', which makes the line a comment"),
            ("m\\", "has a backslash at its end"),
            ("m\\ x", "has a backslash"),
            ("m\\=x", "has a backslash"),
            ("m\\\"x", "has a backslash"),
        ] {
            let error = Encoder::new(measurement, Unsigned::Allowed).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{measurement:?}: {error} does not contain {expected:?}"
            );
        }
        // A '#' later in the measurement is harmless.
        check_with(
            "m#1",
            Unsigned::Allowed,
            r#"{"fields":{"x":1}}"#,
            "m#1 x=1i 7",
        );
    }

    #[test]
    fn bad_times_are_refused_naming_time() {
        for (time, expected) in [
            ("12", "time is a number, not an rfc 3339 string"),
            ("true", "time is a boolean, not an rfc 3339 string"),
            (r#"{"s":1}"#, "time is an object, not an rfc 3339 string"),
            (
                r#""""#,
                r#"time "" is not rfc 3339: expected YYYY-MM-DDTHH:MM:SS"#,
            ),
            (r#""2022-08-01""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-08-01 00:00:00Z""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022/08/01T00:00:00Z""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-8-01T00:00:00Z""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-08-01T00:00:00""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-08-01T00:00:0aZ""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""+022-08-01T00:00:00Z""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-08-01T00:00:00""#, "expected YYYY-MM-DDTHH:MM:SS"),
            (r#""2022-08-01T00:00:00+0800""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00+08""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00+0a:00""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00ZZ""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00Z ""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00UTC""#, "expected Z or an offset"),
            (r#""2022-08-01T00:00:00+24:00""#, "offset out of range"),
            (r#""2022-08-01T00:00:00+08:60""#, "offset out of range"),
            (r#""2022-00-01T00:00:00Z""#, "month out of range"),
            (r#""2022-13-01T00:00:00Z""#, "month out of range"),
            (r#""2022-08-00T00:00:00Z""#, "day out of range"),
            (r#""2022-08-32T00:00:00Z""#, "day out of range"),
            (r#""2022-04-31T00:00:00Z""#, "day out of range"),
            (r#""2022-02-29T00:00:00Z""#, "day out of range"),
            (r#""1900-02-29T00:00:00Z""#, "day out of range"),
            (r#""2022-08-01T24:00:00Z""#, "hour out of range"),
            (r#""2022-08-01T00:60:00Z""#, "minute out of range"),
            (
                r#""2016-12-31T23:59:60Z""#,
                "second out of range (leap seconds are not supported)",
            ),
            (
                r#""2022-08-01T00:00:00.Z""#,
                "no digit after the decimal point",
            ),
            (
                r#""2022-08-01T00:00:00.1234567890Z""#,
                "more than 9 fraction digits",
            ),
            (r#""2022-08-01T00:00:00,5Z""#, "expected Z or an offset"),
            (
                r#""2262-04-11T23:47:16.854775807Z""#,
                r#"time "2262-04-11T23:47:16.854775807Z" is outside the range InfluxDB stores"#,
            ),
            (
                r#""2262-04-11T23:47:16.854775808Z""#,
                "is outside the range InfluxDB stores",
            ),
            (
                r#""1677-09-21T00:12:43.145224193Z""#,
                "is outside the range InfluxDB stores",
            ),
            (
                r#""9999-12-31T23:59:59Z""#,
                "is outside the range InfluxDB stores",
            ),
            (
                r#""0000-01-01T00:00:00Z""#,
                "is outside the range InfluxDB stores",
            ),
        ] {
            refused(
                &format!(r#"{{"fields":{{"x":1}},"time":{time}}}"#),
                expected,
            );
        }
        refused_bytes_with(
            Unsigned::Allowed,
            br#"{"fields":{"x":1}}"#,
            i64::MAX,
            "time \"9223372036854775807 ns (the message timestamp)\" is outside the range",
        );
        refused_bytes_with(
            Unsigned::Allowed,
            br#"{"fields":{"x":1},"time":null}"#,
            i64::MIN,
            "is outside the range InfluxDB stores",
        );
    }

    #[test]
    fn point_time_adds_the_sequence_modulo_the_producers_unit_capped_at_a_millisecond() {
        const T: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
                                                  // (time, fraction digits, stream sequence, stored time)
        for (time_ns, digits, sequence, expected) in [
            // Whole seconds and milliseconds: + (sequence mod 1,000,000) ns.
            (T, 0, 1, T + 1),
            (T, 0, 999_999, T + 999_999),
            (T, 0, 1_000_000, T),
            (T, 0, 1_000_001, T + 1),
            (T, 1, 123_456_789, T + 456_789),
            (T, 2, 42, T + 42),
            (T + 120_000_000, 3, 7, T + 120_000_007),
            (T + 120_000_000, 3, 2_000_007, T + 120_000_007),
            // Finer than a millisecond: the producer's own unit is the span.
            (T, 4, 123_456, T + 23_456),
            (T, 5, 123_456, T + 3_456),
            (T, 6, 123_456, T + 456),
            (T, 6, 1_000, T),
            (T, 7, 123_456, T + 56),
            (T, 8, 123_456, T + 6),
            // Nanoseconds: unchanged whatever the sequence.
            (T + 123_456_789, 9, 123_456, T + 123_456_789),
            (T, 9, u64::MAX, T),
            (T, 10, 5, T),
            // The sequence's full range.
            (T, 0, u64::MAX, T + (u64::MAX % 1_000_000) as i64),
            (T, 0, 0, T),
            // Before the epoch and at the lower end InfluxDB stores: added as anywhere.
            (-1_000_000_000, 0, 5, -999_999_995),
            (MIN_TIME_NS, 9, 5, MIN_TIME_NS),
            (MIN_TIME_NS, 0, 5, MIN_TIME_NS + 5),
            // The last millisecond InfluxDB stores: subtracted where adding would pass it.
            (MAX_TIME_NS - 775_806, 3, 775_806, MAX_TIME_NS),
            (
                MAX_TIME_NS - 775_806,
                3,
                775_807,
                MAX_TIME_NS - 775_806 - 775_807,
            ),
            (
                MAX_TIME_NS - 775_806,
                3,
                999_999,
                MAX_TIME_NS - 775_806 - 999_999,
            ),
            (MAX_TIME_NS - 775_806, 3, 1_000_000, MAX_TIME_NS - 775_806),
            (MAX_TIME_NS - 806, 6, 999, MAX_TIME_NS - 806 - 999),
            (MAX_TIME_NS - 806, 6, 800, MAX_TIME_NS - 6),
            (MAX_TIME_NS, 9, 999, MAX_TIME_NS),
            // A whole second never comes near it: 2262-04-11T23:47:16Z + 999,999 ns.
            (
                MAX_TIME_NS - 854_775_806,
                0,
                999_999,
                MAX_TIME_NS - 853_775_807,
            ),
        ] {
            assert_eq!(
                point_time(time_ns, digits, sequence),
                expected,
                "point_time({time_ns}, {digits}, {sequence})"
            );
        }
    }

    /// `min(10^(9 - f), 10^6)` for `f` fraction digits, stated on its own for the tests.
    const SPAN_NS: [u64; 10] = [
        1_000_000, 1_000_000, 1_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1,
    ];

    #[test]
    fn point_time_keeps_the_records_of_one_written_time_apart_and_in_range() {
        // Every sequence of one span, at ordinary times and at both ends of the range:
        // distinct sequences give distinct times, all within the span of the written time
        // and inside what InfluxDB stores.
        for (time_ns, digits) in [
            (1_767_225_600_000_000_000, 0u8),
            (1_767_225_600_120_000_000, 3),
            (1_767_225_600_120_001_000, 6),
            (1_767_225_600_120_001_100, 7),
            (MAX_TIME_NS - 775_806, 3),
            (MAX_TIME_NS - 806, 6),
            (MIN_TIME_NS + 2, 6),
        ] {
            let span = SPAN_NS[usize::from(digits)];
            // Indexed by the shift, -span to span: a plain table is fast in a debug build.
            let mut seen = vec![false; 2 * span as usize];
            for sequence in 1..=span {
                let stored = point_time(time_ns, digits, sequence);
                assert!((MIN_TIME_NS..=MAX_TIME_NS).contains(&stored), "{stored}");
                assert!(
                    stored.abs_diff(time_ns) < span,
                    "{time_ns} moved to {stored}"
                );
                let slot = (stored - time_ns + span as i64) as usize;
                assert!(
                    !seen[slot],
                    "{time_ns}/{digits}: {sequence} repeats {stored}"
                );
                seen[slot] = true;
            }
        }
    }

    #[test]
    fn written_times_move_by_the_stream_sequence_and_the_stream_timestamp_does_not() {
        const X: &str = r#""fields":{"x":1}"#;
        for (time, sequence, line) in [
            (r#""2022-08-01T00:00:00Z""#, 1, "m x=1i 1659312000000000001"),
            (r#""2022-08-01T00:00:00Z""#, 2, "m x=1i 1659312000000000002"),
            (
                r#""2022-08-01T00:00:00Z""#,
                1_000_002,
                "m x=1i 1659312000000000002",
            ),
            // Trailing zeros count: `.120` is written to the millisecond.
            (
                r#""2022-08-01T00:00:00.120Z""#,
                45_678,
                "m x=1i 1659312000120045678",
            ),
            (
                r#""2022-08-01T08:00:00.1+08:00""#,
                45_678,
                "m x=1i 1659312000100045678",
            ),
            (
                r#""2022-08-01T00:00:00.000001Z""#,
                45_678,
                "m x=1i 1659312000000001678",
            ),
            (
                r#""2022-08-01T00:00:00.123456789Z""#,
                45_678,
                "m x=1i 1659312000123456789",
            ),
            // A JSON escape in `time` is decoded before the digits are counted.
            (
                r#""2022-08-01T00:00:00.5Z""#,
                3,
                "m x=1i 1659312000500000003",
            ),
            // No time: the stream's timestamp, as it is.
            ("null", 45_678, "m x=1i 7"),
        ] {
            let json = format!(r#"{{{X},"time":{time}}}"#);
            let (result, out) =
                encode_at("m", Unsigned::Allowed, json.as_bytes(), FALLBACK, sequence);
            result.unwrap_or_else(|e| panic!("{json}: {e}"));
            let written = std::str::from_utf8(&out["previous line\n".len()..]).unwrap();
            assert_eq!(
                written,
                format!("{line}\n"),
                "{json} at sequence {sequence}"
            );
        }
        let (result, out) = encode_at(
            "m",
            Unsigned::Allowed,
            br#"{"fields":{"x":1}}"#,
            FALLBACK,
            45_678,
        );
        assert_eq!(result, Ok(()));
        assert_eq!(&out["previous line\n".len()..], b"m x=1i 7\n");
        // The top of the range: stored below the written time rather than refused.
        let json = r#"{"fields":{"x":1},"time":"2262-04-11T23:47:16.854Z"}"#;
        let (result, out) = encode_at("m", Unsigned::Allowed, json.as_bytes(), FALLBACK, 999_999);
        assert_eq!(result, Ok(()));
        assert_eq!(
            &out["previous line\n".len()..],
            b"m x=1i 9223372036853000001\n"
        );
    }

    /// Golden vectors of point identity: the stored nanoseconds of a record, from its `time` as
    /// the producer wrote it (or its absence), its stream sequence and its stream timestamp,
    /// through the encoder the worker calls. The expected times are literals, computed once
    /// apart from this code and checked against it.
    ///
    /// This table may only grow, never change: a record redelivered across a rolling upgrade
    /// (delivered to one version, killed mid-write, delivered again to the next) must land on
    /// the same point in both versions, or the upgrade writes duplicates.
    #[test]
    fn golden_point_identity_vectors_never_change() {
        /// The stream timestamp of the records with a `time`: never their stored time.
        const STREAM_NS: i64 = 1_700_000_000_987_654_321;
        // (`time` as written in the JSON string, stream sequence, stream timestamp, stored ns),
        // one vector a line, so that a change to one stands out in a diff.
        #[rustfmt::skip]
        let vectors: [(Option<&str>, u64, i64, i64); 44] = [
            // Every precision, 0 to 9 fraction digits, in UTC.
            (Some("2026-01-01T00:00:00Z"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            (Some("2026-01-01T00:00:00.1Z"), 1_234_567, STREAM_NS, 1_767_225_600_100_234_567),
            (Some("2026-01-01T00:00:00.12Z"), 1_234_567, STREAM_NS, 1_767_225_600_120_234_567),
            (Some("2026-01-01T00:00:00.123Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_234_567),
            (Some("2026-01-01T00:00:00.1234Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_434_567),
            (Some("2026-01-01T00:00:00.12345Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_454_567),
            (Some("2026-01-01T00:00:00.123456Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_567),
            (Some("2026-01-01T00:00:00.1234567Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_767),
            (Some("2026-01-01T00:00:00.12345678Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_787),
            (Some("2026-01-01T00:00:00.123456789Z"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_789),
            // Trailing zeros count as written; `t` and `z` in lower case; a JSON escape (`.5`).
            (Some("2026-01-01T00:00:00.120Z"), 1_234_567, STREAM_NS, 1_767_225_600_120_234_567),
            (Some("2026-01-01T00:00:00.000000Z"), 1_234_567, STREAM_NS, 1_767_225_600_000_000_567),
            (Some("2026-01-01T00:00:00.000000000Z"), 1_234_567, STREAM_NS, 1_767_225_600_000_000_000),
            (Some("2026-01-01t00:00:00z"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            (Some("2026-01-01T00:00:00.\\u0035Z"), 1_234_567, STREAM_NS, 1_767_225_600_500_234_567),
            // Sequences: the first, a multiple of every span, the largest.
            (Some("2026-01-01T00:00:00Z"), 1, STREAM_NS, 1_767_225_600_000_000_001),
            (Some("2026-01-01T00:00:00Z"), 3_000_000, STREAM_NS, 1_767_225_600_000_000_000),
            (Some("2026-01-01T00:00:00Z"), u64::MAX, STREAM_NS, 1_767_225_600_000_551_615),
            (Some("2026-01-01T00:00:00.123456Z"), u64::MAX, STREAM_NS, 1_767_225_600_123_456_615),
            // Offsets east and west of UTC, and zero offsets: the same instants as above.
            (Some("2026-01-01T08:00:00+08:00"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            (Some("2026-01-01T08:00:00.5+08:00"), 1_234_567, STREAM_NS, 1_767_225_600_500_234_567),
            (Some("2026-01-01T08:00:00.123456+08:00"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_567),
            (Some("2025-12-31T18:30:00-05:30"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            (Some("2025-12-31T18:30:00.123-05:30"), 1_234_567, STREAM_NS, 1_767_225_600_123_234_567),
            (Some("2025-12-31T18:30:00.123456789-05:30"), 1_234_567, STREAM_NS, 1_767_225_600_123_456_789),
            (Some("2026-01-01T00:00:00+00:00"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            (Some("2026-01-01T00:00:00-00:00"), 1_234_567, STREAM_NS, 1_767_225_600_000_234_567),
            // Before 1970, down to the lowest time InfluxDB stores.
            (Some("1969-12-31T23:59:59Z"), 5, STREAM_NS, -999_999_995),
            (Some("1969-12-31T23:59:59.999Z"), 1_234_567, STREAM_NS, -765_433),
            (Some("1900-01-01T00:00:00.5-05:30"), 1_234_567, STREAM_NS, -2_208_968_999_499_765_433),
            (Some("1677-09-21T00:12:43.146Z"), 1_234_567, STREAM_NS, -9_223_372_036_853_765_433),
            (Some("1677-09-21T00:12:43.145224194Z"), 1_234_567, STREAM_NS, -9_223_372_036_854_775_806),
            // The top of the range InfluxDB stores (its maximum is 2262-04-11T23:47:16.854775806Z): in
            // the last millisecond before it, the shift is subtracted where adding it would pass it.
            (Some("2262-04-11T23:47:16.854Z"), 700_000, STREAM_NS, 9_223_372_036_854_700_000),
            (Some("2262-04-11T23:47:16.854Z"), 775_806, STREAM_NS, 9_223_372_036_854_775_806),
            (Some("2262-04-11T23:47:16.854Z"), 775_807, STREAM_NS, 9_223_372_036_853_224_193),
            (Some("2262-04-11T23:47:16.854Z"), 1_999_999, STREAM_NS, 9_223_372_036_853_000_001),
            (Some("2262-04-11T23:47:16Z"), 999_999, STREAM_NS, 9_223_372_036_000_999_999),
            (Some("2262-04-12T07:47:16.854+08:00"), 1_999_999, STREAM_NS, 9_223_372_036_853_000_001),
            (Some("2262-04-11T23:47:16.854775Z"), 806, STREAM_NS, 9_223_372_036_854_775_806),
            (Some("2262-04-11T23:47:16.854775Z"), 999, STREAM_NS, 9_223_372_036_854_774_001),
            (Some("2262-04-11T23:47:16.854775806Z"), 1_234_567, STREAM_NS, 9_223_372_036_854_775_806),
            // No `time` (each row also as `"time": null`): the stream timestamp as it is, unshifted.
            (None, 1_234_567, 1_767_225_600_123_456_789, 1_767_225_600_123_456_789),
            (None, 1, 1_767_225_600_000_000_000, 1_767_225_600_000_000_000),
            (None, u64::MAX, 1_767_225_600_000_000_000, 1_767_225_600_000_000_000),
        ];
        let encoder = Encoder::new("m", Unsigned::Allowed).expect("a valid measurement");
        for (time, stream_sequence, timestamp_ns, stored) in vectors {
            let payloads = match time {
                Some(time) => vec![format!(r#"{{"fields":{{"v":1}},"time":"{time}"}}"#)],
                None => vec![
                    r#"{"fields":{"v":1}}"#.to_owned(),
                    r#"{"fields":{"v":1},"time":null}"#.to_owned(),
                ],
            };
            for payload in payloads {
                let origin = Origin {
                    stream_sequence,
                    timestamp_ns,
                };
                let mut out = Vec::new();
                encoder
                    .encode(payload.as_bytes(), origin, &mut out)
                    .unwrap_or_else(|e| panic!("{payload}: {e}"));
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("m v=1i {stored}\n"),
                    "{payload} at {origin:?}"
                );
            }
        }
    }

    #[test]
    fn parse_rfc3339_counts_the_fraction_digits_as_written() {
        for (text, ns, digits) in [
            ("1970-01-01T00:00:00Z", 0, 0),
            ("1970-01-01T00:00:00.0Z", 0, 1),
            ("1970-01-01T00:00:00.120Z", 120_000_000, 3),
            ("1970-01-01T00:00:00.000000Z", 0, 6),
            ("1970-01-01T00:00:00.000000001Z", 1, 9),
            ("1970-01-01T08:00:00.12345+08:00", 123_450_000, 5),
        ] {
            assert_eq!(
                parse_rfc3339(text),
                Ok(WrittenTime {
                    ns,
                    fraction_digits: digits
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_rfc3339_ns_covers_the_whole_i64_range() {
        for (text, ns) in [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.000000001Z", 1),
            ("1970-01-01T00:00:00.1Z", 100_000_000),
            ("1970-01-01T00:00:00.12Z", 120_000_000),
            ("1970-01-01T01:00:00+01:00", 0),
            ("1969-12-31T19:00:00-05:00", 0),
            ("1970-01-01T05:30:00+05:30", 0),
            ("1970-01-01T00:00:00-00:00", 0),
            ("2000-02-29T00:00:00Z", 951_782_400_000_000_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000_000_000),
            ("2022-08-01T00:00:00Z", 1_659_312_000_000_000_000),
            ("2024-12-31T23:59:59.999999999Z", 1_735_689_599_999_999_999),
            ("1900-01-01T00:00:00Z", -2_208_988_800_000_000_000),
            ("2262-04-11T23:47:16.854775807Z", i64::MAX),
            ("1677-09-21T00:12:43.145224192Z", i64::MIN),
            ("2262-04-12T00:47:16.854775807+01:00", i64::MAX),
        ] {
            assert_eq!(parse_rfc3339_ns(text), Ok(ns), "{text}");
        }
        for text in [
            "2262-04-11T23:47:16.854775808Z",
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775807-00:01",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(
                    parse_rfc3339_ns(text),
                    Err(RecordError::TimeOutOfRange { .. })
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn series_keys_longer_than_influxdb_accepts_are_refused() {
        let tag_value = "v".repeat(MAX_SERIES_KEY_BYTES - "m,k=".len());
        check(
            &format!(r#"{{"tags":{{"k":"{tag_value}"}},"fields":{{"x":1}}}}"#),
            &format!("m,k={tag_value} x=1i 7"),
        );
        // One escaped comma more is one byte too many: the limit is on the written bytes.
        refused(
            &format!(
                r#"{{"tags":{{"k":"{},"}},"fields":{{"x":1}}}}"#,
                &tag_value[1..]
            ),
            "tags: measurement and tags take 65536 bytes, more than the 65535 InfluxDB accepts",
        );
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let key = "k".repeat(1000);
        let json = format!(r#"{{"fields":{{"{key}":18446744073709551616}}}}"#);
        let (result, _) = encode_with("m", Unsigned::Allowed, json.as_bytes(), FALLBACK);
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with(&format!("field \"{}\"…: integer", "k".repeat(80))));
    }
}
