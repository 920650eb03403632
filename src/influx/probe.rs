//! `collector check`'s probes of InfluxDB, run on the main thread: reachability and version,
//! the credentials and the target (database or bucket), and the write permission, each said
//! as one line with a fix. They write nothing: against InfluxDB 1.x and 2.x the write probe is
//! an empty write, which they refuse or accept without storing anything; InfluxDB 3 creates
//! the database on any write with `accept_partial=true`, an empty one too, so there it is one
//! line that cannot be parsed, with `accept_partial=false`, which it refuses without creating
//! anything.
//!
//! The classifications are pure functions of the answer, tested without a server. The URL is
//! left out of every message: it may hold credentials, and the caller prints it redacted.

use serde_json::Value;

use crate::config::{InfluxApi, InfluxConfig};

use super::answer::error_message;
use super::{encode_query, server_of, transport_error, Influx, Server};

/// The body of the write probe to InfluxDB 3: a line without fields, which no server can store.
/// It parses as far as its measurement and is refused with `A generic parsing error occurred`.
const V3_WRITE_PROBE: &str = "collector_check\n";

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

/// The key that names the target: `influx.bucket` for v2 (and an unset `influx.api`, which is
/// v2), `influx.database` otherwise.
fn target_key(config: &InfluxConfig) -> &'static str {
    match config.api {
        InfluxApi::V2 => "influx.bucket",
        InfluxApi::V1 | InfluxApi::V3 => "influx.database",
    }
}

/// What InfluxDB accepted, said by what the configuration sends.
fn accepted(config: &InfluxConfig) -> &'static str {
    match (config.token.is_some(), config.username.is_some()) {
        (true, _) => "token accepted",
        (false, true) => "credentials accepted",
        (false, false) => "no credentials asked for",
    }
}

/// Whether the JSON array `rows` has a row whose name (the string `name_of` picks out) is `name`.
fn lists(rows: &Value, name_of: impl Fn(&Value) -> &Value, name: &str) -> bool {
    rows.as_array()
        .into_iter()
        .flatten()
        .any(|row| name_of(row).as_str() == Some(name))
}

/// [`classify_ping`], but a 401 is refused credentials: InfluxDB 3 checks the token at
/// `/ping` unless told otherwise (and its 401 names no version); 1.x and 2.x ignore
/// credentials there.
fn ping_probe(config: &InfluxConfig, status: u16, version: Option<&str>) -> Probe {
    match status {
        401 => failed(
            "/ping answered 401: credentials refused",
            credentials_fix(config),
        ),
        status => classify_ping(status, version),
    }
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
/// of `{"iox::database": "name"}`: asked with `api: v3`, and of any server that says it is
/// InfluxDB 3 whatever the API (its v1 `SHOW DATABASES` gets no answer, its v2 bucket lookup
/// 404). InfluxDB 3 creates a database on the first write to it, so a missing name is no
/// failure: the write probe says whether it can be created.
pub fn classify_v3_databases(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    let accepted = accepted(config);
    match status {
        200 => {
            let answer: Value = serde_json::from_str(body).unwrap_or_default();
            Probe::Passed(
                match lists(&answer, |row| &row["iox::database"], database) {
                    true => format!("{accepted}; database `{database}` exists"),
                    false => format!(
                        "{accepted}; database `{database}` is not listed: the first write creates it"
                    ),
                },
            )
        }
        401 | 403 => failed(
            format!("credentials refused: {}", error_message(body)),
            credentials_fix(config),
        ),
        _ => failed(
            format!(
                "/api/v3/configure/database answered {status}: {}",
                error_message(body)
            ),
            match config.api {
                InfluxApi::V3 => {
                    "check influx.url and influx.api (v3 here, for InfluxDB 3 Core or Enterprise)"
                }
                InfluxApi::V1 | InfluxApi::V2 => "check influx.url and the server's log",
            },
        ),
    }
}

/// Classifies InfluxDB 3's answer to the write probe, [`V3_WRITE_PROBE`] sent to
/// `/api/v3/write_lp?db=<target>&accept_partial=false`. The server checks the token, and
/// whether it may create the database when it does not exist, before it parses the body; the
/// line then fails to parse, and the write is refused naming it (400 `parsing failed for
/// write_lp endpoint`), with nothing stored and no database created (found by experiment with
/// 3.6.0). So that answer means a real write would be allowed. Past the database limit the
/// probe is refused as a write would be: 422 `Adding a new database would exceed limit of 5
/// databases`.
pub fn classify_v3_write_probe(config: &InfluxConfig, status: u16, body: &str) -> Probe {
    let database = &config.target;
    let message = error_message(body);
    let answer: Value = serde_json::from_str(body).unwrap_or_default();
    match status {
        400 if answer["data"]["line_number"].as_u64() == Some(1) => Probe::Passed(format!(
            "write permission on database `{database}` (a line that cannot be parsed, sent with \
             accept_partial=false, was refused for that alone: nothing written)"
        )),
        400 | 422 if message.contains("new database would exceed limit of") => failed(
            format!("database `{database}` does not exist, and InfluxDB 3 would not create it: {message}"),
            format!(
                "delete a database (influxdb3 delete database NAME) or raise the server's limit, \
                 or set {} to an existing database",
                target_key(config)
            ),
        ),
        401 => failed(
            format!("credentials refused: {message}"),
            credentials_fix(config),
        ),
        403 => failed(
            format!("no write permission: {message}"),
            format!("use a token with write permission on database `{database}`"),
        ),
        _ => failed(
            format!("the write probe answered {status}: {message}"),
            "check influx.url and the server's log",
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

    /// `GET /ping`: InfluxDB answers, and which version, so which server it is.
    pub fn probe_ping(&self, config: &InfluxConfig) -> (Probe, Server) {
        match self.probe_get(&format!("{}/ping", self.base_url)) {
            Ok(answer) => {
                let version = answer.version.as_deref();
                (
                    ping_probe(config, answer.status, version),
                    server_of(version),
                )
            }
            Err(problem) if problem.contains("TLS: ") => (
                failed(
                    problem,
                    "fix the server's certificate, or influx.tls (ca, cert, key) and influx.url",
                ),
                Server::Earlier,
            ),
            Err(problem) => (
                failed(
                    problem,
                    "start InfluxDB, or correct influx.url (scheme, host and port)",
                ),
                Server::Earlier,
            ),
        }
    }

    /// The credentials and the target: v1 `SHOW DATABASES`, v2 the bucket by name, v3 (and
    /// any API against InfluxDB 3) the database listing.
    pub fn probe_target(&self, config: &InfluxConfig, server: Server) -> Probe {
        let api = match server {
            Server::V3 => InfluxApi::V3,
            Server::Earlier => config.api,
        };
        let url = match api {
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
            Ok(answer) => match api {
                InfluxApi::V1 => classify_databases(config, answer.status, &answer.body),
                InfluxApi::V2 => classify_buckets(config, answer.status, &answer.body),
                InfluxApi::V3 => classify_v3_databases(config, answer.status, &answer.body),
            },
            Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
        }
    }

    /// The write permission: against InfluxDB 3 (whatever the API), one line that cannot be
    /// parsed with `accept_partial=false` (see [`classify_v3_write_probe`]); otherwise a write
    /// of nothing to the very URL the writer uses.
    pub fn probe_write(&self, config: &InfluxConfig, server: Server) -> Probe {
        if server == Server::V3 {
            let url = super::write::diagnose_url(&self.base_url, &config.target);
            let request = self.write_request(&url);
            return match probe_answer(request.send(V3_WRITE_PROBE.as_bytes())) {
                Ok(answer) => classify_v3_write_probe(config, answer.status, &answer.body),
                Err(problem) => failed(problem, "start InfluxDB, or correct influx.url"),
            };
        }
        match probe_answer(self.write_request(&self.write_url).send(&b""[..])) {
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
        assert!(passed(classify_v3_databases(&v3, 200, "[]"))
            .contains("`beta` is not listed: the first write creates it"));
        check_failed(
            classify_v3_databases(&v3, 401, ""),
            "credentials refused",
            "check influx.token",
        );
        check_failed(classify_v3_databases(&v3, 404, ""), "404", "v3 here");
        // Asked of InfluxDB 3 with another API configured.
        let mut v1 = config(InfluxApi::V1);
        v1.username = Some("u".into());
        v1.password = Some(Secret::new("apiv3_t"));
        assert_eq!(
            passed(classify_v3_databases(&v1, 200, list)),
            "credentials accepted; database `beta` exists"
        );
        check_failed(classify_v3_databases(&v1, 404, ""), "404", "server's log");
        let open = config(InfluxApi::V2);
        assert!(passed(classify_v3_databases(&open, 200, list)).starts_with("no credentials"));
    }

    // Bodies below are InfluxDB 3 Core 3.6.0's answers to the probe, recorded by hand.
    #[test]
    fn v3_write_probe() {
        let mut v3 = config(InfluxApi::V3);
        v3.token = Some(Secret::new("t"));
        let refused_line = r#"{"error":"parsing failed for write_lp endpoint","data":{"error_message":"A generic parsing error occurred: TakeWhile1","line_number":1,"original_line":"collector_check"}}"#;
        assert!(passed(classify_v3_write_probe(&v3, 400, refused_line))
            .starts_with("write permission on database `beta` ("));
        let limit = r#"{"error":"Adding a new database would exceed limit of 5 databases"}"#;
        check_failed(
            classify_v3_write_probe(&v3, 422, limit),
            "database `beta` does not exist, and InfluxDB 3 would not create it: Adding a new database would exceed limit of 5 databases",
            "delete a database",
        );
        check_failed(
            classify_v3_write_probe(&v3, 422, limit),
            "",
            "set influx.database to an existing database",
        );
        // With api v2 (or unset), the target is influx.bucket; /api/v2/write wraps the message.
        let v2 = config(InfluxApi::V2);
        let wrapped = r#"{"code":"invalid","message":"write buffer error: catalog update error: Adding a new database would exceed limit of 5 databases"}"#;
        check_failed(
            classify_v3_write_probe(&v2, 400, wrapped),
            "limit of 5 databases",
            "set influx.bucket",
        );
        check_failed(
            classify_v3_write_probe(&v3, 401, ""),
            "credentials refused",
            "check influx.token",
        );
        check_failed(
            classify_v3_write_probe(&v3, 403, ""),
            "no write permission",
            "write permission on database `beta`",
        );
        // Any other answer, an empty write's too, is no pass.
        check_failed(
            classify_v3_write_probe(&v3, 400, "incoming write was empty"),
            "the write probe answered 400: incoming write was empty",
            "server's log",
        );
        check_failed(
            classify_v3_write_probe(&v3, 400, r#"{"error":"x","data":{"line_number":2}}"#),
            "400",
            "",
        );
    }

    #[test]
    fn a_ping_refused_for_credentials_says_which_to_check() {
        let mut v3 = config(InfluxApi::V3);
        v3.token = Some(Secret::new("t"));
        check_failed(
            ping_probe(&v3, 401, None),
            "credentials refused",
            "check influx.token",
        );
        check_failed(
            ping_probe(&config(InfluxApi::V1), 401, None),
            "401",
            "influx.username",
        );
        assert_eq!(
            passed(ping_probe(&v3, 200, Some("3.6.0"))),
            "InfluxDB 3.6.0 answers /ping"
        );
        check_failed(ping_probe(&v3, 404, None), "404", "influx.url");
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
