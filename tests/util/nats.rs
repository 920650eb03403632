//! NATS with JetStream: one server, a loopback cluster, and [`Transfer`], which
//! plays the Transfer client (weplanx/transfer) that applications use to
//! configure measurements and publish records.

// The synchronous `nats` crate is deprecated in favour of async-nats; the
// project keeps it (a threaded service, no async runtime), so its warnings are allowed in the
// one harness module that uses it.
#![allow(deprecated)]

use super::{
    free_port, greets, kill_child, log_tail, process::ServerProcess, read_log, spawn_logged,
    wait_until, TempDir,
};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server gets to accept clients after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `nats-server` to run: `NATS_SERVER` if set, else the one on `PATH`.
fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_string())
}

/// Client options the tests use: reconnect forever (the default gives up after
/// a few minutes of outage), quickly.
pub fn connect_options() -> nats::Options {
    nats::Options::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).clamp(50, 500))
        })
}

/// One nats-server with JetStream on 127.0.0.1, store in its own temp dir.
pub struct NatsServer {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
    config: PathBuf,
    probe_jetstream: bool,
}

impl NatsServer {
    /// Starts a server with JetStream and waits until it accepts clients and
    /// JetStream answers.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config("")
    }

    /// Like [`NatsServer::start`], on a port chosen beforehand (for a server that comes up
    /// after its clients were told where it will be).
    pub fn start_on_port(port: u16) -> NatsServer {
        let dir = TempDir::new("nats");
        let config = dir.join("nats.conf");
        fs::write(&config, "server_name: harness\n").expect("cannot write nats.conf");
        let mut server = NatsServer {
            process: ServerProcess::new(dir.join("nats.log")),
            port,
            dir,
            config,
            probe_jetstream: true,
        };
        server.spawn(Some(port));
        server
    }

    /// Like [`NatsServer::start`], with `extra` appended to the server's
    /// configuration file (for example an `authorization { ... }` block or a
    /// `tls { ... }` block). With extra configuration the start-up wait only
    /// checks that the server greets clients, since it may require credentials.
    pub fn start_with_config(extra: &str) -> NatsServer {
        let dir = TempDir::new("nats");
        let config = dir.join("nats.conf");
        let text = format!("server_name: harness\n{extra}\n");
        fs::write(&config, text).expect("cannot write nats.conf");
        let mut server = NatsServer {
            process: ServerProcess::new(dir.join("nats.log")),
            port: 0,
            dir,
            config,
            probe_jetstream: extra.trim().is_empty(),
        };
        server.spawn(None);
        server
    }

    /// Spawns on `port`, or on an ephemeral port learned from the ports file.
    fn spawn(&mut self, port: Option<u16>) {
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c")
            .arg(&self.config)
            .args(["-js", "-sd"])
            .arg(self.dir.join("jetstream"))
            .args(["-a", "127.0.0.1", "-p", &port_arg, "--ports_file_dir"])
            .arg(self.dir.path());
        let ports_file = |pid| self.dir.join(format!("nats-server_{pid}.ports"));
        let mut found = port;
        let ready = self.process.spawn_until_ready(cmd, START_TIMEOUT, |pid| {
            if found.is_none() {
                found = read_ports_file(&ports_file(pid));
            }
            found.is_some_and(|p| greets(p, "INFO "))
        });
        if !ready {
            panic!(
                "nats-server did not start (port {port_arg}); its log ends:\n{}",
                self.process.log_tail()
            );
        }
        let pid = self.process.pid().expect("running once ready");
        let _ = fs::remove_file(ports_file(pid));
        self.port = found.expect("port known once ready");
        if self.probe_jetstream {
            let conn = nats::Options::new()
                .connect(self.url())
                .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()));
            let ok = wait_until(START_TIMEOUT, || {
                js_request_on(&conn, "$JS.API.INFO", b"").is_ok()
            });
            assert!(
                ok,
                "JetStream on {} never answered $JS.API.INFO",
                self.url()
            );
            conn.close();
        }
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir (its JetStream store is `jetstream/` inside).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// A connection that reconnects forever.
    pub fn connect(&self) -> nats::Connection {
        connect_options()
            .connect(self.url())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    /// `kill -9` the server (no-op if it is not running).
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts the server again on the same port with the same store, after
    /// [`NatsServer::kill9`] (or kills it first if it is still running).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(Some(self.port));
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Everything the server logged, across restarts.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Reads the client port from a ports file such as
/// `{"nats":["nats://127.0.0.1:33937"]}`.
fn read_ports_file(path: &Path) -> Option<u16> {
    let value: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let url = value["nats"].as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A JetStream cluster of nodes `n0`, `n1`, ... on loopback, each with its own
/// client port, cluster port, store dir and configuration file.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
    dir: TempDir,
}

struct ClusterNode {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until the cluster has a JetStream meta leader
    /// and can place a stream with `n` replicas (about 5 s: the servers wait
    /// out a bootstrap period before electing).
    pub fn start(n: usize) -> NatsCluster {
        assert!(n >= 1, "a cluster needs at least one node");
        // Ports are picked before the servers bind them; if another process
        // takes one in between, a node exits and we try again with new ports.
        for attempt in 1..=3 {
            let mut cluster = NatsCluster {
                nodes: Vec::new(),
                dir: TempDir::new("nats-cluster"),
            };
            let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
            for (i, &(port, cluster_port)) in ports.iter().enumerate() {
                let name = format!("n{i}");
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &(_, c))| format!("\"nats-route://127.0.0.1:{c}\""))
                    .collect();
                let store = cluster.dir.join(format!("{name}-store"));
                let text = format!(
                    "server_name: {name}\n\
                     listen: \"127.0.0.1:{port}\"\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{\n  name: harness\n  listen: \"127.0.0.1:{cluster_port}\"\n  routes: [{}]\n}}\n",
                    store.display(),
                    routes.join(", ")
                );
                let config = cluster.dir.join(format!("{name}.conf"));
                fs::write(&config, text).expect("cannot write node config");
                cluster.nodes.push(ClusterNode {
                    log: cluster.dir.join(format!("{name}.log")),
                    name,
                    port,
                    config,
                    child: None,
                });
            }
            for i in 0..n {
                cluster.spawn_node(i);
            }
            let all_up = wait_until(START_TIMEOUT, || {
                (0..n).all(|i| !cluster.exited(i) && greets(cluster.nodes[i].port, "INFO "))
            });
            if !all_up {
                let failed = (0..n).find(|&i| cluster.exited(i)).unwrap_or(0);
                let tail = log_tail(&cluster.nodes[failed].log, 20);
                if attempt == 3 {
                    panic!("nats cluster did not start; node n{failed} log ends:\n{tail}");
                }
                // Drops the cluster (kills its nodes) and its dir.
                continue;
            }
            cluster.wait_for_jetstream(n);
            return cluster;
        }
        unreachable!()
    }

    fn spawn_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&node.config);
        node.child = Some(spawn_logged(cmd, &node.log));
    }

    fn exited(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits until a stream with `replicas` replicas can be created (which
    /// needs a meta leader and that many current peers), then deletes it.
    fn wait_for_jetstream(&self, replicas: usize) {
        let conn = self.connect();
        let config = json!({
            "name": "HARNESS_PROBE",
            "subjects": ["harness.probe"],
            "storage": "memory",
            "num_replicas": replicas,
        })
        .to_string();
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(60), || {
            match js_request_on(
                &conn,
                "$JS.API.STREAM.CREATE.HARNESS_PROBE",
                config.as_bytes(),
            ) {
                Ok(_) => true,
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        assert!(
            ok,
            "the nats cluster never accepted an R{replicas} stream: {last}"
        );
        let _ = js_request_on(&conn, "$JS.API.STREAM.DELETE.HARNESS_PROBE", b"");
        conn.close();
    }

    /// Client URLs of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// All client URLs joined with commas, as a NATS client accepts them.
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// A connection to the whole cluster that reconnects forever.
    pub fn connect(&self) -> nats::Connection {
        connect_options()
            .connect(self.url().as_str())
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    /// The server name of node `i` (`n0`, `n1`, ...), as JetStream reports it
    /// in stream and consumer leader fields.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node index for a server name such as a stream's `cluster.leader`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        !self.exited(i)
    }

    /// The process id of node `i` while it runs (to freeze it with SIGSTOP).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            kill_child(&mut child);
        }
    }

    /// Freezes node `i` with SIGSTOP: its connections stay open but nothing answers, as
    /// with a stalled machine. [`NatsCluster::thaw`] resumes it.
    pub fn freeze(&mut self, i: usize) {
        if let Some(child) = self.nodes[i].child.as_ref() {
            super::send_signal(child.id(), "STOP");
        }
    }

    /// Resumes node `i` after [`NatsCluster::freeze`].
    pub fn thaw(&mut self, i: usize) {
        if let Some(child) = self.nodes[i].child.as_ref() {
            super::send_signal(child.id(), "CONT");
        }
    }

    /// Starts node `i` again with the same ports and store, and waits until it
    /// accepts clients. Whether it has caught up with the others is for the
    /// test to wait for.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn_node(i);
        let port = self.nodes[i].port;
        let ok = wait_until(START_TIMEOUT, || greets(port, "INFO "));
        assert!(
            ok,
            "node n{i} did not restart; its log ends:\n{}",
            log_tail(&self.nodes[i].log, 20)
        );
    }

    /// Everything node `i` logged.
    pub fn log(&self, i: usize) -> String {
        read_log(&self.nodes[i].log)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// An error answer of the JetStream API, or a transport failure (code 0).
#[derive(Debug, Clone, PartialEq)]
pub struct JsError {
    /// The HTTP-like code: 400, 404, 503, ...; 0 when no answer came.
    pub code: u64,
    /// JetStream's own error code, such as 10059 (stream not found).
    pub err_code: u64,
    pub description: String,
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (code {}, err_code {})",
            self.description, self.code, self.err_code
        )
    }
}

/// One JetStream API request with a 5 s timeout, parsed; an `error` answer
/// becomes a [`JsError`].
fn js_request_on(conn: &nats::Connection, subject: &str, body: &[u8]) -> Result<Value, JsError> {
    let transport = |description: String| JsError {
        code: 0,
        err_code: 0,
        description,
    };
    let reply = conn
        .request_timeout(subject, body, Duration::from_secs(5))
        .map_err(|e| transport(format!("{subject}: {e}")))?;
    let value: Value = serde_json::from_slice(&reply.data).map_err(|e| {
        transport(format!(
            "{subject}: answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&reply.data)
        ))
    })?;
    if let Some(error) = value.get("error") {
        return Err(JsError {
            code: error["code"].as_u64().unwrap_or(0),
            err_code: error["err_code"].as_u64().unwrap_or(0),
            description: error["description"].as_str().unwrap_or("?").to_string(),
        });
    }
    Ok(value)
}

/// Plays the Transfer client for one namespace: distributes measurement
/// configuration through the `<ns>_logs` key-value bucket, creates the
/// `<ns>:logs:<m>` work-queue streams and publishes records to `<ns>.logs.<m>`.
/// One message as `STREAM.MSG.GET` answers it, decoded.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub subject: String,
    /// The header block: the `NATS/1.0` line, then `Name: value` lines.
    pub headers: String,
    pub data: Vec<u8>,
}

impl StreamMessage {
    /// The value of header `name`, trimmed; `None` when the message lacks it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }
}

pub struct Transfer {
    conn: nats::Connection,
    js: nats::jetstream::JetStream,
    namespace: String,
    replicas: usize,
}

impl Transfer {
    pub fn new(conn: nats::Connection, namespace: &str) -> Transfer {
        Transfer {
            js: nats::jetstream::new(conn.clone()),
            conn,
            namespace: namespace.to_string(),
            replicas: 1,
        }
    }

    /// Creates streams and the bucket with `n` replicas (for a cluster).
    pub fn with_replicas(mut self, n: usize) -> Transfer {
        self.replicas = n;
        self
    }

    pub fn connection(&self) -> &nats::Connection {
        &self.conn
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `<ns>_logs`
    pub fn bucket(&self) -> String {
        format!("{}_logs", self.namespace)
    }

    /// `<ns>:logs:<m>`
    pub fn stream_name(&self, measurement: &str) -> String {
        format!("{}:logs:{measurement}", self.namespace)
    }

    /// `<ns>.logs.<m>`
    pub fn subject(&self, measurement: &str) -> String {
        format!("{}.logs.{measurement}", self.namespace)
    }

    /// One JetStream API request (5 s timeout).
    pub fn js_request(&self, subject: &str, body: &[u8]) -> Result<Value, JsError> {
        js_request_on(&self.conn, subject, body)
    }

    /// `$JS.API.STREAM.MSG.GET.<stream>` with `request` (`{"seq": n}` or
    /// `{"last_by_subj": subject}`), its headers and payload decoded. JetStream's
    /// error 10037 means there is no such message.
    pub fn get_message(&self, stream: &str, request: &Value) -> Result<StreamMessage, JsError> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let answer = self.js_request(&subject, request.to_string().as_bytes())?;
        let message = &answer["message"];
        let headers = super::decode_base64(message["hdrs"].as_str().unwrap_or(""));
        Ok(StreamMessage {
            subject: message["subject"].as_str().unwrap_or("").to_string(),
            headers: String::from_utf8_lossy(&headers).into_owned(),
            data: super::decode_base64(message["data"].as_str().unwrap_or("")),
        })
    }

    /// Creates the `<ns>_logs` bucket if it is missing (history 1).
    pub fn ensure_bucket(&self) {
        let stream = format!("KV_{}", self.bucket());
        match self.js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"") {
            Ok(_) => {}
            Err(e) if e.code == 404 => {
                self.js
                    .create_key_value(&nats::kv::Config {
                        bucket: self.bucket(),
                        history: 1,
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .unwrap_or_else(|e| panic!("cannot create bucket {}: {e}", self.bucket()));
            }
            Err(e) => panic!("cannot look up bucket {}: {e}", self.bucket()),
        }
    }

    /// Puts `value` under `key` in the bucket as is (for values the Transfer
    /// client would not write: the `{"key": ...}` form, garbage, ...).
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        self.ensure_bucket();
        let subject = format!("$KV.{}.{key}", self.bucket());
        let ack = self.js_request(&subject, value);
        if let Err(e) = ack {
            panic!("cannot put {key} in {}: {e}", self.bucket());
        }
    }

    /// Deletes `key` from the bucket (a delete marker, as the KV API does).
    pub fn delete_key(&self, key: &str) {
        let subject = format!("$KV.{}.{key}", self.bucket());
        let mut headers = nats::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        let reply = self
            .conn
            .request_with_headers_or_timeout(
                &subject,
                Some(&headers),
                Some(Duration::from_secs(5)),
                b"",
            )
            .unwrap_or_else(|e| panic!("cannot delete {key} from {}: {e}", self.bucket()));
        let value: Value = serde_json::from_slice(&reply.data).unwrap_or(Value::Null);
        assert!(
            value.get("error").is_none(),
            "cannot delete {key} from {}: {value}",
            self.bucket()
        );
    }

    /// The current value of `key` in the bucket (`None` if missing or deleted).
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        let store = self
            .js
            .key_value(&self.bucket())
            .unwrap_or_else(|e| panic!("no bucket {}: {e}", self.bucket()));
        store
            .get(key)
            .unwrap_or_else(|e| panic!("cannot get {key} from {}: {e}", self.bucket()))
    }

    /// The payload stored at sequence `seq` of `stream`.
    pub fn stream_message(&self, stream: &str, seq: u64) -> Vec<u8> {
        self.js
            .get_message(stream, seq)
            .unwrap_or_else(|e| panic!("no message {seq} in {stream}: {e}"))
            .data
    }

    /// Every message stored in `stream` from sequence `first` to `last`, as
    /// `(sequence, payload)`. Pipelined like [`Transfer::publish_many_to`]: one
    /// `STREAM.MSG.GET` request per sequence with its own reply subject, up to
    /// 500 outstanding, so 10,000 take a second rather than the 5 ms a plain
    /// request waits on the client's flusher each. Panics when a message is
    /// missing, or when 30 s pass without an answer.
    pub fn stream_messages(&self, stream: &str, first: u64, last: u64) -> Vec<(u64, Vec<u8>)> {
        const WINDOW: u64 = 500;
        const STALL: Duration = Duration::from_secs(30);
        let inbox = self.conn.new_inbox();
        let sub = self
            .conn
            .subscribe(&format!("{inbox}.*"))
            .expect("cannot subscribe the answer inbox");
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let n = (last + 1).saturating_sub(first);
        let mut messages = Vec::new();
        let mut next = first;
        let mut last_progress = Instant::now();
        while (messages.len() as u64) < n {
            // Refilled half a window at a time, so the flush (a round trip) is rare.
            let outstanding = next - first - messages.len() as u64;
            if next <= last && outstanding <= WINDOW / 2 {
                while next <= last && next - first < messages.len() as u64 + WINDOW {
                    let body = json!({ "seq": next }).to_string();
                    self.conn
                        .publish_request(&subject, &format!("{inbox}.{next}"), body.as_bytes())
                        .expect("cannot send a message request");
                    next += 1;
                }
                let _ = self.conn.flush();
            }
            let Ok(answer) = sub.next_timeout(Duration::from_millis(200)) else {
                assert!(
                    last_progress.elapsed() < STALL,
                    "{stream}: only {} of messages {first}..={last} answered",
                    messages.len()
                );
                continue;
            };
            last_progress = Instant::now();
            let value: Value = serde_json::from_slice(&answer.data)
                .unwrap_or_else(|e| panic!("{stream}: message answer is not JSON: {e}"));
            let seq = value["message"]["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{stream}: no message in {value}"));
            let data = value["message"]["data"].as_str().unwrap_or("");
            messages.push((seq, super::decode_base64(data)));
        }
        let _ = sub.unsubscribe();
        messages.sort_unstable_by_key(|(seq, _)| *seq);
        messages
    }

    /// What Transfer's `Set` does: puts `{"measurement": m, "description": d}`
    /// under key `m` and adds the stream `<ns>:logs:<m>` on subject
    /// `<ns>.logs.<m>` with work-queue retention and file storage. Calling it
    /// again is fine; a changed description updates the stream.
    pub fn set(&self, measurement: &str, description: &str) {
        let value = json!({"measurement": measurement, "description": description});
        self.put_raw(measurement, value.to_string().as_bytes());
        self.add_stream(measurement, description);
    }

    /// Adds (or updates) the stream for `measurement` without touching the
    /// bucket.
    pub fn add_stream(&self, measurement: &str, description: &str) {
        let name = self.stream_name(measurement);
        let config = json!({
            "name": name,
            "subjects": [self.subject(measurement)],
            "retention": "workqueue",
            "storage": "file",
            "num_replicas": self.replicas,
            "description": description,
        })
        .to_string();
        let created = self.js_request(&format!("$JS.API.STREAM.CREATE.{name}"), config.as_bytes());
        match created {
            Ok(_) => {}
            // 10058: the stream exists with a different configuration.
            Err(e) if e.err_code == 10058 => {
                let updated =
                    self.js_request(&format!("$JS.API.STREAM.UPDATE.{name}"), config.as_bytes());
                if let Err(e) = updated {
                    panic!("cannot update stream {name}: {e}");
                }
            }
            Err(e) => panic!("cannot create stream {name}: {e}"),
        }
    }

    /// What Transfer's `Remove` does: deletes key `m` and the stream.
    pub fn remove(&self, measurement: &str) {
        self.delete_key(measurement);
        let name = self.stream_name(measurement);
        match self.js_request(&format!("$JS.API.STREAM.DELETE.{name}"), b"") {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => panic!("cannot delete stream {name}: {e}"),
        }
    }

    /// Deletes the shared `collector` consumer of `measurement`'s stream, as
    /// `nats consumer rm` does.
    pub fn delete_consumer(&self, measurement: &str) {
        let stream = self.stream_name(measurement);
        let subject = format!("$JS.API.CONSUMER.DELETE.{stream}.collector");
        if let Err(e) = self.js_request(&subject, b"") {
            panic!("cannot delete consumer collector of {stream}: {e}");
        }
    }

    /// Deletes `measurement`'s stream and keeps its key in the bucket.
    pub fn delete_stream(&self, measurement: &str) {
        let name = self.stream_name(measurement);
        if let Err(e) = self.js_request(&format!("$JS.API.STREAM.DELETE.{name}"), b"") {
            panic!("cannot delete stream {name}: {e}");
        }
    }

    /// One acknowledged publish to `<ns>.logs.<m>`.
    pub fn publish(&self, measurement: &str, payload: &[u8]) {
        self.publish_many(measurement, &[payload]);
    }

    /// Publishes every payload to `<ns>.logs.<m>` and returns once JetStream
    /// has acknowledged each one; see [`Transfer::publish_many_to`].
    pub fn publish_many<P: AsRef<[u8]>>(&self, measurement: &str, payloads: &[P]) {
        self.publish_many_to(&self.subject(measurement), payloads);
    }

    /// Fast acknowledged publishing. `js.publish` waits about 5 ms per message
    /// (the client's flusher), and plain core publishes can be dropped by a
    /// busy server, so this pipelines: each payload is core-published with a
    /// reply subject `<inbox>.<index>` and a `Nats-Msg-Id` header, up to 500
    /// are outstanding, and the PubAcks are counted. A payload without an
    /// answer after 2 s, or answered with a 503 (JetStream briefly
    /// unavailable, as during a failover) or no-responders, is sent again with
    /// the same id, so the stream's duplicate window keeps it stored once.
    /// Any other error answer panics at once; 30 s without progress panics
    /// with the last error.
    pub fn publish_many_to<P: AsRef<[u8]>>(&self, subject: &str, payloads: &[P]) {
        const WINDOW: usize = 500;
        const RESEND_AFTER: Duration = Duration::from_secs(2);
        const RETRY_PAUSE: Duration = Duration::from_millis(200);
        const STALL: Duration = Duration::from_secs(30);
        static N_BATCHES: AtomicUsize = AtomicUsize::new(0);

        let n = payloads.len();
        if n == 0 {
            return;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let batch = format!(
            "h{}-{}-{nanos}",
            std::process::id(),
            N_BATCHES.fetch_add(1, Ordering::Relaxed)
        );
        let inbox = self.conn.new_inbox();
        let sub = self
            .conn
            .subscribe(&format!("{inbox}.*"))
            .expect("cannot subscribe the ack inbox");

        let mut done = vec![false; n];
        let mut n_done = 0;
        let mut to_send: VecDeque<usize> = (0..n).collect();
        let mut retry: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut in_flight: HashMap<usize, Instant> = HashMap::new();
        let mut last_progress = Instant::now();
        let mut last_error = String::from("none");
        let mut last_scan = Instant::now();

        while n_done < n {
            let now = Instant::now();
            while in_flight.len() < WINDOW {
                let index = match retry.front() {
                    Some(&(at, i)) if at <= now => {
                        retry.pop_front();
                        i
                    }
                    _ => match to_send.pop_front() {
                        Some(i) => i,
                        None => break,
                    },
                };
                if done[index] {
                    continue;
                }
                let mut headers = nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("{batch}-{index}"));
                let reply = format!("{inbox}.{index}");
                let sent = self.conn.publish_with_reply_or_headers(
                    subject,
                    Some(&reply),
                    Some(&headers),
                    payloads[index].as_ref(),
                );
                match sent {
                    Ok(()) => {
                        in_flight.insert(index, now);
                    }
                    Err(e) => {
                        last_error = format!("publish: {e}");
                        retry.push_back((now + RETRY_PAUSE, index));
                    }
                }
            }

            if let Ok(message) = sub.next_timeout(Duration::from_millis(50)) {
                let index = message
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|&i| i < n);
                let Some(index) = index else { continue };
                in_flight.remove(&index);
                if done[index] {
                    continue;
                }
                match classify_pub_ack(&message) {
                    PubAck::Stored => {
                        done[index] = true;
                        n_done += 1;
                        last_progress = Instant::now();
                    }
                    PubAck::Retry(reason) => {
                        last_error = reason;
                        retry.push_back((Instant::now() + RETRY_PAUSE, index));
                    }
                    PubAck::Refused(reason) => {
                        panic!("publish {index} of {n} to {subject} refused: {reason}")
                    }
                }
            }

            let now = Instant::now();
            if now.duration_since(last_scan) >= Duration::from_millis(200) {
                last_scan = now;
                // What waited too long for its PubAck is sent again.
                in_flight.retain(|&index, &mut sent_at| {
                    let expired = now.duration_since(sent_at) >= RESEND_AFTER;
                    if expired {
                        last_error = "no PubAck within 2 s".to_string();
                        retry.push_back((now, index));
                    }
                    !expired
                });
            }
            if now.duration_since(last_progress) >= STALL {
                panic!(
                    "publish_many to {subject}: only {n_done} of {n} acknowledged, no progress \
                     for {STALL:?}; last error: {last_error}"
                );
            }
        }
        let _ = sub.unsubscribe();
    }

    /// The dead letters of the namespace, oldest first, with all their headers. A
    /// message that cannot be read (deleted meanwhile) is left out.
    pub fn dead_letter_messages(&self) -> Vec<StreamMessage> {
        let stream = format!("{}:dlq", self.namespace);
        let info = self.stream_info(&stream);
        let (first, last) = (
            info["state"]["first_seq"].as_u64().unwrap_or(0),
            info["state"]["last_seq"].as_u64().unwrap_or(0),
        );
        (first.max(1)..=last)
            .filter_map(|seq| self.get_message(&stream, &json!({ "seq": seq })).ok())
            .collect()
    }

    /// The dead letters of the namespace, oldest first: `(subject, Collector-Error header,
    /// payload)`.
    pub fn dead_letters(&self) -> Vec<(String, String, Vec<u8>)> {
        self.dead_letter_messages()
            .into_iter()
            .map(|m| {
                let reason = m.header("Collector-Error").unwrap_or("").to_string();
                (m.subject, reason, m.data)
            })
            .collect()
    }

    /// Asserts that the namespace has as many dead letters as `expected` names, and that their
    /// reasons (`Collector-Error` headers), sorted, contain one each of `expected`, in order.
    pub fn assert_dead_letter_reasons(&self, expected: &[&str]) {
        let mut reasons: Vec<String> = self
            .dead_letters()
            .into_iter()
            .map(|(_, reason, _)| reason)
            .collect();
        reasons.sort();
        assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
        for (reason, expected) in reasons.iter().zip(expected) {
            assert!(reason.contains(expected), "{expected}: {reasons:?}");
        }
    }

    /// Asserts that exactly `n` records were dead-lettered, each with a reason that contains
    /// what `expected` says for its payload.
    pub fn assert_dead_lettered<'a>(&self, n: usize, expected: impl Fn(&str) -> &'a str) {
        let letters = self.dead_letters();
        assert_eq!(letters.len(), n, "{letters:?}");
        for (_, reason, payload) in &letters {
            let payload = String::from_utf8_lossy(payload);
            let expected = expected(&payload);
            assert!(reason.contains(expected), "{reason} for {payload}");
        }
    }

    /// The stream's `(messages, consumer_count)`. Retries for up to 30 s while
    /// JetStream cannot answer (as during a failover).
    pub fn stream_state(&self, measurement: &str) -> (u64, usize) {
        let info = self.stream_info(&self.stream_name(measurement));
        (
            info["state"]["messages"].as_u64().unwrap_or(0),
            info["state"]["consumer_count"].as_u64().unwrap_or(0) as usize,
        )
    }

    /// `$JS.API.STREAM.INFO.<stream>` as JSON, retried for up to 30 s; panics
    /// with the last error if it never answers. 30 s, not 10: with a node killed, this
    /// connection's reconnect plus the stream leader's election took longer than 10 s in one
    /// run of `faults::a_nats_node_lost_mid_drain_loses_nothing` in three on a loaded machine.
    pub fn stream_info(&self, stream: &str) -> Value {
        let subject = format!("$JS.API.STREAM.INFO.{stream}");
        let mut answer = Err(JsError {
            code: 0,
            err_code: 0,
            description: "not asked".to_string(),
        });
        wait_until(Duration::from_secs(30), || {
            answer = self.js_request(&subject, b"");
            // A missing stream will not appear by waiting.
            answer.is_ok() || answer.as_ref().is_err_and(|e| e.code == 404)
        });
        answer.unwrap_or_else(|e| panic!("no info for stream {stream}: {e}"))
    }

    /// Names of the durable consumers on the stream of `measurement`.
    pub fn consumer_names(&self, measurement: &str) -> Vec<String> {
        let stream = self.stream_name(measurement);
        let answer = self
            .js_request(&format!("$JS.API.CONSUMER.NAMES.{stream}"), b"{}")
            .unwrap_or_else(|e| panic!("cannot list consumers of {stream}: {e}"));
        answer["consumers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `$JS.API.CONSUMER.INFO.<stream>.<consumer>` as JSON.
    pub fn consumer_info(&self, measurement: &str, consumer: &str) -> Result<Value, JsError> {
        let stream = self.stream_name(measurement);
        self.js_request(&format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"), b"")
    }

    /// Whether the stream of `measurement` exists.
    pub fn stream_exists(&self, measurement: &str) -> bool {
        self.stream_found(measurement).unwrap_or_else(|e| {
            panic!(
                "cannot look up stream {}: {e}",
                self.stream_name(measurement)
            )
        })
    }

    /// Whether the stream of `measurement` exists, or why the server did not say (no answer
    /// in time: a cluster electing on a loaded machine). For waits that ask again.
    pub fn stream_found(&self, measurement: &str) -> Result<bool, JsError> {
        let stream = self.stream_name(measurement);
        match self.js_request(&format!("$JS.API.STREAM.INFO.{stream}"), b"") {
            Ok(_) => Ok(true),
            Err(e) if e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

enum PubAck {
    Stored,
    Retry(String),
    Refused(String),
}

/// A PubAck is `{"stream": .., "seq": ..}` (with `"duplicate": true` for a
/// resend already stored); an error answer is `{"error": {...}}`; no stream on
/// the subject answers with an empty 503 status message.
fn classify_pub_ack(message: &nats::Message) -> PubAck {
    if message.is_no_responders() {
        return PubAck::Retry("no responders (no stream on the subject?)".to_string());
    }
    let Ok(value) = serde_json::from_slice::<Value>(&message.data) else {
        return PubAck::Retry(format!(
            "answer is not JSON: {}",
            String::from_utf8_lossy(&message.data)
        ));
    };
    if let Some(error) = value.get("error") {
        let code = error["code"].as_u64().unwrap_or(0);
        if code == 503 {
            return PubAck::Retry(error.to_string());
        }
        return PubAck::Refused(error.to_string());
    }
    if value.get("seq").is_some() {
        PubAck::Stored
    } else {
        PubAck::Retry(format!("unexpected answer: {value}"))
    }
}
