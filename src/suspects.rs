//! Records that kill the process.
//!
//! A panic while a record is encoded is caught at the record's boundary (`worker.rs`
//! `record`). A record whose encoding ends the process outright (an abort, a stack overflow,
//! the kernel's out-of-memory kill) cannot be caught: it is redelivered to the next collector,
//! and the next. JetStream's delivery count cannot tell those deliveries from records given
//! back during a database outage (each give-back counts), so a count alone never
//! dead-letters anything. What can tell them apart is a mark written where the death happens:
//!
//! - A record delivered more than `pull.max_deliver` times is a *suspect*. Before a worker
//!   encodes a suspect, it writes a key for it in the namespace's suspects bucket
//!   (`<ns>_suspects`, key `<measurement>.<stream sequence>`) naming this process, and
//!   deletes the key as soon as the encoding returned.
//! - A key found already there, written by another process, means that process died while
//!   encoding that record: a death is counted. At [`DEATHS_BEFORE_DEAD_LETTER`] the record is
//!   dead-lettered with a reason that says so.
//! - The key covers the encoding only, not the time a record is held: good records handed
//!   around during an outage, however many collectors die meanwhile, are never counted.
//!
//! [`verdict`] is the decision, pure; [`Suspects`] does the bucket's IO around it.

use serde::{Deserialize, Serialize};

use crate::jetstream::{suspect_key, suspects_bucket, Delivery, JetStream};

/// Processes that may die encoding one record before it is dead-lettered: one death can be
/// a kill from outside that hit the encoding (half a microsecond of a record's life), three
/// in a row are the record.
pub const DEATHS_BEFORE_DEAD_LETTER: u32 = 3;

/// The value of a suspect's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Processes that died encoding the record before this one.
    pub deaths: u32,
    /// The process encoding it now ([`incarnation`]).
    pub by: String,
}

/// What to do with a suspect, given its key as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write this mark, encode the record, delete the mark.
    Encode(Mark),
    /// Processes died encoding it this many times: dead-letter it.
    DeadLetter { deaths: u32 },
}

/// The decision for a suspect whose key holds `found` (`None`: no key, or deleted), taken by
/// process `me`. A key `me` wrote is its own, left by a delete that failed: no death. A key
/// that cannot be read was still written by someone who did not delete it: one death.
pub fn verdict(found: Option<&[u8]>, me: &str) -> Verdict {
    let deaths = match found.map(serde_json::from_slice::<Mark>) {
        None => 0,
        Some(Ok(mark)) if mark.by == me => mark.deaths,
        Some(Ok(mark)) => mark.deaths.saturating_add(1),
        Some(Err(_)) => 1,
    };
    if deaths >= DEATHS_BEFORE_DEAD_LETTER {
        Verdict::DeadLetter { deaths }
    } else {
        Verdict::Encode(Mark {
            deaths,
            by: me.to_string(),
        })
    }
}

/// The dead-letter reason of a record that processes died encoding `deaths` times.
pub fn dead_letter_reason(deaths: u32) -> String {
    format!("collector bug: the process died handling this record {deaths} times")
}

/// A name for this process that no other process shares: its PID and the time it was
/// named, in nanoseconds (two processes with one PID are years of PIDs apart in time).
pub fn incarnation() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), now.as_nanos())
}

/// What a worker does with a record before encoding it ([`Suspects::before`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Before {
    /// Not a suspect, or its key could not be written (said at warn): encode it.
    Encode,
    /// A suspect whose key is written: encode it, then [`Suspects::after`] with the key.
    Guarded(String),
    /// Processes died encoding it: dead-letter it for `reason`, then [`Suspects::after`].
    DeadLetter { key: String, reason: String },
    /// Another collector wrote its key between the read and the write (it holds the record
    /// too): give it back.
    Taken,
}

/// A worker's access to the suspects bucket of its namespace.
pub struct Suspects {
    js: JetStream,
    bucket: String,
    me: String,
    max_deliver: u64,
    /// Whether the bucket is known to exist (ensured at the first suspect).
    bucket_ready: bool,
}

impl Suspects {
    /// `js` creates the bucket, when missing, with the replicas of the collector's streams.
    pub fn new(js: JetStream, namespace: &str, max_deliver: u64, me: String) -> Suspects {
        Suspects {
            js,
            bucket: suspects_bucket(namespace),
            me,
            max_deliver,
            bucket_ready: false,
        }
    }

    /// Whether a record so delivered is a suspect: the one check every record pays.
    pub fn is_suspect(&self, delivery: &Delivery) -> bool {
        delivery.delivered > self.max_deliver
    }

    /// Marks a suspect of `measurement` before it is encoded. A bucket that cannot be read
    /// or written (NATS failing) leaves the record unmarked and encoded as any other: the
    /// record is not held up for want of a mark.
    pub fn before(&mut self, measurement: &str, delivery: &Delivery) -> Before {
        if !self.is_suspect(delivery) {
            return Before::Encode;
        }
        let key = suspect_key(measurement, delivery.stream_sequence);
        match self.mark(&key) {
            Ok(before) => before,
            Err(e) => {
                log::warn!(
                    "suspects: cannot mark record {} of {measurement} in bucket {}: {e}; encoding it unmarked",
                    delivery.stream_sequence,
                    self.bucket
                );
                Before::Encode
            }
        }
    }

    fn mark(&mut self, key: &str) -> crate::error::Result<Before> {
        if !self.bucket_ready {
            if self.js.ensure_suspects_bucket(&self.bucket)? {
                log::info!("suspects: created bucket {}", self.bucket);
            }
            self.bucket_ready = true;
        }
        let (revision, found) = self.js.kv_entry(&self.bucket, key)?.unwrap_or((0, None));
        match verdict(found.as_deref(), &self.me) {
            Verdict::DeadLetter { deaths } => Ok(Before::DeadLetter {
                key: key.to_string(),
                reason: dead_letter_reason(deaths),
            }),
            Verdict::Encode(mark) => {
                let value = serde_json::to_vec(&mark).expect("a mark always serializes");
                Ok(if self.js.kv_update(&self.bucket, key, &value, revision)? {
                    Before::Guarded(key.to_string())
                } else {
                    Before::Taken
                })
            }
        }
    }

    /// Deletes a suspect's key once its encoding returned or it was dead-lettered. Confirmed
    /// by the server before the worker goes on: a delete still in the client's buffer when
    /// the next record aborts the process would count a death against this one.
    pub fn after(&self, key: &str) {
        if let Err(e) = self.js.kv_delete(&self.bucket, key) {
            log::warn!(
                "suspects: cannot delete key {key} of bucket {}: {e}; it expires within a day",
                self.bucket
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(deaths: u32, by: &str) -> Vec<u8> {
        serde_json::to_vec(&Mark {
            deaths,
            by: by.into(),
        })
        .unwrap()
    }

    fn encode(deaths: u32) -> Verdict {
        Verdict::Encode(Mark {
            deaths,
            by: "me".into(),
        })
    }

    #[test]
    fn no_key_is_no_death() {
        assert_eq!(verdict(None, "me"), encode(0));
    }

    #[test]
    fn a_key_left_by_another_process_is_one_death_more() {
        assert_eq!(verdict(Some(&mark(0, "other")), "me"), encode(1));
        assert_eq!(verdict(Some(&mark(1, "other")), "me"), encode(2));
    }

    #[test]
    fn the_third_death_dead_letters() {
        assert_eq!(
            verdict(Some(&mark(2, "other")), "me"),
            Verdict::DeadLetter { deaths: 3 }
        );
        assert_eq!(
            verdict(Some(&mark(7, "other")), "me"),
            Verdict::DeadLetter { deaths: 8 }
        );
        assert_eq!(
            dead_letter_reason(3),
            "collector bug: the process died handling this record 3 times"
        );
    }

    #[test]
    fn a_key_of_this_process_counts_no_death() {
        // Left by a delete that failed; this process is alive.
        assert_eq!(verdict(Some(&mark(1, "me")), "me"), encode(1));
    }

    #[test]
    fn an_unreadable_key_is_one_death() {
        assert_eq!(verdict(Some(b"not json"), "me"), encode(1));
    }

    #[test]
    fn an_incarnation_names_the_process() {
        let a = incarnation();
        assert!(a.starts_with(&format!("{}-", std::process::id())), "{a}");
    }
}
