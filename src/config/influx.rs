//! The `influx` section: the server, which of its APIs is written to and where, the
//! credentials, TLS and the request settings. Validated by the parent module on the main
//! thread at start; the secrets are found by `secrets`.

use std::time::Duration;

use super::secrets::{Secrets, INFLUX_PASSWORD, INFLUX_TOKEN};
use super::{defaults, duration, has_credentials, present, tls_files, RawInflux, Secret};
use crate::error::{Error, Result};
use crate::tls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxApi {
    /// InfluxDB 2.x and compatible: `/api/v2/write?org=&bucket=` with a token.
    V2,
    /// InfluxDB 1.x: `/write?db=&rp=` with optional basic auth.
    V1,
    /// InfluxDB 3.x native: `/api/v3/write_lp?db=` with a bearer token, partial writes
    /// answered line by line.
    V3,
}

#[derive(Debug, Clone)]
pub struct InfluxConfig {
    /// Base URL without a trailing slash.
    pub url: String,
    pub api: InfluxApi,
    /// Whether `influx.api` was written in the file. When it was not, a server that says it
    /// is InfluxDB 3 (`/ping`) is written to through its v3 API instead of v2 (`influx::Influx`).
    pub api_given: bool,
    pub token: Option<Secret>,
    pub org: Option<String>,
    /// The v2 bucket or v1/v3 database; the namespace unless overridden.
    pub target: String,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
    /// HTTPS settings from `influx.tls` (checked and loaded at start); `None` for the
    /// defaults: the built-in Mozilla CA list, no client certificate.
    pub tls: Option<ureq::tls::TlsConfig>,
    /// Whether write bodies are sent gzip-compressed (`Content-Encoding: gzip`), which
    /// InfluxDB 1.x, 2.x, 3.x and VictoriaMetrics all accept. On by default: line protocol
    /// shrinks about fivefold for a little CPU, which is what a network link wants.
    pub gzip: bool,
    /// v3 only: acknowledge writes before InfluxDB has persisted them to its write-ahead log
    /// (`no_sync=true`): faster, but a crash of InfluxDB may lose acknowledged records.
    pub no_sync: bool,
}

impl InfluxConfig {
    /// Validates the `influx` section; the target defaults to `namespace`.
    pub(super) fn from_raw(
        mut raw: RawInflux,
        namespace: &str,
        secrets: &mut Secrets,
    ) -> Result<InfluxConfig> {
        let url = check_influx_url(raw.url.take())?;
        let https = url.starts_with("https://");
        let api_given = present(raw.api.clone()).is_some();
        let api = InfluxApi::from_raw(raw.api.take())?;
        let org = present(raw.org.take());
        let token = secrets
            .find(&INFLUX_TOKEN, raw.token.take(), raw.token_file.take())?
            .map(|(token, _)| token);
        let target = match api {
            InfluxApi::V2 => v2_target(&raw, org.is_some()),
            InfluxApi::V1 => v1_target(&raw),
            InfluxApi::V3 => v3_target(&raw, org.is_some()),
        }?
        .unwrap_or_else(|| namespace.to_string());
        let username = present(raw.username);
        let password = secrets
            .find(&INFLUX_PASSWORD, raw.password, raw.password_file)?
            .map(|(password, _)| password);
        if username.is_some() != password.is_some() {
            return Err(Error::config(
                "influx.username",
                "influx.username and influx.password go together",
            ));
        }
        if raw.tls.is_some() && !https {
            return Err(Error::config(
                "influx.tls",
                "is set, but influx.url is not https://",
            ));
        }
        let tls = match tls_files("influx.tls", raw.tls)? {
            Some(files) => Some(tls::http_config("influx.tls", &files)?),
            None => None,
        };
        Ok(InfluxConfig {
            url: url.trim_end_matches('/').to_string(),
            api,
            api_given,
            token,
            org,
            target,
            retention_policy: present(raw.retention_policy),
            username,
            password,
            timeout: duration("influx.timeout", raw.timeout, defaults::INFLUX_TIMEOUT)?,
            tls,
            // Compression is for the network: on loopback it only costs CPU.
            gzip: raw.gzip.unwrap_or(!is_loopback(&url)),
            no_sync: raw.no_sync.unwrap_or(false),
        })
    }
}

/// Refuses the first of `refusals` whose condition holds: `(key, condition, problem)`.
fn refuse_first(refusals: &[(&str, bool, &str)]) -> Result<()> {
    match refusals.iter().find(|(_, holds, _)| *holds) {
        Some((key, _, problem)) => Err(Error::config(*key, *problem)),
        None => Ok(()),
    }
}

/// `influx.no_sync`, a key of api v3 only, as a refusal for the other two.
fn no_sync_outside_v3(raw: &RawInflux) -> (&'static str, bool, &'static str) {
    (
        "influx.no_sync",
        raw.no_sync.is_some(),
        "is for api v3 (its write_lp endpoint)",
    )
}

/// The v2 bucket the file names (`None` for the namespace), once the organisation is there
/// and no key of another API is.
fn v2_target(raw: &RawInflux, org: bool) -> Result<Option<String>> {
    refuse_first(&[
        (
            "influx.org",
            !org,
            "is required with influx.api v2 (the organisation name)",
        ),
        (
            "influx.database",
            present(raw.database.clone()).is_some(),
            "is for api v1; with v2 use influx.bucket",
        ),
        no_sync_outside_v3(raw),
    ])?;
    Ok(present(raw.bucket.clone()))
}

/// The v1 database the file names (`None` for the namespace), once no key of another API is
/// there.
fn v1_target(raw: &RawInflux) -> Result<Option<String>> {
    refuse_first(&[
        (
            "influx.bucket",
            present(raw.bucket.clone()).is_some(),
            "is for api v2; with v1 use influx.database",
        ),
        no_sync_outside_v3(raw),
    ])?;
    Ok(present(raw.database.clone()))
}

/// The v3 database the file names (`None` for the namespace), once no key of another API is
/// there.
fn v3_target(raw: &RawInflux, org: bool) -> Result<Option<String>> {
    refuse_first(&[
        (
            "influx.bucket",
            raw.bucket.is_some(),
            "is for api v2; with v3 use influx.database",
        ),
        ("influx.org", org, "is for api v2; v3 has no organisations"),
        (
            "influx.retention_policy",
            raw.retention_policy.is_some(),
            "is for api v1; v3 has none",
        ),
        (
            "influx.username",
            raw.username.is_some(),
            "is for api v1; v3 takes influx.token",
        ),
    ])?;
    Ok(present(raw.database.clone()))
}

/// Whether a URL's host is this machine: `localhost`, `127.x.x.x` or `[::1]`.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `influx.url` key: required, http:// or https://, and without credentials in it.
fn check_influx_url(url: Option<String>) -> Result<String> {
    let url = present(url)
        .ok_or_else(|| Error::config("influx.url", "is required, e.g. http://127.0.0.1:8086"))?;
    if has_credentials(&url) {
        return Err(Error::config(
            "influx.url",
            "credentials in the URL are not supported; use influx.token (v2) or influx.username and influx.password (v1)",
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() < "http://x".len()
        || url.contains(char::is_whitespace)
    {
        return Err(Error::config(
            "influx.url",
            format!("`{url}` is not an http:// or https:// URL"),
        ));
    }
    Ok(url)
}

impl InfluxApi {
    /// The `influx.api` key: v2 unless it says otherwise.
    fn from_raw(api: Option<String>) -> Result<InfluxApi> {
        Ok(match present(api).as_deref() {
            None | Some("v2") => InfluxApi::V2,
            Some("v1") => InfluxApi::V1,
            Some("v3") => InfluxApi::V3,
            Some(other) => {
                return Err(Error::config(
                    "influx.api",
                    format!("`{other}` is not v2, v1 or v3"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{no_env, refusal};
    use super::*;

    #[test]
    fn the_section_finds_its_secrets() {
        let mut secrets = Secrets::new(&no_env);
        let influx = InfluxConfig::from_raw(
            RawInflux {
                url: Some("http://h:8086/".into()),
                org: Some("o".into()),
                token: Some("t".into()),
                ..RawInflux::default()
            },
            "beta",
            &mut secrets,
        )
        .unwrap();
        assert_eq!(
            (influx.url.as_str(), influx.target.as_str()),
            ("http://h:8086", "beta")
        );
        assert_eq!(influx.timeout, defaults::INFLUX_TIMEOUT);
        assert_eq!(secrets.sources, ["influx.token"]);
        let (key, _) = refusal(InfluxConfig::from_raw(
            RawInflux {
                url: Some("http://h".into()),
                api: Some("v3".into()),
                org: Some("o".into()),
                ..RawInflux::default()
            },
            "beta",
            &mut Secrets::new(&no_env),
        ));
        assert_eq!(key, "influx.org");
    }
}
