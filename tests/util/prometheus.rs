//! A real Prometheus (Debian's `prometheus`) on loopback, scraping the collectors of a test
//! every second and evaluating a rules file every second, with its data in a temp dir.

use super::{free_port, http_get, kill_child, log_tail, spawn_logged, wait_until, TempDir};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    log: PathBuf,
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
        let mut prometheus = Prometheus {
            child: None,
            port: 0,
            log: dir.join("prometheus.log"),
            dir,
        };
        for _ in 0..3 {
            prometheus.port = free_port();
            if prometheus.spawn() {
                return prometheus;
            }
        }
        panic!(
            "prometheus did not start; its log ends:\n{}",
            log_tail(&prometheus.log, 20)
        );
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            self.dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .arg("--log.level=warn");
        let mut child = spawn_logged(cmd, &self.log);
        let url = self.url();
        let mut exited = false;
        let ready = wait_until(START_TIMEOUT, || {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                return true;
            }
            http_get(&format!("{url}/-/ready"), &[]).is_ok_and(|r| r.status == 200)
        });
        if exited || !ready {
            kill_child(&mut child);
            return false;
        }
        self.child = Some(child);
        true
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
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
        super::read_log(&self.log)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}
