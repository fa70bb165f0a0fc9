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
    Store(#[from] relstore_release_store::ReleaseStoreError),
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
    /// The manifest of a release whose directory is still on the target does not
    /// decode: commands that need it stop, `verify --repair` rebuilds it from the tree.
    #[error("corrupt manifest {path} (run `relstore verify {location} --repair` to rebuild it)")]
    ManifestNeedsRebuild {
        path: String,
        location: String,
        #[source]
        source: relstore_core::manifest::ManifestError,
    },
    /// The connection to the target was lost, or stopped answering, during a step of
    /// the command; the source says how (`no answer for 9 s`, closed).
    #[error("{location}: connection lost while {step}")]
    ConnectionLost {
        location: String,
        step: &'static str,
        #[source]
        source: TargetError,
    },
    /// A named release is not on the target.
    #[error("release {name} does not exist on {location}")]
    NoSuchRelease { name: String, location: String },
    /// `verify --source` without `--repair`: the sources would never be read.
    #[error("--source is only used with --repair")]
    SourceWithoutRepair,
    /// A `diff` operand that is neither a directory, a manifest file nor
    /// `TARGET@RELEASE`.
    #[error("{spec}: no such directory or manifest file, and not TARGET@RELEASE")]
    BadOperand { spec: String },
    /// `TARGET@current` of a store where no release is current.
    #[error("{location}: no release is current")]
    NoCurrentRelease { location: String },
    /// `rollback` without a release on a store where no release is current.
    #[error("{location}: nothing to roll back, no release is current")]
    NothingToRollBack { location: String },
    /// `rollback` without a release when the current one is the oldest.
    #[error("{location}: no release before {current} to roll back to")]
    NoEarlierRelease { location: String, current: String },
    /// An evicted release cannot be re-assembled: some of its objects are neither on
    /// the target nor in any source given; nothing was changed.
    #[error("{location}: cannot rebuild evicted release {release}: {objects} objects are no longer on the target and {looked}; nothing was changed; paths needing them: {paths}")]
    CannotRebuild {
        location: String,
        release: String,
        /// How many objects are unavailable.
        objects: usize,
        /// Where relstore looked (`not in …`, or that nothing was given).
        looked: String,
        /// The first paths that need them, comma-separated.
        paths: String,
    },
    /// `current` names a release whose manifest is neither recorded nor staged.
    #[error("{location}: current release {release} has no manifest; the store needs repair")]
    CurrentWithoutManifest { location: String, release: String },
    /// A push whose store is inside its source tree (or the other way round).
    #[error("{location}: the target and the source {} contain one another; push to a store outside the source tree", .source_dir.display())]
    StoreInsideSource {
        location: String,
        source_dir: std::path::PathBuf,
    },
    /// A `--shared` path (or set of them) that cannot be used.
    #[error(transparent)]
    SharedPath(#[from] relstore_core::shared::SharedPathError),
    /// A shared file is on neither the target nor in the source: nothing was changed.
    #[error("{location}: shared file {path} does not exist yet and the source has no {path} to seed it from; put it in {location}/shared/{path} or add it to the source")]
    SharedFileMissing { location: String, path: String },
    /// `ROOT/shared/PATH` is there but not what `--shared` says it is.
    #[error("{location}: shared path {path} is a {found} in {location}/shared, not a {want}")]
    SharedKindMismatch {
        location: String,
        path: String,
        found: &'static str,
        want: &'static str,
    },
    /// The source's copy of a shared path cannot seed it.
    #[error("shared path {path}: the source's copy {source_path} {problem}")]
    SharedSeed {
        path: String,
        source_path: String,
        problem: String,
    },
    /// `relstore bench` could not set up or run its series.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
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

/// `e` as a failure of `step` on `target` when it is the connection to the target
/// that failed (a stalled or cut SSH connection then names the step it broke); any
/// other error unchanged.
pub fn during_step(
    target: &dyn relstore_core::Target,
    step: &'static str,
    e: TargetError,
) -> EngineError {
    use std::io::ErrorKind;
    match &e {
        TargetError::Io { source, .. }
            if matches!(
                source.kind(),
                ErrorKind::TimedOut
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionReset
                    | ErrorKind::BrokenPipe
                    | ErrorKind::NotConnected
            ) =>
        {
            EngineError::ConnectionLost {
                location: target.location().to_owned(),
                step,
                source: e,
            }
        }
        _ => EngineError::Target(e),
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
