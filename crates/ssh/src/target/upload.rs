//! Uploading objects: many files in flight, each with its writes pipelined.
//!
//! The content comes from a [`BlobSource`], which is blocking (local files, a
//! hash-checking reader) and borrowed, so it is read on a few scoped OS threads, not
//! on the runtime. Each reader thread takes the next object, announces it on a
//! bounded channel and streams its chunks through a small per-object channel; the
//! async side uploads up to [`UPLOADS_IN_FLIGHT`] announced objects at once. Memory
//! stays bounded (announced objects × a few chunks), and a failure anywhere stops
//! the readers (their channels close).
//!
//! Each object: `tmp/obj-…` created exclusively, written, mode set exactly,
//! `fsync@openssh.com` (when offered), closed, then renamed into `objects/xx/` with
//! `posix-rename@openssh.com` (creating `objects/xx/` on first use). An object is
//! therefore never visible in `objects/` before its bytes are durable.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::TryStreamExt;
use relstore_core::failpoint::kill_point;
use relstore_core::progress::Progress;
use relstore_core::target::{BlobSource, TargetError, TargetResult, Upload};
use tokio::sync::mpsc;

use super::SftpTarget;
use crate::sftp::FileAttrs;

/// Objects being uploaded at once.
const UPLOADS_IN_FLIGHT: usize = 96;
/// Threads reading content from the blob source.
const READERS: usize = 4;
/// Chunks buffered per object between its reader and its upload.
const CHUNKS_AHEAD: usize = 4;

enum Piece {
    Data(Vec<u8>),
    Done,
    Failed(io::Error),
}

type Announce = (usize, mpsc::Receiver<Piece>);

pub(super) fn put_objects(
    t: &SftpTarget,
    uploads: &[Upload],
    source: &dyn BlobSource,
    progress: &dyn Progress,
) -> TargetResult<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let chunk = t.channels[0].limits().max_write_len.max(4096) as usize;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (announce_tx, announce_rx) = mpsc::channel::<Announce>(UPLOADS_IN_FLIGHT);
    std::thread::scope(|scope| {
        for _ in 0..READERS.min(uploads.len()) {
            let tx = announce_tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || reader_loop(uploads, source, chunk, next, stop, tx));
        }
        drop(announce_tx);
        let result = t.run(async move {
            let announced = futures::stream::unfold(announce_rx, |mut rx| async move {
                rx.recv().await.map(|a| (Ok::<_, TargetError>(a), rx))
            });
            announced
                .try_for_each_concurrent(UPLOADS_IN_FLIGHT, |(i, rx)| {
                    upload_one(t, &uploads[i], rx, source, progress)
                })
                .await
        });
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    })
}

/// Runs on a reader thread: takes objects in turn and streams their content.
fn reader_loop(
    uploads: &[Upload],
    source: &dyn BlobSource,
    chunk: usize,
    next: &AtomicUsize,
    stop: &AtomicBool,
    announce: mpsc::Sender<Announce>,
) {
    loop {
        if stop.load(Ordering::Relaxed) || relstore_core::cancel::requested() {
            return;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(up) = uploads.get(i) else { return };
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        if announce.blocking_send((i, rx)).is_err() {
            return; // the upload side gave up
        }
        let mut reader = match source.open(up) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Piece::Failed(e));
                continue;
            }
        };
        loop {
            let mut buf = vec![0u8; chunk.min(up.size.max(1) as usize).max(1)];
            let mut filled = 0;
            let mut failed = None;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                let _ = tx.blocking_send(Piece::Failed(e));
                break;
            }
            if filled == 0 {
                let _ = tx.blocking_send(Piece::Done);
                break;
            }
            buf.truncate(filled);
            if tx.blocking_send(Piece::Data(buf)).is_err() {
                break;
            }
        }
    }
}

async fn upload_one(
    t: &SftpTarget,
    up: &Upload,
    mut rx: mpsc::Receiver<Piece>,
    source: &dyn BlobSource,
    progress: &dyn Progress,
) -> TargetResult<()> {
    // Interrupted: stop before starting another object (what is written is in tmp/).
    relstore_core::cancel::check()?;
    kill_point("upload.object");
    let c = t.client();
    let tmp = t.tmp_path("obj");
    let blob_err = |e: io::Error| TargetError::Blob {
        object: source.describe(up),
        source: e,
    };
    let mut w = c
        .create_file(&tmp, 0o600)
        .await
        .map_err(|e| t.io_err("create", &tmp, e))?;
    let streamed = async {
        loop {
            match rx.recv().await {
                Some(Piece::Data(d)) => {
                    relstore_core::cancel::check()?;
                    w.write(&d).await.map_err(|e| t.io_err("write", &tmp, e))?;
                    progress.advance(d.len() as u64);
                }
                Some(Piece::Done) => return Ok(()),
                Some(Piece::Failed(e)) => return Err(blob_err(e)),
                None => {
                    return Err(blob_err(io::Error::other(
                        "the reader stopped before the end of the content",
                    )))
                }
            }
        }
    }
    .await;
    let result = match streamed {
        Ok(()) => {
            let set_mode = match w.handle() {
                Some(h) => c
                    .fsetstat(h, &FileAttrs::with_permissions(up.id.mode))
                    .await
                    .map_err(|e| t.io_err("set mode of", &tmp, e)),
                None => Ok(()),
            };
            kill_point("upload.before_sync");
            let finished = w
                .finish(t.has_fsync)
                .await
                .map_err(|e| t.io_err("write", &tmp, e));
            match (set_mode, finished) {
                (Ok(()), Ok(n)) if n == up.size => Ok(()),
                (Ok(()), Ok(n)) => Err(blob_err(io::Error::other(format!(
                    "the content is {n} bytes, {} were expected",
                    up.size
                )))),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
        Err(e) => {
            drop(w);
            Err(e)
        }
    };
    if let Err(e) = result {
        let _ = c.remove(&tmp).await;
        return Err(e);
    }
    if let Err(e) = publish(t, &tmp, up).await {
        let _ = c.remove(&tmp).await;
        return Err(e);
    }
    kill_point("upload.published");
    Ok(())
}

/// Renames a complete temp object into `objects/`, creating its prefix directory on
/// first use.
async fn publish(t: &SftpTarget, tmp: &[u8], up: &Upload) -> TargetResult<()> {
    let c = t.client();
    let dest = t.p(&up.id.rel_path());
    match c.posix_rename(tmp, &dest).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => {
            if let Some(slash) = dest.iter().rposition(|b| *b == b'/') {
                let parent = &dest[..slash];
                t.mkdir_existing_ok(parent, 0o755)
                    .await
                    .map_err(|e| t.io_err("create directory", parent, e))?;
            }
            c.posix_rename(tmp, &dest)
                .await
                .map_err(|e| t.io_err("rename into place", &dest, e))
        }
        Err(e) => Err(t.io_err("rename into place", &dest, e)),
    }
}
