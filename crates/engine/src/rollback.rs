//! `relstore rollback`: point `current` at another release with one rename.
//!
//! The default is the release created just before the current one. A release whose
//! directory was evicted is re-assembled from its manifest: objects still on the target
//! are linked, missing ones are uploaded from the local release store or from
//! `--source` trees (only files whose hash matches). When some object is in none of
//! them, the rollback fails before anything changes and names the paths that need it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use relstore_core::path::escape;
use relstore_core::progress::{Phase, Progress};
use relstore_core::{Entry, Manifest, ObjectId, ReleaseName, Target};
use relstore_release_store::ReleaseStore;
use serde::Serialize;

use crate::catalog::{read_manifest, recover, Catalog, ReleaseInfo};
use crate::error::{during_step, EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};
use crate::sources::{DirSource, Sources, StoreSource};

/// How many paths the "cannot rebuild" error names before "and N more".
const MISSING_PATHS_SHOWN: usize = 10;

/// How to roll back.
#[derive(Clone, Debug, Default)]
pub struct RollbackOptions {
    /// The release to make current; default: the one before current.
    pub release: Option<String>,
    /// What to do when the target is locked.
    pub lock: LockPolicy,
    /// The local release store to take missing objects from; `None`: not used.
    pub store: Option<PathBuf>,
    /// Directories whose files may supply missing objects (matched by hash).
    pub sources: Vec<PathBuf>,
    /// Directory of the client's caches (stat cache for scanning `sources`).
    pub cache_dir: Option<PathBuf>,
    /// Work out the plan (which release, whether it is rebuilt, what would be uploaded
    /// from where) and change nothing: no lock, no recovery, no upload.
    pub dry_run: bool,
    /// Its `after_rollback` hook (the others do not apply).
    pub hooks: crate::hooks::Hooks,
}

/// What a rollback did (the field names are the `--json` keys).
#[derive(Clone, Debug, Serialize)]
pub struct RollbackReport {
    /// A `--dry-run`: the report is the plan; nothing was changed.
    pub dry_run: bool,
    pub from: Option<String>,
    pub to: String,
    /// The release's directory had been evicted and was assembled again (with
    /// `dry_run`: would be).
    pub reassembled: bool,
    /// Objects uploaded to rebuild an evicted release, and their bytes.
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Where they came from (`local release store …`, `--source …`).
    pub uploaded_from: Vec<String>,
    /// Nothing to do: the release was already current.
    pub already_current: bool,
    /// The `after_rollback` hook, when it ran.
    pub hooks: Vec<crate::hooks::HookReport>,
    /// With `--dry-run`: the hooks a rollback would run.
    pub hooks_planned: Vec<crate::hooks::PlannedHook>,
    /// The hook's failure (the command exits 1 with it; the rollback stands).
    pub hook_failure: Option<String>,
    pub seconds: f64,
}

/// Makes `opts.release` (default: the one before current) current on `target`.
pub fn rollback(
    target: &Arc<dyn Target>,
    opts: &RollbackOptions,
    progress: &dyn Progress,
) -> EngineResult<RollbackReport> {
    let started = Instant::now();
    let requested = opts
        .release
        .as_deref()
        .map(ReleaseName::parse)
        .transpose()?;
    target.open(false)?;
    let lock = if opts.dry_run {
        None
    } else {
        Some(acquire(target, "rollback", &opts.lock, progress)?)
    };
    let catalog = if opts.dry_run {
        Catalog::load(target.as_ref())?
    } else {
        recover(target.as_ref(), progress)?
    };
    catalog.require_readable_headers(target.as_ref())?;
    let current = catalog.current.clone();
    let to = pick_release(&catalog, requested, target.location())?;
    let mut report = RollbackReport {
        dry_run: opts.dry_run,
        from: current.as_ref().map(ToString::to_string),
        to: to.name.to_string(),
        reassembled: false,
        objects_uploaded: 0,
        bytes_uploaded: 0,
        uploaded_from: Vec::new(),
        already_current: current.as_ref() == Some(&to.name),
        hooks: Vec::new(),
        hooks_planned: Vec::new(),
        hook_failure: None,
        seconds: 0.0,
    };
    if report.already_current {
        if let Some(lock) = lock {
            lock.release()?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    // Read and validate the manifest even when the directory is present: a release
    // whose manifest is unusable would break every later push and diff once current.
    let manifest = read_manifest(target.as_ref(), &to.name)?;
    if !to.present {
        let restore = Restore {
            target: target.as_ref(),
            manifest: &manifest,
            current: current.as_ref(),
            opts,
        };
        restore.run(&mut report, progress)?;
        report.reassembled = true;
        if !opts.dry_run {
            target
                .assemble(&to.name, &manifest.entries, progress)
                .map_err(|e| during_step(target.as_ref(), "assembling the release", e))?;
        }
    }
    let Some(lock) = lock else {
        report.hooks_planned = opts
            .hooks
            .planned(&[crate::hooks::AFTER_ROLLBACK], progress);
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };
    let swap = Swap {
        to: &to.name,
        from: current.as_ref(),
    };
    swap.run(target.as_ref(), opts, &mut report, lock, progress)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The swap of a rollback and its `after_rollback` hook.
struct Swap<'a> {
    to: &'a ReleaseName,
    from: Option<&'a ReleaseName>,
}

impl Swap<'_> {
    /// Points `current` at the release, runs `after_rollback` there (recorded in
    /// `report`), releases the lock; a Ctrl-C during the hook leaves the rollback done
    /// and stops the command as interrupted.
    fn run(
        &self,
        target: &dyn Target,
        opts: &RollbackOptions,
        report: &mut RollbackReport,
        lock: crate::lock::LockGuard,
        progress: &dyn Progress,
    ) -> EngineResult<()> {
        target.activate(self.to)?;
        let interrupted = after_rollback(target, opts, report, self.to, self.from, progress);
        lock.release()?;
        if interrupted {
            let stop = relstore_core::cancel::Interrupted;
            return Err(relstore_core::TargetError::Interrupted(stop).into());
        }
        Ok(())
    }
}

/// Runs `after_rollback` (if set) in `to`, recording it in `report`; true when Ctrl-C
/// interrupted it (the rollback stands; the command stops as interrupted).
fn after_rollback(
    target: &dyn Target,
    opts: &RollbackOptions,
    report: &mut RollbackReport,
    to: &ReleaseName,
    from: Option<&ReleaseName>,
    progress: &dyn Progress,
) -> bool {
    let hook = crate::hooks::AFTER_ROLLBACK;
    let Some(r) = crate::hooks::run_hook(target, &opts.hooks, hook, to, from, progress) else {
        return false;
    };
    let interrupted = r.interrupted;
    report.hook_failure = r.failure();
    report.hooks.push(r);
    interrupted
}

/// The release a rollback makes current: `requested`, else the one before current.
fn pick_release(
    catalog: &Catalog,
    requested: Option<ReleaseName>,
    location: &str,
) -> EngineResult<ReleaseInfo> {
    if let Some(name) = requested {
        return catalog
            .resolve(name.as_str())
            .cloned()
            .ok_or_else(|| EngineError::NoSuchRelease {
                name: name.to_string(),
                location: location.to_owned(),
            });
    }
    let cur = catalog
        .current
        .as_ref()
        .ok_or_else(|| EngineError::NothingToRollBack {
            location: location.to_owned(),
        })?;
    let pos = catalog
        .releases
        .iter()
        .position(|r| &r.name == cur)
        .unwrap_or(0);
    // A staged release was never live: it is not "the release before".
    catalog.releases[..pos]
        .iter()
        .rev()
        .find(|r| !r.staged)
        .cloned()
        .ok_or_else(|| EngineError::NoEarlierRelease {
            location: location.to_owned(),
            current: cur.to_string(),
        })
}

/// Bringing back the objects of an evicted release.
struct Restore<'a> {
    target: &'a dyn Target,
    /// The manifest of the release rolled back to.
    manifest: &'a Manifest,
    /// The release current before the rollback: its objects are the patch bases.
    current: Option<&'a ReleaseName>,
    opts: &'a RollbackOptions,
}

impl Restore<'_> {
    /// Uploads the objects of an evicted release that the target no longer holds, from
    /// the local store and `--source` trees; fails before uploading anything when some
    /// object is in none of them.
    fn run(&self, report: &mut RollbackReport, progress: &dyn Progress) -> EngineResult<()> {
        let (target, manifest, opts) = (self.target, self.manifest, self.opts);
        let objects = manifest.objects();
        progress.start(Phase::Compare, objects.len() as u64);
        let missing = target.missing_objects(&objects)?;
        progress.advance(objects.len() as u64);
        progress.finish();
        if missing.is_empty() {
            return Ok(());
        }
        let store = match &opts.store {
            Some(dir) => crate::release_store::open_existing(dir)?,
            None => None,
        };
        let mut sources = Sources::new();
        for dir in &opts.sources {
            sources.push(Box::new(DirSource::scan(
                dir,
                opts.cache_dir.as_deref(),
                progress,
            )?));
        }
        if let Some(store) = &store {
            sources.push(Box::new(StoreSource(store)));
        }
        let unavailable: HashSet<ObjectId> = missing
            .iter()
            .filter(|id| sources.find(&id.hash).is_none())
            .copied()
            .collect();
        if !unavailable.is_empty() {
            return Err(unavailable_error(
                target.location(),
                manifest,
                &unavailable,
                &sources,
            ));
        }
        let uploads = crate::push::uploads_for(manifest, &missing);
        report.objects_uploaded = uploads.len() as u64;
        report.bytes_uploaded = uploads.iter().map(|u| u.size).sum();
        let mut from: Vec<String> = uploads
            .iter()
            .filter_map(|u| sources.find(&u.id.hash).map(|s| s.label()))
            .collect();
        from.sort();
        from.dedup();
        report.uploaded_from = from;
        if opts.dry_run {
            return Ok(());
        }
        let old = self.current_entries(store.as_ref());
        let bases =
            crate::delta_bases::from_previous(&uploads, &manifest.entries, &old, store.as_ref());
        progress.start(Phase::Upload, report.bytes_uploaded);
        target
            .put_objects_with_bases(&uploads, &sources, &bases, progress)
            .map_err(|e| during_step(target, "uploading objects", e))?;
        progress.finish();
        Ok(())
    }

    /// The entries of the current release, the patch bases of the restored objects: read
    /// only when the local release store can supply base content. A current manifest
    /// that cannot be read only costs the saving (rolling away from it must work).
    fn current_entries(&self, store: Option<&ReleaseStore>) -> Vec<Entry> {
        match (self.current, store) {
            (Some(name), Some(_)) => read_manifest(self.target, name)
                .map(|m| m.entries)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// One line naming what cannot be rebuilt: the release, how many objects, the first
/// paths that need them, and where relstore looked.
fn unavailable_error(
    location: &str,
    manifest: &Manifest,
    unavailable: &HashSet<ObjectId>,
    sources: &Sources<'_>,
) -> EngineError {
    let paths: Vec<String> = manifest
        .entries
        .iter()
        .filter(|e| e.object().is_some_and(|id| unavailable.contains(&id)))
        .map(|e| escape(&e.path))
        .collect();
    let mut shown = paths
        .iter()
        .take(MISSING_PATHS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > MISSING_PATHS_SHOWN {
        shown.push_str(&format!(", and {} more", paths.len() - MISSING_PATHS_SHOWN));
    }
    let looked = if sources.is_empty() {
        "no local release store and no --source given".to_owned()
    } else {
        format!("not in {}", sources.labels().join(", "))
    };
    EngineError::CannotRebuild {
        location: location.to_owned(),
        release: manifest.header.release.clone(),
        objects: unavailable.len(),
        looked,
        paths: shown,
    }
}
