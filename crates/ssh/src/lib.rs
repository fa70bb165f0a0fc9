//! SSH transport for relstore's SSH target: a russh connection ([`session`]) and a
//! hand-written, pipelining SFTP v3 client that keeps paths, names and handles as raw
//! bytes ([`sftp`]).
//!
//! This crate is the protocol layer only. The `Target` implementation (store layout,
//! batching of uploads/links, lock handling) builds on it; the integration tests in
//! `tests/` run everything against a real OpenSSH `sshd` on loopback.

pub mod session;
pub mod sftp;

pub use session::{ConnectOptions, Identity, SessionError, SshSession};
pub use sftp::{SftpClient, SftpConfig, SftpError};
