//! The `batch` section: when the writer sends a batch to InfluxDB (`batch.max_lines`,
//! `batch.max_bytes`, `batch.interval`, `batch.linger`). Validated by the parent module on the
//! main thread at start.

use std::time::Duration;

use super::{defaults, duration, positive, RawBatch};
use crate::error::Result;

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
    fn the_section_takes_its_defaults_alone() {
        let batch = BatchConfig::from_raw(RawBatch::default()).unwrap();
        assert_eq!(batch.max_lines, defaults::BATCH_MAX_LINES);
        assert_eq!(batch.max_bytes, defaults::BATCH_MAX_BYTES);
        assert_eq!(batch.interval, defaults::BATCH_INTERVAL);
        assert_eq!(batch.linger, defaults::BATCH_LINGER);
    }

    #[test]
    fn the_section_refuses_naming_its_keys() {
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
