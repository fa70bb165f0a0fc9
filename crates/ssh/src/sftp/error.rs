//! Errors of the SFTP client: every status the server can answer with, mapped to a
//! variant that names the operation, the path(s) it was about and the server's own
//! message, so a failed deploy step says exactly which file and why.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::proto::{self, escape_bytes};

/// What a request was about, for messages: one path, or two for rename/link
/// operations. Kept as raw bytes and escaped only when displayed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The path the request named (for a symlink: the link's own path).
    pub path: Vec<u8>,
    /// The second path of rename, hardlink and symlink (shown as `path -> other`).
    pub other: Option<Vec<u8>>,
}

impl Subject {
    /// A request about one path.
    pub fn one(path: &[u8]) -> Subject {
        Subject {
            path: path.to_vec(),
            other: None,
        }
    }

    /// A request about two paths (rename, link), shown as `path -> other`.
    pub fn two(path: &[u8], other: &[u8]) -> Subject {
        Subject {
            path: path.to_vec(),
            other: Some(other.to_vec()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", escape_bytes(&self.path))?;
        if let Some(other) = &self.other {
            write!(f, " -> {}", escape_bytes(other))?;
        }
        Ok(())
    }
}

/// An SFTP failure.
///
/// Status replies keep the operation (`op`, e.g. `"open"`), the [`Subject`] and the
/// server's message. Note that SFTP v3 has no code for "already exists", "too many
/// links" (`EMLINK`), "no space" or "cross-device": OpenSSH reports them all as
/// [`SftpError::Failure`], so a caller that must tell them apart has to stat
/// afterwards.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    /// The path (or a parent) does not exist (`SSH_FX_NO_SUCH_FILE`).
    #[error("cannot {op} {subject}: no such file or directory (server: {message})")]
    NoSuchFile {
        op: &'static str,
        subject: Subject,
        message: String,
    },
    /// The server's user may not do this (`SSH_FX_PERMISSION_DENIED`).
    #[error("cannot {op} {subject}: permission denied (server: {message})")]
    PermissionDenied {
        op: &'static str,
        subject: Subject,
        message: String,
    },
    /// `SSH_FX_FAILURE`: everything SFTP v3 has no code for.
    #[error(
        "cannot {op} {subject}: the server reported a generic failure (server: {message}); \
         SFTP v3 reports e.g. 'already exists', 'too many links' and 'disk full' this way"
    )]
    Failure {
        op: &'static str,
        subject: Subject,
        message: String,
    },
    /// The server could not parse the request (`SSH_FX_BAD_MESSAGE`).
    #[error(
        "cannot {op} {subject}: the server rejected the request as malformed (server: {message})"
    )]
    BadMessage {
        op: &'static str,
        subject: Subject,
        message: String,
    },
    /// The server does not implement the request (`SSH_FX_OP_UNSUPPORTED`).
    #[error("cannot {op} {subject}: operation not supported by the server (server: {message})")]
    OpUnsupported {
        op: &'static str,
        subject: Subject,
        message: String,
    },
    /// End of file where data was required (e.g. reading a directory handle's end is
    /// not an error and never produces this).
    #[error("cannot {op} {subject}: unexpected end of file")]
    UnexpectedEof { op: &'static str, subject: Subject },
    /// Any other status code (including `NO_CONNECTION`/`CONNECTION_LOST`).
    #[error("cannot {op} {subject}: SFTP status {code} (server: {message})")]
    Status {
        op: &'static str,
        subject: Subject,
        code: u32,
        message: String,
    },
    /// An `@openssh.com` (or other) extension this server did not announce.
    #[error("the SFTP server does not offer the extension {0}")]
    ExtensionUnsupported(String),
    /// The server broke the protocol (bad packet, wrong reply type, bad handshake).
    #[error("SFTP protocol error: {0}")]
    Protocol(String),
    /// The server announced a packet larger than [`proto::MAX_INCOMING_PACKET`].
    #[error("the SFTP server sent a packet of {len} bytes; the limit is {max} bytes")]
    PacketTooLarge { len: u32, max: u32 },
    /// The session is gone (connection closed, server exited, stream error); every
    /// request in flight fails with this.
    #[error("SFTP session closed: {0}")]
    Closed(String),
    /// Reading or writing the session's stream failed (`context` says which); every
    /// request in flight fails with this. The I/O error is shared by all of them.
    #[error("SFTP session closed: {context}")]
    Broken {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Requests were outstanding and the server sent nothing for this long: the reply
    /// timeout ran out, or the connection ended after that much silence (SSH
    /// keepalives unanswered).
    #[error("no answer for {} s; the connection was given up", .0.as_secs())]
    Timeout(Duration),
    /// Reading or writing the stream failed during the handshake, or reading a local
    /// source for an upload failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result of SFTP operations.
pub type SftpResult<T> = Result<T, SftpError>;

impl SftpError {
    /// Maps a non-OK status reply to an error.
    pub(crate) fn from_status(
        code: u32,
        message: &[u8],
        op: &'static str,
        subject: Subject,
    ) -> SftpError {
        let message = String::from_utf8_lossy(message).into_owned();
        match code {
            proto::FX_EOF => SftpError::UnexpectedEof { op, subject },
            proto::FX_NO_SUCH_FILE => SftpError::NoSuchFile {
                op,
                subject,
                message,
            },
            proto::FX_PERMISSION_DENIED => SftpError::PermissionDenied {
                op,
                subject,
                message,
            },
            proto::FX_FAILURE => SftpError::Failure {
                op,
                subject,
                message,
            },
            proto::FX_BAD_MESSAGE => SftpError::BadMessage {
                op,
                subject,
                message,
            },
            proto::FX_OP_UNSUPPORTED => SftpError::OpUnsupported {
                op,
                subject,
                message,
            },
            code => SftpError::Status {
                op,
                subject,
                code,
                message,
            },
        }
    }

    /// The SFTP status code behind this error, if it came from a status reply.
    pub fn status_code(&self) -> Option<u32> {
        Some(match self {
            SftpError::NoSuchFile { .. } => proto::FX_NO_SUCH_FILE,
            SftpError::PermissionDenied { .. } => proto::FX_PERMISSION_DENIED,
            SftpError::Failure { .. } => proto::FX_FAILURE,
            SftpError::BadMessage { .. } => proto::FX_BAD_MESSAGE,
            SftpError::OpUnsupported { .. } => proto::FX_OP_UNSUPPORTED,
            SftpError::UnexpectedEof { .. } => proto::FX_EOF,
            SftpError::Status { code, .. } => *code,
            _ => return None,
        })
    }

    /// The path(s) the failed request was about, when it was about one.
    pub fn subject(&self) -> Option<&Subject> {
        match self {
            SftpError::NoSuchFile { subject, .. }
            | SftpError::PermissionDenied { subject, .. }
            | SftpError::Failure { subject, .. }
            | SftpError::BadMessage { subject, .. }
            | SftpError::OpUnsupported { subject, .. }
            | SftpError::UnexpectedEof { subject, .. }
            | SftpError::Status { subject, .. } => Some(subject),
            _ => None,
        }
    }

    /// Whether the path did not exist (`SSH_FX_NO_SUCH_FILE`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SftpError::NoSuchFile { .. })
    }

    /// Whether the session itself is unusable (as opposed to one request failing).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SftpError::Closed(_)
                | SftpError::Broken { .. }
                | SftpError::Timeout(_)
                | SftpError::Protocol(_)
                | SftpError::PacketTooLarge { .. }
        )
    }

    /// Converts to an [`std::io::Error`] of a matching kind (for callers that speak
    /// `io::Error`, like a file-system target), keeping this error as the source.
    pub fn into_io(self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match &self {
            SftpError::NoSuchFile { .. } => ErrorKind::NotFound,
            SftpError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            SftpError::OpUnsupported { .. } | SftpError::ExtensionUnsupported(_) => {
                ErrorKind::Unsupported
            }
            SftpError::UnexpectedEof { .. } => ErrorKind::UnexpectedEof,
            SftpError::Timeout(_) => ErrorKind::TimedOut,
            SftpError::Closed(_) | SftpError::Broken { .. } => ErrorKind::ConnectionAborted,
            SftpError::Protocol(_) | SftpError::PacketTooLarge { .. } => ErrorKind::InvalidData,
            SftpError::Io { source, .. } => source.kind(),
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}
