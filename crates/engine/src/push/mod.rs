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

mod plan;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use relstore_core::failpoint::{kill_point, points};
use relstore_core::progress::{Phase, Progress};
use relstore_core::release::now_unix_ns;
use relstore_core::target::DeltaBases;
use relstore_core::{ReleaseName, Target};
use relstore_release_store::ReleaseStore;
use serde::Serialize;

use crate::catalog::{recover, Catalog};
use crate::delta_bases::StoreBases;
use crate::error::{during_step, EngineError, EngineResult};
use crate::hooks::{activate_with_hooks, HookReport, Hooks, PlannedHook};
use crate::lock::{acquire, LockPolicy};
use crate::release_store::StoreReport;
use crate::retention::PruneReport;
use crate::sources::DirSource;

pub(crate) use plan::uploads_for;
pub(crate) use plan::{load_current, plan_release, Current, Wanted};
pub use plan::{NewRelease, PushPlan};
pub(crate) use scan::refuse_store_inside_source;
pub use scan::{scan_source, scan_source_excluding};

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
    /// [`crate::release_store`]); `None` turns write-through off.
    pub store: Option<PathBuf>,
    /// Compute the plan (objects and bytes to upload, files to link) and change nothing
    /// on the target: no lock, no recovery, no upload.
    pub dry_run: bool,
    /// Gitignore-style patterns of source paths to leave out (`--exclude`), applied
    /// after those of the source's `.relstoreignore` (see [`relstore_scan::Excludes`]).
    pub exclude: Vec<String>,
    /// Shared paths (`--shared`): linked into the release from `ROOT/shared/`, seeded
    /// there on first use (see [`crate::shared`]).
    pub shared: Vec<relstore_core::shared::SharedPath>,
    /// Stop before the swap: record the release and point `next` at it (see
    /// [`crate::activate`]); hooks run when it is activated.
    pub stage_only: bool,
    /// Hooks around the swap (see [`crate::hooks`]).
    pub hooks: Hooks,
}

/// Seconds spent in each step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseTimes {
    pub scan: f64,
    pub hash: f64,
    pub compare: f64,
    pub upload: f64,
    pub assemble: f64,
    pub swap: f64,
}

/// What a push did, for people and for `--json` (the field names are the JSON keys).
#[derive(Clone, Debug, Default, Serialize)]
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
    /// Shared paths the release links (`uploads/`, `.env`).
    pub shared: Vec<String>,
    /// Shared paths this push seeded in `ROOT/shared/` (a dry run: would seed).
    pub shared_seeded: Vec<String>,
    /// What `--keep` pruned, if it was given.
    pub pruned: Option<crate::retention::PruneReport>,
    /// What the local release store write-through did, if it was on.
    pub store: Option<crate::release_store::StoreReport>,
    /// The release was staged (`next` points at it) instead of made current: by
    /// `--stage-only`, or because `before_activate` failed.
    pub staged: bool,
    /// A failed `after_activate` was reverted: `current` is `previous` again.
    pub reverted: bool,
    /// Hooks that ran, in order.
    pub hooks: Vec<HookReport>,
    /// With `--dry-run`: the hooks a push would run.
    pub hooks_planned: Vec<PlannedHook>,
    /// The first hook failure (the command exits 1 with it).
    pub hook_failure: Option<String>,
    pub seconds: f64,
    pub phases: PhaseTimes,
    /// How many times the connection was lost and the push continued over a new one
    /// (`--retries`); the counts above are those of the last attempt, which uploaded
    /// only what the target still lacked.
    pub reconnects: u32,
}

/// Pushes `source` to `target`.
pub fn push(
    source: &Path,
    target: &Arc<dyn Target>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    push_at(source, target, opts, now_unix_ns(), progress)
}

/// [`push`] with the release's creation time fixed by the caller: a push run again
/// after a lost connection (see [`crate::reconnect`]) then picks the same default
/// release name as the attempt it continues.
pub(crate) fn push_at(
    source: &Path,
    target: &Arc<dyn Target>,
    opts: &PushOptions,
    created: i64,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    let started = Instant::now();
    let wanted = Wanted {
        name: opts
            .release
            .as_deref()
            .map(ReleaseName::parse_new)
            .transpose()?,
        created,
    };
    refuse_store_inside_source(source, target.as_ref())?;
    let scanned = scan_for_push(source, opts, progress)?;
    let scan = ScanSummary::of(&scanned);
    if opts.dry_run {
        return dry_run(
            source,
            target,
            scanned.entries,
            wanted,
            opts,
            scan,
            started,
            progress,
        );
    }
    crate::shared::precheck(source, target.as_ref(), &opts.shared)?;
    kill_point(points::PUSH_SCANNED);
    let t = Instant::now();
    target.open(true)?;
    let lock = acquire(target, "push", &opts.lock, progress)?;
    let catalog = recover(target.as_ref(), progress)?;
    catalog.require_readable_headers(target.as_ref())?;
    relstore_core::cancel::check()?;
    // Seeded under the lock before anything else changes, so that `current` never
    // links a shared path that is not there.
    let shared_seeded = crate::shared::seed_missing(source, target.as_ref(), &opts.shared)?;
    kill_point(points::PUSH_SEEDED);
    let current = load_current(target.as_ref(), &catalog, &scanned.entries, opts.force)?;
    let plan = plan_release(
        target.location(),
        &|ids| target.missing_objects(ids),
        &catalog,
        &current,
        scanned.entries,
        wanted,
        progress,
    )?;
    let mut report = PushReport::planned(&plan, scan, false);
    report.shared = opts.shared.iter().map(ToString::to_string).collect();
    report.shared_seeded = shared_seeded;
    report.phases.compare = t.elapsed().as_secs_f64();
    if let Some(mut new) = plan.new {
        relstore_core::cancel::check()?;
        let store = store_for_bases(opts.store.as_deref(), &current);
        let bases = delta_bases(&new, current, store.as_ref());
        let run = Run {
            source,
            target,
            opts,
            previous: plan.previous.as_deref(),
            bases: &bases,
            progress,
        };
        let done = run.create(&mut new)?;
        report.links = done.links;
        report.object_copies = done.object_copies;
        report.phases.upload = done.upload_seconds;
        report.phases.assemble = done.assemble_seconds;
        report.phases.swap = done.swap_seconds;
        report.store = done.store;
        report.pruned = done.pruned;
        report.staged = done.staged;
        report.reverted = done.activation.reverted;
        report.hooks = done.activation.hooks;
        report.hook_failure = done.activation.failure;
        if done.activation.interrupted {
            lock.release()?;
            return Err(relstore_core::TargetError::Interrupted(
                relstore_core::cancel::Interrupted,
            )
            .into());
        }
    }
    lock.release()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Scans the source as `opts` say: excludes applied, the source's copies of shared
/// paths left out and the shared links put in their place (see [`crate::shared`]).
fn scan_for_push(
    source: &Path,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> EngineResult<relstore_scan::ScanOutput> {
    relstore_core::shared::check_set(&opts.shared)?;
    let mut exclude = opts.exclude.clone();
    exclude.extend(crate::shared::exclude_patterns(&opts.shared));
    let mut scanned = scan_source_excluding(
        source,
        opts.skip_special,
        Some(&exclude),
        opts.cache_dir.as_deref(),
        progress,
    )?;
    scanned.entries =
        relstore_core::shared::link_into(std::mem::take(&mut scanned.entries), &opts.shared)?;
    Ok(scanned)
}

/// The local release store, when there is one, as the source of patch bases (only
/// opened when there is a current release to take bases from). A store that cannot be
/// opened only costs the saving (the write-through reports why).
pub(crate) fn store_for_bases(store: Option<&Path>, current: &Current) -> Option<ReleaseStore> {
    match current {
        Current::Changed(_) => crate::release_store::open_existing(store?).ok()?,
        Current::None | Current::Unchanged(_) => None,
    }
}

/// Bases for the uploads of `new`: what each path held in the current release, whose
/// manifest the push already loaded. The manifest is dropped here: the bases keep only
/// what the uploads need, so a million-file tree is not held twice during the upload.
pub(crate) fn delta_bases<'a>(
    new: &NewRelease,
    current: Current,
    store: Option<&'a ReleaseStore>,
) -> StoreBases<'a> {
    match current {
        Current::Changed(old) => crate::delta_bases::from_previous(
            &new.uploads,
            &new.manifest.entries,
            &old.entries,
            store,
        ),
        Current::None | Current::Unchanged(_) => StoreBases::none(),
    }
}

/// What the scan of a push found, for its report.
struct ScanSummary {
    files_hashed: u64,
    bytes_hashed: u64,
    skipped: Vec<String>,
    walk_seconds: f64,
    hash_seconds: f64,
}

impl ScanSummary {
    fn of(scanned: &relstore_scan::ScanOutput) -> ScanSummary {
        ScanSummary {
            files_hashed: scanned.files_hashed,
            bytes_hashed: scanned.bytes_hashed,
            skipped: scanned
                .skipped
                .iter()
                .map(|(p, kind)| format!("{} ({kind})", relstore_core::path::escape(p)))
                .collect(),
            walk_seconds: scanned.walk_seconds,
            hash_seconds: scanned.hash_seconds,
        }
    }
}

impl PushReport {
    /// The report of `plan` before it runs: totals, what is uploaded and reused.
    fn planned(plan: &PushPlan, scan: ScanSummary, dry_run: bool) -> PushReport {
        PushReport {
            release: plan.release.clone(),
            dry_run,
            unchanged: plan.new.is_none(),
            previous: plan.previous.clone(),
            files_total: plan.totals.files,
            dirs_total: plan.totals.dirs,
            symlinks_total: plan.totals.symlinks,
            bytes_total: plan.totals.bytes,
            files_hashed: scan.files_hashed,
            bytes_hashed: scan.bytes_hashed,
            objects_total: plan.objects_total,
            objects_uploaded: plan.objects_uploaded(),
            bytes_uploaded: plan.bytes_uploaded(),
            objects_reused: plan.objects_reused(),
            skipped: scan.skipped,
            phases: PhaseTimes {
                scan: scan.walk_seconds,
                hash: scan.hash_seconds,
                ..PhaseTimes::default()
            },
            ..PushReport::default()
        }
    }
}

/// `push --dry-run`: the plan of [`plan_release`] against the target as it is (read
/// without the lock), with the links assembly would make. A target that does not exist
/// yet plans as an empty store (every object uploaded).
#[allow(clippy::too_many_arguments)]
fn dry_run(
    source: &Path,
    target: &Arc<dyn Target>,
    entries: Vec<relstore_core::Entry>,
    wanted: Wanted,
    opts: &PushOptions,
    scan: ScanSummary,
    started: Instant,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    let t = Instant::now();
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
        catalog.require_readable_headers(target.as_ref())?;
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
        wanted,
        progress,
    )?;
    if opts.keep.is_some() {
        progress.note("--dry-run does not plan the --keep prune; run `relstore prune TARGET --keep N --dry-run` after the push");
    }
    let seeds = crate::shared::plan_seeds(source, target.as_ref(), &opts.shared, !fresh)?;
    let mut report = PushReport::planned(&plan, scan, true);
    report.shared = opts.shared.iter().map(ToString::to_string).collect();
    report.shared_seeded = seeds.iter().map(|s| s.path.to_string()).collect();
    if plan.new.is_some() {
        report.staged = opts.stage_only;
        if !opts.stage_only {
            let names = [crate::hooks::BEFORE_ACTIVATE, crate::hooks::AFTER_ACTIVATE];
            report.hooks_planned = opts.hooks.planned(&names, progress);
        }
    }
    report.links = plan.links();
    report.phases.compare = t.elapsed().as_secs_f64();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The steps of a push that change the target, under its lock (a fleet push runs
/// them host by host, see [`crate::fleet`]).
pub(crate) struct Run<'a> {
    pub(crate) source: &'a Path,
    pub(crate) target: &'a Arc<dyn Target>,
    pub(crate) opts: &'a PushOptions,
    /// The release current before the push.
    pub(crate) previous: Option<&'a str>,
    /// Earlier versions of the uploads, for targets that take patches.
    pub(crate) bases: &'a dyn DeltaBases,
    pub(crate) progress: &'a dyn Progress,
}

/// What creating a release did.
struct Created {
    links: u64,
    object_copies: u64,
    upload_seconds: f64,
    assemble_seconds: f64,
    swap_seconds: f64,
    store: Option<StoreReport>,
    pruned: Option<PruneReport>,
    /// Left staged instead of made current.
    staged: bool,
    activation: crate::hooks::Activation,
}

impl Run<'_> {
    /// Uploads, assembles and publishes `new`, then prunes for `--keep`.
    fn create(&self, new: &mut NewRelease) -> EngineResult<Created> {
        let (target, progress) = (self.target, self.progress);
        let t = Instant::now();
        let mut store = self.upload(new)?;
        let upload_seconds = t.elapsed().as_secs_f64();
        kill_point(points::PUSH_UPLOADED);
        relstore_core::cancel::check()?;

        // Staged before the release directory exists: a directory under `releases/`
        // without a manifest is then provably the leftover of an interrupted push only
        // when its staged manifest is there too (see [`crate::leftover`]).
        let encoded = self.stage(new)?;
        kill_point(points::PUSH_STAGED);
        relstore_core::cancel::check()?;

        let t = Instant::now();
        let stats = target
            .assemble(&new.name, &new.manifest.entries, progress)
            .map_err(|e| during_step(target.as_ref(), "assembling the release", e))?;
        let assemble_seconds = t.elapsed().as_secs_f64();
        kill_point(points::PUSH_ASSEMBLED);
        // The last point where an interruption may stop the push: from the swap to the
        // manifest's commit the flag is deliberately ignored, so a push that started to
        // publish its release always finishes publishing it.
        relstore_core::cancel::check()?;

        let t = Instant::now();
        let (staged, activation) = self.go_live(new)?;
        let swap_seconds = t.elapsed().as_secs_f64();
        if let Some(store) = store.as_mut() {
            if let Some(err) =
                crate::release_store::record(store, target.as_ref(), new.name.as_str(), &encoded)
            {
                progress.note(&format!("local release store: {err}"));
            }
        }
        let pruned = self.opts.keep.map(|keep| self.prune(keep)).transpose()?;
        Ok(Created {
            links: stats.links,
            object_copies: stats.object_copies,
            upload_seconds,
            assemble_seconds,
            swap_seconds,
            store,
            pruned,
            staged,
            activation,
        })
    }

    /// Makes the assembled release current between its hooks, or stages it: with
    /// `--stage-only`, or when `before_activate` fails (then `current` is untouched).
    fn go_live(&self, new: &NewRelease) -> EngineResult<(bool, crate::hooks::Activation)> {
        let target = self.target.as_ref();
        if self.opts.stage_only {
            crate::activate::stage(target, &new.name, self.progress)?;
            return Ok((true, crate::hooks::Activation::default()));
        }
        let previous = self.previous.map(ReleaseName::parse).transpose()?;
        let activation = activate_with_hooks(
            target,
            &self.opts.hooks,
            &new.name,
            previous.as_ref(),
            self.progress,
            &mut || self.publish(new),
        )?;
        if !activation.swapped {
            crate::activate::stage(target, &new.name, self.progress)?;
            return Ok((true, activation));
        }
        Ok((false, activation))
    }

    /// Uploads the objects the target lacks and, alongside, writes the release through
    /// to the local release store; returns what the write-through did.
    pub(crate) fn upload(&self, new: &NewRelease) -> EngineResult<Option<StoreReport>> {
        let (source, target, progress) = (self.source, self.target, self.progress);
        progress.start(Phase::Upload, new.uploads.iter().map(|u| u.size).sum());
        // Content is keyed by hash alone: the target gives each object its mode.
        let blobs = DirSource::new(source.to_path_buf(), &new.manifest.entries);
        let store_key = crate::release_store::store_key(target.as_ref());
        // The store write-through reads the same files as the upload (mostly from the
        // page cache) and compresses them: run it alongside, on its own thread.
        let (uploaded, stored) = std::thread::scope(|scope| {
            let store = self.opts.store.as_deref().map(|dir| {
                let manifest = &new.manifest;
                let previous = self.previous.map(|release| crate::release_store::Previous {
                    key: &store_key,
                    release,
                    new: &new.new_objects,
                });
                scope.spawn(move || {
                    crate::release_store::write_through(dir, source, &manifest.entries, previous)
                })
            });
            let uploaded =
                target.put_objects_with_bases(&new.uploads, &blobs, self.bases, progress);
            let stored = store.map(|h| {
                h.join().unwrap_or_else(|_| StoreReport {
                    error: Some("the write-through thread panicked".into()),
                    ..Default::default()
                })
            });
            (uploaded, stored)
        });
        uploaded.map_err(|e| during_step(target.as_ref(), "uploading objects", e))?;
        progress.finish();
        if let Some(err) = stored.as_ref().and_then(|s| s.error.as_ref()) {
            progress.note(&format!(
                "local release store: {err}; this release can still be rolled back to while its objects stay on the target"
            ));
        }
        Ok(stored)
    }

    /// Encodes the manifest and writes it to `tmp/` (durably); returns its bytes.
    ///
    /// The manifest's time is set here, under the lock, right before the release is
    /// assembled and swapped in: the order of releases is the order in which they went
    /// live. A push that started earlier but waited for the lock is published after the
    /// one it replaces, and is listed (and rolled back from) after it.
    pub(crate) fn stage(&self, new: &mut NewRelease) -> EngineResult<Vec<u8>> {
        new.manifest.header.created_unix_ns = now_unix_ns();
        let encoded = new
            .manifest
            .encode()
            .map_err(|source| EngineError::EncodeManifest {
                release: new.name.to_string(),
                source,
            })?;
        self.target.stage_manifest(&new.name, &encoded)?;
        Ok(encoded)
    }

    /// Swaps `current` and records the staged manifest: from the swap on the release
    /// exists.
    pub(crate) fn publish(&self, new: &NewRelease) -> EngineResult<()> {
        let target = self.target;
        self.progress.start(Phase::Swap, 1);
        target.activate(&new.name)?;
        kill_point(points::PUSH_SWAPPED);
        target.commit_manifest(&new.name)?;
        self.progress.finish();
        Ok(())
    }

    /// `--keep N` after the swap (see [`crate::retention`]).
    fn prune(&self, keep: usize) -> EngineResult<PruneReport> {
        let target = self.target.as_ref();
        let t = Instant::now();
        let catalog = Catalog::load(target)?;
        let plan = crate::retention::plan_prune(target, &catalog, keep)?;
        let left_behind = crate::retention::apply_prune(target, &plan, self.progress)?;
        Ok(PruneReport {
            plan,
            applied: true,
            left_behind,
            seconds: t.elapsed().as_secs_f64(),
        })
    }
}
