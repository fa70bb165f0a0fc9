//! The `relstore` command: parses arguments, calls the engine, prints results.
//!
//! Results go to stdout (one JSON object with `--json`), notes and errors to stderr.
//! Exit status: 0 success, 1 failure (one line naming the path or host), 2 usage error,
//! 130 (SIGINT) or 143 (SIGTERM) when interrupted (see `interrupt`).

mod args;
mod config_cmd;
mod fleet_cmd;
mod generate;
mod helper_cmd;
mod interrupt;
mod output;
mod progress_bars;
mod project;
mod targets;
mod units;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use relstore_engine::compare::{diff_operands, Operand};
use relstore_engine::hooks::Hooks;
use relstore_engine::lock::LockPolicy;
use relstore_engine::push::PushOptions;
use relstore_engine::reconnect::{push_reconnecting, RetryPolicy};
use relstore_engine::release_store;
use relstore_engine::retention::{prune, set_pin};
use relstore_engine::rollback::{rollback, RollbackOptions};
use relstore_targets::{open_target_noted, RemoteOptions};

use args::{Cli, Command, ConfigCommand, HelperCommand, LockArgs, StoreCommand};
use output::{Notes, Out};
use project::{each_host, select, Selection};
use targets::{FixtureTrees, Targets};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(a) = cli.command {
        // Nothing but the protocol on stdout, no notes, no progress.
        return match relstore_targets::serve_stdio(a.root) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(
                    io::stderr(),
                    "relstore: error: {:#}",
                    anyhow::Error::from(e)
                );
                ExitCode::from(1)
            }
        };
    }
    interrupt::install();
    let notes = Notes::new(cli.quiet, cli.json);
    let result = run(cli, &notes);
    notes.clear();
    finish(result)
}

/// The exit status (and the error line) for the result of a command.
fn finish(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<TreesDiffer>() => ExitCode::from(1),
        Err(e) => {
            if let Some(status) = interrupt::exit_status(&e) {
                let _ = writeln!(io::stderr(), "{}", interrupt::message());
                return ExitCode::from(status);
            }
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                // The reader went away (`relstore releases | head`): not a failure.
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "relstore: error: {e:#}");
            ExitCode::from(if project::is_usage(&e) { 2 } else { 1 })
        }
    }
}

/// `diff --exit-code` found differences: exit status 1 with no error line (the diff
/// printed on stdout says what differs).
#[derive(Debug)]
struct TreesDiffer;

impl std::fmt::Display for TreesDiffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the trees differ")
    }
}

impl std::error::Error for TreesDiffer {}

fn lock_policy(l: &LockArgs) -> LockPolicy {
    LockPolicy {
        wait: l.wait || l.wait_timeout.is_some(),
        wait_timeout: l.wait_timeout.map(Duration::from_secs_f64),
        break_lock: l.break_lock,
        record: None,
    }
}

/// Where the client's caches live: `--cache-dir`, `$RELSTORE_CACHE_DIR`,
/// `$XDG_CACHE_HOME/relstore` or `~/.cache/relstore`.
fn cache_dir(explicit: Option<PathBuf>, disabled: bool) -> Option<PathBuf> {
    if disabled {
        return None;
    }
    explicit
        .or_else(|| std::env::var_os("RELSTORE_CACHE_DIR").map(PathBuf::from))
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("relstore")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/relstore")))
}

/// The `--cache-dir` the user gave to this command, if it takes one.
fn explicit_cache_dir(command: &Command) -> Option<&Path> {
    let cache = match command {
        Command::Push(a) => &a.cache,
        Command::Diff(a) => &a.cache,
        Command::Verify(a) => &a.cache,
        Command::Rollback(a) => &a.cache,
        _ => return None,
    };
    cache.cache_dir.as_deref()
}

/// Where the local release store is: `--store-dir`, else the default location.
fn store_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(release_store::default_location)
}

fn required_store_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    store_dir(explicit).ok_or_else(|| {
        anyhow::anyhow!(
            "no local release store location: set --store-dir, RELSTORE_STORE_DIR or HOME"
        )
    })
}

/// How to reach SSH targets: the environment's defaults, then the global flags.
fn remote_options(cli: &Cli) -> RemoteOptions {
    let mut r = RemoteOptions::from_env();
    r.notes = relstore_ssh::config::NoteSink(Some(|note| eprintln!("relstore: {note}")));
    r.identity_files.splice(0..0, cli.identity.iter().cloned());
    if let Some(k) = &cli.known_hosts {
        r.known_hosts = Some(k.clone());
    }
    r.accept_new_host_key |= cli.accept_new_host_key;
    if let Some(c) = &cli.ssh_config {
        r.ssh_config = Some(c.clone());
    }
    r
}

/// `--helper`, else `$RELSTORE_HELPER`; `None` when neither is set (then the project
/// file's `helper`, else auto).
fn helper_mode(cli: &Cli) -> Result<Option<relstore_ssh::HelperMode>> {
    if let Some(m) = cli.helper {
        return Ok(Some(m));
    }
    match std::env::var("RELSTORE_HELPER") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Some)
            .map_err(|e: String| anyhow::anyhow!("RELSTORE_HELPER: {e}")),
        _ => Ok(None),
    }
}

/// What every verb needs besides its own arguments.
struct Ctx<'a> {
    /// `--config FILE`.
    config: Option<PathBuf>,
    /// SSH settings; `helper` from the flag, the environment or auto.
    remote: RemoteOptions,
    /// Whether `--helper` or `$RELSTORE_HELPER` set the helper mode (they beat the file).
    helper_set: bool,
    /// `--retries`: reconnections a push may make after losing its connection.
    retries: u32,
    notes: &'a Notes,
}

impl Ctx<'_> {
    /// Picks the target of a verb (see [`project::select`]).
    fn select(&self, to: &args::ToArgs, explicit: Option<String>) -> Result<Selection> {
        select(self.config.as_deref(), to.to.as_deref(), explicit)
    }

    /// The SSH settings for `sel`: the project target's `helper` unless the command
    /// line or the environment chose.
    fn remote_for(&self, sel: &Selection) -> Result<RemoteOptions> {
        let mut r = self.remote.clone();
        if let (false, Some(h)) = (self.helper_set, sel.plan.as_ref().and_then(|p| p.helper)) {
            r.helper = h.as_str().parse().map_err(|e: String| anyhow::anyhow!(e))?;
        }
        Ok(r)
    }
}

/// Opens TARGET for a command; a remote one says on stderr (unless --quiet) which
/// helper it uses, or why none.
fn open_target(
    spec: &str,
    remote: &RemoteOptions,
) -> Result<std::sync::Arc<dyn relstore_core::Target>> {
    let quiet = remote_quiet();
    let note: relstore_ssh::helper::NoteSink = std::sync::Arc::new(move |line: &str| {
        if !quiet {
            let _ = writeln!(io::stderr(), "relstore: {line}");
        }
    });
    Ok(open_target_noted(spec, remote, note)?)
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn remote_quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

fn run(cli: Cli, notes: &Notes) -> Result<()> {
    let mut out = Out::new(cli.json);
    let mut remote = remote_options(&cli);
    let helper = helper_mode(&cli)?;
    remote.helper = helper.unwrap_or(relstore_ssh::HelperMode::Auto);
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    if let Some(dir) = explicit_cache_dir(&cli.command) {
        // The helper's manifest cache follows the stat cache.
        relstore_targets::use_cache_dir(dir.to_path_buf());
    }
    let ctx = Ctx {
        config: cli.config.clone(),
        remote,
        helper_set: helper.is_some(),
        retries: cli.retries,
        notes,
    };
    let remote = &ctx.remote;
    match cli.command {
        Command::Push(a) => run_push(a, &ctx, &mut out)?,
        Command::Releases(a) => {
            let sel = ctx.select(&a.to, a.target)?;
            let remote = ctx.remote_for(&sel)?;
            each_host(&sel, &mut out, |host, out| {
                let target = open_target(host, &remote)?;
                target.open(false)?;
                let catalog = relstore_engine::catalog::Catalog::load(target.as_ref())?;
                out.releases(&catalog)
            })?;
        }
        Command::Rollback(a) => run_rollback(a, &ctx, &mut out)?,
        Command::Activate(a) => run_activate(a, &ctx, &mut out)?,
        Command::Status(a) => fleet_cmd::status(a, &ctx, &mut out)?,
        Command::Diff(a) => run_diff(a, &ctx, &mut out)?,
        Command::Prune(a) => run_prune(a, &ctx, &mut out)?,
        Command::Verify(a) => run_verify(a, &ctx, &mut out)?,
        Command::Bench(a) => run_bench(a, remote, &mut out, notes)?,
        Command::Store(StoreCommand::Info(a)) => {
            let dir = required_store_dir(a.store.store_dir)?;
            out.store_usage(&release_store::usage(&dir)?)?;
        }
        Command::Store(StoreCommand::Prune(a)) => {
            let dir = required_store_dir(a.store.store_dir)?;
            let stats = release_store::prune(&dir, a.keep, a.dry_run)?;
            out.store_prune(&dir, &stats, a.dry_run)?;
        }
        Command::Helper(HelperCommand::Status(a)) => {
            let sel = ctx.select(&a.to, a.target)?;
            let remote = ctx.remote_for(&sel)?;
            helper_cmd::status(sel.single("helper status")?, &remote, cli.json)?;
            return Ok(());
        }
        Command::Config(ConfigCommand::Check) => {
            let project = project::load(ctx.config.as_deref())?;
            config_cmd::check(&project, cli.json)?;
            return Ok(());
        }
        Command::Serve(_) => anyhow::bail!("serve runs only as the helper of a client"),
        Command::Completions(a) => return generate::completions(a.shell),
        Command::Man(a) => return generate::man(a.dir.as_deref()),
        Command::Pin(a) => pin(&mut out, a, true, &ctx)?,
        Command::Unpin(a) => pin(&mut out, a, false, &ctx)?,
    }
    out.flush()
}

/// `relstore prune`: `--keep`, else the project target's `keep`.
fn run_prune(a: args::PruneArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let sel = ctx.select(&a.to, a.target)?;
    let remote = ctx.remote_for(&sel)?;
    let keep = a
        .keep
        .or(sel.plan.as_ref().and_then(|p| p.keep))
        .ok_or_else(|| {
            project::Usage("prune needs --keep N (or `keep` in the project file)".into())
        })?;
    each_host(&sel, out, |host, out| {
        let target = open_target(host, &remote)?;
        let report = prune(&target, keep, a.dry_run, &lock_policy(&a.lock), ctx.notes)?;
        out.prune(&report)?;
        out.flush()?;
        if !report.left_behind.is_empty() {
            anyhow::bail!(
                "{host}: {} path(s) could not be deleted (listed above); everything else was pruned",
                report.left_behind.len()
            );
        }
        Ok(())
    })
}

/// `relstore verify`.
fn run_verify(a: args::VerifyArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let (target, release) = project::target_and_release(a.target, a.release, a.to.to.as_deref())?;
    let sel = ctx.select(&a.to, target)?;
    let remote = ctx.remote_for(&sel)?;
    each_host(&sel, out, |host, out| {
        let target = open_target(host, &remote)?;
        let opts = relstore_engine::verify::VerifyOptions {
            release: release.clone(),
            repair: a.repair,
            sources: a.sources.clone(),
            store: store_dir(a.store.store_dir.clone()),
            cache_dir: cache_dir(a.cache.cache_dir.clone(), a.cache.no_stat_cache),
            lock: lock_policy(&a.lock),
        };
        let report = relstore_engine::verify::verify(&target, &opts, ctx.notes)?;
        out.verify(&report)?;
        out.flush()?;
        if !report.is_clean() {
            anyhow::bail!("{host}: {}", report.failure_summary());
        }
        Ok(())
    })
}

/// `relstore diff`: a side `@RELEASE` is on the project file's target.
fn run_diff(a: args::DiffArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let to = a.to.to.as_deref();
    if let Some(name) = to {
        if !a.a.starts_with('@') && !a.b.starts_with('@') {
            return Err(project::Usage(format!(
                "--to {name} applies to a side written @RELEASE; neither {} nor {} is one",
                a.a, a.b
            ))
            .into());
        }
    }
    let old = Operand::parse(&project::diff_side(&a.a, ctx.config.as_deref(), to)?)?;
    let new = Operand::parse(&project::diff_side(&a.b, ctx.config.as_deref(), to)?)?;
    let cache = cache_dir(a.cache.cache_dir, a.cache.no_stat_cache);
    let targets = Targets {
        remote: ctx.remote.clone(),
    };
    let d = diff_operands(
        &old,
        &new,
        cache.as_deref(),
        &a.exclude,
        &targets,
        ctx.notes,
    )?;
    out.diff(&d)?;
    if a.exit_code && !d.is_empty() {
        out.flush()?;
        return Err(TreesDiffer.into());
    }
    Ok(())
}

/// `relstore push`: flags win over the project file; `--exclude` patterns come after
/// the file's (so `--exclude '!x'` can take one back).
fn run_push(a: args::PushArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let sel = fleet_cmd::select_many(ctx, &a.to, &a.targets)?;
    let remote = ctx.remote_for(&sel)?;
    let source = project::push_source(a.source.clone(), &sel)?;
    let (keep, mut exclude) = match &sel.plan {
        Some(p) => (a.keep.or(p.keep), p.exclude.clone()),
        None => (a.keep, Vec::new()),
    };
    exclude.extend(a.exclude.iter().cloned());
    // `--shared` replaces the file's list (paths were checked when the file was read).
    let shared = match (&sel.plan, a.shared.is_empty()) {
        (Some(p), true) => p
            .shared
            .iter()
            .map(|s| relstore_core::shared::SharedPath::parse(s))
            .collect::<Result<Vec<_>, _>>()?,
        _ => a.shared.clone(),
    };
    let hooks = hooks(&a.hooks, sel.plan.as_ref());
    let checked = a.checks.check.is_some() || a.checks.check_url.is_some();
    if sel.hosts.len() > 1 || checked {
        let lists = fleet_cmd::Lists { exclude, shared };
        return fleet_cmd::push(&a, &sel, &source, keep, lists, hooks, ctx, out);
    }
    // One release name on every host of a target, unless --release names it.
    let release = match (&a.release, sel.hosts.len()) {
        (None, n) if n > 1 => {
            Some(relstore_core::release::ReleaseName::timestamp(now_ns()).to_string())
        }
        (r, _) => r.clone(),
    };
    each_host(&sel, out, |host, out| {
        let target = open_target(host, &remote)?;
        let opts = PushOptions {
            release: release.clone(),
            force: a.force,
            skip_special: a.skip_special,
            cache_dir: cache_dir(a.cache.cache_dir.clone(), a.cache.no_stat_cache),
            lock: lock_policy(&a.lock),
            keep,
            exclude: exclude.clone(),
            shared: shared.clone(),
            dry_run: a.dry_run,
            store: if a.no_local_store || a.dry_run {
                None
            } else {
                store_dir(a.store.store_dir.clone())
            },
            stage_only: a.stage_only,
            hooks: hooks.clone(),
        };
        // A reconnection opens the same target again, without repeating the helper note.
        let reopen =
            || -> relstore_engine::EngineResult<std::sync::Arc<dyn relstore_core::Target>> {
                Ok(open_target_noted(
                    host,
                    &remote,
                    std::sync::Arc::new(|_: &str| {}),
                )?)
            };
        let policy = RetryPolicy::new(ctx.retries);
        let report = push_reconnecting(&source, target, &reopen, &opts, &policy, ctx.notes)?;
        out.push(&report)?;
        hook_failed(out, report.hook_failure.as_deref())
    })
}

/// The engine's hooks: each flag, else the project target's setting.
fn hooks(a: &args::HookArgs, plan: Option<&relstore_project::ResolvedTarget>) -> Hooks {
    let file = plan.map(|p| &p.hooks);
    let pick = |flag: &Option<String>, from: fn(&relstore_project::Hooks) -> &Option<String>| {
        flag.clone().or_else(|| file.and_then(|h| from(h).clone()))
    };
    Hooks {
        before_activate: pick(&a.before_activate, |h| &h.before_activate),
        after_activate: pick(&a.after_activate, |h| &h.after_activate),
        after_rollback: pick(&a.after_rollback, |h| &h.after_rollback),
        timeout: a
            .hook_timeout
            .or(plan.map(|p| p.hook_timeout))
            .unwrap_or(relstore_engine::hooks::DEFAULT_TIMEOUT),
        revert_on_failure: a.revert_on_hook_failure
            || plan.is_some_and(|p| p.revert_on_hook_failure),
    }
}

/// Exit 1 with the hook's failure, once the report is out.
fn hook_failed(out: &mut Out, failure: Option<&str>) -> Result<()> {
    match failure {
        Some(why) => {
            out.flush()?;
            anyhow::bail!("{why}")
        }
        None => Ok(()),
    }
}

/// `relstore activate`: one host as before; several (`--to` a fleet, or several
/// TARGETs) in waves.
fn run_activate(a: args::ActivateArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let (target, release) =
        project::target_and_release(a.target.clone(), a.release.clone(), a.to.to.as_deref())?;
    let sel = ctx.select(&a.to, target)?;
    let remote = ctx.remote_for(&sel)?;
    let opts = relstore_engine::activate::ActivateOptions {
        release,
        lock: lock_policy(&a.lock),
        hooks: hooks(&a.hooks, sel.plan.as_ref()),
        dry_run: a.dry_run,
    };
    if sel.hosts.len() > 1 {
        return fleet_cmd::activate(&a.fleet, &sel, &opts, &remote, ctx, out);
    }
    let target = open_target(sel.single("activate")?, &remote)?;
    let report = relstore_engine::activate::activate(&target, &opts, ctx.notes)?;
    out.activate(&report)?;
    hook_failed(out, report.hook_failure.as_deref())
}

/// Now, for a release name shared by the hosts of one push.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `relstore rollback`.
fn run_rollback(a: args::RollbackArgs, ctx: &Ctx, out: &mut Out) -> Result<()> {
    let (target, release) = project::target_and_release(a.target, a.release, a.to.to.as_deref())?;
    let sel = ctx.select(&a.to, target)?;
    let remote = ctx.remote_for(&sel)?;
    let opts = RollbackOptions {
        release,
        lock: lock_policy(&a.lock),
        store: store_dir(a.store.store_dir.clone()),
        sources: a.sources.clone(),
        cache_dir: cache_dir(a.cache.cache_dir.clone(), a.cache.no_stat_cache),
        dry_run: a.dry_run,
        hooks: hooks(&a.hooks, sel.plan.as_ref()),
    };
    if sel.hosts.len() > 1 {
        return fleet_cmd::rollback(&a.fleet, &sel, &opts, &remote, ctx, out);
    }
    each_host(&sel, out, |host, out| {
        let target = open_target(host, &remote)?;
        let report = rollback(&target, &opts, ctx.notes)?;
        out.rollback(&report)?;
        hook_failed(out, report.hook_failure.as_deref())
    })
}

/// `relstore bench`: the engine's series, on trees from relstore-fixtures.
fn run_bench(
    a: args::BenchArgs,
    remote: &RemoteOptions,
    out: &mut Out,
    notes: &Notes,
) -> Result<()> {
    let opts = relstore_engine::bench::BenchOptions {
        source: a.source,
        generate: a.generate,
        seed: a.seed,
        target: a.target,
        changes: a.changes,
        runs: usize::try_from(a.runs).unwrap_or(usize::MAX),
        rsync: !a.no_rsync,
        scratch: a.scratch,
    };
    let env = relstore_engine::bench::BenchEnv {
        trees: &FixtureTrees,
        targets: &Targets {
            remote: remote.clone(),
        },
        progress: notes,
    };
    let report = relstore_engine::bench::bench(&opts, env)?;
    out.bench(&report)?;
    Ok(())
}

fn pin(out: &mut Out, a: args::PinArgs, pinned: bool, ctx: &Ctx) -> Result<()> {
    let (target, release) = project::pin_operands(a.target, a.release)?;
    let sel = ctx.select(&a.to, target)?;
    let remote = ctx.remote_for(&sel)?;
    each_host(&sel, out, |host, out| {
        let target = open_target(host, &remote)?;
        set_pin(&target, &release, pinned, &lock_policy(&a.lock), ctx.notes)?;
        out.pin(&release, pinned)
    })
}
