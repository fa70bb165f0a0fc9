//! The `relstore` command: parses arguments, calls the engine, prints results.
//!
//! Results go to stdout (one JSON object with `--json`), notes and errors to stderr.
//! Exit status: 0 success, 1 failure (one line naming the path or host), 2 usage error,
//! 130 (SIGINT) or 143 (SIGTERM) when interrupted (see `interrupt`).

mod args;
mod helper_cmd;
mod interrupt;
mod output;
mod progress_bars;
mod targets;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use relstore_engine::compare::{diff_operands, Operand};
use relstore_engine::hooks::Hooks;
use relstore_engine::lock::LockPolicy;
use relstore_engine::push::{push, PushOptions};
use relstore_engine::release_store;
use relstore_engine::retention::{prune, set_pin};
use relstore_engine::rollback::{rollback, RollbackOptions};
use relstore_targets::{open_target_noted, RemoteOptions};

use args::{Cli, Command, HelperCommand, LockArgs, StoreCommand};
use output::{Notes, Out};
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
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
            ExitCode::from(1)
        }
    }
}

fn lock_policy(l: &LockArgs) -> LockPolicy {
    LockPolicy {
        wait: l.wait || l.wait_timeout.is_some(),
        wait_timeout: l.wait_timeout.map(Duration::from_secs_f64),
        break_lock: l.break_lock,
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

/// `--helper`, else `$RELSTORE_HELPER`, else auto.
fn helper_mode(cli: &Cli) -> Result<relstore_ssh::HelperMode> {
    if let Some(m) = cli.helper {
        return Ok(m);
    }
    match std::env::var("RELSTORE_HELPER") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|e: String| anyhow::anyhow!("RELSTORE_HELPER: {e}")),
        _ => Ok(relstore_ssh::HelperMode::Auto),
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
    remote.helper = helper_mode(&cli)?;
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        Command::Push(a) => run_push(a, &remote, &mut out, notes)?,
        Command::Releases(a) => {
            let target = open_target(&a.target, &remote)?;
            target.open(false)?;
            let catalog = relstore_engine::catalog::Catalog::load(target.as_ref())?;
            out.releases(&catalog)?;
        }
        Command::Rollback(a) => run_rollback(a, &remote, &mut out, notes)?,
        Command::Activate(a) => run_activate(a, &remote, &mut out, notes)?,
        Command::Diff(a) => {
            let old = Operand::parse(&a.a)?;
            let new = Operand::parse(&a.b)?;
            let cache = cache_dir(a.cache.cache_dir, a.cache.no_stat_cache);
            let targets = Targets {
                remote: remote.clone(),
            };
            let d = diff_operands(&old, &new, cache.as_deref(), &a.exclude, &targets, notes)?;
            out.diff(&d)?;
        }
        Command::Prune(a) => {
            let target = open_target(&a.target, &remote)?;
            let report = prune(&target, a.keep, a.dry_run, &lock_policy(&a.lock), notes)?;
            out.prune(&report)?;
            out.flush()?;
            if !report.left_behind.is_empty() {
                anyhow::bail!(
                    "{}: {} path(s) could not be deleted (listed above); everything else was pruned",
                    a.target,
                    report.left_behind.len()
                );
            }
        }
        Command::Verify(a) => {
            let target = open_target(&a.target, &remote)?;
            let opts = relstore_engine::verify::VerifyOptions {
                release: a.release,
                repair: a.repair,
                sources: a.sources,
                store: store_dir(a.store.store_dir),
                cache_dir: cache_dir(a.cache.cache_dir, a.cache.no_stat_cache),
                lock: lock_policy(&a.lock),
            };
            let report = relstore_engine::verify::verify(&target, &opts, notes)?;
            out.verify(&report)?;
            out.flush()?;
            if !report.is_clean() {
                anyhow::bail!("{}: {}", a.target, report.failure_summary());
            }
        }
        Command::Bench(a) => run_bench(a, &remote, &mut out, notes)?,
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
            helper_cmd::status(&a.target, &remote, cli.json)?;
            return Ok(());
        }
        Command::Serve(_) => anyhow::bail!("serve runs only as the helper of a client"),
        Command::Pin(a) => pin(&mut out, &a, true, &remote, notes)?,
        Command::Unpin(a) => pin(&mut out, &a, false, &remote, notes)?,
    }
    out.flush()
}

/// `relstore push`.
fn run_push(a: args::PushArgs, remote: &RemoteOptions, out: &mut Out, notes: &Notes) -> Result<()> {
    let target = open_target(&a.target, remote)?;
    let opts = PushOptions {
        release: a.release,
        force: a.force,
        skip_special: a.skip_special,
        cache_dir: cache_dir(a.cache.cache_dir, a.cache.no_stat_cache),
        lock: lock_policy(&a.lock),
        keep: a.keep,
        exclude: a.exclude,
        dry_run: a.dry_run,
        store: if a.no_local_store || a.dry_run {
            None
        } else {
            store_dir(a.store.store_dir)
        },
        stage_only: a.stage_only,
        hooks: hooks(&a.hooks),
    };
    let report = push(&a.source, &target, &opts, notes)?;
    out.push(&report)?;
    hook_failed(out, report.hook_failure.as_deref())
}

/// The engine's hooks from the command line.
fn hooks(a: &args::HookArgs) -> Hooks {
    Hooks {
        before_activate: a.before_activate.clone(),
        after_activate: a.after_activate.clone(),
        after_rollback: a.after_rollback.clone(),
        timeout: a
            .hook_timeout
            .unwrap_or(relstore_engine::hooks::DEFAULT_TIMEOUT),
        revert_on_failure: a.revert_on_hook_failure,
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

/// `relstore activate`.
fn run_activate(
    a: args::ActivateArgs,
    remote: &RemoteOptions,
    out: &mut Out,
    notes: &Notes,
) -> Result<()> {
    let target = open_target(&a.target, remote)?;
    let opts = relstore_engine::activate::ActivateOptions {
        release: a.release,
        lock: lock_policy(&a.lock),
        hooks: hooks(&a.hooks),
        dry_run: a.dry_run,
    };
    let report = relstore_engine::activate::activate(&target, &opts, notes)?;
    out.activate(&report)?;
    hook_failed(out, report.hook_failure.as_deref())
}

/// `relstore rollback`.
fn run_rollback(
    a: args::RollbackArgs,
    remote: &RemoteOptions,
    out: &mut Out,
    notes: &Notes,
) -> Result<()> {
    let target = open_target(&a.target, remote)?;
    let opts = RollbackOptions {
        release: a.release,
        lock: lock_policy(&a.lock),
        store: store_dir(a.store.store_dir),
        sources: a.sources,
        cache_dir: cache_dir(a.cache.cache_dir, a.cache.no_stat_cache),
        dry_run: a.dry_run,
        hooks: hooks(&a.hooks),
    };
    let report = rollback(&target, &opts, notes)?;
    out.rollback(&report)?;
    hook_failed(out, report.hook_failure.as_deref())
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

fn pin(
    out: &mut Out,
    a: &args::PinArgs,
    pinned: bool,
    remote: &RemoteOptions,
    notes: &Notes,
) -> Result<()> {
    {
        {
            let target = open_target(&a.target, remote)?;
            set_pin(&target, &a.release, pinned, &lock_policy(&a.lock), notes)?;
            out.pin(&a.release, pinned)?;
        }
    }
    Ok(())
}
