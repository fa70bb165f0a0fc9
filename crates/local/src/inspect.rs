//! Reading what a store holds: object files, release trees, object content. Used by
//! prune (which objects exist) and verify (do trees and objects match manifests).

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rayon::prelude::*;
use relstore_core::layout;
use relstore_core::progress::Progress;
use relstore_core::store_path;
use relstore_core::target::{StoredObject, TargetResult, TreeEntry, TreeKind};
use relstore_core::{ContentHash, ObjectId, ReleaseName};

use crate::contain::kind_of;
use crate::fsutil::{io_err, show};
use crate::LocalTarget;

pub(crate) fn list_objects(t: &LocalTarget) -> TargetResult<Vec<StoredObject>> {
    t.store_dir(layout::OBJECTS)?;
    let objects = t.p(layout::OBJECTS);
    let mut prefixes: Vec<String> = Vec::new();
    for e in fs::read_dir(&objects).map_err(|e| io_err("list", &objects, e))? {
        let e = e.map_err(|err| io_err("list", &objects, err))?;
        let Some(name) = e.file_name().into_string().ok().filter(|n| n.len() == 2) else {
            continue;
        };
        // Never listed (and so never pruned) through a symlink out of the store.
        let ft = e
            .file_type()
            .map_err(|err| io_err("stat", &e.path(), err))?;
        store_path::store_dir(&show(&e.path()), kind_of(&ft))?;
        prefixes.push(name);
    }
    let lists: Vec<TargetResult<Vec<StoredObject>>> = prefixes
        .par_iter()
        .map(|prefix| {
            let dir = objects.join(prefix);
            let mut out = Vec::new();
            for e in fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))? {
                let e = e.map_err(|err| io_err("list", &dir, err))?;
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                let Some((id, copy)) = ObjectId::parse_file_name(prefix, &name) else {
                    continue;
                };
                let meta = e.metadata().map_err(|err| io_err("stat", &e.path(), err))?;
                out.push(StoredObject {
                    id,
                    copy,
                    size: meta.len(),
                });
            }
            Ok(out)
        })
        .collect();
    let mut all = Vec::new();
    for l in lists {
        all.extend(l?);
    }
    all.sort_by_key(|o| (o.id, o.copy));
    Ok(all)
}

pub(crate) fn hash_objects(
    t: &LocalTarget,
    objects: &[StoredObject],
    progress: &dyn Progress,
) -> Vec<TargetResult<ContentHash>> {
    objects
        .par_iter()
        .map_init(
            || vec![0u8; 256 * 1024],
            |buf, o| {
                // Once interrupted, the remaining objects fail fast; the engine checks
                // the flag after the batch and reports the interruption, not these.
                relstore_core::cancel::check()?;
                let p = t.p(&o.rel_path());
                // A symlink to a file with the right content is not an object: reported,
                // never followed.
                t.object_file(&p)?;
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&p)
                    .map_err(|e| io_err("open", &p, e))?;
                let mut h = blake3::Hasher::new();
                loop {
                    let n = match f.read(buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_err("read", &p, e)),
                    };
                    h.update(&buf[..n]);
                    progress.advance(n as u64);
                    relstore_core::cancel::check()?;
                }
                Ok(ContentHash::from(h.finalize()))
            },
        )
        .collect()
}

pub(crate) fn object_inodes(
    t: &LocalTarget,
    objects: &[StoredObject],
) -> Vec<TargetResult<Option<u64>>> {
    objects
        .par_iter()
        .map(|o| {
            let p = t.p(&o.rel_path());
            fs::symlink_metadata(&p)
                .map(|m| Some(m.ino()))
                .map_err(|e| io_err("stat", &p, e))
        })
        .collect()
}

pub(crate) fn list_release_tree(
    t: &LocalTarget,
    name: &ReleaseName,
) -> TargetResult<Vec<TreeEntry>> {
    t.existing_store_dir(&layout::release_dir(name))?;
    let root = t.p(&layout::release_dir(name));
    let mut out = Vec::new();
    walk(&root, &[], &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &[u8], out: &mut Vec<TreeEntry>) -> TargetResult<()> {
    for e in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let e = e.map_err(|err| io_err("list", dir, err))?;
        let path = e.path();
        let meta = fs::symlink_metadata(&path).map_err(|err| io_err("stat", &path, err))?;
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(e.file_name().as_bytes());
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            TreeKind::Dir
        } else if ft.is_file() {
            TreeKind::File
        } else if ft.is_symlink() {
            TreeKind::Symlink
        } else {
            TreeKind::Other
        };
        let link_target = if kind == TreeKind::Symlink {
            Some(
                fs::read_link(&path)
                    .map_err(|err| io_err("read symlink", &path, err))?
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else {
            None
        };
        out.push(TreeEntry {
            path: rel.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            size: meta.len(),
            ino: Some(meta.ino()),
            nlink: Some(meta.nlink()),
            link_target,
        });
        if kind == TreeKind::Dir {
            walk(&path, &rel, out)?;
        }
    }
    Ok(())
}
