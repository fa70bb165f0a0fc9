//! The read-only checks of verify: objects re-hashed, release trees compared with their
//! manifests. One pass learns everything repair needs, so repair never looks again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use relstore_core::layout;
use relstore_core::path::{cmp_paths, escape, parent};
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{StoredObject, TreeEntry, TreeKind};
use relstore_core::{Entry, EntryKind, Manifest, ObjectId, ReleaseName, Target};

use super::manifests::Manifests;
use super::report::{ObjectUsers, Problem, ProblemKind};
use super::Scope;
use crate::error::{error_chain, EngineResult};

/// Everything one pass of checks learned.
pub(super) struct Findings {
    pub(super) objects_checked: u64,
    pub(super) bytes_checked: u64,
    pub(super) releases_checked: Vec<String>,
    pub(super) problems: Vec<Problem>,
    /// Content sizes of the objects the checked manifests use.
    pub(super) sizes: HashMap<ObjectId, u64>,
    /// Stored object files to replace: corrupt content, or a mode changed (seen
    /// through a path linked to them).
    pub(super) bad_copies: BTreeMap<(ObjectId, u32), StoredObject>,
    /// Objects present releases need whose first copy is not stored.
    pub(super) missing: BTreeSet<ObjectId>,
    /// Objects with a stored copy whose content does not match its name.
    pub(super) corrupt_ids: HashSet<ObjectId>,
    /// Paths to re-create, per release.
    pub(super) broken: HashMap<ReleaseName, HashSet<Vec<u8>>>,
}

/// Runs every check on the releases and objects of `scope`, reading each manifest
/// through `manifests` (so a second check, after repair, downloads none again).
pub(super) fn check(
    target: &dyn Target,
    scope: &Scope,
    manifests: &mut Manifests,
    progress: &dyn Progress,
) -> EngineResult<Findings> {
    let mut manifest_problems = Vec::new();
    let needs = needed_objects(target, scope, manifests, &mut manifest_problems)?;
    let mut objects = check_objects(target, scope, &needs, progress)?;
    let corrupt_ids: HashSet<ObjectId> = objects.corrupt.iter().map(|(o, _)| o.id).collect();
    let mut trees = Trees::default();
    for name in &needs.readable {
        let Some(m) = manifests.get(name) else {
            continue;
        };
        trees.check(target, name, m, &mut objects, &corrupt_ids)?;
    }

    let mut problems = Vec::new();
    for (o, detail) in &objects.corrupt {
        let users = trees.used_by.get(&o.id).cloned().unwrap_or_default();
        problems.push(Problem::object(
            o.rel_path(),
            ProblemKind::CorruptObject,
            detail,
            users,
        ));
    }
    for id in &objects.missing {
        let users = trees.used_by.get(id).cloned().unwrap_or_default();
        problems.push(Problem::object(
            id.rel_path(),
            ProblemKind::MissingObject,
            "missing: not stored",
            users,
        ));
    }
    problems.extend(manifest_problems);
    problems.extend(trees.problems);
    Ok(Findings {
        objects_checked: objects.checked,
        bytes_checked: objects.bytes,
        releases_checked: trees.releases_checked,
        problems,
        sizes: needs.sizes,
        bad_copies: objects.bad_copies,
        missing: objects.missing,
        corrupt_ids,
        broken: trees.broken,
    })
}

/// What the manifests in scope need.
struct Needs {
    /// Content sizes of the objects they use.
    sizes: HashMap<ObjectId, u64>,
    /// Objects the present releases link to (their first copy must be stored).
    needed: HashSet<ObjectId>,
    /// Present releases whose manifest decoded: their trees get checked.
    readable: Vec<ReleaseName>,
}

/// Which objects the releases in scope use, and their sizes; a manifest that cannot be
/// decoded becomes a problem.
fn needed_objects(
    target: &dyn Target,
    scope: &Scope,
    manifests: &mut Manifests,
    problems: &mut Vec<Problem>,
) -> EngineResult<Needs> {
    let mut needs = Needs {
        sizes: HashMap::new(),
        needed: HashSet::new(),
        readable: Vec::new(),
    };
    for r in &scope.present {
        if let Some(m) = manifest_or_problem(target, &r.name, manifests, problems)? {
            for (id, size) in file_objects(m) {
                needs.sizes.insert(id, size);
                needs.needed.insert(id);
            }
            needs.readable.push(r.name.clone());
        }
    }
    match &scope.only {
        Some(r) if !r.present => {
            if let Some(m) = manifest_or_problem(target, &r.name, manifests, problems)? {
                needs.sizes.extend(file_objects(m));
            }
        }
        Some(_) => {}
        None => {
            // Evicted releases are not read in full; a header that cannot be read is
            // still worth knowing about (such a release can never come back).
            for r in &scope.evicted {
                if let (None, Some(problem)) = (&r.header, &r.problem) {
                    problems.push(Problem::new(
                        Some(r.name.as_str()),
                        layout::manifest_file(&r.name),
                        ProblemKind::CorruptManifest,
                        problem.clone(),
                    ));
                }
            }
        }
    }
    Ok(needs)
}

/// The objects a manifest's regular files use, with their content sizes.
pub(super) fn file_objects(m: &Manifest) -> impl Iterator<Item = (ObjectId, u64)> + '_ {
    m.entries
        .iter()
        .filter_map(|e| match (e.object(), &e.kind) {
            (Some(id), EntryKind::File { size, .. }) => Some((id, *size)),
            _ => None,
        })
}

/// Loads a manifest; one that cannot be decoded becomes a problem (`None`), any other
/// failure stops the command.
fn manifest_or_problem<'m>(
    target: &dyn Target,
    name: &ReleaseName,
    manifests: &'m mut Manifests,
    problems: &mut Vec<Problem>,
) -> EngineResult<Option<&'m Manifest>> {
    match manifests.load(target, name)? {
        Ok(m) => Ok(Some(m)),
        Err(why) => {
            problems.push(Problem::new(
                Some(name.as_str()),
                layout::manifest_file(name),
                ProblemKind::CorruptManifest,
                why.to_owned(),
            ));
            Ok(None)
        }
    }
}

/// What the object checks learned.
struct Objects {
    /// Object files hashed, and their bytes.
    checked: u64,
    bytes: u64,
    /// Object files whose content does not match their name, and what was found.
    corrupt: Vec<(StoredObject, String)>,
    /// See [`Findings::bad_copies`]; the tree checks add to it.
    bad_copies: BTreeMap<(ObjectId, u32), StoredObject>,
    /// See [`Findings::missing`].
    missing: BTreeSet<ObjectId>,
    /// Stored copies of needed objects, by object.
    stored: HashMap<ObjectId, Vec<StoredObject>>,
    /// Those copies with their inode numbers, where the target can tell.
    inodes: HashMap<ObjectId, Vec<(StoredObject, u64)>>,
}

/// Lists and re-hashes the stored objects (only those `needs` uses when one release is
/// in scope), finds needed objects that are not stored, and notes the inodes of the
/// needed ones so paths can be matched to them.
fn check_objects(
    target: &dyn Target,
    scope: &Scope,
    needs: &Needs,
    progress: &dyn Progress,
) -> EngineResult<Objects> {
    let mut objects = target.list_objects()?;
    if scope.only.is_some() {
        objects.retain(|o| needs.sizes.contains_key(&o.id));
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
    let missing = needs
        .needed
        .iter()
        .filter(|id| !first_copies.contains(id))
        .copied()
        .collect();
    let linkable: Vec<StoredObject> = objects
        .iter()
        .filter(|o| needs.needed.contains(&o.id))
        .copied()
        .collect();
    let mut stored: HashMap<ObjectId, Vec<StoredObject>> = HashMap::new();
    for o in &linkable {
        stored.entry(o.id).or_default().push(*o);
    }
    let mut inodes: HashMap<ObjectId, Vec<(StoredObject, u64)>> = HashMap::new();
    for (o, ino) in linkable.iter().zip(target.object_inodes(&linkable)) {
        if let Ok(Some(ino)) = ino {
            inodes.entry(o.id).or_default().push((*o, ino));
        }
    }
    Ok(Objects {
        checked: objects.len() as u64,
        bytes,
        corrupt,
        bad_copies,
        missing,
        stored,
        inodes,
    })
}

/// What the tree checks learned, release by release.
#[derive(Default)]
struct Trees {
    /// Paths using each corrupt or missing object.
    used_by: HashMap<ObjectId, ObjectUsers>,
    problems: Vec<Problem>,
    /// See [`Findings::broken`].
    broken: HashMap<ReleaseName, HashSet<Vec<u8>>>,
    releases_checked: Vec<String>,
}

impl Trees {
    /// Compares the tree of release `name` with its manifest `m`.
    fn check(
        &mut self,
        target: &dyn Target,
        name: &ReleaseName,
        m: &Manifest,
        objects: &mut Objects,
        corrupt_ids: &HashSet<ObjectId>,
    ) -> EngineResult<()> {
        let tree: HashMap<Vec<u8>, TreeEntry> = target
            .list_release_tree(name)?
            .into_iter()
            .map(|t| (t.path.clone(), t))
            .collect();
        let mut release_broken = HashSet::new();
        for e in &m.entries {
            if let Some(id) = e.object() {
                if corrupt_ids.contains(&id) || objects.missing.contains(&id) {
                    self.used_by
                        .entry(id)
                        .or_default()
                        .add(name.as_str(), escape(&e.path));
                }
            }
            let found = check_entry(e, tree.get(&e.path), objects);
            if !found.is_empty() {
                release_broken.insert(e.path.clone());
            }
            for (kind, detail) in found {
                self.problems.push(Problem::new(
                    Some(name.as_str()),
                    escape(&e.path),
                    kind,
                    detail,
                ));
            }
        }
        self.problems.extend(extra_paths(name, &m.entries, &tree));
        if !release_broken.is_empty() {
            self.broken.insert(name.clone(), release_broken);
        }
        self.releases_checked.push(name.to_string());
        Ok(())
    }
}

/// A problem of one path: its kind and what was found.
type Found = Vec<(ProblemKind, String)>;

/// Problems of one manifest entry against what is on disk at its path.
fn check_entry(e: &Entry, on_disk: Option<&TreeEntry>, objects: &mut Objects) -> Found {
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
            check_file(e, *size, *mode, t, objects, &mut found);
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

/// Problems of a regular file: size, link to its object, mode. A path linked to an
/// object copy whose mode was changed marks that copy for replacement; where the
/// target cannot tell which copy a path is linked to (no inode numbers over SFTP),
/// every stored copy of its object is marked (the mode was most likely changed through
/// a link, i.e. on the object itself).
fn check_file(
    e: &Entry,
    size: u64,
    mode: u32,
    t: &TreeEntry,
    objects: &mut Objects,
    found: &mut Found,
) {
    if t.size != size {
        found.push((
            ProblemKind::WrongSize,
            format!("{} bytes, expected {size}", t.size),
        ));
    }
    let linked = linked_copy(e, t, objects, found);
    let want = relstore_core::hash::stored_mode(mode);
    if t.mode & 0o7555 == want {
        return;
    }
    let mut detail = format!("mode {:04o}, expected {want:04o}", t.mode & 0o7777);
    if let Some(o) = linked {
        detail.push_str(&format!(
            " (the mode of its object {}, which every path linked to it shares)",
            o.rel_path()
        ));
        objects.bad_copies.insert((o.id, o.copy), o);
    } else if let (None, Some(id)) = (t.ino, e.object()) {
        for o in objects.stored.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
            objects.bad_copies.insert((o.id, o.copy), *o);
        }
    }
    found.push((ProblemKind::WrongMode, detail));
}

/// The stored copy of its object a file is a hardlink to, where that can be told; a
/// file that is certainly not linked to any copy is a `not-linked` problem.
fn linked_copy(
    e: &Entry,
    t: &TreeEntry,
    objects: &Objects,
    found: &mut Found,
) -> Option<StoredObject> {
    match (e.object(), t.ino) {
        (Some(id), Some(ino)) => {
            let copies = objects.inodes.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            // No stored copy at all: the missing object is the problem.
            if copies.is_empty() {
                return None;
            }
            let linked = copies.iter().find(|(_, i)| *i == ino).map(|(o, _)| *o);
            if linked.is_none() {
                found.push((
                    ProblemKind::NotLinked,
                    format!(
                        "not a hardlink to its object {} (a separate file in its place)",
                        id.rel_path()
                    ),
                ));
            }
            linked
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
    }
}

/// How a kind of file on disk is named in details.
fn tree_kind_name(k: TreeKind) -> &'static str {
    match k {
        TreeKind::Dir => "dir",
        TreeKind::File => "file",
        TreeKind::Symlink => "symlink",
        TreeKind::Other => "special file",
    }
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
