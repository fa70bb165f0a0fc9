//! Host key verification as fleets manage it: the server's key (or host certificate)
//! must be vouched for by the user's or the system's known_hosts files before
//! anything else happens. An unknown, changed or revoked key refuses the connection
//! with its SHA256 fingerprint and the files read in the error; only an unknown key
//! may be recorded, and only when the policy says so (`accept-new`).
//!
//! The rules (OpenSSH's): lines are looked up under [`HostKeyPolicy::alias`] if set,
//! else `host` / `[host]:port`. A `@revoked` key is refused wherever else it is listed.
//! A plain key is accepted when a line lists it; a line with another key of the same
//! type means the key changed. A host certificate is accepted when a
//! `@cert-authority` line for the host lists its signer, it is a host certificate,
//! it is valid now, it names the host among its principals and carries no critical
//! options; otherwise its plain key is checked as above.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};

use super::known_hosts::{self, Entry, Marker, Skipped};
use super::SessionError;

/// `StrictHostKeyChecking`: what to do with a host whose key no file lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse (OpenSSH's `yes`): keys come from the files only.
    #[default]
    Yes,
    /// Record the key in the first user file and go on (`accept-new`; also what
    /// OpenSSH's `no`/`off` is taken to mean: relstore never connects to a host whose
    /// key *changed*, whatever the setting).
    AcceptNew,
}

impl std::str::FromStr for StrictHostKeyChecking {
    type Err = String;

    /// OpenSSH's spellings (`ssh -G` prints them lower-case).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "yes" | "ask" | "true" => Ok(StrictHostKeyChecking::Yes),
            "accept-new" | "no" | "off" | "false" => Ok(StrictHostKeyChecking::AcceptNew),
            other => Err(format!(
                "StrictHostKeyChecking {other:?}: expected yes, ask, accept-new or no"
            )),
        }
    }
}

/// The global files OpenSSH reads by default.
pub const DEFAULT_GLOBAL_KNOWN_HOSTS: [&str; 2] =
    ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// Where host keys come from and what to do with an unknown one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyPolicy {
    /// The user's files (`UserKnownHostsFile`), read in order; the first is where
    /// `accept-new` records a key. Missing files are read as empty.
    pub user_files: Vec<PathBuf>,
    /// The system's files (`GlobalKnownHostsFile`), read after the user's, never
    /// written.
    pub global_files: Vec<PathBuf>,
    /// `HostKeyAlias`: the name looked up instead of the host (with no port added).
    pub alias: Option<String>,
    pub strict: StrictHostKeyChecking,
}

impl HostKeyPolicy {
    /// `user_file` first, OpenSSH's global files, refusing unknown keys.
    pub fn new(user_file: PathBuf) -> Self {
        HostKeyPolicy {
            user_files: vec![user_file],
            global_files: DEFAULT_GLOBAL_KNOWN_HOSTS
                .iter()
                .map(PathBuf::from)
                .collect(),
            alias: None,
            strict: StrictHostKeyChecking::Yes,
        }
    }

    /// The name known_hosts lines are matched against.
    pub fn lookup_name(&self, host: &str, port: u16) -> String {
        match &self.alias {
            Some(a) => a.clone(),
            None => known_hosts::lookup_name(host, port),
        }
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.user_files.iter().chain(self.global_files.iter())
    }

    /// The files read, for messages: `a, b (missing)`.
    fn files_read(&self) -> String {
        let list: Vec<String> = self
            .files()
            .map(|f| {
                if f.exists() {
                    f.display().to_string()
                } else {
                    format!("{} (missing)", f.display())
                }
            })
            .collect();
        if list.is_empty() {
            "no known_hosts files".into()
        } else {
            list.join(", ")
        }
    }

    /// Every line of every file that applies to `name`, in reading order.
    pub fn lookup(&self, name: &str) -> Result<(Vec<Entry>, Vec<Skipped>), std::io::Error> {
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for file in self.files() {
            let text = match std::fs::read(file) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", file.display()),
                    ))
                }
            };
            let (e, s) = known_hosts::entries_for(file, &text, name);
            entries.extend(e);
            skipped.extend(s);
        }
        Ok((entries, skipped))
    }

    /// Host key algorithms listed for `name` (offered first), and whether a CA is
    /// listed for it (then host certificates are asked for).
    pub fn known_algorithms(&self, name: &str) -> (Vec<Algorithm>, bool) {
        let Ok((entries, _)) = self.lookup(name) else {
            return (Vec::new(), false);
        };
        let algs = entries
            .iter()
            .filter(|e| e.marker == Marker::HostKey)
            .map(|e| e.key.algorithm())
            .collect();
        let ca = entries.iter().any(|e| e.marker == Marker::CertAuthority);
        (algs, ca)
    }
}

/// The outcome of checking one key against the files.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Known,
    Unknown { other_types: Vec<String> },
    Changed { place: String },
    Revoked { place: String },
}

/// Checks a plain `key` against `entries` (all for the same name).
fn judge_key(key: &PublicKey, entries: &[Entry]) -> Verdict {
    let data = key.key_data();
    if let Some(e) = entries
        .iter()
        .find(|e| e.marker == Marker::Revoked && e.key.key_data() == data)
    {
        return Verdict::Revoked { place: e.place() };
    }
    let plain = || entries.iter().filter(|e| e.marker == Marker::HostKey);
    if plain().any(|e| e.key.key_data() == data) {
        return Verdict::Known;
    }
    if let Some(e) = plain().find(|e| same_type(&e.key.algorithm(), &key.algorithm())) {
        return Verdict::Changed { place: e.place() };
    }
    let mut other_types: Vec<String> = plain()
        .map(|e| e.key.algorithm().as_str().to_string())
        .collect();
    other_types.dedup();
    Verdict::Unknown { other_types }
}

fn same_type(a: &Algorithm, b: &Algorithm) -> bool {
    a == b || (a.clone().is_rsa() && b.clone().is_rsa())
}

/// Why a host certificate is not vouched for by a `@cert-authority` line, or `None`
/// when it is.
fn judge_cert(cert: &Certificate, name: &str, entries: &[Entry], now: u64) -> Option<String> {
    let cas: Vec<_> = entries
        .iter()
        .filter(|e| e.marker == Marker::CertAuthority)
        .map(|e| e.key.fingerprint(HashAlg::Sha256))
        .collect();
    if cas.is_empty() {
        return Some("no @cert-authority line applies to this host".into());
    }
    if cert.cert_type() != CertType::Host {
        return Some("it is a user certificate, not a host certificate".into());
    }
    if !cas
        .iter()
        .any(|f| *f == cert.signature_key().fingerprint(HashAlg::Sha256))
    {
        return Some(format!(
            "its signer {} is not a listed certificate authority",
            cert.signature_key().fingerprint(HashAlg::Sha256)
        ));
    }
    if cert.validate_at(now, cas.iter()).is_err() {
        return Some(format!(
            "it is not valid now (valid from {} to {}) or its signature is bad",
            cert.valid_after(),
            cert.valid_before()
        ));
    }
    // Principals are host names; the port is not part of them.
    let bare = name
        .strip_prefix('[')
        .and_then(|r| r.rsplit_once("]:"))
        .map_or(name, |(h, _)| h);
    if !cert
        .valid_principals()
        .iter()
        .any(|p| p.eq_ignore_ascii_case(bare))
    {
        return Some(format!(
            "it names {:?} as principals, not {bare}",
            cert.valid_principals()
        ));
    }
    if !cert.critical_options().is_empty() {
        return Some("it carries critical options, which host certificates must not".into());
    }
    None
}

/// The russh client handler: verifies the server's host key or certificate during key
/// exchange, before authentication.
#[derive(Debug)]
pub struct KnownHostsCheck {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
}

impl KnownHostsCheck {
    /// A check of `host`/`port` following `policy`.
    pub fn new(host: &str, port: u16, policy: HostKeyPolicy) -> Self {
        KnownHostsCheck {
            host: host.to_string(),
            port,
            policy,
        }
    }

    /// The whole decision, separate from russh's trait for unit tests.
    // The session's error type, as every other step returns; this runs once per
    // connection, so its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn verify(&self, offered: &PublicKeyOrCertificate) -> Result<(), SessionError> {
        let name = self.policy.lookup_name(&self.host, self.port);
        let files = self.policy.files_read();
        let (entries, _skipped) =
            self.policy
                .lookup(&name)
                .map_err(|source| SessionError::KnownHosts {
                    host: name.clone(),
                    files: files.clone(),
                    source,
                })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (key, cert_note) = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => (key.clone(), None),
            PublicKeyOrCertificate::Certificate(cert) => {
                let signer = PublicKey::from(cert.signature_key().clone());
                if let Verdict::Revoked { place } = judge_key(&signer, &entries) {
                    return Err(SessionError::HostKeyRevoked {
                        host: name,
                        what: "certificate authority",
                        fingerprint: signer.fingerprint(HashAlg::Sha256).to_string(),
                        place,
                    });
                }
                let plain = PublicKey::from(cert.public_key().clone());
                match judge_cert(cert, &name, &entries, now) {
                    None => {
                        if let Verdict::Revoked { place } = judge_key(&plain, &entries) {
                            return Err(SessionError::HostKeyRevoked {
                                host: name,
                                what: "key",
                                fingerprint: plain.fingerprint(HashAlg::Sha256).to_string(),
                                place,
                            });
                        }
                        return Ok(());
                    }
                    // As OpenSSH: a certificate not vouched for falls back to its key.
                    Some(why) => (plain, Some(why)),
                }
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().as_str().to_string();
        match judge_key(&key, &entries) {
            Verdict::Known => Ok(()),
            Verdict::Revoked { place } => Err(SessionError::HostKeyRevoked {
                host: name,
                what: "key",
                fingerprint,
                place,
            }),
            Verdict::Changed { place } => Err(SessionError::HostKeyChanged {
                host: name,
                algorithm,
                fingerprint,
                place,
            }),
            Verdict::Unknown { .. } if self.policy.strict == StrictHostKeyChecking::AcceptNew => {
                self.record(&name, &key, &files)
            }
            Verdict::Unknown { other_types } => Err(SessionError::UnknownHostKey {
                host: name.clone(),
                algorithm,
                fingerprint,
                files,
                hint: super::error::keyscan_hint(
                    &name,
                    self.policy.user_files.first().map(PathBuf::as_path),
                ),
                note: unknown_note(&other_types, cert_note.as_deref()).into(),
            }),
        }
    }

    /// accept-new: appends the key to the first user file.
    #[allow(clippy::result_large_err)]
    fn record(&self, name: &str, key: &PublicKey, files: &str) -> Result<(), SessionError> {
        let io_err = |source: std::io::Error| SessionError::KnownHosts {
            host: name.to_string(),
            files: files.to_string(),
            source,
        };
        let Some(file) = self.policy.user_files.first() else {
            return Err(io_err(std::io::Error::other(
                "no user known_hosts file to record the key in",
            )));
        };
        let line = known_hosts::line_for(name, key)
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
        append_line(file, &line).map_err(|e| {
            io_err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", file.display()),
            ))
        })
    }
}

/// The extra sentence of an "unknown key" error.
fn unknown_note(other_types: &[String], cert_note: Option<&str>) -> String {
    let mut note = String::new();
    if let Some(why) = cert_note {
        note.push_str(&format!(
            " (it came in a host certificate that was not accepted: {why})"
        ));
    }
    if !other_types.is_empty() {
        note.push_str(&format!(
            " (the files list this host with other key types: {})",
            other_types.join(", ")
        ));
    }
    note
}

/// Appends `line` to `file`, creating it (and its directory) if needed, starting on a
/// new line.
fn append_line(file: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let existing = std::fs::read(file).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let sep = if existing.is_empty() || existing.ends_with(b"\n") {
        ""
    } else {
        "\n"
    };
    f.write_all(format!("{sep}{line}\n").as_bytes())?;
    f.sync_all()
}

impl client::Handler for KnownHostsCheck {
    type Error = SessionError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, SessionError> {
        self.verify(offered).map(|()| true)
    }
}

#[cfg(test)]
#[path = "host_key_tests.rs"]
mod tests;
