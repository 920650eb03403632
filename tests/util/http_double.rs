//! The HTTP/1.1 side of the write-API doubles (`tests/v2_double`, `tests/v3_double`): a
//! loopback listener that reads requests (request line, headers, a `Content-Length` body,
//! keep-alive) and writes the answers a double's handler decides; and [`WriteDouble`], which
//! serves a double's [`WriteApi`] state and records each request as [`Seen`]. It knows
//! nothing of InfluxDB's semantics; each double keeps its own state and decisions, written
//! from its API reference.

use super::{ConfigYaml, NatsServer, Transfer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// A request as a double sees it; header names are lowercase.
pub struct Request {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    /// Whether the body came gzip-compressed (`Content-Encoding: gzip`).
    pub fn gzip(&self) -> bool {
        self.headers
            .get("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    }

    /// The body as InfluxDB reads it: decompressed when it came gzip-compressed.
    pub fn decoded_body(&self) -> std::io::Result<Cow<'_, [u8]>> {
        if !self.gzip() {
            return Ok(Cow::Borrowed(&self.body));
        }
        let mut decompressed = Vec::new();
        flate2::read::MultiGzDecoder::new(&self.body[..]).read_to_end(&mut decompressed)?;
        Ok(Cow::Owned(decompressed))
    }
}

/// A double's answer: status, extra headers, and a body (empty for none), sent with
/// `Content-Type: application/json; charset=utf-8` unless the headers name a `Content-Type`
/// (an empty value for none). Status [`NO_ANSWER`] closes the connection without an answer.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

/// The status of an [`Answer`] that is no answer: the connection is closed instead.
pub const NO_ANSWER: u16 = 0;

/// A running listener; stops accepting and serving when dropped.
pub struct HttpDouble {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl HttpDouble {
    /// Listens on a loopback port; every request on every connection goes to `handler`.
    pub fn start(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> HttpDouble {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a write-API double");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let accept_stop = stop.clone();
        thread::spawn(move || {
            while !accept_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (handler, stop) = (handler.clone(), accept_stop.clone());
                        thread::spawn(move || serve(stream, &*handler, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpDouble { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A write-API double told to throttle: the next `count` writes answer `status` (429 or 503)
/// with `Retry-After: retry_after_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub count: usize,
    pub status: u16,
    pub retry_after_secs: u64,
}

impl Throttle {
    /// The next throttled answer, with `body`, and what is left of the throttle after it
    /// (None once `count` writes were throttled); None when there is none to give.
    pub fn take(self, body: String) -> Option<(Answer, Option<Throttle>)> {
        if self.count == 0 {
            return None;
        }
        let headers = vec![("Retry-After", self.retry_after_secs.to_string())];
        let rest = (self.count > 1).then_some(Throttle {
            count: self.count - 1,
            ..self
        });
        Some(((self.status, headers, body), rest))
    }
}

/// One request a write-API double received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub authorization: Option<String>,
    /// Its non-empty lines (0 when the body could not be decompressed).
    pub n_lines: usize,
    pub status: u16,
    /// Whether the body came gzip-compressed.
    pub gzip: bool,
    /// The measurement of each line, in order (for tests of the order of writes).
    pub measurements: Vec<String>,
}

/// The state of a write-API double and what it decides; the HTTP side and the record of
/// what it saw are [`WriteDouble`]'s.
pub trait WriteApi: Send + 'static {
    /// `influx.api` in the collector's configuration for this double.
    const API: &'static str;

    /// The token of the double [`WriteDouble::start_with_nats`] starts.
    const TOKEN: &'static str;

    /// The lines under `influx:` that give the collector [`WriteApi::TOKEN`] (and what else
    /// the API wants with it).
    const CREDENTIALS: &'static str;

    /// A fresh double's state, accepting `token` for `namespace` (its bucket or database).
    fn new(token: &str, namespace: &str) -> Self
    where
        Self: Sized;

    /// The answer to `request`, whose body decompressed is `text`, `n_bytes` long.
    fn decide(&mut self, request: &Request, text: &str, n_bytes: usize) -> Answer;

    /// The answer to a gzip body that cannot be decompressed.
    fn undecodable(&self) -> Answer;
}

/// A double's [`WriteApi`] state and every request it saw, behind one lock.
pub struct Served<S> {
    pub api: S,
    pub seen: Vec<Seen>,
}

/// A write-API double: an [`HttpDouble`] whose requests its [`WriteApi`] answers one at a
/// time, each one recorded as [`Seen`].
pub struct WriteDouble<S> {
    http: HttpDouble,
    served: Arc<Mutex<Served<S>>>,
}

impl<S: WriteApi> WriteDouble<S> {
    /// Serves `api` on a loopback port.
    pub fn serve(api: S) -> WriteDouble<S> {
        let served = Arc::new(Mutex::new(Served {
            api,
            seen: Vec::new(),
        }));
        let handler_served = served.clone();
        let http = HttpDouble::start(move |request| answer(&handler_served, request));
        WriteDouble { http, served }
    }

    /// Starts a double on a loopback port, accepting `token` for `namespace` (its bucket or
    /// database).
    pub fn start(token: &str, namespace: &str) -> WriteDouble<S> {
        WriteDouble::serve(S::new(token, namespace))
    }

    /// NATS, a double for `namespace` accepting [`WriteApi::TOKEN`], and a [`Transfer`] client
    /// for `namespace`: how a test on a double begins.
    pub fn start_with_nats(namespace: &str) -> (NatsServer, WriteDouble<S>, Transfer) {
        super::start_with_nats(namespace, |namespace| {
            WriteDouble::start(S::TOKEN, namespace)
        })
    }

    /// The configuration of `namespace` on `nats` for this double: its API and
    /// [`WriteApi::CREDENTIALS`].
    pub fn config(&self, namespace: &str, nats: &NatsServer) -> ConfigYaml {
        super::config(&nats.url(), &self.url())
            .namespace(namespace)
            .api(S::API)
            .influx(S::CREDENTIALS)
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    /// The double's state and what it saw, locked: requests wait meanwhile.
    pub fn lock(&self) -> MutexGuard<'_, Served<S>> {
        self.served.lock().unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

fn answer<S: WriteApi>(served: &Mutex<Served<S>>, request: &Request) -> Answer {
    let body = request.decoded_body();
    let text = match &body {
        Ok(body) => String::from_utf8_lossy(body).into_owned(),
        Err(_) => String::new(),
    };
    let mut served = served.lock().unwrap();
    let reply = match &body {
        Ok(body) => served.api.decide(request, &text, body.len()),
        Err(_) => served.api.undecodable(),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    served.seen.push(Seen {
        at: Instant::now(),
        path: request.path.clone(),
        authorization: request.headers.get("authorization").cloned(),
        n_lines: lines.len(),
        status: reply.0,
        gzip: request.gzip(),
        measurements: lines
            .iter()
            .map(|l| l.split([',', ' ']).next().unwrap_or("").to_string())
            .collect(),
    });
    reply
}

fn serve(stream: TcpStream, handler: &dyn Fn(&Request) -> Answer, stop: &AtomicBool) {
    // A short read timeout so a kept-alive connection notices the stop.
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    while !stop.load(Ordering::Relaxed) {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let (status, extra, text) = handler(&Request {
            path,
            headers,
            body,
        });
        if status == NO_ANSWER {
            // The connection is closed without an answer, as by a server whose handler died.
            return;
        }
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
            reason(status),
            text.len()
        );
        let typed = extra
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !text.is_empty() && !typed {
            response.push_str("Content-Type: application/json; charset=utf-8\r\n");
        }
        for (name, value) in extra {
            // An empty value leaves the header out (an answer with no Content-Type).
            if !value.is_empty() {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        response.push_str("\r\n");
        response.push_str(&text);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Other",
    }
}
