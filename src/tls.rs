//! TLS for both clients: the certificate files of `nats.tls` and `influx.tls`, and one clear
//! line for a failed handshake.
//!
//! Runs on the main thread at start (the configuration loads and checks every file here, so a
//! missing or unreadable file is refused naming its key before anything connects) and on any
//! thread that reports a connection error ([`explain`] is pure). The NATS client reads its
//! files itself, by path; the InfluxDB client gets a ready [`ureq::tls::TlsConfig`]. Server
//! name checking is never turned off: there is no key for it.

use std::io::Read;
use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::error::{Error, Result};

/// A PEM file larger than this is no certificate, key or bundle of CAs.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The files of a `tls` block: a CA bundle to trust instead of the system's (or the built-in
/// Mozilla list, for HTTPS), and a client certificate with its key for mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`], refusing it under `key` otherwise.
fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>> {
    let unreadable = |problem: String| Error::config(key, problem);
    let file = std::fs::File::open(path)
        .map_err(|e| unreadable(format!("cannot read {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(unreadable(format!(
            "{} is larger than 1 MiB; it should be a PEM file",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Every certificate of the PEM file at `path` (at least one).
pub fn read_certificates(key: &str, path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = read_pem(key, path)?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        // The parser's error texts quote no file content, but say nothing useful either.
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if certificates.is_empty() {
        return Err(Error::config(
            key,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certificates)
}

/// The private key of the PEM file at `path` (PKCS#8, PKCS#1 or SEC1, unencrypted).
pub fn read_private_key(key: &str, path: &Path) -> Result<PrivateKey<'static>> {
    let bytes = read_pem(key, path)?;
    // The error never shows the key's bytes: only that none was found.
    PrivateKey::from_pem(&bytes).map_err(|_| {
        Error::config(
            key,
            format!(
                "{} holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)",
                path.display()
            ),
        )
    })
}

/// Loads every file of a `tls` block whose keys start with `prefix` (`nats.tls`): what the
/// NATS client will read by path later is checked now, naming the key.
pub fn check_files(prefix: &str, files: &TlsFiles) -> Result<()> {
    if let Some(ca) = &files.ca {
        read_certificates(&format!("{prefix}.ca"), ca)?;
    }
    if let Some(cert) = &files.cert {
        read_certificates(&format!("{prefix}.cert"), cert)?;
    }
    if let Some(key) = &files.key {
        read_private_key(&format!("{prefix}.key"), key)?;
    }
    Ok(())
}

/// The HTTPS settings of a `tls` block whose keys start with `prefix` (`influx.tls`): only
/// the CA of `ca` is trusted when it is set, the built-in Mozilla roots otherwise; the
/// client certificate is presented when the server asks for one.
pub fn http_config(prefix: &str, files: &TlsFiles) -> Result<TlsConfig> {
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &files.ca {
        let roots = read_certificates(&format!("{prefix}.ca"), ca)?;
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
        let chain = read_certificates(&format!("{prefix}.cert"), cert)?;
        let key = read_private_key(&format!("{prefix}.key"), key)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// One line saying what failed in a TLS handshake, from the error text of rustls (0.22
/// through the `nats` crate, 0.23 through `ureq`), whose own words are terse
/// (`invalid peer certificate: UnknownIssuer`). `prefix` names the `tls` block to fix
/// (`nats.tls`). `None` when the text is no TLS failure.
pub fn explain(text: &str, prefix: &str) -> Option<String> {
    let has = |needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    let line = if has(&["UnknownIssuer"]) {
        format!("unknown CA: the server's certificate is not signed by a CA this client trusts; set {prefix}.ca to the CA certificate that signed it")
    } else if has(&["NotValidForName", "not valid for name"]) {
        "wrong name: the server's certificate is not valid for the host name connected to; connect with a name or IP address listed in its subjectAltName, or reissue it".to_string()
    } else if has(&["Expired", "certificate expired"]) {
        "expired: the server's certificate has expired; renew it (or check this machine's clock)"
            .to_string()
    } else if has(&["NotValidYet", "not valid yet"]) {
        "not yet valid: the server's certificate is not valid yet; check the clocks".to_string()
    } else if has(&["CaUsedAsEndEntity"]) {
        "the server presents a CA certificate as its own; give it a server certificate".to_string()
    } else if has(&["InvalidPurpose", "extended key usage"]) {
        "the server's certificate is not for server authentication (extended key usage)".to_string()
    } else if has(&[
        "BadSignature",
        "UnsupportedSignatureAlgorithm",
        "BadEncoding",
    ]) {
        "the server's certificate is malformed or has a bad signature".to_string()
    } else if has(&["invalid peer certificate"]) {
        format!("the server's certificate was refused; check it against {prefix}.ca")
    } else if has(&[
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "UnsupportedCertificate",
        "CertificateUnknown",
        "AccessDenied",
    ]) {
        format!("the server refused this client's certificate; set {prefix}.cert and {prefix}.key to a certificate the server's CA signed")
    } else if has(&["HandshakeFailure"]) {
        format!("the handshake failed: no common TLS version or cipher, or the server wants a client certificate ({prefix}.cert, {prefix}.key)")
    } else if has(&["corrupt message", "InvalidContentType", "ProtocolVersion"]) {
        "the server did not answer in TLS: is this a TLS port?".to_string()
    } else if has(&["could not load certs", "could not add certificate or key"]) {
        format!("the files of {prefix} could not be used: check that the key belongs to the certificate")
    } else {
        return None;
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<&str>) {
        let line = explain(text, "nats.tls");
        match expected {
            None => assert_eq!(line, None, "{text}"),
            Some(needle) => {
                let line = line.unwrap_or_else(|| panic!("{text} not explained"));
                assert!(line.contains(needle), "{text}: {line}");
                assert!(!line.contains('\n'));
            }
        }
    }

    #[test]
    fn handshake_failures_become_one_clear_line() {
        // rustls 0.22 (nats), as the nats crate wraps it.
        check(
            "TLS error: invalid peer certificate: UnknownIssuer",
            Some("unknown CA"),
        );
        check(
            "TLS error: invalid peer certificate: UnknownIssuer",
            Some("nats.tls.ca"),
        );
        check(
            "TLS error: invalid peer certificate: NotValidForName",
            Some("wrong name"),
        );
        check(
            "TLS error: invalid peer certificate: Expired",
            Some("expired"),
        );
        check(
            "TLS error: received fatal alert: CertificateRequired",
            Some("nats.tls.cert"),
        );
        // rustls 0.23 (ureq) has longer texts.
        check(
            "io: invalid peer certificate: certificate not valid for name \"db\"; certificate is only valid for localhost",
            Some("wrong name"),
        );
        check(
            "io: invalid peer certificate: certificate expired: verification time 1 (UNIX), but certificate is not valid after 0 (1 seconds ago)",
            Some("expired"),
        );
        check(
            "rustls: received corrupt message of type InvalidContentType",
            Some("TLS port"),
        );
        check(
            "io: received fatal alert: BadCertificate",
            Some("client's certificate"),
        );
        check("connection refused", None);
        check("authorization violation", None);
    }

    #[test]
    fn files_are_refused_naming_their_key() {
        let dir = std::env::temp_dir().join(format!("collector-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let missing = dir.join("missing.pem");
        for (section, files, key, problem) in [
            (
                "influx.tls",
                TlsFiles {
                    ca: Some(not_pem.clone()),
                    ..TlsFiles::default()
                },
                "`influx.tls.ca`",
                "no PEM certificate",
            ),
            (
                "nats.tls",
                TlsFiles {
                    key: Some(not_pem),
                    ..TlsFiles::default()
                },
                "`nats.tls.key`",
                "private key",
            ),
            (
                "nats.tls",
                TlsFiles {
                    cert: Some(missing),
                    ..TlsFiles::default()
                },
                "`nats.tls.cert`",
                "cannot read",
            ),
        ] {
            let e = check_files(section, &files).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(problem), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
