//! `collector check`'s probes of InfluxDB, run on the main thread: reachability and version,
//! the credentials and the target (database or bucket), and the write permission, each said
//! as one line with a fix. They read or write nothing.
//!
//! The classifications are pure functions of the answer, tested without a server. The URL is
//! left out of every message: it may hold credentials, and the caller prints it redacted.

use serde_json::Value;

use crate::config::{InfluxApi, InfluxConfig};

use super::answer::error_message;
use super::{encode_query, transport_error, Influx};

/// What one probe of `collector check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It works; the text says what was seen.
    Passed(String),
    /// It does not; `fix` says what to change.
    Failed { problem: String, fix: String },
}

fn failed(problem: impl Into<String>, fix: impl Into<String>) -> Probe {
    Probe::Failed {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The fix for refused credentials, naming the keys the configured API uses.
fn credentials_fix(config: &InfluxConfig) -> &'static str {
    match (
        config.api,
        config.token.is_some(),
        config.username.is_some(),
    ) {
        (InfluxApi::V2, true, _) => {
            "check influx.token (or COLLECTOR_INFLUX_TOKEN): it may be wrong or revoked"
        }
        (InfluxApi::V2, false, _) => "set influx.token (or COLLECTOR_INFLUX_TOKEN)",
        (InfluxApi::V1, _, true) | (InfluxApi::V1, true, _) => {
            "check influx.username and influx.password (or COLLECTOR_INFLUX_PASSWORD)"
        }
        (InfluxApi::V1, false, false) => {
            "InfluxDB requires authentication: set influx.username and influx.password"
        }
        (InfluxApi::V3, true, _) => {
            "check influx.token (or COLLECTOR_INFLUX_TOKEN): it may be wrong, revoked or expired"
        }
        (InfluxApi::V3, false, _) => {
            "set influx.token (or COLLECTOR_INFLUX_TOKEN) to a token of this InfluxDB 3 server"
        }
    }
}

/// The target as named in messages: ``database `x` `` or ``bucket `x` ``.
fn target_name(config: &InfluxConfig) -> String {
    match config.api {
        InfluxApi::V1 | InfluxApi::V3 => format!("database `{}`", config.target),
        InfluxApi::V2 => format!("bucket `{}`", config.target),
    }
}

/// Whether the JSON array `rows` has a row whose name (the string `name_of` picks out) is `name`.
fn lists(rows: &Value, name_of: impl Fn(&Value) -> &Value, name: &str) -> bool {
    rows.as_array()
        .into_iter()
        .flatten()
        .any(|row| name_of(row).as_str() == Some(name))
}

/// Classifies the answer to `GET /ping`; `version` is its `X-Influxdb-Version` header.
pub fn classify_ping(status: u16, version: Option<&str>) -> Probe {
    match (status, version) {
        (200..=299, Some(version)) => Probe::Passed(format!("InfluxDB {version} answers /ping")),
        (200..=299, None) => Probe::Passed("answers /ping".into()),
        (status, _) => failed(
            format!("/ping answered {status}"),
            "set influx.url to the base URL of InfluxDB, e.g. http://127.0.0.1:8086",
        ),
    }
}

/// Classifies the answer to the v1 `SHOW DATABASES` query.
pub fn classify_databases(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    match status {
        200 => {
            let answer: Value = serde_json::from_str(body).unwrap_or_default();
            let result = &answer["results"][0];
            if let Some(error) = result["error"].as_str() {
                return failed(
                    format!("SHOW DATABASES failed: {error}"),
                    "check the user's privileges",
                );
            }
            match lists(&result["series"][0]["values"], |row| &row[0], database) {
                true => Probe::Passed(format!(
                    "credentials accepted; database `{database}` exists"
                )),
                false => failed(
                    format!(
                        "database `{database}` does not exist (or the user has no access to it)"
                    ),
                    format!("create it (CREATE DATABASE \"{database}\"), or set influx.database"),
                ),
            }
        }
        401 => failed(
            format!("credentials refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        _ => failed(
            format!("SHOW DATABASES answered {status}: {}", error_message(body)),
            "check influx.url and influx.api (v1 here)",
        ),
    }
}

/// Classifies the answer to the v2 `GET /api/v2/buckets?org=&name=`. A token may write to a
/// bucket it cannot list, so an empty list is no failure: the write probe decides.
pub fn classify_buckets(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let org = config.org.as_deref().unwrap_or_default();
    let bucket = &config.target;
    match status {
        200 => {
            let answer: Value = serde_json::from_str(body).unwrap_or_default();
            Probe::Passed(match lists(&answer["buckets"], |b| &b["name"], bucket) {
                true => format!("token accepted; bucket `{bucket}` exists in org `{org}`"),
                false => format!(
                    "token accepted in org `{org}` (it cannot list bucket `{bucket}`; the write check decides)"
                ),
            })
        }
        401 => failed(
            format!("token refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        404 => failed(
            format!("not found: {}", error_message(body)),
            "check influx.org: the organisation's name",
        ),
        403 => failed(
            format!("the token may not read buckets: {}", error_message(body)),
            "use a token with read access to the org's buckets, or ignore this if writes pass",
        ),
        _ => failed(
            format!("/api/v2/buckets answered {status}: {}", error_message(body)),
            "check influx.url and influx.api (v2 here; InfluxDB 1.x needs api: v1)",
        ),
    }
}

/// Classifies the answer to the v3 `GET /api/v3/configure/database?format=json`, a JSON array
/// of `{"iox::database": "name"}`. A token may write to a database it cannot list, so a
/// missing name is left to the write probe.
pub fn classify_v3_databases(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    match status {
        200 => {
            let answer: Value = serde_json::from_str(body).unwrap_or_default();
            Probe::Passed(
                match lists(&answer, |row| &row["iox::database"], database) {
                    true => format!("token accepted; database `{database}` exists"),
                    false => format!(
                    "token accepted (database `{database}` is not listed; the write check decides)"
                ),
                },
            )
        }
        401 | 403 => failed(
            format!("token refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        _ => failed(
            format!(
                "/api/v3/configure/database answered {status}: {}",
                error_message(body)
            ),
            "check influx.url and influx.api (v3 here, for InfluxDB 3 Core or Enterprise)",
        ),
    }
}

/// Classifies the answer to a write of an empty body. InfluxDB checks the credentials, the
/// database or bucket and the write permission before it reads the body: 1.6.7 then answers
/// 204 and stores nothing (found by experiment), 2.x answers 400 `writing requires points`
/// (its write handler), so either means a real write would be allowed.
pub fn classify_write_probe(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let target = target_name(config);
    let message = error_message(body);
    match status {
        200..=299 => Probe::Passed(format!(
            "write permission on {target} (an empty write was accepted)"
        )),
        400 if config.api == InfluxApi::V2 && message.contains("writing requires points") => {
            Probe::Passed(format!(
                "write permission on {target} (an empty write was refused only for being empty)"
            ))
        }
        401 => failed(
            format!("credentials refused: {message}"),
            credentials_fix(config),
        ),
        403 => failed(
            format!("no write permission: {message}"),
            match config.api {
                InfluxApi::V1 => format!(
                    "grant it: GRANT WRITE ON \"{}\" TO \"{}\"",
                    config.target,
                    config.username.as_deref().unwrap_or("<user>")
                ),
                InfluxApi::V2 => format!(
                    "give the token write permission on bucket `{}`",
                    config.target
                ),
                InfluxApi::V3 => format!(
                    "use a token with write permission on database `{}`",
                    config.target
                ),
            },
        ),
        404 => failed(
            format!("{target} not found: {message}"),
            match config.api {
                InfluxApi::V1 => format!(
                    "create it (CREATE DATABASE \"{}\"), or set influx.database",
                    config.target
                ),
                InfluxApi::V2 => format!(
                    "create bucket `{}` in org `{}`, or set influx.bucket / influx.org",
                    config.target,
                    config.org.as_deref().unwrap_or_default()
                ),
                InfluxApi::V3 => format!(
                    "create it (influxdb3 create database {}), or set influx.database",
                    config.target
                ),
            },
        ),
        _ if message.contains("retention policy not found") => failed(
            message,
            "create the retention policy, or correct or remove influx.retention_policy",
        ),
        _ => failed(
            format!("an empty write answered {status}: {message}"),
            "check influx.url, influx.api and the server's log",
        ),
    }
}

/// A probe's HTTP answer.
struct ProbeAnswer {
    status: u16,
    body: String,
    version: Option<String>,
}

/// Reads a probe's answer (at most 1 MiB of its body), or says why none came.
fn probe_answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ProbeAnswer, String> {
    let mut response =
        result.map_err(|e| format!("cannot reach InfluxDB: {}", transport_error(&e)))?;
    let version = response
        .headers()
        .get("x-influxdb-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    Ok(ProbeAnswer {
        status: response.status().as_u16(),
        body,
        version,
    })
}

impl Influx {
    /// Sends one probe `GET`, authorised like the writes.
    fn probe_get(&self, url: &str) -> Result<ProbeAnswer, String> {
        probe_answer(self.authorised(self.agent.get(url)).call())
    }

    /// `GET /ping`: InfluxDB answers, and which version.
    pub fn probe_ping(&self) -> Probe {
        match self.probe_get(&format!("{}/ping", self.base_url)) {
            Ok(answer) => classify_ping(answer.status, answer.version.as_deref()),
            Err(problem) if problem.contains("TLS: ") => failed(
                problem,
                "fix the server's certificate, or influx.tls (ca, cert, key) and influx.url",
            ),
            Err(problem) => failed(
                problem,
                "start InfluxDB, or correct influx.url (scheme, host and port)",
            ),
        }
    }

    /// The credentials and the target: v1 `SHOW DATABASES`, v2 the bucket by name.
    pub fn probe_target(&self, config: &InfluxConfig) -> Probe {
        let url = match config.api {
            InfluxApi::V1 => format!("{}/query?q=SHOW%20DATABASES", self.base_url),
            InfluxApi::V2 => format!(
                "{}/api/v2/buckets?org={}&name={}",
                self.base_url,
                encode_query(config.org.as_deref().unwrap_or_default()),
                encode_query(&config.target)
            ),
            InfluxApi::V3 => format!("{}/api/v3/configure/database?format=json", self.base_url),
        };
        match self.probe_get(&url) {
            Ok(answer) => match config.api {
                InfluxApi::V1 => classify_databases(config, answer.status, &answer.body),
                InfluxApi::V2 => classify_buckets(config, answer.status, &answer.body),
                InfluxApi::V3 => classify_v3_databases(config, answer.status, &answer.body),
            },
            Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
        }
    }

    /// The write permission, with a write of nothing to the very URL the writer uses.
    pub fn probe_write(&self, config: &InfluxConfig) -> Probe {
        match probe_answer(self.write_request().send(&b""[..])) {
            Ok(answer) => classify_write_probe(config, answer.status, &answer.body),
            Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// The write tests' configuration, with organisation `acme`.
    fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            org: Some("acme".into()),
            ..crate::influx::tests::config(api)
        }
    }

    fn passed(probe: Probe) -> String {
        match probe {
            Probe::Passed(text) => text,
            failed => panic!("expected a pass, got {failed:?}"),
        }
    }

    /// Asserts a failure whose problem holds `problem` and whose fix holds `fix`.
    fn check_failed(probe: Probe, problem: &str, fix: &str) {
        match probe {
            Probe::Failed { problem: p, fix: f } => {
                assert!(p.contains(problem), "{p:?} lacks {problem:?}");
                assert!(f.contains(fix), "{f:?} lacks {fix:?}");
            }
            passed => panic!("expected a failure, got {passed:?}"),
        }
    }

    #[test]
    fn ping() {
        assert_eq!(
            passed(classify_ping(204, Some("1.6.7~rc0"))),
            "InfluxDB 1.6.7~rc0 answers /ping"
        );
        assert_eq!(passed(classify_ping(200, None)), "answers /ping");
        check_failed(classify_ping(404, None), "404", "influx.url");
    }

    // Bodies below are influxd 1.6.7's own answers, recorded by hand.
    #[test]
    fn v1_databases() {
        let v1 = config(InfluxApi::V1);
        let list = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["beta"]]}]}]}"#;
        assert!(passed(classify_databases(&v1, 200, list)).contains("database `beta` exists"));
        let other = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["alpha"]]}]}]}"#;
        check_failed(
            classify_databases(&v1, 200, other),
            "`beta` does not exist",
            "CREATE DATABASE \"beta\"",
        );
        let none = r#"{"results":[{"statement_id":0}]}"#;
        check_failed(
            classify_databases(&v1, 200, none),
            "does not exist",
            "influx.database",
        );
        let anonymous = r#"{"error":"unable to parse authentication credentials"}"#;
        check_failed(
            classify_databases(&v1, 401, anonymous),
            "unable to parse",
            "set influx.username",
        );
        let mut with_user = v1.clone();
        with_user.username = Some("u".into());
        with_user.password = Some(Secret::new("p"));
        check_failed(
            classify_databases(&with_user, 401, r#"{"error":"authorization failed"}"#),
            "authorization failed",
            "check influx.username",
        );
    }

    #[test]
    fn v3_databases() {
        let mut v3 = config(InfluxApi::V3);
        v3.token = Some(Secret::new("t"));
        let list = r#"[{"iox::database":"_internal"},{"iox::database":"beta"}]"#;
        assert!(passed(classify_v3_databases(&v3, 200, list)).contains("database `beta` exists"));
        assert!(passed(classify_v3_databases(&v3, 200, "[]")).contains("the write check decides"));
        check_failed(
            classify_v3_databases(&v3, 401, r#"{"error":"the request was not authenticated"}"#),
            "not authenticated",
            "check influx.token",
        );
        check_failed(classify_v3_databases(&v3, 404, ""), "404", "v3 here");
    }

    #[test]
    fn v1_write_probe() {
        let mut v1 = config(InfluxApi::V1);
        assert!(passed(classify_write_probe(&v1, 204, "")).contains("database `beta`"));
        check_failed(
            classify_write_probe(&v1, 404, r#"{"error":"database not found: \"beta\""}"#),
            "database not found",
            "CREATE DATABASE",
        );
        v1.username = Some("reader".into());
        check_failed(
            classify_write_probe(
                &v1,
                403,
                r#"{"error":"\"reader\" user is not authorized to write to database \"beta\""}"#,
            ),
            "not authorized to write",
            "GRANT WRITE ON \"beta\" TO \"reader\"",
        );
        check_failed(
            classify_write_probe(&v1, 500, r#"{"error":"retention policy not found: week"}"#),
            "retention policy not found: week",
            "influx.retention_policy",
        );
        check_failed(
            classify_write_probe(&v1, 401, r#"{"error":"authorization failed"}"#),
            "authorization failed",
            "influx.password",
        );
        check_failed(
            classify_write_probe(&v1, 502, "bad gateway"),
            "answered 502",
            "influx.url",
        );
        // On v1 a 400 is not the v2 "empty" answer.
        check_failed(
            classify_write_probe(
                &v1,
                400,
                r#"{"code":"invalid","message":"writing requires points"}"#,
            ),
            "400",
            "",
        );
    }

    // Bodies below follow the InfluxDB v2 API's error format {"code", "message"}.
    #[test]
    fn v2_buckets_and_write_probe() {
        let mut v2 = config(InfluxApi::V2);
        v2.token = Some(Secret::new("t"));
        let found = r#"{"buckets":[{"id":"1","name":"beta","orgID":"2"}]}"#;
        assert!(passed(classify_buckets(&v2, 200, found))
            .contains("bucket `beta` exists in org `acme`"));
        assert!(passed(classify_buckets(&v2, 200, r#"{"buckets":[]}"#))
            .contains("the write check decides"));
        check_failed(
            classify_buckets(
                &v2,
                401,
                r#"{"code":"unauthorized","message":"unauthorized access"}"#,
            ),
            "unauthorized access",
            "check influx.token",
        );
        check_failed(
            classify_buckets(
                &v2,
                404,
                r#"{"code":"not found","message":"organization name \"acme\" not found"}"#,
            ),
            "organization name",
            "influx.org",
        );
        let empty = r#"{"code":"invalid","message":"writing requires points"}"#;
        assert!(passed(classify_write_probe(&v2, 400, empty)).contains("bucket `beta`"));
        assert!(passed(classify_write_probe(&v2, 204, "")).contains("bucket `beta`"));
        check_failed(
            classify_write_probe(
                &v2,
                403,
                r#"{"code":"forbidden","message":"insufficient permissions for write"}"#,
            ),
            "insufficient permissions",
            "write permission on bucket `beta`",
        );
        check_failed(
            classify_write_probe(
                &v2,
                404,
                r#"{"code":"not found","message":"bucket \"beta\" not found"}"#,
            ),
            "bucket `beta` not found",
            "influx.bucket",
        );
        check_failed(
            classify_write_probe(
                &v2,
                400,
                r#"{"code":"invalid","message":"unable to parse"}"#,
            ),
            "unable to parse",
            "",
        );
        v2.token = None;
        check_failed(
            classify_write_probe(&v2, 401, "{}"),
            "credentials refused",
            "set influx.token",
        );
    }
}
