//! Streaming upload of one file with several WRITE requests in flight.
//!
//! One WRITE at a time costs a round trip per chunk; over a 20 ms link that caps a
//! 255 KiB chunk size at ~12 MiB/s. [`FileWriter`] keeps up to
//! [`super::SftpConfig::writes_in_flight_per_file`] writes outstanding (each in its own
//! task, so they progress while the caller produces the next chunk), checks every
//! reply, and closes the handle with its status checked — the data-losing traps of
//! fire-and-forget writes and unchecked closes do not exist here.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::{Handle, SftpClient, SftpError, SftpResult, Subject};

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
    in_flight: JoinSet<SftpResult<()>>,
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
            in_flight: JoinSet::new(),
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

    /// Waits for one outstanding write; its failure is returned.
    async fn reap_one(&mut self) -> SftpResult<()> {
        match self.in_flight.join_next().await {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(e)) => Err(SftpError::Closed(format!(
                "write task for {} did not finish: {e}",
                Subject::one(self.path())
            ))),
        }
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
            while let Some(done) = self.in_flight.try_join_next() {
                match done {
                    Ok(r) => r?,
                    Err(e) => {
                        return Err(SftpError::Closed(format!(
                            "write task for {} did not finish: {e}",
                            Subject::one(handle.path())
                        )))
                    }
                }
            }
            let pkt = SftpClient::write_packet(&handle, self.offset, chunk);
            let client = self.client.clone();
            let subject = Subject::one(handle.path());
            self.in_flight
                .spawn(async move { client.status(pkt, "write", subject).await });
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

    /// Waits for every write, fsyncs if asked (`fsync@openssh.com`; an error if the
    /// server lacks it), then closes. Returns the file's length. The handle is closed
    /// even when a write failed; the first error wins.
    pub async fn finish(mut self, fsync: bool) -> SftpResult<u64> {
        let mut result = Ok(());
        while !self.in_flight.is_empty() {
            let r = self.reap_one().await;
            if result.is_ok() {
                result = r;
            }
        }
        let Some(handle) = self.handle.take() else {
            return Err(SftpError::Closed("file writer already finished".into()));
        };
        if fsync && result.is_ok() {
            result = self.client.fsync(&handle).await;
        }
        let closed = self.client.close(&handle).await;
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
