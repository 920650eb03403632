//! The one module that talks to InfluxDB: it builds the write URL for the configured API,
//! POSTs line protocol over a kept-alive blocking HTTP connection, and classifies every
//! answer into what the writer must do next.
//!
//! Runs on the writer thread (writes) and the main thread (the start-up ping). The
//! classification is a pure function so each status InfluxDB v1 and v2 can send is tested
//! without a server.

use std::time::Duration;

use crate::config::{InfluxApi, InfluxConfig};

/// Why a write did not store the batch, and so what the writer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Some lines are bad (400/422: unparsable line, field type conflict, v1 partial write).
    /// Rewriting the good ones is safe, so the writer splits the batch to find the bad ones.
    Rejected { status: u16, message: String },
    /// The body is over the server's limit (413): split and retry the halves.
    TooLarge,
    /// A passing failure (connection refused or reset, timeout, 429, 5xx): retry the same
    /// batch after `retry_after` when the server said, else after the writer's backoff.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure no retry fixes until an operator acts (401, 403, 404 database or bucket not
    /// found): `fix` says what to do. The writer keeps retrying slowly, never acknowledging.
    Fatal {
        status: u16,
        message: String,
        fix: &'static str,
    },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Rejected { status, message } => write!(f, "rejected ({status}): {message}"),
            WriteError::TooLarge => write!(f, "request body too large (413)"),
            WriteError::Retry { reason, .. } => write!(f, "{reason}"),
            WriteError::Fatal {
                status,
                message,
                fix,
            } => write!(f, "{status}: {message}; {fix}"),
        }
    }
}

/// Classifies an HTTP answer to a write. `body` is the answer's text (InfluxDB puts the
/// reason in a JSON `error` or `message` field), `retry_after` its `Retry-After` header.
pub fn classify(status: u16, body: &str, retry_after: Option<&str>) -> Result<(), WriteError> {
    let message = error_message(body);
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        200..=299 => Ok(()),
        400 | 422 => Err(WriteError::Rejected { status, message }),
        401 => Err(WriteError::Fatal {
            status,
            message,
            fix: "check influx.token (v2) or influx.username/password (v1)",
        }),
        403 => Err(WriteError::Fatal {
            status,
            message,
            fix: "give the token or user write permission on the bucket or database",
        }),
        404 => Err(WriteError::Fatal {
            status,
            message,
            fix: "create the bucket (v2) or database (v1), or set influx.bucket/influx.database",
        }),
        413 => Err(WriteError::TooLarge),
        429 | 500..=599 => Err(WriteError::Retry {
            reason: format!("{status}: {message}"),
            retry_after,
        }),
        _ => Err(WriteError::Retry {
            reason: format!("unexpected status {status}: {message}"),
            retry_after,
        }),
    }
}

/// The reason InfluxDB gave: v1 answers `{"error": "..."}`, v2 `{"code": ..., "message": "..."}`.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    // One line, bounded: it goes into logs and dead-letter headers.
    let mut line: String = text.replace(['\r', '\n'], " ");
    if line.len() > 500 {
        let mut cut = 500;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    if line.is_empty() {
        line.push_str("no reason given");
    }
    line
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

/// The write endpoint for the configured API, target and precision.
pub fn write_url(config: &InfluxConfig) -> String {
    match config.api {
        InfluxApi::V2 => format!(
            "{}/api/v2/write?org={}&bucket={}&precision=ns",
            config.url,
            encode_query(config.org.as_deref().unwrap_or("")),
            encode_query(&config.target)
        ),
        InfluxApi::V1 => {
            let mut url = format!(
                "{}/write?db={}&precision=ns",
                config.url,
                encode_query(&config.target)
            );
            if let Some(rp) = &config.retention_policy {
                url.push_str(&format!("&rp={}", encode_query(rp)));
            }
            url
        }
    }
}

/// The `Authorization` header value, if any.
fn authorization(config: &InfluxConfig) -> Option<String> {
    if let Some(token) = &config.token {
        return Some(format!("Token {}", token.expose()));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Some(format!(
            "Basic {}",
            encode_base64(format!("{user}:{}", password.expose()).as_bytes())
        )),
        _ => None,
    }
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A blocking InfluxDB client with one kept-alive connection.
pub struct Influx {
    agent: ureq::Agent,
    base_url: String,
    write_url: String,
    authorization: Option<String>,
}

impl Influx {
    pub fn new(config: &InfluxConfig) -> Influx {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .max_idle_connections_per_host(2)
            .user_agent(concat!("collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Influx {
            agent,
            base_url: config.url.clone(),
            write_url: write_url(config),
            authorization: authorization(config),
        }
    }

    /// Writes a body of newline-terminated lines; `Ok` only when InfluxDB answered 2xx.
    pub fn write(&self, body: &[u8]) -> Result<(), WriteError> {
        let mut request = self
            .agent
            .post(&self.write_url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = if (200..300).contains(&status) {
                    String::new()
                } else {
                    response
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024)
                        .read_to_string()
                        .unwrap_or_default()
                };
                classify(status, &text, retry_after.as_deref())
            }
            Err(e) => Err(WriteError::Retry {
                reason: format!("{} unreachable: {e}", self.base_url),
                retry_after: None,
            }),
        }
    }

    /// Checks that InfluxDB answers at all (`/ping`, on both v1 and v2).
    pub fn ping(&self) -> Result<(), String> {
        match self.agent.get(&format!("{}/ping", self.base_url)).call() {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "{}/ping answered {}",
                self.base_url,
                response.status().as_u16()
            )),
            Err(e) => Err(format!("{} unreachable: {e}", self.base_url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(api: InfluxApi) -> InfluxConfig {
        InfluxConfig {
            url: "http://db:8086".into(),
            api,
            token: None,
            org: Some("my org".into()),
            target: "beta".into(),
            retention_policy: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn urls_per_api() {
        assert_eq!(
            write_url(&config(InfluxApi::V2)),
            "http://db:8086/api/v2/write?org=my%20org&bucket=beta&precision=ns"
        );
        let mut v1 = config(InfluxApi::V1);
        assert_eq!(write_url(&v1), "http://db:8086/write?db=beta&precision=ns");
        v1.retention_policy = Some("week".into());
        assert_eq!(
            write_url(&v1),
            "http://db:8086/write?db=beta&precision=ns&rp=week"
        );
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

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(204, "", None), Ok(()));
        let partial = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#;
        assert!(
            matches!(classify(400, partial, None), Err(WriteError::Rejected { status: 400, message }) if message.starts_with("partial write"))
        );
        assert!(
            matches!(classify(401, r#"{"code":"unauthorized","message":"unauthorized access"}"#, None),
            Err(WriteError::Fatal { status: 401, message, .. }) if message == "unauthorized access")
        );
        assert!(matches!(
            classify(404, r#"{"error":"database not found: \"x\""}"#, None),
            Err(WriteError::Fatal { status: 404, .. })
        ));
        assert_eq!(classify(413, "", None), Err(WriteError::TooLarge));
        assert_eq!(
            classify(429, "slow down", Some("7")),
            Err(WriteError::Retry {
                reason: "429: slow down".into(),
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert!(matches!(
            classify(503, "", Some("soon")),
            Err(WriteError::Retry {
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            classify(302, "", None),
            Err(WriteError::Retry { .. })
        ));
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let long = "x\n".repeat(1000);
        let m = error_message(&long);
        assert!(!m.contains('\n') && m.len() <= 504);
        assert_eq!(error_message(""), "no reason given");
    }
}
