//! The one error type of the service.
//!
//! Only start-up and infrastructure failures are `Error`s: a record that cannot be written is
//! a [`crate::record::RecordError`], which is dead-lettered and counted, never an `Error` that
//! stops anything. Messages are lowercase, name the thing that failed, and say what to do
//! where there is something to do, so `main` can print them as one line.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    ConfigRead { path: PathBuf, source: io::Error },
    /// A configuration key is missing or wrong; `key` is its dotted path.
    Config { key: String, problem: String },
    /// The command line is wrong; the text is the usage help to print.
    Usage(String),
    /// A NATS operation failed; `what` names the operation and the object it was for.
    Nats { what: String, source: io::Error },
    /// The JetStream API answered with an error.
    JetStream {
        what: String,
        code: u16,
        err_code: u32,
        description: String,
    },
    /// InfluxDB could not be reached or refused a request outside the write path.
    Influx { what: String, problem: String },
    /// A thread of the service could not be started or ended by a panic.
    Thread { name: String, problem: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(key: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Config {
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub fn nats(what: impl Into<String>, source: io::Error) -> Error {
        Error::Nats {
            what: what.into(),
            source,
        }
    }

    /// The process exit code for this error: 2 for what the user must fix in the
    /// configuration or the command line, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ConfigRead { .. } | Error::Config { .. } | Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConfigRead { path, source } => {
                write!(
                    f,
                    "cannot read config file {}: {source} (pass --config PATH)",
                    path.display()
                )
            }
            Error::Config { key, problem } => write!(f, "config key `{key}`: {problem}"),
            Error::Usage(text) => write!(f, "{text}"),
            Error::Nats { what, source } => write!(f, "nats: {what}: {source}"),
            Error::JetStream {
                what,
                code,
                err_code,
                description,
            } => {
                write!(
                    f,
                    "jetstream: {what}: {description} (code {code}, error code {err_code})"
                )
            }
            Error::Influx { what, problem } => write!(f, "influxdb: {what}: {problem}"),
            Error::Thread { name, problem } => write!(f, "thread {name}: {problem}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ConfigRead { source, .. } | Error::Nats { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key_and_exit_2() {
        let e = Error::config("nats.hosts", "must list at least one server");
        assert_eq!(
            e.to_string(),
            "config key `nats.hosts`: must list at least one server"
        );
        assert_eq!(e.exit_code(), 2);
        let e = Error::nats("connect to nats://127.0.0.1:1", io::Error::other("refused"));
        assert_eq!(e.exit_code(), 1);
    }
}
