//! Part two of a fleet push: activate the staged hosts wave by wave (hooks, swap,
//! checks), and on a failure put every host this push already swapped back on its
//! previous release, newest wave first, running `after_rollback` there.

use std::time::Instant;

use relstore_core::progress::Progress;

use super::check::{run_checks, CheckResult, Checks, CommandRunner, HostCheck};
use super::report::first_line;
use super::stage::{fail, Failure, Staged};
use crate::hooks::{activate_with_hooks, run_hook, HookReport, Hooks, AFTER_ROLLBACK};

/// What activating one host did.
pub(crate) struct Activation {
    /// `current` now points at the new release (so a revert must undo it).
    pub swapped: bool,
    pub failure: Option<Failure>,
    pub checks: Vec<CheckResult>,
    pub hooks: Vec<HookReport>,
    pub seconds: f64,
}

/// How the hosts of a wave are activated.
pub(crate) struct Activate<'a> {
    /// The hooks, with `revert_on_failure` off: the fleet reverts (all hosts) itself.
    pub hooks: &'a Hooks,
    pub checks: &'a Checks,
    pub runner: &'a dyn CommandRunner,
}

impl Activate<'_> {
    /// `before_activate`, the swap, `after_activate`, then the checks, on one staged
    /// host. A host whose current release already is the tree is only checked.
    pub(crate) fn host(&self, staged: &Staged, host: &str, progress: &dyn Progress) -> Activation {
        let t = Instant::now();
        let mut done = Activation {
            swapped: false,
            failure: None,
            checks: Vec::new(),
            hooks: Vec::new(),
            seconds: 0.0,
        };
        let target = staged.target.as_ref();
        let release = match &staged.release {
            Some(name) => {
                let hooked = activate_with_hooks(
                    target,
                    self.hooks,
                    name,
                    staged.previous.as_ref(),
                    progress,
                    &mut || crate::activate::swap(target, name, true, progress),
                );
                match hooked {
                    Err(e) => {
                        // The swap itself failed (or could not be read back): `current`
                        // may or may not have moved; report it as swapped only if it did.
                        done.swapped = target.current().ok().flatten().as_ref() == Some(name);
                        done.failure = Some(fail("swap")(e));
                    }
                    Ok(a) => {
                        if a.swapped {
                            relstore_core::failpoint::kill_point(
                                relstore_core::failpoint::points::PUSH_SWAPPED,
                            );
                        }
                        done.swapped = a.swapped;
                        done.hooks = a.hooks;
                        if let Some(f) = a.failure {
                            let step = if a.swapped {
                                "after_activate"
                            } else {
                                "before_activate"
                            };
                            done.failure = Some(Failure { step, error: f });
                        }
                    }
                }
                if done.failure.is_some() {
                    done.seconds = t.elapsed().as_secs_f64();
                    return done;
                }
                name.clone()
            }
            None => match target.current() {
                Ok(Some(name)) => name,
                _ => {
                    done.seconds = t.elapsed().as_secs_f64();
                    return done;
                }
            },
        };
        if self.checks.any() {
            let on = HostCheck {
                target: &staged.target,
                host,
                release: &release,
                runner: self.runner,
            };
            done.checks = run_checks(self.checks, &on);
            if let Some(bad) = done.checks.iter().find(|c| !c.passed) {
                done.failure = Some(Failure {
                    step: "check",
                    error: format!(
                        "{} check {:?}: {}",
                        bad.kind,
                        bad.what,
                        first_line(&bad.output)
                    ),
                });
            }
        }
        done.seconds = t.elapsed().as_secs_f64();
        done
    }

    /// Puts a swapped host back on the release that was current before this push and
    /// runs `after_rollback` there; returns the hook's report.
    pub(crate) fn revert(
        &self,
        staged: &Staged,
        progress: &dyn Progress,
    ) -> Result<Option<HookReport>, Failure> {
        let target = staged.target.as_ref();
        let Some(previous) = &staged.previous else {
            return Err(Failure {
                step: "revert",
                error: format!(
                    "{}: no earlier release to go back to (this was its first release)",
                    target.location()
                ),
            });
        };
        target.activate(previous).map_err(fail("revert"))?;
        Ok(run_hook(
            target,
            self.hooks,
            AFTER_ROLLBACK,
            previous,
            staged.release.as_ref(),
            progress,
        ))
    }
}
