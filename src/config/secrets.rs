//! Secrets: where each credential is looked for (environment, files, systemd credentials,
//! the config file), read with the checks a secret file needs, and held in [`Secret`] so it
//! never prints. Used by the section validation in the parent module on the main thread at
//! start.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::{present, EnvLookup, RawInflux, RawNats};
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

/// The names one secret goes by. It is looked for, first found wins:
/// 1. the environment variable `env` (`COLLECTOR_INFLUX_TOKEN`),
/// 2. the file named by the variable `<env>_FILE`,
/// 3. the systemd credential `$CREDENTIALS_DIRECTORY/<credential>` when that file exists,
/// 4. the file named by the key `<key>_file` (`influx.token_file`),
/// 5. the inline key `key` (`influx.token`).
///
/// The process's surroundings (environment, service manager) override the file, so one
/// config file serves every deployment. Setting both of one pair (`COLLECTOR_X` and
/// `COLLECTOR_X_FILE`, or `x` and `x_file`) is refused as ambiguous.
pub(super) struct SecretNames {
    key: &'static str,
    file_key: &'static str,
    env: &'static str,
    credential: &'static str,
}

/// The names of the secret `<section>.<name>`: its keys and its credential follow from the
/// two, so no secret strays from the pattern above; its variable is written out whole, so a
/// search for it lands here.
macro_rules! secret_names {
    ($section:literal, $name:literal, $env:literal) => {
        SecretNames {
            key: concat!($section, ".", $name),
            file_key: concat!($section, ".", $name, "_file"),
            env: $env,
            credential: concat!($section, "-", $name),
        }
    };
}

pub(super) const INFLUX_TOKEN: SecretNames =
    secret_names!("influx", "token", "COLLECTOR_INFLUX_TOKEN");
pub(super) const INFLUX_PASSWORD: SecretNames =
    secret_names!("influx", "password", "COLLECTOR_INFLUX_PASSWORD");
pub(super) const NATS_NKEY: SecretNames = secret_names!("nats", "nkey", "COLLECTOR_NATS_NKEY");
pub(super) const NATS_TOKEN: SecretNames = secret_names!("nats", "token", "COLLECTOR_NATS_TOKEN");
pub(super) const NATS_PASSWORD: SecretNames =
    secret_names!("nats", "password", "COLLECTOR_NATS_PASSWORD");

/// A secret with the name of the key, variable or file it came from (never its value).
struct Found {
    secret: Secret,
    source: String,
}

/// A secret file larger than this holds no single secret (and `/dev/zero` ends here).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a secret file named by `name` (a key or variable): its text without the trailing
/// newline an editor or `echo` adds. Unreadable, empty or oversized files are refused.
pub(super) fn read_secret_file(name: &str, path: &str) -> Result<Secret> {
    let refuse = |problem: String| Error::config(name, problem);
    let file = std::fs::File::open(path).map_err(|e| refuse(format!("cannot read {path}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read {path}: {e}")))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(refuse(format!(
            "{path} is larger than 64 KiB; it should hold only the secret"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| refuse(format!("{path} is not text")))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(refuse(format!("{path} is empty")));
    }
    Ok(Secret(value.to_string()))
}

/// Finds a secret where [`SecretNames`] says, or `None` when it is nowhere.
fn secret(
    env: EnvLookup,
    names: &SecretNames,
    inline: Option<String>,
    file: Option<String>,
) -> Result<Option<Found>> {
    let found = |secret: Secret, source: &str| {
        Ok(Some(Found {
            secret,
            source: source.to_string(),
        }))
    };
    let env_file = format!("{}_FILE", names.env);
    match (present(env(names.env)), present(env(&env_file))) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                names.env,
                format!("set only one of {} and {env_file}", names.env),
            ))
        }
        (Some(value), None) => return found(Secret(value), names.env),
        (None, Some(path)) => return found(read_secret_file(&env_file, &path)?, &env_file),
        (None, None) => {}
    }
    if let Some(dir) = present(env("CREDENTIALS_DIRECTORY")) {
        let path = Path::new(&dir).join(names.credential);
        if path.exists() {
            let name = format!("$CREDENTIALS_DIRECTORY/{}", names.credential);
            let secret = read_secret_file(&name, &path.to_string_lossy())?;
            return found(secret, &name);
        }
    }
    match (present(inline), present(file)) {
        (Some(_), Some(_)) => Err(Error::config(
            names.file_key,
            format!("set only one of {} and {}", names.key, names.file_key),
        )),
        (None, Some(path)) => found(read_secret_file(names.file_key, &path)?, names.file_key),
        (Some(value), None) => found(Secret(value), names.key),
        (None, None) => Ok(None),
    }
}

/// Finds the secrets of a configuration and remembers where each one in use came from, for
/// the start-up log and `collector check`: `influx.token (from COLLECTOR_INFLUX_TOKEN_FILE)`.
pub(super) struct Secrets<'a> {
    env: EnvLookup<'a>,
    pub(super) sources: Vec<String>,
}

impl<'a> Secrets<'a> {
    pub(super) fn new(env: EnvLookup<'a>) -> Secrets<'a> {
        Secrets {
            env,
            sources: Vec::new(),
        }
    }

    /// The secret `names` stands for with the name of where it came from (see
    /// [`SecretNames`]), noted among the sources; `None` when it is nowhere.
    pub(super) fn find(
        &mut self,
        names: &SecretNames,
        inline: Option<String>,
        file: Option<String>,
    ) -> Result<Option<(Secret, String)>> {
        Ok(
            secret(self.env, names, inline, file)?.map(|Found { secret, source }| {
                self.sources.push(match source == names.key {
                    true => names.key.to_string(),
                    false => format!("{} (from {source})", names.key),
                });
                (secret, source)
            }),
        )
    }
}

/// The secret keys written inline in the file (`influx.password`), whatever overrides them.
pub(super) fn inline_secrets(nats: &RawNats, influx: &RawInflux) -> Vec<&'static str> {
    [
        (NATS_NKEY.key, &nats.nkey),
        (NATS_TOKEN.key, &nats.token),
        (NATS_PASSWORD.key, &nats.password),
        (INFLUX_TOKEN.key, &influx.token),
        (INFLUX_PASSWORD.key, &influx.password),
    ]
    .into_iter()
    .filter(|(_, value)| present((*value).clone()).is_some())
    .map(|(key, _)| key)
    .collect()
}
