//! Pure: the pull bookkeeping of one measurement on a worker (`worker.rs`): which pull
//! requests are outstanding, what arrived on them, when they ended or were lost, and whether
//! the measurement is paused while its consumer is repaired. No IO and no clock read: every
//! operation is told `now`, so the rules are unit-tested below.
//!
//! A pull request waits on the server until it has brought its `batch` records or reached
//! its expiry; meanwhile the server sends a heartbeat every `idle_heartbeat`. A pull is
//! known to have ended when it filled up or a status says so (404/408, 409, 503); it is
//! taken to be lost when nothing was heard on it for two heartbeats or it is past its expiry
//! (ADR-37), with [`LOST_PULL_GRACE`] of slack either way.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many pull requests are kept outstanding per measurement: the server is already
/// sending the next batch while this one is encoded.
pub const OUTSTANDING: usize = 2;
/// Slack on a pull's expiry and heartbeats before it is given up as lost (a reconnect or a
/// server restart drops outstanding pulls silently; without this the measurement would go
/// stale).
pub const LOST_PULL_GRACE: Duration = Duration::from_secs(1);
/// After its consumer was found missing, how long a measurement waits for the main thread's
/// go-ahead before it pulls again on its own.
pub const GONE_PAUSE: Duration = Duration::from_secs(5);
/// While stopping, a pull request that has brought nothing for this long is taken to have
/// nothing on its way: the worker may drop its inbox.
pub const STOP_QUIET: Duration = Duration::from_millis(100);

/// The share of `pull.batch` a measurement that is not behind (idle, or not yet heard from)
/// asks for: its pull waits on the server for the next records, and a burst into hundreds of
/// idle measurements at once must not bring hundreds of full batches.
pub const IDLE_SHARE: usize = 10;

/// How many records a pull request of a measurement asks for: `pull.batch` when it is behind
/// (how many such pulls a worker has out at once is [`may_ask`]'s to say), a tenth of it
/// when it is not. Never less than one.
pub fn pull_size(batch: usize, behind: bool) -> usize {
    if behind {
        batch.max(1)
    } else {
        (batch / IDLE_SHARE).max(1)
    }
}

/// Whether a worker may send one more pull for a measurement that is behind, with
/// `requested` records already asked for by its measurements behind and not yet received:
/// only while that is under its share of the writer's next batch (`wanted` lines, split over
/// `workers`). A measurement behind fills its pulls at once, so what they ask for is on its
/// way: with [`crate::flow::Flow::room`] stopping the pulls once a batch waits in the
/// channel, at most about two batches are queued or on their way, however many measurements
/// are behind, and each pull can ask for a whole `pull.batch`.
///
/// Before (issue #22), each of 200 measurements behind kept two pulls of a twentieth of a
/// batch out (a budget of four batches split between them, a tenth of a batch at least):
/// 20,000 records asked for in each round, the queue overshot to five batches, the pulls
/// stopped until it had drained, and the writer then waited on a refill from empty every
/// few writes, while the server answered pulls of 50. One pull is always allowed when
/// nothing is asked for, so a share smaller than a pull still moves.
pub fn may_ask(requested: usize, wanted: usize, workers: usize) -> bool {
    requested == 0 || requested < wanted / workers.max(1)
}

/// One outstanding pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pull {
    remaining: usize,
    expires_at: Instant,
}

/// The pulls of one measurement.
#[derive(Debug)]
pub struct Pulls {
    /// Outstanding pull requests, oldest first: records fill the oldest first.
    outstanding: VecDeque<Pull>,
    /// `Some(until)` while its consumer or stream is being repaired: no pulls until the main
    /// thread says the measurement is ready again, or until this instant, in case the report
    /// was lost.
    paused_until: Option<Instant>,
    /// Counts the times it resumed after its consumer was found missing; part of the reply
    /// subject, so the end of a pull issued before (a late `409 Consumer Deleted`) is not
    /// taken for news about the re-created consumer.
    generation: u64,
    /// When anything last arrived (a record, a heartbeat or a status): a pull silent for two
    /// heartbeats is lost.
    last_heard: Instant,
    /// When its last record arrived: while stopping, pulls that brought no record for
    /// [`STOP_QUIET`] have nothing on their way (heartbeats only say that nothing is).
    last_record: Instant,
}

impl Pulls {
    pub fn new(now: Instant) -> Pulls {
        Pulls {
            outstanding: VecDeque::new(),
            paused_until: None,
            generation: 0,
            last_heard: now,
            last_record: now,
        }
    }

    /// The generation the reply subject of its pulls carries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_paused(&self) -> bool {
        self.paused_until.is_some()
    }

    /// Until when it is paused, if it is.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Resumes after a repair: whatever was outstanding died with the consumer, and the
    /// generation goes up. Returns whether it was paused (the reply subject changes).
    pub fn resume(&mut self) -> bool {
        if self.paused_until.take().is_none() {
            return false;
        }
        self.outstanding.clear();
        self.generation += 1;
        true
    }

    /// Resumes on its own once the pause is over (the main thread's go-ahead was lost).
    /// Returns whether it resumed.
    pub fn resume_if_due(&mut self, now: Instant) -> bool {
        match self.paused_until {
            Some(until) if now >= until => self.resume(),
            _ => false,
        }
    }

    /// The records its outstanding pulls asked for and have not brought yet.
    pub fn requested(&self) -> usize {
        self.outstanding.iter().map(|pull| pull.remaining).sum()
    }

    /// How many pull requests to issue now: none while paused.
    pub fn wanted(&self) -> usize {
        if self.is_paused() {
            0
        } else {
            OUTSTANDING.saturating_sub(self.outstanding.len())
        }
    }

    /// A pull request for `batch` records, expiring after `expires`, was sent.
    pub fn issued(&mut self, now: Instant, batch: usize, expires: Duration) {
        if self.outstanding.is_empty() {
            // Silence is counted from the first pull on, not from before it.
            self.last_heard = now;
        }
        self.outstanding.push_back(Pull {
            remaining: batch,
            expires_at: now + expires,
        });
    }

    /// A record arrived. A pull that brought its whole batch has ended.
    pub fn record(&mut self, now: Instant) {
        self.last_heard = now;
        self.last_record = now;
        if let Some(front) = self.outstanding.front_mut() {
            front.remaining = front.remaining.saturating_sub(1);
            if front.remaining == 0 {
                self.outstanding.pop_front();
            }
        }
    }

    /// A heartbeat arrived: the pulls are alive and have nothing to send.
    pub fn heartbeat(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A status ended a pull of reply generation `generation`. Returns false, changing
    /// nothing, for a pull from before a repair (already forgotten).
    pub fn ended(&mut self, now: Instant, generation: Option<u64>) -> bool {
        if generation != Some(self.generation) {
            return false;
        }
        self.last_heard = now;
        self.outstanding.pop_front();
        true
    }

    /// Its consumer or stream is gone: its other pull died with it; paused until the main
    /// thread says it is ready again, or [`GONE_PAUSE`] at most. Returns false when already
    /// paused (reported once).
    pub fn gone(&mut self, now: Instant) -> bool {
        if self.is_paused() {
            return false;
        }
        self.outstanding.clear();
        self.paused_until = Some(now + GONE_PAUSE);
        true
    }

    /// Forgets every outstanding pull (after a reconnect, or when its pulls move to a new
    /// inbox): they are issued again at once.
    pub fn forget(&mut self, now: Instant) {
        self.outstanding.clear();
        self.last_heard = now;
    }

    /// Forgets the pulls that can no longer bring anything: past their expiry with no status
    /// to say so, or silent for two heartbeats (a lost pull, ADR-37). Returns whether it did.
    pub fn forget_lost(&mut self, now: Instant, heartbeat: Duration) -> bool {
        if self.outstanding.is_empty() {
            return false;
        }
        let silent = now.duration_since(self.last_heard) > heartbeat * 2 + LOST_PULL_GRACE;
        let expired = self
            .outstanding
            .front()
            .is_some_and(|p| now > p.expires_at + LOST_PULL_GRACE);
        if silent || expired {
            self.outstanding.clear();
        }
        silent || expired
    }

    /// Whether nothing can be on its way: no pull outstanding, or none brought a record for
    /// [`STOP_QUIET`].
    pub fn is_quiet(&self, now: Instant) -> bool {
        self.outstanding.is_empty() || now.duration_since(self.last_record) >= STOP_QUIET
    }
}

/// The pulls a measurement removed from a worker left on the server. A pull request cannot
/// be withdrawn: only the loss of its inbox ends it, and the `nats` client discards what the
/// server sends to an inbox from the moment it unsubscribes until the server has heard of
/// it, so those records would come back only after their ack wait. The pulls therefore run
/// to their expiry, and what they bring meanwhile is given back for after it: each record at
/// most once, since the redelivery can no longer reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    /// The generation of their reply subject.
    generation: u64,
    /// When the last of them has expired, with [`LOST_PULL_GRACE`] for its last records.
    end: Instant,
}

impl Abandoned {
    /// The pulls of a measurement removed at `now`: every one was sent before, so all have
    /// expired `expires` later.
    pub fn at_removal(pulls: &Pulls, now: Instant, expires: Duration) -> Abandoned {
        Abandoned {
            generation: pulls.generation,
            end: now + expires + LOST_PULL_GRACE,
        }
    }

    /// Whether none of them can bring anything any more.
    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.end
    }

    /// How long a record they brought is given back for: until all of them have expired.
    pub fn give_back_for(&self, now: Instant) -> Duration {
        self.end.saturating_duration_since(now)
    }

    /// The pulls of the measurement pulled again before they have expired: one generation
    /// on, so the end of an abandoned pull (a 408 at its expiry) is not taken for the end of
    /// a new one. The records the abandoned pulls still bring are its records as any other.
    pub fn pulled_again(self, now: Instant) -> Pulls {
        Pulls {
            generation: self.generation + 1,
            ..Pulls::new(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_behind_asks_for_a_batch_and_an_idle_one_for_a_tenth() {
        assert_eq!(pull_size(500, true), 500);
        assert_eq!(pull_size(1, true), 1);
        assert_eq!(pull_size(500, false), 50);
        // Never nothing.
        assert_eq!(pull_size(5, false), 1);
        assert_eq!(pull_size(0, true), 1);
    }

    #[test]
    fn measurements_behind_ask_for_a_share_of_the_next_batch_at_most() {
        // Two workers, a batch of 5,000: each may have 2,500 asked for.
        assert!(may_ask(0, 5000, 2));
        assert!(may_ask(2499, 5000, 2));
        assert!(!may_ask(2500, 5000, 2));
        assert!(!may_ask(20_000, 5000, 2));
        // A share smaller than one pull: one pull at a time still goes out.
        assert!(may_ask(0, 10, 4));
        assert!(!may_ask(50, 10, 4));
        assert!(may_ask(0, 0, 0));
    }

    #[test]
    fn what_is_asked_for_is_what_the_outstanding_pulls_have_not_brought() {
        let t0 = Instant::now();
        let mut pulls = Pulls::new(t0);
        assert_eq!(pulls.requested(), 0);
        pulls.issued(t0, 50, EXPIRES);
        pulls.issued(t0, 50, EXPIRES);
        assert_eq!(pulls.requested(), 100);
        pulls.record(t0);
        assert_eq!(pulls.requested(), 99);
        // A status ends the oldest pull with what it had left.
        assert!(pulls.ended(t0, Some(0)));
        assert_eq!(pulls.requested(), 50);
        pulls.forget(t0);
        assert_eq!(pulls.requested(), 0);
    }

    const SECOND: Duration = Duration::from_secs(1);
    const EXPIRES: Duration = Duration::from_secs(30);
    const HEARTBEAT: Duration = Duration::from_secs(5);

    fn issued_both(now: Instant, batch: usize) -> Pulls {
        let mut pulls = Pulls::new(now);
        assert_eq!(pulls.wanted(), 2);
        pulls.issued(now, batch, EXPIRES);
        pulls.issued(now, batch, EXPIRES);
        assert_eq!(pulls.wanted(), 0);
        pulls
    }

    #[test]
    fn a_pull_that_brought_its_batch_has_ended() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 2);
        pulls.record(t0);
        assert_eq!(pulls.wanted(), 0);
        pulls.record(t0);
        assert_eq!(pulls.wanted(), 1);
    }

    #[test]
    fn a_status_ends_a_pull_of_the_current_generation_only() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        assert!(!pulls.ended(t0, Some(7)));
        assert!(!pulls.ended(t0, None));
        assert_eq!(pulls.wanted(), 0);
        assert!(pulls.ended(t0, Some(0)));
        assert_eq!(pulls.wanted(), 1);
    }

    #[test]
    fn silence_for_two_heartbeats_loses_the_pulls() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        let limit = HEARTBEAT * 2 + LOST_PULL_GRACE;
        assert!(!pulls.forget_lost(t0 + limit, HEARTBEAT));
        pulls.heartbeat(t0 + limit);
        assert!(!pulls.forget_lost(t0 + limit * 2, HEARTBEAT));
        assert!(pulls.forget_lost(t0 + limit * 2 + SECOND, HEARTBEAT));
        assert_eq!(pulls.wanted(), 2);
        // Nothing outstanding: nothing to lose.
        assert!(!pulls.forget_lost(t0 + limit * 10, HEARTBEAT));
    }

    #[test]
    fn a_pull_past_its_expiry_is_lost_even_with_heartbeats() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        let late = t0 + EXPIRES + LOST_PULL_GRACE + SECOND;
        pulls.heartbeat(late);
        assert!(pulls.forget_lost(late, HEARTBEAT));
    }

    #[test]
    fn silence_is_counted_from_the_first_pull() {
        let t0 = Instant::now();
        let mut pulls = Pulls::new(t0);
        let t1 = t0 + Duration::from_secs(60);
        pulls.issued(t1, 10, EXPIRES);
        assert!(!pulls.forget_lost(t1 + SECOND, HEARTBEAT));
    }

    #[test]
    fn a_gone_consumer_pauses_until_resumed_with_a_new_generation() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        assert!(pulls.gone(t0));
        assert!(!pulls.gone(t0), "reported once");
        assert_eq!(pulls.wanted(), 0);
        assert_eq!(pulls.paused_until(), Some(t0 + GONE_PAUSE));
        assert!(!pulls.resume_if_due(t0 + GONE_PAUSE - SECOND));
        assert!(pulls.resume());
        assert_eq!(pulls.generation(), 1);
        assert_eq!(pulls.wanted(), 2);
        assert!(!pulls.resume(), "not paused: nothing changes");
        assert_eq!(pulls.generation(), 1);
    }

    #[test]
    fn a_pause_ends_by_itself() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        pulls.gone(t0);
        assert!(pulls.resume_if_due(t0 + GONE_PAUSE));
        assert!(!pulls.is_paused());
        assert_eq!(pulls.generation(), 1);
        assert!(!pulls.resume_if_due(t0 + GONE_PAUSE * 2));
    }

    #[test]
    fn forgetting_reissues_at_once() {
        let t0 = Instant::now();
        let mut pulls = issued_both(t0, 10);
        pulls.forget(t0);
        assert_eq!(pulls.wanted(), 2);
    }

    #[test]
    fn quiet_once_no_record_came_for_a_moment() {
        let t0 = Instant::now();
        let mut pulls = Pulls::new(t0);
        assert!(pulls.is_quiet(t0), "nothing outstanding");
        pulls.issued(t0, 10, EXPIRES);
        pulls.record(t0);
        assert!(!pulls.is_quiet(t0 + STOP_QUIET / 2));
        // Heartbeats do not count: they only say nothing is on its way.
        pulls.heartbeat(t0 + STOP_QUIET / 2);
        assert!(pulls.is_quiet(t0 + STOP_QUIET));
    }

    #[test]
    fn abandoned_pulls_are_given_back_for_until_their_expiry() {
        let t0 = Instant::now();
        let abandoned = Abandoned::at_removal(&issued_both(t0, 10), t0, EXPIRES);
        assert!(!abandoned.is_over(t0 + EXPIRES));
        assert_eq!(abandoned.give_back_for(t0), EXPIRES + LOST_PULL_GRACE);
        assert_eq!(abandoned.give_back_for(t0 + EXPIRES), LOST_PULL_GRACE);
        assert!(abandoned.is_over(t0 + EXPIRES + LOST_PULL_GRACE));
        assert_eq!(
            abandoned.give_back_for(t0 + EXPIRES + LOST_PULL_GRACE + SECOND),
            Duration::ZERO
        );
    }

    #[test]
    fn a_measurement_pulled_again_ignores_the_end_of_its_abandoned_pulls() {
        let t0 = Instant::now();
        let removed = issued_both(t0, 10);
        let generation = removed.generation();
        let abandoned = Abandoned::at_removal(&removed, t0, EXPIRES);
        let mut again = abandoned.pulled_again(t0 + SECOND);
        assert_eq!(again.generation(), generation + 1);
        assert_eq!(again.wanted(), 2);
        again.issued(t0 + SECOND, 10, EXPIRES);
        // An abandoned pull's 408 at its expiry ends none of the new ones.
        assert!(!again.ended(t0 + EXPIRES, Some(generation)));
        assert_eq!(again.wanted(), 1);
        assert!(again.ended(t0 + EXPIRES, Some(generation + 1)));
        assert_eq!(again.wanted(), 2);
    }
}
