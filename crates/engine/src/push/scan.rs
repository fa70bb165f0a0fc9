//! Reading the source of a push: the scan (shared with `diff` and `--source` trees)
//! and the check that the store is not inside the tree it stores.

use std::path::{Path, PathBuf};

use relstore_core::progress::Progress;
use relstore_core::Target;

use crate::error::{EngineError, EngineResult};

/// Scans `source` into manifest entries with nothing excluded (what content lookups by
/// hash, like `--source` directories, want).
pub fn scan_source(
    source: &Path,
    skip_special: bool,
    cache_dir: Option<&Path>,
    progress: &dyn Progress,
) -> EngineResult<relstore_scan::ScanOutput> {
    scan_source_excluding(source, skip_special, None, cache_dir, progress)
}

/// Scans `source` into manifest entries (shared by push and diff). With `exclude`
/// (`Some`, even empty) the source's `.relstoreignore` and then those patterns keep
/// paths out, as a push does; `None` excludes nothing.
pub fn scan_source_excluding(
    source: &Path,
    skip_special: bool,
    exclude: Option<&[String]>,
    cache_dir: Option<&Path>,
    progress: &dyn Progress,
) -> EngineResult<relstore_scan::ScanOutput> {
    let excludes = match exclude {
        Some(patterns) => relstore_scan::Excludes::build(source, patterns, true)?,
        None => relstore_scan::Excludes::none(),
    };
    let stat_cache = match cache_dir {
        // A missing source is reported by the scan itself, with its own message.
        Some(_) if !source.exists() => None,
        Some(dir) => match relstore_scan::cache_file_for(dir, source) {
            Ok(p) => Some(p),
            Err(e) => {
                progress.note(&format!("stat cache disabled: {e}"));
                None
            }
        },
        None => None,
    };
    let opts = relstore_scan::ScanOptions {
        skip_special,
        stat_cache,
        excludes,
    };
    let out = relstore_scan::scan(source, &opts, progress)?;
    if let Some(w) = &out.cache_warning {
        progress.note(w);
    }
    Ok(out)
}

/// Pushing a tree into a store inside that tree would scan the store into the release
/// (and grow it on every push): refuse it before anything is touched.
pub(crate) fn refuse_store_inside_source(source: &Path, target: &dyn Target) -> EngineResult<()> {
    let Some(root) = target.local_root() else {
        return Ok(());
    };
    let Ok(source) = source.canonicalize() else {
        return Ok(()); // the scan reports a missing source with its own message
    };
    // The store may not exist yet: resolve its nearest existing ancestor. A relative
    // root is taken from the working directory first, or its ancestors would run out
    // at "" before reaching anything that exists.
    let mut probe = if root.is_absolute() {
        root.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(root),
            Err(_) => return Ok(()),
        }
    };
    let mut rest = Vec::new();
    let resolved = loop {
        if let Ok(p) = probe.canonicalize() {
            break rest
                .iter()
                .rev()
                .fold(p, |acc: PathBuf, c: &std::ffi::OsString| acc.join(c));
        }
        match (probe.file_name(), probe.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                probe = parent.to_path_buf();
            }
            _ => return Ok(()),
        }
    };
    if resolved.starts_with(&source) || source.starts_with(&resolved) {
        return Err(EngineError::StoreInsideSource {
            location: target.location().to_owned(),
            source_dir: source,
        });
    }
    Ok(())
}
