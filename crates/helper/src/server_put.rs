//! The helper's side of an object stream: decode, rebuild patches, verify, store.
//!
//! Nothing reaches the store that does not hash to its id: a whole object is hashed
//! as it arrives, a patch is applied to the base object read from the store (a
//! regular file, no symlink followed) and the result hashed. Objects that fail —
//! wrong content, a missing base, a patch that does not decode — are listed for the
//! client to send again whole. A stream that ends early or breaks the format stores
//! what was complete and verified before the break and nothing of the rest.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use relstore_core::failpoint::{kill_point, points};
use relstore_core::{ContentHash, ObjectId, Target, TargetError, TargetResult};

use crate::inbox::Inbox;
use crate::patch::{apply_patch, MAX_PATCH_INPUT, MAX_WINDOW_LOG};
use crate::proto::{Response, StreamParams, WireError};
use crate::spool::Batch;
use crate::stream::{self, DataSource, StreamEnd};

/// Where the helper finds base objects and spools large ones.
pub(crate) struct PutContext {
    /// Store root whose `objects/` holds patch bases; `None`: patches are refused.
    pub base_root: Option<PathBuf>,
    /// Directory for spool files.
    pub spool_dir: PathBuf,
}

/// What receiving a stream came to.
struct Received {
    /// Objects handed to the store in full batches (the last batch is counted apart).
    stored: u64,
    resend: Vec<ObjectId>,
}

/// Receives one object stream (the `PutObjects` request was read) and returns the
/// response; `Err` only when the connection itself broke.
pub(crate) fn receive(
    r: &Inbox,
    params: StreamParams,
    target: &dyn Target,
    ctx: &PutContext,
) -> Result<Response, String> {
    let mut source = DataSource::new(r);
    let mut batch = Batch::new(ctx.spool_dir.clone());
    let result = if params.window_log > MAX_WINDOW_LOG {
        Err(TargetError::Other(format!(
            "the object stream asks for a window of 2^{} bytes; this helper allows at most 2^{MAX_WINDOW_LOG}",
            params.window_log
        )))
    } else {
        receive_records(&mut source, params, target, ctx, &mut batch)
    };
    // Objects verified before a failure are still good: store them.
    let flushed = batch.flush(target);
    if !source.drain() {
        return Err(source
            .failure()
            .unwrap_or("the connection broke inside an object stream")
            .to_owned());
    }
    let aborted = match source.end() {
        StreamEnd::Aborted(why) => Some(why.clone()),
        _ => None,
    };
    Ok(match (result, flushed, aborted) {
        (_, _, Some(why)) => Response::Error(WireError::from(&TargetError::Other(format!(
            "upload abandoned by the client: {why}"
        )))),
        (Err(e), _, None) | (Ok(_), Err(e), None) => Response::Error(WireError::from(&e)),
        (Ok(received), Ok(n), None) => Response::Stored {
            stored: received.stored + n,
            resend: received.resend,
        },
    })
}

fn stream_err(what: &str, e: io::Error) -> TargetError {
    TargetError::Other(format!("object stream {what}: {e}"))
}

fn receive_records(
    source: &mut DataSource<'_>,
    params: StreamParams,
    target: &dyn Target,
    ctx: &PutContext,
    batch: &mut Batch,
) -> TargetResult<Received> {
    let mut dec = zstd::stream::read::Decoder::new(source).map_err(|e| stream_err("decoder", e))?;
    dec.window_log_max(params.window_log.max(10))
        .map_err(|e| stream_err("decoder", e))?;
    let mut records = 0u64;
    let mut stored = 0u64;
    let mut resend = Vec::new();
    loop {
        // Interrupted (the client's Ctrl-C, forwarded): stop reading; the caller
        // drains the rest of the stream.
        relstore_core::cancel::check()?;
        let tag = stream::read_tag(&mut dec).map_err(|e| stream_err("is unreadable", e))?;
        match tag {
            None => {
                return Err(TargetError::Other(
                    "object stream is truncated (no end record)".into(),
                ))
            }
            Some(stream::TAG_END) => {
                let count = stream::read_u64(&mut dec).map_err(|e| stream_err("end", e))?;
                if count != records {
                    return Err(TargetError::Other(format!(
                        "object stream ends after {records} records but announces {count}"
                    )));
                }
                break;
            }
            Some(stream::TAG_WHOLE) => {
                let head = stream::read_head(&mut dec).map_err(|e| stream_err("record", e))?;
                if !batch.receive(head.id, head.size, &mut dec)? {
                    resend.push(head.id);
                }
            }
            Some(stream::TAG_PATCH) => match receive_patch(&mut dec, ctx)? {
                Ok((id, content)) => batch.add_memory(id, content),
                Err(id) => resend.push(id),
            },
            Some(other) => {
                return Err(TargetError::Other(format!(
                    "object stream has an unknown record type {other}"
                )))
            }
        }
        records += 1;
        kill_point(points::HELPER_STREAM_RECORD);
        if batch.is_full() {
            stored += batch.flush(target)?;
        }
    }
    let mut rest = [0u8; 1];
    if dec.read(&mut rest).map_err(|e| stream_err("trailer", e))? != 0 {
        return Err(TargetError::Other(
            "object stream has data after its end record".into(),
        ));
    }
    Ok(Received { stored, resend })
}

/// Reads a patch record and rebuilds its object: `Ok` with verified content, or
/// `Err(id)` when the object must be sent again whole. `Err` of the outer result
/// means the stream itself failed.
fn receive_patch(
    input: &mut impl Read,
    ctx: &PutContext,
) -> TargetResult<Result<(ObjectId, Vec<u8>), ObjectId>> {
    let head = stream::read_head(input).map_err(|e| stream_err("record", e))?;
    let patch_head = stream::read_patch_head(input).map_err(|e| stream_err("record", e))?;
    if patch_head.patch_len > MAX_PATCH_INPUT {
        return Err(TargetError::Other(format!(
            "object stream announces a patch of {} bytes",
            patch_head.patch_len
        )));
    }
    let mut patch = Vec::with_capacity(patch_head.patch_len as usize);
    input
        .take(patch_head.patch_len)
        .read_to_end(&mut patch)
        .map_err(|e| stream_err("patch", e))?;
    if patch.len() as u64 != patch_head.patch_len {
        return Err(stream_err("patch", io::ErrorKind::UnexpectedEof.into()));
    }
    let Some(root) = &ctx.base_root else {
        return Ok(Err(head.id));
    };
    if head.size > MAX_PATCH_INPUT {
        return Ok(Err(head.id));
    }
    let Ok(base) = read_object(root, &patch_head.base, MAX_PATCH_INPUT - head.size) else {
        return Ok(Err(head.id));
    };
    match apply_patch(&base, &patch, head.size) {
        Ok(content) if ContentHash::from(blake3::hash(&content)) == head.id.hash => {
            Ok(Ok((head.id, content)))
        }
        _ => Ok(Err(head.id)),
    }
}

/// Reads a stored object of at most `limit` bytes: a regular file under a real
/// `objects/` directory, no symlink followed on the way.
pub(crate) fn read_object(root: &Path, id: &ObjectId, limit: u64) -> io::Result<Vec<u8>> {
    let rel = id.rel_path();
    let path = root.join(&rel);
    let mut dir = root.to_path_buf();
    for part in rel.split('/').take(2) {
        dir.push(part);
        if !fs::symlink_metadata(&dir)?.file_type().is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a directory", dir.display()),
            ));
        }
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file of at most {limit} bytes",
                path.display()
            ),
        ));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "object grew while read",
        ));
    }
    Ok(out)
}
