//! The configuration file: raw YAML as written by the user, then validated into [`Config`].
//!
//! Runs on the main thread at start. `RawConfig` mirrors the file exactly (the seed deployment's
//! keys — `namespace`, `nats.hosts`, `nats.nkey`, `influx.url`, `influx.token`, `influx.org` —
//! stay as they are); `Config` holds only checked values with their defaults applied, so the
//! rest of the service never re-validates. Every refusal names the dotted key and what is wrong.
//!
//! The file as written, every section's raw struct, is in `raw`. Each section has its own file
//! with its validated struct and validates itself (`nats`, `influx`, `pull` for `pull` and
//! `batch`, and `telemetry` for `log` and `http`); this module holds the whole file, the
//! helpers the sections share, and every default in [`defaults`]. Secrets are found and held
//! by `secrets`.

mod influx;
mod nats;
mod pull;
mod raw;
mod secrets;
mod telemetry;

pub use influx::{InfluxApi, InfluxConfig};
pub use nats::{NatsAuth, NatsConfig};
pub use pull::{BatchConfig, PullConfig};
pub use raw::{
    RawBatch, RawConfig, RawDeadLetter, RawHttp, RawInflux, RawLog, RawNats, RawPull, RawTls,
};
pub use secrets::Secret;
pub use telemetry::LogFormat;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::tls::{self, TlsFiles};
use secrets::Secrets;
use telemetry::{http_listen, log_settings};

/// Every default in one table: what a key left out of the file means.
pub mod defaults {
    use std::time::Duration;

    pub const INFLUX_TIMEOUT: Duration = Duration::from_secs(10);
    pub const PULL_WORKERS: usize = 2;
    pub const PULL_BATCH: usize = 500;
    pub const PULL_EXPIRES: Duration = Duration::from_secs(30);
    pub const PULL_ACK_WAIT: Duration = Duration::from_secs(30);
    pub const PULL_MAX_ACK_PENDING: i64 = 20_000;
    pub const PULL_MAX_DELIVER: u64 = 10;
    /// The largest batch; batches start at `BATCH_START_*` and grow while bigger writes store
    /// faster (`batch::Sizer`): on InfluxDB 3, whose writes wait for its write-ahead log, not
    /// on 1.x. 8 MiB stays under InfluxDB 3's default 10 MiB request limit.
    pub const BATCH_MAX_LINES: usize = 100_000;
    pub const BATCH_MAX_BYTES: usize = 8 << 20;
    pub const BATCH_START_LINES: usize = 5_000;
    pub const BATCH_START_BYTES: usize = 1 << 20;
    pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
    pub const BATCH_LINGER: Duration = Duration::from_millis(20);
    pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const LOG_LEVEL: log::LevelFilter = log::LevelFilter::Info;
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
    /// Where each secret in use came from, for the start-up log and `collector check`:
    /// `influx.token (from COLLECTOR_INFLUX_TOKEN_FILE)`. Never a value.
    pub secret_sources: Vec<String>,
    /// The secret keys written inline in the file (`influx.password`), whatever overrides
    /// them: a file holding any should not be readable by everyone.
    pub inline_secrets: Vec<&'static str>,
    /// Problems that do not stop the service, to log once logging is set up.
    pub warnings: Vec<String>,
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
        let mut config = Config::parse(&text, &|name| std::env::var(name).ok())?;
        if !config.inline_secrets.is_empty() && world_readable(path) {
            config.warnings.push(format!(
                "config file {path} holds a secret ({}) and every user of this machine can read it: run chmod 600 {path}, or move the secret to a *_file key or a COLLECTOR_* variable",
                config.inline_secrets.join(", "),
                path = path.display(),
            ));
        }
        Ok(config)
    }

    /// Logs [`Config::warnings`]; called once logging is set up.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            log::warn!("{warning}");
        }
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
    let text = redact_values(&e.to_string());
    match text.split_once(": ") {
        Some((key, problem)) if !key.contains(' ') => Error::config(key, problem),
        _ => Error::config("(file)", format!("not valid YAML: {text}")),
    }
}

/// Removes the value serde quotes in a wrong-type error (`invalid type: string "hunter2",
/// expected ...` becomes `invalid type: string, expected ...`): the value may be a secret
/// written at the wrong place, and the key and the expected type say enough.
fn redact_values(text: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(start) = text.find(marker).map(|i| i + marker.len()) else {
            continue;
        };
        // serde writes `{unexpected}, expected {what}`; the expectation names a type, so the
        // last `, expected ` is the real one whatever the value holds.
        let Some(end) = text.rfind(", expected ").filter(|end| *end >= start) else {
            return format!("{}(value not shown)", &text[..start]);
        };
        let unexpected = &text[start..end];
        let kind = unexpected
            .split(['"', '`'])
            .next()
            .unwrap_or_default()
            .trim();
        return format!("{}{kind}{}", &text[..start], &text[end..]);
    }
    text.to_string()
}

/// Whether everyone may read the file at `path` (`o+r`). False where that cannot be told.
fn world_readable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// The URL without `user:password@`, for messages.
pub fn without_credentials(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Whether the authority part of `url` holds `user:password@`.
fn has_credentials(url: &str) -> bool {
    without_credentials(url) != url
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

/// A number key of at least `min` with no upper bound; `default` when unset.
fn at_least<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    default: T,
    min: T,
) -> Result<T> {
    match value {
        None => Ok(default),
        Some(n) if n >= min => Ok(n),
        Some(n) => Err(Error::config(key, format!("{n} must be at least {min}"))),
    }
}

/// The checked files of a `tls` block whose keys start with `prefix`.
fn tls_files(prefix: &str, raw: Option<RawTls>) -> Result<Option<TlsFiles>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let files = TlsFiles {
        ca: present(raw.ca).map(PathBuf::from),
        cert: present(raw.cert).map(PathBuf::from),
        key: present(raw.key).map(PathBuf::from),
    };
    match (&files.cert, &files.key) {
        (Some(_), None) => {
            return Err(Error::config(
                format!("{prefix}.key"),
                format!("is required with {prefix}.cert (the client certificate's private key)"),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                format!("{prefix}.cert"),
                format!("is required with {prefix}.key (the client certificate)"),
            ))
        }
        _ => {}
    }
    tls::check_files(prefix, &files)?;
    Ok(Some(files))
}

impl RawConfig {
    /// Validates the file section by section, always in the same order (namespace, nats,
    /// influx, pull, batch, log, http, then the top-level durations), so a file with several
    /// problems always reports the same first one.
    pub fn validate(self, env: EnvLookup) -> Result<Config> {
        let namespace = check_namespace(self.namespace)?;
        let inline_secrets = secrets::inline_secrets(&self.nats, &self.influx);
        let mut secrets = Secrets::new(env);
        let nats = NatsConfig::from_raw(self.nats, &mut secrets)?;
        let influx = InfluxConfig::from_raw(self.influx, &namespace, &mut secrets)?;
        let pull = PullConfig::from_raw(self.pull)?;
        let batch = BatchConfig::from_raw(self.batch)?;
        let (log_level, log_format) = log_settings(self.log)?;
        let http_listen = http_listen(self.http)?;
        Ok(Config {
            namespace,
            nats,
            influx,
            pull,
            batch,
            poll_interval: duration("poll_interval", self.poll_interval, defaults::POLL_INTERVAL)?,
            shutdown_timeout: duration(
                "shutdown_timeout",
                self.shutdown_timeout,
                defaults::SHUTDOWN_TIMEOUT,
            )?,
            dead_letter_max_age: duration(
                "dead_letter.max_age",
                self.dead_letter.max_age,
                defaults::DEAD_LETTER_MAX_AGE,
            )?,
            log_level,
            log_format,
            http_listen,
            secret_sources: secrets.sources,
            inline_secrets,
            warnings: Vec::new(),
        })
    }
}

/// The `namespace` key: required, and usable in subjects and stream names.
fn check_namespace(namespace: Option<String>) -> Result<String> {
    let namespace = present(namespace).ok_or_else(|| {
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
    Ok(namespace)
}

/// An environment without variables, for the tests.
#[cfg(test)]
fn no_env(_: &str) -> Option<String> {
    None
}

/// The key a section's refusal names, and its problem, for the sections' tests.
#[cfg(test)]
fn refusal<T: std::fmt::Debug>(result: Result<T>) -> (String, String) {
    match result {
        Err(Error::Config { key, problem }) => (key, problem),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.batch.max_lines, 100_000);
        assert_eq!(
            (c.batch.start().lines, c.batch.start().bytes),
            (5_000, 1 << 20)
        );
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.http_listen, None);
        assert_eq!(c.nats.replicas, None);
        assert!(
            !c.influx.gzip,
            "InfluxDB on loopback: nothing to save by compressing"
        );
    }

    #[test]
    fn v3_names_a_database_and_may_skip_the_sync() {
        let v3 = "namespace: beta\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v3, token: t}\n";
        let c = parse(v3).unwrap();
        assert_eq!(c.influx.api, InfluxApi::V3);
        assert_eq!(c.influx.target, "beta");
        assert!(!c.influx.no_sync);
        let c = parse(&v3.replace("token: t", "token: t, database: logs, no_sync: true")).unwrap();
        assert_eq!(c.influx.target, "logs");
        assert!(c.influx.no_sync);
        for (extra, key, problem) in [
            ("bucket: b", "influx.bucket", "influx.database"),
            ("org: o", "influx.org", "api v2"),
            ("retention_policy: w", "influx.retention_policy", "api v1"),
            (
                "username: u, password: p",
                "influx.username",
                "influx.token",
            ),
            ("no_sync: yes please", "influx.no_sync", "boolean"),
        ] {
            refused(
                &v3.replace("token: t", &format!("token: t, {extra}")),
                key,
                problem,
            );
        }
        refused(
            &MINIMAL_V1.replace("api: v1", "api: v1\n  no_sync: true"),
            "influx.no_sync",
            "api v3",
        );
    }

    #[test]
    fn pulls_wait_long_and_batches_linger() {
        let c = parse(MINIMAL_V1).unwrap();
        assert_eq!(c.pull.expires, Duration::from_secs(30));
        assert_eq!(c.pull.idle_heartbeat(), Duration::from_secs(5));
        assert_eq!(c.batch.linger, Duration::from_millis(20));
        let c = parse(&format!(
            "{MINIMAL_V1}pull: {{expires: 3s}}\nbatch: {{linger: 50ms}}\n"
        ))
        .unwrap();
        assert_eq!(c.pull.idle_heartbeat(), Duration::from_millis(500));
        assert_eq!(c.batch.linger, Duration::from_millis(50));
        refused(
            &format!("{MINIMAL_V1}pull: {{expires: 500ms}}\n"),
            "pull.expires",
            "at least 1s",
        );
        refused(
            &format!("{MINIMAL_V1}batch: {{linger: soon}}\n"),
            "batch.linger",
            "not a duration",
        );
    }

    #[test]
    fn gzip_is_on_unless_influxdb_is_on_this_machine() {
        for (url, gzip) in [
            ("http://h:8086", true),
            ("https://influx.example.com", true),
            ("http://10.0.0.1:8086", true),
            ("http://127.0.0.1:8086", false),
            ("http://127.8.9.1", false),
            ("http://localhost:8086/", false),
            ("http://LOCALHOST", false),
            ("http://[::1]:8086", false),
            ("http://[fe80::1]:8086", true),
            ("http://localhost.example.com", true),
        ] {
            let config = MINIMAL_V1.replace("http://127.0.0.1:8086", url);
            assert_eq!(parse(&config).unwrap().influx.gzip, gzip, "{url}");
            let forced = config.replace("api: v1", "api: v1\n  gzip: true");
            assert!(parse(&forced).unwrap().influx.gzip, "{url}");
        }
    }

    #[test]
    fn gzip_can_be_turned_off() {
        let c = parse(&MINIMAL_V1.replace("api: v1", "api: v1\n  gzip: false")).unwrap();
        assert!(!c.influx.gzip);
        refused(
            &MINIMAL_V1.replace("api: v1", "api: v1\n  gzip: fast"),
            "influx.gzip",
            "boolean",
        );
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
        // The ConfigMap of the seed deployment document, with its empty token and org filled
        // and a real user seed for its `<Your NKey>` placeholder.
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let text = format!("namespace: alpha\nnats:\n  hosts:\n    - nats://nats.default.svc.cluster.local:4222\n  nkey: {seed}\ninflux:\n  url: http://influx:8086/\n  token: abc\n  org: weplanx\n");
        let c = parse(&text).unwrap();
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
    fn secret_sources_are_listed_section_by_section() {
        let text = "namespace: a\nnats:\n  hosts: [nats://h:1]\ninflux:\n  url: http://h\n  org: o\n  token: t\n";
        let env = |name: &str| (name == "COLLECTOR_NATS_TOKEN").then(|| "from-env".to_string());
        let c = Config::parse(text, &env).unwrap();
        assert_eq!(
            c.secret_sources,
            ["nats.token (from COLLECTOR_NATS_TOKEN)", "influx.token"]
        );
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
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v4}\n",
            "influx.api",
            "`v4` is not v2, v1 or v3",
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
        for bad in ["0", "6"] {
            refused(
                &MINIMAL_V1.replace(
                    "  hosts: [nats://127.0.0.1:4222]\n",
                    &format!("  hosts: [nats://127.0.0.1:4222]\n  replicas: {bad}\n"),
                ),
                "nats.replicas",
                "out of range; use 1 to 5",
            );
        }
        let three = MINIMAL_V1.replace(
            "  hosts: [nats://127.0.0.1:4222]\n",
            "  hosts: [nats://127.0.0.1:4222]\n  replicas: 3\n",
        );
        assert_eq!(parse(&three).unwrap().nats.replicas, Some(3));
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

    /// A fresh directory for secret files, removed by the caller.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "collector-config-unit-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An environment made of `vars`.
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn secrets_come_from_env_files_credentials_or_the_file_in_that_order() {
        let dir = temp_dir("precedence");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let env_file = write("env-file", "from-env-file\n");
        let key_file = write("key-file", "from-key-file\r\n");
        let credentials = dir.join("credentials");
        std::fs::create_dir_all(&credentials).unwrap();
        std::fs::write(credentials.join("influx-password"), "from-credential").unwrap();
        let credentials = credentials.display().to_string();
        let text = format!("{MINIMAL_V1}  username: u\n  password_file: {key_file}\n");
        let password = |vars: &[(&str, &str)]| {
            let c = Config::parse(&text, &env_of(vars)).unwrap();
            (
                c.influx.password.unwrap().expose().to_string(),
                c.secret_sources,
            )
        };
        let all = [
            ("COLLECTOR_INFLUX_PASSWORD", "from-env"),
            ("CREDENTIALS_DIRECTORY", credentials.as_str()),
        ];
        assert_eq!(password(&all).0, "from-env");
        let (value, sources) = password(&[
            ("COLLECTOR_INFLUX_PASSWORD_FILE", env_file.as_str()),
            ("CREDENTIALS_DIRECTORY", credentials.as_str()),
        ]);
        assert_eq!(value, "from-env-file");
        assert_eq!(
            sources,
            ["influx.password (from COLLECTOR_INFLUX_PASSWORD_FILE)"]
        );
        let (value, sources) = password(&[("CREDENTIALS_DIRECTORY", credentials.as_str())]);
        assert_eq!(value, "from-credential");
        assert_eq!(
            sources,
            ["influx.password (from $CREDENTIALS_DIRECTORY/influx-password)"]
        );
        // The trailing newline of the file goes, a carriage return too.
        assert_eq!(password(&[]).0, "from-key-file");
        // An inline value is the last resort.
        let inline = format!("{MINIMAL_V1}  username: u\n  password: inline\n");
        let c = Config::parse(&inline, &env_of(&[])).unwrap();
        assert_eq!(c.influx.password.unwrap().expose(), "inline");
        assert_eq!(c.secret_sources, ["influx.password"]);
        assert_eq!(c.inline_secrets, ["influx.password"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_files_that_cannot_serve_are_refused_naming_the_key() {
        let dir = temp_dir("refused");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.join("missing");
        let check = |text: String, vars: &[(&str, &str)], key: &str, needle: &str| {
            let message = Config::parse(&text, &env_of(vars))
                .expect_err(&text)
                .to_string();
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(message.contains(needle), "{message}");
        };
        let v2 = "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, org: o}\n";
        check(
            v2.to_string(),
            &[("COLLECTOR_INFLUX_TOKEN_FILE", &empty.display().to_string())],
            "COLLECTOR_INFLUX_TOKEN_FILE",
            "is empty",
        );
        check(
            v2.replace(
                "org: o",
                &format!("org: o, token_file: {}", missing.display()),
            ),
            &[],
            "influx.token_file",
            "cannot read",
        );
        check(
            v2.replace("org: o", "org: o, token: a, token_file: /x"),
            &[],
            "influx.token_file",
            "only one of influx.token and influx.token_file",
        );
        check(
            v2.to_string(),
            &[
                ("COLLECTOR_INFLUX_TOKEN", "a"),
                ("COLLECTOR_INFLUX_TOKEN_FILE", "/x"),
            ],
            "COLLECTOR_INFLUX_TOKEN",
            "only one of",
        );
        check(
            v2.replace(
                "[nats://h:1]",
                &format!("[nats://h:1], nkey_file: {}", empty.display()),
            ),
            &[],
            "nats.nkey_file",
            "is empty",
        );
        check(
            v2.replace(
                "[nats://h:1]",
                "[nats://h:1], password_file: /nonexistent/x, username: u",
            ),
            &[],
            "nats.password_file",
            "cannot read",
        );
        check(
            v2.to_string(),
            &[("COLLECTOR_NATS_NKEY", "SUNOTASEED")],
            "COLLECTOR_NATS_NKEY",
            "nkey user seed",
        );
        // Two NATS methods, wherever they come from, are refused naming both sources.
        check(
            v2.replace("[nats://h:1]", "[nats://h:1], username: u, password: p"),
            &[("COLLECTOR_NATS_TOKEN", "t")],
            "nats",
            "found COLLECTOR_NATS_TOKEN and nats.username",
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_error_quotes_a_secret() {
        let secret = "hunter2-secret";
        let cases = [
            format!("{MINIMAL_V1}  password: [{secret}]\n"),
            format!("{MINIMAL_V1}  password: {{a: {secret}}}\n"),
            format!("namespace: a\nnats: {secret}\ninflux: {{url: http://h, api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1]}}\ninflux: {secret}\n"),
            format!("{secret}\n"),
            format!("- {secret}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1]}}\ninflux: {{url: http://h, api: v1}}\npull: {{workers: {secret}}}\n"),
            format!("namespace: a\nnats: {{hosts: ['nats://u:{secret}@h:1']}}\ninflux: {{url: http://h, api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: ['u:{secret}@h']}}\ninflux: {{url: http://h, api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1]}}\ninflux: {{url: 'http://u:{secret}@h', api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1]}}\ninflux: {{url: 'ftp://u:{secret}@h', api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1], nkey: SU{secret}}}\ninflux: {{url: http://h, api: v1}}\n"),
            format!("namespace: a\nnats: {{hosts: [nats://h:1], token: {secret}, nkey: x}}\ninflux: {{url: http://h, api: v1}}\n"),
            format!("{MINIMAL_V1}  password: '{secret}\n"),
        ];
        for text in cases {
            let message = parse(&text).expect_err(&text).to_string();
            assert!(!message.contains(secret), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        // The type of a wrong value is still said.
        let message = parse(&format!("{MINIMAL_V1}pull: {{workers: many}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`pull.workers`")
                && message.contains("invalid type: string, expected"),
            "{message}"
        );
    }

    #[test]
    fn tls_blocks_are_checked() {
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1], tls: {cert: /c.pem}}\ninflux: {url: http://h, api: v1}\n",
            "nats.tls.key",
            "required",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1], tls: {ca: /nonexistent/ca.pem}}\ninflux: {url: http://h, api: v1}\n",
            "nats.tls.ca",
            "cannot read",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1], tls: {bogus: x}}\ninflux: {url: http://h, api: v1}\n",
            "nats.tls",
            "bogus",
        );
        refused(
            "namespace: a\nnats: {hosts: [nats://h:1]}\ninflux: {url: http://h, api: v1, tls: {}}\n",
            "influx.tls",
            "https://",
        );
        let c = parse("namespace: a\nnats: {hosts: [tls://h:1], tls: {}}\ninflux: {url: https://h, api: v1, tls: {}}\n").unwrap();
        assert_eq!(c.nats.tls, Some(TlsFiles::default()));
        assert!(c.influx.tls.is_some());
    }
}
