//! Writing blobs: the write-through of every push.
//!
//! A push hands over every (hash, source file, size) of its release; the ones the store
//! lacks are read, verified against their hash while read, zstd-compressed and written
//! to `tmp/`, in parallel on rayon's pool. Each batch is made durable (data of each
//! file, then one fsync: [`relstore_core::durable`]) and then renamed into `blobs/`, so
//! a name in `blobs/` always stands for complete content.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use relstore_core::path::escape;
use relstore_core::progress::Progress;
use relstore_core::verify_read::HashCheckingReader;
use relstore_core::ContentHash;

use crate::error::io_err;
use crate::{ReleaseStore, ReleaseStoreError};

/// zstd level for content that compresses: level 3 (zstd's default) compresses text
/// and markup 3–5x at several hundred MB/s per core, faster than the uploads it runs
/// beside; higher levels cost more CPU than the disk space they save is worth here.
const LEVEL: i32 = 3;
/// Files up to this size are read whole and compressed in one call with a per-thread
/// reused context (most files of a site are small, and a fresh streaming context per
/// file costs more than compressing it); larger ones are streamed in
/// [`STREAM_CHUNK`] pieces so memory stays bounded.
const WHOLE_FILE_MAX: u64 = 1 << 20;
const STREAM_CHUNK: usize = 1 << 20;
/// A batch is made durable with one flush and published before the next one starts,
/// so an interrupted push of a huge tree keeps most of what it stored and `tmp/` never
/// holds more than one batch.
const BATCH_FILES: usize = 8192;
const BATCH_BYTES: u64 = 1 << 30;

/// What one [`ReleaseStore::put_files`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Blobs written by this call.
    pub blobs_added: u64,
    /// Items not written because the blob was stored already or occurred earlier in
    /// the same call (equal content at several paths is one blob).
    pub blobs_present: u64,
    /// Uncompressed bytes of the blobs written.
    pub bytes_read: u64,
    /// Compressed bytes of the blobs written (their file lengths in the store).
    pub bytes_written: u64,
}

/// A blob written to `tmp/`, not yet published.
struct Staged {
    hash: ContentHash,
    tmp: PathBuf,
    raw: u64,
    stored: u64,
}

impl ReleaseStore {
    /// Stores every `(hash, source file, size)` whose blob is not stored yet.
    ///
    /// Each file is read through
    /// [`HashCheckingReader`]: a file that changed since it was hashed fails with an
    /// error naming it and is not stored (otherwise the store would keep content under
    /// a hash it does not have, and a later restore would fail or, worse, serve it).
    /// On such an error the other blobs of the batch that were completely written are
    /// still published (they are verified), no new file is started, and the first error
    /// is returned.
    ///
    /// Progress advances in uncompressed bytes, also for items already stored, so a
    /// caller that started its phase with the sum of the items' sizes ends at 100%;
    /// starting and finishing the phase is the caller's.
    pub fn put_files(
        &self,
        items: &[(ContentHash, PathBuf, u64)],
        progress: &dyn Progress,
    ) -> Result<PutStats, ReleaseStoreError> {
        let _gate = self.shared();
        let mut seen = HashSet::with_capacity(items.len());
        let distinct: Vec<&(ContentHash, PathBuf, u64)> =
            items.iter().filter(|(h, _, _)| seen.insert(*h)).collect();
        let missing: Vec<&(ContentHash, PathBuf, u64)> = distinct
            .par_iter()
            .copied()
            .filter(|(h, _, _)| !self.contains(h))
            .collect();
        let mut stats = PutStats {
            blobs_present: (items.len() - missing.len()) as u64,
            ..PutStats::default()
        };
        let missing_bytes: u64 = missing.iter().map(|(_, _, s)| *s).sum();
        let total_bytes: u64 = items.iter().map(|(_, _, s)| *s).sum();
        progress.advance(total_bytes.saturating_sub(missing_bytes));

        for batch in batches(&missing) {
            let failed = AtomicBool::new(false);
            let results: Vec<Result<Option<Staged>, ReleaseStoreError>> = batch
                .par_iter()
                .map(|(hash, path, size)| {
                    if failed.load(Ordering::Relaxed) || relstore_core::cancel::requested() {
                        return Ok(None);
                    }
                    let r = self.stage(hash, path, *size, progress);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r.map(Some)
                })
                .collect();
            let mut first_err = None;
            let mut staged = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    Ok(Some(s)) => staged.push(s),
                    Ok(None) => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match self.publish(&staged) {
                Ok(published) => {
                    for (s, r) in staged.iter().zip(published) {
                        match r {
                            Ok(()) => {
                                stats.blobs_added += 1;
                                stats.bytes_read += s.raw;
                                stats.bytes_written += s.stored;
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            if relstore_core::cancel::requested() {
                return Err(ReleaseStoreError::Interrupted);
            }
        }
        Ok(stats)
    }

    /// Reads, verifies and compresses one source file into a fresh file in `tmp/`.
    fn stage(
        &self,
        hash: &ContentHash,
        path: &Path,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<Staged, ReleaseStoreError> {
        let source_err = |e: io::Error| ReleaseStoreError::Source {
            path: path.to_path_buf(),
            source: e,
        };
        let file = File::open(path).map_err(source_err)?;
        // `take(size + 1)`: a file that grew is detected without reading all of it.
        let mut reader = HashCheckingReader::new(
            file.take(size.saturating_add(1)),
            *hash,
            size,
            escape(path.as_os_str().as_encoded_bytes()),
        );
        let tmp = self.tmp_path(&hash.to_hex());
        // Read-only: nothing should ever modify a blob in place.
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        let written = if size <= WHOLE_FILE_MAX {
            write_whole(&mut reader, out, size, &tmp, &source_err)
        } else {
            write_streamed(&mut reader, out, size, &tmp, &source_err, progress)
        };
        match written {
            Ok(stored) => {
                if size <= WHOLE_FILE_MAX {
                    progress.advance(size);
                }
                Ok(Staged {
                    hash: *hash,
                    tmp,
                    raw: size,
                    stored,
                })
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Makes `staged` durable and renames each into `blobs/`: one result per item,
    /// or an error when nothing could be made durable (then nothing is published). A
    /// temp file that was not published is removed.
    fn publish(
        &self,
        staged: &[Staged],
    ) -> Result<Vec<Result<(), ReleaseStoreError>>, ReleaseStoreError> {
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let paths: Vec<PathBuf> = staged.iter().map(|s| s.tmp.clone()).collect();
        if let Err(e) =
            relstore_core::durable::flush_files(&paths).map_err(|e| io_err(e.op, e.path, e.source))
        {
            for s in staged {
                let _ = fs::remove_file(&s.tmp);
            }
            return Err(e);
        }
        Ok(staged
            .par_iter()
            .map(|s| {
                let dest = self.blob_path(&s.hash);
                let r = rename_into(&s.tmp, &dest);
                if r.is_err() {
                    let _ = fs::remove_file(&s.tmp);
                }
                r
            })
            .collect())
    }
}

/// Splits `items` into batches of at most [`BATCH_FILES`] files and about
/// [`BATCH_BYTES`] bytes.
fn batches<'a, T>(items: &'a [&'a (ContentHash, T, u64)]) -> Vec<&'a [&'a (ContentHash, T, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, (_, _, size)) in items.iter().enumerate() {
        if i > start && (i - start >= BATCH_FILES || bytes + size > BATCH_BYTES) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

thread_local! {
    /// One compression context per rayon worker, reused for every small file.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress_whole(data: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(LEVEL)?),
        };
        compressor.compress(data)
    })
}

/// Small file: read whole (verified), compress in one call, write. Returns bytes written.
fn write_whole(
    reader: &mut impl Read,
    mut out: File,
    size: u64,
    tmp: &Path,
    source_err: &dyn Fn(io::Error) -> ReleaseStoreError,
) -> Result<u64, ReleaseStoreError> {
    let mut data = Vec::with_capacity(size as usize);
    reader.read_to_end(&mut data).map_err(source_err)?;
    let compressed = compress_whole(&data).map_err(|e| io_err("compress into", tmp, e))?;
    out.write_all(&compressed)
        .map_err(|e| io_err("write", tmp, e))?;
    Ok(compressed.len() as u64)
}

/// Large file: stream through a zstd encoder in bounded memory. Returns bytes written.
fn write_streamed(
    reader: &mut impl Read,
    out: File,
    size: u64,
    tmp: &Path,
    source_err: &dyn Fn(io::Error) -> ReleaseStoreError,
    progress: &dyn Progress,
) -> Result<u64, ReleaseStoreError> {
    let write_err = |e| io_err("write", tmp, e);
    let mut enc = zstd::stream::write::Encoder::new(out, LEVEL).map_err(write_err)?;
    // Declaring the size records it in the frame header and lets zstd size its window.
    enc.set_pledged_src_size(Some(size)).map_err(write_err)?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(source_err)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > size {
            // The file grew: drain to the end so the hash check reports it (the
            // encoder would otherwise fail first, with a message about its own size).
            let err = io::copy(reader, &mut io::sink()).err().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "file grew while it was read")
            });
            return Err(source_err(err));
        }
        enc.write_all(&buf[..n]).map_err(write_err)?;
        progress.advance(n as u64);
    }
    let out = enc.finish().map_err(write_err)?;
    let len = out.metadata().map_err(|e| io_err("inspect", tmp, e))?.len();
    Ok(len)
}

/// Renames `tmp` to `dest`, creating the prefix directory on first use. Replacing an
/// existing blob is harmless: a concurrent put of the same hash wrote the same content.
fn rename_into(tmp: &Path, dest: &Path) -> Result<(), ReleaseStoreError> {
    match fs::rename(tmp, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| io_err("create directory", parent, e))?;
            }
            fs::rename(tmp, dest).map_err(|e| io_err("rename into place", dest, e))
        }
        Err(e) => Err(io_err("rename into place", dest, e)),
    }
}
