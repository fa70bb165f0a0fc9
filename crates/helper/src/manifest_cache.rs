//! The client's cache of manifest files on its own disk, by content.
//!
//! Every push reads the current release's manifest (to tell "unchanged" and to plan),
//! and a large site's manifest is most of what a small push downloads. The client
//! keeps each manifest it reads or stages in a file named by the blake3 of its bytes
//! (hex); before reading one through the helper it asks for the digest
//! (`ManifestDigest`, protocol 3) and uses its own file when it has one whose bytes
//! still hash to it. The cache is only ever a shortcut: a missing, unreadable or
//! corrupted file means a full read, and failures to write it are ignored.
//!
//! The cache stays small: each write removes files not used for [`MAX_AGE`] and the
//! oldest beyond [`MAX_FILES`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::proto::Digest;

/// Cache files unused for longer are removed.
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// At most this many manifests are kept (the most recently used).
pub const MAX_FILES: usize = 200;

/// The cache directory the user named for this process (`--cache-dir`), if any.
static CHOSEN: OnceLock<PathBuf> = OnceLock::new();

/// Makes `dir` the client's cache directory for the rest of this process, so manifests
/// go to `dir/manifests` beside the stat cache when the user names a `--cache-dir`
/// (set once, before any target is opened; a later call is ignored). A process-wide
/// setting because the helper is started deep inside opening an SSH target.
pub fn use_cache_dir(dir: PathBuf) {
    let _ = CHOSEN.set(dir);
}

/// The default manifest cache directory: `manifests/` under the client's cache
/// directory (the one given to [`use_cache_dir`], else `$RELSTORE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/relstore`, else `~/.cache/relstore`, as relstore's stat cache).
/// `None` when no home is known.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = CHOSEN.get() {
        return Some(dir.join("manifests"));
    }
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = var("RELSTORE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("relstore")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache").join("relstore")))?;
    Some(base.join("manifests"))
}

/// A manifest cache directory.
pub(crate) struct DiskCache {
    dir: PathBuf,
}

fn hex(digest: &Digest) -> String {
    blake3::Hash::from_bytes(*digest).to_hex().to_string()
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf) -> DiskCache {
        DiskCache { dir }
    }

    /// The manifest with this digest, if the cache holds a file that still hashes to
    /// it (a stale or damaged file is treated as absent).
    pub(crate) fn get(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.dir.join(hex(digest));
        let bytes = fs::read(&path).ok()?;
        if blake3::hash(&bytes).as_bytes() != digest {
            return None;
        }
        // Mark it used, so pruning keeps it; a failure only makes it older.
        if let Ok(f) = fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(bytes)
    }

    /// Stores `bytes` under their digest (temp file, then rename) and prunes; errors
    /// are ignored: the cache only saves downloads.
    pub(crate) fn put(&self, bytes: &[u8]) {
        let name = blake3::hash(bytes).to_hex().to_string();
        if self.write(&name, bytes).is_ok() {
            self.prune();
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(&self.dir)?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{seq}-{name}", std::process::id()));
        let result = write_file(&tmp, bytes).and_then(|()| fs::rename(&tmp, self.dir.join(name)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes files unused for [`MAX_AGE`] (also left-over temporary files) and the
    /// least recently used beyond [`MAX_FILES`].
    fn prune(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let tmp = name.starts_with(".tmp-");
            if !tmp && !is_entry_name(&name) {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            let age = now.duration_since(modified).unwrap_or_default();
            let limit = if tmp {
                Duration::from_secs(3600)
            } else {
                MAX_AGE
            };
            if age > limit {
                let _ = fs::remove_file(entry.path());
            } else if !tmp {
                kept.push((modified, entry.path()));
            }
        }
        if kept.len() > MAX_FILES {
            kept.sort_by_key(|k| std::cmp::Reverse(k.0));
            for (_, path) in &kept[MAX_FILES..] {
                let _ = fs::remove_file(path);
            }
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stores_finds_and_ignores_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("m"));
        let digest = *blake3::hash(b"manifest").as_bytes();
        assert_eq!(cache.get(&digest), None);
        cache.put(b"manifest");
        assert_eq!(cache.get(&digest).as_deref(), Some(&b"manifest"[..]));
        fs::write(dir.path().join("m").join(hex(&digest)), b"damaged").unwrap();
        assert_eq!(cache.get(&digest), None);
    }

    #[test]
    fn keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_path_buf());
        for i in 0..MAX_FILES + 5 {
            cache.put(format!("manifest {i}").as_bytes());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), MAX_FILES);
    }
}
