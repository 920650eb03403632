//! `collector`: pulls log records from NATS JetStream and writes them to InfluxDB,
//! acknowledging each record only after InfluxDB has stored it.
//!
//! See ARCHITECTURE.md for the threads and channels; each module opens with the thread that
//! runs it and what it receives and sends.

pub mod admin;
pub mod base64;
pub mod batch;
pub mod calendar;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod flow;
pub mod http;
pub mod influx;
pub mod jetstream;
pub mod json;
pub mod logging;
#[cfg(target_arch = "x86_64")]
pub mod memcopy;
pub mod pulls;
pub mod record;
pub mod schema;
pub mod service;
pub mod settle;
pub mod shutdown;
pub mod stats;
pub mod store_plan;
pub mod suspects;
pub mod tls;
pub mod worker;
pub mod writer;
