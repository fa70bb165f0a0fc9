//! Carrying out an [`AssemblyPlan`] and relink decisions on the server.
//!
//! The order of the steps, the copy numbers followed when an object takes no more
//! links and how `verify --repair` replaces a path are decided in
//! `relstore_core::assembly`; this module executes the primitives over SFTP: each
//! level's `mkdir`s pipelined, then every hardlink (`hardlink@openssh.com`), fresh
//! empty file and symlink with hundreds in flight, then directory modes.
//!
//! Link limits: SFTP v3 reports `EMLINK` as a generic failure. When a link fails,
//! the object exists, the destination does not, and the object's link count (from
//! the long name of a directory listing) is high or unknown, the failure is taken for
//! the link cap — as the local target takes `EMLINK`.

use std::collections::HashSet;

use futures::StreamExt;
use relstore_core::assembly::{
    dir_not_replaced, missing_object, partial_not_cleared, relink_step, AssemblyPlan, DirRepair,
    Found, LinkCopies, NextCopy, PlannedDir, RelinkStep,
};
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::path::escape;
use relstore_core::progress::{Phase, Progress};
use relstore_core::store_path::{self, PathKind};
use relstore_core::target::{AssembleStats, TargetError, TargetResult};
use relstore_core::{Entry, Leaf, ObjectId, ReleaseName};

use super::inspect::link_count;
use super::{is_failure, SftpTarget, SMALL_IN_FLIGHT};
use crate::sftp::{FileAttrs, OpenFlags, SftpError};

/// Below this many links a failed link is not taken for `EMLINK` (ext4 caps at
/// 65,000, xfs and btrfs far higher; no file system caps this low).
const EMLINK_SUSPECT: u64 = 1000;

/// Copy numbers of over-linked objects; copies are made under an async lock (many
/// links in flight may hit the cap at once).
type Copies = LinkCopies<tokio::sync::Mutex<()>>;

fn join(dir: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + rel.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(rel);
    p
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
    let objects: Vec<ObjectId> = entries.iter().filter_map(Entry::object).collect();
    t.check_objects_linkable(&objects).await?;
    let left = t.remove_tree(partial.clone(), None).await;
    if let Some(first) = left.first() {
        return Err(partial_not_cleared(first));
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
    let plan = AssemblyPlan::new(entries);
    progress.start(Phase::Assemble, entries.len() as u64);
    t.client()
        .mkdir(partial, 0o700)
        .await
        .map_err(|e| t.io_err("create directory", partial, e))?;
    for level in plan.dir_levels() {
        relstore_core::cancel::check()?;
        each_dir(partial, level, |p, _| async move {
            t.client()
                .mkdir(&p, 0o700)
                .await
                .map_err(|e| t.io_err("create directory", &p, e))
        })
        .await?;
    }
    progress.advance(plan.dir_count());

    let copies = &Copies::default();
    let results: Vec<TargetResult<()>> = futures::stream::iter(plan.leaves())
        .map(|l| async move {
            // Interrupted: the partial tree stays in tmp/ for the next command to clear.
            relstore_core::cancel::check()?;
            let r = make_leaf(t, copies, l.leaf, &join(partial, l.path)).await;
            progress.advance(1);
            kill_point(points::ASSEMBLE_ENTRY);
            r
        })
        .buffer_unordered(SMALL_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<TargetResult<()>>()?;

    // Directory modes, deepest level first (a read-only parent must not stop a
    // child's chmod; setattr needs no write permission on the parent anyway).
    for level in plan.dir_levels().iter().rev() {
        each_dir(partial, level, |p, mode| async move {
            t.client()
                .set_permissions(&p, mode)
                .await
                .map_err(|e| t.io_err("set mode of", &p, e))
        })
        .await?;
    }
    t.client()
        .set_permissions(partial, 0o755)
        .await
        .map_err(|e| t.io_err("set mode of", partial, e))?;
    progress.finish();
    Ok(plan.stats(copies.made()))
}

/// Runs `op` on every directory of one level (its path under `partial`, its mode),
/// pipelined; the first error in level order is returned.
async fn each_dir<F, Fut>(partial: &[u8], level: &[PlannedDir<'_>], op: F) -> TargetResult<()>
where
    F: Fn(Vec<u8>, u32) -> Fut,
    Fut: std::future::Future<Output = TargetResult<()>>,
{
    let results: Vec<TargetResult<()>> = futures::stream::iter(level)
        .map(|d| op(join(partial, d.path), d.mode))
        .buffer_unordered(SMALL_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Makes one non-directory entry at `dest`.
async fn make_leaf(
    t: &SftpTarget,
    copies: &Copies,
    leaf: Leaf<'_>,
    dest: &[u8],
) -> TargetResult<()> {
    match leaf {
        Leaf::Link { object } => link_object(t, copies, &object, dest).await,
        Leaf::Empty { mode } => create_empty(t, dest, mode).await,
        Leaf::Symlink { target } => t
            .client()
            .symlink(target, dest)
            .await
            .map_err(|e| t.io_err("create symlink", dest, e)),
    }
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

/// Hardlinks `id` at `dest`, moving on to the next copy of the object when a failed
/// link is the link cap.
async fn link_object(
    t: &SftpTarget,
    copies: &Copies,
    id: &ObjectId,
    dest: &[u8],
) -> TargetResult<()> {
    let mut copy = copies.in_use(id);
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
            return Err(missing_object(&t.show(&src), &escape(dest)));
        }
        attempts += 1;
        if is_failure(&err) && attempts <= 3 && is_link_cap(t, &src, dest).await? {
            copy = next_copy(t, copies, id, copy).await?;
            continue;
        }
        return Err(t.io_err("hardlink", dest, err));
    }
}

/// Called when copy `full` of `id` takes no more links: the copy to use next, made
/// here unless another task (or an earlier push) already did.
async fn next_copy(t: &SftpTarget, copies: &Copies, id: &ObjectId, full: u32) -> TargetResult<u32> {
    let _making = copies.making().lock().await;
    let (from, next) = match copies.after_full(id, full) {
        NextCopy::Use(copy) => return Ok(copy),
        NextCopy::Ensure { from, next } => (from, next),
    };
    let next_path = t.p(&id.copy_rel_path(next));
    // A copy made earlier is linked from: it must be a regular file too.
    let make = t.object_file(&next_path).await? == PathKind::Missing;
    if make {
        let from = t.p(&id.copy_rel_path(from));
        t.object_file(&from).await?;
        let tmp = t.tmp_path("objcopy");
        if let Err(e) = copy_file(t, &from, &tmp, id.mode).await {
            let _ = t.client().remove(&tmp).await;
            return Err(e);
        }
        t.client()
            .posix_rename(&tmp, &next_path)
            .await
            .map_err(|e| t.io_err("rename into place", &next_path, e))?;
    }
    Ok(copies.ensured(id, next, make))
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

/// Re-creates `entries` inside the existing release `name` as
/// [`relstore_core::assembly::relink_step`] decides (see
/// [`relstore_core::Target::relink`]).
pub(super) async fn relink(
    t: &SftpTarget,
    name: &ReleaseName,
    entries: &[Entry],
) -> TargetResult<()> {
    t.existing_store_dir(&layout::release_dir(name)).await?;
    let objects: Vec<ObjectId> = entries.iter().filter_map(Entry::object).collect();
    t.check_objects_linkable(&objects).await?;
    let release = t.p(&layout::release_dir(name));
    let copies = Copies::default();
    let mut checked: HashSet<Vec<u8>> = HashSet::new();
    for e in entries {
        check_parents(t, &release, &e.path, &mut checked).await?;
        let dest = join(&release, &e.path);
        let found = match t.client().lstat(&dest).await {
            Ok(a) if a.is_dir() => Found::Dir,
            Ok(_) => Found::Other,
            Err(_) => Found::Nothing,
        };
        match relink_step(e, found) {
            RelinkStep::Dir { mode, repair } => repair_dir(t, &dest, mode, repair).await?,
            RelinkStep::Replace { leaf, clear_dir } => {
                let tmp = t.tmp_path("relink");
                make_leaf(t, &copies, leaf, &tmp).await?;
                replace(t, &tmp, &dest, clear_dir).await?;
            }
        }
    }
    Ok(())
}

/// Checks that every parent of `rel` inside `release` is a real directory (or
/// missing), so that re-creating `rel` never goes through a symlink someone put in
/// the release. `checked` remembers the parents already looked at.
async fn check_parents(
    t: &SftpTarget,
    release: &[u8],
    rel: &[u8],
    checked: &mut HashSet<Vec<u8>>,
) -> TargetResult<()> {
    let mut end = 0;
    while let Some(pos) = rel[end..].iter().position(|b| *b == b'/') {
        end += pos;
        let parent = &rel[..end];
        if checked.insert(parent.to_vec()) {
            let p = join(release, parent);
            store_path::store_dir(&t.show(&p), t.kind(&p).await?)?;
        }
        end += 1;
    }
    Ok(())
}

/// Makes sure a directory is at `dest` as `repair` says, then sets its mode.
async fn repair_dir(t: &SftpTarget, dest: &[u8], mode: u32, repair: DirRepair) -> TargetResult<()> {
    if repair == DirRepair::ReplaceOther {
        let _ = t.remove_tree(dest.to_vec(), None).await;
    }
    if repair != DirRepair::Keep {
        let mkdir = || async { t.client().mkdir(dest, 0o700).await };
        with_writable_parent(t, dest, mkdir)
            .await
            .map_err(|err| t.io_err("create directory", dest, err))?;
    }
    t.client()
        .set_permissions(dest, mode)
        .await
        .map_err(|err| t.io_err("set mode of", dest, err))
}

/// Renames the finished `tmp` over `dest`, deleting a directory in the way first
/// (`clear_dir`); `tmp` is deleted when that fails.
async fn replace(t: &SftpTarget, tmp: &[u8], dest: &[u8], clear_dir: bool) -> TargetResult<()> {
    if clear_dir {
        let left = t.remove_tree(dest.to_vec(), None).await;
        if let Some(first) = left.first() {
            let _ = t.client().remove(tmp).await;
            return Err(dir_not_replaced(first));
        }
    }
    let rename = || async { t.client().posix_rename(tmp, dest).await };
    if let Err(err) = with_writable_parent(t, dest, rename).await {
        let _ = t.client().remove(tmp).await;
        return Err(t.io_err("replace", dest, err));
    }
    Ok(())
}
