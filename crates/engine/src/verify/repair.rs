//! `verify --repair`: puts right what a check found, from what it found (nothing is
//! checked again here; the caller checks once more afterwards).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use relstore_core::progress::{Phase, Progress};
use relstore_core::target::{BlobSource, StoredObject, Upload};
use relstore_core::{Entry, ObjectId, Target};
use relstore_release_store::ReleaseStore;

use super::check::{file_objects, Findings};
use super::manifests::Manifests;
use super::report::{plural, Problem, ProblemKind};
use crate::catalog::Catalog;
use crate::delta_bases::{BasesBuilder, StoreBases};
use crate::error::EngineResult;
use crate::sources::Sources;

/// Objects that cannot be repaired, with why.
type Unrepairable = BTreeMap<ObjectId, String>;

/// Repairs what `found` describes; returns the objects that could not be repaired.
pub(super) fn repair(
    target: &dyn Target,
    catalog: &Catalog,
    found: &Findings,
    manifests: &mut Manifests,
    sources: &Sources<'_>,
    store: Option<&ReleaseStore>,
    progress: &dyn Progress,
) -> EngineResult<Vec<Problem>> {
    // 1. Objects whose first copy must be uploaded again.
    let (uploads, unrepairable) = plan_uploads(target, catalog, found, manifests, sources);
    if !uploads.is_empty() {
        let bases = delta_bases(target, catalog, found, manifests, &uploads, store);
        progress.start(Phase::Upload, uploads.iter().map(|u| u.size).sum());
        target.put_objects_with_bases(&uploads, sources, &bases, progress)?;
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
    replaced.extend(remove_bad_copies(target, found, &unrepairable, progress)?);
    // 3. Re-create broken paths, and every path of a present release that uses a
    // replaced object (it still holds the old inode).
    relink(
        target,
        catalog,
        found,
        manifests,
        &replaced,
        &unrepairable,
        progress,
    )?;
    Ok(unrepairable_problems(found, unrepairable))
}

/// Which objects to upload again (their first copy is missing, corrupt or mis-moded),
/// and which of those cannot be, with why.
fn plan_uploads(
    target: &dyn Target,
    catalog: &Catalog,
    found: &Findings,
    manifests: &mut Manifests,
    sources: &Sources<'_>,
) -> (Vec<Upload>, Unrepairable) {
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
            if let Some(m) = manifests.load_usable(target, &r.name) {
                for (id, size) in file_objects(m) {
                    sizes.entry(id).or_insert(size);
                }
            }
        }
    }
    let mut uploads = Vec::new();
    let mut unrepairable = Unrepairable::new();
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
                unrepairable.insert(*id, no_source(sources));
            }
        }
    }
    (uploads, unrepairable)
}

/// Patch bases for the re-uploads, read from the local release store: what the same
/// path holds in a neighbouring present release. Only manifests this command already
/// loaded are paired (and the current one), so a repair downloads nothing more for it.
fn delta_bases<'a>(
    target: &dyn Target,
    catalog: &Catalog,
    found: &Findings,
    manifests: &mut Manifests,
    uploads: &[Upload],
    store: Option<&'a ReleaseStore>,
) -> StoreBases<'a> {
    if store.is_none() {
        return StoreBases::none();
    }
    if let Some(current) = &catalog.current {
        let _ = manifests.load_usable(target, current);
    }
    let loaded: Vec<&relstore_core::Manifest> = catalog
        .releases
        .iter()
        .filter(|r| r.present)
        .filter_map(|r| manifests.get(&r.name))
        .collect();
    let mut builder = BasesBuilder::new(uploads);
    builder.avoid(found.missing.iter().copied());
    builder.avoid(found.corrupt_ids.iter().copied());
    builder.avoid(found.bad_copies.keys().map(|(id, _)| *id));
    for pair in loaded.windows(2) {
        builder.add_pair(&pair[1].entries, &pair[0].entries);
        builder.add_pair(&pair[0].entries, &pair[1].entries);
        if builder.complete() {
            break;
        }
    }
    builder.finish(store)
}

/// Why an object's content could not be found.
fn no_source(sources: &Sources<'_>) -> String {
    if sources.is_empty() {
        "no source to take its content from (no local release store holds it; give --source DIR)"
            .to_owned()
    } else {
        format!(
            "its content is in no source ({})",
            sources.labels().join(", ")
        )
    }
}

/// Deletes corrupt or mis-moded numbered copies of objects whose first copy is sound
/// (copies are only ever made from it); returns the objects whose copies went.
fn remove_bad_copies(
    target: &dyn Target,
    found: &Findings,
    unrepairable: &Unrepairable,
    progress: &dyn Progress,
) -> EngineResult<Vec<ObjectId>> {
    let copies: Vec<StoredObject> = found
        .bad_copies
        .values()
        .filter(|o| o.copy > 0 && !unrepairable.contains_key(&o.id))
        .copied()
        .collect();
    if copies.is_empty() {
        return Ok(Vec::new());
    }
    let removal = target.remove_objects(&copies, progress)?;
    for left in &removal.left_behind {
        progress.note(&format!("could not delete {left}"));
    }
    Ok(copies.iter().map(|o| o.id).collect())
}

/// Re-creates, in every present release, the broken paths and the paths that use a
/// replaced object; paths of objects that could not be repaired are left as they are.
fn relink(
    target: &dyn Target,
    catalog: &Catalog,
    found: &Findings,
    manifests: &mut Manifests,
    replaced: &HashSet<ObjectId>,
    unrepairable: &Unrepairable,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let empty = HashSet::new();
    for r in catalog.releases.iter().filter(|r| r.present) {
        let broken = found.broken.get(&r.name).unwrap_or(&empty);
        if broken.is_empty() && replaced.is_empty() {
            continue;
        }
        let Some(m) = manifests.load_usable(target, &r.name) else {
            continue; // reported as corrupt-manifest when in scope
        };
        let entries: Vec<Entry> = m
            .entries
            .iter()
            .filter(|e| {
                let object = e.object();
                if object.is_some_and(|id| unrepairable.contains_key(&id)) {
                    return false;
                }
                broken.contains(&e.path) || object.is_some_and(|id| replaced.contains(&id))
            })
            .cloned()
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
    Ok(())
}

/// What could not be repaired, as problems naming the paths left as they are.
fn unrepairable_problems(found: &Findings, unrepairable: Unrepairable) -> Vec<Problem> {
    let problems_by_object: HashMap<&str, &Problem> = found
        .problems
        .iter()
        .filter(|p| p.kind.is_object())
        .map(|p| (p.path.as_str(), p))
        .collect();
    unrepairable
        .into_iter()
        .map(|(id, why)| {
            let path = id.rel_path();
            let kind = if found.missing.contains(&id) {
                ProblemKind::MissingObject
            } else if found.corrupt_ids.contains(&id) {
                ProblemKind::CorruptObject
            } else {
                ProblemKind::WrongMode
            };
            let users = problems_by_object
                .get(path.as_str())
                .and_then(|p| p.users.clone());
            let mut p = Problem::new(
                None,
                path,
                kind,
                format!("not repaired: {why}; the paths using it were left as they are"),
            );
            if kind.is_object() {
                p.users = Some(users.unwrap_or_default());
            }
            p
        })
        .collect()
}
