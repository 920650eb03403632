//! A TEST DOUBLE of InfluxDB 3's native write endpoint, `POST /api/v3/write_lp`.
//!
//! Written from the InfluxDB 3 Core documentation, then corrected to answer as the real server
//! does (InfluxDB 3 Core 3.6.0, checked request by request; `tests/influxdb3.rs` runs the
//! collector against that server, and `docs/INFLUXDB3.md` lists every difference found and
//! what changed here). What it does, like the server:
//! - the token on every request (`/ping` too, as a server with auth guards it), as
//!   `Authorization: Bearer <token>` or `Token <token>`; 401 with an empty body otherwise;
//! - `/ping`: 200 `{"version","revision","process_id"}` with `x-influxdb-version: 3.6.0` and
//!   `x-influxdb-build: Core`;
//! - a database is created by the first write to it, at most 5, even by a write refused with
//!   `accept_partial=true` (an empty body, every line rejected) but not by one refused with
//!   `accept_partial=false`; past the limit, 422 `{"error": "Adding a new database would
//!   exceed limit of 5 databases"}`, whatever the body;
//! - a per-table schema: the first line that writes a column fixes whether it is a tag or a
//!   field and the field's type; a later line that disagrees is rejected with the engine's
//!   message `invalid column type for column 'f', expected iox::column_type::field::float, got
//!   iox::column_type::field::integer`; a new table when the server (all databases) already
//!   held the table limit before the request, or a new column past the per-table column limit
//!   (`time` included, counted line by line), is rejected with `Update to schema would exceed
//!   number of tables limit of N tables` / `... number of columns per table limit of N columns`;
//! - with `accept_partial=true` (the default) every other line is stored, and the answer is
//!   `{"error": "partial write of line protocol occurred", "data": [{"error_message",
//!   "line_number", "original_line"}, ...]}` naming every rejected line, 422 when one of them
//!   hit a limit and 400 otherwise; with `accept_partial=false` nothing is stored and the
//!   answer is 400 `{"error": "parsing failed for write_lp endpoint", "data": {...}}` naming
//!   the first rejected line;
//! - `original_line` is the first 20 bytes of the line (of a line rejected by the schema, with
//!   its string values' quotes dropped); when byte 20 falls inside a character the server's
//!   handler panics and the connection is closed without an answer (the good lines stored);
//! - plain-text answers, with no `Content-Type`: 400 `incoming write was empty` for a body
//!   without lines, 500 `max request size (N bytes) exceeded` over the body limit (counted
//!   decompressed), 500 `error decoding gzip stream: ...` for a bad gzip body, 400 `serde
//!   error: missing field `db`` without `db`, 404 `not found` for other paths.
//!
//! And, to test the collector, what the server does not do: it insists on
//! `precision=nanosecond` (the server also takes `ns`, `auto` or none), and on command it
//! answers every write as with `accept_partial=false`, 401, 404 database not found, 429/503
//! with `Retry-After`, or names at most N rejected lines.
//!
//! HTTP is parsed only as far as needed (request line, headers, Content-Length body,
//! keep-alive, gzip bodies), like the v2 double. A point is keyed by table, tags and
//! timestamp, so a rewrite overwrites.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::util::Throttle;
use crate::util::{Answer, Request, WriteApi, WriteDouble, NO_ANSWER};

/// The server's limit on databases (InfluxDB 3 Core 3.6.0; no flag changes it).
pub const MAX_DATABASES: usize = 5;
/// The server's limit on tables, over all databases.
pub const MAX_TABLES: usize = 2000;
/// The server's limit on columns per table, `time` included.
pub const MAX_COLUMNS: usize = 500;
/// The server's default limit on a request body (`--max-http-request-size`), decompressed.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// How much of a rejected line an answer quotes, in bytes.
const ORIGINAL_LINE_BYTES: usize = 20;

/// How the double answers writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Stores lines that fit the schema; names the others.
    Normal,
    /// Writes as with `accept_partial=false` whatever the request says: all or nothing, the
    /// answer naming the first rejected line. (The server honours `accept_partial`.)
    AllOrNothing,
    /// 401 for every request.
    Unauthorized,
    /// 404 database not found for every write. (InfluxDB 3 Core never answers a write so: it
    /// creates the database.)
    DatabaseNotFound,
    /// The next writes answer as the throttle says.
    Throttle(Throttle),
}

/// A column of a table: a tag, or a field of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Tag,
    Field(&'static str),
}

impl Column {
    fn name(self) -> String {
        match self {
            Column::Tag => "iox::column_type::tag".into(),
            Column::Field(kind) => format!("iox::column_type::field::{kind}"),
        }
    }
}

/// One database: its schema (table → column → kind) and its points.
#[derive(Debug, Clone, Default)]
struct Database {
    schema: BTreeMap<String, BTreeMap<String, Column>>,
    points: BTreeMap<String, String>,
}

/// What the double knows: its mode, limits and credentials, and the databases.
pub struct State {
    mode: Mode,
    max_body_bytes: usize,
    max_tables: usize,
    max_columns: usize,
    /// At most this many rejected lines named per answer; `None`, as the server, for all.
    max_line_errors: Option<usize>,
    token: String,
    /// The database the double starts with, whose points [`InfluxV3Double::points`] gives.
    database: String,
    databases: BTreeMap<String, Database>,
    process_id: String,
}

/// The double (its `url()` and `seen()` are [`WriteDouble`]'s).
pub type InfluxV3Double = WriteDouble<State>;

impl InfluxV3Double {
    pub fn set_mode(&self, mode: Mode) {
        self.lock().api.mode = mode;
    }

    /// Sets the limits on tables (over all databases) and columns per table (including
    /// `time`). The server's are fixed: [`MAX_TABLES`], [`MAX_COLUMNS`].
    pub fn set_limits(&self, max_tables: usize, max_columns: usize) {
        let state = &mut self.lock().api;
        state.max_tables = max_tables;
        state.max_columns = max_columns;
    }

    /// Sets the limit on a request body, decompressed (the server's `--max-http-request-size`).
    pub fn set_max_body_bytes(&self, n: usize) {
        self.lock().api.max_body_bytes = n;
    }

    /// Names at most `n` rejected lines per answer (the server names them all).
    pub fn set_max_line_errors(&self, n: usize) {
        self.lock().api.max_line_errors = Some(n);
    }

    /// Writes `lines` to the double's database as if another client had: they fix the schema
    /// like any write.
    pub fn seed(&self, lines: &str) {
        let state = &mut self.lock().api;
        let (db, tables_before) = (state.database.clone(), state.n_tables());
        for line in lines.lines().filter(|l| !l.is_empty()) {
            if let Err(e) = accept(state, &db, tables_before, line) {
                panic!("seed line {line:?} rejected: {}", e.message);
            }
        }
    }

    /// The stored lines of the double's database, keyed by table, tags and timestamp.
    pub fn points(&self) -> BTreeMap<String, String> {
        let state = &self.lock().api;
        state.databases[&state.database].points.clone()
    }

    /// Names of the databases, in order.
    pub fn databases(&self) -> Vec<String> {
        self.lock().api.databases.keys().cloned().collect()
    }

    /// How many write requests arrived (pings left out).
    pub fn n_writes(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.starts_with("/api/v3/write_lp"))
            .count()
    }
}

impl State {
    /// Tables over all databases.
    fn n_tables(&self) -> usize {
        self.databases.values().map(|d| d.schema.len()).sum()
    }
}

/// A plain-text answer without a `Content-Type`, as the server gives for most refusals.
fn text(status: u16, message: &str) -> Answer {
    (
        status,
        vec![("Content-Type", String::new())],
        message.to_string(),
    )
}

/// `{"error": message}` with no `Content-Type`, as the server's JSON refusals come.
fn json_error(status: u16, body: serde_json::Value) -> Answer {
    (
        status,
        vec![("Content-Type", String::new())],
        body.to_string(),
    )
}

/// Why a line was rejected, and whether a limit or the parser did it.
struct Rejection {
    message: String,
    kind: Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejected {
    /// The line is not line protocol: quoted as written.
    Parse,
    /// It disagrees with the schema: quoted as the server renders it.
    Schema,
    /// It would pass a limit: as `Schema`, and the answer is 422.
    Limit,
}

impl Rejection {
    fn parse(message: impl Into<String>) -> Rejection {
        Rejection {
            message: message.into(),
            kind: Rejected::Parse,
        }
    }
}

/// What the answer quotes of a rejected line: its first 20 bytes (of a line that parsed, with
/// the quotes around its string values dropped, as the server renders it); `None` when byte 20
/// falls inside a character, where the server's handler panics.
fn original_line(line: &str, kind: Rejected) -> Option<String> {
    let rendered = match kind {
        Rejected::Parse => line.to_string(),
        Rejected::Schema | Rejected::Limit => {
            let mut out = String::with_capacity(line.len());
            let mut escaped = false;
            for c in line.trim_start().chars() {
                if c == '"' && !escaped {
                    continue;
                }
                escaped = c == '\\' && !escaped;
                out.push(c);
            }
            out
        }
    };
    if rendered.len() <= ORIGINAL_LINE_BYTES {
        return Some(rendered);
    }
    rendered.get(..ORIGINAL_LINE_BYTES).map(str::to_string)
}

impl WriteApi for State {
    const API: &'static str = "v3";
    const TOKEN: &'static str = "apiv3_t0ken";
    const CREDENTIALS: &'static str = "  token: apiv3_t0ken\n";

    fn new(token: &str, database: &str) -> State {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        State {
            token: token.to_string(),
            database: database.to_string(),
            mode: Mode::Normal,
            max_body_bytes: MAX_BODY_BYTES,
            max_tables: MAX_TABLES,
            max_columns: MAX_COLUMNS,
            max_line_errors: None,
            databases: BTreeMap::from([(database.to_string(), Database::default())]),
            process_id: format!("double-{}-{nanos}", std::process::id()),
        }
    }

    fn undecodable(&self) -> Answer {
        text(500, "error decoding gzip stream: unexpected end of file")
    }

    fn decide(&mut self, request: &Request, body_text: &str, n_bytes: usize) -> Answer {
        let (state, path) = (self, request.path.as_str());
        let authorization = request.headers.get("authorization").map(String::as_str);
        let token_ok = authorization.is_some_and(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("Token "))
                .is_some_and(|t| t == state.token)
        });
        if state.mode == Mode::Unauthorized || !token_ok {
            return (401, vec![], String::new());
        }
        if path == "/ping" || path.starts_with("/ping?") {
            let body = serde_json::json!({
                "version": "3.6.0", "revision": "double", "process_id": state.process_id,
            });
            let headers = vec![
                ("Content-Type", "application/json".to_string()),
                ("x-influxdb-build", "Core".to_string()),
                ("x-influxdb-version", "3.6.0".to_string()),
            ];
            return (200, headers, body.to_string());
        }
        let query = match path.split_once('?') {
            Some(("/api/v3/write_lp", query)) => query,
            None if path == "/api/v3/write_lp" => "",
            _ => return text(404, "not found"),
        };
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let Some(db) = params.get("db").map(|db| db.to_string()) else {
            return text(400, "serde error: missing field `db`");
        };
        if params.get("precision") != Some(&"nanosecond") {
            return text(400, "the double expects precision=nanosecond");
        }
        if state.mode == Mode::DatabaseNotFound {
            return json_error(
                404,
                serde_json::json!({ "error": format!("database not found: {db}") }),
            );
        }
        if let Mode::Throttle(throttle) = state.mode {
            let body = serde_json::json!({ "error": "throttled" }).to_string();
            if let Some((answer, rest)) = throttle.take(body) {
                state.mode = rest.map_or(Mode::Normal, Mode::Throttle);
                return answer;
            }
        }
        if n_bytes > state.max_body_bytes {
            return text(
                500,
                &format!("max request size ({} bytes) exceeded", state.max_body_bytes),
            );
        }
        let new_database = !state.databases.contains_key(&db);
        if new_database {
            if state.databases.len() >= MAX_DATABASES {
                let message = format!(
                    "Adding a new database would exceed limit of {MAX_DATABASES} databases"
                );
                return json_error(422, serde_json::json!({ "error": message }));
            }
            state.databases.insert(db.clone(), Database::default());
        }
        // Lines are numbered as the server numbers them: blank ones left out.
        let lines: Vec<(usize, &str)> = body_text
            .split('\n')
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .collect();
        if lines.is_empty() {
            return text(400, "incoming write was empty");
        }
        let accept_partial =
            params.get("accept_partial") != Some(&"false") && state.mode != Mode::AllOrNothing;
        let tables_before = state.n_tables();
        if !accept_partial {
            // All or nothing: check on a copy, keep it only when every line fits.
            let saved = state.databases[&db].clone();
            for &(number, line) in &lines {
                if let Err(rejection) = accept(state, &db, tables_before, line) {
                    // Nothing is kept, not even a database the write would have created.
                    match new_database {
                        true => state.databases.remove(&db),
                        false => state.databases.insert(db.clone(), saved),
                    };
                    let Some(original) = original_line(line, rejection.kind) else {
                        return (NO_ANSWER, vec![], String::new());
                    };
                    let data = serde_json::json!({
                        "error_message": rejection.message, "line_number": number,
                        "original_line": original,
                    });
                    return json_error(
                        400,
                        serde_json::json!({
                            "error": "parsing failed for write_lp endpoint", "data": data,
                        }),
                    );
                }
            }
            return (204, vec![], String::new());
        }
        let mut rejected = Vec::new();
        for &(number, line) in &lines {
            if let Err(rejection) = accept(state, &db, tables_before, line) {
                rejected.push((number, line, rejection));
            }
        }
        if rejected.is_empty() {
            return (204, vec![], String::new());
        }
        let status = match rejected.iter().any(|(_, _, r)| r.kind == Rejected::Limit) {
            true => 422,
            false => 400,
        };
        let mut data = Vec::new();
        for (number, line, rejection) in &rejected {
            let Some(original) = original_line(line, rejection.kind) else {
                return (NO_ANSWER, vec![], String::new());
            };
            data.push(serde_json::json!({
                "error_message": rejection.message, "line_number": number,
                "original_line": original,
            }));
        }
        data.truncate(state.max_line_errors.unwrap_or(usize::MAX));
        json_error(
            status,
            serde_json::json!({
                "error": "partial write of line protocol occurred", "data": data,
            }),
        )
    }
}

/// Checks one line against the schema of `db` and stores it, extending the schema; or says
/// why not. `tables_before` is how many tables the server held before the request.
fn accept(state: &mut State, db: &str, tables_before: usize, line: &str) -> Result<(), Rejection> {
    let point = parse(line)?;
    let (max_tables, max_columns) = (state.max_tables, state.max_columns);
    let database = state.databases.get_mut(db).expect("the database exists");
    let known = database.schema.contains_key(&point.table);
    if !known && tables_before >= max_tables {
        return Err(Rejection {
            message: format!(
                "Update to schema would exceed number of tables limit of {max_tables} tables"
            ),
            kind: Rejected::Limit,
        });
    }
    let columns = database
        .schema
        .get(&point.table)
        .cloned()
        .unwrap_or_default();
    let mut new_columns = 0;
    let wanted = point.tags.iter().map(|(k, _)| (k, Column::Tag)).chain(
        point
            .fields
            .iter()
            .map(|(k, kind, _)| (k, Column::Field(kind))),
    );
    for (name, column) in wanted {
        match columns.get(name.as_str()) {
            Some(existing) if *existing != column => {
                return Err(Rejection {
                    message: format!(
                        "invalid column type for column '{name}', expected {}, got {}",
                        existing.name(),
                        column.name()
                    ),
                    kind: Rejected::Schema,
                })
            }
            Some(_) => {}
            None => new_columns += 1,
        }
    }
    // `time` is a column of every table.
    if columns.len() + 1 + new_columns > max_columns {
        return Err(Rejection {
            message: format!(
                "Update to schema would exceed number of columns per table limit of \
                 {max_columns} columns"
            ),
            kind: Rejected::Limit,
        });
    }
    let table = database.schema.entry(point.table.clone()).or_default();
    for (name, _) in &point.tags {
        table.insert(name.clone(), Column::Tag);
    }
    for (name, kind, _) in &point.fields {
        table.insert(name.clone(), Column::Field(kind));
    }
    let tags: Vec<String> = point.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let key = format!("{},{} {}", point.table, tags.join(","), point.time);
    database.points.insert(key, line.to_string());
    Ok(())
}

struct Point {
    table: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, &'static str, String)>,
    time: String,
}

/// Splits `text` at unescaped `separator`s outside double quotes.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut escaped, mut quoted) = (false, false);
    for c in text.chars() {
        let current = parts.last_mut().unwrap();
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == '"' {
            current.push(c);
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(String::new());
        } else {
            current.push(c);
        }
    }
    parts
}

/// The parts of a line, with names unescaped and each field's type from its spelling; the
/// parser's messages are the server's for the same mistakes. A line without a timestamp gets
/// the double's clock, as the server gives it its own.
fn parse(line: &str) -> Result<Point, Rejection> {
    let unescape = |s: &str| {
        s.replace("\\,", ",")
            .replace("\\=", "=")
            .replace("\\ ", " ")
    };
    let sections = split_unescaped(line.trim_start(), ' ');
    if sections.len() == 1 {
        return Err(Rejection::parse(
            "A generic parsing error occurred: TakeWhile1",
        ));
    }
    let sections: Vec<&String> = sections.iter().filter(|s| !s.is_empty()).collect();
    let mut series = split_unescaped(sections[0], ',').into_iter();
    let table = unescape(&series.next().unwrap_or_default());
    let mut tags = Vec::new();
    for tag in series {
        let (k, v) = tag
            .split_once('=')
            .ok_or_else(|| Rejection::parse("Tag Set Malformed"))?;
        tags.push((unescape(k), unescape(v)));
    }
    let (fields, time) = match &sections[1..] {
        [] => return Err(Rejection::parse("No fields were provided")),
        [fields] => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            (*fields, now.to_string())
        }
        [fields, time] if time.parse::<i64>().is_ok() => (*fields, time.to_string()),
        [_, time, rest @ ..] if time.parse::<i64>().is_ok() => {
            let rest: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
            return Err(Rejection::parse(format!(
                "Could not parse entire line. Found trailing content: '{}'",
                rest.join(" ")
            )));
        }
        [_, rest @ ..] => {
            let rest: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
            return Err(Rejection::parse(format!(
                "Could not parse entire line. Found trailing content: ' {}'",
                rest.join(" ")
            )));
        }
    };
    let mut parsed: Vec<(String, &'static str, String)> = Vec::new();
    for field in split_unescaped(fields, ',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| Rejection::parse("No fields were provided"))?;
        let kind = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            "string"
        } else if matches!(
            v,
            "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
        ) {
            "boolean"
        } else if v
            .strip_suffix('i')
            .is_some_and(|n| n.parse::<i64>().is_ok())
        {
            "integer"
        } else if v
            .strip_suffix('u')
            .is_some_and(|n| n.parse::<u64>().is_ok())
        {
            "uinteger"
        } else if v.parse::<f64>().is_ok() {
            "float"
        } else {
            return Err(Rejection::parse("No fields were provided"));
        };
        let name = unescape(k);
        if parsed.iter().any(|(n, _, _)| *n == name) {
            return Err(Rejection::parse(format!(
                "invalid line protocol - multiple instances of '{name}' field found"
            )));
        }
        parsed.push((name, kind, v.to_string()));
    }
    if table.is_empty() || parsed.is_empty() {
        return Err(Rejection::parse("No fields were provided"));
    }
    Ok(Point {
        table,
        tags,
        fields: parsed,
        time,
    })
}
