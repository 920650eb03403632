//! Logging set-up: `log.format: text` through simplelog, `log.format: json` through the small
//! [`JsonLogger`] here (simplelog has no JSON mode).
//!
//! Called once by `main` on the main thread after the configuration is loaded; every thread
//! then logs through the `log` macros to stderr, which systemd's journal and Kubernetes'
//! container log collect.
//!
//! Levels, as the service uses them: `error` — data at risk or an operator must act;
//! `warn` — something failed and was (or is being) recovered; `info` — lifecycle and
//! configuration changes; `debug` — per batch and per pull.

use crate::calendar::civil_from_days;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

/// Crates whose debug lines are per request and say nothing our own lines do not.
/// `ureq_proto` also dumps the raw request at trace level, `Authorization` header included:
/// it must stay quiet at every level.
const QUIET_TARGETS: &[&str] = &["ureq", "ureq_proto", "rustls", "tiny_http"];

/// Installs the process's logger. A second call does nothing.
pub fn init(level: LevelFilter, format: LogFormat) {
    match format {
        LogFormat::Text => {
            let mut config = simplelog::ConfigBuilder::new();
            config
                .set_time_format_rfc3339()
                .set_thread_level(LevelFilter::Off)
                .set_target_level(LevelFilter::Off);
            for target in QUIET_TARGETS {
                config.add_filter_ignore_str(target);
            }
            let _ = simplelog::TermLogger::init(
                level,
                config.build(),
                simplelog::TerminalMode::Stderr,
                simplelog::ColorChoice::Never,
            );
        }
        LogFormat::Json => {
            if log::set_boxed_logger(Box::new(JsonLogger { level })).is_ok() {
                log::set_max_level(level);
            }
        }
    }
}

/// Writes one JSON object per line to stderr:
/// `{"time":"2024-05-01T12:00:00.123456Z","level":"INFO","target":"collector::service","thread":"main","message":"..."}`.
pub struct JsonLogger {
    level: LevelFilter,
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level && !is_quiet(metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let thread = std::thread::current();
        let mut line = json_line(
            &rfc3339_utc(since_epoch.as_secs() as i64, since_epoch.subsec_micros()),
            record.level().as_str(),
            record.target(),
            thread.name().unwrap_or("unnamed"),
            &record.args().to_string(),
        );
        line.push('\n');
        // One write per line, so lines of different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn is_quiet(target: &str) -> bool {
    QUIET_TARGETS.iter().any(|quiet| {
        target
            .strip_prefix(quiet)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The JSON object of one log line, without the newline.
pub fn json_line(time: &str, level: &str, target: &str, thread: &str, message: &str) -> String {
    serde_json::json!({
        "time": time,
        "level": level,
        "target": target,
        "thread": thread,
        "message": message,
    })
    .to_string()
}

/// Formats a Unix time as RFC 3339 in UTC with microseconds: `1970-01-01T00:00:00.000000Z`.
pub fn rfc3339_utc(unix_seconds: i64, micros: u32) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unix_seconds: i64, micros: u32, expected: &str) {
        assert_eq!(
            rfc3339_utc(unix_seconds, micros),
            expected,
            "{unix_seconds}"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        check(0, 0, "1970-01-01T00:00:00.000000Z");
        check(951_782_400, 7, "2000-02-29T00:00:00.000007Z");
        check(1_659_312_000, 123_456, "2022-08-01T00:00:00.123456Z");
        check(1_709_251_199, 999_999, "2024-02-29T23:59:59.999999Z");
        check(4_102_444_800, 0, "2100-01-01T00:00:00.000000Z");
        check(-1, 0, "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn lines_are_one_json_object() {
        let line = json_line(
            "1970-01-01T00:00:00.000000Z",
            "WARN",
            "collector::writer",
            "writer",
            "say \"hi\"\nagain",
        );
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["target"], "collector::writer");
        assert_eq!(value["thread"], "writer");
        assert_eq!(value["message"], "say \"hi\"\nagain");
    }

    #[test]
    fn noisy_crates_are_quiet() {
        assert!(is_quiet("ureq"));
        assert!(is_quiet("ureq::unversioned::transport"));
        assert!(is_quiet("rustls::client"));
        assert!(is_quiet("ureq_proto::client"));
        assert!(!is_quiet("ureqx"));
        assert!(!is_quiet("collector::writer"));
    }
}
