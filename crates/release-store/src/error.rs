//! Errors of the local release store.
//!
//! Every variant names the file or directory involved: the store lives in the user's
//! home, and "permission denied" without a path sends people hunting. Like the rest of
//! relstore, the cause is a `source()` and not repeated in the message, so `{:#}`
//! (anyhow) prints each part once.

use std::io;
use std::path::PathBuf;

use relstore_core::manifest::ManifestError;
use relstore_core::release::NameError;

/// What went wrong in the local release store.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseStoreError {
    /// A file-system operation on the store failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory exists but was not created by relstore as a release store; it is
    /// never written to, so pointing `RELSTORE_STORE_DIR` at the wrong place loses nothing.
    #[error("{}: {reason}", path.display())]
    NotAStore { path: PathBuf, reason: String },
    /// The store was written by a relstore with a newer (or unknown) store format.
    #[error("{}: local release store format {found} is not supported by this relstore (supports {supported})", path.display())]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    /// A source file could not be stored: unreadable, or changed since it was hashed.
    #[error("cannot store {} in the local release store", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A release name that cannot become a file name in the store.
    #[error("cannot record release {name:?} in the local release store")]
    ReleaseName {
        name: String,
        #[source]
        source: NameError,
    },
    /// A manifest (given to record, or recorded earlier) does not decode or validate.
    #[error("manifest {what} is unusable")]
    Manifest {
        what: String,
        #[source]
        source: ManifestError,
    },
    /// Pruning deletes blobs no recorded manifest references; while another handle on
    /// the store is open, a push may be about to record a manifest that references a
    /// blob it found present, so pruning refuses rather than race it.
    #[error("local release store {} is in use by another relstore process (lock {}); not pruned", root.display(), lock.display())]
    Busy { root: PathBuf, lock: PathBuf },
    /// Ctrl-C (see [`relstore_core::cancel`]): blobs written so far were published, the
    /// rest were not started.
    #[error("interrupted while writing to the local release store")]
    Interrupted,
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
    source: io::Error,
) -> ReleaseStoreError {
    ReleaseStoreError::Io {
        op,
        path: path.into(),
        source,
    }
}
