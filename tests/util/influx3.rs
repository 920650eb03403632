//! InfluxDB 3 Core, the real server (`influxdb3 serve`), for the tests in `tests/influxdb3.rs`.
//!
//! No package registry ships it, so the binary comes from `INFLUXDB3_BIN` (a path to an
//! `influxdb3` binary) or else from `../shared/influxdb3/influxdb3.xz` next to the repository
//! (see its `BUILD.md`), unpacked with `xz` (or Python's `lzma`) once into
//! `<tmp>/collector-test-<run>-influxdb3-bin/` and shared by every test process of the run
//! (unpacked again when the archive changes; `scripts/test.sh` removes it at the end, while a
//! run without `COLLECTOR_TEST_RUN` keeps `collector-test-local-influxdb3-bin` as a cache).
//! Where neither exists (a fresh clone elsewhere), [`Influx3::start_or_skip`] prints
//! `SKIPPED: <test>: no InfluxDB 3 server (...)` and the test returns early; with
//! `COLLECTOR_TEST_SKIPS` set (`scripts/test.sh` does) it also leaves a marker file there, so
//! the script can count the skipped tests.
//!
//! Each server runs with `--object-store file`, its data in its own temp dir, on a loopback
//! port of its own, without auth unless asked, and is killed by PID when its guard drops.
//! A write returns only once the server's write-ahead log is flushed, every second by
//! default; [`Influx3::start_or_skip`] starts it with `--wal-flush-interval 100ms` to keep
//! tests fast, [`Influx3Options::production`] with the default.

use super::{
    free_port, http_agent, http_post,
    process::{DatabaseServer, ServerProcess, START_TIMEOUT},
    run_marker,
    sample::check_points,
    wait_until, HttpReply, Sample, TempDir,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

/// The line a test without a server prints (after `SKIPPED: <test>: `).
pub const NO_INFLUXDB3: &str =
    "no InfluxDB 3 server (set INFLUXDB3_BIN or put influxdb3.xz in ../shared/influxdb3/)";

/// The archive next to the repository, as `../shared/influxdb3/BUILD.md` describes it.
fn archive() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/influxdb3/influxdb3.xz")
}

/// The `influxdb3` binary: `INFLUXDB3_BIN`, else the archive unpacked (once per run); `None`
/// when there is neither. Panics when `INFLUXDB3_BIN` names no file, or when the archive
/// cannot be unpacked: a server that is meant to be there but is not is a failure, not a skip.
pub fn influxdb3_bin() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("INFLUXDB3_BIN").filter(|b| !b.is_empty()) {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "INFLUXDB3_BIN={} is not a file",
                bin.display()
            );
            return Some(bin);
        }
        let archive = archive();
        archive.is_file().then(|| unpack(&archive))
    })
    .as_deref()
}

/// Unpacks `archive` into `<tmp>/<run marker>influxdb3-bin/influxdb3` unless it is there
/// already from the same archive (a stamp file holds the archive's size and mtime). Several
/// test processes may unpack at once: each writes its own file and renames it into place.
fn unpack(archive: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{}influxdb3-bin", run_marker()));
    let bin = dir.join("influxdb3");
    let stamp_file = dir.join("influxdb3.stamp");
    let meta =
        fs::metadata(archive).unwrap_or_else(|e| panic!("cannot read {}: {e}", archive.display()));
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let stamp = format!("{} {mtime}\n", meta.len());
    if bin.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return bin;
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let partial = dir.join(format!("influxdb3.{}.partial", std::process::id()));
    let out = fs::File::create(&partial)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", partial.display()));
    let xz = Command::new("xz")
        .arg("-dc")
        .arg(archive)
        .stdout(out)
        .stderr(Stdio::null())
        .status();
    if !xz.is_ok_and(|s| s.success()) {
        // No xz on PATH (or it failed): Python's lzma reads the same format.
        let script = "import lzma, shutil, sys\n\
                      with lzma.open(sys.argv[1]) as i, open(sys.argv[2], 'wb') as o:\n    \
                      shutil.copyfileobj(i, o, 1 << 20)\n";
        let python = Command::new("python3")
            .args(["-c", script])
            .arg(archive)
            .arg(&partial)
            .status();
        if !python.is_ok_and(|s| s.success()) {
            let _ = fs::remove_file(&partial);
            panic!(
                "cannot unpack {}: neither `xz -dc` nor python3's lzma worked",
                archive.display()
            );
        }
    }
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", partial.display()));
    fs::rename(&partial, &bin).unwrap_or_else(|e| panic!("rename to {}: {e}", bin.display()));
    let stamp_partial = dir.join(format!("influxdb3.stamp.{}", std::process::id()));
    fs::write(&stamp_partial, &stamp).expect("cannot write the stamp");
    fs::rename(&stamp_partial, &stamp_file).expect("cannot rename the stamp");
    bin
}

/// Says that the calling test is skipped for want of a server: the `SKIPPED:` line on stderr
/// and, under `COLLECTOR_TEST_SKIPS=<dir>`, a file in that dir named after the test holding
/// the same line.
pub fn report_skip(reason: &str) {
    let current = thread::current();
    let test = current.name().unwrap_or("an influxdb3 test");
    let line = format!("SKIPPED: {test}: {reason}");
    eprintln!("{line}");
    if let Some(dir) = std::env::var_os("COLLECTOR_TEST_SKIPS").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let _ = fs::create_dir_all(&dir);
        let name: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let _ = fs::write(dir.join(name), format!("{line}\n"));
    }
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Influx3Options {
    /// `--wal-flush-interval`; `None` for the server's default (1 s).
    pub wal_flush: Option<&'static str>,
    /// With authentication: an admin token is created at start ([`Influx3::token`]).
    pub auth: bool,
    /// Extra arguments to `influxdb3 serve`.
    pub extra: Vec<String>,
}

impl Default for Influx3Options {
    /// No auth, the WAL flushed every 100 ms.
    fn default() -> Influx3Options {
        Influx3Options {
            wal_flush: Some("100ms"),
            auth: false,
            extra: Vec::new(),
        }
    }
}

impl Influx3Options {
    /// As production runs it: the default WAL flush interval (1 s), no auth.
    pub fn production() -> Influx3Options {
        Influx3Options {
            wal_flush: None,
            ..Influx3Options::default()
        }
    }

    /// With authentication on.
    pub fn with_auth(mut self) -> Influx3Options {
        self.auth = true;
        self
    }

    /// Starts a server; panics when there is no binary (for a caller that cannot skip, such
    /// as the soak).
    pub fn start(self) -> Influx3 {
        let bin = influxdb3_bin().unwrap_or_else(|| panic!("{NO_INFLUXDB3}"));
        Influx3::start_bin(bin, self)
    }

    /// Starts a server, or skips the calling test (see [`report_skip`]) and returns `None`
    /// when there is no binary.
    pub fn start_or_skip(self) -> Option<Influx3> {
        match influxdb3_bin() {
            Some(bin) => Some(Influx3::start_bin(bin, self)),
            None => {
                report_skip(NO_INFLUXDB3);
                None
            }
        }
    }
}

/// A running `influxdb3 serve` on 127.0.0.1, data in its own temp dir.
pub struct Influx3 {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
    bin: PathBuf,
    options: Influx3Options,
    token: Option<String>,
}

impl Influx3 {
    /// [`Influx3Options::default`]: no auth, a 100 ms WAL flush; `None` (the test skipped)
    /// without a binary.
    pub fn start_or_skip() -> Option<Influx3> {
        Influx3Options::default().start_or_skip()
    }

    fn start_bin(bin: &Path, options: Influx3Options) -> Influx3 {
        let dir = TempDir::new("influxdb3");
        let mut server = Influx3 {
            process: ServerProcess::new(dir.join("influxdb3.log")),
            port: 0,
            dir,
            bin: bin.to_path_buf(),
            options,
            token: None,
        };
        // The port is picked before the server binds it; if another process takes it in
        // between, the server exits and it is tried again with a new one.
        let started = (0..3).any(|_| {
            server.port = free_port();
            server.spawn()
        });
        assert!(
            started,
            "influxdb3 did not start; its log ends:\n{}",
            server.process.log_tail()
        );
        if server.options.auth {
            // With no admin token yet, the server hands out the first one to anyone.
            let reply = http_post(
                &format!("{}/api/v3/configure/token/admin", server.url()),
                &[],
                &[],
                b"",
            )
            .unwrap_or_else(|e| panic!("influxdb3 create admin token: {e}"));
            assert!(
                (200..300).contains(&reply.status),
                "create admin token: {} {}",
                reply.status,
                reply.body
            );
            server.token = reply.json()["token"].as_str().map(str::to_string);
            assert!(server.token.is_some(), "no token in {}", reply.body);
        }
        server
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The admin token when started with authentication.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn auth_headers(&self) -> Vec<(&'static str, String)> {
        self.token
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> HttpReply {
        let mut request = http_agent()
            .get(format!("{}{path}", self.url()))
            .query_pairs(query.iter().copied());
        for (k, v) in self.auth_headers() {
            request = request.header(k, v);
        }
        super::into_reply(request.call()).unwrap_or_else(|e| panic!("influxdb3 GET {path}: {e}"))
    }

    /// POSTs `body` with content type `content_type` (and the admin token when there is one).
    fn post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> HttpReply {
        let mut request = http_agent()
            .post(format!("{}{path}", self.url()))
            .query_pairs(query.iter().copied())
            .header("Content-Type", content_type);
        for (k, v) in self.auth_headers() {
            request = request.header(k, v);
        }
        super::into_reply(request.send(body))
            .unwrap_or_else(|e| panic!("influxdb3 POST {path}: {e}"))
    }

    /// Creates database `db` (`POST /api/v3/configure/database`); one that exists already
    /// (409) is fine.
    pub fn create_database(&self, db: &str) {
        let body = json!({ "db": db }).to_string();
        let reply = self.post(
            "/api/v3/configure/database",
            &[],
            "application/json",
            body.as_bytes(),
        );
        assert!(
            (200..300).contains(&reply.status) || reply.status == 409,
            "create database {db}: {} {}",
            reply.status,
            reply.body
        );
    }

    /// Deletes database `db` (`DELETE /api/v3/configure/database?db=`): it is renamed
    /// `<db>-<time>`, marked deleted, and no longer counts against the database limit.
    pub fn delete_database(&self, db: &str) {
        let mut request = http_agent()
            .delete(format!("{}/api/v3/configure/database", self.url()))
            .query("db", db);
        for (k, v) in self.auth_headers() {
            request = request.header(k, v);
        }
        let reply = super::into_reply(request.call())
            .unwrap_or_else(|e| panic!("influxdb3 delete database {db}: {e}"));
        assert_eq!(reply.status, 200, "delete database {db}: {}", reply.body);
    }

    /// Names of the databases (`GET /api/v3/configure/database?format=json`), `_internal`
    /// included.
    pub fn databases(&self) -> Vec<String> {
        let reply = self.get("/api/v3/configure/database", &[("format", "json")]);
        assert_eq!(reply.status, 200, "list databases: {}", reply.body);
        reply
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["iox::database"].as_str().map(str::to_string))
            .collect()
    }

    /// Writes line protocol with nanosecond timestamps to `/api/v3/write_lp` (partial writes
    /// accepted, the server's default). Returns the reply whatever its status.
    pub fn write_lp(&self, db: &str, lines: &str) -> HttpReply {
        self.post(
            "/api/v3/write_lp",
            &[("db", db), ("precision", "nanosecond")],
            "text/plain; charset=utf-8",
            lines.as_bytes(),
        )
    }

    /// [`Influx3::write_lp`], asserting a 2xx answer.
    pub fn seed(&self, db: &str, lines: &str) {
        let reply = self.write_lp(db, lines);
        assert!(
            reply.status < 300,
            "seed {db}: {} {}",
            reply.status,
            reply.body
        );
    }

    /// A SQL query (`GET /api/v3/query_sql?format=json`): its rows as JSON objects, a null
    /// column left out. `Err` with status and body when the server refuses it (a missing
    /// database answers 404, a missing table 500).
    pub fn try_query(&self, db: &str, sql: &str) -> Result<Vec<Map<String, Value>>, String> {
        let reply = self.get(
            "/api/v3/query_sql",
            &[("db", db), ("q", sql), ("format", "json")],
        );
        if reply.status != 200 {
            return Err(format!("{}: {}", reply.status, reply.body));
        }
        Ok(reply
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row.as_object().cloned())
            .collect())
    }

    /// [`Influx3::try_query`], panicking when the server refuses the query.
    pub fn query(&self, db: &str, sql: &str) -> Vec<Map<String, Value>> {
        self.try_query(db, sql)
            .unwrap_or_else(|e| panic!("influxdb3 query {sql:?} on {db}: {e}"))
    }

    /// Every row of `table`, oldest first, each with `time` as integer nanoseconds, every tag
    /// (string) and every field; columns the row lacks are left out. Empty when the database
    /// or the table does not exist.
    pub fn points(&self, db: &str, table: &str) -> Vec<Map<String, Value>> {
        let sql = format!(
            "SELECT *, CAST(time AS BIGINT) AS \"__time_ns\" FROM {} ORDER BY time",
            quote_sql(table)
        );
        self.rows_with_time(db, table, &sql)
    }

    /// One page of the rows of `table` (as [`Influx3::points`] gives them), for tables too
    /// large to read in one answer: ordered by time and then every tag, which orders the rows
    /// totally (a row is one series at one time).
    pub fn points_page(
        &self,
        db: &str,
        table: &str,
        limit: usize,
        offset: usize,
    ) -> Vec<Map<String, Value>> {
        let order: Vec<String> = std::iter::once("time".to_string())
            .chain(self.tag_keys(db, table).iter().map(|t| quote_sql(t)))
            .collect();
        let sql = format!(
            "SELECT *, CAST(time AS BIGINT) AS \"__time_ns\" FROM {} ORDER BY {} \
             LIMIT {limit} OFFSET {offset}",
            quote_sql(table),
            order.join(", ")
        );
        self.rows_with_time(db, table, &sql)
    }

    /// The rows `sql` (which selects `__time_ns` besides) gives, its `time` the integer
    /// nanoseconds; empty when the database or the table does not exist.
    fn rows_with_time(&self, db: &str, table: &str, sql: &str) -> Vec<Map<String, Value>> {
        match self.try_query(db, sql) {
            Ok(rows) => rows
                .into_iter()
                .map(|mut row| {
                    let ns = row.remove("__time_ns").unwrap_or(Value::Null);
                    row.insert("time".into(), ns);
                    row
                })
                .collect(),
            Err(e) if missing(&e) => Vec::new(),
            Err(e) => panic!("influxdb3 rows of {db}.{table}: {e}"),
        }
    }

    /// Number of rows in `table`; 0 when the database or the table does not exist.
    pub fn count(&self, db: &str, table: &str) -> usize {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", quote_sql(table));
        match self.try_query(db, &sql) {
            Ok(rows) => rows
                .first()
                .and_then(|r| r.get("n"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize,
            Err(e) if missing(&e) => 0,
            Err(e) => panic!("influxdb3 count of {db}.{table}: {e}"),
        }
    }

    /// Column name → its Arrow type as the server reports it (`Float64`, `Int64`, `UInt64`,
    /// `Boolean`, `Utf8`; tags `Dictionary(Int32, Utf8)`; `time`).
    pub fn columns(&self, db: &str, table: &str) -> BTreeMap<String, String> {
        let sql = format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'iox' AND table_name = '{}'",
            table.replace('\'', "''")
        );
        match self.try_query(db, &sql) {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|r| {
                    Some((
                        r.get("column_name")?.as_str()?.to_string(),
                        r.get("data_type")?.as_str()?.to_string(),
                    ))
                })
                .collect(),
            Err(e) if missing(&e) => BTreeMap::new(),
            Err(e) => panic!("influxdb3 columns of {db}.{table}: {e}"),
        }
    }

    /// Field name → type as InfluxQL names it (`integer`, `unsigned`, `float`, `boolean`,
    /// `string`), tags and `time` left out: what [`Sample::matches`] expects.
    pub fn field_types(&self, db: &str, table: &str) -> BTreeMap<String, String> {
        self.columns(db, table)
            .into_iter()
            .filter_map(|(name, ty)| {
                let kind = match ty.as_str() {
                    "Int64" => "integer",
                    "UInt64" => "unsigned",
                    "Float64" => "float",
                    "Boolean" => "boolean",
                    "Utf8" => "string",
                    _ => return None,
                };
                Some((name, kind.to_string()))
            })
            .collect()
    }

    /// Tag columns of `table`.
    pub fn tag_keys(&self, db: &str, table: &str) -> Vec<String> {
        self.columns(db, table)
            .into_iter()
            .filter(|(_, ty)| ty.starts_with("Dictionary("))
            .map(|(name, _)| name)
            .collect()
    }

    /// Checks that `table` holds exactly the points of `samples` (as
    /// [`super::Influx::check_samples`] does for InfluxDB 1.x): same count, and for each
    /// sample a row at its time with exactly its tags and fields, of the expected types.
    pub fn check_samples(&self, db: &str, table: &str, samples: &[Sample]) -> Result<(), String> {
        check_points(
            &format!("{db}.{table}"),
            &self.points(db, table),
            &self.tag_keys(db, table),
            &self.field_types(db, table),
            samples,
        )
    }

    /// `GET /ping` as is (with the admin token when there is one).
    pub fn ping(&self) -> HttpReply {
        self.get("/ping", &[])
    }

    /// The last 20 lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

impl DatabaseServer for Influx3 {
    const PROGRAM: &'static str = "influxdb3";

    fn process(&self) -> &ServerProcess {
        &self.process
    }

    fn process_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    fn port(&self) -> u16 {
        self.port
    }

    /// Spawns the server on `self.port` with the data in `self.dir`, and waits for `/health`;
    /// false if it exited first.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--node-id", "n0", "--object-store", "file"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--http-bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--disable-telemetry-upload");
        if self.options.auth {
            // `/health` stays open, for the readiness wait.
            cmd.args(["--disable-authz", "health"]);
        } else {
            cmd.arg("--without-auth");
        }
        if let Some(interval) = self.options.wal_flush {
            cmd.args(["--wal-flush-interval", interval]);
        }
        cmd.args(&self.options.extra);
        let health = format!("{}/health", self.url());
        self.process.spawn_until_ok(cmd, START_TIMEOUT, &health)
    }
}

/// Quotes a SQL identifier: `"name"` with `"` doubled.
pub fn quote_sql(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a refused query failed for a missing database (404) or table (500 `... not found`).
fn missing(error: &str) -> bool {
    error.starts_with("404:") || (error.starts_with("500:") && error.contains("not found"))
}
