//! The supply-chain check (`scripts/audit.sh`: cargo audit of Cargo.lock against the RustSec
//! advisory database) passes on this Cargo.lock only because of the accepted list in
//! `.cargo/audit.toml`, and cannot pass silently: with the list emptied it fails naming every
//! vulnerability, and with any one entry removed it fails naming that entry, so a stale entry
//! (one that no longer matches anything) is noticed too. Every accepted advisory is explained
//! in SECURITY.md, and the code its reasons rest on (no CRL, no custom TLS config for the
//! `nats` crate, verification never turned off) is checked to be as they say.
//!
//! These tests need `cargo audit` (scripts/install-deps.sh installs it, as CI does): without
//! it they fail, saying so, rather than pass having checked nothing.

mod util;

use std::fs;
use std::path::Path;
use std::process::Command;

use util::TempDir;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The rustls-webpki 0.102.8 vulnerabilities that come in through the `nats` 0.26 client.
const VULNERABILITIES: [&str; 4] = [
    "RUSTSEC-2026-0049",
    "RUSTSEC-2026-0104",
    "RUSTSEC-2026-0098",
    "RUSTSEC-2026-0099",
];

/// What one run of the check said: its exit code and its output, stdout then stderr.
struct Audit {
    code: Option<i32>,
    output: String,
}

/// Runs `scripts/audit.sh`, on this checkout or, with `dir`, on the Cargo.lock and
/// `.cargo/audit.toml` in `dir`.
fn audit(dir: Option<&Path>) -> Audit {
    let mut command = Command::new(Path::new(REPO).join("scripts/audit.sh"));
    if let Some(dir) = dir {
        command.arg("--in").arg(dir);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/audit.sh: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The script exits 2 for its own failures, a missing cargo-audit first of all: that is
    // never the failure these tests expect.
    assert_ne!(out.status.code(), Some(2), "scripts/audit.sh:\n{output}");
    // 3: no database is reachable here (no local copy, no access to its git host). Nothing
    // can be checked then; say so loudly rather than fail every other test of the run.
    if out.status.code() == Some(3) {
        eprintln!(
            "SKIPPED: no advisory database reachable, the supply-chain check cannot run:\n{output}"
        );
    }
    Audit {
        code: out.status.code(),
        output,
    }
}

impl Audit {
    /// Whether the check could not run for want of a reachable database (exit 3).
    fn unreachable(&self) -> bool {
        self.code == Some(3)
    }
}

fn accepted_list() -> String {
    fs::read_to_string(Path::new(REPO).join(".cargo/audit.toml")).unwrap()
}

/// The advisory ids the accepted list holds, one per line as `"RUSTSEC-…",`.
fn accepted_ids(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|line| line.trim().strip_prefix('"'))
        .filter_map(|rest| rest.strip_suffix("\","))
        .filter(|id| id.starts_with("RUSTSEC-"))
        .map(str::to_string)
        .collect()
}

/// A directory holding this Cargo.lock and `list` as its `.cargo/audit.toml`.
fn checkout_with(list: &str, kind: &str) -> TempDir {
    let dir = TempDir::new(kind);
    fs::copy(Path::new(REPO).join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    fs::create_dir_all(dir.join(".cargo")).unwrap();
    fs::write(dir.join(".cargo/audit.toml"), list).unwrap();
    dir
}

/// The accepted list with the lines holding any of `ids` removed.
fn without(list: &str, ids: &[&str]) -> String {
    let kept: Vec<&str> = list
        .lines()
        .filter(|line| !ids.iter().any(|id| line.contains(&format!("\"{id}\""))))
        .collect();
    kept.join("\n") + "\n"
}

#[test]
fn the_check_passes_with_the_accepted_advisories() {
    let run = audit(None);
    if run.unreachable() {
        return;
    }
    assert_eq!(run.code, Some(0), "{}", run.output);
    let ids = accepted_ids(&accepted_list());
    assert!(
        VULNERABILITIES.iter().all(|id| ids.iter().any(|i| i == id)),
        "the four nats-borne vulnerabilities are accepted: {ids:?}"
    );
}

#[test]
fn the_check_fails_on_every_advisory_not_accepted() {
    let list = accepted_list();
    let ids = accepted_ids(&list);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let dir = checkout_with(&without(&list, &ids), "audit-none-accepted");
    let run = audit(Some(dir.path()));
    if run.unreachable() {
        return;
    }
    assert_eq!(run.code, Some(1), "{}", run.output);
    for id in ids {
        assert!(
            run.output.contains(id),
            "{id} is not named:\n{}",
            run.output
        );
    }
    assert!(
        run.output.contains("rustls-webpki"),
        "the crate is named:\n{}",
        run.output
    );
}

#[test]
fn each_accepted_advisory_is_still_needed_and_enforced() {
    // Unmaintained crates fail the check like vulnerabilities (`deny = ["warnings"]`), and
    // an entry whose crate left Cargo.lock fails here until it is removed from the list.
    let list = accepted_list();
    let ids = accepted_ids(&list);
    assert!(ids.len() >= 4, "too few accepted ids parsed: {ids:?}");
    for id in &ids {
        let dir = checkout_with(&without(&list, &[id]), "audit-one-removed");
        let run = audit(Some(dir.path()));
        if run.unreachable() {
            return;
        }
        assert_eq!(run.code, Some(1), "without {id}:\n{}", run.output);
        assert!(run.output.contains(id.as_str()), "{id}:\n{}", run.output);
        for other in ids.iter().filter(|other| *other != id) {
            assert!(
                !run.output.contains(other.as_str()),
                "{other} is accepted but reported:\n{}",
                run.output
            );
        }
    }
}

#[test]
fn every_accepted_advisory_is_explained_in_security_md() {
    let security = fs::read_to_string(Path::new(REPO).join("SECURITY.md")).unwrap();
    for id in accepted_ids(&accepted_list()) {
        assert!(security.contains(&id), "SECURITY.md does not explain {id}");
    }
}

#[test]
fn the_reasons_for_accepting_still_hold_in_our_code() {
    // The CRL advisories are accepted because no CRL reaches a verifier: the nats crate builds
    // its rustls config itself, without revocation, unless it is handed one
    // (`Options::tls_client_config`); and "TLS names are always checked" (SECURITY.md) holds
    // while nothing turns verification off. Code doing either must revisit .cargo/audit.toml.
    let forbidden = [
        "tls_client_config",
        "revocation",
        "crl",
        "disable_verification",
        "dangerous",
    ];
    let mut n_files = 0;
    for entry in fs::read_dir(Path::new(REPO).join("src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("rs") {
            continue;
        }
        n_files += 1;
        let text = fs::read_to_string(&path).unwrap().to_lowercase();
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} mentions `{word}`: check the accepted advisories in .cargo/audit.toml and SECURITY.md still hold",
                path.display()
            );
        }
    }
    assert!(n_files > 10, "src/ read: {n_files} files");
}
