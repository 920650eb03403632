//! The one module that talks to NATS: connecting, the JetStream management API, the
//! configuration bucket, pull requests, acknowledgements and dead-letter publishes.
//!
//! Management requests (streams, consumers, the KV bucket) are made by the main thread with
//! the raw JSON API rather than the `nats` crate's typed helpers: the crate turns any error
//! code it does not know into a serde error and cannot time out some calls, while the raw API
//! lets every answer be classified. Pull requests are published by the worker threads
//! themselves with an explicit flush (the crate's `fetch` waits on its 5 ms flusher and can
//! hang on a 409); see docs/NATS-CLIENT.md.
#![allow(deprecated)]

use std::io;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::base64;
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
const ERR_STREAM_NAME_IN_USE: u32 = 10058;

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
///
/// With a `nats.tls` block TLS is required on every host, its CA file replaces the system's
/// CAs and its client certificate is presented; the server's name is always checked. A
/// failed handshake becomes one line saying what failed (see [`crate::tls::explain`]).
pub fn connect(config: &NatsConfig, client_name: &str) -> Result<Connection> {
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
    options
        .with_name(client_name)
        .max_reconnects(None)
        .reconnect_buffer_size(64 << 20)
        .disconnect_callback(|| {
            crate::stats::Stats::set(&crate::stats::NATS_CONNECTED, false);
            log::warn!("nats: connection lost; reconnecting")
        })
        .reconnect_callback(|| {
            crate::stats::Stats::set(&crate::stats::NATS_CONNECTED, true);
            // Pull requests waiting on the server may not have survived: the workers see
            // the count move and issue theirs again.
            crate::stats::NATS_RECONNECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            "num_replicas": self.replicas,
            "description": description,
        });
        self.create_stream(&format!("create stream {name}"), &name, &config)
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
        let config = consumer_config(namespace, measurement, pull);
        self.request(
            &format!("create consumer {DURABLE} on {stream}"),
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{DURABLE}"),
            &config,
        )?;
        Ok(true)
    }

    /// Creates stream `name`; `false` when another client (a Transfer client, another
    /// collector) created it between the lookup and this request, which is as good.
    fn create_stream(&self, what: &str, name: &str, config: &Value) -> Result<bool> {
        match self.request(what, &format!("$JS.API.STREAM.CREATE.{name}"), config) {
            Ok(_) => Ok(true),
            Err(Error::JetStream {
                err_code: ERR_STREAM_NAME_IN_USE,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Ensures the streams and consumers of many measurements (see [`Created`]) with every request of a round
    /// in flight at once (stream infos, the streams missing, consumer infos, the consumers
    /// missing): a collector starting with hundreds of measurements pays four round trips,
    /// not two or three per measurement. Streams are rarely missing (the Transfer client
    /// creates them), so those go through [`JetStream::ensure_stream`] one by one. Returns,
    /// per measurement, whether its stream and its consumer were created.
    pub fn ensure_all(
        &self,
        namespace: &str,
        measurements: &[(String, String)],
        pull: &PullConfig,
    ) -> Vec<Result<Created>> {
        let streams: Vec<String> = measurements
            .iter()
            .map(|(m, _)| stream_name(namespace, m))
            .collect();
        let mut results: Vec<Result<Created>> =
            measurements.iter().map(|_| Ok((false, false))).collect();
        let mut pipeline = match Pipeline::new(&self.conn) {
            Ok(pipeline) => pipeline,
            Err(e) => {
                let text = e.to_string();
                return measurements
                    .iter()
                    .map(|_| {
                        Err(Error::nats(
                            "ensure streams",
                            io::Error::other(text.clone()),
                        ))
                    })
                    .collect();
            }
        };
        // Runs one kind of request for the measurements still fine, and hands each answer
        // (or why none came) to `then`.
        let mut round = |results: &mut Vec<Result<Created>>,
                         subject: &dyn Fn(usize) -> Option<String>,
                         body: &dyn Fn(usize) -> Value,
                         then: &mut EnsureStep<'_>| {
            let chosen: Vec<(usize, String, Vec<u8>)> = (0..measurements.len())
                .filter(|&i| results[i].is_ok())
                .filter_map(|i| Some((i, subject(i)?, serde_json::to_vec(&body(i)).ok()?)))
                .collect();
            let requests: Vec<PipelineRequest<'_>> = chosen
                .iter()
                .map(|(_, subject, body)| PipelineRequest {
                    subject,
                    headers: None,
                    body: Cow::Borrowed(body),
                })
                .collect();
            for ((i, subject, _), answer) in chosen.iter().zip(pipeline.run(&requests)) {
                let answer = match answer {
                    Ok(answer) => api_result(subject, answer),
                    Err(e) => Err(Error::nats(
                        subject.clone(),
                        io::Error::other(e.to_string()),
                    )),
                };
                then(*i, answer, &mut results[*i]);
            }
        };
        let mut stream_missing = vec![false; measurements.len()];
        round(
            &mut results,
            &|i| Some(format!("$JS.API.STREAM.INFO.{}", streams[i])),
            &|_| json!({}),
            &mut |i, answer, result| match answer {
                Ok(_) => {}
                Err(Error::JetStream {
                    err_code: ERR_STREAM_NOT_FOUND,
                    ..
                }) => stream_missing[i] = true,
                Err(e) => *result = Err(e),
            },
        );
        for (i, (m, description)) in measurements.iter().enumerate() {
            if stream_missing[i] {
                results[i] = self
                    .ensure_stream(namespace, m, description)
                    .map(|created| (created, false));
            }
        }
        let mut consumer_missing = vec![false; measurements.len()];
        round(
            &mut results,
            &|i| Some(format!("$JS.API.CONSUMER.INFO.{}.{DURABLE}", streams[i])),
            &|_| json!({}),
            &mut |i, answer, result| match answer {
                Ok(_) => {}
                Err(Error::JetStream {
                    err_code: ERR_CONSUMER_NOT_FOUND,
                    ..
                }) => consumer_missing[i] = true,
                Err(e) => *result = Err(e),
            },
        );
        round(
            &mut results,
            &|i| {
                consumer_missing[i]
                    .then(|| format!("$JS.API.CONSUMER.DURABLE.CREATE.{}.{DURABLE}", streams[i]))
            },
            &|i| consumer_config(namespace, &measurements[i].0, pull),
            &mut |_, answer, result| match answer {
                Ok(_) => {
                    if let Ok((_, consumer)) = result {
                        *consumer = true;
                    }
                }
                Err(e) => *result = Err(e),
            },
        );
        results
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
            "num_replicas": self.replicas,
            "deny_delete": true,
            "allow_rollup_hdrs": true,
            "allow_direct": true,
        });
        self.create_stream(&format!("create bucket {bucket}"), &name, &config)
    }

    /// The configured replicas of stream `name`, `None` when it does not exist.
    pub fn stream_replicas(&self, name: &str) -> Result<Option<usize>> {
        match self.request(
            &format!("stream info {name}"),
            &format!("$JS.API.STREAM.INFO.{name}"),
            &json!({}),
        ) {
            Ok(info) => Ok(Some(
                info["config"]["num_replicas"].as_u64().unwrap_or(1).max(1) as usize,
            )),
            Err(Error::JetStream {
                err_code: ERR_STREAM_NOT_FOUND,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every stream of `namespace` (its measurement streams, the dead-letter stream and the
    /// configuration bucket) with its configured replicas, sorted by name.
    pub fn namespace_replicas(&self, namespace: &str) -> Result<Vec<(String, usize)>> {
        let mut streams = Vec::new();
        let mut offset = 0;
        loop {
            let answer = self.request(
                "list streams",
                "$JS.API.STREAM.LIST",
                &json!({ "offset": offset, "subject": format!("{namespace}.>") }),
            )?;
            let page = answer["streams"].as_array().cloned().unwrap_or_default();
            for stream in &page {
                if let Some(name) = stream["config"]["name"].as_str() {
                    let replicas = stream["config"]["num_replicas"].as_u64().unwrap_or(1);
                    streams.push((name.to_string(), replicas.max(1) as usize));
                }
            }
            offset += page.len();
            if page.is_empty() || offset as u64 >= answer["total"].as_u64().unwrap_or(0) {
                break;
            }
        }
        let bucket = format!("KV_{}", bucket_name(namespace));
        if let Some(replicas) = self.stream_replicas(&bucket)? {
            streams.push((bucket, replicas));
        }
        streams.sort();
        Ok(streams)
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
        // Every key read at once: a bucket of hundreds of measurements costs one round trip
        // (a window of them), not one per key.
        let get = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let bodies: Vec<Vec<u8>> = subjects
            .iter()
            .map(|subject| json!({ "last_by_subj": subject }).to_string().into_bytes())
            .collect();
        let requests: Vec<PipelineRequest<'_>> = bodies
            .iter()
            .map(|body| PipelineRequest {
                subject: &get,
                headers: None,
                body: Cow::Borrowed(body),
            })
            .collect();
        let answers = Pipeline::new(&self.conn)?.run(&requests);
        let mut entries = Vec::with_capacity(subjects.len());
        for (subject, answer) in subjects.iter().zip(answers) {
            let Some(key) = subject.strip_prefix(&prefix) else {
                continue;
            };
            let what = format!("read key {key} of bucket {bucket}");
            let answer = match answer {
                Ok(answer) => api_result(&what, answer),
                Err(e) => Err(Error::nats(&what, io::Error::other(e.to_string()))),
            };
            let answer = match answer {
                Ok(answer) => answer,
                // Purged between the listing and the read.
                Err(Error::JetStream {
                    err_code: ERR_NO_MESSAGE_FOUND,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            };
            let message = &answer["message"];
            let headers = base64::decode(message["hdrs"].as_str().unwrap_or(""));
            let headers = String::from_utf8_lossy(&headers);
            let removed = headers.lines().any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("KV-Operation")
                        && matches!(value.trim(), "DEL" | "PURGE")
                })
            });
            let value = (!removed).then(|| base64::decode(message["data"].as_str().unwrap_or("")));
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
    /// records kept for `max_age`, duplicates of a dead letter recognised for
    /// `duplicate_window`) when missing. An existing one whose duplicate window is shorter
    /// is given this one, so a dead letter published again by a redelivery is still stored
    /// once; everything else about it stays.
    pub fn ensure_dead_letter_stream(
        &self,
        namespace: &str,
        max_age: Duration,
        duplicate_window: Duration,
    ) -> Result<bool> {
        let name = dead_letter_stream(namespace);
        let what = format!("stream info {name}");
        let existing = match self.request(&what, &format!("$JS.API.STREAM.INFO.{name}"), &json!({}))
        {
            Ok(info) => Some(info),
            Err(Error::JetStream {
                err_code: ERR_STREAM_NOT_FOUND,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        if let Some(info) = existing {
            let mut config = info["config"].clone();
            let window = config["duplicate_window"].as_u64().unwrap_or(0);
            if window < duplicate_window.as_nanos() as u64 {
                config["duplicate_window"] = json!(duplicate_window.as_nanos() as u64);
                self.request(
                    &format!("update the duplicate window of stream {name}"),
                    &format!("$JS.API.STREAM.UPDATE.{name}"),
                    &config,
                )?;
                log::info!(
                    "dead-letter stream {name}: duplicate window raised to {duplicate_window:?}"
                );
            }
            return Ok(false);
        }
        let config = json!({
            "name": name,
            "subjects": [format!("{namespace}.dlq.>")],
            "retention": "limits",
            "max_age": max_age.as_nanos() as u64,
            "duplicate_window": duplicate_window.as_nanos() as u64,
            "storage": "file",
            "discard": "old",
            "num_replicas": self.replicas,
            "description": "records the collector could never write, with the reason",
        });
        self.create_stream(&format!("create stream {name}"), &name, &config)
    }
}

/// How long the dead-letter stream recognises a dead letter published again. A record is
/// dead-lettered again when its `+TERM` was lost (redelivered after `ack_wait`) or when a
/// new consumer leader redelivered it while its first delivery was still being handled; a
/// window of twice `ack_wait` × `max_deliver`, at least two minutes (JetStream's default),
/// covers every redelivery the collector lets happen. JetStream refuses a window longer than
/// the stream's `max_age`, which then bounds it.
pub fn dead_letter_window(ack_wait: Duration, max_deliver: u64, max_age: Duration) -> Duration {
    let redeliveries = ack_wait.saturating_mul(max_deliver.min(u32::MAX as u64) as u32);
    redeliveries
        .saturating_mul(2)
        .max(Duration::from_secs(120))
        .min(max_age)
}

/// The `Nats-Msg-Id` of a record's dead letter: the same for every delivery of the record,
/// so the dead-letter stream stores it once whichever collector publishes it. The stream
/// timestamp is part of it because a stream deleted and created again numbers its records
/// from 1 again: without it, a new record dead-lettered within the window would be taken
/// for an older one and dropped.
pub fn dead_letter_id(stream: &str, delivery: &Delivery) -> String {
    format!(
        "{stream}:{}:{}",
        delivery.stream_sequence, delivery.timestamp_ns
    )
}

pub fn dead_letter_stream(namespace: &str) -> String {
    format!("{namespace}:dlq")
}

/// Where the replica count of the streams the collector creates came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicasFrom {
    /// `nats.replicas`.
    Config,
    /// The configuration bucket's own replicas: the Transfer client (or whoever made the
    /// bucket) already chose for this namespace.
    Bucket,
    /// No bucket yet: 3 on a cluster of 3 servers or more, else 1; the number is how many
    /// servers the cluster reported.
    Cluster(usize),
}

impl std::fmt::Display for ReplicasFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicasFrom::Config => f.write_str("nats.replicas"),
            ReplicasFrom::Bucket => f.write_str("the configuration bucket's replicas"),
            ReplicasFrom::Cluster(1) => f.write_str("a single server"),
            ReplicasFrom::Cluster(n) => write!(f, "a cluster of {n} servers"),
        }
    }
}

/// The replicas of what the collector creates: `nats.replicas` when set; else the bucket's
/// when it exists, so everything of a namespace is replicated alike; else 3 when the
/// cluster has at least 3 servers (a stream survives the loss of one), else 1.
pub fn choose_replicas(
    configured: Option<usize>,
    bucket: Option<usize>,
    servers: usize,
) -> (usize, ReplicasFrom) {
    match (configured, bucket) {
        (Some(n), _) => (n, ReplicasFrom::Config),
        (None, Some(n)) if n >= 1 => (n, ReplicasFrom::Bucket),
        (None, _) => (
            if servers >= 3 { 3 } else { 1 },
            ReplicasFrom::Cluster(servers.max(1)),
        ),
    }
}

/// Resolves the replicas of what the collector creates ([`choose_replicas`]): one stream
/// info request, and the servers' greeting only when there is no bucket yet.
pub fn resolve_replicas(
    js: &JetStream,
    config: &NatsConfig,
    namespace: &str,
) -> Result<(usize, ReplicasFrom)> {
    if let Some(n) = config.replicas {
        return Ok(choose_replicas(Some(n), None, 1));
    }
    let bucket = js.stream_replicas(&format!("KV_{}", bucket_name(namespace)))?;
    let servers = match bucket {
        Some(_) => 1,
        None => cluster_servers(&config.hosts),
    };
    Ok(choose_replicas(None, bucket, servers))
}

/// How many servers the cluster of `hosts` has, as the first one that answers says in the
/// `INFO` line every NATS server sends a new client before anything else (in plain text,
/// TLS or not): its `connect_urls` list the client addresses of every server it is routed
/// to, itself included. The `nats` crate keeps that line to itself, hence this short
/// connection of our own; 1 when no server answers or one is not clustered.
fn cluster_servers(hosts: &[String]) -> usize {
    use std::io::{BufRead, BufReader};
    use std::net::{TcpStream, ToSocketAddrs};

    const WAIT: Duration = Duration::from_secs(2);
    for host in hosts {
        let address = host
            .trim()
            .split_once("://")
            .map_or(host.trim(), |(_, rest)| rest)
            .trim_end_matches('/');
        // A host written without a port is on NATS's default one.
        let address = match address.contains(':') {
            true => address.to_string(),
            false => format!("{address}:4222"),
        };
        let Some(address) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
            continue;
        };
        let Ok(stream) = TcpStream::connect_timeout(&address, WAIT) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(WAIT));
        let mut line = String::new();
        if BufReader::new(stream).read_line(&mut line).is_ok() {
            if let Some(n) = servers_in_info(&line) {
                return n;
            }
        }
    }
    1
}

/// The number of servers a server's `INFO` line reports: the distinct `connect_urls` of a
/// clustered server, 1 for a server that is not clustered. `None` for anything else.
fn servers_in_info(line: &str) -> Option<usize> {
    let info: Value = serde_json::from_str(line.strip_prefix("INFO ")?.trim()).ok()?;
    if info.get("cluster").is_none() {
        return Some(1);
    }
    let urls: std::collections::BTreeSet<&str> = info["connect_urls"]
        .as_array()
        .map(|urls| urls.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(urls.len().max(1))
}

/// Publishes `message` unchanged to `<ns>.dlq.<measurement>` with the reason and its origin
/// in headers, and waits for the dead-letter stream to acknowledge it. Only then may the
/// caller terminate the original ([`terminate`]). The `Nats-Msg-Id` ([`dead_letter_id`])
/// makes a second publish of the same record, by this collector or another, a duplicate the
/// stream acknowledges without storing: `Ok(true)` says so.
pub fn dead_letter(
    conn: &Connection,
    namespace: &str,
    message: &Message,
    delivery: &Delivery,
    reason: &str,
) -> io::Result<bool> {
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
    let stream = stream_name(namespace, measurement);
    headers.insert("Nats-Msg-Id", dead_letter_id(&stream, delivery).as_str());
    headers.insert("Collector-Error", reason.as_str());
    headers.insert("Collector-Stream", stream.as_str());
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
        None => {
            if answer["duplicate"].as_bool() == Some(true) {
                // Another delivery of this record was dead-lettered already (by this
                // collector or another); the stream kept the first one only.
                log::info!(
                    "dead letter of record {} of {} was stored before: this delivery is a repeat",
                    delivery.stream_sequence,
                    message.subject
                );
            }
            Ok(answer["duplicate"].as_bool() == Some(true))
        }
    }
}

/// Where a JetStream message came from, read from its `$JS.ACK...` reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times this record has been delivered, 1 the first time.
    pub delivered: u64,
    /// The record's place in its stream, the same on every delivery: it keeps records of one
    /// written time apart in InfluxDB (`record::point_time`).
    pub stream_sequence: u64,
    /// When the record was stored in the stream, in nanoseconds since the epoch: the record's
    /// time when its payload has none, so a redelivery writes the very same point.
    pub timestamp_ns: i64,
    /// How many records the consumer still had waiting for delivery after this one: 0 when
    /// this one caught up with the stream.
    pub pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the
/// newer form with a domain and account hash in front and a random token after.
pub fn parse_ack_subject(reply: &str) -> Option<Delivery> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    // Runs once per record: the tokens go into an array rather than a new Vec.
    let mut tokens = [""; 9];
    let mut n_tokens = 0;
    for token in rest.split('.') {
        if let Some(slot) = tokens.get_mut(n_tokens) {
            *slot = token;
        }
        n_tokens += 1;
    }
    let numbers = match n_tokens {
        7 => &tokens[2..7],
        n if n >= 9 => &tokens[4..9],
        _ => return None,
    };
    Some(Delivery {
        delivered: numbers[0].parse().ok()?,
        stream_sequence: numbers[1].parse().ok()?,
        timestamp_ns: numbers[3].parse().ok()?,
        pending: numbers[4].parse().ok()?,
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
/// records, the server's idle heartbeats and the status that ends the request arrive on
/// `reply`. It is not flushed: the caller sends several and then calls [`flush`] once, so a
/// worker with hundreds of measurements pays one round trip, not one per request.
pub fn request_pull(
    conn: &Connection,
    stream: &str,
    reply: &str,
    batch: usize,
    expires: Duration,
    idle_heartbeat: Duration,
) -> io::Result<()> {
    let body = format!(
        r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
        expires.as_nanos(),
        idle_heartbeat.as_nanos()
    );
    conn.publish_request(
        &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{DURABLE}"),
        reply,
        body,
    )
}

/// Sends everything buffered on the connection (acks are buffered) and waits for the server
/// to have read it.
pub fn flush(conn: &Connection) -> io::Result<()> {
    conn.flush_timeout(API_TIMEOUT)
}

/// How many times [`terminate`] sends `+TERM` before giving up, and how long it waits for
/// each confirmation: with the pauses between them (4 s in all), enough to outlast most
/// consumer leader elections, which took 1–3 s in the failover tests.
const TERM_ATTEMPTS: u32 = 5;
const TERM_TIMEOUT: Duration = Duration::from_secs(2);

/// Terminates a dead-lettered record and waits for the consumer to confirm it (an ack with
/// a reply subject is answered once the consumer's leader has applied it). Unconfirmed, the
/// `+TERM` may have been lost with a leader that stepped down, and the record would come
/// back after its ack wait; it is sent again a few times. Still unconfirmed, the error is
/// returned: the record may be redelivered, and its dead letter is then a duplicate the
/// dead-letter stream drops.
pub fn terminate(conn: &Connection, message: &Message) -> io::Result<()> {
    let Some(subject) = message.reply.as_deref() else {
        return Err(io::Error::other(
            "the record has no acknowledgement subject",
        ));
    };
    let mut last = io::Error::other("not sent");
    for attempt in 1..=TERM_ATTEMPTS {
        match conn.request_timeout(subject, b"+TERM", TERM_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        if attempt < TERM_ATTEMPTS {
            // No responders comes back at once while no leader holds the consumer: pause
            // rather than spend the attempts within a millisecond.
            std::thread::sleep(Duration::from_millis(400 * attempt as u64));
        }
    }
    Err(last)
}

/// Acknowledgement kinds sent for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored: remove it from the stream.
    Done,
    /// Still being worked on: restart its ack wait.
    Progress,
    /// Give it back for redelivery after the delay (shutdown with unwritten records). The
    /// delay outlasts this collector's own pull requests, which stay on the server until they
    /// expire: redelivered at once, the record would go to them and wait out its ack wait.
    Nak(Duration),
}

/// Sends an acknowledgement without waiting: the server's answer is not needed because a
/// lost ack only means a redelivery, and a redelivery rewrites the same point.
pub fn ack(message: &Message, kind: Ack) -> io::Result<()> {
    match kind {
        Ack::Done => message.respond(b"+ACK"),
        Ack::Progress => message.respond(b"+WPI"),
        Ack::Nak(delay) => message.respond(format!(r#"-NAK {{"delay":{}}}"#, delay.as_nanos())),
    }
}

// ---------------------------------------------------------------------------------------------
// The admin commands (`collector streams|publish|check|dlq`), run on the main thread: more
// management requests, the KV bucket written the way the Transfer client writes it, stored
// messages read back and deleted one by one, and pipelined acknowledged publishes.
// ---------------------------------------------------------------------------------------------

use std::borrow::Cow;

/// Requests a [`Pipeline`] keeps in flight at once.
const PIPELINE_WINDOW: usize = 256;
/// Sends of one request before it is given up: a lost answer, or JetStream briefly
/// unavailable (a leader election), is worth another try; more would only hide an outage.
const PIPELINE_ATTEMPTS: u32 = 3;
/// The wait before sending again a request JetStream answered with a 503.
const PIPELINE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What `$JS.API.INFO` says about the account.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountInfo {
    #[serde(default)]
    pub streams: u64,
    #[serde(default)]
    pub consumers: u64,
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

/// A message to publish and have acknowledged by the stream that stores its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub subject: String,
    pub payload: Vec<u8>,
    /// Its `Nats-Msg-Id`: the stream stores a message sent again with the same id within its
    /// duplicate window (2 minutes by default) only once, so a send repeated after a lost
    /// acknowledgement, or a replay run twice, does not store it twice. Empty: no id (and no
    /// headers at all when `headers` is empty too), as the Transfer client publishes.
    pub id: String,
    /// More headers, such as a dead letter's `Collector-*` ones.
    pub headers: Vec<(String, String)>,
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

/// Whether the headers of a KV entry mark it deleted or purged.
fn kv_removed(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("KV-Operation") && matches!(value.as_str(), "DEL" | "PURGE")
    })
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

/// What [`JetStream::ensure_all`] created for one measurement: (its stream, its consumer).
pub type Created = (bool, bool);

/// One step of [`JetStream::ensure_all`]: takes the answer for measurement `i` and updates its
/// result.
type EnsureStep<'a> = dyn FnMut(usize, Result<Value>, &mut Result<Created>) + 'a;

/// The shared durable pull consumer's configuration on a measurement's stream.
fn consumer_config(namespace: &str, measurement: &str, pull: &PullConfig) -> Value {
    json!({
        "stream_name": stream_name(namespace, measurement),
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
    })
}

/// The subject dead letters of a measurement are published to.
pub fn dead_letter_subject(namespace: &str, measurement: &str) -> String {
    format!("{namespace}.dlq.{measurement}")
}

impl JetStream {
    /// `$JS.API.INFO`: answers only when JetStream is enabled for the account.
    pub fn account_info(&self) -> Result<AccountInfo> {
        let answer = self.request("read account info", "$JS.API.INFO", &json!({}))?;
        Ok(serde_json::from_value(answer).unwrap_or_default())
    }

    /// The shared consumer's state on `stream`, `None` when the stream or the consumer does
    /// not exist.
    pub fn consumer_state_if_any(&self, stream: &str) -> Result<Option<ConsumerState>> {
        match self.consumer_state(stream) {
            Ok(state) => Ok(Some(state)),
            Err(Error::JetStream {
                err_code: ERR_CONSUMER_NOT_FOUND | ERR_STREAM_NOT_FOUND,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a stream with every message in it; `false` when there was none.
    pub fn delete_stream(&self, name: &str) -> Result<bool> {
        match self.request(
            &format!("delete stream {name}"),
            &format!("$JS.API.STREAM.DELETE.{name}"),
            &json!({}),
        ) {
            Ok(_) => Ok(true),
            Err(Error::JetStream {
                err_code: ERR_STREAM_NOT_FOUND,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives a measurement's existing stream `description`, as the Transfer client's `Set`
    /// does; every other setting stays. `false` when it already had it.
    pub fn update_stream_description(
        &self,
        namespace: &str,
        measurement: &str,
        description: &str,
    ) -> Result<bool> {
        let name = stream_name(namespace, measurement);
        let info = self.request(
            &format!("stream info {name}"),
            &format!("$JS.API.STREAM.INFO.{name}"),
            &json!({}),
        )?;
        let mut config = info["config"].clone();
        if config["description"].as_str().unwrap_or_default() == description {
            return Ok(false);
        }
        config["description"] = json!(description);
        self.request(
            &format!("update stream {name}"),
            &format!("$JS.API.STREAM.UPDATE.{name}"),
            &config,
        )?;
        Ok(true)
    }

    /// The value of `key` in `bucket`; `None` when the key or the bucket does not exist, or
    /// the key was deleted.
    pub fn kv_get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let stream = format!("KV_{bucket}");
        match self.request(
            &format!("read key {key} of bucket {bucket}"),
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            &json!({ "last_by_subj": format!("$KV.{bucket}.{key}") }),
        ) {
            Ok(answer) => Ok(StoredMessage::from_api(&answer)
                .filter(|message| !kv_removed(&message.headers))
                .map(|message| message.data)),
            Err(Error::JetStream {
                err_code: ERR_NO_MESSAGE_FOUND | ERR_STREAM_NOT_FOUND,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Puts `value` under `key`, as a KV put does: a publish the bucket stream acknowledges.
    pub fn kv_put(&self, bucket: &str, key: &str, value: &[u8]) -> Result<()> {
        self.publish_acknowledged(
            &format!("put key {key} in bucket {bucket}"),
            &format!("$KV.{bucket}.{key}"),
            None,
            value,
        )
    }

    /// Deletes `key`, as a KV delete does: an empty publish with `KV-Operation: DEL`, which
    /// the collectors' poll reads as "removed".
    pub fn kv_delete(&self, bucket: &str, key: &str) -> Result<()> {
        let mut headers = nats::header::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        self.publish_acknowledged(
            &format!("delete key {key} from bucket {bucket}"),
            &format!("$KV.{bucket}.{key}"),
            Some(&headers),
            b"",
        )
    }

    /// One publish that returns once a stream has stored it.
    fn publish_acknowledged(
        &self,
        what: &str,
        subject: &str,
        headers: Option<&nats::header::HeaderMap>,
        payload: &[u8],
    ) -> Result<()> {
        let reply =
            self.conn
                .request_with_headers_or_timeout(subject, headers, Some(API_TIMEOUT), payload);
        json_answer(what, reply, &format!("no stream stores subject {subject}")).map(drop)
    }

    /// Publishes every message and waits for each acknowledgement, many in flight at once
    /// (one request/reply at a time costs the client's 5 ms flush delay each). The result
    /// holds, in order, the stream sequence each message was stored at or why it was not.
    pub fn publish_all(&self, messages: &[Outgoing]) -> Result<Vec<Result<u64, String>>> {
        let requests: Vec<PipelineRequest> = messages
            .iter()
            .map(|message| {
                let mut headers = nats::header::HeaderMap::new();
                if !message.id.is_empty() {
                    headers.insert("Nats-Msg-Id", message.id.as_str());
                }
                for (name, value) in &message.headers {
                    headers.insert(name.as_str(), value.as_str());
                }
                PipelineRequest {
                    subject: &message.subject,
                    headers: (!headers.is_empty()).then_some(headers),
                    body: Cow::Borrowed(&message.payload),
                }
            })
            .collect();
        let answers = Pipeline::new(&self.conn)?.run(&requests);
        Ok(answers
            .into_iter()
            .zip(messages)
            .map(|(answer, message)| match answer {
                Ok(ack) => match ack.get("error") {
                    Some(error) => Err(error["description"]
                        .as_str()
                        .unwrap_or("refused")
                        .to_string()),
                    None => ack["seq"]
                        .as_u64()
                        .ok_or_else(|| format!("unexpected acknowledgement {ack}")),
                },
                Err(PipelineError::NoResponders) => {
                    Err(format!("no stream stores subject {}", message.subject))
                }
                Err(e) => Err(e.to_string()),
            })
            .collect())
    }

    /// Deletes messages of `stream` by sequence, many in flight at once. A message already
    /// gone counts as deleted.
    pub fn delete_messages(
        &self,
        stream: &str,
        sequences: &[u64],
    ) -> Result<Vec<Result<(), String>>> {
        let subject = format!("$JS.API.STREAM.MSG.DELETE.{stream}");
        let requests: Vec<PipelineRequest> = sequences
            .iter()
            .map(|seq| PipelineRequest {
                subject: &subject,
                headers: None,
                // The data is not overwritten first: these messages are no secret, and
                // `no_erase` spares the server a write per message.
                body: Cow::Owned(
                    json!({ "seq": seq, "no_erase": true })
                        .to_string()
                        .into_bytes(),
                ),
            })
            .collect();
        let answers = Pipeline::new(&self.conn)?.run(&requests);
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                Ok(answer) => match api_result("delete", answer) {
                    Ok(_)
                    | Err(Error::JetStream {
                        err_code: ERR_NO_MESSAGE_FOUND,
                        ..
                    }) => Ok(()),
                    Err(Error::JetStream { description, .. }) => Err(description),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            })
            .collect())
    }

    /// Reads the messages of `stream` on subjects matching `filter`, oldest first, up to the
    /// last one stored now: messages added while reading are left for the next run (a replay
    /// must not chase the dead letters its own records cause). `None` when the stream does
    /// not exist.
    pub fn read_messages(&self, stream: &str, filter: &str) -> Result<Option<MessageReader>> {
        let Some(state) = self.stream_state(stream, None)? else {
            return Ok(None);
        };
        Ok(Some(MessageReader {
            pipeline: Pipeline::new(&self.conn)?,
            stream: stream.to_string(),
            filter: filter.to_string(),
            next_seq: 1,
            last_seq: state.last_seq,
        }))
    }
}

/// Reads stored messages one `STREAM.MSG.GET` at a time, each asking for the next message on
/// the filter from a sequence on, so deleted messages and other subjects cost nothing.
pub struct MessageReader {
    pipeline: Pipeline,
    stream: String,
    filter: String,
    next_seq: u64,
    last_seq: u64,
}

impl MessageReader {
    /// The next message, or `None` after the last one.
    pub fn next_message(&mut self) -> Result<Option<StoredMessage>> {
        if self.next_seq > self.last_seq {
            return Ok(None);
        }
        let what = format!("read stream {}", self.stream);
        let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
        let body = json!({ "seq": self.next_seq, "next_by_subj": self.filter }).to_string();
        let request = PipelineRequest {
            subject: &subject,
            headers: None,
            body: Cow::Borrowed(body.as_bytes()),
        };
        let answer = match self.pipeline.run(std::slice::from_ref(&request)).pop() {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => return Err(Error::nats(what, io::Error::other(e.to_string()))),
            None => return Ok(None),
        };
        let message = match api_result(&what, answer) {
            Ok(answer) => StoredMessage::from_api(&answer)
                .ok_or_else(|| Error::nats(&what, io::Error::other("unreadable stored message")))?,
            Err(Error::JetStream {
                err_code: ERR_NO_MESSAGE_FOUND,
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if message.sequence > self.last_seq {
            self.next_seq = message.sequence;
            return Ok(None);
        }
        self.next_seq = message.sequence + 1;
        Ok(Some(message))
    }
}

/// One request of a [`Pipeline`]; it borrows what it can, as publishes may be many and large.
struct PipelineRequest<'a> {
    subject: &'a str,
    headers: Option<nats::header::HeaderMap>,
    body: Cow<'a, [u8]>,
}

/// Why a pipelined request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PipelineError {
    /// Nothing listens on the subject (for a publish: no stream stores it).
    NoResponders,
    TimedOut,
    Unreadable(String),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::NoResponders => f.write_str("no responders"),
            PipelineError::TimedOut => write!(
                f,
                "no answer after {PIPELINE_ATTEMPTS} tries of {}s",
                API_TIMEOUT.as_secs()
            ),
            PipelineError::Unreadable(problem) => write!(f, "unreadable answer: {problem}"),
        }
    }
}

/// Sends requests on the core connection with reply subjects of one inbox, many in flight,
/// and flushes explicitly instead of waiting for the client's 5 ms flusher (docs/NATS-CLIENT.md
/// trap 1). Core publishes alone could be dropped by a busy server (trap 11); each request
/// here is answered, and sent again when its answer does not come.
struct Pipeline {
    conn: Connection,
    inbox: String,
    subscription: Subscription,
    /// Reply tokens are never reused, so a late answer to an earlier send is recognised.
    next_token: u64,
}

impl Pipeline {
    fn new(conn: &Connection) -> Result<Pipeline> {
        let inbox = conn.new_inbox();
        let subscription = conn
            .subscribe(&format!("{inbox}.*"))
            .map_err(|e| Error::nats("subscribe a reply inbox", e))?;
        Ok(Pipeline {
            conn: conn.clone(),
            inbox,
            subscription,
            next_token: 0,
        })
    }

    /// Sends every request and returns, in order, each one's JSON answer (an API error
    /// answer included) or why none came.
    fn run(&mut self, requests: &[PipelineRequest<'_>]) -> Vec<Result<Value, PipelineError>> {
        use std::collections::{HashMap, VecDeque};
        use std::time::Instant;

        let n = requests.len();
        let mut results: Vec<Option<Result<Value, PipelineError>>> = vec![None; n];
        let mut n_done = 0;
        let mut attempts = vec![0u32; n];
        let mut fresh: VecDeque<usize> = (0..n).collect();
        let mut retry: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut in_flight: HashMap<u64, (usize, Instant)> = HashMap::new();
        while n_done < n {
            let now = Instant::now();
            let mut n_sent = 0;
            while in_flight.len() < PIPELINE_WINDOW {
                let index = match retry.front() {
                    Some(&(at, index)) if at <= now => {
                        retry.pop_front();
                        index
                    }
                    _ => match fresh.pop_front() {
                        Some(index) => index,
                        None => break,
                    },
                };
                let request = &requests[index];
                let token = self.next_token;
                self.next_token += 1;
                attempts[index] += 1;
                let reply = format!("{}.{token}", self.inbox);
                match self.conn.publish_with_reply_or_headers(
                    request.subject,
                    Some(&reply),
                    request.headers.as_ref(),
                    &*request.body,
                ) {
                    Ok(()) => {
                        in_flight.insert(token, (index, now));
                        n_sent += 1;
                    }
                    Err(e) if attempts[index] >= PIPELINE_ATTEMPTS => {
                        results[index] = Some(Err(PipelineError::Unreadable(e.to_string())));
                        n_done += 1;
                    }
                    Err(_) => retry.push_back((now + PIPELINE_RETRY_PAUSE, index)),
                }
            }
            if n_sent > 0 {
                // A failed flush (connection lost) shows as answers that do not come.
                let _ = self.conn.flush_timeout(API_TIMEOUT);
            }

            // Wait a little for one answer, then take every answer already there before
            // sending more, so one flush covers many sends.
            let mut next = self
                .subscription
                .next_timeout(Duration::from_millis(20))
                .ok();
            while let Some(message) = next {
                let token = message
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok());
                if let Some((index, _)) = token.and_then(|t| in_flight.remove(&t)) {
                    let outcome = if message.is_no_responders() {
                        Some(Err(PipelineError::NoResponders))
                    } else {
                        match serde_json::from_slice::<Value>(&message.data) {
                            Err(e) => Some(Err(PipelineError::Unreadable(e.to_string()))),
                            Ok(answer)
                                if answer["error"]["code"].as_u64() == Some(503)
                                    && attempts[index] < PIPELINE_ATTEMPTS =>
                            {
                                retry.push_back((Instant::now() + PIPELINE_RETRY_PAUSE, index));
                                None
                            }
                            Ok(answer) => Some(Ok(answer)),
                        }
                    };
                    if let Some(outcome) = outcome {
                        results[index] = Some(outcome);
                        n_done += 1;
                    }
                }
                next = self.subscription.try_next();
            }

            let now = Instant::now();
            let expired: Vec<u64> = in_flight
                .iter()
                .filter(|(_, (_, sent))| now.duration_since(*sent) >= API_TIMEOUT)
                .map(|(token, _)| *token)
                .collect();
            for token in expired {
                let Some((index, _)) = in_flight.remove(&token) else {
                    continue;
                };
                if attempts[index] < PIPELINE_ATTEMPTS {
                    retry.push_back((now, index));
                } else {
                    results[index] = Some(Err(PipelineError::TimedOut));
                    n_done += 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every request has an outcome"))
            .collect()
    }
}

#[cfg(test)]
mod admin_tests {
    use super::*;

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
        assert!(kv_removed(&message.headers));
        assert!(!kv_removed(&[("KV-Operation".into(), "PUT".into())]));
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
                timestamp_ns: 1_700_000_000_123_456_789,
                pending: 40,
            })
        );
        let new = "$JS.ACK.hub.ACCHASH.beta:logs:access.collector.1.9.9.1700000000000000001.0.abcd";
        assert_eq!(
            parse_ack_subject(new),
            Some(Delivery {
                delivered: 1,
                stream_sequence: 9,
                timestamp_ns: 1_700_000_000_000_000_001,
                pending: 0,
            })
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.a.b.c"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.s.c.x.1.1.1.1"), None);
    }

    #[test]
    fn dead_letter_window_outlasts_every_redelivery() {
        let check = |ack_wait: u64, max_deliver: u64, max_age: u64, expected: u64| {
            assert_eq!(
                dead_letter_window(
                    Duration::from_secs(ack_wait),
                    max_deliver,
                    Duration::from_secs(max_age)
                ),
                Duration::from_secs(expected),
                "ack_wait {ack_wait}s × {max_deliver}, max_age {max_age}s"
            );
        };
        // The defaults: 30 s × 10 deliveries, twice over.
        check(30, 10, 7 * 24 * 3600, 600);
        // Never below JetStream's own default of two minutes.
        check(5, 2, 3600, 120);
        // Never above the stream's max_age, which JetStream requires.
        check(30, 10, 300, 300);
        check(5, 2, 60, 60);
        // Absurd settings saturate instead of overflowing.
        check(u64::MAX / 4, u64::MAX, 3600, 3600);
    }

    #[test]
    fn dead_letter_ids_name_the_record_not_the_delivery() {
        let first = Delivery {
            delivered: 1,
            stream_sequence: 15,
            timestamp_ns: 1_700_000_000_123_456_789,
            pending: 40,
        };
        let again = Delivery {
            delivered: 3,
            pending: 0,
            ..first
        };
        let id = dead_letter_id("beta:logs:access", &first);
        assert_eq!(id, "beta:logs:access:15:1700000000123456789");
        assert_eq!(dead_letter_id("beta:logs:access", &again), id);
        // The same sequence in a stream created again is another record.
        let recreated = Delivery {
            timestamp_ns: first.timestamp_ns + 1,
            ..first
        };
        assert_ne!(dead_letter_id("beta:logs:access", &recreated), id);
    }

    #[test]
    fn replicas_follow_the_config_then_the_bucket_then_the_cluster() {
        let check = |configured, bucket, servers, expected: (usize, ReplicasFrom)| {
            assert_eq!(
                choose_replicas(configured, bucket, servers),
                expected,
                "configured {configured:?}, bucket {bucket:?}, {servers} servers"
            );
        };
        check(Some(2), Some(3), 5, (2, ReplicasFrom::Config));
        check(Some(1), None, 3, (1, ReplicasFrom::Config));
        check(None, Some(3), 1, (3, ReplicasFrom::Bucket));
        check(None, Some(1), 5, (1, ReplicasFrom::Bucket));
        check(None, None, 5, (3, ReplicasFrom::Cluster(5)));
        check(None, None, 3, (3, ReplicasFrom::Cluster(3)));
        check(None, None, 2, (1, ReplicasFrom::Cluster(2)));
        check(None, None, 1, (1, ReplicasFrom::Cluster(1)));
        check(None, None, 0, (1, ReplicasFrom::Cluster(1)));
    }

    #[test]
    fn servers_are_counted_from_the_info_line() {
        let clustered = r#"INFO {"server_name":"n0","cluster":"c","connect_urls":["127.0.0.1:14220","127.0.0.1:14222","127.0.0.1:14221"]}"#;
        assert_eq!(servers_in_info(&format!("{clustered}\r\n")), Some(3));
        let alone = r#"INFO {"server_name":"n0","cluster":"c","connect_urls":["127.0.0.1:14220"]}"#;
        assert_eq!(servers_in_info(alone), Some(1));
        let twice = r#"INFO {"cluster":"c","connect_urls":["a:1","a:1","b:1"]}"#;
        assert_eq!(servers_in_info(twice), Some(2));
        assert_eq!(
            servers_in_info(r#"INFO {"server_name":"solo","port":4222}"#),
            Some(1)
        );
        assert_eq!(servers_in_info("-ERR 'Authorization Violation'"), None);
        assert_eq!(servers_in_info("INFO not json"), None);
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;
    use crate::config::Secret;

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
