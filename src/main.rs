//! The `collector` binary: parses the command line, loads the configuration, sets up logging,
//! and runs the service. Every failure a user can meet ends here as one line on stderr and an
//! exit code: 2 for a bad command line or configuration, 1 for anything else.

use std::path::PathBuf;
use std::process::ExitCode;

use collector::config::Config;
use collector::error::{Error, Result};
use collector::service;

const USAGE: &str = "\
usage: collector [--config PATH]

Collects log records from NATS JetStream into InfluxDB.

options:
  -c, --config PATH   configuration file (default: ./config/config.yml)
  -h, --help          print this help
  -V, --version       print the version";

fn main() -> ExitCode {
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
    let mut config_path = PathBuf::from("config/config.yml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            "-V" | "--version" => {
                println!("collector {}", env!("CARGO_PKG_VERSION"));
                return Ok(ExitCode::SUCCESS);
            }
            "-c" | "--config" => match args.next() {
                Some(path) => config_path = PathBuf::from(path),
                None => {
                    return Err(Error::Usage(format!(
                        "collector: --config needs a path\n\n{USAGE}"
                    )))
                }
            },
            other => match other.strip_prefix("--config=") {
                Some(path) => config_path = PathBuf::from(path),
                None => {
                    return Err(Error::Usage(format!(
                        "collector: unknown argument `{other}`\n\n{USAGE}"
                    )))
                }
            },
        }
    }
    let config = Config::load(&config_path)?;
    init_logging(config.log_level);
    let signals = service::signals()?;
    service::run(config, signals)?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        // The HTTP and TLS crates log every request at debug; our own debug lines say what
        // matters per batch.
        .add_filter_ignore_str("ureq")
        .add_filter_ignore_str("rustls")
        .build();
    let _ = simplelog::TermLogger::init(
        level,
        config,
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
}
