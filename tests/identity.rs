//! Point identity on real servers (nats-server, the collector binary, InfluxDB 1.6): distinct
//! records with the same tags and the same coarse `time` stay distinct points, each at its
//! written time plus its stream sequence modulo the span of the time's resolution, and a
//! record written again after a `kill -9` lands on the very same point. The cases are
//! `tests/util/identity.rs`', shared with `tests/influxdb3.rs`.

mod util;

use serde_json::{Map, Value};
use util::identity::{self, Case, Points};
use util::{Influx, NatsServer};

fn config(namespace: &str, nats: &NatsServer, influx: &Influx, extra: &str) -> String {
    util::config(&nats.url(), &influx.url())
        .namespace(namespace)
        .extra(extra)
        .yaml()
}

impl Points for Influx {
    /// Counted by InfluxDB (cheaper than reading them all).
    fn count_case(&self, db: &str, case: &Case) -> usize {
        let answer = self.query(
            db,
            &format!("SELECT COUNT(\"i\") FROM \"{}\"", case.measurement),
        );
        answer["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0) as usize
    }

    fn typed_points(&self, db: &str, case: &Case) -> Vec<Map<String, Value>> {
        let types = self.field_types(db, case.measurement);
        assert_eq!(types.get("i").map(String::as_str), Some("integer"));
        assert_eq!(types.get("msg").map(String::as_str), Some("string"));
        self.points(db, case.measurement)
    }
}

#[test]
fn ten_thousand_records_of_one_second_or_one_millisecond_are_ten_thousand_points() {
    let (nats, influx, transfer) = util::start_servers("idn");
    let config = config("idn", &nats, &influx, "");
    identity::records_of_one_time_are_as_many_points(&transfer, &influx, "idn", &config);
}

/// Records written to InfluxDB whose acknowledgements never reached JetStream, then a
/// `kill -9` of the collector mid-drain: a new collector gets them again and writes them to
/// the very same points, so InfluxDB still holds exactly one point per record.
#[test]
fn records_written_again_after_kill_9_land_on_the_same_points() {
    let (mut nats, influx, _) = util::start_servers("idk");
    // A short ack wait, so what the killed collector held comes back soon; small batches, so
    // the drain takes many writes.
    let config = config(
        "idk",
        &nats,
        &influx,
        "pull:\n  batch: 200\n  ack_wait: 5s\nbatch:\n  max_lines: 400\n",
    );
    identity::records_written_again_after_kill_9_land_on_the_same_points(
        &mut nats, &influx, "idk", &config, "points",
    );
}
