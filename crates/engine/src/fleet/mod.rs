//! Fleets: one push to many targets, staged everywhere first, activated in waves with
//! health checks and automatic revert (see docs/fleets.md).
//!
//! The order is what keeps a fleet consistent:
//! 1. the source is scanned and hashed once, on the client;
//! 2. every host is connected, locked, recovered and compared, in parallel
//!    (`--jobs`); the fleet agrees on one release name;
//! 3. every host uploads what it lacks and assembles the release, in parallel, still
//!    under its lock — the barrier: if any host fails up to here, no host swaps;
//! 4. the hosts swap `current` wave by wave (`--waves`), each followed by its checks,
//!    `--pause` between waves;
//! 5. a failed swap or check puts every host this push swapped back on its previous
//!    release, newest wave first (unless `--no-revert`).
//!
//! Every host keeps its lock from step 2 to the end, so nothing else changes a host
//! between its staging and its swap. A client killed at any moment leaves each host
//! on its old or its new release, complete (each host's own crash safety); the next
//! command on a host clears what its staging left, and re-running the same push
//! converges the fleet (hosts already on the tree are "unchanged" and lend the fleet
//! their release name).

mod check;
mod each;
mod pool;
mod report;
mod stage;
mod status;
mod swap;
mod waves;

use std::path::Path;
use std::time::{Duration, Instant};

use relstore_core::progress::Progress;
use relstore_core::release::now_unix_ns;
use relstore_core::ReleaseName;

pub use check::{CheckResult, Checks, CommandRunner, TargetShell};
pub use each::{Each, EachReport, HostJob, HostStep};
pub use report::{FleetReport, HostReport, Outcome};
pub use status::{fleet_status, FleetStatus, HostStatus};
pub use waves::{Step, Waves};

use crate::error::EngineResult;
use crate::opener::OpenTarget;
use crate::push::{Current, PushOptions, Wanted};
use crate::retention::PruneReport;
use pool::run_all;
use stage::{open_host, stage_host, Ctx, Failure, HostProgress, Opened, Staged};
use swap::Activate;

/// The default of `--jobs`: hosts worked on at once.
pub const DEFAULT_JOBS: usize = 8;

/// One host of a fleet.
#[derive(Clone, Debug)]
pub struct FleetHost {
    /// The TARGET string.
    pub spec: String,
    /// How reports and notes name the host: unique within the fleet.
    pub name: String,
    /// What `{host}` in `--check-url` stands for: the SSH host, or `localhost`.
    pub host: String,
}

/// How to push to a fleet. `push.store`, the local release store, is written once
/// for the whole fleet (alongside staging) and gives every host's uploads their patch
/// bases.
#[derive(Clone, Debug, Default)]
pub struct FleetOptions {
    pub push: PushOptions,
    /// Hosts worked on at once (staging and within a wave).
    pub jobs: usize,
    pub waves: Waves,
    /// Pause between two waves.
    pub pause: Duration,
    pub checks: Checks,
    /// `false` (`--no-revert`): a failure leaves swapped hosts on the new release.
    pub revert: bool,
}

/// Pushes `source` to every host of `hosts`: see the module documentation for the
/// order. Per-host failures are in the report (`ok` false), not an `Err`: the caller
/// prints the table. `Err` is for what stops the whole fleet before any host is
/// touched (an unreadable source, a bad release name).
pub fn fleet_push(
    source: &Path,
    hosts: &[FleetHost],
    opener: &(dyn OpenTarget + Sync),
    opts: &FleetOptions,
    runner: &dyn CommandRunner,
    progress: &dyn Progress,
) -> EngineResult<FleetReport> {
    let started = Instant::now();
    let requested = opts
        .push
        .release
        .as_deref()
        .map(ReleaseName::parse_new)
        .transpose()?;
    let scanned = crate::push::scan_source_excluding(
        source,
        opts.push.skip_special,
        Some(&opts.push.exclude),
        opts.push.cache_dir.as_deref(),
        progress,
    )?;
    let mut push_opts = opts.push.clone();
    push_opts.store = None;
    let mut report = FleetReport::start(hosts, &scanned, opts.push.dry_run);
    relstore_core::failpoint::kill_point(relstore_core::failpoint::points::PUSH_SCANNED);
    let ctx = Ctx {
        source,
        entries: &scanned.entries,
        opener,
        opts: &push_opts,
        store: opts.push.store.as_deref(),
        progress,
    };
    let t = Instant::now();
    // The write-through reads the files the uploads read (mostly from the page cache):
    // on a thread of its own, while the hosts stage.
    let (staged, stored) = std::thread::scope(|scope| {
        let writer = opts
            .push
            .store
            .as_deref()
            .filter(|_| !opts.push.dry_run)
            .map(|dir| {
                let entries = &scanned.entries;
                scope.spawn(move || crate::release_store::write_through(dir, source, entries, None))
            });
        let staged = stage_all(&ctx, hosts, opts.jobs, requested, &mut report);
        (staged, writer.and_then(|w| w.join().ok()))
    });
    if let Some(err) = stored.as_ref().and_then(|s| s.error.as_ref()) {
        progress.note(&format!(
            "the local release store was not updated ({err}); the fleet push goes on"
        ));
    }
    report.store = stored;
    report.stage_seconds = t.elapsed().as_secs_f64();
    let totals = relstore_core::manifest::Totals::of(&scanned.entries);
    report.files_total = totals.files;
    report.bytes_total = totals.bytes;
    report.objects_uploaded = report.hosts.iter().map(|h| h.objects_uploaded).sum();
    report.bytes_uploaded = report.hosts.iter().map(|h| h.bytes_uploaded).sum();
    drop(scanned);
    let Some(staged) = staged else {
        // The barrier: some host failed to stage, so none swaps. Each host's lock is
        // released as `staged` drops; its next command clears the staged debris.
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };
    if opts.push.stage_only {
        // `--stage-only`: every host has the release staged (`next`); `relstore
        // activate` swaps them later, in waves too.
        report.ok = true;
        release_locks(staged, progress);
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    if opts.push.dry_run {
        report.ok = true;
        report.waves = opts
            .waves
            .split(hosts.len())
            .into_iter()
            .map(Iterator::collect)
            .collect();
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let t = Instant::now();
    let mut hooks = opts.push.hooks.clone();
    hooks.revert_on_failure = false;
    let activate = Activate {
        hooks: &hooks,
        checks: &opts.checks,
        runner,
    };
    activate_waves(&activate, &staged, hosts, opts, &mut report, progress);
    report.activate_seconds = t.elapsed().as_secs_f64();
    if report.ok {
        prune_all(&staged, &push_opts, opts.jobs, &mut report, progress);
    }
    release_locks(staged, progress);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Phases A and B on every host; `None` when any host failed (then no host swaps).
fn stage_all(
    ctx: &Ctx<'_>,
    hosts: &[FleetHost],
    jobs: usize,
    requested: Option<ReleaseName>,
    report: &mut FleetReport,
) -> Option<Vec<Staged>> {
    let opened = open_all(ctx, hosts, jobs, report)?;
    let wanted = fleet_name(requested, &opened);
    report.release = wanted
        .name
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let slots: Vec<std::sync::Mutex<Option<Opened>>> = opened
        .into_iter()
        .map(|o| std::sync::Mutex::new(Some(o)))
        .collect();
    let results = run_all(&slots, jobs, &|i, slot| {
        let h = &hosts[i];
        let p = HostProgress {
            host: &h.name,
            inner: ctx.progress,
        };
        let mut host_report = HostReport::default();
        let opened = slot.lock().ok().and_then(|mut s| s.take());
        let r = match opened {
            Some(o) => stage_host(ctx, o, wanted.clone(), &mut host_report, &p),
            None => Err(panicked("stage")),
        };
        if r.is_ok() && !ctx.opts.dry_run {
            p.note(&format!(
                "staged ({} objects, {} bytes uploaded)",
                host_report.objects_uploaded, host_report.bytes_uploaded
            ));
        }
        (r, host_report)
    });
    let mut staged = Vec::with_capacity(hosts.len());
    let mut failed = false;
    for (i, r) in results.into_iter().enumerate() {
        let (r, counts) = r.unwrap_or_else(|| (Err(panicked("stage")), HostReport::default()));
        let host = &mut report.hosts[i];
        host.previous = counts.previous;
        host.objects_uploaded = counts.objects_uploaded;
        host.bytes_uploaded = counts.bytes_uploaded;
        host.objects_reused = counts.objects_reused;
        host.links = counts.links;
        host.stage_seconds = counts.stage_seconds;
        host.outcome = counts.outcome;
        match r {
            Ok(s) => staged.push(s),
            Err(f) => {
                f.record(host);
                failed = true;
            }
        }
    }
    if failed {
        // Hosts that staged keep their staged release (`next`): `relstore activate`
        // can make it current later, and a re-run of the push resumes from it.
        return None;
    }
    Some(staged)
}

/// Phase A on every host; `None` when any host failed (recorded in `report`).
fn open_all(
    ctx: &Ctx<'_>,
    hosts: &[FleetHost],
    jobs: usize,
    report: &mut FleetReport,
) -> Option<Vec<Opened>> {
    let opened = run_all(hosts, jobs, &|_, h: &FleetHost| {
        let p = HostProgress {
            host: &h.name,
            inner: ctx.progress,
        };
        open_host(ctx, &h.spec, &p)
    });
    let mut ready = Vec::with_capacity(hosts.len());
    let mut failed = false;
    for (i, r) in opened.into_iter().enumerate() {
        match r.unwrap_or_else(|| Err(panicked("connect"))) {
            Ok(o) => ready.push(o),
            Err(f) => {
                f.record(&mut report.hosts[i]);
                failed = true;
            }
        }
    }
    (!failed).then_some(ready)
}

/// A host job that panicked (a bug): reported as the failure of its step.
fn panicked(step: &'static str) -> Failure {
    Failure {
        step,
        error: "internal error: the host's worker panicked".to_owned(),
    }
}

/// The one release name of the fleet: `--release`; else the name of a host whose
/// current release already is the tree, or has it staged (a re-run after a crash
/// converges on it); else a timestamp name free on every host.
fn fleet_name(requested: Option<ReleaseName>, opened: &[Opened]) -> Wanted {
    let created = now_unix_ns();
    if requested.is_some() {
        return Wanted {
            name: requested,
            created,
        };
    }
    let unchanged = opened.iter().find_map(|o| match &o.current {
        Current::Unchanged(h) => ReleaseName::parse(&h.release).ok(),
        _ => None,
    });
    let done = unchanged.or_else(|| opened.iter().find_map(|o| o.staged_same.clone()));
    if done.is_some() {
        return Wanted {
            name: done,
            created,
        };
    }
    let taken = |n: &ReleaseName| opened.iter().any(|o| o.catalog.name_taken(n.as_str()));
    let base = ReleaseName::timestamp(created);
    let name = std::iter::once(base.clone())
        .chain((2u32..1000).filter_map(|n| ReleaseName::parse(&format!("{base}-{n}")).ok()))
        .find(|n| !taken(n))
        .unwrap_or(base);
    Wanted {
        name: Some(name),
        created,
    }
}

/// Step 4 and 5: the waves, their checks, and the revert.
fn activate_waves(
    activate: &Activate<'_>,
    staged: &[Staged],
    hosts: &[FleetHost],
    opts: &FleetOptions,
    report: &mut FleetReport,
    progress: &dyn Progress,
) {
    let waves = opts.waves.split(staged.len());
    report.waves = waves.iter().map(|w| w.clone().collect()).collect();
    let mut swapped: Vec<Vec<usize>> = Vec::new();
    let mut failed = false;
    for (n, wave) in waves.iter().enumerate() {
        if n > 0 && !opts.pause.is_zero() {
            progress.note(&format!(
                "pausing {:.1}s before wave {}",
                opts.pause.as_secs_f64(),
                n + 1
            ));
            std::thread::sleep(opts.pause);
        }
        if relstore_core::cancel::requested() {
            failed = true;
            break;
        }
        let indexes: Vec<usize> = wave.clone().collect();
        let results = run_all(&indexes, opts.jobs, &|_, &i| {
            let p = HostProgress {
                host: &report.hosts[i].host,
                inner: progress,
            };
            activate.host(&staged[i], &hosts[i].host, &p)
        });
        let mut this_wave = Vec::new();
        for (&i, r) in indexes.iter().zip(results) {
            let h = &mut report.hosts[i];
            h.wave = Some(n + 1);
            let Some(a) = r else {
                panicked("swap").record(h);
                failed = true;
                continue;
            };
            h.activate_seconds = a.seconds;
            h.checks = a.checks;
            h.hooks = a.hooks;
            if a.swapped {
                this_wave.push(i);
                h.outcome = Outcome::Activated;
            }
            if let Some(f) = a.failure {
                f.record(h);
                failed = true;
            }
        }
        swapped.push(this_wave);
        relstore_core::failpoint::kill_point(relstore_core::failpoint::points::FLEET_WAVE);
        if failed {
            break;
        }
    }
    report.ok = !failed;
    if failed {
        finish_failed(activate, staged, &swapped, opts, report, progress);
    }
}

/// After a failure: revert (newest wave first) or, with `--no-revert`, mark what is
/// left; either way say whether the fleet is mixed.
fn finish_failed(
    activate: &Activate<'_>,
    staged: &[Staged],
    swapped: &[Vec<usize>],
    opts: &FleetOptions,
    report: &mut FleetReport,
    progress: &dyn Progress,
) {
    if opts.revert {
        for wave in swapped.iter().rev() {
            let results = run_all(wave, opts.jobs, &|_, &i| {
                let host = &report.hosts[i].host;
                let p = HostProgress {
                    host,
                    inner: progress,
                };
                p.note("reverting to its previous release");
                activate.revert(&staged[i], &p)
            });
            for (&i, r) in wave.iter().zip(results) {
                let h = &mut report.hosts[i];
                match r.unwrap_or_else(|| Err(panicked("revert"))) {
                    Ok(hook) => {
                        h.hooks.extend(hook);
                        if h.outcome == Outcome::Failed {
                            h.error = h.error.take().map(|e| format!("{e} (reverted)"));
                        } else {
                            h.outcome = Outcome::Reverted;
                        }
                    }
                    Err(f) => {
                        h.outcome = Outcome::RevertFailed;
                        h.error = Some(match h.error.take() {
                            Some(e) => format!("{e}; revert failed: {}", f.error),
                            None => f.error,
                        });
                        h.step.get_or_insert_with(|| "revert".to_owned());
                    }
                }
            }
        }
        report.reverted = swapped.iter().any(|w| !w.is_empty());
    }
    let mut on_new = 0;
    let mut on_old = 0;
    for h in &mut report.hosts {
        match h.outcome {
            Outcome::Activated if !opts.revert => {
                on_new += 1;
            }
            Outcome::Failed if !opts.revert && h.step.as_deref() == Some("check") => {
                on_new += 1;
            }
            Outcome::Unchanged | Outcome::RevertFailed => on_new += 1,
            Outcome::Staged => on_old += 1,
            _ => on_old += 1,
        }
    }
    report.mixed = on_new > 0 && on_old > 0;
}

/// `--keep` on every host after a successful fleet push.
fn prune_all(
    staged: &[Staged],
    opts: &PushOptions,
    jobs: usize,
    report: &mut FleetReport,
    progress: &dyn Progress,
) {
    let Some(keep) = opts.keep else { return };
    let results = run_all(staged, jobs, &|i, s| -> Result<PruneReport, String> {
        let p = HostProgress {
            host: &report.hosts[i].host,
            inner: progress,
        };
        let target = s.target.as_ref();
        let catalog = crate::catalog::Catalog::load(target).map_err(|e| e.to_string())?;
        let plan =
            crate::retention::plan_prune(target, &catalog, keep).map_err(|e| e.to_string())?;
        let left_behind =
            crate::retention::apply_prune(target, &plan, &p).map_err(|e| e.to_string())?;
        Ok(PruneReport {
            plan,
            applied: true,
            left_behind,
            seconds: 0.0,
        })
    });
    for (i, r) in results.into_iter().enumerate() {
        if let Some(Err(e)) = r {
            progress.note(&format!(
                "{}: --keep prune failed: {e}",
                report.hosts[i].host
            ));
        }
    }
}

/// Releases every host's lock; a lock that cannot be removed is only a note (the
/// releases are in place; the next command breaks a stale lock of this machine).
fn release_locks(staged: Vec<Staged>, progress: &dyn Progress) {
    for s in staged {
        if let Some(lock) = s.lock {
            if let Err(e) = lock.release() {
                progress.note(&format!("{}: releasing the lock: {e}", s.target.location()));
            }
        }
    }
}
