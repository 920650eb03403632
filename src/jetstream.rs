//! The one module that talks to NATS: connecting, the JetStream management API, the
//! configuration bucket, pull requests, acknowledgements and dead-letter publishes.
//!
//! Management requests (streams, consumers, the KV bucket) are made by the main thread with
//! the raw JSON API rather than the `nats` crate's typed helpers: the crate turns any error
//! code it does not know into a serde error and cannot time out some calls, while the raw API
//! lets every answer be classified. Pull requests are published by the worker threads
//! themselves with an explicit flush (the crate's `fetch` waits on its 5 ms flusher and can
//! hang on a 409); see NATS-CRATE.md.
#![allow(deprecated)]

use std::io;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{NatsAuth, NatsConfig, PullConfig};
use crate::error::{Error, Result};

// Aliases, not re-exports: the `nats` crate is deprecated (for async-nats, which the design
// card rules out) and its warnings are allowed in this module only.
pub type Connection = nats::Connection;
pub type Message = nats::Message;
pub type Subscription = nats::Subscription;

/// How long a management request may wait for the server.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream error codes this module acts on.
const ERR_STREAM_NOT_FOUND: u32 = 10059;
const ERR_CONSUMER_NOT_FOUND: u32 = 10014;
const ERR_NO_MESSAGE_FOUND: u32 = 10037;

/// The durable pull consumer every collector of a namespace shares on each stream, so a
/// record is handled by one collector at a time.
pub const DURABLE: &str = "collector";

/// Names derived from the namespace, as the Transfer client spells them.
pub fn bucket_name(namespace: &str) -> String {
    format!("{namespace}_logs")
}
pub fn stream_name(namespace: &str, measurement: &str) -> String {
    format!("{namespace}:logs:{measurement}")
}
pub fn subject_name(namespace: &str, measurement: &str) -> String {
    format!("{namespace}.logs.{measurement}")
}

/// Connects to every host of `nats.hosts` and reconnects forever: the crate's default gives
/// up after a few minutes of outage, which would leave a collector running but deaf.
pub fn connect(config: &NatsConfig, client_name: &str) -> Result<Connection> {
    let options = match &config.auth {
        NatsAuth::None => nats::Options::new(),
        NatsAuth::Token(token) => nats::Options::with_token(token.expose()),
        NatsAuth::UserPassword { username, password } => {
            nats::Options::with_user_pass(username, password.expose())
        }
        NatsAuth::Creds(path) => nats::Options::with_credentials(path),
        NatsAuth::Nkey(seed) => {
            let pair = nkeys::KeyPair::from_seed(seed.expose()).map_err(|e| {
                Error::config("nats.nkey", format!("not a valid nkey user seed: {e}"))
            })?;
            let public = pair.public_key();
            nats::Options::with_nkey(&public, move |nonce| pair.sign(nonce).unwrap_or_default())
        }
    };
    let hosts = config.hosts.join(",");
    options
        .with_name(client_name)
        .max_reconnects(None)
        .reconnect_buffer_size(64 << 20)
        .disconnect_callback(|| log::warn!("nats: connection lost; reconnecting"))
        .reconnect_callback(|| log::info!("nats: reconnected"))
        .connect(hosts.as_str())
        .map_err(|e| Error::nats(format!("connect to {hosts}"), e))
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
    /// Subjects with their message counts, present only when asked for with a filter.
    #[serde(default)]
    pub subjects: Option<std::collections::HashMap<String, u64>>,
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
}

/// A KV entry as read from the bucket stream: the key and its value, `None` once deleted or
/// purged.
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// The JetStream management API over one connection.
#[derive(Clone)]
pub struct JetStream {
    conn: Connection,
}

impl JetStream {
    pub fn new(conn: Connection) -> JetStream {
        JetStream { conn }
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sends one API request and returns its JSON answer, or the API error it carries.
    fn request(&self, what: &str, subject: &str, body: &Value) -> Result<Value> {
        let payload = serde_json::to_vec(body).expect("a json value always serializes");
        let reply = self
            .conn
            .request_timeout(subject, payload, API_TIMEOUT)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::nats(
                    what,
                    io::Error::other("no responders: is JetStream enabled on the server (-js)?"),
                ),
                _ => Error::nats(what, e),
            })?;
        let answer: Value = serde_json::from_slice(&reply.data).map_err(|e| {
            Error::nats(
                what,
                io::Error::other(format!("unreadable API answer: {e}")),
            )
        })?;
        if let Some(error) = answer.get("error") {
            return Err(Error::JetStream {
                what: what.to_string(),
                code: error["code"].as_u64().unwrap_or(0) as u16,
                err_code: error["err_code"].as_u64().unwrap_or(0) as u32,
                description: error["description"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            });
        }
        Ok(answer)
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
        match self.request(
            &format!("stream info {name}"),
            &format!("$JS.API.STREAM.INFO.{name}"),
            &body,
        ) {
            Ok(answer) => Ok(Some(
                serde_json::from_value(answer["state"].clone()).unwrap_or_default(),
            )),
            Err(Error::JetStream {
                err_code: ERR_STREAM_NOT_FOUND,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the stream of a measurement with the Transfer client's settings when it is
    /// missing. An existing stream is left exactly as it is.
    pub fn ensure_stream(
        &self,
        namespace: &str,
        measurement: &str,
        description: &str,
    ) -> Result<bool> {
        let name = stream_name(namespace, measurement);
        if self.stream_state(&name, None)?.is_some() {
            return Ok(false);
        }
        let config = json!({
            "name": name,
            "subjects": [subject_name(namespace, measurement)],
            "retention": "workqueue",
            "storage": "file",
            "discard": "old",
            "num_replicas": 1,
            "description": description,
        });
        self.request(
            &format!("create stream {name}"),
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &config,
        )?;
        Ok(true)
    }

    /// Creates the shared durable pull consumer on a measurement's stream when missing.
    pub fn ensure_consumer(
        &self,
        namespace: &str,
        measurement: &str,
        pull: &PullConfig,
    ) -> Result<bool> {
        let stream = stream_name(namespace, measurement);
        match self.consumer_state(&stream) {
            Ok(_) => return Ok(false),
            Err(Error::JetStream {
                err_code: ERR_CONSUMER_NOT_FOUND,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
        let config = json!({
            "stream_name": stream,
            "config": {
                "durable_name": DURABLE,
                "description": "shared by every collector of the namespace",
                "deliver_policy": "all",
                "ack_policy": "explicit",
                "ack_wait": pull.ack_wait.as_nanos() as u64,
                "max_ack_pending": pull.max_ack_pending,
                "max_waiting": 512,
                "filter_subject": subject_name(namespace, measurement),
                "replay_policy": "instant",
            }
        });
        self.request(
            &format!("create consumer {DURABLE} on {stream}"),
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{DURABLE}"),
            &config,
        )?;
        Ok(true)
    }

    /// The shared consumer's state on `stream`.
    pub fn consumer_state(&self, stream: &str) -> Result<ConsumerState> {
        let answer = self.request(
            &format!("consumer info {DURABLE} on {stream}"),
            &format!("$JS.API.CONSUMER.INFO.{stream}.{DURABLE}"),
            &json!({}),
        )?;
        Ok(serde_json::from_value(answer).unwrap_or_default())
    }

    /// Creates the configuration bucket as the Transfer client would, when missing.
    pub fn ensure_bucket(&self, bucket: &str) -> Result<bool> {
        let name = format!("KV_{bucket}");
        if self.stream_state(&name, None)?.is_some() {
            return Ok(false);
        }
        let config = json!({
            "name": name,
            "subjects": [format!("$KV.{bucket}.>")],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "discard": "new",
            "storage": "file",
            "num_replicas": 1,
            "deny_delete": true,
            "allow_rollup_hdrs": true,
            "allow_direct": true,
        });
        self.request(
            &format!("create bucket {bucket}"),
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &config,
        )?;
        Ok(true)
    }

    /// The bucket stream's last sequence: it moves on every put, delete and purge, so one
    /// cheap request tells the poller whether anything changed.
    pub fn bucket_revision(&self, bucket: &str) -> Result<Option<u64>> {
        Ok(self
            .stream_state(&format!("KV_{bucket}"), None)?
            .map(|s| s.last_seq))
    }

    /// Every key of the bucket with its latest value (`None` when deleted or purged).
    pub fn bucket_entries(&self, bucket: &str) -> Result<Vec<KvEntry>> {
        let stream = format!("KV_{bucket}");
        let prefix = format!("$KV.{bucket}.");
        let Some(state) = self.stream_state(&stream, Some(&format!("{prefix}>")))? else {
            return Ok(Vec::new());
        };
        let mut subjects: Vec<String> = state.subjects.unwrap_or_default().into_keys().collect();
        subjects.sort();
        let mut entries = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            let what = format!("read key {key} of bucket {bucket}");
            let answer = match self.request(
                &what,
                &format!("$JS.API.STREAM.MSG.GET.{stream}"),
                &json!({ "last_by_subj": subject }),
            ) {
                Ok(answer) => answer,
                // Purged between the listing and the read.
                Err(Error::JetStream {
                    err_code: ERR_NO_MESSAGE_FOUND,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            };
            let message = &answer["message"];
            let headers = decode_base64(message["hdrs"].as_str().unwrap_or(""));
            let headers = String::from_utf8_lossy(&headers);
            let removed = headers.lines().any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("KV-Operation")
                        && matches!(value.trim(), "DEL" | "PURGE")
                })
            });
            let value = (!removed).then(|| decode_base64(message["data"].as_str().unwrap_or("")));
            entries.push(KvEntry {
                key: key.to_string(),
                value,
            });
        }
        Ok(entries)
    }
}

impl JetStream {
    /// Creates the dead-letter stream `<ns>:dlq` (subjects `<ns>.dlq.>`, limits retention,
    /// records kept for `max_age`) when missing.
    pub fn ensure_dead_letter_stream(&self, namespace: &str, max_age: Duration) -> Result<bool> {
        let name = dead_letter_stream(namespace);
        if self.stream_state(&name, None)?.is_some() {
            return Ok(false);
        }
        let config = json!({
            "name": name,
            "subjects": [format!("{namespace}.dlq.>")],
            "retention": "limits",
            "max_age": max_age.as_nanos() as u64,
            "storage": "file",
            "discard": "old",
            "num_replicas": 1,
            "description": "records the collector could never write, with the reason",
        });
        self.request(
            &format!("create stream {name}"),
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &config,
        )?;
        Ok(true)
    }
}

pub fn dead_letter_stream(namespace: &str) -> String {
    format!("{namespace}:dlq")
}

/// Publishes `message` unchanged to `<ns>.dlq.<measurement>` with the reason and its origin
/// in headers, and waits for the dead-letter stream to acknowledge it. Only then may the
/// caller terminate the original.
pub fn dead_letter(
    conn: &Connection,
    namespace: &str,
    message: &Message,
    delivery: &Delivery,
    reason: &str,
) -> io::Result<()> {
    let measurement = message.subject.rsplit('.').next().unwrap_or("unknown");
    let mut headers = nats::header::HeaderMap::new();
    // A header value is one line; reasons are one line already, but be sure.
    let mut reason: String = reason.replace(['\r', '\n'], " ");
    if reason.len() > 2048 {
        let mut cut = 2048;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    headers.insert("Collector-Error", reason.as_str());
    headers.insert(
        "Collector-Stream",
        stream_name(namespace, measurement).as_str(),
    );
    headers.insert(
        "Collector-Sequence",
        delivery.stream_sequence.to_string().as_str(),
    );
    headers.insert("Collector-Subject", message.subject.as_str());
    let reply = conn.request_with_headers_or_timeout(
        &format!("{namespace}.dlq.{measurement}"),
        Some(&headers),
        Some(API_TIMEOUT),
        &message.data,
    )?;
    let answer: Value = serde_json::from_slice(&reply.data)
        .map_err(|e| io::Error::other(format!("unreadable publish acknowledgement: {e}")))?;
    match answer.get("error") {
        Some(error) => Err(io::Error::other(format!(
            "dead-letter stream refused the record: {}",
            error["description"].as_str().unwrap_or("unknown error")
        ))),
        None => Ok(()),
    }
}

/// Decodes standard base64 (the JetStream API's encoding of stored messages). Invalid input
/// decodes to what could be read; the API never sends invalid input.
fn decode_base64(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Where a JetStream message came from, read from its `$JS.ACK...` reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times this record has been delivered, 1 the first time.
    pub delivered: u64,
    pub stream_sequence: u64,
    /// When the record was stored in the stream, in nanoseconds since the epoch: the record's
    /// time when its payload has none, so a redelivery writes the very same point.
    pub timestamp_ns: i64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the
/// newer form with a domain and account hash in front and a random token after.
pub fn parse_ack_subject(reply: &str) -> Option<Delivery> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let numbers = match tokens.len() {
        7 => &tokens[2..7],
        n if n >= 9 => &tokens[4..9],
        _ => return None,
    };
    Some(Delivery {
        delivered: numbers[0].parse().ok()?,
        stream_sequence: numbers[1].parse().ok()?,
        timestamp_ns: numbers[3].parse().ok()?,
    })
}

/// What arrived on a worker's pull inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A record to process.
    Record(Delivery),
    /// A status that ends one pull request: 404 no messages, 408 expired, 409 refused
    /// (`Exceeded MaxRequestBatch`, `Consumer Deleted`, leadership change...). `unfilled` is
    /// how many of the request's records were never sent, when the server says.
    PullEnded {
        code: u16,
        description: String,
        unfilled: Option<u64>,
    },
    /// A status that does not end a pull (100 idle heartbeat or flow control).
    Heartbeat,
    /// Neither: a stray message with no JetStream reply subject.
    Unknown,
}

pub fn classify(message: &Message) -> Arrival {
    if let Some(headers) = &message.headers {
        if let Some(status) = headers.get(nats::header::STATUS) {
            let code: u16 = status.trim().parse().unwrap_or(0);
            if code == 100 {
                return Arrival::Heartbeat;
            }
            let description = headers
                .get(nats::header::DESCRIPTION)
                .cloned()
                .unwrap_or_default();
            let unfilled = headers
                .get("Nats-Pending-Messages")
                .and_then(|v| v.trim().parse().ok());
            return Arrival::PullEnded {
                code,
                description,
                unfilled,
            };
        }
    }
    match message.reply.as_deref().and_then(parse_ack_subject) {
        Some(delivery) => Arrival::Record(delivery),
        None => Arrival::Unknown,
    }
}

/// Publishes a pull request for `batch` records on the shared consumer of `stream`; the
/// records and the status that ends the request arrive on `reply`. The explicit flush sends
/// it now instead of after the client's 5 ms flush delay.
pub fn request_pull(
    conn: &Connection,
    stream: &str,
    reply: &str,
    batch: usize,
    expires: Duration,
) -> io::Result<()> {
    let body = format!(r#"{{"batch":{batch},"expires":{}}}"#, expires.as_nanos());
    conn.publish_request(
        &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{DURABLE}"),
        reply,
        body,
    )?;
    conn.flush_timeout(API_TIMEOUT)
}

/// Sends everything buffered on the connection (acks are buffered) and waits for the server
/// to have read it.
pub fn flush(conn: &Connection) -> io::Result<()> {
    conn.flush_timeout(API_TIMEOUT)
}

/// Acknowledgement kinds sent for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored: remove it from the stream.
    Done,
    /// Still being worked on: restart its ack wait.
    Progress,
    /// Give it back for redelivery now (shutdown with unwritten records).
    Nak,
    /// Never redeliver (after it has been dead-lettered).
    Term,
}

/// Sends an acknowledgement without waiting: the server's answer is not needed because a
/// lost ack only means a redelivery, and a redelivery rewrites the same point.
pub fn ack(message: &Message, kind: Ack) -> io::Result<()> {
    let body: &[u8] = match kind {
        Ack::Done => b"+ACK",
        Ack::Progress => b"+WPI",
        Ack::Nak => b"-NAK",
        Ack::Term => b"+TERM",
    };
    message.respond(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_transfer_client() {
        assert_eq!(bucket_name("beta"), "beta_logs");
        assert_eq!(stream_name("beta", "access"), "beta:logs:access");
        assert_eq!(subject_name("beta", "access"), "beta.logs.access");
    }

    #[test]
    fn ack_subjects_in_both_forms() {
        let old = "$JS.ACK.beta:logs:access.collector.2.15.7.1700000000123456789.40";
        assert_eq!(
            parse_ack_subject(old),
            Some(Delivery {
                delivered: 2,
                stream_sequence: 15,
                timestamp_ns: 1_700_000_000_123_456_789
            })
        );
        let new = "$JS.ACK.hub.ACCHASH.beta:logs:access.collector.1.9.9.1700000000000000001.0.abcd";
        assert_eq!(
            parse_ack_subject(new),
            Some(Delivery {
                delivered: 1,
                stream_sequence: 9,
                timestamp_ns: 1_700_000_000_000_000_001
            })
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.a.b.c"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.s.c.x.1.1.1.1"), None);
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("eyJhIjoxfQ=="), br#"{"a":1}"#);
        assert_eq!(decode_base64(""), b"");
        assert_eq!(decode_base64("TWFu"), b"Man");
        assert_eq!(decode_base64("TWE="), b"Ma");
    }
}
