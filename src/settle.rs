//! Settling a held record: the one place where a record is acknowledged, kept alive, given
//! back or dead-lettered, run by whichever thread holds it (a worker, or the writer).
//!
//! A record is settled exactly once: acknowledged after InfluxDB stored it (`+ACK`),
//! dead-lettered when it can never be stored (published to `<ns>.dlq.<m>`, then a confirmed
//! `+TERM`), or given back for redelivery (`-NAK` with a delay). Until then the holder keeps
//! it alive with in-progress acks (`+WPI`) every [`keep_alive_every`], well inside its ack
//! wait. Sends go through `jetstream.rs`, the only module that talks to NATS.

use std::time::Duration;

use crate::jetstream::{self, Ack, Connection, Delivery, Message};
use crate::stats::Stats;

/// A record on its way to InfluxDB: the message to acknowledge and where it came from.
#[derive(Debug)]
pub struct Held {
    pub message: Message,
    pub delivery: Delivery,
}

/// How often held records are kept alive with an in-progress ack: three times inside their
/// ack wait, so one lost `+WPI` does not let them expire, and at most once a second.
pub fn keep_alive_every(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_secs(1))
}

/// What a dead-letter publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLettered {
    /// Stored in `<ns>:dlq` for the first time.
    Stored,
    /// Another delivery of this record was dead-lettered before (the stream answered
    /// "duplicate"); it is terminated again but not counted again.
    Repeat,
    /// Not stored: the record is left unacknowledged and comes back after its ack wait.
    Failed,
}

impl DeadLettered {
    /// How much it adds to `collector_records_dead_lettered_total`: each record once.
    pub fn counted(self) -> u64 {
        match self {
            DeadLettered::Stored => 1,
            DeadLettered::Repeat | DeadLettered::Failed => 0,
        }
    }
}

impl Held {
    /// The measurement of the record, from its subject.
    pub fn measurement(&self) -> &str {
        jetstream::measurement_of(&self.message.subject)
    }

    /// Acknowledges the record: InfluxDB stored it.
    pub fn acknowledge(&self) {
        let _ = jetstream::ack(&self.message, Ack::Done);
    }

    /// Tells JetStream the record is still being worked on, restarting its ack wait.
    pub fn keep_alive(&self) {
        let _ = jetstream::ack(&self.message, Ack::Progress);
    }

    /// Gives the record back for redelivery after `delay`.
    pub fn give_back(&self, delay: Duration) {
        give_back(&self.message, delay);
    }

    /// Moves the record to the dead-letter stream, then terminates it with a confirmed
    /// `+TERM`; counts it once and logs it as `who`. If the publish fails the record is left
    /// unacknowledged and comes back after its ack wait.
    pub fn dead_letter(
        &self,
        who: &str,
        conn: &Connection,
        namespace: &str,
        stats: &Stats,
        reason: &str,
    ) -> DeadLettered {
        let (sequence, subject) = (self.delivery.stream_sequence, &self.message.subject);
        let outcome = match jetstream::dead_letter(
            conn,
            namespace,
            &self.message,
            &self.delivery,
            reason,
        ) {
            Ok(false) => DeadLettered::Stored,
            Ok(true) => DeadLettered::Repeat,
            Err(e) => {
                log::error!(
                        "{who}: cannot dead-letter record {sequence} of {subject} ({reason}): {e}; it will be redelivered"
                    );
                return DeadLettered::Failed;
            }
        };
        if let Err(e) = jetstream::terminate(conn, &self.message) {
            log::warn!(
                "{who}: +TERM of dead-lettered record {sequence} of {subject} not confirmed ({e}); if it comes back, its dead letter is stored once"
            );
        }
        Stats::add(&stats.dead_lettered, outcome.counted());
        log::warn!("{who}: dead-lettered record {sequence} of {subject}: {reason}");
        outcome
    }
}

/// Gives a message back for redelivery after `delay` (a record not yet held, or one whose
/// measurement is no longer pulled here).
pub fn give_back(message: &Message, delay: Duration) {
    let _ = jetstream::ack(message, Ack::Nak(delay));
}

/// Gives every record of `held` back after `delay`; returns how many.
pub fn give_back_all<'a>(held: impl IntoIterator<Item = &'a Held>, delay: Duration) -> u64 {
    let mut n = 0;
    for record in held {
        record.give_back(delay);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_three_times_inside_the_ack_wait_and_at_most_once_a_second() {
        assert_eq!(
            keep_alive_every(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            keep_alive_every(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(keep_alive_every(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn a_repeat_dead_letter_is_not_counted_again() {
        assert_eq!(DeadLettered::Stored.counted(), 1);
        assert_eq!(DeadLettered::Repeat.counted(), 0);
        assert_eq!(DeadLettered::Failed.counted(), 0);
    }
}
