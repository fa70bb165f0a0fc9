//! Staged releases and `relstore activate`.
//!
//! A staged release is assembled and recorded (its manifest is in `manifests/`) but not
//! current; `ROOT/next` points at it so a second virtual host can serve it for a look
//! before the switch. `push --stage-only` stages the release it pushed, and a push
//! whose `before_activate` hook fails stages it too. `activate` later makes it current
//! under the lock, between its hooks, exactly as a push would have.
//!
//! Releases are ordered by the time they became current, so activation writes the
//! manifest again with the activation time before the swap (staged in `tmp/`, moved
//! over the recorded one right after the swap, as a push does). A crash between the
//! two leaves the recorded manifest with the staging time: the release is current and
//! whole, only listed at its staging time.

use std::sync::Arc;
use std::time::Instant;

use relstore_core::progress::{Phase, Progress};
use relstore_core::release::now_unix_ns;
use relstore_core::{Manifest, ReleaseName, Target};
use serde::Serialize;

use crate::catalog::{read_manifest_bytes, recover};
use crate::error::{EngineError, EngineResult};
use crate::hooks::{activate_with_hooks, HookReport, Hooks, PlannedHook};
use crate::lock::{acquire, LockPolicy};

/// Records the release whose manifest a push staged in `tmp/` and points `next` at it.
/// The manifest first: a release `next` points at is then always a recorded one.
pub(crate) fn stage(
    target: &dyn Target,
    name: &ReleaseName,
    progress: &dyn Progress,
) -> EngineResult<()> {
    target.commit_manifest(name)?;
    target.set_next(Some(name))?;
    progress.note(&format!(
        "release {name} is staged: {}/next points at it; `relstore activate` makes it current",
        target.location()
    ));
    Ok(())
}

/// How to activate.
#[derive(Clone, Debug, Default)]
pub struct ActivateOptions {
    /// The release to make current; default: the one `next` points at.
    pub release: Option<String>,
    pub lock: LockPolicy,
    pub hooks: Hooks,
    /// Say which release and hooks, change nothing.
    pub dry_run: bool,
}

/// What `activate` did (the field names are the `--json` keys).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActivateReport {
    pub dry_run: bool,
    pub release: String,
    /// The release current before.
    pub previous: Option<String>,
    /// Nothing to do: it was already current.
    pub already_current: bool,
    /// `current` points at the release (false when `before_activate` failed, or when
    /// a failed `after_activate` was reverted).
    pub activated: bool,
    pub reverted: bool,
    pub hooks: Vec<HookReport>,
    pub hooks_planned: Vec<PlannedHook>,
    /// The first hook failure (the command exits 1 with it).
    pub hook_failure: Option<String>,
    pub seconds: f64,
}

/// Makes a staged release current (see the module docs).
pub fn activate(
    target: &Arc<dyn Target>,
    opts: &ActivateOptions,
    progress: &dyn Progress,
) -> EngineResult<ActivateReport> {
    let started = Instant::now();
    let t = target.as_ref();
    t.open(false)?;
    let lock = match opts.dry_run {
        true => None,
        false => Some(acquire(target, "activate", &opts.lock, progress)?),
    };
    let catalog = match opts.dry_run {
        true => crate::catalog::Catalog::load(t)?,
        false => recover(t, progress)?,
    };
    let (name, current, present) = pick(&catalog, opts, t)?;
    if !present {
        return Err(EngineError::Target(relstore_core::TargetError::Other(
            format!(
                "{}: release {name} was evicted; `relstore rollback {} {name}` rebuilds it",
                t.location(),
                t.location()
            ),
        )));
    }
    let mut report = ActivateReport {
        dry_run: opts.dry_run,
        release: name.to_string(),
        previous: catalog.current.as_ref().map(ToString::to_string),
        already_current: current,
        ..ActivateReport::default()
    };
    if opts.dry_run || current {
        if opts.dry_run && !current {
            let names = [crate::hooks::BEFORE_ACTIVATE, crate::hooks::AFTER_ACTIVATE];
            report.hooks_planned = opts.hooks.planned(&names, progress);
        }
        if current && !opts.dry_run && catalog.next.as_ref() == Some(&name) {
            t.set_next(None)?;
        }
        if let Some(lock) = lock {
            lock.release()?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let done = activate_with_hooks(
        t,
        &opts.hooks,
        &name,
        catalog.current.as_ref(),
        progress,
        &mut || swap(t, &name, catalog.next.as_ref() == Some(&name), progress),
    )?;
    if !done.swapped && catalog.next.as_ref() != Some(&name) {
        // A failed before_activate leaves the release staged, as a push does.
        t.set_next(Some(&name))?;
    }
    report.activated = done.swapped && !done.reverted;
    report.reverted = done.reverted;
    report.hooks = done.hooks;
    report.hook_failure = done.failure;
    if let Some(lock) = lock {
        lock.release()?;
    }
    if done.interrupted {
        return Err(
            relstore_core::TargetError::Interrupted(relstore_core::cancel::Interrupted).into(),
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The release to activate: the one named, else the one `next` points at; with
/// whether it is current and present.
fn pick(
    catalog: &crate::catalog::Catalog,
    opts: &ActivateOptions,
    t: &dyn Target,
) -> EngineResult<(ReleaseName, bool, bool)> {
    let name = match &opts.release {
        Some(r) => ReleaseName::parse(r)?,
        None => catalog.next.clone().ok_or_else(|| {
            EngineError::Target(relstore_core::TargetError::Other(format!(
                "{}: no staged release (there is no `next`); name the release to activate",
                t.location()
            )))
        })?,
    };
    let info = catalog
        .resolve(name.as_str())
        .ok_or_else(|| EngineError::NoSuchRelease {
            name: name.to_string(),
            location: t.location().to_owned(),
        })?;
    Ok((info.name.clone(), info.current, info.present))
}

/// The swap of an activation: the manifest again with the activation time (staged),
/// `current` renamed, the manifest moved over the recorded one, then `next` removed
/// when it pointed at the release.
pub(crate) fn swap(
    target: &dyn Target,
    name: &ReleaseName,
    was_next: bool,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let bytes = read_manifest_bytes(target, name)?;
    let mut manifest = Manifest::decode(&bytes, Some(name.as_str()))
        .map_err(|source| crate::catalog::manifest_error(target, name, source))?;
    manifest.header.created_unix_ns = now_unix_ns();
    let encoded = manifest
        .encode()
        .map_err(|source| EngineError::EncodeManifest {
            release: name.to_string(),
            source,
        })?;
    target.stage_manifest(name, &encoded)?;
    progress.start(Phase::Swap, 1);
    target.activate(name)?;
    target.commit_manifest(name)?;
    if was_next {
        target.set_next(None)?;
    }
    progress.finish();
    Ok(())
}
