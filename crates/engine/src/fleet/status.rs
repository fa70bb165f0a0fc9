//! `relstore status T1 T2 …`: what each host of a fleet serves, and whether the fleet
//! is mixed.

use serde::Serialize;

use super::pool::run_all;
use super::report::chain;
use super::FleetHost;
use crate::catalog::Catalog;
use crate::opener::OpenTarget;

/// One host's releases (the `--json` keys).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub target: String,
    pub current: Option<String>,
    /// The release before current (what `rollback` would go back to).
    pub previous: Option<String>,
    /// A release assembled but not current (`next`), when the target stages releases.
    pub staged: Option<String>,
    /// Why the host could not be read.
    pub error: Option<String>,
}

/// The fleet's status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetStatus {
    /// The hosts do not all have the same current release (or one could not be read).
    pub mixed: bool,
    pub hosts: Vec<HostStatus>,
}

/// Reads every host's catalog, `jobs` at a time; a host that cannot be read is in the
/// report with its error (and makes the fleet count as mixed).
pub fn fleet_status(
    hosts: &[FleetHost],
    opener: &(dyn OpenTarget + Sync),
    jobs: usize,
) -> FleetStatus {
    let rows = run_all(hosts, jobs, &|_, h: &FleetHost| {
        let mut row = HostStatus {
            host: h.name.clone(),
            target: h.spec.clone(),
            ..HostStatus::default()
        };
        if let Err(e) = read_host(opener, h, &mut row) {
            row.error = Some(e);
        }
        row
    });
    let hosts: Vec<HostStatus> = rows
        .into_iter()
        .zip(hosts)
        .map(|(r, h)| {
            r.unwrap_or_else(|| HostStatus {
                host: h.name.clone(),
                target: h.spec.clone(),
                error: Some("internal error: the host's worker panicked".into()),
                ..HostStatus::default()
            })
        })
        .collect();
    let first = hosts.first().map(|h| h.current.clone());
    let mixed = hosts
        .iter()
        .any(|h| h.error.is_some() || Some(h.current.clone()) != first);
    FleetStatus { mixed, hosts }
}

fn read_host(
    opener: &(dyn OpenTarget + Sync),
    h: &FleetHost,
    row: &mut HostStatus,
) -> Result<(), String> {
    let target = opener.open_target(&h.spec).map_err(|e| chain(&e))?;
    target.open(false).map_err(|e| chain(&e))?;
    let catalog = Catalog::load(target.as_ref()).map_err(|e| chain(&e))?;
    row.current = catalog.current.as_ref().map(ToString::to_string);
    row.staged = catalog.next.as_ref().map(ToString::to_string);
    if let Some(cur) = &catalog.current {
        let pos = catalog.releases.iter().position(|r| &r.name == cur);
        row.previous = pos
            .and_then(|p| p.checked_sub(1))
            .and_then(|p| catalog.releases.get(p))
            .map(|r| r.name.to_string());
    }
    Ok(())
}
