//! Which release directories without a manifest recovery may delete.
//!
//! A push assembles `releases/NAME`, stages its manifest in `tmp/`, swaps `current`
//! and only then moves the manifest into `manifests/`. A push that died before its
//! swap therefore leaves a directory with no manifest, which the next mutating
//! command deletes. But a deployed release whose manifest was lost (deleted by hand,
//! a bad restore) looks the same, and deleting it would destroy a release that was
//! served. So a directory is deleted only with evidence that it is such a leftover:
//!
//! - it is not current (the current release is never deleted), and
//! - its push got as far as staging its manifest (`tmp/NAME.manifest` is there), or
//!   it was last changed after `manifests/` was: after every release that ever
//!   became current was recorded (and after any manifest was deleted), which a
//!   deployed release never is.
//!
//! Anything else is kept and reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use relstore_core::layout;
use relstore_core::{ReleaseName, Target};

use crate::error::EngineResult;

/// What recovery does with one release directory that has no manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Left by a push that died before its swap: delete it.
    Remove,
    /// Possibly deployed: keep it; the text says why, for the user.
    Keep(String),
}

/// What the store shows about its release directories without a manifest, gathered
/// under the lock before `tmp/` is emptied (staged manifests are evidence).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    current: Option<ReleaseName>,
    /// Directories without a manifest that have a staged one.
    staged: BTreeSet<String>,
    /// Last change of each directory without a manifest, where the target can tell.
    changed: BTreeMap<String, SystemTime>,
    /// Last change of `manifests/`.
    manifests_changed: Option<SystemTime>,
}

impl Evidence {
    /// Looks at every directory under `releases/` that has no manifest.
    pub fn gather(target: &dyn Target) -> EngineResult<Evidence> {
        let current = target.current()?;
        let recorded: BTreeSet<String> = target.list_manifests()?.into_iter().collect();
        let mut ev = Evidence {
            manifests_changed: target.modified(layout::MANIFESTS)?,
            current,
            ..Evidence::default()
        };
        for dir in target.list_release_dirs()? {
            if recorded.contains(&dir) || ev.current.as_ref().is_some_and(|c| c.as_str() == dir) {
                continue;
            }
            if let Ok(name) = ReleaseName::parse(&dir) {
                if target.read_staged_manifest(&name)?.is_some() {
                    ev.staged.insert(dir.clone());
                }
            }
            let rel = format!("{}/{dir}", layout::RELEASES);
            if let Some(t) = target.modified(&rel)? {
                ev.changed.insert(dir, t);
            }
        }
        Ok(ev)
    }

    /// The verdict on `releases/DIR` (a directory without a manifest).
    pub fn judge(&self, dir: &str) -> Verdict {
        verdict(
            self.current.as_ref().is_some_and(|c| c.as_str() == dir),
            self.staged.contains(dir),
            self.changed.get(dir).copied(),
            self.manifests_changed,
        )
    }
}

/// The rule of the module docs, on its inputs.
fn verdict(
    current: bool,
    staged: bool,
    changed: Option<SystemTime>,
    manifests_changed: Option<SystemTime>,
) -> Verdict {
    if current {
        return Verdict::Keep("it is current".into());
    }
    if staged {
        return Verdict::Remove;
    }
    match (changed, manifests_changed) {
        (Some(dir), Some(manifests)) if dir > manifests => Verdict::Remove,
        (Some(_), Some(_)) => Verdict::Keep(
            "it is not newer than the newest manifest, so it may have been deployed".into(),
        ),
        _ => Verdict::Keep("its age cannot be told, so it may have been deployed".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_a_leftover_newer_than_every_manifest_or_staged_is_removed() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(verdict(false, false, Some(t1), Some(t0)), Verdict::Remove);
        assert_eq!(verdict(false, true, Some(t0), Some(t1)), Verdict::Remove);
        assert_eq!(verdict(false, true, None, None), Verdict::Remove);
        // Older than the newest manifest, or of the same second: possibly deployed.
        assert!(matches!(
            verdict(false, false, Some(t0), Some(t1)),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            verdict(false, false, Some(t0), Some(t0)),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            verdict(false, false, None, Some(t0)),
            Verdict::Keep(_)
        ));
        // The current release, whatever else.
        assert!(matches!(
            verdict(true, true, Some(t1), Some(t0)),
            Verdict::Keep(_)
        ));
    }
}
