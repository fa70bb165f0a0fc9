//! Host key verification: the server's key must be listed for this host in the
//! known_hosts file before anything else happens (or, when asked, is recorded there
//! on first contact); an unknown or changed key refuses the connection with its
//! SHA256 fingerprint in the error.

use std::path::PathBuf;

use russh::client;
use russh::keys::{self, HashAlg, PublicKeyOrCertificate};

use super::SessionError;

/// The russh client handler: verifies the server's host key against a known_hosts
/// file during key exchange, before authentication.
#[derive(Debug)]
pub struct KnownHostsCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
}

impl KnownHostsCheck {
    /// A check of `host`/`port` against `known_hosts` that refuses unknown keys.
    pub fn new(host: &str, port: u16, known_hosts: PathBuf) -> Self {
        KnownHostsCheck {
            host: host.to_string(),
            port,
            known_hosts,
            accept_new: false,
        }
    }

    /// Records an unknown host's key in the known_hosts file instead of refusing
    /// (a changed key is still refused).
    pub fn accept_new(mut self, accept: bool) -> Self {
        self.accept_new = accept;
        self
    }

    fn host_label(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl client::Handler for KnownHostsCheck {
    type Error = SessionError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, SessionError> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                return Err(SessionError::HostCertificate {
                    host: self.host_label(),
                    fingerprint: cert.public_key().fingerprint(HashAlg::Sha256).to_string(),
                })
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().as_str().to_string();
        match keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                )
                .map_err(|source| SessionError::KnownHosts {
                    host: self.host_label(),
                    known_hosts: self.known_hosts.clone(),
                    source,
                })?;
                Ok(true)
            }
            Ok(false) => Err(SessionError::UnknownHostKey {
                host: self.host_label(),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
            }),
            Err(keys::Error::KeyChanged { line }) => Err(SessionError::HostKeyChanged {
                host: self.host_label(),
                algorithm,
                fingerprint,
                known_hosts: self.known_hosts.clone(),
                line,
            }),
            Err(source) => Err(SessionError::KnownHosts {
                host: self.host_label(),
                known_hosts: self.known_hosts.clone(),
                source,
            }),
        }
    }
}
