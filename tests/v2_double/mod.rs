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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::util::{HttpDouble, Request};

/// How the double answers writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Stores the lines; 400 for lines with `reject=` (writing the others).
    Normal,
    /// 401 for every write.
    Unauthorized,
    /// 404 bucket not found for every write.
    BucketNotFound,
    /// The next `count` writes answer `status` (429 or 503) with `Retry-After: secs`.
    Throttle {
        count: usize,
        status: u16,
        retry_after_secs: u64,
    },
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub authorization: Option<String>,
    pub n_lines: usize,
    pub status: u16,
    /// Whether the body came gzip-compressed.
    pub gzip: bool,
    /// The measurement of each line, in order (for tests of the order of writes).
    pub measurements: Vec<String>,
}

struct State {
    mode: Mode,
    /// Bodies over this many bytes get 413.
    max_body_bytes: usize,
    token: String,
    bucket: String,
    seen: Vec<Seen>,
    points: BTreeMap<String, String>,
}

pub struct InfluxV2Double {
    http: HttpDouble,
    state: Arc<Mutex<State>>,
}

impl InfluxV2Double {
    /// Starts the double on a loopback port, accepting `token` for bucket `bucket`.
    pub fn start(token: &str, bucket: &str) -> InfluxV2Double {
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Normal,
            max_body_bytes: usize::MAX,
            token: token.to_string(),
            bucket: bucket.to_string(),
            seen: Vec::new(),
            points: BTreeMap::new(),
        }));
        let served = state.clone();
        let http = HttpDouble::start(move |request| answer(&served, request));
        InfluxV2Double { http, state }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_max_body_bytes(&self, n: usize) {
        self.state.lock().unwrap().max_body_bytes = n;
    }

    /// Points stored, keyed by series and timestamp.
    pub fn n_points(&self) -> usize {
        self.state.lock().unwrap().points.len()
    }

    pub fn points(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .points
            .values()
            .cloned()
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn answer(state: &Mutex<State>, request: &Request) -> (u16, Vec<(&'static str, String)>, String) {
    let (path, headers) = (request.path.as_str(), &request.headers);
    let gzip = request.gzip();
    let body = request.decoded_body();
    let body = body.as_deref();
    let mut state = state.lock().unwrap();
    let authorization = headers.get("authorization").cloned();
    let mut measurements = Vec::new();
    let (n_lines, (status, extra, reply)) = match body {
        Ok(body) => {
            let text = String::from_utf8_lossy(body).into_owned();
            let n_lines = text.lines().filter(|l| !l.is_empty()).count();
            measurements = text
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.split([',', ' ']).next().unwrap_or("").to_string())
                .collect();
            let decision = decide(
                &mut state,
                path,
                authorization.as_deref(),
                &text,
                body.len(),
            );
            (n_lines, decision)
        }
        Err(_) => {
            let message = r#"{"code":"invalid","message":"unable to decompress the gzip body"}"#;
            (0, (400, vec![], message.to_string()))
        }
    };
    state.seen.push(Seen {
        at: Instant::now(),
        path: path.to_string(),
        authorization,
        n_lines,
        status,
        gzip,
        measurements,
    });
    (status, extra, reply)
}

fn decide(
    state: &mut State,
    path: &str,
    authorization: Option<&str>,
    text: &str,
    n_bytes: usize,
) -> (u16, Vec<(&'static str, String)>, String) {
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
    if let Mode::Throttle {
        count,
        status,
        retry_after_secs,
    } = state.mode.clone()
    {
        if count > 0 {
            state.mode = if count == 1 {
                Mode::Normal
            } else {
                Mode::Throttle {
                    count: count - 1,
                    status,
                    retry_after_secs,
                }
            };
            let message = r#"{"code":"too many requests","message":"throttled"}"#.to_string();
            return (
                status,
                vec![("Retry-After", retry_after_secs.to_string())],
                message,
            );
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
