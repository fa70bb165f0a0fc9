//! The object stream: how new objects travel from client to helper.
//!
//! After a `PutObjects` request the client sends one zstd stream, cut into `Data`
//! messages and closed by `End`. Because it is one stream, zstd's context spans
//! objects: a page compresses against the pages sent before it, as `rsync -z` does.
//! Decompressed, the stream is a sequence of records (integers little-endian):
//!
//! ```text
//! whole:  u8 1 | hash[32] | u32 mode | u64 size | size bytes of content
//! patch:  u8 2 | hash[32] | u32 mode | u64 size | base hash[32] | u32 base mode
//!              | u64 patch_len | patch_len bytes: a zstd patch against the base object
//! end:    u8 0 | u64 number of records before this one
//! ```
//!
//! The end record makes a stream cut at a record boundary distinguishable from a
//! complete one. This module has the two adapters between messages and bytes
//! ([`DataSink`], [`DataSource`]) and the record encoding.

use std::io::{self, Read, Write};

use relstore_core::{ContentHash, ObjectId};

use crate::error::HelperError;
use crate::frame::FrameWriter;
use crate::inbox::Inbox;
use crate::proto::Request;

/// Tag of a record holding a whole object.
pub(crate) const TAG_WHOLE: u8 = 1;
/// Tag of a record holding a patch.
pub(crate) const TAG_PATCH: u8 = 2;
/// Tag of the end record.
pub(crate) const TAG_END: u8 = 0;
/// Bytes of stream per `Data` message.
const CHUNK: usize = 128 << 10;

/// A `Write` that sends what it is given as `Data` messages.
pub(crate) struct DataSink<'a, W: Write> {
    w: &'a mut FrameWriter<W>,
    buf: Vec<u8>,
}

impl<'a, W: Write> DataSink<'a, W> {
    pub(crate) fn new(w: &'a mut FrameWriter<W>) -> Self {
        DataSink {
            w,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.w
            .send(&Request::Data(chunk), "sending objects")
            .map_err(io::Error::other)
    }

    /// Sends what is buffered and closes the stream with `End`.
    pub(crate) fn finish(mut self) -> Result<(), HelperError> {
        self.send_buf().map_err(unwrap_helper_error)?;
        self.w.send_now(&Request::End, "sending objects")
    }
}

impl<W: Write> Write for DataSink<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Recovers the connection error a [`DataSink`] wrapped into an `io::Error`.
pub(crate) fn unwrap_helper_error(e: io::Error) -> HelperError {
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<HelperError>()) {
        Some(Ok(h)) => *h,
        Some(Err(other)) => HelperError::io("send objects", io::Error::new(kind, other)),
        None => HelperError::io("send objects", io::Error::from(kind)),
    }
}

/// How an object stream ended, as the helper saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Still open.
    Open,
    /// `End` arrived.
    Complete,
    /// `Abort` arrived, with the client's reason.
    Aborted(String),
}

/// A `Read` over the `Data` messages of one object stream; `End` reads as end of
/// input, `Abort` and anything else as errors.
pub(crate) struct DataSource<'a> {
    r: &'a Inbox,
    buf: Vec<u8>,
    pos: usize,
    end: StreamEnd,
    /// A broken connection: nothing more can be read.
    failed: Option<String>,
}

impl<'a> DataSource<'a> {
    pub(crate) fn new(r: &'a Inbox) -> Self {
        DataSource {
            r,
            buf: Vec::new(),
            pos: 0,
            end: StreamEnd::Open,
            failed: None,
        }
    }

    /// How the stream ended so far.
    pub(crate) fn end(&self) -> &StreamEnd {
        &self.end
    }

    /// Why the connection broke, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn next_message(&mut self) -> io::Result<()> {
        match self.r.expect("receiving objects") {
            Ok(Request::Data(d)) => {
                self.buf = d;
                self.pos = 0;
                Ok(())
            }
            Ok(Request::End) => {
                self.end = StreamEnd::Complete;
                Ok(())
            }
            Ok(Request::Abort(why)) => {
                self.end = StreamEnd::Aborted(why.clone());
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the client abandoned the upload: {why}"),
                ))
            }
            Ok(other) => {
                let msg = format!("unexpected {other:?} inside an object stream");
                self.failed = Some(msg.clone());
                Err(io::Error::new(io::ErrorKind::InvalidData, msg))
            }
            Err(e) => {
                let msg = crate::error::error_chain(&e);
                self.failed = Some(msg.clone());
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg))
            }
        }
    }

    /// Reads and drops the rest of the stream, so the next message read is the next
    /// request. Returns `false` when the connection broke.
    pub(crate) fn drain(&mut self) -> bool {
        while self.end == StreamEnd::Open && self.failed.is_none() {
            let _ = self.next_message();
        }
        self.failed.is_none()
    }
}

impl Read for DataSource<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.end != StreamEnd::Open || self.failed.is_some() {
                return match (&self.end, &self.failed) {
                    (StreamEnd::Complete, None) => Ok(0),
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object stream ended abnormally",
                    )),
                };
            }
            self.next_message()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The fixed part of a record, after its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHead {
    pub id: ObjectId,
    pub size: u64,
}

/// The extra part of a patch record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PatchHead {
    pub base: ObjectId,
    pub patch_len: u64,
}

fn put_id(out: &mut Vec<u8>, id: &ObjectId) {
    out.extend_from_slice(&id.hash.0);
    out.extend_from_slice(&id.mode.to_le_bytes());
}

/// Encodes the header of a whole-object record.
pub(crate) fn whole_header(head: &RecordHead) -> Vec<u8> {
    let mut out = vec![TAG_WHOLE];
    put_id(&mut out, &head.id);
    out.extend_from_slice(&head.size.to_le_bytes());
    out
}

/// Encodes the header of a patch record.
pub(crate) fn patch_header(head: &RecordHead, patch: &PatchHead) -> Vec<u8> {
    let mut out = vec![TAG_PATCH];
    put_id(&mut out, &head.id);
    out.extend_from_slice(&head.size.to_le_bytes());
    put_id(&mut out, &patch.base);
    out.extend_from_slice(&patch.patch_len.to_le_bytes());
    out
}

/// Encodes the end record.
pub(crate) fn end_record(records: u64) -> Vec<u8> {
    let mut out = vec![TAG_END];
    out.extend_from_slice(&records.to_le_bytes());
    out
}

fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

/// Reads a little-endian u64.
pub(crate) fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    read_array::<8>(r).map(u64::from_le_bytes)
}

/// Reads a record tag; `None` at the end of input.
pub(crate) fn read_tag(r: &mut impl Read) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        return match r.read(&mut b) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

fn read_id(r: &mut impl Read) -> io::Result<ObjectId> {
    let hash = ContentHash(read_array::<32>(r)?);
    let mode = u32::from_le_bytes(read_array::<4>(r)?);
    Ok(ObjectId { hash, mode })
}

/// Reads the fixed part of a whole or patch record.
pub(crate) fn read_head(r: &mut impl Read) -> io::Result<RecordHead> {
    let id = read_id(r)?;
    let size = read_u64(r)?;
    Ok(RecordHead { id, size })
}

/// Reads the extra part of a patch record.
pub(crate) fn read_patch_head(r: &mut impl Read) -> io::Result<PatchHead> {
    let base = read_id(r)?;
    let patch_len = read_u64(r)?;
    Ok(PatchHead { base, patch_len })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_headers_read_back() {
        let head = RecordHead {
            id: ObjectId::for_file(ContentHash::from(blake3::hash(b"x")), 0o755),
            size: 1234,
        };
        let patch = PatchHead {
            base: ObjectId::for_file(ContentHash::from(blake3::hash(b"y")), 0o644),
            patch_len: 99,
        };
        let w = whole_header(&head);
        let mut r = &w[..];
        assert_eq!(read_tag(&mut r).unwrap(), Some(TAG_WHOLE));
        assert_eq!(read_head(&mut r).unwrap(), head);
        let p = patch_header(&head, &patch);
        let mut r = &p[..];
        assert_eq!(read_tag(&mut r).unwrap(), Some(TAG_PATCH));
        assert_eq!(read_head(&mut r).unwrap(), head);
        assert_eq!(read_patch_head(&mut r).unwrap(), patch);
        assert!(r.is_empty());
        let e = end_record(5);
        let mut r = &e[..];
        assert_eq!(read_tag(&mut r).unwrap(), Some(TAG_END));
        assert_eq!(read_u64(&mut r).unwrap(), 5);
        assert_eq!(read_tag(&mut r).unwrap(), None);
    }
}
