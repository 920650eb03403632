//! `collector streams list|set|remove`: the measurement catalog (the KV bucket) and the
//! stream of each measurement, read and changed on the main thread.

use std::process::ExitCode;

use serde::Serialize;
use serde_json::{json, Value};

use crate::catalog::{parse_entry, Measurement};
use crate::cli::{Format, Waiting};
use crate::config::{is_valid_name, Config};
use crate::error::Result;
use crate::jetstream::{self, bucket_name, stream_name, JetStream};

use super::failure;
use super::output::{age, one_line, print_json, table, CELL_WIDTH};

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

pub(super) fn list(config: &Config, js: &JetStream, format: Format) -> Result<ExitCode> {
    let bucket = bucket_name(&config.namespace);
    let now_ns = crate::stats::unix_ms(std::time::SystemTime::now()) as i64 * 1_000_000;
    let rows = read_rows(config, js, &bucket)?;
    match format {
        Format::Json => {
            let items = rows
                .iter()
                .map(|row| json_item(&config.namespace, row, now_ns))
                .collect();
            print_json(&Value::Array(items));
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(|row| table_row(row, now_ns)).collect();
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

/// Every measurement in the bucket with the state of its stream and consumer.
fn read_rows(config: &Config, js: &JetStream, bucket: &str) -> Result<Vec<StreamRow>> {
    let mut rows = Vec::new();
    for entry in js.bucket_entries(bucket)? {
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
    Ok(rows)
}

/// The age of a stream's oldest record at `now_ns`, the one the collectors write next: the
/// same lag as `collector_measurement_oldest_age_seconds`.
fn oldest_age(state: &jetstream::StreamState, now_ns: i64) -> u64 {
    state.oldest_ns().map_or(0, |oldest| {
        (now_ns.saturating_sub(oldest).max(0) / 1_000_000_000) as u64
    })
}

/// One measurement of `streams list --json`.
fn json_item(namespace: &str, row: &StreamRow, now_ns: i64) -> Value {
    let mut item = json!({
        "measurement": row.measurement,
        "description": row.description,
        "stream": row.stream.as_ref().map(|s| json!({
            "name": stream_name(namespace, &row.measurement),
            "messages": s.messages,
            "oldest_age_seconds": oldest_age(s, now_ns),
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
}

/// One measurement of the `streams list` table; `-` where there is no stream or consumer.
fn table_row(row: &StreamRow, now_ns: i64) -> Vec<String> {
    let dash = || "-".to_string();
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
            .map_or_else(dash, |s| age(oldest_age(s, now_ns))),
    ]
}

pub(super) fn set(
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
    let stream = stream_name(namespace, measurement);
    let done = if js.ensure_stream(namespace, measurement, &description)? {
        "created"
    } else if js.update_stream_description(&stream, &description)? {
        "description updated"
    } else {
        "unchanged"
    };
    println!("measurement `{measurement}`: key {key} in bucket {bucket}; stream {stream} {done}");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn remove(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(measurement: &str, problem: Option<&str>, with_state: bool) -> StreamRow {
        StreamRow {
            measurement: measurement.into(),
            description: "web".into(),
            problem: problem.map(str::to_string),
            stream: with_state.then(|| {
                serde_json::from_value(json!({"messages": 7, "first_ts": "2026-01-01T00:00:00Z"}))
                    .unwrap()
            }),
            consumer: with_state.then(|| {
                serde_json::from_value(
                    json!({"num_pending": 5, "num_ack_pending": 2, "num_redelivered": 1}),
                )
                .unwrap()
            }),
        }
    }

    #[test]
    fn rows_show_the_state_or_dashes() {
        let now_ns = crate::record::parse_rfc3339_ns("2026-01-01T00:01:05Z").unwrap();
        assert_eq!(
            table_row(&row("access", None, true), now_ns),
            ["access", "web", "7", "5", "2", "1", "1m05s"]
        );
        assert_eq!(
            table_row(&row("a.b", Some("not JSON"), false), now_ns),
            ["a.b", "(invalid entry: not JSON)", "-", "-", "-", "-", "-"]
        );
        let item = json_item("beta", &row("access", None, true), now_ns);
        assert_eq!(item["stream"]["name"], stream_name("beta", "access"));
        assert_eq!(item["stream"]["oldest_age_seconds"], 65);
        assert_eq!(item["consumer"]["ack_pending"], 2);
        assert!(item.get("problem").is_none());
        let item = json_item("beta", &row("a.b", Some("not JSON"), false), now_ns);
        assert_eq!(
            (item["problem"].as_str(), item["stream"].is_null()),
            (Some("not JSON"), true)
        );
    }
}
