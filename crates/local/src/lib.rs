//! The embedded target: a store root on a local (or locally mounted) file system.
//!
//! Every step uses the kernel directly: `link(2)` to assemble releases from objects,
//! `rename(2)` to publish objects, releases and `current`, and one `syncfs(2)` per batch
//! of uploads instead of an fsync per object. Work that is many independent system
//! calls (existence checks, uploads, links, deletions) runs on rayon's pool.
//!
//! Layout and the meaning of each step are fixed in `relstore_core::layout`; which
//! roots `open` accepts and how releases are built and repaired are decided in
//! `relstore_core::root` and `relstore_core::assembly` (shared with the SSH target),
//! and executed here.
//!
//! Long operations (uploads, assembly, object deletion and hashing) check
//! [`relstore_core::cancel`] per object or entry and per buffer, and stop with
//! [`TargetError::Interrupted`]; what they leave is in `tmp/` or complete.

mod assemble;
mod contain;
mod fsutil;
mod inspect;
mod shared;
mod staging;
#[cfg(test)]
mod tests;
mod upload;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use relstore_core::assembly::partial_not_cleared;
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout::{self, LockFile};
use relstore_core::manifest::HEADER_PREFIX_LEN;
use relstore_core::progress::Progress;
use relstore_core::root::{self, OpenAction, RootFound};
use relstore_core::store_path;
use relstore_core::target::{
    AssembleStats, BlobSource, Opened, Removal, StoredObject, TargetError, TargetResult, TreeEntry,
    Upload,
};
use relstore_core::{ContentHash, Entry, ObjectId, ReleaseName, Target};

use fsutil::{fsync_dir, io_err, remove_tree, show, write_atomic};

/// A store root on the local file system.
pub struct LocalTarget {
    root: PathBuf,
    location: String,
    counter: AtomicU64,
}

impl LocalTarget {
    /// A target at `root` (nothing is touched until [`Target::open`]).
    pub fn new(root: impl Into<PathBuf>) -> LocalTarget {
        let root = root.into();
        let location = show(&root);
        LocalTarget {
            root,
            location,
            counter: AtomicU64::new(0),
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A fresh name under `tmp/` for something this process writes.
    pub(crate) fn tmp_name(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.p(layout::TMP)
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    fn create_layout_dirs(&self) -> TargetResult<()> {
        for d in layout::DIRS {
            let p = self.p(d);
            match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create directory", &p, e)),
            }
        }
        Ok(())
    }

    /// What is at the root, for [`root::decide_open`].
    fn probe_root(&self) -> TargetResult<RootFound> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(RootFound::NotADirectory),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(match fs::read_link(&self.root) {
                    Ok(to) => RootFound::DanglingSymlink {
                        points_at: show(&to),
                    },
                    Err(_) => RootFound::Missing,
                })
            }
            Err(e) => return Err(io_err("access", &self.root, e)),
        }
        let config = self.p(layout::CONFIG);
        match fs::read(&config) {
            Ok(config) => Ok(RootFound::Marked { config }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let empty = fs::read_dir(&self.root)
                    .map_err(|e| io_err("list", &self.root, e))?
                    .next()
                    .is_none();
                Ok(if empty {
                    RootFound::EmptyDir
                } else {
                    RootFound::Unmarked
                })
            }
            Err(e) => Err(io_err("read", &config, e)),
        }
    }

    /// Lays out a fresh store in the (empty) root.
    fn lay_out(&self) -> TargetResult<Opened> {
        // The marker first: a directory holding it is recognisably ours even if the
        // layout below is interrupted, and `open(create)` completes it.
        write_atomic(
            &self.p(layout::CONFIG),
            layout::config_contents().as_bytes(),
        )?;
        self.create_layout_dirs()?;
        fsync_dir(&self.root)?;
        Ok(Opened::Created)
    }

    fn read_optional(&self, path: &Path) -> TargetResult<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path, e)),
        }
    }

    /// Renames a completed temp object into `objects/`, creating its prefix directory
    /// on first use.
    fn publish_object(&self, tmp: &Path, id: &ObjectId) -> TargetResult<()> {
        let dest = self.p(&id.rel_path());
        match fs::rename(tmp, &dest) {
            Ok(()) => Ok(()),
            Err(e) if contain::is_cross_device(&e) => Err(self.cross_device(layout::OBJECTS)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = dest.parent() {
                    match fs::create_dir(parent) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_err("create directory", parent, e)),
                    }
                }
                fs::rename(tmp, &dest).map_err(|e| match contain::is_cross_device(&e) {
                    true => self.cross_device(layout::OBJECTS),
                    false => io_err("rename into place", &dest, e),
                })
            }
            Err(e) => Err(io_err("rename into place", &dest, e)),
        }
    }
}

impl Target for LocalTarget {
    fn location(&self) -> &str {
        &self.location
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn open(&self, create: bool) -> TargetResult<Opened> {
        let found = self.probe_root()?;
        let config = show(&self.p(layout::CONFIG));
        match root::decide_open(&found, create, &self.location, &config)? {
            OpenAction::CreateRoot => {
                fs::create_dir_all(&self.root)
                    .map_err(|e| io_err("create directory", &self.root, e))?;
                self.lay_out()
            }
            OpenAction::Layout => self.lay_out(),
            OpenAction::Existing { complete } => {
                // Checked before anything is created: mkdir must not go through a
                // symlinked store directory either.
                self.check_layout(!complete)?;
                if complete {
                    self.create_layout_dirs()?;
                }
                Ok(Opened::Existing)
            }
        }
    }

    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool> {
        // Written under a private name, then hardlinked to the lock: link(2) fails if the
        // lock exists, so the lock appears atomically and always complete.
        let lock = self.p(which.file_name());
        let private = self.p(&format!("{}.{}.new", which.file_name(), unique_suffix()));
        write_atomic(&private, contents)?;
        let result = fs::hard_link(&private, &lock);
        let _ = fs::remove_file(&private);
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("create lock", &lock, e)),
        }
    }

    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>> {
        self.read_optional(&self.p(which.file_name()))
    }

    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool> {
        let lock = self.p(which.file_name());
        let aside = self.p(&format!("{}.{}.old", which.file_name(), unique_suffix()));
        match fs::rename(&lock, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("remove lock", &lock, e)),
        }
        kill_point(points::LOCK_ASIDE);
        let found = fs::read(&aside).map_err(|e| io_err("read", &aside, e))?;
        if found == expected {
            fs::remove_file(&aside).map_err(|e| io_err("remove", &aside, e))?;
            Ok(true)
        } else {
            // Someone else's lock: put it back (link fails only if yet another lock
            // appeared meanwhile, in which case that one stands).
            let _ = fs::hard_link(&aside, &lock);
            let _ = fs::remove_file(&aside);
            Ok(false)
        }
    }

    fn current(&self) -> TargetResult<Option<ReleaseName>> {
        self.read_release_link(layout::CURRENT)
    }

    fn list_release_dirs(&self) -> TargetResult<Vec<String>> {
        list_names(&self.p(layout::RELEASES), None)
    }

    fn list_manifests(&self) -> TargetResult<Vec<String>> {
        list_names(&self.p(layout::MANIFESTS), Some(layout::MANIFEST_SUFFIX))
    }

    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>> {
        let p = self.p(&layout::manifest_file(name));
        fs::read(&p).map_err(|e| io_err("read", &p, e))
    }

    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>> {
        names
            .par_iter()
            .map(|name| {
                let p = self.p(&layout::manifest_file(name));
                let mut buf = Vec::new();
                File::open(&p)
                    .and_then(|f| f.take(HEADER_PREFIX_LEN as u64).read_to_end(&mut buf))
                    .map_err(|e| io_err("read", &p, e))?;
                Ok(buf)
            })
            .collect()
    }

    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        self.read_optional(&self.p(&layout::staged_manifest_file(name)))
    }

    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()> {
        write_atomic(&self.p(&layout::staged_manifest_file(name)), bytes)
    }

    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()> {
        let from = self.p(&layout::staged_manifest_file(name));
        let to = self.p(&layout::manifest_file(name));
        fs::rename(&from, &to).map_err(|e| io_err("rename into place", &to, e))?;
        fsync_dir(&self.p(layout::MANIFESTS))
    }

    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>> {
        self.check_object_dirs(ids)?;
        let flags: Vec<TargetResult<bool>> = ids
            .par_iter()
            .with_min_len(256)
            .map(|id| {
                let k = contain::kind(&self.p(&id.rel_path()))?;
                Ok(!store_path::object_stored(k))
            })
            .collect();
        let mut missing = Vec::new();
        for (id, flag) in ids.iter().zip(flags) {
            if flag? {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        self.store_dir(layout::TMP)?;
        self.check_object_dirs(uploads.iter().map(|u| &u.id))?;
        upload::put_objects(self, uploads, source, progress)
    }

    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats> {
        let dest = self.p(&layout::release_dir(name));
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(TargetError::ReleaseExists {
                name: name.to_string(),
                location: self.location.clone(),
            });
        }
        let partial = self.p(&layout::partial_dir(name));
        let left = remove_tree(&partial);
        if let Some(first) = left.first() {
            return Err(partial_not_cleared(first));
        }
        let stats = assemble::build_tree(self, &partial, entries, progress)?;
        kill_point(points::ASSEMBLE_BEFORE_RENAME);
        fs::rename(&partial, &dest).map_err(|e| match contain::is_cross_device(&e) {
            true => self.cross_device(layout::RELEASES),
            false => io_err("rename into place", &dest, e),
        })?;
        fsync_dir(&self.p(layout::RELEASES))?;
        Ok(stats)
    }

    fn activate(&self, name: &ReleaseName) -> TargetResult<()> {
        // Never point `current` through a symlink out of the store, nor rename over
        // something that is not the symlink relstore swaps.
        self.existing_store_dir(&layout::release_dir(name))?;
        let current = self.p(layout::CURRENT);
        store_path::current_link(&show(&current), contain::kind(&current)?)?;
        let tmp = self.tmp_name("current");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(layout::current_link_target(name), &tmp)
            .map_err(|e| io_err("create symlink", &tmp, e))?;
        kill_point(points::SWAP_BEFORE_RENAME);
        fs::rename(&tmp, &current).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("replace", &current, e)
        })?;
        fsync_dir(&self.root)
    }

    fn next(&self) -> TargetResult<Option<ReleaseName>> {
        self.read_release_link(layout::NEXT)
    }

    fn set_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        self.write_next(name)
    }

    fn run_hook(
        &self,
        run: &relstore_core::hook::HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<relstore_core::hook::HookExit> {
        self.hook(run, output)
    }

    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal> {
        let dir = self.p(layout::RELEASES).join(name);
        let aside = self.tmp_name("removing");
        match fs::rename(&dir, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::default()),
            Err(e) => return Err(io_err("move aside", &dir, e)),
        }
        Ok(Removal {
            left_behind: remove_tree(&aside),
        })
    }

    fn clear_tmp(&self) -> TargetResult<Removal> {
        self.store_dir(layout::TMP)?;
        let tmp = self.p(layout::TMP);
        let children: Vec<PathBuf> = match fs::read_dir(&tmp) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::default()),
            Err(e) => return Err(io_err("list", &tmp, e)),
        };
        let left_behind = children
            .par_iter()
            .flat_map_iter(|c| remove_tree(c))
            .collect();
        Ok(Removal { left_behind })
    }

    fn list_objects(&self) -> TargetResult<Vec<StoredObject>> {
        inspect::list_objects(self)
    }

    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal> {
        self.check_object_dirs(objects.iter().map(|o| &o.id))?;
        let left_behind = objects
            .par_iter()
            .with_min_len(64)
            .filter_map(|o| {
                if relstore_core::cancel::requested() {
                    return None; // reported once, below
                }
                let p = self.p(&o.rel_path());
                let r = match fs::remove_file(&p) {
                    Ok(()) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => Some(format!("{}: {e}", show(&p))),
                };
                progress.advance(1);
                kill_point(points::GC_REMOVED);
                r
            })
            .collect();
        relstore_core::cancel::check()?;
        Ok(Removal { left_behind })
    }

    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        inspect::hash_objects(self, objects, progress)
    }

    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>> {
        inspect::object_inodes(self, objects)
    }

    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>> {
        inspect::list_release_tree(self, name)
    }

    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()> {
        self.existing_store_dir(&layout::release_dir(name))?;
        self.check_object_dirs(entries.iter().filter_map(Entry::object))?;
        assemble::relink(self, &self.p(&layout::release_dir(name)), entries)
    }

    fn list_pins(&self) -> TargetResult<Vec<String>> {
        match self.store_dir(layout::PINS)? {
            false => Ok(Vec::new()),
            true => list_names(&self.p(layout::PINS), None),
        }
    }

    fn shared_kinds(
        &self,
        paths: &[String],
    ) -> TargetResult<Vec<Option<relstore_core::target::TreeKind>>> {
        shared::shared_kinds(self, paths)
    }

    fn seed_shared(
        &self,
        path: &str,
        items: &[relstore_core::shared::SeedItem],
    ) -> TargetResult<bool> {
        shared::seed_shared(self, path, items)
    }

    fn remove_store(&self) -> TargetResult<()> {
        let left = fsutil::remove_tree(&self.root);
        match left.first() {
            None => Ok(()),
            Some(first) => Err(TargetError::Other(format!(
                "{}: could not delete {} path(s), first {first}",
                self.location,
                left.len()
            ))),
        }
    }

    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        self.store_dir(layout::PINS)?;
        let dir = self.p(layout::PINS);
        let marker = dir.join(name.as_str());
        if pinned {
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create directory", &dir, e)),
            }
            write_atomic(&marker, b"")?;
        } else {
            match fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &marker, e)),
            }
        }
        fsync_dir(&dir)
    }
}

/// File names in `dir`, as [`layout::listed_names`] filters them.
fn list_names(dir: &Path, suffix: Option<&str>) -> TargetResult<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        names.push(entry.file_name().into_vec());
    }
    Ok(layout::listed_names(names, suffix))
}

/// A name suffix no other thread or process of this host uses at the same time: the
/// pid, and a counter for the threads of one process (the helper and the tests take
/// locks from several threads).
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}
