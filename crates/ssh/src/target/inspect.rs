//! Reading what a remote store holds — object files, release trees, object content —
//! and deleting trees, with many listings and reads in flight.

use futures::future::BoxFuture;
use futures::StreamExt;
use relstore_core::layout;
use relstore_core::progress::Progress;
use relstore_core::store_path;
use relstore_core::target::{StoredObject, TargetResult, TreeEntry, TreeKind};
use relstore_core::{ContentHash, ObjectId, ReleaseName};

use super::contain::kind_of;
use super::{SftpTarget, LISTINGS_IN_FLIGHT, READS_IN_FLIGHT, SMALL_IN_FLIGHT};
use crate::sftp::{FileAttrs, FileKind, OpenFlags, SftpError};

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

pub(super) async fn list_objects(t: &SftpTarget) -> TargetResult<Vec<StoredObject>> {
    t.store_dir(layout::OBJECTS).await?;
    let objects = t.p(layout::OBJECTS);
    let mut prefixes: Vec<String> = Vec::new();
    for e in t
        .client()
        .read_dir(&objects)
        .await
        .map_err(|e| t.io_err("list", &objects, e))?
    {
        let Some(name) = String::from_utf8(e.name).ok().filter(|n| n.len() == 2) else {
            continue;
        };
        // Never listed (and so never pruned) through a symlink out of the store.
        let shown = t.show(&join(&objects, name.as_bytes()));
        store_path::store_dir(&shown, kind_of(&e.attrs))?;
        prefixes.push(name);
    }
    let lists: Vec<TargetResult<Vec<StoredObject>>> = futures::stream::iter(prefixes)
        .map(|prefix| {
            let dir = join(&objects, prefix.as_bytes());
            async move {
                let entries = t
                    .client()
                    .read_dir(&dir)
                    .await
                    .map_err(|e| t.io_err("list", &dir, e))?;
                let mut out = Vec::new();
                for e in entries {
                    let Ok(name) = std::str::from_utf8(&e.name) else {
                        continue;
                    };
                    let Some((id, copy)) = ObjectId::parse_file_name(&prefix, name) else {
                        continue;
                    };
                    out.push(StoredObject {
                        id,
                        copy,
                        size: e.attrs.size.unwrap_or(0),
                    });
                }
                Ok(out)
            }
        })
        .buffer_unordered(LISTINGS_IN_FLIGHT)
        .collect()
        .await;
    let mut all = Vec::new();
    for l in lists {
        all.extend(l?);
    }
    all.sort_by_key(|o| (o.id, o.copy));
    Ok(all)
}

pub(super) async fn hash_objects(
    t: &SftpTarget,
    objects: &[StoredObject],
    progress: &dyn Progress,
) -> Vec<TargetResult<ContentHash>> {
    futures::stream::iter(objects)
        .map(|o| async move {
            // Once interrupted, the remaining objects fail fast (as locally).
            relstore_core::cancel::check()?;
            let p = t.p(&o.rel_path());
            // A symlink to a file with the right content is not an object: reported,
            // never followed.
            t.object_file(&p).await?;
            hash_file(t, &p, progress).await
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await
}

fn tree_kind(a: &FileAttrs) -> TreeKind {
    match a.kind() {
        Some(FileKind::Dir) => TreeKind::Dir,
        Some(FileKind::File) => TreeKind::File,
        Some(FileKind::Symlink) => TreeKind::Symlink,
        _ => TreeKind::Other,
    }
}

/// Every path under `releases/NAME`, listed level by level with many directories
/// read at once; symlink targets are read in one pipelined batch at the end.
pub(super) async fn list_release_tree(
    t: &SftpTarget,
    name: &ReleaseName,
) -> TargetResult<Vec<TreeEntry>> {
    t.existing_store_dir(&layout::release_dir(name)).await?;
    let root = t.p(&layout::release_dir(name));
    let mut out: Vec<TreeEntry> = Vec::new();
    let mut level: Vec<Vec<u8>> = vec![Vec::new()];
    while !level.is_empty() {
        let listed: Vec<TargetResult<(Vec<u8>, Vec<crate::sftp::DirEntry>)>> =
            futures::stream::iter(level)
                .map(|rel| {
                    let dir = if rel.is_empty() {
                        root.clone()
                    } else {
                        join(&root, &rel)
                    };
                    async move {
                        let entries = t
                            .client()
                            .read_dir(&dir)
                            .await
                            .map_err(|e| t.io_err("list", &dir, e))?;
                        Ok((rel, entries))
                    }
                })
                .buffer_unordered(LISTINGS_IN_FLIGHT)
                .collect()
                .await;
        let mut next = Vec::new();
        for l in listed {
            let (rel_dir, entries) = l?;
            for e in entries {
                let rel = if rel_dir.is_empty() {
                    e.name.clone()
                } else {
                    join(&rel_dir, &e.name)
                };
                let kind = tree_kind(&e.attrs);
                if kind == TreeKind::Dir {
                    next.push(rel.clone());
                }
                out.push(TreeEntry {
                    path: rel,
                    kind,
                    mode: e.attrs.mode().unwrap_or(0),
                    size: e.attrs.size.unwrap_or(0),
                    ino: None,
                    nlink: longname_link_count(&e.longname),
                    link_target: None,
                });
            }
        }
        level = next;
    }
    let links: Vec<(usize, TargetResult<Vec<u8>>)> = futures::stream::iter(
        out.iter()
            .enumerate()
            .filter(|(_, e)| e.kind == TreeKind::Symlink),
    )
    .map(|(i, e)| {
        let p = join(&root, &e.path);
        async move {
            let r = t
                .client()
                .readlink(&p)
                .await
                .map_err(|err| t.io_err("read symlink", &p, err));
            (i, r)
        }
    })
    .buffer_unordered(SMALL_IN_FLIGHT)
    .collect()
    .await;
    for (i, r) in links {
        out[i].link_target = Some(r?);
    }
    Ok(out)
}

impl SftpTarget {
    /// Deletes a tree that may contain read-only directories, continuing past what it
    /// cannot delete and returning those paths with the reason (like the local
    /// target). `attrs`, when known from a listing, saves a stat.
    pub(super) fn remove_tree(
        &self,
        path: Vec<u8>,
        attrs: Option<FileAttrs>,
    ) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let c = self.client();
            let attrs = match attrs {
                Some(a) => a,
                None => match c.lstat(&path).await {
                    Ok(a) => a,
                    Err(e) if e.is_not_found() => return Vec::new(),
                    Err(e) => return vec![format!("{}: {e}", self.show(&path))],
                },
            };
            if !attrs.is_dir() {
                return match c.remove(&path).await {
                    Ok(()) => Vec::new(),
                    Err(e) if e.is_not_found() => Vec::new(),
                    Err(e) => vec![format!("{}: {e}", self.show(&path))],
                };
            }
            if attrs.mode().unwrap_or(0) & 0o700 != 0o700 {
                // Without write and search permission nothing inside can be removed.
                let _ = c.set_permissions(&path, 0o700).await;
            }
            let children = match c.read_dir(&path).await {
                Ok(ch) => ch,
                Err(e) if e.is_not_found() => return Vec::new(),
                Err(e) => return vec![format!("{}: {e}", self.show(&path))],
            };
            let lists: Vec<Vec<String>> = futures::stream::iter(children)
                .map(|e| self.remove_tree(join(&path, &e.name), Some(e.attrs)))
                .buffer_unordered(64)
                .collect()
                .await;
            let mut left: Vec<String> = lists.into_iter().flatten().collect();
            match c.rmdir(&path).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    if left.is_empty() {
                        left.push(format!("{}: {e}", self.show(&path)));
                    }
                }
            }
            left
        })
    }
}

/// Link count of `name` in `dir`, from the `ls -l`-style long name OpenSSH sends
/// with each directory entry (SFTP v3 attributes have no link count). `None` when the
/// server does not say.
pub(super) async fn link_count(
    t: &SftpTarget,
    dir: &[u8],
    name: &[u8],
) -> Result<Option<u64>, SftpError> {
    let entries = t.client().read_dir(dir).await?;
    Ok(entries
        .into_iter()
        .find(|e| e.name == name)
        .and_then(|e| longname_link_count(&e.longname)))
}

/// The link count in an `ls -l`-style long name (`-r--r--r--    2 user group …`).
pub(super) fn longname_link_count(longname: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(longname);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Reads the remote file `p` through the SFTP client and returns its blake3; progress
/// advances in bytes read. Shared by object verification and release-file re-hashing.
pub(super) async fn hash_file(
    t: &SftpTarget,
    p: &[u8],
    progress: &dyn Progress,
) -> TargetResult<ContentHash> {
    let c = t.client();
    let h = c
        .open(p, OpenFlags::READ, &FileAttrs::default())
        .await
        .map_err(|e| t.io_err("open", p, e))?;
    let mut hasher = blake3::Hasher::new();
    let read = c
        .read_each(&h, |d| {
            hasher.update(d);
            progress.advance(d.len() as u64);
        })
        .await;
    let closed = c.close(&h).await;
    read.map_err(|e| t.io_err("read", p, e))?;
    closed.map_err(|e| t.io_err("close", p, e))?;
    Ok(ContentHash::from(hasher.finalize()))
}
