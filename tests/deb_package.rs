//! The Debian package, built by `scripts/package-deb.sh` and installed for real with `dpkg`
//! into a throw-away root (its own admin directory; maintainer scripts run with `DPKG_ROOT`,
//! so they leave the host alone): its files, modes and conffiles; its unit passes
//! `systemd-analyze verify`; the installed binary collects from a loopback nats-server into
//! a loopback influxd; an upgrade keeps an edited configuration; removing keeps the
//! configuration and purging deletes `/etc/collector`; lintian finds nothing but what the
//! package's override file justifies.
//!
//! The static build is the slow part (minutes the first time, seconds once built), done by
//! the script the package is built with. A build that cannot happen fails this test with
//! the script's message; it is never skipped.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use util::{free_port, http_get, sample_payloads, samples, wait_until, Collector, TempDir};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A dpkg with its own root and admin directory, run as the tests' root user.
struct Dpkg {
    root: PathBuf,
    log: PathBuf,
}

impl Dpkg {
    fn new(dir: &TempDir) -> Dpkg {
        let root = dir.join("root");
        let admin = root.join("var/lib/dpkg");
        for sub in ["info", "updates", "triggers"] {
            fs::create_dir_all(admin.join(sub)).unwrap();
        }
        fs::write(admin.join("status"), "").unwrap();
        fs::write(admin.join("available"), "").unwrap();
        Dpkg {
            root,
            log: dir.join("dpkg.log"),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = run(Command::new("dpkg")
            .arg(format!("--root={}", self.root.display()))
            .arg(format!("--log={}", self.log.display()))
            // Maintainer scripts run on the host with DPKG_ROOT set, not chrooted into a
            // root that holds no shell; the package's scripts honour DPKG_ROOT.
            .arg("--force-script-chrootless")
            // Never ask about a conffile: keep the administrator's version.
            .args(["--force-confdef", "--force-confold"])
            .args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn mode(&self, path: &str) -> u32 {
        fs::metadata(self.path(path))
            .unwrap_or_else(|e| panic!("{path} is not installed: {e}"))
            .permissions()
            .mode()
            & 0o7777
    }

    fn status(&self) -> String {
        fs::read_to_string(self.root.join("var/lib/dpkg/status")).unwrap()
    }
}

fn build_package(out: &Path) -> PathBuf {
    let output = run(Command::new(Path::new(REPO).join("scripts/package-deb.sh"))
        .arg("--out")
        .arg(out));
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(path.is_file(), "no package at {path:?}");
    path
}

#[test]
fn the_debian_package_installs_runs_upgrades_and_purges() {
    let dir = TempDir::new("deb");
    let deb = build_package(&dir.join("out"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("collector_{version}_amd64.deb")
    );

    // Lintian: nothing but what the package's overrides justify (each with its reason).
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("lintian is missing: run scripts/install-deps.sh");
    let report = String::from_utf8_lossy(&lintian.stdout);
    assert!(
        lintian.status.success() && !report.lines().any(|l| l.starts_with(['E', 'W'])),
        "lintian:\n{report}\n{}",
        String::from_utf8_lossy(&lintian.stderr)
    );

    let dpkg = Dpkg::new(&dir);
    dpkg.run(&["--install", deb.to_str().unwrap()]);
    assert!(dpkg
        .status()
        .contains("Package: collector\nStatus: install ok installed"));

    // Files and modes.
    for (path, mode) in [
        ("/usr/bin/collector", 0o755),
        ("/lib/systemd/system/collector.service", 0o644),
        ("/etc/collector/config.yml", 0o640),
        ("/etc/collector/env", 0o600),
        ("/usr/share/doc/collector/README.md", 0o644),
        ("/usr/share/doc/collector/copyright", 0o644),
        ("/usr/share/doc/collector/changelog.gz", 0o644),
    ] {
        assert_eq!(dpkg.mode(path), mode, "mode of {path}");
        let meta = fs::metadata(dpkg.path(path)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "owner of {path}");
    }
    assert_eq!(
        fs::read_to_string(dpkg.path("/etc/collector/config.yml")).unwrap(),
        fs::read_to_string(Path::new(REPO).join("config/config.example.yml")).unwrap()
    );
    assert_eq!(fs::read(dpkg.path("/etc/collector/env")).unwrap(), b"");
    let copyright = fs::read_to_string(dpkg.path("/usr/share/doc/collector/copyright")).unwrap();
    assert!(copyright.contains("License: BSD-3-Clause"), "{copyright}");
    let status = dpkg.status();
    assert!(
        status.contains("Conffiles:\n /etc/collector/config.yml ")
            && status.contains("\n /etc/collector/env "),
        "conffiles not registered:\n{status}"
    );

    // The unit: the installed binary, the configuration as a credential, the hardening.
    let unit = fs::read_to_string(dpkg.path("/lib/systemd/system/collector.service")).unwrap();
    for line in [
        "ExecStart=/usr/bin/collector --config %d/config.yml",
        "LoadCredential=config.yml:/etc/collector/config.yml",
        "EnvironmentFile=-/etc/collector/env",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    // systemd-analyze verify wants ExecStart's program to exist: the copy names the
    // binary inside the throw-away root.
    let installed_bin = dpkg.path("/usr/bin/collector");
    let verified = dir.join("collector.service");
    fs::write(
        &verified,
        unit.replace(
            "ExecStart=/usr/bin/collector ",
            &format!("ExecStart={} ", installed_bin.display()),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&verified)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze is missing");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    // The installed binary collects.
    let (nats, influx, transfer) = util::start_servers("deb");
    transfer.set("access", "");
    let port = free_port();
    let collector = Collector::start_binary(
        &installed_bin,
        &util::config(&nats.url(), &influx.url())
            .namespace("deb")
            .http_listen(port)
            .extra("poll_interval: 500ms\n")
            .yaml(),
        &[],
        &[],
    );
    transfer.publish_many("access", &sample_payloads(200));
    assert!(
        wait_until(Duration::from_secs(60), || influx.count("deb", "access")
            == 200),
        "the installed binary did not write the records:\n{}",
        collector.log()
    );
    influx
        .check_samples("deb", "access", &samples(200))
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = http_get(&format!("http://127.0.0.1:{port}/readyz"), &[]);
    assert_eq!(ready.map(|r| r.status), Ok(200));
    drop(collector);

    // Upgrade (a reinstall goes through the same conffile handling): an edited
    // configuration is kept, an untouched one stays the package's.
    let config = dpkg.path("/etc/collector/config.yml");
    let edited = fs::read_to_string(&config)
        .unwrap()
        .replace("namespace: beta", "namespace: edited-by-the-administrator");
    fs::write(&config, &edited).unwrap();
    dpkg.run(&["--install", deb.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(dpkg.mode("/etc/collector/config.yml"), 0o640);
    assert_eq!(dpkg.mode("/etc/collector/env"), 0o600);

    // Remove: the binary and unit go, the configuration stays.
    fs::write(dpkg.path("/etc/collector/influx-token"), "added by hand").unwrap();
    dpkg.run(&["--remove", "collector"]);
    assert!(!installed_bin.exists());
    assert!(!dpkg.path("/lib/systemd/system/collector.service").exists());
    assert_eq!(fs::read_to_string(&config).unwrap(), edited);
    assert!(dpkg
        .status()
        .contains("Package: collector\nStatus: deinstall ok config-files"));

    // Purge: /etc/collector is gone, with what was added by hand.
    dpkg.run(&["--purge", "collector"]);
    assert!(
        !dpkg.path("/etc/collector").exists(),
        "/etc/collector survived the purge"
    );
    assert!(!dpkg.status().contains("Package: collector\n"));
}
