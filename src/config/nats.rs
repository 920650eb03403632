//! The `nats` section: the servers, how the collector authenticates to them, their TLS and the
//! replicas of the streams it creates. Validated by the parent module on the main thread at
//! start; the secrets are found by `secrets`.

use super::secrets::{read_secret_file, Secrets, NATS_NKEY, NATS_PASSWORD, NATS_TOKEN};
use super::{has_credentials, positive, present, tls_files, without_credentials, RawNats, Secret};
use crate::error::{Error, Result};
use crate::tls::TlsFiles;

#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub hosts: Vec<String>,
    pub auth: NatsAuth,
    /// Set by a `nats.tls` block: TLS is then required on every host, `nats://` ones too.
    /// Hosts written `tls://` use TLS in any case, with the system's CAs when this is `None`.
    pub tls: Option<TlsFiles>,
    /// `nats.replicas`: replicas of the streams the collector creates; `None` lets
    /// `jetstream::choose_replicas` pick (the bucket's, else 3 on a cluster of 3 or more).
    pub replicas: Option<usize>,
}

/// How the collector authenticates to NATS: at most one method.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    /// An nkey user seed (`SU...`), as in the seed deployment document.
    Nkey(Secret),
    Token(Secret),
    UserPassword {
        username: String,
        password: Secret,
    },
    /// A `.creds` file holding a user JWT and its nkey seed.
    Creds(String),
}

fn check_nats_url(key: &str, url: &str) -> Result<()> {
    // Quoted without credentials: a URL that is wrong in two ways must not print a password.
    let not_a_url = || {
        Error::config(
            key,
            format!(
                "`{}` is not a NATS URL; write nats://HOST:PORT or tls://HOST:PORT",
                without_credentials(url)
            ),
        )
    };
    if has_credentials(url) || url.contains('@') {
        return Err(Error::config(
            key,
            "credentials in the URL are not supported; use nats.token, nats.username/password, nats.nkey or nats.creds",
        ));
    }
    let rest = ["nats://", "tls://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(not_a_url)?;
    let host = rest.split(':').next().unwrap_or("");
    let port_ok = match rest.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok(),
        None => true,
    };
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) || !port_ok {
        return Err(not_a_url());
    }
    Ok(())
}

impl NatsConfig {
    /// Validates the `nats` section; its secrets are looked up through `secrets`.
    pub(super) fn from_raw(nats: RawNats, secrets: &mut Secrets) -> Result<NatsConfig> {
        if nats.hosts.is_empty() {
            return Err(Error::config(
                "nats.hosts",
                "must list at least one server, e.g. [nats://127.0.0.1:4222]",
            ));
        }
        for (i, host) in nats.hosts.iter().enumerate() {
            check_nats_url(&format!("nats.hosts[{i}]"), host.trim())?;
        }
        let nkey = secrets.find(&NATS_NKEY, nats.nkey, nats.nkey_file)?;
        let token = secrets.find(&NATS_TOKEN, nats.token, nats.token_file)?;
        let username = present(nats.username);
        let password = secrets.find(&NATS_PASSWORD, nats.password, nats.password_file)?;
        let creds = present(nats.creds);
        let auth = NatsAuth::from_found(nkey, token, username, password, creds)?;
        Ok(NatsConfig {
            hosts: nats.hosts.iter().map(|h| h.trim().to_string()).collect(),
            auth,
            tls: tls_files("nats.tls", nats.tls)?,
            // JetStream allows 1 to 5 replicas; an R5 stream needs 5 servers.
            replicas: match nats.replicas {
                None => None,
                Some(n) => Some(positive("nats.replicas", Some(n), 1, 5)?),
            },
        })
    }
}

impl NatsAuth {
    /// The one authentication method of `nats`, from the secrets found and the plain keys:
    /// more than one is refused, as is a half of username/password.
    fn from_found(
        nkey: Option<(Secret, String)>,
        token: Option<(Secret, String)>,
        username: Option<String>,
        password: Option<(Secret, String)>,
        creds: Option<String>,
    ) -> Result<NatsAuth> {
        let methods: Vec<String> = [
            nkey.as_ref().map(|(_, source)| source.clone()),
            token.as_ref().map(|(_, source)| source.clone()),
            username.as_ref().map(|_| "nats.username".to_string()),
            creds.as_ref().map(|_| "nats.creds".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if methods.len() > 1 {
            return Err(Error::config(
                "nats",
                format!(
                    "set only one of nkey, token, username/password, creds (found {})",
                    methods.join(" and ")
                ),
            ));
        }
        Ok(match (nkey, token, username, creds) {
            (Some((seed, source)), ..) => {
                // Checked here rather than at connect, so the line names where it came from.
                // The value is never quoted, nor the decoder's error about it.
                if !seed.expose().starts_with("SU")
                    || nkeys::KeyPair::from_seed(seed.expose()).is_err()
                {
                    return Err(Error::config(
                        source,
                        "must be an nkey user seed (58 characters starting with SU)",
                    ));
                }
                NatsAuth::Nkey(seed)
            }
            (_, Some((token, _)), ..) => NatsAuth::Token(token),
            (_, _, Some(username), _) => {
                let (password, _) = password.ok_or_else(|| {
                    Error::config("nats.password", "is required with nats.username")
                })?;
                NatsAuth::UserPassword { username, password }
            }
            (_, _, _, Some(path)) => {
                // The client reads the file at every connect; an unreadable one is refused now.
                read_secret_file("nats.creds", &path)?;
                NatsAuth::Creds(path)
            }
            _ if password.is_some() => {
                return Err(Error::config(
                    "nats.username",
                    "is required with nats.password",
                ))
            }
            _ => NatsAuth::None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{no_env, refusal};
    use super::*;

    #[test]
    fn the_section_finds_its_secrets() {
        let env = |name: &str| (name == "COLLECTOR_NATS_TOKEN").then(|| "from-env".to_string());
        let mut secrets = Secrets::new(&env);
        let nats = NatsConfig::from_raw(
            RawNats {
                hosts: vec![" nats://h:4222 ".into()],
                ..RawNats::default()
            },
            &mut secrets,
        )
        .unwrap();
        assert_eq!(nats.hosts, ["nats://h:4222"]);
        assert_eq!(nats.auth, NatsAuth::Token(Secret::new("from-env")));
        assert_eq!(secrets.sources, ["nats.token (from COLLECTOR_NATS_TOKEN)"]);
        let (key, _) = refusal(NatsConfig::from_raw(
            RawNats::default(),
            &mut Secrets::new(&no_env),
        ));
        assert_eq!(key, "nats.hosts");
    }
}
