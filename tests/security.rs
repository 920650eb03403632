//! Security on real servers: every NATS authentication method (nkey, a creds file made from
//! hand-built operator/account/user JWTs, token, username/password), TLS and mutual TLS with
//! certificates the tests make, InfluxDB 1.6 with authentication and over HTTPS, secrets from
//! the environment and from files, and hostile configuration. The whole output of every run
//! (service, admin commands, failures included) is searched for the secrets it was given.

mod util;
mod v2_double;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;
use serde_json::{json, Value};
use util::{
    run_command, wait_until, Collector, Influx, Issued, NatsServer, Run, TempDir, TestCa, Transfer,
};
use v2_double::InfluxV2Double;

const TIMEOUT: Duration = Duration::from_secs(60);
/// Records published in each scenario that must arrive.
const N_RECORDS: usize = 40;

/// Runs `collector ARGS... --config <file>` with `envs` added to its environment and `stdin`
/// as its input. The config file is written `mode` (0600 unless a test wants otherwise).
fn run_mode(yaml: &str, mode: u32, args: &[&str], envs: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_command(yaml, mode, args, envs, stdin, TIMEOUT)
}

fn run(yaml: &str, args: &[&str], envs: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_mode(yaml, 0o600, args, envs, stdin)
}

/// Asserts that none of `secrets` (nor the HTTP basic-auth form of a user:password pair)
/// appears in `text`.
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} prints the secret {secret:?}:\n{text}"
        );
    }
}

/// The basic-auth header value of `user:password`, which must never be printed either.
fn basic(user: &str, password: &str) -> String {
    collector::base64::encode(format!("{user}:{password}").as_bytes())
}

/// `N_RECORDS` records in the Transfer format, one JSON object per line.
fn records() -> String {
    (0..N_RECORDS)
        .map(|i| {
            format!(
                "{{\"tags\":{{\"host\":\"h{}\"}},\"fields\":{{\"n\":{i}}},\"time\":\"2024-05-01T00:00:{:02}.000000001Z\"}}\n",
                i % 3,
                i
            )
        })
        .collect()
}

/// A configuration for namespace `beta`: `nats` lines go under `nats:` (after `hosts`),
/// `influx` lines under `influx:` (after `url` and `api: v1`).
fn yaml(hosts: &str, nats: &str, influx_url: &str, influx: &str) -> String {
    util::config(hosts, influx_url)
        .nats(nats)
        .influx(influx)
        .yaml()
}

/// Runs the service with `config_yaml`, expects exit 1 with one line on stderr, and returns
/// that line.
fn refused_in_one_line(config_yaml: &str) -> String {
    let service = run(config_yaml, &[], &[], b"").expect(1);
    let stderr = service.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.to_string()
}

/// Sets up measurement `access` and publishes the records with the admin commands (so they
/// authenticate as the service does), then runs the service until every record is in
/// InfluxDB and stops it with SIGTERM. Every output is checked for `secrets`.
fn collects(yaml: &str, envs: &[(&str, &str)], influx: &Influx, secrets: &[&str]) {
    let set = run(yaml, &["streams", "set", "access"], envs, b"").expect(0);
    let publish = run(yaml, &["publish", "access"], envs, records().as_bytes()).expect(0);
    assert!(
        publish
            .stdout
            .contains(&format!("published {N_RECORDS} record(s)")),
        "{}",
        publish.all()
    );
    let mut collector = Collector::start_with(yaml, &[], envs);
    assert!(
        wait_until(TIMEOUT, || influx.count("beta", "access") == N_RECORDS),
        "{} of {N_RECORDS} records arrived; collector log:\n{}",
        influx.count("beta", "access"),
        collector.log()
    );
    collector.stop_cleanly(Duration::from_secs(20));
    assert_no_secret("streams set", &set.all(), secrets);
    assert_no_secret("publish", &publish.all(), secrets);
    assert_no_secret("the service", &collector.log(), secrets);
    let check = run(yaml, &["check"], envs, b"");
    assert_no_secret("check", &check.all(), secrets);
    assert!(
        check.stdout.contains("✔ nats: connected to"),
        "{}",
        check.all()
    );
}

/// Runs the service, which must refuse to start: exit `code`, one line on stderr holding
/// every one of `needles` (case-insensitive), no secret, no panic. `check` must fail too,
/// without a secret.
fn refused(yaml: &str, envs: &[(&str, &str)], code: i32, needles: &[&str], secrets: &[&str]) {
    let service = run(yaml, &[], envs, b"").expect(code);
    let stderr = service.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(
            stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{stderr:?} should hold {needle:?}"
        );
    }
    assert!(!service.all().contains("panicked"), "{}", service.all());
    assert_no_secret("the refused service", &service.all(), secrets);
    let check = run(yaml, &["check"], envs, b"");
    assert_ne!(check.status.code(), Some(0), "{}", check.all());
    assert!(!check.all().contains("panicked"), "{}", check.all());
    assert_no_secret("check", &check.all(), secrets);
}

fn influx_with_beta() -> Influx {
    let influx = Influx::start();
    influx.create_database("beta");
    influx
}

/// A file in `dir` holding `text` (mode 0600).
fn secret_file(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).expect("cannot write a secret file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

// --- NATS authentication --------------------------------------------------------------------

#[test]
fn nats_nkey_from_the_file_from_a_file_key_and_from_the_environment() {
    let user = KeyPair::new_user();
    let seed = user.seed().unwrap();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users: [ {{ nkey: {} }} ] }}",
        user.public_key()
    ));
    let influx = influx_with_beta();
    let dir = TempDir::new("nkey");
    let secrets = [seed.as_str()];

    // Inline, as in the seed deployment document.
    collects(
        &yaml(&nats.url(), &format!("  nkey: {seed}\n"), &influx.url(), ""),
        &[],
        &influx,
        &secrets,
    );
    // From a file named by nats.nkey_file, with the trailing newline of `echo`.
    let file = secret_file(&dir, "nkey", &format!("{seed}\n"));
    let from_file = yaml(
        &nats.url(),
        &format!("  nkey_file: {file}\n"),
        &influx.url(),
        "",
    );
    let check = run(&from_file, &["check"], &[], b"").expect(0);
    assert!(
        check.stdout.contains("(nkey)") && check.stdout.contains("nats.nkey (from nats.nkey_file)"),
        "{}",
        check.stdout
    );
    // From the environment, overriding a wrong seed in the file.
    let wrong = KeyPair::new_user().seed().unwrap();
    let overridden = yaml(
        &nats.url(),
        &format!("  nkey: {wrong}\n"),
        &influx.url(),
        "",
    );
    let check = run(
        &overridden,
        &["check"],
        &[("COLLECTOR_NATS_NKEY", &seed)],
        b"",
    )
    .expect(0);
    assert_no_secret("check", &check.all(), &[&seed, &wrong]);

    // A seed the server does not know: one line, exit 1.
    refused(
        &overridden,
        &[],
        1,
        &["authorization violation", "127.0.0.1", "nats.nkey"],
        &[&seed, &wrong],
    );
    // Not a seed at all: a configuration error naming where it came from.
    refused(
        &from_file,
        &[("COLLECTOR_NATS_NKEY", "SUnot-a-seed-at-all")],
        2,
        &["COLLECTOR_NATS_NKEY", "nkey user seed"],
        &["SUnot-a-seed-at-all", &seed],
    );
}

#[test]
fn nats_token_from_the_environment_a_file_and_systemd_credentials() {
    let token = "tok-3f9a7c1e-secret";
    let nats = NatsServer::start_with_config(&format!("authorization {{ token: \"{token}\" }}"));
    let influx = influx_with_beta();
    let dir = TempDir::new("token");
    let secrets = [token];

    let no_secret = yaml(&nats.url(), "", &influx.url(), "");
    collects(
        &no_secret,
        &[("COLLECTOR_NATS_TOKEN", token)],
        &influx,
        &secrets,
    );

    let file = secret_file(&dir, "token", &format!("{token}\r\n"));
    let check = run(
        &no_secret,
        &["check"],
        &[("COLLECTOR_NATS_TOKEN_FILE", &file)],
        b"",
    );
    let check = check.expect(0);
    assert!(check.stdout.contains("(token)"), "{}", check.stdout);
    assert_no_secret("check", &check.all(), &secrets);

    // systemd's LoadCredential=nats-token:... puts it in $CREDENTIALS_DIRECTORY.
    let credentials = TempDir::new("credentials");
    secret_file(&credentials, "nats-token", token);
    let credentials_dir = credentials.path().display().to_string();
    let check = run(
        &no_secret,
        &["check"],
        &[("CREDENTIALS_DIRECTORY", &credentials_dir)],
        b"",
    )
    .expect(0);
    assert!(
        check
            .stdout
            .contains("nats.token (from $CREDENTIALS_DIRECTORY/nats-token)"),
        "{}",
        check.stdout
    );

    // A wrong token; an empty token file; a missing one.
    refused(
        &no_secret,
        &[("COLLECTOR_NATS_TOKEN", "tok-wrong-0000")],
        1,
        &["authorization violation", "refused the token"],
        &[token, "tok-wrong-0000"],
    );
    let empty = secret_file(&dir, "empty", "\n");
    refused(
        &yaml(
            &nats.url(),
            &format!("  token_file: {empty}\n"),
            &influx.url(),
            "",
        ),
        &[],
        2,
        &["nats.token_file", "is empty"],
        &secrets,
    );
    refused(
        &no_secret,
        &[("COLLECTOR_NATS_TOKEN_FILE", "/nonexistent/token")],
        2,
        &[
            "COLLECTOR_NATS_TOKEN_FILE",
            "cannot read /nonexistent/token",
        ],
        &secrets,
    );
}

#[test]
fn nats_username_and_password_from_a_file_key_and_the_environment() {
    let password = "pw-8c2d5e-secret";
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users: [ {{ user: collector, password: \"{password}\" }} ] }}"
    ));
    let influx = influx_with_beta();
    let dir = TempDir::new("userpass");
    let file = secret_file(&dir, "password", &format!("{password}\n"));
    let secrets = [password];

    collects(
        &yaml(
            &nats.url(),
            &format!("  username: collector\n  password_file: {file}\n"),
            &influx.url(),
            "",
        ),
        &[],
        &influx,
        &secrets,
    );
    let wrong = yaml(
        &nats.url(),
        "  username: collector\n  password: pw-wrong-1111\n",
        &influx.url(),
        "",
    );
    refused(
        &wrong,
        &[],
        1,
        &["authorization violation", "user `collector`"],
        &[password, "pw-wrong-1111"],
    );
    let check = run(
        &wrong,
        &["check"],
        &[("COLLECTOR_NATS_PASSWORD", password)],
        b"",
    );
    let check = check.expect(0);
    assert!(
        check.stdout.contains("(username and password)"),
        "{}",
        check.stdout
    );
    assert_no_secret("check", &check.all(), &[password, "pw-wrong-1111"]);
    // Two methods at once are refused, naming both.
    refused(
        &wrong,
        &[("COLLECTOR_NATS_TOKEN", "tok-x")],
        2,
        &[
            "`nats`",
            "only one",
            "COLLECTOR_NATS_TOKEN and nats.username",
        ],
        &[password, "pw-wrong-1111", "tok-x"],
    );
}

/// A JWT as nats-server reads it: `header.claims.signature`, each base64url without
/// padding, signed with the issuer's nkey.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": format!("COLLECTORTEST{n}X{now}"),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = collector::base64::encode_url_safe(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = collector::base64::encode_url_safe(claims.to_string().as_bytes());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!(
        "{signed}.{}",
        collector::base64::encode_url_safe(&signature)
    )
}

/// An account's JWT; with `jetstream`, unlimited JetStream (never on the system account:
/// nats-server refuses to start then).
fn account_jwt(operator: &KeyPair, account: &KeyPair, name: &str, jetstream: bool) -> String {
    let storage = if jetstream { -1 } else { 0 };
    jwt(
        operator,
        &account.public_key(),
        name,
        json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": storage, "disk_storage": storage, "streams": storage,
                "consumer": storage
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2
        }),
    )
}

/// A `.creds` file's text: the user JWT and the user's seed, as `nsc` writes them.
fn creds(account: &KeyPair, user: &KeyPair) -> String {
    let user_jwt = jwt(
        account,
        &user.public_key(),
        "collector",
        json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
               "type": "user", "version": 2}),
    );
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

#[test]
fn nats_creds_file_in_operator_mode() {
    // The decentralised JWT setup `nsc` makes, built by hand: an operator signs the
    // accounts, an account signs the user, the server trusts the operator and has the
    // accounts preloaded (resolver MEMORY).
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let account = KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        json!({"type": "operator", "version": 2}),
    );
    let nats = NatsServer::start_with_config(&format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {acc}: \"{acc_jwt}\"\n}}\n",
        sys = system.public_key(),
        sys_jwt = account_jwt(&operator, &system, "SYS", false),
        acc = account.public_key(),
        acc_jwt = account_jwt(&operator, &account, "APP", true),
    ));
    let influx = influx_with_beta();
    let dir = TempDir::new("creds");
    let user = KeyPair::new_user();
    let seed = user.seed().unwrap();
    let file = secret_file(&dir, "user.creds", &creds(&account, &user));
    collects(
        &yaml(
            &nats.url(),
            &format!("  creds: {file}\n"),
            &influx.url(),
            "",
        ),
        &[],
        &influx,
        &[&seed],
    );

    // A user of an account the server does not know.
    let stranger = KeyPair::new_user();
    let stranger_seed = stranger.seed().unwrap();
    let unknown = secret_file(
        &dir,
        "stranger.creds",
        &creds(&KeyPair::new_account(), &stranger),
    );
    refused(
        &yaml(
            &nats.url(),
            &format!("  creds: {unknown}\n"),
            &influx.url(),
            "",
        ),
        &[],
        1,
        &["authorization violation", "nats.creds"],
        &[&seed, &stranger_seed],
    );
    // Not a creds file.
    let junk = secret_file(&dir, "junk.creds", "hello\n");
    refused(
        &yaml(
            &nats.url(),
            &format!("  creds: {junk}\n"),
            &influx.url(),
            "",
        ),
        &[],
        2,
        &["nats.creds", "not a NATS credentials file"],
        &[&seed],
    );
}

// --- NATS TLS -----------------------------------------------------------------------------

/// A nats-server with TLS on its client port; with `client_ca`, client certificates signed
/// by it are required (mutual TLS).
fn nats_with_tls(server: &Issued, client_ca: Option<&TestCa>) -> NatsServer {
    let verify = match client_ca {
        Some(ca) => format!("  ca_file: \"{}\"\n  verify: true\n", ca.cert().display()),
        None => String::new(),
    };
    NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{verify}  timeout: 5\n}}\n",
        server.cert.display(),
        server.key.display()
    ))
}

fn tls_host(nats: &NatsServer) -> String {
    format!("tls://127.0.0.1:{}", nats.port())
}

const LOOPBACK: &[&str] = &["IP:127.0.0.1", "DNS:localhost"];

#[test]
fn nats_over_tls_with_a_private_ca() {
    let ca = TestCa::new("nats");
    let nats = nats_with_tls(&ca.issue("nats", LOOPBACK), None);
    let influx = influx_with_beta();
    let with_ca = format!("  tls:\n    ca: {}\n", ca.cert().display());

    collects(
        &yaml(&tls_host(&nats), &with_ca, &influx.url(), ""),
        &[],
        &influx,
        &[],
    );
    // A nats:// host with a tls block: TLS is required all the same.
    let check = run(
        &yaml(&nats.url(), &with_ca, &influx.url(), ""),
        &["check"],
        &[],
        b"",
    )
    .expect(0);
    assert!(check.stdout.contains(", TLS)"), "{}", check.stdout);

    // Another CA, or the system's: the server is not trusted.
    let other = TestCa::new("other");
    let untrusted = format!("  tls:\n    ca: {}\n", other.cert().display());
    refused(
        &yaml(&tls_host(&nats), &untrusted, &influx.url(), ""),
        &[],
        1,
        &["unknown CA", "nats.tls.ca", &tls_host(&nats)],
        &[],
    );
    refused(
        &yaml(&tls_host(&nats), "", &influx.url(), ""),
        &[],
        1,
        &["unknown CA"],
        &[],
    );
    // A CA file that is no certificate is a configuration error.
    let dir = TempDir::new("tls-files");
    let junk = secret_file(&dir, "junk.pem", "not a certificate\n");
    refused(
        &yaml(
            &tls_host(&nats),
            &format!("  tls:\n    ca: {junk}\n"),
            &influx.url(),
            "",
        ),
        &[],
        2,
        &["nats.tls.ca", "no PEM certificate"],
        &[],
    );
}

#[test]
fn nats_tls_refuses_a_wrong_name_and_an_expired_certificate() {
    let ca = TestCa::new("nats-names");
    let with_ca = format!("  tls:\n    ca: {}\n", ca.cert().display());
    let influx_url = "http://127.0.0.1:9";

    let misnamed = nats_with_tls(&ca.issue("elsewhere", &["DNS:nats.elsewhere.test"]), None);
    refused(
        &yaml(&tls_host(&misnamed), &with_ca, influx_url, ""),
        &[],
        1,
        &["wrong name", &tls_host(&misnamed)],
        &[],
    );
    let expired = nats_with_tls(&ca.issue_expired("expired", LOOPBACK), None);
    refused(
        &yaml(&tls_host(&expired), &with_ca, influx_url, ""),
        &[],
        1,
        &["expired", &tls_host(&expired)],
        &[],
    );
}

#[test]
fn nats_mutual_tls() {
    let ca = TestCa::new("mtls");
    let nats = nats_with_tls(&ca.issue("nats", LOOPBACK), Some(&ca));
    let influx = influx_with_beta();
    let client = ca.issue("collector", &["DNS:collector"]);
    let block = format!(
        "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
        ca.cert().display(),
        client.cert.display(),
        client.key.display()
    );
    collects(
        &yaml(&tls_host(&nats), &block, &influx.url(), ""),
        &[],
        &influx,
        &[],
    );
    // No client certificate, or one of another CA: refused by the server.
    let no_cert = format!("  tls:\n    ca: {}\n", ca.cert().display());
    let stderr = refused_in_one_line(&yaml(&tls_host(&nats), &no_cert, &influx.url(), ""));
    assert!(
        stderr.contains("TLS: ") && stderr.contains("nats.tls.cert"),
        "{stderr}"
    );
    let other_ca = TestCa::new("mtls-other");
    let other = other_ca.issue("stranger", &["DNS:stranger"]);
    let foreign = format!(
        "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
        ca.cert().display(),
        other.cert.display(),
        other.key.display()
    );
    let stderr = refused_in_one_line(&yaml(&tls_host(&nats), &foreign, &influx.url(), ""));
    assert!(stderr.contains("TLS: "), "{stderr}");
    // A certificate without its key is a configuration error.
    refused(
        &yaml(
            &tls_host(&nats),
            &format!(
                "  tls:\n    ca: {}\n    cert: {}\n",
                ca.cert().display(),
                client.cert.display()
            ),
            &influx.url(),
            "",
        ),
        &[],
        2,
        &["nats.tls.key", "required"],
        &[],
    );
}

// --- InfluxDB ------------------------------------------------------------------------------

/// Messages in stream `name`, read through the harness's own connection.
fn stream_messages(transfer: &Transfer, name: &str) -> u64 {
    transfer.stream_info(name)["state"]["messages"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn influxdb_v1_authentication_holds_records_until_the_credentials_are_fixed() {
    let password = "influx-pw-5b7e-secret";
    let nats = NatsServer::start();
    let influx = Influx::start_with_auth("admin", password);
    influx.create_database("beta");
    let transfer = Transfer::new(nats.connect(), "beta");
    transfer.set("access", "");
    let dir = TempDir::new("influx-auth");
    let wrong_file = secret_file(&dir, "wrong", "influx-pw-wrong\n");
    // Trace level and JSON lines: the noisiest logging must still leak nothing.
    let wrong = yaml(
        &nats.url(),
        "",
        &influx.url(),
        &format!("  username: admin\n  password_file: {wrong_file}\nlog: {{level: trace, format: json}}\n"),
    );
    let secrets = [
        password,
        "influx-pw-wrong",
        &basic("admin", password),
        &basic("admin", "influx-pw-wrong"),
    ];
    let payloads: Vec<String> = records().lines().map(String::from).collect();
    transfer.publish_many("access", &payloads);

    let mut collector = Collector::start(&wrong);
    let fix = "check influx.token (v2) or influx.username/password (v1)";
    assert!(
        collector.wait_for_log(fix, TIMEOUT),
        "no error line saying what to fix:\n{}",
        collector.log()
    );
    // Held: nothing written, acknowledged or dead-lettered.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(influx.count("beta", "access"), 0);
    assert_eq!(transfer.stream_state("access").0 as usize, N_RECORDS);
    assert_eq!(stream_messages(&transfer, "beta:dlq"), 0);
    collector.terminate();
    collector.wait_timeout(Duration::from_secs(30));
    assert_no_secret(
        "the service with a wrong password",
        &collector.log(),
        &secrets,
    );
    // The HTTP crates dump raw requests (the Authorization header too) at trace level, cut
    // in rows a search for the secret would miss: none of their lines may come out.
    for line in collector.log().lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let target = entry["target"].as_str().unwrap_or_default();
        assert!(
            !target.starts_with("ureq") && !target.starts_with("rustls"),
            "{line}"
        );
    }
    let check = run(&wrong, &["check"], &[], b"").expect(1);
    assert!(
        check
            .stdout
            .contains("fix: check influx.username and influx.password"),
        "{}",
        check.stdout
    );
    assert_no_secret("check", &check.all(), &secrets);

    // Fixed (from the environment this time, which overrides the file) and restarted: every
    // record is written.
    let mut collector =
        Collector::start_with(&wrong, &[], &[("COLLECTOR_INFLUX_PASSWORD", password)]);
    assert!(
        wait_until(TIMEOUT, || influx.count("beta", "access") == N_RECORDS
            && transfer.stream_state("access").0 == 0),
        "{} records written; log:\n{}",
        influx.count("beta", "access"),
        collector.log()
    );
    assert_eq!(stream_messages(&transfer, "beta:dlq"), 0);
    collector.terminate();
    collector.wait_timeout(Duration::from_secs(30));
    assert_no_secret("the service", &collector.log(), &secrets);
}

#[test]
fn influxdb_v2_token_from_a_file_and_a_wrong_one_from_the_environment() {
    // The v2 request format with a token, against the InfluxDB v2 error double (no real
    // InfluxDB 2.x installs here): it answers 401 to any other token.
    let token = "v2-token-71c0-secret";
    let nats = NatsServer::start();
    let double = InfluxV2Double::start(token, "beta");
    let transfer = Transfer::new(nats.connect(), "beta");
    transfer.set("access", "");
    let dir = TempDir::new("v2-token");
    let file = secret_file(&dir, "token", &format!("{token}\n"));
    let config = util::config(&nats.url(), &double.url())
        .without_api()
        .influx(&format!("  org: acme\n  token_file: {file}\n"))
        .yaml();
    let payloads: Vec<String> = records().lines().map(String::from).collect();
    transfer.publish_many("access", &payloads);
    let secrets = [token, "v2-token-wrong"];

    // A wrong token from the environment wins over the file: 401, held, the fix named.
    let mut collector = Collector::start_with(
        &config,
        &[],
        &[("COLLECTOR_INFLUX_TOKEN", "v2-token-wrong")],
    );
    assert!(
        collector.wait_for_log("check influx.token", TIMEOUT),
        "{}",
        collector.log()
    );
    assert_eq!(double.n_points(), 0);
    assert_eq!(transfer.stream_state("access").0 as usize, N_RECORDS);
    collector.terminate();
    collector.wait_timeout(Duration::from_secs(30));
    assert_no_secret("the service with a wrong token", &collector.log(), &secrets);

    // The file's token is right.
    let mut collector = Collector::start(&config);
    assert!(
        wait_until(TIMEOUT, || double.n_points() == N_RECORDS),
        "{}",
        collector.log()
    );
    collector.terminate();
    collector.wait_timeout(Duration::from_secs(30));
    assert_no_secret("the service", &collector.log(), &secrets);
    assert!(
        collector
            .log()
            .contains("influx.token (from influx.token_file)"),
        "{}",
        collector.log()
    );
}

#[test]
fn influxdb_over_https_with_a_private_ca() {
    let ca = TestCa::new("influx");
    // For 127.0.0.1 only: `localhost` is a wrong name for it.
    let influx = Influx::start_with_https(&ca, &ca.issue("influx", &["IP:127.0.0.1"]));
    influx.create_database("beta");
    assert!(influx.url().starts_with("https://"));
    let nats = NatsServer::start();
    let with_ca = format!("  tls:\n    ca: {}\n", ca.cert().display());
    collects(
        &yaml(&nats.url(), "", &influx.url(), &with_ca),
        &[],
        &influx,
        &[],
    );

    // A client certificate is loaded and offered when asked (influxd 1.6 never asks: it
    // cannot verify client certificates, so mutual TLS is not tested against it).
    let client = ca.issue("collector", &["DNS:collector"]);
    let with_client = yaml(
        &nats.url(),
        "",
        &influx.url(),
        &format!(
            "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            ca.cert().display(),
            client.cert.display(),
            client.key.display()
        ),
    );
    let check = run(&with_client, &["check"], &[], b"").expect(0);
    assert!(
        check.stdout.contains("all checks passed"),
        "{}",
        check.stdout
    );

    // Untrusted: the service refuses to start with one line; check says what to fix.
    let other = TestCa::new("influx-other");
    let untrusted = yaml(
        &nats.url(),
        "",
        &influx.url(),
        &format!("  tls:\n    ca: {}\n", other.cert().display()),
    );
    let stderr = refused_in_one_line(&untrusted);
    assert!(
        stderr.contains("unknown CA")
            && stderr.contains("influx.tls.ca")
            && stderr.contains(&influx.url()),
        "{stderr}"
    );
    let check = run(&untrusted, &["check"], &[], b"").expect(1);
    assert!(
        check.stdout.contains("✘ influxdb") && check.stdout.contains("unknown CA"),
        "{}",
        check.stdout
    );
    // The built-in CA list does not know the test CA either.
    let service = run(&yaml(&nats.url(), "", &influx.url(), ""), &[], &[], b"").expect(1);
    assert!(service.stderr.contains("unknown CA"), "{}", service.stderr);
    // A wrong name.
    let by_name = influx.url().replace("127.0.0.1", "localhost");
    let service = run(&yaml(&nats.url(), "", &by_name, &with_ca), &[], &[], b"").expect(1);
    assert!(
        service.stderr.contains("wrong name") && service.stderr.contains(&by_name),
        "{}",
        service.stderr
    );
}

// --- Hostile configuration ----------------------------------------------------------------

#[test]
fn hostile_configuration_is_refused_naming_the_key_without_a_secret() {
    let secret = "sekret-9d41-value";
    let ok_nats = "nats: {hosts: ['nats://127.0.0.1:4222']}\n";
    let ok_influx = "influx: {url: 'http://127.0.0.1:8086', api: v1}\n";
    let cases: Vec<(String, &str)> = vec![
        // Unknown keys.
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: v1, tokn: {secret}}}\n"), "tokn"),
        (format!("namespace: a\n{ok_nats}{ok_influx}sekrets: {{password: {secret}}}\n"), "sekrets"),
        (format!("namespace: a\nnats: {{hosts: ['nats://h:1'], tls: {{verify: false}}}}\n{ok_influx}"), "verify"),
        // Wrong types, a secret among them.
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: v1, username: u, password: [{secret}]}}\n"), "influx.password"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: v1, token: {{value: {secret}}}}}\n"), "influx.token"),
        (format!("namespace: a\nnats: {secret}\n{ok_influx}"), "nats"),
        (format!("namespace: a\n{ok_nats}influx: {secret}\n"), "influx"),
        (format!("{secret}\n"), "(file)"),
        (format!("namespace: a\n{ok_nats}{ok_influx}pull: {{workers: {secret}}}\n"), "pull.workers"),
        (format!("namespace: a\n{ok_nats}{ok_influx}batch: {{max_lines: -1}}\n"), "batch.max_lines"),
        (format!("namespace: [a]\n{ok_nats}{ok_influx}"), "namespace"),
        // Empty strings.
        (format!("namespace: ''\n{ok_nats}{ok_influx}"), "namespace"),
        (format!("namespace: a\nnats: {{hosts: ['']}}\n{ok_influx}"), "nats.hosts[0]"),
        (format!("namespace: a\n{ok_nats}influx: {{url: '', api: v1}}\n"), "influx.url"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: ''}}\n"), "influx.org"),
        // Namespaces that cannot name a stream.
        (format!("namespace: a.b\n{ok_nats}{ok_influx}"), "namespace"),
        (format!("namespace: 'a b'\n{ok_nats}{ok_influx}"), "namespace"),
        (format!("namespace: 'a*'\n{ok_nats}{ok_influx}"), "namespace"),
        // Hosts that are not URLs, credentials in URLs.
        (format!("namespace: a\nnats: {{hosts: ['localhost:4222']}}\n{ok_influx}"), "nats.hosts[0]"),
        (format!("namespace: a\nnats: {{hosts: ['http://h:4222']}}\n{ok_influx}"), "nats.hosts[0]"),
        (format!("namespace: a\nnats: {{hosts: ['nats://h:4222', 'nats://h:port']}}\n{ok_influx}"), "nats.hosts[1]"),
        (format!("namespace: a\nnats: {{hosts: ['nats://u:{secret}@h:4222']}}\n{ok_influx}"), "nats.hosts[0]"),
        (format!("namespace: a\nnats: {{hosts: ['{secret}@h']}}\n{ok_influx}"), "nats.hosts[0]"),
        (format!("namespace: a\n{ok_nats}influx: {{url: '127.0.0.1:8086', api: v1}}\n"), "influx.url"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://u:{secret}@h:8086', api: v1}}\n"), "influx.url"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'ftp://u:{secret}@h', api: v1}}\n"), "influx.url"),
        // Secrets that cannot serve.
        (format!("namespace: a\nnats: {{hosts: ['nats://h:1'], nkey: 'SU{secret}'}}\n{ok_influx}"), "nats.nkey"),
        (format!("namespace: a\nnats: {{hosts: ['nats://h:1'], token: {secret}, token_file: /x}}\n{ok_influx}"), "nats.token_file"),
        (format!("namespace: a\nnats: {{hosts: ['nats://h:1'], password: {secret}}}\n{ok_influx}"), "nats.username"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: v1, password: {secret}}}\n"), "influx.username"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'http://h', api: v1, tls: {{ca: /nonexistent.pem}}}}\n"), "influx.tls"),
        (format!("namespace: a\n{ok_nats}influx: {{url: 'https://h', api: v1, tls: {{ca: /nonexistent.pem}}}}\n"), "influx.tls.ca"),
        // Not YAML at all.
        (format!("namespace: a\n  password: '{secret}\n"), "(file)"),
        ("\u{0}\u{1}binary".to_string(), "(file)"),
    ];
    for (yaml, key) in &cases {
        for args in [&[][..], &["check"][..], &["streams", "list"][..]] {
            let run = run(yaml, args, &[], b"");
            let all = run.all();
            assert_eq!(run.status.code(), Some(2), "{args:?} {yaml:?}: {all}");
            assert!(
                all.contains(&format!("`{key}`")) || all.contains(key),
                "{args:?} {yaml:?} should name {key}: {all}"
            );
            assert!(!all.contains("panicked"), "{all}");
            assert_no_secret(&format!("{args:?} {yaml:?}"), &all, &[secret]);
            if args.is_empty() {
                assert_eq!(run.stderr.trim().lines().count(), 1, "{yaml:?}: {all}");
            }
        }
    }
}

#[test]
fn a_world_readable_config_file_with_a_secret_is_warned_about() {
    let port = util::free_port();
    // The service goes on to fail on its taken `http.listen` address (an unreachable NATS
    // would be waited for): the warning comes first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let taken = listener.local_addr().expect("its address").port();
    let config = util::config(&format!("nats://127.0.0.1:{port}"), "http://127.0.0.1:9")
        .namespace("a")
        .http_listen(taken);
    let with_secret = config.clone().nats("  token: tok-w0rld-readable\n").yaml();
    let run_644 = run_mode(&with_secret, 0o644, &[], &[], b"").expect(2);
    let warnings: Vec<&str> = run_644
        .stderr
        .lines()
        .filter(|l| l.contains("chmod 600"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run_644.stderr);
    assert!(
        warnings[0].contains("config.yml") && warnings[0].contains("nats.token"),
        "{}",
        warnings[0]
    );
    assert_no_secret("the service", &run_644.all(), &["tok-w0rld-readable"]);
    let check = run_mode(&with_secret, 0o644, &["check"], &[], b"");
    assert!(check.stdout.contains("⚠ config file"), "{}", check.stdout);
    // Not readable by others, or no secret in it: no warning.
    let run_600 = run_mode(&with_secret, 0o600, &[], &[], b"").expect(2);
    assert!(!run_600.stderr.contains("chmod"), "{}", run_600.stderr);
    let without = config.yaml();
    let run_no_secret = run_mode(&without, 0o644, &[], &[("COLLECTOR_NATS_TOKEN", "t")], b"");
    assert!(
        !run_no_secret.stderr.contains("chmod"),
        "{}",
        run_no_secret.stderr
    );
}
