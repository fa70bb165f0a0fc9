//! Which release directories without a manifest recovery may delete.
//!
//! A push assembles `releases/NAME`, stages its manifest in `tmp/`, swaps `current`
//! and only then moves the manifest into `manifests/`. A push that died before its
//! swap therefore leaves a directory with no manifest, which the next mutating
//! command deletes. But a deployed release whose manifest was lost (deleted by hand,
//! a bad restore) looks the same, and deleting it would destroy a release that was
//! served. So a directory is deleted only with evidence that it is such a leftover:
//!
//! - it is neither current nor staged (`current` and `next` are never left pointing
//!   at nothing), and
//! - its push staged its manifest (`tmp/NAME.manifest` is there). A push stages its
//!   manifest before it assembles the release directory, and the staged manifest
//!   stays in `tmp/` until the manifest is committed, so every directory a push left
//!   behind has one; a deployed release whose manifest was lost never does.
//!
//! Anything else is kept and reported for the user to look at. No clock is consulted: file times over SFTP have a resolution
//! of one second, too coarse to order a crash against the previous push.

use std::collections::BTreeSet;

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
/// under the lock before `tmp/` is emptied (staged manifests are the evidence).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    current: Option<ReleaseName>,
    /// What `next` points at: a staged release has its manifest recorded, so it never
    /// comes here, except if that manifest was lost.
    next: Option<ReleaseName>,
    /// Directories without a manifest that have a staged one.
    staged: BTreeSet<String>,
}

impl Evidence {
    /// Looks at every directory under `releases/` that has no manifest.
    pub fn gather(target: &dyn Target) -> EngineResult<Evidence> {
        let current = target.current()?;
        let recorded: BTreeSet<String> = target.list_manifests()?.into_iter().collect();
        let mut ev = Evidence {
            current,
            next: target.next()?,
            ..Evidence::default()
        };
        for dir in target.list_release_dirs()? {
            if recorded.contains(&dir) || ev.current.as_ref().is_some_and(|c| c.as_str() == dir) {
                continue;
            }
            if let Ok(name) = ReleaseName::parse(&dir) {
                if target.read_staged_manifest(&name)?.is_some() {
                    ev.staged.insert(dir);
                }
            }
        }
        Ok(ev)
    }

    /// The verdict on `releases/DIR` (a directory without a manifest).
    pub fn judge(&self, dir: &str) -> Verdict {
        if self.next.as_ref().is_some_and(|n| n.as_str() == dir) {
            return Verdict::Keep("`next` points at it".into());
        }
        verdict(
            self.current.as_ref().is_some_and(|c| c.as_str() == dir),
            self.staged.contains(dir),
        )
    }
}

/// The rule of the module docs, on its inputs.
fn verdict(current: bool, staged: bool) -> Verdict {
    if current {
        Verdict::Keep("it is current".into())
    } else if staged {
        Verdict::Remove
    } else {
        Verdict::Keep(
            "no push staged a manifest for it, so it may have been deployed; \
             remove it by hand if it is not"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_next_points_at_is_kept() {
        let ev = Evidence {
            current: None,
            next: ReleaseName::parse("r2").ok(),
            staged: ["r2".to_owned(), "r3".to_owned()].into_iter().collect(),
        };
        assert!(matches!(ev.judge("r2"), Verdict::Keep(_)));
        assert_eq!(ev.judge("r3"), Verdict::Remove);
    }

    #[test]
    fn only_a_leftover_with_a_staged_manifest_is_removed() {
        assert_eq!(verdict(false, true), Verdict::Remove);
        assert!(matches!(verdict(false, false), Verdict::Keep(_)));
        assert!(matches!(verdict(true, true), Verdict::Keep(_)));
    }
}
