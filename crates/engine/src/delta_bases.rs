//! Earlier versions of the objects an upload sends, for targets that take patches.
//!
//! A target behind a relstore helper can receive an object as a zstd patch against an
//! object it already stores ([`DeltaBases`]): when a sitewide template change touches
//! every page, each page then costs the bytes of its edit instead of its size. The
//! natural base of a new object is what the same path held in the release the target
//! has now — the current release for a push or a rollback, a neighbouring release for
//! a repair — and the client's copy of that base comes from the local release store,
//! which keeps every blob pushed with write-through on. A base is offered only when the
//! store holds it; the target checks every rebuilt object against its id, so a wrong
//! base only costs the saving.
//!
//! Memory stays proportional to the uploads, not to the tree: the two manifests are
//! sorted by path, so pairing paths is one merge pass, and only uploads that found a
//! base are remembered. Targets that ignore bases (local, SFTP) never ask, and nothing
//! is looked up on disk for them.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use relstore_core::path::cmp_paths;
use relstore_core::target::{DeltaBases, Upload};
use relstore_core::{ContentHash, Entry, EntryKind, ObjectId};
use relstore_release_store::ReleaseStore;

/// Base hints for one upload: new object → the object the same path had before, read
/// from the local release store.
pub(crate) struct StoreBases<'a> {
    store: Option<&'a ReleaseStore>,
    bases: HashMap<ObjectId, ObjectId>,
    /// Size of each base's content (the store checks length and hash when reading).
    sizes: HashMap<ContentHash, u64>,
}

impl<'a> StoreBases<'a> {
    /// No hints: every object travels whole.
    pub(crate) fn none() -> StoreBases<'static> {
        StoreBases {
            store: None,
            bases: HashMap::new(),
            sizes: HashMap::new(),
        }
    }

    /// Number of uploads that have a base (whether the store holds it or not).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bases.len()
    }
}

impl DeltaBases for StoreBases<'_> {
    fn base_of(&self, upload: &Upload) -> Option<ObjectId> {
        let store = self.store?;
        let base = self.bases.get(&upload.id)?;
        store.contains(&base.hash).then_some(*base)
    }

    fn open_base(&self, base: &ObjectId) -> io::Result<Box<dyn Read + Send>> {
        let (Some(store), Some(size)) = (self.store, self.sizes.get(&base.hash)) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no local copy of this base object",
            ));
        };
        store.open_blob(&base.hash, *size)
    }
}

/// Collects bases for a set of uploads from pairs of manifests (new, old).
pub(crate) struct BasesBuilder {
    /// Every object being uploaded: none of them can serve as a base, since the
    /// target does not hold it (yet).
    uploads: HashSet<ObjectId>,
    /// Objects the target is known not to hold intact (a repair's findings).
    avoid: HashSet<ObjectId>,
    bases: HashMap<ObjectId, ObjectId>,
    sizes: HashMap<ContentHash, u64>,
}

impl BasesBuilder {
    /// A builder for `uploads`.
    pub(crate) fn new(uploads: &[Upload]) -> BasesBuilder {
        BasesBuilder {
            uploads: uploads.iter().map(|u| u.id).collect(),
            avoid: HashSet::new(),
            bases: HashMap::new(),
            sizes: HashMap::new(),
        }
    }

    /// Never offers these objects as bases.
    pub(crate) fn avoid(&mut self, ids: impl IntoIterator<Item = ObjectId>) {
        self.avoid.extend(ids);
    }

    /// Whether every upload has a base already.
    pub(crate) fn complete(&self) -> bool {
        self.bases.len() >= self.uploads.len()
    }

    /// For each path in both `new` and `old` (each sorted in manifest order) whose new
    /// object is uploaded and has no base yet, takes the old object as its base: the
    /// previous content of that path, whatever its mode. When several paths share a
    /// new object, the first one found wins.
    pub(crate) fn add_pair(&mut self, new: &[Entry], old: &[Entry]) {
        let (mut i, mut j) = (0, 0);
        while i < new.len() && j < old.len() && !self.complete() {
            match cmp_paths(&new[i].path, &old[j].path) {
                Ordering::Less => i += 1,
                Ordering::Greater => j += 1,
                Ordering::Equal => {
                    self.consider(&new[i], &old[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
    }

    fn consider(&mut self, new: &Entry, old: &Entry) {
        let (Some(n), Some(o)) = (new.object(), old.object()) else {
            return;
        };
        let EntryKind::File { size, .. } = old.kind else {
            return;
        };
        if n == o
            || !self.uploads.contains(&n)
            || self.uploads.contains(&o)
            || self.avoid.contains(&o)
            || self.bases.contains_key(&n)
        {
            return;
        }
        self.bases.insert(n, o);
        self.sizes.insert(o.hash, size);
    }

    /// The hints, with base content read from `store` (none without a store).
    pub(crate) fn finish(self, store: Option<&ReleaseStore>) -> StoreBases<'_> {
        StoreBases {
            store,
            bases: self.bases,
            sizes: self.sizes,
        }
    }
}

/// Bases for `uploads` from a single older manifest (a push's or a rollback's current
/// release), read from `store`.
pub(crate) fn from_previous<'a>(
    uploads: &[Upload],
    new: &[Entry],
    old: &[Entry],
    store: Option<&'a ReleaseStore>,
) -> StoreBases<'a> {
    if store.is_none() || uploads.is_empty() || old.is_empty() {
        return StoreBases::none();
    }
    let mut builder = BasesBuilder::new(uploads);
    builder.add_pair(new, old);
    builder.finish(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, mode: u32) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: fake_hash(content),
                mode,
            },
        }
    }

    /// A distinct stand-in hash per (short) content.
    fn fake_hash(content: &str) -> ContentHash {
        let mut h = [0u8; 32];
        h[..content.len()].copy_from_slice(content.as_bytes());
        ContentHash(h)
    }

    fn upload(e: &Entry) -> Upload {
        let EntryKind::File { size, .. } = e.kind else {
            panic!("not a file")
        };
        Upload {
            id: e.object().expect("object"),
            size,
        }
    }

    #[test]
    fn pairs_paths_and_skips_uploads_unchanged_and_new_paths() {
        let old = vec![
            file("a.html", "a1", 0o644),
            file("b.html", "b1", 0o644),
            file("c.html", "c1", 0o644),
            file("run.sh", "x", 0o644),
        ];
        let new = vec![
            file("a.html", "a2", 0o644),
            file("b.html", "b1", 0o644),
            file("bb.html", "new", 0o644),
            file("c.html", "a1", 0o644),
            file("run.sh", "x", 0o755),
        ];
        let uploads: Vec<Upload> = [&new[0], &new[2], &new[4]]
            .into_iter()
            .map(upload)
            .collect();
        let mut b = BasesBuilder::new(&uploads);
        b.add_pair(&new, &old);
        assert_eq!(b.bases.len(), 2);
        assert_eq!(b.bases.get(&uploads[0].id), old[0].object().as_ref());
        assert!(!b.bases.contains_key(&uploads[1].id));
        // Same content with another mode: the old object is a perfect base.
        assert_eq!(b.bases.get(&uploads[2].id), old[3].object().as_ref());
        assert_eq!(b.sizes.get(&old[0].object().expect("id").hash), Some(&2));
        // Without a store nothing is offered.
        let bases = b.finish(None);
        assert_eq!(bases.len(), 2);
        assert_eq!(bases.base_of(&uploads[0]), None);
    }

    #[test]
    fn an_uploaded_or_avoided_object_is_never_a_base() {
        let old = vec![file("a", "1", 0o644), file("b", "2", 0o644)];
        let new = vec![file("a", "3", 0o644), file("b", "1", 0o644)];
        // "1" is uploaded again (a repair), so it cannot be the base of "3".
        let uploads = vec![upload(&new[0]), upload(&old[0])];
        let mut b = BasesBuilder::new(&uploads);
        b.avoid([old[1].object().expect("id")]);
        b.add_pair(&new, &old);
        assert!(b.bases.is_empty());
    }
}
