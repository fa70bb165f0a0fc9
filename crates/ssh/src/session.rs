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
    /// Record the key of a host that is not in `known_hosts` yet (OpenSSH's
    /// `StrictHostKeyChecking accept-new`); a *changed* key is refused regardless.
    /// Off by default: trusting a key on first use must be the user's decision.
    pub accept_new_host_key: bool,
    /// Ask for the passphrase of an encrypted key file on the terminal (only when
    /// stdin is a terminal; otherwise the key is skipped with a clear reason).
    pub prompt_passphrase: bool,
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
            accept_new_host_key: false,
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

/// russh settings for relstore's traffic: Nagle off (pipelined
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
    if aes_in_hardware() {
        // With AES instructions AES-GCM costs a fraction of ChaCha20-Poly1305 on both
        // ends (measured: ring's chacha20 + poly1305 were ~10% of the client's CPU in a
        // 340 MB upload; OpenSSL's AES-GCM in sshd is likewise far cheaper than
        // OpenSSH's chacha20-poly1305). Both are AEAD ciphers every OpenSSH ≥ 6.5
        // offers; without AES instructions russh's default (ChaCha20 first) stands.
        let mut order = vec![russh::cipher::AES_256_GCM];
        order.extend(
            preferred
                .cipher
                .iter()
                .filter(|c| **c != russh::cipher::AES_256_GCM)
                .cloned(),
        );
        preferred.cipher = Cow::Owned(order);
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

/// Whether this CPU has AES (and carry-less multiply) instructions, which make
/// AES-GCM the cheapest cipher on the client and, usually, on the server too.
fn aes_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// RSA keys sign with SHA-2: OpenSSH ≥ 8.8 refuses SHA-1 signatures, and a server
/// that does not announce `server-sig-algs` gets rsa-sha2-256.
async fn rsa_hash(
    handle: &mut Handle<KnownHostsCheck>,
    key: &keys::PublicKey,
) -> Result<Option<HashAlg>, russh::Error> {
    if key.algorithm().is_rsa() {
        Ok(handle
            .best_supported_rsa_hash()
            .await?
            .unwrap_or(Some(HashAlg::Sha256)))
    } else {
        Ok(None)
    }
}

/// Asks for a key's passphrase on the terminal, if there is one.
async fn ask_passphrase(path: &std::path::Path) -> Option<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt).ok())
        .await
        .ok()
        .flatten()
}

/// Tries one key file; `Ok(false)` (with the reason in `tried`) when it cannot be
/// used or the server refuses it.
async fn auth_with_key_file(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    path: &std::path::Path,
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
) -> Result<bool, russh::Error> {
    let key = match keys::load_secret_key(path, passphrase) {
        Ok(k) => k,
        Err(keys::Error::KeyIsEncrypted) if passphrase.is_none() => {
            let asked = if opts.prompt_passphrase {
                ask_passphrase(path).await
            } else {
                None
            };
            let Some(pass) = asked else {
                tried.push(format!(
                    "key {} (encrypted, and there is no terminal to ask for its passphrase: \
                     add it to ssh-agent with ssh-add)",
                    path.display()
                ));
                return Ok(false);
            };
            match keys::load_secret_key(path, Some(&pass)) {
                Ok(k) => k,
                Err(e) => {
                    tried.push(format!("key {} (cannot decrypt: {e})", path.display()));
                    return Ok(false);
                }
            }
        }
        Err(e) => {
            tried.push(format!("key {} (cannot load: {e})", path.display()));
            return Ok(false);
        }
    };
    let hash = rsa_hash(handle, key.public_key()).await?;
    let result = handle
        .authenticate_publickey(
            opts.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await?;
    if result.success() {
        return Ok(true);
    }
    tried.push(format!("key {} (refused)", path.display()));
    Ok(false)
}

/// Tries every plain key the agent at `socket` holds.
async fn auth_with_agent(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    socket: &std::path::Path,
    tried: &mut Vec<String>,
) -> Result<bool, russh::Error> {
    let mut agent = match keys::agent::client::AgentClient::connect_uds(socket).await {
        Ok(a) => a,
        Err(e) => {
            tried.push(format!(
                "ssh-agent at {} (cannot connect: {e})",
                socket.display()
            ));
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tried.push(format!(
                "ssh-agent at {} (cannot list keys: {e})",
                socket.display()
            ));
            return Ok(false);
        }
    };
    let keys: Vec<keys::PublicKey> = identities
        .into_iter()
        .filter_map(|id| match id {
            keys::agent::AgentIdentity::PublicKey { key, .. } => Some(key),
            // Certificates need their own auth method; not offered yet.
            keys::agent::AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    if keys.is_empty() {
        tried.push(format!("ssh-agent at {} (holds no keys)", socket.display()));
        return Ok(false);
    }
    for key in keys {
        let label = format!(
            "ssh-agent key {} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        );
        let hash = rsa_hash(handle, &key).await?;
        match handle
            .authenticate_publickey_with(opts.user.clone(), key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push(format!("{label} (refused)")),
            Err(russh::AgentAuthError::Send(_)) => {
                return Err(russh::Error::SendError);
            }
            Err(e) => tried.push(format!("{label} (agent failed to sign: {e})")),
        }
    }
    Ok(false)
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
        let check = KnownHostsCheck::new(&opts.host, opts.port, opts.known_hosts.clone())
            .accept_new(opts.accept_new_host_key);
        let config = Arc::new(client_config(opts));
        let mut handle = client::connect_stream(config, stream, check)
            .await
            .map_err(|e| e.at(&destination))?;
        let mut tried = Vec::new();
        for identity in &opts.identities {
            let outcome = match identity {
                Identity::KeyFile { path, passphrase } => {
                    auth_with_key_file(&mut handle, opts, path, passphrase.as_deref(), &mut tried)
                        .await
                }
                Identity::Agent { socket } => {
                    auth_with_agent(&mut handle, opts, socket, &mut tried).await
                }
            };
            match outcome {
                Ok(true) => {
                    return Ok(SshSession {
                        handle,
                        destination,
                    })
                }
                Ok(false) => {}
                Err(e) => {
                    // The server hung up (e.g. MaxAuthTries reached): what was tried
                    // is the useful part of the message.
                    tried.push(format!("then the connection failed: {e}"));
                    break;
                }
            }
        }
        Err(SessionError::AuthFailed {
            user: opts.user.clone(),
            destination,
            tried: if tried.is_empty() {
                "no identities: no ssh-agent (SSH_AUTH_SOCK), no -i key, no IdentityFile, no ~/.ssh/id_* key".into()
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
