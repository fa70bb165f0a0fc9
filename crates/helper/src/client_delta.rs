//! The client's memory of manifests both ends have, and the deltas made against them.
//!
//! Every manifest the client reads from or stages on the helper is remembered (a
//! few, most recent first). When it later stages a new manifest or asks for a
//! release to be assembled, it sends a patch against the most recent one, with the
//! base named by release, state (staged or committed) and digest, so the helper can
//! find its own copy and make sure it is the same file.

use std::sync::Arc;

use relstore_core::Entry;

use crate::manifest_delta::{encode_entries, raw_body, unpack};
use crate::patch::{make_patch, MAX_PATCH_INPUT};
use crate::proto::{Delta, ManifestRef};

/// How many manifests are remembered.
const KEEP: usize = 4;

struct Known {
    base: ManifestRef,
    bytes: Arc<Vec<u8>>,
}

/// Manifests both ends have, most recent last.
#[derive(Default)]
pub(crate) struct ManifestCache {
    known: Vec<Known>,
}

impl ManifestCache {
    /// Remembers that both ends have `bytes` as manifest `name` (staged or not).
    pub(crate) fn remember(&mut self, name: &str, staged: bool, bytes: Vec<u8>) {
        let digest = *blake3::hash(&bytes).as_bytes();
        self.known
            .retain(|k| !(k.base.name == name && k.base.staged == staged));
        self.known.push(Known {
            base: ManifestRef {
                name: name.to_owned(),
                staged,
                digest,
            },
            bytes: Arc::new(bytes),
        });
        if self.known.len() > KEEP {
            self.known.remove(0);
        }
    }

    /// The staged manifest `name` was committed: it is now under `manifests/`.
    pub(crate) fn committed(&mut self, name: &str) {
        self.known.retain(|k| k.base.name != name || k.base.staged);
        for k in &mut self.known {
            if k.base.name == name {
                k.base.staged = false;
            }
        }
    }

    /// The base to patch against: the most recent committed manifest, else the most
    /// recent staged one.
    fn base(&self) -> Option<(ManifestRef, Arc<Vec<u8>>)> {
        self.known
            .iter()
            .rev()
            .find(|k| !k.base.staged)
            .or_else(|| self.known.last())
            .map(|k| (k.base.clone(), k.bytes.clone()))
    }

    /// Manifest file `bytes` as a patch, when one is much smaller.
    pub(crate) fn manifest_delta(&self, bytes: &[u8], level: i32) -> Option<Delta> {
        let (base, base_bytes) = self.base()?;
        let new = unpack(bytes)?;
        let old = unpack(&base_bytes)?;
        if (new.len() + old.len()) as u64 > MAX_PATCH_INPUT {
            return None;
        }
        let patch = make_patch(&old, &new, level).ok()?;
        (patch.len() + 64 < bytes.len()).then(|| Delta::Patch {
            base,
            patch,
            len: new.len() as u64,
            digest: *blake3::hash(bytes).as_bytes(),
        })
    }

    /// `entries` as a patch against the entries of a known manifest, when that is
    /// smaller than the compressed list; else the compressed list.
    pub(crate) fn entries(&self, entries: &[Entry], level: i32) -> Option<Delta> {
        let raw = encode_entries(entries)?;
        if let Some(delta) = self.entries_delta(&raw, level) {
            return Some(delta);
        }
        Some(Delta::Full(zstd::bulk::compress(&raw, level).ok()?))
    }

    fn entries_delta(&self, raw: &[u8], level: i32) -> Option<Delta> {
        let (base, base_bytes) = self.base()?;
        let old = raw_body(&base_bytes)?;
        if (raw.len() + old.len()) as u64 > MAX_PATCH_INPUT {
            return None;
        }
        let patch = make_patch(&old, raw, level).ok()?;
        // Clearly small: no need to compare with the compressed list.
        let small = patch.len() * 16 < raw.len()
            || zstd::bulk::compress(raw, level).is_ok_and(|full| patch.len() < full.len());
        small.then(|| Delta::Patch {
            base,
            patch,
            len: raw.len() as u64,
            digest: *blake3::hash(raw).as_bytes(),
        })
    }
}

/// `entries` compressed whole.
pub(crate) fn full_entries(entries: &[Entry], level: i32) -> Option<Delta> {
    Some(Delta::Full(
        zstd::bulk::compress(&encode_entries(entries)?, level).ok()?,
    ))
}
