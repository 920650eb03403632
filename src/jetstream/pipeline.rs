//! Many requests in flight on one core connection, each answered or sent again: used where
//! one request/reply at a time would cost a round trip (and the client's flush delay) each.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use serde_json::Value;

use super::{api_result, Connection, Subscription, API_TIMEOUT};
use crate::error::{Error, Result};

/// Requests a [`Pipeline`] keeps in flight at once.
const PIPELINE_WINDOW: usize = 256;
/// Sends of one request before it is given up: a lost answer, or JetStream briefly
/// unavailable (a leader election), is worth another try; more would only hide an outage.
const PIPELINE_ATTEMPTS: u32 = 3;
/// The wait before sending again a request JetStream answered with a 503.
const PIPELINE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// One request of a [`Pipeline`]; it borrows what it can, as publishes may be many and large.
pub(super) struct PipelineRequest<'a> {
    pub(super) subject: &'a str,
    pub(super) headers: Option<nats::header::HeaderMap>,
    pub(super) body: Cow<'a, [u8]>,
}

/// Why a pipelined request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PipelineError {
    /// Nothing listens on the subject (for a publish: no stream stores it).
    NoResponders,
    TimedOut,
    Unreadable(String),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::NoResponders => f.write_str("no responders"),
            PipelineError::TimedOut => write!(
                f,
                "no answer after {PIPELINE_ATTEMPTS} tries of {}s",
                API_TIMEOUT.as_secs()
            ),
            PipelineError::Unreadable(problem) => write!(f, "unreadable answer: {problem}"),
        }
    }
}

/// Sends requests on the core connection with reply subjects of one inbox, many in flight,
/// and flushes explicitly instead of waiting for the client's 5 ms flusher (docs/NATS-CLIENT.md
/// trap 1). Core publishes alone could be dropped by a busy server (trap 11); each request
/// here is answered, and sent again when its answer does not come.
pub(super) struct Pipeline {
    conn: Connection,
    inbox: String,
    subscription: Subscription,
    /// Reply tokens are never reused, so a late answer to an earlier send is recognised.
    next_token: u64,
}

impl Pipeline {
    pub(super) fn new(conn: &Connection) -> Result<Pipeline> {
        let inbox = conn.new_inbox();
        let subscription = conn
            .subscribe(&format!("{inbox}.*"))
            .map_err(|e| Error::nats("subscribe a reply inbox", e))?;
        Ok(Pipeline {
            conn: conn.clone(),
            inbox,
            subscription,
            next_token: 0,
        })
    }

    /// Sends every request and returns, in order, each one's JSON answer (an API error
    /// answer included) or why none came.
    pub(super) fn run(
        &mut self,
        requests: &[PipelineRequest<'_>],
    ) -> Vec<Result<Value, PipelineError>> {
        use std::collections::{HashMap, VecDeque};
        use std::time::Instant;

        let n = requests.len();
        let mut results: Vec<Option<Result<Value, PipelineError>>> = vec![None; n];
        let mut n_done = 0;
        let mut attempts = vec![0u32; n];
        let mut fresh: VecDeque<usize> = (0..n).collect();
        let mut retry: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut in_flight: HashMap<u64, (usize, Instant)> = HashMap::new();
        while n_done < n {
            let now = Instant::now();
            let mut n_sent = 0;
            while in_flight.len() < PIPELINE_WINDOW {
                let index = match retry.front() {
                    Some(&(at, index)) if at <= now => {
                        retry.pop_front();
                        index
                    }
                    _ => match fresh.pop_front() {
                        Some(index) => index,
                        None => break,
                    },
                };
                let request = &requests[index];
                let token = self.next_token;
                self.next_token += 1;
                attempts[index] += 1;
                let reply = format!("{}.{token}", self.inbox);
                match self.conn.publish_with_reply_or_headers(
                    request.subject,
                    Some(&reply),
                    request.headers.as_ref(),
                    &*request.body,
                ) {
                    Ok(()) => {
                        in_flight.insert(token, (index, now));
                        n_sent += 1;
                    }
                    Err(e) if attempts[index] >= PIPELINE_ATTEMPTS => {
                        results[index] = Some(Err(PipelineError::Unreadable(e.to_string())));
                        n_done += 1;
                    }
                    Err(_) => retry.push_back((now + PIPELINE_RETRY_PAUSE, index)),
                }
            }
            if n_sent > 0 {
                // A failed flush (connection lost) shows as answers that do not come.
                let _ = self.conn.flush_timeout(API_TIMEOUT);
            }

            // Wait a little for one answer, then take every answer already there before
            // sending more, so one flush covers many sends.
            let mut next = self
                .subscription
                .next_timeout(Duration::from_millis(20))
                .ok();
            while let Some(message) = next {
                let token = message
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok());
                if let Some((index, _)) = token.and_then(|t| in_flight.remove(&t)) {
                    let outcome = if message.is_no_responders() {
                        Some(Err(PipelineError::NoResponders))
                    } else {
                        match serde_json::from_slice::<Value>(&message.data) {
                            Err(e) => Some(Err(PipelineError::Unreadable(e.to_string()))),
                            Ok(answer)
                                if answer["error"]["code"].as_u64() == Some(503)
                                    && attempts[index] < PIPELINE_ATTEMPTS =>
                            {
                                retry.push_back((Instant::now() + PIPELINE_RETRY_PAUSE, index));
                                None
                            }
                            Ok(answer) => Some(Ok(answer)),
                        }
                    };
                    if let Some(outcome) = outcome {
                        results[index] = Some(outcome);
                        n_done += 1;
                    }
                }
                next = self.subscription.try_next();
            }

            let now = Instant::now();
            let expired: Vec<u64> = in_flight
                .iter()
                .filter(|(_, (_, sent))| now.duration_since(*sent) >= API_TIMEOUT)
                .map(|(token, _)| *token)
                .collect();
            for token in expired {
                let Some((index, _)) = in_flight.remove(&token) else {
                    continue;
                };
                if attempts[index] < PIPELINE_ATTEMPTS {
                    retry.push_back((now, index));
                } else {
                    results[index] = Some(Err(PipelineError::TimedOut));
                    n_done += 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every request has an outcome"))
            .collect()
    }
}

/// `n` copies of the error `error` as a failure to `what`: the result of every request of a
/// round that could not start (no reply inbox).
pub(super) fn all_failed<T>(n: usize, what: &str, error: &Error) -> Vec<Result<T>> {
    let text = error.to_string();
    (0..n)
        .map(|_| Err(Error::nats(what, io::Error::other(text.clone()))))
        .collect()
}

/// The answer to one pipelined API request as a result: the API error it carries, or why
/// no answer came as a NATS error naming `what`.
pub(super) fn answered(what: &str, answer: Result<Value, PipelineError>) -> Result<Value> {
    match answer {
        Ok(answer) => api_result(what, answer),
        Err(e) => Err(Error::nats(what, io::Error::other(e.to_string()))),
    }
}
