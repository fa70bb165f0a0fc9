//! Phase Hash: blake3 of every regular file the stat cache could not vouch for.
//!
//! Files are hashed in parallel with rayon, one file per task, each task reusing a
//! read buffer (`map_init`). The strategy per file follows b3sum: files under
//! [`MMAP_MIN`] are read into that buffer (mapping a small file costs more than the
//! copy it saves, and unmapping in a multi-threaded process costs TLB shootdowns);
//! larger files are mapped and hashed with `Hasher::update_rayon`, so one huge file
//! still uses every core.
//!
//! Each file is opened with `O_NOFOLLOW` and its `(dev, ino)` checked against the
//! walk's lstat, so the bytes hashed are those of the inode the walk recorded; the
//! byte count must equal the walk's size. Anything else is a change during the scan.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rayon::prelude::*;
use relstore_core::progress::{Phase, Progress};
use relstore_core::ContentHash;

use crate::error::{classify, ScanError};
use crate::walk::{FileStat, Node, NodeKind};

/// Files at least this big are memory-mapped and hashed with all cores.
pub(crate) const MMAP_MIN: u64 = 1024 * 1024;
/// Size of each worker's read buffer for smaller files.
const READ_BUF: usize = 64 * 1024;

/// Hashes one file: its blake3 and the number of bytes read.
///
/// Used by the scan for every file, and by `verify` to re-hash objects. Follows a
/// symlink like `open(2)` does. Small files are read through a buffer; files of
/// 1 MiB and more are mapped and hashed on all cores (b3sum's strategy).
pub fn hash_file(path: &Path) -> io::Result<(ContentHash, u64)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    hash_open(&file, size, &mut Vec::new())
}

/// Hashes an open file whose size was `size` when it was opened. `buf` is reused
/// between calls.
fn hash_open(file: &File, size: u64, buf: &mut Vec<u8>) -> io::Result<(ContentHash, u64)> {
    let mut hasher = blake3::Hasher::new();
    if size >= MMAP_MIN {
        let len = usize::try_from(size).map_err(io::Error::other)?;
        // SAFETY: a private read-only mapping of `len` bytes of an open file, dropped
        // before the function returns. As with every mmap-based hasher (b3sum included),
        // another process truncating the file meanwhile makes reads past the new end
        // raise SIGBUS; relstore accepts that for files of 1 MiB and more, where
        // mapping saves a copy and lets blake3 hash with all cores. Changed bytes are
        // harmless: they are hashed as opaque data and every upload re-verifies them.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        hasher.update_rayon(&map);
        drop(map);
        // A mapping cannot see bytes appended after `size`; a second look at the
        // length catches a file that grew (or shrank) meanwhile.
        let now = file.metadata()?.len();
        return Ok((
            hasher.finalize().into(),
            if now == size { size } else { now },
        ));
    }
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut total = 0u64;
    let mut reader = file;
    loop {
        match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
                // A short read of a regular file ends exactly at its end of file: when
                // that is the expected size, the usual extra read that returns 0 would
                // only cost a syscall per file (a fifth of all of them for small files).
                if n < buf.len() && total == size {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finalize().into(), total))
}

/// Hashes the file the walk recorded at `rel` with `stat`.
pub(crate) fn hash_recorded(
    root: &Path,
    rel: &[u8],
    stat: &FileStat,
    buf: &mut Vec<u8>,
) -> Result<(ContentHash, u64), ScanError> {
    let full = root.join(OsStr::from_bytes(rel));
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&full)
    {
        Ok(f) => f,
        Err(e) => {
            return Err(classify(full, e, |path, source| ScanError::ReadFile {
                path,
                source,
            }))
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(source) => return Err(ScanError::Stat { path: full, source }),
    };
    if meta.dev() != stat.dev || meta.ino() != stat.ino || !meta.is_file() {
        return Err(ScanError::Changed {
            path: full,
            what: "it was replaced by another file".into(),
            source: None,
        });
    }
    // Map or read by the size the file has now: mapping past a shrunken end would
    // fault, and a size change is a change during the scan anyway.
    let (hash, read) = match hash_open(&file, meta.len(), buf) {
        Ok(r) => r,
        Err(source) => return Err(ScanError::ReadFile { path: full, source }),
    };
    if read != stat.size {
        return Err(ScanError::Changed {
            path: full,
            what: format!("size went from {} to {read} bytes", stat.size),
            source: None,
        });
    }
    Ok((hash, read))
}

/// Hashes, in parallel, every file node that has no hash yet; returns
/// `(files hashed, bytes hashed)`.
pub(crate) fn hash_missing(
    root: &Path,
    nodes: &mut [Node],
    progress: &dyn Progress,
) -> Result<(u64, u64), ScanError> {
    let mut todo: Vec<(&[u8], &FileStat, &mut Option<ContentHash>)> = nodes
        .iter_mut()
        .filter_map(|node| match &mut node.kind {
            NodeKind::File {
                stat,
                hash: slot @ None,
                ..
            } => Some((&node.path[..], &*stat, slot)),
            _ => None,
        })
        .collect();
    let total: u64 = todo.iter().map(|(_, stat, _)| stat.size).sum();
    progress.start(Phase::Hash, total);
    let result = todo
        .par_iter_mut()
        .map_init(Vec::new, |buf, (rel, stat, slot)| {
            // Per file: Ctrl-C stops a hash of a million files at once (one huge
            // file still finishes its own mmap hash, well under a second per GB).
            relstore_core::cancel::check().map_err(|source| ScanError::Interrupted {
                path: root.to_path_buf(),
                source,
            })?;
            let (hash, n) = hash_recorded(root, rel, stat, buf)?;
            **slot = Some(hash);
            progress.advance(n);
            Ok((1u64, n))
        })
        .try_reduce(|| (0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1)));
    progress.finish();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(content: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, content).unwrap();
        let (h, n) = hash_file(&p).unwrap();
        assert_eq!(h, ContentHash::from(blake3::hash(content)));
        assert_eq!(n, content.len() as u64);
    }

    #[test]
    fn hashes_match_blake3_on_every_path() {
        check(b"");
        check(b"hello");
        let mut rng = fastrand::Rng::with_seed(7);
        // Read path with several buffers, and the mmap path (3 MiB).
        let medium: Vec<u8> = (0..READ_BUF * 3 + 17).map(|_| rng.u8(..)).collect();
        check(&medium);
        // Exact multiples of the buffer: the end is only seen by a read returning 0.
        check(&medium[..READ_BUF]);
        check(&medium[..READ_BUF * 2]);
        let big: Vec<u8> = (0..3 * 1024 * 1024 + 5).map(|_| rng.u8(..)).collect();
        check(&big);
    }

    #[test]
    fn size_differing_from_the_walk_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [("small", 10usize), ("big", 2 * MMAP_MIN as usize)] {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![1u8; len]).unwrap();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let stat = FileStat {
                dev: meta.dev(),
                ino: meta.ino(),
                size: len as u64 - 1, // the walk "saw" one byte less
                mtime_ns: 0,
                ctime_ns: 0,
            };
            let err =
                hash_recorded(dir.path(), name.as_bytes(), &stat, &mut Vec::new()).unwrap_err();
            assert!(matches!(err, ScanError::Changed { .. }), "{err:?}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn replaced_file_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let stat = FileStat {
            dev: meta.dev(),
            ino: meta.ino() + 1,
            size: 3,
            mtime_ns: 0,
            ctime_ns: 0,
        };
        let err = hash_recorded(dir.path(), b"f", &stat, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ScanError::Changed { .. }), "{err:?}");
        std::fs::remove_file(&p).unwrap();
        let err = hash_recorded(dir.path(), b"f", &stat, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("vanished"), "{err}");
    }
}
