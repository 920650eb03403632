//! The `pull` and `batch` sections: the pace of the records, pulled from the consumers by the
//! workers (`pull.workers`, `pull.batch`, `pull.expires`, `pull.ack_wait`,
//! `pull.max_ack_pending`, `pull.max_deliver`) and sent to InfluxDB in batches by the writer
//! (`batch.max_lines`, `batch.max_bytes`, `batch.interval`, `batch.linger`). Validated by the
//! parent module on the main thread at start.

use std::time::Duration;

use crate::batch::Size;

use super::{at_least, defaults, duration, positive, RawBatch, RawPull};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PullConfig {
    pub workers: usize,
    pub batch: usize,
    pub expires: Duration,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// Deliveries after which a record that was never stored is a suspect: marked while it is
    /// encoded ([`crate::suspects`]) and written on its own, apart from its batch
    /// ([`crate::writer`]); it also sizes the dead-letter duplicate window.
    pub max_deliver: u64,
}

impl PullConfig {
    /// How long to wait before a record given back may be redelivered. A worker ends its own
    /// pull requests before anything is given back, by dropping the inbox they reply to (the
    /// server drops a pull request whose reply subject has no interest any more); the delay
    /// only covers that unsubscription reaching the consumer's leader on another node.
    pub fn give_back_delay(&self) -> Duration {
        Duration::from_millis(250)
    }

    /// How often the server sends a heartbeat on an idle pull request: a sixth of its expiry,
    /// at most 5 s. A pull that has been silent for two heartbeats is lost (ADR-37) and is
    /// re-issued.
    pub fn idle_heartbeat(&self) -> Duration {
        (self.expires / 6).min(Duration::from_secs(5))
    }

    /// Validates the `pull` section.
    pub(super) fn from_raw(raw: RawPull) -> Result<PullConfig> {
        let pull = PullConfig {
            workers: positive("pull.workers", raw.workers, defaults::PULL_WORKERS, 64)?,
            batch: positive("pull.batch", raw.batch, defaults::PULL_BATCH, 10_000)?,
            expires: duration("pull.expires", raw.expires, defaults::PULL_EXPIRES)?,
            ack_wait: duration("pull.ack_wait", raw.ack_wait, defaults::PULL_ACK_WAIT)?,
            max_ack_pending: at_least(
                "pull.max_ack_pending",
                raw.max_ack_pending,
                defaults::PULL_MAX_ACK_PENDING,
                1,
            )?,
            max_deliver: at_least(
                "pull.max_deliver",
                raw.max_deliver,
                defaults::PULL_MAX_DELIVER,
                2,
            )?,
        };
        if pull.expires < Duration::from_secs(1) {
            return Err(Error::config(
                "pull.expires",
                "must be at least 1s (pull requests carry a heartbeat of a sixth of it)",
            ));
        }
        if pull.ack_wait < Duration::from_secs(5) {
            return Err(Error::config(
                "pull.ack_wait",
                "must be at least 5s so in-progress acks can keep records alive",
            ));
        }
        Ok(pull)
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_lines: usize,
    pub max_bytes: usize,
    pub interval: Duration,
    /// A batch is written once nothing more has arrived for this long and every stream has
    /// caught up, so a lone record does not wait for `interval`.
    pub linger: Duration,
}

impl BatchConfig {
    /// The size batches start at: 5,000 lines or 1 MiB, or the maximum when it is smaller.
    pub fn start(&self) -> Size {
        Size {
            lines: defaults::BATCH_START_LINES.min(self.max_lines),
            bytes: defaults::BATCH_START_BYTES.min(self.max_bytes),
        }
    }

    /// The largest batch: `batch.max_lines` and `batch.max_bytes`.
    pub fn ceiling(&self) -> Size {
        Size {
            lines: self.max_lines,
            bytes: self.max_bytes,
        }
    }

    /// Validates the `batch` section.
    pub(super) fn from_raw(raw: RawBatch) -> Result<BatchConfig> {
        Ok(BatchConfig {
            max_lines: positive(
                "batch.max_lines",
                raw.max_lines,
                defaults::BATCH_MAX_LINES,
                1_000_000,
            )?,
            max_bytes: positive(
                "batch.max_bytes",
                raw.max_bytes,
                defaults::BATCH_MAX_BYTES,
                256 << 20,
            )?,
            interval: duration("batch.interval", raw.interval, defaults::BATCH_INTERVAL)?,
            linger: duration("batch.linger", raw.linger, defaults::BATCH_LINGER)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal;
    use super::*;

    #[test]
    fn the_sections_take_their_defaults_alone() {
        let pull = PullConfig::from_raw(RawPull::default()).unwrap();
        assert_eq!(pull.workers, defaults::PULL_WORKERS);
        assert_eq!(pull.batch, defaults::PULL_BATCH);
        assert_eq!(pull.expires, defaults::PULL_EXPIRES);
        assert_eq!(pull.ack_wait, defaults::PULL_ACK_WAIT);
        assert_eq!(pull.max_ack_pending, defaults::PULL_MAX_ACK_PENDING);
        assert_eq!(pull.max_deliver, defaults::PULL_MAX_DELIVER);
        let batch = BatchConfig::from_raw(RawBatch::default()).unwrap();
        assert_eq!(batch.max_lines, defaults::BATCH_MAX_LINES);
        assert_eq!(batch.max_bytes, defaults::BATCH_MAX_BYTES);
        assert_eq!(batch.interval, defaults::BATCH_INTERVAL);
        assert_eq!(batch.linger, defaults::BATCH_LINGER);
    }

    #[test]
    fn the_sections_refuse_naming_their_keys() {
        let short_wait = RawPull {
            ack_wait: Some("2s".into()),
            ..RawPull::default()
        };
        let (key, problem) = refusal(PullConfig::from_raw(short_wait));
        assert_eq!(key, "pull.ack_wait");
        assert!(problem.contains("at least 5s"), "{problem}");
        let one_delivery = RawPull {
            max_deliver: Some(1),
            ..RawPull::default()
        };
        assert_eq!(
            refusal(PullConfig::from_raw(one_delivery)),
            ("pull.max_deliver".into(), "1 must be at least 2".into())
        );
        let (key, problem) = refusal(BatchConfig::from_raw(RawBatch {
            max_lines: Some(0),
            ..RawBatch::default()
        }));
        assert_eq!(
            (key.as_str(), problem.as_str()),
            ("batch.max_lines", "0 is out of range; use 1 to 1000000")
        );
    }
}
