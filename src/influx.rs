//! The one module that talks to InfluxDB: it builds the write URL for the configured API,
//! POSTs line protocol over a kept-alive blocking HTTP connection, and classifies every
//! answer into what the writer must do next.
//!
//! Runs on the writer thread (writes) and the main thread (the start-up ping). The
//! classification is a pure function so each status InfluxDB v1, v2 and v3 can send (and v3's
//! per-line partial-write answers) is tested without a server.

use std::io::Write;
use std::time::Duration;

use crate::config::{InfluxApi, InfluxConfig};

/// The most rejected lines an InfluxDB 3 answer names.
pub const V3_MAX_LINE_ERRORS: usize = 100;

/// One line InfluxDB 3 rejected: its number in the request body (from 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    pub number: usize,
    pub message: String,
}

/// Why a write did not store the batch, and so what the writer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Some lines are bad (400/422: unparsable line, field type conflict, v1 partial write).
    /// Rewriting the good ones is safe, so the writer splits the batch to find the bad ones.
    Rejected { status: u16, message: String },
    /// InfluxDB 3 stored every line of the body but these (a partial write, with
    /// `accept_partial=true`). `complete` is false when the list may be cut short: the server
    /// names at most [`V3_MAX_LINE_ERRORS`] lines, so lines after the last one named may have
    /// been rejected too.
    Partial {
        rejected: Vec<RejectedLine>,
        complete: bool,
    },
    /// InfluxDB 3 refused the whole body, naming one line: nothing was stored.
    Refused { line: RejectedLine },
    /// The body is over the server's limit (413): split and retry the halves.
    TooLarge,
    /// A passing failure (connection refused or reset, timeout, 429, 5xx): retry the same
    /// batch after `retry_after` when the server said, else after the writer's backoff.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure no retry fixes until an operator acts (401, 403, 404 database or bucket not
    /// found): `fix` says what to do. The writer keeps retrying slowly, never acknowledging.
    Fatal {
        status: u16,
        message: String,
        fix: &'static str,
    },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Rejected { status, message } => write!(f, "rejected ({status}): {message}"),
            WriteError::Partial { rejected, .. } => {
                write!(f, "partial write: {} lines rejected", rejected.len())
            }
            WriteError::Refused { line } => {
                write!(f, "refused at line {}: {}", line.number, line.message)
            }
            WriteError::TooLarge => write!(f, "request body too large (413)"),
            WriteError::Retry { reason, .. } => write!(f, "{reason}"),
            WriteError::Fatal {
                status,
                message,
                fix,
            } => write!(f, "{status}: {message}; {fix}"),
        }
    }
}

/// Classifies an HTTP answer to a write. `body` is the answer's text (InfluxDB puts the
/// reason in a JSON `error` or `message` field), `retry_after` its `Retry-After` header.
pub fn classify(status: u16, body: &str, retry_after: Option<&str>) -> Result<(), WriteError> {
    let message = error_message(body);
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        200..=299 => Ok(()),
        400 | 422 => Err(WriteError::Rejected { status, message }),
        401 => Err(WriteError::Fatal {
            status,
            message,
            fix: "check influx.token (v2) or influx.username/password (v1)",
        }),
        403 => Err(WriteError::Fatal {
            status,
            message,
            fix: "give the token or user write permission on the bucket or database",
        }),
        404 => Err(WriteError::Fatal {
            status,
            message,
            fix:
                "create the bucket (v2) or database (v1, v3), or set influx.bucket/influx.database",
        }),
        413 => Err(WriteError::TooLarge),
        // InfluxDB 1.x answers a write to a missing retention policy with a 500; no retry
        // fixes it, so it is fatal rather than passing.
        500 if message.contains("retention policy not found") => Err(WriteError::Fatal {
            status,
            message,
            fix: "create the retention policy, or correct or remove influx.retention_policy",
        }),
        429 | 500..=599 => Err(WriteError::Retry {
            reason: format!("{status}: {message}"),
            retry_after,
        }),
        _ => Err(WriteError::Retry {
            reason: format!("unexpected status {status}: {message}"),
            retry_after,
        }),
    }
}

/// Classifies an HTTP answer to an InfluxDB 3 `/api/v3/write_lp` write. Its refusals of
/// lines come in the two shapes of the InfluxDB 3 Core API reference ("Use the v3 write_lp API
/// to write data"): a partial write, 400 `{"error": "partial write of line protocol
/// occurred", "data": [{"original_line", "line_number", "error_message"}, ...]}`, where every
/// line not listed was stored; and a refusal of the whole body, `"data"` a single such object,
/// where nothing was. Everything else (401, 403, 404, 413, 429, 5xx) is read as for v2.
pub fn classify_v3(status: u16, body: &str, retry_after: Option<&str>) -> Result<(), WriteError> {
    if matches!(status, 400 | 422) {
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let line = |item: &serde_json::Value| -> Option<RejectedLine> {
            Some(RejectedLine {
                number: usize::try_from(item.get("line_number")?.as_u64()?).ok()?,
                message: one_line(item.get("error_message")?.as_str()?),
            })
        };
        match parsed.get("data") {
            Some(serde_json::Value::Array(items)) if !items.is_empty() => {
                let rejected: Vec<RejectedLine> = items.iter().filter_map(line).collect();
                if rejected.len() == items.len() {
                    return Err(WriteError::Partial {
                        complete: rejected.len() < V3_MAX_LINE_ERRORS,
                        rejected,
                    });
                }
            }
            Some(item @ serde_json::Value::Object(_)) => {
                if let Some(line) = line(item) {
                    return Err(WriteError::Refused { line });
                }
            }
            _ => {}
        }
    }
    classify(status, body, retry_after)
}

/// How a v3 partial write of `n` lines settles them: lines `0..explained` were stored, except
/// the `rejected` ones (positions from 0, ascending, each once, with InfluxDB's message);
/// lines `explained..n` are unknown and must be written again. Everything is explained when
/// the list is `complete`; otherwise only up to the last line it names. Line numbers outside
/// the body are ignored; an answer naming none explains nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPlan {
    pub rejected: Vec<(usize, String)>,
    pub explained: usize,
}

pub fn plan_partial(n: usize, rejected: Vec<RejectedLine>, complete: bool) -> PartialPlan {
    let mut positions: Vec<(usize, String)> = rejected
        .into_iter()
        .filter(|line| (1..=n).contains(&line.number))
        .map(|line| (line.number - 1, line.message))
        .collect();
    positions.sort_by_key(|(i, _)| *i);
    positions.dedup_by_key(|(i, _)| *i);
    let explained = match (positions.last(), complete) {
        (None, _) => 0,
        (Some(_), true) => n,
        (Some((last, _)), false) => last + 1,
    };
    PartialPlan {
        rejected: positions,
        explained,
    }
}

/// The reason InfluxDB gave: v1 and v3 answer `{"error": "..."}`, v2 `{"code": ...,
/// "message": "..."}`.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    one_line(&text)
}

/// A message as one bounded line: it goes into logs and dead-letter headers.
fn one_line(text: &str) -> String {
    let mut line: String = text.replace(['\r', '\n'], " ");
    if line.len() > 500 {
        let mut cut = 500;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    if line.is_empty() {
        line.push_str("no reason given");
    }
    line
}

/// Percent-encodes a query parameter value.
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The write endpoint for the configured API, target and precision.
pub fn write_url(config: &InfluxConfig) -> String {
    match config.api {
        InfluxApi::V2 => format!(
            "{}/api/v2/write?org={}&bucket={}&precision=ns",
            config.url,
            encode_query(config.org.as_deref().unwrap_or("")),
            encode_query(&config.target)
        ),
        InfluxApi::V1 => {
            let mut url = format!(
                "{}/write?db={}&precision=ns",
                config.url,
                encode_query(&config.target)
            );
            if let Some(rp) = &config.retention_policy {
                url.push_str(&format!("&rp={}", encode_query(rp)));
            }
            url
        }
        // `accept_partial=true` (the server's default, said explicitly): the good lines of a
        // batch are stored and the answer names the rejected ones, so nothing is bisected.
        InfluxApi::V3 => format!(
            "{}/api/v3/write_lp?db={}&precision=nanosecond&accept_partial=true{}",
            config.url,
            encode_query(&config.target),
            if config.no_sync { "&no_sync=true" } else { "" }
        ),
    }
}

/// The `Authorization` header value, if any.
fn authorization(config: &InfluxConfig) -> Option<String> {
    if let Some(token) = &config.token {
        let scheme = match config.api {
            InfluxApi::V3 => "Bearer",
            InfluxApi::V1 | InfluxApi::V2 => "Token",
        };
        return Some(format!("{scheme} {}", token.expose()));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Some(format!(
            "Basic {}",
            crate::base64::encode(format!("{user}:{}", password.expose()).as_bytes())
        )),
        _ => None,
    }
}

/// A blocking InfluxDB client with one kept-alive connection.
pub struct Influx {
    agent: ureq::Agent,
    api: InfluxApi,
    base_url: String,
    write_url: String,
    authorization: Option<String>,
    /// The buffer write bodies are compressed into, reused from write to write; `None` when
    /// `influx.gzip` is off.
    gzip: Option<Vec<u8>>,
}

/// Compresses `body` into `out` (emptied first) as one gzip member at level 1: the fastest
/// level, which already makes line protocol about five times smaller.
pub fn gzip(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.try_finish())
        .expect("compressing into memory cannot fail");
}

impl Influx {
    pub fn new(config: &InfluxConfig) -> Influx {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .max_idle_connections_per_host(2)
            .user_agent(concat!("collector/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(tls.clone());
        }
        let agent = builder.build().new_agent();
        Influx {
            agent,
            api: config.api,
            base_url: config.url.clone(),
            write_url: write_url(config),
            authorization: authorization(config),
            gzip: config.gzip.then(Vec::new),
        }
    }

    /// Writes a body of newline-terminated lines, compressed when `influx.gzip` is on; `Ok`
    /// only when InfluxDB answered 2xx.
    pub fn write(&mut self, body: &[u8]) -> Result<(), WriteError> {
        let mut request = self
            .agent
            .post(&self.write_url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let body = match &mut self.gzip {
            Some(compressed) => {
                gzip(body, compressed);
                request = request.header("Content-Encoding", "gzip");
                &compressed[..]
            }
            None => body,
        };
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = if (200..300).contains(&status) {
                    String::new()
                } else {
                    response
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024)
                        .read_to_string()
                        .unwrap_or_default()
                };
                match self.api {
                    InfluxApi::V3 => classify_v3(status, &text, retry_after.as_deref()),
                    InfluxApi::V1 | InfluxApi::V2 => {
                        classify(status, &text, retry_after.as_deref())
                    }
                }
            }
            Err(e) => Err(WriteError::Retry {
                reason: format!("{} unreachable: {}", self.base_url, transport_error(&e)),
                retry_after: None,
            }),
        }
    }

    /// Checks that InfluxDB answers at all (`/ping`, on both v1 and v2).
    pub fn ping(&self) -> Result<(), String> {
        // InfluxDB 3 guards `/ping` with the token unless told otherwise; 1.x and 2.x ignore
        // the header there.
        let mut request = self.agent.get(&format!("{}/ping", self.base_url));
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        match request.call() {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "{}/ping answered {}",
                self.base_url,
                response.status().as_u16()
            )),
            Err(e) => Err(format!(
                "{} unreachable: {}",
                self.base_url,
                transport_error(&e)
            )),
        }
    }

    /// Refuses to start when an `https://` InfluxDB fails the TLS handshake (an unknown CA,
    /// a wrong name, an expired certificate, a refused client certificate): unlike a
    /// database that is down, that needs a fix in the configuration or the certificates.
    /// Anything else (no answer at all) is left to the writer's retries.
    pub fn check_tls(&self) -> crate::error::Result<()> {
        if !self.base_url.starts_with("https://") {
            return Ok(());
        }
        match self.agent.get(&format!("{}/ping", self.base_url)).call() {
            Err(e) => match crate::tls::explain(&e.to_string(), "influx.tls") {
                Some(problem) => Err(crate::error::Error::Influx {
                    what: format!("TLS with {}", self.base_url),
                    problem,
                }),
                None => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }
}

/// The text of a failed request, with a TLS failure said plainly. ureq's errors name the
/// problem and at most the URL (which holds no credentials: the configuration refuses them),
/// never a header.
fn transport_error(e: &ureq::Error) -> String {
    let text = e.to_string();
    match crate::tls::explain(&text, "influx.tls") {
        Some(problem) => format!("TLS: {problem}"),
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// `collector check`: probes that read or write nothing, run on the main thread. The URL is
// left out of every message: it may hold credentials, and the caller prints it redacted.
// ---------------------------------------------------------------------------------------------

/// What one probe of `collector check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It works; the text says what was seen.
    Passed(String),
    /// It does not; `fix` says what to change.
    Failed { problem: String, fix: String },
}

fn failed(problem: impl Into<String>, fix: impl Into<String>) -> Probe {
    Probe::Failed {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The fix for refused credentials, naming the keys the configured API uses.
fn credentials_fix(config: &InfluxConfig) -> &'static str {
    match (
        config.api,
        config.token.is_some(),
        config.username.is_some(),
    ) {
        (InfluxApi::V2, true, _) => {
            "check influx.token (or COLLECTOR_INFLUX_TOKEN): it may be wrong or revoked"
        }
        (InfluxApi::V2, false, _) => "set influx.token (or COLLECTOR_INFLUX_TOKEN)",
        (InfluxApi::V1, _, true) | (InfluxApi::V1, true, _) => {
            "check influx.username and influx.password (or COLLECTOR_INFLUX_PASSWORD)"
        }
        (InfluxApi::V1, false, false) => {
            "InfluxDB requires authentication: set influx.username and influx.password"
        }
        (InfluxApi::V3, true, _) => {
            "check influx.token (or COLLECTOR_INFLUX_TOKEN): it may be wrong, revoked or expired"
        }
        (InfluxApi::V3, false, _) => {
            "set influx.token (or COLLECTOR_INFLUX_TOKEN) to a token of this InfluxDB 3 server"
        }
    }
}

/// The target as named in messages: ``database `x` `` or ``bucket `x` ``.
fn target_name(config: &InfluxConfig) -> String {
    match config.api {
        InfluxApi::V1 | InfluxApi::V3 => format!("database `{}`", config.target),
        InfluxApi::V2 => format!("bucket `{}`", config.target),
    }
}

/// Classifies the answer to `GET /ping`; `version` is its `X-Influxdb-Version` header.
pub fn classify_ping(status: u16, version: Option<&str>) -> Probe {
    match (status, version) {
        (200..=299, Some(version)) => Probe::Passed(format!("InfluxDB {version} answers /ping")),
        (200..=299, None) => Probe::Passed("answers /ping".into()),
        (status, _) => failed(
            format!("/ping answered {status}"),
            "set influx.url to the base URL of InfluxDB, e.g. http://127.0.0.1:8086",
        ),
    }
}

/// Classifies the answer to the v1 `SHOW DATABASES` query.
pub fn classify_databases(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    match status {
        200 => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let result = &answer["results"][0];
            if let Some(error) = result["error"].as_str() {
                return failed(
                    format!("SHOW DATABASES failed: {error}"),
                    "check the user's privileges",
                );
            }
            let found = result["series"][0]["values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|row| row[0].as_str() == Some(database));
            match found {
                true => Probe::Passed(format!(
                    "credentials accepted; database `{database}` exists"
                )),
                false => failed(
                    format!(
                        "database `{database}` does not exist (or the user has no access to it)"
                    ),
                    format!("create it (CREATE DATABASE \"{database}\"), or set influx.database"),
                ),
            }
        }
        401 => failed(
            format!("credentials refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        _ => failed(
            format!("SHOW DATABASES answered {status}: {}", error_message(body)),
            "check influx.url and influx.api (v1 here)",
        ),
    }
}

/// Classifies the answer to the v2 `GET /api/v2/buckets?org=&name=`. A token may write to a
/// bucket it cannot list, so an empty list is no failure: the write probe decides.
pub fn classify_buckets(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let org = config.org.as_deref().unwrap_or_default();
    let bucket = &config.target;
    match status {
        200 => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let found = answer["buckets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["name"].as_str() == Some(bucket));
            Probe::Passed(match found {
                true => format!("token accepted; bucket `{bucket}` exists in org `{org}`"),
                false => format!(
                    "token accepted in org `{org}` (it cannot list bucket `{bucket}`; the write check decides)"
                ),
            })
        }
        401 => failed(
            format!("token refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        404 => failed(
            format!("not found: {}", error_message(body)),
            "check influx.org: the organisation's name",
        ),
        403 => failed(
            format!("the token may not read buckets: {}", error_message(body)),
            "use a token with read access to the org's buckets, or ignore this if writes pass",
        ),
        _ => failed(
            format!("/api/v2/buckets answered {status}: {}", error_message(body)),
            "check influx.url and influx.api (v2 here; InfluxDB 1.x needs api: v1)",
        ),
    }
}

/// Classifies the answer to the v3 `GET /api/v3/configure/database?format=json`, a JSON array
/// of `{"iox::database": "name"}`. A token may write to a database it cannot list, so a
/// missing name is left to the write probe.
pub fn classify_v3_databases(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    match status {
        200 => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let found = answer
                .as_array()
                .into_iter()
                .flatten()
                .any(|row| row["iox::database"].as_str() == Some(database));
            Probe::Passed(match found {
                true => format!("token accepted; database `{database}` exists"),
                false => format!(
                    "token accepted (database `{database}` is not listed; the write check decides)"
                ),
            })
        }
        401 | 403 => failed(
            format!("token refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        _ => failed(
            format!(
                "/api/v3/configure/database answered {status}: {}",
                error_message(body)
            ),
            "check influx.url and influx.api (v3 here, for InfluxDB 3 Core or Enterprise)",
        ),
    }
}

/// Classifies the answer to a write of an empty body. InfluxDB checks the credentials, the
/// database or bucket and the write permission before it reads the body: 1.6.7 then answers
/// 204 and stores nothing (found by experiment), 2.x answers 400 `writing requires points`
/// (its write handler), so either means a real write would be allowed.
pub fn classify_write_probe(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let target = target_name(config);
    let message = error_message(body);
    match status {
        200..=299 => Probe::Passed(format!(
            "write permission on {target} (an empty write was accepted)"
        )),
        400 if config.api == InfluxApi::V2 && message.contains("writing requires points") => {
            Probe::Passed(format!(
                "write permission on {target} (an empty write was refused only for being empty)"
            ))
        }
        401 => failed(
            format!("credentials refused: {message}"),
            credentials_fix(config),
        ),
        403 => failed(
            format!("no write permission: {message}"),
            match config.api {
                InfluxApi::V1 => format!(
                    "grant it: GRANT WRITE ON \"{}\" TO \"{}\"",
                    config.target,
                    config.username.as_deref().unwrap_or("<user>")
                ),
                InfluxApi::V2 => format!(
                    "give the token write permission on bucket `{}`",
                    config.target
                ),
                InfluxApi::V3 => format!(
                    "use a token with write permission on database `{}`",
                    config.target
                ),
            },
        ),
        404 => failed(
            format!("{target} not found: {message}"),
            match config.api {
                InfluxApi::V1 => format!(
                    "create it (CREATE DATABASE \"{}\"), or set influx.database",
                    config.target
                ),
                InfluxApi::V2 => format!(
                    "create bucket `{}` in org `{}`, or set influx.bucket / influx.org",
                    config.target,
                    config.org.as_deref().unwrap_or_default()
                ),
                InfluxApi::V3 => format!(
                    "create it (influxdb3 create database {}), or set influx.database",
                    config.target
                ),
            },
        ),
        _ if message.contains("retention policy not found") => failed(
            message,
            "create the retention policy, or correct or remove influx.retention_policy",
        ),
        _ => failed(
            format!("an empty write answered {status}: {message}"),
            "check influx.url, influx.api and the server's log",
        ),
    }
}

/// A probe's HTTP answer.
struct ProbeAnswer {
    status: u16,
    body: String,
    version: Option<String>,
}

impl Influx {
    /// Sends one probe request, authorised like the writes.
    fn probe_request(&self, method: &str, url: &str) -> Result<ProbeAnswer, String> {
        let result = match method {
            "POST" => {
                let mut request = self
                    .agent
                    .post(url)
                    .header("Content-Type", "text/plain; charset=utf-8");
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.send(&b""[..])
            }
            _ => {
                let mut request = self.agent.get(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
        };
        let mut response =
            result.map_err(|e| format!("cannot reach InfluxDB: {}", transport_error(&e)))?;
        let version = response
            .headers()
            .get("x-influxdb-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok(ProbeAnswer {
            status: response.status().as_u16(),
            body,
            version,
        })
    }

    /// `GET /ping`: InfluxDB answers, and which version.
    pub fn probe_ping(&self) -> Probe {
        match self.probe_request("GET", &format!("{}/ping", self.base_url)) {
            Ok(answer) => classify_ping(answer.status, answer.version.as_deref()),
            Err(problem) if problem.contains("TLS: ") => failed(
                problem,
                "fix the server's certificate, or influx.tls (ca, cert, key) and influx.url",
            ),
            Err(problem) => failed(
                problem,
                "start InfluxDB, or correct influx.url (scheme, host and port)",
            ),
        }
    }

    /// The credentials and the target: v1 `SHOW DATABASES`, v2 the bucket by name.
    pub fn probe_target(&self, config: &InfluxConfig) -> Probe {
        let url = match config.api {
            InfluxApi::V1 => format!("{}/query?q=SHOW%20DATABASES", self.base_url),
            InfluxApi::V2 => format!(
                "{}/api/v2/buckets?org={}&name={}",
                self.base_url,
                encode_query(config.org.as_deref().unwrap_or_default()),
                encode_query(&config.target)
            ),
            InfluxApi::V3 => format!("{}/api/v3/configure/database?format=json", self.base_url),
        };
        match self.probe_request("GET", &url) {
            Ok(answer) => match config.api {
                InfluxApi::V1 => classify_databases(config, answer.status, &answer.body),
                InfluxApi::V2 => classify_buckets(config, answer.status, &answer.body),
                InfluxApi::V3 => classify_v3_databases(config, answer.status, &answer.body),
            },
            Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
        }
    }

    /// The write permission, with a write of nothing to the very URL the writer uses.
    pub fn probe_write(&self, config: &InfluxConfig) -> Probe {
        match self.probe_request("POST", &self.write_url) {
            Ok(answer) => classify_write_probe(config, answer.status, &answer.body),
            Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
        }
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;
    use crate::config::Secret;

    /// The write tests' configuration, with organisation `acme`.
    fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            org: Some("acme".into()),
            ..super::tests::config(api)
        }
    }

    fn passed(probe: Probe) -> String {
        match probe {
            Probe::Passed(text) => text,
            failed => panic!("expected a pass, got {failed:?}"),
        }
    }

    /// Asserts a failure whose problem holds `problem` and whose fix holds `fix`.
    fn check_failed(probe: Probe, problem: &str, fix: &str) {
        match probe {
            Probe::Failed { problem: p, fix: f } => {
                assert!(p.contains(problem), "{p:?} lacks {problem:?}");
                assert!(f.contains(fix), "{f:?} lacks {fix:?}");
            }
            passed => panic!("expected a failure, got {passed:?}"),
        }
    }

    #[test]
    fn ping() {
        assert_eq!(
            passed(classify_ping(204, Some("1.6.7~rc0"))),
            "InfluxDB 1.6.7~rc0 answers /ping"
        );
        assert_eq!(passed(classify_ping(200, None)), "answers /ping");
        check_failed(classify_ping(404, None), "404", "influx.url");
    }

    // Bodies below are influxd 1.6.7's own answers, recorded by hand.
    #[test]
    fn v1_databases() {
        let v1 = config(InfluxApi::V1);
        let list = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["beta"]]}]}]}"#;
        assert!(passed(classify_databases(&v1, 200, list)).contains("database `beta` exists"));
        let other = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["alpha"]]}]}]}"#;
        check_failed(
            classify_databases(&v1, 200, other),
            "`beta` does not exist",
            "CREATE DATABASE \"beta\"",
        );
        let none = r#"{"results":[{"statement_id":0}]}"#;
        check_failed(
            classify_databases(&v1, 200, none),
            "does not exist",
            "influx.database",
        );
        let anonymous = r#"{"error":"unable to parse authentication credentials"}"#;
        check_failed(
            classify_databases(&v1, 401, anonymous),
            "unable to parse",
            "set influx.username",
        );
        let mut with_user = v1.clone();
        with_user.username = Some("u".into());
        with_user.password = Some(Secret::new("p"));
        check_failed(
            classify_databases(&with_user, 401, r#"{"error":"authorization failed"}"#),
            "authorization failed",
            "check influx.username",
        );
    }

    #[test]
    fn v3_databases() {
        let mut v3 = config(InfluxApi::V3);
        v3.token = Some(Secret::new("t"));
        let list = r#"[{"iox::database":"_internal"},{"iox::database":"beta"}]"#;
        assert!(passed(classify_v3_databases(&v3, 200, list)).contains("database `beta` exists"));
        assert!(passed(classify_v3_databases(&v3, 200, "[]")).contains("the write check decides"));
        check_failed(
            classify_v3_databases(&v3, 401, r#"{"error":"the request was not authenticated"}"#),
            "not authenticated",
            "check influx.token",
        );
        check_failed(classify_v3_databases(&v3, 404, ""), "404", "v3 here");
    }

    #[test]
    fn v1_write_probe() {
        let mut v1 = config(InfluxApi::V1);
        assert!(passed(classify_write_probe(&v1, 204, "")).contains("database `beta`"));
        check_failed(
            classify_write_probe(&v1, 404, r#"{"error":"database not found: \"beta\""}"#),
            "database not found",
            "CREATE DATABASE",
        );
        v1.username = Some("reader".into());
        check_failed(
            classify_write_probe(
                &v1,
                403,
                r#"{"error":"\"reader\" user is not authorized to write to database \"beta\""}"#,
            ),
            "not authorized to write",
            "GRANT WRITE ON \"beta\" TO \"reader\"",
        );
        check_failed(
            classify_write_probe(&v1, 500, r#"{"error":"retention policy not found: week"}"#),
            "retention policy not found: week",
            "influx.retention_policy",
        );
        check_failed(
            classify_write_probe(&v1, 401, r#"{"error":"authorization failed"}"#),
            "authorization failed",
            "influx.password",
        );
        check_failed(
            classify_write_probe(&v1, 502, "bad gateway"),
            "answered 502",
            "influx.url",
        );
        // On v1 a 400 is not the v2 "empty" answer.
        check_failed(
            classify_write_probe(
                &v1,
                400,
                r#"{"code":"invalid","message":"writing requires points"}"#,
            ),
            "400",
            "",
        );
    }

    // Bodies below follow the InfluxDB v2 API's error format {"code", "message"}.
    #[test]
    fn v2_buckets_and_write_probe() {
        let mut v2 = config(InfluxApi::V2);
        v2.token = Some(Secret::new("t"));
        let found = r#"{"buckets":[{"id":"1","name":"beta","orgID":"2"}]}"#;
        assert!(passed(classify_buckets(&v2, 200, found))
            .contains("bucket `beta` exists in org `acme`"));
        assert!(passed(classify_buckets(&v2, 200, r#"{"buckets":[]}"#))
            .contains("the write check decides"));
        check_failed(
            classify_buckets(
                &v2,
                401,
                r#"{"code":"unauthorized","message":"unauthorized access"}"#,
            ),
            "unauthorized access",
            "check influx.token",
        );
        check_failed(
            classify_buckets(
                &v2,
                404,
                r#"{"code":"not found","message":"organization name \"acme\" not found"}"#,
            ),
            "organization name",
            "influx.org",
        );
        let empty = r#"{"code":"invalid","message":"writing requires points"}"#;
        assert!(passed(classify_write_probe(&v2, 400, empty)).contains("bucket `beta`"));
        assert!(passed(classify_write_probe(&v2, 204, "")).contains("bucket `beta`"));
        check_failed(
            classify_write_probe(
                &v2,
                403,
                r#"{"code":"forbidden","message":"insufficient permissions for write"}"#,
            ),
            "insufficient permissions",
            "write permission on bucket `beta`",
        );
        check_failed(
            classify_write_probe(
                &v2,
                404,
                r#"{"code":"not found","message":"bucket \"beta\" not found"}"#,
            ),
            "bucket `beta` not found",
            "influx.bucket",
        );
        check_failed(
            classify_write_probe(
                &v2,
                400,
                r#"{"code":"invalid","message":"unable to parse"}"#,
            ),
            "unable to parse",
            "",
        );
        v2.token = None;
        check_failed(
            classify_write_probe(&v2, 401, "{}"),
            "credentials refused",
            "set influx.token",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    pub(super) fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            url: "http://db:8086".into(),
            api,
            token: None,
            org: Some("my org".into()),
            target: "beta".into(),
            retention_policy: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(1),
            tls: None,
            gzip: true,
            no_sync: false,
        }
    }

    #[test]
    fn gzip_bodies_decompress_to_the_same_lines() {
        use std::io::Read;
        let body = b"m,host=a value=1i 1659312000000000000\n".repeat(100);
        let mut compressed = b"left over".to_vec();
        gzip(&body, &mut compressed);
        assert!(compressed.len() < body.len() / 5, "{}", compressed.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn urls_per_api() {
        assert_eq!(
            write_url(&config(InfluxApi::V2)),
            "http://db:8086/api/v2/write?org=my%20org&bucket=beta&precision=ns"
        );
        let mut v1 = config(InfluxApi::V1);
        assert_eq!(write_url(&v1), "http://db:8086/write?db=beta&precision=ns");
        v1.retention_policy = Some("week".into());
        assert_eq!(
            write_url(&v1),
            "http://db:8086/write?db=beta&precision=ns&rp=week"
        );
    }

    #[test]
    fn auth_headers() {
        let mut c = config(InfluxApi::V2);
        assert_eq!(authorization(&c), None);
        c.token = Some(Secret::new("t0k"));
        assert_eq!(authorization(&c).unwrap(), "Token t0k");
        let mut c = config(InfluxApi::V1);
        c.username = Some("Aladdin".into());
        c.password = Some(Secret::new("open sesame"));
        assert_eq!(
            authorization(&c).unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(204, "", None), Ok(()));
        let partial = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#;
        assert!(
            matches!(classify(400, partial, None), Err(WriteError::Rejected { status: 400, message }) if message.starts_with("partial write"))
        );
        assert!(
            matches!(classify(401, r#"{"code":"unauthorized","message":"unauthorized access"}"#, None),
            Err(WriteError::Fatal { status: 401, message, .. }) if message == "unauthorized access")
        );
        assert!(matches!(
            classify(404, r#"{"error":"database not found: \"x\""}"#, None),
            Err(WriteError::Fatal { status: 404, .. })
        ));
        assert_eq!(classify(413, "", None), Err(WriteError::TooLarge));
        assert_eq!(
            classify(429, "slow down", Some("7")),
            Err(WriteError::Retry {
                reason: "429: slow down".into(),
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert!(matches!(
            classify(503, "", Some("soon")),
            Err(WriteError::Retry {
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            classify(302, "", None),
            Err(WriteError::Retry { .. })
        ));
        assert!(matches!(
            classify(500, r#"{"error":"retention policy not found: week"}"#, None),
            Err(WriteError::Fatal { status: 500, .. })
        ));
        assert!(matches!(
            classify(500, r#"{"error":"timeout"}"#, None),
            Err(WriteError::Retry { .. })
        ));
    }

    #[test]
    fn v3_url_and_bearer_token() {
        let mut v3 = config(InfluxApi::V3);
        v3.org = None;
        assert_eq!(
            write_url(&v3),
            "http://db:8086/api/v3/write_lp?db=beta&precision=nanosecond&accept_partial=true"
        );
        v3.no_sync = true;
        v3.target = "logs db".into();
        assert_eq!(
            write_url(&v3),
            "http://db:8086/api/v3/write_lp?db=logs%20db&precision=nanosecond&accept_partial=true&no_sync=true"
        );
        v3.token = Some(Secret::new("apiv3_x"));
        assert_eq!(authorization(&v3).unwrap(), "Bearer apiv3_x");
    }

    fn rejected(number: usize, message: &str) -> RejectedLine {
        RejectedLine {
            number,
            message: message.into(),
        }
    }

    // Bodies below follow the InfluxDB 3 Core API reference for `/api/v3/write_lp`.
    #[test]
    fn v3_answers_are_classified() {
        assert_eq!(classify_v3(204, "", None), Ok(()));
        let partial = r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"home,room=Sunroom temp=hi 1735549200","line_number":2,"error_message":"invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string"},{"original_line":"x","line_number":7,"error_message":"No fields were\nprovided"}]}"#;
        assert_eq!(
            classify_v3(400, partial, None),
            Err(WriteError::Partial {
                rejected: vec![
                    rejected(2, "invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string"),
                    rejected(7, "No fields were provided"),
                ],
                complete: true
            })
        );
        let items: Vec<String> = (1..=100)
            .map(|n| format!(r#"{{"original_line":"m","line_number":{n},"error_message":"bad"}}"#))
            .collect();
        let hundred = format!(
            r#"{{"error":"partial write of line protocol occurred","data":[{}]}}"#,
            items.join(",")
        );
        assert!(matches!(
            classify_v3(400, &hundred, None),
            Err(WriteError::Partial { complete: false, rejected }) if rejected.len() == 100
        ));
        let whole = r#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"m v=","line_number":3,"error_message":"No fields were provided"}}"#;
        assert_eq!(
            classify_v3(400, whole, None),
            Err(WriteError::Refused {
                line: rejected(3, "No fields were provided")
            })
        );
        // Without line details a refusal is read as v1/v2 read it: split to find the lines.
        assert!(matches!(
            classify_v3(400, r#"{"error":"Update to schema would exceed number of tables limit of 2000 tables"}"#, None),
            Err(WriteError::Rejected { status: 400, message }) if message.contains("limit of 2000 tables")
        ));
        assert!(matches!(
            classify_v3(400, r#"{"error":"x","data":[{"line_number":"two"}]}"#, None),
            Err(WriteError::Rejected { .. })
        ));
        assert!(matches!(
            classify_v3(
                401,
                r#"{"error":"the request was not authenticated"}"#,
                None
            ),
            Err(WriteError::Fatal { status: 401, .. })
        ));
        assert!(matches!(
            classify_v3(404, r#"{"error":"database not found: beta"}"#, None),
            Err(WriteError::Fatal { status: 404, fix, .. }) if fix.contains("v3")
        ));
        assert_eq!(classify_v3(413, "", None), Err(WriteError::TooLarge));
        assert_eq!(
            classify_v3(429, "", Some("3")),
            Err(WriteError::Retry {
                reason: "429: no reason given".into(),
                retry_after: Some(Duration::from_secs(3))
            })
        );
        assert!(matches!(
            classify_v3(503, "", Some("1")),
            Err(WriteError::Retry { .. })
        ));
    }

    #[test]
    fn partial_writes_are_planned() {
        let plan = plan_partial(
            10,
            vec![rejected(7, "b"), rejected(2, "a"), rejected(7, "c")],
            true,
        );
        assert_eq!(
            plan,
            PartialPlan {
                rejected: vec![(1, "a".into()), (6, "b".into())],
                explained: 10
            }
        );
        // Cut short: only up to the last named line is known.
        let plan = plan_partial(10, vec![rejected(2, "a"), rejected(4, "b")], false);
        assert_eq!(plan.explained, 4);
        // Numbers outside the body are ignored; naming none explains nothing.
        let plan = plan_partial(3, vec![rejected(0, "a"), rejected(4, "b")], true);
        assert_eq!(
            plan,
            PartialPlan {
                rejected: vec![],
                explained: 0
            }
        );
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let long = "x\n".repeat(1000);
        let m = error_message(&long);
        assert!(!m.contains('\n') && m.len() <= 504);
        assert_eq!(error_message(""), "no reason given");
    }
}
