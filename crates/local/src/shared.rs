//! Shared paths (`ROOT/shared/PATH`, see `relstore_core::shared`): looked at, and
//! seeded on the first push that links them.
//!
//! `shared/` and the directories in it are the user's: a link there (to another disk)
//! is followed, only a link at the shared path itself is reported as what it is.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::shared::{validate_seed, SeedItem};
use relstore_core::target::{TargetError, TargetResult, TreeKind};

use crate::fsutil::{fsync_dir, io_err, remove_tree};
use crate::LocalTarget;

/// See `Target::shared_kinds`.
pub(crate) fn shared_kinds(
    t: &LocalTarget,
    paths: &[String],
) -> TargetResult<Vec<Option<TreeKind>>> {
    let base = t.p(layout::SHARED);
    paths
        .iter()
        .map(|p| {
            let full = base.join(p);
            match fs::symlink_metadata(&full) {
                Ok(m) => Ok(Some(kind_of(m.file_type()))),
                Err(e) if absent(&e) => Ok(None),
                Err(e) => Err(io_err("stat", &full, e)),
            }
        })
        .collect()
}

fn kind_of(ft: fs::FileType) -> TreeKind {
    if ft.is_dir() {
        TreeKind::Dir
    } else if ft.is_file() {
        TreeKind::File
    } else if ft.is_symlink() {
        TreeKind::Symlink
    } else {
        TreeKind::Other
    }
}

/// Nothing there: not found, or a file where a directory above it should be (seeding
/// then fails on creating that directory, naming it).
fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// See `Target::seed_shared`.
pub(crate) fn seed_shared(t: &LocalTarget, path: &str, items: &[SeedItem]) -> TargetResult<bool> {
    validate_seed(path, items).map_err(|e| TargetError::Other(format!("{}: {e}", t.location)))?;
    let full = t.p(layout::SHARED).join(path);
    if fs::symlink_metadata(&full).is_ok() {
        return Ok(false);
    }
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        return Err(TargetError::Other(format!(
            "{}: shared path {path:?} has no parent",
            t.location
        )));
    };
    fs::create_dir_all(parent).map_err(|e| io_err("create directory", parent, e))?;
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".relstore-seed-");
    remove_stale_seeds(parent, &prefix);
    let n = t.counter.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = prefix;
    tmp_name.extend_from_slice(format!("{}-{n}", std::process::id()).as_bytes());
    let tmp = parent.join(OsStr::from_bytes(&tmp_name));
    if let Err(e) = build(&tmp, items) {
        remove_tree(&tmp);
        return Err(e);
    }
    kill_point(points::SEED_BEFORE_RENAME);
    let placed = if matches!(items[0], SeedItem::File { .. }) {
        // link(2) never replaces: something that appeared meanwhile is kept.
        fs::hard_link(&tmp, &full)
    } else {
        fs::rename(&tmp, &full)
    };
    let result = match placed {
        Ok(()) => Ok(true),
        Err(_) if fs::symlink_metadata(&full).is_ok() => Ok(false),
        Err(e) => Err(io_err("move into place", &full, e)),
    };
    remove_tree(&tmp);
    if result.is_ok() {
        fsync_dir(parent)?;
    }
    result
}

/// Deletes what a seed that was interrupted (killed) left beside the shared path: the
/// caller holds the store's lock, so no other seed of this store is in flight.
fn remove_stale_seeds(parent: &Path, prefix: &[u8]) {
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().as_bytes().starts_with(prefix) {
            remove_tree(&e.path());
        }
    }
}

/// Creates the seed at `tmp`: directories writable while they are filled, their own
/// modes set last (deepest first); files written and synced.
fn build(tmp: &Path, items: &[SeedItem]) -> TargetResult<()> {
    let at = |p: &[u8]| -> PathBuf {
        if p.is_empty() {
            tmp.to_path_buf()
        } else {
            tmp.join(OsStr::from_bytes(p))
        }
    };
    let mut dirs = Vec::new();
    for item in items {
        let dest = at(item.path());
        match item {
            SeedItem::Dir { mode, .. } => {
                fs::create_dir(&dest).map_err(|e| io_err("create directory", &dest, e))?;
                dirs.push((dest, *mode));
            }
            SeedItem::File { mode, content, .. } => {
                let write = || -> io::Result<()> {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&dest)?;
                    f.write_all(content)?;
                    f.set_permissions(fs::Permissions::from_mode(*mode))?;
                    f.sync_all()
                };
                write().map_err(|e| io_err("write", &dest, e))?;
            }
            SeedItem::Symlink { target, .. } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &dest)
                    .map_err(|e| io_err("create symlink", &dest, e))?;
            }
        }
    }
    for (dir, mode) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
            .map_err(|e| io_err("set the mode of", dir, e))?;
    }
    Ok(())
}
