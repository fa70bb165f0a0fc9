//! `rollback` and `activate` on every host of a fleet, in waves: each host runs the
//! single-host command (under its own lock, with its hooks); the hosts of a wave run
//! in parallel, and a wave with a failed host stops the command before the next wave.

use std::sync::Arc;
use std::time::Duration;

use relstore_core::progress::Progress;
use relstore_core::Target;
use serde::Serialize;

use super::pool::run_all;
use super::report::chain;
use super::stage::HostProgress;
use super::{FleetHost, Waves};
use crate::error::EngineResult;
use crate::opener::OpenTarget;

/// One host of a fleet `rollback` or `activate` (the `--json` keys).
#[derive(Clone, Debug, Serialize)]
pub struct HostStep<R> {
    pub host: String,
    pub target: String,
    /// The wave it ran in (1-based); `None`: not tried (an earlier wave failed).
    pub wave: Option<usize>,
    pub ok: bool,
    pub error: Option<String>,
    /// The single-host command's report.
    pub report: Option<R>,
}

/// A fleet `rollback` or `activate`.
#[derive(Clone, Debug, Serialize)]
pub struct EachReport<R> {
    pub ok: bool,
    pub waves: Vec<Vec<usize>>,
    pub hosts: Vec<HostStep<R>>,
}

/// How to run a command on every host.
pub struct Each<'a> {
    pub opener: &'a (dyn OpenTarget + Sync),
    pub jobs: usize,
    pub waves: &'a Waves,
    pub pause: Duration,
    pub progress: &'a dyn Progress,
}

/// What a host's command returns: its report, and a failure that does not stop the
/// command itself (a failed hook).
pub type HostJob<'a, R> =
    dyn Fn(&Arc<dyn Target>, &dyn Progress) -> EngineResult<(R, Option<String>)> + Sync + 'a;

impl Each<'_> {
    /// Runs `job` on every host, wave by wave (see the module documentation).
    pub fn run<R: Send>(&self, hosts: &[FleetHost], job: &HostJob<'_, R>) -> EachReport<R> {
        let waves = self.waves.split(hosts.len());
        let mut report = EachReport {
            ok: true,
            waves: waves.iter().map(|w| w.clone().collect()).collect(),
            hosts: hosts
                .iter()
                .map(|h| HostStep {
                    host: h.name.clone(),
                    target: h.spec.clone(),
                    wave: None,
                    ok: false,
                    error: None,
                    report: None,
                })
                .collect(),
        };
        for (n, wave) in waves.into_iter().enumerate() {
            if n > 0 && !self.pause.is_zero() {
                self.progress.note(&format!(
                    "pausing {:.1}s before wave {}",
                    self.pause.as_secs_f64(),
                    n + 1
                ));
                std::thread::sleep(self.pause);
            }
            let members = &hosts[wave.clone()];
            let results = run_all(members, self.jobs, &|_, h: &FleetHost| {
                let p = HostProgress {
                    host: &h.name,
                    inner: self.progress,
                };
                let target = self.opener.open_target(&h.spec).map_err(|e| chain(&e))?;
                job(&target, &p).map_err(|e| chain(&e))
            });
            for (i, r) in wave.zip(results) {
                let row = &mut report.hosts[i];
                row.wave = Some(n + 1);
                match r.unwrap_or_else(|| Err("internal error: the host's worker panicked".into()))
                {
                    Ok((r, failure)) => {
                        row.ok = failure.is_none();
                        row.error = failure;
                        row.report = Some(r);
                    }
                    Err(e) => row.error = Some(e),
                }
                report.ok &= row.ok;
            }
            if !report.ok || relstore_core::cancel::requested() {
                report.ok = false;
                break;
            }
        }
        report
    }
}
