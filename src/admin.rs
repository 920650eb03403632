//! The admin commands — `collector streams|publish|check|dlq` — each run to completion on the
//! main thread.
//!
//! A command loads the configuration, connects, does its work through [`jetstream`] and
//! [`influx`] (the only modules that talk to NATS and InfluxDB), prints its results on stdout
//! and its problems on stderr, and returns the exit code: 0 done, 1 refused or failed. A bad
//! configuration is an [`Error`] that `main` prints and turns into exit code 2. Nothing here
//! prints a secret: URLs are shown without their credentials, and errors from the edges
//! never carry them.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{json, Value};

use crate::catalog::{parse_entry, Measurement};
use crate::cli::{Args, Command, Format, Publish, Source, Waiting};
use crate::config::{is_valid_name, Config, InfluxApi, NatsAuth};
use crate::error::Result;
use crate::influx::{Influx, Probe};
use crate::jetstream::{
    self, bucket_name, dead_letter_stream, dead_letter_subject, stream_name, subject_name,
    JetStream, Outgoing, StoredMessage,
};

/// Dead letters replayed per round: read, republished in one pipeline, then deleted.
const REPLAY_BATCH: usize = 256;
/// Characters of a reason or payload shown in a table cell.
const CELL_WIDTH: usize = 60;

/// Runs every command but `run`.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.command == Command::Check {
        return Ok(check(&args.config));
    }
    let config = Config::load(&args.config)?;
    // Progress lines would mix with the output; warnings (a lost NATS connection) still show.
    crate::logging::init(
        config.log_level.min(log::LevelFilter::Warn),
        config.log_format,
    );
    config.log_warnings();
    let js = JetStream::new(jetstream::connect(&config.nats, "collector-admin")?);
    let code = match args.command {
        Command::Run | Command::Check => unreachable!("handled by the caller and above"),
        Command::StreamsList { format } => streams_list(&config, &js, format)?,
        Command::StreamsSet {
            measurement,
            description,
        } => streams_set(&config, &js, &measurement, description)?,
        Command::StreamsRemove {
            measurement,
            waiting,
        } => streams_remove(&config, &js, &measurement, waiting)?,
        Command::Publish(publish) => self::publish(&config, &js, &publish)?,
        Command::DlqList {
            measurement,
            format,
        } => dlq_list(&config, &js, measurement.as_deref(), format)?,
        Command::DlqReplay { measurement } => dlq_replay(&config, &js, measurement.as_deref())?,
    };
    // Sends anything still buffered; the process ends right after.
    let _ = jetstream::flush(js.connection());
    Ok(code)
}

/// A refusal or a failure already explained on stderr.
fn failure() -> ExitCode {
    ExitCode::from(1)
}

// --- streams ---------------------------------------------------------------------------------

/// The KV value of a measurement, as the Transfer client writes it (field order included).
#[derive(Serialize)]
struct EntryValue<'a> {
    measurement: &'a str,
    description: &'a str,
}

/// One measurement of `streams list`.
struct StreamRow {
    measurement: String,
    description: String,
    /// Why the bucket entry is unusable, when it is.
    problem: Option<String>,
    stream: Option<jetstream::StreamState>,
    consumer: Option<jetstream::ConsumerState>,
}

fn streams_list(config: &Config, js: &JetStream, format: Format) -> Result<ExitCode> {
    let bucket = bucket_name(&config.namespace);
    let now_ns = crate::stats::unix_ms(std::time::SystemTime::now()) as i64 * 1_000_000;
    // The age of a stream's oldest record, the one the collectors write next: the same lag
    // as `collector_measurement_oldest_age_seconds`.
    let oldest_age = |state: &jetstream::StreamState| -> u64 {
        state.oldest_ns().map_or(0, |oldest| {
            (now_ns.saturating_sub(oldest).max(0) / 1_000_000_000) as u64
        })
    };
    let mut rows = Vec::new();
    for entry in js.bucket_entries(&bucket)? {
        let Some(value) = &entry.value else { continue };
        let (description, problem) = match parse_entry(&entry.key, value) {
            Ok(m) => (m.description, None),
            Err(problem) => (String::new(), Some(problem)),
        };
        // A key that is no valid name must not be used in a stream name: the client would
        // break the connection or time out (docs/NATS-CLIENT.md, trap 4).
        let (stream, consumer) = if is_valid_name(&entry.key) {
            let name = stream_name(&config.namespace, &entry.key);
            match js.stream_state(&name, None)? {
                Some(state) => (Some(state), js.consumer_state_if_any(&name)?),
                None => (None, None),
            }
        } else {
            (None, None)
        };
        rows.push(StreamRow {
            measurement: entry.key,
            description,
            problem,
            stream,
            consumer,
        });
    }
    match format {
        Format::Json => {
            let items: Vec<Value> = rows
                .iter()
                .map(|row| {
                    let mut item = json!({
                        "measurement": row.measurement,
                        "description": row.description,
                        "stream": row.stream.as_ref().map(|s| json!({
                            "name": stream_name(&config.namespace, &row.measurement),
                            "messages": s.messages,
                            "oldest_age_seconds": oldest_age(s),
                        })),
                        "consumer": row.consumer.as_ref().map(|c| json!({
                            "name": jetstream::DURABLE,
                            "pending": c.num_pending,
                            "ack_pending": c.num_ack_pending,
                            "redelivered": c.num_redelivered,
                        })),
                    });
                    if let Some(problem) = &row.problem {
                        item["problem"] = json!(problem);
                    }
                    item
                })
                .collect();
            print_json(&Value::Array(items));
        }
        Format::Table => {
            let dash = || "-".to_string();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    let description = match &row.problem {
                        Some(problem) => format!("(invalid entry: {problem})"),
                        None => row.description.clone(),
                    };
                    let consumer = |f: fn(&jetstream::ConsumerState) -> u64| {
                        row.consumer
                            .as_ref()
                            .map_or_else(dash, |c| f(c).to_string())
                    };
                    vec![
                        one_line(&row.measurement, CELL_WIDTH),
                        one_line(&description, CELL_WIDTH),
                        row.stream
                            .as_ref()
                            .map_or_else(dash, |s| s.messages.to_string()),
                        consumer(|c| c.num_pending),
                        consumer(|c| c.num_ack_pending),
                        consumer(|c| c.num_redelivered),
                        row.stream
                            .as_ref()
                            .map_or_else(dash, |s| age(oldest_age(s))),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "MEASUREMENT",
                        "DESCRIPTION",
                        "MESSAGES",
                        "PENDING",
                        "ACK PENDING",
                        "REDELIVERED",
                        "OLDEST"
                    ],
                    &[false, false, true, true, true, true, true],
                    &cells,
                )
            );
            if rows.is_empty() {
                eprintln!("no measurements in bucket {bucket}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn streams_set(
    config: &Config,
    js: &JetStream,
    measurement: &str,
    description: Option<String>,
) -> Result<ExitCode> {
    let namespace = &config.namespace;
    // What this command creates is replicated as the service would replicate it.
    let (replicas, _) = jetstream::resolve_replicas(js, &config.nats, namespace)?;
    let js = &js.clone().with_replicas(replicas);
    let bucket = bucket_name(namespace);
    js.ensure_bucket(&bucket)?;
    let current = js
        .kv_get(&bucket, measurement)?
        .map(|value| parse_entry(measurement, &value));
    let description = description
        .or_else(|| match &current {
            Some(Ok(m)) => Some(m.description.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let wanted = Measurement {
        name: measurement.to_string(),
        description: description.clone(),
    };
    let key = match &current {
        Some(Ok(m)) if *m == wanted => "unchanged",
        _ => {
            let value = serde_json::to_vec(&EntryValue {
                measurement,
                description: &description,
            })
            .expect("strings always serialize");
            js.kv_put(&bucket, measurement, &value)?;
            match current {
                None => "added",
                Some(_) => "updated",
            }
        }
    };
    let stream = if js.ensure_stream(namespace, measurement, &description)? {
        "created"
    } else if js.update_stream_description(namespace, measurement, &description)? {
        "description updated"
    } else {
        "unchanged"
    };
    println!(
        "measurement `{measurement}`: key {key} in bucket {bucket}; stream {} {stream}",
        stream_name(namespace, measurement)
    );
    Ok(ExitCode::SUCCESS)
}

fn streams_remove(
    config: &Config,
    js: &JetStream,
    measurement: &str,
    waiting: Waiting,
) -> Result<ExitCode> {
    let namespace = &config.namespace;
    let bucket = bucket_name(namespace);
    let stream = stream_name(namespace, measurement);
    let state = js.stream_state(&stream, None)?;
    let n_waiting = state.as_ref().map_or(0, |s| s.messages);
    if n_waiting > 0 && waiting == Waiting::Refuse {
        eprintln!(
            "collector streams remove: {n_waiting} record(s) are waiting in stream {stream} \
             and would be lost; pass --yes to delete them with it"
        );
        return Ok(failure());
    }
    let had_key = js.kv_get(&bucket, measurement)?.is_some();
    if had_key {
        js.kv_delete(&bucket, measurement)?;
    }
    let had_stream = js.delete_stream(&stream)?;
    if !had_key && !had_stream {
        eprintln!(
            "collector streams remove: measurement `{measurement}` is not in bucket {bucket} \
             and has no stream {stream}; nothing to remove"
        );
        return Ok(failure());
    }
    let key = match had_key {
        true => format!("key deleted from bucket {bucket}"),
        false => format!("no key in bucket {bucket}"),
    };
    let stream = match (had_stream, n_waiting) {
        (false, _) => format!("no stream {stream}"),
        (true, 0) => format!("stream {stream} deleted"),
        (true, n) => format!("stream {stream} deleted with {n} record(s)"),
    };
    println!("measurement `{measurement}`: {key}; {stream}");
    Ok(ExitCode::SUCCESS)
}

// --- publish ---------------------------------------------------------------------------------

fn publish(config: &Config, js: &JetStream, publish: &Publish) -> Result<ExitCode> {
    let namespace = &config.namespace;
    let measurement = &publish.measurement;
    let subject = subject_name(namespace, measurement);
    let stream = stream_name(namespace, measurement);
    if js.stream_state(&stream, None)?.is_none() {
        eprintln!(
            "collector publish: stream {stream} does not exist; create it with \
             `collector streams set {measurement}`"
        );
        return Ok(failure());
    }
    let bucket = bucket_name(namespace);
    if js.kv_get(&bucket, measurement)?.is_none() {
        eprintln!(
            "collector publish: warning: measurement `{measurement}` is not in bucket {bucket}; \
             no collector writes its records until `collector streams set {measurement}`"
        );
    }
    let payloads = match &publish.source {
        Source::Record { .. } => {
            let payload = publish.source.payload().expect("a record has a payload");
            vec![payload.to_string().into_bytes()]
        }
        Source::Stdin => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading records from stdin, one JSON object per line; end with Ctrl-D");
            }
            match read_records(stdin.lock()) {
                Ok(payloads) => payloads,
                Err(problem) => {
                    eprintln!("collector publish: {problem}; nothing was published");
                    return Ok(failure());
                }
            }
        }
    };
    let run = unique_run_id();
    let messages: Vec<Outgoing> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Outgoing {
            subject: subject.clone(),
            payload,
            id: format!("collector-publish-{run}-{i}"),
            headers: Vec::new(),
        })
        .collect();
    let results = js.publish_all(&messages)?;
    let n_published = results.iter().filter(|r| r.is_ok()).count();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in results.iter().filter_map(|r| r.as_ref().err()) {
        *reasons.entry(reason.as_str()).or_default() += 1;
    }
    for (reason, n) in &reasons {
        eprintln!("collector publish: {n} record(s) not published: {reason}");
    }
    println!("published {n_published} record(s) to {subject}");
    Ok(match reasons.is_empty() {
        true => ExitCode::SUCCESS,
        false => failure(),
    })
}

/// Reads one JSON object per line, skipping blank lines. All are checked before any is
/// published, so a bad line never leaves half of a file published.
fn read_records(input: impl BufRead) -> Result<Vec<Vec<u8>>, String> {
    let mut payloads = Vec::new();
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(_)) => payloads.push(line.to_vec()),
            Ok(other) => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(format!("line {}: {kind}, not a JSON object", i + 1));
            }
            Err(e) => return Err(format!("line {}: not JSON: {e}", i + 1)),
        }
    }
    Ok(payloads)
}

/// Sets this run's `Nats-Msg-Id`s apart from every other run's.
fn unique_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

// --- check -----------------------------------------------------------------------------------

/// Counts the failed checks while printing one line per check.
#[derive(Default)]
struct Checks {
    n_failed: usize,
}

impl Checks {
    fn pass(&mut self, text: impl Display) {
        println!("✔ {text}");
    }

    fn fail(&mut self, problem: impl Display, fix: Option<&str>) {
        self.n_failed += 1;
        println!("✘ {problem}");
        if let Some(fix) = fix {
            println!("  fix: {fix}");
        }
    }

    fn probe(&mut self, prefix: &str, probe: Probe) -> bool {
        match probe {
            Probe::Passed(text) => {
                self.pass(format!("{prefix}{text}"));
                true
            }
            Probe::Failed { problem, fix } => {
                self.fail(format!("{prefix}{problem}"), Some(&fix));
                false
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let mut checks = Checks::default();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            checks.fail(format!("config: {e}"), None);
            return ExitCode::from(e.exit_code());
        }
    };
    let influx = &config.influx;
    let target = match influx.api {
        InfluxApi::V1 => format!("v1 database `{}`", influx.target),
        InfluxApi::V3 => format!("v3 database `{}`", influx.target),
        InfluxApi::V2 => format!(
            "v2 org `{}` bucket `{}`",
            influx.org.as_deref().unwrap_or_default(),
            influx.target
        ),
    };
    let secrets = match config.secret_sources.is_empty() {
        true => String::new(),
        false => format!("; secrets: {}", config.secret_sources.join(", ")),
    };
    checks.pass(format!(
        "config {}: namespace `{}`, InfluxDB {target}{secrets}",
        path.display(),
        config.namespace
    ));
    for warning in &config.warnings {
        println!("⚠ {warning}");
    }

    let hosts = config.nats.hosts.join(", ");
    match jetstream::connect(&config.nats, "collector-check") {
        Err(e) => {
            let text = e.to_string();
            let fix = if e.exit_code() == 2 {
                None // a credential the configuration holds is unusable; the text names it
            } else if text.to_ascii_lowercase().contains("authorization") {
                Some("check the NATS credentials: nats.nkey, nats.token, nats.username/password or nats.creds")
            } else if text.contains("TLS: ") {
                Some("fix the server's certificate, or nats.tls (ca, cert, key) and nats.hosts")
            } else {
                Some("start nats-server, or correct nats.hosts")
            };
            checks.fail(text, fix);
        }
        Ok(conn) => {
            let auth = match &config.nats.auth {
                NatsAuth::None => "no credentials",
                NatsAuth::Nkey(_) => "nkey",
                NatsAuth::Token(_) => "token",
                NatsAuth::UserPassword { .. } => "username and password",
                NatsAuth::Creds(_) => "credentials file",
            };
            let tls = match config.nats.tls.is_some() || hosts.contains("tls://") {
                true => ", TLS",
                false => "",
            };
            checks.pass(format!("nats: connected to {hosts} ({auth}{tls})"));
            check_jetstream(&mut checks, &config, &JetStream::new(conn));
        }
    }

    let url = crate::config::without_credentials(&influx.url);
    let client = Influx::new(influx);
    if checks.probe(&format!("influxdb {url}: "), client.probe_ping()) {
        checks.probe("influxdb: ", client.probe_target(influx));
        checks.probe("influxdb: ", client.probe_write(influx));
    }

    match checks.n_failed {
        0 => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        n => {
            println!("{n} check(s) failed");
            failure()
        }
    }
}

fn check_jetstream(checks: &mut Checks, config: &Config, js: &JetStream) {
    match js.account_info() {
        Ok(info) => checks.pass(format!(
            "nats: JetStream enabled ({} streams, {} consumers)",
            info.streams, info.consumers
        )),
        Err(e) => {
            checks.fail(
                e,
                Some("enable JetStream: nats-server -js, or a jetstream block in its config, and for this account"),
            );
            return;
        }
    }
    let bucket = bucket_name(&config.namespace);
    let n_measurements = js
        .bucket_revision(&bucket)
        .and_then(|revision| match revision {
            Some(_) => js
                .bucket_entries(&bucket)
                .map(|entries| Some(entries.iter().filter(|e| e.value.is_some()).count())),
            None => Ok(None),
        });
    match n_measurements {
        Ok(Some(n)) => checks.pass(format!("nats: bucket {bucket} exists ({n} measurements)")),
        Ok(None) => checks.fail(
            format!("nats: bucket {bucket} does not exist"),
            Some("add a measurement: collector streams set MEASUREMENT (or the Transfer client's Set)"),
        ),
        Err(e) => checks.fail(e, Some("check the user's permissions on $JS.API.>")),
    }
    // Streams of the namespace replicated otherwise than what the collector would create
    // are worth knowing about (an R1 dead-letter stream on a cluster loses dead letters with
    // its node), but they work: a warning, not a failed check.
    let replicas = jetstream::resolve_replicas(js, &config.nats, &config.namespace)
        .and_then(|(n, from)| Ok((n, from, js.namespace_replicas(&config.namespace)?)));
    match replicas {
        Ok((n, from, streams)) => {
            let other: Vec<String> = streams
                .iter()
                .filter(|(_, replicas)| *replicas != n)
                .map(|(name, replicas)| format!("{name} ({replicas})"))
                .collect();
            if other.is_empty() {
                checks.pass(format!(
                    "nats: replicas {n} (from {from}), as every one of the namespace's {} stream(s)",
                    streams.len()
                ));
            } else {
                println!(
                    "⚠ nats: replicas {n} (from {from}), but {} stream(s) of the namespace have other replicas: {}; the collector leaves existing streams as they are: change them (nats stream edit --replicas) or set nats.replicas",
                    other.len(),
                    other.join(", ")
                );
            }
        }
        Err(e) => checks.fail(e, Some("check the user's permissions on $JS.API.>")),
    }
}

// --- dlq -------------------------------------------------------------------------------------

fn dlq_filter(namespace: &str, measurement: Option<&str>) -> String {
    match measurement {
        Some(m) => dead_letter_subject(namespace, m),
        None => format!("{namespace}.dlq.>"),
    }
}

/// The measurement a dead letter belongs to, from its subject `<ns>.dlq.<m>`.
fn dead_letter_measurement<'a>(namespace: &str, message: &'a StoredMessage) -> &'a str {
    message
        .subject
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(".dlq."))
        .unwrap_or(&message.subject)
}

fn dlq_list(
    config: &Config,
    js: &JetStream,
    measurement: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let namespace = &config.namespace;
    let stream = dead_letter_stream(namespace);
    let Some(mut reader) = js.read_messages(&stream, &dlq_filter(namespace, measurement))? else {
        match format {
            Format::Json => println!("[]"),
            Format::Table => eprintln!("no dead-letter stream {stream}: nothing was dead-lettered"),
        }
        return Ok(ExitCode::SUCCESS);
    };
    match format {
        Format::Json => {
            // Streamed, so a large dead-letter stream is never held in memory.
            let mut out = std::io::stdout().lock();
            let mut n = 0;
            let _ = write!(out, "[");
            while let Some(message) = reader.next_message()? {
                let separator = if n == 0 { "\n  " } else { ",\n  " };
                let _ = write!(out, "{separator}{}", dead_letter_json(namespace, &message));
                n += 1;
            }
            let _ = writeln!(out, "{}]", if n == 0 { "" } else { "\n" });
        }
        Format::Table => {
            let mut cells = Vec::new();
            while let Some(message) = reader.next_message()? {
                cells.push(vec![
                    message.sequence.to_string(),
                    one_line(dead_letter_measurement(namespace, &message), CELL_WIDTH),
                    one_line(message.header("Collector-Error").unwrap_or("-"), CELL_WIDTH),
                    one_line(&String::from_utf8_lossy(&message.data), CELL_WIDTH),
                ]);
            }
            if cells.is_empty() {
                eprintln!("no dead letters in {stream}");
            } else {
                print!(
                    "{}",
                    table(
                        &["SEQ", "MEASUREMENT", "REASON", "PAYLOAD"],
                        &[true, false, false, false],
                        &cells
                    )
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A dead letter for `dlq list --json`: everything, the payload whole.
fn dead_letter_json(namespace: &str, message: &StoredMessage) -> Value {
    let mut item = json!({
        "sequence": message.sequence,
        "measurement": dead_letter_measurement(namespace, message),
        "time": message.time,
        "reason": message.header("Collector-Error"),
        "stream": message.header("Collector-Stream"),
        "stream_sequence": message
            .header("Collector-Sequence")
            .and_then(|s| s.parse::<u64>().ok()),
        "subject": message.header("Collector-Subject"),
        "payload": String::from_utf8_lossy(&message.data),
    });
    if std::str::from_utf8(&message.data).is_err() {
        // The text above replaced what is not UTF-8; the bytes themselves go here.
        item["payload_base64"] = json!(crate::base64::encode(&message.data));
    }
    item
}

/// Where a dead letter goes back to: its `Collector-Subject`, else the subject of its
/// measurement. Only a measurement subject of this namespace is accepted, so a forged
/// header cannot make a replay publish anywhere else.
fn replay_subject(namespace: &str, message: &StoredMessage) -> Result<String, String> {
    let subject = match message.header("Collector-Subject") {
        Some(subject) => subject.to_string(),
        None => subject_name(namespace, dead_letter_measurement(namespace, message)),
    };
    let prefix = format!("{namespace}.logs.");
    match subject.strip_prefix(&prefix) {
        Some(m) if is_valid_name(m) => Ok(subject),
        _ => Err(format!(
            "its subject `{subject}` is not a measurement subject {prefix}<measurement>"
        )),
    }
}

fn dlq_replay(config: &Config, js: &JetStream, measurement: Option<&str>) -> Result<ExitCode> {
    let namespace = &config.namespace;
    let stream = dead_letter_stream(namespace);
    let Some(mut reader) = js.read_messages(&stream, &dlq_filter(namespace, measurement))? else {
        println!("replayed 0 dead letters (no dead-letter stream {stream})");
        return Ok(ExitCode::SUCCESS);
    };
    let mut n_replayed = 0;
    let mut failures = Vec::new();
    loop {
        let mut batch = Vec::with_capacity(REPLAY_BATCH);
        while batch.len() < REPLAY_BATCH {
            match reader.next_message()? {
                Some(message) => batch.push(message),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let mut outgoing = Vec::with_capacity(batch.len());
        let mut sequences = Vec::with_capacity(batch.len());
        for message in batch {
            match replay_subject(namespace, &message) {
                Ok(subject) => {
                    sequences.push(message.sequence);
                    outgoing.push(Outgoing {
                        subject,
                        // The same id on a second replay of the same dead letter (say, after
                        // a crash between the publish and the delete) stores it once.
                        id: format!("collector-replay-{stream}-{}", message.sequence),
                        payload: message.data,
                        headers: Vec::new(),
                    });
                }
                Err(problem) => {
                    failures.push(format!("dead letter {}: {problem}", message.sequence))
                }
            }
        }
        let mut to_delete = Vec::with_capacity(sequences.len());
        for ((result, seq), message) in js
            .publish_all(&outgoing)?
            .iter()
            .zip(&sequences)
            .zip(&outgoing)
        {
            match result {
                Ok(_) => to_delete.push(*seq),
                Err(reason) => failures.push(format!(
                    "dead letter {seq} not republished to {}: {reason}",
                    message.subject
                )),
            }
        }
        for (result, seq) in js
            .delete_messages(&stream, &to_delete)?
            .iter()
            .zip(&to_delete)
        {
            match result {
                Ok(()) => n_replayed += 1,
                Err(reason) => failures.push(format!(
                    "dead letter {seq} was republished but could not be deleted from {stream}: {reason}"
                )),
            }
        }
    }
    for failure in &failures {
        eprintln!("collector dlq replay: {failure}");
    }
    println!("replayed {n_replayed} dead letter(s)");
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "collector dlq replay: {} dead letter(s) stay in {stream}",
            failures.len()
        );
        Ok(failure())
    }
}

// --- output ----------------------------------------------------------------------------------

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a json value always serializes")
    );
}

/// Text for one table cell: control characters shown as escapes, cut to `max` characters
/// with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let shown: Vec<char> = text
        .chars()
        .flat_map(|c| -> Vec<char> {
            match c {
                '\n' => vec!['\\', 'n'],
                '\r' => vec!['\\', 'r'],
                '\t' => vec!['\\', 't'],
                c if c.is_control() => c.escape_unicode().collect(),
                c => vec![c],
            }
        })
        .take(max + 1)
        .collect();
    if shown.len() <= max {
        return shown.into_iter().collect();
    }
    let mut cut: String = shown[..max.saturating_sub(1)].iter().collect();
    cut.push('…');
    cut
}

/// A duration for a table cell, in its two largest units: `0s`, `59s`, `1m05s`, `2h00m`,
/// `3d04h`.
fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// An aligned table: columns separated by two spaces, `right[i]` aligns column `i` right.
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["access".to_string(), "web".to_string(), "3".to_string()],
            vec!["e".to_string(), "".to_string(), "12345".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "DESCRIPTION", "N"], &[false, false, true], &rows),
            "NAME    DESCRIPTION      N\n\
             access  web              3\n\
             e                    12345\n"
        );
        assert_eq!(table(&["A", "B"], &[false, false], &[]), "A  B\n");
    }

    #[test]
    fn ages_show_two_units() {
        for (seconds, expected) in [
            (0, "0s"),
            (59, "59s"),
            (65, "1m05s"),
            (3_599, "59m59s"),
            (7_200, "2h00m"),
            (86_399, "23h59m"),
            (273_600, "3d04h"),
        ] {
            assert_eq!(age(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn cells_are_one_bounded_line() {
        let table = [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("eleven chars", 10, "eleven ch…"),
            ("a\nb\tc", 10, "a\\nb\\tc"),
            ("ab\ncd", 3, "ab…"),
            ("héllo wörld", 5, "héll…"),
            ("\u{1}", 20, "\\u{1}"),
        ];
        for (text, max, expected) in table {
            assert_eq!(one_line(text, max), expected, "{text:?}");
            assert!(one_line(text, max).chars().count() <= max);
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        let table = [
            ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
            ("http://u:p@db:8086", "http://db:8086"),
            ("https://u:p@w@db/x?y=a@b", "https://db/x?y=a@b"),
            ("http://db/path@x", "http://db/path@x"),
            ("nonsense", "nonsense"),
        ];
        for (url, expected) in table {
            assert_eq!(crate::config::without_credentials(url), expected);
        }
    }

    #[test]
    fn stdin_records_are_all_checked_first() {
        let ok = b"{\"fields\":{\"n\":1}}\n\n  {\"fields\":{\"n\":2}}  \r\n".as_slice();
        assert_eq!(
            read_records(ok).unwrap(),
            vec![
                b"{\"fields\":{\"n\":1}}".to_vec(),
                b"{\"fields\":{\"n\":2}}".to_vec()
            ]
        );
        let table: [(&[u8], &str); 4] = [
            (b"{}\n[1]\n", "line 2: an array, not a JSON object"),
            (b"{}\n{}\n\"x\"", "line 3: a string, not a JSON object"),
            (b"{\"a\":", "line 1: not JSON"),
            (b"{}\n\xff\n", "line 2: not JSON"),
        ];
        for (input, needle) in table {
            let problem = read_records(input).unwrap_err();
            assert!(problem.contains(needle), "{problem:?} lacks {needle:?}");
        }
        assert!(read_records(b"".as_slice()).unwrap().is_empty());
    }

    #[test]
    fn replays_go_only_to_measurement_subjects() {
        let message = |subject: &str, origin: Option<&str>| StoredMessage {
            sequence: 1,
            subject: subject.into(),
            time: String::new(),
            headers: origin
                .map(|o| vec![("Collector-Subject".to_string(), o.to_string())])
                .unwrap_or_default(),
            data: Vec::new(),
        };
        let table = [
            (
                "beta.dlq.access",
                Some("beta.logs.access"),
                Ok("beta.logs.access"),
            ),
            ("beta.dlq.access", None, Ok("beta.logs.access")),
            (
                "beta.dlq.access",
                Some("beta.logs.other"),
                Ok("beta.logs.other"),
            ),
            ("beta.dlq.access", Some("alpha.logs.access"), Err(())),
            ("beta.dlq.access", Some("beta.logs.a.b"), Err(())),
            ("beta.dlq.access", Some("beta.logs.>"), Err(())),
            ("beta.dlq.access", Some("$JS.API.STREAM.DELETE.x"), Err(())),
        ];
        for (subject, origin, expected) in table {
            let got = replay_subject("beta", &message(subject, origin));
            match expected {
                Ok(s) => assert_eq!(got.as_deref(), Ok(s)),
                Err(()) => assert!(got.is_err(), "{origin:?}"),
            }
        }
    }
}
