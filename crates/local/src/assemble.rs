//! Building a release tree from objects.
//!
//! Directories are created first (in manifest order, so parents precede children) with
//! mode 0700 so the deploy user can fill them; regular files are hardlinked from their
//! objects in parallel; zero-length files are created fresh (a shared empty inode would
//! let one write change every release); symlinks are created verbatim. Directory modes
//! are applied last, when nothing more needs to be written inside them.
//!
//! A file system caps links per inode (ext4: 65,000). When linking an object fails with
//! `EMLINK`, a copy of the object is made (`…+0444.1`, `.2`, …) and linking continues
//! from it; the copy in use is remembered for the rest of the assembly.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use relstore_core::failpoint::{kill_point, points};
use relstore_core::path::join;
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{AssembleStats, TargetError, TargetResult};
use relstore_core::{Entry, EntryKind, ObjectId};

use crate::fsutil::{io_err, show};
use crate::LocalTarget;

/// Which copy of each over-linked object is currently taking new links.
#[derive(Default)]
struct CopyState {
    in_use: Mutex<HashMap<ObjectId, u32>>,
    made: AtomicU64,
}

pub(crate) fn build_tree(
    target: &LocalTarget,
    partial: &Path,
    entries: &[Entry],
    progress: &dyn Progress,
) -> TargetResult<AssembleStats> {
    progress.start(Phase::Assemble, entries.len() as u64);
    fs::create_dir(partial).map_err(|e| io_err("create directory", partial, e))?;
    let mut stats = AssembleStats::default();
    let mut dirs = Vec::new();
    for e in entries {
        if let EntryKind::Dir { mode } = e.kind {
            relstore_core::cancel::check()?;
            let p = join(partial, &e.path);
            fs::create_dir(&p).map_err(|err| io_err("create directory", &p, err))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                .map_err(|err| io_err("set mode of", &p, err))?;
            dirs.push((p, mode));
        }
    }
    stats.dirs = dirs.len() as u64;
    progress.advance(stats.dirs);

    let copies = CopyState::default();
    let counts: Vec<TargetResult<(u64, u64, u64)>> = entries
        .par_iter()
        .with_min_len(128)
        .filter(|e| !matches!(e.kind, EntryKind::Dir { .. }))
        .map(|e| {
            // Interrupted: the partial tree stays in tmp/ for the next command to clear.
            relstore_core::cancel::check()?;
            let p = join(partial, &e.path);
            let r = match e.kind {
                EntryKind::File { size: 0, mode, .. } => create_empty(&p, mode).map(|()| (0, 1, 0)),
                EntryKind::File { .. } => match e.object() {
                    Some(id) => link_object(target, &copies, &id, &p).map(|()| (1, 0, 0)),
                    None => Err(TargetError::Other("file entry without object".into())),
                },
                EntryKind::Symlink { target: ref t } => {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p)
                        .map(|()| (0, 0, 1))
                        .map_err(|err| io_err("create symlink", &p, err))
                }
                EntryKind::Dir { .. } => Ok((0, 0, 0)),
            };
            progress.advance(1);
            kill_point(points::ASSEMBLE_ENTRY);
            r
        })
        .collect();
    for c in counts {
        let (l, z, s) = c?;
        stats.links += l;
        stats.empty_files += z;
        stats.symlinks += s;
    }
    for (p, mode) in dirs.iter().rev() {
        fs::set_permissions(p, fs::Permissions::from_mode(*mode))
            .map_err(|err| io_err("set mode of", p, err))?;
    }
    fs::set_permissions(partial, fs::Permissions::from_mode(0o755))
        .map_err(|err| io_err("set mode of", partial, err))?;
    stats.object_copies = copies.made.load(Ordering::Relaxed);
    progress.finish();
    Ok(stats)
}

fn create_empty(p: &Path, mode: u32) -> TargetResult<()> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(|e| io_err("create", p, e))?;
    // Set explicitly: the umask must not decide a deployed file's mode.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("set mode of", p, e))
}

fn link_object(
    target: &LocalTarget,
    copies: &CopyState,
    id: &ObjectId,
    dest: &Path,
) -> TargetResult<()> {
    let mut copy = lock_map(copies).get(id).copied().unwrap_or(0);
    loop {
        let src = target.p(&id.copy_rel_path(copy));
        match fs::hard_link(&src, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                copy = next_copy(target, copies, id, copy)?;
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(&src).is_err() =>
            {
                return Err(TargetError::Other(format!(
                    "object {} is missing from the store (needed for {})",
                    show(&src),
                    show(dest)
                )));
            }
            Err(e) => return Err(io_err("hardlink", dest, e)),
        }
    }
}

fn lock_map(copies: &CopyState) -> std::sync::MutexGuard<'_, HashMap<ObjectId, u32>> {
    copies
        .in_use
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called when copy `full` of `id` has no link left: returns the copy to use next,
/// making it if no thread (or earlier push) already did.
fn next_copy(
    target: &LocalTarget,
    copies: &CopyState,
    id: &ObjectId,
    full: u32,
) -> TargetResult<u32> {
    let mut map = lock_map(copies);
    let known = map.get(id).copied().unwrap_or(0);
    if known > full {
        return Ok(known);
    }
    let next = full + 1;
    let next_path = target.p(&id.copy_rel_path(next));
    if fs::symlink_metadata(&next_path).is_err() {
        let from = target.p(&id.copy_rel_path(full));
        let tmp = target.tmp_name("objcopy");
        fs::copy(&from, &tmp).map_err(|e| io_err("copy object", &from, e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(id.mode))
            .map_err(|e| io_err("set mode of", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("sync", &tmp, e))?;
        fs::rename(&tmp, &next_path).map_err(|e| io_err("rename into place", &next_path, e))?;
        copies.made.fetch_add(1, Ordering::Relaxed);
    }
    map.insert(*id, next);
    Ok(next)
}

/// Re-creates `entries` inside the existing release directory `release` (see
/// [`relstore_core::Target::relink`]): each replacement is made in `tmp/` and renamed
/// over its path, so the path is never missing for a reader.
pub(crate) fn relink(target: &LocalTarget, release: &Path, entries: &[Entry]) -> TargetResult<()> {
    let copies = CopyState::default();
    for e in entries {
        let dest = join(release, &e.path);
        if let EntryKind::Dir { mode } = e.kind {
            match fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    crate::fsutil::remove_tree(&dest);
                    with_writable_parent(&dest, || fs::create_dir(&dest))
                        .map_err(|err| io_err("create directory", &dest, err))?;
                }
                Err(_) => with_writable_parent(&dest, || fs::create_dir(&dest))
                    .map_err(|err| io_err("create directory", &dest, err))?,
            }
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                .map_err(|err| io_err("set mode of", &dest, err))?;
            continue;
        }
        let tmp = target.tmp_name("relink");
        match e.kind {
            EntryKind::File { size: 0, mode, .. } => create_empty(&tmp, mode)?,
            EntryKind::File { .. } => match e.object() {
                Some(id) => link_object(target, &copies, &id, &tmp)?,
                None => return Err(TargetError::Other("file entry without object".into())),
            },
            EntryKind::Symlink { ref target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &tmp)
                    .map_err(|err| io_err("create symlink", &tmp, err))?
            }
            EntryKind::Dir { .. } => continue,
        }
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            let left = crate::fsutil::remove_tree(&dest);
            if let Some(first) = left.first() {
                let _ = fs::remove_file(&tmp);
                return Err(TargetError::Other(format!(
                    "cannot replace a directory: {first}"
                )));
            }
        }
        with_writable_parent(&dest, || fs::rename(&tmp, &dest)).map_err(|err| {
            let _ = fs::remove_file(&tmp);
            io_err("replace", &dest, err)
        })?;
    }
    Ok(())
}

/// Runs `op` on a path whose parent may be read-only (release directories keep their
/// source's modes): on EACCES the parent is made writable for the operation and its
/// mode restored afterwards.
fn with_writable_parent(path: &Path, mut op: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let Some(parent) = path.parent() else {
                return Err(e);
            };
            let mode = fs::metadata(parent)?.permissions().mode();
            fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o700))?;
            let r = op();
            fs::set_permissions(parent, fs::Permissions::from_mode(mode))?;
            r
        }
        other => other,
    }
}
