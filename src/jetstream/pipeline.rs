//! Many requests in flight on one core connection, each answered or sent again: used where
//! one request/reply at a time would cost a round trip (and the client's flush delay) each.

use std::borrow::Cow;
use std::io;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::window::{Outcome, Window, ATTEMPTS};
use super::{api_result, Connection, Message, Subscription, API_TIMEOUT};
use crate::error::{Error, Result};

/// How long a round waits for a first answer before it looks for requests to send again.
const ANSWER_WAIT: Duration = Duration::from_millis(20);

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
                "no answer after {ATTEMPTS} tries of {}s",
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
    /// The first reply token of the next run: tokens are never reused on this inbox, so a
    /// late answer to an earlier run's send is recognised.
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
    /// answer included) or why none came. Each round sends what the window lets out, flushes
    /// once, takes the answers and gives up on those overdue (`window.rs` holds the rules).
    pub(super) fn run(&mut self, requests: &[PipelineRequest<'_>]) -> Vec<Outcome> {
        let mut window = Window::new(requests.len(), self.next_token);
        while !window.is_done() {
            if self.send(requests, &mut window, Instant::now()) {
                // A failed flush (connection lost) shows as answers that do not come.
                let _ = self.conn.flush_timeout(API_TIMEOUT);
            }
            self.drain(&mut window);
            window.expire(Instant::now());
        }
        self.next_token = window.next_token();
        window.into_results()
    }

    /// Publishes every request the window lets out at `now`, unflushed; returns whether any
    /// was.
    fn send(&self, requests: &[PipelineRequest<'_>], window: &mut Window, now: Instant) -> bool {
        let mut any = false;
        while let Some(sending) = window.next_to_send(now) {
            let request = &requests[sending.index()];
            let reply = format!("{}.{}", self.inbox, sending.token());
            match self.conn.publish_with_reply_or_headers(
                request.subject,
                Some(&reply),
                request.headers.as_ref(),
                &*request.body,
            ) {
                Ok(()) => {
                    window.sent(sending, now);
                    any = true;
                }
                Err(e) => window.send_failed(sending, now, e.to_string()),
            }
        }
        any
    }

    /// Waits a little for one answer, then takes every answer already there before sending
    /// more, so one flush covers many sends.
    fn drain(&self, window: &mut Window) {
        let Ok(first) = self.subscription.next_timeout(ANSWER_WAIT) else {
            return;
        };
        // One clock read for the round: it only dates a 503's next send.
        let now = Instant::now();
        let mut next = Some(first);
        while let Some(message) = next {
            if let Some(token) = token_of(&message.subject) {
                window.answered(token, outcome_of(&message), now);
            }
            next = self.subscription.try_next();
        }
    }
}

/// The reply token a reply subject `<inbox>.<token>` ends with.
fn token_of(subject: &str) -> Option<u64> {
    subject.rsplit('.').next()?.parse().ok()
}

/// What an answer says: no responders, or its JSON.
fn outcome_of(message: &Message) -> Outcome {
    if message.is_no_responders() {
        return Err(PipelineError::NoResponders);
    }
    serde_json::from_slice(&message.data).map_err(|e| PipelineError::Unreadable(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_last_part_of_the_reply_subject() {
        assert_eq!(token_of("_INBOX.abc123.42"), Some(42));
        assert_eq!(token_of("_INBOX.abc123.0"), Some(0));
        assert_eq!(token_of("_INBOX.abc123.x"), None);
        assert_eq!(token_of("_INBOX.abc123."), None);
    }
}
