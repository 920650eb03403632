//! Type drift on real InfluxDB 1.6 through the real pipeline (nats-server, the collector
//! binary, influxd): values sent with another numeric type than the one InfluxDB stores are
//! converted where nothing is lost, learned from InfluxDB's type-conflict answer, and stored;
//! the rest is dead-lettered with InfluxDB's reason; the conversions are counted on `/metrics`.

mod util;

use std::time::Duration;

use util::{free_port, metric, wait_until, Collector, Influx, NatsServer, Transfer};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// A record of `fields` (JSON text) at second `i` of 2026-01-01.
fn record(fields: &str, i: usize) -> Vec<u8> {
    format!(r#"{{"fields":{fields},"time":"2026-01-01T00:00:{i:02}Z"}}"#).into_bytes()
}

#[test]
fn drifted_numbers_are_converted_and_lossy_ones_dead_lettered() {
    let nats = NatsServer::start();
    let influx = Influx::start();
    influx.create_database("drift");
    // The stored types come first, as from an older producer: `latency` float, `n` integer.
    let seeded = influx.write(
        "drift",
        &format!("api latency=1.5 {T0}\ncounts n=1i {T0}\n"),
    );
    assert!(seeded.status < 300, "{}", seeded.body);

    let transfer = Transfer::new(nats.connect(), "drift");
    transfer.set("api", "");
    transfer.set("counts", "");
    // Records 1.. of each; the lossy ones are marked `"lossy": true`.
    let api = [
        r#"{"latency":2}"#,
        r#"{"latency":-3}"#,
        r#"{"latency":9007199254740992}"#,
        r#"{"latency":9007199254740993,"lossy":true}"#,
        r#"{"latency":"slow","lossy":true}"#,
        r#"{"latency":4.25}"#,
        r#"{"latency":5}"#,
    ];
    let counts = [
        r#"{"n":2.0}"#,
        r#"{"n":1e3}"#,
        r#"{"n":2.5,"lossy":true}"#,
        r#"{"n":true,"lossy":true}"#,
        r#"{"n":-7.0}"#,
        r#"{"n":8}"#,
    ];
    let payloads = |fields: &[&str]| -> Vec<Vec<u8>> {
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| record(f, i + 1))
            .collect()
    };
    transfer.publish_many("api", &payloads(&api));
    transfer.publish_many("counts", &payloads(&counts));

    let port = free_port();
    let config = util::config(&nats.url(), &influx.url())
        .namespace("drift")
        .http_listen(port)
        .yaml();
    let collector = Collector::start(&config);
    let settled = wait_until(Duration::from_secs(60), || {
        transfer.stream_state("api").0 == 0 && transfer.stream_state("counts").0 == 0
    });
    assert!(settled, "records left unsettled\n{}", collector.log());

    // Stored: the seed plus every lossless record, with the stored types.
    let values = |measurement: &str, field: &str| -> Vec<(i64, serde_json::Value)> {
        influx
            .points("drift", measurement)
            .into_iter()
            .map(|p| (p["time"].as_i64().unwrap(), p[field].clone()))
            .collect()
    };
    // Record i is the stream's i-th message, written at a whole second: its point moves by
    // its sequence (README, Point identity).
    let second = |i: i64| collector::record::point_time(T0 + i * 1_000_000_000, 0, i as u64);
    assert_eq!(
        values("api", "latency"),
        [
            (T0, 1.5.into()),
            (second(1), 2.into()),
            (second(2), (-3).into()),
            (second(3), 9007199254740992u64.into()),
            (second(6), 4.25.into()),
            (second(7), 5.into()),
        ],
        "{}",
        collector.log()
    );
    assert_eq!(influx.field_types("drift", "api")["latency"], "float");
    assert_eq!(
        values("counts", "n"),
        [
            (T0, 1.into()),
            (second(1), 2.into()),
            (second(2), 1000.into()),
            (second(5), (-7).into()),
            (second(6), 8.into()),
        ],
        "{}",
        collector.log()
    );
    assert_eq!(influx.field_types("drift", "counts")["n"], "integer");

    // Dead-lettered: exactly the lossy records, with InfluxDB's reason.
    let letters = transfer.dead_letters();
    assert_eq!(letters.len(), 4, "{letters:?}\n{}", collector.log());
    for (subject, reason, payload) in &letters {
        let payload = String::from_utf8_lossy(payload);
        assert!(payload.contains("lossy"), "{payload}");
        assert!(
            reason.contains("field type conflict"),
            "{subject}: {reason}"
        );
    }

    // Counted: the four lossless api values and four counts values.
    assert_eq!(
        metric(
            port,
            "collector_field_conversions_total{measurement=\"api\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            port,
            "collector_field_conversions_total{measurement=\"counts\"}"
        ),
        3.0
    );
    let log = collector.log();
    assert_eq!(
        log.matches("field \"latency\" of measurement \"api\" is stored as float")
            .count(),
        1,
        "{log}"
    );
}
