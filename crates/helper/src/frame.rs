//! Frames: how messages are cut into length-prefixed pieces on the byte stream, and
//! how the bytes each way are counted.
//!
//! A frame is a 4-byte little-endian header followed by at most [`MAX_FRAME`] bytes of
//! payload. The header's low 31 bits are the payload length; its top bit says that
//! the message continues in the next frame. A message is one bincode-encoded value
//! (serde, standard configuration) spread over one or more frames; the receiver
//! grows its buffer frame by frame, so a corrupt length can never make it allocate
//! more than one frame ahead of the bytes that actually arrived, and a message larger
//! than [`MAX_MESSAGE`] is refused.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::HelperError;

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest message: above the largest manifest relstore accepts (2 GiB of entries,
/// compressed), far below what a corrupt length could ask for.
pub const MAX_MESSAGE: usize = 3 << 30;
const MORE: u32 = 1 << 31;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE>()
}

/// Bytes that crossed the stream, each way, shared between a connection and whoever
/// reports on it.
#[derive(Debug, Default)]
pub struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireTotals {
    /// Bytes written to the stream, frame headers and greeting included.
    pub sent: u64,
    /// Bytes read from the stream.
    pub received: u64,
}

impl Counters {
    /// The totals so far.
    pub fn totals(&self) -> WireTotals {
        WireTotals {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Counts bytes sent around the counting writer (the client's `Cancel`).
    pub(crate) fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts what passes through to the underlying reader.
pub(crate) struct CountingReader<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts what passes through to the underlying writer.
pub(crate) struct CountingWriter<W> {
    inner: W,
    counters: Arc<Counters>,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The receiving half of a connection.
pub(crate) struct FrameReader<R> {
    inner: BufReader<CountingReader<R>>,
}

/// The sending half of a connection.
pub(crate) struct FrameWriter<W: Write> {
    inner: BufWriter<CountingWriter<W>>,
}

/// Wraps both halves of a byte stream, counting into `counters`.
pub(crate) fn split<R: Read, W: Write>(
    reader: R,
    writer: W,
    counters: &Arc<Counters>,
) -> (FrameReader<R>, FrameWriter<W>) {
    let r = CountingReader {
        inner: reader,
        counters: counters.clone(),
    };
    let w = CountingWriter {
        inner: writer,
        counters: counters.clone(),
    };
    (
        FrameReader {
            inner: BufReader::with_capacity(256 << 10, r),
        },
        FrameWriter {
            inner: BufWriter::with_capacity(256 << 10, w),
        },
    )
}

impl<R: Read> FrameReader<R> {
    /// Reads exactly `buf.len()` raw bytes (the greeting, which precedes framing).
    pub(crate) fn read_raw(
        &mut self,
        buf: &mut [u8],
        step: &'static str,
    ) -> Result<usize, HelperError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HelperError::io(step, e)),
            }
        }
        Ok(got)
    }

    /// Bytes already received but not yet read (no I/O: never blocks).
    pub(crate) fn buffered(&self) -> &[u8] {
        self.inner.buffer()
    }

    /// The next message; `None` when the stream ends cleanly before its first byte.
    pub(crate) fn recv<T: DeserializeOwned>(
        &mut self,
        step: &'static str,
    ) -> Result<Option<T>, HelperError> {
        let mut msg = Vec::new();
        let mut first = true;
        loop {
            let mut head = [0u8; 4];
            let got = self.read_raw(&mut head, step)?;
            if got == 0 && first {
                return Ok(None);
            }
            if got < head.len() {
                return Err(HelperError::Closed { step });
            }
            first = false;
            let word = u32::from_le_bytes(head);
            let len = (word & !MORE) as usize;
            if len > MAX_FRAME {
                return Err(HelperError::Protocol(format!(
                    "frame of {len} bytes exceeds the limit of {MAX_FRAME}"
                )));
            }
            if msg.len() + len > MAX_MESSAGE {
                return Err(HelperError::Protocol(format!(
                    "message exceeds the limit of {MAX_MESSAGE} bytes"
                )));
            }
            let start = msg.len();
            msg.resize(start + len, 0);
            if self.read_raw(&mut msg[start..], step)? < len {
                return Err(HelperError::Closed { step });
            }
            if word & MORE == 0 {
                break;
            }
        }
        let (value, used) = bincode::serde::decode_from_slice(&msg, config())
            .map_err(|e| HelperError::Protocol(format!("undecodable message while {step}: {e}")))?;
        if used != msg.len() {
            return Err(HelperError::Protocol(format!(
                "trailing bytes after a message while {step}"
            )));
        }
        Ok(Some(value))
    }

    /// Like [`FrameReader::recv`], with end of stream as an error.
    pub(crate) fn expect<T: DeserializeOwned>(
        &mut self,
        step: &'static str,
    ) -> Result<T, HelperError> {
        self.recv(step)?.ok_or(HelperError::Closed { step })
    }
}

/// `msg` as the bytes of one complete frame, for a message written outside a
/// [`FrameWriter`] (the client's `Cancel`, sent while a request is in flight).
pub(crate) fn single_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, HelperError> {
    let bytes = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| HelperError::Protocol(format!("cannot encode a message: {e}")))?;
    if bytes.len() > MAX_FRAME {
        return Err(HelperError::Protocol(format!(
            "a message of {} bytes does not fit in one frame",
            bytes.len()
        )));
    }
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&bytes);
    Ok(out)
}

impl<W: Write> FrameWriter<W> {
    /// Writes raw bytes (the greeting, which precedes framing).
    pub(crate) fn write_raw(
        &mut self,
        bytes: &[u8],
        step: &'static str,
    ) -> Result<(), HelperError> {
        self.inner
            .write_all(bytes)
            .map_err(|e| HelperError::io(step, e))
    }

    /// Queues one message; it leaves the buffer at the next [`FrameWriter::flush`] or
    /// when the buffer fills.
    pub(crate) fn send<T: Serialize>(
        &mut self,
        msg: &T,
        step: &'static str,
    ) -> Result<(), HelperError> {
        let bytes = bincode::serde::encode_to_vec(msg, config()).map_err(|e| {
            HelperError::Protocol(format!("cannot encode a message while {step}: {e}"))
        })?;
        let mut chunks = bytes.chunks(MAX_FRAME).peekable();
        if chunks.peek().is_none() {
            return self.write_raw(&0u32.to_le_bytes(), step);
        }
        while let Some(chunk) = chunks.next() {
            let more = if chunks.peek().is_some() { MORE } else { 0 };
            let word = chunk.len() as u32 | more;
            self.write_raw(&word.to_le_bytes(), step)?;
            self.write_raw(chunk, step)?;
        }
        Ok(())
    }

    /// Pushes everything queued to the stream.
    pub(crate) fn flush(&mut self, step: &'static str) -> Result<(), HelperError> {
        self.inner.flush().map_err(|e| HelperError::io(step, e))
    }

    /// Queues and flushes one message.
    pub(crate) fn send_now<T: Serialize>(
        &mut self,
        msg: &T,
        step: &'static str,
    ) -> Result<(), HelperError> {
        self.send(msg, step)?;
        self.flush(step)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_across_frames_and_are_counted() {
        let counters = Arc::new(Counters::default());
        let mut out = Vec::new();
        let big = vec![7u8; MAX_FRAME * 2 + 5];
        {
            let (_, mut w) = split(io::empty(), &mut out, &counters);
            w.send(&serde_bytes::ByteBuf::from(big.clone()), "t")
                .unwrap();
            w.send(&(1u32, "x".to_owned()), "t").unwrap();
            w.flush("t").unwrap();
        }
        assert_eq!(counters.totals().sent, out.len() as u64);
        let (mut r, _) = split(&out[..], io::sink(), &counters);
        let got: serde_bytes::ByteBuf = r.expect("t").unwrap();
        assert_eq!(got.into_vec(), big);
        let got: (u32, String) = r.expect("t").unwrap();
        assert_eq!(got, (1, "x".to_owned()));
        assert!(r.recv::<u32>("t").unwrap().is_none());
        assert_eq!(counters.totals().received, out.len() as u64);
    }

    #[test]
    fn oversized_frames_and_cut_messages_are_refused() {
        let counters = Arc::new(Counters::default());
        let mut bad = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        bad.extend_from_slice(&[0; 16]);
        let (mut r, _) = split(&bad[..], io::sink(), &counters);
        assert!(matches!(r.recv::<u32>("t"), Err(HelperError::Protocol(_))));
        let cut = [10u8, 0, 0, 0, 1, 2];
        let (mut r, _) = split(&cut[..], io::sink(), &counters);
        assert!(matches!(
            r.recv::<u32>("t"),
            Err(HelperError::Closed { .. })
        ));
    }
}
