//! Settling a held record: the one place where a record is acknowledged, kept alive, given
//! back or dead-lettered, run by whichever thread holds it (a worker, or the writer).
//!
//! A record is settled exactly once: acknowledged after InfluxDB stored it (`+ACK`),
//! dead-lettered when it can never be stored (published to `<ns>.dlq.<m>`, then a confirmed
//! `+TERM`), or given back for redelivery (`-NAK` with a delay). Until then the holder keeps
//! it alive with in-progress acks (`+WPI`) every [`keep_alive_every`], well inside its ack
//! wait.
//!
//! Only this module sends them: the acknowledgements (`ack`, `Ack`), the confirmed `+TERM`
//! (`terminate`) and the dead-letter publish (`publish_dead_letter`) are private here, and the
//! fields of [`Held`] are private, so a record is settled through its `Held` and nowhere else.
//! The dead letter goes out through `jetstream::publish_stored`, which reads the stream's
//! answer as it reads every JetStream answer.

use std::io;
use std::time::Duration;

use crate::error::Result;
use crate::jetstream::{
    dead_letter_subject, measurement_of, publish_stored, stream_name, Connection, Delivery, Message,
};
use crate::stats::Stats;

/// A record on its way to InfluxDB: the message to acknowledge and where it came from. The
/// fields are private: once held, a record is settled through these methods only.
#[derive(Debug)]
pub struct Held {
    message: Message,
    delivery: Delivery,
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
    /// Holds a record that arrived on a pull (its delivery read from its reply subject).
    pub fn new(message: Message, delivery: Delivery) -> Held {
        Held { message, delivery }
    }

    /// The message as delivered: its subject and data.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Where the record came from: its delivery count, stream sequence and time, and what
    /// was still pending after it.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The measurement of the record, from its subject.
    pub fn measurement(&self) -> &str {
        measurement_of(&self.message.subject)
    }

    /// Acknowledges the record: InfluxDB stored it.
    pub fn acknowledge(&self) {
        let _ = ack(&self.message, Ack::Done);
    }

    /// Tells JetStream the record is still being worked on, restarting its ack wait.
    pub fn keep_alive(&self) {
        let _ = ack(&self.message, Ack::Progress);
    }

    /// Gives the record back for redelivery after `delay`.
    pub fn give_back(&self, delay: Duration) {
        let _ = ack(&self.message, Ack::Nak(delay));
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
        let outcome = match publish_dead_letter(
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
        if let Err(e) = terminate(conn, &self.message) {
            log::warn!(
                "{who}: +TERM of dead-lettered record {sequence} of {subject} not confirmed ({e}); if it comes back, its dead letter is stored once"
            );
        }
        Stats::add(&stats.dead_lettered, outcome.counted());
        log::warn!("{who}: dead-lettered record {sequence} of {subject}: {reason}");
        outcome
    }
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

/// Acknowledgement kinds sent for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// Stored: remove it from the stream.
    Done,
    /// Still being worked on: restart its ack wait.
    Progress,
    /// Give it back for redelivery after the delay (unwritten at a stop, or pulled for a
    /// measurement no longer pulled here). At a stop the pulls it could go back to are ended
    /// first, by dropping their inbox, so the delay only covers that reaching the consumer's
    /// leader (`PullConfig::give_back_delay`, 250 ms); a removed measurement's pulls run on,
    /// and the delay lasts until they have expired (`pulls::Abandoned`).
    Nak(Duration),
}

/// Sends an acknowledgement without waiting: the server's answer is not needed because a
/// lost ack only means a redelivery, and a redelivery rewrites the same point.
fn ack(message: &Message, kind: Ack) -> io::Result<()> {
    match kind {
        Ack::Done => message.respond(b"+ACK"),
        Ack::Progress => message.respond(b"+WPI"),
        Ack::Nak(delay) => message.respond(format!(r#"-NAK {{"delay":{}}}"#, delay.as_nanos())),
    }
}

/// How many times [`terminate`] sends `+TERM` before giving up, and how long it waits for
/// each confirmation: with the pauses between them (4 s in all), enough to outlast most
/// consumer leader elections, which took 1–3 s in the failover tests.
const TERM_ATTEMPTS: u32 = 5;
const TERM_TIMEOUT: Duration = Duration::from_secs(2);

/// Terminates a dead-lettered record and waits for the consumer to confirm it (an ack with
/// a reply subject is answered once the consumer's leader has applied it). Unconfirmed, the
/// `+TERM` may have been lost with a leader that stepped down, and the record would come
/// back after its ack wait; it is sent again a few times. Still unconfirmed, the error is
/// returned: the record may be redelivered, and its dead letter is then a duplicate the
/// dead-letter stream drops.
fn terminate(conn: &Connection, message: &Message) -> io::Result<()> {
    let Some(subject) = message.reply.as_deref() else {
        return Err(io::Error::other(
            "the record has no acknowledgement subject",
        ));
    };
    let mut last = io::Error::other("not sent");
    for attempt in 1..=TERM_ATTEMPTS {
        match conn.request_timeout(subject, b"+TERM", TERM_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        if attempt < TERM_ATTEMPTS {
            // No responders comes back at once while no leader holds the consumer: pause
            // rather than spend the attempts within a millisecond.
            std::thread::sleep(Duration::from_millis(400 * attempt as u64));
        }
    }
    Err(last)
}

/// Publishes `message` unchanged to `<ns>.dlq.<measurement>` with the reason and its origin
/// in headers, and waits for the dead-letter stream to acknowledge it: `true` when the
/// stream already held it. Only then may the caller terminate the original ([`terminate`]).
/// The `Nats-Msg-Id` ([`dead_letter_id`]) makes a second publish of the same record, by this
/// collector or another, a duplicate the stream acknowledges without storing.
fn publish_dead_letter(
    conn: &Connection,
    namespace: &str,
    message: &Message,
    delivery: &Delivery,
    reason: &str,
) -> Result<bool> {
    let measurement = measurement_of(&message.subject);
    // A header value is one line; reasons are one line already, but be sure.
    let reason = crate::error::one_line(reason, 2048);
    let stream = stream_name(namespace, measurement);
    let answer = publish_stored(
        conn,
        "dead-letter publish",
        &dead_letter_subject(namespace, measurement),
        &[
            ("Nats-Msg-Id", &dead_letter_id(&stream, delivery)),
            ("Collector-Error", &reason),
            ("Collector-Stream", &stream),
            ("Collector-Sequence", &delivery.stream_sequence.to_string()),
            ("Collector-Subject", &message.subject),
        ],
        &message.data,
    )?;
    let duplicate = answer["duplicate"].as_bool() == Some(true);
    if duplicate {
        // Another delivery of this record was dead-lettered already (by this collector or
        // another); the stream kept the first one only.
        log::info!(
            "dead letter of record {} of {} was stored before: this delivery is a repeat",
            delivery.stream_sequence,
            message.subject
        );
    }
    Ok(duplicate)
}

/// The `Nats-Msg-Id` of a record's dead letter: the same for every delivery of the record,
/// so the dead-letter stream stores it once whichever collector publishes it. The stream
/// timestamp is part of it because a stream deleted and created again numbers its records
/// from 1 again: without it, a new record dead-lettered within the window would be taken
/// for an older one and dropped.
fn dead_letter_id(stream: &str, delivery: &Delivery) -> String {
    format!(
        "{stream}:{}:{}",
        delivery.stream_sequence, delivery.timestamp_ns
    )
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

    #[test]
    fn dead_letter_ids_name_the_record_not_the_delivery() {
        let first = Delivery {
            delivered: 1,
            stream_sequence: 15,
            timestamp_ns: 1_700_000_000_123_456_789,
            pending: 40,
        };
        let again = Delivery {
            delivered: 3,
            pending: 0,
            ..first
        };
        let id = dead_letter_id("beta:logs:access", &first);
        assert_eq!(id, "beta:logs:access:15:1700000000123456789");
        assert_eq!(dead_letter_id("beta:logs:access", &again), id);
        // The same sequence in a stream created again is another record.
        let recreated = Delivery {
            timestamp_ns: first.timestamp_ns + 1,
            ..first
        };
        assert_ne!(dead_letter_id("beta:logs:access", &recreated), id);
    }
}
