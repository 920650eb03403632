//! A server's child process and its log, shared by the server starters (`influx.rs`,
//! `nats.rs`, `prometheus.rs`), and an HTTP server on a port picked for it.

use super::{
    free_port, http_get, kill_child, log_tail, read_log, spawn_logged, stop_child, wait_until,
    TempDir,
};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// How long a database server may take to start (and serve).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A server's child process, while it runs, and the log its output is appended to (across
/// restarts). Dropping it kills the child with SIGKILL, which also ends a process paused
/// with SIGSTOP.
pub(crate) struct ServerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    pub(crate) fn new(log: PathBuf) -> ServerProcess {
        ServerProcess { child: None, log }
    }

    /// Spawns `cmd` and waits up to `timeout` until `ready` (given the child's PID) says it
    /// serves. True when it is ready and still running; false, with the child killed, when
    /// it exited first or never got ready.
    pub(crate) fn spawn_until_ready(
        &mut self,
        cmd: Command,
        timeout: Duration,
        mut ready: impl FnMut(u32) -> bool,
    ) -> bool {
        let mut child = spawn_logged(cmd, &self.log);
        let pid = child.id();
        let mut exited = false;
        let up = wait_until(timeout, || {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                return true;
            }
            ready(pid)
        });
        if exited || !up || !matches!(child.try_wait(), Ok(None)) {
            kill_child(&mut child);
            return false;
        }
        self.child = Some(child);
        true
    }

    /// [`ServerProcess::spawn_until_ready`], ready once a GET of `url` answers 200.
    pub(crate) fn spawn_until_ok(&mut self, cmd: Command, timeout: Duration, url: &str) -> bool {
        self.spawn_until_ready(cmd, timeout, |_| {
            http_get(url, &[]).is_ok_and(|r| r.status == 200)
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL (no-op if not running).
    pub(crate) fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, grace);
        }
    }

    /// `kill -9` (no-op if not running).
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// SIGSTOP, when it runs: it stays bound but answers nothing (a hung server).
    pub(crate) fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT, after [`ServerProcess::pause`].
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            super::send_signal(pid, signal);
        }
    }

    /// Everything the server logged.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The last 20 lines of the log, for panic messages.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log, 20)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A database server the harness runs as a child process, which a test stops, kills, hangs
/// and starts again on the same port with the same data: [`super::Influx`] and
/// [`super::Influx3`].
pub(crate) trait DatabaseServer {
    /// The server's program, for messages.
    const PROGRAM: &'static str;

    fn process(&self) -> &ServerProcess;

    fn process_mut(&mut self) -> &mut ServerProcess;

    /// The port it serves on.
    fn port(&self) -> u16;

    /// Spawns the server on its port with its data and waits until it serves; false if it
    /// exited first.
    fn spawn(&mut self) -> bool;

    /// SIGTERM and wait for a clean exit (SIGKILL after 20 s).
    fn stop(&mut self) {
        self.process_mut().stop(Duration::from_secs(20));
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        self.process_mut().kill9();
    }

    /// Starts again on the same port with the same data, after [`DatabaseServer::stop`] or
    /// [`DatabaseServer::kill9`] (stopping it first if it still runs).
    fn start_again(&mut self) {
        self.stop();
        let ok = wait_until(START_TIMEOUT, || self.spawn());
        assert!(
            ok,
            "{} did not start again on port {}; its log ends:\n{}",
            Self::PROGRAM,
            self.port(),
            self.process().log_tail()
        );
    }

    /// SIGSTOP: the server stays bound but answers nothing (a hung database).
    /// [`DatabaseServer::resume`] sends SIGCONT.
    fn pause(&self) {
        self.process().pause();
    }

    fn resume(&self) {
        self.process().resume();
    }

    fn is_running(&mut self) -> bool {
        self.process_mut().is_running()
    }

    /// Everything the server logged (influxd: including one line per HTTP request).
    fn log(&self) -> String {
        self.process().log()
    }
}

/// A server that serves HTTP on a loopback port picked for it, with a temp dir of its own
/// (VictoriaMetrics, Prometheus).
pub(crate) struct HttpServer {
    pub(crate) process: ServerProcess,
    pub(crate) port: u16,
    pub(crate) dir: TempDir,
}

impl HttpServer {
    /// Starts `command(port, dir)`, its output in `dir`/`name`.log, and waits up to `timeout`
    /// until a GET of `ready_path` answers 200. Ports are picked before the server binds
    /// them; if another process takes one in between, the server exits and it is tried
    /// again with a new port, three times in all.
    pub(crate) fn start(
        name: &str,
        dir: TempDir,
        ready_path: &str,
        timeout: Duration,
        command: impl Fn(u16, &TempDir) -> Command,
    ) -> HttpServer {
        let mut server = HttpServer {
            process: ServerProcess::new(dir.join(format!("{name}.log"))),
            port: 0,
            dir,
        };
        let started = (0..3).any(|_| {
            server.port = free_port();
            let ready = format!("{}{ready_path}", server.url());
            let cmd = command(server.port, &server.dir);
            server.process.spawn_until_ok(cmd, timeout, &ready)
        });
        assert!(
            started,
            "{name} did not start; its log ends:\n{}",
            server.process.log_tail()
        );
        server
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
