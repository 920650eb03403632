//! Operations only the admin commands (`collector streams|publish|check|dlq`) use, run on
//! the main thread: account info, stream deletes and updates, stored messages read back and
//! deleted one by one, and pipelined acknowledged publishes.

use std::borrow::Cow;
use std::io;

use serde::Deserialize;
use serde_json::json;

use super::pipeline::{answered, Pipeline, PipelineError, PipelineRequest};
use super::{
    api_result, unless_missing, ConsumerState, JetStream, StoredMessage, ERR_CONSUMER_NOT_FOUND,
    ERR_NO_MESSAGE_FOUND, ERR_STREAM_NOT_FOUND,
};
use crate::error::{Error, Result};

/// What `$JS.API.INFO` says about the account.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountInfo {
    #[serde(default)]
    pub streams: u64,
    #[serde(default)]
    pub consumers: u64,
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

impl JetStream {
    /// `$JS.API.INFO`: answers only when JetStream is enabled for the account.
    pub fn account_info(&self) -> Result<AccountInfo> {
        let answer = self.request("read account info", "$JS.API.INFO", &json!({}))?;
        Ok(serde_json::from_value(answer).unwrap_or_default())
    }

    /// The shared consumer's state on `stream`, `None` when the stream or the consumer does
    /// not exist.
    pub fn consumer_state_if_any(&self, stream: &str) -> Result<Option<ConsumerState>> {
        unless_missing(
            self.consumer_state(stream),
            &[ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND],
        )
    }

    /// Deletes a stream with every message in it; `false` when there was none.
    pub fn delete_stream(&self, name: &str) -> Result<bool> {
        let answer = self.request(
            &format!("delete stream {name}"),
            &format!("$JS.API.STREAM.DELETE.{name}"),
            &json!({}),
        );
        Ok(unless_missing(answer, &[ERR_STREAM_NOT_FOUND])?.is_some())
    }

    /// Gives the existing stream `name` (a measurement's) `description`, as the Transfer
    /// client's `Set` does; every other setting stays. `false` when it already had it.
    pub fn update_stream_description(&self, name: &str, description: &str) -> Result<bool> {
        let info = self.stream_info(name, &json!({}))?;
        let mut config = info["config"].clone();
        if config["description"].as_str().unwrap_or_default() == description {
            return Ok(false);
        }
        config["description"] = json!(description);
        self.update_stream(&format!("update stream {name}"), name, &config)?;
        Ok(true)
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
                Ok(ack) => match api_result("publish", ack) {
                    Ok(ack) => ack["seq"]
                        .as_u64()
                        .ok_or_else(|| format!("unexpected acknowledgement {ack}")),
                    Err(Error::JetStream { description, .. }) => Err(description),
                    Err(e) => Err(e.to_string()),
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
                Ok(answer) => {
                    match unless_missing(api_result("delete", answer), &[ERR_NO_MESSAGE_FOUND]) {
                        Ok(_) => Ok(()),
                        Err(Error::JetStream { description, .. }) => Err(description),
                        Err(e) => Err(e.to_string()),
                    }
                }
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
        let Some(answer) = self.pipeline.run(std::slice::from_ref(&request)).pop() else {
            return Ok(None);
        };
        let Some(answer) = unless_missing(answered(&what, answer), &[ERR_NO_MESSAGE_FOUND])? else {
            return Ok(None);
        };
        let message = StoredMessage::from_api(&answer)
            .ok_or_else(|| Error::nats(&what, io::Error::other("unreadable stored message")))?;
        if message.sequence > self.last_seq {
            self.next_seq = message.sequence;
            return Ok(None);
        }
        self.next_seq = message.sequence + 1;
        Ok(Some(message))
    }
}
