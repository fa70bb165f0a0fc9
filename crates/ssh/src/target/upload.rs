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
//!
//! Why it is fast (measured on loopback, see BENCHMARKS.md): the server's work per
//! object (create, write, fsync, close, rename) is done by one sftp-server process
//! per SFTP channel, one request at a time, and the fsync blocks that process on the
//! disk. So a large upload first opens more channels ([`SftpTarget::widen`]): their
//! processes run on all cores and their fsyncs, issued together, share journal
//! commits. Per object only three round trips remain: the open (which already
//! carries the final mode when the server's umask cannot change it — probed once,
//! [`SftpTarget::umask`]), then writes + fsync + close sent back to back
//! ([`crate::sftp::FileWriter::finish_with`]), then the rename, which alone waits
//! for the object to be complete and durable.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::progress::Progress;
use relstore_core::store_path;
use relstore_core::target::{BlobSource, TargetError, TargetResult, Upload};
use relstore_core::ObjectId;
use tokio::sync::mpsc;

use super::contain::kind_of;
use super::{SftpTarget, CHANNELS, LISTINGS_IN_FLIGHT, SMALL_IN_FLIGHT};
use crate::sftp::{FileAttrs, SftpClient, SftpConfig};

/// Objects being uploaded at once (spread over all channels).
const UPLOADS_IN_FLIGHT: usize = 128;
/// SFTP channels a wide operation uses in all (sshd allows `MaxSessions`, 10 by
/// default, per connection); `RELSTORE_SSH_CHANNELS` overrides it (1–64).
const WIDE_CHANNELS: usize = 8;
/// Operations with fewer requests than this do not open extra channels (opening one
/// costs a round trip and a process start on the server).
const WIDEN_FROM: usize = 256;
/// Threads reading content from the blob source.
const READERS: usize = 4;
/// Chunks buffered per object between its reader and its upload.
const CHUNKS_AHEAD: usize = 4;
/// Small objects (one WRITE) are read whole and announced in batches of up to this
/// many objects or [`BATCH_BYTES`]: one hand-over between threads per batch instead
/// of three per object (thread wake-ups were the client's largest CPU cost).
const BATCH_OBJECTS: usize = 32;
const BATCH_BYTES: usize = 1 << 20;

enum Piece {
    Data(Vec<u8>),
    Done,
    Failed(io::Error),
}

type Announce = (usize, mpsc::Receiver<Piece>);
type Batch = Vec<Announce>;

pub(super) fn put_objects(
    t: &SftpTarget,
    uploads: &[Upload],
    source: &dyn BlobSource,
    progress: &dyn Progress,
) -> TargetResult<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    t.run(async {
        t.store_dir(layout::TMP).await?;
        t.check_object_dirs(uploads.iter().map(|u| &u.id)).await
    })?;
    t.run(async {
        t.widen(uploads.len() * 4).await;
        // Probed once here, not by each of the first uploads at the same time.
        t.umask().await;
    });
    let chunk = t.channels[0].limits().max_write_len.max(4096) as usize;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (announce_tx, announce_rx) = mpsc::channel::<Batch>(UPLOADS_IN_FLIGHT / 8);
    std::thread::scope(|scope| {
        for _ in 0..READERS.min(uploads.len()) {
            let tx = announce_tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || reader_loop(uploads, source, chunk, next, stop, tx));
        }
        drop(announce_tx);
        let result = t.run(async move {
            let announced = futures::stream::unfold(announce_rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|batch| (futures::stream::iter(batch), rx))
            })
            .flatten()
            .map(Ok::<_, TargetError>);
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
    announce: mpsc::Sender<Batch>,
) {
    let mut batch: Batch = Vec::new();
    let mut batch_bytes = 0;
    loop {
        if stop.load(Ordering::Relaxed) || relstore_core::cancel::requested() {
            return;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(up) = uploads.get(i) else {
            if !batch.is_empty() {
                let _ = announce.blocking_send(batch);
            }
            return;
        };
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        if up.size <= chunk as u64 {
            // Whole, into its channel before anyone waits on it (no wake-ups).
            let pieces = match read_small(source, up, chunk) {
                Ok(d) if d.is_empty() => vec![Piece::Done],
                Ok(d) => vec![Piece::Data(d), Piece::Done],
                Err(e) => vec![Piece::Failed(e)],
            };
            for p in pieces {
                let _ = tx.try_send(p);
            }
            batch.push((i, rx));
            batch_bytes += up.size as usize;
            if batch.len() >= BATCH_OBJECTS || batch_bytes >= BATCH_BYTES {
                if announce.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return; // the upload side gave up
                }
                batch_bytes = 0;
            }
            continue;
        }
        // A large object: streamed chunk by chunk as its upload takes them.
        batch.push((i, rx));
        batch_bytes = 0;
        if announce.blocking_send(std::mem::take(&mut batch)).is_err() {
            return; // the upload side gave up
        }
        stream_large(source, up, chunk, &tx);
    }
}

/// Streams a large object to its upload chunk by chunk, as the upload takes them.
fn stream_large(source: &dyn BlobSource, up: &Upload, chunk: usize, tx: &mpsc::Sender<Piece>) {
    let mut reader = match source.open(up) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.blocking_send(Piece::Failed(e));
            return;
        }
    };
    loop {
        let mut buf = vec![0u8; chunk.min(up.size.max(1) as usize).max(1)];
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Piece::Failed(e));
                    return;
                }
            }
        }
        if filled == 0 {
            let _ = tx.blocking_send(Piece::Done);
            return;
        }
        buf.truncate(filled);
        if tx.blocking_send(Piece::Data(buf)).is_err() {
            return;
        }
    }
}

/// Reads a small object whole: at most `chunk` bytes plus one, so content that grew
/// since the scan is caught by the size check (and a file that shrank or changed by
/// the source's own checks at its end).
fn read_small(source: &dyn BlobSource, up: &Upload, chunk: usize) -> io::Result<Vec<u8>> {
    let reader = source.open(up)?;
    let mut buf = Vec::with_capacity(up.size as usize);
    reader.take(chunk as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
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
    kill_point(points::UPLOAD_OBJECT);
    let c = t.client();
    let tmp = t.tmp_path("obj");
    let blob_err = |e: io::Error| TargetError::Blob {
        object: source.describe(up),
        source: e,
    };
    // The final mode at create time when the umask leaves it alone (objects have no
    // write bits, a umask usually removes only those): one request less per object.
    let mode = up.id.mode & 0o7777;
    let exact_at_create = mode & 0o7000 == 0 && mode & t.umask().await == 0;
    let create_mode = if exact_at_create { mode } else { 0o600 };
    let mut w = c
        .create_file(&tmp, create_mode)
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
            kill_point(points::UPLOAD_BEFORE_SYNC);
            let attrs = FileAttrs::with_permissions(up.id.mode);
            let set_mode = (!exact_at_create).then_some(&attrs);
            match w.finish_with(set_mode, t.has_fsync).await {
                Ok(n) if n == up.size => Ok(()),
                Ok(n) => Err(blob_err(io::Error::other(format!(
                    "the content is {n} bytes, {} were expected",
                    up.size
                )))),
                Err(e) => Err(t.io_err("write", &tmp, e)),
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
    kill_point(points::UPLOAD_PUBLISHED);
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

impl SftpTarget {
    /// Opens the extra SFTP channels (up to [`WIDE_CHANNELS`] in all) before an
    /// operation of about `requests` requests, once per target; small operations
    /// stay on the first channels. A server that refuses more channels (a low
    /// `MaxSessions`) is used with what it allowed.
    pub(super) async fn widen(&self, requests: usize) {
        if requests < WIDEN_FROM || self.extra.get().is_some() {
            return;
        }
        let wanted = std::env::var("RELSTORE_SSH_CHANNELS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map(|n| n.clamp(1, 64))
            .unwrap_or(WIDE_CHANNELS);
        let more = wanted.saturating_sub(CHANNELS.min(self.channels.len()));
        let opened: Vec<Option<SftpClient>> = futures::future::join_all(
            (0..more).map(|_| async { self.session.open_sftp(SftpConfig::default()).await.ok() }),
        )
        .await;
        let _ = self.extra.set(opened.into_iter().flatten().collect());
    }

    /// The permission bits the server's umask (or a default ACL on `tmp/`) removes
    /// from files created there, probed once by creating a file with mode 0777.
    /// When the probe fails, every bit counts as removed (modes are then always set
    /// exactly after the create, as before).
    pub(super) async fn umask(&self) -> u32 {
        if let Some(u) = self.umask.get() {
            return *u;
        }
        let probe = self.tmp_path("umask");
        let c = self.client();
        let mask = match c.create(&probe, 0o777).await {
            Ok(h) => {
                let attrs = c.fstat(&h).await;
                let _ = c.close(&h).await;
                let _ = c.remove(&probe).await;
                match attrs.ok().and_then(|a| a.mode()) {
                    Some(m) => 0o777 & !m,
                    None => 0o7777,
                }
            }
            Err(_) => 0o7777,
        };
        *self.umask.get_or_init(|| mask)
    }
}

/// From this many objects to check on, [`missing_objects`] looks at directory
/// listings instead of one lstat per object.
const LIST_FROM: usize = 2048;

/// Which of `ids` the store lacks, in `ids`' order.
///
/// Few ids: one pipelined lstat each. Many (a first push, a big change): the
/// `objects/` listing says which prefix directories exist — every id under a missing
/// one is missing without a request, which makes the first push to an empty store
/// free — and a prefix directory holding many of the ids is read with READDIR (about
/// 100 names per reply) instead of being asked about name by name. A directory's size
/// (bytes, from the listing) estimates its entries (ext4: ~100 bytes per object
/// name); the server's work per listed entry (an lstat and an `ls -l` line) is taken
/// as a quarter of a whole request, so a directory is listed only when it holds fewer
/// than four entries per id asked about in it.
pub(super) async fn missing_objects(
    t: &SftpTarget,
    ids: &[ObjectId],
) -> TargetResult<Vec<ObjectId>> {
    // Never looked into (nor, later, written into) through a symlink out of the store.
    t.check_object_dirs(ids).await?;
    let missing = if ids.len() < LIST_FROM {
        missing_by_stat(t, ids.to_vec()).await?
    } else {
        missing_by_listing(t, ids).await?
    };
    Ok(ids
        .iter()
        .filter(|id| missing.contains(id))
        .copied()
        .collect())
}

/// Which of `ids` are not stored, one (pipelined) lstat each.
async fn missing_by_stat(t: &SftpTarget, ids: Vec<ObjectId>) -> TargetResult<HashSet<ObjectId>> {
    let flags: Vec<TargetResult<bool>> = futures::stream::iter(&ids)
        .map(|id| async move {
            let k = t.kind(&t.p(&id.rel_path())).await?;
            Ok(!store_path::object_stored(k))
        })
        .buffered(SMALL_IN_FLIGHT)
        .collect()
        .await;
    let mut missing = HashSet::new();
    for (id, flag) in ids.iter().zip(flags) {
        if flag? {
            missing.insert(*id);
        }
    }
    Ok(missing)
}

/// Which of many `ids` are not stored: prefix directories that hold many of them are
/// listed, the rest stat'ed, and absent prefixes need no request at all.
async fn missing_by_listing(t: &SftpTarget, ids: &[ObjectId]) -> TargetResult<HashSet<ObjectId>> {
    let objects = t.p(layout::OBJECTS);
    let prefixes: HashMap<Vec<u8>, u64> = t
        .client()
        .read_dir(&objects)
        .await
        .map_err(|e| t.io_err("list", &objects, e))?
        .into_iter()
        .filter(|e| e.attrs.is_dir())
        .map(|e| (e.name, e.attrs.size.unwrap_or(u64::MAX)))
        .collect();
    let mut groups: HashMap<Vec<u8>, Vec<ObjectId>> = HashMap::new();
    for id in ids {
        let rel = id.rel_path();
        // "objects/ab/cdef…": the two characters after "objects/".
        let prefix = rel.as_bytes()[layout::OBJECTS.len() + 1..][..2].to_vec();
        groups.entry(prefix).or_default().push(*id);
    }
    let mut missing = HashSet::new();
    let mut to_stat = Vec::new();
    let mut to_list = Vec::new();
    for (prefix, group) in groups {
        match prefixes.get(&prefix) {
            None => missing.extend(group),
            Some(&bytes) if bytes / 100 / 4 < group.len() as u64 => to_list.push((prefix, group)),
            Some(_) => to_stat.extend(group),
        }
    }
    let listed: Vec<TargetResult<Vec<ObjectId>>> = futures::stream::iter(to_list)
        .map(|(prefix, group)| missing_in_listing(t, &objects, prefix, group))
        .buffer_unordered(LISTINGS_IN_FLIGHT)
        .collect()
        .await;
    for l in listed {
        missing.extend(l?);
    }
    missing.extend(missing_by_stat(t, to_stat).await?);
    Ok(missing)
}

/// The objects of `group` absent from the listing of `objects/PREFIX`.
async fn missing_in_listing(
    t: &SftpTarget,
    objects: &[u8],
    prefix: Vec<u8>,
    group: Vec<ObjectId>,
) -> TargetResult<Vec<ObjectId>> {
    let mut dir = objects.to_vec();
    dir.push(b'/');
    dir.extend_from_slice(&prefix);
    let names: HashSet<Vec<u8>> = t
        .client()
        .read_dir(&dir)
        .await
        .map_err(|e| t.io_err("list", &dir, e))?
        .into_iter()
        .filter(|e| store_path::object_stored(kind_of(&e.attrs)))
        .map(|e| e.name)
        .collect();
    Ok(group
        .into_iter()
        .filter(|id| {
            let rel = id.rel_path();
            !names.contains(&rel.as_bytes()[layout::OBJECTS.len() + 4..])
        })
        .collect())
}
