//! TEMPORARY placeholder with the agreed interface; replaced by the real encoder module.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsigned {
    Allowed,
    Refused,
}

pub struct Encoder {
    measurement: String,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordError {
    Invalid(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Invalid(s) => f.write_str(s),
        }
    }
}
impl std::error::Error for RecordError {}

pub fn parse_rfc3339_ns(_text: &str) -> Result<i64, RecordError> {
    Err(RecordError::Invalid("time: unsupported".into()))
}

impl Encoder {
    pub fn new(measurement: &str, _unsigned: Unsigned) -> Result<Encoder, RecordError> {
        Ok(Encoder {
            measurement: measurement.to_string(),
        })
    }
    pub fn encode(
        &self,
        payload: &[u8],
        fallback_time_ns: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let v: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| RecordError::Invalid(format!("not json: {e}")))?;
        let fields = v["fields"]
            .as_object()
            .ok_or_else(|| RecordError::Invalid("no fields".into()))?;
        if fields.is_empty() {
            return Err(RecordError::Invalid("no fields".into()));
        }
        let mut line = self.measurement.clone();
        if let Some(tags) = v["tags"].as_object() {
            for (k, v) in tags {
                line.push_str(&format!(",{k}={}", v.as_str().unwrap_or("")));
            }
        }
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::Number(n) if n.is_i64() => format!("{k}={n}i"),
                serde_json::Value::String(s) => format!("{k}=\"{s}\""),
                other => format!("{k}={other}"),
            })
            .collect();
        line.push_str(&format!(" {} {}\n", parts.join(","), fallback_time_ns));
        out.extend_from_slice(line.as_bytes());
        Ok(())
    }
}
