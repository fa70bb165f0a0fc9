//! Exact differences between two manifests.
//!
//! Both manifests are sorted in [`cmp_paths`] order, so the comparison is one merge pass.
//! Content that left one path and appeared at another (same hash) is reported as a
//! rename rather than a remove plus an add, which is what a directory move in a site
//! generator looks like.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::hash::ContentHash;
use crate::manifest::{Entry, EntryKind};
use crate::path::{self, cmp_paths};

/// One aspect in which an entry present on both sides differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aspect {
    /// File ↔ directory ↔ symlink.
    Type,
    /// A regular file's bytes.
    Content,
    /// Permission bits (the exec bit included).
    Mode,
    /// A symlink's target.
    Target,
}

impl Aspect {
    fn name(self) -> &'static str {
        match self {
            Aspect::Type => "type",
            Aspect::Content => "content",
            Aspect::Mode => "mode",
            Aspect::Target => "target",
        }
    }
}

/// A path present on both sides whose entry changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modified {
    pub old: Entry,
    pub new: Entry,
    pub aspects: Vec<Aspect>,
}

/// A file whose content moved from one path to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renamed {
    pub old: Entry,
    pub new: Entry,
    /// The permission bits changed along the way.
    pub mode_changed: bool,
}

/// The differences from an old tree to a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub modified: Vec<Modified>,
    pub renamed: Vec<Renamed>,
}

impl Diff {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.modified.is_empty()
            && self.renamed.is_empty()
    }

    /// The JSON form printed by `relstore diff --json`; paths are escaped with
    /// [`path::escape`] so non-UTF-8 names stay exact.
    pub fn to_json(&self) -> Value {
        let count = |n: usize| n as u64;
        json!({
            "added": self.added.iter().map(entry_json).collect::<Vec<_>>(),
            "removed": self.removed.iter().map(entry_json).collect::<Vec<_>>(),
            "modified": self.modified.iter().map(|m| json!({
                "path": path::escape(&m.new.path),
                "changes": m.aspects.iter().map(|a| a.name()).collect::<Vec<_>>(),
                "old": entry_json(&m.old),
                "new": entry_json(&m.new),
            })).collect::<Vec<_>>(),
            "renamed": self.renamed.iter().map(|r| json!({
                "path": path::escape(&r.new.path),
                "from": path::escape(&r.old.path),
                "to": path::escape(&r.new.path),
                "mode_changed": r.mode_changed,
            })).collect::<Vec<_>>(),
            "counts": {
                "added": count(self.added.len()),
                "removed": count(self.removed.len()),
                "modified": count(self.modified.len()),
                "renamed": count(self.renamed.len()),
            },
        })
    }
}

/// JSON description of one entry.
pub fn entry_json(e: &Entry) -> Value {
    match &e.kind {
        EntryKind::Dir { mode } => json!({
            "path": path::escape(&e.path), "kind": "dir", "mode": format!("{mode:04o}"),
        }),
        EntryKind::File { size, hash, mode } => json!({
            "path": path::escape(&e.path), "kind": "file", "size": size,
            "mode": format!("{mode:04o}"), "hash": hash.to_hex(),
        }),
        EntryKind::Symlink { target } => json!({
            "path": path::escape(&e.path), "kind": "symlink", "target": path::escape(target),
        }),
    }
}

fn aspects(old: &EntryKind, new: &EntryKind) -> Vec<Aspect> {
    let mut out = Vec::new();
    match (old, new) {
        (EntryKind::Dir { mode: a }, EntryKind::Dir { mode: b }) => {
            if a != b {
                out.push(Aspect::Mode);
            }
        }
        (
            EntryKind::File {
                size: s1,
                hash: h1,
                mode: m1,
            },
            EntryKind::File {
                size: s2,
                hash: h2,
                mode: m2,
            },
        ) => {
            if s1 != s2 || h1 != h2 {
                out.push(Aspect::Content);
            }
            if m1 != m2 {
                out.push(Aspect::Mode);
            }
        }
        (EntryKind::Symlink { target: a }, EntryKind::Symlink { target: b }) => {
            if a != b {
                out.push(Aspect::Target);
            }
        }
        _ => out.push(Aspect::Type),
    }
    out
}

fn rename_key(e: &Entry) -> Option<ContentHash> {
    match e.kind {
        EntryKind::File { size, hash, .. } if size > 0 => Some(hash),
        _ => None,
    }
}

/// Computes the differences from `old` to `new` (both in manifest order).
pub fn diff(old: &[Entry], new: &[Entry]) -> Diff {
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let ord = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => cmp_paths(&a.path, &b.path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                d.removed.push(old[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                d.added.push(new[j].clone());
                j += 1;
            }
            Ordering::Equal => {
                let a = aspects(&old[i].kind, &new[j].kind);
                if !a.is_empty() {
                    d.modified.push(Modified {
                        old: old[i].clone(),
                        new: new[j].clone(),
                        aspects: a,
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    pair_renames(&mut d);
    d
}

/// Moves (removed, added) pairs with equal non-empty content into `renamed`, preferring
/// a pair with the same file name when one hash has several candidates.
fn pair_renames(d: &mut Diff) {
    let mut by_hash: HashMap<ContentHash, Vec<usize>> = HashMap::new();
    for (idx, e) in d.removed.iter().enumerate() {
        if let Some(h) = rename_key(e) {
            by_hash.entry(h).or_default().push(idx);
        }
    }
    if by_hash.is_empty() {
        return;
    }
    let mut taken_removed = vec![false; d.removed.len()];
    let mut taken_added = vec![false; d.added.len()];
    let mut pairs = Vec::new();
    for (aidx, e) in d.added.iter().enumerate() {
        let Some(h) = rename_key(e) else { continue };
        let Some(cands) = by_hash.get_mut(&h) else {
            continue;
        };
        if cands.is_empty() {
            continue;
        }
        let name = path::file_name(&e.path);
        let pos = cands
            .iter()
            .position(|r| path::file_name(&d.removed[*r].path) == name)
            .unwrap_or(0);
        let ridx = cands.remove(pos);
        taken_removed[ridx] = true;
        taken_added[aidx] = true;
        pairs.push((ridx, aidx));
    }
    for (ridx, aidx) in pairs {
        let old = d.removed[ridx].clone();
        let new = d.added[aidx].clone();
        let mode_changed = matches!(
            (&old.kind, &new.kind),
            (EntryKind::File { mode: a, .. }, EntryKind::File { mode: b, .. }) if a != b
        );
        d.renamed.push(Renamed {
            old,
            new,
            mode_changed,
        });
    }
    let mut k = 0;
    d.removed.retain(|_| {
        k += 1;
        !taken_removed[k - 1]
    });
    let mut k = 0;
    d.added.retain(|_| {
        k += 1;
        !taken_added[k - 1]
    });
    d.renamed
        .sort_by(|a, b| cmp_paths(&a.new.path, &b.new.path));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, content: &str, mode: u32) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: ContentHash::from(blake3::hash(content.as_bytes())),
                mode,
            },
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::Dir { mode: 0o755 },
        }
    }
    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::Symlink {
                target: target.as_bytes().to_vec(),
            },
        }
    }

    #[test]
    fn classifies_every_kind_of_change() {
        let old = vec![
            f("a.txt", "same", 0o644),
            f("bin.sh", "#!", 0o644),
            f("c.txt", "old", 0o644),
            dir("d"),
            f("d/moved.png", "pixels", 0o644),
            link("l", "a.txt"),
            f("t", "x", 0o644),
            f("z.txt", "gone", 0o644),
        ];
        let new = vec![
            f("a.txt", "same", 0o644),
            f("bin.sh", "#!", 0o755),
            f("c.txt", "new", 0o644),
            dir("e"),
            f("e/moved.png", "pixels", 0o644),
            link("l", "c.txt"),
            link("t", "a.txt"),
            f("y.txt", "fresh", 0o644),
        ];
        let d = diff(&old, &new);
        let paths = |v: &[Entry]| v.iter().map(|e| path::escape(&e.path)).collect::<Vec<_>>();
        assert_eq!(paths(&d.added), vec!["e", "y.txt"]);
        assert_eq!(paths(&d.removed), vec!["d", "z.txt"]);
        assert_eq!(d.renamed.len(), 1);
        assert_eq!(d.renamed[0].old.path, b"d/moved.png");
        assert_eq!(d.renamed[0].new.path, b"e/moved.png");
        let m: Vec<(String, Vec<Aspect>)> = d
            .modified
            .iter()
            .map(|m| (path::escape(&m.new.path), m.aspects.clone()))
            .collect();
        assert_eq!(
            m,
            vec![
                ("bin.sh".into(), vec![Aspect::Mode]),
                ("c.txt".into(), vec![Aspect::Content]),
                ("l".into(), vec![Aspect::Target]),
                ("t".into(), vec![Aspect::Type]),
            ]
        );
        assert!(diff(&new, &new).is_empty());
        let j = d.to_json();
        assert_eq!(j["counts"]["modified"], 4);
    }

    #[test]
    fn empty_files_are_never_paired_as_renames() {
        let d = diff(&[f("a", "", 0o644)], &[f("b", "", 0o644)]);
        assert!(d.renamed.is_empty());
        assert_eq!((d.added.len(), d.removed.len()), (1, 1));
    }
}
