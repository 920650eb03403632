//! A TEST DOUBLE of InfluxDB 3's native write endpoint, `POST /api/v3/write_lp`.
//!
//! No InfluxDB 3 can be installed here, so its write semantics are tested against this double,
//! written from the InfluxDB 3 Core documentation: "Use the v3 write_lp API to write data"
//! (query parameters `db`, `precision`, `accept_partial`, `no_sync`; the two error bodies) and
//! the `/api/v3/write_lp` operation of the InfluxDB 3 Core HTTP API reference. What it does:
//! - `Authorization: Bearer <token>` on every request (`/ping` too, as 3.x guards it by
//!   default); 401 `{"error": "the request was not authenticated"}` otherwise;
//! - 404 `{"error": "database not found: <db>"}` for another database;
//! - a per-table schema, as InfluxDB 3 keeps one: the first line that writes a column fixes
//!   whether it is a tag or a field and the field's type; a later line that disagrees is
//!   rejected with the engine's message `invalid column type for column 'f', expected
//!   iox::column_type::field::float, got iox::column_type::field::integer`; a new table past
//!   the table limit or a new column past the per-table column limit is rejected with
//!   `Update to schema would exceed number of tables limit of N tables` / `... number of
//!   columns per table limit of N columns`;
//! - with `accept_partial=true` every other line is stored, and the answer is 400
//!   `{"error": "partial write of line protocol occurred", "data": [{"original_line",
//!   "line_number", "error_message"}, ...]}` naming at most the first 100 rejected lines;
//!   with `accept_partial=false` nothing is stored and `"data"` is the first rejected line's
//!   object (`"error": "parsing failed for write_lp endpoint"`);
//! - 413 over a body limit, 429/503 with `Retry-After` when told to throttle.
//!
//! HTTP is parsed only as far as needed (request line, headers, Content-Length body,
//! keep-alive, gzip bodies), like the v2 double. A point is keyed by table, tags and
//! timestamp, so a rewrite overwrites.

#![allow(dead_code)]

use std::collections::BTreeMap;

pub use crate::util::Throttle;
use crate::util::{Answer, Request, WriteApi, WriteDouble};

/// The most rejected lines an answer names, as InfluxDB 3 does.
pub const MAX_LINE_ERRORS: usize = 100;

/// How the double answers writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Stores lines that fit the schema; names the others.
    Normal,
    /// Writes as with `accept_partial=false` whatever the request says: all or nothing, the
    /// answer naming the first rejected line.
    AllOrNothing,
    /// 401 for every request.
    Unauthorized,
    /// 404 database not found for every write.
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

/// What the double knows: its mode, limits and credentials, the schema, and the points it
/// stored.
pub struct State {
    mode: Mode,
    max_body_bytes: usize,
    max_tables: usize,
    max_columns: usize,
    token: String,
    database: String,
    schema: BTreeMap<String, BTreeMap<String, Column>>,
    points: BTreeMap<String, String>,
}

/// The double (its `url()` and `seen()` are [`WriteDouble`]'s).
pub type InfluxV3Double = WriteDouble<State>;

impl InfluxV3Double {
    /// Starts the double on a loopback port, accepting `token` for database `database`.
    pub fn start(token: &str, database: &str) -> InfluxV3Double {
        WriteDouble::serve(State {
            token: token.to_string(),
            database: database.to_string(),
            mode: Mode::Normal,
            max_body_bytes: usize::MAX,
            max_tables: 2000,
            max_columns: 500,
            schema: BTreeMap::new(),
            points: BTreeMap::new(),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().api.mode = mode;
    }

    /// Sets the limits on tables per database and columns per table (including `time`).
    pub fn set_limits(&self, max_tables: usize, max_columns: usize) {
        let state = &mut self.lock().api;
        state.max_tables = max_tables;
        state.max_columns = max_columns;
    }

    /// Writes `lines` as if another client had: they fix the schema like any write.
    pub fn seed(&self, lines: &str) {
        let state = &mut self.lock().api;
        for line in lines.lines().filter(|l| !l.is_empty()) {
            if let Err(e) = accept(state, line) {
                panic!("seed line {line:?} rejected: {e}");
            }
        }
    }

    /// The stored lines, keyed by table, tags and timestamp.
    pub fn points(&self) -> BTreeMap<String, String> {
        self.lock().api.points.clone()
    }

    /// How many write requests arrived (pings left out).
    pub fn n_writes(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.starts_with("/api/v3/write_lp"))
            .count()
    }
}

fn error(status: u16, message: &str) -> Answer {
    (status, vec![], error_body(message))
}

/// `{"error": message}`, InfluxDB 3's error body.
fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl WriteApi for State {
    fn undecodable(&self) -> Answer {
        error(400, "unable to decompress the gzip body")
    }

    fn decide(&mut self, request: &Request, text: &str, n_bytes: usize) -> Answer {
        let (state, path) = (self, request.path.as_str());
        let authorization = request.headers.get("authorization").map(String::as_str);
        let expected = format!("Bearer {}", state.token);
        if state.mode == Mode::Unauthorized || authorization != Some(expected.as_str()) {
            return error(401, "the request was not authenticated");
        }
        if path.starts_with("/ping") {
            return (
                200,
                vec![],
                r#"{"version":"3.double","revision":"0"}"#.into(),
            );
        }
        let Some(query) = path.strip_prefix("/api/v3/write_lp?") else {
            return error(404, "not found");
        };
        let params: BTreeMap<&str, &str> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        if params.get("precision") != Some(&"nanosecond") {
            return error(400, "the double expects precision=nanosecond");
        }
        if state.mode == Mode::DatabaseNotFound
            || params.get("db") != Some(&state.database.as_str())
        {
            return error(
                404,
                &format!("database not found: {}", params.get("db").unwrap_or(&"")),
            );
        }
        if let Mode::Throttle(throttle) = state.mode {
            if let Some((answer, rest)) = throttle.take(error_body("throttled")) {
                state.mode = rest.map_or(Mode::Normal, Mode::Throttle);
                return answer;
            }
        }
        if n_bytes > state.max_body_bytes {
            return error(413, "request body too large");
        }
        let accept_partial =
            params.get("accept_partial") != Some(&"false") && state.mode != Mode::AllOrNothing;
        let lines: Vec<&str> = text.split('\n').collect();
        let mut rejected = Vec::new();
        if accept_partial {
            for (i, line) in lines.iter().enumerate() {
                if line.is_empty() {
                    continue;
                }
                if let Err(message) = accept(state, line) {
                    rejected.push((i + 1, *line, message));
                }
            }
        } else {
            // All or nothing: check on a copy of the schema, store only when every line fits.
            let (schema, points) = (state.schema.clone(), state.points.clone());
            for (i, line) in lines.iter().enumerate() {
                if line.is_empty() {
                    continue;
                }
                if let Err(message) = accept(state, line) {
                    state.schema = schema;
                    state.points = points;
                    let data = serde_json::json!({
                        "original_line": line, "line_number": i + 1, "error_message": message,
                    });
                    let body = serde_json::json!({
                        "error": "parsing failed for write_lp endpoint", "data": data,
                    });
                    return (400, vec![], body.to_string());
                }
            }
        }
        if rejected.is_empty() {
            return (204, vec![], String::new());
        }
        let data: Vec<serde_json::Value> = rejected
            .iter()
            .take(MAX_LINE_ERRORS)
            .map(|(number, line, message)| {
                serde_json::json!({
                    "original_line": line, "line_number": number, "error_message": message,
                })
            })
            .collect();
        let body = serde_json::json!({
            "error": "partial write of line protocol occurred", "data": data,
        });
        (400, vec![], body.to_string())
    }
}

/// Checks one line against the schema and stores it, extending the schema; or says why not.
fn accept(state: &mut State, line: &str) -> Result<(), String> {
    let point = parse(line)?;
    let known = state.schema.contains_key(&point.table);
    if !known && state.schema.len() >= state.max_tables {
        return Err(format!(
            "Update to schema would exceed number of tables limit of {} tables",
            state.max_tables
        ));
    }
    let columns = state.schema.get(&point.table).cloned().unwrap_or_default();
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
                return Err(format!(
                    "invalid column type for column '{name}', expected {}, got {}",
                    existing.name(),
                    column.name()
                ))
            }
            Some(_) => {}
            None => new_columns += 1,
        }
    }
    // `time` is a column of every table.
    if columns.len() + 1 + new_columns > state.max_columns {
        return Err(format!(
            "Update to schema would exceed number of columns per table limit of {} columns",
            state.max_columns
        ));
    }
    let table = state.schema.entry(point.table.clone()).or_default();
    for (name, _) in &point.tags {
        table.insert(name.clone(), Column::Tag);
    }
    for (name, kind, _) in &point.fields {
        table.insert(name.clone(), Column::Field(kind));
    }
    let tags: Vec<String> = point.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let key = format!("{},{} {}", point.table, tags.join(","), point.time);
    state.points.insert(key, line.to_string());
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

/// The parts of a line, with names unescaped and each field's type from its spelling.
fn parse(line: &str) -> Result<Point, String> {
    let unescape = |s: &str| {
        s.replace("\\,", ",")
            .replace("\\=", "=")
            .replace("\\ ", " ")
    };
    let sections = split_unescaped(line, ' ');
    let [series, fields, time] = &sections[..] else {
        return Err(format!("invalid line protocol: {line}"));
    };
    let mut series = split_unescaped(series, ',').into_iter();
    let table = unescape(&series.next().unwrap_or_default());
    let mut tags = Vec::new();
    for tag in series {
        let (k, v) = tag
            .split_once('=')
            .ok_or_else(|| format!("Tag set malformed: {tag}"))?;
        tags.push((unescape(k), unescape(v)));
    }
    let mut parsed = Vec::new();
    for field in split_unescaped(fields, ',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| "No fields were provided".to_string())?;
        let kind = if v.starts_with('"') {
            "string"
        } else if matches!(
            v,
            "t" | "T" | "true" | "True" | "f" | "F" | "false" | "False"
        ) {
            "bool"
        } else if v.ends_with('i') {
            "integer"
        } else if v.ends_with('u') {
            "uinteger"
        } else if v.parse::<f64>().is_ok() {
            "float"
        } else {
            return Err(format!(
                "invalid field value in line protocol for field '{k}'"
            ));
        };
        parsed.push((unescape(k), kind, v.to_string()));
    }
    if table.is_empty() || parsed.is_empty() {
        return Err("No fields were provided".into());
    }
    Ok(Point {
        table,
        tags,
        fields: parsed,
        time: time.clone(),
    })
}
