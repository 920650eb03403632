//! Test certificates, made by the `openssl` command: a CA of the test's own, and the
//! server and client certificates it signs (valid for two days, or expired long ago).
//! Keys are EC P-256, unencrypted PKCS#8.

use super::{into_reply, HttpReply, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A certificate with its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA in its own temp dir.
pub struct TestCa {
    dir: TempDir,
    n_issued: AtomicUsize,
}

/// Runs `openssl args...` in `dir`; panics with its output if it fails.
/// `openssl req` with a new unencrypted P-256 key written to `key`, and `args`.
fn new_key_request(dir: &Path, key: &str, args: &[&str]) {
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all);
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    /// A new self-signed CA named `CN=collector test CA <name>`.
    pub fn new(name: &str) -> TestCa {
        let dir = TempDir::new(&format!("ca-{name}"));
        let subject = format!("/CN=collector test CA {name}");
        new_key_request(
            dir.path(),
            "ca.key",
            &[
                "-x509",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        // `openssl ca` keeps a database; it is the one way to choose validity dates.
        fs::write(dir.join("index.txt"), "").expect("cannot write index.txt");
        fs::write(
            dir.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
             copy_extensions = none\n\n[any]\ncommonName = supplied\n",
        )
        .expect("cannot write ca.cnf");
        fs::write(dir.join("serial"), "1000\n").expect("cannot write serial");
        TestCa {
            dir,
            n_issued: AtomicUsize::new(0),
        }
    }

    /// The CA certificate (PEM), for `tls.ca` keys and `ca_file`.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `sans` (`IP:127.0.0.1`, `DNS:localhost`), usable by a server and
    /// by a client, valid from now for two days.
    pub fn issue(&self, name: &str, sans: &[&str]) -> Issued {
        self.sign(name, sans, &["-days", "2"])
    }

    /// Like [`TestCa::issue`], but valid for one day in 2020 only.
    pub fn issue_expired(&self, name: &str, sans: &[&str]) -> Issued {
        self.sign(
            name,
            sans,
            &[
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
            ],
        )
    }

    fn sign(&self, name: &str, sans: &[&str], validity: &[&str]) -> Issued {
        let n = self.n_issued.fetch_add(1, Ordering::Relaxed);
        let base = format!("{name}-{n}");
        let key = format!("{base}.key");
        let csr = format!("{base}.csr");
        let cert = format!("{base}.pem");
        let ext = format!("{base}.ext");
        let subject = format!("/CN={name}");
        new_key_request(
            self.dir.path(),
            &key,
            &["-new", "-out", &csr, "-subj", &subject],
        );
        fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage = serverAuth,clientAuth\n\
                 subjectAltName = {}\n",
                sans.join(",")
            ),
        )
        .expect("cannot write the extensions file");
        let mut args = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile",
            "ca.key", "-in", &csr, "-out", &cert, "-extfile", &ext,
        ];
        args.extend_from_slice(validity);
        openssl(self.dir.path(), &args);
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    /// A blocking HTTP agent that trusts this CA only (4xx/5xx are replies).
    pub fn agent(&self) -> ureq::Agent {
        let pem = fs::read(self.cert()).expect("cannot read the CA certificate");
        let ca = ureq::tls::Certificate::from_pem(&pem).expect("the CA certificate is PEM");
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .build();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .timeout_connect(Some(Duration::from_secs(2)))
            .tls_config(tls)
            .build()
            .into()
    }
}

/// GET `url` with `query` through `agent`. `Err` only when no HTTP answer came.
pub fn get_with(
    agent: &ureq::Agent,
    url: &str,
    query: &[(&str, &str)],
) -> Result<HttpReply, String> {
    into_reply(agent.get(url).query_pairs(query.iter().copied()).call())
}

/// POST `body` to `url` with `query` through `agent`.
pub fn post_with(
    agent: &ureq::Agent,
    url: &str,
    query: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply, String> {
    into_reply(
        agent
            .post(url)
            .query_pairs(query.iter().copied())
            .header("Content-Type", "text/plain; charset=utf-8")
            .send(body),
    )
}
