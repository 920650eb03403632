//! `collector dlq list|replay`: the dead letters of a namespace shown, or republished to
//! their measurement's subject and then deleted.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::cli::Format;
use crate::config::{is_valid_name, Config};
use crate::error::Result;
use crate::jetstream::{
    dead_letter_stream, dead_letter_subject, subject_name, JetStream, Outgoing, StoredMessage,
};

use super::failure;
use super::output::{one_line, table, CELL_WIDTH};

/// Dead letters replayed per round: read, republished in one pipeline, then deleted.
const REPLAY_BATCH: usize = 256;

fn dlq_filter(namespace: &str, measurement: Option<&str>) -> String {
    dead_letter_subject(namespace, measurement.unwrap_or(">"))
}

/// The measurement a dead letter belongs to, from its subject `<ns>.dlq.<m>`.
fn dead_letter_measurement<'a>(namespace: &str, message: &'a StoredMessage) -> &'a str {
    message
        .subject
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(".dlq."))
        .unwrap_or(&message.subject)
}

pub(super) fn list(
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

pub(super) fn replay(
    config: &Config,
    js: &JetStream,
    measurement: Option<&str>,
) -> Result<ExitCode> {
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
        n_replayed += replay_batch(js, namespace, &stream, batch, &mut failures)?;
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

/// Republishes one batch of dead letters to their measurement subjects and deletes those
/// republished; returns how many went both ways. What failed is added to `failures`.
fn replay_batch(
    js: &JetStream,
    namespace: &str,
    stream: &str,
    batch: Vec<StoredMessage>,
    failures: &mut Vec<String>,
) -> Result<usize> {
    let mut n_replayed = 0;
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
            Err(problem) => failures.push(format!("dead letter {}: {problem}", message.sequence)),
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
        .delete_messages(stream, &to_delete)?
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
    Ok(n_replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
