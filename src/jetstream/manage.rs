//! Ensuring what the collector needs exists, run on the main thread at start-up and by the
//! healing of streams and consumers: the measurement streams and their shared durable
//! consumer, the dead-letter stream, the configuration bucket, and the replicas they get.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{json, Value};

use super::names::{
    bucket_name, bucket_stream, dead_letter_stream, dead_letter_subject, kv_subject, stream_name,
    subject_name,
};
use super::pipeline::{all_failed, answered, Pipeline, PipelineRequest};
use super::{
    has_err_code, unless_missing, ConsumerState, JetStream, DURABLE, ERR_CONSUMER_NOT_FOUND,
    ERR_STREAM_NAME_IN_USE, ERR_STREAM_NOT_FOUND,
};
use crate::config::{NatsConfig, PullConfig};
use crate::error::Result;

impl JetStream {
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
        if unless_missing(self.consumer_state(&stream), &[ERR_CONSUMER_NOT_FOUND])?.is_some() {
            return Ok(false);
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
        let answer = self.request(what, &format!("$JS.API.STREAM.CREATE.{name}"), config);
        match answer {
            Ok(_) => Ok(true),
            Err(e) if has_err_code(&e, &[ERR_STREAM_NAME_IN_USE]) => Ok(false),
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
            Err(e) => return all_failed(measurements.len(), "ensure streams", &e),
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
                then(*i, answered(subject, answer), &mut results[*i]);
            }
        };
        let mut stream_missing = vec![false; measurements.len()];
        round(
            &mut results,
            &|i| Some(format!("$JS.API.STREAM.INFO.{}", streams[i])),
            &|_| json!({}),
            &mut mark_missing(ERR_STREAM_NOT_FOUND, &mut stream_missing),
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
            &mut mark_missing(ERR_CONSUMER_NOT_FOUND, &mut consumer_missing),
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
        self.ensure_kv(bucket, None)
    }

    /// Creates a namespace's suspects bucket (`suspects.rs`) when missing. Its keys live a
    /// day at most: one left behind (its record stored by a collector that never saw the key
    /// again) is of no use after the record's last redelivery.
    pub fn ensure_suspects_bucket(&self, bucket: &str) -> Result<bool> {
        self.ensure_kv(bucket, Some(Duration::from_secs(24 * 3600)))
    }

    /// Creates KV bucket `bucket` when missing, its keys kept for `max_age` (`None`: forever).
    fn ensure_kv(&self, bucket: &str, max_age: Option<Duration>) -> Result<bool> {
        let name = bucket_stream(bucket);
        if self.stream_state(&name, None)?.is_some() {
            return Ok(false);
        }
        let mut config = json!({
            "name": name,
            "subjects": [kv_subject(bucket, ">")],
            "retention": "limits",
            "max_msgs_per_subject": 1,
            "discard": "new",
            "storage": "file",
            "num_replicas": self.replicas,
            "deny_delete": true,
            "allow_rollup_hdrs": true,
            "allow_direct": true,
        });
        if let Some(max_age) = max_age {
            config["max_age"] = json!(max_age.as_nanos() as u64);
        }
        self.create_stream(&format!("create bucket {bucket}"), &name, &config)
    }

    /// The configured replicas of stream `name`, `None` when it does not exist.
    pub fn stream_replicas(&self, name: &str) -> Result<Option<usize>> {
        Ok(
            unless_missing(self.stream_info(name, &json!({})), &[ERR_STREAM_NOT_FOUND])?
                .map(|info| info["config"]["num_replicas"].as_u64().unwrap_or(1).max(1) as usize),
        )
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
        let bucket = bucket_stream(&bucket_name(namespace));
        if let Some(replicas) = self.stream_replicas(&bucket)? {
            streams.push((bucket, replicas));
        }
        streams.sort();
        Ok(streams)
    }

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
        let existing =
            unless_missing(self.stream_info(&name, &json!({})), &[ERR_STREAM_NOT_FOUND])?;
        if let Some(info) = existing {
            let mut config = info["config"].clone();
            let window = config["duplicate_window"].as_u64().unwrap_or(0);
            if window < duplicate_window.as_nanos() as u64 {
                config["duplicate_window"] = json!(duplicate_window.as_nanos() as u64);
                self.update_stream(
                    &format!("update the duplicate window of stream {name}"),
                    &name,
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
            "subjects": [dead_letter_subject(namespace, ">")],
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
    let bucket = js.stream_replicas(&bucket_stream(&bucket_name(namespace)))?;
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

/// What [`JetStream::ensure_all`] created for one measurement: (its stream, its consumer).
pub type Created = (bool, bool);

/// One step of [`JetStream::ensure_all`]: takes the answer for measurement `i` and updates its
/// result.
type EnsureStep<'a> = dyn FnMut(usize, Result<Value>, &mut Result<Created>) + 'a;

/// The [`EnsureStep`] of an info round: marks in `missing` the measurements whose answer is
/// error `code` (what is not there yet), and fails those given any other error.
fn mark_missing(
    code: u32,
    missing: &mut [bool],
) -> impl FnMut(usize, Result<Value>, &mut Result<Created>) + '_ {
    move |i, answer, result| match answer {
        Ok(_) => {}
        Err(e) if has_err_code(&e, &[code]) => missing[i] = true,
        Err(e) => *result = Err(e),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
