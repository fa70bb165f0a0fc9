//! `verify --repair` of a manifest that cannot be read (truncated, overwritten) while
//! its release directory is still on the target: the manifest is rebuilt from the tree.
//!
//! Directories and symlinks are taken as they are. A regular file is linked to its
//! object, so its object is found by inode where the target reports inode numbers
//! (the inodes of the stored objects of the right sizes), and otherwise — or for a
//! file linked to no stored object — by re-hashing the file through the target. A
//! linked file shows its object's mode, whose write bits are always cleared; the
//! source's mode is taken from another release's manifest that has the same path with
//! the same object, else the source mode other releases usually record for that
//! object mode, else the mode found. The release keeps its time when
//! the manifest's header can still be read; otherwise a current release is placed
//! right after every other release and any other release right before them (where an
//! unreadable header sorted it already).
//!
//! The rebuilt manifest is validated, staged and committed like a push's, so it
//! replaces the corrupt one in one rename.

use std::collections::{HashMap, HashSet};

use relstore_core::hash::stored_mode;
use relstore_core::layout;
use relstore_core::path::escape;
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{TreeEntry, TreeKind};
use relstore_core::{ContentHash, Entry, EntryKind, Manifest, ObjectId, ReleaseName, Target};

use crate::catalog::{Catalog, ReleaseInfo};
use crate::error::{error_chain, EngineError, EngineResult};

/// Rebuilds, checks and records the manifest of `release` from its tree. `others` are
/// the readable manifests of other releases (for source modes). Returns the manifest,
/// or why it could not be rebuilt (nothing was written then).
pub(super) fn rebuild_manifest(
    target: &dyn Target,
    catalog: &Catalog,
    release: &ReleaseInfo,
    others: &[&Manifest],
    progress: &dyn Progress,
) -> EngineResult<Result<Manifest, String>> {
    let name = &release.name;
    let tree = target.list_release_tree(name)?;
    let objects = match identify_files(target, name, &tree, progress)? {
        Ok(o) => o,
        Err(why) => return Ok(Err(why)),
    };
    let modes = SourceModes::of(others);
    let mut entries = Vec::with_capacity(tree.len());
    for t in &tree {
        let kind = match t.kind {
            TreeKind::Dir => EntryKind::Dir {
                mode: t.mode & 0o7777,
            },
            TreeKind::Symlink => match &t.link_target {
                Some(target) => EntryKind::Symlink {
                    target: target.clone(),
                },
                None => return Ok(Err(format!("{}: symlink target unknown", escape(&t.path)))),
            },
            TreeKind::File if t.size == 0 => EntryKind::File {
                size: 0,
                hash: ContentHash::empty(),
                mode: t.mode & 0o7777,
            },
            TreeKind::File => match objects.get(&t.path) {
                Some(id) => EntryKind::File {
                    size: t.size,
                    hash: id.hash,
                    mode: modes.get(&t.path, id),
                },
                None => return Ok(Err(format!("{}: object unknown", escape(&t.path)))),
            },
            TreeKind::Other => {
                // Never part of a release: verify reports it as an extra path.
                progress.note(&format!(
                    "releases/{name}/{}: neither file, directory nor symlink: left out of the rebuilt manifest",
                    escape(&t.path)
                ));
                continue;
            }
        };
        entries.push(Entry {
            path: t.path.clone(),
            kind,
        });
    }
    let manifest = Manifest::new(name, created(catalog, release), entries);
    if let Err(e) = manifest.validate(Some(name.as_str())) {
        return Ok(Err(format!("the tree does not make a valid manifest: {e}")));
    }
    let bytes = manifest
        .encode()
        .map_err(|source| EngineError::EncodeManifest {
            release: name.to_string(),
            source,
        })?;
    target.stage_manifest(name, &bytes)?;
    target.commit_manifest(name)?;
    progress.note(&format!(
        "rebuilt {} from releases/{name} ({} entries)",
        layout::manifest_file(name),
        manifest.entries.len()
    ));
    Ok(Ok(manifest))
}

/// The object of every non-empty regular file of `tree`, by path: by inode where the
/// target tells them, else by re-hashing. `Err`: a file could not be re-hashed.
fn identify_files(
    target: &dyn Target,
    name: &ReleaseName,
    tree: &[TreeEntry],
    progress: &dyn Progress,
) -> EngineResult<Result<HashMap<Vec<u8>, ObjectId>, String>> {
    let files: Vec<&TreeEntry> = tree
        .iter()
        .filter(|t| t.kind == TreeKind::File && t.size > 0)
        .collect();
    let by_inode = object_inodes(target, &files)?;
    let mut found = HashMap::with_capacity(files.len());
    let mut rehash: Vec<&TreeEntry> = Vec::new();
    for t in files {
        match t.ino.and_then(|ino| by_inode.get(&ino)) {
            Some(id) => {
                found.insert(t.path.clone(), *id);
            }
            None => rehash.push(t),
        }
    }
    if rehash.is_empty() {
        return Ok(Ok(found));
    }
    let paths: Vec<Vec<u8>> = rehash.iter().map(|t| t.path.clone()).collect();
    progress.start(Phase::Verify, rehash.iter().map(|t| t.size).sum());
    let hashes = target.hash_release_files(name, &paths, progress);
    progress.finish();
    relstore_core::cancel::check()?;
    for (t, hash) in rehash.into_iter().zip(hashes) {
        match hash {
            Ok(h) => {
                found.insert(t.path.clone(), ObjectId::for_file(h, t.mode & 0o7777));
            }
            Err(e) => {
                return Ok(Err(format!(
                    "cannot re-hash {}: {}",
                    escape(&t.path),
                    error_chain(&e)
                )))
            }
        }
    }
    Ok(Ok(found))
}

/// Stored objects (every copy) of the sizes `files` have, by inode; empty when the
/// target has no inode numbers.
fn object_inodes(
    target: &dyn Target,
    files: &[&TreeEntry],
) -> EngineResult<HashMap<u64, ObjectId>> {
    if files.iter().all(|t| t.ino.is_none()) {
        return Ok(HashMap::new());
    }
    let sizes: HashSet<u64> = files.iter().map(|t| t.size).collect();
    let mut objects = target.list_objects()?;
    objects.retain(|o| sizes.contains(&o.size));
    let inodes = target.object_inodes(&objects);
    Ok(objects
        .iter()
        .zip(inodes)
        .filter_map(|(o, ino)| Some((ino.ok()??, o.id)))
        .collect())
}

/// Source modes of other releases, to give a rebuilt file back the write bits its
/// object lost.
struct SourceModes<'a> {
    /// Content and source mode by path.
    by_path: HashMap<&'a [u8], (ContentHash, u32)>,
    /// The source mode most often recorded for each stored mode.
    usual: HashMap<u32, u32>,
}

impl<'a> SourceModes<'a> {
    fn of(others: &[&'a Manifest]) -> SourceModes<'a> {
        let mut by_path = HashMap::new();
        let mut counts: HashMap<(u32, u32), u64> = HashMap::new();
        for m in others {
            for e in &m.entries {
                if let EntryKind::File { hash, mode, .. } = e.kind {
                    by_path.insert(e.path.as_slice(), (hash, mode));
                    *counts.entry((stored_mode(mode), mode)).or_default() += 1;
                }
            }
        }
        let mut usual: HashMap<u32, (u32, u64)> = HashMap::new();
        for ((stored, mode), n) in counts {
            let best = usual.entry(stored).or_insert((mode, n));
            if (n, std::cmp::Reverse(mode)) > (best.1, std::cmp::Reverse(best.0)) {
                *best = (mode, n);
            }
        }
        SourceModes {
            by_path,
            usual: usual.into_iter().map(|(s, (m, _))| (s, m)).collect(),
        }
    }

    /// The source mode of `path` linked to `id`: another release's where it has the
    /// same object at that path; else the one usual for objects of that mode; else the
    /// object's own (a wrong guess of write bits only makes the next push of an
    /// unchanged tree a new release).
    fn get(&self, path: &[u8], id: &ObjectId) -> u32 {
        match self.by_path.get(path) {
            Some((hash, mode)) if *hash == id.hash && stored_mode(*mode) == id.mode => *mode,
            _ => self.usual.get(&id.mode).copied().unwrap_or(id.mode),
        }
    }
}

/// The time a rebuilt release gets (see the module documentation).
fn created(catalog: &Catalog, release: &ReleaseInfo) -> i64 {
    if let Some(h) = &release.header {
        return h.created_unix_ns;
    }
    let known = catalog
        .releases
        .iter()
        .filter(|r| r.name != release.name)
        .filter_map(|r| r.header.as_ref().map(|h| h.created_unix_ns));
    if release.current {
        known
            .max()
            .map_or_else(relstore_core::release::now_unix_ns, |t| t.saturating_add(1))
    } else {
        known.min().map_or(0, |t| t.saturating_sub(1))
    }
}
