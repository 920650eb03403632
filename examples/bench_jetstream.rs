//! Benchmark helper for `scripts/bench.sh`: the raw JetStream limit, and the wait for a
//! collector to empty its streams. See docs/BENCHMARKS.md.
//!
//! ```text
//! bench_jetstream preload --nats URL --namespace NS --measurements a,b --dir DIR
//! bench_jetstream drain   --nats URL --namespace NS --measurements a,b [--batch 500] [--threads 1]
//! bench_jetstream wait    --nats URL --namespace NS --measurements a,b --since UNIX_NS
//! bench_jetstream fresh   --nats URL --namespace NS --measurements a,b --influx URL --db DB [--samples 20]
//! bench_jetstream remove  --nats URL --namespace NS --measurements a,b
//! ```
//!
//! `remove` deletes the measurements' streams and the namespace's bucket once a run is over:
//! a regression check makes a namespace of 200 streams per run, and nats-server slowed down
//! as they piled up.
//!
//! `preload` does what the Transfer client does for each measurement `m`: puts the key `m`
//! in the bucket `<ns>_logs`, creates the stream, and publishes every line of `DIR/<m>.jsonl`
//! as one record, without headers (as the Transfer client publishes), many acknowledged
//! publishes in flight at once (`JetStream::publish_all`). It fails unless each stream then
//! holds exactly its file's records.
//!
//! `drain` is limit A: it empties the preloaded streams `<ns>:logs:<m>` with nothing but
//! fetches and acks, through the crate's own functions (`jetstream::request_pull` with its
//! explicit flush, two pulls outstanding per stream, `settle::Held::acknowledge` without
//! waiting), with no database. The time runs from the first pull to the last ack *and* every
//! stream empty, so acks still in flight are counted. It prints `records=N seconds=S`.
//!
//! `wait` polls the streams until every one is empty and prints `seconds=S`, the time since
//! `--since` (when the script started the collector). On a work-queue stream a record leaves
//! only when it is acknowledged, and the collector acknowledges only what InfluxDB stored.
//!
//! `fresh` measures freshness against a running collector: `--samples` times, one record
//! into one idle measurement (round-robin over `--measurements`, half a second apart), and
//! the time from just before its publish until InfluxDB (v1 `/query`) returns it. It prints
//! `samples=N p50_ms=.. p95_ms=.. max_ms=..`.
#![allow(deprecated)] // the `nats` crate, as in src/jetstream/

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use collector::config::{NatsAuth, NatsConfig, PullConfig};
use collector::jetstream::{self, Arrival, JetStream, Outgoing, Reconnects};
use collector::settle::Held;

const EXPIRES: Duration = Duration::from_secs(2);
/// How often `wait` asks for the streams' state.
const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Args {
    mode: String,
    nats: String,
    namespace: String,
    measurements: Vec<String>,
    batch: usize,
    threads: usize,
    since_ns: Option<u128>,
    dir: String,
    influx: String,
    db: String,
    samples: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("preload, drain or wait is missing")?;
    let mut parsed = Args {
        mode,
        batch: 500,
        threads: 1,
        samples: 20,
        ..Args::default()
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--nats" => parsed.nats = value.clone(),
            "--namespace" => parsed.namespace = value.clone(),
            "--measurements" => {
                parsed.measurements = value.split(',').map(str::to_string).collect()
            }
            "--dir" => parsed.dir = value.clone(),
            "--influx" => parsed.influx = value.clone(),
            "--db" => parsed.db = value.clone(),
            "--samples" => parsed.samples = number()?.max(1),
            "--batch" => parsed.batch = number()?,
            "--threads" => parsed.threads = number()?.max(1),
            "--since" => {
                parsed.since_ns = Some(value.parse().map_err(|e| format!("--since: {e}"))?)
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if parsed.nats.is_empty() || parsed.namespace.is_empty() || parsed.measurements.is_empty() {
        return Err("--nats, --namespace and --measurements are required".into());
    }
    Ok(parsed)
}

fn connect(url: &str) -> Result<JetStream, String> {
    let config = NatsConfig {
        hosts: vec![url.to_string()],
        auth: NatsAuth::None,
        tls: None,
        replicas: None,
    };
    jetstream::connect(&config, "bench_jetstream", &Reconnects::default())
        .map(JetStream::new)
        .map_err(|e| e.to_string())
}

/// Messages waiting in the measurements' streams, from `$JS.API.STREAM.LIST` (256 streams
/// a page): one request per poll rather than one per stream, so polling 200 streams does not
/// itself take longer than the drain it times. A stream created between two pages (the
/// collector's dead-letter stream, another namespace's) shifts the pages, so a stream can be
/// listed twice or not at all: each is counted once by name, and a listing that misses one is
/// asked again before the streams are said missing.
fn waiting(js: &JetStream, args: &Args) -> Result<u64, String> {
    let wanted: std::collections::HashSet<String> = args
        .measurements
        .iter()
        .map(|m| jetstream::stream_name(&args.namespace, m))
        .collect();
    let mut found: HashMap<String, u64> = HashMap::new();
    for _ in 0..5 {
        found.clear();
        let mut offset = 0;
        loop {
            let body = serde_json::json!({ "offset": offset }).to_string();
            let reply = js
                .connection()
                .request_timeout("$JS.API.STREAM.LIST", body, Duration::from_secs(5))
                .map_err(|e| format!("stream list: {e}"))?;
            let answer: serde_json::Value =
                serde_json::from_slice(&reply.data).map_err(|e| format!("stream list: {e}"))?;
            let streams = answer["streams"].as_array().cloned().unwrap_or_default();
            for stream in &streams {
                let name = stream["config"]["name"].as_str().unwrap_or("");
                if wanted.contains(name) {
                    let messages = stream["state"]["messages"].as_u64().unwrap_or(0);
                    found.insert(name.to_string(), messages);
                }
            }
            offset += streams.len();
            if streams.is_empty() || offset as u64 >= answer["total"].as_u64().unwrap_or(0) {
                break;
            }
        }
        if found.len() == wanted.len() {
            return Ok(found.values().sum());
        }
    }
    Err(format!("{} of {} streams exist", found.len(), wanted.len()))
}

/// Drains `measurements` on its own connection; returns how many records it acked.
fn drain_some(args: &Args, measurements: &[String], expected: u64) -> Result<u64, String> {
    let js = connect(&args.nats)?;
    let conn = js.connection().clone();
    let prefix = conn.new_inbox();
    let inbox = conn
        .subscribe(&format!("{prefix}.*"))
        .map_err(|e| e.to_string())?;
    struct Stream {
        name: String,
        reply: String,
        /// Records still to come for each outstanding pull, oldest first.
        pulls: Vec<usize>,
    }
    let mut streams: HashMap<String, Stream> = measurements
        .iter()
        .map(|m| {
            let stream = Stream {
                name: jetstream::stream_name(&args.namespace, m),
                reply: format!("{prefix}.{m}"),
                pulls: Vec::new(),
            };
            (m.clone(), stream)
        })
        .collect();
    let mut n_acked = 0u64;
    while n_acked < expected {
        for stream in streams.values_mut() {
            while stream.pulls.len() < 2 {
                jetstream::request_pull(
                    &conn,
                    &stream.name,
                    &stream.reply,
                    args.batch,
                    EXPIRES,
                    EXPIRES / 6,
                )
                .map_err(|e| format!("pull on {}: {e}", stream.name))?;
                jetstream::flush(&conn).map_err(|e| format!("flush: {e}"))?;
                stream.pulls.push(args.batch);
            }
        }
        let message = inbox
            .next_timeout(EXPIRES * 5)
            .map_err(|e| format!("no record for {:?}: {e}", EXPIRES * 5))?;
        let measurement = message.subject.rsplit('.').next().unwrap_or("");
        let Some(stream) = streams.get_mut(measurement) else {
            continue;
        };
        match jetstream::classify(&message) {
            Arrival::Record(delivery) => {
                Held::new(message, delivery).acknowledge();
                n_acked += 1;
                if let Some(first) = stream.pulls.first_mut() {
                    *first -= 1;
                    if *first == 0 {
                        stream.pulls.remove(0);
                    }
                }
            }
            Arrival::PullEnded { .. } => {
                if !stream.pulls.is_empty() {
                    stream.pulls.remove(0);
                }
            }
            Arrival::Heartbeat | Arrival::Unknown => {}
        }
    }
    jetstream::flush(&conn).map_err(|e| e.to_string())?;
    Ok(n_acked)
}

fn drain(args: &Args) -> Result<(), String> {
    let js = connect(&args.nats)?;
    let pull = PullConfig {
        workers: args.threads,
        batch: args.batch,
        expires: EXPIRES,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 20_000,
        max_deliver: 10,
    };
    let mut per_stream = HashMap::new();
    for m in &args.measurements {
        js.ensure_consumer(&args.namespace, m, &pull)
            .map_err(|e| e.to_string())?;
        let stream = jetstream::stream_name(&args.namespace, m);
        let state = js
            .stream_state(&stream, None)
            .map_err(|e| e.to_string())?
            .ok_or(format!("stream {stream} does not exist"))?;
        per_stream.insert(m.clone(), state.messages);
    }
    let total: u64 = per_stream.values().sum();
    if total == 0 {
        return Err("the streams are empty: preload them first".into());
    }
    let groups: Vec<Vec<String>> = (0..args.threads)
        .map(|t| {
            args.measurements
                .iter()
                .skip(t)
                .step_by(args.threads)
                .cloned()
                .collect()
        })
        .filter(|g: &Vec<String>| !g.is_empty())
        .collect();
    let started = Instant::now();
    let acked = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                let expected = group.iter().map(|m| per_stream[m]).sum();
                scope.spawn(move || drain_some(args, group, expected))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("drain thread panicked"))
            .sum::<Result<u64, String>>()
    })?;
    while waiting(&js, args)? > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            return Err("acked everything, but the streams are not empty".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    if acked != total {
        return Err(format!("acked {acked} records of {total}"));
    }
    println!("records={total} seconds={seconds:.3}");
    Ok(())
}

fn preload(args: &Args) -> Result<(), String> {
    let js = connect(&args.nats)?;
    let bucket = jetstream::bucket_name(&args.namespace);
    js.ensure_bucket(&bucket).map_err(|e| e.to_string())?;
    for m in &args.measurements {
        let value = serde_json::json!({ "measurement": m, "description": "bench" });
        js.kv_put(&bucket, m, value.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        js.ensure_stream(&args.namespace, m, "bench")
            .map_err(|e| e.to_string())?;
        let path = format!("{}/{m}.jsonl", args.dir);
        let text = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let subject = jetstream::subject_name(&args.namespace, m);
        let messages: Vec<Outgoing> = text
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| Outgoing {
                subject: subject.clone(),
                payload: line.to_vec(),
                id: String::new(),
                headers: Vec::new(),
            })
            .collect();
        let results = js.publish_all(&messages).map_err(|e| e.to_string())?;
        if let Some(Err(problem)) = results.iter().find(|r| r.is_err()) {
            return Err(format!("publish to {subject}: {problem}"));
        }
        let stream = jetstream::stream_name(&args.namespace, m);
        let stored = js
            .stream_state(&stream, None)
            .map_err(|e| e.to_string())?
            .map_or(0, |s| s.messages);
        if stored != messages.len() as u64 {
            return Err(format!(
                "stream {stream} holds {stored} records, not the {} published",
                messages.len()
            ));
        }
    }
    Ok(())
}

fn remove(args: &Args) -> Result<(), String> {
    let js = connect(&args.nats)?;
    for m in &args.measurements {
        js.delete_stream(&jetstream::stream_name(&args.namespace, m))
            .map_err(|e| e.to_string())?;
    }
    let bucket = jetstream::bucket_name(&args.namespace);
    js.delete_stream(&jetstream::bucket_stream(&bucket))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn wait(args: &Args) -> Result<(), String> {
    let js = connect(&args.nats)?;
    let since = args.since_ns.ok_or("--since is required")?;
    loop {
        if waiting(&js, args)? == 0 {
            break;
        }
        std::thread::sleep(POLL);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    println!("seconds={:.3}", now.saturating_sub(since) as f64 / 1e9);
    Ok(())
}

fn fresh(args: &Args) -> Result<(), String> {
    if args.influx.is_empty() || args.db.is_empty() {
        return Err("fresh needs --influx and --db".into());
    }
    let js = connect(&args.nats)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    let mut latencies = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let m = &args.measurements[i % args.measurements.len()];
        let probe = format!("{run}-{i}");
        let payload = format!(r#"{{"tags":{{"probe":"{probe}"}},"fields":{{"probe_n":{i}}}}}"#);
        let query = format!(r#"SELECT count("probe_n") FROM "{m}" WHERE "probe" = '{probe}'"#);
        let started = Instant::now();
        let results = js
            .publish_all(&[Outgoing {
                subject: jetstream::subject_name(&args.namespace, m),
                payload: payload.into_bytes(),
                id: String::new(),
                headers: Vec::new(),
            }])
            .map_err(|e| e.to_string())?;
        if let Some(Err(problem)) = results.first() {
            return Err(format!("publish to {m}: {problem}"));
        }
        loop {
            let body = agent
                .get(&format!("{}/query", args.influx))
                .query("db", &args.db)
                .query("q", &query)
                .call()
                .map_err(|e| format!("{query}: {e}"))?
                .body_mut()
                .read_to_string()
                .map_err(|e| format!("{query}: {e}"))?;
            if body.contains("\"series\"") {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("record {probe} not in InfluxDB after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    println!(
        "samples={} p50_ms={:.1} p95_ms={:.1} max_ms={:.1}",
        latencies.len(),
        at(0.5),
        at(0.95),
        at(1.0)
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args.mode.as_str() {
        "preload" => preload(&args),
        "drain" => drain(&args),
        "wait" => wait(&args),
        "fresh" => fresh(&args),
        "remove" => remove(&args),
        other => Err(format!(
            "unknown mode {other}; use preload, drain, wait, fresh or remove"
        )),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_jetstream: {e}");
            ExitCode::FAILURE
        }
    }
}
