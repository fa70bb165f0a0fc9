//! Carrying out an [`AssemblyPlan`] and relink decisions on the local file system.
//!
//! What is built in which order, how link caps are followed to numbered copies and
//! how `verify --repair` replaces a path are decided in `relstore_core::assembly`;
//! this module executes the primitives: `mkdir(2)`, `link(2)`, a fresh `open(2)` for
//! empty files, `symlink(2)`, `chmod(2)`, and copying an object when `link(2)` fails
//! with `EMLINK`. Leaves are made in parallel on rayon's pool.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;
use relstore_core::assembly::{
    dir_not_replaced, missing_object, relink_step, AssemblyPlan, DirRepair, Found, LinkCopies,
    NextCopy, RelinkStep,
};
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::path::join;
use relstore_core::progress::{Phase, Progress};
use relstore_core::store_path::{self, PathKind};
use relstore_core::target::{AssembleStats, TargetResult};
use relstore_core::{Entry, Leaf, ObjectId};

use crate::contain::{is_cross_device, kind};
use crate::fsutil::{io_err, remove_tree, show};
use crate::LocalTarget;

/// Copy numbers of over-linked objects; copies are made under a blocking lock.
type Copies = LinkCopies<Mutex<()>>;

/// Builds the tree of `entries` at `partial` (which must not exist).
pub(crate) fn build_tree(
    target: &LocalTarget,
    partial: &Path,
    entries: &[Entry],
    progress: &dyn Progress,
) -> TargetResult<AssembleStats> {
    let plan = AssemblyPlan::new(entries);
    target.check_object_dirs(entries.iter().filter_map(Entry::object))?;
    progress.start(Phase::Assemble, entries.len() as u64);
    fs::create_dir(partial).map_err(|e| io_err("create directory", partial, e))?;
    for dir in plan.dir_levels().iter().flatten() {
        relstore_core::cancel::check()?;
        let p = join(partial, dir.path);
        fs::create_dir(&p).map_err(|err| io_err("create directory", &p, err))?;
        set_mode(&p, 0o700)?;
    }
    progress.advance(plan.dir_count());

    let copies = Copies::default();
    let results: Vec<TargetResult<()>> = plan
        .leaves()
        .par_iter()
        .with_min_len(128)
        .map(|l| {
            // Interrupted: the partial tree stays in tmp/ for the next command to clear.
            relstore_core::cancel::check()?;
            let r = make_leaf(target, &copies, l.leaf, &join(partial, l.path));
            progress.advance(1);
            kill_point(points::ASSEMBLE_ENTRY);
            r
        })
        .collect();
    results.into_iter().collect::<TargetResult<()>>()?;
    for level in plan.dir_levels().iter().rev() {
        for dir in level {
            set_mode(&join(partial, dir.path), dir.mode)?;
        }
    }
    set_mode(partial, 0o755)?;
    progress.finish();
    Ok(plan.stats(copies.made()))
}

fn set_mode(p: &Path, mode: u32) -> TargetResult<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("set mode of", p, e))
}

/// Makes one non-directory entry at `dest`.
fn make_leaf(target: &LocalTarget, copies: &Copies, leaf: Leaf, dest: &Path) -> TargetResult<()> {
    match leaf {
        Leaf::Link { object } => link_object(target, copies, &object, dest),
        Leaf::Empty { mode } => create_empty(dest, mode),
        Leaf::Symlink { target: to } => std::os::unix::fs::symlink(OsStr::from_bytes(to), dest)
            .map_err(|e| io_err("create symlink", dest, e)),
    }
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

/// Hardlinks `id` at `dest`, moving on to the next copy of the object on `EMLINK`.
fn link_object(
    target: &LocalTarget,
    copies: &Copies,
    id: &ObjectId,
    dest: &Path,
) -> TargetResult<()> {
    let mut copy = copies.in_use(id);
    loop {
        let src = target.p(&id.copy_rel_path(copy));
        // link(2) does not follow a symlink: it would link the symlink itself into
        // the release. Only a regular file is an object.
        if target.object_file(&src)? == PathKind::Missing {
            return Err(missing_object(&show(&src), &show(dest)));
        }
        match hard_link(&src, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                copy = next_copy(target, copies, id, copy)?;
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(&src).is_err() =>
            {
                return Err(missing_object(&show(&src), &show(dest)));
            }
            Err(e) if is_cross_device(&e) => return Err(target.cross_device(layout::OBJECTS)),
            Err(e) => return Err(io_err("hardlink", dest, e)),
        }
    }
}

/// `link(2)`. Unit tests can impose a lower link cap on their own store (see
/// [`test_hooks`]), since exhausting a real file system's cap takes ~65,000 links.
fn hard_link(src: &Path, dest: &Path) -> io::Result<()> {
    #[cfg(test)]
    if test_hooks::over_cap(src) {
        return Err(io::Error::from_raw_os_error(libc::EMLINK));
    }
    fs::hard_link(src, dest)
}

/// Called when copy `full` of `id` takes no more links: the copy to use next, made
/// here unless another thread (or an earlier push) already did.
fn next_copy(target: &LocalTarget, copies: &Copies, id: &ObjectId, full: u32) -> TargetResult<u32> {
    let _making = copies
        .making()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let (from, next) = match copies.after_full(id, full) {
        NextCopy::Use(copy) => return Ok(copy),
        NextCopy::Ensure { from, next } => (from, next),
    };
    let next_path = target.p(&id.copy_rel_path(next));
    let make = fs::symlink_metadata(&next_path).is_err();
    if make {
        let from = target.p(&id.copy_rel_path(from));
        target.object_file(&from)?;
        let tmp = target.tmp_name("objcopy");
        fs::copy(&from, &tmp).map_err(|e| io_err("copy object", &from, e))?;
        set_mode(&tmp, id.mode)?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("sync", &tmp, e))?;
        fs::rename(&tmp, &next_path).map_err(|e| io_err("rename into place", &next_path, e))?;
    }
    Ok(copies.ensured(id, next, make))
}

/// Re-creates `entries` inside the existing release directory `release` as
/// [`relstore_core::assembly::relink_step`] decides (see
/// [`relstore_core::Target::relink`]).
pub(crate) fn relink(target: &LocalTarget, release: &Path, entries: &[Entry]) -> TargetResult<()> {
    let copies = Copies::default();
    let mut checked: HashSet<Vec<u8>> = HashSet::new();
    for e in entries {
        check_parents(release, &e.path, &mut checked)?;
        let dest = join(release, &e.path);
        let found = match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => Found::Dir,
            Ok(_) => Found::Other,
            Err(_) => Found::Nothing,
        };
        match relink_step(e, found) {
            RelinkStep::Dir { mode, repair } => {
                if repair == DirRepair::ReplaceOther {
                    remove_tree(&dest);
                }
                if repair != DirRepair::Keep {
                    with_writable_parent(&dest, || fs::create_dir(&dest))
                        .map_err(|err| io_err("create directory", &dest, err))?;
                }
                set_mode(&dest, mode)?;
            }
            RelinkStep::Replace { leaf, clear_dir } => {
                let tmp = target.tmp_name("relink");
                make_leaf(target, &copies, leaf, &tmp)?;
                if clear_dir {
                    if let Some(first) = remove_tree(&dest).first() {
                        let _ = fs::remove_file(&tmp);
                        return Err(dir_not_replaced(first));
                    }
                }
                with_writable_parent(&dest, || fs::rename(&tmp, &dest)).map_err(|err| {
                    let _ = fs::remove_file(&tmp);
                    io_err("replace", &dest, err)
                })?;
            }
        }
    }
    Ok(())
}

/// Checks that every parent of `rel` inside `release` is a real directory (or
/// missing), so that re-creating `rel` never goes through a symlink someone put in
/// the release. `checked` remembers the parents already looked at.
fn check_parents(release: &Path, rel: &[u8], checked: &mut HashSet<Vec<u8>>) -> TargetResult<()> {
    let mut end = 0;
    while let Some(pos) = rel[end..].iter().position(|b| *b == b'/') {
        end += pos;
        let parent = &rel[..end];
        if checked.insert(parent.to_vec()) {
            let p = join(release, parent);
            store_path::store_dir(&show(&p), kind(&p)?)?;
        }
        end += 1;
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

/// A link cap for unit tests, per store root so tests running in parallel do not see
/// each other's caps.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, PoisonError};

    static CAPS: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

    /// From now on a `link(2)` of a file under `root` with `cap` links fails with
    /// `EMLINK`.
    pub(crate) fn cap_links(root: &Path, cap: u64) {
        CAPS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((root.to_path_buf(), cap));
    }

    pub(super) fn over_cap(src: &Path) -> bool {
        let caps = CAPS.lock().unwrap_or_else(PoisonError::into_inner);
        caps.iter().any(|(root, cap)| {
            src.starts_with(root) && std::fs::metadata(src).is_ok_and(|m| m.nlink() >= *cap)
        })
    }
}
