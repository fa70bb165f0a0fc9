//! Commands on a fleet (several TARGETs, or `--to` a target with several hosts): the
//! engine's fleet push, status, rollback and activate, and their per-host tables.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use relstore_engine::activate::{activate as activate_one, ActivateOptions};
use relstore_engine::fleet::{
    fleet_push, fleet_status, Checks, Each, EachReport, FleetHost, FleetOptions, FleetReport,
    Outcome, TargetShell,
};
use relstore_engine::hooks::Hooks;
use relstore_engine::push::PushOptions;
use relstore_engine::rollback::{rollback as rollback_one, RollbackOptions};
use relstore_targets::{host_of, RemoteOptions};

use crate::args::{FleetArgs, PushArgs, StatusArgs, ToArgs};
use crate::output::Out;
use crate::project::Selection;
use crate::targets::Targets;
use crate::units::{human_bytes, thousands};
use crate::Ctx;

/// The selection of a verb that takes several TARGETs: none (the project file's
/// target), one (as before), or several (a fleet given on the command line).
pub fn select_many(ctx: &Ctx, to: &ToArgs, targets: &[String]) -> Result<Selection> {
    match targets {
        [] => ctx.select(to, None),
        [one] => ctx.select(to, Some(one.clone())),
        [first, ..] => {
            // The same checks as one TARGET (not with --to or --config)…
            ctx.select(to, Some(first.clone()))?;
            Ok(Selection {
                plan: None,
                hosts: targets.to_vec(),
            })
        }
    }
}

/// The fleet's hosts: named by their SSH host, or by the whole TARGET for a local
/// path and where two share a host (two roots on one server).
fn fleet_hosts(specs: &[String]) -> Vec<FleetHost> {
    let hosts: Vec<String> = specs.iter().map(|s| host_of(s)).collect();
    specs
        .iter()
        .zip(&hosts)
        .map(|(spec, host)| FleetHost {
            spec: spec.clone(),
            name: if !relstore_targets::is_remote(spec)
                || hosts.iter().filter(|h| *h == host).count() > 1
            {
                spec.clone()
            } else {
                host.clone()
            },
            host: host.clone(),
        })
        .collect()
}

/// The path lists of a push, merged from the flags and the project file.
pub struct Lists {
    pub exclude: Vec<String>,
    pub shared: Vec<relstore_core::shared::SharedPath>,
}

/// A fleet push (see `relstore_engine::fleet`).
#[allow(clippy::too_many_arguments)]
pub fn push(
    a: &PushArgs,
    sel: &Selection,
    source: &Path,
    keep: Option<usize>,
    lists: Lists,
    hooks: Hooks,
    ctx: &Ctx,
    out: &mut Out,
) -> Result<()> {
    let remote = ctx.remote_for(sel)?;
    let opts = FleetOptions {
        push: PushOptions {
            release: a.release.clone(),
            force: a.force,
            skip_special: a.skip_special,
            cache_dir: crate::cache_dir(a.cache.cache_dir.clone(), a.cache.no_stat_cache),
            lock: crate::lock_policy(&a.lock),
            keep,
            exclude: lists.exclude,
            shared: lists.shared,
            dry_run: a.dry_run,
            store: if a.no_local_store || a.dry_run {
                None
            } else {
                crate::store_dir(a.store.store_dir.clone())
            },
            stage_only: a.stage_only,
            hooks,
        },
        jobs: a.fleet.jobs,
        waves: a.fleet.waves.clone().unwrap_or_default(),
        pause: a.fleet.pause.unwrap_or(Duration::ZERO),
        checks: Checks {
            command: a.checks.check.clone(),
            command_timeout: a.checks.check_timeout,
            url: a.checks.check_url.clone(),
            body: a.checks.check_body.clone(),
            settle: a.checks.check_settle,
        },
        revert: !a.checks.no_revert,
    };
    if !a.no_local_store && !a.dry_run {
        relstore_core::progress::Progress::note(ctx.notes, "a fleet push does not write the local release store (an evicted release comes back with `rollback --source DIR`)");
    }
    let hosts = fleet_hosts(&sel.hosts);
    let opener = Targets { remote };
    let report = fleet_push(source, &hosts, &opener, &opts, &TargetShell, ctx.notes)?;
    if out.is_json() {
        out.emit_json(&report)?;
    } else {
        out.text(&push_table(&report))?;
    }
    out.flush()?;
    match report.failure() {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

/// The human report of a fleet push: a summary line and one row per host.
fn push_table(r: &FleetReport) -> String {
    let mut s = String::new();
    let verb = if r.dry_run {
        "would upload"
    } else {
        "uploaded"
    };
    let _ = writeln!(
        s,
        "release {}: {} hosts in {} wave(s); {} files, {}; {verb} {} objects, {} in total; scan {:.1} s, total {:.1} s",
        r.release,
        r.hosts.len(),
        r.waves.len().max(1),
        thousands(r.files_total),
        human_bytes(r.bytes_total),
        thousands(r.objects_uploaded),
        human_bytes(r.bytes_uploaded),
        r.scan_seconds,
        r.seconds
    );
    let width = r
        .hosts
        .iter()
        .map(|h| h.host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "{:width$}  WAVE  {:13}  {:>22}  STEP / ERROR",
        "HOST", "OUTCOME", "UPLOAD"
    );
    for h in &r.hosts {
        let wave = h.wave.map_or_else(|| "-".to_owned(), |w| w.to_string());
        let upload = format!(
            "{} obj, {}",
            thousands(h.objects_uploaded),
            human_bytes(h.bytes_uploaded)
        );
        let mut tail = String::new();
        if let Some(step) = &h.step {
            tail = format!("{step}: {}", h.error.as_deref().unwrap_or(""));
        }
        let _ = writeln!(
            s,
            "{:width$}  {wave:4}  {:13}  {upload:>22}  {tail}",
            h.host,
            outcome(h.outcome)
        );
        for c in h.checks.iter().filter(|c| !c.passed) {
            for line in c.output.lines() {
                let _ = writeln!(s, "{:width$}    | {line}", "");
            }
        }
    }
    if r.mixed {
        let _ = writeln!(s, "the fleet is mixed: hosts serve different releases");
    }
    s
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Planned => "planned",
        Outcome::Staged => "staged",
        Outcome::NotStaged => "not staged",
        Outcome::Activated => "activated",
        Outcome::Unchanged => "unchanged",
        Outcome::Reverted => "reverted",
        Outcome::Failed => "FAILED",
        Outcome::RevertFailed => "REVERT FAILED",
    }
}

/// `relstore status`: per host current, previous, staged; "mixed" when they differ.
pub fn status(a: StatusArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let sel = select_many(ctx, &a.to, &a.targets)?;
    let remote = ctx.remote_for(&sel)?;
    let hosts = fleet_hosts(&sel.hosts);
    let status = fleet_status(&hosts, &Targets { remote }, a.jobs.max(1));
    if out.is_json() {
        out.emit_json(&status)?;
    } else {
        let mut s = String::new();
        let width = status
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            s,
            "{:width$}  {:24}  {:24}  STAGED",
            "HOST", "CURRENT", "PREVIOUS"
        );
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
        for h in &status.hosts {
            match &h.error {
                Some(e) => {
                    let _ = writeln!(s, "{:width$}  error: {e}", h.host);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "{:width$}  {:24}  {:24}  {}",
                        h.host,
                        dash(&h.current),
                        dash(&h.previous),
                        dash(&h.staged)
                    );
                }
            }
        }
        if status.mixed {
            let _ = writeln!(s, "mixed: the hosts do not all serve the same release");
        }
        out.text(&s)?;
    }
    out.flush()?;
    if let Some(bad) = status.hosts.iter().find(|h| h.error.is_some()) {
        anyhow::bail!("{}: {}", bad.host, bad.error.as_deref().unwrap_or(""));
    }
    Ok(())
}

/// `relstore rollback` on a fleet, in waves.
pub fn rollback(
    f: &FleetArgs,
    sel: &Selection,
    opts: &RollbackOptions,
    remote: &RemoteOptions,
    ctx: &Ctx,
    out: &mut Out,
) -> Result<()> {
    let each = each(f, remote, ctx);
    let hosts = fleet_hosts(&sel.hosts);
    let report = each.run(&hosts, &|target, p| {
        let r = rollback_one(target, opts, p)?;
        let failure = r.hook_failure.clone();
        Ok((r, failure))
    });
    print_each(out, &report, "rollback", |r| {
        format!("{} -> {}", r.from.as_deref().unwrap_or("-"), r.to)
    })
}

/// `relstore activate` on a fleet, in waves.
pub fn activate(
    f: &FleetArgs,
    sel: &Selection,
    opts: &ActivateOptions,
    remote: &RemoteOptions,
    ctx: &Ctx,
    out: &mut Out,
) -> Result<()> {
    let each = each(f, remote, ctx);
    let hosts = fleet_hosts(&sel.hosts);
    let report = each.run(&hosts, &|target, p| {
        let r = activate_one(target, opts, p)?;
        let failure = r.hook_failure.clone();
        Ok((r, failure))
    });
    print_each(out, &report, "activate", |r| {
        format!("{} -> {}", r.previous.as_deref().unwrap_or("-"), r.release)
    })
}

fn each<'a>(f: &'a FleetArgs, remote: &RemoteOptions, ctx: &'a Ctx) -> EachOwned<'a> {
    EachOwned {
        opener: Targets {
            remote: remote.clone(),
        },
        f,
        ctx,
    }
}

/// An [`Each`] with the opener it borrows.
struct EachOwned<'a> {
    opener: Targets,
    f: &'a FleetArgs,
    ctx: &'a Ctx<'a>,
}

impl EachOwned<'_> {
    fn run<R: Send>(
        &self,
        hosts: &[FleetHost],
        job: &relstore_engine::fleet::HostJob<'_, R>,
    ) -> EachReport<R> {
        let waves = self.f.waves.clone().unwrap_or_default();
        Each {
            opener: &self.opener,
            jobs: self.f.jobs,
            waves: &waves,
            pause: self.f.pause.unwrap_or(Duration::ZERO),
            progress: self.ctx.notes,
        }
        .run(hosts, job)
    }
}

/// Prints a fleet rollback or activate; exits 1 naming the first failed host.
fn print_each<R: serde::Serialize>(
    out: &mut Out,
    report: &EachReport<R>,
    verb: &str,
    line: impl Fn(&R) -> String,
) -> Result<()> {
    if out.is_json() {
        out.emit_json(report)?;
    } else {
        let mut s = String::new();
        let width = report
            .hosts
            .iter()
            .map(|h| h.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        for h in &report.hosts {
            let wave = h.wave.map_or_else(|| "-".to_owned(), |w| w.to_string());
            let what = match (&h.report, &h.error, h.wave) {
                (_, _, None) => "not tried (an earlier wave failed)".to_owned(),
                (Some(r), None, _) => line(r),
                (Some(r), Some(e), _) => format!("{}; FAILED: {e}", line(r)),
                (None, Some(e), _) => format!("FAILED: {e}"),
                (None, None, _) => String::new(),
            };
            let _ = writeln!(s, "{:width$}  wave {wave}  {what}", h.host);
        }
        out.text(&s)?;
    }
    out.flush()?;
    if let Some(bad) = report.hosts.iter().find(|h| h.error.is_some()) {
        anyhow::bail!(
            "{}: {verb} failed: {}; later waves were not run",
            bad.host,
            bad.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
