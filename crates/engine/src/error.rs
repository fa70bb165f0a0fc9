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
    #[error(transparent)]
    Store(#[from] relstore_blobstore::BlobStoreError),
    /// A manifest this command wrote could not be encoded (nothing was written).
    #[error("cannot encode the manifest of release {release}")]
    EncodeManifest {
        release: String,
        #[source]
        source: relstore_core::manifest::ManifestError,
    },
    /// This process's lock record could not be serialised (nothing was written).
    #[error("cannot write a lock record")]
    LockRecord(#[source] serde_json::Error),
    /// Another process holds the lock.
    #[error("{location} is locked by {holder}; add --wait to wait for it, or --break-lock if that process is gone for good")]
    Locked { location: String, holder: String },
    /// `--wait` ran out of time.
    #[error("gave up waiting for the lock on {location}, held by {holder}")]
    LockTimeout { location: String, holder: String },
    /// A named release is not on the target.
    #[error("release {name} does not exist on {location}")]
    NoSuchRelease { name: String, location: String },
    /// `verify --source` without `--repair`: the sources would never be read.
    #[error("--source is only used with --repair")]
    SourceWithoutRepair,
    /// A target string that cannot be used.
    #[error("{0}")]
    BadTarget(String),
    /// The command cannot proceed; the message says why and where.
    #[error("{0}")]
    Refused(String),
    /// Ctrl-C or SIGTERM stopped the command at a safe point (see
    /// [`relstore_core::cancel`]); the lock guard's drop released the lock.
    #[error(transparent)]
    Interrupted(#[from] relstore_core::cancel::Interrupted),
}

impl EngineError {
    /// Whether the command stopped because it was interrupted, whichever layer noticed
    /// (the CLI turns this into exit status 130).
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            EngineError::Interrupted(_)
                | EngineError::Target(TargetError::Interrupted(_))
                | EngineError::Scan(ScanError::Interrupted { .. })
        )
    }
}

/// Result type of the engine.
pub type EngineResult<T> = Result<T, EngineError>;

/// An error and its causes on one line (`error: cause: cause`), for reports that carry
/// a failure as text instead of failing.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
