//! The `collector` binary: parses the command line, then either loads the configuration, sets
//! up logging and runs the service, or runs an admin command (`streams`, `publish`, `check`,
//! `dlq`; see `admin`). Every failure a user can meet ends here as one line on stderr and an
//! exit code: 2 for a bad command line or configuration, 1 for anything else.

use std::process::ExitCode;

use collector::admin;
use collector::cli::{self, Args, Command, Parsed};
use collector::config::Config;
use collector::error::{Error, Result};
use collector::service;

/// The static build runs on mimalloc: musl's malloc made the collector cost 4.5 CPU-µs per
/// record instead of 2.5, since every record is several allocations made by the `nats`
/// client's reader thread and freed by the writer thread (docs/BENCHMARKS.md).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The static build's `memcpy` and `memmove`, in place of musl's, whose short copies cost
/// more than a third of its CPU (`collector::memcopy`). Only in optimised builds: unoptimised,
/// the copies inside might themselves become calls to `memcpy`.
#[cfg(all(target_env = "musl", target_arch = "x86_64", not(debug_assertions)))]
mod copies {
    /// # Safety
    /// As C's `memcpy`: `src` readable and `dst` writable for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        collector::memcopy::copy(dst, src, n);
        dst
    }

    /// # Safety
    /// As C's `memmove`: `src` readable and `dst` writable for `n` bytes; they may overlap.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        collector::memcopy::copy(dst, src, n);
        dst
    }
}

/// glibc's malloc setting for the release build (`mallopt(3)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc_malloc {
    use std::os::raw::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    const M_TRIM_THRESHOLD: c_int = -1;

    /// Every record is a few allocations made by the `nats` reader thread and freed by the
    /// writer a batch at a time. With glibc's defaults the writer's frees gave the top of the
    /// reader's heap back to the OS (the trim threshold follows the largest block freed: a
    /// worker's chunk, about 128 KiB), and the reader grew it again at once, with `mprotect`
    /// and a page fault per page, batch after batch (docs/BENCHMARKS.md). A heap now keeps up
    /// to 32 MiB free at its top, as glibc's own adjustment would allow after freeing a 16 MiB
    /// block. Setting it also fixes the size from which blocks are mapped on their own at its
    /// default, 128 KiB, so a large buffer freed is still given back at once.
    pub fn tune() {
        // SAFETY: `mallopt` sets one integer of glibc's allocator; called before any thread
        // is started.
        unsafe {
            mallopt(M_TRIM_THRESHOLD, 32 << 20);
        }
    }
}

/// The static build's allocator settings, set before any thread starts.
#[cfg(target_env = "musl")]
mod mimalloc_options {
    use libmimalloc_sys::{mi_option_set, mi_option_t};

    /// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in the vendored mimalloc.h;
    /// the crate names no constants for them.
    const ARENA_EAGER_COMMIT: mi_option_t = 4;
    const PURGE_DELAY: mi_option_t = 15;

    pub fn tune() {
        // SAFETY: sets two of mimalloc's options, plain integers it reads when it next asks
        // the OS for memory; no memory is touched.
        unsafe {
            // Committing whole arenas up front kept the peak RSS of a 1M drain at 52 MB
            // instead of 23.
            mi_option_set(ARENA_EAGER_COMMIT, 0);
            // Memory freed is given back to the OS half a second later. Records are allocated
            // by the `nats` reader thread and freed by the writer in bursts, and what a batch
            // gave back the reader soon faults in again, page by page: a 400,000-record drain
            // took about 28,000 minor faults at 100 ms, 17,000 at 500 ms and 12,000 at
            // mimalloc's default of 1 s. The delay is what holds the peak RSS over many
            // measurements: 400,000 records over 200 of them peaked at 31-41 MB at 1 s,
            // 28-38 MB at 500 ms and 30-37 MB at 100 ms (45-57 MB at 1 s on the pulls before
            // 8d925dd). Figures in docs/BENCHMARKS.md.
            mi_option_set(PURGE_DELAY, 500);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc_malloc::tune();
    #[cfg(target_env = "musl")]
    mimalloc_options::tune();
    match run() {
        Ok(code) => code,
        Err(Error::Usage(text)) => {
            eprintln!("{text}");
            ExitCode::from(2)
        }
        Err(e) => {
            // Logging may not be set up yet (a bad config): write the line ourselves.
            eprintln!("collector: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<ExitCode> {
    // Arguments that are not UTF-8 are read lossily rather than panicking: they can only be
    // a config path, and a wrong path is reported as such.
    let args = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let config_path = match cli::parse(args)? {
        Parsed::Help(topic) => {
            println!("{}", topic.usage());
            return Ok(ExitCode::SUCCESS);
        }
        Parsed::Version => {
            println!("collector {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        Parsed::Command(Args {
            config,
            command: Command::Run,
        }) => config,
        Parsed::Command(args) => return admin::run(args),
    };
    let config = Config::load(&config_path)?;
    collector::logging::init(config.log_level, config.log_format);
    config.log_warnings();
    let signals = service::signals()?;
    service::run(config, signals)?;
    Ok(ExitCode::SUCCESS)
}
