//! relstore's source side: turn a directory into sorted manifest entries, fast.
//!
//! [`scan`] is steps 1 and 2 of a push (see docs/crash-safety.md): it walks the source tree in
//! parallel, classifies every entry (directory, regular file, symlink; fifos, sockets
//! and devices are refused or, with [`ScanOptions::skip_special`], skipped and
//! reported), and blake3-hashes every regular file the stat cache cannot vouch for.
//! The result is a list of [`relstore_core::Entry`] in
//! [`cmp_paths`](relstore_core::path::cmp_paths) order, ready for
//! [`relstore_core::Manifest::new`].
//!
//! Modules, one job each:
//! - `walk`: the parallel directory walk (phase Scan), fd-relative and
//!   symlink-safe, producing already-sorted nodes;
//! - `stat_cache`: git-index-like `path → (dev, ino, size, mtime, ctime, hash)` with
//!   the racy-entry rule, so an unchanged deploy costs one stat walk;
//! - `hash`: parallel blake3 (phase Hash), mmap + multi-threaded for big files;
//! - `exclude`: [`Excludes`], gitignore-style patterns (`--exclude`, the source's
//!   `.relstoreignore`) that keep paths out of the manifest;
//! - `sys`: the few raw Linux calls, the crate's only `unsafe`;
//! - `error`: [`ScanError`], which always names the path involved.
//!
//! Paths are raw bytes relative to the root, `/`-separated: non-UTF-8 names are legal
//! on Unix and round-trip exactly. The root may be a symlink to a directory (it is
//! followed); nothing inside the root is ever followed.

mod error;
mod exclude;
mod hash;
mod stat_cache;
mod sys;
mod walk;

use std::path::{Path, PathBuf};
use std::time::Instant;

use relstore_core::progress::{Phase, Progress};
use relstore_core::{Entry, EntryKind};

pub use error::ScanError;
pub use exclude::{Excludes, IGNORE_FILE};
pub use hash::hash_file;
pub use stat_cache::cache_file_for;

use stat_cache::Loaded;
use walk::{Node, NodeKind};

/// How to scan.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Skip fifos/sockets/devices (reported in [`ScanOutput::skipped`]) instead of
    /// failing: they cannot be deployed, but a build directory may contain one
    /// (a dev server's socket, say) that the user knows is irrelevant.
    pub skip_special: bool,
    /// File holding the stat cache for this source (see [`cache_file_for`]); `None` =
    /// no cache, hash everything (what `verify`-like callers want).
    pub stat_cache: Option<PathBuf>,
    /// Paths left out of the scan (and so of the manifest); an excluded directory is
    /// not descended into. Default: nothing excluded.
    pub excludes: Excludes,
}

/// What a scan found, plus the numbers `push --json` and `bench` report.
#[derive(Debug)]
pub struct ScanOutput {
    /// Every entry under the root (not the root itself), sorted by
    /// [`cmp_paths`](relstore_core::path::cmp_paths): ready for `Manifest::new`.
    pub entries: Vec<Entry>,
    /// Special files skipped because of [`ScanOptions::skip_special`]: relative path and
    /// kind (`"fifo"`, `"socket"`, `"char device"`, `"block device"`), in path order.
    pub skipped: Vec<(Vec<u8>, &'static str)>,
    /// Entries left out by [`ScanOptions::excludes`] (an excluded directory counts
    /// once, whatever it holds): lets a caller say how much the excludes removed.
    pub excluded: u64,
    /// Files whose content was read this run (those the stat cache vouched for are not
    /// counted): the measure of how much the cache saved.
    pub files_hashed: u64,
    /// Bytes read by those files.
    pub bytes_hashed: u64,
    /// Wall time of the walk.
    pub walk_seconds: f64,
    /// Wall time of everything after the walk: cache lookup, hashing, cache save.
    pub hash_seconds: f64,
    /// Set when the stat cache was unreadable, corrupt, of another format, or could not
    /// be written: the scan still succeeded (hashing what it had to), but the user
    /// should know why the next scan may be slow.
    pub cache_warning: Option<String>,
}

/// Scans `root` into sorted manifest entries.
///
/// Reports [`Phase::Scan`] (entries found) and then [`Phase::Hash`] (bytes to hash)
/// to `progress`. Fails with a [`ScanError`] naming the path on a missing or
/// non-directory root, an unreadable directory or file, a special file (unless
/// skipped), or an entry that changed while it was being scanned. Problems with the
/// stat cache never fail the scan; they end up in [`ScanOutput::cache_warning`].
pub fn scan(
    root: &Path,
    opts: &ScanOptions,
    progress: &dyn Progress,
) -> Result<ScanOutput, ScanError> {
    check_root(root)?;
    // Taken before any lstat: see the racy-entry rule in `stat_cache`.
    let scan_started_ns = sys::coarse_realtime_ns();

    progress.start(Phase::Scan, 0);
    let walk_start = Instant::now();
    // The cache is read only after the walk: its file (~42 bytes per entry, hashes do
    // not compress) would otherwise sit in memory at the walk's peak, when the
    // listings and the flattened nodes are both alive.
    let walked = walk::walk(root, opts.skip_special, &opts.excludes, progress);
    let walk_seconds = walk_start.elapsed().as_secs_f64();
    progress.finish();
    let walked = walked?;
    let mut nodes = walked.nodes;
    trim_heap();
    let loaded = opts.stat_cache.as_deref().map(stat_cache::read);

    let hash_start = Instant::now();
    let applied = apply_cache(opts.stat_cache.as_deref(), loaded, &mut nodes);
    let (files_hashed, bytes_hashed) = hash::hash_missing(root, &mut nodes, progress)?;
    let mut cache_warning = applied.warning;
    if let Some(cache_path) = &opts.stat_cache {
        let files = nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::File { .. }))
            .count();
        // Nothing hashed means every file matched a record; equal counts then mean
        // no record is stale either, so the file on disk is already right.
        if files_hashed > 0 || files != applied.old_records || applied.unusable {
            if let Some(w) = write_cache(cache_path, scan_started_ns, &nodes) {
                cache_warning = Some(match cache_warning {
                    Some(prev) => format!("{prev}; {w}"),
                    None => w,
                });
            }
        }
    }

    let mut entries: Vec<Entry> = nodes.into_iter().filter_map(into_entry).collect();
    // Collected in place into the nodes' larger allocation: give the difference back.
    entries.shrink_to_fit();
    trim_heap();
    Ok(ScanOutput {
        entries,
        skipped: walked.skipped,
        excluded: walked.excluded,
        files_hashed,
        bytes_hashed,
        walk_seconds,
        hash_seconds: hash_start.elapsed().as_secs_f64(),
        cache_warning,
    })
}

/// What applying the stat cache to the walked nodes found.
struct AppliedCache {
    /// Records the cache held (to tell whether it needs rewriting).
    old_records: usize,
    /// The cache could not be used at all: it must be rewritten.
    unusable: bool,
    /// Why it could not be used, for the report.
    warning: Option<String>,
}

/// Fills the hashes of `nodes` that the loaded stat cache vouches for.
fn apply_cache(path: Option<&Path>, loaded: Option<Loaded>, nodes: &mut [Node]) -> AppliedCache {
    let mut applied = AppliedCache {
        old_records: 0,
        unusable: false,
        warning: None,
    };
    match loaded {
        Some(Loaded::Body(body)) => {
            match stat_cache::apply(&body, path.unwrap_or(Path::new("")), nodes) {
                Ok(n) => applied.old_records = n,
                Err(w) => {
                    applied.warning = Some(w);
                    applied.unusable = true;
                }
            }
        }
        Some(Loaded::Unusable(w)) => {
            applied.warning = Some(w);
            applied.unusable = true;
        }
        Some(Loaded::Missing) | None => {}
    }
    applied
}

/// Writes the stat cache for `nodes`; a failure is a warning, never an error.
fn write_cache(path: &Path, scan_started_ns: i64, nodes: &[Node]) -> Option<String> {
    let bytes = stat_cache::encode(scan_started_ns, nodes);
    stat_cache::write_atomic(path, &bytes).err().map(|e| {
        format!(
            "cannot write stat cache {} ({e}); files may be hashed again next time",
            stat_cache::shown(path)
        )
    })
}

/// Returns freed heap pages to the kernel. The walk's per-directory listings are freed
/// as they are flattened into nodes (and the nodes when they become entries); without
/// this, glibc keeps those pages, and a million-file scan holds its peak (both forms
/// at once) for the rest of the push.
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The root must be a directory or a symlink to one; anything else gets a message
/// saying which of the two it is not.
fn check_root(root: &Path) -> Result<(), ScanError> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ScanError::SourceNotDir {
            path: root.to_path_buf(),
        }),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ScanError::SourceMissing {
                path: root.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(ScanError::SourceUnreadable {
            path: root.to_path_buf(),
            source,
        }),
    }
}

fn into_entry(node: Node) -> Option<Entry> {
    let kind = match node.kind {
        NodeKind::Dir { mode } => EntryKind::Dir { mode },
        NodeKind::File { mode, stat, hash } => EntryKind::File {
            size: stat.size,
            // Every file is hashed by now; a node without a hash cannot occur.
            hash: hash?,
            mode,
        },
        NodeKind::Symlink { target } => EntryKind::Symlink { target },
    };
    Some(Entry {
        path: node.path.into_vec(),
        kind,
    })
}

#[cfg(test)]
mod tests;
