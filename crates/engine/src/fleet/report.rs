//! What a fleet command did, per host and in total (the field names are the `--json`
//! keys), and the one-line failure the command exits with.

use serde::Serialize;

use super::check::CheckResult;

/// Where a host ended up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `--dry-run`: the plan only.
    Planned,
    /// Assembled and staged (`next`), not made current: the push stopped before its
    /// wave (another host failed).
    #[default]
    Staged,
    /// Never staged (this host or another failed before every host had staged).
    NotStaged,
    /// The new release is current and its checks passed.
    Activated,
    /// The tree equalled its current release already; nothing to do.
    Unchanged,
    /// Swapped, then put back on its previous release because a host failed.
    Reverted,
    /// Its own step failed (see `step` and `error`).
    Failed,
    /// The revert itself failed: the host may still serve the new release.
    RevertFailed,
}

/// One host of a fleet command.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostReport {
    /// The name `{host}` stands for (the SSH host, or `local`).
    pub host: String,
    /// The TARGET string.
    pub target: String,
    pub outcome: Outcome,
    /// The step that failed (`connect`, `lock`, `upload`, `assemble`, `swap`, `check`…).
    pub step: Option<String>,
    pub error: Option<String>,
    /// The release current before the command.
    pub previous: Option<String>,
    /// The wave it was activated in (1-based).
    pub wave: Option<usize>,
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    pub objects_reused: u64,
    pub links: u64,
    pub checks: Vec<CheckResult>,
    /// Hooks that ran on it (`before_activate`, `after_activate`, `after_rollback`).
    pub hooks: Vec<crate::hooks::HookReport>,
    pub stage_seconds: f64,
    pub activate_seconds: f64,
}

/// A fleet push.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetReport {
    /// The release name, the same on every host.
    pub release: String,
    pub dry_run: bool,
    /// Every host ended on the release (activated or unchanged).
    pub ok: bool,
    /// Hosts were put back on their previous release after a failure.
    pub reverted: bool,
    /// The hosts do not all serve the same release after this command.
    pub mixed: bool,
    /// Host indexes (into `hosts`) of each wave.
    pub waves: Vec<Vec<usize>>,
    pub files_total: u64,
    pub bytes_total: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Sum over the hosts: each host's count is what it lacked.
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Scanning and hashing the source, once for the whole fleet.
    pub scan_seconds: f64,
    pub stage_seconds: f64,
    pub activate_seconds: f64,
    pub seconds: f64,
    /// What the local release store write-through did (once for the fleet), if on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::release_store::StoreReport>,
    pub hosts: Vec<HostReport>,
}

impl FleetReport {
    /// The report of a fleet push once the source is scanned: every host not staged
    /// yet.
    pub(crate) fn start(
        hosts: &[super::FleetHost],
        scanned: &relstore_scan::ScanOutput,
        dry_run: bool,
    ) -> FleetReport {
        FleetReport {
            dry_run,
            files_hashed: scanned.files_hashed,
            bytes_hashed: scanned.bytes_hashed,
            scan_seconds: scanned.walk_seconds + scanned.hash_seconds,
            hosts: hosts
                .iter()
                .map(|h| HostReport {
                    host: h.name.clone(),
                    target: h.spec.clone(),
                    outcome: Outcome::NotStaged,
                    ..HostReport::default()
                })
                .collect(),
            ..FleetReport::default()
        }
    }

    /// The one line a failed command exits with, naming the first failing host, its
    /// step and its error (the table above it has the rest).
    pub fn failure(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let Some(first) = self.hosts.iter().find(|h| h.outcome == Outcome::Failed) else {
            // No host failed: the waves were stopped (Ctrl-C) before every host was
            // activated.
            let what = if self.reverted {
                "hosts already activated were reverted"
            } else {
                "the fleet may be mixed (see the table)"
            };
            return Some(format!("stopped before every host was activated; {what}"));
        };
        let what = first.error.as_deref().unwrap_or("failed");
        let tail = if self.reverted {
            "; hosts already activated were reverted"
        } else if self.mixed {
            "; the fleet is mixed (see the table)"
        } else {
            "; no host was activated"
        };
        Some(format!(
            "{}: {} failed: {}{tail}",
            first.host,
            first.step.as_deref().unwrap_or("step"),
            first_line(what)
        ))
    }
}

/// The first line of `s`.
pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `e` and its sources on one line, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}
