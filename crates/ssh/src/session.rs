//! One authenticated SSH connection (russh) that opens SFTP channels.
//!
//! Deliberately minimal: a host, port and user, one known_hosts file, private key
//! files. Host keys are verified before anything else happens: an unknown key or a
//! changed key refuses the connection with the key's SHA256 fingerprint in the error,
//! never a silent accept. Seams for what comes next: [`ConnectOptions`] is plain data
//! (a `~/.ssh/config` resolver fills it), [`Identity`] is non-exhaustive (an agent
//! variant joins it), [`SshSession::connect_stream`] takes any byte stream (a
//! ProxyCommand or ProxyJump stream works unchanged), and [`SshSession::open_sftp`]
//! can be called several times (one connection, several SFTP channels: OpenSSH's
//! per-channel window is what caps a single channel's throughput).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::sftp::{SftpClient, SftpConfig, SftpError};

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Host name or address; also the name looked up in `known_hosts`.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The known_hosts file the host key must be listed in.
    pub known_hosts: PathBuf,
    /// Identities tried in order until the server accepts one.
    pub identities: Vec<Identity>,
    /// Limit for TCP connect plus key exchange plus authentication.
    pub connect_timeout: Duration,
    /// Offer `zlib@openssh.com` compression first (helps only on slow links with
    /// compressible data; costs CPU on both ends).
    pub compression: bool,
}

impl ConnectOptions {
    /// Options with defaults: port 22, 30 s connect timeout, no compression, no
    /// identities yet.
    pub fn new(host: impl Into<String>, user: impl Into<String>, known_hosts: PathBuf) -> Self {
        ConnectOptions {
            host: host.into(),
            port: 22,
            user: user.into(),
            known_hosts,
            identities: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            compression: false,
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
}

/// Failures of connecting, verifying, authenticating and opening channels.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {destination}: {source}")]
    Connect {
        destination: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {destination} timed out after {} s", .timeout.as_secs())]
    ConnectTimeout {
        destination: String,
        timeout: Duration,
    },
    #[error(
        "host key of {host} is unknown: the server offered {algorithm} key {fingerprint}, \
         which is not in {}; refusing to connect. Check that fingerprint with the server's \
         administrator, then add the key to that file (e.g. with ssh-keyscan)",
        known_hosts.display()
    )]
    UnknownHostKey {
        /// `host` or `[host]:port`, as known_hosts spells it.
        host: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
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
    #[error("{host} presented a host certificate ({fingerprint}); host certificates are not supported, refusing to connect")]
    HostCertificate { host: String, fingerprint: String },
    #[error("cannot check the host key of {host} against {}: {source}", known_hosts.display())]
    KnownHosts {
        host: String,
        known_hosts: PathBuf,
        #[source]
        source: keys::Error,
    },
    #[error("cannot load private key {}: {source}{hint}", path.display())]
    Key {
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: keys::Error,
    },
    #[error("authentication as {user} on {destination} failed (tried: {tried})")]
    AuthFailed {
        user: String,
        destination: String,
        tried: String,
    },
    #[error("{destination} refused the sftp subsystem: {reason}")]
    Subsystem { destination: String, reason: String },
    #[error("SSH failure with {destination}: {source}")]
    Ssh {
        destination: String,
        #[source]
        source: russh::Error,
    },
    #[error("SFTP with {destination}: {source}")]
    Sftp {
        destination: String,
        #[source]
        source: SftpError,
    },
}

impl From<russh::Error> for SessionError {
    /// Needed by russh's handler trait; [`SshSession`] fills the destination in.
    fn from(source: russh::Error) -> Self {
        SessionError::Ssh {
            destination: String::new(),
            source,
        }
    }
}

impl SessionError {
    fn at(self, dest: &str) -> SessionError {
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

/// The russh client handler: verifies the server's host key against a known_hosts
/// file during key exchange, before authentication.
#[derive(Debug)]
pub struct KnownHostsCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
}

impl KnownHostsCheck {
    pub fn new(host: &str, port: u16, known_hosts: PathBuf) -> Self {
        KnownHostsCheck {
            host: host.to_string(),
            port,
            known_hosts,
        }
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

/// russh settings for relstore's traffic (see SSH-NOTES.md): Nagle off (pipelined
/// small requests must not wait for ACKs), a larger receive window and channel buffer
/// (deep pipelines of replies), keepalives so a dead server is noticed, host key
/// algorithms already known for this host offered first (russh would otherwise offer
/// ed25519 first and fail on a host known only by another key type).
pub fn client_config(opts: &ConnectOptions) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let known: Vec<Algorithm> =
        keys::known_hosts::known_host_keys_path(&opts.host, opts.port, &opts.known_hosts)
            .map(|keys| keys.into_iter().map(|(_, k)| k.algorithm()).collect())
            .unwrap_or_default();
    if !known.is_empty() {
        let matches = |a: &Algorithm| {
            known
                .iter()
                .any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()))
        };
        let mut order: Vec<Algorithm> = preferred
            .key
            .iter()
            .filter(|a| matches(a))
            .cloned()
            .collect();
        order.extend(preferred.key.iter().filter(|a| !matches(a)).cloned());
        preferred.key = Cow::Owned(order);
    }
    if opts.compression {
        let mut order = vec![russh::compression::ZLIB_LEGACY];
        order.extend(
            preferred
                .compression
                .iter()
                .filter(|c| **c != russh::compression::ZLIB_LEGACY)
                .cloned(),
        );
        preferred.compression = Cow::Owned(order);
    }
    client::Config {
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 512,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        inactivity_timeout: None,
        preferred,
        ..client::Config::default()
    }
}

/// An authenticated SSH connection.
pub struct SshSession {
    handle: Handle<KnownHostsCheck>,
    destination: String,
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
        let check = KnownHostsCheck::new(&opts.host, opts.port, opts.known_hosts.clone());
        let config = Arc::new(client_config(opts));
        let mut handle = client::connect_stream(config, stream, check)
            .await
            .map_err(|e| e.at(&destination))?;
        let mut tried = Vec::new();
        for identity in &opts.identities {
            match identity {
                Identity::KeyFile { path, passphrase } => {
                    let key =
                        keys::load_secret_key(path, passphrase.as_deref()).map_err(|source| {
                            let hint = if matches!(source, keys::Error::KeyIsEncrypted) {
                                " (the key is encrypted: give its passphrase or use ssh-agent)"
                            } else {
                                ""
                            };
                            SessionError::Key {
                                path: path.clone(),
                                hint,
                                source,
                            }
                        })?;
                    let hash = if key.algorithm().is_rsa() {
                        // No server-sig-algs from the server: assume rsa-sha2-256, as
                        // OpenSSH ≥ 8.8 refuses SHA-1 signatures anyway.
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(|e| SessionError::from(e).at(&destination))?
                            .unwrap_or(Some(HashAlg::Sha256))
                    } else {
                        None
                    };
                    let result = handle
                        .authenticate_publickey(
                            opts.user.clone(),
                            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                        )
                        .await
                        .map_err(|e| SessionError::from(e).at(&destination))?;
                    if result.success() {
                        return Ok(SshSession {
                            handle,
                            destination,
                        });
                    }
                    tried.push(format!("key {}", path.display()));
                }
            }
        }
        Err(SessionError::AuthFailed {
            user: opts.user.clone(),
            destination,
            tried: if tried.is_empty() {
                "no identities were given".into()
            } else {
                tried.join(", ")
            },
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
