//! Looking at store paths on the server without following symlinks (SFTP `LSTAT`,
//! and the attributes of directory listings), so that what
//! `relstore_core::store_path` decides is applied exactly as by the local target: a
//! store directory that is a symlink is refused before anything is written into,
//! deleted from or served out of it, and only regular files count as objects.

use std::collections::HashSet;

use futures::StreamExt;
use relstore_core::layout;
use relstore_core::root;
use relstore_core::store_path::{self, PathKind};
use relstore_core::target::TargetResult;
use relstore_core::ObjectId;

use super::{SftpTarget, SMALL_IN_FLIGHT};
use crate::sftp::{FileAttrs, FileKind};

/// The [`PathKind`] of attributes from `LSTAT` or a listing.
pub(super) fn kind_of(attrs: &FileAttrs) -> PathKind {
    match attrs.kind() {
        Some(FileKind::Dir) => PathKind::Dir,
        Some(FileKind::File) => PathKind::File,
        Some(FileKind::Symlink) => PathKind::Symlink,
        _ => PathKind::Other,
    }
}

impl SftpTarget {
    /// What is at `path`, by `LSTAT`.
    pub(super) async fn kind(&self, path: &[u8]) -> TargetResult<PathKind> {
        match self.client().lstat(path).await {
            Ok(a) => Ok(kind_of(&a)),
            Err(e) if e.is_not_found() => Ok(PathKind::Missing),
            Err(e) => Err(self.io_err("check", path, e)),
        }
    }

    /// Checks the store directory `rel`: `true` when it is a directory, `false` when
    /// missing, the refusal otherwise (see [`store_path::store_dir`]).
    pub(super) async fn store_dir(&self, rel: &str) -> TargetResult<bool> {
        let p = self.p(rel);
        store_path::store_dir(&self.show(&p), self.kind(&p).await?)
    }

    /// Checks a store directory that must exist (a release served or repaired).
    pub(super) async fn existing_store_dir(&self, rel: &str) -> TargetResult<()> {
        let p = self.p(rel);
        store_path::existing_store_dir(&self.show(&p), self.kind(&p).await?)
    }

    /// Checks every layout directory: each must be a real directory, and with
    /// `require`, the required ones must exist.
    pub(super) async fn check_layout(&self, require: bool) -> TargetResult<()> {
        for d in layout::DIRS {
            if !self.store_dir(d).await? && require && layout::REQUIRED_DIRS.contains(&d) {
                return Err(root::missing_dir(&self.location, d));
            }
        }
        Ok(())
    }

    /// Checks the prefix directories of `ids` (at most 256, looked at together;
    /// missing ones are fine: they are made on first use).
    pub(super) async fn check_object_dirs<I>(&self, ids: I) -> TargetResult<()>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<ObjectId>,
    {
        let checked: Vec<TargetResult<bool>> = futures::stream::iter(store_path::object_dirs(ids))
            .map(|d| async move { self.store_dir(&d).await })
            .buffered(SMALL_IN_FLIGHT)
            .collect()
            .await;
        for c in checked {
            c?;
        }
        Ok(())
    }

    /// Checks an object file about to be linked, copied or hashed; returns what is
    /// there (a regular file, or missing).
    pub(super) async fn object_file(&self, path: &[u8]) -> TargetResult<PathKind> {
        let k = self.kind(path).await?;
        store_path::object_file(&self.show(path), k)?;
        Ok(k)
    }

    /// Checks that the objects `ids` use are regular files before they are linked
    /// (`hardlink@openssh.com` links a symlink itself, not what it points at): the
    /// prefix directories, then every object, with the existence check's listings
    /// or lstats. A missing object is left to the link, which names its path.
    pub(super) async fn check_objects_linkable(&self, ids: &[ObjectId]) -> TargetResult<()> {
        let distinct: Vec<ObjectId> = ids
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // check_object_dirs runs first inside missing_objects.
        for id in super::upload::missing_objects(self, &distinct).await? {
            self.object_file(&self.p(&id.rel_path())).await?;
        }
        Ok(())
    }
}
