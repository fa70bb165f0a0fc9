//! Excludes: which source paths never reach the manifest.
//!
//! Patterns use gitignore syntax (`*.map`, `node_modules/`, `/build`, `!keep.map`),
//! matched by the `ignore` crate's gitignore matcher against paths relative to the
//! source root. They come from two places, in this order, so that a later pattern wins
//! as in a `.gitignore`: the ignore file [`IGNORE_FILE`] at the source root, then the
//! `--exclude` patterns of the command line (so `--exclude '!keep.map'` can re-include
//! what the file excludes).
//!
//! The walk asks [`Excludes::is_excluded`] once per directory entry, before any system
//! call for that entry when the directory listing tells its type; an excluded directory
//! is never opened, so a `node_modules/` of a million files costs one match. As in git,
//! a path under an excluded directory cannot be re-included. Paths are matched as raw
//! bytes (an `OsStr` on Unix), so non-UTF-8 names work.
//!
//! The ignore file itself is always left out of the release: it describes the deploy,
//! it is not part of the site.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::ScanError;

/// Name of the ignore file read from the source root.
pub const IGNORE_FILE: &str = ".relstoreignore";

/// A compiled set of exclude patterns. The default excludes nothing and costs nothing
/// per entry.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    /// `None` when there are no patterns: the walk then skips matching altogether.
    matcher: Option<Gitignore>,
    /// Leave out the root's [`IGNORE_FILE`] (set when ignore files are honoured).
    hide_ignore_file: bool,
}

impl Excludes {
    /// Excludes nothing (what `verify --source` and other content-only scans want).
    pub fn none() -> Excludes {
        Excludes::default()
    }

    /// Compiles the patterns for a scan of `root`: those of `root/.relstoreignore`
    /// when `use_ignore_file` is set and the file exists, then `patterns` (from
    /// `--exclude`). A pattern that does not compile is an error naming it, and the
    /// ignore file and line it came from; an unreadable ignore file is an error too
    /// (silently deploying what the user meant to exclude is worse than stopping).
    pub fn build(
        root: &Path,
        patterns: &[String],
        use_ignore_file: bool,
    ) -> Result<Excludes, ScanError> {
        // Root "." turns off the matcher's prefix stripping: the walk passes paths that
        // are already relative to the source root.
        let mut builder = GitignoreBuilder::new(".");
        if use_ignore_file {
            let file = root.join(IGNORE_FILE);
            match std::fs::read(&file) {
                Ok(bytes) => add_file(&mut builder, &file, &bytes)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // A source that is not a directory is reported by the scan itself.
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
                Err(source) => return Err(ScanError::ReadFile { path: file, source }),
            }
        }
        for pattern in patterns {
            builder
                .add_line(None, pattern)
                .map_err(|e| ScanError::BadExclude {
                    path: root.to_path_buf(),
                    origin: "--exclude".into(),
                    pattern: pattern.clone(),
                    reason: reason(&e),
                })?;
        }
        let matcher = builder.build().map_err(|e| ScanError::BadExclude {
            path: root.to_path_buf(),
            origin: "the exclude patterns".into(),
            pattern: String::new(),
            reason: reason(&e),
        })?;
        Ok(Excludes {
            matcher: (!matcher.is_empty()).then_some(matcher),
            hide_ignore_file: use_ignore_file,
        })
    }

    /// Whether the entry at `rel` (relative to the root, raw bytes, `/`-separated) is
    /// left out; `is_dir` says whether it is a directory (symlinks are not: git treats
    /// them as files, and the walk never follows them).
    #[inline]
    pub fn is_excluded(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.hide_ignore_file && rel == IGNORE_FILE.as_bytes() {
            return true;
        }
        match &self.matcher {
            None => false,
            Some(m) => m
                .matched(Path::new(OsStr::from_bytes(rel)), is_dir)
                .is_ignore(),
        }
    }

    /// Whether this set can exclude anything at all.
    pub fn is_active(&self) -> bool {
        self.matcher.is_some() || self.hide_ignore_file
    }
}

/// Adds the lines of an ignore file, keeping the line number for errors.
fn add_file(builder: &mut GitignoreBuilder, file: &Path, bytes: &[u8]) -> Result<(), ScanError> {
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let origin = || format!("{} line {}", crate::error::shown(file), i + 1);
        // A CRLF file (edited on Windows) must not turn `*.map` into `*.map\r`.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| ScanError::BadExclude {
            path: file.to_path_buf(),
            origin: origin(),
            pattern: String::from_utf8_lossy(line).into_owned(),
            reason: "not valid UTF-8".into(),
        })?;
        builder
            .add_line(Some(PathBuf::from(file)), text)
            .map_err(|e| ScanError::BadExclude {
                path: file.to_path_buf(),
                origin: origin(),
                pattern: text.to_owned(),
                reason: reason(&e),
            })?;
    }
    Ok(())
}

/// The matcher's error without its own copy of the pattern: the message names the
/// pattern already.
fn reason(e: &ignore::Error) -> String {
    match e {
        ignore::Error::Glob { err, .. } => err.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        let owned: Vec<String> = patterns.iter().map(|s| (*s).to_owned()).collect();
        Excludes::build(Path::new("/nonexistent-root"), &owned, false).unwrap()
    }

    #[test]
    fn no_patterns_exclude_nothing_and_stay_inactive() {
        let e = ex(&[]);
        assert!(!e.is_active());
        assert!(!e.is_excluded(b"a.map", false));
        assert!(!Excludes::none().is_excluded(IGNORE_FILE.as_bytes(), false));
    }

    #[test]
    fn gitignore_semantics() {
        let e = ex(&["*.map", "node_modules/", "/build", "!keep.map"]);
        assert!(e.is_excluded(b"a.map", false));
        assert!(e.is_excluded(b"js/deep/a.map", false));
        assert!(!e.is_excluded(b"keep.map", false));
        assert!(!e.is_excluded(b"js/keep.map", false));
        // Directory-only pattern: a file of that name stays.
        assert!(e.is_excluded(b"node_modules", true));
        assert!(e.is_excluded(b"web/node_modules", true));
        assert!(!e.is_excluded(b"node_modules", false));
        // Anchored: only at the root.
        assert!(e.is_excluded(b"build", true));
        assert!(e.is_excluded(b"build", false));
        assert!(!e.is_excluded(b"docs/build", true));
        assert!(!e.is_excluded(b"index.html", false));
    }

    #[test]
    fn later_patterns_win() {
        let e = ex(&["!a.map", "*.map"]);
        assert!(e.is_excluded(b"a.map", false));
    }

    #[test]
    fn non_utf8_names_match_as_bytes() {
        let e = ex(&["*.map", "caf*/"]);
        assert!(e.is_excluded(b"caf\xe9.map", false));
        assert!(e.is_excluded(b"caf\xe9", true));
        assert!(!e.is_excluded(b"caf\xe9.html", false));
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = Excludes::build(Path::new("/r"), &["ok".into(), "[z-a].html".into()], false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[z-a].html"), "{msg}");
        assert!(msg.contains("--exclude"), "{msg}");
    }

    #[test]
    fn ignore_file_is_read_hidden_and_overridden_by_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(IGNORE_FILE),
            b"# comment\r\n*.map\r\n\r\ntmp/\n",
        )
        .unwrap();
        let e = Excludes::build(dir.path(), &["!keep.map".into()], true).unwrap();
        assert!(e.is_excluded(IGNORE_FILE.as_bytes(), false));
        assert!(!e.is_excluded(b"sub/.relstoreignore", false));
        assert!(e.is_excluded(b"a.map", false));
        assert!(!e.is_excluded(b"keep.map", false));
        assert!(e.is_excluded(b"x/tmp", true));
        // Without ignore files the file is neither read nor hidden.
        let e = Excludes::build(dir.path(), &[], false).unwrap();
        assert!(!e.is_excluded(b"a.map", false));
        assert!(!e.is_excluded(IGNORE_FILE.as_bytes(), false));
    }

    #[test]
    fn bad_line_in_ignore_file_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), b"*.map\n\n[z-a].html\n").unwrap();
        let msg = Excludes::build(dir.path(), &[], true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(".relstoreignore line 3"), "{msg}");
        assert!(msg.contains("[z-a].html"), "{msg}");
    }
}
