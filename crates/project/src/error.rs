//! Errors of the project file: each is one line naming the file, and the line and key
//! where the file says something wrong.

use std::io;

/// What is wrong with a project file, or with how the command line picked a target
/// from it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The file says something invalid at `line` (1-based); `message` names the key.
    #[error("{path}:{line}: {message}")]
    At {
        /// The project file.
        path: String,
        /// 1-based line of the offending key or value.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The file as a whole is wrong (no line to point at).
    #[error("{path}: {message}")]
    File {
        /// The project file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The command line asked the file for something it does not have (`--to NAME`
    /// with an unknown name, no target to default to): a usage error (exit status 2).
    #[error("{path}: {message}")]
    Usage {
        /// The project file.
        path: String,
        /// What is missing and how to choose.
        message: String,
    },
    /// The file or a directory on the way to it could not be read.
    #[error("{path}: cannot {op}")]
    Io {
        /// The file or directory.
        path: String,
        /// What was being done ("read", "look at").
        op: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

impl ProjectError {
    /// Whether this is a usage error of the command line rather than a bad file.
    pub fn is_usage(&self) -> bool {
        matches!(self, ProjectError::Usage { .. })
    }
}
