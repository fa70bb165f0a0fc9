//! Hooks around the swap of `current` (see docs/hooks.md): `before_activate` runs in
//! the new release right before the swap, `after_activate` right after it,
//! `after_rollback` after a rollback (or after `--revert-on-hook-failure` put the
//! previous release back). They run on the target's host while the command holds the
//! store lock, so two deploys never interleave their hooks.
//!
//! [`activate_with_hooks`] is the one sequence `push` and `activate` share: hook,
//! swap, hook, and the revert.

use std::time::{Duration, Instant};

use relstore_core::duration::format_duration;
use relstore_core::hook::{HookExit, HookRun};
use relstore_core::progress::Progress;
use relstore_core::{ReleaseName, Target};
use serde::Serialize;

use crate::error::EngineResult;

/// `before_activate`.
pub const BEFORE_ACTIVATE: &str = "before_activate";
/// `after_activate`.
pub const AFTER_ACTIVATE: &str = "after_activate";
/// `after_rollback`.
pub const AFTER_ROLLBACK: &str = "after_rollback";
/// The default `hook_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of a hook's output kept for its report.
const LAST_LINES: usize = 20;

/// The hooks of a command (each a shell command run with `sh -c`).
#[derive(Clone, Debug)]
pub struct Hooks {
    pub before_activate: Option<String>,
    pub after_activate: Option<String>,
    pub after_rollback: Option<String>,
    /// When a hook's process group is killed.
    pub timeout: Duration,
    /// A failed `after_activate` puts the previous release back (and runs
    /// `after_rollback`) instead of leaving the new one current.
    pub revert_on_failure: bool,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            before_activate: None,
            after_activate: None,
            after_rollback: None,
            timeout: DEFAULT_TIMEOUT,
            revert_on_failure: false,
        }
    }
}

impl Hooks {
    /// The command of hook `name`, if it is set.
    pub fn command(&self, name: &str) -> Option<&str> {
        match name {
            BEFORE_ACTIVATE => self.before_activate.as_deref(),
            AFTER_ACTIVATE => self.after_activate.as_deref(),
            AFTER_ROLLBACK => self.after_rollback.as_deref(),
            _ => None,
        }
        .filter(|c| !c.trim().is_empty())
    }

    /// The hooks of `names` that are set, in order, for `--dry-run`; each is named in a
    /// note.
    pub fn planned(&self, names: &[&str], progress: &dyn Progress) -> Vec<PlannedHook> {
        let planned: Vec<PlannedHook> = names
            .iter()
            .filter_map(|n| {
                self.command(n).map(|c| PlannedHook {
                    name: (*n).to_owned(),
                    command: c.to_owned(),
                })
            })
            .collect();
        for h in &planned {
            progress.note(&format!("would run hook {}: {}", h.name, h.command));
        }
        planned
    }
}

/// A hook a `--dry-run` would run.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedHook {
    pub name: String,
    pub command: String,
}

/// What one hook did (the field names are the `--json` keys).
#[derive(Clone, Debug, Serialize)]
pub struct HookReport {
    pub name: String,
    /// Where it ran: `local` or the SSH host.
    pub host: String,
    pub command: String,
    /// The release it ran in.
    pub release: String,
    /// Exit status; `null` when it was killed or could not be started.
    pub exit_code: Option<i32>,
    pub ok: bool,
    pub timed_out: bool,
    pub interrupted: bool,
    pub seconds: f64,
    /// The last lines of its output.
    pub last_lines: Vec<String>,
    /// Why it could not run at all, if it could not.
    pub error: Option<String>,
    /// Its timeout, for the message.
    #[serde(skip)]
    pub limit: Duration,
}

impl HookReport {
    /// One line saying how the hook failed, `None` when it succeeded.
    pub fn failure(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let how = if let Some(e) = &self.error {
            format!("could not run: {e}")
        } else if self.timed_out {
            format!("timed out after {}", format_duration(self.limit))
        } else if self.interrupted {
            "was interrupted".to_owned()
        } else {
            match self.exit_code {
                Some(n) => format!("exited with status {n}"),
                None => "ended without an exit status".to_owned(),
            }
        };
        Some(format!("hook {} on {} {how}", self.name, self.host))
    }
}

/// Runs hook `name` (if set) in `release`, streaming its output prefixed with the
/// host. A hook that cannot be started is a failed hook, not an error of the command.
pub fn run_hook(
    target: &dyn Target,
    hooks: &Hooks,
    name: &str,
    release: &ReleaseName,
    previous: Option<&ReleaseName>,
    progress: &dyn Progress,
) -> Option<HookReport> {
    let command = hooks.command(name)?;
    let host = target.hook_host();
    progress.note(&format!("running hook {name} on {host}: {command}"));
    let run = HookRun {
        hook: name,
        command,
        release,
        previous,
        timeout: hooks.timeout,
    };
    let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let started = Instant::now();
    let result = target.run_hook(&run, &mut |line| {
        progress.output(&format!("[{host}] {line}"));
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(line.to_owned());
    });
    let seconds = started.elapsed().as_secs_f64();
    let (exit, error) = match result {
        Ok(exit) => (exit, None),
        Err(e) => (HookExit::default(), Some(e.to_string())),
    };
    let report = HookReport {
        name: name.to_owned(),
        host,
        command: command.to_owned(),
        release: release.to_string(),
        exit_code: exit.code,
        ok: exit.success() && error.is_none(),
        timed_out: exit.timed_out,
        interrupted: exit.interrupted,
        seconds,
        last_lines: last.into_iter().collect(),
        error,
        limit: hooks.timeout,
    };
    if let Some(why) = report.failure() {
        progress.note(&why);
    }
    Some(report)
}

/// What an activation with hooks did.
#[derive(Clone, Debug, Default)]
pub struct Activation {
    /// `current` was swapped to the release (it may have been reverted since).
    pub swapped: bool,
    /// `--revert-on-hook-failure` put the previous release back.
    pub reverted: bool,
    pub hooks: Vec<HookReport>,
    /// The first hook failure, one line: the command exits 1 with it.
    pub failure: Option<String>,
    /// A hook was interrupted (Ctrl-C): the command stops as interrupted once the
    /// release is left as it was (staged when it was `before_activate`; current, not
    /// reverted, when it was `after_activate`).
    pub interrupted: bool,
}

/// Runs `before_activate`, then `swap` (which points `current` at `release` and records
/// it), then `after_activate`; on a failed `after_activate` with
/// `revert_on_failure`, points `current` back at `previous` and runs `after_rollback`
/// there. A failed `before_activate` returns before the swap (the caller stages the
/// release).
pub fn activate_with_hooks(
    target: &dyn Target,
    hooks: &Hooks,
    release: &ReleaseName,
    previous: Option<&ReleaseName>,
    progress: &dyn Progress,
    swap: &mut dyn FnMut() -> EngineResult<()>,
) -> EngineResult<Activation> {
    let mut done = Activation::default();
    if let Some(r) = run_hook(target, hooks, BEFORE_ACTIVATE, release, previous, progress) {
        let failure = r.failure();
        done.interrupted = r.interrupted;
        done.hooks.push(r);
        if failure.is_some() {
            done.failure = failure;
            return Ok(done);
        }
    }
    swap()?;
    done.swapped = true;
    let Some(r) = run_hook(target, hooks, AFTER_ACTIVATE, release, previous, progress) else {
        return Ok(done);
    };
    let failure = r.failure();
    done.interrupted = r.interrupted;
    done.hooks.push(r);
    let Some(failure) = failure else {
        return Ok(done);
    };
    done.failure = Some(failure);
    // Ctrl-C stops the hook, not the deploy: the swap stands (no revert).
    let Some(prev) = previous.filter(|_| hooks.revert_on_failure && !done.interrupted) else {
        return Ok(done);
    };
    target.activate(prev)?;
    done.reverted = true;
    progress.note(&format!(
        "--revert-on-hook-failure: current points at {prev} again"
    ));
    if let Some(r) = run_hook(target, hooks, AFTER_ROLLBACK, prev, Some(release), progress) {
        done.hooks.push(r);
    }
    Ok(done)
}
