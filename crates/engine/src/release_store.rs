//! The client side of "any release ever pushed can come back": every push writes the
//! blobs of its release through to the local release store ([`ReleaseStore`]) and records
//! its manifest there, so a release whose directory and objects were later pruned on
//! the target can be rebuilt by `rollback`, and a corrupt object repaired by
//! `verify --repair`, without the source tree of the day.
//!
//! The store is keyed per target: [`store_key`] names a target the same way however the
//! user spelled it, so its retention (`relstore store prune --keep N`) counts the
//! releases of one target together.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use relstore_core::path::join;
use relstore_core::progress::NoProgress;
use relstore_core::{ContentHash, Entry, EntryKind, ObjectId, Target};
pub use relstore_release_store::PruneStats;
use relstore_release_store::ReleaseStore;
use serde::{Serialize, Serializer};

use crate::error::{error_chain, EngineResult};

/// What the write-through of one push did (or why it did not). The field names are the
/// `--json` keys.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreReport {
    /// The store's root directory.
    #[serde(serialize_with = "shown_path")]
    pub root: PathBuf,
    /// Blobs this push added.
    pub blobs_added: u64,
    /// Uncompressed bytes of those blobs.
    pub bytes_added: u64,
    /// What they take in the store (zstd-compressed).
    pub bytes_written: u64,
    /// Wall time of the write-through (it runs alongside the upload).
    pub seconds: f64,
    /// Why the release is not (completely) in the store. A push never fails because of
    /// the store: the deploy matters more, and the target still holds every object.
    pub error: Option<String>,
}

/// A path as the human output shows it (JSON strings must be UTF-8).
fn shown_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.display().to_string())
}

/// The name a target is recorded under in the store: the canonical path of a local
/// target (so `site`, `./site` and `/abs/site` are one target), else its location.
pub fn store_key(target: &dyn Target) -> String {
    match target.local_root().map(Path::canonicalize) {
        Some(Ok(p)) => p.display().to_string(),
        _ => target.location().to_owned(),
    }
}

/// Opens the store at `dir` for reading if it exists; a store that was never created
/// is simply absent (rollback and repair then need `--source`).
pub fn open_existing(dir: &Path) -> EngineResult<Option<ReleaseStore>> {
    if !dir.exists() {
        return Ok(None);
    }
    Ok(Some(ReleaseStore::open(dir)?))
}

/// The release a push builds on, as the store knows it: when its manifest is recorded
/// for this target, all its blobs are stored, and only `new` (the objects it lacks)
/// need a look — not every file of a million-file release on every push.
pub struct Previous<'a> {
    pub key: &'a str,
    pub release: &'a str,
    pub new: &'a [ObjectId],
}

/// Stores every blob of a release's `entries` (read from `source`) the store lacks.
/// Runs while the upload runs; errors end up in the report, not in the push.
pub fn write_through(
    dir: &Path,
    source: &Path,
    entries: &[Entry],
    previous: Option<Previous<'_>>,
) -> StoreReport {
    let started = Instant::now();
    let mut report = StoreReport {
        root: dir.to_path_buf(),
        ..StoreReport::default()
    };
    let result = ReleaseStore::open(dir).and_then(|store| {
        let only: Option<HashSet<ContentHash>> = previous
            .filter(|p| store.has_record(p.key, p.release))
            .map(|p| p.new.iter().map(|id| id.hash).collect());
        let items: Vec<_> = entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File { size, hash, .. }
                    if *size > 0 && only.as_ref().is_none_or(|o| o.contains(hash)) =>
                {
                    Some((*hash, join(source, &e.path), *size))
                }
                _ => None,
            })
            .collect();
        store.put_files(&items, &NoProgress)
    });
    match result {
        Ok(stats) => {
            report.blobs_added = stats.blobs_added;
            report.bytes_added = stats.bytes_read;
            report.bytes_written = stats.bytes_written;
        }
        Err(e) => report.error = Some(error_chain(&e)),
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// Records the manifest of a release just made current, once its blobs are stored.
/// A failure is kept in `report.error` and returned, for a note.
pub fn record(
    report: &mut StoreReport,
    target: &dyn Target,
    release: &str,
    manifest: &[u8],
) -> Option<String> {
    if report.error.is_some() {
        // Blobs are missing: a record would promise a restore the store cannot do.
        return None;
    }
    let result = ReleaseStore::open(&report.root)
        .and_then(|store| store.record_manifest(&store_key(target), release, manifest));
    let err = error_chain(&result.err()?);
    report.error = Some(err.clone());
    Some(err)
}

/// What `relstore store` shows: where the store is and what it holds (the field names
/// are the `--json` keys).
#[derive(Clone, Debug, Serialize)]
pub struct StoreUsage {
    #[serde(serialize_with = "shown_path")]
    pub root: PathBuf,
    pub exists: bool,
    pub blobs: u64,
    /// Compressed bytes of the blobs (file lengths).
    pub bytes: u64,
    /// What the whole directory occupies on disk (blocks allocated, as `du` counts):
    /// the figure to compare with free space, well above `bytes` for many small blobs.
    pub disk_bytes: u64,
}

/// Counts what the store at `dir` holds.
pub fn usage(dir: &Path) -> EngineResult<StoreUsage> {
    let mut u = StoreUsage {
        root: dir.to_path_buf(),
        exists: false,
        blobs: 0,
        bytes: 0,
        disk_bytes: 0,
    };
    if let Some(store) = open_existing(dir)? {
        (u.blobs, u.bytes) = store.usage()?;
        u.disk_bytes = allocated(dir).map_err(|(path, e)| {
            crate::error::EngineError::from(relstore_core::TargetError::Io {
                op: "inspect",
                path: path.display().to_string(),
                source: e,
            })
        })?;
        u.exists = true;
    }
    Ok(u)
}

/// Bytes allocated to `dir` and everything under it (symlinks not followed); an
/// entry removed while counting is skipped.
fn allocated(dir: &Path) -> Result<u64, (PathBuf, std::io::Error)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err((d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (d.clone(), e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err((entry.path(), e)),
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The store's own retention: keep the blobs of the newest `keep` releases recorded for
/// each target, delete the rest (or, with `dry_run`, only count).
pub fn prune(dir: &Path, keep: usize, dry_run: bool) -> EngineResult<PruneStats> {
    match open_existing(dir)? {
        Some(store) => Ok(store.prune(keep, dry_run)?),
        None => Ok(PruneStats::default()),
    }
}

/// Where the store lives when the user did not say (see
/// [`ReleaseStore::default_location`]).
pub fn default_location() -> Option<PathBuf> {
    ReleaseStore::default_location()
}
