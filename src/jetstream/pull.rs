//! What the worker threads send and receive on their connection: pull requests and the
//! classification of what arrives on a pull inbox. What settles a record that arrived (its
//! acknowledgements, `+TERM` and dead letter) is sent by `crate::settle` alone.

use std::io;
use std::time::Duration;

use super::{Connection, Message, API_TIMEOUT, DURABLE};

/// Where a JetStream message came from, read from its `$JS.ACK...` reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times this record has been delivered, 1 the first time.
    pub delivered: u64,
    /// The record's place in its stream, the same on every delivery: it keeps records of one
    /// written time apart in InfluxDB (`record::point_time`).
    pub stream_sequence: u64,
    /// When the record was stored in the stream, in nanoseconds since the epoch: the record's
    /// time when its payload has none, so a redelivery writes the very same point.
    pub timestamp_ns: i64,
    /// How many records the consumer still had waiting for delivery after this one: 0 when
    /// this one caught up with the stream.
    pub pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the
/// newer form with a domain and account hash in front and a random token after.
pub fn parse_ack_subject(reply: &str) -> Option<Delivery> {
    let rest = reply.strip_prefix("$JS.ACK.")?.as_bytes();
    // Runs once per record: a byte scan for the dots and a digit loop per number cost a
    // fraction of `split('.')` and `str::parse` (about 1,600 instructions a record before).
    // The numbers are tokens 2..7 of the old form (7 tokens) or 4..9 of the new one (9 or
    // more); `starts` holds where each of the first 9 tokens begins.
    let mut starts = [0usize; 10];
    let mut n_tokens = 1;
    for (i, &b) in rest.iter().enumerate() {
        if b == b'.' {
            if n_tokens < starts.len() {
                starts[n_tokens] = i + 1;
            }
            n_tokens += 1;
        }
    }
    let first = match n_tokens {
        7 => 2,
        n if n >= 9 => 4,
        _ => return None,
    };
    let token = |k: usize| -> &[u8] {
        let begin = starts[first + k];
        let end = if first + k + 1 < n_tokens {
            starts[first + k + 1] - 1
        } else {
            rest.len()
        };
        &rest[begin..end]
    };
    Some(Delivery {
        delivered: parse_u64(token(0))?,
        stream_sequence: parse_u64(token(1))?,
        timestamp_ns: i64::try_from(parse_u64(token(3))?).ok()?,
        pending: parse_u64(token(4))?,
    })
}

/// A decimal number of digits only, as the server writes them; `None` for anything else or
/// past `u64::MAX`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// What arrived on a worker's pull inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A record to process.
    Record(Delivery),
    /// A status that ends one pull request: 404 no messages, 408 expired, 409 refused
    /// (`Exceeded MaxRequestBatch`, `Consumer Deleted`, leadership change...). `unfilled` is
    /// how many of the request's records were never sent, when the server says.
    PullEnded {
        code: u16,
        description: String,
        unfilled: Option<u64>,
    },
    /// A status that does not end a pull (100 idle heartbeat or flow control).
    Heartbeat,
    /// Neither: a stray message with no JetStream reply subject.
    Unknown,
}

pub fn classify(message: &Message) -> Arrival {
    if let Some(headers) = &message.headers {
        if let Some(status) = headers.get(nats::header::STATUS) {
            let code: u16 = status.trim().parse().unwrap_or(0);
            if code == 100 {
                return Arrival::Heartbeat;
            }
            let description = headers
                .get(nats::header::DESCRIPTION)
                .cloned()
                .unwrap_or_default();
            let unfilled = headers
                .get("Nats-Pending-Messages")
                .and_then(|v| v.trim().parse().ok());
            return Arrival::PullEnded {
                code,
                description,
                unfilled,
            };
        }
    }
    match message.reply.as_deref().and_then(parse_ack_subject) {
        Some(delivery) => Arrival::Record(delivery),
        None => Arrival::Unknown,
    }
}

/// Publishes a pull request for `batch` records on the shared consumer of `stream`; the
/// records, the server's idle heartbeats and the status that ends the request arrive on
/// `reply`. It is not flushed: the caller sends several and then calls [`flush`] once, so a
/// worker with hundreds of measurements pays one round trip, not one per request.
pub fn request_pull(
    conn: &Connection,
    stream: &str,
    reply: &str,
    batch: usize,
    expires: Duration,
    idle_heartbeat: Duration,
) -> io::Result<()> {
    let body = format!(
        r#"{{"batch":{batch},"expires":{},"idle_heartbeat":{}}}"#,
        expires.as_nanos(),
        idle_heartbeat.as_nanos()
    );
    conn.publish_request(
        &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{DURABLE}"),
        reply,
        body,
    )
}

/// Sends everything buffered on the connection (acks are buffered) and waits for the server
/// to have read it.
pub fn flush(conn: &Connection) -> io::Result<()> {
    conn.flush_timeout(API_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_in_both_forms() {
        let old = "$JS.ACK.beta:logs:access.collector.2.15.7.1700000000123456789.40";
        assert_eq!(
            parse_ack_subject(old),
            Some(Delivery {
                delivered: 2,
                stream_sequence: 15,
                timestamp_ns: 1_700_000_000_123_456_789,
                pending: 40,
            })
        );
        let new = "$JS.ACK.hub.ACCHASH.beta:logs:access.collector.1.9.9.1700000000000000001.0.abcd";
        assert_eq!(
            parse_ack_subject(new),
            Some(Delivery {
                delivered: 1,
                stream_sequence: 9,
                timestamp_ns: 1_700_000_000_000_000_001,
                pending: 0,
            })
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.a.b.c"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.s.c.x.1.1.1.1"), None);
        // Empty, signed, or past the type's range: not a subject the server writes.
        assert_eq!(parse_ack_subject("$JS.ACK.s.c..1.1.1.1"), None);
        assert_eq!(parse_ack_subject("$JS.ACK.s.c.+1.1.1.1.1"), None);
        assert_eq!(
            parse_ack_subject("$JS.ACK.s.c.1.18446744073709551616.1.1.1"),
            None
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.s.c.1.1.1.9223372036854775808.1"),
            None
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.s.c.1.18446744073709551615.1.9223372036854775807.0"),
            Some(Delivery {
                delivered: 1,
                stream_sequence: u64::MAX,
                timestamp_ns: i64::MAX,
                pending: 0,
            })
        );
        // Eight tokens is neither form.
        assert_eq!(parse_ack_subject("$JS.ACK.d.s.c.1.1.1.1.1"), None);
    }
}
