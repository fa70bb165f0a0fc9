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
//! otherwise. A corrupt manifest cannot be repaired from a source tree.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use relstore_core::layout;
use relstore_core::path::{cmp_paths, escape, parent};
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{BlobSource, StoredObject, TreeEntry, TreeKind, Upload};
use relstore_core::{Entry, EntryKind, ObjectId, ReleaseName, Target, TargetError};
use serde_json::{json, Value};

use crate::catalog::{read_manifest, recover, Catalog, ReleaseInfo};
use crate::error::{error_chain, EngineError, EngineResult};
use crate::lock::{acquire, LockPolicy};
use crate::sources::{DirSource, Sources, StoreSource};

/// How many paths an object problem lists (its `used_by_total` counts them all).
const MAX_USED_BY: usize = 1000;
/// How many of those the one-line detail names.
const USED_BY_IN_DETAIL: usize = 5;

/// What is wrong, as a stable lower-case name (`--json` `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    CorruptObject,
    MissingObject,
    CorruptManifest,
    MissingPath,
    WrongKind,
    WrongMode,
    WrongSize,
    NotLinked,
    WrongTarget,
    ExtraPath,
}

impl ProblemKind {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptObject => "corrupt-object",
            ProblemKind::MissingObject => "missing-object",
            ProblemKind::CorruptManifest => "corrupt-manifest",
            ProblemKind::MissingPath => "missing-path",
            ProblemKind::WrongKind => "wrong-kind",
            ProblemKind::WrongMode => "wrong-mode",
            ProblemKind::WrongSize => "wrong-size",
            ProblemKind::NotLinked => "not-linked",
            ProblemKind::WrongTarget => "wrong-target",
            ProblemKind::ExtraPath => "extra-path",
        }
    }

    fn is_object(self) -> bool {
        matches!(
            self,
            ProblemKind::CorruptObject | ProblemKind::MissingObject
        )
    }
}

/// A path of a release that uses an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathUse {
    pub release: String,
    /// Escaped with [`escape`].
    pub path: String,
}

/// One problem found by verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The release whose tree has the problem; `None` for objects (shared by releases).
    pub release: Option<String>,
    /// Path in the release (or, for objects and manifests, relative to the store root),
    /// escaped with [`escape`].
    pub path: String,
    pub kind: ProblemKind,
    /// What was found and what was expected.
    pub detail: String,
    /// For object problems: the paths that use the object (at most 1000).
    pub used_by: Vec<PathUse>,
    /// For object problems: how many paths use it in all.
    pub used_by_total: u64,
}

impl Problem {
    fn new(release: Option<&str>, path: String, kind: ProblemKind, detail: String) -> Problem {
        Problem {
            release: release.map(str::to_owned),
            path,
            kind,
            detail,
            used_by: Vec::new(),
            used_by_total: 0,
        }
    }

    /// `RELEASE: PATH: detail` (objects: `PATH: detail`).
    pub fn line(&self) -> String {
        match &self.release {
            Some(r) => format!("{r}: {}: {}", self.path, self.detail),
            None => format!("{}: {}", self.path, self.detail),
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "release": self.release,
            "path": self.path,
            "kind": self.kind.as_str(),
            "detail": self.detail,
        });
        if self.kind.is_object() {
            v["used_by"] = self
                .used_by
                .iter()
                .map(|u| json!({"release": u.release, "path": u.path}))
                .collect();
            v["used_by_total"] = json!(self.used_by_total);
        }
        v
    }

    fn key(&self) -> (Option<&str>, &str, ProblemKind) {
        (self.release.as_deref(), &self.path, self.kind)
    }
}

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

/// What verify found (and, with `--repair`, did).
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    /// Releases whose trees were checked.
    pub releases_checked: Vec<String>,
    /// Releases in scope that are evicted (manifest only): no tree to check.
    pub releases_evicted: Vec<String>,
    /// Problems that remain (after repair, if it ran).
    pub problems: Vec<Problem>,
    /// Problems found and no longer present after repair.
    pub repaired: Vec<Problem>,
    /// Objects repair needed but could not get (no source holds them), with their paths.
    pub unrepairable: Vec<Problem>,
    /// `--repair` was given.
    pub repair: bool,
    pub seconds: f64,
}

impl VerifyReport {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let list = |v: &[Problem]| v.iter().map(Problem::to_json).collect::<Vec<_>>();
        json!({
            "objects_checked": self.objects_checked,
            "bytes_checked": self.bytes_checked,
            "releases_checked": self.releases_checked,
            "releases_evicted": self.releases_evicted,
            "problems": list(&self.problems),
            "repaired": list(&self.repaired),
            "unrepairable": list(&self.unrepairable),
            "seconds": self.seconds,
        })
    }

    /// True when nothing is wrong (any more).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line for the failure message: how many problems, and why repair left them.
    pub fn failure_summary(&self) -> String {
        let n = self.problems.len();
        let problems = plural(n as u64, "problem");
        if !self.repair {
            return format!("{problems} found");
        }
        let mut s = format!(
            "{problems} {} after repair ({} repaired",
            if n == 1 { "remains" } else { "remain" },
            self.repaired.len()
        );
        if !self.unrepairable.is_empty() {
            s.push_str(&format!(
                "; {} not in any source",
                plural(self.unrepairable.len() as u64, "object")
            ));
        }
        s.push(')');
        s
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

// ---------------------------------------------------------------------------------
// The command.

/// `relstore verify TARGET [RELEASE] [--repair] [--source DIR]…`.
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
        return Err(EngineError::Refused(
            "--source is only used with --repair".into(),
        ));
    }
    target.open(false)?;
    let store = match (&opts.store, opts.repair) {
        (Some(dir), true) => crate::local_store::open_existing(dir)?,
        _ => None,
    };
    let mut sources = Sources::new();
    if opts.repair {
        // Scanned before the lock is taken, like a push's source.
        for dir in &opts.sources {
            sources.push(Box::new(DirSource::scan(
                dir,
                opts.cache_dir.as_deref(),
                progress,
            )?));
        }
        if let Some(store) = &store {
            sources.push(Box::new(StoreSource(store)));
        }
    }
    let lock = if opts.repair {
        Some(acquire(target, "verify --repair", &opts.lock, progress)?)
    } else {
        None
    };
    let catalog = if opts.repair {
        recover(target.as_ref(), progress)?
    } else {
        let c = Catalog::load(target.as_ref())?;
        for d in &c.incomplete {
            progress.note(&format!(
                "releases/{d} has no manifest (left by an interrupted push): not checked"
            ));
        }
        c
    };
    let named = match &requested {
        None => None,
        Some(name) => Some(resolve_release(target.as_ref(), &catalog, name)?),
    };
    let scope = Scope::of(&catalog, named.as_ref());
    let found = check(target.as_ref(), &scope, progress)?;
    let mut report = VerifyReport {
        objects_checked: found.objects_checked,
        bytes_checked: found.bytes_checked,
        releases_checked: found.releases_checked.clone(),
        releases_evicted: scope.evicted.iter().map(|r| r.name.to_string()).collect(),
        repair: opts.repair,
        ..VerifyReport::default()
    };
    if opts.repair && !found.problems.is_empty() {
        report.unrepairable = repair(target.as_ref(), &catalog, &found, &sources, progress)?;
        let after = check(target.as_ref(), &scope, progress)?;
        let remaining: HashSet<_> = after.problems.iter().map(Problem::key).collect();
        report.repaired = found
            .problems
            .iter()
            .filter(|p| !remaining.contains(&p.key()))
            .cloned()
            .collect();
        report.problems = after.problems;
    } else {
        report.problems = found.problems;
    }
    if let Some(lock) = lock {
        lock.release()?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn resolve_release(
    target: &dyn Target,
    catalog: &Catalog,
    name: &ReleaseName,
) -> EngineResult<ReleaseInfo> {
    if let Some(r) = catalog.get(name.as_str()) {
        return Ok(r.clone());
    }
    if name.as_str() == layout::CURRENT {
        if let Some(r) = catalog.releases.iter().find(|r| r.current) {
            return Ok(r.clone());
        }
    }
    Err(EngineError::NoSuchRelease {
        name: name.to_string(),
        location: target.location().to_owned(),
    })
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
    fn of(catalog: &Catalog, named: Option<&ReleaseInfo>) -> Scope {
        let in_scope: Vec<&ReleaseInfo> = match named {
            Some(r) => vec![r],
            None => catalog.releases.iter().collect(),
        };
        Scope {
            present: in_scope
                .iter()
                .filter(|r| r.present)
                .map(|r| (*r).clone())
                .collect(),
            evicted: in_scope
                .iter()
                .filter(|r| !r.present)
                .map(|r| (*r).clone())
                .collect(),
            only: named.cloned(),
        }
    }
}

/// Everything one pass of checks learned.
struct Findings {
    objects_checked: u64,
    bytes_checked: u64,
    releases_checked: Vec<String>,
    problems: Vec<Problem>,
    /// Content sizes of the objects the checked manifests use.
    sizes: HashMap<ObjectId, u64>,
    /// Stored object files to replace: corrupt content, or a mode changed (seen
    /// through a path linked to them).
    bad_copies: BTreeMap<(ObjectId, u32), StoredObject>,
    /// Objects present releases need whose first copy is not stored.
    missing: BTreeSet<ObjectId>,
    /// Objects with a stored copy whose content does not match its name.
    corrupt_ids: HashSet<ObjectId>,
    /// Paths to re-create, per release.
    broken: HashMap<ReleaseName, HashSet<Vec<u8>>>,
}

/// Reads a manifest; one that cannot be decoded becomes a problem (`None`), any other
/// failure stops the command.
fn manifest_or_problem(
    target: &dyn Target,
    name: &ReleaseName,
    problems: &mut Vec<Problem>,
) -> EngineResult<Option<relstore_core::Manifest>> {
    match read_manifest(target, name) {
        Ok(m) => Ok(Some(m)),
        Err(EngineError::Target(TargetError::Manifest { source, .. })) => {
            problems.push(Problem::new(
                Some(name.as_str()),
                layout::manifest_file(name),
                ProblemKind::CorruptManifest,
                format!("manifest cannot be used: {source}"),
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn check(target: &dyn Target, scope: &Scope, progress: &dyn Progress) -> EngineResult<Findings> {
    let mut manifest_problems = Vec::new();
    // Pass 1: which objects the releases in scope use, and their sizes.
    let mut sizes: HashMap<ObjectId, u64> = HashMap::new();
    let mut needed: HashSet<ObjectId> = HashSet::new();
    let mut readable: Vec<ReleaseName> = Vec::new();
    for r in &scope.present {
        let Some(m) = manifest_or_problem(target, &r.name, &mut manifest_problems)? else {
            continue;
        };
        for e in &m.entries {
            if let (Some(id), EntryKind::File { size, .. }) = (e.object(), &e.kind) {
                sizes.insert(id, *size);
                needed.insert(id);
            }
        }
        readable.push(r.name.clone());
    }
    match &scope.only {
        Some(r) if !r.present => {
            if let Some(m) = manifest_or_problem(target, &r.name, &mut manifest_problems)? {
                for e in &m.entries {
                    if let (Some(id), EntryKind::File { size, .. }) = (e.object(), &e.kind) {
                        sizes.insert(id, *size);
                    }
                }
            }
        }
        Some(_) => {}
        None => {
            // Evicted releases are not read in full; a header that cannot be read is
            // still worth knowing about (such a release can never come back).
            for r in &scope.evicted {
                if let Some(problem) = &r.problem {
                    manifest_problems.push(Problem::new(
                        Some(r.name.as_str()),
                        layout::manifest_file(&r.name),
                        ProblemKind::CorruptManifest,
                        problem.clone(),
                    ));
                }
            }
        }
    }

    // Objects: list, re-hash, note inodes.
    let mut objects = target.list_objects()?;
    if scope.only.is_some() {
        objects.retain(|o| sizes.contains_key(&o.id));
    }
    let bytes: u64 = objects.iter().map(|o| o.size).sum();
    progress.start(Phase::Verify, bytes);
    let hashes = target.hash_objects(&objects, progress);
    progress.finish();
    // Interrupted objects would otherwise be reported as unreadable.
    relstore_core::cancel::check()?;
    let mut corrupt: Vec<(StoredObject, String)> = Vec::new();
    let mut bad_copies = BTreeMap::new();
    for (o, h) in objects.iter().zip(hashes) {
        let detail = match h {
            Ok(h) if h == o.id.hash => continue,
            Ok(h) => format!(
                "corrupt: content hash is {}…, its name says {}…",
                &h.to_hex()[..16],
                &o.id.hash.to_hex()[..16]
            ),
            Err(e) => format!("cannot be read: {}", error_chain(&e)),
        };
        bad_copies.insert((o.id, o.copy), *o);
        corrupt.push((*o, detail));
    }
    let first_copies: HashSet<ObjectId> = objects
        .iter()
        .filter(|o| o.copy == 0)
        .map(|o| o.id)
        .collect();
    let missing: BTreeSet<ObjectId> = needed
        .iter()
        .filter(|id| !first_copies.contains(id))
        .copied()
        .collect();
    let mut inodes: HashMap<ObjectId, Vec<(StoredObject, u64)>> = HashMap::new();
    let linkable: Vec<StoredObject> = objects
        .iter()
        .filter(|o| needed.contains(&o.id))
        .copied()
        .collect();
    let mut stored: HashMap<ObjectId, Vec<StoredObject>> = HashMap::new();
    for o in &linkable {
        stored.entry(o.id).or_default().push(*o);
    }
    for (o, ino) in linkable.iter().zip(target.object_inodes(&linkable)) {
        if let Ok(Some(ino)) = ino {
            inodes.entry(o.id).or_default().push((*o, ino));
        }
    }

    // Pass 2: trees.
    let corrupt_ids: HashSet<ObjectId> = corrupt.iter().map(|(o, _)| o.id).collect();
    let mut used_by: HashMap<ObjectId, (Vec<PathUse>, u64)> = HashMap::new();
    let mut tree_problems = Vec::new();
    let mut broken: HashMap<ReleaseName, HashSet<Vec<u8>>> = HashMap::new();
    let mut releases_checked = Vec::new();
    for name in &readable {
        let Some(m) = manifest_or_problem(target, name, &mut manifest_problems)? else {
            continue;
        };
        let tree: HashMap<Vec<u8>, TreeEntry> = target
            .list_release_tree(name)?
            .into_iter()
            .map(|t| (t.path.clone(), t))
            .collect();
        let mut release_broken = HashSet::new();
        for e in &m.entries {
            if let Some(id) = e.object() {
                if corrupt_ids.contains(&id) || missing.contains(&id) {
                    let (list, total) = used_by.entry(id).or_default();
                    *total += 1;
                    if list.len() < MAX_USED_BY {
                        list.push(PathUse {
                            release: name.to_string(),
                            path: escape(&e.path),
                        });
                    }
                }
            }
            let found = check_entry(e, tree.get(&e.path), &inodes, &stored, &mut bad_copies);
            if !found.is_empty() {
                release_broken.insert(e.path.clone());
            }
            for (kind, detail) in found {
                tree_problems.push(Problem::new(
                    Some(name.as_str()),
                    escape(&e.path),
                    kind,
                    detail,
                ));
            }
        }
        tree_problems.extend(extra_paths(name, &m.entries, &tree));
        if !release_broken.is_empty() {
            broken.insert(name.clone(), release_broken);
        }
        releases_checked.push(name.to_string());
    }

    let mut problems = Vec::new();
    let with_users = |mut p: Problem, id: &ObjectId| {
        let (list, total) = used_by.get(id).cloned().unwrap_or_default();
        p.detail = format!("{}; {}", p.detail, describe_users(&list, total));
        p.used_by = list;
        p.used_by_total = total;
        p
    };
    for (o, detail) in &corrupt {
        problems.push(with_users(
            Problem::new(
                None,
                o.rel_path(),
                ProblemKind::CorruptObject,
                detail.clone(),
            ),
            &o.id,
        ));
    }
    for id in &missing {
        problems.push(with_users(
            Problem::new(
                None,
                id.rel_path(),
                ProblemKind::MissingObject,
                "missing: not stored".into(),
            ),
            id,
        ));
    }
    problems.extend(manifest_problems);
    problems.extend(tree_problems);
    Ok(Findings {
        objects_checked: objects.len() as u64,
        bytes_checked: bytes,
        releases_checked,
        problems,
        sizes,
        bad_copies,
        missing,
        corrupt_ids,
        broken,
    })
}

fn describe_users(list: &[PathUse], total: u64) -> String {
    if total == 0 {
        return "used by no checked release".into();
    }
    let shown: Vec<String> = list
        .iter()
        .take(USED_BY_IN_DETAIL)
        .map(|u| format!("{}:{}", u.release, u.path))
        .collect();
    let more = total.saturating_sub(shown.len() as u64);
    format!(
        "used by {} ({}{})",
        plural(total, "path"),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn tree_kind_name(k: TreeKind) -> &'static str {
    match k {
        TreeKind::Dir => "dir",
        TreeKind::File => "file",
        TreeKind::Symlink => "symlink",
        TreeKind::Other => "special file",
    }
}

/// Problems of one manifest entry against what is on disk at its path. A path linked to
/// an object copy whose mode was changed marks that copy for replacement; where the
/// target cannot tell which copy a path is linked to (no inode numbers over SFTP),
/// every stored copy of its object is marked (the mode was most likely changed through
/// a link, i.e. on the object itself).
fn check_entry(
    e: &Entry,
    on_disk: Option<&TreeEntry>,
    inodes: &HashMap<ObjectId, Vec<(StoredObject, u64)>>,
    stored: &HashMap<ObjectId, Vec<StoredObject>>,
    bad_copies: &mut BTreeMap<(ObjectId, u32), StoredObject>,
) -> Vec<(ProblemKind, String)> {
    let Some(t) = on_disk else {
        return vec![(
            ProblemKind::MissingPath,
            format!("missing (the manifest has a {} here)", e.kind.name()),
        )];
    };
    let mut found = Vec::new();
    match (&e.kind, t.kind) {
        (EntryKind::Dir { mode }, TreeKind::Dir) => {
            if t.mode & 0o7777 != *mode {
                found.push((
                    ProblemKind::WrongMode,
                    format!(
                        "directory mode {:04o}, expected {mode:04o}",
                        t.mode & 0o7777
                    ),
                ));
            }
        }
        (EntryKind::File { size, mode, .. }, TreeKind::File) => {
            if t.size != *size {
                found.push((
                    ProblemKind::WrongSize,
                    format!("{} bytes, expected {size}", t.size),
                ));
            }
            let want = relstore_core::hash::stored_mode(*mode);
            let mode_ok = t.mode & 0o7555 == want;
            let linked = match (e.object(), t.ino) {
                (Some(id), Some(ino)) => {
                    let copies = inodes.get(&id).map(Vec::as_slice).unwrap_or(&[]);
                    // No stored copy at all: the missing object is the problem.
                    if !copies.is_empty() {
                        match copies.iter().find(|(_, i)| *i == ino) {
                            Some((o, _)) => Some(*o),
                            None => {
                                found.push((
                                    ProblemKind::NotLinked,
                                    format!(
                                        "not a hardlink to its object {} (a separate file in its place)",
                                        id.rel_path()
                                    ),
                                ));
                                None
                            }
                        }
                    } else {
                        None
                    }
                }
                (Some(id), None) if t.nlink == Some(1) => {
                    // No inode numbers (SFTP), but one link: certainly a copy.
                    found.push((
                        ProblemKind::NotLinked,
                        format!(
                            "not a hardlink to its object {} (a separate file in its place: link count 1)",
                            id.rel_path()
                        ),
                    ));
                    None
                }
                _ => None,
            };
            if !mode_ok {
                let mut detail = format!("mode {:04o}, expected {want:04o}", t.mode & 0o7777);
                if let Some(o) = linked {
                    detail.push_str(&format!(
                        " (the mode of its object {}, which every path linked to it shares)",
                        o.rel_path()
                    ));
                    bad_copies.insert((o.id, o.copy), o);
                } else if let (None, Some(id)) = (t.ino, e.object()) {
                    for o in stored.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                        bad_copies.insert((o.id, o.copy), *o);
                    }
                }
                found.push((ProblemKind::WrongMode, detail));
            }
        }
        (EntryKind::Symlink { target }, TreeKind::Symlink) => {
            let actual = t.link_target.as_deref().unwrap_or_default();
            if actual != target.as_slice() {
                found.push((
                    ProblemKind::WrongTarget,
                    format!("points at {}, expected {}", escape(actual), escape(target)),
                ));
            }
        }
        (kind, other) => found.push((
            ProblemKind::WrongKind,
            format!("is a {}, expected a {}", tree_kind_name(other), kind.name()),
        )),
    }
    found
}

/// Paths on disk the manifest lacks, each reported at its top-most path only.
fn extra_paths(
    name: &ReleaseName,
    entries: &[Entry],
    tree: &HashMap<Vec<u8>, TreeEntry>,
) -> Vec<Problem> {
    let dirs: HashSet<&[u8]> = entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Dir { .. }))
        .map(|e| e.path.as_slice())
        .collect();
    let known: HashSet<&[u8]> = entries.iter().map(|e| e.path.as_slice()).collect();
    let mut extra: Vec<&TreeEntry> = tree
        .values()
        .filter(|t| !known.contains(t.path.as_slice()))
        .filter(|t| match parent(&t.path) {
            None => true,
            Some(p) => dirs.contains(p) && tree.get(p).is_some_and(|d| d.kind == TreeKind::Dir),
        })
        .collect();
    extra.sort_by(|a, b| cmp_paths(&a.path, &b.path));
    extra
        .into_iter()
        .map(|t| {
            Problem::new(
                Some(name.as_str()),
                escape(&t.path),
                ProblemKind::ExtraPath,
                format!(
                    "a {} the manifest does not have (left in place: repair never deletes)",
                    tree_kind_name(t.kind)
                ),
            )
        })
        .collect()
}

/// Repairs what `found` describes; returns the objects that could not be repaired.
fn repair(
    target: &dyn Target,
    catalog: &Catalog,
    found: &Findings,
    sources: &Sources<'_>,
    progress: &dyn Progress,
) -> EngineResult<Vec<Problem>> {
    // 1. Objects whose first copy must be uploaded again.
    let mut needs_upload: BTreeSet<ObjectId> = found.missing.clone();
    needs_upload.extend(
        found
            .bad_copies
            .keys()
            .filter(|(_, copy)| *copy == 0)
            .map(|(id, _)| *id),
    );
    let mut sizes = found.sizes.clone();
    if needs_upload.iter().any(|id| !sizes.contains_key(id)) {
        // An object no checked release uses: its size is in some other manifest.
        for r in &catalog.releases {
            if let Ok(m) = read_manifest(target, &r.name) {
                for e in &m.entries {
                    if let (Some(id), EntryKind::File { size, .. }) = (e.object(), &e.kind) {
                        sizes.entry(id).or_insert(*size);
                    }
                }
            }
        }
    }
    let mut uploads = Vec::new();
    let mut unrepairable: BTreeMap<ObjectId, String> = BTreeMap::new();
    for id in &needs_upload {
        match (sizes.get(id), sources.find(&id.hash)) {
            (Some(size), Some(_)) => uploads.push(Upload {
                id: *id,
                size: *size,
            }),
            (None, _) => {
                unrepairable.insert(*id, "no manifest records its size".into());
            }
            (Some(_), None) => {
                let why = if sources.is_empty() {
                    "no source to take its content from (no local release store holds it; give --source DIR)".to_owned()
                } else {
                    format!(
                        "its content is in no source ({})",
                        sources.labels().join(", ")
                    )
                };
                unrepairable.insert(*id, why);
            }
        }
    }
    if !uploads.is_empty() {
        progress.start(Phase::Upload, uploads.iter().map(|u| u.size).sum());
        target.put_objects(&uploads, sources, progress)?;
        progress.finish();
        for u in &uploads {
            progress.note(&format!(
                "stored {} again from {}",
                u.id.rel_path(),
                sources.describe(u)
            ));
        }
    }
    let mut replaced: HashSet<ObjectId> = uploads.iter().map(|u| u.id).collect();

    // 2. Bad numbered copies go once the first copy is sound.
    let copies: Vec<StoredObject> = found
        .bad_copies
        .values()
        .filter(|o| o.copy > 0 && !unrepairable.contains_key(&o.id))
        .copied()
        .collect();
    if !copies.is_empty() {
        let removal = target.remove_objects(&copies, progress)?;
        for left in &removal.left_behind {
            progress.note(&format!("could not delete {left}"));
        }
        replaced.extend(copies.iter().map(|o| o.id));
    }

    // 3. Re-create broken paths, and every path of a present release that uses a
    // replaced object (it still holds the old inode).
    let empty = HashSet::new();
    for r in catalog.releases.iter().filter(|r| r.present) {
        let broken = found.broken.get(&r.name).unwrap_or(&empty);
        if broken.is_empty() && replaced.is_empty() {
            continue;
        }
        let Ok(m) = read_manifest(target, &r.name) else {
            continue; // reported as corrupt-manifest when in scope
        };
        let entries: Vec<Entry> = m
            .entries
            .into_iter()
            .filter(|e| {
                let object = e.object();
                if object.is_some_and(|id| unrepairable.contains_key(&id)) {
                    return false;
                }
                broken.contains(&e.path) || object.is_some_and(|id| replaced.contains(&id))
            })
            .collect();
        if !entries.is_empty() {
            target.relink(&r.name, &entries)?;
            progress.note(&format!(
                "{}: re-created {}",
                r.name,
                plural(entries.len() as u64, "path")
            ));
        }
    }

    // What could not be done, with the paths left as they are.
    let problems_by_object: HashMap<String, &Problem> = found
        .problems
        .iter()
        .filter(|p| p.kind.is_object())
        .map(|p| (p.path.clone(), p))
        .collect();
    Ok(unrepairable
        .into_iter()
        .map(|(id, why)| {
            let path = id.rel_path();
            let base = problems_by_object.get(&path);
            let kind = if found.missing.contains(&id) {
                ProblemKind::MissingObject
            } else if found.corrupt_ids.contains(&id) {
                ProblemKind::CorruptObject
            } else {
                ProblemKind::WrongMode
            };
            let mut p = Problem::new(
                None,
                path,
                kind,
                format!("not repaired: {why}; the paths using it were left as they are"),
            );
            if let Some(b) = base {
                p.used_by = b.used_by.clone();
                p.used_by_total = b.used_by_total;
            }
            p
        })
        .collect())
}
