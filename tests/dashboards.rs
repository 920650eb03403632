//! The Grafana dashboard (`docker/grafana/collector-dashboard.json`) and the alert rules
//! (`docker/prometheus/collector-rules.yml`) against a real Prometheus scraping a running
//! collector while records flow: `promtool check rules` passes, every rule loads and
//! evaluates without error, every metric a rule reads exists, every panel's query (its
//! variables substituted) returns data, so no panel shows "no data" for a misspelled metric,
//! and the dead-letter alert fires when poison records arrive. Bounded in records and time.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use util::{free_port, http_get, sample_payloads, wait_until, Collector, Prometheus, Transfer};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const RULES: &str = "docker/prometheus/collector-rules.yml";
const DASHBOARD: &str = "docker/grafana/collector-dashboard.json";

fn read(path: &str) -> String {
    fs::read_to_string(Path::new(REPO).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A panel query with Grafana's variables filled in as for this test: one namespace, every
/// collector, a rate window of many scrapes (Prometheus here scrapes every second).
fn substitute(expr: &str, namespace: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$namespace", namespace)
        .replace("$instance", ".+")
}

/// Metric names a PromQL expression reads: the identifiers of the collector's families.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("collector_") || word.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Whether an instant query's result holds at least one sample with a number (not NaN).
fn has_data(result: &Value) -> bool {
    result.as_array().is_some_and(|samples| {
        samples.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| !v.is_nan())
        })
    })
}

#[test]
fn promtool_accepts_the_rules() {
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(Path::new(REPO).join(RULES))
        .output()
        .expect("promtool is missing: run scripts/install-deps.sh");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("SUCCESS: 5 rules found"),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_dashboard_is_for_grafana_10_with_a_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert_eq!(dashboard["schemaVersion"], 39, "Grafana 10.4's schema");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate id");
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}");
        }
    }
}

#[test]
fn dashboard_queries_return_data_and_the_dead_letter_alert_fires() {
    let port = free_port();
    let (nats, influx, transfer) = util::start_servers("pm");
    transfer.set("access", "");
    transfer.set("audit", "");
    let collector = Collector::start(
        &util::config(&nats.url(), &influx.url())
            .namespace("pm")
            .http_listen(port)
            .extra("poll_interval: 500ms\nbatch:\n  interval: 200ms\n")
            .yaml(),
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            http_get(&format!("http://127.0.0.1:{port}/readyz"), &[]).is_ok_and(|r| r.status == 200)
        }),
        "collector never ready:\n{}",
        collector.log()
    );

    // The test's copy of the rules: every `for:` shortened so a condition fires at once.
    let rules: String = read(RULES)
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 0s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{port}")], &rules);

    // Records flow for the whole check: 20 every 100 ms on two measurements, at most 60 s.
    let flowing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let flowing = flowing.clone();
        let transfer = Transfer::new(nats.connect(), "pm");
        std::thread::spawn(move || {
            let payloads = sample_payloads(20);
            for round in 0..600 {
                if !flowing.load(Ordering::Relaxed) {
                    break;
                }
                let measurement = if round % 2 == 0 { "access" } else { "audit" };
                transfer.publish_many(measurement, &payloads);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let scraped = wait_until(Duration::from_secs(60), || {
        prometheus
            .query("collector_records_written_total > 100")
            .is_ok_and(|r| has_data(&r))
    });
    assert!(
        scraped,
        "prometheus never saw records written:\n{}",
        prometheus.log()
    );

    // Every panel query returns a number (a rate needs a few scrapes: retried for a while).
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                substitute(expr, "pm"),
            ));
        }
    }
    assert!(queries.len() >= 12, "{queries:?}");
    let mut missing = Vec::new();
    for (title, query) in &queries {
        let mut last = Ok(Value::Null);
        let answered = wait_until(Duration::from_secs(30), || {
            last = prometheus.query(query);
            last.as_ref().is_ok_and(has_data)
        });
        if !answered {
            missing.push(format!("{title}: {query}\n  -> {last:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "panels without data:\n{}",
        missing.join("\n")
    );
    // The variables' own queries.
    let namespaces = prometheus
        .api("label/namespace/values", &[("match[]", "collector_info")])
        .unwrap();
    assert!(
        namespaces.as_array().unwrap().contains(&Value::from("pm")),
        "{namespaces}"
    );
    let instances = prometheus
        .api(
            "label/instance/values",
            &[("match[]", "collector_info{namespace=~\"pm\"}")],
        )
        .unwrap();
    assert_eq!(instances, serde_json::json!([format!("127.0.0.1:{port}")]));

    // Every rule is loaded and evaluates without error; every metric it reads exists.
    let loaded = wait_until(Duration::from_secs(30), || {
        prometheus.api("rules", &[]).is_ok_and(|data| {
            let rules: Vec<&Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            rules.len() == 5
                && rules.iter().all(|r| {
                    r["health"] == "ok"
                        && !r["lastEvaluation"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("0001")
                })
        })
    });
    assert!(loaded, "rules: {:?}", prometheus.api("rules", &[]));
    let parsed: serde_yaml::Value = serde_yaml::from_str(&read(RULES)).unwrap();
    let mut names = BTreeSet::new();
    for group in parsed["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            names.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    assert!(
        names.contains("collector_measurement_oldest_age_seconds"),
        "{names:?}"
    );
    for name in &names {
        let result = prometheus.query(&format!("count({name})")).unwrap();
        assert!(has_data(&result), "a rule reads {name}, which has no data");
    }
    // While records flow nothing is wrong: no alert fires.
    let alerts = prometheus.api("alerts", &[]).unwrap();
    assert_eq!(alerts["alerts"], serde_json::json!([]), "{alerts}");

    // Poison records: the dead-letter alert fires, naming the namespace.
    transfer.publish_many("audit", &[&b"not json"[..], b"{}"]);
    let mut alerts = Value::Null;
    let fired = wait_until(Duration::from_secs(60), || {
        alerts = prometheus.api("alerts", &[]).unwrap_or(Value::Null);
        alerts["alerts"].as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == "CollectorDeadLetters"
                && a["labels"]["namespace"] == "pm"
                && a["state"] == "firing"
        })
    });
    flowing.store(false, Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(fired, "no dead-letter alert: {alerts}\n{}", collector.log());
    let runbook = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "CollectorDeadLetters")
        .map(|a| {
            a["annotations"]["runbook"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap();
    assert!(runbook.contains("collector dlq list"), "{runbook}");
}
