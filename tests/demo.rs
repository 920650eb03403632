//! `scripts/demo.sh`, the README's first command, run as a user runs it: directly (so a
//! missing executable bit fails), to its "Press Ctrl-C" line, then Ctrl-C (SIGINT to its
//! process group, as a terminal sends it). It must have printed what InfluxDB holds, and
//! must leave no server or collector running. `COLLECTOR_BIN` gives it the collector Cargo
//! built for the tests, so it builds nothing; `TMPDIR` puts its temp dir, and so the paths on
//! its servers' command lines, in a temp dir of the run (`scripts/test.sh` finds leftovers
//! by that). Against InfluxDB 1.x (the default) and InfluxDB 3 Core (`--influx v3`,
//! skipped as the tests of `tests/influxdb3.rs` are when there is no InfluxDB 3 binary).

mod util;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use util::{read_log, report_skip, wait_until, TempDir, NO_INFLUXDB3};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// From the start to the "Press Ctrl-C" line: it installs nothing (the servers are here)
/// and builds nothing, so this is a hang guard.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// From Ctrl-C to its exit: the collector's shutdown, then the servers' (SIGKILL after 10 s).
const STOPPED_WITHIN: Duration = Duration::from_secs(60);

/// A running `scripts/demo.sh` in a process group of its own, its output (stdout and
/// stderr) in `dir/demo.out`. Dropped while it runs (a check failed), it is killed with
/// everything it started (in sessions of their own: found by their paths in `dir`).
struct Demo {
    child: Child,
    dir: TempDir,
}

impl Demo {
    fn start(args: &[&str], env: &[(&str, &Path)]) -> Demo {
        let dir = TempDir::new("demo");
        let out = fs::File::create(dir.join("demo.out")).expect("cannot create demo.out");
        let mut cmd = Command::new(Path::new(REPO).join("scripts/demo.sh"));
        cmd.args(args)
            .env("COLLECTOR_BIN", util::collector_bin())
            .env("TMPDIR", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cannot share demo.out"))
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run scripts/demo.sh: {e}"));
        Demo { child, dir }
    }

    fn output(&self) -> String {
        read_log(&self.dir.join("demo.out"))
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` to the script's process group, which holds everything it started.
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.signal_group("KILL");
        let _ = self.child.wait();
        for (pid, _) in processes_naming(self.dir.path()) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The live processes whose command line names `path`: each PID with its program's name.
fn processes_naming(path: &Path) -> Vec<(u32, String)> {
    let path = path.to_string_lossy();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("cannot read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // A zombie's command line is empty: it runs no more.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a.contains(&*path)) {
            let program = Path::new(&args[0])
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            found.push((pid, program));
        }
    }
    found
}

/// Runs `scripts/demo.sh args` to its "Press Ctrl-C" line, checks what it printed and that
/// `servers` and the collector run (each started with a path in its temp dir, and the
/// collector's log holding `logged`), sends Ctrl-C, and checks that it exits 130 having
/// stopped them all and removed its temp dir.
fn run_demo(args: &[&str], env: &[(&str, &Path)], servers: &[&str], logged: &str) {
    let mut demo = Demo::start(args, env);
    wait_until(READY_WITHIN, || {
        demo.output().contains("Press Ctrl-C") || demo.exited().is_some()
    });
    let output = demo.output();
    assert!(
        output.contains("Press Ctrl-C to stop everything."),
        "scripts/demo.sh {args:?} did not print its Press Ctrl-C line within {READY_WITHIN:?} \
         (exit: {:?}); its output:\n{output}",
        demo.exited()
    );
    assert!(
        output.contains("access: 20 points, errors: 2 points"),
        "scripts/demo.sh {args:?} did not find every record in InfluxDB; its output:\n{output}"
    );
    assert!(
        output.contains("web-0") && output.contains("invoice 42 failed"),
        "scripts/demo.sh {args:?} printed no points; its output:\n{output}"
    );
    let work = output
        .lines()
        .find_map(|line| line.strip_prefix("==> starting ")?.split_once(" in "))
        .map(|(_, dir)| PathBuf::from(dir))
        .unwrap_or_else(|| panic!("no `==> starting ... in DIR` line in:\n{output}"));
    assert!(
        work.starts_with(demo.dir.path()),
        "{} is not in TMPDIR",
        work.display()
    );
    let log = read_log(&work.join("collector.log"));
    assert!(
        log.contains(logged),
        "the collector's log lacks {logged:?}:\n{log}"
    );

    let running = processes_naming(&work);
    for program in servers.iter().chain(&["collector"]) {
        assert!(
            running.iter().any(|(_, p)| p == program),
            "no {program} runs with {} on its command line: {running:?}\n{output}",
            work.display()
        );
    }

    demo.signal_group("INT");
    let mut status = None;
    wait_until(STOPPED_WITHIN, || {
        status = demo.exited();
        status.is_some()
    });
    let output = demo.output();
    let status = status.unwrap_or_else(|| {
        panic!("scripts/demo.sh {args:?} still runs {STOPPED_WITHIN:?} after Ctrl-C:\n{output}")
    });
    assert_eq!(
        status.code(),
        Some(130),
        "scripts/demo.sh {args:?} after Ctrl-C: {status}\n{output}"
    );
    // One signal reached the collector, cleanup's SIGTERM (a second makes it exit at once).
    assert!(
        output.contains("stopped: fetched 22, written 22, dead-lettered 0, given back 0"),
        "the collector did not stop cleanly after Ctrl-C:\n{output}"
    );
    // What it stopped may take a moment to be reaped (a zombie's empty command line counts as gone).
    let mut left = Vec::new();
    let stopped = wait_until(Duration::from_secs(5), || {
        left = running
            .iter()
            .filter(|(pid, _)| processes_naming(&work).iter().any(|(p, _)| p == pid))
            .cloned()
            .collect();
        left.is_empty() && processes_naming(demo.dir.path()).is_empty()
    });
    assert!(
        stopped,
        "still running after scripts/demo.sh {args:?} exited: {left:?} (of {running:?}), \
         or something else naming {}:\n{output}",
        demo.dir.path().display()
    );
    assert!(
        !work.exists(),
        "scripts/demo.sh {args:?} left its temp dir {}",
        work.display()
    );
}

#[test]
fn demo_runs_against_influxdb_1_until_ctrl_c() {
    run_demo(&[], &[], &["nats-server", "influxd"], "(v1, database demo)");
}

#[test]
fn demo_runs_against_influxdb_3_until_ctrl_c() {
    let Some(bin) = util::influxdb3_bin() else {
        report_skip(NO_INFLUXDB3);
        return;
    };
    run_demo(
        &["--influx", "v3"],
        &[("INFLUXDB3_BIN", bin)],
        &["nats-server", "influxdb3"],
        "(v3, database demo)",
    );
}
