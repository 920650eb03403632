//! Batch accounting: newline-terminated lines in one buffer, each with the record it came from.
//!
//! Pure: no IO, no clock (the caller passes `now`). The worker threads fill a [`Lines`] chunk
//! per pull and send it to the writer thread, which appends chunks to its [`Batch`] and asks it
//! when to flush. Keeping every line's end offset lets the writer write any run of records on
//! its own, which is how a rejected batch is split to find its bad lines.

use std::ops::Range;
use std::time::{Duration, Instant};

/// Lines and the records they came from, in order.
#[derive(Debug)]
pub struct Lines<T> {
    buf: Vec<u8>,
    ends: Vec<usize>,
    items: Vec<T>,
}

impl<T> Default for Lines<T> {
    fn default() -> Self {
        Lines {
            buf: Vec::new(),
            ends: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<T> Lines<T> {
    pub fn with_capacity(n_lines: usize, n_bytes: usize) -> Lines<T> {
        Lines {
            buf: Vec::with_capacity(n_bytes),
            ends: Vec::with_capacity(n_lines),
            items: Vec::with_capacity(n_lines),
        }
    }

    /// Appends one record whose line `encode` writes from it; `encode` must leave the buffer
    /// as it was when it fails, and then the record is handed back with the error.
    pub fn push<E>(
        &mut self,
        item: T,
        encode: impl FnOnce(&T, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), (T, E)> {
        match encode(&item, &mut self.buf) {
            Ok(()) => {
                self.ends.push(self.buf.len());
                self.items.push(item);
                Ok(())
            }
            Err(e) => Err((item, e)),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn n_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// The bytes of records `range`, ready to be a request body.
    pub fn body(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        let start = if range.start == 0 {
            0
        } else {
            self.ends[range.start - 1]
        };
        &self.buf[start..self.ends[range.end - 1]]
    }

    /// Replaces some lines in place: `replace(index, line, out)` appends the new line (with its
    /// `\n`) to `out` and returns true, or returns false and leaves `out` alone to keep the
    /// line. The buffer is rebuilt from the first replaced line on, once, so rewriting many
    /// lines costs one copy of the batch and rewriting none costs no copy. Returns how many
    /// lines were replaced.
    pub fn rewrite(
        &mut self,
        mut replace: impl FnMut(usize, &[u8], &mut Vec<u8>) -> bool,
    ) -> usize {
        // `rebuilt` holds the new buffer once a line was replaced; until then lines stay put.
        let mut rebuilt: Option<Vec<u8>> = None;
        let mut scratch = Vec::new();
        let mut n_replaced = 0;
        let mut start = 0;
        for index in 0..self.ends.len() {
            let end = self.ends[index];
            let line = &self.buf[start..end];
            let out = rebuilt.as_mut().unwrap_or(&mut scratch);
            let replaced = replace(index, line, out);
            if replaced {
                n_replaced += 1;
                if rebuilt.is_none() {
                    let mut buf = Vec::with_capacity(self.buf.len() + 64);
                    buf.extend_from_slice(&self.buf[..start]);
                    buf.extend_from_slice(&scratch);
                    scratch.clear();
                    rebuilt = Some(buf);
                }
            } else if let Some(buf) = rebuilt.as_mut() {
                buf.extend_from_slice(line);
            }
            start = end;
            if let Some(buf) = &rebuilt {
                self.ends[index] = buf.len();
            }
        }
        if let Some(buf) = rebuilt {
            self.buf = buf;
        }
        n_replaced
    }

    /// Moves every line and record of `other` to the end of `self`, leaving `other` empty
    /// with its capacity, so a worker can reuse its chunk buffers.
    pub fn append(&mut self, other: &mut Lines<T>) {
        let offset = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.ends.extend(other.ends.iter().map(|end| end + offset));
        self.items.append(&mut other.items);
        other.buf.clear();
        other.ends.clear();
    }

    /// Empties the lines and drops the records, keeping the capacity for the next ones.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.items.clear();
    }
}

/// Why a batch is written now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// It holds `max_lines` lines, or the next chunk would take it past them.
    Lines,
    /// It holds `max_bytes` bytes, or the next chunk would take it past them.
    Bytes,
    /// Its oldest line has waited `interval`.
    Interval,
    /// Nothing more has arrived for `linger` and every stream has caught up: a lone record
    /// or the end of a burst is written now instead of after `interval`.
    Quiet,
    /// The workers caught up with their streams while it held records of a backlog: nothing
    /// more is coming soon, so waiting for `interval` would only delay them.
    CaughtUp,
    /// The service is stopping.
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_lines: usize,
    pub max_bytes: usize,
    pub interval: Duration,
    pub linger: Duration,
}

/// The writer's batch: lines plus when the first and the last of them arrived.
///
/// When it is written, besides being full or `interval` old:
/// - **quiet**: while every stream has caught up (no record is known to wait behind the ones
///   delivered), a batch is written once nothing more has arrived for `linger`. A lone
///   record is stored within about `linger`, while under a backlog (a stream behind) batches
///   fill up as before.
/// - **never more often than the database can take**: a quiet write waits until the
///   database has been left alone for as long as the previous write took, so writes made for
///   freshness keep it busy half the time at most; under load the batches grow instead.
#[derive(Debug)]
pub struct Batch<T> {
    pub lines: Lines<T>,
    opened_at: Option<Instant>,
    last_added: Option<Instant>,
    /// When the database has been left alone as long as the last write took.
    rested_at: Option<Instant>,
    limits: Limits,
}

impl<T> Batch<T> {
    pub fn new(limits: Limits) -> Batch<T> {
        Batch {
            lines: Lines::with_capacity(limits.max_lines, limits.max_bytes),
            opened_at: None,
            last_added: None,
            rested_at: None,
            limits,
        }
    }

    /// The size the batch is written at from now on ([`Sizer`]).
    pub fn resize(&mut self, size: Size) {
        self.limits.max_lines = size.lines;
        self.limits.max_bytes = size.bytes;
    }

    /// Whether the batch must be written before `chunk` is added, so that no batch goes past
    /// its limits (a single chunk larger than the limits still makes a batch on its own).
    pub fn flush_before(&self, chunk: &Lines<T>) -> Option<Flush> {
        if self.lines.is_empty() {
            None
        } else if self.lines.len() + chunk.len() > self.limits.max_lines {
            Some(Flush::Lines)
        } else if self.lines.n_bytes() + chunk.n_bytes() > self.limits.max_bytes {
            Some(Flush::Bytes)
        } else {
            None
        }
    }

    pub fn add(&mut self, chunk: &mut Lines<T>, now: Instant) {
        if chunk.is_empty() {
            return;
        }
        self.opened_at.get_or_insert(now);
        self.last_added = Some(now);
        self.lines.append(chunk);
    }

    /// Whether the batch is due at `now` for any reason: full, old, or quiet while every
    /// stream has caught up.
    pub fn due(&self, now: Instant, caught_up: bool) -> Option<Flush> {
        self.flush_now(now).or_else(|| {
            (caught_up && self.quiet_at().is_some_and(|at| now >= at)).then_some(Flush::Quiet)
        })
    }

    /// When the batch may be written for being quiet: `linger` after its last chunk, and not
    /// before the database has rested.
    pub fn quiet_at(&self) -> Option<Instant> {
        let at = self.last_added? + self.limits.linger;
        Some(self.rested_at.map_or(at, |rested| at.max(rested)))
    }

    /// When to look at the batch again with no new chunk: at its deadline, or when it turns
    /// quiet; while a stream is behind, a `linger` from `now`, to see whether it caught up.
    pub fn wake_at(&self, now: Instant, caught_up: bool) -> Option<Instant> {
        let deadline = self.deadline()?;
        let quiet = if caught_up {
            self.quiet_at()
        } else {
            Some(now + self.limits.linger)
        };
        Some(quiet.map_or(deadline, |quiet| quiet.min(deadline)))
    }

    /// Notes a write that took from `started` to `ended`, for the pacing of quiet writes.
    pub fn written(&mut self, started: Instant, ended: Instant) {
        self.rested_at = Some(ended + ended.saturating_duration_since(started));
    }

    /// Whether the batch is full or old enough to be written at `now`.
    pub fn flush_now(&self, now: Instant) -> Option<Flush> {
        if self.lines.len() >= self.limits.max_lines {
            Some(Flush::Lines)
        } else if self.lines.n_bytes() >= self.limits.max_bytes {
            Some(Flush::Bytes)
        } else if self.deadline().is_some_and(|deadline| now >= deadline) {
            Some(Flush::Interval)
        } else {
            None
        }
    }

    /// When the batch becomes due by age, if it holds anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|opened| opened + self.limits.interval)
    }

    /// Empties the batch after it was written, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.opened_at = None;
        self.last_added = None;
        self.lines.clear();
    }
}

/// A batch's size: lines and bytes, whichever it reaches first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub lines: usize,
    pub bytes: usize,
}

impl Size {
    fn doubled(self, ceiling: Size) -> Size {
        Size {
            lines: (self.lines * 2).min(ceiling.lines),
            bytes: (self.bytes * 2).min(ceiling.bytes),
        }
    }

    fn halved(self, floor: Size) -> Size {
        Size {
            lines: (self.lines / 2).max(floor.lines),
            bytes: (self.bytes / 2).max(floor.bytes),
        }
    }

    fn min(self, other: Size) -> Size {
        Size {
            lines: self.lines.min(other.lines),
            bytes: self.bytes.min(other.bytes),
        }
    }
}

/// What a write taught the [`Sizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resized {
    /// Bigger batches were faster: try twice the size.
    Grew(Size),
    /// A bigger batch was no faster, or a write took too long: back to a smaller size.
    Shrank(Size),
}

/// A bigger batch is kept when at least this share of its growth shows in the rate: a
/// doubled batch must store lines 1.5 times as fast.
const GROWTH_PAYS: f64 = 0.5;
/// A write that takes longer is too big, whatever it gains: it holds records past many
/// keep-alives and keeps a stop waiting.
const SLOW_WRITE: Duration = Duration::from_secs(5);
/// Growing is tried only from writes at least this long. InfluxDB 3's writes take about a
/// second (its log flush); InfluxDB 1.x on a local disk stores 5,000 lines in well under this,
/// so there the batch stays at its start and holds no more records than it needs.
const MIN_WRITE_TO_GROW: Duration = Duration::from_millis(200);
/// Full writes at a size before growing is tried again, after it did not pay.
const RETRY_GROWTH_AFTER: u32 = 100;

/// Sizes batches to the server, from `start` up to `ceiling`: a batch twice the size is kept
/// while it stores lines at least 1.5 times as fast ([`GROWTH_PAYS`]), which is what a write
/// whose time stays flat does; a bigger one that is not faster, a write slower than [`SLOW_WRITE`]
/// and a body the server finds too large (413) bring it back down.
///
/// InfluxDB 3 answers a write once its write-ahead log is flushed (every second by default),
/// so one writer thread stores about one batch a second whatever its size: 5,000-line batches
/// drain 5,000 records a second, 50,000-line ones ten times as many. InfluxDB 1.x takes a time
/// in proportion to the lines, so bigger batches store no faster there, and the size stays
/// where it started.
///
/// Only writes of a full batch are measured (a batch written for its age or at the tail of a
/// backlog says nothing about the rate), and the first one at each size is not: it may have
/// met a log flush already under way. The best of the next two is the size's rate, so one
/// write slowed by something else does not decide.
#[derive(Debug, Clone)]
pub struct Sizer {
    start: Size,
    ceiling: Size,
    current: Size,
    /// The rate (lines per second) measured at the size before the current one, and that
    /// size's lines, while growing.
    reference: Option<(f64, usize)>,
    /// Full writes seen at the current size.
    seen: u32,
    /// The best rate of the writes measured at the current size so far.
    best: f64,
    /// Full writes still to see before growing is tried again.
    cooldown: u32,
    /// Whether the server was found to answer each write after its next log flush
    /// ([`Sizer::flushes_per_write`]).
    flushing: bool,
}

impl Sizer {
    pub fn new(start: Size, ceiling: Size) -> Sizer {
        let start = start.min(ceiling);
        Sizer {
            start,
            ceiling,
            current: start,
            reference: None,
            seen: 0,
            best: 0.0,
            cooldown: 0,
            flushing: false,
        }
    }

    /// The server answers each write only after its next log flush (InfluxDB 3, every second
    /// by default), so one writer stores a batch a second whatever its size: the batch size
    /// is the rate. Batches go to the ceiling at once, instead of through the nine or so
    /// one-second writes doubling takes to get there (a third of a 400,000-record drain); a
    /// slow write or a body too large still brings them down. Only the first call resizes.
    pub fn flushes_per_write(&mut self) -> Option<Resized> {
        if self.flushing {
            return None;
        }
        self.flushing = true;
        if self.current.lines >= self.ceiling.lines || self.current.bytes >= self.ceiling.bytes {
            return None;
        }
        self.current = self.ceiling;
        self.reference = None;
        self.seen = 0;
        self.best = 0.0;
        Some(Resized::Grew(self.current))
    }

    /// The size batches are written at now.
    pub fn current(&self) -> Size {
        self.current
    }

    /// A write of a full batch of `lines` lines took `took`.
    pub fn full_write(&mut self, lines: usize, took: Duration) -> Option<Resized> {
        if took >= SLOW_WRITE && self.current != self.start {
            return Some(self.back_off());
        }
        if self.cooldown > 0 {
            self.cooldown -= 1;
            return None;
        }
        self.seen += 1;
        let rate = lines as f64 / took.as_secs_f64().max(1e-6);
        // The first write at a size is not measured; the size's rate is the best of the next
        // two, so a write slowed by something else (a busy disk, a neighbour's build) does not
        // make the next size look faster.
        if self.seen == 1 {
            return None;
        }
        if self.seen == 2 {
            self.best = rate;
            return None;
        }
        let rate = rate.max(self.best);
        let pays = |(reference, reference_lines): (f64, usize)| {
            let growth = lines as f64 / reference_lines as f64 - 1.0;
            rate >= reference * (1.0 + growth * GROWTH_PAYS)
        };
        match self.reference {
            Some(reference) if !pays(reference) => Some(self.back_off()),
            // Not worth a try: a write this short has no fixed wait for a bigger batch to
            // share, and a bigger batch holds more records.
            None if took < MIN_WRITE_TO_GROW => None,
            // At either limit: past the byte ceiling more lines would be the same batch.
            _ if self.current.lines >= self.ceiling.lines
                || self.current.bytes >= self.ceiling.bytes =>
            {
                self.reference = None;
                None
            }
            _ => {
                self.reference = Some((rate, lines));
                self.current = self.current.doubled(self.ceiling);
                self.seen = 0;
                self.best = 0.0;
                Some(Resized::Grew(self.current))
            }
        }
    }

    /// The server refused a body of `lines` lines and `bytes` bytes as too large: no batch
    /// grows to that size again.
    pub fn too_large(&mut self, lines: usize, bytes: usize) -> Option<Resized> {
        let limit = Size {
            lines: (lines / 2).max(1),
            bytes: (bytes / 2).max(1),
        };
        self.ceiling = self.ceiling.min(limit);
        self.start = self.start.min(self.ceiling);
        if self.current.lines <= self.ceiling.lines && self.current.bytes <= self.ceiling.bytes {
            return None;
        }
        self.current = self.current.min(self.ceiling);
        self.reference = None;
        self.seen = 0;
        Some(Resized::Shrank(self.current))
    }

    fn back_off(&mut self) -> Resized {
        self.current = self.current.halved(self.start);
        self.reference = None;
        self.seen = 0;
        self.best = 0.0;
        self.cooldown = RETRY_GROWTH_AFTER;
        Resized::Shrank(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(lines: &[&str]) -> Lines<usize> {
        let mut chunk = Lines::default();
        for (i, line) in lines.iter().enumerate() {
            chunk
                .push(i, |_, buf| {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        chunk
    }

    const LIMITS: Limits = Limits {
        max_lines: 4,
        max_bytes: 30,
        interval: Duration::from_secs(1),
        linger: Duration::from_millis(20),
    };

    #[test]
    fn bodies_of_any_run_of_records() {
        let lines = chunk(&["a", "bb", "ccc"]);
        assert_eq!(lines.body(0..3), b"a\nbb\nccc\n");
        assert_eq!(lines.body(1..2), b"bb\n");
        assert_eq!(lines.body(2..3), b"ccc\n");
        assert_eq!(lines.body(1..1), b"");
    }

    #[test]
    fn rewrite_replaces_chosen_lines_and_keeps_offsets() {
        let mut lines = chunk(&["a", "bb", "ccc", "d"]);
        let n = lines.rewrite(|index, line, out| {
            if index % 2 == 1 {
                out.extend_from_slice(b"<");
                out.extend_from_slice(line);
                true
            } else {
                false
            }
        });
        assert_eq!(n, 2);
        assert_eq!(lines.body(0..4), b"a\n<bb\nccc\n<d\n");
        assert_eq!(lines.body(1..2), b"<bb\n");
        assert_eq!(lines.body(2..3), b"ccc\n");
        assert_eq!(lines.rewrite(|_, _, _| false), 0);
        assert_eq!(lines.body(3..4), b"<d\n");
        let n = lines.rewrite(|index, _, out| {
            if index == 0 {
                out.extend_from_slice(b"first\n");
            }
            index == 0
        });
        assert_eq!(n, 1);
        assert_eq!(lines.body(0..4), b"first\n<bb\nccc\n<d\n");
        assert_eq!(lines.body(0..1), b"first\n");
        assert_eq!(lines.body(1..2), b"<bb\n");
    }

    #[test]
    fn failed_encode_hands_the_record_back() {
        let mut lines: Lines<&str> = Lines::default();
        let err = lines.push("rec", |_, _| Err("bad")).unwrap_err();
        assert_eq!(err, ("rec", "bad"));
        assert!(lines.is_empty());
    }

    #[test]
    fn append_keeps_offsets_and_empties_the_chunk() {
        let mut batch = Batch::new(LIMITS);
        let now = Instant::now();
        let mut first = chunk(&["a", "b"]);
        batch.add(&mut first, now);
        assert!(first.is_empty());
        batch.add(&mut chunk(&["c"]), now);
        assert_eq!(batch.lines.body(0..3), b"a\nb\nc\n");
        assert_eq!(batch.lines.body(2..3), b"c\n");
        assert_eq!(batch.lines.items(), &[0, 1, 0]);
    }

    #[test]
    fn flush_decisions() {
        let t0 = Instant::now();
        let mut batch = Batch::new(LIMITS);
        assert_eq!(
            batch.flush_now(t0 + Duration::from_secs(9)),
            None,
            "an empty batch is never due"
        );
        assert_eq!(
            batch.flush_before(&chunk(&["a"; 9])),
            None,
            "an empty batch takes any chunk"
        );
        batch.add(&mut chunk(&["a", "b", "c"]), t0);
        assert_eq!(batch.flush_now(t0), None);
        assert_eq!(batch.flush_now(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            batch.flush_now(t0 + Duration::from_secs(1)),
            Some(Flush::Interval)
        );
        assert_eq!(batch.flush_before(&chunk(&["d", "e"])), Some(Flush::Lines));
        assert_eq!(
            batch.flush_before(&chunk(&["0123456789012345678901234567"])),
            Some(Flush::Bytes)
        );
        batch.add(&mut chunk(&["d"]), t0 + Duration::from_millis(500));
        assert_eq!(
            batch.deadline(),
            Some(t0 + Duration::from_secs(1)),
            "age counts from the first line"
        );
        assert_eq!(batch.flush_now(t0), Some(Flush::Lines));
        assert_eq!(batch.lines.len(), 4);
        batch.clear();
        assert!(batch.lines.is_empty());
        assert_eq!(batch.deadline(), None);
        batch.add(&mut chunk(&["012345678901234567890123456789"]), t0);
        assert_eq!(batch.flush_now(t0), Some(Flush::Bytes));
    }

    #[test]
    fn a_quiet_batch_is_written_after_the_linger_once_caught_up() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut batch = Batch::new(LIMITS);
        assert_eq!(batch.due(t0 + ms(999), true), None, "empty");
        assert_eq!(batch.wake_at(t0, true), None, "empty: nothing to wake for");
        batch.add(&mut chunk(&["a"]), t0);
        assert_eq!(batch.due(t0 + ms(19), true), None, "still lingering");
        assert_eq!(batch.due(t0 + ms(20), true), Some(Flush::Quiet));
        assert_eq!(batch.wake_at(t0, true), Some(t0 + ms(20)));
        // Behind: no quiet write, only the usual limits; a look again after a linger.
        assert_eq!(batch.due(t0 + ms(500), false), None);
        assert_eq!(batch.wake_at(t0 + ms(500), false), Some(t0 + ms(520)));
        assert_eq!(batch.wake_at(t0 + ms(990), false), Some(t0 + ms(1000)));
        assert_eq!(batch.due(t0 + ms(1000), false), Some(Flush::Interval));
        // Each new chunk restarts the linger.
        batch.add(&mut chunk(&["b"]), t0 + ms(15));
        assert_eq!(batch.due(t0 + ms(30), true), None);
        assert_eq!(batch.due(t0 + ms(35), true), Some(Flush::Quiet));
    }

    #[test]
    fn quiet_writes_leave_the_database_rest_as_long_as_the_last_write_took() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut batch = Batch::new(LIMITS);
        // The last write took 100 ms and ended at t0: no quiet write before t0 + 100 ms.
        batch.written(t0 - ms(100), t0);
        batch.add(&mut chunk(&["a"]), t0);
        assert_eq!(batch.due(t0 + ms(50), true), None);
        assert_eq!(batch.wake_at(t0, true), Some(t0 + ms(100)));
        assert_eq!(batch.due(t0 + ms(100), true), Some(Flush::Quiet));
        // Full batches are not paced: they are what load looks like.
        batch.add(&mut chunk(&["b", "c", "d"]), t0 + ms(1));
        assert_eq!(batch.due(t0 + ms(1), true), Some(Flush::Lines));
        // A fast write: the linger is what waits.
        batch.clear();
        batch.written(t0, t0 + ms(2));
        batch.add(&mut chunk(&["e"]), t0 + ms(3));
        assert_eq!(batch.quiet_at(), Some(t0 + ms(23)));
    }

    const START: Size = Size {
        lines: 5_000,
        bytes: 1 << 20,
    };
    const CEILING: Size = Size {
        lines: 100_000,
        bytes: 8 << 20,
    };

    /// Feeds full writes whose time `took(lines)` gives until the size stops changing, and
    /// returns the sizes it went through.
    fn settle(sizer: &mut Sizer, took: impl Fn(usize) -> Duration) -> Vec<usize> {
        let mut sizes = vec![sizer.current().lines];
        for _ in 0..50 {
            let lines = sizer.current().lines;
            if sizer.full_write(lines, took(lines)).is_some() {
                sizes.push(sizer.current().lines);
            }
        }
        sizes
    }

    #[test]
    fn a_server_whose_writes_take_a_second_whatever_their_size_gets_the_ceiling() {
        // InfluxDB 3: each write waits for the next WAL flush.
        let mut sizer = Sizer::new(START, CEILING);
        let sizes = settle(&mut sizer, |_| Duration::from_millis(1_000));
        // The bytes reach 8 MiB at 40,000 lines: the batch is as big as it may be.
        assert_eq!(sizes, [5_000, 10_000, 20_000, 40_000]);
        assert_eq!(
            sizer.current(),
            Size {
                lines: 40_000,
                bytes: 8 << 20
            }
        );
    }

    #[test]
    fn a_server_that_answers_after_its_log_flush_starts_at_the_ceiling_and_still_backs_off() {
        let mut sizer = Sizer::new(START, CEILING);
        assert_eq!(sizer.flushes_per_write(), Some(Resized::Grew(CEILING)));
        assert_eq!(sizer.flushes_per_write(), None, "once");
        // Writes of a second keep it there.
        assert_eq!(settle(&mut sizer, |_| Duration::from_secs(1)), [100_000]);
        // A write slower than SLOW_WRITE halves it, as from any other size.
        assert_eq!(
            sizer.full_write(40_000, SLOW_WRITE),
            Some(Resized::Shrank(Size {
                lines: 50_000,
                bytes: 4 << 20
            }))
        );
        // A body the server found too large before caps the ceiling it goes to.
        let mut capped = Sizer::new(START, CEILING);
        capped.too_large(40_000, 8 << 20);
        assert_eq!(
            capped.flushes_per_write(),
            Some(Resized::Grew(Size {
                lines: 20_000,
                bytes: 4 << 20
            }))
        );
        // Already at the ceiling: nothing changes.
        let mut small = Sizer::new(START, START);
        assert_eq!(small.flushes_per_write(), None);
        assert_eq!(small.current(), START);
    }

    #[test]
    fn a_server_whose_writes_take_time_in_proportion_stays_at_the_start() {
        // InfluxDB 1.x on local disk: 60,000 lines a second whatever the batch. Writes of
        // 83 ms: not even tried.
        let mut fast = Sizer::new(START, CEILING);
        let sizes = settle(&mut fast, |lines| {
            Duration::from_secs_f64(lines as f64 / 60_000.0)
        });
        assert_eq!(sizes, [5_000]);
        // A slow one, 10,000 lines a second: writes of half a second, so a doubled batch is
        // tried, found no faster, and given up.
        let mut sizer = Sizer::new(START, CEILING);
        let sizes = settle(&mut sizer, |lines| {
            Duration::from_secs_f64(lines as f64 / 10_000.0)
        });
        assert_eq!(sizes, [5_000, 10_000, 5_000], "tried once, then back");
        // After RETRY_GROWTH_AFTER full writes it tries again, and comes back again.
        for _ in 0..RETRY_GROWTH_AFTER - 50 {
            assert_eq!(sizer.full_write(5_000, Duration::from_millis(500)), None);
        }
        let sizes = settle(&mut sizer, |lines| {
            Duration::from_secs_f64(lines as f64 / 10_000.0)
        });
        assert_eq!(sizes, [5_000, 10_000, 5_000]);
    }

    #[test]
    fn growth_stops_where_writes_start_to_take_longer() {
        // Flat up to 20,000 lines, in proportion beyond.
        let mut sizer = Sizer::new(START, CEILING);
        let sizes = settle(&mut sizer, |lines| {
            Duration::from_secs_f64((lines as f64 / 20_000.0).max(1.0))
        });
        assert_eq!(sizes, [5_000, 10_000, 20_000, 40_000, 20_000]);
    }

    #[test]
    fn the_first_write_at_a_size_is_not_measured_and_the_best_of_the_next_two_counts() {
        let mut sizer = Sizer::new(START, CEILING);
        // A lucky 10 ms first write, then one slowed by a neighbour, then a normal one.
        assert_eq!(sizer.full_write(5_000, Duration::from_millis(10)), None);
        assert_eq!(sizer.full_write(5_000, Duration::from_secs(2)), None);
        assert_eq!(
            sizer.full_write(5_000, Duration::from_secs(1)),
            Some(Resized::Grew(Size {
                lines: 10_000,
                bytes: 2 << 20
            }))
        );
        // At 10,000: the best of the two measured writes (1 s, not 3 s) shows the gain.
        assert_eq!(sizer.full_write(10_000, Duration::from_millis(10)), None);
        assert_eq!(sizer.full_write(10_000, Duration::from_secs(1)), None);
        assert_eq!(
            sizer.full_write(10_000, Duration::from_secs(3)),
            Some(Resized::Grew(Size {
                lines: 20_000,
                bytes: 4 << 20
            }))
        );
    }

    #[test]
    fn one_slow_write_at_the_start_size_does_not_make_growth_look_paying() {
        // A server storing 10,000 lines a second, one write at the start slowed fivefold.
        let mut sizer = Sizer::new(START, CEILING);
        let at_rate = |lines: usize| Duration::from_secs_f64(lines as f64 / 10_000.0);
        sizer.full_write(5_000, at_rate(5_000));
        sizer.full_write(5_000, at_rate(5_000) * 5);
        assert!(matches!(
            sizer.full_write(5_000, at_rate(5_000)),
            Some(Resized::Grew(_))
        ));
        sizer.full_write(10_000, at_rate(10_000));
        sizer.full_write(10_000, at_rate(10_000));
        assert!(matches!(
            sizer.full_write(10_000, at_rate(10_000)),
            Some(Resized::Shrank(Size { lines: 5_000, .. }))
        ));
    }

    #[test]
    fn a_slow_write_halves_the_size_but_never_below_the_start() {
        let mut sizer = Sizer::new(START, CEILING);
        settle(&mut sizer, |_| Duration::from_secs(1));
        assert_eq!(
            sizer.full_write(40_000, Duration::from_secs(6)),
            Some(Resized::Shrank(Size {
                lines: 20_000,
                bytes: 4 << 20
            }))
        );
        let mut small = Sizer::new(START, CEILING);
        assert_eq!(small.full_write(5_000, Duration::from_secs(9)), None);
        assert_eq!(small.current(), START);
    }

    #[test]
    fn a_body_too_large_caps_every_later_size() {
        let mut sizer = Sizer::new(START, CEILING);
        settle(&mut sizer, |_| Duration::from_secs(1));
        assert_eq!(
            sizer.too_large(40_000, 8 << 20),
            Some(Resized::Shrank(Size {
                lines: 20_000,
                bytes: 4 << 20
            }))
        );
        // It never grows past that again.
        settle(&mut sizer, |_| Duration::from_secs(1));
        assert!(sizer.current().lines <= 20_000);
        // Below the start, the start comes down too.
        let mut tight = Sizer::new(START, CEILING);
        tight.too_large(1_000, 200_000);
        assert_eq!(
            tight.current(),
            Size {
                lines: 500,
                bytes: 100_000
            }
        );
    }

    #[test]
    fn a_start_above_the_ceiling_is_the_ceiling() {
        let sizer = Sizer::new(
            START,
            Size {
                lines: 500,
                bytes: 8 << 20,
            },
        );
        assert_eq!(
            sizer.current(),
            Size {
                lines: 500,
                bytes: 1 << 20
            }
        );
    }

    #[test]
    fn growth_stops_at_the_byte_ceiling_too() {
        // 230-byte lines: 8 MiB holds about 36,000 of them, long before 100,000 lines. Before,
        // the lines alone went on doubling, the batches stayed the same, and a write a little
        // slow by chance halved the bytes as well.
        let mut sizer = Sizer::new(START, CEILING);
        let sizes = settle(&mut sizer, |_| Duration::from_secs(1));
        assert_eq!(*sizes.last().unwrap(), 40_000);
        assert_eq!(sizer.current().bytes, 8 << 20);
        // More full writes at that size change nothing: no doubling of the lines alone.
        for _ in 0..20 {
            assert_eq!(sizer.full_write(36_000, Duration::from_millis(1_030)), None);
        }
    }
}
