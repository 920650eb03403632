//! The file as written: `RawConfig` and the raw struct of each of its sections and blocks, in
//! the order of the file, so its whole layout reads in one place. Every key is as the user
//! wrote it (`Option` where it may be left out); the section files validate them into the
//! checked structs.

/// Declares a section as written: printable, empty by default (a section left out reads as
/// one with no keys), read by serde, and refusing unknown keys so a typo does not silently
/// fall back to a default. Every raw struct comes from here, so none can forget the refusal.
macro_rules! raw_section {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($fields)* }
    };
}

raw_section! {
    /// The whole file.
    pub struct RawConfig {
        pub namespace: Option<String>,
        #[serde(default)]
        pub nats: RawNats,
        #[serde(default)]
        pub influx: RawInflux,
        #[serde(default)]
        pub pull: RawPull,
        #[serde(default)]
        pub batch: RawBatch,
        pub poll_interval: Option<String>,
        pub shutdown_timeout: Option<String>,
        #[serde(default)]
        pub dead_letter: RawDeadLetter,
        #[serde(default)]
        pub log: RawLog,
        #[serde(default)]
        pub http: RawHttp,
    }
}

raw_section! {
    /// `nats`: the servers, the credentials, TLS and the replicas (validated in `nats`).
    pub struct RawNats {
        #[serde(default)]
        pub hosts: Vec<String>,
        pub nkey: Option<String>,
        pub token: Option<String>,
        pub username: Option<String>,
        pub password: Option<String>,
        pub creds: Option<String>,
        pub nkey_file: Option<String>,
        pub token_file: Option<String>,
        pub password_file: Option<String>,
        pub tls: Option<RawTls>,
        pub replicas: Option<usize>,
    }
}

raw_section! {
    /// `influx`: the server, its API and target, the credentials, TLS and the request
    /// settings (validated in `influx`).
    pub struct RawInflux {
        pub url: Option<String>,
        pub api: Option<String>,
        pub token: Option<String>,
        pub org: Option<String>,
        pub bucket: Option<String>,
        pub database: Option<String>,
        pub retention_policy: Option<String>,
        pub username: Option<String>,
        pub password: Option<String>,
        pub timeout: Option<String>,
        pub token_file: Option<String>,
        pub password_file: Option<String>,
        pub tls: Option<RawTls>,
        pub gzip: Option<bool>,
        pub no_sync: Option<bool>,
    }
}

raw_section! {
    /// `pull`: how the workers pull from the consumers (validated in `pull`).
    pub struct RawPull {
        pub workers: Option<usize>,
        pub batch: Option<usize>,
        pub expires: Option<String>,
        pub ack_wait: Option<String>,
        pub max_ack_pending: Option<i64>,
        pub max_deliver: Option<u64>,
    }
}

raw_section! {
    /// `batch`: when the writer sends a batch (validated in `batch`).
    pub struct RawBatch {
        pub max_lines: Option<usize>,
        pub max_bytes: Option<usize>,
        pub linger: Option<String>,
        pub interval: Option<String>,
    }
}

raw_section! {
    /// A `tls` block: PEM file paths.
    pub struct RawTls {
        pub ca: Option<String>,
        pub cert: Option<String>,
        pub key: Option<String>,
    }
}

raw_section! {
    /// `dead_letter`: how long dead letters are kept (validated by `RawConfig::validate`).
    pub struct RawDeadLetter {
        pub max_age: Option<String>,
    }
}

raw_section! {
    /// `log`: the level and format of the log lines (validated in `telemetry`).
    pub struct RawLog {
        pub level: Option<String>,
        pub format: Option<String>,
    }
}

raw_section! {
    /// `http`: where `/metrics`, `/healthz` and `/readyz` listen (validated in `telemetry`).
    pub struct RawHttp {
        pub listen: Option<String>,
    }
}
