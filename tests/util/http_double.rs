//! The HTTP/1.1 side of the write-API doubles (`tests/v2_double`, `tests/v3_double`): a
//! loopback listener that reads requests (request line, headers, a `Content-Length` body,
//! keep-alive) and writes the answers a double's handler decides. It knows nothing of
//! InfluxDB; each double keeps its own state and semantics, written from its API reference.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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

/// A double's answer: status, extra headers, and a JSON body (empty for none).
pub type Answer = (u16, Vec<(&'static str, String)>, String);

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
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
            reason(status),
            text.len()
        );
        if !text.is_empty() {
            response.push_str("Content-Type: application/json; charset=utf-8\r\n");
        }
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
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
