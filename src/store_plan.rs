//! Pure: the rules the writer (`writer.rs` `store`) follows with the answers to its writes:
//! the route of a part, the waits between retries, and where the lines a refusal or a v3
//! partial write names sit in the batch. No IO, no logging and no clock read, so the rules
//! are unit-tested below.

use std::time::Duration;

use crate::influx::PartialPlan;

/// Backoff for passing failures: from `FIRST_BACKOFF`, doubling, up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retry period while InfluxDB gives a fatal answer (bad credentials, missing database).
pub const FATAL_BACKOFF: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured as given.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Where a part is written: the configured API, or, for a body InfluxDB 3 refused through
/// its v1 or v2 API, the v3 API that names the bad line (`Influx::diagnose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Configured,
    Diagnose,
}

/// The batch index of the line a refusal names by its `number` (from 1) in the body of
/// `part`; `None` when the number is outside the body.
pub fn refused_index(part: &[usize], number: usize) -> Option<usize> {
    number.checked_sub(1).and_then(|i| part.get(i)).copied()
}

/// How long to wait before retrying a passing failure: the server's `Retry-After` (at most
/// [`MAX_RETRY_AFTER`]), else `backoff` scaled by the jitter `fraction`.
pub fn retry_wait(retry_after: Option<Duration>, backoff: Duration, fraction: f64) -> Duration {
    match retry_after {
        Some(after) => after.min(MAX_RETRY_AFTER),
        None => backoff.mul_f64(fraction),
    }
}

/// The backoff after `backoff`: doubled, up to [`MAX_BACKOFF`].
pub fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Spreads retries of several collectors apart: a fraction between 0.5 and 1 from an
/// xorshift64 `state` (plenty for jitter; no need for a random crate).
pub fn jitter(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    0.5 + (x % 1000) as f64 / 2000.0
}

/// A v3 partial write of a part, sorted by what happens to each record (batch indices).
#[derive(Debug, PartialEq, Eq)]
pub struct Partial {
    /// Stored: acknowledged.
    pub stored: Vec<usize>,
    /// Named by InfluxDB with its message: converted and written again, or dead-lettered.
    pub rejected: Vec<(usize, String)>,
    /// After the last line named in a list that may be cut short: written again.
    pub unknown: Vec<usize>,
}

/// Maps a [`PartialPlan`] (positions in the body of `part`) onto batch indices; `None` when
/// it names no line, so it explains nothing.
pub fn sort_partial(part: &[usize], plan: PartialPlan) -> Option<Partial> {
    if plan.rejected.is_empty() {
        return None;
    }
    let rejected: Vec<(usize, String)> = plan
        .rejected
        .into_iter()
        .map(|(position, message)| (part[position], message))
        .collect();
    let stored = part[..plan.explained]
        .iter()
        .copied()
        .filter(|i| rejected.binary_search_by_key(i, |(n, _)| *n).is_err())
        .collect();
    let unknown = part[plan.explained..].to_vec();
    Some(Partial {
        stored,
        rejected,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_a_line_of_the_part_from_one() {
        let part = [3, 5, 8];
        assert_eq!(refused_index(&part, 1), Some(3));
        assert_eq!(refused_index(&part, 3), Some(8));
        assert_eq!(refused_index(&part, 0), None);
        assert_eq!(refused_index(&part, 4), None);
    }

    #[test]
    fn retries_back_off_with_jitter_and_honour_retry_after() {
        let second = Duration::from_secs(1);
        assert_eq!(retry_wait(None, second, 0.5), second / 2);
        assert_eq!(retry_wait(Some(7 * second), second, 0.5), 7 * second);
        assert_eq!(
            retry_wait(Some(Duration::from_secs(3600)), second, 0.5),
            MAX_RETRY_AFTER
        );
        let mut backoff = FIRST_BACKOFF;
        for _ in 0..20 {
            backoff = next_backoff(backoff);
        }
        assert_eq!(backoff, MAX_BACKOFF);
        let mut state = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..1000 {
            let fraction = jitter(&mut state);
            assert!((0.5..1.0).contains(&fraction), "{fraction}");
        }
    }

    #[test]
    fn a_partial_write_sorts_the_part_into_stored_rejected_and_unknown() {
        // Batch indices 10..16; the answer names body lines 2 and 4 (positions 1 and 3) and
        // may be cut short after the 4th.
        let part: Vec<usize> = (10..16).collect();
        let plan = PartialPlan {
            rejected: vec![(1, "bad".into()), (3, "worse".into())],
            explained: 4,
        };
        assert_eq!(
            sort_partial(&part, plan),
            Some(Partial {
                stored: vec![10, 12],
                rejected: vec![(11, "bad".into()), (13, "worse".into())],
                unknown: vec![14, 15],
            })
        );
        let nothing = PartialPlan {
            rejected: Vec::new(),
            explained: 0,
        };
        assert_eq!(sort_partial(&part, nothing), None);
    }
}
