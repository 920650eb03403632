//! A real Prometheus (Debian's `prometheus`) on loopback, scraping the collectors of a test
//! every second and evaluating a rules file every second, with its data in a temp dir.

use super::{http_get, process::HttpServer, TempDir};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Prometheus {
    server: HttpServer,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port` of `/metrics`) as job `collector`,
    /// with `rules` (a rules file's text) loaded, and waits until `/-/ready` answers.
    pub fn start(targets: &[String], rules: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let rules_path = dir.join("rules.yml");
        fs::write(&rules_path, rules).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - '{}'\n\
             scrape_configs:\n  - job_name: collector\n    static_configs:\n      - targets: [{}]\n",
            rules_path.display(),
            targets.join(", ")
        );
        fs::write(dir.join("prometheus.yml"), config).unwrap();
        let server =
            HttpServer::start("prometheus", dir, "/-/ready", START_TIMEOUT, |port, dir| {
                let mut cmd = Command::new("prometheus");
                cmd.arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn");
                cmd
            });
        Prometheus { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }

    /// `GET /api/v1/<path>`: its `data`, or the error Prometheus gave.
    pub fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let reply = http_get(&format!("{}/api/v1/{path}", self.url()), query)?;
        let body = reply.json();
        if body["status"] != "success" {
            return Err(format!("{path} {query:?}: {} {}", reply.status, reply.body));
        }
        Ok(body["data"].clone())
    }

    /// The result of an instant query (a vector or scalar), or the error.
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        self.api("query", &[("query", promql)])
            .map(|data| data["result"].clone())
    }

    pub fn log(&self) -> String {
        self.server.process.log()
    }
}
