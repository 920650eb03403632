//! The one module that talks to InfluxDB: the blocking HTTP client with its kept-alive
//! connection and authorisation, used by the writer thread for writes ([`write`]) and by the
//! main thread for the start-up ping and `collector check` ([`probe`]).
//!
//! What an answer means is decided apart, in the pure [`answer`], so each status InfluxDB v1,
//! v2 and v3 can send (and v3's per-line partial-write answers) is tested without a server.

use crate::config::{InfluxApi, InfluxConfig};

mod answer;
mod probe;
mod write;

pub use answer::{
    classify, classify_v3, plan_partial, PartialPlan, RejectedLine, WriteError, V3_MAX_LINE_ERRORS,
};
pub use probe::{
    classify_buckets, classify_databases, classify_ping, classify_v3_databases,
    classify_write_probe, Probe,
};
pub use write::{gzip, write_url};

/// Which server answers at `influx.url`, read from the `X-Influxdb-Version` header of its
/// `/ping` ([`server_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// InfluxDB 1.x or 2.x, or a server that names no version (VictoriaMetrics, a proxy).
    Earlier,
    /// InfluxDB 3 (Core or Enterprise): its v1 and v2 write APIs refuse a body with one bad
    /// line whole, naming neither line nor reason, and each write returns only once its
    /// write-ahead log is flushed (every second by default).
    V3,
}

/// The server a `/ping` answer's `X-Influxdb-Version` names: `3.6.0`, `v3.0.1`, `3` → V3;
/// anything else, or nothing, → Earlier.
pub fn server_of(version: Option<&str>) -> Server {
    let version = version.unwrap_or("").trim();
    let version = version.strip_prefix('v').unwrap_or(version);
    let major = version.split('.').next().unwrap_or("");
    if major == "3" {
        Server::V3
    } else {
        Server::Earlier
    }
}

/// How writes go to a server with a configuration: the one decision the writer's client acts
/// on ([`Influx`], once `/ping` named the server) and `collector check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Through the configured API, as configured.
    Configured,
    /// `influx.api` unset and the server is InfluxDB 3: through its v3 API, to the database
    /// named as the bucket, which names each rejected line.
    SwitchedToV3,
    /// v1 or v2 forced against InfluxDB 3: through that API, and a body it refuses whole
    /// through the v3 API without partial writes, to find its bad lines.
    Diagnosed(InfluxApi),
}

/// The [`WritePath`] of `config` against `server`.
pub fn write_path(config: &InfluxConfig, server: Server) -> WritePath {
    match (server, config.api, config.api_given) {
        (Server::Earlier, _, _) | (Server::V3, InfluxApi::V3, _) => WritePath::Configured,
        (Server::V3, _, false) => WritePath::SwitchedToV3,
        (Server::V3, api, true) => WritePath::Diagnosed(api),
    }
}

/// A blocking InfluxDB client with one kept-alive connection.
pub struct Influx {
    agent: ureq::Agent,
    api: InfluxApi,
    base_url: String,
    write_url: String,
    authorization: Option<String>,
    /// The buffer write bodies are compressed into, reused from write to write; `None` when
    /// `influx.gzip` is off.
    gzip: Option<Vec<u8>>,
    /// The configuration, for the v3 endpoints once the server turns out to be InfluxDB 3.
    config: InfluxConfig,
    /// The server, once a `/ping` has said ([`Influx::ping`]).
    server: Option<Server>,
    /// With v1 or v2 forced against InfluxDB 3: `/api/v3/write_lp` with
    /// `accept_partial=false`, which names the first bad line of a body with its reason and
    /// stores nothing, at once, where the forced API only says the body is bad.
    diagnose_url: Option<String>,
}

impl Influx {
    pub fn new(config: &InfluxConfig) -> Influx {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .max_idle_connections_per_host(2)
            .user_agent(concat!("collector/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &config.tls {
            builder = builder.tls_config(tls.clone());
        }
        let agent = builder.build().new_agent();
        Influx {
            agent,
            api: config.api,
            base_url: config.url.clone(),
            write_url: write_url(config),
            authorization: authorization(config),
            gzip: config.gzip.then(Vec::new),
            config: config.clone(),
            server: None,
            diagnose_url: None,
        }
    }

    /// The server, once a `/ping` has named it.
    pub fn server(&self) -> Option<Server> {
        self.server
    }

    /// Whether rejected bodies can be diagnosed line by line ([`Influx::diagnose`]).
    pub fn diagnoses(&self) -> bool {
        self.diagnose_url.is_some()
    }

    /// Takes in what a `/ping` said about the server, the first time it says it. With
    /// `influx.api` unset, InfluxDB 3 is written to through its v3 API, to the database of
    /// the bucket's name: per-line answers instead of a whole body refused. With v1 or v2
    /// forced, rejected bodies are diagnosed through the v3 API (once said, at warn).
    fn meet(&mut self, server: Server, version: &str) {
        if self.server == Some(server) {
            return;
        }
        self.server = Some(server);
        let v3 = v3_config(&self.config);
        let api = match write_path(&self.config, server) {
            WritePath::Configured => return,
            WritePath::Diagnosed(api) => api,
            WritePath::SwitchedToV3 => {
                self.api = InfluxApi::V3;
                self.write_url = write_url(&v3);
                self.authorization = authorization(&v3);
                log::info!(
                "influxdb {} is InfluxDB {version}: writing through its v3 API (/api/v3/write_lp) to database {}, which names each rejected line; set influx.api to choose another",
                self.base_url,
                v3.target
                );
                return;
            }
        };
        // Its `/write` names the first bad line of a refused body (read as v3's answer in
        // `write`); its `/api/v2/write` names none, so those are diagnosed.
        let (api, cost) = match api {
            InfluxApi::V1 => ("v1", "naming only its first bad line, so each bad line costs one more write"),
            _ => ("v2", "without naming it, so each bad line costs one more request through /api/v3/write_lp to find it"),
        };
        self.diagnose_url = Some(write::diagnose_url(&v3.url, &v3.target));
        log::warn!(
            "influxdb {} is InfluxDB {version} and influx.api is {api}: it refuses a batch with a bad line whole, {cost}; remove influx.api (or set v3) for per-line answers",
            self.base_url
        );
    }

    /// `request` with the configured credentials, which every request to InfluxDB carries.
    fn authorised<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(auth) => request.header("Authorization", auth),
            None => request,
        }
    }

    /// A POST of line protocol to `url`: a write, a diagnosis, or the probe of one.
    fn write_request(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.authorised(
            self.agent
                .post(url)
                .header("Content-Type", "text/plain; charset=utf-8"),
        )
    }

    /// Checks that InfluxDB answers at all (`/ping`, on v1, v2 and v3), and learns which
    /// server it is from the answer.
    pub fn ping(&mut self) -> Result<(), String> {
        self.ping_within(None)
    }

    /// [`Influx::ping`], given up after `timeout` when one is given (`influx.timeout`
    /// otherwise): the writer's idle ping holds up the chunks arriving meanwhile, which no
    /// one keeps alive until it returns.
    pub fn ping_within(&mut self, timeout: Option<std::time::Duration>) -> Result<(), String> {
        // InfluxDB 3 guards `/ping` with the token unless told otherwise; 1.x and 2.x ignore
        // the header there.
        let mut request = self.authorised(self.agent.get(&format!("{}/ping", self.base_url)));
        if let Some(timeout) = timeout {
            request = request.config().timeout_global(Some(timeout)).build();
        }
        match request.call() {
            Ok(response) if response.status().is_success() => {
                let version = response
                    .headers()
                    .get("x-influxdb-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                self.meet(server_of(Some(&version)), &version);
                Ok(())
            }
            Ok(response) => Err(format!(
                "{}/ping answered {}",
                self.base_url,
                response.status().as_u16()
            )),
            Err(e) => Err(format!(
                "{} unreachable: {}",
                self.base_url,
                transport_error(&e)
            )),
        }
    }

    /// Refuses to start when an `https://` InfluxDB fails the TLS handshake (an unknown CA,
    /// a wrong name, an expired certificate, a refused client certificate): unlike a
    /// database that is down, that needs a fix in the configuration or the certificates.
    /// Anything else (no answer at all) is left to the writer's retries.
    pub fn check_tls(&self) -> crate::error::Result<()> {
        if !self.base_url.starts_with("https://") {
            return Ok(());
        }
        match self.agent.get(&format!("{}/ping", self.base_url)).call() {
            Err(e) => match crate::tls::explain(&e.to_string(), "influx.tls") {
                Some(problem) => Err(crate::error::Error::Influx {
                    what: format!("TLS with {}", self.base_url),
                    problem,
                }),
                None => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }
}

/// The configuration of the v3 API for the same server and target: the bucket or database
/// becomes the v3 database (with a v1 retention policy, `<database>/<policy>`, as InfluxDB 3
/// names what its v1 API writes to).
fn v3_config(config: &InfluxConfig) -> InfluxConfig {
    let target = match &config.retention_policy {
        Some(rp) => format!("{}/{rp}", config.target),
        None => config.target.clone(),
    };
    InfluxConfig {
        api: InfluxApi::V3,
        target,
        org: None,
        retention_policy: None,
        no_sync: false,
        ..config.clone()
    }
}

/// Percent-encodes a query parameter value.
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Authorization` header value, if any.
fn authorization(config: &InfluxConfig) -> Option<String> {
    if let Some(token) = &config.token {
        let scheme = match config.api {
            InfluxApi::V3 => "Bearer",
            InfluxApi::V1 | InfluxApi::V2 => "Token",
        };
        return Some(format!("{scheme} {}", token.expose()));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Some(format!(
            "Basic {}",
            crate::base64::encode(format!("{user}:{}", password.expose()).as_bytes())
        )),
        _ => None,
    }
}

/// The text of a failed request, with a TLS failure said plainly. ureq's errors name the
/// problem and at most the URL (which holds no credentials: the configuration refuses them),
/// never a header.
fn transport_error(e: &ureq::Error) -> String {
    let text = e.to_string();
    match crate::tls::explain(&text, "influx.tls") {
        Some(problem) => format!("TLS: {problem}"),
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;

    /// A configuration for unit tests: `http://db:8086`, organisation `my org`, target `beta`.
    pub(crate) fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            url: "http://db:8086".into(),
            api,
            api_given: true,
            token: None,
            org: Some("my org".into()),
            target: "beta".into(),
            retention_policy: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(1),
            tls: None,
            gzip: true,
            no_sync: false,
        }
    }

    #[test]
    fn writes_go_through_v3_to_influxdb_3_unless_the_api_was_written() {
        let with = |api, api_given| InfluxConfig {
            api_given,
            ..config(api)
        };
        for (api, given, server, path) in [
            (InfluxApi::V2, false, Server::Earlier, WritePath::Configured),
            (InfluxApi::V1, true, Server::Earlier, WritePath::Configured),
            (InfluxApi::V2, false, Server::V3, WritePath::SwitchedToV3),
            (InfluxApi::V3, true, Server::V3, WritePath::Configured),
            (
                InfluxApi::V1,
                true,
                Server::V3,
                WritePath::Diagnosed(InfluxApi::V1),
            ),
            (
                InfluxApi::V2,
                true,
                Server::V3,
                WritePath::Diagnosed(InfluxApi::V2),
            ),
        ] {
            assert_eq!(
                write_path(&with(api, given), server),
                path,
                "{api:?} {given} {server:?}"
            );
        }
    }

    #[test]
    fn the_server_is_read_from_the_ping_version() {
        for (version, server) in [
            (Some("3.6.0"), Server::V3),
            (Some("v3.0.1"), Server::V3),
            (Some(" 3 "), Server::V3),
            (Some("1.6.7"), Server::Earlier),
            (Some("v2.7.11"), Server::Earlier),
            (Some("30.1"), Server::Earlier),
            (Some(""), Server::Earlier),
            (None, Server::Earlier),
        ] {
            assert_eq!(server_of(version), server, "{version:?}");
        }
    }

    #[test]
    fn auth_headers() {
        let mut c = config(InfluxApi::V2);
        assert_eq!(authorization(&c), None);
        c.token = Some(Secret::new("t0k"));
        assert_eq!(authorization(&c).unwrap(), "Token t0k");
        let mut c = config(InfluxApi::V1);
        c.username = Some("Aladdin".into());
        c.password = Some(Secret::new("open sesame"));
        assert_eq!(
            authorization(&c).unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
