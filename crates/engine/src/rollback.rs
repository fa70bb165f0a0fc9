//! `relstore rollback`: point `current` at another release with one rename.
//!
//! The default is the release created just before the current one. A release whose
//! directory was evicted is re-assembled from its manifest when every object it needs
//! is still stored.

use std::sync::Arc;
use std::time::Instant;

use relstore_core::progress::Progress;
use relstore_core::{ReleaseName, Target};
use serde_json::{json, Value};

use crate::catalog::{read_manifest, recover};
use crate::error::{EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};

/// What a rollback did.
#[derive(Clone, Debug)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: String,
    /// The release's directory had been evicted and was assembled again.
    pub reassembled: bool,
    /// Nothing to do: the release was already current.
    pub already_current: bool,
    pub seconds: f64,
}

impl RollbackReport {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        json!({
            "from": self.from, "to": self.to, "reassembled": self.reassembled,
            "already_current": self.already_current, "seconds": self.seconds,
        })
    }
}

/// Makes `release` (default: the one before current) current on `target`.
pub fn rollback(
    target: &Arc<dyn Target>,
    release: Option<&str>,
    lock_policy: &LockPolicy,
    progress: &dyn Progress,
) -> EngineResult<RollbackReport> {
    let started = Instant::now();
    let requested = release.map(ReleaseName::parse).transpose()?;
    target.open(false)?;
    let lock = acquire(target, "rollback", lock_policy, progress)?;
    let catalog = recover(target.as_ref(), progress)?;
    let location = target.location().to_owned();
    let current = catalog.current.clone();
    let to = match requested {
        Some(name) => catalog
            .get(name.as_str())
            .ok_or_else(|| EngineError::NoSuchRelease {
                name: name.to_string(),
                location: location.clone(),
            })?
            .clone(),
        None => {
            let cur = current.as_ref().ok_or_else(|| {
                EngineError::Refused(format!(
                    "{location}: nothing to roll back, no release is current"
                ))
            })?;
            let pos = catalog
                .releases
                .iter()
                .position(|r| &r.name == cur)
                .unwrap_or(0);
            catalog.releases[..pos]
                .last()
                .ok_or_else(|| {
                    EngineError::Refused(format!(
                        "{location}: no release before {cur} to roll back to"
                    ))
                })?
                .clone()
        }
    };
    let mut report = RollbackReport {
        from: current.as_ref().map(ToString::to_string),
        to: to.name.to_string(),
        reassembled: false,
        already_current: current.as_ref() == Some(&to.name),
        seconds: 0.0,
    };
    if report.already_current {
        lock.release()?;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    // Read and validate the manifest even when the directory is present: a release
    // whose manifest is unusable would break every later push and diff once current.
    let manifest = read_manifest(target.as_ref(), &to.name)?;
    if !to.present {
        let missing = target.missing_objects(&manifest.objects())?;
        if !missing.is_empty() {
            return Err(EngineError::Refused(format!(
                "{location}: release {} was evicted and {} of its objects are no longer stored; nothing was changed",
                to.name,
                missing.len()
            )));
        }
        target.assemble(&to.name, &manifest.entries, progress)?;
        report.reassembled = true;
    }
    target.activate(&to.name)?;
    lock.release()?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
