//! The admin commands — `collector streams|publish|check|dlq` — each run to completion on the
//! main thread.
//!
//! A command loads the configuration, connects, does its work through [`jetstream`] and
//! [`influx`] (the only modules that talk to NATS and InfluxDB), prints its results on stdout
//! and its problems on stderr, and returns the exit code: 0 done, 1 refused or failed. A bad
//! configuration is an [`Error`] that `main` prints and turns into exit code 2. Nothing here
//! prints a secret: URLs are shown without their credentials, and errors from the edges
//! never carry them.

use std::process::ExitCode;

use crate::cli::{Args, Command};
use crate::config::Config;
use crate::error::Result;
use crate::jetstream::{self, JetStream, Reconnects};

mod check;
mod dlq;
mod output;
mod publish;
mod streams;

/// Runs every command but `run`.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.command == Command::Check {
        return Ok(check::check(&args.config));
    }
    let config = Config::load(&args.config)?;
    // Progress lines would mix with the output; warnings (a lost NATS connection) still show.
    crate::logging::init(
        config.log_level.min(log::LevelFilter::Warn),
        config.log_format,
    );
    config.log_warnings();
    let js = JetStream::new(jetstream::connect(
        &config.nats,
        "collector-admin",
        &Reconnects::default(),
    )?);
    let code = match args.command {
        Command::Run | Command::Check => unreachable!("handled by the caller and above"),
        Command::StreamsList { format } => streams::list(&config, &js, format)?,
        Command::StreamsSet {
            measurement,
            description,
        } => streams::set(&config, &js, &measurement, description)?,
        Command::StreamsRemove {
            measurement,
            waiting,
        } => streams::remove(&config, &js, &measurement, waiting)?,
        Command::Publish(publish) => publish::publish(&config, &js, &publish)?,
        Command::DlqList {
            measurement,
            format,
        } => dlq::list(&config, &js, measurement.as_deref(), format)?,
        Command::DlqReplay { measurement } => dlq::replay(&config, &js, measurement.as_deref())?,
    };
    // Sends anything still buffered; the process ends right after.
    let _ = jetstream::flush(js.connection());
    Ok(code)
}

/// A refusal or a failure already explained on stderr.
fn failure() -> ExitCode {
    ExitCode::from(1)
}
