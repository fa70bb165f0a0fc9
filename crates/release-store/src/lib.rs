//! The local release store: every blob relstore ever pushed, kept on the client.
//!
//! relstore keeps every manifest on the target, so any release ever pushed can come
//! back, even after its release directory and its objects were pruned on the server.
//! The bytes of those evicted objects must then come from somewhere other than the
//! (long since changed) source tree: this store. It is written through during every
//! push (each blob of the pushed release that it does not hold yet), and read when an
//! evicted release is rolled back or when `verify --repair` re-uploads a corrupt object
//! (through [`StoreSource`], a [`relstore_core::target::BlobSource`]).
//!
//! ```text
//! ROOT/                              default: see ReleaseStore::default_location
//!   relstore-blobstore.toml          format marker (`format = 1`); a directory without it is never used
//!   lock                             flock(2): shared by every open store, exclusive while pruning
//!   blobs/ab/cdef….zst               one zstd frame of the content whose blake3 is abcdef…
//!   manifests/KEY/RELEASE.manifest   manifests of pushed releases, KEY = blake3(target location)[..32 hex]
//!   manifests/KEY/target             the target location, for people reading the directory
//!   tmp/                             blobs being written, and blobs found corrupt; cleared by prune
//! ```
//!
//! Blobs are keyed by content hash alone: the permission bits that are part of an
//! object's name on a target are a target-side concern, and one blob here serves every
//! mode. Each blob is a plain zstd frame, so `zstd -d` reads it in an emergency.
//!
//! Durability: blobs are written to `tmp/`, made durable per batch (each file's data,
//! then one fsync for the journal; an fsync per file is far too slow for 100k-file
//! pushes, and `syncfs` would flush unrelated data too) and only then renamed into
//! `blobs/`. A crash can therefore lose a rename (the blob is simply missing and stored
//! again by the next push) but never leave a name in `blobs/` over incomplete content.
//! Every read is verified against the hash, so a blob damaged later is detected, moved
//! aside, and never returned as wrong bytes.
//!
//! Retention ([`ReleaseStore::prune`]) works from the manifests recorded here, without
//! contacting any target.

mod error;
mod put;
mod read;
mod retain;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rayon::prelude::*;
use relstore_core::ContentHash;

pub use error::ReleaseStoreError;
pub use put::PutStats;
pub use read::StoreSource;
pub use retain::PruneStats;

use error::io_err;

/// Name of the format marker file in the store root (it predates the crate's name and
/// keeps it: it is part of the on-disk format).
pub const MARKER_FILE: &str = "relstore-blobstore.toml";
/// The store format this relstore writes and reads; bumped on incompatible changes.
pub const STORE_FORMAT: u32 = 1;

const BLOBS_DIR: &str = "blobs";
const MANIFESTS_DIR: &str = "manifests";
const TMP_DIR: &str = "tmp";
const LOCK_FILE: &str = "lock";
const BLOB_SUFFIX: &str = ".zst";

/// A local release store rooted at one directory.
///
/// Holds a shared `flock(2)` on `ROOT/lock` for as long as it is open, so that
/// [`ReleaseStore::prune`] (which needs it exclusively) can never delete a blob that a
/// concurrent push just found present and is about to reference in a manifest.
pub struct ReleaseStore {
    root: PathBuf,
    lock: File,
    /// In-process counterpart of the flock (flock does not exclude threads sharing one
    /// file description): writers take it shared, [`ReleaseStore::prune`] exclusively.
    gate: RwLock<()>,
}

impl ReleaseStore {
    /// Where the store lives when the user did not say: `$RELSTORE_STORE_DIR`, else
    /// `$XDG_DATA_HOME/relstore/store`, else `~/.local/share/relstore/store`. It is
    /// data, not cache (deleting it can make old releases unrecoverable), hence
    /// `XDG_DATA_HOME` and not `XDG_CACHE_HOME`. `None` when no home is known.
    ///
    /// Stores made by earlier versions live at `…/relstore/blobs` (which put blobs
    /// under `…/relstore/blobs/blobs/`); such a store is still used where no store
    /// exists at the new place, so an upgrade never loses the blobs of old releases.
    pub fn default_location() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("RELSTORE_STORE_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        // The XDG spec says a relative value is invalid and must be ignored.
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|home| PathBuf::from(home).join(".local/share"))
            })?
            .join("relstore");
        let current = base.join("store");
        let legacy = base.join("blobs");
        if !current.exists() && legacy.join(MARKER_FILE).is_file() {
            return Some(legacy);
        }
        Some(current)
    }

    /// Opens the store at `root`, creating it (and missing parents, mode 0700: blobs
    /// may hold private files) when it does not exist or is an empty directory.
    ///
    /// A non-empty directory without the `relstore-blobstore.toml` marker is refused
    /// and left untouched: a mistyped `RELSTORE_STORE_DIR` must never turn a user's
    /// directory into a store that `prune` later empties. Blocks while another
    /// process prunes the store.
    pub fn open(root: &Path) -> Result<ReleaseStore, ReleaseStoreError> {
        match fs::metadata(root) {
            Ok(m) if !m.is_dir() => {
                return Err(ReleaseStoreError::NotAStore {
                    path: root.to_path_buf(),
                    reason: "exists and is not a directory".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| io_err("create directory", root, e))?,
            Err(e) => return Err(io_err("inspect", root, e)),
        }
        check_or_create_marker(root)?;
        for dir in [BLOBS_DIR, MANIFESTS_DIR, TMP_DIR] {
            let path = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| io_err("create directory", path, e))?;
        }
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        flock(&lock, libc::LOCK_SH).map_err(|e| io_err("lock", &lock_path, e))?;
        Ok(ReleaseStore {
            root: root.to_path_buf(),
            lock,
            gate: RwLock::new(()),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `hash` lives (or would live): `ROOT/blobs/ab/cdef….zst`.
    /// Public so that messages can name the file involved.
    pub fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root
            .join(BLOBS_DIR)
            .join(&hex[..2])
            .join(format!("{}{BLOB_SUFFIX}", &hex[2..]))
    }

    /// Whether the blob of `hash` is stored. Only existence is checked (one `stat`):
    /// content is verified whenever it is read.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        fs::symlink_metadata(self.blob_path(hash)).is_ok_and(|m| m.is_file())
    }

    /// Number of blobs and their total size on disk (compressed bytes, i.e. file
    /// lengths; file system block rounding is not counted).
    pub fn usage(&self) -> Result<(u64, u64), ReleaseStoreError> {
        let blobs = self.list_blobs()?;
        Ok((blobs.len() as u64, blobs.iter().map(|(_, len)| len).sum()))
    }

    /// Every blob in `blobs/` with its file length. Files whose names are not blob
    /// names (editor debris, a stray note) are ignored, never counted or deleted.
    fn list_blobs(&self) -> Result<Vec<(ContentHash, u64)>, ReleaseStoreError> {
        let blobs_dir = self.root.join(BLOBS_DIR);
        let mut prefixes = Vec::new();
        for entry in fs::read_dir(&blobs_dir).map_err(|e| io_err("list", &blobs_dir, e))? {
            let entry = entry.map_err(|e| io_err("list", &blobs_dir, e))?;
            let name = entry.file_name();
            if let Some(prefix) = name.to_str().filter(|n| is_hex(n, 2)) {
                prefixes.push(prefix.to_owned());
            }
        }
        let per_prefix: Vec<Result<Vec<(ContentHash, u64)>, ReleaseStoreError>> = prefixes
            .par_iter()
            .map(|prefix| {
                let dir = blobs_dir.join(prefix);
                let mut out = Vec::new();
                for entry in fs::read_dir(&dir).map_err(|e| io_err("list", &dir, e))? {
                    let entry = entry.map_err(|e| io_err("list", &dir, e))?;
                    let name = entry.file_name();
                    let Some(hash) = name
                        .to_str()
                        .and_then(|n| n.strip_suffix(BLOB_SUFFIX))
                        .and_then(|rest| ContentHash::from_hex(&format!("{prefix}{rest}")))
                    else {
                        continue;
                    };
                    match entry.metadata() {
                        Ok(m) if m.is_file() => out.push((hash, m.len())),
                        Ok(_) => {}
                        // Removed meanwhile (a corrupt blob moved aside): not there.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("inspect", entry.path(), e)),
                    }
                }
                Ok(out)
            })
            .collect();
        let mut all = Vec::new();
        for part in per_prefix {
            all.extend(part?);
        }
        Ok(all)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// A fresh, unique path in `tmp/` (unique across threads and processes).
    fn tmp_path(&self, what: &str) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{what}.{}.{seq}.tmp", std::process::id()))
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        // The guarded value is `()`: a panic elsewhere cannot leave it inconsistent.
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the format marker, or writes it into an empty directory.
fn check_or_create_marker(root: &Path) -> Result<(), ReleaseStoreError> {
    let marker = root.join(MARKER_FILE);
    // A concurrent `open` may have created the marker but not yet written its one
    // line; give it a moment before calling the store foreign.
    for _ in 0..50 {
        match fs::read_to_string(&marker) {
            Ok(text) if text.trim().is_empty() => std::thread::sleep(Duration::from_millis(20)),
            Ok(text) => return check_marker(&marker, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut entries = fs::read_dir(root).map_err(|e| io_err("list", root, e))?;
                if entries.next().is_some() {
                    return Err(ReleaseStoreError::NotAStore {
                        path: root.to_path_buf(),
                        reason: format!(
                            "directory is not empty and is not a relstore local release store (it has no {MARKER_FILE}); refusing to use it"
                        ),
                    });
                }
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&marker)
                {
                    Ok(mut f) => {
                        let text = format!(
                            "# relstore local release store: blobs of pushed releases, kept on this machine\n# so that releases evicted from their targets can be restored.\nformat = {STORE_FORMAT}\n"
                        );
                        f.write_all(text.as_bytes())
                            .and_then(|()| f.sync_all())
                            .map_err(|e| io_err("write", &marker, e))?;
                        return Ok(());
                    }
                    // Another process created it first: read theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("create", &marker, e)),
                }
            }
            Err(e) => return Err(io_err("read", &marker, e)),
        }
    }
    Err(ReleaseStoreError::NotAStore {
        path: marker,
        reason: "format marker is empty".into(),
    })
}

fn check_marker(marker: &Path, text: &str) -> Result<(), ReleaseStoreError> {
    let found = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "format")
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    match found {
        Some(v) if v == STORE_FORMAT.to_string() => Ok(()),
        Some(v) => Err(ReleaseStoreError::UnsupportedFormat {
            path: marker.to_path_buf(),
            found: v,
            supported: STORE_FORMAT,
        }),
        None => Err(ReleaseStoreError::NotAStore {
            path: marker.to_path_buf(),
            reason: "format marker has no `format = N` line".into(),
        }),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `flock(2)`, retried on EINTR.
fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the fd is valid for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
