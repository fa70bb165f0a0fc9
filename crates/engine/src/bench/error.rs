//! Why `relstore bench` could not set up or run its series; each names the path or
//! tool involved.

use std::io;
use std::path::PathBuf;

use super::TreeError;

/// A failure of `relstore bench` outside relstore's own commands (those fail with
/// their own errors).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Both a SOURCE and `--generate` were given.
    #[error("give either a SOURCE or --generate N, not both")]
    SourceAndGenerate,
    /// Neither a SOURCE nor `--generate` was given.
    #[error("give a SOURCE directory or --generate N")]
    NoTree,
    /// The SOURCE is not a directory.
    #[error("{}: not a directory", .path.display())]
    NotADirectory { path: PathBuf },
    /// A `--changes` value outside 0..=100.
    #[error("--changes takes percentages between 0 and 100")]
    BadChange,
    /// The scratch directory could not be created under its parent.
    #[error("cannot create a scratch directory in {}", .parent.display())]
    Scratch {
        parent: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory inside the scratch directory could not be created.
    #[error("cannot create {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Generating the site failed.
    #[error("cannot generate a site in {}", .path.display())]
    Generate {
        path: PathBuf,
        #[source]
        source: TreeError,
    },
    /// Setting every mtime of the scratch tree (the CI rebuild step) failed.
    #[error("cannot touch {}", .path.display())]
    Touch {
        path: PathBuf,
        #[source]
        source: TreeError,
    },
    /// Changing files of the scratch tree failed.
    #[error("cannot mutate {}", .path.display())]
    Mutate {
        path: PathBuf,
        #[source]
        source: TreeError,
    },
    /// `cp` or `rsync` could not be started.
    #[error("cannot run {tool}")]
    RunTool {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    /// `cp -a` of the user's tree failed.
    #[error("cannot copy {} to the scratch directory {}: {stderr}", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        stderr: String,
    },
    /// The rsync deploy failed.
    #[error("rsync into {} failed: {stderr}", .dest.display())]
    Rsync { dest: PathBuf, stderr: String },
    /// Swapping the rsync store's `current` symlink failed.
    #[error("cannot swap {}", .path.display())]
    Swap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
