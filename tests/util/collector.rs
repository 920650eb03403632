//! The service under test, run as its real binary.

use super::{kill_child, log_tail, read_log, send_signal, wait_child, wait_until, TempDir};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// The binary to run: `COLLECTOR_BIN` when set (the soak driver in `examples/soak`, which
/// Cargo gives no binary path, runs a debug, release or static build named by its script),
/// else the one Cargo built for these tests.
pub fn collector_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("COLLECTOR_BIN") {
        Ok(bin) if !bin.is_empty() => bin,
        _ => match option_env!("CARGO_BIN_EXE_collector") {
            Some(bin) => bin.to_string(),
            None => panic!("set COLLECTOR_BIN to the collector binary (no Cargo test binary here)"),
        },
    })
}

/// A running `collector --config <file>`, with stdout and stderr appended to a
/// log file in its temp dir. Dropping it kills it.
pub struct Collector {
    child: Child,
    status: Option<ExitStatus>,
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    /// The binary it runs, for restarts.
    binary: PathBuf,
}

impl Collector {
    /// Writes `config_yaml` to a file and starts the collector on it.
    pub fn start(config_yaml: &str) -> Collector {
        Collector::start_with(config_yaml, &[], &[])
    }

    /// Like [`Collector::start`], with extra arguments after `--config <file>`
    /// and extra environment variables (for secrets from the environment).
    pub fn start_with(config_yaml: &str, args: &[&str], envs: &[(&str, &str)]) -> Collector {
        Collector::start_binary(Path::new(collector_bin()), config_yaml, args, envs)
    }

    /// Like [`Collector::start_with`], running `binary` (an installed or static build)
    /// instead of the one Cargo built for the tests.
    pub fn start_binary(
        binary: &Path,
        config_yaml: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Collector {
        let dir = TempDir::new("collector");
        let config = dir.join("config.yml");
        fs::write(&config, config_yaml).expect("cannot write the collector config");
        let log = dir.join("collector.log");
        let child = spawn_collector(binary, &config, &log, args, envs);
        Collector {
            child,
            status: None,
            dir,
            config,
            log,
            binary: binary.to_path_buf(),
        }
    }

    /// Starts the collector again on the same configuration file, its output appended to the
    /// same log, once the previous process has exited (it is killed first if it still runs).
    pub fn restart(&mut self) {
        if self.running() {
            self.kill9();
        }
        self.child = spawn_collector(&self.binary, &self.config, &self.log, &[], &[]);
        self.status = None;
    }

    /// Like [`Collector::restart`], running `binary` from now on: an upgrade or a downgrade
    /// in place (the chaos soak's `--upgrade-from`).
    pub fn restart_binary(&mut self, binary: &Path) {
        self.binary = binary.to_path_buf();
        self.restart();
    }

    /// The process's peak resident set size (`VmHWM` in `/proc/<pid>/status`) in KiB, while
    /// it runs; `None` once it has exited.
    pub fn peak_rss_kib(&mut self) -> Option<u64> {
        if !self.running() {
            return None;
        }
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// The log file (stdout and stderr of every start).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Rewrites the configuration file (for reload or restart tests).
    pub fn write_config(&self, config_yaml: &str) {
        fs::write(&self.config, config_yaml).expect("cannot write the collector config");
    }

    fn running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_none()
    }

    pub fn is_running(&mut self) -> bool {
        self.running()
    }

    /// SIGTERM (no-op once it has exited).
    pub fn terminate(&mut self) {
        if self.running() {
            send_signal(self.pid(), "TERM");
        }
    }

    /// SIGINT (no-op once it has exited).
    pub fn interrupt(&mut self) {
        if self.running() {
            send_signal(self.pid(), "INT");
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if self.running() {
            self.status = kill_child(&mut self.child);
        }
    }

    /// Waits up to `timeout` for the collector to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, timeout);
        }
        self.status
    }

    /// SIGTERM, then asserts a clean exit (code 0) within `timeout`; the log is shown
    /// otherwise.
    #[track_caller]
    pub fn stop_cleanly(&mut self, timeout: Duration) {
        self.terminate();
        self.assert_exit(0, timeout);
    }

    /// Asserts that it exits with `code` within `timeout`; the log is shown otherwise.
    #[track_caller]
    pub fn assert_exit(&mut self, code: i32, timeout: Duration) {
        let status = self.wait_timeout(timeout);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(code),
            "no exit with code {code} within {timeout:?} ({status:?}):\n{}",
            self.log()
        );
    }

    /// Everything it has printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Asserts that `cond` comes true within `timeout` (polled by [`wait_until`]); the log is
    /// shown otherwise.
    #[track_caller]
    pub fn assert_within(&self, timeout: Duration, cond: impl FnMut() -> bool) {
        assert!(wait_until(timeout, cond), "{}", self.log());
    }

    /// Asserts that the log contains `needle` within `timeout`; the log is shown otherwise.
    #[track_caller]
    pub fn assert_log(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_for_log(needle, timeout),
            "no {needle:?} within {timeout:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.status.is_none() {
            kill_child(&mut self.child);
        }
        if thread::panicking() {
            eprintln!(
                "harness: collector log {} ends:\n{}",
                self.log.display(),
                log_tail(&self.log, 100)
            );
        }
    }
}

/// Spawns `collector --config <config> args...` with stdout and stderr appended to `log`.
fn spawn_collector(
    binary: &Path,
    config: &Path,
    log: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Child {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("cannot open the collector log")
    };
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(open())
        .stderr(open())
        .spawn()
        .expect("cannot start the collector binary")
}

/// Runs the collector once to its exit: `collector [--config <file>] args...`
/// (the `--config` pair is added when `config_yaml` is given), in a fresh empty
/// working directory, so the default `./config/config.yml` does not exist.
/// Returns its status, stdout and stderr; panics if it is still running after
/// `timeout`.
pub fn run_to_exit(
    args: &[&str],
    config_yaml: Option<&str>,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    run_binary_to_exit(Path::new(collector_bin()), args, config_yaml, timeout)
}

/// Like [`run_to_exit`], running `binary` (another build, such as the older one of an
/// upgrade soak).
pub fn run_binary_to_exit(
    binary: &Path,
    args: &[&str],
    config_yaml: Option<&str>,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let dir = TempDir::new("collector-run");
    let mut cmd = Command::new(binary);
    if let Some(yaml) = config_yaml {
        let config = dir.join("config.yml");
        fs::write(&config, yaml).expect("cannot write the collector config");
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the collector binary");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let Some(status) = wait_child(&mut child, timeout) else {
        kill_child(&mut child);
        panic!("collector {args:?} still running after {timeout:?}");
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr)
}

/// What a one-shot run printed and how it ended.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Everything it printed.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `collector ARGS... --config <file>` (the option after the command, where
/// [`run_to_exit`] puts it before) in a fresh empty directory, the config file written with
/// permissions `mode`, `envs` added to the environment and `stdin` as its input. Panics if
/// it is still running after `timeout`.
pub fn run_command(
    config_yaml: &str,
    mode: u32,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &[u8],
    timeout: Duration,
) -> Run {
    let dir = TempDir::new("run");
    let config = dir.join("config.yml");
    fs::write(&config, config_yaml).expect("cannot write the config");
    fs::set_permissions(&config, fs::Permissions::from_mode(mode)).expect("chmod the config");
    let mut child = Command::new(collector_bin())
        .args(args)
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .envs(envs.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the collector binary");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let Some(status) = wait_child(&mut child, timeout) else {
        kill_child(&mut child);
        panic!("collector {args:?} still running after {timeout:?}");
    };
    let _ = writer.join();
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
