//! The configuration file: raw YAML as written by the user, then validated into [`Config`].
//!
//! Runs on the main thread at start. `RawConfig` mirrors the file exactly (the seed deployment's
//! keys — `namespace`, `nats.hosts`, `nats.nkey`, `influx.url`, `influx.token`, `influx.org` —
//! stay as they are); `Config` holds only checked values with their defaults applied, so the
//! rest of the service never re-validates. Every refusal names the dotted key and what is wrong.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A credential. Its `Debug` and `Display` never show the value, so a config dump, a log line
/// or a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that must send it (an auth header, a signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The file as written. Unknown keys are refused so a typo does not silently fall back to a
/// default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub namespace: Option<String>,
    #[serde(default)]
    pub nats: RawNats,
    #[serde(default)]
    pub influx: RawInflux,
    #[serde(default)]
    pub pull: RawPull,
    #[serde(default)]
    pub batch: RawBatch,
    pub poll_interval: Option<String>,
    pub shutdown_timeout: Option<String>,
    #[serde(default)]
    pub dead_letter: RawDeadLetter,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub http: RawHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub nkey: Option<String>,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub creds: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInflux {
    pub url: Option<String>,
    pub api: Option<String>,
    pub token: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPull {
    pub workers: Option<usize>,
    pub batch: Option<usize>,
    pub expires: Option<String>,
    pub ack_wait: Option<String>,
    pub max_ack_pending: Option<i64>,
    pub max_deliver: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadLetter {
    pub max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max_lines: Option<usize>,
    pub max_bytes: Option<usize>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub nats: NatsConfig,
    pub influx: InfluxConfig,
    pub pull: PullConfig,
    pub batch: BatchConfig,
    pub poll_interval: Duration,
    pub shutdown_timeout: Duration,
    /// How long dead letters are kept in the `<ns>:dlq` stream.
    pub dead_letter_max_age: Duration,
    pub log_level: log::LevelFilter,
    pub log_format: LogFormat,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` (the default) serves
    /// nothing.
    pub http_listen: Option<SocketAddr>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2024-01-01T00:00:00Z [INFO] message`, for people and journald.
    Text,
    /// One JSON object per line with `time`, `level`, `target`, `thread` and `message`, for
    /// log shippers.
    Json,
}

#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub hosts: Vec<String>,
    pub auth: NatsAuth,
}

/// How the collector authenticates to NATS: at most one method.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    /// An nkey user seed (`SU...`), as in the seed deployment document.
    Nkey(Secret),
    Token(Secret),
    UserPassword {
        username: String,
        password: Secret,
    },
    /// A `.creds` file holding a user JWT and its nkey seed.
    Creds(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxApi {
    /// InfluxDB 2.x and compatible: `/api/v2/write?org=&bucket=` with a token.
    V2,
    /// InfluxDB 1.x: `/write?db=&rp=` with optional basic auth.
    V1,
}

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// Base URL without a trailing slash.
    pub url: String,
    pub api: InfluxApi,
    pub token: Option<Secret>,
    pub org: Option<String>,
    /// The v2 bucket or v1 database; the namespace unless overridden.
    pub target: String,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PullConfig {
    pub workers: usize,
    pub batch: usize,
    pub expires: Duration,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// Deliveries after which a record that was never stored is dead-lettered.
    pub max_deliver: u64,
}

impl PullConfig {
    /// How long to wait before a record given back may be redelivered: past the expiry of
    /// every pull request this collector may still have waiting on the server.
    pub fn give_back_delay(&self) -> Duration {
        self.expires + Duration::from_secs(1)
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_lines: usize,
    pub max_bytes: usize,
    pub interval: Duration,
}

/// Reads the environment variable `name`, treating an empty value as unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads and validates the file at `path`, with secrets overridable from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates YAML text. `env` supplies `COLLECTOR_*` secret overrides.
    pub fn parse(text: &str, env: EnvLookup) -> Result<Config> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?;
        raw.validate(env)
    }
}

/// Turns a serde_yaml error into a config error naming the key where it can.
fn yaml_error(e: &serde_yaml::Error) -> Error {
    // serde_yaml prefixes the message with the dotted path of the key when it knows it
    // (`nats.hosts[0]: invalid type ...`); split it off so the line reads like the others.
    let text = e.to_string();
    match text.split_once(": ") {
        Some((key, problem)) if !key.contains(' ') => Error::config(key, problem),
        _ => Error::config("(file)", format!("not valid YAML: {text}")),
    }
}

/// A name that can stand in a NATS subject token, a stream name and a KV bucket name:
/// no dots, wildcards, spaces or separators — the `nats` crate does not check (it breaks the
/// connection or times out instead), so everything that builds such a name checks first.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses `500ms`, `2s`, `1m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Treats an empty string (the seed's `token:` with nothing after it is null, but `""` is
/// common too) as absent.
fn present(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration> {
    match present(value) {
        None => Ok(default),
        Some(text) => match parse_duration(&text) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(Error::config(
                key,
                format!("`{text}` is not a duration; write e.g. 500ms, 2s, 1m"),
            )),
        },
    }
}

fn positive(key: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 && n <= max => Ok(n),
        Some(n) => Err(Error::config(
            key,
            format!("{n} is out of range; use 1 to {max}"),
        )),
    }
}

/// A secret from the file, overridden by the environment variable `env_name` when set.
fn secret(env: EnvLookup, env_name: &str, value: Option<String>) -> Option<Secret> {
    present(env(env_name))
        .or_else(|| present(value))
        .map(Secret)
}

fn check_nats_url(key: &str, url: &str) -> Result<()> {
    let rest = ["nats://", "tls://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| {
            Error::config(
                key,
                format!("`{url}` is not a NATS URL; write nats://HOST:PORT"),
            )
        })?;
    if rest.contains('@') {
        return Err(Error::config(
            key,
            "credentials in the URL are not supported; use nats.token, nats.username/password or nats.nkey",
        ));
    }
    let host = rest.split(':').next().unwrap_or("");
    let port_ok = match rest.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok(),
        None => true,
    };
    if host.is_empty() || host.contains('/') || !port_ok {
        return Err(Error::config(
            key,
            format!("`{url}` is not a NATS URL; write nats://HOST:PORT"),
        ));
    }
    Ok(())
}

impl RawConfig {
    pub fn validate(self, env: EnvLookup) -> Result<Config> {
        let namespace = present(self.namespace).ok_or_else(|| {
            Error::config(
                "namespace",
                "is required (the application namespace, e.g. `beta`)",
            )
        })?;
        if !is_valid_name(&namespace) {
            return Err(Error::config(
                "namespace",
                format!("`{namespace}` may only hold letters, digits, `_` and `-` (it names NATS subjects and streams)"),
            ));
        }

        let nats = self.nats;
        if nats.hosts.is_empty() {
            return Err(Error::config(
                "nats.hosts",
                "must list at least one server, e.g. [nats://127.0.0.1:4222]",
            ));
        }
        for (i, host) in nats.hosts.iter().enumerate() {
            check_nats_url(&format!("nats.hosts[{i}]"), host.trim())?;
        }
        let nkey = secret(env, "COLLECTOR_NATS_NKEY", nats.nkey);
        let token = secret(env, "COLLECTOR_NATS_TOKEN", nats.token);
        let username = present(nats.username);
        let password = secret(env, "COLLECTOR_NATS_PASSWORD", nats.password);
        let creds = present(nats.creds);
        let n_methods = [
            nkey.is_some(),
            token.is_some(),
            username.is_some(),
            creds.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if n_methods > 1 {
            return Err(Error::config(
                "nats",
                "set only one of nkey, token, username/password, creds",
            ));
        }
        let auth = match (nkey, token, username, creds) {
            (Some(seed), ..) => {
                if !seed.expose().starts_with("SU") {
                    return Err(Error::config(
                        "nats.nkey",
                        "must be an nkey user seed (it starts with SU)",
                    ));
                }
                NatsAuth::Nkey(seed)
            }
            (_, Some(token), ..) => NatsAuth::Token(token),
            (_, _, Some(username), _) => {
                let password = password.ok_or_else(|| {
                    Error::config("nats.password", "is required with nats.username")
                })?;
                NatsAuth::UserPassword { username, password }
            }
            (_, _, _, Some(path)) => NatsAuth::Creds(path),
            _ if password.is_some() => {
                return Err(Error::config(
                    "nats.username",
                    "is required with nats.password",
                ))
            }
            _ => NatsAuth::None,
        };
        let nats = NatsConfig {
            hosts: nats.hosts.iter().map(|h| h.trim().to_string()).collect(),
            auth,
        };

        let raw = self.influx;
        let url = present(raw.url).ok_or_else(|| {
            Error::config("influx.url", "is required, e.g. http://127.0.0.1:8086")
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() < "http://x".len()
        {
            return Err(Error::config(
                "influx.url",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        let api = match present(raw.api).as_deref() {
            None | Some("v2") => InfluxApi::V2,
            Some("v1") => InfluxApi::V1,
            Some(other) => {
                return Err(Error::config(
                    "influx.api",
                    format!("`{other}` is not v2 or v1"),
                ))
            }
        };
        let org = present(raw.org);
        let token = secret(env, "COLLECTOR_INFLUX_TOKEN", raw.token);
        let target = match api {
            InfluxApi::V2 => {
                if org.is_none() {
                    return Err(Error::config(
                        "influx.org",
                        "is required with influx.api v2 (the organisation name)",
                    ));
                }
                if present(raw.database).is_some() {
                    return Err(Error::config(
                        "influx.database",
                        "is for api v1; with v2 use influx.bucket",
                    ));
                }
                present(raw.bucket).unwrap_or_else(|| namespace.clone())
            }
            InfluxApi::V1 => {
                if present(raw.bucket).is_some() {
                    return Err(Error::config(
                        "influx.bucket",
                        "is for api v2; with v1 use influx.database",
                    ));
                }
                present(raw.database).unwrap_or_else(|| namespace.clone())
            }
        };
        let username = present(raw.username);
        let password = secret(env, "COLLECTOR_INFLUX_PASSWORD", raw.password);
        if username.is_some() != password.is_some() {
            return Err(Error::config(
                "influx.username",
                "influx.username and influx.password go together",
            ));
        }
        let influx = InfluxConfig {
            url: url.trim_end_matches('/').to_string(),
            api,
            token,
            org,
            target,
            retention_policy: present(raw.retention_policy),
            username,
            password,
            timeout: duration("influx.timeout", raw.timeout, Duration::from_secs(10))?,
        };

        let pull = PullConfig {
            workers: positive("pull.workers", self.pull.workers, 2, 64)?,
            batch: positive("pull.batch", self.pull.batch, 500, 10_000)?,
            expires: duration("pull.expires", self.pull.expires, Duration::from_secs(2))?,
            ack_wait: duration("pull.ack_wait", self.pull.ack_wait, Duration::from_secs(30))?,
            max_ack_pending: match self.pull.max_ack_pending {
                None => 20_000,
                Some(n) if n >= 1 => n,
                Some(n) => {
                    return Err(Error::config(
                        "pull.max_ack_pending",
                        format!("{n} must be at least 1"),
                    ))
                }
            },
            max_deliver: match self.pull.max_deliver {
                None => 10,
                Some(n) if n >= 2 => n,
                Some(n) => {
                    return Err(Error::config(
                        "pull.max_deliver",
                        format!("{n} must be at least 2"),
                    ))
                }
            },
        };
        if pull.ack_wait < Duration::from_secs(5) {
            return Err(Error::config(
                "pull.ack_wait",
                "must be at least 5s so in-progress acks can keep records alive",
            ));
        }
        let batch = BatchConfig {
            max_lines: positive("batch.max_lines", self.batch.max_lines, 5_000, 1_000_000)?,
            max_bytes: positive("batch.max_bytes", self.batch.max_bytes, 1 << 20, 256 << 20)?,
            interval: duration(
                "batch.interval",
                self.batch.interval,
                Duration::from_secs(1),
            )?,
        };
        let log_level = match present(self.log.level).as_deref() {
            None => log::LevelFilter::Info,
            Some(text) => text.parse().map_err(|_| {
                Error::config(
                    "log.level",
                    format!("`{text}` is not one of error, warn, info, debug, trace"),
                )
            })?,
        };
        let log_format = match present(self.log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(Error::config(
                    "log.format",
                    format!("`{other}` is not text or json"),
                ))
            }
        };
        let http_listen = match present(self.http.listen) {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                Error::config(
                    "http.listen",
                    format!("`{text}` is not IP:PORT, e.g. 127.0.0.1:9090 or 0.0.0.0:9090"),
                )
            })?),
        };
        Ok(Config {
            namespace,
            nats,
            influx,
            pull,
            batch,
            poll_interval: duration("poll_interval", self.poll_interval, Duration::from_secs(2))?,
            shutdown_timeout: duration(
                "shutdown_timeout",
                self.shutdown_timeout,
                Duration::from_secs(10),
            )?,
            dead_letter_max_age: duration(
                "dead_letter.max_age",
                self.dead_letter.max_age,
                Duration::from_secs(7 * 24 * 3600),
            )?,
            log_level,
            log_format,
            http_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, &no_env)
    }

    /// Asserts that `text` is refused with a message naming `key` and containing `needle`.
    fn refused(text: &str, key: &str, needle: &str) {
        let message = parse(text).expect_err(text).to_string();
        assert!(
            message.contains(&format!("`{key}`")),
            "{message:?} should name {key}"
        );
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }

    const MINIMAL_V1: &str = "namespace: beta\nnats:\n  hosts: [nats://127.0.0.1:4222]\ninflux:\n  url: http://127.0.0.1:8086\n  api: v1\n";

    #[test]
    fn minimal_v1_takes_defaults() {
        let c = parse(MINIMAL_V1).unwrap();
        assert_eq!(c.namespace, "beta");
        assert_eq!(c.influx.api, InfluxApi::V1);
        assert_eq!(c.influx.target, "beta");
        assert_eq!(c.nats.auth, NatsAuth::None);
        assert_eq!(c.pull.workers, 2);
        assert_eq!(c.batch.max_lines, 5_000);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.http_listen, None);
    }

    #[test]
    fn http_and_log_format() {
        let c = parse(&format!(
            "{MINIMAL_V1}http: {{listen: '0.0.0.0:9090'}}\nlog: {{format: json}}\n"
        ))
        .unwrap();
        assert_eq!(c.http_listen, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(c.log_format, LogFormat::Json);
        let c = parse(&format!("{MINIMAL_V1}http: {{listen: '[::1]:0'}}\n")).unwrap();
        assert_eq!(c.http_listen, Some("[::1]:0".parse().unwrap()));
    }

    #[test]
    fn seed_document_config_is_accepted() {
        // The ConfigMap of the seed deployment document, with its empty token and org filled.
        let text = "namespace: alpha\nnats:\n  hosts:\n    - nats://nats.default.svc.cluster.local:4222\n  nkey: SUAEXAMPLE\ninflux:\n  url: http://influx:8086/\n  token: abc\n  org: weplanx\n";
        let c = parse(text).unwrap();
        assert_eq!(c.influx.api, InfluxApi::V2);
        assert_eq!(c.influx.url, "http://influx:8086");
        assert_eq!(c.influx.target, "alpha");
        assert!(matches!(c.nats.auth, NatsAuth::Nkey(_)));
    }

    #[test]
    fn secrets_never_print() {
        let text = format!("{MINIMAL_V1}  username: u\n  password: hunter2\n");
        let c = parse(&text).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.influx.password.unwrap().expose(), "hunter2");
    }

    #[test]
    fn environment_overrides_file_secrets() {
        let text = "namespace: a\nnats:\n  hosts: [nats://h:1]\ninflux:\n  url: http://h\n  org: o\n  token: from-file\n";
        let env = |name: &str| (name == "COLLECTOR_INFLUX_TOKEN").then(|| "from-env".to_string());
        let c = Config::parse(text, &env).unwrap();
        assert_eq!(c.influx.token.unwrap().expose(), "from-env");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in [
            "",
            "2",
            "s",
            "1.5s",
            "-1s",
            "2 days",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_configs_name_their_key() {
        refused(
            "nats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v1}\n",
            "namespace",
            "required",
        );
        refused(
            "namespace: a.b\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v1}\n",
            "namespace",
            "letters",
        );
        refused(
            "namespace: a b\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v1}\n",
            "namespace",
            "letters",
        );
        refused(
            "namespace: a\ninflux: {url: http://h, api: v1}\n",
            "nats.hosts",
            "at least one",
        );
        refused(
            "namespace: a\nnats: {hosts: [localhost]}\ninflux: {url: http://h, api: v1}\n",
            "nats.hosts[0]",
            "not a NATS URL",
        );
        refused(
            "namespace: a\nnats: {hosts: ['nats://h:x']}\ninflux: {url: http://h, api: v1}\n",
            "nats.hosts[0]",
            "not a NATS URL",
        );
        refused("namespace: a\nnats: {hosts: [nats://h:1], token: t, nkey: SUX}\ninflux: {url: http://h, api: v1}\n", "nats", "only one");
        refused("namespace: a\nnats: {hosts: [nats://h:1], nkey: UX}\ninflux: {url: http://h, api: v1}\n", "nats.nkey", "seed");
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {api: v1}\n",
            "influx.url",
            "required",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: ftp://h, api: v1}\n",
            "influx.url",
            "http",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v3}\n",
            "influx.api",
            "v3",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h}\n",
            "influx.org",
            "required",
        );
        refused(
            &format!("{MINIMAL_V1}pull: {{workers: 0}}\n"),
            "pull.workers",
            "out of range",
        );
        refused(
            &format!("{MINIMAL_V1}batch: {{interval: 1x}}\n"),
            "batch.interval",
            "not a duration",
        );
        refused(
            &format!("{MINIMAL_V1}log: {{level: loud}}\n"),
            "log.level",
            "loud",
        );
        refused(
            &format!("{MINIMAL_V1}log: {{format: xml}}\n"),
            "log.format",
            "xml",
        );
        refused(
            &format!("{MINIMAL_V1}http: {{listen: localhost:9090}}\n"),
            "http.listen",
            "IP:PORT",
        );
        refused(
            &format!("{MINIMAL_V1}http: {{listen: '9090'}}\n"),
            "http.listen",
            "IP:PORT",
        );
        refused(&format!("{MINIMAL_V1}bogus: 1\n"), "(file)", "bogus");
        refused("namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v1, databse: x}\n", "influx", "databse");
        refused(
            "namespace: a\nnats: {hosts: nats://h:1}\ninflux: {url: http://h, api: v1}\n",
            "nats.hosts",
            "sequence",
        );
    }
}
