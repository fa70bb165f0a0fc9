//! Part two of a fleet push: activate the staged hosts wave by wave, check each, and
//! on a failure put every host this push already swapped back on its previous release,
//! newest wave first.

use std::time::Instant;

use relstore_core::progress::Progress;

use super::check::{run_checks, CheckResult, Checks, CommandRunner, HostCheck};
use super::report::first_line;
use super::stage::{fail, Failure, Staged};
use crate::delta_bases::StoreBases;
use crate::push::{PushOptions, Run};

/// What activating one host did.
pub(crate) struct Activation {
    /// `current` now points at the new release (so a revert must undo it).
    pub swapped: bool,
    pub failure: Option<Failure>,
    pub checks: Vec<CheckResult>,
    pub seconds: f64,
}

/// How the hosts of a wave are activated.
pub(crate) struct Activate<'a> {
    pub opts: &'a PushOptions,
    pub checks: &'a Checks,
    pub runner: &'a dyn CommandRunner,
}

impl Activate<'_> {
    /// Swaps `current` on one staged host and runs its checks. A host with nothing new
    /// (its current release already is the tree) is only checked.
    pub(crate) fn host(&self, staged: &Staged, host: &str, progress: &dyn Progress) -> Activation {
        let t = Instant::now();
        let mut done = Activation {
            swapped: false,
            failure: None,
            checks: Vec::new(),
            seconds: 0.0,
        };
        let release = match &staged.new {
            Some(new) => {
                let bases = StoreBases::none();
                let run = Run {
                    source: std::path::Path::new(""),
                    target: &staged.target,
                    opts: self.opts,
                    previous: None,
                    bases: &bases,
                    progress,
                };
                if let Err(e) = run.publish(new) {
                    done.failure = Some(fail("swap")(e));
                    done.seconds = t.elapsed().as_secs_f64();
                    return done;
                }
                done.swapped = true;
                new.name.clone()
            }
            None => match staged.target.current() {
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
}

/// Puts a swapped host back on the release that was current before this push.
pub(crate) fn revert_host(staged: &Staged) -> Result<(), Failure> {
    let Some(previous) = &staged.previous else {
        return Err(Failure {
            step: "revert",
            error: format!(
                "{}: no earlier release to go back to (this was its first release)",
                staged.target.location()
            ),
        });
    };
    staged.target.activate(previous).map_err(fail("revert"))
}
