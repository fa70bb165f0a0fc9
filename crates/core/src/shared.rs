//! Shared paths: persistent data (uploads, logs, `.env`) that lives in `ROOT/shared/`
//! and is linked into every release instead of being part of it.
//!
//! A release links shared path `P` with a symlink entry at `P` in its manifest whose
//! target is exactly [`link_target`]`(P)`: `../` once per directory level of the link
//! inside `releases/NAME/`, then `shared/P`. The link is relative, so it resolves to
//! `ROOT/shared/P` from `releases/NAME/` and from `tmp/NAME.partial/` alike, and a root
//! that is moved or mounted elsewhere keeps working. Recording shared paths as ordinary
//! symlink entries keeps the manifest format unchanged: assembly, rollback to an evicted
//! release (which re-assembles it), `verify` and `verify --repair` treat the link like
//! any symlink, and [`linked_paths`] recognises it by its target so `diff` and `push`
//! can leave the shared data out.
//!
//! Seeding — what a push puts into `ROOT/shared/P` the first time, when nothing is
//! there — travels as [`SeedItem`]s, checked by [`validate_seed`] on the side that
//! writes them.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::manifest::{Entry, EntryKind};
use crate::path::{self, cmp_paths, PathProblem};

/// The mode given to a directory a nested shared path needs in the release and the
/// source does not have (`storage/` for `storage/logs/`).
pub const PARENT_DIR_MODE: u32 = 0o755;
/// Most content bytes one shared path may be seeded with: seeds travel in one message
/// (the helper protocol) and are meant for a `.env` or a skeleton directory, not for
/// gigabytes of uploads (copy those into `ROOT/shared/` by hand).
pub const MAX_SEED_BYTES: u64 = 64 << 20;
/// Most items one seed may have.
pub const MAX_SEED_ITEMS: usize = 100_000;

/// One shared path as the user gives it: `uploads/` (a directory: trailing `/`) or
/// `.env` (a file).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedPath {
    path: String,
    dir: bool,
}

/// Why a shared path cannot be used; one line naming the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedPathError {
    #[error("shared path {path:?}: {problem}")]
    Invalid { path: String, problem: PathProblem },
    #[error("shared path {path:?}: wildcard characters (* ? [ ] \\) are not allowed")]
    Wildcard { path: String },
    #[error("shared path {path:?} is given twice")]
    Duplicate { path: String },
    #[error("shared path {inner:?} is inside shared path {outer:?}")]
    Nested { inner: String, outer: String },
    #[error("shared path {path:?}: {parent:?} is a {kind} in the source, not a directory")]
    ParentNotDir {
        path: String,
        parent: String,
        kind: &'static str,
    },
}

impl SharedPath {
    /// Reads `uploads/`, `.env`, `storage/logs/`: relative, no `.`/`..` or empty
    /// components (as manifest paths), no wildcard characters (the push leaves the
    /// source's copy out with an exclude pattern).
    pub fn parse(text: &str) -> Result<SharedPath, SharedPathError> {
        let (body, dir) = match text.strip_suffix('/') {
            Some(b) => (b, true),
            None => (text, false),
        };
        path::validate_rel_path(body.as_bytes()).map_err(|problem| SharedPathError::Invalid {
            path: text.to_owned(),
            problem,
        })?;
        if body.contains(['*', '?', '[', ']', '\\']) {
            return Err(SharedPathError::Wildcard {
                path: text.to_owned(),
            });
        }
        Ok(SharedPath {
            path: body.to_owned(),
            dir,
        })
    }

    /// The path relative to the release root (and to `ROOT/shared/`), no trailing `/`.
    pub fn rel(&self) -> &str {
        &self.path
    }

    /// Whether it names a directory (given with a trailing `/`).
    pub fn is_dir(&self) -> bool {
        self.dir
    }

    /// `shared/PATH`, relative to the store root.
    pub fn store_rel(&self) -> String {
        format!("{}/{}", crate::layout::SHARED, self.path)
    }

    /// The symlink target of its link in a release (see [`link_target`]).
    pub fn link_target(&self) -> Vec<u8> {
        link_target(self.path.as_bytes())
    }
}

impl fmt::Display for SharedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if self.dir {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// Refuses a set of shared paths in which one is given twice or lies inside another
/// (their links would nest: the inner one would be written into shared data).
pub fn check_set(paths: &[SharedPath]) -> Result<(), SharedPathError> {
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if a.path == b.path {
                return Err(SharedPathError::Duplicate {
                    path: b.to_string(),
                });
            }
            for (inner, outer) in [(a, b), (b, a)] {
                if is_at_or_under(inner.path.as_bytes(), outer.path.as_bytes()) {
                    return Err(SharedPathError::Nested {
                        inner: inner.to_string(),
                        outer: outer.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The relative target of the link at `rel` in a release: `../` for each component of
/// `releases/NAME/` plus each directory above the link, then `shared/REL`
/// (`uploads` → `../../shared/uploads`, `a/b/logs` → `../../../../shared/a/b/logs`).
pub fn link_target(rel: &[u8]) -> Vec<u8> {
    let depth = rel.iter().filter(|b| **b == b'/').count() + 2;
    let mut out = b"../".repeat(depth);
    out.extend_from_slice(crate::layout::SHARED.as_bytes());
    out.push(b'/');
    out.extend_from_slice(rel);
    out
}

/// Whether `entry` is the link of a shared path (a symlink whose target is exactly
/// [`link_target`] of its own path).
pub fn is_shared_link(entry: &Entry) -> bool {
    match &entry.kind {
        EntryKind::Symlink { target } => *target == link_target(&entry.path),
        _ => false,
    }
}

/// The shared paths a release links, in manifest order.
pub fn linked_paths(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries
        .iter()
        .filter(|e| is_shared_link(e))
        .map(|e| e.path.clone())
        .collect()
}

/// Whether `p` is `base` or lies under it.
pub fn is_at_or_under(p: &[u8], base: &[u8]) -> bool {
    p.starts_with(base) && (p.len() == base.len() || p[base.len()] == b'/')
}

/// `entries` without anything at or under one of `paths` (what `diff` compares).
pub fn without(entries: Vec<Entry>, paths: &[Vec<u8>]) -> Vec<Entry> {
    if paths.is_empty() {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| !paths.iter().any(|p| is_at_or_under(&e.path, p)))
        .collect()
}

/// The entries of a release that links `shared`: the source's entries at or under a
/// shared path are dropped, each shared path gets its link, and the directories above
/// a nested one are added (mode [`PARENT_DIR_MODE`]) where the source lacks them. A
/// parent that the source has as a file or symlink is refused. Sorted as a manifest.
pub fn link_into(
    entries: Vec<Entry>,
    shared: &[SharedPath],
) -> Result<Vec<Entry>, SharedPathError> {
    if shared.is_empty() {
        return Ok(entries);
    }
    let bases: Vec<Vec<u8>> = shared.iter().map(|s| s.path.as_bytes().to_vec()).collect();
    let mut out = without(entries, &bases);
    let mut index: HashMap<Vec<u8>, usize> = out
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    for s in shared {
        let p = s.path.as_bytes();
        let mut at = 0;
        while let Some(slash) = p[at..].iter().position(|b| *b == b'/') {
            let parent = &p[..at + slash];
            match index.get(parent).map(|i| &out[*i].kind) {
                Some(EntryKind::Dir { .. }) => {}
                Some(other) => {
                    return Err(SharedPathError::ParentNotDir {
                        path: s.to_string(),
                        parent: path::escape(parent),
                        kind: other.name(),
                    })
                }
                None => {
                    index.insert(parent.to_vec(), out.len());
                    out.push(Entry {
                        path: parent.to_vec(),
                        kind: EntryKind::Dir {
                            mode: PARENT_DIR_MODE,
                        },
                    });
                }
            }
            at += slash + 1;
        }
        out.push(Entry {
            path: p.to_vec(),
            kind: EntryKind::Symlink {
                target: s.link_target(),
            },
        });
    }
    out.sort_unstable_by(|a, b| cmp_paths(&a.path, &b.path));
    Ok(out)
}

/// One thing to create when a shared path is seeded. `path` is relative to the shared
/// path; the first item has the empty path and is the shared path itself (a directory,
/// or the one file of a file seed). Items come parents first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeedItem {
    Dir {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        mode: u32,
    },
    /// A plain writable file (never a link to an object).
    File {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        mode: u32,
        #[serde(with = "serde_bytes")]
        content: Vec<u8>,
    },
    Symlink {
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

impl SeedItem {
    /// Its path relative to the shared path (empty: the shared path itself).
    pub fn path(&self) -> &[u8] {
        match self {
            SeedItem::Dir { path, .. }
            | SeedItem::File { path, .. }
            | SeedItem::Symlink { path, .. } => path,
        }
    }
}

/// Checks a seed before anything is written from it (a seed that reached a helper is
/// input): the shared path is valid, the first item is its root (a directory, or the
/// only item, a file), every other path is a clean relative path under a directory
/// item that came before, modes are permission bits, and the content stays within
/// [`MAX_SEED_BYTES`].
pub fn validate_seed(shared_rel: &str, items: &[SeedItem]) -> Result<(), String> {
    let bad = |why: String| Err(format!("seed of shared path {shared_rel:?}: {why}"));
    if let Err(problem) = path::validate_rel_path(shared_rel.as_bytes()) {
        return bad(problem.to_string());
    }
    if items.len() > MAX_SEED_ITEMS {
        return bad(format!("more than {MAX_SEED_ITEMS} items"));
    }
    let mut bytes = match items.first() {
        Some(SeedItem::Dir { path, mode }) if path.is_empty() && *mode & !0o7777 == 0 => 0,
        Some(SeedItem::File {
            path,
            mode,
            content,
        }) if path.is_empty() && items.len() == 1 && *mode & !0o7777 == 0 => content.len() as u64,
        _ => return bad("the first item must be the shared path itself".into()),
    };
    let mut dirs: Vec<&[u8]> = vec![b""];
    for item in &items[1..] {
        let p = item.path();
        if let Err(problem) = path::validate_rel_path(p) {
            return bad(format!("{}: {problem}", path::escape(p)));
        }
        let parent = path::parent(p).unwrap_or(b"");
        if !dirs.contains(&parent) {
            return bad(format!("{}: parent not seeded first", path::escape(p)));
        }
        match item {
            SeedItem::Dir { mode, .. } if *mode & !0o7777 == 0 => dirs.push(p),
            SeedItem::File { mode, content, .. } if *mode & !0o7777 == 0 => {
                bytes = bytes.saturating_add(content.len() as u64);
            }
            SeedItem::Symlink { target, .. } if !target.is_empty() && !target.contains(&0) => {}
            _ => return bad(format!("{}: bad mode or link target", path::escape(p))),
        }
    }
    if bytes > MAX_SEED_BYTES {
        return bad(format!("more than {MAX_SEED_BYTES} bytes of content"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
