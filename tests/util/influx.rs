//! The databases: Debian's InfluxDB 1.6 (a real server for the v1 write API)
//! and Debian's VictoriaMetrics (which accepts the v2 write API's request
//! format, `/api/v2/write`).

use super::{
    free_port, http_agent, http_get, http_post,
    process::{DatabaseServer, HttpServer, ServerProcess, START_TIMEOUT},
    sample::check_points,
    tls::{get_with, post_with, Issued, TestCa},
    wait_until, HttpReply, Sample, TempDir,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The influxd configuration, shared with the scripts' `start_influx`.
const CONFIG_TEMPLATE: &str = include_str!("../../scripts/lib/influxdb.conf");

/// Quotes an InfluxQL identifier: `"name"` with `"` and `\` escaped.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An influxd 1.6 with its own configuration file, every listener on
/// 127.0.0.1, data in its own temp dir.
pub struct Influx {
    process: ServerProcess,
    port: u16,
    rpc_port: u16,
    dir: TempDir,
    config: PathBuf,
    auth: Option<(String, String)>,
    /// With HTTPS: the server's certificate, and an agent that trusts its CA.
    https: Option<(Issued, ureq::Agent)>,
}

impl Influx {
    /// Starts influxd without authentication and waits until `/ping` answers.
    pub fn start() -> Influx {
        Influx::start_inner(None, None)
    }

    /// Starts influxd with `auth-enabled = true` and an admin user with all
    /// privileges. The harness's own requests authenticate as that user.
    pub fn start_with_auth(user: &str, password: &str) -> Influx {
        Influx::start_inner(Some((user.to_string(), password.to_string())), None)
    }

    /// Starts influxd serving HTTPS only (`https-enabled`) with `server`, a
    /// certificate `ca` issued; the harness's own requests trust `ca`.
    pub fn start_with_https(ca: &TestCa, server: &Issued) -> Influx {
        Influx::start_inner(None, Some((server.clone(), ca.agent())))
    }

    fn start_inner(auth: Option<(String, String)>, https: Option<(Issued, ureq::Agent)>) -> Influx {
        let dir = TempDir::new("influx");
        let mut influx = Influx {
            process: ServerProcess::new(dir.join("influxd.log")),
            port: 0,
            rpc_port: 0,
            config: dir.join("influxdb.conf"),
            dir,
            auth,
            https,
        };
        // Ports are picked before influxd binds them; if another process takes
        // one in between, influxd exits and we try again with new ports.
        let started = (0..3).any(|_| {
            influx.port = free_port();
            influx.rpc_port = free_port();
            influx.write_config();
            influx.spawn()
        });
        assert!(
            started,
            "influxd did not start; its log ends:\n{}",
            influx.process.log_tail()
        );
        if let Some((user, password)) = influx.auth.clone() {
            // With no user yet, influxd lets anyone create the first admin.
            let q = format!(
                "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
                quote_ident(&user),
                password.replace('\\', "\\\\").replace('\'', "\\'")
            );
            influx.exec(&q);
        }
        influx
    }

    /// Writes the configuration: `scripts/lib/influxdb.conf` filled in.
    fn write_config(&self) {
        let https = match &self.https {
            Some((server, _)) => format!(
                "  https-enabled = true\n  https-certificate = \"{}\"\n  https-private-key = \"{}\"\n",
                server.cert.display(),
                server.key.display()
            ),
            None => String::new(),
        };
        let text = CONFIG_TEMPLATE
            .replace("{rpc}", &self.rpc_port.to_string())
            .replace("{http}", &self.port.to_string())
            .replace("{dir}", &self.dir.path().display().to_string())
            .replace("{auth}", &self.auth.is_some().to_string())
            .replace("{log}", "true")
            .replace("{https}", &https);
        fs::write(&self.config, text).expect("cannot write influxdb.conf");
    }

    /// The agent for the harness's own requests: one that trusts the test CA
    /// with HTTPS.
    fn agent(&self) -> &ureq::Agent {
        match &self.https {
            Some((_, agent)) => agent,
            None => http_agent(),
        }
    }

    fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<HttpReply, String> {
        get_with(self.agent(), url, query)
    }

    fn post(&self, url: &str, query: &[(&str, &str)], body: &[u8]) -> Result<HttpReply, String> {
        post_with(self.agent(), url, query, body)
    }

    /// `http://127.0.0.1:PORT`, or `https://` with HTTPS.
    pub fn url(&self) -> String {
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The admin user and password when started with authentication.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    fn with_auth<'a>(&'a self, mut query: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        if let Some((user, password)) = &self.auth {
            query.push(("u", user));
            query.push(("p", password));
        }
        query
    }

    /// A read query (`GET /query`, `epoch=ns` so times are integer
    /// nanoseconds). Panics unless the answer is 200 with JSON.
    pub fn query(&self, db: &str, influxql: &str) -> Value {
        let query = self.with_auth(vec![("db", db), ("q", influxql), ("epoch", "ns")]);
        let reply = self
            .get(&format!("{}/query", self.url()), &query)
            .unwrap_or_else(|e| panic!("influx query {influxql:?}: {e}"));
        assert_eq!(
            reply.status, 200,
            "influx query {influxql:?}: {}",
            reply.body
        );
        reply.json()
    }

    /// A statement that changes something (`POST /query`): CREATE, DROP, ...
    /// Panics unless the answer is 200 without a statement error.
    pub fn exec(&self, influxql: &str) -> Value {
        self.exec_in("", influxql)
    }

    /// [`Influx::exec`] on database `db` (for statements such as DELETE, which name no
    /// database themselves); `""` for none.
    pub fn exec_in(&self, db: &str, influxql: &str) -> Value {
        let mut query = vec![("q", influxql)];
        if !db.is_empty() {
            query.push(("db", db));
        }
        let query = self.with_auth(query);
        let reply = self
            .post(&format!("{}/query", self.url()), &query, b"")
            .unwrap_or_else(|e| panic!("influx exec {influxql:?}: {e}"));
        assert_eq!(
            reply.status, 200,
            "influx exec {influxql:?}: {}",
            reply.body
        );
        let value = reply.json();
        if let Some(error) = value["results"][0].get("error") {
            panic!("influx exec {influxql:?}: {error}");
        }
        value
    }

    pub fn create_database(&self, db: &str) {
        self.exec(&format!("CREATE DATABASE {}", quote_ident(db)));
    }

    /// Writes line protocol with nanosecond timestamps (`POST /write`), as the
    /// harness's admin when authentication is on. Returns the reply whatever
    /// its status.
    pub fn write(&self, db: &str, lines: &str) -> HttpReply {
        let query = self.with_auth(vec![("db", db), ("precision", "ns")]);
        self.post(&format!("{}/write", self.url()), &query, lines.as_bytes())
            .unwrap_or_else(|e| panic!("influx write: {e}"))
    }

    /// The rows of one query result as JSON objects column → value, with null
    /// columns left out (a point lacking a field or tag). Empty when the
    /// database or measurement does not exist.
    fn rows(&self, db: &str, influxql: &str) -> Vec<Map<String, Value>> {
        let answer = self.query(db, influxql);
        let result = &answer["results"][0];
        if let Some(error) = result.get("error") {
            if error
                .as_str()
                .is_some_and(|e| e.contains("database not found"))
            {
                return Vec::new();
            }
            panic!("influx query {influxql:?}: {error}");
        }
        let mut rows = Vec::new();
        for series in result["series"].as_array().into_iter().flatten() {
            let columns: Vec<&str> = series["columns"]
                .as_array()
                .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for values in series["values"].as_array().into_iter().flatten() {
                let mut row = Map::new();
                for (column, value) in columns.iter().zip(values.as_array().into_iter().flatten()) {
                    if !value.is_null() {
                        row.insert(column.to_string(), value.clone());
                    }
                }
                rows.push(row);
            }
        }
        rows
    }

    /// Every point of `measurement` (`SELECT * FROM "m"`), oldest first, as
    /// JSON objects: `time` (integer ns), every tag (string) and every field.
    /// Note that InfluxDB's JSON prints a float with an integral value without
    /// a fraction (`1.0` comes back as `1`): use [`Influx::field_types`] to
    /// check types.
    pub fn points(&self, db: &str, measurement: &str) -> Vec<Map<String, Value>> {
        self.rows(db, &format!("SELECT * FROM {}", quote_ident(measurement)))
    }

    /// One page of the points of `measurement`, oldest first (`SELECT * ... LIMIT OFFSET`), for
    /// measurements too large to read in one answer.
    pub fn points_page(
        &self,
        db: &str,
        measurement: &str,
        limit: usize,
        offset: usize,
    ) -> Vec<Map<String, Value>> {
        let q = format!(
            "SELECT * FROM {} LIMIT {limit} OFFSET {offset}",
            quote_ident(measurement)
        );
        self.rows(db, &q)
    }

    /// Number of points in `measurement`.
    pub fn count(&self, db: &str, measurement: &str) -> usize {
        self.points(db, measurement).len()
    }

    /// Field name → type (`integer`, `float`, `boolean`, `string`).
    pub fn field_types(&self, db: &str, measurement: &str) -> BTreeMap<String, String> {
        let q = format!("SHOW FIELD KEYS FROM {}", quote_ident(measurement));
        self.rows(db, &q)
            .into_iter()
            .filter_map(|row| {
                Some((
                    row.get("fieldKey")?.as_str()?.to_string(),
                    row.get("fieldType")?.as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Tag keys of `measurement`.
    pub fn tag_keys(&self, db: &str, measurement: &str) -> Vec<String> {
        let q = format!("SHOW TAG KEYS FROM {}", quote_ident(measurement));
        self.rows(db, &q)
            .into_iter()
            .filter_map(|row| Some(row.get("tagKey")?.as_str()?.to_string()))
            .collect()
    }

    /// Names of the databases.
    pub fn databases(&self) -> Vec<String> {
        self.rows("", "SHOW DATABASES")
            .into_iter()
            .filter_map(|row| Some(row.get("name")?.as_str()?.to_string()))
            .collect()
    }

    /// Checks that `measurement` holds exactly the points of `samples`: same
    /// count, and for each sample a point at its time with exactly its tags
    /// and fields, each field of the expected type. Returns a description of
    /// the first differences otherwise.
    pub fn check_samples(
        &self,
        db: &str,
        measurement: &str,
        samples: &[Sample],
    ) -> Result<(), String> {
        check_points(
            &format!("{db}.{measurement}"),
            &self.points(db, measurement),
            &self.tag_keys(db, measurement),
            &self.field_types(db, measurement),
            samples,
        )
    }
}

impl DatabaseServer for Influx {
    const PROGRAM: &'static str = "influxd";

    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    fn port(&self) -> u16 {
        self.port
    }

    /// Spawns influxd and waits for `/ping`; false if it exited first.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("influxd");
        cmd.arg("run").arg("-config").arg(&self.config);
        let (agent, ping) = (self.agent().clone(), format!("{}/ping", self.url()));
        self.process.spawn_until_ready(cmd, START_TIMEOUT, |_| {
            get_with(&agent, &ping, &[]).is_ok_and(|r| r.status == 204)
        })
    }
}

/// Debian's VictoriaMetrics (1.79) on 127.0.0.1, data in its own temp dir,
/// retention 100 years so old sample timestamps are kept.
///
/// How it stores InfluxDB line protocol, checked by hand against this version:
/// - each field becomes its own metric named `<measurement>_<field>`
///   (`cpu,host=a usage=1.5,ok=true` → `cpu_usage{host="a"} 1.5` and
///   `cpu_ok{host="a"} 1`); tags become labels;
/// - values are floats: integers as they are, `true`/`false` as 1/0, and a
///   string field as 0 (its text is lost);
/// - timestamps are kept in **milliseconds** (nanoseconds are truncated);
/// - `/api/v2/write` ignores `org` and `bucket` (no label), while `/write?db=x`
///   adds the label `db="x"`;
/// - an unparsable line is logged and skipped, and the request still gets 204;
/// - a point older than the retention period is dropped silently (204).
pub struct VictoriaMetrics {
    server: HttpServer,
}

impl VictoriaMetrics {
    /// Starts victoria-metrics and waits until `/health` answers. Only `-httpListenAddr`
    /// listens: the graphite, influx and opentsdb listeners are off unless given an address.
    pub fn start() -> VictoriaMetrics {
        let server = HttpServer::start(
            "victoria-metrics",
            TempDir::new("victoria"),
            "/health",
            START_TIMEOUT,
            |port, dir| {
                let mut cmd = Command::new("victoria-metrics");
                cmd.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .arg(format!("-storageDataPath={}", dir.join("data").display()))
                    .arg("-retentionPeriod=100y");
                cmd
            },
        );
        VictoriaMetrics { server }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Posts line protocol to `/api/v2/write` as a v2 client would
    /// (`org`, `bucket`, `precision=ns`, a token header).
    pub fn write_v2(&self, org: &str, bucket: &str, lines: &str) -> HttpReply {
        http_post(
            &format!("{}/api/v2/write", self.url()),
            &[("org", org), ("bucket", bucket), ("precision", "ns")],
            &[("Authorization", "Token harness")],
            lines.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("victoria-metrics write: {e}"))
    }

    /// Makes everything written so far searchable (`/internal/force_flush`).
    pub fn flush(&self) {
        let reply = http_get(&format!("{}/internal/force_flush", self.url()), &[])
            .unwrap_or_else(|e| panic!("victoria-metrics force_flush: {e}"));
        assert_eq!(reply.status, 200, "force_flush: {}", reply.body);
    }

    /// Flushes, then exports the series matching `selector` (such as
    /// `{__name__="cpu_usage"}` or `{__name__=~"cpu_.*"}`): one JSON object per
    /// series, `{"metric": {"__name__": .., labels..}, "values": [..],
    /// "timestamps": [ms..]}`.
    pub fn export(&self, selector: &str) -> Vec<Value> {
        self.flush();
        let reply = http_get(
            &format!("{}/api/v1/export", self.url()),
            &[("match[]", selector)],
        )
        .unwrap_or_else(|e| panic!("victoria-metrics export: {e}"));
        assert_eq!(reply.status, 200, "export {selector}: {}", reply.body);
        reply
            .body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("export line {l}: {e}")))
            .collect()
    }

    /// Every `(labels without __name__, timestamp ms, value)` of one metric,
    /// sorted by time then labels.
    pub fn samples(&self, metric: &str) -> Vec<(BTreeMap<String, String>, i64, f64)> {
        let mut out = Vec::new();
        for series in self.export(&format!("{{__name__={}}}", quote_ident(metric))) {
            let labels: BTreeMap<String, String> = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let times = series["timestamps"].as_array().cloned().unwrap_or_default();
            let values = series["values"].as_array().cloned().unwrap_or_default();
            for (t, v) in times.iter().zip(&values) {
                out.push((
                    labels.clone(),
                    t.as_i64().unwrap_or(0),
                    v.as_f64().unwrap_or(f64::NAN),
                ));
            }
        }
        out.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        out
    }

    /// Names of every metric stored.
    pub fn metric_names(&self) -> Vec<String> {
        self.flush();
        let reply = http_get(&format!("{}/api/v1/label/__name__/values", self.url()), &[])
            .unwrap_or_else(|e| panic!("victoria-metrics label values: {e}"));
        assert_eq!(reply.status, 200, "label values: {}", reply.body);
        let mut names: Vec<String> = reply.json()["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Everything victoria-metrics logged.
    pub fn log(&self) -> String {
        self.server.process.log()
    }
}
