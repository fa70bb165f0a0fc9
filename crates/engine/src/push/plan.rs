//! The part of a push that decides what to do, shared by the real run and `--dry-run`
//! so that a plan is exactly what the run then does: the unchanged check, the release
//! name, and which objects the target lacks.

use std::collections::{HashMap, HashSet};

use relstore_core::manifest::{Header, Totals};
use relstore_core::progress::{Phase, Progress};
use relstore_core::target::Upload;
use relstore_core::{Entry, EntryKind, Manifest, ObjectId, ReleaseName, Target, TargetError};

use crate::catalog::{manifest_error, read_manifest_bytes, Catalog};
use crate::error::EngineResult;

/// Which of these objects the target lacks (the target's `missing_objects`, or "all of
/// them" for a target that does not exist yet).
pub(crate) type MissingLookup<'a> = dyn Fn(&[ObjectId]) -> Result<Vec<ObjectId>, TargetError> + 'a;

/// The name and creation time a push asks for.
#[derive(Clone, Debug)]
pub(crate) struct Wanted {
    /// `--release`; `None`: a timestamp name.
    pub name: Option<ReleaseName>,
    /// Creation time of the release, nanoseconds since the Unix epoch.
    pub created: i64,
}

/// What a push will do, decided before anything on the target changes.
#[derive(Clone, Debug)]
pub struct PushPlan {
    /// The release the push creates, or the current one when the tree equals it.
    pub release: String,
    /// The release current before the push.
    pub previous: Option<String>,
    /// Counts of the tree pushed.
    pub totals: Totals,
    /// Distinct objects the tree uses.
    pub objects_total: u64,
    /// The release to create; `None` when the tree equals the current release.
    pub new: Option<NewRelease>,
}

/// A release a push creates: its manifest (the entries) and what to upload for it.
#[derive(Clone, Debug)]
pub struct NewRelease {
    pub name: ReleaseName,
    pub manifest: Manifest,
    /// Objects the target lacks, with their sizes.
    pub uploads: Vec<Upload>,
    /// Objects the current release does not have (all of them without one); the
    /// local release store looks only at these.
    pub new_objects: Vec<ObjectId>,
}

impl PushPlan {
    /// Objects to upload.
    pub fn objects_uploaded(&self) -> u64 {
        self.new.as_ref().map_or(0, |n| n.uploads.len() as u64)
    }

    /// Bytes to upload.
    pub fn bytes_uploaded(&self) -> u64 {
        self.new
            .as_ref()
            .map_or(0, |n| n.uploads.iter().map(|u| u.size).sum())
    }

    /// Objects the target already holds.
    pub fn objects_reused(&self) -> u64 {
        self.objects_total - self.objects_uploaded()
    }

    /// Files assembly will link to an object.
    pub fn links(&self) -> u64 {
        self.new.as_ref().map_or(0, |n| {
            n.manifest
                .entries
                .iter()
                .filter(|e| e.object().is_some())
                .count() as u64
        })
    }
}

/// The current release as a push sees it.
pub(crate) enum Current {
    /// No release is current.
    None,
    /// The source equals it (checked while streaming its manifest: see
    /// [`Manifest::equals_entries`]); only its header is kept.
    Unchanged(Header),
    /// The source differs (or `--force`); its manifest tells which objects are known.
    Changed(Manifest),
}

/// Reads the current release's manifest and compares it with the scanned `entries`
/// (unless `force`), decoding it fully only when they differ.
pub(crate) fn load_current(
    target: &dyn Target,
    catalog: &Catalog,
    entries: &[Entry],
    force: bool,
) -> EngineResult<Current> {
    let Some(name) = &catalog.current else {
        return Ok(Current::None);
    };
    let bytes = read_manifest_bytes(target, name)?;
    if !force {
        let (same, header) = Manifest::equals_entries(&bytes, Some(name.as_str()), entries)
            .map_err(|e| manifest_error(target, name, e))?;
        if same {
            return Ok(Current::Unchanged(header));
        }
    }
    Manifest::decode(&bytes, Some(name.as_str()))
        .map(Current::Changed)
        .map_err(|e| manifest_error(target, name, e))
}

/// Plans the push of `entries` onto the store `catalog` describes (at `location`):
/// nothing to do when the tree equals the current release, else a new release and the
/// objects `missing_objects` says the target lacks.
pub(crate) fn plan_release(
    location: &str,
    missing_objects: &MissingLookup<'_>,
    catalog: &Catalog,
    current: &Current,
    entries: Vec<Entry>,
    wanted: Wanted,
    progress: &dyn Progress,
) -> EngineResult<PushPlan> {
    let previous = catalog.current.as_ref().map(ToString::to_string);
    // Checked before the name: re-running a push that died after its swap finds its
    // work done, whatever name it asks for.
    let current = match current {
        Current::Unchanged(header) => {
            return Ok(PushPlan {
                release: header.release.clone(),
                previous,
                totals: header.totals.clone(),
                objects_total: count_distinct_objects(&entries),
                new: None,
            })
        }
        Current::Changed(m) => Some(m),
        Current::None => None,
    };
    let name = match wanted.name {
        Some(n) if catalog.name_taken(n.as_str()) => {
            return Err(TargetError::ReleaseExists {
                name: n.to_string(),
                location: location.to_owned(),
            }
            .into())
        }
        Some(n) => n,
        None => unused_timestamp_name(catalog, wanted.created),
    };
    let manifest = Manifest::new(&name, wanted.created, entries);
    let objects = manifest.objects();
    progress.start(Phase::Compare, objects.len() as u64);
    let known: HashSet<_> = current.iter().flat_map(|m| m.objects()).collect();
    let unknown: Vec<_> = objects
        .iter()
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    let missing = missing_objects(&unknown)?;
    drop(known);
    progress.advance(objects.len() as u64);
    progress.finish();
    Ok(PushPlan {
        release: name.to_string(),
        previous,
        totals: manifest.header.totals.clone(),
        objects_total: objects.len() as u64,
        new: Some(NewRelease {
            uploads: uploads_for(&manifest, &missing),
            name,
            manifest,
            new_objects: unknown,
        }),
    })
}

/// How many distinct objects `entries` link. A sorted vector, not a hash set: for a
/// million files that is 36 MB instead of about 90, at the moment a no-change push
/// holds its tree.
fn count_distinct_objects(entries: &[Entry]) -> u64 {
    let mut ids: Vec<ObjectId> = entries.iter().filter_map(|e| e.object()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len() as u64
}

/// The uploads of the `missing` objects of `manifest`, each with its size.
pub(crate) fn uploads_for(manifest: &Manifest, missing: &[ObjectId]) -> Vec<Upload> {
    let sizes = object_sizes(manifest);
    missing
        .iter()
        .map(|id| Upload {
            id: *id,
            size: sizes.get(id).copied().unwrap_or(0),
        })
        .collect()
}

/// The size of each object a manifest uses (what an upload of it costs).
fn object_sizes(m: &Manifest) -> HashMap<ObjectId, u64> {
    m.entries
        .iter()
        .filter_map(|e| match (e.object(), &e.kind) {
            (Some(id), EntryKind::File { size, .. }) => Some((id, *size)),
            _ => None,
        })
        .collect()
}

/// A timestamp name, with `-2`, `-3`… when pushes share a second.
fn unused_timestamp_name(catalog: &Catalog, created: i64) -> ReleaseName {
    let base = ReleaseName::timestamp(created);
    if !catalog.name_taken(base.as_str()) {
        return base;
    }
    (2u32..)
        .filter_map(|n| ReleaseName::parse(&format!("{base}-{n}")).ok())
        .find(|n| !catalog.name_taken(n.as_str()))
        .unwrap_or(base)
}
