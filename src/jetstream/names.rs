//! Every name derived from a namespace, a measurement or a bucket, each built in this one
//! place and spelled as the Transfer client spells it.

/// The durable pull consumer every collector of a namespace shares on each stream, so a
/// record is handled by one collector at a time.
pub const DURABLE: &str = "collector";

/// The configuration bucket of a namespace.
pub fn bucket_name(namespace: &str) -> String {
    format!("{namespace}_logs")
}

/// The bucket of a namespace's suspects: records a process may have died handling
/// (`suspects.rs`).
pub fn suspects_bucket(namespace: &str) -> String {
    format!("{namespace}_suspects")
}

/// The key of a suspect in [`suspects_bucket`]: its measurement (a subject token) and its
/// stream sequence.
pub fn suspect_key(measurement: &str, stream_sequence: u64) -> String {
    format!("{measurement}.{stream_sequence}")
}

/// The stream of a measurement.
pub fn stream_name(namespace: &str, measurement: &str) -> String {
    format!("{namespace}:logs:{measurement}")
}

/// The subject the records of a measurement are published to.
pub fn subject_name(namespace: &str, measurement: &str) -> String {
    format!("{namespace}.logs.{measurement}")
}

/// The stream that stores the entries of KV bucket `bucket`.
pub fn bucket_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The subject of `key` in KV bucket `bucket`; `key` `>` stands for every key.
pub fn kv_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// The dead-letter stream of a namespace.
pub fn dead_letter_stream(namespace: &str) -> String {
    format!("{namespace}:dlq")
}

/// The subject dead letters of a measurement are published to; measurement `>` stands for
/// every measurement.
pub fn dead_letter_subject(namespace: &str, measurement: &str) -> String {
    format!("{namespace}.dlq.{measurement}")
}

/// The measurement a subject names: its last token (`<ns>.logs.<m>`, `<ns>.dlq.<m>`, or a
/// pull reply subject `<inbox>.<generation>.<m>`).
pub fn measurement_of(subject: &str) -> &str {
    // Runs several times for every record: a plain backwards scan of a short subject costs a
    // fraction of the generic pattern searcher behind `rsplit('.')`.
    match subject.bytes().rposition(|b| b == b'.') {
        Some(dot) => &subject[dot + 1..],
        None => subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measurement_is_the_last_token() {
        assert_eq!(measurement_of("ns.logs.access"), "access");
        assert_eq!(measurement_of("ns.dlq.access"), "access");
        assert_eq!(measurement_of("_INBOX.abc.3.access"), "access");
        assert_eq!(measurement_of("plain"), "plain");
        assert_eq!(measurement_of(""), "");
    }

    #[test]
    fn names_follow_the_transfer_client() {
        assert_eq!(bucket_name("beta"), "beta_logs");
        assert_eq!(stream_name("beta", "access"), "beta:logs:access");
        assert_eq!(subject_name("beta", "access"), "beta.logs.access");
        assert_eq!(bucket_stream("beta_logs"), "KV_beta_logs");
        assert_eq!(kv_subject("beta_logs", ">"), "$KV.beta_logs.>");
        assert_eq!(dead_letter_stream("beta"), "beta:dlq");
        assert_eq!(suspects_bucket("beta"), "beta_suspects");
        assert_eq!(suspect_key("access", 42), "access.42");
        assert_eq!(dead_letter_subject("beta", "access"), "beta.dlq.access");
    }
}
