//! Why a scan failed.
//!
//! Every variant names the full path involved, because "permission denied" without a
//! path is useless in a tree of a million files. Following the workspace's error
//! policy, `Display` gives the context only and the underlying cause is the
//! `#[source]`: the CLI prints the whole chain on one line
//! (`cannot read file /src/a.html: Permission denied (os error 13)`).
//! Paths are shown with [`relstore_core::path::Escaped`], so a non-UTF-8 name is
//! displayed losslessly instead of with replacement characters.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use relstore_core::path::{Escaped, PathProblem};

/// Why [`crate::scan`] could not produce a tree.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The source path does not exist (or is a dangling symlink).
    #[error("source directory {} does not exist", shown(.path))]
    SourceMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The source path exists but is not a directory (nor a symlink to one).
    #[error("source {} is not a directory", shown(.path))]
    SourceNotDir { path: PathBuf },
    /// The source path could not be examined at all.
    #[error("cannot access source {}", shown(.path))]
    SourceUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory could not be opened or listed (permission denied, I/O error, …).
    #[error("cannot read directory {}", shown(.path))]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry's metadata could not be read.
    #[error("cannot stat {}", shown(.path))]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A symlink's target could not be read.
    #[error("cannot read symlink {}", shown(.path))]
    ReadLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A regular file could not be opened or read for hashing.
    #[error("cannot read file {}", shown(.path))]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A fifo, socket or device node, refused because it cannot be deployed.
    #[error(
        "{} is a {kind}; relstore deploys files, directories and symlinks (use --skip-special to skip it)",
        shown(.path)
    )]
    Special { path: PathBuf, kind: &'static str },
    /// The entry changed, was replaced or vanished between the walk and the hash, so
    /// the manifest would not describe any real state of the tree.
    #[error("{} changed during the scan ({what}); re-run when the source is stable", shown(.path))]
    Changed {
        path: PathBuf,
        what: String,
        #[source]
        source: Option<io::Error>,
    },
    /// A path the manifest format cannot hold (longer than PATH_MAX, say).
    #[error("cannot deploy path {}", shown(.path))]
    BadPath {
        path: PathBuf,
        #[source]
        problem: PathProblem,
    },
    /// An exclude pattern (from `--exclude` or the ignore file) that does not compile;
    /// `path` is the ignore file, or the source root for `--exclude` patterns.
    #[error("invalid exclude pattern \"{pattern}\" ({origin}): {reason}")]
    BadExclude {
        path: PathBuf,
        /// `--exclude`, or `FILE line N`.
        origin: String,
        pattern: String,
        reason: String,
    },
    /// The scan stopped because the command was interrupted (Ctrl-C).
    #[error("scan of {} interrupted", shown(.path))]
    Interrupted {
        path: PathBuf,
        #[source]
        source: relstore_core::cancel::Interrupted,
    },
}

impl ScanError {
    /// The path the error is about, for callers that report or count by path.
    pub fn path(&self) -> &Path {
        match self {
            ScanError::SourceMissing { path, .. }
            | ScanError::SourceNotDir { path }
            | ScanError::SourceUnreadable { path, .. }
            | ScanError::ReadDir { path, .. }
            | ScanError::Stat { path, .. }
            | ScanError::ReadLink { path, .. }
            | ScanError::ReadFile { path, .. }
            | ScanError::Special { path, .. }
            | ScanError::Changed { path, .. }
            | ScanError::BadPath { path, .. }
            | ScanError::BadExclude { path, .. }
            | ScanError::Interrupted { path, .. } => path,
        }
    }
}

pub(crate) fn shown(path: &Path) -> Escaped<'_> {
    Escaped(path.as_os_str().as_bytes())
}

/// Classifies an error from opening or reading an entry the walk saw: an entry that
/// disappeared or turned into a symlink is a change during the scan, not an
/// unreadable file, and the user's remedy differs (wait, versus fix permissions).
pub(crate) fn classify(
    path: PathBuf,
    err: io::Error,
    otherwise: fn(PathBuf, io::Error) -> ScanError,
) -> ScanError {
    match err.raw_os_error() {
        Some(libc::ENOENT) => ScanError::Changed {
            path,
            what: "it vanished".into(),
            source: Some(err),
        },
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => ScanError::Changed {
            path,
            what: "it was replaced".into(),
            source: Some(err),
        },
        _ => otherwise(path, err),
    }
}
