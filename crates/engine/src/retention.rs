//! `relstore prune` and `push --keep`: evict old release directories, then delete the
//! objects no remaining release directory references, and the numbered copies of the
//! others that no remaining release directory links. Manifests always stay, so an
//! evicted release can come back (`rollback` re-assembles it).
//!
//! Plan first, then apply: the plan is computed by the same code for `--dry-run` and for
//! the real run. Crash safety comes from the order: every release directory to evict is
//! removed (moved into `tmp/` at once, then deleted) before any object only it
//! referenced, and the objects to keep are computed from the manifests of the releases
//! that remain, so a killed prune leaves every remaining release intact and a re-run
//! finishes the job.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use relstore_core::failpoint::{kill_point, points};
use relstore_core::progress::Progress;
use relstore_core::target::{StoredObject, TreeKind};
use relstore_core::{ObjectId, ReleaseName, Target};
use serde::{Serialize, Serializer};

use crate::catalog::{read_manifest, recover, Catalog};
use crate::error::{during_step, EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};

/// What a prune will do (or did). Serialized (for `--json`) as the `evicted` and
/// `kept` names, the number of `objects_removed` and `bytes_freed`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PrunePlan {
    /// Release directories to evict, oldest first.
    #[serde(rename = "evicted")]
    pub evict: Vec<String>,
    /// Release directories that stay.
    #[serde(rename = "kept")]
    pub keep: Vec<String>,
    /// Object files no remaining release references.
    #[serde(rename = "objects_removed", serialize_with = "count")]
    pub objects: Vec<StoredObject>,
    /// Bytes those objects occupy.
    pub bytes_freed: u64,
}

/// A prune's outcome; for `--json`, the plan's keys and these.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    #[serde(flatten)]
    pub plan: PrunePlan,
    /// False for `--dry-run`.
    pub applied: bool,
    /// Paths that could not be deleted (with reasons); the rest was pruned.
    pub left_behind: Vec<String>,
    pub seconds: f64,
}

/// How many there are: what `--json` says of the objects a prune removes.
fn count<S: Serializer>(objects: &[StoredObject], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(objects.len() as u64)
}

/// Computes which release directories beyond the newest `keep` go (never the current,
/// a pinned or the newest one) and which objects are then unreferenced.
pub fn plan_prune(target: &dyn Target, catalog: &Catalog, keep: usize) -> EngineResult<PrunePlan> {
    catalog.require_readable_headers(target)?;
    let pins: HashSet<String> = target.list_pins()?.into_iter().collect();
    // A staged release is kept and takes no keep slot: it has not been live yet.
    let present: Vec<&crate::catalog::ReleaseInfo> = catalog
        .releases
        .iter()
        .filter(|r| r.present && !r.staged)
        .collect();
    let newest = present.last().map(|r| r.name.clone());
    let mut plan = PrunePlan::default();
    plan.keep.extend(
        catalog
            .releases
            .iter()
            .rev()
            .filter(|r| r.present && r.staged)
            .map(|r| r.name.to_string()),
    );
    for (age, r) in present.iter().rev().enumerate() {
        let protected =
            r.current || pins.contains(r.name.as_str()) || newest.as_ref() == Some(&r.name);
        if age < keep || protected {
            plan.keep.push(r.name.to_string());
        } else {
            plan.evict.push(r.name.to_string());
        }
    }
    plan.keep.reverse();
    plan.evict.reverse();

    // Objects referenced by any release directory that stays. A manifest that cannot
    // be read stops the prune: without it, its objects cannot be told apart.
    let mut referenced: HashMap<ObjectId, Vec<ReleaseName>> = HashMap::new();
    for name in &plan.keep {
        let name = ReleaseName::parse(name)?;
        for id in read_manifest(target, &name)?.objects() {
            referenced.entry(id).or_default().push(name.clone());
        }
    }
    let (copies, mut objects): (Vec<StoredObject>, Vec<StoredObject>) = target
        .list_objects()?
        .into_iter()
        .filter(|o| o.copy > 0 || !referenced.contains_key(&o.id))
        .partition(|o| o.copy > 0 && referenced.contains_key(&o.id));
    objects.extend(unlinked_copies(target, &copies, &referenced)?);
    objects.sort_by_key(|o| (o.id, o.copy));
    plan.objects = objects;
    plan.bytes_freed = plan.objects.iter().map(|o| o.size).sum();
    Ok(plan)
}

/// The numbered copies (`…+0444.1`, made when a file system capped the links of an
/// object) among `copies` that no path of a release that stays is linked to, told by
/// inode. Copy 0 is never among them: it goes only with the last release using its
/// object. A target without inode numbers keeps every copy of a used object (a copy
/// still linked cannot be told from one that is not).
fn unlinked_copies(
    target: &dyn Target,
    copies: &[StoredObject],
    referenced: &HashMap<ObjectId, Vec<ReleaseName>>,
) -> EngineResult<Vec<StoredObject>> {
    if copies.is_empty() {
        return Ok(Vec::new());
    }
    let mut inodes = Vec::with_capacity(copies.len());
    for ino in target.object_inodes(copies) {
        match ino? {
            Some(ino) => inodes.push(ino),
            None => return Ok(Vec::new()),
        }
    }
    let releases: BTreeSet<&ReleaseName> = copies
        .iter()
        .filter_map(|o| referenced.get(&o.id))
        .flatten()
        .collect();
    let mut linked: HashSet<u64> = HashSet::new();
    for name in releases {
        linked.extend(
            target
                .list_release_tree(name)?
                .into_iter()
                .filter(|t| t.kind == TreeKind::File)
                .filter_map(|t| t.ino),
        );
    }
    Ok(copies
        .iter()
        .zip(inodes)
        .filter(|(_, ino)| !linked.contains(ino))
        .map(|(o, _)| *o)
        .collect())
}

/// Carries out `plan` (under the lock the caller holds).
pub fn apply_prune(
    target: &dyn Target,
    plan: &PrunePlan,
    progress: &dyn Progress,
) -> EngineResult<Vec<String>> {
    let mut left_behind = Vec::new();
    for name in &plan.evict {
        relstore_core::cancel::check()?;
        let removal = target.remove_release_dir(name)?;
        left_behind.extend(removal.left_behind);
        kill_point(points::PRUNE_EVICTED);
    }
    progress.start(
        relstore_core::progress::Phase::Prune,
        plan.objects.len() as u64,
    );
    let removal = target
        .remove_objects(&plan.objects, progress)
        .map_err(|e| during_step(target, "deleting objects", e))?;
    progress.finish();
    left_behind.extend(removal.left_behind);
    for left in &left_behind {
        progress.note(&format!("could not delete {left}"));
    }
    Ok(left_behind)
}

/// `relstore prune TARGET --keep N [--dry-run]`.
pub fn prune(
    target: &Arc<dyn Target>,
    keep: usize,
    dry_run: bool,
    lock_policy: &LockPolicy,
    progress: &dyn Progress,
) -> EngineResult<PruneReport> {
    let started = Instant::now();
    target.open(false)?;
    let mut report = PruneReport::default();
    if dry_run {
        // A plan changes nothing, so it takes no lock and runs no recovery.
        let catalog = Catalog::load(target.as_ref())?;
        report.plan = plan_prune(target.as_ref(), &catalog, keep)?;
    } else {
        let lock = acquire(target, "prune", lock_policy, progress)?;
        let catalog = recover(target.as_ref(), progress)?;
        report.plan = plan_prune(target.as_ref(), &catalog, keep)?;
        report.left_behind = apply_prune(target.as_ref(), &report.plan, progress)?;
        report.applied = true;
        lock.release()?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `relstore pin` / `relstore unpin`: a pinned release is never evicted.
pub fn set_pin(
    target: &Arc<dyn Target>,
    release: &str,
    pinned: bool,
    lock_policy: &LockPolicy,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let name = ReleaseName::parse(release)?;
    target.open(false)?;
    let lock = acquire(
        target,
        if pinned { "pin" } else { "unpin" },
        lock_policy,
        progress,
    )?;
    let catalog = Catalog::load(target.as_ref())?;
    let Some(release) = catalog.resolve(name.as_str()) else {
        return Err(EngineError::NoSuchRelease {
            name: name.to_string(),
            location: target.location().to_owned(),
        });
    };
    target.set_pin(&release.name, pinned)?;
    lock.release()?;
    Ok(())
}
