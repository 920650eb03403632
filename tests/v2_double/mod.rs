//! A TEST DOUBLE of InfluxDB 2.x's write endpoint, for its error behaviour only.
//!
//! No real InfluxDB 2.x can be installed here, so the v2 request format is proven against
//! VictoriaMetrics (tests/pipeline.rs) and the v2 error semantics against this double, written
//! from the InfluxDB v2 API documentation for `POST /api/v2/write`:
//! - 204 when every line is written;
//! - 400 `{"code":"invalid","message":"partial write error (N written): ..."}` when some lines
//!   cannot be parsed — the good ones are written;
//! - 401 `{"code":"unauthorized","message":"unauthorized access"}` for a missing or wrong token;
//! - 404 `{"code":"not found","message":"bucket \"x\" not found"}`;
//! - 413 `{"code":"request too large",...}` when the body is over the limit;
//! - 429 and 503 with a `Retry-After` header (seconds) when throttled or unavailable.
//!
//! It parses only what it needs of HTTP/1.1 (request line, headers, Content-Length body,
//! keep-alive, `Content-Encoding: gzip`, whose bodies it decompresses as InfluxDB does, the
//! size limit applying to the decompressed body) and of line protocol (a line with the field
//! `reject=` is "unparsable"; a point is keyed by everything before its fields plus its
//! timestamp, so a rewrite overwrites).

#![allow(dead_code)]

use std::collections::BTreeMap;

pub use crate::util::Throttle;
use crate::util::{Answer, Request, WriteApi, WriteDouble};

/// How the double answers writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Stores the lines; 400 for lines with `reject=` (writing the others).
    Normal,
    /// 401 for every write.
    Unauthorized,
    /// 404 bucket not found for every write.
    BucketNotFound,
    /// The next writes answer as the throttle says.
    Throttle(Throttle),
}

/// What the double knows: its mode, limits and credentials, and the points it stored.
pub struct State {
    mode: Mode,
    /// Bodies over this many bytes get 413.
    max_body_bytes: usize,
    token: String,
    bucket: String,
    points: BTreeMap<String, String>,
}

/// The double (its `url()` and `seen()` are [`WriteDouble`]'s).
pub type InfluxV2Double = WriteDouble<State>;

impl InfluxV2Double {
    pub fn set_mode(&self, mode: Mode) {
        self.lock().api.mode = mode;
    }

    pub fn set_max_body_bytes(&self, n: usize) {
        self.lock().api.max_body_bytes = n;
    }

    /// Points stored, keyed by series and timestamp.
    pub fn n_points(&self) -> usize {
        self.lock().api.points.len()
    }

    pub fn points(&self) -> Vec<String> {
        self.lock().api.points.values().cloned().collect()
    }
}

impl WriteApi for State {
    const API: &'static str = "v2";
    const TOKEN: &'static str = "t0ken";
    const CREDENTIALS: &'static str = "  org: acme\n  token: t0ken\n";

    fn new(token: &str, bucket: &str) -> State {
        State {
            mode: Mode::Normal,
            max_body_bytes: usize::MAX,
            token: token.to_string(),
            bucket: bucket.to_string(),
            points: BTreeMap::new(),
        }
    }

    fn undecodable(&self) -> Answer {
        let message = r#"{"code":"invalid","message":"unable to decompress the gzip body"}"#;
        (400, vec![], message.to_string())
    }

    fn decide(&mut self, request: &Request, text: &str, n_bytes: usize) -> Answer {
        let (state, path) = (self, request.path.as_str());
        let authorization = request.headers.get("authorization").map(String::as_str);
        if path.starts_with("/ping") {
            return (204, vec![], String::new());
        }
        if !path.starts_with("/api/v2/write?")
            || !path.contains("precision=ns")
            || !path.contains("org=")
        {
            return (
                400,
                vec![],
                r#"{"code":"invalid","message":"unexpected request"}"#.into(),
            );
        }
        let expected = format!("Token {}", state.token);
        if state.mode == Mode::Unauthorized || authorization != Some(expected.as_str()) {
            return (
                401,
                vec![],
                r#"{"code":"unauthorized","message":"unauthorized access"}"#.into(),
            );
        }
        let bucket_ok = path.contains(&format!("bucket={}", state.bucket));
        if state.mode == Mode::BucketNotFound || !bucket_ok {
            let message = format!(
                r#"{{"code":"not found","message":"bucket \"{}\" not found"}}"#,
                state.bucket
            );
            return (404, vec![], message);
        }
        if let Mode::Throttle(throttle) = state.mode {
            let body = r#"{"code":"too many requests","message":"throttled"}"#;
            if let Some((answer, rest)) = throttle.take(body.to_string()) {
                state.mode = rest.map_or(Mode::Normal, Mode::Throttle);
                return answer;
            }
        }
        if n_bytes > state.max_body_bytes {
            return (
                413,
                vec![],
                r#"{"code":"request too large","message":"body too large"}"#.into(),
            );
        }
        let mut rejected = Vec::new();
        let mut written = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if line.contains(" reject=") || line.contains(",reject=") {
                rejected.push(line.to_string());
                continue;
            }
            // Key: measurement+tags (before the first unescaped space) and the timestamp.
            let key = match (line.split_once(' '), line.rsplit_once(' ')) {
                (Some((series, _)), Some((_, time))) => format!("{series} {time}"),
                _ => line.to_string(),
            };
            state.points.insert(key, line.to_string());
            written += 1;
        }
        if rejected.is_empty() {
            (204, vec![], String::new())
        } else {
            let message = format!(
                r#"{{"code":"invalid","message":"partial write error ({written} written): unable to parse '{}': invalid field"}}"#,
                rejected[0].replace('"', "'")
            );
            (400, vec![], message)
        }
    }
}
