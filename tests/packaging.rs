//! The deployment files agree with the service and with each other: the Kubernetes
//! manifests (their configuration parses, probes and ports match `http.listen`, the grace
//! period covers the shutdown deadline), the Dockerfile's port and user, and the systemd
//! unit passes `systemd-analyze verify` (through `scripts/verify-systemd.sh`).

mod util;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use collector::config::Config;
use serde_yaml::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn yaml(path: &str) -> Value {
    let text = fs::read_to_string(Path::new(REPO).join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dockerfile_line(instruction: &str) -> String {
    let text = fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap();
    let final_stage = text.rsplit_once("\nFROM ").unwrap().1;
    final_stage
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in the image stage"))
        .trim()
        .to_string()
}

#[test]
fn kubernetes_manifests_match_the_service() {
    // The ConfigMap's configuration, with its placeholders filled in, is valid.
    let config_map = yaml("docker/k8s/configmap.yml");
    let text = config_map["data"]["config.yml"]
        .as_str()
        .expect("data.config.yml");
    let filled = text
        .replace("<namespace>", "beta")
        .replace("<k8s_service>", "nats")
        .replace("<Your NKey>", &nkeys::KeyPair::new_user().seed().unwrap())
        .replace("<influxdb 2.0 url>", "http://influxdb:8086")
        .replace("<org>", "acme");
    assert!(!filled.contains('<'), "an unknown placeholder in {filled}");
    let config = Config::parse(&filled, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let listen = config.http_listen.expect("the ConfigMap sets http.listen");
    assert!(
        listen.ip().is_unspecified(),
        "probes come from the kubelet: listen on all addresses"
    );

    let deployment = yaml("docker/k8s/deployment.yml");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    // The collector gives itself shutdown_timeout plus a 2 s margin.
    assert!(
        Duration::from_secs(grace) > config.shutdown_timeout + Duration::from_secs(2),
        "terminationGracePeriodSeconds {grace} does not cover shutdown_timeout {:?}",
        config.shutdown_timeout
    );
    let container = &pod["containers"][0];
    assert_eq!(container["name"].as_str(), Some("collector"));
    let port = &container["ports"][0];
    assert_eq!(
        port["containerPort"].as_u64(),
        Some(u64::from(listen.port()))
    );
    let port_name = port["name"].as_str().unwrap();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some(port_name), "{probe}");
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !container["resources"][kind][resource].is_null(),
                "resources.{kind}.{resource}"
            );
        }
    }
    assert_eq!(
        container["volumeMounts"][0]["mountPath"].as_str(),
        Some("/app/config"),
        "mounted where the image's WORKDIR finds config/config.yml"
    );
    assert_eq!(dockerfile_line("WORKDIR"), "/app");
    assert_eq!(
        dockerfile_line("EXPOSE"),
        listen.port().to_string(),
        "the image exposes the metrics port"
    );
    let user = dockerfile_line("USER");
    assert_eq!(
        pod["securityContext"]["runAsUser"]
            .as_u64()
            .map(|u| u.to_string()),
        user.split(':').next().map(str::to_string)
    );

    // The rollout template patches the same container's image with a tag.
    let patch = fs::read_to_string(Path::new(REPO).join("docker/k8s/patch.yml")).unwrap();
    let patched: Value = serde_yaml::from_str(&patch.replace("${tag}", "v1.2.3")).unwrap();
    let patched = &patched["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(patched["name"].as_str(), Some("collector"));
    let image = patched["image"].as_str().unwrap();
    assert!(image.ends_with("/collector:v1.2.3"), "{image}");
    let current = container["image"].as_str().unwrap();
    assert_eq!(
        current.rsplit_once(':').unwrap().0,
        image.rsplit_once(':').unwrap().0,
        "the patch names the Deployment's image"
    );
}

#[test]
fn systemd_unit_verifies() {
    let output = Command::new(Path::new(REPO).join("scripts/verify-systemd.sh"))
        .arg(util::collector_bin())
        .output()
        .expect("cannot run scripts/verify-systemd.sh");
    assert!(
        output.status.success(),
        "scripts/verify-systemd.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let unit =
        fs::read_to_string(Path::new(REPO).join("scripts/systemd/collector.service")).unwrap();
    for line in [
        "ExecStart=/usr/local/bin/collector --config /etc/collector/config.yml",
        "EnvironmentFile=-/etc/collector/env",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
}

/// Every script the README tells a user to run is committed executable: run as the README
/// says (`scripts/x.sh ...`), a missing bit answers "Permission denied". Checked in git's
/// index, not on disk, because a checkout can add a bit the commit lacks.
#[test]
fn scripts_named_in_the_readme_are_executable() {
    let readme = fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let mut named: Vec<&str> = readme
        .split(|c: char| c.is_whitespace() || "`()[],;:".contains(c))
        .filter(|word| word.starts_with("scripts/") && word.ends_with(".sh"))
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(
        named.contains(&"scripts/test.sh") && named.contains(&"scripts/rolling-restart.sh"),
        "the README no longer names its scripts as expected: {named:?}"
    );
    let output = Command::new("git")
        .current_dir(REPO)
        .args(["ls-files", "--stage", "--", "scripts"])
        .output()
        .expect("cannot run git");
    let index = String::from_utf8_lossy(&output.stdout);
    for script in named {
        let mode = index
            .lines()
            .find(|line| line.ends_with(&format!("\t{script}")))
            .and_then(|line| line.split_whitespace().next());
        match mode {
            // Not committed yet (a working tree under change): the file itself must be.
            None => {
                use std::os::unix::fs::PermissionsExt;
                let meta = fs::metadata(Path::new(REPO).join(script))
                    .unwrap_or_else(|e| panic!("the README names {script}, which is missing: {e}"));
                assert!(
                    meta.permissions().mode() & 0o111 != 0,
                    "{script} is not executable"
                );
            }
            Some(mode) => assert_eq!(
                mode, "100755",
                "{script} is committed without its executable bit"
            ),
        }
    }
}

/// The test command's count of skipped tests (scripts/lib/skips.sh) runs under
/// `set -euo pipefail`, as scripts/test.sh does: a run in which no test skipped (no
/// directory of skip notes) must go on, silently, and one with notes must say how many and
/// why. A `find` on the missing directory once ended a fully green CI run with exit 1.
#[test]
fn the_count_of_skipped_tests_never_ends_the_run() {
    let notes = std::env::temp_dir().join(format!("collector-skips-{}", std::process::id()));
    let _ = fs::remove_dir_all(&notes);
    let report = || {
        Command::new("bash")
            .current_dir(REPO)
            .arg("-c")
            .arg(r#"set -euo pipefail; . scripts/lib/skips.sh; report_skips "$1"; echo went-on"#)
            .arg("report")
            .arg(&notes)
            .output()
            .expect("cannot run bash")
    };
    let none = report();
    assert!(none.status.success(), "{none:?}");
    assert_eq!(String::from_utf8_lossy(&none.stdout), "went-on\n");
    assert!(none.stderr.is_empty(), "{none:?}");

    fs::create_dir_all(&notes).unwrap();
    fs::write(notes.join("a"), "SKIPPED: a: no InfluxDB 3 server\n").unwrap();
    fs::write(notes.join("b"), "SKIPPED: b: no InfluxDB 3 server\n").unwrap();
    let two = report();
    let _ = fs::remove_dir_all(&notes);
    assert!(two.status.success(), "{two:?}");
    assert_eq!(String::from_utf8_lossy(&two.stdout), "went-on\n");
    let said = String::from_utf8_lossy(&two.stderr);
    assert!(said.starts_with("test.sh: 2 test(s) SKIPPED"), "{said}");
    assert!(said.contains("SKIPPED: b: no InfluxDB 3 server"), "{said}");
}
