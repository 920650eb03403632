//! Measures the record → line-protocol conversion on a typical record (3 tags, 5 fields, one
//! of them a 100-byte message, an RFC 3339 time): nanoseconds and heap allocations per record.
//!
//! Run with `cargo run --release --example encode_bench [N]` (N records, default 1000000).
//! Allocations are counted by a wrapper around the system allocator installed for this
//! program only, so the figure is exact, not sampled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use collector::json::Scanner;
use collector::record::{Encoder, Origin, Unsigned};

struct CountingAllocator;

static N_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        N_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        N_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        N_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A record as the Transfer client (Go's encoding/json) publishes it: compact, map keys
/// sorted. The message is 100 bytes.
const SORTED: &str = r#"{"tags":{"host":"web-03","level":"info","service":"checkout"},"fields":{"bytes":5120,"cached":false,"duration_ms":12.5,"message":"order 18231 paid by card ending 4242 after 2 retries; receipt mailed to the customer, all good!!!!!!","status":200},"time":"2022-08-01T12:34:56.123456789+08:00"}"#;

/// The same record with its keys in no particular order, as other producers may send it.
const UNSORTED: &str = r#"{"tags":{"service":"checkout","host":"web-03","level":"info"},"fields":{"message":"order 18231 paid by card ending 4242 after 2 retries; receipt mailed to the customer, all good!!!!!!","duration_ms":12.5,"status":200,"bytes":5120,"cached":false},"time":"2022-08-01T12:34:56.123456789+08:00"}"#;

/// Lines per batch before the buffer is cleared, as the writer would after a flush.
const BATCH_LINES: u64 = 1000;

fn main() {
    let n_records: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("N must be a whole number"),
        None => 1_000_000,
    };
    let encoder = Encoder::new("logs", Unsigned::Allowed).expect("measurement is valid");
    let mut line = Vec::new();
    encoder
        .encode(SORTED.as_bytes(), origin(1), &mut line)
        .unwrap();
    print!("line: {}", String::from_utf8_lossy(&line));
    for (name, payload) in [("keys sorted", SORTED), ("keys unsorted", UNSORTED)] {
        let (ns_per_record, allocations_per_record) = measure(&encoder, payload, n_records);
        println!(
            "{name}: {n_records} records of {} bytes: {ns_per_record:.1} ns/record, \
             {allocations_per_record:.2} allocations/record",
            payload.len()
        );
    }
    // The share of the JSON scanner alone: checking the whole payload and finding its values.
    let started = Instant::now();
    for _ in 0..n_records {
        let mut scanner = Scanner::new(black_box(SORTED));
        let raw = scanner.value().expect("the typical record is json");
        black_box(raw);
    }
    println!(
        "of which json scanning: {:.1} ns/record",
        started.elapsed().as_nanos() as f64 / n_records as f64
    );
}

/// Record `sequence` of a fresh stream, as the worker passes it from the `$JS.ACK` subject.
fn origin(sequence: u64) -> Origin {
    Origin {
        stream_sequence: black_box(sequence),
        timestamp_ns: 0,
    }
}

/// Encodes `payload` `n_records` times into a batch buffer cleared every `BATCH_LINES`
/// lines, as the writer clears it after a flush; returns ns and allocations per record.
fn measure(encoder: &Encoder, payload: &str, n_records: u64) -> (f64, f64) {
    let mut out = Vec::with_capacity(512 * BATCH_LINES as usize);
    // Warm-up: fills caches and checks the record is accepted.
    for i in 0..10_000 {
        encoder
            .encode(black_box(payload.as_bytes()), origin(i + 1), &mut out)
            .expect("the typical record is accepted");
        out.clear();
    }
    let allocations_before = N_ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for i in 0..n_records {
        encoder
            .encode(black_box(payload.as_bytes()), origin(i + 1), &mut out)
            .expect("the typical record is accepted");
        if i % BATCH_LINES == BATCH_LINES - 1 {
            out.clear();
        }
    }
    let elapsed = started.elapsed();
    let n_allocations = N_ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    black_box(&out);
    (
        elapsed.as_nanos() as f64 / n_records as f64,
        n_allocations as f64 / n_records as f64,
    )
}
