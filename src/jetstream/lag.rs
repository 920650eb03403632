//! The main thread's survey of the pulled measurements: each one's consumer read in one
//! pipelined round (which also finds a consumer or stream that vanished), and the stream
//! read only for those with records waiting, as an empty work-queue stream has no oldest
//! record. Hundreds of idle measurements cost one request each per survey, sent together.

use std::borrow::Cow;
use std::time::Duration;

use super::pipeline::{all_failed, answered, Pipeline, PipelineRequest};
use super::{
    has_err_code, ConsumerState, JetStream, StreamState, DURABLE, ERR_CONSUMER_NOT_FOUND,
    ERR_STREAM_NOT_FOUND,
};
use crate::error::Result;

/// What a survey found for one measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surveyed {
    /// Its consumer and stream exist: records not yet delivered, records delivered and not
    /// yet acknowledged, and when the oldest record waiting was stored.
    Lag {
        pending: u64,
        ack_pending: u64,
        oldest_ns: Option<i64>,
        /// The consumer's own ack wait, which a consumer created elsewhere may set apart
        /// from `pull.ack_wait`.
        ack_wait: Option<Duration>,
    },
    /// Its consumer, or its whole stream, is gone.
    Missing,
}

impl JetStream {
    /// Surveys the measurement streams `streams`, returning one result per stream, in order:
    /// an error concerns that stream only when it is a JetStream answer, and means no answer
    /// came (NATS unreachable) otherwise.
    pub fn survey(&self, streams: &[String]) -> Vec<Result<Surveyed>> {
        let mut pipeline = match Pipeline::new(&self.conn) {
            Ok(pipeline) => pipeline,
            Err(e) => return all_failed(streams.len(), "survey the measurements", &e),
        };
        // Both kinds of info request take an empty JSON object.
        let empty: &[u8] = b"{}";
        let subjects: Vec<String> = streams
            .iter()
            .map(|stream| format!("$JS.API.CONSUMER.INFO.{stream}.{DURABLE}"))
            .collect();
        let mut results: Vec<Result<Surveyed>> = subjects
            .iter()
            .zip(pipeline.run(&requests(&subjects, empty)))
            .map(|(subject, answer)| match answered(subject, answer) {
                Ok(info) => {
                    let consumer: ConsumerState = serde_json::from_value(info).unwrap_or_default();
                    Ok(Surveyed::Lag {
                        pending: consumer.num_pending,
                        ack_pending: consumer.num_ack_pending,
                        oldest_ns: None,
                        ack_wait: consumer.ack_wait(),
                    })
                }
                Err(e) if has_err_code(&e, &[ERR_CONSUMER_NOT_FOUND, ERR_STREAM_NOT_FOUND]) => {
                    Ok(Surveyed::Missing)
                }
                Err(e) => Err(e),
            })
            .collect();
        // The oldest record, only where records wait: the stream infos in a second round.
        let waiting: Vec<usize> = (0..streams.len())
            .filter(|&i| {
                matches!(results[i], Ok(Surveyed::Lag { pending, ack_pending, .. })
                    if pending + ack_pending > 0)
            })
            .collect();
        let subjects: Vec<String> = waiting
            .iter()
            .map(|&i| format!("$JS.API.STREAM.INFO.{}", streams[i]))
            .collect();
        for ((&i, subject), answer) in waiting
            .iter()
            .zip(&subjects)
            .zip(pipeline.run(&requests(&subjects, empty)))
        {
            match answered(subject, answer) {
                Ok(info) => {
                    let state: StreamState =
                        serde_json::from_value(info["state"].clone()).unwrap_or_default();
                    if let Ok(Surveyed::Lag { oldest_ns, .. }) = &mut results[i] {
                        *oldest_ns = state.oldest_ns();
                    }
                }
                Err(e) if has_err_code(&e, &[ERR_STREAM_NOT_FOUND]) => {
                    results[i] = Ok(Surveyed::Missing)
                }
                Err(e) => results[i] = Err(e),
            }
        }
        results
    }
}

/// One request with `body` to each of `subjects`.
fn requests<'a>(subjects: &'a [String], body: &'a [u8]) -> Vec<PipelineRequest<'a>> {
    subjects
        .iter()
        .map(|subject| PipelineRequest {
            subject,
            headers: None,
            body: Cow::Borrowed(body),
        })
        .collect()
}
