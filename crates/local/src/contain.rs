//! Looking at store paths without following symlinks, so that what
//! `relstore_core::store_path` decides can be applied: a store directory that is a
//! symlink is refused before anything is written into, deleted from or served out of
//! it, and only regular files count as objects.

use std::borrow::Borrow;
use std::fs;
use std::io;
use std::path::Path;

use relstore_core::layout;
use relstore_core::root;
use relstore_core::store_path::{self, PathKind};
use relstore_core::target::TargetResult;
use relstore_core::ObjectId;

use crate::fsutil::{io_err, show};
use crate::LocalTarget;

/// What is at `path`, by `lstat(2)`.
pub(crate) fn kind(path: &Path) -> TargetResult<PathKind> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(kind_of(&m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathKind::Missing),
        Err(e) => Err(io_err("check", path, e)),
    }
}

/// The [`PathKind`] of a file type (from `lstat(2)` or a directory listing).
pub(crate) fn kind_of(ft: &fs::FileType) -> PathKind {
    if ft.is_symlink() {
        PathKind::Symlink
    } else if ft.is_dir() {
        PathKind::Dir
    } else if ft.is_file() {
        PathKind::File
    } else {
        PathKind::Other
    }
}

/// Whether an I/O error is `EXDEV` (a rename or link across file systems).
pub(crate) fn is_cross_device(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EXDEV)
}

impl LocalTarget {
    /// Checks the store directory `rel`: `true` when it is a directory, `false` when
    /// missing, the refusal otherwise (see [`store_path::store_dir`]).
    pub(crate) fn store_dir(&self, rel: &str) -> TargetResult<bool> {
        let p = self.p(rel);
        store_path::store_dir(&show(&p), kind(&p)?)
    }

    /// Checks a store directory that must exist (a release served or repaired).
    pub(crate) fn existing_store_dir(&self, rel: &str) -> TargetResult<()> {
        let p = self.p(rel);
        store_path::existing_store_dir(&show(&p), kind(&p)?)
    }

    /// Checks every layout directory: each must be a real directory, and with
    /// `require`, the required ones must exist.
    pub(crate) fn check_layout(&self, require: bool) -> TargetResult<()> {
        for d in layout::DIRS {
            if !self.store_dir(d)? && require && layout::REQUIRED_DIRS.contains(&d) {
                return Err(root::missing_dir(&self.location, d));
            }
        }
        Ok(())
    }

    /// Checks the prefix directories of `ids` (missing ones are fine: they are made
    /// on first use).
    pub(crate) fn check_object_dirs<I>(&self, ids: I) -> TargetResult<()>
    where
        I: IntoIterator,
        I::Item: Borrow<ObjectId>,
    {
        for d in store_path::object_dirs(ids) {
            self.store_dir(&d)?;
        }
        Ok(())
    }

    /// Checks an object file about to be linked, copied or hashed; returns what is
    /// there (a regular file, or missing).
    pub(crate) fn object_file(&self, path: &Path) -> TargetResult<PathKind> {
        let k = kind(path)?;
        store_path::object_file(&show(path), k)?;
        Ok(k)
    }

    /// The refusal for a rename or link from `tmp/` into `into` across file systems.
    pub(crate) fn cross_device(&self, into: &str) -> relstore_core::TargetError {
        store_path::cross_device(
            &format!("{}/", show(&self.p(into))),
            &format!("{}/", show(&self.p(layout::TMP))),
        )
    }
}
