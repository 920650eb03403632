//! The `log` and `http` sections: how the collector tells about itself (`log.level`,
//! `log.format`, and `http.listen` for `/metrics`, `/healthz` and `/readyz`). Validated by the
//! parent module on the main thread at start.

use std::net::SocketAddr;

use super::{defaults, present, RawHttp, RawLog};
use crate::error::{Error, Result};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2024-01-01T00:00:00Z [INFO] message`, for people and journald.
    Text,
    /// One JSON object per line with `time`, `level`, `target`, `thread` and `message`, for
    /// log shippers.
    Json,
}

/// Validates the `log` section: the level and the format.
pub(super) fn log_settings(raw: RawLog) -> Result<(log::LevelFilter, LogFormat)> {
    let log_level = match present(raw.level).as_deref() {
        None => defaults::LOG_LEVEL,
        Some(text) => text.parse().map_err(|_| {
            Error::config(
                "log.level",
                format!("`{text}` is not one of error, warn, info, debug, trace"),
            )
        })?,
    };
    let log_format = match present(raw.format).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(Error::config(
                "log.format",
                format!("`{other}` is not text or json"),
            ))
        }
    };
    Ok((log_level, log_format))
}

/// Validates the `http` section: where to listen, if anywhere.
pub(super) fn http_listen(raw: RawHttp) -> Result<Option<SocketAddr>> {
    Ok(match present(raw.listen) {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
            Error::config(
                "http.listen",
                format!("`{text}` is not IP:PORT, e.g. 127.0.0.1:9090 or 0.0.0.0:9090"),
            )
        })?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::refusal;
    use super::*;

    #[test]
    fn the_sections_take_their_defaults_alone() {
        assert_eq!(
            log_settings(RawLog::default()).unwrap(),
            (defaults::LOG_LEVEL, LogFormat::Text)
        );
        assert_eq!(http_listen(RawHttp::default()).unwrap(), None);
    }

    #[test]
    fn the_sections_refuse_naming_their_keys() {
        let (key, _) = refusal(log_settings(RawLog {
            format: Some("xml".into()),
            ..RawLog::default()
        }));
        assert_eq!(key, "log.format");
        let (key, _) = refusal(http_listen(RawHttp {
            listen: Some("9090".into()),
        }));
        assert_eq!(key, "http.listen");
    }
}
