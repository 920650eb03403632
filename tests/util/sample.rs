//! Typical log records, made from a fixed seed so every run publishes the same
//! ones, each with the point InfluxDB should end up holding.

use collector::calendar::civil_from_days;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// 2022-08-01T00:00:00Z in nanoseconds: the first sample's time.
const BASE_NS: i64 = 1_659_312_000_000_000_000;

/// A field value with its InfluxDB type.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    String(String),
}

impl Field {
    /// The type name `SHOW FIELD KEYS` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::Integer(_) => "integer",
            Field::Float(_) => "float",
            Field::Boolean(_) => "boolean",
            Field::String(_) => "string",
        }
    }

    /// Whether a value from InfluxDB's JSON is this one. Floats are compared
    /// as numbers, since InfluxDB prints `1.0` as `1`.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Field::Integer(i) => value.as_i64() == Some(*i),
            Field::Float(f) => value.as_f64() == Some(*f),
            Field::Boolean(b) => value.as_bool() == Some(*b),
            Field::String(s) => value.as_str() == Some(s.as_str()),
        }
    }

    /// The value in line protocol.
    pub fn to_line(&self) -> String {
        match self {
            Field::Integer(i) => format!("{i}i"),
            // Display gives the shortest text that reads back as the same f64.
            Field::Float(f) => format!("{f}"),
            Field::Boolean(b) => b.to_string(),
            Field::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }
}

/// One record and the point it should become.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: usize,
    /// The JSON record as the Transfer client publishes it.
    pub payload: Value,
    /// The record's `time` as written (RFC 3339, nanoseconds, an offset).
    pub time: String,
    /// The point's timestamp.
    pub time_ns: i64,
    /// The point's tags (empty values already dropped).
    pub tags: BTreeMap<String, String>,
    /// The point's fields (`null` already dropped, nested values as JSON text).
    pub fields: BTreeMap<String, Field>,
}

/// The same `i` always gives the same sample; different `i` give different
/// times. Tags: `host` (5 values), `region` (3), `route` (4, one with a space,
/// `=` and `,`), and `zone` empty in every fourth (so dropped). Fields: `seq`
/// (= i), `status`, `bytes` (up to 10^10) and `delta` (negative) integers;
/// `latency_ms` (sometimes integral) and `ratio` (0.0, 1.0 or 2.0) floats;
/// `ok` boolean; `message` string (quotes, backslashes, non-ASCII); `user`
/// string or `null` (omitted); `extra` a nested object in every sixth (stored
/// as its JSON text). Times start at 2022-08-01T00:00:00Z, about 1 ms apart,
/// written with offsets `Z`, `+08:00` and `-05:30` in turn.
pub fn sample(i: usize) -> Sample {
    let r = splitmix64(0x5eed_0000_0000 ^ i as u64);
    let host = format!("host-{}", r % 5);
    let region = ["eu-west", "us-east", "ap-south"][((r >> 8) % 3) as usize];
    let route =
        ["/v1/items", "/v1/users", "/v1/orders", "/v1/search q=a,b"][((r >> 16) % 4) as usize];
    let status = [200, 200, 200, 201, 204, 400, 404, 500][((r >> 20) % 8) as usize];
    let latency_ms = ((r >> 24) % 100_000) as f64 / 1000.0;
    let ratio = (i % 3) as f64;
    let bytes = ((r >> 32) % 10_000_000_000) as i64;
    let delta = -(i as i64) * 7;
    let message = match i % 4 {
        0 => format!("said \"hello\" to {host}"),
        1 => format!("wrote C:\\logs\\{i}.txt, size={bytes}"),
        2 => format!("日志 {i} ok"),
        _ => format!("request {i} took {latency_ms} ms"),
    };
    let user = (i % 5 != 0).then(|| format!("user-{}", (r >> 40) % 1000));
    let extra = (i % 6 == 0).then(|| json!({"a": i, "b": [true, "x"]}));

    let time_ns = BASE_NS + i as i64 * 1_000_003 + ((r >> 48) % 997) as i64;
    let offset_minutes = [0, 8 * 60, -(5 * 60 + 30)][i % 3];
    let time = rfc3339(time_ns, offset_minutes);

    let mut payload_tags = json!({"host": host, "region": region, "route": route});
    if i % 4 == 0 {
        payload_tags["zone"] = json!("");
    }
    let mut payload_fields = json!({
        "seq": i,
        "status": status,
        "bytes": bytes,
        "delta": delta,
        "latency_ms": latency_ms,
        "ratio": ratio,
        "ok": status < 400,
        "message": message,
        "user": user,
    });
    if let Some(extra) = &extra {
        payload_fields["extra"] = extra.clone();
    }
    let payload = json!({"tags": payload_tags, "fields": payload_fields, "time": time});

    let tags: BTreeMap<String, String> = [
        ("host", host.clone()),
        ("region", region.to_string()),
        ("route", route.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut fields: BTreeMap<String, Field> = [
        ("seq", Field::Integer(i as i64)),
        ("status", Field::Integer(status)),
        ("bytes", Field::Integer(bytes)),
        ("delta", Field::Integer(delta)),
        ("latency_ms", Field::Float(latency_ms)),
        ("ratio", Field::Float(ratio)),
        ("ok", Field::Boolean(status < 400)),
        ("message", Field::String(message)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(user) = user {
        fields.insert("user".to_string(), Field::String(user));
    }
    if let Some(extra) = extra {
        fields.insert("extra".to_string(), Field::String(extra.to_string()));
    }
    Sample {
        index: i,
        payload,
        time,
        time_ns,
        tags,
        fields,
    }
}

/// `sample(i).payload`
pub fn sample_payload(i: usize) -> Value {
    sample(i).payload
}

/// Samples 0..n.
pub fn samples(n: usize) -> Vec<Sample> {
    (0..n).map(sample).collect()
}

/// The payloads of samples 0..n as JSON bytes, ready for `publish_many`.
pub fn sample_payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| sample(i).bytes()).collect()
}

impl Sample {
    /// The payload as JSON bytes.
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).expect("a sample serializes")
    }

    /// The expected point in line protocol, written independently of the
    /// collector's encoder (tags sorted, nanosecond timestamp).
    pub fn to_line(&self, measurement: &str) -> String {
        let escape = |s: &str, specials: &[char]| {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if c == '\\' || specials.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        };
        let key = |s: &str| escape(s, &[',', '=', ' ']);
        let mut line = escape(measurement, &[',', ' ']);
        for (k, v) in &self.tags {
            line.push_str(&format!(",{}={}", key(k), key(v)));
        }
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}={}", key(k), v.to_line()))
            .collect();
        line.push(' ');
        line.push_str(&fields.join(","));
        line.push_str(&format!(" {}", self.time_ns));
        line
    }

    /// Compares a point from `Influx::points` with this sample: exactly these
    /// tags (`tag_keys` lists the measurement's tag keys, so an unexpected tag
    /// is told from a field) and exactly these fields, of these types
    /// (`field_types` from `Influx::field_types`).
    pub fn matches(
        &self,
        point: &Map<String, Value>,
        tag_keys: &[String],
        field_types: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        if point.get("time").and_then(Value::as_i64) != Some(self.time_ns) {
            problems.push(format!(
                "time {:?}, expected {}",
                point.get("time"),
                self.time_ns
            ));
        }
        for (k, v) in &self.tags {
            if point.get(k).and_then(Value::as_str) != Some(v.as_str()) {
                problems.push(format!("tag {k} = {:?}, expected {v:?}", point.get(k)));
            }
        }
        for (k, f) in &self.fields {
            match point.get(k) {
                Some(value) if f.matches(value) => {}
                other => problems.push(format!("field {k} = {other:?}, expected {f:?}")),
            }
            let ty = field_types.get(k).map(String::as_str);
            if ty != Some(f.type_name()) {
                problems.push(format!(
                    "field {k} has type {ty:?}, expected {}",
                    f.type_name()
                ));
            }
        }
        for column in point.keys() {
            let expected = column == "time"
                || self.tags.contains_key(column)
                || self.fields.contains_key(column);
            if !expected {
                let kind = if tag_keys.contains(column) {
                    "tag"
                } else {
                    "field"
                };
                problems.push(format!("unexpected {kind} {column} = {}", point[column]));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A small, good mixing function: a fixed seed gives a fixed sequence.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// RFC 3339 with nine fraction digits and the given UTC offset, e.g.
/// `2022-08-01T08:00:00.000000123+08:00`.
pub fn rfc3339(time_ns: i64, offset_minutes: i64) -> String {
    let local = time_ns + offset_minutes * 60 * 1_000_000_000;
    let secs = local.div_euclid(1_000_000_000);
    let nanos = local.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let offset = if offset_minutes == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}{offset}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Checks that `points` (of `place`, such as `db.measurement`) are exactly those of
/// `samples`: same count, and for each sample a point at its time with exactly its tags (of
/// `tag_keys`) and fields, each field of the type `field_types` names. Returns a description
/// of the first differences otherwise.
pub fn check_points(
    place: &str,
    points: &[Map<String, Value>],
    tag_keys: &[String],
    field_types: &BTreeMap<String, String>,
    samples: &[Sample],
) -> Result<(), String> {
    let by_time: BTreeMap<i64, &Map<String, Value>> = points
        .iter()
        .map(|p| (p.get("time").and_then(Value::as_i64).unwrap_or(-1), p))
        .collect();
    let mut problems = Vec::new();
    if points.len() != samples.len() {
        problems.push(format!(
            "{} points in {place}, expected {}",
            points.len(),
            samples.len()
        ));
    }
    for sample in samples {
        let Some(point) = by_time.get(&sample.time_ns) else {
            problems.push(format!(
                "sample {} (time {}) missing",
                sample.index, sample.time_ns
            ));
            continue;
        };
        if let Err(e) = sample.matches(point, tag_keys, field_types) {
            problems.push(format!("sample {}: {e}", sample.index));
        }
        if problems.len() >= 10 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A record of `fields` and `tags` (JSON objects) at nanosecond `i` after
/// 2026-01-01T00:00:00Z.
pub fn record(tags: &str, fields: &str, i: usize) -> Vec<u8> {
    format!(r#"{{"tags":{tags},"fields":{fields},"time":"2026-01-01T00:00:00.{i:09}Z"}}"#)
        .into_bytes()
}

/// Records 1 to `n` with a float `latency`, except those `bad` names, whose `latency` is a
/// string (for a server whose `latency` is a float already: rejected).
pub fn latencies(n: usize, bad: impl Fn(usize) -> bool) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|i| match bad(i) {
            true => record("{}", r#"{"latency":"slow"}"#, i),
            false => record("{}", &format!(r#"{{"latency":{i}.5}}"#), i),
        })
        .collect()
}
