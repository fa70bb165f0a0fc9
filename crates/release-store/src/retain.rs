//! Recorded manifests and the store's own retention.
//!
//! The store must be able to decide which blobs are still worth keeping without
//! contacting any target (targets may be unreachable, or gone). So every push records
//! its manifest here too, under a directory per target, and [`ReleaseStore::prune`] keeps
//! the blobs referenced by the newest manifests of each target.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use relstore_core::manifest::{decode_header, HEADER_PREFIX_LEN};
use relstore_core::release::ReleaseName;
use relstore_core::{ContentHash, EntryKind, Manifest};

use crate::error::io_err;
use crate::{flock, is_hex, ReleaseStore, ReleaseStoreError, LOCK_FILE, MANIFESTS_DIR};

const MANIFEST_SUFFIX: &str = ".manifest";
/// File in each target directory holding the target location, for people browsing.
const TARGET_FILE: &str = "target";

/// What [`ReleaseStore::prune`] removed (or, with `dry_run`, would remove).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Recorded manifests beyond the newest `keep_per_target` of their target.
    pub manifests_removed: u64,
    /// Blobs no kept manifest references.
    pub blobs_removed: u64,
    /// Compressed bytes of those blobs (their file lengths).
    pub bytes_freed: u64,
    /// Blobs that stay.
    pub blobs_kept: u64,
    /// Compressed bytes of the blobs that stay.
    pub bytes_kept: u64,
}

/// One recorded manifest, known by its header.
struct Recorded {
    path: PathBuf,
    release: String,
    created_unix_ns: i64,
}

impl ReleaseStore {
    /// Records the manifest of `release`, just pushed to `target_location`, as
    /// `manifests/KEY/RELEASE.manifest` (KEY: the first 32 hex digits of the blake3 of
    /// the location string, so any location is a safe directory name), replacing an
    /// earlier record of the same name. The bytes are stored as given (the encoded
    /// form); their header must decode and name `release`, so that [`ReleaseStore::prune`]
    /// can rely on every record.
    pub fn record_manifest(
        &self,
        target_location: &str,
        release: &str,
        manifest_bytes: &[u8],
    ) -> Result<(), ReleaseStoreError> {
        let name =
            ReleaseName::parse(release).map_err(|source| ReleaseStoreError::ReleaseName {
                name: release.to_owned(),
                source,
            })?;
        decode_header(manifest_bytes, Some(name.as_str())).map_err(|source| {
            ReleaseStoreError::Manifest {
                what: format!("of release {name} for {target_location}"),
                source,
            }
        })?;
        let _gate = self.shared();
        let dir = self.target_dir(target_location);
        fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        let target_file = dir.join(TARGET_FILE);
        if !target_file.exists() {
            self.write_durably(&target_file, format!("{target_location}\n").as_bytes())?;
        }
        self.write_durably(
            &dir.join(format!("{name}{MANIFEST_SUFFIX}")),
            manifest_bytes,
        )
    }

    /// Keeps the blobs referenced by the newest `keep_per_target` recorded manifests of
    /// each target (newest by the header's `created_unix_ns`, then by name), deletes
    /// the older records and every blob no kept record references, and empties `tmp/`
    /// (debris of interrupted puts, blobs found corrupt). With `dry_run`, only counts.
    /// `keep_per_target = 0` empties the store.
    ///
    /// Manifests are deleted before blobs, so an interruption leaves unreferenced blobs
    /// (removed next time), never a record whose blobs are gone. A recorded manifest
    /// that does not decode stops the prune with an error naming it: its blobs cannot
    /// be told apart, and guessing could delete the only copy of a release.
    ///
    /// Fails with [`ReleaseStoreError::Busy`] while another [`ReleaseStore`] is open on the
    /// same root (in this or another process): a push in flight may be about to
    /// record a manifest referencing blobs it found present. Callers that prune after
    /// a push may treat that as a note. A dry run does not need the lock.
    pub fn prune(
        &self,
        keep_per_target: usize,
        dry_run: bool,
    ) -> Result<PruneStats, ReleaseStoreError> {
        let _gate = self.exclusive();
        if dry_run {
            return self.prune_locked(keep_per_target, true);
        }
        let lock_path = self.root.join(LOCK_FILE);
        // Converting a flock is not atomic: a failed attempt may have dropped the
        // shared lock, so it is taken again in every case.
        let upgraded = flock(&self.lock, libc::LOCK_EX | libc::LOCK_NB);
        let result = match upgraded {
            Ok(()) => self.prune_locked(keep_per_target, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ReleaseStoreError::Busy {
                root: self.root.clone(),
                lock: lock_path.clone(),
            }),
            Err(e) => Err(io_err("lock", &lock_path, e)),
        };
        let relocked = flock(&self.lock, libc::LOCK_SH).map_err(|e| io_err("lock", &lock_path, e));
        let stats = result?;
        relocked?;
        Ok(stats)
    }

    fn prune_locked(&self, keep: usize, dry_run: bool) -> Result<PruneStats, ReleaseStoreError> {
        let mut stats = PruneStats::default();
        let mut kept: Vec<PathBuf> = Vec::new();
        let mut dropped: Vec<PathBuf> = Vec::new();
        let mut emptied_dirs: Vec<PathBuf> = Vec::new();
        for dir in self.target_dirs()? {
            let mut records = read_records(&dir)?;
            records.sort_by(|a, b| {
                b.created_unix_ns
                    .cmp(&a.created_unix_ns)
                    .then_with(|| b.release.cmp(&a.release))
            });
            if keep == 0 {
                emptied_dirs.push(dir.clone());
            }
            if records.len() <= keep {
                kept.extend(records.into_iter().map(|r| r.path));
                continue;
            }
            let old = records.split_off(keep);
            kept.extend(records.into_iter().map(|r| r.path));
            dropped.extend(old.into_iter().map(|r| r.path));
        }

        let referenced = kept
            .par_iter()
            .map(|path| referenced_hashes(path))
            .try_reduce(HashSet::new, |mut a, b| {
                if a.len() < b.len() {
                    return Ok(b.into_iter().chain(a).collect());
                }
                a.extend(b);
                Ok(a)
            })?;

        stats.manifests_removed = dropped.len() as u64;
        if !dry_run {
            for path in &dropped {
                remove_file_if_present(path)?;
            }
            for dir in &emptied_dirs {
                remove_file_if_present(&dir.join(TARGET_FILE))?;
                // Only if empty: a file someone put there stays, with its directory.
                let _ = fs::remove_dir(dir);
            }
        }

        let blobs = self.list_blobs()?;
        let (gone, stay): (Vec<_>, Vec<_>) = blobs
            .into_iter()
            .partition(|(h, _)| !referenced.contains(h));
        stats.blobs_removed = gone.len() as u64;
        stats.bytes_freed = gone.iter().map(|(_, len)| len).sum();
        stats.blobs_kept = stay.len() as u64;
        stats.bytes_kept = stay.iter().map(|(_, len)| len).sum();
        if !dry_run {
            gone.par_iter()
                .try_for_each(|(hash, _)| remove_file_if_present(&self.blob_path(hash)))?;
            self.clear_tmp()?;
        }
        Ok(stats)
    }

    /// `manifests/KEY` for a target location.
    /// Whether the manifest of `release` pushed to `target_location` is recorded here.
    /// A record is written only once all its blobs are stored, and pruning removes
    /// records before blobs, so a recorded release's blobs are all present.
    pub fn has_record(&self, target_location: &str, release: &str) -> bool {
        self.target_dir(target_location)
            .join(format!("{release}{MANIFEST_SUFFIX}"))
            .is_file()
    }

    fn target_dir(&self, target_location: &str) -> PathBuf {
        let key = blake3::hash(target_location.as_bytes()).to_hex();
        self.root.join(MANIFESTS_DIR).join(&key.as_str()[..32])
    }

    fn target_dirs(&self) -> Result<Vec<PathBuf>, ReleaseStoreError> {
        let manifests = self.root.join(MANIFESTS_DIR);
        let mut out = Vec::new();
        for entry in fs::read_dir(&manifests).map_err(|e| io_err("list", &manifests, e))? {
            let entry = entry.map_err(|e| io_err("list", &manifests, e))?;
            let is_key = entry.file_name().to_str().is_some_and(|n| is_hex(n, 32));
            if is_key && entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    /// Writes `bytes` to `path` via a temp file, fsync and rename: a record is small
    /// and written once per push, and a half-written one would block every prune.
    fn write_durably(&self, path: &Path, bytes: &[u8]) -> Result<(), ReleaseStoreError> {
        let tmp = self.tmp_path("record");
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", tmp, e));
        }
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("rename into place", path, e)
        })
    }

    /// Removes everything in `tmp/`; only under the exclusive lock, when no put is in
    /// flight anywhere.
    fn clear_tmp(&self) -> Result<(), ReleaseStoreError> {
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(|e| io_err("list", &tmp, e))? {
            let entry = entry.map_err(|e| io_err("list", &tmp, e))?;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", path, e)),
            }
        }
        Ok(())
    }
}

/// Headers of the manifests recorded in one target directory.
fn read_records(dir: &Path) -> Result<Vec<Recorded>, ReleaseStoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let Some(release) = name.to_str().and_then(|n| n.strip_suffix(MANIFEST_SUFFIX)) else {
            continue;
        };
        let path = entry.path();
        let mut prefix = Vec::with_capacity(HEADER_PREFIX_LEN);
        File::open(&path)
            .and_then(|f| f.take(HEADER_PREFIX_LEN as u64).read_to_end(&mut prefix))
            .map_err(|e| io_err("read", &path, e))?;
        let header = decode_header(&prefix, Some(release)).map_err(|source| {
            ReleaseStoreError::Manifest {
                what: path.display().to_string(),
                source,
            }
        })?;
        out.push(Recorded {
            path,
            release: release.to_owned(),
            created_unix_ns: header.created_unix_ns,
        })
    }
    Ok(out)
}

/// Content hashes of every regular file of a recorded manifest (fully decoded and
/// validated: retention decisions rest on it).
fn referenced_hashes(path: &Path) -> Result<HashSet<ContentHash>, ReleaseStoreError> {
    let bytes = fs::read(path).map_err(|e| io_err("read", path, e))?;
    let release = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(MANIFEST_SUFFIX));
    let manifest =
        Manifest::decode(&bytes, release).map_err(|source| ReleaseStoreError::Manifest {
            what: path.display().to_string(),
            source,
        })?;
    Ok(manifest
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { hash, .. } => Some(hash),
            _ => None,
        })
        .collect())
}

fn remove_file_if_present(path: &Path) -> Result<(), ReleaseStoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}
