//! One authenticated SSH connection (russh) that opens SFTP channels.
//!
//! A host, port and user, a host key policy (user and global known_hosts files,
//! certificate authorities, revocations), private key files, certificates and the
//! agent. Host keys are verified before anything else happens: an unknown, changed or
//! revoked key refuses the connection with the key's SHA256 fingerprint in the error,
//! never a silent accept. Seams for what comes next: [`ConnectOptions`] is plain data
//! (a `~/.ssh/config` resolver fills it), [`Identity`] is non-exhaustive (an agent
//! variant joins it), [`SshSession::connect_stream`] takes any byte stream (a
//! ProxyCommand or ProxyJump stream works unchanged), and [`SshSession::open_sftp`]
//! can be called several times (one connection, several SFTP channels: OpenSSH's
//! per-channel window is what caps a single channel's throughput).

//!
//! The steps live in submodules: [`host_key`] (the policy and the verification),
//! [`known_hosts`] (reading the files), `auth` (key files, certificates, ssh-agent),
//! [`tuning`] (russh settings), [`proxy`] (reaching a host through a ProxyCommand or a
//! ProxyJump chain) and [`error`].

mod auth;
pub mod error;
pub mod host_key;
pub mod known_hosts;
pub mod proxy;
pub mod tuning;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::sftp::{SftpClient, SftpConfig};

pub use error::{error_line, SessionError};
pub use host_key::{HostKeyPolicy, KnownHostsCheck, StrictHostKeyChecking};
pub use proxy::{Route, Via};
pub use tuning::client_config;

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Host name or address; also the name looked up in `known_hosts` (unless the
    /// policy names an alias).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Which known_hosts files vouch for the host key, and what to do with an
    /// unknown one.
    pub host_keys: HostKeyPolicy,
    /// Identities tried in order until the server accepts one.
    pub identities: Vec<Identity>,
    /// `CertificateFile`s: OpenSSH certificates tried with the key file whose public
    /// key they certify (a key's own `KEY-cert.pub` is tried without being listed).
    pub certificate_files: Vec<PathBuf>,
    /// Limit for TCP connect plus key exchange plus authentication.
    pub connect_timeout: Duration,
    /// Offer `zlib@openssh.com` compression first (helps only on slow links with
    /// compressible data; costs CPU on both ends).
    pub compression: bool,
    /// How often to ask a silent server whether it is still there, and how many
    /// unanswered asks end the connection (`ServerAliveInterval`/`CountMax`).
    pub keepalive: Keepalive,
    /// Ask for the passphrase of an encrypted key file on the terminal (only when
    /// stdin is a terminal; otherwise the key is skipped with a clear reason).
    pub prompt_passphrase: bool,
}

/// SSH keepalives: after `interval` without a byte from the server a keepalive is
/// sent; `max` unanswered ones end the connection, so a dead server or a cut link is
/// noticed within about `interval × (max + 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub max: usize,
}

impl Default for Keepalive {
    /// 3 s and 2: gone after 9 s of silence. sshd answers keepalives even while its
    /// SFTP server or the helper is busy, so this does not misfire on slow work.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(3),
            max: 2,
        }
    }
}

impl ConnectOptions {
    /// Options with defaults: port 22, 30 s connect timeout, compression as
    /// [`tuning::DEFAULT_COMPRESSION`] (off), no identities yet, host keys from
    /// `known_hosts` and the global files, unknown keys refused.
    pub fn new(host: impl Into<String>, user: impl Into<String>, known_hosts: PathBuf) -> Self {
        ConnectOptions {
            host: host.into(),
            port: 22,
            user: user.into(),
            host_keys: HostKeyPolicy::new(known_hosts),
            identities: Vec::new(),
            certificate_files: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            compression: tuning::DEFAULT_COMPRESSION,
            keepalive: Keepalive::default(),
            prompt_passphrase: true,
        }
    }

    /// `user@host:port` (port only when not 22), for messages.
    pub fn destination(&self) -> String {
        if self.port == 22 {
            format!("{}@{}", self.user, self.host)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// A way to authenticate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Identity {
    /// An OpenSSH/PEM private key file, with its passphrase if encrypted.
    KeyFile {
        path: PathBuf,
        passphrase: Option<String>,
    },
    /// Every key an ssh-agent listening on `socket` (`SSH_AUTH_SOCK`) holds: the
    /// private keys never leave the agent, which signs for us.
    Agent { socket: PathBuf },
}

/// An authenticated SSH connection.
pub struct SshSession {
    handle: Handle<KnownHostsCheck>,
    destination: String,
    /// The jump host's session or the proxy command this connection runs over;
    /// declared last so it is dropped after `handle`.
    carrier: Option<Box<proxy::Carrier>>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// Connects over TCP, verifies the host key and authenticates, all within
    /// `opts.connect_timeout`.
    pub async fn connect(opts: &ConnectOptions) -> Result<SshSession, SessionError> {
        let destination = opts.destination();
        let attempt = async {
            let tcp = TcpStream::connect((opts.host.as_str(), opts.port))
                .await
                .map_err(|source| SessionError::Connect {
                    destination: destination.clone(),
                    source,
                })?;
            // Best effort: a socket that refuses TCP_NODELAY still works, only slower.
            let _ = tcp.set_nodelay(true);
            Self::handshake(opts, tcp).await
        };
        match tokio::time::timeout(opts.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::ConnectTimeout {
                destination,
                timeout: opts.connect_timeout,
            }),
        }
    }

    /// Like [`SshSession::connect`] over an already connected byte stream (a proxy
    /// command's stdio, a jump host's forwarded channel); no timeout of its own.
    pub async fn connect_stream<S>(
        opts: &ConnectOptions,
        stream: S,
    ) -> Result<SshSession, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::handshake(opts, stream).await
    }

    async fn handshake<S>(opts: &ConnectOptions, stream: S) -> Result<SshSession, SessionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let destination = opts.destination();
        let check = KnownHostsCheck::new(&opts.host, opts.port, opts.host_keys.clone());
        let config = Arc::new(client_config(opts));
        let mut handle = client::connect_stream(config, stream, check)
            .await
            .map_err(|e| e.at(&destination))?;
        auth::authenticate(&mut handle, opts, &destination).await?;
        Ok(SshSession {
            handle,
            destination,
            carrier: None,
        })
    }

    /// `user@host[:port]`, for messages.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The russh handle, for other channel kinds (exec channels of a helper mode).
    pub fn handle(&self) -> &Handle<KnownHostsCheck> {
        &self.handle
    }

    /// Opens a session channel, starts the `sftp` subsystem on it (waiting for the
    /// server's answer, so a refusal is reported as such) and performs the SFTP
    /// handshake. Can be called several times for parallel channels (sshd allows
    /// `MaxSessions`, 10 by default, per connection).
    pub async fn open_sftp(&self, config: SftpConfig) -> Result<SftpClient, SessionError> {
        let ssh_err = |e: russh::Error| SessionError::from(e).at(&self.destination);
        let mut channel = self.handle.channel_open_session().await.map_err(ssh_err)?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(ssh_err)?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(SessionError::Subsystem {
                        destination: self.destination.clone(),
                        reason: "the request was denied (is `Subsystem sftp` configured?)".into(),
                    })
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                    return Err(SessionError::Subsystem {
                        destination: self.destination.clone(),
                        reason: "the channel was closed".into(),
                    })
                }
                Some(_) => continue,
            }
        }
        SftpClient::new(channel.into_stream(), config)
            .await
            .map_err(|source| SessionError::Sftp {
                destination: self.destination.clone(),
                source,
            })
    }

    /// Says goodbye to the server. Channels still open are closed with it.
    pub async fn disconnect(&self) -> Result<(), SessionError> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await
            .map_err(|e| SessionError::from(e).at(&self.destination))
    }
}
