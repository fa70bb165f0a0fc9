//! Writing new objects into the store: copy into `tmp/`, make durable, rename into
//! `objects/`.
//!
//! The rule that makes this crash-safe: a name in `objects/` only ever appears once its
//! bytes are on disk, so a later push can trust any object it finds. Objects are
//! written in batches; a batch is made durable at once (writeback is started as each
//! file is written, the batch's data waited for, then one fsync commits the journal)
//! and only then renamed into place. A killed push keeps every batch published before
//! the kill, and leaves at most orphans in `tmp/`.
//!
//! The writes of one batch overlap the flush and renames of the previous one (a
//! flusher thread takes finished batches in order): waiting for the disk no longer
//! stops the copying, which made a first push wait for every batch twice.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc;

use rayon::prelude::*;
use relstore_core::failpoint::{kill_point, points};
use relstore_core::progress::Progress;
use relstore_core::target::{BlobSource, TargetError, TargetResult, Upload};

use crate::fsutil::{io_err, start_writeback, wait_written};
use crate::LocalTarget;

/// Objects written between two file-system syncs: bounds what an interrupted push
/// loses while keeping syncs rare.
const UPLOAD_BATCH_OBJECTS: usize = 2048;
const UPLOAD_BATCH_BYTES: u64 = 128 << 20;

/// One written batch on its way to the flusher: its temp files and its uploads.
type Written<'a> = (Vec<PathBuf>, &'a [Upload]);

/// Copies `uploads` into the store (see the module comment).
pub(crate) fn put_objects(
    target: &LocalTarget,
    uploads: &[Upload],
    source: &dyn BlobSource,
    progress: &dyn Progress,
) -> TargetResult<()> {
    // One batch may wait while the next is written: at most two in flight.
    let (tx, rx) = mpsc::sync_channel::<Written<'_>>(0);
    std::thread::scope(|scope| {
        let flusher = scope.spawn(move || flush_batches(target, rx));
        let written = write_batches(target, uploads, source, progress, &tx);
        drop(tx);
        let flushed = flusher
            .join()
            .unwrap_or_else(|_| Err(TargetError::Other("the object flusher panicked".into())));
        // The flusher's error explains a writer that stopped because it went away.
        flushed.and(written)
    })
}

/// Writes the batches in order and hands each to the flusher; stops at the first
/// error (removing that batch's files) or when the flusher has gone.
fn write_batches<'a>(
    target: &LocalTarget,
    uploads: &'a [Upload],
    source: &dyn BlobSource,
    progress: &dyn Progress,
    tx: &mpsc::SyncSender<Written<'a>>,
) -> TargetResult<()> {
    let mut start = 0;
    while start < uploads.len() {
        relstore_core::cancel::check()?;
        let mut end = start;
        let mut bytes = 0u64;
        while end < uploads.len()
            && end - start < UPLOAD_BATCH_OBJECTS
            && (bytes < UPLOAD_BATCH_BYTES || end == start)
        {
            bytes += uploads[end].size;
            end += 1;
        }
        let batch = &uploads[start..end];
        let written: Vec<TargetResult<PathBuf>> = batch
            .par_iter()
            .map_init(
                || vec![0u8; 256 * 1024],
                |buf, up| write_object_to_tmp(target, up, source, progress, buf),
            )
            .collect();
        if let Some(pos) = written.iter().position(Result::is_err) {
            for w in written.iter().flatten() {
                let _ = fs::remove_file(w);
            }
            return Err(written
                .into_iter()
                .nth(pos)
                .and_then(Result::err)
                .unwrap_or_else(|| TargetError::Other("upload failed".into())));
        }
        let written: Vec<PathBuf> = written.into_iter().flatten().collect();
        if tx.send((written, batch)).is_err() {
            // The flusher failed; it reports why.
            return Ok(());
        }
        start = end;
    }
    Ok(())
}

/// Makes each batch durable, then publishes it; stops at the first error.
fn flush_batches(target: &LocalTarget, rx: mpsc::Receiver<Written<'_>>) -> TargetResult<()> {
    for (written, batch) in rx {
        kill_point(points::UPLOAD_BEFORE_SYNC);
        // An object is never visible in objects/ before its bytes are on disk.
        wait_written(&written)?;
        for (tmp, up) in written.into_iter().zip(batch) {
            target.publish_object(&tmp, &up.id)?;
            kill_point(points::UPLOAD_PUBLISHED);
        }
    }
    Ok(())
}

/// Copies one object from `source` into `tmp/` (writeback started, mode set),
/// returning the temp path.
fn write_object_to_tmp(
    target: &LocalTarget,
    upload: &Upload,
    source: &dyn BlobSource,
    progress: &dyn Progress,
    buf: &mut [u8],
) -> TargetResult<PathBuf> {
    let blob_err = |e: io::Error| TargetError::Blob {
        object: source.describe(upload),
        source: e,
    };
    relstore_core::cancel::check()?;
    kill_point(points::UPLOAD_OBJECT);
    let mut reader = source.open(upload).map_err(blob_err)?;
    let tmp = target.tmp_name("obj");
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    let result = (|| -> TargetResult<()> {
        loop {
            let n = match reader.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(blob_err(e)),
            };
            out.write_all(&buf[..n])
                .map_err(|e| io_err("write", &tmp, e))?;
            progress.advance(n as u64);
            relstore_core::cancel::check()?;
        }
        start_writeback(&out);
        out.set_permissions(fs::Permissions::from_mode(upload.id.mode))
            .map_err(|e| io_err("set mode of", &tmp, e))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}
