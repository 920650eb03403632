//! Counters, gauges and histograms shared by the threads, read for the shutdown summary and
//! the `/metrics` and `/readyz` endpoints (see `http.rs`).
//!
//! Written by the workers (records fetched and held), the writer (records written, batch sizes,
//! write latency, InfluxDB's state) and the main thread (configuration read); read by the
//! `http` thread. Plain relaxed atomics: each value is independent and only read for
//! reporting. The few values that are not numbers (the reason InfluxDB is failing, the
//! per-measurement counters) sit behind a mutex taken once per batch or once per change,
//! never per record. Nothing here does IO or reads the clock: times are passed in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether this process's NATS connection is up. Set by the connection's disconnect and
/// reconnect callbacks (`jetstream::connect`) and once the first connect succeeded; read by
/// readiness. A process-wide flag because the callbacks are installed before the service's
/// [`Stats`] exist, and a collector process holds one connection.
pub static NATS_CONNECTED: AtomicBool = AtomicBool::new(false);

/// Upper bounds of the batch size histogram, in lines (`batch.max_lines` defaults to 5000).
pub const BATCH_LINES_BOUNDS: &[u64] = &[
    1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000,
];
/// Upper bounds of the write latency histogram, in microseconds (1 ms to 30 s).
pub const WRITE_MICROS_BOUNDS: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

#[derive(Debug)]
pub struct Stats {
    /// Records received from JetStream.
    pub fetched: AtomicU64,
    /// Records stored in InfluxDB and acknowledged.
    pub written: AtomicU64,
    /// Records moved to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Write attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Batches stored.
    pub batches: AtomicU64,
    /// Records given back (NAK) at shutdown because they could not be written in time.
    pub given_back: AtomicU64,
    /// Records encoded and on their way to InfluxDB: in a worker's chunk, in the writer's
    /// channel or in its batch; not yet acknowledged, dead-lettered or given back.
    pub held: AtomicI64,
    /// Lines per stored batch.
    pub batch_lines: Histogram,
    /// Duration of each write request to InfluxDB, whatever its answer, in microseconds.
    pub write_micros: Histogram,
    /// Set once the configuration bucket has been read.
    pub config_loaded: AtomicBool,
    /// Set when the shutdown starts: the collector takes no new records.
    pub stopping: AtomicBool,
    /// What the writer last learned about InfluxDB.
    influx: Mutex<InfluxHealth>,
    /// Counters and lag per measurement; created when a worker starts pulling it.
    by_measurement: Mutex<BTreeMap<String, Arc<MeasurementStats>>>,
    /// Field values converted to the type InfluxDB stores (`crate::schema`), per measurement.
    conversions: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            fetched: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            given_back: AtomicU64::new(0),
            held: AtomicI64::new(0),
            batch_lines: Histogram::new(BATCH_LINES_BOUNDS),
            write_micros: Histogram::new(WRITE_MICROS_BOUNDS),
            config_loaded: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            influx: Mutex::new(InfluxHealth::default()),
            by_measurement: Mutex::new(BTreeMap::new()),
            conversions: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts `n` records taken into (positive) or released from (negative) the pipeline.
    pub fn hold(&self, n: i64) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    /// Records held right now (never negative, even if a release raced ahead of its take).
    pub fn n_held(&self) -> u64 {
        self.held.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn set(flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::Relaxed);
    }

    pub fn is(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }

    /// The counters of `measurement`, created on first use; a worker keeps them while it
    /// pulls the measurement, so counting a record takes no lock.
    pub fn measurement(&self, measurement: &str) -> Arc<MeasurementStats> {
        lock(&self.by_measurement)
            .entry(measurement.to_string())
            .or_default()
            .clone()
    }

    /// `(measurement, records fetched)` for every measurement pulled since the start.
    pub fn by_measurement(&self) -> Vec<(String, u64)> {
        lock(&self.by_measurement)
            .iter()
            .map(|(name, m)| (name.clone(), m.fetched.load(Ordering::Relaxed)))
            .collect()
    }

    /// Counts `n` field values of `measurement` converted to their stored type.
    pub fn converted(&self, measurement: &str, n: u64) {
        *lock(&self.conversions)
            .entry(measurement.to_string())
            .or_default() += n;
    }

    /// `(measurement, field values converted)` for every measurement that had any.
    pub fn conversions(&self) -> Vec<(String, u64)> {
        lock(&self.conversions)
            .iter()
            .map(|(name, n)| (name.clone(), *n))
            .collect()
    }

    /// The lag of every measurement pulled now (see [`MeasurementStats`]), at `now_unix_ms`.
    pub fn lag(&self, now_unix_ms: u64) -> Vec<(String, Lag)> {
        lock(&self.by_measurement)
            .iter()
            .filter(|(_, m)| m.pulled.load(Ordering::Relaxed))
            .map(|(name, m)| (name.clone(), m.lag(now_unix_ms)))
            .collect()
    }

    /// Notes that records of `measurements` (one name per record, in any order, runs of one
    /// measurement usually together) were stored at `at_unix_ms`. Called once per successful
    /// write; takes the lock once.
    pub fn written<'a>(&self, measurements: impl Iterator<Item = &'a str>, at_unix_ms: u64) {
        let mut names: Vec<&str> = Vec::new();
        for name in measurements {
            if names.last() != Some(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
        let map = lock(&self.by_measurement);
        for name in names {
            if let Some(m) = map.get(name) {
                m.last_write_ms.store(at_unix_ms, Ordering::Relaxed);
            }
        }
    }

    /// Records the answer to a write request: `Ok` when InfluxDB answered at all in a way
    /// that shows it works (2xx, or a rejection of bad lines), `Err` with the reason when it
    /// could not store anything.
    pub fn influx_write(&self, at: Instant, outcome: Result<(), String>) {
        lock(&self.influx).write = Some(Seen { at, outcome });
    }

    /// Records the answer to a `/ping`.
    pub fn influx_ping(&self, at: Instant, outcome: Result<(), String>) {
        lock(&self.influx).ping = Some(Seen { at, outcome });
    }

    /// When InfluxDB last answered a write or a ping, whatever the answer.
    pub fn influx_last_seen(&self) -> Option<Instant> {
        let health = lock(&self.influx);
        [&health.write, &health.ping]
            .into_iter()
            .flatten()
            .map(|seen| seen.at)
            .max()
    }

    /// Whether InfluxDB can be counted on now; see [`InfluxHealth::check`].
    pub fn influx_check(&self, now: Instant) -> Result<(), String> {
        lock(&self.influx).check(now)
    }

    /// Whether the collector is ready to take records, and if not, why.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        if Stats::is(&self.stopping) {
            return Err("stopping".into());
        }
        if !Stats::is(&self.config_loaded) {
            return Err("configuration bucket not read yet".into());
        }
        if !Stats::is(&NATS_CONNECTED) {
            return Err("nats: not connected".into());
        }
        self.influx_check(now)
            .map_err(|problem| format!("influxdb: {problem}"))
    }
}

/// What one collector knows about one measurement. `fetched` and `pending` are stored by
/// the worker pulling it, one relaxed add and one relaxed store per record; `pending` and
/// `oldest_ns` are also refreshed by the main thread from the stream and consumer info every
/// few polls, so an idle measurement, or one another collector drains, does not keep a
/// stale value; `last_write_ms` is stored by the writer once per successful write.
#[derive(Debug, Default)]
pub struct MeasurementStats {
    /// Records received from JetStream.
    pub fetched: AtomicU64,
    /// Records waiting in the stream for delivery, as the latest delivery or consumer info
    /// said.
    pending: AtomicU64,
    /// When the oldest record still in the stream (not yet written: the stream is a work
    /// queue, so a stored record leaves it) was stored there, in nanoseconds since the epoch;
    /// 0 when the stream is empty.
    oldest_ns: AtomicI64,
    /// When the writer last stored records of this measurement, in milliseconds since the
    /// epoch; 0 before the first.
    last_write_ms: AtomicU64,
    /// Whether this collector pulls it now: the lag of a measurement removed from the bucket
    /// is no one's to catch up, so it is not reported.
    pulled: AtomicBool,
}

/// A measurement's lag at one moment, as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub pending: u64,
    /// Age of the oldest record not yet written, in seconds; 0 when none waits.
    pub oldest_age_seconds: f64,
    /// When records of it were last stored, in seconds since the epoch; `None` before the first
    /// write.
    pub last_write_seconds: Option<f64>,
}

impl MeasurementStats {
    /// Counts one record delivered with `pending` more waiting behind it.
    pub fn delivered(&self, pending: u64) {
        self.fetched.fetch_add(1, Ordering::Relaxed);
        self.pending.store(pending, Ordering::Relaxed);
    }

    /// Stores what the stream and consumer info said: records waiting for delivery, and
    /// the stream time of the oldest record in the stream (`None` when it is empty).
    pub fn refreshed(&self, pending: u64, oldest_ns: Option<i64>) {
        self.pending.store(pending, Ordering::Relaxed);
        self.oldest_ns
            .store(oldest_ns.unwrap_or(0).max(0), Ordering::Relaxed);
    }

    pub fn set_pulled(&self, pulled: bool) {
        self.pulled.store(pulled, Ordering::Relaxed);
    }

    pub fn lag(&self, now_unix_ms: u64) -> Lag {
        let oldest_ns = self.oldest_ns.load(Ordering::Relaxed);
        let oldest_age_seconds = if oldest_ns > 0 {
            let now_ns = i128::from(now_unix_ms) * 1_000_000;
            ((now_ns - i128::from(oldest_ns)).max(0) as f64 / 1e9 * 1e3).round() / 1e3
        } else {
            0.0
        };
        let last_write_ms = self.last_write_ms.load(Ordering::Relaxed);
        Lag {
            pending: self.pending.load(Ordering::Relaxed),
            oldest_age_seconds,
            last_write_seconds: (last_write_ms > 0).then(|| last_write_ms as f64 / 1e3),
        }
    }
}

/// Milliseconds since the epoch (0 for a clock set before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// A poisoned lock only means a thread panicked while holding it; the values are still
/// usable for reporting.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One observation of InfluxDB.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    outcome: Result<(), String>,
}

/// How long a successful answer from InfluxDB counts for readiness.
pub const INFLUX_FRESH: Duration = Duration::from_secs(15);

/// What is known about InfluxDB: the last write's answer and the last ping's.
#[derive(Debug, Default)]
pub struct InfluxHealth {
    write: Option<Seen>,
    ping: Option<Seen>,
}

impl InfluxHealth {
    /// InfluxDB is counted on when nothing says otherwise and it answered recently:
    /// - a failed write counts until a write succeeds (a ping answering while writes fail,
    ///   as with bad credentials, does not make the collector ready);
    /// - a failed ping counts unless a write succeeded after it;
    /// - otherwise the latest success must be at most [`INFLUX_FRESH`] old.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        if let Some(Seen {
            outcome: Err(reason),
            ..
        }) = &self.write
        {
            return Err(format!("writes failing: {reason}"));
        }
        let write_ok = self.write.as_ref().map(|seen| seen.at);
        if let Some(Seen {
            at,
            outcome: Err(reason),
        }) = &self.ping
        {
            if !write_ok.is_some_and(|ok| ok >= *at) {
                return Err(reason.clone());
            }
        }
        let ping_ok = self
            .ping
            .as_ref()
            .filter(|seen| seen.outcome.is_ok())
            .map(|seen| seen.at);
        match write_ok.max(ping_ok) {
            None => Err("not reached yet".into()),
            Some(at) if now.saturating_duration_since(at) <= INFLUX_FRESH => Ok(()),
            Some(at) => Err(format!(
                "no answer for {}s",
                now.saturating_duration_since(at).as_secs()
            )),
        }
    }
}

/// A histogram with fixed upper bounds, safe to update from any thread without a lock.
/// Values are whole units (lines, microseconds); the exposition scales them.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One counter per bound, and a last one for values above every bound.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A histogram's counts at one moment, cumulative as Prometheus exposes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= bound)` for each bound, in order.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation: the `+Inf` bucket.
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    /// `bounds` must be strictly increasing.
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Observes a duration in microseconds.
    pub fn observe_micros(&self, duration: Duration) {
        self.observe(duration.as_micros().min(u64::MAX as u128) as u64);
    }

    /// The cumulative counts. Taken without a lock, so an observation made meanwhile may be
    /// in the buckets and not yet in the sum; the count is always the buckets' total.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, counter) in self.buckets.iter().enumerate() {
            total += counter.load(Ordering::Relaxed);
            if let Some(&bound) = self.bounds.get(i) {
                buckets.push((bound, total));
            }
        }
        HistogramSnapshot {
            buckets,
            count: total,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observes `values` into a histogram with `bounds` and checks its snapshot.
    fn check(bounds: &'static [u64], values: &[u64], cumulative: &[u64], count: u64, sum: u64) {
        let histogram = Histogram::new(bounds);
        for &value in values {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        let expected: Vec<(u64, u64)> = bounds
            .iter()
            .copied()
            .zip(cumulative.iter().copied())
            .collect();
        assert_eq!(snapshot.buckets, expected, "values {values:?}");
        assert_eq!(snapshot.count, count, "values {values:?}");
        assert_eq!(snapshot.sum, sum, "values {values:?}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        const B: &[u64] = &[10, 100, 1000];
        check(B, &[], &[0, 0, 0], 0, 0);
        // A value equal to a bound falls in that bound's bucket (`le` is "less or equal").
        check(B, &[10], &[1, 1, 1], 1, 10);
        check(B, &[0, 11, 100, 101], &[1, 3, 4], 4, 212);
        // Above every bound: only in `+Inf`, that is the count.
        check(B, &[5000, 1], &[1, 1, 1], 2, 5001);
    }

    #[test]
    fn durations_are_observed_in_microseconds() {
        let histogram = Histogram::new(WRITE_MICROS_BOUNDS);
        histogram.observe_micros(Duration::from_millis(3));
        histogram.observe_micros(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (1_000, 0));
        assert_eq!(snapshot.buckets[2], (5_000, 1));
        assert_eq!(snapshot.buckets.last(), Some(&(30_000_000, 1)));
        assert_eq!(snapshot.count, 2);
        assert_eq!(snapshot.sum, 60_003_000);
    }

    #[test]
    fn held_never_reads_negative() {
        let stats = Stats::default();
        stats.hold(3);
        stats.hold(-5);
        assert_eq!(stats.n_held(), 0);
        stats.hold(4);
        assert_eq!(stats.n_held(), 2);
    }

    #[test]
    fn measurement_counters_are_shared() {
        let stats = Stats::default();
        let a = stats.measurement("access");
        a.delivered(9);
        a.delivered(8);
        stats.measurement("access").delivered(7);
        Stats::add(&stats.measurement("audit").fetched, 5);
        assert_eq!(
            stats.by_measurement(),
            vec![("access".to_string(), 3), ("audit".to_string(), 5)]
        );
    }

    #[test]
    fn lag_is_reported_for_pulled_measurements() {
        let stats = Stats::default();
        let access = stats.measurement("access");
        let audit = stats.measurement("audit");
        access.set_pulled(true);
        audit.set_pulled(true);
        stats.measurement("removed").delivered(4);
        access.delivered(41);
        access.refreshed(40, Some(1_000_000_000_000_000_000));
        audit.refreshed(3, None);
        audit.delivered(2);
        let now_ms = 1_000_000_012_345;
        stats.written(["access", "access", "gone"].into_iter(), now_ms - 1_500);
        assert_eq!(
            stats.lag(now_ms),
            vec![
                (
                    "access".to_string(),
                    Lag {
                        pending: 40,
                        oldest_age_seconds: 12.345,
                        last_write_seconds: Some(1_000_000_010.845),
                    }
                ),
                (
                    "audit".to_string(),
                    Lag {
                        pending: 2,
                        oldest_age_seconds: 0.0,
                        last_write_seconds: None,
                    }
                ),
            ]
        );
        // Drained: the stream is empty, nothing is old.
        access.refreshed(0, None);
        assert_eq!(stats.lag(now_ms)[0].1.oldest_age_seconds, 0.0);
        // A record stamped after `now` (clocks apart) is not negative age.
        access.refreshed(1, Some(2_000_000_000_000_000_000));
        assert_eq!(stats.lag(now_ms)[0].1.oldest_age_seconds, 0.0);
        access.set_pulled(false);
        assert_eq!(stats.lag(now_ms).len(), 1);
    }

    /// Checks the InfluxDB verdict after `events` (seconds after a start, and whether each
    /// was a write or a ping and whether it succeeded), asked at `now_s`.
    fn verdict(events: &[(u64, &str, bool)], now_s: u64) -> Result<(), String> {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut health = InfluxHealth::default();
        for &(s, kind, ok) in events {
            let outcome = if ok {
                Ok(())
            } else {
                Err(format!("{kind} failed"))
            };
            let seen = Some(Seen { at: at(s), outcome });
            match kind {
                "write" => health.write = seen,
                "ping" => health.ping = seen,
                _ => unreachable!(),
            }
        }
        health.check(at(now_s))
    }

    #[test]
    fn influx_verdicts() {
        for (events, now_s, expected) in [
            (&[][..], 0, Err("not reached yet")),
            (&[(0, "ping", true)], 5, Ok(())),
            (&[(0, "write", true)], 15, Ok(())),
            (&[(0, "write", true)], 16, Err("no answer for 16s")),
            (&[(0, "write", true), (10, "ping", true)], 20, Ok(())),
            // A failed ping after the last good write counts...
            (
                &[(0, "write", true), (5, "ping", false)],
                6,
                Err("ping failed"),
            ),
            // ...but not one that a later write proved wrong.
            (&[(5, "ping", false), (6, "write", true)], 7, Ok(())),
            // A failing write counts until a write succeeds, whatever the pings say.
            (
                &[(0, "write", false), (5, "ping", true)],
                6,
                Err("writes failing: write failed"),
            ),
        ] {
            assert_eq!(
                verdict(events, now_s),
                expected.map_err(String::from),
                "{events:?} at {now_s}"
            );
        }
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let stats = Stats::default();
        let now = Instant::now();
        assert_eq!(
            stats.readiness(now),
            Err("configuration bucket not read yet".into())
        );
        Stats::set(&stats.config_loaded, true);
        Stats::set(&stats.stopping, true);
        assert_eq!(stats.readiness(now), Err("stopping".into()));
    }
}
