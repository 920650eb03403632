//! The writer thread's request: a body of line protocol POSTed, gzip-compressed when
//! `influx.gzip` is on, to the write endpoint of the configured API, and its answer classified
//! by [`super::answer`].

use std::io::Write;

use crate::config::{InfluxApi, InfluxConfig};

use super::answer::{classify, classify_v3, WriteError};
use super::{encode_query, transport_error, Influx, Server};

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
        // `accept_partial=true` (the server's default, said explicitly): the good lines of a
        // batch are stored and the answer names the rejected ones, so nothing is bisected.
        InfluxApi::V3 => format!(
            "{}/api/v3/write_lp?db={}&precision=nanosecond&accept_partial=true{}",
            config.url,
            encode_query(&config.target),
            if config.no_sync { "&no_sync=true" } else { "" }
        ),
    }
}

/// The v3 endpoint that finds a bad line for the v1 and v2 APIs of InfluxDB 3: with
/// `accept_partial=false` a body with a bad line is refused whole, naming the first bad line
/// with its reason, and nothing is stored.
pub fn diagnose_url(base_url: &str, database: &str) -> String {
    format!(
        "{base_url}/api/v3/write_lp?db={}&precision=nanosecond&accept_partial=false",
        encode_query(database)
    )
}

/// The v2 endpoint of InfluxDB 3 for the `database` the v3 API writes to, for the lines whose
/// rejection would make InfluxDB 3.6.0 panic while it answers through its v3 API
/// ([`crate::store_plan::cut_at_risk`]): it quotes no line, so a bad one gets a plain 400.
/// InfluxDB 3 takes no organisation and the same token there.
pub fn v2_of_v3_url(base_url: &str, database: &str) -> String {
    format!(
        "{base_url}/api/v2/write?bucket={}&precision=ns",
        encode_query(database)
    )
}

/// Compresses `body` into `out` (emptied first) as one gzip member at level 1: the fastest
/// level, which already makes line protocol about five times smaller.
pub fn gzip(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.try_finish())
        .expect("compressing into memory cannot fail");
}

impl Influx {
    /// Writes a body of newline-terminated lines, compressed when `influx.gzip` is on; `Ok`
    /// only when InfluxDB answered 2xx.
    pub fn write(&mut self, body: &[u8]) -> Result<(), WriteError> {
        if self.server.is_none() {
            // Which server this is decides the API (`Influx::meet`): one ping before the
            // first write, and before each while it has not answered.
            let _ = self.ping();
        }
        let url = self.write_url.clone();
        // InfluxDB 3's `/write` answers a bad body as its v3 API does without partial writes:
        // the first bad line named with its reason, nothing stored.
        let answers_as = match (self.api, self.server) {
            (InfluxApi::V1, Some(Server::V3)) => InfluxApi::V3,
            (api, _) => api,
        };
        self.post(&url, answers_as, body)
    }

    /// Sends a body the configured v1 or v2 API refused through the v3 API with
    /// `accept_partial=false` ([`diagnose_url`]): stored whole, or refused naming its first
    /// bad line (`WriteError::Refused`) with nothing stored. Only once [`Influx::diagnoses`].
    pub fn diagnose(&mut self, body: &[u8]) -> Result<(), WriteError> {
        let Some(url) = self.diagnose_url.clone() else {
            return self.write(body);
        };
        self.post(&url, InfluxApi::V3, body)
    }

    /// Whether writes go to InfluxDB 3, as far as a `/ping` has said, through whichever API:
    /// its v3 API quotes a rejected line in its answer, and so do its `/write` and the v3
    /// diagnosis of a body refused through v1 or v2 (`accept_partial=false`), so a line cut
    /// inside a character by that quote gets no answer through any of them
    /// ([`Influx::write_v2_of_v3`]).
    pub fn writes_to_influxdb_3(&self) -> bool {
        self.server == Some(Server::V3)
    }

    /// Writes lines InfluxDB 3 must not be asked to quote ([`crate::store_plan::cut_at_risk`]) through
    /// the same server's `/api/v2/write` ([`v2_of_v3_url`]), to the database the v3 API
    /// writes to, with the same token: stored whole, or refused whole with a plain 400
    /// naming no line (`WriteError::Rejected`), nothing stored.
    pub fn write_v2_of_v3(&mut self, body: &[u8]) -> Result<(), WriteError> {
        let url = v2_of_v3_url(&self.base_url, &super::v3_config(&self.config).target);
        self.post(&url, InfluxApi::V2, body)
    }

    /// POSTs `body` to `url`, classified as an answer of `api`.
    fn post(&mut self, url: &str, api: InfluxApi, body: &[u8]) -> Result<(), WriteError> {
        let mut request = self.write_request(url);
        let body = match &mut self.gzip {
            Some(compressed) => {
                gzip(body, compressed);
                request = request.header("Content-Encoding", "gzip");
                &compressed[..]
            }
            None => body,
        };
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
                match api {
                    InfluxApi::V3 => classify_v3(status, &text, retry_after.as_deref()),
                    InfluxApi::V1 | InfluxApi::V2 => {
                        classify(status, &text, retry_after.as_deref())
                    }
                }
            }
            Err(e) => Err(WriteError::Retry {
                reason: format!("{} unreachable: {}", self.base_url, transport_error(&e)),
                retry_after: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::influx::authorization;
    use crate::influx::tests::config;

    #[test]
    fn gzip_bodies_decompress_to_the_same_lines() {
        use std::io::Read;
        let body = b"m,host=a value=1i 1659312000000000000\n".repeat(100);
        let mut compressed = b"left over".to_vec();
        gzip(&body, &mut compressed);
        assert!(compressed.len() < body.len() / 5, "{}", compressed.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
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
    fn the_v2_url_of_influxdb_3_names_the_v3_database() {
        assert_eq!(
            v2_of_v3_url("http://db:8181", "logs db"),
            "http://db:8181/api/v2/write?bucket=logs%20db&precision=ns"
        );
    }

    #[test]
    fn v3_url_and_bearer_token() {
        let mut v3 = config(InfluxApi::V3);
        v3.org = None;
        assert_eq!(
            write_url(&v3),
            "http://db:8086/api/v3/write_lp?db=beta&precision=nanosecond&accept_partial=true"
        );
        v3.no_sync = true;
        v3.target = "logs db".into();
        assert_eq!(
            write_url(&v3),
            "http://db:8086/api/v3/write_lp?db=logs%20db&precision=nanosecond&accept_partial=true&no_sync=true"
        );
        v3.token = Some(Secret::new("apiv3_x"));
        assert_eq!(authorization(&v3).unwrap(), "Bearer apiv3_x");
    }
}
