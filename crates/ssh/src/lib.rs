//! SSH transport for relstore's SSH target: a russh connection ([`session`]) and a
//! hand-written, pipelining SFTP v3 client that keeps paths, names and handles as raw
//! bytes ([`sftp`]).
//!
//! On top of it: [`spec`] parses `[user@]host:path` / `ssh://…` targets, [`config`]
//! resolves the host as OpenSSH does (`ssh -G`, else a built-in reader) into a
//! [`session::Route`] (direct, ProxyCommand or a ProxyJump chain) and applies `-i`,
//! known_hosts and agent settings ([`RemoteOptions`]),
//! and [`target::SftpTarget`] implements relstore's `Target` trait over SFTP alone.
//! [`helper`] runs a relstore on the server over an exec channel of the same
//! connection and returns a helper-protocol target when one can run.
//! The integration tests in `tests/` run everything against a real OpenSSH `sshd` on
//! loopback.

pub mod config;
pub mod helper;
pub mod session;
pub mod sftp;
pub mod spec;
pub mod target;

pub use config::RemoteOptions;
pub use helper::{connect, connect_for_command, HelperMode, HelperRequest, HelperStatus};
pub use session::{ConnectOptions, Identity, SessionError, SshSession};
pub use sftp::{SftpClient, SftpConfig, SftpError};
pub use spec::RemoteSpec;
pub use target::SftpTarget;
