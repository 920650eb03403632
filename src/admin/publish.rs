//! `collector publish`: records from the command line or stdin, checked first, then
//! published with this run's `Nats-Msg-Id`s to a measurement's subject.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{Publish, Source};
use crate::config::Config;
use crate::error::Result;
use crate::jetstream::{bucket_name, stream_name, subject_name, JetStream, Outgoing};

use super::failure;

pub(super) fn publish(config: &Config, js: &JetStream, publish: &Publish) -> Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
