//! `collector check`: the configuration, NATS and InfluxDB checked one by one, one line per
//! check and a fix for each failure.

use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, InfluxApi, InfluxConfig, NatsAuth};
use crate::influx::{write_path, Influx, Probe, Server, WritePath};
use crate::jetstream::{self, bucket_name, JetStream, Reconnects, Surveyed};

use super::failure;

/// Counts the failed checks while printing one line per check.
#[derive(Default)]
struct Checks {
    n_failed: usize,
}

impl Checks {
    fn pass(&mut self, text: impl Display) {
        println!("✔ {text}");
    }

    fn fail(&mut self, problem: impl Display, fix: Option<&str>) {
        self.n_failed += 1;
        println!("✘ {problem}");
        if let Some(fix) = fix {
            println!("  fix: {fix}");
        }
    }

    fn probe(&mut self, prefix: &str, probe: Probe) -> bool {
        match probe {
            Probe::Passed(text) => {
                self.pass(format!("{prefix}{text}"));
                true
            }
            Probe::Failed { problem, fix } => {
                self.fail(format!("{prefix}{problem}"), Some(&fix));
                false
            }
        }
    }
}

pub(super) fn check(path: &Path) -> ExitCode {
    let mut checks = Checks::default();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            checks.fail(format!("config: {e}"), None);
            return ExitCode::from(e.exit_code());
        }
    };
    let influx = &config.influx;
    let target = match influx.api {
        InfluxApi::V1 => format!("v1 database `{}`", influx.target),
        InfluxApi::V3 => format!("v3 database `{}`", influx.target),
        InfluxApi::V2 => format!(
            "v2 org `{}` bucket `{}`",
            influx.org.as_deref().unwrap_or_default(),
            influx.target
        ),
    };
    let secrets = match config.secret_sources.is_empty() {
        true => String::new(),
        false => format!("; secrets: {}", config.secret_sources.join(", ")),
    };
    checks.pass(format!(
        "config {}: namespace `{}`, InfluxDB {target}{secrets}",
        path.display(),
        config.namespace
    ));
    for warning in &config.warnings {
        println!("⚠ {warning}");
    }

    let hosts = config.nats.hosts.join(", ");
    match jetstream::connect(&config.nats, "collector-check", &Reconnects::default()) {
        Err(e) => {
            let text = e.to_string();
            let fix = if e.exit_code() == 2 {
                None // a credential the configuration holds is unusable; the text names it
            } else if text.to_ascii_lowercase().contains("authorization") {
                Some("check the NATS credentials: nats.nkey, nats.token, nats.username/password or nats.creds")
            } else if text.contains("TLS: ") {
                Some("fix the server's certificate, or nats.tls (ca, cert, key) and nats.hosts")
            } else {
                Some("start nats-server, or correct nats.hosts")
            };
            checks.fail(text, fix);
        }
        Ok(conn) => {
            let auth = match &config.nats.auth {
                NatsAuth::None => "no credentials",
                NatsAuth::Nkey(_) => "nkey",
                NatsAuth::Token(_) => "token",
                NatsAuth::UserPassword { .. } => "username and password",
                NatsAuth::Creds(_) => "credentials file",
            };
            let tls = match config.nats.tls.is_some() || hosts.contains("tls://") {
                true => ", TLS",
                false => "",
            };
            checks.pass(format!("nats: connected to {hosts} ({auth}{tls})"));
            check_jetstream(&mut checks, &config, &JetStream::new(conn));
        }
    }

    let url = crate::config::without_credentials(&influx.url);
    let client = Influx::new(influx);
    let (ping, server) = client.probe_ping(influx);
    if checks.probe(&format!("influxdb {url}: "), ping) {
        match writes_api(influx, server) {
            Some(Said::Fine(text)) => checks.pass(format!("influxdb: {text}")),
            Some(Said::Warning(text)) => println!("⚠ influxdb: {text}"),
            None => {}
        }
        checks.probe("influxdb: ", client.probe_target(influx, server));
        checks.probe("influxdb: ", client.probe_write(influx, server));
    }

    match checks.n_failed {
        0 => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        n => {
            println!("{n} check(s) failed");
            failure()
        }
    }
}

/// A line of `check` that is no probe: fine, or worth a warning (not a failed check).
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Fine(String),
    Warning(String),
}

/// Which API writes will use, said against InfluxDB 3 only (against an earlier server the
/// configuration line names it). With `influx.api` unset they go through the v3 API to the
/// database named like the bucket (the namespace unless set); a v1 or v2 API written in the
/// configuration is kept, but InfluxDB 3 refuses a batch with a bad line whole there.
fn writes_api(config: &InfluxConfig, server: Server) -> Option<Said> {
    if server == Server::Earlier {
        return None;
    }
    let v3 = format!(
        "writes go through the v3 API (/api/v3/write_lp) to database `{}`",
        config.target
    );
    Some(match write_path(config, server) {
        WritePath::Configured => Said::Fine(v3),
        WritePath::SwitchedToV3 => Said::Fine(format!(
            "{v3}: influx.api is unset and the server is InfluxDB 3"
        )),
        WritePath::Diagnosed(api) => {
            let (name, refused) = match api {
                InfluxApi::V1 => ("v1", "naming only its first bad line"),
                _ => ("v2", "without naming it"),
            };
            Said::Warning(format!(
                "influx.api {name} against InfluxDB 3: a batch with a bad line is refused whole \
                 {refused}; the collector then finds bad lines through /api/v3/write_lp \
                 (accept_partial=false), one request per bad line; set influx.api: v3 or \
                 remove it"
            ))
        }
    })
}

fn check_jetstream(checks: &mut Checks, config: &Config, js: &JetStream) {
    match js.account_info() {
        Ok(info) => checks.pass(format!(
            "nats: JetStream enabled ({} streams, {} consumers)",
            info.streams, info.consumers
        )),
        Err(e) => {
            checks.fail(
                e,
                Some("enable JetStream: nats-server -js, or a jetstream block in its config, and for this account"),
            );
            return;
        }
    }
    let bucket = bucket_name(&config.namespace);
    let n_measurements = js
        .bucket_revision(&bucket)
        .and_then(|revision| match revision {
            Some(_) => js
                .bucket_entries(&bucket)
                .map(|entries| Some(entries.iter().filter(|e| e.value.is_some()).count())),
            None => Ok(None),
        });
    let bucket_found = matches!(n_measurements, Ok(Some(_)));
    match n_measurements {
        Ok(Some(n)) => checks.pass(format!("nats: bucket {bucket} exists ({n} measurements)")),
        Ok(None) => checks.fail(
            format!("nats: bucket {bucket} does not exist"),
            Some("add a measurement: collector streams set MEASUREMENT (or the Transfer client's Set)"),
        ),
        Err(e) => checks.fail(e, Some("check the user's permissions on $JS.API.>")),
    }
    if bucket_found {
        check_ack_waits(js, config, &bucket);
    }
    // Streams of the namespace replicated otherwise than what the collector would create
    // are worth knowing about (an R1 dead-letter stream on a cluster loses dead letters with
    // its node), but they work: a warning, not a failed check.
    let replicas = jetstream::resolve_replicas(js, &config.nats, &config.namespace)
        .and_then(|(n, from)| Ok((n, from, js.namespace_replicas(&config.namespace)?)));
    match replicas {
        Ok((n, from, streams)) => {
            let other: Vec<String> = streams
                .iter()
                .filter(|(_, replicas)| *replicas != n)
                .map(|(name, replicas)| format!("{name} ({replicas})"))
                .collect();
            if other.is_empty() {
                checks.pass(format!(
                    "nats: replicas {n} (from {from}), as every one of the namespace's {} stream(s)",
                    streams.len()
                ));
            } else {
                println!(
                    "⚠ nats: replicas {n} (from {from}), but {} stream(s) of the namespace have other replicas: {}; the collector leaves existing streams as they are: change them (nats stream edit --replicas) or set nats.replicas",
                    other.len(),
                    other.join(", ")
                );
            }
        }
        Err(e) => checks.fail(e, Some("check the user's permissions on $JS.API.>")),
    }
}

/// Warns when consumers of the namespace, created elsewhere, keep an `ack_wait` of their own:
/// the collector leaves existing consumers as they are and keeps records alive by the
/// shortest wait it finds, so a user who changed `pull.ack_wait` should know it does not
/// apply to them.
fn check_ack_waits(js: &JetStream, config: &Config, bucket: &str) {
    let Ok(entries) = js.bucket_entries(bucket) else {
        return;
    };
    let measurements: Vec<String> = entries
        .into_iter()
        .filter(|entry| entry.value.is_some())
        .map(|entry| entry.key)
        .collect();
    let streams: Vec<String> = measurements
        .iter()
        .map(|m| jetstream::stream_name(&config.namespace, m))
        .collect();
    let found: Vec<(String, Option<Duration>)> = measurements
        .into_iter()
        .zip(js.survey(&streams))
        .map(|(m, surveyed)| match surveyed {
            Ok(Surveyed::Lag { ack_wait, .. }) => (m, ack_wait),
            _ => (m, None),
        })
        .collect();
    if let Some(warning) = ack_wait_differences(config.pull.ack_wait, &found) {
        println!("⚠ nats: {warning}");
    }
}

/// The warning for consumers whose `ack_wait` is not `configured` (`None` when every one
/// found has it, or has none to read).
fn ack_wait_differences(
    configured: Duration,
    consumers: &[(String, Option<Duration>)],
) -> Option<String> {
    let other: Vec<String> = consumers
        .iter()
        .filter_map(|(m, wait)| {
            wait.filter(|w| *w != configured)
                .map(|w| format!("{m} ({w:?})"))
        })
        .collect();
    if other.is_empty() {
        return None;
    }
    Some(format!(
        "pull.ack_wait is {configured:?}, but the consumer of {} measurement(s) has its own: {}; \
         the collector leaves existing consumers as they are and keeps records alive by the \
         shortest: change them (nats consumer edit --wait) or set pull.ack_wait to match",
        other.len(),
        other.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_with_an_ack_wait_of_their_own_are_named() {
        let secs = Duration::from_secs;
        assert_eq!(ack_wait_differences(secs(30), &[]), None);
        let same = [("a".to_string(), Some(secs(30))), ("b".to_string(), None)];
        assert_eq!(ack_wait_differences(secs(30), &same), None);
        let other = [
            ("a".to_string(), Some(secs(30))),
            ("b".to_string(), Some(secs(4))),
            ("c".to_string(), Some(secs(60))),
        ];
        let warning = ack_wait_differences(secs(30), &other).unwrap();
        assert!(
            warning.starts_with(
                "pull.ack_wait is 30s, but the consumer of 2 measurement(s) has its own: b (4s), c (60s); "
            ),
            "{warning}"
        );
    }

    fn config(api: InfluxApi, api_given: bool) -> InfluxConfig {
        InfluxConfig {
            url: "http://db:8181".into(),
            api_given,
            org: None,
            ..crate::influx::tests::config(api)
        }
    }

    /// Against InfluxDB 3 one line says which API writes use; against earlier servers none.
    #[test]
    fn the_api_writes_use_is_said_against_influxdb_3() {
        for api in [InfluxApi::V1, InfluxApi::V2, InfluxApi::V3] {
            assert_eq!(writes_api(&config(api, true), Server::Earlier), None);
        }
        let v3 = "writes go through the v3 API (/api/v3/write_lp) to database `beta`";
        assert_eq!(
            writes_api(&config(InfluxApi::V3, true), Server::V3),
            Some(Said::Fine(v3.into()))
        );
        assert_eq!(
            writes_api(&config(InfluxApi::V2, false), Server::V3),
            Some(Said::Fine(format!(
                "{v3}: influx.api is unset and the server is InfluxDB 3"
            )))
        );
        for (api, name) in [(InfluxApi::V1, "v1"), (InfluxApi::V2, "v2")] {
            match writes_api(&config(api, true), Server::V3) {
                Some(Said::Warning(text)) => {
                    let start = format!("influx.api {name} against InfluxDB 3: a batch with a bad line is refused whole");
                    assert!(text.starts_with(&start), "{text}");
                    assert!(text.ends_with("; the collector then finds bad lines through /api/v3/write_lp (accept_partial=false), one request per bad line; set influx.api: v3 or remove it"), "{text}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// `check` prints the InfluxDB URL; it must never show the credentials in it.
    #[test]
    fn urls_lose_their_credentials() {
        let table = [
            ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
            ("http://u:p@db:8086", "http://db:8086"),
            ("https://u:p@w@db/x?y=a@b", "https://db/x?y=a@b"),
            ("http://db/path@x", "http://db/path@x"),
            ("nonsense", "nonsense"),
        ];
        for (url, expected) in table {
            assert_eq!(crate::config::without_credentials(url), expected);
        }
    }
}
