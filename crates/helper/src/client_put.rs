//! The client's side of an object stream (format in [`crate::stream`]).
//!
//! Objects are written one after the other into one zstd stream, without waiting
//! for the helper; its single answer at the end lists the objects it could not use
//! (a patch whose base it lacks, content that did not match its id). Those are sent
//! again whole in a second stream; if the helper still refuses one, the upload fails
//! naming its source. A source that fails while being read (a file changed since it
//! was hashed) abandons the stream: the helper keeps the objects it verified before
//! and nothing of the rest.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use relstore_core::progress::Progress;
use relstore_core::target::{BlobSource, DeltaBases, Upload};
use relstore_core::{ObjectId, TargetError, TargetResult};

use crate::client::{Conn, HelperClient};
use crate::error::HelperError;
use crate::frame::FrameWriter;
use crate::patch::{make_patch, MAX_PATCH_INPUT};
use crate::proto::{Request, Response, StreamParams};
use crate::stream::{self, DataSink, PatchHead, RecordHead};

/// Why writing a stream stopped.
enum Fail {
    /// The connection failed: it cannot be used again.
    Conn(HelperError),
    /// A source failed (or Ctrl-C): the stream is abandoned, the connection stays.
    Source(TargetError),
}

fn conn_fail(e: io::Error) -> Fail {
    Fail::Conn(stream::unwrap_helper_error(e))
}

fn blob_err(source: &dyn BlobSource, upload: &Upload, e: io::Error) -> Fail {
    Fail::Source(TargetError::Blob {
        object: source.describe(upload),
        source: e,
    })
}

/// Uploads `uploads` through the helper.
pub(crate) fn put(
    client: &HelperClient,
    uploads: &[Upload],
    source: &dyn BlobSource,
    bases: Option<&dyn DeltaBases>,
    progress: &dyn Progress,
) -> TargetResult<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let mut conn = client.conn()?;
    let (stored, resend) = round(client, &mut conn, uploads, source, bases, Some(progress))?;
    if stored + resend.len() as u64 != uploads.len() as u64 {
        return Err(TargetError::Other(format!(
            "{}: the helper stored {stored} of {} objects and asked for {} again",
            client.location,
            uploads.len(),
            resend.len()
        )));
    }
    if resend.is_empty() {
        return Ok(());
    }
    client
        .stats
        .resent
        .fetch_add(resend.len() as u64, Ordering::Relaxed);
    let wanted: HashSet<ObjectId> = resend.into_iter().collect();
    let again: Vec<Upload> = uploads
        .iter()
        .filter(|u| wanted.contains(&u.id))
        .copied()
        .collect();
    let (_, refused) = round(client, &mut conn, &again, source, None, None)?;
    match refused.first().and_then(|id| again.iter().find(|u| u.id == *id)) {
        None => Ok(()),
        Some(upload) => Err(TargetError::Blob {
            object: source.describe(upload),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                "the helper received content that does not match this object's hash (the file changed since it was hashed?)",
            ),
        }),
    }
}

/// Sends one stream of `list` and returns the helper's answer: objects stored, and
/// objects to send again.
fn round(
    client: &HelperClient,
    conn: &mut Conn,
    list: &[Upload],
    source: &dyn BlobSource,
    bases: Option<&dyn DeltaBases>,
    progress: Option<&dyn Progress>,
) -> TargetResult<(u64, Vec<ObjectId>)> {
    let params = StreamParams {
        window_log: client.options.window_log,
    };
    let written = conn
        .w
        .send(&Request::PutObjects(params), "sending objects")
        .map_err(Fail::Conn)
        .and_then(|()| write_stream(client, &mut conn.w, list, source, bases, progress));
    match written {
        Ok(()) => {}
        Err(Fail::Conn(e)) => {
            conn.broken = true;
            return Err(e.into_target_error(&client.location));
        }
        Err(Fail::Source(err)) => {
            let told = conn
                .w
                .send_now(&Request::Abort(err.to_string()), "abandoning the upload")
                .and_then(|()| conn.answer(None));
            if told.is_err() {
                conn.broken = true;
            }
            return Err(err);
        }
    }
    match conn.answer(None) {
        Ok(Response::Stored { stored, resend }) => Ok((stored, resend)),
        Ok(Response::Error(e)) => Err(client.store_error(e)),
        Ok(other) => Err(client.unexpected("put_objects", &other)),
        Err(e) => {
            conn.broken = true;
            Err(e.into_target_error(&client.location))
        }
    }
}

fn write_stream<W: Write>(
    client: &HelperClient,
    w: &mut FrameWriter<W>,
    list: &[Upload],
    source: &dyn BlobSource,
    bases: Option<&dyn DeltaBases>,
    progress: Option<&dyn Progress>,
) -> Result<(), Fail> {
    let opts = &client.options;
    let mut enc =
        zstd::stream::write::Encoder::new(DataSink::new(w), opts.level).map_err(conn_fail)?;
    enc.window_log(opts.window_log).map_err(conn_fail)?;
    enc.long_distance_matching(opts.long_distance)
        .map_err(conn_fail)?;
    let mut buf = vec![0u8; 256 << 10];
    // Patches cost CPU (reading the base from the local store, zstd against it): they
    // are made in parallel a chunk at a time, then written in order.
    for chunk in list.chunks(PREPARE_CHUNK) {
        relstore_core::cancel::check().map_err(|e| Fail::Source(e.into()))?;
        let prepared: Vec<Result<Prepared, Fail>> = chunk
            .par_iter()
            .map(|upload| prepare(client, upload, source, bases))
            .collect();
        for (upload, prepared) in chunk.iter().zip(prepared) {
            match prepared? {
                Prepared::Stream => write_whole(client, &mut enc, upload, source, &mut buf)?,
                Prepared::Ready(record) => write_record(client, &mut enc, upload, record)?,
            }
            if let Some(p) = progress {
                p.advance(upload.size);
            }
        }
    }
    enc.write_all(&stream::end_record(list.len() as u64))
        .map_err(conn_fail)?;
    let sink = enc.finish().map_err(conn_fail)?;
    sink.finish().map_err(Fail::Conn)
}

/// Streams one object whole from its source.
fn write_whole(
    client: &HelperClient,
    enc: &mut impl Write,
    upload: &Upload,
    source: &dyn BlobSource,
    buf: &mut [u8],
) -> Result<(), Fail> {
    let mut reader = source
        .open(upload)
        .map_err(|e| blob_err(source, upload, e))?;
    let head = RecordHead {
        id: upload.id,
        size: upload.size,
    };
    enc.write_all(&stream::whole_header(&head))
        .map_err(conn_fail)?;
    let mut sent = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(blob_err(source, upload, e)),
        };
        if sent + n as u64 > upload.size {
            return Err(blob_err(source, upload, changed_size()));
        }
        enc.write_all(&buf[..n]).map_err(conn_fail)?;
        sent += n as u64;
    }
    if sent != upload.size {
        return Err(blob_err(source, upload, changed_size()));
    }
    client.stats.whole.fetch_add(1, Ordering::Relaxed);
    client.stats.content.fetch_add(sent, Ordering::Relaxed);
    Ok(())
}

fn changed_size() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "its size changed since it was hashed; re-run the push",
    )
}

/// Reads all of `upload`'s content (the source verifies it at the end).
fn read_all(source: &dyn BlobSource, upload: &Upload) -> Result<Vec<u8>, Fail> {
    let reader = source
        .open(upload)
        .map_err(|e| blob_err(source, upload, e))?;
    let mut content = Vec::with_capacity(upload.size as usize);
    reader
        .take(upload.size + 1)
        .read_to_end(&mut content)
        .map_err(|e| blob_err(source, upload, e))?;
    if content.len() as u64 != upload.size {
        return Err(blob_err(source, upload, changed_size()));
    }
    Ok(content)
}

/// The local copy of a base, if there is one small enough to patch against.
fn base_content(bases: &dyn DeltaBases, base: &ObjectId, limit: u64) -> Option<Vec<u8>> {
    let reader = bases.open_base(base).ok()?;
    let mut out = Vec::new();
    reader.take(limit + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= limit).then_some(out)
}

/// A patch of `content` against `base`, if it beats compressing `content` alone.
fn choose_patch(base: &[u8], content: &[u8], level: i32) -> Option<Vec<u8>> {
    let patch = make_patch(base, content, level).ok()?;
    if patch.len() * 8 <= content.len() {
        return Some(patch);
    }
    let alone = zstd::bulk::compress(content, level).ok()?;
    (patch.len() < alone.len()).then_some(patch)
}

/// Uploads prepared together: enough to keep every core busy, few enough that their
/// content in memory stays small.
const PREPARE_CHUNK: usize = 256;

/// An object ready to be written into the stream.
enum Prepared {
    /// No base to patch against: streamed from its source when its turn comes.
    Stream,
    /// Read (and patched, when that pays) ahead of its turn.
    Ready(Record),
}

/// The bytes of one object's record.
enum Record {
    Patch { base: ObjectId, patch: Vec<u8> },
    Whole(Vec<u8>),
}

/// Reads and patches `upload` when it has a base, else leaves it to be streamed.
fn prepare(
    client: &HelperClient,
    upload: &Upload,
    source: &dyn BlobSource,
    bases: Option<&dyn DeltaBases>,
) -> Result<Prepared, Fail> {
    let Some((bases, base)) = bases.and_then(|b| b.base_of(upload).map(|id| (b, id))) else {
        return Ok(Prepared::Stream);
    };
    if base == upload.id || upload.size >= MAX_PATCH_INPUT / 2 {
        return Ok(Prepared::Stream);
    }
    let content = read_all(source, upload)?;
    let patch = base_content(bases, &base, MAX_PATCH_INPUT - upload.size)
        .and_then(|b| choose_patch(&b, &content, client.options.level));
    Ok(Prepared::Ready(match patch {
        Some(patch) => Record::Patch { base, patch },
        None => Record::Whole(content),
    }))
}

/// Writes a prepared record: a patch against its base, or the whole content.
fn write_record(
    client: &HelperClient,
    enc: &mut impl Write,
    upload: &Upload,
    record: Record,
) -> Result<(), Fail> {
    let head = RecordHead {
        id: upload.id,
        size: upload.size,
    };
    match record {
        Record::Patch { base, patch } => {
            let ph = PatchHead {
                base,
                patch_len: patch.len() as u64,
            };
            enc.write_all(&stream::patch_header(&head, &ph))
                .and_then(|()| enc.write_all(&patch))
                .map_err(conn_fail)?;
            client.stats.patched.fetch_add(1, Ordering::Relaxed);
        }
        Record::Whole(content) => {
            enc.write_all(&stream::whole_header(&head))
                .and_then(|()| enc.write_all(&content))
                .map_err(conn_fail)?;
            client.stats.whole.fetch_add(1, Ordering::Relaxed);
        }
    }
    client
        .stats
        .content
        .fetch_add(upload.size, Ordering::Relaxed);
    Ok(())
}
