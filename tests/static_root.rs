//! The container image, proven without a container engine: the static musl binary from
//! `scripts/build-static.sh`, alone in an empty root directory with only what
//! `docker/Dockerfile` puts in the image (the binary, a CA file, a passwd and group line)
//! plus the mounted configuration, run with the Dockerfile's USER, WORKDIR, ENTRYPOINT and
//! CMD (`unshare --root`, as root), collects records from a loopback nats-server into a
//! loopback influxd, serves `/readyz`, and stops cleanly on SIGTERM.
//!
//! The build is the slow part (a few minutes the first time, seconds once built): it is
//! done once, by the script the Dockerfile runs. A build that cannot happen (no musl target,
//! no musl-gcc) fails this test with the script's message; it is never skipped.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use util::{free_port, http_get, read_log, sample_payloads, samples, wait_until, TempDir};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Builds the static binary with the project's script; returns its path.
fn build_static() -> PathBuf {
    let output = Command::new(Path::new(REPO).join("scripts/build-static.sh"))
        .stderr(Stdio::piped())
        .output()
        .expect("cannot run scripts/build-static.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/build-static.sh failed, so the static binary cannot be tested:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(stdout.trim().lines().last().unwrap_or_default());
    assert!(
        path.is_file(),
        "the script printed no binary path: {stdout:?}"
    );
    path
}

/// What the Dockerfile's final stage says.
struct Image {
    user: (u32, u32),
    workdir: String,
    argv: Vec<String>,
    /// `(from the build stage, to)` of every COPY into the final stage.
    copies: Vec<(String, String)>,
    exposed: u16,
    env: Vec<(String, String)>,
}

fn read_dockerfile() -> Image {
    let text = fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap();
    // The final stage starts at the last FROM.
    let final_stage = text.rsplit_once("\nFROM ").expect("two stages").1;
    assert!(
        final_stage.starts_with("scratch"),
        "the image is FROM scratch"
    );
    let instruction = |name: &str| -> Vec<String> {
        final_stage
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("{name} ")))
            .map(|rest| rest.trim().to_string())
            .collect()
    };
    let one = |name: &str| -> String {
        let found = instruction(name);
        assert_eq!(found.len(), 1, "one {name} in the final stage: {found:?}");
        found[0].clone()
    };
    let exec_form = |name: &str| -> Vec<String> {
        serde_json::from_str(&one(name)).unwrap_or_else(|e| panic!("{name} not in exec form: {e}"))
    };
    let user = one("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let mut argv = exec_form("ENTRYPOINT");
    argv.extend(exec_form("CMD"));
    let copies = instruction("COPY")
        .iter()
        .map(|args| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "COPY --from=build SRC DST: {args}");
            assert_eq!(parts[0], "--from=build");
            (parts[1].to_string(), parts[2].to_string())
        })
        .collect();
    let env = instruction("ENV")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV K=V");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(one("STOPSIGNAL"), "SIGTERM");
    Image {
        user: (
            uid.parse().expect("numeric USER uid"),
            gid.parse().expect("numeric USER gid"),
        ),
        workdir: one("WORKDIR"),
        argv,
        copies,
        exposed: one("EXPOSE").parse().expect("EXPOSE PORT"),
        env,
    }
}

/// Every file under `root`, as absolute paths inside it.
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let inside = path.strip_prefix(root).unwrap();
                found.insert(format!("/{}", inside.display()));
            }
        }
    }
    found
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_static_binary_collects_alone_in_an_empty_root() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        is_root,
        "this test runs the binary in an empty root with `unshare --root`, which needs root"
    );
    let image = read_dockerfile();
    let binary = build_static();

    // The image's files, from this machine: the binary, a CA file, passwd and group.
    let dir = TempDir::new("static-root");
    let root = dir.join("root");
    let mut expected = BTreeSet::new();
    for (from, to) in &image.copies {
        let source: PathBuf = match from.as_str() {
            "/collector" => binary.clone(),
            "/passwd" => {
                let path = dir.join("passwd");
                let (uid, gid) = image.user;
                fs::write(
                    &path,
                    format!("collector:x:{uid}:{gid}:collector:/app:/sbin/nologin\n"),
                )
                .unwrap();
                path
            }
            "/group" => {
                let path = dir.join("group");
                fs::write(&path, format!("collector:x:{}:\n", image.user.1)).unwrap();
                path
            }
            ca => PathBuf::from(ca),
        };
        let target = root.join(to.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&source, &target)
            .unwrap_or_else(|e| panic!("cannot copy {} to {to}: {e}", source.display()));
        expected.insert(to.clone());
    }
    assert!(expected.contains("/app/collector"), "{expected:?}");

    // The configuration, where the manifests mount it.
    let (nats, influx, transfer) = util::start_servers("static");
    transfer.set("access", "");
    let port = free_port();
    let config = root.join("app/config/config.yml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(
        &config,
        util::config(&nats.url(), &influx.url())
            .namespace("static")
            .http_listen(port)
            .extra("log:\n  format: json\n")
            .yaml(),
    )
    .unwrap();
    expected.insert("/app/config/config.yml".into());
    assert_eq!(
        files_under(&root),
        expected,
        "the root holds only the image"
    );

    // Run it as the image would: the Dockerfile's user, working directory and command.
    let log = dir.join("collector.log");
    let open = || fs::File::create(&log).unwrap();
    let (uid, gid) = image.user;
    let mut child = Command::new("unshare")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--wd={}", image.workdir))
        .args([
            "--setgid",
            &gid.to_string(),
            "--setuid",
            &uid.to_string(),
            "--",
        ])
        .args(&image.argv)
        .env_clear()
        .envs(image.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(open())
        .stderr(open())
        .spawn()
        .expect("cannot run unshare");
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Reap(&mut child);
    let pid = guard.0.id();

    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let ready = wait_until(Duration::from_secs(30), || {
        http_get(&readyz, &[]).is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "never ready; its log:\n{}", read_log(&log));
    assert_eq!(uid_of(pid), Some(uid), "runs as the image's user");
    assert!(image.exposed > 0);

    transfer.publish_many("access", &sample_payloads(500));
    let stored = wait_until(Duration::from_secs(60), || {
        influx.count("static", "access") == 500
    });
    assert!(stored, "records not stored; its log:\n{}", read_log(&log));
    influx
        .check_samples("static", "access", &samples(500))
        .unwrap_or_else(|problems| panic!("{problems}"));
    assert!(wait_until(Duration::from_secs(30), || transfer
        .stream_state("access")
        .0
        == 0));

    util::send_signal(pid, "TERM");
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = guard.0.try_wait().ok().flatten();
        status.is_some()
    });
    let status =
        status.unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", read_log(&log)));
    assert!(
        status.success(),
        "exit {status}; its log:\n{}",
        read_log(&log)
    );
    let log_text = read_log(&log);
    for line in log_text.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        log_text.contains("stopped: fetched 500, written 500"),
        "{log_text}"
    );
    // The collector wrote nothing into its root: a read-only root file system suits it.
    assert_eq!(files_under(&root), expected);
}
