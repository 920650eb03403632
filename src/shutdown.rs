//! The stop signal shared by every thread.
//!
//! Closing a channel is crossbeam's broadcast: when the [`Trigger`] is pulled its sender is
//! dropped, and every clone of the receiver in [`Shutdown`] becomes ready at once, so a thread
//! blocked in `select!` on it wakes without polling. The deadline tells the writer until when
//! it may keep retrying a write before it gives the records back.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

#[derive(Clone)]
pub struct Shutdown {
    signal: Receiver<()>,
    deadline: Arc<OnceLock<Instant>>,
}

pub struct Trigger {
    sender: Option<Sender<()>>,
    deadline: Arc<OnceLock<Instant>>,
}

pub fn new() -> (Trigger, Shutdown) {
    let (sender, signal) = channel::bounded(0);
    let deadline = Arc::new(OnceLock::new());
    (
        Trigger {
            sender: Some(sender),
            deadline: deadline.clone(),
        },
        Shutdown { signal, deadline },
    )
}

impl Trigger {
    /// Starts the shutdown: every thread must be done within `grace`.
    pub fn pull(&mut self, grace: Duration) {
        let _ = self.deadline.set(Instant::now() + grace);
        self.sender = None;
    }
}

impl Shutdown {
    /// Ready (disconnected) once the shutdown has started; for `select!`.
    pub fn signal(&self) -> &Receiver<()> {
        &self.signal
    }

    pub fn is_started(&self) -> bool {
        self.deadline.get().is_some()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// Whether the shutdown deadline has passed.
    pub fn is_overdue(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Sleeps for `duration` or until the deadline passes, whichever is first (a shutdown
    /// that has started but is not overdue does not cut the sleep short: the writer keeps
    /// retrying until the deadline).
    pub fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let until = match self.deadline() {
            Some(deadline) => until.min(deadline),
            None => until,
        };
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            // Wake early when the shutdown starts, to re-evaluate against its deadline.
            let _ = self.signal.recv_timeout(until - now);
            if let Some(deadline) = self.deadline() {
                if deadline < until {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulling_the_trigger_wakes_every_receiver() {
        let (mut trigger, shutdown) = new();
        let other = shutdown.clone();
        assert!(!shutdown.is_started());
        assert!(shutdown.signal().try_recv().is_err());
        trigger.pull(Duration::from_secs(5));
        assert!(other.is_started());
        assert!(matches!(other.signal().recv(), Err(channel::RecvError)));
        assert!(!other.is_overdue(Instant::now()));
        assert!(other.is_overdue(Instant::now() + Duration::from_secs(6)));
    }

    #[test]
    fn sleep_ends_at_the_deadline() {
        let (mut trigger, shutdown) = new();
        trigger.pull(Duration::ZERO);
        // A 1 h sleep after an overdue shutdown returns at once; the test would hang otherwise.
        shutdown.sleep(Duration::from_secs(3600));
    }
}
