//! The one module that talks to NATS: connecting, the JetStream management API, the
//! configuration bucket, pull requests and acknowledged publishes. The one exception is the
//! settling of a record that arrived (its acks, `+TERM` and dead letter): `crate::settle`
//! sends it, the only module that can, and publishes the dead letter through
//! `publish_stored`.
//!
//! Management requests (streams, consumers, the KV bucket) are made by the main thread with
//! the raw JSON API rather than the `nats` crate's typed helpers: the crate turns any error
//! code it does not know into a serde error and cannot time out some calls, while the raw API
//! lets every answer be classified. Pull requests are published by the worker threads
//! themselves with an explicit flush (the crate's `fetch` waits on its 5 ms flusher and can
//! hang on a 409); see docs/NATS-CLIENT.md.
//!
//! Split by stage: this file connects and holds [`JetStream`] with the one API request and
//! answer reader; `names` builds every stream, subject and bucket name; `manage` ensures
//! streams, consumers, the dead-letter stream and the bucket; `kv` reads and writes the
//! bucket; `pull` runs on the workers (pull requests, arrivals);
//! `lag` surveys the pulled measurements' consumers for the main thread; `admin` holds what
//! only the admin commands use; `pipeline` keeps many requests in flight, by the pure
//! bookkeeping of `window`.
#![allow(deprecated)]

mod admin;
mod kv;
mod lag;
mod manage;
mod names;
mod pipeline;
mod pull;
mod window;

pub use admin::{AccountInfo, MessageReader, Outgoing};
pub use kv::KvEntry;
pub use lag::Surveyed;
pub use manage::{choose_replicas, dead_letter_window, resolve_replicas, Created, ReplicasFrom};
pub use names::{
    bucket_name, bucket_stream, dead_letter_stream, dead_letter_subject, measurement_of,
    stream_name, subject_name, suspect_key, suspects_bucket, DURABLE,
};
pub use pull::{classify, flush, parse_ack_subject, request_pull, Arrival, Delivery};

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::base64;
use crate::config::{NatsAuth, NatsConfig};
use crate::error::{Error, Result};

// Aliases, not re-exports: the `nats` crate is deprecated (for async-nats, which this
// synchronous service does not use) and its warnings are allowed in this module only.
pub type Connection = nats::Connection;
pub type Message = nats::Message;
pub type Subscription = nats::Subscription;

/// How long a management request may wait for the server.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream error codes this module acts on.
const ERR_STREAM_NOT_FOUND: u32 = 10059;
const ERR_CONSUMER_NOT_FOUND: u32 = 10014;
const ERR_NO_MESSAGE_FOUND: u32 = 10037;
const ERR_STREAM_NAME_IN_USE: u32 = 10058;
/// A publish whose `Nats-Expected-Last-Subject-Sequence` no longer holds.
const ERR_WRONG_LAST_SEQUENCE: u32 = 10071;

/// `Ok(None)` when `result` is a JetStream error whose code is one of `missing` (the stream,
/// consumer or message is not there), else the value or the error: the one place a
/// not-found answer is told apart from a failure.
fn unless_missing<T>(result: Result<T>, missing: &[u32]) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if has_err_code(&e, missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `error` is a JetStream error whose code is one of `codes`.
fn has_err_code(error: &Error, codes: &[u32]) -> bool {
    matches!(error, Error::JetStream { err_code, .. } if codes.contains(err_code))
}

/// How often a connection was re-established since it was made: counted by the reconnect
/// callback [`connect`] installs, read by the workers, whose pull requests waiting on the
/// server may not have survived (control, not a metric). Clones share the count; only this
/// module counts.
#[derive(Debug, Clone, Default)]
pub struct Reconnects(Arc<AtomicU64>);

impl Reconnects {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn counted(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connects to every host of `nats.hosts` and reconnects forever: the crate's default gives
/// up after a few minutes of outage, which would leave a collector running but deaf. Each
/// reconnect is counted in `reconnects` (the service's [`crate::flow::Flow::reconnects`]; a
/// fresh one where nobody watches).
///
/// With a `nats.tls` block TLS is required on every host, its CA file replaces the system's
/// CAs and its client certificate is presented; the server's name is always checked. A
/// failed handshake becomes one line saying what failed (see [`crate::tls::explain`]).
pub fn connect(
    config: &NatsConfig,
    client_name: &str,
    reconnects: &Reconnects,
) -> Result<Connection> {
    let mut options = match &config.auth {
        NatsAuth::None => nats::Options::new(),
        NatsAuth::Token(token) => nats::Options::with_token(token.expose()),
        NatsAuth::UserPassword { username, password } => {
            nats::Options::with_user_pass(username, password.expose())
        }
        NatsAuth::Creds(path) => {
            // The crate reads the file again at every (re)connect, so a rotated file is
            // picked up; parse it once now so a bad one is refused naming the key. Its
            // errors say what is missing, never the file's content.
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::config("nats.creds", format!("cannot read {path}: {e}")))?;
            nats::Options::with_static_credentials(&text).map_err(|e| {
                Error::config(
                    "nats.creds",
                    format!("{path} is not a NATS credentials file: {e}"),
                )
            })?;
            nats::Options::with_credentials(path)
        }
        NatsAuth::Nkey(seed) => {
            let pair = nkeys::KeyPair::from_seed(seed.expose()).map_err(|e| {
                Error::config("nats.nkey", format!("not a valid nkey user seed: {e}"))
            })?;
            let public = pair.public_key();
            nats::Options::with_nkey(&public, move |nonce| pair.sign(nonce).unwrap_or_default())
        }
    };
    if let Some(tls) = &config.tls {
        options = options.tls_required(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificate(ca);
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.client_cert(cert, key);
        }
    }
    let hosts = config.hosts.join(",");
    let reconnects = reconnects.clone();
    options
        .with_name(client_name)
        .max_reconnects(None)
        .reconnect_buffer_size(64 << 20)
        .disconnect_callback(|| {
            crate::stats::Stats::set(&crate::stats::NATS_CONNECTED, false);
            log::warn!("nats: connection lost; reconnecting")
        })
        .reconnect_callback(move || {
            crate::stats::Stats::set(&crate::stats::NATS_CONNECTED, true);
            // Pull requests waiting on the server may not have survived: the workers see
            // the count move and issue theirs again.
            reconnects.counted();
            log::info!("nats: reconnected")
        })
        .connect(hosts.as_str())
        .map_err(|e| {
            Error::nats(
                format!("connect to {hosts}"),
                connect_error(e, &config.auth),
            )
        })
}

/// The crate's connect error in plain words: a TLS failure said by what failed, a refusal
/// by what was refused (`unexpected line while connecting: Err("Authorization Violation")`
/// is the crate's text). The server's `-ERR` texts never quote a credential. Refusals get
/// the kind `PermissionDenied`, which start-up does not wait out ([`Error::retry`]); a
/// server not reachable yet keeps its own kind.
fn connect_error(e: io::Error, auth: &NatsAuth) -> io::Error {
    let refused = |text: String| io::Error::new(io::ErrorKind::PermissionDenied, text);
    let text = e.to_string();
    if let Some(problem) = crate::tls::explain(&text, "nats.tls") {
        return refused(format!("TLS: {problem}"));
    }
    if text.contains("Authorization Violation") {
        let refused = match auth {
            NatsAuth::None => {
                "the server requires credentials: set nats.nkey, nats.token, nats.username/password or nats.creds".to_string()
            }
            NatsAuth::Nkey(_) => "the server does not accept this nkey (nats.nkey)".to_string(),
            NatsAuth::Token(_) => "the server refused the token (nats.token)".to_string(),
            NatsAuth::UserPassword { username, .. } => format!(
                "the server refused user `{username}` or its password (nats.username, nats.password)"
            ),
            NatsAuth::Creds(path) => {
                format!("the server refused the user of credentials file {path} (nats.creds)")
            }
        };
        return io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("authorization violation: {refused}"),
        );
    }
    match text.strip_prefix("unexpected line while connecting: Err(\"") {
        // An authentication refusal needs a fix; another (`maximum connections exceeded`)
        // may pass, and start-up waits it out.
        Some(rest) if rest.to_ascii_lowercase().contains("auth") => refused(format!(
            "the server refused the connection: {}",
            rest.trim_end_matches("\")")
        )),
        Some(rest) => io::Error::other(format!(
            "the server refused the connection: {}",
            rest.trim_end_matches("\")")
        )),
        None => e,
    }
}

/// The parts of a stream's info the collector reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamState {
    #[serde(default)]
    pub messages: u64,
    #[serde(default)]
    pub last_seq: u64,
    #[serde(default)]
    pub consumer_count: u64,
    /// When the oldest record in the stream was stored (RFC 3339); meaningless when the
    /// stream is empty.
    #[serde(default)]
    pub first_ts: Option<String>,
    /// Subjects with their message counts, present only when asked for with a filter.
    #[serde(default)]
    pub subjects: Option<std::collections::HashMap<String, u64>>,
}

impl StreamState {
    /// When the oldest record in the stream was stored, in nanoseconds since the epoch;
    /// `None` when the stream is empty. In a work-queue stream a stored record is removed,
    /// so this is the oldest record not yet written.
    pub fn oldest_ns(&self) -> Option<i64> {
        if self.messages == 0 {
            return None;
        }
        crate::record::parse_rfc3339_ns(self.first_ts.as_deref()?).ok()
    }
}

/// The parts of a consumer's info the collector reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsumerState {
    #[serde(default)]
    pub num_pending: u64,
    #[serde(default)]
    pub num_ack_pending: u64,
    #[serde(default)]
    pub num_redelivered: u64,
    /// The consumer's own settings: those of whoever created it, which may not be ours.
    #[serde(default)]
    pub config: ConsumerSettings,
}

/// What the collector reads of a consumer's settings.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Nanoseconds; 0 when absent.
    #[serde(default)]
    pub ack_wait: u64,
}

impl ConsumerState {
    /// The consumer's ack wait, when its info says.
    pub fn ack_wait(&self) -> Option<std::time::Duration> {
        (self.config.ack_wait > 0).then(|| std::time::Duration::from_nanos(self.config.ack_wait))
    }
}

/// The JetStream management API over one connection.
#[derive(Clone)]
pub struct JetStream {
    conn: Connection,
    /// Replicas of every stream it creates (the bucket, the dead-letter stream, a missing
    /// measurement stream): 1 unless [`JetStream::with_replicas`] says otherwise.
    replicas: usize,
}

impl JetStream {
    pub fn new(conn: Connection) -> JetStream {
        JetStream { conn, replicas: 1 }
    }

    /// The same, creating streams with `replicas` replicas (see [`resolve_replicas`]).
    pub fn with_replicas(mut self, replicas: usize) -> JetStream {
        self.replicas = replicas;
        self
    }

    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sends one API request and returns its JSON answer, or the API error it carries.
    fn request(&self, what: &str, subject: &str, body: &Value) -> Result<Value> {
        let payload = serde_json::to_vec(body).expect("a json value always serializes");
        let reply = self.conn.request_timeout(subject, payload, API_TIMEOUT);
        json_answer(
            what,
            reply,
            "no responders: is JetStream enabled on the server (-js)?",
        )
    }

    /// The state of stream `name`, or `None` when it does not exist.
    pub fn stream_state(
        &self,
        name: &str,
        subjects_filter: Option<&str>,
    ) -> Result<Option<StreamState>> {
        let body = match subjects_filter {
            Some(filter) => json!({ "subjects_filter": filter }),
            None => json!({}),
        };
        Ok(
            unless_missing(self.stream_info(name, &body), &[ERR_STREAM_NOT_FOUND])?
                .map(|info| serde_json::from_value(info["state"].clone()).unwrap_or_default()),
        )
    }

    /// The whole info answer of stream `name` (its `config` and `state`).
    fn stream_info(&self, name: &str, body: &Value) -> Result<Value> {
        self.request(
            &format!("stream info {name}"),
            &format!("$JS.API.STREAM.INFO.{name}"),
            body,
        )
    }

    /// Replaces the whole configuration of stream `name` with `config` (JetStream takes no
    /// partial update, so callers change a copy of the config its info answer holds).
    fn update_stream(&self, what: &str, name: &str, config: &Value) -> Result<()> {
        self.request(what, &format!("$JS.API.STREAM.UPDATE.{name}"), config)?;
        Ok(())
    }

    /// One publish that returns once a stream has stored it ([`publish_stored`]).
    fn publish_acknowledged(
        &self,
        what: &str,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> Result<()> {
        publish_stored(&self.conn, what, subject, headers, payload).map(drop)
    }
}

/// One publish on `conn` with `headers` (name, value), returning once a stream has stored
/// it: the stream's answer (`seq`, `duplicate`), or the error it carries, read by
/// [`api_result`] as every JetStream answer is. The main thread's KV writes and the dead
/// letters a worker or the writer publishes on its own connection come through here.
pub(crate) fn publish_stored(
    conn: &Connection,
    what: &str,
    subject: &str,
    headers: &[(&str, &str)],
    payload: &[u8],
) -> Result<Value> {
    let mut map = nats::header::HeaderMap::new();
    for &(name, value) in headers {
        map.insert(name, value);
    }
    let headers = (!headers.is_empty()).then_some(&map);
    let reply = conn.request_with_headers_or_timeout(subject, headers, Some(API_TIMEOUT), payload);
    json_answer(what, reply, &format!("no stream stores subject {subject}"))
}

/// A message read back from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    /// When the stream stored it, in RFC 3339 as the server wrote it.
    pub time: String,
    pub headers: Vec<(String, String)>,
    pub data: Vec<u8>,
}

impl StoredMessage {
    /// The first value of header `name` (names compare without case, as in HTTP).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the `message` of a `STREAM.MSG.GET` answer.
    fn from_api(answer: &Value) -> Option<StoredMessage> {
        let message = answer.get("message")?;
        Some(StoredMessage {
            sequence: message["seq"].as_u64()?,
            subject: message["subject"].as_str()?.to_string(),
            time: message["time"].as_str().unwrap_or_default().to_string(),
            headers: parse_header_block(&base64::decode(
                message["hdrs"].as_str().unwrap_or_default(),
            )),
            data: base64::decode(message["data"].as_str().unwrap_or_default()),
        })
    }
}

/// Parses a `NATS/1.0` header block: a status line, then `Name: value` lines.
fn parse_header_block(block: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(block)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The JSON answer to a JetStream request (an API call or an acknowledged publish), or the
/// error it carries. `no_responders` says what an answer from nobody means for this request.
fn json_answer(what: &str, reply: io::Result<Message>, no_responders: &str) -> Result<Value> {
    let reply = reply.map_err(|e| match e.kind() {
        // The kind stays: no responders while a cluster elects is worth waiting for.
        io::ErrorKind::NotFound => Error::nats(
            what,
            io::Error::new(io::ErrorKind::NotFound, no_responders.to_string()),
        ),
        _ => Error::nats(what, e),
    })?;
    let answer: Value = serde_json::from_slice(&reply.data)
        .map_err(|e| Error::nats(what, io::Error::other(format!("unreadable answer: {e}"))))?;
    api_result(what, answer)
}

/// A JSON API answer, or the error it carries.
fn api_result(what: &str, answer: Value) -> Result<Value> {
    match answer.get("error") {
        Some(error) => Err(Error::JetStream {
            what: what.to_string(),
            code: error["code"].as_u64().unwrap_or(0) as u16,
            err_code: error["err_code"].as_u64().unwrap_or(0) as u32,
            description: error["description"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        }),
        None => Ok(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn clones_of_a_reconnect_count_share_it() {
        let reconnects = Reconnects::default();
        let watched = reconnects.clone();
        assert_eq!(watched.count(), 0);
        reconnects.counted();
        reconnects.counted();
        assert_eq!(watched.count(), 2);
        assert_eq!(Reconnects::default().count(), 0, "one per connection");
    }

    #[test]
    fn stored_messages_are_read_from_the_api() {
        // "NATS/1.0\r\nCollector-Error: no fields\r\nKV-Operation: DEL\r\n\r\n" and `{"a":1}`.
        let answer = json!({"message": {
            "subject": "beta.dlq.access",
            "seq": 7,
            "hdrs": "TkFUUy8xLjANCkNvbGxlY3Rvci1FcnJvcjogbm8gZmllbGRzDQpLVi1PcGVyYXRpb246IERFTA0KDQo=",
            "data": "eyJhIjoxfQ==",
            "time": "2022-08-01T00:00:00.5Z"
        }});
        let message = StoredMessage::from_api(&answer).unwrap();
        assert_eq!(message.sequence, 7);
        assert_eq!(message.subject, "beta.dlq.access");
        assert_eq!(message.data, br#"{"a":1}"#);
        assert_eq!(message.header("collector-error"), Some("no fields"));
        assert_eq!(message.header("Nope"), None);
        assert_eq!(StoredMessage::from_api(&json!({"error": {}})), None);
    }

    #[test]
    fn api_errors_keep_their_codes() {
        match api_result(
            "x",
            json!({"error": {"code": 404, "err_code": 10037, "description": "no message found"}}),
        ) {
            Err(Error::JetStream {
                code: 404,
                err_code: 10037,
                description,
                ..
            }) => {
                assert_eq!(description, "no message found")
            }
            other => panic!("{other:?}"),
        }
        assert!(api_result("x", json!({"seq": 1})).is_ok());
    }

    #[test]
    fn connect_errors_say_what_was_refused() {
        let violation = || {
            io::Error::other("unexpected line while connecting: Err(\"Authorization Violation\")")
        };
        let token = NatsAuth::Token(Secret::new("t0ken-value"));
        let text = connect_error(violation(), &token).to_string();
        assert_eq!(
            text,
            "authorization violation: the server refused the token (nats.token)"
        );
        // Refusals are not waited out at start-up; an unreachable server is.
        assert_eq!(
            connect_error(violation(), &token).kind(),
            io::ErrorKind::PermissionDenied
        );
        let text = connect_error(violation(), &NatsAuth::None).to_string();
        assert!(text.contains("requires credentials"), "{text}");
        let text = connect_error(
            io::Error::other("unexpected line while connecting: Err(\"Authentication Timeout\")"),
            &token,
        )
        .to_string();
        assert_eq!(
            text,
            "the server refused the connection: Authentication Timeout"
        );
        let busy = connect_error(
            io::Error::other(
                "unexpected line while connecting: Err(\"maximum connections exceeded\")",
            ),
            &token,
        );
        assert_eq!(
            busy.to_string(),
            "the server refused the connection: maximum connections exceeded"
        );
        assert_eq!(busy.kind(), io::ErrorKind::Other);
        let text = connect_error(
            io::Error::other("TLS error: invalid peer certificate: UnknownIssuer"),
            &token,
        )
        .to_string();
        assert!(text.starts_with("TLS: unknown CA"), "{text}");
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            connect_error(refused, &token).kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}
