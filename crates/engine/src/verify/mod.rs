//! `relstore verify`: re-hash objects, check release trees against their manifests, and
//! with `--repair` put right what can be put right.
//!
//! Checks (read-only, no lock: a verify never changes anything):
//! 1. **Objects.** Every stored object file (numbered copies included), or with a
//!    RELEASE only the objects that release uses, is re-hashed on the target; one whose
//!    content hash differs from its name is `corrupt-object`. An object a present
//!    release's manifest needs but that is not stored (its first copy, the one every
//!    link starts from) is `missing-object`. Both name the release paths that use them.
//! 2. **Trees.** Each present release directory (or only RELEASE) is compared with its
//!    manifest: every path present with the right kind (`missing-path`, `wrong-kind`);
//!    directory modes equal (`wrong-mode`); regular files of the right size
//!    (`wrong-size`) and permission bits, write bits masked (`wrong-mode`), non-empty
//!    ones a hardlink to their object or one of its numbered copies (`not-linked`: a
//!    different inode, e.g. a copy someone wrote in its place; over SFTP, which has no
//!    inode numbers, a link count of 1 — a copy with more links of its own, or a link
//!    to the wrong object of the same size, goes unnoticed there); symlink targets equal
//!    (`wrong-target`); nothing on disk that the manifest lacks (`extra-path`, reported
//!    once at its top-most path). A path can have more than one problem. Evicted
//!    releases (manifest only) have no tree to check and are listed as such. A
//!    manifest that cannot be decoded is `corrupt-manifest`.
//!
//! Repair (`--repair`, under the lock, after recovery):
//! 1. objects that are corrupt or missing — or whose stored mode was changed, seen
//!    through a path linked to them — are uploaded again from a [`RepairSource`]
//!    (`--source DIR`, then the local release store; see [`Sources`]). The fresh
//!    object is renamed over the old name; paths linked to the old inode still show the
//!    old content, hence step 3. A corrupt or mis-moded numbered copy (`…+0444.1`) is
//!    deleted instead once its first copy is sound: copies are only ever made from it.
//! 2. An object that no source holds is left as it is and reported as unrepairable,
//!    together with the paths using it; those paths are not touched either.
//! 3. Every broken path (all problems but `extra-path`) is re-created with
//!    [`Target::relink`] (each path replaced by one rename, so it is never missing for a
//!    reader), and so is every path of every present release that uses a replaced
//!    object — also outside RELEASE, since those paths share the replaced inode.
//! 4. The checks run again; what remains is reported and makes the command fail.
//!
//! Repair never deletes extra paths (a web server or an operator may have written them
//! on purpose; relstore cannot tell) and never re-points `current`. Replacing a path of
//! the wrong kind does remove what was there (a directory where the manifest has a
//! file goes, with its contents), because the manifest's entry cannot be restored
//! otherwise. A manifest that cannot be read is rebuilt from its release's tree when
//! the release is present (see [`rebuild`]), before anything else is repaired; an
//! evicted release's cannot be.

mod check;
mod manifests;
mod rebuild;
mod repair;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use relstore_core::progress::Progress;
use relstore_core::{ReleaseName, Target};
use relstore_release_store::ReleaseStore;

use self::check::{check, Findings};
use self::manifests::Manifests;
pub use self::report::{ObjectUsers, PathUse, Problem, ProblemKind, VerifyReport};
use crate::catalog::{recover, Catalog, ReleaseInfo};
use crate::error::{EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};
use crate::sources::{DirSource, Sources, StoreSource};

/// How to verify.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Check only this release (`current` names the current one).
    pub release: Option<String>,
    /// Repair what can be repaired (takes the lock).
    pub repair: bool,
    /// Directories to take object content from when repairing (`--source`).
    pub sources: Vec<PathBuf>,
    /// The local release store, tried after `sources` when repairing; `None`: not used.
    pub store: Option<PathBuf>,
    /// Directory of the client's caches (stat cache of source scans); `None`: no cache.
    pub cache_dir: Option<PathBuf>,
    /// What to do when the target is locked (repair only).
    pub lock: LockPolicy,
}

/// `relstore verify TARGET [RELEASE] [--repair] [--source DIR]…`. Each manifest the
/// command needs is downloaded and decoded once, however many steps use it.
pub fn verify(
    target: &Arc<dyn Target>,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> EngineResult<VerifyReport> {
    let started = Instant::now();
    let requested = opts
        .release
        .as_deref()
        .map(ReleaseName::parse)
        .transpose()?;
    if !opts.repair && !opts.sources.is_empty() {
        return Err(EngineError::SourceWithoutRepair);
    }
    target.open(false)?;
    let store = match (&opts.store, opts.repair) {
        (Some(dir), true) => crate::release_store::open_existing(dir)?,
        _ => None,
    };
    let sources = repair_sources(opts, store.as_ref(), progress)?;
    let lock = if opts.repair {
        Some(acquire(target, "verify --repair", &opts.lock, progress)?)
    } else {
        None
    };
    let catalog = load_catalog(target.as_ref(), opts.repair, progress)?;
    let named = match &requested {
        None => None,
        Some(name) => Some(resolve_release(target.as_ref(), &catalog, name)?),
    };
    let scope = Scope::of(&catalog, named.as_ref());
    let mut manifests = Manifests::default();
    let found = check(target.as_ref(), &scope, &mut manifests, progress)?;
    let mut report = VerifyReport {
        objects_checked: found.objects_checked,
        bytes_checked: found.bytes_checked,
        releases_checked: found.releases_checked.clone(),
        releases_evicted: scope.evicted.iter().map(|r| r.name.to_string()).collect(),
        repair: opts.repair,
        ..VerifyReport::default()
    };
    if opts.repair && !found.problems.is_empty() {
        let run = Run {
            target: target.as_ref(),
            catalog: &catalog,
            scope: &scope,
            sources: &sources,
            store: store.as_ref(),
            progress,
        };
        run.repair_and_check(found, &mut manifests, &mut report)?;
    } else {
        report.problems = found.problems;
    }
    if let Some(lock) = lock {
        lock.release()?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Where repair takes object content from: the `--source` trees (scanned before the
/// lock is taken, like a push's source), then the local release store. None without
/// `--repair`.
fn repair_sources<'a>(
    opts: &VerifyOptions,
    store: Option<&'a ReleaseStore>,
    progress: &dyn Progress,
) -> EngineResult<Sources<'a>> {
    let mut sources = Sources::new();
    if !opts.repair {
        return Ok(sources);
    }
    for dir in &opts.sources {
        sources.push(Box::new(DirSource::scan(
            dir,
            opts.cache_dir.as_deref(),
            progress,
        )?));
    }
    if let Some(store) = store {
        sources.push(Box::new(StoreSource(store)));
    }
    Ok(sources)
}

/// The catalog to check: after recovery when repairing (under the lock), as it is
/// otherwise (a plain verify changes nothing, debris of interrupted pushes included).
fn load_catalog(
    target: &dyn Target,
    repair: bool,
    progress: &dyn Progress,
) -> EngineResult<Catalog> {
    if repair {
        return recover(target, progress);
    }
    let c = Catalog::load(target)?;
    for d in &c.incomplete {
        progress.note(&format!(
            "releases/{d} has no manifest (left by an interrupted push): not checked"
        ));
    }
    Ok(c)
}

/// The release a RELEASE argument names (`current`: the current one).
fn resolve_release(
    target: &dyn Target,
    catalog: &Catalog,
    name: &ReleaseName,
) -> EngineResult<ReleaseInfo> {
    if let Some(r) = catalog.resolve(name.as_str()) {
        return Ok(r.clone());
    }
    Err(EngineError::NoSuchRelease {
        name: name.to_string(),
        location: target.location().to_owned(),
    })
}

/// What a repair run works with.
struct Run<'a> {
    target: &'a dyn Target,
    catalog: &'a Catalog,
    scope: &'a Scope,
    sources: &'a Sources<'a>,
    /// The local release store, also the source of patch bases for re-uploads.
    store: Option<&'a ReleaseStore>,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    /// Repairs what `found` describes, checks again, and fills in `report`: what
    /// remains, what was repaired, what could not be. Unreadable manifests of present
    /// releases are rebuilt first; their trees are then checked and repaired too.
    fn repair_and_check(
        &self,
        found: Findings,
        manifests: &mut Manifests,
        report: &mut VerifyReport,
    ) -> EngineResult<()> {
        let (rebuilt, mut unrepairable) = self.rebuild_manifests(&found, manifests)?;
        let first = found.problems.clone();
        let found = if rebuilt {
            check(self.target, self.scope, manifests, self.progress)?
        } else {
            found
        };
        unrepairable.extend(repair::repair(
            self.target,
            self.catalog,
            &found,
            manifests,
            self.sources,
            self.store,
            self.progress,
        )?);
        report.unrepairable = unrepairable;
        let after = check(self.target, self.scope, manifests, self.progress)?;
        let remaining: HashSet<_> = after.problems.iter().map(Problem::key).collect();
        let mut seen = HashSet::new();
        report.repaired = first
            .iter()
            .chain(&found.problems)
            .filter(|p| !remaining.contains(&p.key()) && seen.insert(p.key()))
            .cloned()
            .collect();
        report.problems = after.problems;
        Ok(())
    }

    /// Rebuilds the manifest of every present release in scope that `found` reports
    /// corrupt (see [`rebuild`]). Returns whether any was rebuilt, and the ones that
    /// could not be, as problems.
    fn rebuild_manifests(
        &self,
        found: &Findings,
        manifests: &mut Manifests,
    ) -> EngineResult<(bool, Vec<Problem>)> {
        let mut rebuilt = false;
        let mut failed = Vec::new();
        for p in found
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::CorruptManifest)
        {
            let Some(release) = self
                .scope
                .present
                .iter()
                .find(|r| Some(r.name.as_str()) == p.release.as_deref())
            else {
                continue;
            };
            let others: Vec<&relstore_core::Manifest> = self
                .scope
                .present
                .iter()
                .filter(|r| r.name != release.name)
                .filter_map(|r| manifests.get(&r.name))
                .collect();
            match rebuild::rebuild_manifest(
                self.target,
                self.catalog,
                release,
                &others,
                self.progress,
            )? {
                Ok(m) => {
                    manifests.insert(release.name.clone(), m);
                    rebuilt = true;
                }
                Err(why) => {
                    let mut p = p.clone();
                    p.detail = format!("{}; cannot rebuild it from the tree: {why}", p.detail);
                    failed.push(p);
                }
            }
        }
        Ok((rebuilt, failed))
    }
}

/// Which releases a verify looks at.
struct Scope {
    /// Present releases whose trees are checked.
    present: Vec<ReleaseInfo>,
    /// Evicted releases in scope (listed, trees not checked).
    evicted: Vec<ReleaseInfo>,
    /// Only the objects of the named release are hashed (else every stored object).
    only: Option<ReleaseInfo>,
}

impl Scope {
    /// The releases in scope: the named one, or every release of `catalog`.
    fn of(catalog: &Catalog, named: Option<&ReleaseInfo>) -> Scope {
        let in_scope: Vec<&ReleaseInfo> = match named {
            Some(r) => vec![r],
            None => catalog.releases.iter().collect(),
        };
        let (present, evicted): (Vec<&ReleaseInfo>, Vec<&ReleaseInfo>) =
            in_scope.into_iter().partition(|r| r.present);
        Scope {
            present: present.into_iter().cloned().collect(),
            evicted: evicted.into_iter().cloned().collect(),
            only: named.cloned(),
        }
    }
}
