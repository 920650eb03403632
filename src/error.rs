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

/// Whether waiting can mend a failure at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A server or the cluster is not there yet (unreachable, no leader, JetStream not
    /// answering): wait and try again.
    Wait,
    /// Only a person can fix it: the configuration, a credential, a certificate.
    Never,
}

/// JetStream error codes that say the cluster cannot answer yet: incomplete results (10004),
/// no peers for placement while nodes are down (10005), the system temporarily unavailable
/// (10008), no leader to handle the request (10009).
const JETSTREAM_SETTLING: [u32; 4] = [10004, 10005, 10008, 10009];
/// Replicas above 1 asked of a server that is not clustered: `nats.replicas` must change.
const JETSTREAM_NOT_CLUSTERED: u32 = 10074;

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

    /// Whether a start-up step that failed with this error is worth trying again: NATS
    /// unreachable, a request timed out or found no responders, JetStream unavailable or
    /// without a leader all pass; a bad configuration, refused credentials or a refused
    /// certificate do not (`jetstream::connect` gives those the kind `PermissionDenied`).
    pub fn retry(&self) -> Retry {
        match self {
            Error::Nats { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => Retry::Never,
                _ => Retry::Wait,
            },
            Error::JetStream { code, err_code, .. } => {
                if *err_code == JETSTREAM_NOT_CLUSTERED {
                    Retry::Never
                } else if *code >= 500 || JETSTREAM_SETTLING.contains(err_code) {
                    Retry::Wait
                } else {
                    Retry::Never
                }
            }
            Error::ConfigRead { .. }
            | Error::Config { .. }
            | Error::Usage(_)
            | Error::Influx { .. }
            | Error::Thread { .. } => Retry::Never,
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

/// `text` as one line of at most `max` bytes (cut at a character boundary, then marked with
/// `…`): reasons go into log lines and dead-letter headers, where a line break or a
/// megabyte of answer would do harm.
pub fn one_line(text: &str, max: usize) -> String {
    let mut line: String = text.replace(['\r', '\n'], " ");
    if line.len() > max {
        let mut cut = max;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_one_bounded_line_cut_at_a_character() {
        assert_eq!(one_line("a\r\nb", 10), "a  b");
        assert_eq!(one_line("ééé", 3), "é…");
        assert_eq!(one_line("abc", 3), "abc");
    }

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

    #[test]
    fn start_up_waits_for_what_time_mends() {
        let nats = |kind: io::ErrorKind, text: &str| {
            Error::nats("connect to nats://n1:4222", io::Error::new(kind, text))
        };
        let jetstream = |code: u16, err_code: u32, description: &str| Error::JetStream {
            what: "stream info KV_beta_logs".into(),
            code,
            err_code,
            description: description.into(),
        };
        let waits = [
            // Nothing listening yet, a node restarting, a request lost in an election.
            nats(io::ErrorKind::ConnectionRefused, "refused"),
            nats(io::ErrorKind::ConnectionReset, "reset"),
            nats(io::ErrorKind::TimedOut, "next_timeout: timed out"),
            nats(io::ErrorKind::NotFound, "no responders"),
            nats(io::ErrorKind::Other, "failed to lookup address"),
            // JetStream there but not ready: not available, no leader, peers missing.
            jetstream(503, 10008, "JetStream system temporarily unavailable"),
            jetstream(503, 10039, "jetstream not enabled for account"),
            jetstream(500, 10009, "JetStream cluster can not handle request"),
            jetstream(400, 10005, "no suitable peers for placement"),
            jetstream(500, 10004, "incomplete results"),
        ];
        for e in waits {
            assert_eq!(e.retry(), Retry::Wait, "{e}");
        }
        // What only a person fixes.
        let nevers = [
            nats(
                io::ErrorKind::PermissionDenied,
                "authorization violation: ...",
            ),
            nats(io::ErrorKind::PermissionDenied, "TLS: unknown CA"),
            jetstream(400, 10058, "stream name already in use"),
            jetstream(
                500,
                10074,
                "replicas > 1 not supported in non-clustered mode",
            ),
            Error::config("nats.hosts", "must list a server"),
            Error::Influx {
                what: "tls".into(),
                problem: "unknown CA".into(),
            },
        ];
        for e in nevers {
            assert_eq!(e.retry(), Retry::Never, "{e}");
        }
    }
}
