//! Errors of the engine: every variant names the target, release or path involved, and
//! wraps the lower layer's error as its source.

use relstore_core::release::NameError;
use relstore_core::TargetError;
use relstore_scan::ScanError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Name(#[from] NameError),
    /// Another process holds the lock.
    #[error("{location} is locked by {holder}; add --wait to wait for it, or --break-lock if that process is gone for good")]
    Locked { location: String, holder: String },
    /// `--wait` ran out of time.
    #[error("gave up waiting for the lock on {location}, held by {holder}")]
    LockTimeout { location: String, holder: String },
    /// A named release is not on the target.
    #[error("release {name} does not exist on {location}")]
    NoSuchRelease { name: String, location: String },
    /// A target string that cannot be used.
    #[error("{0}")]
    BadTarget(String),
    /// The command cannot proceed; the message says why and where.
    #[error("{0}")]
    Refused(String),
}

/// Result type of the engine.
pub type EngineResult<T> = Result<T, EngineError>;
