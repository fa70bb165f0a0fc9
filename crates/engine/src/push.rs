//! `relstore push`: scan, compare, upload what is missing, assemble, swap.
//!
//! The order of steps is what keeps `current` whole through any crash:
//! 1. scan and hash the source (nothing on the target is touched yet);
//! 2. lock the target and recover from any interrupted command;
//! 3. compare: objects of the current release are known to be stored, the others are
//!    checked in one batched call;
//! 4. upload the missing objects (into `tmp/`, renamed into `objects/` when durable);
//! 5. assemble `tmp/NAME.partial`, rename it to `releases/NAME`;
//! 6. stage the manifest in `tmp/`, swap `current` with one rename, then move the
//!    manifest into `manifests/` — from that moment the release exists.
//!
//! A crash before 6's rename leaves `current` on the old release and only debris that
//! the next command removes; a crash after it is rolled forward by recovery.
//!
//! Ctrl-C (see [`relstore_core::cancel`]) is honoured between steps and inside the long
//! ones (scan, hash, upload, assemble) up to the staging of the manifest, leaving the
//! same kind of debris; from staging to the manifest's commit it is ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use relstore_core::failpoint::{kill_point, points};
use relstore_core::progress::{Phase, Progress};
use relstore_core::release::now_unix_ns;
use relstore_core::target::Upload;
use relstore_core::{Manifest, ObjectId, ReleaseName, Target, TargetError};
use serde_json::{json, Value};

use crate::catalog::{manifest_error, read_manifest_bytes, recover, Catalog};
use crate::error::{EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};
use crate::sources::DirSource;

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Release name; default: a UTC timestamp.
    pub release: Option<String>,
    /// Make a new release even when the tree equals the current one.
    pub force: bool,
    /// Skip fifos, sockets and devices in the source instead of failing.
    pub skip_special: bool,
    /// Directory of the client's caches (the stat cache lives under it); `None`
    /// disables the stat cache.
    pub cache_dir: Option<PathBuf>,
    /// What to do when the target is locked.
    pub lock: LockPolicy,
    /// After the swap, keep only this many release directories (see
    /// [`crate::retention`]).
    pub keep: Option<usize>,
    /// The local release store to write the release's blobs through to (see
    /// [`crate::local_store`]); `None` turns write-through off.
    pub store: Option<PathBuf>,
    /// Compute the plan (objects and bytes to upload, files to link) and change nothing
    /// on the target: no lock, no recovery, no upload.
    pub dry_run: bool,
    /// Gitignore-style patterns of source paths to leave out (`--exclude`), applied
    /// after those of the source's `.relstoreignore` (see [`relstore_scan::Excludes`]).
    pub exclude: Vec<String>,
}

/// Seconds spent in each step.
#[derive(Clone, Debug, Default)]
pub struct PhaseTimes {
    pub scan: f64,
    pub hash: f64,
    pub compare: f64,
    pub upload: f64,
    pub assemble: f64,
    pub swap: f64,
}

/// What a push did, for people and for `--json`.
#[derive(Clone, Debug, Default)]
pub struct PushReport {
    pub release: String,
    /// A `--dry-run`: the numbers are the plan; nothing was changed.
    pub dry_run: bool,
    /// The tree equalled the current release; nothing was created.
    pub unchanged: bool,
    pub previous: Option<String>,
    pub files_total: u64,
    pub dirs_total: u64,
    pub symlinks_total: u64,
    pub bytes_total: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub objects_total: u64,
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    pub objects_reused: u64,
    pub links: u64,
    pub object_copies: u64,
    pub skipped: Vec<String>,
    /// What `--keep` pruned, if it was given.
    pub pruned: Option<crate::retention::PruneReport>,
    /// What the local release store write-through did, if it was on.
    pub store: Option<crate::local_store::StoreReport>,
    pub seconds: f64,
    pub phases: PhaseTimes,
}

impl PushReport {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let p = &self.phases;
        json!({
            "release": self.release,
            "dry_run": self.dry_run,
            "unchanged": self.unchanged,
            "previous": self.previous,
            "files_total": self.files_total,
            "dirs_total": self.dirs_total,
            "symlinks_total": self.symlinks_total,
            "bytes_total": self.bytes_total,
            "files_hashed": self.files_hashed,
            "bytes_hashed": self.bytes_hashed,
            "objects_total": self.objects_total,
            "objects_uploaded": self.objects_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "objects_reused": self.objects_reused,
            "links": self.links,
            "object_copies": self.object_copies,
            "skipped": self.skipped,
            "pruned": self.pruned.as_ref().map(crate::retention::PruneReport::to_json),
            "store": self.store.as_ref().map(crate::local_store::StoreReport::to_json),
            "seconds": self.seconds,
            "phases": {
                "scan": p.scan, "hash": p.hash, "compare": p.compare,
                "upload": p.upload, "assemble": p.assemble, "swap": p.swap,
            },
        })
    }
}

/// Scans `source` into manifest entries with nothing excluded (what content lookups by
/// hash, like `--source` directories, want).
pub fn scan_source(
    source: &Path,
    skip_special: bool,
    cache_dir: Option<&Path>,
    progress: &dyn Progress,
) -> EngineResult<relstore_scan::ScanOutput> {
    scan_source_excluding(source, skip_special, None, cache_dir, progress)
}

/// Scans `source` into manifest entries (shared by push and diff). With `exclude`
/// (`Some`, even empty) the source's `.relstoreignore` and then those patterns keep
/// paths out, as a push does; `None` excludes nothing.
pub fn scan_source_excluding(
    source: &Path,
    skip_special: bool,
    exclude: Option<&[String]>,
    cache_dir: Option<&Path>,
    progress: &dyn Progress,
) -> EngineResult<relstore_scan::ScanOutput> {
    let excludes = match exclude {
        Some(patterns) => relstore_scan::Excludes::build(source, patterns, true)?,
        None => relstore_scan::Excludes::none(),
    };
    let stat_cache = match cache_dir {
        // A missing source is reported by the scan itself, with its own message.
        Some(_) if !source.exists() => None,
        Some(dir) => match relstore_scan::cache_file_for(dir, source) {
            Ok(p) => Some(p),
            Err(e) => {
                progress.note(&format!("stat cache disabled: {e}"));
                None
            }
        },
        None => None,
    };
    let opts = relstore_scan::ScanOptions {
        skip_special,
        stat_cache,
        excludes,
    };
    let out = relstore_scan::scan(source, &opts, progress)?;
    if let Some(w) = &out.cache_warning {
        progress.note(w);
    }
    Ok(out)
}

/// Pushes `source` to `target`.
pub fn push(
    source: &Path,
    target: &Arc<dyn Target>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    let started = Instant::now();
    let created = now_unix_ns();
    let requested = opts
        .release
        .as_deref()
        .map(ReleaseName::parse)
        .transpose()?;

    refuse_store_inside_source(source, target.as_ref())?;
    let scanned = scan_source_excluding(
        source,
        opts.skip_special,
        Some(&opts.exclude),
        opts.cache_dir.as_deref(),
        progress,
    )?;
    let mut report = PushReport {
        files_hashed: scanned.files_hashed,
        bytes_hashed: scanned.bytes_hashed,
        skipped: scanned
            .skipped
            .iter()
            .map(|(p, kind)| format!("{} ({kind})", relstore_core::path::escape(p)))
            .collect(),
        ..PushReport::default()
    };
    report.phases.scan = scanned.walk_seconds;
    report.phases.hash = scanned.hash_seconds;

    if opts.dry_run {
        return dry_run(
            target,
            scanned.entries,
            requested,
            created,
            opts,
            report,
            started,
            progress,
        );
    }
    let t = Instant::now();
    target.open(true)?;
    let lock = acquire(target, "push", &opts.lock, progress)?;
    let catalog = recover(target.as_ref(), progress)?;
    relstore_core::cancel::check()?;
    let current = load_current(target.as_ref(), &catalog, &scanned.entries, opts.force)?;
    let plan = plan_release(
        target.location(),
        &|ids| target.missing_objects(ids),
        &catalog,
        &current,
        scanned.entries,
        requested,
        created,
        &mut report,
        progress,
    )?;
    report.phases.compare = t.elapsed().as_secs_f64();
    let Some(PlannedRelease {
        name,
        manifest,
        uploads,
        new_objects,
    }) = plan
    else {
        lock.release()?;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };
    relstore_core::cancel::check()?;

    let t = Instant::now();
    progress.start(Phase::Upload, report.bytes_uploaded);
    // Content is keyed by hash alone: the target gives each object its mode.
    let blobs = DirSource::new(source.to_path_buf(), &manifest.entries);
    let store_key = crate::local_store::store_key(target.as_ref());
    // The store write-through reads the same files as the upload (mostly from the page
    // cache) and compresses them: run it alongside, on its own thread.
    let (uploaded, mut stored) = std::thread::scope(|scope| {
        let store = opts.store.as_deref().map(|dir| {
            let manifest = &manifest;
            let previous = report
                .previous
                .as_deref()
                .map(|release| crate::local_store::Previous {
                    key: &store_key,
                    release,
                    new: &new_objects,
                });
            scope.spawn(move || crate::local_store::write_through(dir, source, manifest, previous))
        });
        let uploaded = target.put_objects(&uploads, &blobs, progress);
        let stored = store.map(|h| {
            h.join()
                .unwrap_or_else(|_| crate::local_store::StoreReport {
                    error: Some("the write-through thread panicked".into()),
                    ..Default::default()
                })
        });
        (uploaded, stored)
    });
    uploaded?;
    progress.finish();
    if let Some(err) = stored.as_ref().and_then(|s| s.error.as_ref()) {
        progress.note(&format!(
            "local release store: {err}; this release can still be rolled back to while its objects stay on the target"
        ));
    }
    report.phases.upload = t.elapsed().as_secs_f64();
    kill_point(points::PUSH_UPLOADED);
    relstore_core::cancel::check()?;

    let t = Instant::now();
    let stats = target.assemble(&name, &manifest.entries, progress)?;
    report.links = stats.links;
    report.object_copies = stats.object_copies;
    report.phases.assemble = t.elapsed().as_secs_f64();
    kill_point(points::PUSH_ASSEMBLED);
    // The last point where an interruption may stop the push: from staging the
    // manifest through the swap to its commit, the flag is deliberately ignored, so a
    // push that started to publish its release always finishes publishing it.
    relstore_core::cancel::check()?;

    let t = Instant::now();
    progress.start(Phase::Swap, 1);
    let encoded = manifest
        .encode()
        .map_err(|source| EngineError::EncodeManifest {
            release: name.to_string(),
            source,
        })?;
    target.stage_manifest(&name, &encoded)?;
    kill_point(points::PUSH_STAGED);
    target.activate(&name)?;
    kill_point(points::PUSH_SWAPPED);
    target.commit_manifest(&name)?;
    progress.finish();
    report.phases.swap = t.elapsed().as_secs_f64();
    if let Some(store) = stored.as_mut() {
        if let Some(err) =
            crate::local_store::record(store, target.as_ref(), name.as_str(), &encoded)
        {
            progress.note(&format!("local release store: {err}"));
        }
    }
    report.store = stored;
    if let Some(keep) = opts.keep {
        let t = Instant::now();
        let catalog = Catalog::load(target.as_ref())?;
        let plan = crate::retention::plan_prune(target.as_ref(), &catalog, keep)?;
        let left_behind = crate::retention::apply_prune(target.as_ref(), &plan, progress)?;
        report.pruned = Some(crate::retention::PruneReport {
            plan,
            applied: true,
            left_behind,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    lock.release()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Which of these objects the target lacks (the target's `missing_objects`, or "all of
/// them" for a target that does not exist yet).
type MissingLookup<'a> = dyn Fn(&[ObjectId]) -> Result<Vec<ObjectId>, TargetError> + 'a;

/// How many distinct objects `entries` link. A sorted vector, not a hash set: for a
/// million files that is 36 MB instead of about 90, at the moment a no-change push
/// holds its tree.
fn count_distinct_objects(entries: &[relstore_core::Entry]) -> u64 {
    let mut ids: Vec<ObjectId> = entries.iter().filter_map(|e| e.object()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len() as u64
}

/// The current release as a push sees it.
enum Current {
    /// No release is current.
    None,
    /// The source equals it (checked while streaming its manifest: see
    /// [`Manifest::equals_entries`]); only its header is kept.
    Unchanged(relstore_core::manifest::Header),
    /// The source differs (or `--force`); its manifest tells which objects are known.
    Changed(Manifest),
}

/// Reads the current release's manifest and compares it with the scanned `entries`
/// (unless `force`), decoding it fully only when they differ.
fn load_current(
    target: &dyn Target,
    catalog: &Catalog,
    entries: &[relstore_core::Entry],
    force: bool,
) -> EngineResult<Current> {
    let Some(name) = &catalog.current else {
        return Ok(Current::None);
    };
    let bytes = read_manifest_bytes(target, name)?;
    if !force {
        let (same, header) = Manifest::equals_entries(&bytes, Some(name.as_str()), entries)
            .map_err(|e| manifest_error(target, name, e))?;
        if same {
            return Ok(Current::Unchanged(header));
        }
    }
    Manifest::decode(&bytes, Some(name.as_str()))
        .map(Current::Changed)
        .map_err(|e| manifest_error(target, name, e))
}

/// What a push will create: the release, its manifest and the objects to upload.
struct PlannedRelease {
    name: ReleaseName,
    manifest: Manifest,
    uploads: Vec<Upload>,
    /// Objects the current release does not have (all of them without one).
    new_objects: Vec<ObjectId>,
}

/// The part of a push that decides what to do, shared by the real run and `--dry-run`
/// so that a plan is exactly what the run then does: the unchanged check, the release
/// name, and which objects the target lacks. Fills `report` with the totals; `None`
/// when the tree equals the current release (see [`load_current`]).
#[allow(clippy::too_many_arguments)]
fn plan_release(
    location: &str,
    missing_objects: &MissingLookup<'_>,
    catalog: &Catalog,
    current: &Current,
    entries: Vec<relstore_core::Entry>,
    requested: Option<ReleaseName>,
    created: i64,
    report: &mut PushReport,
    progress: &dyn Progress,
) -> EngineResult<Option<PlannedRelease>> {
    report.previous = catalog.current.as_ref().map(ToString::to_string);
    // Checked before the name: re-running a push that died after its swap finds its
    // work done, whatever name it asks for.
    if let Current::Unchanged(header) = current {
        let totals = &header.totals;
        report.unchanged = true;
        report.release = header.release.clone();
        report.files_total = totals.files;
        report.dirs_total = totals.dirs;
        report.symlinks_total = totals.symlinks;
        report.bytes_total = totals.bytes;
        report.objects_total = count_distinct_objects(&entries);
        report.objects_reused = report.objects_total;
        return Ok(None);
    }
    let current = match current {
        Current::Changed(m) => Some(m),
        _ => None,
    };
    let name = match requested {
        Some(n) if catalog.name_taken(n.as_str()) => {
            return Err(TargetError::ReleaseExists {
                name: n.to_string(),
                location: location.to_owned(),
            }
            .into())
        }
        Some(n) => n,
        None => unused_timestamp_name(catalog, created),
    };
    let manifest = Manifest::new(&name, created, entries);
    let totals = &manifest.header.totals;
    report.release = name.to_string();
    report.files_total = totals.files;
    report.dirs_total = totals.dirs;
    report.symlinks_total = totals.symlinks;
    report.bytes_total = totals.bytes;
    let objects = manifest.objects();
    report.objects_total = objects.len() as u64;
    progress.start(Phase::Compare, objects.len() as u64);
    let known: HashSet<_> = current.iter().flat_map(|m| m.objects()).collect();
    let unknown: Vec<_> = objects
        .iter()
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    let missing = missing_objects(&unknown)?;
    drop(known);
    progress.advance(objects.len() as u64);
    progress.finish();
    let uploads = uploads_for(&manifest, &missing);
    report.objects_uploaded = uploads.len() as u64;
    report.bytes_uploaded = uploads.iter().map(|u| u.size).sum();
    report.objects_reused = report.objects_total - report.objects_uploaded;
    Ok(Some(PlannedRelease {
        name,
        manifest,
        uploads,
        new_objects: unknown,
    }))
}

/// `push --dry-run`: the plan of [`plan_release`] against the target as it is (read
/// without the lock), with the links assembly would make. A target that does not exist
/// yet plans as an empty store (every object uploaded).
#[allow(clippy::too_many_arguments)]
fn dry_run(
    target: &Arc<dyn Target>,
    entries: Vec<relstore_core::Entry>,
    requested: Option<ReleaseName>,
    created: i64,
    opts: &PushOptions,
    mut report: PushReport,
    started: Instant,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    let t = Instant::now();
    report.dry_run = true;
    // A root that does not exist yet (or is empty) plans as an empty store.
    let fresh = match target.open(false) {
        Ok(_) => false,
        Err(relstore_core::TargetError::NoStore { .. }) => true,
        Err(e) => return Err(e.into()),
    };
    let (catalog, current) = if fresh {
        (Catalog::default(), Current::None)
    } else {
        let catalog = Catalog::load(target.as_ref())?;
        let current = load_current(target.as_ref(), &catalog, &entries, opts.force)?;
        (catalog, current)
    };
    let plan = plan_release(
        target.location(),
        &|ids| {
            if fresh {
                Ok(ids.to_vec())
            } else {
                target.missing_objects(ids)
            }
        },
        &catalog,
        &current,
        entries,
        requested,
        created,
        &mut report,
        progress,
    )?;
    if let Some(plan) = &plan {
        report.links = plan
            .manifest
            .entries
            .iter()
            .filter(|e| e.object().is_some())
            .count() as u64;
    }
    if opts.keep.is_some() {
        progress.note("--dry-run does not plan the --keep prune; run `relstore prune TARGET --keep N --dry-run` after the push");
    }
    report.phases.compare = t.elapsed().as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The uploads of the `missing` objects of `manifest`, each with its size.
pub(crate) fn uploads_for(manifest: &Manifest, missing: &[ObjectId]) -> Vec<Upload> {
    let sizes = object_sizes(manifest);
    missing
        .iter()
        .map(|id| Upload {
            id: *id,
            size: sizes.get(id).copied().unwrap_or(0),
        })
        .collect()
}

/// The size of each object a manifest uses (what an upload of it costs).
fn object_sizes(m: &Manifest) -> std::collections::HashMap<relstore_core::ObjectId, u64> {
    m.entries
        .iter()
        .filter_map(|e| match (e.object(), &e.kind) {
            (Some(id), relstore_core::EntryKind::File { size, .. }) => Some((id, *size)),
            _ => None,
        })
        .collect()
}

/// Pushing a tree into a store inside that tree would scan the store into the release
/// (and grow it on every push): refuse it before anything is touched.
fn refuse_store_inside_source(source: &Path, target: &dyn Target) -> EngineResult<()> {
    let Some(root) = target.local_root() else {
        return Ok(());
    };
    let Ok(source) = source.canonicalize() else {
        return Ok(()); // the scan reports a missing source with its own message
    };
    // The store may not exist yet: resolve its nearest existing ancestor.
    let mut probe = root.to_path_buf();
    let mut rest = Vec::new();
    let resolved = loop {
        if let Ok(p) = probe.canonicalize() {
            break rest
                .iter()
                .rev()
                .fold(p, |acc: PathBuf, c: &std::ffi::OsString| acc.join(c));
        }
        match (probe.file_name(), probe.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                probe = parent.to_path_buf();
            }
            _ => return Ok(()),
        }
    };
    if resolved.starts_with(&source) || source.starts_with(&resolved) {
        return Err(EngineError::Refused(format!(
            "{}: the target and the source {} contain one another; push to a store outside the source tree",
            target.location(),
            source.display()
        )));
    }
    Ok(())
}

/// A timestamp name, with `-2`, `-3`… when pushes share a second.
fn unused_timestamp_name(catalog: &Catalog, created: i64) -> ReleaseName {
    let base = ReleaseName::timestamp(created);
    if !catalog.name_taken(base.as_str()) {
        return base;
    }
    (2u32..)
        .filter_map(|n| ReleaseName::parse(&format!("{base}-{n}")).ok())
        .find(|n| !catalog.name_taken(n.as_str()))
        .unwrap_or(base)
}
