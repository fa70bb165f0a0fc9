//! Part one of a fleet push: on every host, connect, lock, recover and compare (phase
//! A), then — once the fleet agreed on one release name — upload what that host lacks,
//! assemble the release and stage it (recorded, `next` pointing at it: see
//! [`crate::activate`]) (phase B). Nothing is swapped here.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use relstore_core::failpoint::{kill_point, points};
use relstore_core::progress::{Phase, Progress};
use relstore_core::{Entry, ReleaseName, Target, TargetError};

use super::report::{chain, HostReport, Outcome};
use crate::catalog::{recover, Catalog};
use crate::delta_bases::StoreBases;
use crate::error::during_step;
use crate::lock::{acquire, LockGuard};
use crate::opener::OpenTarget;
use crate::push::{
    load_current, plan_release, refuse_store_inside_source, Current, NewRelease, PushOptions, Run,
    Wanted,
};

/// A host's step that failed, and why (one line).
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub step: &'static str,
    pub error: String,
}

/// Wraps an error as the failure of `step`.
pub(crate) fn fail<E: std::error::Error>(step: &'static str) -> impl FnOnce(E) -> Failure {
    move |e| Failure {
        step,
        error: chain(&e),
    }
}

impl Failure {
    /// Records the failure in a host's report.
    pub(crate) fn record(self, report: &mut HostReport) {
        report.outcome = Outcome::Failed;
        report.step = Some(self.step.to_owned());
        report.error = Some(self.error);
    }
}

/// What every host's job shares.
pub(crate) struct Ctx<'a> {
    pub source: &'a Path,
    pub entries: &'a [Entry],
    pub opener: &'a (dyn OpenTarget + Sync),
    pub opts: &'a PushOptions,
    /// The local release store: patch bases for each host's uploads (`opts.store` is
    /// off: the fleet writes the store once, not once per host).
    pub store: Option<&'a Path>,
    pub progress: &'a dyn Progress,
}

/// A host after phase A: locked (unless a dry run), recovered, compared.
pub(crate) struct Opened {
    pub target: Arc<dyn Target>,
    pub lock: Option<LockGuard>,
    pub catalog: Catalog,
    pub current: Current,
    /// The store does not exist yet (dry run only): every object is missing.
    pub fresh: bool,
    /// The staged release (`next`) when its tree is the source's: an earlier run of
    /// this push staged it and stopped; it is activated as it is.
    pub staged_same: Option<ReleaseName>,
}

/// A host after phase B: the release is assembled (or nothing was needed), the lock
/// still held until the command ends.
pub(crate) struct Staged {
    pub target: Arc<dyn Target>,
    pub lock: Option<LockGuard>,
    pub previous: Option<ReleaseName>,
    /// The staged release to make current; `None`: the host's current release equals
    /// the tree (or a dry run).
    pub release: Option<ReleaseName>,
}

/// Progress of one host: its phases become notes prefixed with its name (bars of
/// several hosts at once would overwrite each other).
pub(crate) struct HostProgress<'a> {
    pub host: &'a str,
    pub inner: &'a dyn Progress,
}

impl Progress for HostProgress<'_> {
    fn start(&self, phase: Phase, total: u64) {
        match phase {
            Phase::Upload if total > 0 => self.note(&format!("uploading {total} bytes")),
            Phase::Assemble => self.note("assembling"),
            Phase::Swap => self.note("swapping current"),
            _ => {}
        }
    }
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
    fn note(&self, message: &str) {
        self.inner.note(&format!("{}: {message}", self.host));
    }
}

/// Phase A on one host. A dry run takes no lock and changes nothing; a store that does
/// not exist yet then plans as empty.
pub(crate) fn open_host(
    ctx: &Ctx<'_>,
    spec: &str,
    progress: &dyn Progress,
) -> Result<Opened, Failure> {
    let target = ctx.opener.open_target(spec).map_err(fail("connect"))?;
    refuse_store_inside_source(ctx.source, target.as_ref()).map_err(fail("connect"))?;
    if ctx.opts.dry_run {
        let fresh = match target.open(false) {
            Ok(_) => false,
            Err(TargetError::NoStore { .. }) => true,
            Err(e) => return Err(fail("open store")(e)),
        };
        let (catalog, current) = if fresh {
            (Catalog::default(), Current::None)
        } else {
            let catalog = Catalog::load(target.as_ref()).map_err(fail("read catalog"))?;
            catalog
                .require_readable_headers(target.as_ref())
                .map_err(fail("read catalog"))?;
            let current = load_current(target.as_ref(), &catalog, ctx.entries, ctx.opts.force)
                .map_err(fail("compare"))?;
            (catalog, current)
        };
        return Ok(Opened {
            target,
            lock: None,
            catalog,
            current,
            fresh,
            staged_same: None,
        });
    }
    target.open(true).map_err(fail("open store"))?;
    let lock = acquire(&target, "push", &ctx.opts.lock, progress).map_err(fail("lock"))?;
    let catalog = recover(target.as_ref(), progress).map_err(fail("recover"))?;
    catalog
        .require_readable_headers(target.as_ref())
        .map_err(fail("recover"))?;
    relstore_core::cancel::check().map_err(fail("lock"))?;
    let current = load_current(target.as_ref(), &catalog, ctx.entries, ctx.opts.force)
        .map_err(fail("compare"))?;
    let staged_same = match (&current, &catalog.next) {
        (Current::Unchanged(_), _) | (_, None) => None,
        (_, Some(next)) => same_tree(target.as_ref(), next, ctx.entries)
            .map_err(fail("compare"))?
            .then(|| next.clone()),
    };
    Ok(Opened {
        target,
        lock: Some(lock),
        catalog,
        current,
        fresh: false,
        staged_same,
    })
}

/// The release an earlier run of this push left on the host, assembled and recorded
/// but not current, when its tree is the source's: the fleet's name, staged (`next`)
/// or not (a run killed between recording it and pointing `next` at it).
fn resumable(
    ctx: &Ctx<'_>,
    target: &Arc<dyn Target>,
    catalog: &Catalog,
    wanted: &Wanted,
    staged_same: Option<&ReleaseName>,
) -> Result<Option<ReleaseName>, Failure> {
    let Some(name) = wanted.name.as_ref().or(staged_same) else {
        return Ok(None);
    };
    if staged_same == Some(name) {
        return Ok(Some(name.clone()));
    }
    match catalog.resolve(name.as_str()) {
        Some(info) if info.present && !info.current => {
            let same = same_tree(target.as_ref(), name, ctx.entries).map_err(fail("compare"))?;
            Ok(same.then(|| name.clone()))
        }
        _ => Ok(None),
    }
}

/// Whether release `name`'s manifest lists exactly `entries`.
fn same_tree(
    target: &dyn Target,
    name: &ReleaseName,
    entries: &[Entry],
) -> crate::EngineResult<bool> {
    let bytes = crate::catalog::read_manifest_bytes(target, name)?;
    let (same, _) = relstore_core::Manifest::equals_entries(&bytes, Some(name.as_str()), entries)
        .map_err(|e| crate::catalog::manifest_error(target, name, e))?;
    Ok(same)
}

/// Phase B on one host: plan against what it holds, upload what it lacks, stage the
/// manifest and assemble. Fills the host's counts in `report`.
pub(crate) fn stage_host(
    ctx: &Ctx<'_>,
    opened: Opened,
    wanted: Wanted,
    report: &mut HostReport,
    progress: &dyn Progress,
) -> Result<Staged, Failure> {
    let t = Instant::now();
    let Opened {
        target,
        lock,
        catalog,
        current,
        fresh,
        staged_same,
    } = opened;
    if !ctx.opts.dry_run {
        if let Some(name) = resumable(ctx, &target, &catalog, &wanted, staged_same.as_ref())? {
            progress.note(&format!("release {name} is already staged here"));
            if catalog.next.as_ref() != Some(&name) {
                target.set_next(Some(&name)).map_err(fail("stage"))?;
            }
            report.previous = catalog.current.as_ref().map(ToString::to_string);
            report.outcome = Outcome::Staged;
            return Ok(Staged {
                target,
                lock,
                previous: catalog.current.clone(),
                release: Some(name),
            });
        }
    }
    let lookup = |ids: &[relstore_core::ObjectId]| {
        if fresh {
            Ok(ids.to_vec())
        } else {
            target.missing_objects(ids)
        }
    };
    let store = crate::push::store_for_bases(ctx.store, &current);
    let plan = plan_release(
        target.location(),
        &lookup,
        &catalog,
        &current,
        ctx.entries.to_vec(),
        wanted,
        progress,
    )
    .map_err(fail("compare"))?;
    report.previous.clone_from(&plan.previous);
    report.objects_uploaded = plan.objects_uploaded();
    report.bytes_uploaded = plan.bytes_uploaded();
    report.objects_reused = plan.objects_reused();
    let previous = catalog.current.clone();
    let mut staged = Staged {
        target: Arc::clone(&target),
        lock,
        previous,
        release: None,
    };
    if ctx.opts.dry_run {
        report.links = plan.links();
        report.outcome = Outcome::Planned;
        return Ok(staged);
    }
    let Some(mut new) = plan.new else {
        report.outcome = Outcome::Unchanged;
        return Ok(staged);
    };
    report.links = new
        .manifest
        .entries
        .iter()
        .filter(|e| e.object().is_some())
        .count() as u64;
    let bases = crate::push::delta_bases(&new, current, store.as_ref());
    build(
        ctx,
        &target,
        &mut new,
        plan.previous.as_deref(),
        &bases,
        progress,
    )?;
    report.outcome = Outcome::Staged;
    report.stage_seconds = t.elapsed().as_secs_f64();
    staged.release = Some(new.name);
    Ok(staged)
}

/// Uploads what the host lacks, assembles the release and stages it (`next`).
fn build(
    ctx: &Ctx<'_>,
    target: &Arc<dyn Target>,
    new: &mut NewRelease,
    previous: Option<&str>,
    bases: &StoreBases<'_>,
    progress: &dyn Progress,
) -> Result<(), Failure> {
    let run = Run {
        source: ctx.source,
        target,
        opts: ctx.opts,
        previous,
        bases,
        progress,
    };
    run.upload(new).map_err(fail("upload"))?;
    kill_point(points::PUSH_UPLOADED);
    relstore_core::cancel::check().map_err(fail("upload"))?;
    run.stage(new).map_err(fail("stage manifest"))?;
    kill_point(points::PUSH_STAGED);
    target
        .assemble(&new.name, &new.manifest.entries, progress)
        .map_err(|e| during_step(target.as_ref(), "assembling the release", e))
        .map_err(fail("assemble"))?;
    kill_point(points::PUSH_ASSEMBLED);
    // Its note ("`relstore activate` makes it current") is for `--stage-only` alone.
    crate::activate::stage(
        target.as_ref(),
        &new.name,
        &relstore_core::progress::NoProgress,
    )
    .map_err(fail("stage"))
}
