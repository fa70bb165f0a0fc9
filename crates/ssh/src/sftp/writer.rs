//! Streaming upload of one file with several WRITE requests in flight.
//!
//! One WRITE at a time costs a round trip per chunk; over a 20 ms link that caps a
//! 255 KiB chunk size at ~12 MiB/s. [`FileWriter`] keeps up to
//! [`super::SftpConfig::writes_in_flight_per_file`] writes outstanding (queued on the
//! wire at once; the server works on them while the caller produces the next chunk),
//! checks every reply, and closes the handle with its status checked — the
//! data-losing traps of fire-and-forget writes and unchecked closes do not exist here.
//!
//! [`FileWriter::finish`] does not wait for the writes before sending what ends the
//! file: the writes, an optional fsetstat, fsync and close go out back to back and
//! their replies are checked together, so a small file costs one round trip after
//! its open instead of four. That is sound because the requests are queued in order
//! by one task (see `SftpClient::enqueue`) and OpenSSH's server handles a channel's
//! requests one after another, in order (the SFTP drafts require in-order processing
//! of requests on the same handle): the fsync runs after every write it must cover.
//! Anything that must not happen unless the file is complete (the rename that
//! publishes it) still waits for `finish` to return.

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{FileAttrs, Handle, SftpClient, SftpError, SftpResult, Subject, EXT_FSYNC};

/// A file being written; obtained from [`SftpClient::create_file`].
///
/// Call [`FileWriter::finish`]: it waits for every write, optionally fsyncs, and closes
/// the handle, reporting the first error. Dropped without `finish`, the writes still in
/// flight are abandoned and the handle is closed in the background with errors
/// ignored — only acceptable after another error.
pub struct FileWriter {
    client: SftpClient,
    handle: Option<Handle>,
    offset: u64,
    chunk: usize,
    window: usize,
    in_flight: FuturesUnordered<BoxFuture<'static, SftpResult<()>>>,
}

impl FileWriter {
    pub(super) fn new(client: SftpClient, handle: Handle) -> FileWriter {
        let chunk = client.limits().max_write_len as usize;
        let window = client.config().writes_in_flight_per_file.max(1);
        FileWriter {
            client,
            handle: Some(handle),
            offset: 0,
            chunk,
            window,
            in_flight: FuturesUnordered::new(),
        }
    }

    /// The open handle.
    pub fn handle(&self) -> Option<&Handle> {
        self.handle.as_ref()
    }

    /// Bytes queued so far (the offset of the next write).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// The largest chunk one WRITE request carries.
    pub fn chunk_len(&self) -> usize {
        self.chunk
    }

    fn path(&self) -> &[u8] {
        self.handle.as_ref().map(|h| h.path()).unwrap_or(b"")
    }

    /// Waits for one outstanding request; its failure is returned.
    async fn reap_one(&mut self) -> SftpResult<()> {
        self.in_flight.next().await.unwrap_or(Ok(()))
    }

    /// Queues `pkt` behind everything this writer queued before and tracks its reply.
    async fn queue(&mut self, pkt: Vec<u8>, op: &'static str, handle: &Handle) -> SftpResult<()> {
        let rx = self.client.enqueue(pkt).await?;
        let client = self.client.clone();
        let subject = Subject::one(handle.path());
        self.in_flight.push(Box::pin(async move {
            client.reply_status(rx, op, subject).await
        }));
        Ok(())
    }

    /// Queues `data` at the current offset, split into chunks; returns once every
    /// chunk is sent or queued and at most the window's worth is outstanding. An
    /// error of any earlier write of this file is returned here (or by `finish`).
    pub async fn write(&mut self, data: &[u8]) -> SftpResult<()> {
        let Some(handle) = self.handle.clone() else {
            return Err(SftpError::Closed("file writer already finished".into()));
        };
        for chunk in data.chunks(self.chunk) {
            while self.in_flight.len() >= self.window {
                self.reap_one().await?;
            }
            // Reap finished writes early so an error surfaces promptly.
            while let Some(Some(done)) = futures::FutureExt::now_or_never(self.in_flight.next()) {
                done?;
            }
            let pkt = SftpClient::write_packet(&handle, self.offset, chunk);
            self.queue(pkt, "write", &handle).await?;
            self.offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Copies `reader` to the end into the file, reading whole chunks; returns the
    /// bytes copied.
    pub async fn copy_from<R: AsyncRead + Unpin>(&mut self, mut reader: R) -> SftpResult<u64> {
        let mut buf = vec![0u8; self.chunk];
        let mut total = 0u64;
        loop {
            // Fill the whole chunk (a reader may return little at a time) so WRITE
            // requests stay large.
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|source| SftpError::Io {
                        context: format!(
                            "reading the data to upload to {}",
                            Subject::one(self.path())
                        ),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(total);
            }
            self.write(&buf[..filled]).await?;
            total += filled as u64;
            if filled < buf.len() {
                return Ok(total);
            }
        }
    }

    /// Ends the file: fsync if asked (`fsync@openssh.com`; an error if the server
    /// lacks it), then close, sent right behind the writes (see the module docs), and
    /// waits for every reply. Returns the file's length. The handle is closed even
    /// when a write failed; the first error wins.
    pub async fn finish(self, fsync: bool) -> SftpResult<u64> {
        self.finish_with(None, fsync).await
    }

    /// Like [`FileWriter::finish`], setting `attrs` on the open file (fsetstat)
    /// before the fsync — e.g. the exact permission bits, which the server's umask may
    /// have changed at create time — in the same round trip.
    pub async fn finish_with(mut self, attrs: Option<&FileAttrs>, fsync: bool) -> SftpResult<u64> {
        let Some(handle) = self.handle.take() else {
            return Err(SftpError::Closed("file writer already finished".into()));
        };
        let mut result = Ok(());
        if fsync && !self.client.has_extension(EXT_FSYNC) {
            result = Err(SftpError::ExtensionUnsupported(EXT_FSYNC.to_string()));
        }
        if result.is_ok() {
            if let Some(a) = attrs {
                result = self
                    .queue(SftpClient::fsetstat_packet(&handle, a), "fsetstat", &handle)
                    .await;
            }
        }
        if result.is_ok() && fsync {
            result = self
                .queue(SftpClient::fsync_packet(&handle), "fsync", &handle)
                .await;
        }
        // Close whatever happened: a handle must not leak for the rest of the session.
        let closed = self
            .queue(SftpClient::close_packet(&handle), "close", &handle)
            .await;
        while !self.in_flight.is_empty() {
            let r = self.reap_one().await;
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        closed?;
        Ok(self.offset)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        // Abandoned (an error elsewhere, or a cancelled task): do not leak the server's
        // handle for the rest of the session. Best effort, errors have nowhere to go.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            rt.spawn(async move {
                let _ = client.close(&handle).await;
            });
        }
    }
}
