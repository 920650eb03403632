//! What an InfluxDB write answer means for the writer: stored, some lines rejected (split
//! the batch, or with InfluxDB 3 the named lines only), retry later, or a configuration the
//! writer cannot fix.
//!
//! Pure functions of the status, body and `Retry-After` header, so each answer InfluxDB v1, v2
//! and v3 can send (and v3's per-line partial-write answers) is tested without a server.

use std::time::Duration;

/// The most rejected lines an InfluxDB 3 answer names, in the words of its documentation.
/// InfluxDB 3 Core 3.6.0 names every one (1,000 and 5,000 tried), so this is only a fallback:
/// an answer naming this many or more is read as perhaps cut short, and the lines after the
/// last one named are written again. They were stored already, so that costs a request and
/// lands them on the very points they are (a record written again gives the same point): it
/// loses and doubles nothing.
pub const V3_MAX_LINE_ERRORS: usize = 100;

/// One line InfluxDB 3 rejected: its number in the request body (from 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    pub number: usize,
    pub message: String,
}

/// Why a write did not store the batch, and so what the writer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Some lines are bad (400/422: unparsable line, field type conflict, v1 partial write).
    /// Rewriting the good ones is safe, so the writer splits the batch to find the bad ones.
    Rejected { status: u16, message: String },
    /// InfluxDB 3 stored every line of the body but these (a partial write, with
    /// `accept_partial=true`). `complete` is false when the list may be cut short (it names
    /// [`V3_MAX_LINE_ERRORS`] lines or more), so lines after the last one named may have been
    /// rejected too.
    Partial {
        rejected: Vec<RejectedLine>,
        complete: bool,
    },
    /// InfluxDB 3 refused the whole body, naming one line: nothing was stored.
    Refused { line: RejectedLine },
    /// The body is over the server's limit (413; InfluxDB 3: 500 `max request size (N bytes)
    /// exceeded`): split and retry the halves.
    TooLarge,
    /// A passing failure (connection refused or reset, timeout, 429, 5xx): retry the same
    /// batch after `retry_after` when the server said, else after the writer's backoff.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// A failure no retry fixes until an operator acts (401, 403, 404 database or bucket not
    /// found, InfluxDB 3's database limit reached): `fix` says what to do. The writer keeps retrying slowly, never acknowledging.
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
            WriteError::Partial { rejected, .. } => {
                write!(f, "partial write: {} lines rejected", rejected.len())
            }
            WriteError::Refused { line } => {
                write!(f, "refused at line {}: {}", line.number, line.message)
            }
            WriteError::TooLarge => write!(f, "request body over the server's size limit"),
            WriteError::Retry { reason, .. } => write!(f, "{reason}"),
            WriteError::Fatal {
                status,
                message,
                fix,
            } => write!(f, "{status}: {message}; {fix}"),
        }
    }
}

/// What to do when InfluxDB 3 holds no more databases and the target is not one of them.
const DATABASE_LIMIT_FIX: &str = "delete a database (influxdb3 delete database NAME) or raise \
     the server's limit, or write to an existing database: set influx.database (influx.bucket \
     with api v2)";

/// Whether `message` is InfluxDB 3's refusal to create one more database (`Adding a new
/// database would exceed limit of 5 databases`; on `/api/v2/write` behind `write buffer error:
/// catalog update error: `). It concerns the whole target, not a line: the database is created
/// by the first write to it, and past the limit that write is refused, whatever its lines, with
/// none named. (The table and column limits name their lines, see [`classify_v3`].)
fn is_database_limit(message: &str) -> bool {
    message.contains("new database would exceed limit of")
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
        400 | 422 if is_database_limit(&message) => Err(WriteError::Fatal {
            status,
            message,
            fix: DATABASE_LIMIT_FIX,
        }),
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
            fix:
                "create the bucket (v2) or database (v1, v3), or set influx.bucket/influx.database",
        }),
        413 => Err(WriteError::TooLarge),
        // InfluxDB 3 answers a body over its `--max-http-request-size` (10 MiB by default,
        // counted decompressed) with a plain-text 500 on `/api/v3/write_lp` and `/write` (413
        // on `/api/v2/write` only): the same body would be refused forever, its halves not.
        500 if message.starts_with("max request size (") && message.ends_with(" exceeded") => {
            Err(WriteError::TooLarge)
        }
        // InfluxDB 1.x answers a write to a missing retention policy with a 500; no retry
        // fixes it, so it is fatal rather than passing.
        500 if message.contains("retention policy not found") => Err(WriteError::Fatal {
            status,
            message,
            fix: "create the retention policy, or correct or remove influx.retention_policy",
        }),
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

/// Classifies an HTTP answer to an InfluxDB 3 `/api/v3/write_lp` write. Its refusals of
/// lines come in the two shapes of the InfluxDB 3 Core API reference ("Use the v3 write_lp API
/// to write data"): a partial write, 400 `{"error": "partial write of line protocol
/// occurred", "data": [{"original_line", "line_number", "error_message"}, ...]}`, where every
/// line not listed was stored; and a refusal of the whole body, `"data"` a single such object,
/// where nothing was. The table and column limits come so, naming their lines (422 for a
/// partial write): the lines are dead-lettered with the limit's message and the others stored,
/// as for any other rejected line. 401 and 403 say what to fix in v3's terms (a token);
/// everything else (the database limit, 404, 413, 429, 5xx) is read as for v2.
pub fn classify_v3(status: u16, body: &str, retry_after: Option<&str>) -> Result<(), WriteError> {
    if matches!(status, 400 | 422) {
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let line = |item: &serde_json::Value| -> Option<RejectedLine> {
            Some(RejectedLine {
                number: usize::try_from(item.get("line_number")?.as_u64()?).ok()?,
                message: one_line(item.get("error_message")?.as_str()?),
            })
        };
        match parsed.get("data") {
            Some(serde_json::Value::Array(items)) if !items.is_empty() => {
                let rejected: Vec<RejectedLine> = items.iter().filter_map(line).collect();
                if rejected.len() == items.len() {
                    return Err(WriteError::Partial {
                        complete: rejected.len() < V3_MAX_LINE_ERRORS,
                        rejected,
                    });
                }
            }
            Some(item @ serde_json::Value::Object(_)) => {
                if let Some(line) = line(item) {
                    return Err(WriteError::Refused { line });
                }
            }
            _ => {}
        }
    }
    // The v3 API takes a token only: the shared fixes would name v1's username and password.
    let fix = match status {
        401 => {
            "check influx.token (or COLLECTOR_INFLUX_TOKEN): a token of this InfluxDB 3 \
                server, which may be wrong, revoked or expired"
        }
        403 => "use a token with write permission on the database (influx.token)",
        _ => return classify(status, body, retry_after),
    };
    Err(WriteError::Fatal {
        status,
        message: error_message(body),
        fix,
    })
}

/// How a v3 partial write of `n` lines settles them: lines `0..explained` were stored, except
/// the `rejected` ones (positions from 0, ascending, each once, with InfluxDB's message);
/// lines `explained..n` are unknown and must be written again. Everything is explained when
/// the list is `complete`; otherwise only up to the last line it names. Line numbers outside
/// the body are ignored; an answer naming none explains nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialPlan {
    pub rejected: Vec<(usize, String)>,
    pub explained: usize,
}

pub fn plan_partial(n: usize, rejected: Vec<RejectedLine>, complete: bool) -> PartialPlan {
    let mut positions: Vec<(usize, String)> = rejected
        .into_iter()
        .filter(|line| (1..=n).contains(&line.number))
        .map(|line| (line.number - 1, line.message))
        .collect();
    positions.sort_by_key(|(i, _)| *i);
    positions.dedup_by_key(|(i, _)| *i);
    let explained = match (positions.last(), complete) {
        (None, _) => 0,
        (Some(_), true) => n,
        (Some((last, _)), false) => last + 1,
    };
    PartialPlan {
        rejected: positions,
        explained,
    }
}

/// The reason InfluxDB gave: v1 and v3 answer `{"error": "..."}`, v2 `{"code": ...,
/// "message": "..."}`.
pub(super) fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    one_line(&text)
}

/// A message as one bounded line: it goes into logs and dead-letter headers.
fn one_line(text: &str) -> String {
    let mut line = crate::error::one_line(text, 500);
    if line.is_empty() {
        line.push_str("no reason given");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(WriteError::Fatal { status: 404, fix, .. }) if fix.contains("v3")
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
        assert!(matches!(
            classify(500, r#"{"error":"retention policy not found: week"}"#, None),
            Err(WriteError::Fatal { status: 500, .. })
        ));
        assert!(matches!(
            classify(500, r#"{"error":"timeout"}"#, None),
            Err(WriteError::Retry { .. })
        ));
    }

    /// Past InfluxDB 3's database limit no record can be written until an operator acts, so
    /// the answer is fatal (records held), not a rejection of lines (bisected, every record
    /// dead-lettered). The bodies are InfluxDB 3 Core 3.6.0's: 422 on `/api/v3/write_lp` and
    /// `/write`, 400 wrapped on `/api/v2/write`.
    #[test]
    fn the_database_limit_is_fatal() {
        let v3 = r#"{"error":"Adding a new database would exceed limit of 5 databases"}"#;
        let v2 = r#"{"code":"invalid","message":"write buffer error: catalog update error: Adding a new database would exceed limit of 5 databases"}"#;
        for (status, body, result) in [
            (422, v3, classify_v3(422, v3, None)),
            (422, v3, classify(422, v3, None)),
            (400, v2, classify(400, v2, None)),
        ] {
            match result {
                Err(WriteError::Fatal {
                    status: s,
                    message,
                    fix,
                }) => {
                    assert_eq!(s, status);
                    assert!(message.contains("limit of 5 databases"), "{message}");
                    assert!(fix.contains("delete a database"), "{fix}");
                    assert!(fix.contains("influx.database"), "{fix}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        // The table and column limits concern lines: InfluxDB 3 names the lines that hit them
        // (a partial write, 422), and every other line of the body is stored. Without a line
        // named they are read as any rejection (split to find the lines), not held: holding
        // would stop every measurement for the records of one.
        for limit in [
            "Update to schema would exceed number of tables limit of 2000 tables",
            "Update to schema would exceed number of columns per table limit of 500 columns",
        ] {
            let named = format!(
                r#"{{"error":"partial write of line protocol occurred","data":[{{"error_message":"{limit}","line_number":2,"original_line":"newtab a=1 3"}}]}}"#
            );
            assert_eq!(
                classify_v3(422, &named, None),
                Err(WriteError::Partial {
                    rejected: vec![rejected(2, limit)],
                    complete: true
                })
            );
            let bare = format!(r#"{{"error":"{limit}"}}"#);
            assert!(matches!(
                classify_v3(422, &bare, None),
                Err(WriteError::Rejected { status: 422, .. })
            ));
        }
    }

    /// InfluxDB 3 answers a body over `--max-http-request-size` with a plain-text 500 on
    /// `/api/v3/write_lp` and `/write` (413 only on `/api/v2/write`): split, not retried as it is.
    #[test]
    fn a_body_over_influxdb_3s_limit_is_too_large() {
        let body = "max request size (10485760 bytes) exceeded";
        assert_eq!(classify(500, body, None), Err(WriteError::TooLarge));
        assert_eq!(classify_v3(500, body, None), Err(WriteError::TooLarge));
        let v2 =
            r#"{"code":"request too large","message":"max request size (1000 bytes) exceeded"}"#;
        assert_eq!(classify(413, v2, None), Err(WriteError::TooLarge));
        // Other 500s are passing failures.
        assert!(matches!(
            classify_v3(
                500,
                "error decoding gzip stream: unexpected end of file",
                None
            ),
            Err(WriteError::Retry { .. })
        ));
    }

    fn rejected(number: usize, message: &str) -> RejectedLine {
        RejectedLine {
            number,
            message: message.into(),
        }
    }

    // Bodies below follow the InfluxDB 3 Core API reference for `/api/v3/write_lp`.
    #[test]
    fn v3_answers_are_classified() {
        assert_eq!(classify_v3(204, "", None), Ok(()));
        let partial = r#"{"error":"partial write of line protocol occurred","data":[{"original_line":"home,room=Sunroom temp=hi 1735549200","line_number":2,"error_message":"invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string"},{"original_line":"x","line_number":7,"error_message":"No fields were\nprovided"}]}"#;
        assert_eq!(
            classify_v3(400, partial, None),
            Err(WriteError::Partial {
                rejected: vec![
                    rejected(2, "invalid column type for column 'temp', expected iox::column_type::field::float, got iox::column_type::field::string"),
                    rejected(7, "No fields were provided"),
                ],
                complete: true
            })
        );
        let items: Vec<String> = (1..=100)
            .map(|n| format!(r#"{{"original_line":"m","line_number":{n},"error_message":"bad"}}"#))
            .collect();
        let hundred = format!(
            r#"{{"error":"partial write of line protocol occurred","data":[{}]}}"#,
            items.join(",")
        );
        assert!(matches!(
            classify_v3(400, &hundred, None),
            Err(WriteError::Partial { complete: false, rejected }) if rejected.len() == 100
        ));
        let whole = r#"{"error":"parsing failed for write_lp endpoint","data":{"original_line":"m v=","line_number":3,"error_message":"No fields were provided"}}"#;
        assert_eq!(
            classify_v3(400, whole, None),
            Err(WriteError::Refused {
                line: rejected(3, "No fields were provided")
            })
        );
        // Without line details a refusal is read as v1/v2 read it: split to find the lines.
        assert!(matches!(
            classify_v3(400, r#"{"error":"Update to schema would exceed number of tables limit of 2000 tables"}"#, None),
            Err(WriteError::Rejected { status: 400, message }) if message.contains("limit of 2000 tables")
        ));
        assert!(matches!(
            classify_v3(400, r#"{"error":"x","data":[{"line_number":"two"}]}"#, None),
            Err(WriteError::Rejected { .. })
        ));
        // The fixes for refused credentials name what v3 takes: a token, no username.
        for (status, needle) in [(401, "check influx.token"), (403, "influx.token")] {
            match classify_v3(status, "", None) {
                Err(WriteError::Fatal { fix, .. }) => {
                    assert!(fix.contains(needle), "{status}: {fix}");
                    assert!(!fix.contains("username") && !fix.contains("(v2)"), "{fix}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // Everything else but a refusal of lines is read as for v2.
        for (status, body, retry_after) in [
            (404, r#"{"error":"database not found: beta"}"#, None),
            (413, "", None),
            (429, "", Some("3")),
            (503, "", Some("1")),
        ] {
            assert_eq!(
                classify_v3(status, body, retry_after),
                classify(status, body, retry_after),
                "{status}"
            );
        }
    }

    #[test]
    fn partial_writes_are_planned() {
        let plan = plan_partial(
            10,
            vec![rejected(7, "b"), rejected(2, "a"), rejected(7, "c")],
            true,
        );
        assert_eq!(
            plan,
            PartialPlan {
                rejected: vec![(1, "a".into()), (6, "b".into())],
                explained: 10
            }
        );
        // Cut short: only up to the last named line is known.
        let plan = plan_partial(10, vec![rejected(2, "a"), rejected(4, "b")], false);
        assert_eq!(plan.explained, 4);
        // Numbers outside the body are ignored; naming none explains nothing.
        let plan = plan_partial(3, vec![rejected(0, "a"), rejected(4, "b")], true);
        assert_eq!(
            plan,
            PartialPlan {
                rejected: vec![],
                explained: 0
            }
        );
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let long = "x\n".repeat(1000);
        let m = error_message(&long);
        assert!(!m.contains('\n') && m.len() <= 504);
        assert_eq!(error_message(""), "no reason given");
    }
}
