//! Rolling restarts under load: three collectors of one namespace, each with its own
//! `/readyz`, restarted twice one at a time by `scripts/rolling-restart.sh local` while
//! records are published steadily. Afterwards every published record is in InfluxDB exactly
//! once, the streams are empty, and no collector was down outside its own restart: at no
//! moment were two of them down, and each went down exactly once per restart round.
//!
//! Bounded: publishing stops after 20 s or when the restarts are done, whichever is later
//! (the script's own timeouts bound the restarts), and the drain is waited for at most 120 s.

mod util;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::{
    collector_bin, free_port, http_get, samples, send_signal, wait_until, Influx, NatsServer,
    Sample, TempDir, Transfer,
};

const NAMESPACE: &str = "roll";
const MEASUREMENTS: [&str; 2] = ["access", "audit"];
/// Records per publish round, one round every 100 ms: about 300 records/s.
const PER_ROUND: usize = 30;
const MIN_PUBLISHING: Duration = Duration::from_secs(20);

/// One collector as the script sees it: PID file, readiness URL, start command.
struct Instance {
    pidfile: PathBuf,
    url: String,
    command: String,
    log: PathBuf,
}

impl Instance {
    fn pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    fn ready(&self) -> bool {
        http_get(&self.url, &[]).is_ok_and(|reply| reply.status == 200)
    }
}

/// The instances, killed by PID when the test ends (the script started them, so they are
/// not this process's children).
struct Instances {
    list: Vec<Instance>,
    _dir: TempDir,
}

impl Drop for Instances {
    fn drop(&mut self) {
        for instance in &self.list {
            if let Some(pid) = instance.pid() {
                if thread::panicking() {
                    eprintln!(
                        "rolling: log of {}:\n{}",
                        instance.pidfile.display(),
                        util::read_log(&instance.log)
                    );
                }
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn instances(nats: &NatsServer, influx: &Influx) -> Instances {
    let dir = TempDir::new("rolling");
    let list = (0..3)
        .map(|i| {
            let port = free_port();
            let config = dir.join(format!("collector-{i}.yml"));
            fs::write(
                &config,
                util::config(&nats.url(), &influx.url())
                    .namespace(NAMESPACE)
                    .http_listen(port)
                    .extra(
                        "poll_interval: 500ms\nshutdown_timeout: 5s\n\
                         pull:\n  batch: 100\n  ack_wait: 5s\n  expires: 2s\nbatch:\n  interval: 200ms\n",
                    )
                    .yaml(),
            )
            .unwrap();
            let log = dir.join(format!("collector-{i}.log"));
            Instance {
                pidfile: dir.join(format!("collector-{i}.pid")),
                url: format!("http://127.0.0.1:{port}/readyz"),
                command: format!(
                    "{} --config {} >>{} 2>&1",
                    collector_bin(),
                    config.display(),
                    log.display()
                ),
                log,
            }
        })
        .collect();
    Instances { list, _dir: dir }
}

/// Whether `pid` runs: it exists and is not a zombie (the script's children are reaped by
/// whoever adopted them, maybe late).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// Runs `scripts/rolling-restart.sh local` over every instance.
fn rolling_restart(instances: &Instances) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rolling-restart.sh");
    // Run directly, not through `bash`: the README tells users to run it that way, so a
    // missing executable bit must fail here.
    let mut cmd = Command::new(script);
    cmd.args(["--stop-timeout", "20", "--ready-timeout", "60", "local"]);
    for instance in &instances.list {
        cmd.arg(&instance.pidfile)
            .arg(&instance.url)
            .arg(&instance.command);
    }
    let output = cmd.output().expect("cannot run scripts/rolling-restart.sh");
    assert!(
        output.status.success(),
        "rolling-restart.sh failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn rolling_restarts_under_load_lose_nothing() {
    let nats = NatsServer::start();
    let influx = Influx::start();
    influx.create_database(NAMESPACE);
    let transfer = Transfer::new(nats.connect(), NAMESPACE);
    for m in MEASUREMENTS {
        transfer.set(m, "");
    }
    let instances = instances(&nats, &influx);

    // The first run finds nothing running and starts every instance.
    let first = rolling_restart(&instances);
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("not running; starting it"),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(instances.list.iter().all(Instance::ready));
    let first_pids: Vec<u32> = instances.list.iter().map(|i| i.pid().unwrap()).collect();

    // Steady publishing, round-robin over the measurements.
    let stop = Arc::new(AtomicBool::new(false));
    let n_published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let conn = nats.connect();
        let stop = stop.clone();
        let n_published = n_published.clone();
        thread::spawn(move || {
            let transfer = Transfer::new(conn, NAMESPACE);
            let started = Instant::now();
            let mut next = 0;
            while !(stop.load(Ordering::Relaxed) && started.elapsed() >= MIN_PUBLISHING) {
                let round: Vec<Sample> = (next..next + PER_ROUND).map(util::sample).collect();
                for (k, m) in MEASUREMENTS.iter().enumerate() {
                    let payloads: Vec<Vec<u8>> = round
                        .iter()
                        .filter(|s| s.index % MEASUREMENTS.len() == k)
                        .map(Sample::bytes)
                        .collect();
                    transfer.publish_many(m, &payloads);
                }
                next += PER_ROUND;
                n_published.store(next, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Who is down, every 100 ms, until the restarts are done.
    let watching = Arc::new(AtomicBool::new(true));
    let monitor = {
        let urls: Vec<String> = instances.list.iter().map(|i| i.url.clone()).collect();
        let watching = watching.clone();
        thread::spawn(move || {
            let mut seen: Vec<Vec<bool>> = Vec::new();
            while watching.load(Ordering::Relaxed) {
                seen.push(
                    urls.iter()
                        .map(|url| http_get(url, &[]).is_ok_and(|r| r.status == 200))
                        .collect(),
                );
                thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };

    assert!(wait_until(Duration::from_secs(10), || {
        n_published.load(Ordering::Relaxed) >= 300
    }));
    for _round in 0..2 {
        let output = rolling_restart(&instances);
        let text = String::from_utf8_lossy(&output.stderr);
        assert_eq!(text.matches(": stopping pid").count(), 3, "{text}");
        assert!(text.contains("all 3 restarted and ready"), "{text}");
    }
    watching.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let seen = monitor.join().expect("the monitor panicked");
    publisher.join().expect("the publisher panicked");
    let n = n_published.load(Ordering::Relaxed);

    // Every instance is a new process, and the old ones are gone.
    for (instance, old) in instances.list.iter().zip(&first_pids) {
        let pid = instance.pid().unwrap();
        assert_ne!(pid, *old);
        assert!(!alive(*old), "pid {old} still running after its restart");
    }

    // Never two down at once; each down at most once per round.
    assert!(
        seen.len() >= 10,
        "the monitor saw too little: {}",
        seen.len()
    );
    for (k, sample) in seen.iter().enumerate() {
        let down = sample.iter().filter(|up| !**up).count();
        assert!(
            down <= 1,
            "observation {k}: {sample:?} has {down} collectors down"
        );
    }
    for i in 0..instances.list.len() {
        let n_down_periods = seen
            .windows(2)
            .filter(|pair| pair[0][i] && !pair[1][i])
            .count()
            + usize::from(!seen[0][i]);
        // A restart takes seconds and is observed every ~150 ms: exactly once per round.
        assert_eq!(
            n_down_periods, 2,
            "collector {i} went down {n_down_periods} times in 2 rounds"
        );
        let n_down = seen.iter().filter(|sample| !sample[i]).count();
        eprintln!(
            "rolling: collector {i} seen down {n_down_periods} times, in {n_down} of {} observations",
            seen.len()
        );
    }

    // Everything published is stored exactly once, and the streams drain.
    let mut shares: Vec<Vec<Sample>> = vec![Vec::new(); MEASUREMENTS.len()];
    for sample in samples(n) {
        shares[sample.index % MEASUREMENTS.len()].push(sample);
    }
    let all_in = wait_until(Duration::from_secs(120), || {
        MEASUREMENTS.iter().zip(&shares).all(|(m, share)| {
            influx.count(NAMESPACE, m) == share.len() && transfer.stream_state(m).0 == 0
        })
    });
    let counts: Vec<(usize, usize, u64)> = MEASUREMENTS
        .iter()
        .zip(&shares)
        .map(|(m, share)| {
            (
                share.len(),
                influx.count(NAMESPACE, m),
                transfer.stream_state(m).0,
            )
        })
        .collect();
    assert!(
        all_in,
        "(published, stored, still in the stream) per measurement: {counts:?}"
    );
    for (m, share) in MEASUREMENTS.iter().zip(&shares) {
        influx
            .check_samples(NAMESPACE, m, share)
            .unwrap_or_else(|problems| panic!("{m}: {problems}"));
    }
    eprintln!("rolling: {n} records published during two rolling restarts, all stored once");

    // A clean stop of the last generation.
    for instance in &instances.list {
        send_signal(instance.pid().unwrap(), "TERM");
    }
    for instance in &instances.list {
        let pid = instance.pid().unwrap();
        let gone = wait_until(Duration::from_secs(20), || !alive(pid));
        assert!(gone, "pid {pid} still running 20 s after SIGTERM");
    }
}
