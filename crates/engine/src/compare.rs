//! `relstore diff`: resolve each side (a release on a target, a directory, or a manifest
//! file) to manifest entries, then compare them with [`relstore_core::diff::diff`].
//!
//! A directory is scanned exactly as `push` would scan it — its `.relstoreignore` and
//! the `--exclude` patterns apply — so `diff ./public site@current` shows what a push
//! would change, not the paths a push leaves out anyway. Shared paths that either
//! side's release links (see `relstore_core::shared`) are left out of both sides.
//!
//! A directory that is a release of a local store (`ROOT/releases/NAME`, or
//! `ROOT/current/` which resolves to one) holds files linked from objects, which carry
//! the source's permission bits without the write bits. Comparing it with a release
//! or a source tree would list every file as a mode change (0444 against 0644), so
//! when one side is such a directory file modes are compared without write bits, and
//! a note says so.

use std::path::{Path, PathBuf};

use relstore_core::diff::{diff, Diff};
use relstore_core::hash::stored_mode;
use relstore_core::layout;
use relstore_core::progress::Progress;
use relstore_core::shared::{linked_paths, without};
use relstore_core::{Entry, Manifest, ReleaseName, TargetError};

use crate::catalog::read_manifest;
use crate::error::{EngineError, EngineResult};
use crate::opener::OpenTarget;
use crate::push::scan_source_excluding;

/// One side of a diff, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `TARGET@RELEASE` (`RELEASE` may be `current`).
    Release { target: String, release: String },
    /// A directory, scanned like a push source.
    Dir(PathBuf),
    /// A manifest file on the local disk.
    ManifestFile(PathBuf),
}

impl Operand {
    /// Reads `spec`: an existing directory or file wins; otherwise the text after the
    /// last `@` names a release.
    pub fn parse(spec: &str) -> EngineResult<Operand> {
        let p = Path::new(spec);
        if let Ok(meta) = std::fs::metadata(p) {
            return Ok(if meta.is_dir() {
                Operand::Dir(p.to_path_buf())
            } else {
                Operand::ManifestFile(p.to_path_buf())
            });
        }
        match spec.rsplit_once('@') {
            Some((target, release)) if !target.is_empty() && !release.is_empty() => {
                Ok(Operand::Release {
                    target: target.to_owned(),
                    release: release.to_owned(),
                })
            }
            _ => Err(EngineError::BadOperand {
                spec: spec.to_owned(),
            }),
        }
    }
}

/// Loads the entries an operand describes; `exclude` (`--exclude` patterns) applies to
/// directories only, after their `.relstoreignore`.
pub fn load_operand(
    op: &Operand,
    cache_dir: Option<&Path>,
    exclude: &[String],
    targets: &dyn OpenTarget,
    progress: &dyn Progress,
) -> EngineResult<Vec<Entry>> {
    match op {
        Operand::Dir(dir) => {
            Ok(scan_source_excluding(dir, false, Some(exclude), cache_dir, progress)?.entries)
        }
        Operand::ManifestFile(path) => {
            let bytes = std::fs::read(path).map_err(|e| TargetError::Io {
                op: "read",
                path: path.display().to_string(),
                source: e,
            })?;
            Manifest::decode(&bytes, None)
                .map(|m| m.entries)
                .map_err(|source| {
                    TargetError::Manifest {
                        path: path.display().to_string(),
                        source,
                    }
                    .into()
                })
        }
        Operand::Release { target, release } => {
            let t = targets.open_target(target)?;
            t.open(false)?;
            let name = if release == "current" {
                t.current()?.ok_or_else(|| EngineError::NoCurrentRelease {
                    location: target.clone(),
                })?
            } else {
                ReleaseName::parse(release)?
            };
            let names = t.list_manifests()?;
            if !names.iter().any(|n| n == name.as_str()) && t.current()?.as_ref() != Some(&name) {
                return Err(EngineError::NoSuchRelease {
                    name: name.to_string(),
                    location: t.location().to_owned(),
                });
            }
            Ok(read_manifest(t.as_ref(), &name)?.entries)
        }
    }
}

/// Compares two operands (`exclude`: see [`load_operand`]; `targets`: opens the
/// targets of `TARGET@RELEASE` operands).
pub fn diff_operands(
    a: &Operand,
    b: &Operand,
    cache_dir: Option<&Path>,
    exclude: &[String],
    targets: &dyn OpenTarget,
    progress: &dyn Progress,
) -> EngineResult<Diff> {
    let mut old = load_operand(a, cache_dir, exclude, targets, progress)?;
    let mut new = load_operand(b, cache_dir, exclude, targets, progress)?;
    let deployed = [a, b].into_iter().find_map(|op| match op {
        Operand::Dir(dir) if is_release_dir(dir) => Some(dir),
        _ => None,
    });
    if let Some(dir) = deployed {
        progress.note(&format!(
            "{} is a release of a store, whose files have no write bits (objects are \
             read-only): file modes are compared without write bits",
            dir.display()
        ));
        clear_write_bits(&mut old);
        clear_write_bits(&mut new);
    }
    // Shared paths are the application's data, not the release's: what either side
    // links (and the other side has there) is left out of the comparison.
    let mut shared = linked_paths(&old);
    shared.extend(linked_paths(&new));
    Ok(diff(&without(old, &shared), &without(new, &shared)))
}

/// Whether `dir` resolves to `ROOT/releases/NAME` of a local store (`ROOT` holding
/// `relstore.toml`), as `ROOT/current/` does.
pub fn is_release_dir(dir: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(dir) else {
        return false;
    };
    let Some(releases) = real.parent() else {
        return false;
    };
    releases.file_name() == Some(std::ffi::OsStr::new(layout::RELEASES))
        && releases
            .parent()
            .is_some_and(|root| root.join(layout::CONFIG).is_file())
}

/// Gives every file the mode its object has on a target (write bits cleared).
fn clear_write_bits(entries: &mut [Entry]) {
    for e in entries {
        if let relstore_core::EntryKind::File { mode, .. } = &mut e.kind {
            *mode = stored_mode(*mode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_operands_split_at_the_last_at() {
        assert_eq!(
            Operand::parse("/no/such/site@r1").ok(),
            Some(Operand::Release {
                target: "/no/such/site".into(),
                release: "r1".into()
            })
        );
        assert_eq!(
            Operand::parse("deploy@web1:/srv@current").ok(),
            Some(Operand::Release {
                target: "deploy@web1:/srv".into(),
                release: "current".into()
            })
        );
        assert!(Operand::parse("/no/such/dir").is_err());
        assert!(matches!(Operand::parse("."), Ok(Operand::Dir(_))));
    }
}
