//! The configuration bucket read the way the collectors poll it and written the way the
//! Transfer client writes it; every entry's headers go through one decoder ([`kv_value`]).

use std::borrow::Cow;

use serde_json::{json, Value};

use super::names::{bucket_stream, kv_subject};
use super::pipeline::{answered, Pipeline, PipelineRequest};
use super::{
    has_err_code, publish_stored, unless_missing, JetStream, StoredMessage, ERR_NO_MESSAGE_FOUND,
    ERR_STREAM_NOT_FOUND, ERR_WRONG_LAST_SEQUENCE,
};
use crate::error::Result;

/// A KV entry as read from the bucket stream: the key and its value, `None` once deleted or
/// purged.
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl JetStream {
    /// The bucket stream's last sequence: it moves on every put, delete and purge, so one
    /// cheap request tells the poller whether anything changed.
    pub fn bucket_revision(&self, bucket: &str) -> Result<Option<u64>> {
        Ok(self
            .stream_state(&bucket_stream(bucket), None)?
            .map(|s| s.last_seq))
    }

    /// Every key of the bucket with its latest value (`None` when deleted or purged).
    pub fn bucket_entries(&self, bucket: &str) -> Result<Vec<KvEntry>> {
        let stream = bucket_stream(bucket);
        let prefix = kv_subject(bucket, "");
        let Some(state) = self.stream_state(&stream, Some(&kv_subject(bucket, ">")))? else {
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
            // None: purged between the listing and the read.
            let Some(answer) = unless_missing(answered(&what, answer), &[ERR_NO_MESSAGE_FOUND])?
            else {
                continue;
            };
            entries.push(KvEntry {
                key: key.to_string(),
                value: kv_value(&answer),
            });
        }
        Ok(entries)
    }

    /// The value of `key` in `bucket`; `None` when the key or the bucket does not exist, or
    /// the key was deleted.
    pub fn kv_get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.kv_entry(bucket, key)?.and_then(|(_, value)| value))
    }

    /// Key `key` of `bucket` as stored: its revision (the bucket stream's sequence of its
    /// latest entry, a delete marker included) and its value (`None` once deleted); `None`
    /// when the key was never written or the bucket does not exist.
    pub fn kv_entry(&self, bucket: &str, key: &str) -> Result<Option<(u64, Option<Vec<u8>>)>> {
        let stream = bucket_stream(bucket);
        let answer = self.request(
            &format!("read key {key} of bucket {bucket}"),
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            &json!({ "last_by_subj": kv_subject(bucket, key) }),
        );
        Ok(
            unless_missing(answer, &[ERR_NO_MESSAGE_FOUND, ERR_STREAM_NOT_FOUND])?.and_then(
                |answer| {
                    let revision = StoredMessage::from_api(&answer)?.sequence;
                    Some((revision, kv_value(&answer)))
                },
            ),
        )
    }

    /// Puts `value` under `key` only while the key's latest revision is `revision` (0: never
    /// written), as a KV update does; `Ok(false)` when another client wrote the key first.
    pub fn kv_update(&self, bucket: &str, key: &str, value: &[u8], revision: u64) -> Result<bool> {
        let revision = revision.to_string();
        let stored = publish_stored(
            self.connection(),
            &format!("update key {key} in bucket {bucket}"),
            &kv_subject(bucket, key),
            &[("Nats-Expected-Last-Subject-Sequence", &revision)],
            value,
        );
        match stored {
            Ok(_) => Ok(true),
            Err(e) if has_err_code(&e, &[ERR_WRONG_LAST_SEQUENCE]) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Puts `value` under `key`, as a KV put does: a publish the bucket stream acknowledges.
    pub fn kv_put(&self, bucket: &str, key: &str, value: &[u8]) -> Result<()> {
        self.publish_acknowledged(
            &format!("put key {key} in bucket {bucket}"),
            &kv_subject(bucket, key),
            &[],
            value,
        )
    }

    /// Deletes `key`, as a KV delete does: an empty publish with `KV-Operation: DEL`, which
    /// the collectors' poll reads as "removed".
    pub fn kv_delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.publish_acknowledged(
            &format!("delete key {key} from bucket {bucket}"),
            &kv_subject(bucket, key),
            &[("KV-Operation", "DEL")],
            b"",
        )
    }
}

/// The value of the KV entry a `STREAM.MSG.GET` answer holds, `None` when the entry marks
/// its key deleted or purged (or the answer holds no message): the one reader of a KV
/// entry's headers, for the poll and the admin commands alike.
fn kv_value(answer: &Value) -> Option<Vec<u8>> {
    StoredMessage::from_api(answer)
        .filter(|message| !kv_removed(&message.headers))
        .map(|message| message.data)
}

/// Whether the headers of a KV entry mark it deleted or purged.
fn kv_removed(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("KV-Operation") && matches!(value.as_str(), "DEL" | "PURGE")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_entries_have_no_value() {
        // "NATS/1.0\r\nCollector-Error: no fields\r\nKV-Operation: DEL\r\n\r\n" and `{"a":1}`.
        let message = |hdrs: &str| {
            json!({"message": {
                "subject": "$KV.beta_logs.access",
                "seq": 7,
                "hdrs": hdrs,
                "data": "eyJhIjoxfQ==",
            }})
        };
        let deleted =
            "TkFUUy8xLjANCkNvbGxlY3Rvci1FcnJvcjogbm8gZmllbGRzDQpLVi1PcGVyYXRpb246IERFTA0KDQo=";
        assert_eq!(kv_value(&message(deleted)), None);
        assert_eq!(kv_value(&message("")), Some(br#"{"a":1}"#.to_vec()));
        assert_eq!(kv_value(&json!({"error": {}})), None);
        assert!(!kv_removed(&[("KV-Operation".into(), "PUT".into())]));
        assert!(kv_removed(&[("kv-operation".into(), "PURGE".into())]));
    }
}
