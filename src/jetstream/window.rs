//! Pure: the bookkeeping of one [`Pipeline`](super::pipeline::Pipeline) run: which requests
//! wait to be sent (never sent yet, or to be sent again from a due time on), which are in
//! flight under which reply token and since when, how often each was sent, and each one's
//! outcome. No IO and no clock read: every operation is told `now`, so the rules are
//! unit-tested below; the pipeline sends, flushes and reads the answers.
//!
//! A request is sent [`ATTEMPTS`] times at most: again [`RETRY_PAUSE`] after a 503
//! (JetStream briefly unavailable: a leader election) or a failed send, and at once when no
//! answer came within [`API_TIMEOUT`] (a lost answer). Any other answer is its outcome.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pipeline::PipelineError;
use super::API_TIMEOUT;

/// Requests kept in flight at once.
pub(super) const WINDOW: usize = 256;
/// Sends of one request before it is given up: a lost answer, or JetStream briefly
/// unavailable (a leader election), is worth another try; more would only hide an outage.
pub(super) const ATTEMPTS: u32 = 3;
/// The wait before sending again a request JetStream answered with a 503, or whose send
/// failed.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A request's JSON answer (an API error answer included), or why none came.
pub(super) type Outcome = Result<Value, PipelineError>;

/// A request to send now, under a reply token of its own; the window is told how it went
/// with [`Window::sent`] or [`Window::send_failed`] (until then it is neither waiting nor in
/// flight, and the run cannot end).
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sending {
    token: u64,
    index: usize,
}

impl Sending {
    /// The token its reply subject ends with.
    pub(super) fn token(&self) -> u64 {
        self.token
    }

    /// Which request, in the order given to [`Window::new`].
    pub(super) fn index(&self) -> usize {
        self.index
    }
}

/// The requests of one run.
#[derive(Debug)]
pub(super) struct Window {
    /// Each request's outcome, in the order given; `None` until it has one.
    results: Vec<Option<Outcome>>,
    n_done: usize,
    /// How often each request was sent, or tried to be.
    attempts: Vec<u32>,
    /// The requests not sent yet, in order.
    fresh: VecDeque<usize>,
    /// The requests to send again, each from its due time on. Only the front is looked at:
    /// one due later than those behind it (a 503 before an expiry) holds them back for a
    /// pause at most.
    retry: VecDeque<(Instant, usize)>,
    /// The requests sent and not answered yet, by reply token, with when they were sent.
    in_flight: HashMap<u64, (usize, Instant)>,
    /// Reply tokens are never reused, within a run or across the runs of one pipeline (whose
    /// inbox outlives them), so a late answer to an earlier send is recognised and ignored.
    next_token: u64,
}

impl Window {
    /// A run of `n` requests whose reply tokens start at `first_token`.
    pub(super) fn new(n: usize, first_token: u64) -> Window {
        Window {
            results: vec![None; n],
            n_done: 0,
            attempts: vec![0; n],
            fresh: (0..n).collect(),
            retry: VecDeque::new(),
            in_flight: HashMap::new(),
            next_token: first_token,
        }
    }

    /// The next request to send, if the window has room: one due to be sent again first,
    /// then one not sent yet. It counts as an attempt.
    pub(super) fn next_to_send(&mut self, now: Instant) -> Option<Sending> {
        if self.in_flight.len() >= WINDOW {
            return None;
        }
        let index = match self.retry.front() {
            Some(&(due, index)) if due <= now => {
                self.retry.pop_front();
                index
            }
            _ => self.fresh.pop_front()?,
        };
        let token = self.next_token;
        self.next_token += 1;
        self.attempts[index] += 1;
        Some(Sending { token, index })
    }

    /// The request was sent at `now`: it waits for its answer.
    pub(super) fn sent(&mut self, sending: Sending, now: Instant) {
        self.in_flight.insert(sending.token, (sending.index, now));
    }

    /// The request could not be sent (`error`): it is tried again after a pause, unless that
    /// was its last attempt.
    pub(super) fn send_failed(&mut self, sending: Sending, now: Instant, error: String) {
        let index = sending.index;
        if self.attempts[index] >= ATTEMPTS {
            self.finish(index, Err(PipelineError::Unreadable(error)));
        } else {
            self.retry.push_back((now + RETRY_PAUSE, index));
        }
    }

    /// An answer came on reply token `token`: the outcome of its request, or, for a 503
    /// with attempts left, a reason to send it again after a pause. Returns false, changing
    /// nothing, for a token not in flight (a late answer to a send already given up or
    /// answered, or one from an earlier run).
    pub(super) fn answered(&mut self, token: u64, outcome: Outcome, now: Instant) -> bool {
        let Some((index, _)) = self.in_flight.remove(&token) else {
            return false;
        };
        match outcome {
            Ok(answer)
                if answer["error"]["code"].as_u64() == Some(503)
                    && self.attempts[index] < ATTEMPTS =>
            {
                self.retry.push_back((now + RETRY_PAUSE, index));
            }
            outcome => self.finish(index, outcome),
        }
        true
    }

    /// Gives up waiting for the answers sent [`API_TIMEOUT`] ago or more: those requests are
    /// sent again at once, or time out after their last attempt.
    pub(super) fn expire(&mut self, now: Instant) {
        let mut expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (_, sent))| now.duration_since(*sent) >= API_TIMEOUT)
            .map(|(token, _)| *token)
            .collect();
        // In the order sent, not the map's.
        expired.sort_unstable();
        for token in expired {
            let Some((index, _)) = self.in_flight.remove(&token) else {
                continue;
            };
            if self.attempts[index] < ATTEMPTS {
                self.retry.push_back((now, index));
            } else {
                self.finish(index, Err(PipelineError::TimedOut));
            }
        }
    }

    /// Whether every request has its outcome.
    pub(super) fn is_done(&self) -> bool {
        self.n_done == self.results.len()
    }

    /// The first reply token a later run on the same inbox may use.
    pub(super) fn next_token(&self) -> u64 {
        self.next_token
    }

    /// Each request's outcome, in the order given. Panics unless [`Window::is_done`].
    pub(super) fn into_results(self) -> Vec<Outcome> {
        self.results
            .into_iter()
            .map(|r| r.expect("every request has an outcome"))
            .collect()
    }

    fn finish(&mut self, index: usize, outcome: Outcome) {
        debug_assert!(self.results[index].is_none(), "one outcome per request");
        self.results[index] = Some(outcome);
        self.n_done += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Sends everything the window lets out at `now`; returns what was sent.
    fn send_all(window: &mut Window, now: Instant) -> Vec<(u64, usize)> {
        let mut sent = Vec::new();
        while let Some(sending) = window.next_to_send(now) {
            sent.push((sending.token(), sending.index()));
            window.sent(sending, now);
        }
        sent
    }

    fn unavailable() -> Outcome {
        Ok(
            json!({"error": {"code": 503, "description": "JetStream system temporarily unavailable"}}),
        )
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        let t0 = Instant::now();
        let mut window = Window::new(WINDOW + 2, 0);
        let sent = send_all(&mut window, t0);
        assert_eq!(sent.len(), WINDOW);
        assert_eq!(sent[0], (0, 0));
        assert_eq!(sent[WINDOW - 1], (WINDOW as u64 - 1, WINDOW - 1));
        assert!(window.answered(3, Ok(json!({})), t0));
        assert_eq!(send_all(&mut window, t0), [(WINDOW as u64, WINDOW)]);
        assert!(!window.is_done());
    }

    #[test]
    fn results_come_in_the_order_given_whatever_the_order_answered() {
        let t0 = Instant::now();
        let mut window = Window::new(3, 0);
        assert_eq!(send_all(&mut window, t0), [(0, 0), (1, 1), (2, 2)]);
        assert!(window.answered(2, Ok(json!("c")), t0));
        assert!(window.answered(0, Ok(json!("a")), t0));
        assert!(!window.is_done());
        assert!(window.answered(1, Ok(json!("b")), t0));
        assert!(window.is_done());
        assert_eq!(
            window.into_results(),
            [Ok(json!("a")), Ok(json!("b")), Ok(json!("c"))]
        );
    }

    #[test]
    fn nothing_to_send_is_done_at_once() {
        let mut window = Window::new(0, 7);
        assert!(window.is_done());
        assert_eq!(window.next_to_send(Instant::now()), None);
        assert_eq!(window.next_token(), 7);
        assert!(window.into_results().is_empty());
    }

    #[test]
    fn a_503_is_sent_again_after_a_pause_until_the_attempts_run_out() {
        let t0 = Instant::now();
        let mut window = Window::new(1, 0);
        let mut now = t0;
        for attempt in 1..ATTEMPTS {
            let [(token, 0)] = send_all(&mut window, now)[..] else {
                panic!("attempt {attempt}: one send of request 0");
            };
            assert!(window.answered(token, unavailable(), now));
            assert!(!window.is_done(), "attempt {attempt}");
            assert!(send_all(&mut window, now + RETRY_PAUSE / 2).is_empty());
            now += RETRY_PAUSE;
        }
        let [(token, 0)] = send_all(&mut window, now)[..] else {
            panic!("the last attempt");
        };
        assert_eq!(token, u64::from(ATTEMPTS) - 1, "a new token each time");
        // The last 503 is the outcome: the API error answer, for the caller to report.
        assert!(window.answered(token, unavailable(), now));
        assert!(window.is_done());
        assert_eq!(window.into_results(), [unavailable()]);
    }

    #[test]
    fn a_late_answer_to_an_earlier_send_is_ignored() {
        let t0 = Instant::now();
        let mut window = Window::new(1, 10);
        assert_eq!(send_all(&mut window, t0), [(10, 0)]);
        window.expire(t0 + API_TIMEOUT);
        assert_eq!(send_all(&mut window, t0 + API_TIMEOUT), [(11, 0)]);
        assert!(!window.answered(10, Ok(json!("late")), t0 + API_TIMEOUT));
        assert!(!window.answered(3, Ok(json!("an earlier run")), t0 + API_TIMEOUT));
        assert!(!window.is_done());
        assert!(window.answered(11, Ok(json!("fresh")), t0 + API_TIMEOUT));
        assert!(!window.answered(11, Ok(json!("twice")), t0 + API_TIMEOUT));
        assert_eq!(window.next_token(), 12);
        assert_eq!(window.into_results(), [Ok(json!("fresh"))]);
    }

    #[test]
    fn an_unanswered_request_is_sent_again_at_once_then_times_out() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 0);
        let mut now = t0;
        assert_eq!(send_all(&mut window, now).len(), 2);
        assert!(window.answered(1, Ok(json!("b")), now));
        for attempt in 1..ATTEMPTS {
            window.expire(now + API_TIMEOUT - Duration::from_millis(1));
            assert!(send_all(&mut window, now).is_empty(), "not yet expired");
            now += API_TIMEOUT;
            window.expire(now);
            let sent = send_all(&mut window, now);
            assert_eq!(sent.len(), 1, "attempt {attempt}: sent again at once");
            assert_eq!(sent[0].1, 0);
        }
        window.expire(now + API_TIMEOUT);
        assert!(window.is_done());
        assert_eq!(
            window.into_results(),
            [Err(PipelineError::TimedOut), Ok(json!("b"))]
        );
    }

    #[test]
    fn expired_requests_are_sent_again_in_the_order_first_sent() {
        let t0 = Instant::now();
        let n = 40;
        let mut window = Window::new(n, 0);
        send_all(&mut window, t0);
        window.expire(t0 + API_TIMEOUT);
        let again: Vec<usize> = send_all(&mut window, t0 + API_TIMEOUT)
            .into_iter()
            .map(|(_, index)| index)
            .collect();
        assert_eq!(again, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_send_is_tried_again_after_a_pause_then_unreadable() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 0);
        let mut now = t0;
        for attempt in 1..=ATTEMPTS {
            let sending = window.next_to_send(now).expect("request 0 to send");
            assert_eq!(sending.index(), 0, "attempt {attempt}");
            window.send_failed(sending, now, "connection lost".into());
            // Meanwhile the next request goes.
            if attempt == 1 {
                assert_eq!(send_all(&mut window, now), [(1, 1)]);
            }
            assert!(window.next_to_send(now + RETRY_PAUSE / 2).is_none());
            now += RETRY_PAUSE;
        }
        assert!(window.answered(1, Ok(json!("b")), now));
        assert!(window.is_done());
        assert_eq!(
            window.into_results(),
            [
                Err(PipelineError::Unreadable("connection lost".into())),
                Ok(json!("b"))
            ]
        );
    }

    #[test]
    fn no_responders_and_unreadable_answers_are_outcomes_at_once() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 0);
        send_all(&mut window, t0);
        assert!(window.answered(0, Err(PipelineError::NoResponders), t0));
        let unreadable = Err(PipelineError::Unreadable("expected value".into()));
        assert!(window.answered(1, unreadable.clone(), t0));
        assert!(window.is_done());
        assert!(send_all(&mut window, t0 + RETRY_PAUSE).is_empty());
        assert_eq!(
            window.into_results(),
            [Err(PipelineError::NoResponders), unreadable]
        );
    }

    #[test]
    fn a_request_due_again_goes_before_those_not_sent_yet() {
        let t0 = Instant::now();
        let mut window = Window::new(WINDOW + 1, 0);
        send_all(&mut window, t0);
        assert!(window.answered(5, unavailable(), t0));
        // Room for two, one due again: it goes first.
        assert!(window.answered(6, Ok(json!({})), t0));
        let later = t0 + RETRY_PAUSE;
        assert_eq!(
            send_all(&mut window, later),
            [(WINDOW as u64, 5), (WINDOW as u64 + 1, WINDOW)]
        );
    }
}
