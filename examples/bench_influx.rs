//! Benchmark helper for `scripts/bench.sh`: the raw InfluxDB limit, and the count check.
//! See docs/BENCHMARKS.md.
//!
//! ```text
//! bench_influx write --url URL --db NAME --dir DIR --measurements a,b [--batch 5000] [--threads 2]
//!                    [--api v1|v3]
//! bench_influx count --url URL --db NAME --measurements a,b [--field status] [--api v1|v3]
//! bench_influx sink --port PORT
//! ```
//!
//! `write` is limit B. It reads the records `DIR/<m>.jsonl`, turns them into line protocol
//! with the collector's own encoder *before* the clock starts, creates the database, then
//! POSTs the lines in batches of `--batch` over `--threads` kept-alive connections (one
//! thread each) and stops the clock at the last 2xx. It then counts the points and fails
//! unless InfluxDB holds every record. It prints `records=N seconds=S bytes=B writes=W
//! mean_write_ms=T max_write_ms=U`.
//!
//! `count` prints `points=N`: how many points of the measurements have the field.
//!
//! `--api v1` (the default) speaks InfluxDB 1.x: `CREATE DATABASE` and `SELECT count(..)`
//! through `/query` (InfluxQL), writes to `/write`. `--api v3` speaks InfluxDB 3: the database
//! is created with `POST /api/v3/configure/database`, the lines go to `/api/v3/write_lp`
//! (`precision=nanosecond`; a 2xx there means every line was stored), and the count is a SQL
//! `COUNT` per measurement through `GET /api/v3/query_sql` (a database or table that does not
//! exist counts 0).
//!
//! `sink` is the null sink of the scale report: an HTTP/1.1 server on 127.0.0.1:PORT that
//! reads each request's body and answers 204, storing nothing, so a drain into it has no
//! cost per series (one thread per connection, kept alive; bodies must carry a
//! Content-Length, as the collector's do). It runs until killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use collector::record::{Encoder, Origin, Unsigned};

#[derive(Default)]
struct Args {
    mode: String,
    url: String,
    db: String,
    dir: String,
    measurements: Vec<String>,
    batch: usize,
    threads: usize,
    field: String,
    api: Api,
}

/// Which InfluxDB the options speak to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// InfluxDB 1.x: `/write` and InfluxQL through `/query`.
    #[default]
    V1,
    /// InfluxDB 3: `/api/v3/write_lp`, `/api/v3/configure/database` and SQL through
    /// `/api/v3/query_sql`.
    V3,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("write or count is missing")?;
    let mut parsed = Args {
        mode,
        batch: 5000,
        threads: 2,
        field: "status".into(),
        ..Args::default()
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => parsed.url = value.trim_end_matches('/').to_string(),
            "--db" => parsed.db = value.clone(),
            "--dir" => parsed.dir = value.clone(),
            "--measurements" => {
                parsed.measurements = value.split(',').map(str::to_string).collect()
            }
            "--batch" => parsed.batch = number()?.max(1),
            "--threads" => parsed.threads = number()?.max(1),
            "--field" => parsed.field = value.clone(),
            "--api" => {
                parsed.api = match value.as_str() {
                    "v1" => Api::V1,
                    "v3" => Api::V3,
                    _ => return Err(format!("--api takes v1 or v3, not {value}")),
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if parsed.url.is_empty() || parsed.db.is_empty() || parsed.measurements.is_empty() {
        return Err("--url, --db and --measurements are required".into());
    }
    Ok(parsed)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// Runs an InfluxQL statement (`POST /query`) and returns its JSON answer.
fn query(agent: &ureq::Agent, args: &Args, influxql: &str) -> Result<serde_json::Value, String> {
    let mut response = agent
        .post(&format!("{}/query", args.url))
        .query("db", &args.db)
        .query("q", influxql)
        .send_empty()
        .map_err(|e| format!("{influxql}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{influxql}: {e}"))?;
    if status != 200 {
        return Err(format!("{influxql}: {status} {body}"));
    }
    let answer: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{influxql}: {e}"))?;
    if let Some(error) = answer["results"][0].get("error") {
        return Err(format!("{influxql}: {error}"));
    }
    Ok(answer)
}

/// Points of the measurements that have `field`.
fn count(agent: &ureq::Agent, args: &Args) -> Result<u64, String> {
    match args.api {
        Api::V1 => count_v1(agent, args),
        Api::V3 => count_v3(agent, args),
    }
}

/// [`count`] through InfluxQL, all measurements in one query.
fn count_v1(agent: &ureq::Agent, args: &Args) -> Result<u64, String> {
    let from: Vec<String> = args
        .measurements
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect();
    let answer = query(
        agent,
        args,
        &format!("SELECT count(\"{}\") FROM {}", args.field, from.join(",")),
    )?;
    Ok(answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| series["values"][0][1].as_u64())
        .sum())
}

/// [`count`] through SQL (`GET /api/v3/query_sql`), one query per measurement; a database
/// that does not exist (404) or a table that does not (500 `... not found`) counts 0.
fn count_v3(agent: &ureq::Agent, args: &Args) -> Result<u64, String> {
    let mut total = 0;
    for m in &args.measurements {
        let sql = format!(
            "SELECT COUNT({}) AS n FROM {}",
            quote_sql(&args.field),
            quote_sql(m)
        );
        let mut response = agent
            .get(&format!("{}/api/v3/query_sql", args.url))
            .query("db", &args.db)
            .query("q", &sql)
            .query("format", "json")
            .call()
            .map_err(|e| format!("{sql}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{sql}: {e}"))?;
        match status {
            200 => {
                let rows: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("{sql}: {e}: {body}"))?;
                total += rows[0]["n"].as_u64().unwrap_or(0);
            }
            404 => {}
            500 if body.contains("not found") => {}
            _ => return Err(format!("{sql}: {status} {body}")),
        }
    }
    Ok(total)
}

/// A SQL identifier in double quotes, any `"` in it doubled.
fn quote_sql(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database: `CREATE DATABASE` (v1), `POST /api/v3/configure/database` (v3,
/// where one that exists already, 409, is fine: the count then tells whether it is fresh).
fn create_database(agent: &ureq::Agent, args: &Args) -> Result<(), String> {
    if args.api == Api::V1 {
        return query(agent, args, &format!("CREATE DATABASE \"{}\"", args.db)).map(drop);
    }
    let body = serde_json::json!({ "db": args.db }).to_string();
    let mut response = agent
        .post(&format!("{}/api/v3/configure/database", args.url))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .map_err(|e| format!("create database {}: {e}", args.db))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) || status == 409 {
        return Ok(());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("create database {}: {status} {text}", args.db))
}

/// Every record as line protocol, cut into bodies of `batch` lines.
fn bodies(args: &Args) -> Result<(Vec<Vec<u8>>, usize), String> {
    let mut bodies = Vec::new();
    let mut n_records = 0;
    for m in &args.measurements {
        let path = format!("{}/{m}.jsonl", args.dir);
        let text = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let encoder = Encoder::new(m, Unsigned::Refused).map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        let mut n_lines = 0;
        let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (sequence, line) in (1..).zip(lines) {
            // The sequence the record would have in a fresh stream, as the collector sees it.
            let origin = Origin {
                stream_sequence: sequence,
                timestamp_ns: 0,
            };
            encoder
                .encode(line, origin, &mut body)
                .map_err(|e| format!("{path}: {e}"))?;
            n_lines += 1;
            n_records += 1;
            if n_lines == args.batch {
                bodies.push(std::mem::take(&mut body));
                n_lines = 0;
            }
        }
        if n_lines > 0 {
            bodies.push(body);
        }
    }
    Ok((bodies, n_records))
}

fn write(args: &Args) -> Result<(), String> {
    let (bodies, n_records) = bodies(args)?;
    let n_bytes: usize = bodies.iter().map(Vec::len).sum();
    let setup = agent();
    create_database(&setup, args)?;
    if count(&setup, args)? != 0 {
        return Err(format!("database {} is not fresh", args.db));
    }
    let url = match args.api {
        Api::V1 => format!("{}/write?db={}&precision=ns", args.url, args.db),
        Api::V3 => format!(
            "{}/api/v3/write_lp?db={}&precision=nanosecond",
            args.url, args.db
        ),
    };
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    // Each thread's write times, for the mean and the longest.
    let times: Vec<Vec<Duration>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<Duration>, String> {
                    let agent = agent();
                    let mut times = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(times);
                        };
                        let sent = Instant::now();
                        let mut response = agent
                            .post(&url)
                            .header("Content-Type", "text/plain; charset=utf-8")
                            .send(&body[..])
                            .map_err(|e| format!("write: {e}"))?;
                        let status = response.status().as_u16();
                        if !(200..300).contains(&status) {
                            let text = response.body_mut().read_to_string().unwrap_or_default();
                            return Err(format!("write answered {status}: {text}"));
                        }
                        times.push(sent.elapsed());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect::<Result<_, _>>()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let times: Vec<Duration> = times.into_iter().flatten().collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean_ms = times.iter().copied().map(ms).sum::<f64>() / times.len().max(1) as f64;
    let max_ms = times.iter().copied().map(ms).fold(0.0, f64::max);
    let stored = count(&setup, args)?;
    if stored != n_records as u64 {
        return Err(format!(
            "InfluxDB holds {stored} points, not the {n_records} records written"
        ));
    }
    println!(
        "records={n_records} seconds={seconds:.3} bytes={n_bytes} writes={} mean_write_ms={mean_ms:.1} max_write_ms={max_ms:.1}",
        times.len()
    );
    Ok(())
}

/// The null sink: answers every request with 204 after reading its body.
fn sink(port: &str) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|e| format!("--port: {e}"))?;
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve_null(stream);
        });
    }
    Ok(())
}

/// One kept-alive connection of the null sink, until the client closes it.
fn serve_null(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
        writer.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")?;
    }
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    if let (Some("sink"), Some("--port"), Some(port)) = (
        raw.next().as_deref(),
        raw.next().as_deref(),
        raw.next().as_deref(),
    ) {
        return match sink(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench_influx: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = parse_args().and_then(|args| match args.mode.as_str() {
        "write" => write(&args),
        "count" => count(&agent(), &args).map(|n| println!("points={n}")),
        other => Err(format!("unknown mode {other}; use write, count or sink")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_influx: {e}");
            ExitCode::FAILURE
        }
    }
}
