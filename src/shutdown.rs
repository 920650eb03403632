//! The shutdown deadline shared by every thread.
//!
//! Threads are not stopped through this module: the main thread stops them by closing
//! channels. It pulls the [`Trigger`] (which sets the deadline), then drops the control
//! senders; a worker whose control channel is closed stops pulling, hands over what it holds
//! and returns, dropping its chunk sender; the writer leaves when every chunk sender is gone,
//! after a last flush. What this module adds is the deadline: a worker leaves early enough
//! before it for the writer to write what the last pulls brought, and the writer retries a
//! failing write until it, then gives the unwritten records back. Pulling the trigger also
//! drops a sender, so a [`Shutdown::sleep`] (the writer's wait between retries) wakes at once
//! to measure itself against the new deadline.

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
    fn pulling_the_trigger_sets_the_deadline_of_every_clone() {
        let (mut trigger, shutdown) = new();
        let other = shutdown.clone();
        assert_eq!(shutdown.deadline(), None);
        assert!(!shutdown.is_overdue(Instant::now() + Duration::from_secs(3600)));
        trigger.pull(Duration::from_secs(5));
        assert!(other.deadline().is_some());
        assert!(!other.is_overdue(Instant::now()));
        assert!(other.is_overdue(Instant::now() + Duration::from_secs(6)));
    }

    #[test]
    fn pulling_the_trigger_cuts_a_sleep_short() {
        let (mut trigger, shutdown) = new();
        let sleeper = std::thread::spawn(move || shutdown.sleep(Duration::from_secs(3600)));
        trigger.pull(Duration::ZERO);
        // Returns once the sleeper saw the deadline; the test would hang for an hour otherwise.
        sleeper.join().unwrap();
    }

    #[test]
    fn sleep_ends_at_the_deadline() {
        let (mut trigger, shutdown) = new();
        trigger.pull(Duration::ZERO);
        // A 1 h sleep after an overdue shutdown returns at once; the test would hang otherwise.
        shutdown.sleep(Duration::from_secs(3600));
    }
}
