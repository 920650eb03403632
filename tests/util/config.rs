//! The collector configuration most tests run with, as a small builder: one place that knows
//! the YAML layout, so a test names only what it changes.

/// A collector configuration: namespace, NATS hosts, InfluxDB URL and API, and the lines a
/// test adds; [`ConfigYaml::yaml`] writes it out.
#[derive(Debug, Clone)]
pub struct ConfigYaml {
    namespace: String,
    hosts: String,
    nats_lines: String,
    influx_url: String,
    /// `None` leaves `influx.api` out.
    api: Option<String>,
    influx_lines: String,
    http_port: Option<u16>,
    extra: String,
}

/// The v1 configuration of namespace `beta` for one NATS URL (or several, comma-separated)
/// and one InfluxDB URL.
pub fn config(nats_url: &str, influx_url: &str) -> ConfigYaml {
    ConfigYaml {
        namespace: "beta".to_string(),
        hosts: nats_url.to_string(),
        nats_lines: String::new(),
        influx_url: influx_url.to_string(),
        api: Some("v1".to_string()),
        influx_lines: String::new(),
        http_port: None,
        extra: String::new(),
    }
}

impl ConfigYaml {
    pub fn namespace(mut self, namespace: &str) -> ConfigYaml {
        self.namespace = namespace.to_string();
        self
    }

    /// `influx.api`: `v1` (the default here), `v2` or `v3`.
    pub fn api(mut self, api: &str) -> ConfigYaml {
        self.api = Some(api.to_string());
        self
    }

    /// Leaves `influx.api` out, as a file that counts on its default does: v2, unless the
    /// server says it is InfluxDB 3.
    pub fn without_api(mut self) -> ConfigYaml {
        self.api = None;
        self
    }

    /// Lines under `nats:` after `hosts`, each indented by two spaces.
    pub fn nats(mut self, lines: &str) -> ConfigYaml {
        self.nats_lines.push_str(lines);
        self
    }

    /// Lines under `influx:` after `url` and `api` (if any), each indented by two spaces.
    pub fn influx(mut self, lines: &str) -> ConfigYaml {
        self.influx_lines.push_str(lines);
        self
    }

    /// `http.listen` on 127.0.0.1 and `port`.
    pub fn http_listen(mut self, port: u16) -> ConfigYaml {
        self.http_port = Some(port);
        self
    }

    /// Top-level lines at the end (or, indented, more lines of the section before them).
    pub fn extra(mut self, lines: &str) -> ConfigYaml {
        self.extra.push_str(lines);
        self
    }

    pub fn yaml(&self) -> String {
        let http = self.http_port.map_or(String::new(), |port| {
            format!("http:\n  listen: 127.0.0.1:{port}\n")
        });
        let api = self
            .api
            .as_ref()
            .map_or(String::new(), |api| format!("  api: {api}\n"));
        format!(
            "namespace: {}\nnats:\n  hosts: [{}]\n{}influx:\n  url: {}\n{api}{}{http}{}",
            self.namespace,
            self.hosts,
            self.nats_lines,
            self.influx_url,
            self.influx_lines,
            self.extra
        )
    }
}
