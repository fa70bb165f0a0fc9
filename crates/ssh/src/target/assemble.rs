//! Building a release tree on the server from stored objects.
//!
//! As in the local target: directories first (mode 0700 so we can fill them), level
//! by level so parents exist before their children, each level's `mkdir`s pipelined;
//! then every hardlink (`hardlink@openssh.com`), fresh empty file and symlink with
//! hundreds in flight; then directory modes, deepest first.
//!
//! Link limits: SFTP v3 reports `EMLINK` as a generic failure. When a link fails,
//! the object exists, the destination does not, and the object's link count (from
//! the long name of a directory listing) is high or unknown, a numbered copy of the
//! object (`…+0444.1`) is made and linking continues from it — as the local target
//! does on `EMLINK`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use futures::StreamExt;
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::path::escape;
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{AssembleStats, TargetError, TargetResult};
use relstore_core::{Entry, EntryKind, ObjectId, ReleaseName};

use super::inspect::link_count;
use super::{is_failure, other, SftpTarget, SMALL_IN_FLIGHT};
use crate::sftp::{FileAttrs, OpenFlags, SftpError};

/// Below this many links a failed link is not taken for `EMLINK` (ext4 caps at
/// 65,000, xfs and btrfs far higher; no file system caps this low).
const EMLINK_SUSPECT: u64 = 1000;

/// Which copy of each over-linked object is currently taking new links.
#[derive(Default)]
struct CopyState {
    in_use: Mutex<HashMap<ObjectId, u32>>,
    /// Serialises making copies (rare): two links hitting the cap at once make one.
    making: tokio::sync::Mutex<()>,
    made: AtomicU64,
}

impl CopyState {
    fn get(&self, id: &ObjectId) -> u32 {
        self.in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    fn set(&self, id: ObjectId, copy: u32) {
        self.in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, copy);
    }
}

fn join(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + rel.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(rel);
    p
}

fn depth(path: &[u8]) -> usize {
    path.iter().filter(|b| **b == b'/').count()
}

pub(super) async fn assemble(
    t: &SftpTarget,
    name: &ReleaseName,
    entries: &[Entry],
    progress: &dyn Progress,
) -> TargetResult<AssembleStats> {
    let dest = t.p(&layout::release_dir(name));
    if t.exists(&dest)
        .await
        .map_err(|e| t.io_err("check", &dest, e))?
    {
        return Err(TargetError::ReleaseExists {
            name: name.to_string(),
            location: t.location.clone(),
        });
    }
    let partial = t.p(&layout::partial_dir(name));
    // Many mkdir/link requests: spread them over more sftp-server processes.
    t.widen(entries.len()).await;
    let left = t.remove_tree(partial.clone(), None).await;
    if let Some(first) = left.first() {
        return Err(other(format!(
            "cannot clear an old partial release: {first}"
        )));
    }
    let stats = build_tree(t, &partial, entries, progress).await?;
    kill_point(points::ASSEMBLE_BEFORE_RENAME);
    t.client()
        .posix_rename(&partial, &dest)
        .await
        .map_err(|e| t.io_err("rename into place", &dest, e))?;
    Ok(stats)
}

async fn build_tree(
    t: &SftpTarget,
    partial: &[u8],
    entries: &[Entry],
    progress: &dyn Progress,
) -> TargetResult<AssembleStats> {
    progress.start(Phase::Assemble, entries.len() as u64);
    t.client()
        .mkdir(partial, 0o700)
        .await
        .map_err(|e| t.io_err("create directory", partial, e))?;
    let mut stats = AssembleStats::default();

    // Directories, level by level.
    let mut levels: Vec<Vec<(Vec<u8>, u32)>> = Vec::new();
    for e in entries {
        if let EntryKind::Dir { mode } = e.kind {
            let d = depth(&e.path);
            if levels.len() <= d {
                levels.resize_with(d + 1, Vec::new);
            }
            levels[d].push((join(partial, &e.path), mode));
        }
    }
    for level in &levels {
        relstore_core::cancel::check()?;
        let results: Vec<TargetResult<()>> = futures::stream::iter(level)
            .map(|(p, _)| async move {
                t.client()
                    .mkdir(p, 0o700)
                    .await
                    .map_err(|e| t.io_err("create directory", p, e))
            })
            .buffer_unordered(SMALL_IN_FLIGHT)
            .collect()
            .await;
        for r in results {
            r?;
        }
        stats.dirs += level.len() as u64;
    }
    progress.advance(stats.dirs);

    // Files and symlinks.
    let copies = CopyState::default();
    let copies = &copies;
    let counts: Vec<TargetResult<(u64, u64, u64)>> = futures::stream::iter(
        entries
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Dir { .. })),
    )
    .map(|e| async move {
        // Interrupted: the partial tree stays in tmp/ for the next command to clear.
        relstore_core::cancel::check()?;
        let p = join(partial, &e.path);
        let r = match e.kind {
            EntryKind::File { size: 0, mode, .. } => {
                create_empty(t, &p, mode).await.map(|()| (0, 1, 0))
            }
            EntryKind::File { .. } => match e.object() {
                Some(id) => link_object(t, copies, &id, &p).await.map(|()| (1, 0, 0)),
                None => Err(other("file entry without object")),
            },
            EntryKind::Symlink { ref target } => t
                .client()
                .symlink(target, &p)
                .await
                .map(|()| (0, 0, 1))
                .map_err(|err| t.io_err("create symlink", &p, err)),
            EntryKind::Dir { .. } => Ok((0, 0, 0)),
        };
        progress.advance(1);
        kill_point(points::ASSEMBLE_ENTRY);
        r
    })
    .buffer_unordered(SMALL_IN_FLIGHT)
    .collect()
    .await;
    for c in counts {
        let (l, z, s) = c?;
        stats.links += l;
        stats.empty_files += z;
        stats.symlinks += s;
    }

    // Directory modes, deepest level first (a read-only parent must not stop a
    // child's chmod; setattr needs no write permission on the parent anyway).
    for level in levels.iter().rev() {
        let results: Vec<TargetResult<()>> = futures::stream::iter(level)
            .map(|(p, mode)| async move {
                t.client()
                    .set_permissions(p, *mode)
                    .await
                    .map_err(|e| t.io_err("set mode of", p, e))
            })
            .buffer_unordered(SMALL_IN_FLIGHT)
            .collect()
            .await;
        for r in results {
            r?;
        }
    }
    t.client()
        .set_permissions(partial, 0o755)
        .await
        .map_err(|e| t.io_err("set mode of", partial, e))?;
    stats.object_copies = copies.made.load(Ordering::Relaxed);
    progress.finish();
    Ok(stats)
}

/// A fresh zero-length file with exactly `mode` (the server's umask must not decide
/// a deployed file's mode).
async fn create_empty(t: &SftpTarget, p: &[u8], mode: u32) -> TargetResult<()> {
    let c = t.client();
    let h = c
        .create(p, mode & 0o7777)
        .await
        .map_err(|e| t.io_err("create", p, e))?;
    let set = c.fsetstat(&h, &FileAttrs::with_permissions(mode)).await;
    let closed = c.close(&h).await;
    set.map_err(|e| t.io_err("set mode of", p, e))?;
    closed.map_err(|e| t.io_err("close", p, e))
}

fn missing_object(t: &SftpTarget, src: &[u8], dest: &[u8]) -> TargetError {
    other(format!(
        "object {} is missing from the store (needed for {})",
        t.show(src),
        escape(dest)
    ))
}

/// Whether a failed link of `src` is the link cap (`EMLINK`).
async fn is_link_cap(t: &SftpTarget, src: &[u8], dest: &[u8]) -> TargetResult<bool> {
    if t.exists(dest)
        .await
        .map_err(|e| t.io_err("check", dest, e))?
    {
        return Ok(false);
    }
    let Some(slash) = src.iter().rposition(|b| *b == b'/') else {
        return Ok(true);
    };
    let count = link_count(t, &src[..slash], &src[slash + 1..])
        .await
        .map_err(|e| t.io_err("list", &src[..slash], e))?;
    Ok(count.is_none_or(|n| n >= EMLINK_SUSPECT))
}

async fn link_object(
    t: &SftpTarget,
    copies: &CopyState,
    id: &ObjectId,
    dest: &[u8],
) -> TargetResult<()> {
    let mut copy = copies.get(id);
    let mut attempts = 0;
    loop {
        let src = t.p(&id.copy_rel_path(copy));
        let err = match t.client().hardlink(&src, dest).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let src_exists = t
            .exists(&src)
            .await
            .map_err(|e| t.io_err("check", &src, e))?;
        if !src_exists {
            return Err(missing_object(t, &src, dest));
        }
        attempts += 1;
        if is_failure(&err) && attempts <= 3 && is_link_cap(t, &src, dest).await? {
            copy = next_copy(t, copies, id, copy).await?;
            continue;
        }
        return Err(t.io_err("hardlink", dest, err));
    }
}

/// Called when copy `full` of `id` takes no more links: returns the copy to use next,
/// making it if no task (or earlier push) already did.
async fn next_copy(
    t: &SftpTarget,
    copies: &CopyState,
    id: &ObjectId,
    full: u32,
) -> TargetResult<u32> {
    let _making = copies.making.lock().await;
    let known = copies.get(id);
    if known > full {
        return Ok(known);
    }
    let next = full + 1;
    let next_path = t.p(&id.copy_rel_path(next));
    if !t
        .exists(&next_path)
        .await
        .map_err(|e| t.io_err("check", &next_path, e))?
    {
        let from = t.p(&id.copy_rel_path(full));
        let tmp = t.tmp_path("objcopy");
        if let Err(e) = copy_file(t, &from, &tmp, id.mode).await {
            let _ = t.client().remove(&tmp).await;
            return Err(e);
        }
        t.client()
            .posix_rename(&tmp, &next_path)
            .await
            .map_err(|e| t.io_err("rename into place", &next_path, e))?;
        copies.made.fetch_add(1, Ordering::Relaxed);
    }
    copies.set(*id, next);
    Ok(next)
}

/// Copies a file on the server through this client (reads pipelined per chunk,
/// writes pipelined by the writer), with exactly `mode`, fsync'd when possible.
async fn copy_file(t: &SftpTarget, from: &[u8], to: &[u8], mode: u32) -> TargetResult<()> {
    let c = t.client();
    let h = c
        .open(from, OpenFlags::READ, &FileAttrs::default())
        .await
        .map_err(|e| t.io_err("open", from, e))?;
    let result = async {
        let mut w = c
            .create_file(to, 0o600)
            .await
            .map_err(|e| t.io_err("create", to, e))?;
        let chunk = c.limits().max_read_len;
        let mut off = 0u64;
        loop {
            match c.read(&h, off, chunk).await {
                Ok(Some(d)) if !d.is_empty() => {
                    off += d.len() as u64;
                    w.write(&d).await.map_err(|e| t.io_err("write", to, e))?;
                }
                Ok(_) => break,
                Err(e) => return Err(t.io_err("read", from, e)),
            }
        }
        if let Some(wh) = w.handle() {
            c.fsetstat(wh, &FileAttrs::with_permissions(mode))
                .await
                .map_err(|e| t.io_err("set mode of", to, e))?;
        }
        w.finish(t.has_fsync)
            .await
            .map_err(|e| t.io_err("write", to, e))?;
        Ok(())
    }
    .await;
    let _ = c.close(&h).await;
    result
}

/// Runs a mutation whose parent directory may be read-only (release directories
/// keep their source's modes): on permission denied the parent is made writable for
/// the operation and its mode restored afterwards.
async fn with_writable_parent<F, Fut>(t: &SftpTarget, path: &[u8], op: F) -> Result<(), SftpError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), SftpError>>,
{
    match op().await {
        Err(e @ SftpError::PermissionDenied { .. }) => {
            let Some(slash) = path.iter().rposition(|b| *b == b'/') else {
                return Err(e);
            };
            let parent = &path[..slash];
            let c = t.client();
            let mode = c.stat(parent).await?.mode().unwrap_or(0o755);
            c.set_permissions(parent, mode | 0o700).await?;
            let r = op().await;
            c.set_permissions(parent, mode).await?;
            r
        }
        other => other,
    }
}

/// See [`relstore_core::Target::relink`]: each replacement is made in `tmp/` and
/// renamed over its path, so the path is never missing for a reader.
pub(super) async fn relink(
    t: &SftpTarget,
    name: &ReleaseName,
    entries: &[Entry],
) -> TargetResult<()> {
    let release = t.p(&layout::release_dir(name));
    let copies = CopyState::default();
    for e in entries {
        let dest = join(&release, &e.path);
        if let EntryKind::Dir { mode } = e.kind {
            let mkdir = || async { t.client().mkdir(&dest, 0o700).await };
            match t.client().lstat(&dest).await {
                Ok(a) if a.is_dir() => {}
                Ok(_) => {
                    let _ = t.remove_tree(dest.clone(), None).await;
                    with_writable_parent(t, &dest, mkdir)
                        .await
                        .map_err(|err| t.io_err("create directory", &dest, err))?;
                }
                Err(_) => with_writable_parent(t, &dest, mkdir)
                    .await
                    .map_err(|err| t.io_err("create directory", &dest, err))?,
            }
            t.client()
                .set_permissions(&dest, mode)
                .await
                .map_err(|err| t.io_err("set mode of", &dest, err))?;
            continue;
        }
        let tmp = t.tmp_path("relink");
        match e.kind {
            EntryKind::File { size: 0, mode, .. } => create_empty(t, &tmp, mode).await?,
            EntryKind::File { .. } => match e.object() {
                Some(id) => link_object(t, &copies, &id, &tmp).await?,
                None => return Err(other("file entry without object")),
            },
            EntryKind::Symlink { ref target } => t
                .client()
                .symlink(target, &tmp)
                .await
                .map_err(|err| t.io_err("create symlink", &tmp, err))?,
            EntryKind::Dir { .. } => continue,
        }
        if matches!(t.client().lstat(&dest).await, Ok(a) if a.is_dir()) {
            let left = t.remove_tree(dest.clone(), None).await;
            if let Some(first) = left.first() {
                let _ = t.client().remove(&tmp).await;
                return Err(other(format!("cannot replace a directory: {first}")));
            }
        }
        let rename = || async { t.client().posix_rename(&tmp, &dest).await };
        if let Err(err) = with_writable_parent(t, &dest, rename).await {
            let _ = t.client().remove(&tmp).await;
            return Err(t.io_err("replace", &dest, err));
        }
    }
    Ok(())
}
