//! What a store holds: its releases (present or evicted), which one is current, and the
//! debris of interrupted commands; plus recovery, which every mutating command runs
//! right after taking the lock.

use std::collections::BTreeSet;

use relstore_core::layout;
use relstore_core::manifest::{decode_header, Header};
use relstore_core::progress::Progress;
use relstore_core::release::format_utc;
use relstore_core::{Manifest, ReleaseName, Target, TargetError};
use serde::{Serialize, Serializer};

use crate::error::{EngineError, EngineResult};

/// One release of a store.
#[derive(Clone, Debug)]
pub struct ReleaseInfo {
    pub name: ReleaseName,
    /// Header of its manifest (`None` when the header could not be read; see `problem`).
    pub header: Option<Header>,
    /// Its directory is under `releases/` (otherwise it was evicted: manifest only).
    pub present: bool,
    /// `current` points at it.
    pub current: bool,
    /// Pinned: never evicted by prune.
    pub pinned: bool,
    /// Staged: `next` points at it and it is not current (assembled, waiting for
    /// `relstore activate`). Never evicted, never a keep slot, never the default
    /// rollback.
    pub staged: bool,
    /// Why the manifest header could not be read, if it could not.
    pub problem: Option<String>,
}

impl ReleaseInfo {
    /// Creation time used for ordering (unreadable headers sort first).
    pub fn created(&self) -> i64 {
        self.header.as_ref().map_or(i64::MIN, |h| h.created_unix_ns)
    }
}

/// The releases of a store in creation order, oldest first; what `relstore releases`
/// shows (the field names are the `--json` keys).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Catalog {
    #[serde(serialize_with = "optional_name")]
    pub current: Option<ReleaseName>,
    /// The release `next` points at, if any.
    #[serde(serialize_with = "optional_name")]
    pub next: Option<ReleaseName>,
    pub releases: Vec<ReleaseInfo>,
    /// Directories under `releases/` with no manifest: left by a push that died before
    /// its swap. Never releases; removed by the next mutating command.
    pub incomplete: Vec<String>,
}

/// A release as `relstore releases --json` lists it.
#[derive(Serialize)]
struct ReleaseRow<'a> {
    name: &'a str,
    /// Creation time, RFC 3339 UTC.
    created: Option<String>,
    created_unix_ns: Option<i64>,
    files: Option<u64>,
    bytes: Option<u64>,
    current: bool,
    pinned: bool,
    staged: bool,
    /// `present` or `evicted`.
    state: &'static str,
    problem: Option<&'a str>,
}

impl Serialize for ReleaseInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.header.as_ref();
        ReleaseRow {
            name: self.name.as_str(),
            created: h.map(|h| format_utc(h.created_unix_ns)),
            created_unix_ns: h.map(|h| h.created_unix_ns),
            files: h.map(|h| h.totals.files),
            bytes: h.map(|h| h.totals.bytes),
            current: self.current,
            pinned: self.pinned,
            staged: self.staged,
            state: if self.present { "present" } else { "evicted" },
            problem: self.problem.as_deref(),
        }
        .serialize(s)
    }
}

/// A release name as a string (or null).
fn optional_name<S: Serializer>(name: &Option<ReleaseName>, s: S) -> Result<S::Ok, S::Error> {
    name.as_ref().map(ReleaseName::as_str).serialize(s)
}

impl Catalog {
    /// Reads the catalog of `target` (an opened store). Reads manifest headers only.
    pub fn load(target: &dyn Target) -> EngineResult<Catalog> {
        let current = target.current()?;
        let next = target.next()?;
        let pins: BTreeSet<String> = target.list_pins()?.into_iter().collect();
        let dirs: BTreeSet<String> = target.list_release_dirs()?.into_iter().collect();
        let mut names: Vec<ReleaseName> = target
            .list_manifests()?
            .iter()
            .filter_map(|n| ReleaseName::parse(n).ok())
            .collect();
        let staged_current = match &current {
            Some(c) if !names.contains(c) => Some(c.clone()),
            _ => None,
        };
        let prefixes = target.read_manifest_prefixes(&names);
        let mut releases: Vec<ReleaseInfo> = names
            .iter()
            .zip(prefixes)
            .map(|(name, prefix)| {
                let decoded = prefix.map_err(|e| e.to_string()).and_then(|b| {
                    decode_header(&b, Some(name.as_str())).map_err(|e| {
                        let rebuild = if dirs.contains(name.as_str()) {
                            "; `relstore verify TARGET --repair` rebuilds it"
                        } else {
                            ""
                        };
                        format!(
                            "corrupt manifest {}: {e}{rebuild}",
                            layout::manifest_file(name)
                        )
                    })
                });
                let (header, problem) = match decoded {
                    Ok(h) => (Some(h), name.is_reserved().then(|| reserved_problem(name))),
                    Err(p) => (None, Some(p)),
                };
                ReleaseInfo {
                    present: dirs.contains(name.as_str()),
                    current: current.as_ref() == Some(name),
                    pinned: pins.contains(name.as_str()),
                    staged: next.as_ref() == Some(name) && current.as_ref() != Some(name),
                    name: name.clone(),
                    header,
                    problem,
                }
            })
            .collect();
        if let Some(name) = staged_current {
            // A push died between its swap and moving its manifest into place: the
            // release is current, so it is one; its manifest is still staged.
            let header = target
                .read_staged_manifest(&name)?
                .and_then(|b| decode_header(&b, Some(name.as_str())).ok());
            releases.push(ReleaseInfo {
                present: dirs.contains(name.as_str()),
                current: true,
                pinned: pins.contains(name.as_str()),
                staged: false,
                problem: header
                    .is_none()
                    .then(|| format!("manifest of current release {name} is missing")),
                name: name.clone(),
                header,
            });
            names.push(name);
        }
        releases.sort_by(|a, b| a.created().cmp(&b.created()).then(a.name.cmp(&b.name)));
        let incomplete = dirs
            .into_iter()
            .filter(|d| !names.iter().any(|n| n.as_str() == d))
            .collect();
        Ok(Catalog {
            current,
            next,
            releases,
            incomplete,
        })
    }

    /// The entry for `name`, if it is a release.
    pub fn get(&self, name: &str) -> Option<&ReleaseInfo> {
        self.releases.iter().find(|r| r.name.as_str() == name)
    }

    /// The release a command names: `current` is the current release (a release of an
    /// old store that is itself named `current` can no longer be named), any other name
    /// the release of that name.
    pub fn resolve(&self, name: &str) -> Option<&ReleaseInfo> {
        if name == layout::CURRENT {
            return self.releases.iter().find(|r| r.current);
        }
        self.get(name)
    }

    /// Stops a command that would act on releases in order or drop their trees while a
    /// present release's manifest header cannot be read: its tree is the only thing
    /// left to rebuild the manifest from (`verify --repair` does), and without a
    /// header the release cannot even be placed in order.
    pub fn require_readable_headers(&self, target: &dyn Target) -> EngineResult<()> {
        for r in self
            .releases
            .iter()
            .filter(|r| r.present && r.header.is_none())
        {
            read_manifest(target, &r.name)?;
        }
        Ok(())
    }

    /// True when `name` is taken, by a release or by anything under `releases/`.
    pub fn name_taken(&self, name: &str) -> bool {
        self.get(name).is_some() || self.incomplete.iter().any(|d| d == name)
    }
}

/// Reads and validates the full manifest of `name`, falling back to the staged copy of
/// a current release whose push died right after its swap.
pub fn read_manifest(target: &dyn Target, name: &ReleaseName) -> EngineResult<Manifest> {
    let bytes = read_manifest_bytes(target, name)?;
    Manifest::decode(&bytes, Some(name.as_str()))
        .map_err(|source| manifest_error(target, name, source))
}

/// The encoded manifest of `name`, recorded or (after a push that died right after its
/// swap) staged; for callers that decode it their own way.
pub fn read_manifest_bytes(target: &dyn Target, name: &ReleaseName) -> EngineResult<Vec<u8>> {
    match target.read_manifest(name) {
        Ok(b) => Ok(b),
        Err(e) => match target.read_staged_manifest(name)? {
            Some(b) => Ok(b),
            None => Err(e.into()),
        },
    }
}

/// A manifest of `name` that does not decode, as an error naming its file; when the
/// release's directory is still there, the error says how to rebuild the manifest.
pub fn manifest_error(
    target: &dyn Target,
    name: &ReleaseName,
    source: relstore_core::manifest::ManifestError,
) -> EngineError {
    let path = format!("{}/{}", target.location(), layout::manifest_file(name));
    let present = target
        .list_release_dirs()
        .is_ok_and(|dirs| dirs.iter().any(|d| d == name.as_str()));
    if present {
        return EngineError::ManifestNeedsRebuild {
            path,
            location: target.location().to_owned(),
            source,
        };
    }
    EngineError::Target(TargetError::Manifest { path, source })
}

/// What `releases` says of a release of an old store named `current`.
fn reserved_problem(name: &ReleaseName) -> String {
    format!(
        "release name {name} is reserved for the current release: it can no longer be named in commands"
    )
}

/// Brings a store back to a clean state after an interrupted command; runs under the
/// lock. Rolls forward a push that died between its swap and recording its manifest,
/// empties `tmp/`, and removes release directories that never became releases (only
/// with evidence that they did not; see [`crate::leftover`]). Returns the store's
/// catalog as it is afterwards.
pub fn recover(target: &dyn Target, progress: &dyn Progress) -> EngineResult<Catalog> {
    if let Some(current) = target.current()? {
        let recorded = target.list_manifests()?;
        if !recorded.iter().any(|n| n == current.as_str()) {
            if target.read_staged_manifest(&current)?.is_some() {
                target.commit_manifest(&current)?;
                progress.note(&format!(
                    "completed the interrupted push of {current}: recorded its manifest"
                ));
            } else {
                return Err(EngineError::CurrentWithoutManifest {
                    location: target.location().to_owned(),
                    release: current.to_string(),
                });
            }
        }
    }
    // Before tmp/ is emptied: staged manifests are evidence.
    let evidence = crate::leftover::Evidence::gather(target)?;
    let cleared = target.clear_tmp()?;
    for left in &cleared.left_behind {
        progress.note(&format!("could not remove from tmp/: {left}"));
    }
    let mut catalog = Catalog::load(target)?;
    let debris = std::mem::take(&mut catalog.incomplete);
    for dir in &debris {
        if let crate::leftover::Verdict::Keep(why) = evidence.judge(dir) {
            if catalog.current.as_ref().is_none_or(|c| c.as_str() != dir) {
                progress.note(&format!(
                    "kept releases/{dir}, which has no manifest: {why} (restore its \
                     manifest, or delete the directory by hand if it is not needed)"
                ));
            }
            catalog.incomplete.push(dir.clone());
            continue;
        }
        let removal = target.remove_release_dir(dir)?;
        progress.note(&format!(
            "removed releases/{dir}, left by a push that was interrupted before its swap"
        ));
        for left in removal.left_behind {
            progress.note(&format!("could not remove: {left}"));
        }
    }
    Ok(catalog)
}
