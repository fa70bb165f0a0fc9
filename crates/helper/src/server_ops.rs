//! Executing one request on the store: the helper's half of every `Target` method
//! except `put_objects` (see [`crate::server_put`]).
//!
//! Everything a request carries is input: release names are validated, entry lists
//! are validated as a manifest would be before anything is assembled from them, and
//! deltas are rebuilt against the helper's own copy of their base and checked
//! against the sender's digest.

use std::io::Read;

use relstore_core::manifest::Manifest;
use relstore_core::progress::Progress;
use relstore_core::target::{Opened, StoredObject};
use relstore_core::{Entry, ReleaseName, Target, TargetError, TargetResult};

use crate::manifest_delta::{decode_entries, raw_body, repack, unpack};
use crate::patch::{apply_patch, MAX_PATCH_INPUT};
use crate::proto::{Delta, ManifestRef, Request, Response, WireError};
use crate::server::error_response;

/// Runs `request` on `target`; store errors become `Response::Error`.
pub(crate) fn execute(request: Request, target: &dyn Target, progress: &dyn Progress) -> Response {
    match run(request, target, progress) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn name(s: &str) -> TargetResult<ReleaseName> {
    ReleaseName::parse(s).map_err(|e| TargetError::Other(format!("invalid release name: {e}")))
}

fn objects(list: Vec<crate::proto::WireObject>) -> Vec<StoredObject> {
    list.into_iter().map(StoredObject::from).collect()
}

fn run(request: Request, target: &dyn Target, progress: &dyn Progress) -> TargetResult<Response> {
    Ok(match request {
        Request::Open { create } => Response::Opened {
            created: target.open(create)? == Opened::Created,
        },
        Request::CreateLock(w, c) => Response::Flag(target.create_lock(w, &c)?),
        Request::ReadLock(w) => Response::MaybeBytes(target.read_lock(w)?.map(Into::into)),
        Request::RemoveLock(w, c) => Response::Flag(target.remove_lock(w, &c)?),
        Request::Current => Response::MaybeName(target.current()?.map(|n| n.to_string())),
        Request::ListReleaseDirs => Response::Names(target.list_release_dirs()?),
        Request::ListManifests => Response::Names(target.list_manifests()?),
        Request::ListPins => Response::Names(target.list_pins()?),
        Request::SharedKinds(paths) => Response::Kinds(
            target
                .shared_kinds(&paths)?
                .into_iter()
                .map(|k| k.map(crate::proto::tree_kind_code))
                .collect(),
        ),
        Request::SeedShared { path, items } => Response::Flag(target.seed_shared(&path, &items)?),
        Request::SetPin { name: n, pinned } => {
            target.set_pin(&name(&n)?, pinned)?;
            Response::Done
        }
        Request::Activate(n) => {
            target.activate(&name(&n)?)?;
            Response::Done
        }
        Request::RemoveReleaseDir(n) => {
            Response::Removed(target.remove_release_dir(&n)?.left_behind)
        }
        Request::ClearTmp => Response::Removed(target.clear_tmp()?.left_behind),
        Request::RemoveStore => {
            target.remove_store()?;
            Response::Done
        }
        Request::ListReleaseTree(n) => Response::Tree(
            target
                .list_release_tree(&name(&n)?)?
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
        other => return run_manifest_or_objects(other, target, progress),
    })
}

fn run_manifest_or_objects(
    request: Request,
    target: &dyn Target,
    progress: &dyn Progress,
) -> TargetResult<Response> {
    Ok(match request {
        Request::ReadManifest(n) => Response::Bytes(target.read_manifest(&name(&n)?)?),
        Request::ManifestDigest(n) => {
            let bytes = target.read_manifest(&name(&n)?)?;
            Response::Digest(*blake3::hash(&bytes).as_bytes())
        }
        Request::ReadManifestPrefixes(names) => {
            let parsed: Vec<ReleaseName> =
                names.iter().map(|n| name(n)).collect::<Result<_, _>>()?;
            Response::ManyBytes(
                target
                    .read_manifest_prefixes(&parsed)
                    .into_iter()
                    .map(|r| r.map(Into::into).map_err(|e| WireError::from(&e)))
                    .collect(),
            )
        }
        Request::ReadStagedManifest(n) => {
            Response::MaybeBytes(target.read_staged_manifest(&name(&n)?)?.map(Into::into))
        }
        Request::StageManifest { name: n, body } => {
            let n = name(&n)?;
            match manifest_bytes(body, target) {
                Ok(bytes) => {
                    target.stage_manifest(&n, &bytes)?;
                    Response::Done
                }
                Err(why) => Response::NeedFull(why),
            }
        }
        Request::CommitManifest(n) => {
            target.commit_manifest(&name(&n)?)?;
            Response::Done
        }
        Request::MissingObjects(ids) => Response::Ids(target.missing_objects(&ids)?),
        Request::ListObjects => {
            Response::Objects(target.list_objects()?.iter().map(Into::into).collect())
        }
        Request::RemoveObjects(list) => {
            Response::Removed(target.remove_objects(&objects(list), progress)?.left_behind)
        }
        Request::HashObjects(list) => Response::Hashes(
            target
                .hash_objects(&objects(list), progress)
                .into_iter()
                .map(|r| r.map_err(|e| WireError::from(&e)))
                .collect(),
        ),
        Request::ObjectInodes(list) => Response::Inodes(
            target
                .object_inodes(&objects(list))
                .into_iter()
                .map(|r| r.map_err(|e| WireError::from(&e)))
                .collect(),
        ),
        other => return run_release(other, target, progress),
    })
}

fn run_release(
    request: Request,
    target: &dyn Target,
    progress: &dyn Progress,
) -> TargetResult<Response> {
    Ok(match request {
        Request::Assemble { name: n, entries } => {
            let n = name(&n)?;
            let entries = match entry_list(entries, target) {
                Ok(e) => e,
                Err(why) => return Ok(Response::NeedFull(why)),
            };
            let entries = validated_release(&n, entries)?;
            Response::Assembled(target.assemble(&n, &entries, progress)?.into())
        }
        Request::Relink { name: n, entries } => {
            let n = name(&n)?;
            let entries = match entry_list(entries, target) {
                Ok(e) => e,
                Err(why) => return Ok(Response::NeedFull(why)),
            };
            for e in &entries {
                relstore_core::path::validate_rel_path(&e.path).map_err(|problem| {
                    TargetError::Other(format!(
                        "invalid path {} in entries to relink: {problem}",
                        relstore_core::path::escape(&e.path)
                    ))
                })?;
            }
            target.relink(&n, &entries)?;
            Response::Done
        }
        other => {
            return Err(TargetError::Other(format!(
                "the helper cannot execute {other:?} here"
            )))
        }
    })
}

/// Entries for a whole release, checked as a manifest of that release is checked.
fn validated_release(name: &ReleaseName, entries: Vec<Entry>) -> TargetResult<Vec<Entry>> {
    let manifest = Manifest::new(name, 0, entries);
    manifest
        .validate(Some(name.as_str()))
        .map_err(|source| TargetError::Manifest {
            path: format!("entries sent to assemble {name}"),
            source,
        })?;
    Ok(manifest.entries)
}

/// The manifest file a base reference names, if it is still the same file.
fn base_manifest(base: &ManifestRef, target: &dyn Target) -> Result<Vec<u8>, String> {
    let n = name(&base.name).map_err(|e| e.to_string())?;
    let bytes = if base.staged {
        target.read_staged_manifest(&n).map_err(|e| e.to_string())?
    } else {
        Some(target.read_manifest(&n).map_err(|e| e.to_string())?)
    };
    let bytes = bytes.ok_or_else(|| format!("no staged manifest {}", base.name))?;
    if *blake3::hash(&bytes).as_bytes() != base.digest {
        return Err(format!(
            "manifest {} differs from the client's copy",
            base.name
        ));
    }
    Ok(bytes)
}

fn rebuild(base: &[u8], patch: &[u8], len: u64, digest: &[u8; 32]) -> Result<Vec<u8>, String> {
    let out = apply_patch(base, patch, len).map_err(|e| e.to_string())?;
    if blake3::hash(&out).as_bytes() != digest {
        return Err("the rebuilt bytes do not match their digest".into());
    }
    Ok(out)
}

/// The manifest file a `StageManifest` carries; `Err` asks for the full file.
fn manifest_bytes(body: Delta, target: &dyn Target) -> Result<Vec<u8>, String> {
    match body {
        Delta::Full(bytes) => Ok(bytes),
        Delta::Patch {
            base,
            patch,
            len,
            digest,
        } => {
            let base_bytes = base_manifest(&base, target)?;
            let base_unpacked = unpack(&base_bytes).ok_or("base manifest cannot be unpacked")?;
            let out = apply_patch(&base_unpacked, &patch, len).map_err(|e| e.to_string())?;
            let packed = repack(&out).ok_or("patched manifest cannot be packed")?;
            if *blake3::hash(&packed).as_bytes() != digest {
                return Err("the patched manifest does not match its digest".into());
            }
            Ok(packed)
        }
    }
}

/// The entries an `Assemble` or `Relink` carries; `Err` asks for the full list.
fn entry_list(entries: Delta, target: &dyn Target) -> Result<Vec<Entry>, String> {
    let raw = match entries {
        Delta::Full(compressed) => {
            let mut raw = Vec::new();
            zstd::stream::read::Decoder::new(&compressed[..])
                .map_err(|e| e.to_string())?
                .take(relstore_core::manifest::MAX_BODY_LEN + 1)
                .read_to_end(&mut raw)
                .map_err(|e| format!("entries do not decompress: {e}"))?;
            raw
        }
        Delta::Patch {
            base,
            patch,
            len,
            digest,
        } => {
            if len > MAX_PATCH_INPUT {
                return Err("entry list too large for a patch".into());
            }
            let base_bytes = base_manifest(&base, target)?;
            let base_raw = raw_body(&base_bytes).ok_or("base manifest cannot be unpacked")?;
            rebuild(&base_raw, &patch, len, &digest)?
        }
    };
    decode_entries(&raw)
}
