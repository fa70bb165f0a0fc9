//! Whole-file transfers: reading a file to its end and writing a new file, each with
//! several requests in flight, every status checked and the handle always closed.

use futures::StreamExt;
use tokio::io::AsyncRead;

use crate::sftp::error::SftpResult;
use crate::sftp::{FileAttrs, FileWriter, Handle, OpenFlags, SftpClient};

impl SftpClient {
    /// Reads a whole file with several READ requests in flight.
    pub async fn read_file(&self, path: &[u8]) -> SftpResult<Vec<u8>> {
        let h = self
            .open(path, OpenFlags::READ, &FileAttrs::default())
            .await?;
        let data = self.read_to_end(&h).await;
        let closed = self.close(&h).await;
        let data = data?;
        closed?;
        Ok(data)
    }

    /// Reads from offset 0 to the size `fstat` reports (a file that grows meanwhile is
    /// read up to that size; one that shrinks, up to its end).
    pub async fn read_to_end(&self, handle: &Handle) -> SftpResult<Vec<u8>> {
        let mut out = Vec::new();
        self.read_each(handle, |d| out.extend_from_slice(d)).await?;
        Ok(out)
    }

    /// Like [`SftpClient::read_to_end`], handing the pieces to `sink` in order instead
    /// of collecting them, so a large file can be hashed or copied without holding it
    /// in memory. Returns the bytes read.
    pub async fn read_each(&self, handle: &Handle, mut sink: impl FnMut(&[u8])) -> SftpResult<u64> {
        let size = self.fstat(handle).await?.size.unwrap_or(0);
        let chunk = u64::from(self.inner.limits.max_read_len);
        let window = self.inner.config.reads_in_flight_per_file.max(1) as u64;
        let chunks = size.div_ceil(chunk);
        let read_chunk = |i: u64| {
            let off = i * chunk;
            let len = chunk.min(size - off) as u32;
            async move { (off, self.read(handle, off, len).await) }
        };
        // In order, `window` at a time (a loop, not stream combinators: see `write`).
        let mut replies = futures::stream::FuturesOrdered::new();
        let mut next = 0u64;
        while next < chunks.min(window) {
            replies.push_back(read_chunk(next));
            next += 1;
        }
        let mut pos = 0u64;
        while let Some((off, reply)) = replies.next().await {
            if next < chunks {
                replies.push_back(read_chunk(next));
                next += 1;
            }
            // A short reply leaves a gap before this chunk: fill it in order.
            while pos < off {
                match self
                    .read(handle, pos, (off - pos).min(chunk) as u32)
                    .await?
                {
                    Some(d) if !d.is_empty() => {
                        pos += d.len() as u64;
                        sink(&d);
                    }
                    _ => return Ok(pos),
                }
            }
            match reply? {
                Some(d) => {
                    pos += d.len() as u64;
                    sink(&d);
                }
                None => return Ok(pos),
            }
        }
        Ok(pos)
    }

    /// Starts writing a new file (`CREAT | EXCL | WRITE` with `mode`); see
    /// [`FileWriter`].
    pub async fn create_file(&self, path: &[u8], mode: u32) -> SftpResult<FileWriter> {
        let handle = self.create(path, mode).await?;
        Ok(FileWriter::new(self.clone(), handle))
    }

    /// Writes a new file from memory: create exclusively, pipelined WRITEs, optional
    /// `fsync@openssh.com`, close — every status checked. On error the handle is
    /// closed and the partial file is left for the caller to remove.
    pub async fn write_file(
        &self,
        path: &[u8],
        data: &[u8],
        mode: u32,
        fsync: bool,
    ) -> SftpResult<()> {
        let mut w = self.create_file(path, mode).await?;
        w.write(data).await?;
        w.finish(fsync).await.map(|_| ())
    }

    /// Like [`SftpClient::write_file`], streaming from `reader`; returns the bytes
    /// written.
    pub async fn write_file_from<R>(
        &self,
        path: &[u8],
        reader: R,
        mode: u32,
        fsync: bool,
    ) -> SftpResult<u64>
    where
        R: AsyncRead + Unpin,
    {
        let mut w = self.create_file(path, mode).await?;
        w.copy_from(reader).await?;
        w.finish(fsync).await
    }
}
