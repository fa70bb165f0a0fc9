//! The `relstore` command: parses arguments, calls the engine, prints results.
//!
//! Results go to stdout (one JSON object with `--json`), notes and errors to stderr.
//! Exit status: 0 success, 1 failure (one line naming the path or host), 2 usage error.

mod args;
mod output;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use relstore_engine::compare::{diff_operands, Operand};
use relstore_engine::lock::LockPolicy;
use relstore_engine::push::{push, PushOptions};
use relstore_engine::retention::{prune, set_pin};
use relstore_engine::rollback::rollback;
use relstore_engine::target_spec::open_target;

use args::{Cli, Command, LockArgs};
use output::{Notes, Out};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let notes = Notes { quiet: cli.quiet };
    match run(cli, &notes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
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

fn run(cli: Cli, notes: &Notes) -> Result<()> {
    let mut out = Out::new(cli.json);
    match cli.command {
        Command::Push(a) => {
            let target = open_target(&a.target)?;
            let opts = PushOptions {
                release: a.release,
                force: a.force,
                skip_special: a.skip_special,
                cache_dir: cache_dir(a.cache.cache_dir, a.cache.no_stat_cache),
                lock: lock_policy(&a.lock),
                keep: a.keep,
            };
            let report = push(&a.source, &target, &opts, notes)?;
            out.push(&report)?;
        }
        Command::Releases(a) => {
            let target = open_target(&a.target)?;
            target.open(false)?;
            let catalog = relstore_engine::catalog::Catalog::load(target.as_ref())?;
            out.releases(&catalog)?;
        }
        Command::Rollback(a) => {
            let target = open_target(&a.target)?;
            let report = rollback(&target, a.release.as_deref(), &lock_policy(&a.lock), notes)?;
            out.rollback(&report)?;
        }
        Command::Diff(a) => {
            let old = Operand::parse(&a.a)?;
            let new = Operand::parse(&a.b)?;
            let cache = cache_dir(a.cache.cache_dir, a.cache.no_stat_cache);
            let d = diff_operands(&old, &new, cache.as_deref(), notes)?;
            out.diff(&d)?;
        }
        Command::Prune(a) => {
            let target = open_target(&a.target)?;
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
            let target = open_target(&a.target)?;
            let opts = relstore_engine::verify::VerifyOptions {
                release: a.release,
                repair: a.repair,
                sources: a.sources,
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
        Command::Pin(a) => pin(&mut out, &a, true, notes)?,
        Command::Unpin(a) => pin(&mut out, &a, false, notes)?,
    }
    out.flush()
}

fn pin(out: &mut Out, a: &args::PinArgs, pinned: bool, notes: &Notes) -> Result<()> {
    {
        {
            let target = open_target(&a.target)?;
            set_pin(&target, &a.release, pinned, &lock_policy(&a.lock), notes)?;
            out.pin(&a.release, pinned)?;
        }
    }
    Ok(())
}
