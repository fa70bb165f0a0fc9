//! Why a connection could not be made or used, naming the destination and the step.
//!
//! Each variant keeps the underlying error as its [`std::error::Error::source`]
//! instead of pasting its text into the message, so a caller can match on it
//! (`io::ErrorKind::ConnectionRefused`, a russh disconnect) and `{:#}` (anyhow) prints
//! the whole chain on one line: `cannot connect to me@web1: Connection refused`.

use std::path::PathBuf;
use std::time::Duration;

use russh::keys;

use crate::sftp::SftpError;

/// Failures of connecting, verifying, authenticating and opening channels.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {destination}")]
    Connect {
        destination: String,
        #[source]
        source: std::io::Error,
    },
    /// TCP connect, key exchange and authentication took longer than allowed.
    #[error("connecting to {destination} timed out after {} s", .timeout.as_secs())]
    ConnectTimeout {
        destination: String,
        timeout: Duration,
    },
    /// The server's host key is not in known_hosts (and recording it was not asked).
    #[error(
        "host key of {host} is unknown: the server offered {algorithm} key {fingerprint}, \
         which is not in {}; refusing to connect. Check that fingerprint with the server's \
         administrator, then add the key to that file (`{}`), or pass \
         --accept-new-host-key to record it",
        known_hosts.display(),
        keyscan_hint(host, known_hosts)
    )]
    UnknownHostKey {
        /// `host` or `[host]:port`, as known_hosts spells it.
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    /// known_hosts lists another key for this host.
    #[error(
        "HOST KEY OF {host} HAS CHANGED: the server offered {algorithm} key {fingerprint}, \
         which differs from line {line} of {}; refusing to connect (someone may be \
         intercepting the connection; if the server was reinstalled, replace that line)",
        known_hosts.display()
    )]
    HostKeyChanged {
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
        line: usize,
    },
    /// The server presented a certificate instead of a plain host key.
    #[error("{host} presented a host certificate ({fingerprint}); host certificates are not supported, refusing to connect")]
    HostCertificate { host: String, fingerprint: String },
    /// The known_hosts file could not be read, parsed or (with accept-new) written.
    #[error("cannot check the host key of {host} against {}", known_hosts.display())]
    KnownHosts {
        host: String,
        known_hosts: PathBuf,
        #[source]
        source: keys::Error,
    },
    /// No identity was accepted. `tried` lists each attempt and why it failed; when
    /// the connection itself broke during authentication, `source` says how.
    #[error("authentication as {user} on {destination} failed (tried: {tried})")]
    AuthFailed {
        user: String,
        destination: String,
        tried: String,
        #[source]
        source: Option<russh::Error>,
    },
    /// The server would not start the `sftp` subsystem on a channel.
    #[error("{destination} refused the sftp subsystem: {reason}")]
    Subsystem { destination: String, reason: String },
    /// An exec channel (helper mode's command) could not be started.
    #[error("cannot run a command on {destination}: {reason}")]
    Exec { destination: String, reason: String },
    /// The SSH connection failed (key exchange, a channel request, a disconnect).
    #[error("SSH failure with {destination}")]
    Ssh {
        destination: String,
        #[source]
        source: russh::Error,
    },
    /// The SFTP handshake on a fresh channel failed.
    #[error("cannot start SFTP with {destination}")]
    Sftp {
        destination: String,
        #[source]
        source: SftpError,
    },
    /// A jump host of a ProxyJump chain could not be reached or used.
    #[error(
        "jump host {alias} ({destination}, hop {index} of {jumps} on the way to {target}) failed"
    )]
    Hop {
        alias: String,
        destination: String,
        index: usize,
        jumps: usize,
        target: String,
        #[source]
        source: Box<SessionError>,
    },
    /// A jump host would not open a connection to the next hop.
    #[error("jump host {jump} could not open a connection to {target}")]
    JumpChannel {
        jump: String,
        target: String,
        #[source]
        source: russh::Error,
    },
    /// The ProxyCommand did not carry an SSH connection.
    #[error("ProxyCommand `{command}` for {destination}: {reason}")]
    ProxyCommand {
        command: String,
        destination: String,
        reason: String,
        #[source]
        source: Option<Box<SessionError>>,
    },
}

/// `ssh-keyscan -p PORT HOST >> FILE` for a host label as known_hosts spells it
/// (`host` or `[host]:port`).
fn keyscan_hint(label: &str, known_hosts: &std::path::Path) -> String {
    let (host, port) = match label.strip_prefix('[').and_then(|r| r.rsplit_once("]:")) {
        Some((h, p)) => (h, p),
        None => (label, "22"),
    };
    format!("ssh-keyscan -p {port} {host} >> {}", known_hosts.display())
}

impl From<russh::Error> for SessionError {
    /// Needed by russh's handler trait; [`super::SshSession`] fills the destination in.
    fn from(source: russh::Error) -> Self {
        SessionError::Ssh {
            destination: String::new(),
            source,
        }
    }
}

impl SessionError {
    /// Fills in the destination of an error converted from russh's without one.
    pub(crate) fn at(self, dest: &str) -> SessionError {
        match self {
            SessionError::Ssh {
                destination,
                source,
            } if destination.is_empty() => SessionError::Ssh {
                destination: dest.to_string(),
                source,
            },
            other => other,
        }
    }
}

/// `err` and its sources on one line (`error: cause: cause`), for callers that can
/// only carry text (the target's `TargetError::Other`).
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cur = err.source();
    while let Some(cause) = cur {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        cur = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connect errors used to carry their cause only as text; it must stay reachable
    /// as a source (for matching) and print once in the one-line chain.
    #[test]
    fn connect_error_keeps_its_source_and_prints_it_once() {
        let err = SessionError::Connect {
            destination: "me@web1:2222".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let source = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(|e| e.kind());
        assert_eq!(source, Some(std::io::ErrorKind::ConnectionRefused));
        let line = error_line(&err);
        assert!(
            line.starts_with("cannot connect to me@web1:2222: "),
            "{line}"
        );
        assert_eq!(line.matches("refused").count(), 1, "{line}");
    }
}
