//! Opening, reading, writing and closing files through handles.

use futures::StreamExt;

use super::{status_code, unexpected};
use crate::sftp::error::{SftpResult, Subject};
use crate::sftp::proto::{self, Decoder};
use crate::sftp::{FileAttrs, Handle, OpenFlags, SftpClient};

impl SftpClient {
    /// Opens `path` with `flags`; `attrs` (usually only permissions) apply when the file
    /// is created. OpenSSH passes the permissions to `open(2)`, so the server's umask
    /// applies; use [`SftpClient::fsetstat`] for exact modes.
    pub async fn open(
        &self,
        path: &[u8],
        flags: OpenFlags,
        attrs: &FileAttrs,
    ) -> SftpResult<Handle> {
        let mut e = Self::request(proto::FXP_OPEN, path.len() + 40);
        e.string(path).u32(flags.bits()).attrs(attrs);
        self.handle_request(e.finish(), "open", path).await
    }

    /// Creates a new file for writing (`CREAT | EXCL | WRITE`): fails if `path`
    /// exists (as a generic [`crate::sftp::SftpError::Failure`]).
    pub async fn create(&self, path: &[u8], mode: u32) -> SftpResult<Handle> {
        self.open(
            path,
            OpenFlags::CREAT | OpenFlags::EXCL | OpenFlags::WRITE,
            &FileAttrs::with_permissions(mode),
        )
        .await
    }

    /// Closes a file or directory handle. OpenSSH reports errors of `close(2)` here
    /// (e.g. a full disk on NFS): always check it after writing.
    pub async fn close(&self, handle: &Handle) -> SftpResult<()> {
        self.status(
            Self::close_packet(handle),
            "close",
            Subject::one(&handle.path),
        )
        .await
    }

    /// Builds a CLOSE packet (id placeholder), for callers that queue it themselves.
    pub(in crate::sftp) fn close_packet(handle: &Handle) -> Vec<u8> {
        let mut e = Self::request(proto::FXP_CLOSE, handle.raw.len() + 4);
        e.string(&handle.raw);
        e.finish()
    }

    /// Reads up to `len` bytes at `offset`; `None` at end of file. The server may
    /// return fewer bytes than asked; `len` is capped at
    /// [`crate::sftp::Limits::max_read_len`].
    pub async fn read(
        &self,
        handle: &Handle,
        offset: u64,
        len: u32,
    ) -> SftpResult<Option<Vec<u8>>> {
        let len = len.min(self.inner.limits.max_read_len);
        let mut e = Self::request(proto::FXP_READ, handle.raw.len() + 16);
        e.string(&handle.raw).u64(offset).u32(len);
        let r = self.send(e.finish()).await?;
        match r.kind {
            proto::FXP_DATA => {
                let n = Decoder::new(&r.data[5..], "DATA").string()?.len();
                let mut data = r.data;
                data.drain(..9);
                data.truncate(n);
                Ok(Some(data))
            }
            proto::FXP_STATUS if status_code(&r)? == proto::FX_EOF => Ok(None),
            _ => Err(unexpected(r, "read", Subject::one(&handle.path), "DATA")),
        }
    }

    /// Builds a WRITE packet (id placeholder) for `data`, which must fit the limits.
    pub(in crate::sftp) fn write_packet(handle: &Handle, offset: u64, data: &[u8]) -> Vec<u8> {
        let mut e = Self::request(proto::FXP_WRITE, handle.raw.len() + data.len() + 16);
        e.string(&handle.raw).u64(offset).string(data);
        e.finish()
    }

    /// Writes `data` at `offset`. Data larger than
    /// [`crate::sftp::Limits::max_write_len`] is split into WRITE requests of which
    /// [`crate::sftp::SftpConfig::writes_in_flight_per_file`] are in flight at once (so
    /// a huge buffer is not copied into packets all at once).
    pub async fn write(&self, handle: &Handle, offset: u64, data: &[u8]) -> SftpResult<()> {
        let chunk = self.inner.limits.max_write_len as usize;
        let subject = || Subject::one(&handle.path);
        if data.len() <= chunk {
            return self
                .status(Self::write_packet(handle, offset, data), "write", subject())
                .await;
        }
        // A plain loop rather than stream combinators over closures: those make the
        // future lose `Send` (higher-ranked lifetime inference), and callers spawn it.
        let window = self.inner.config.writes_in_flight_per_file.max(1);
        let mut in_flight = futures::stream::FuturesUnordered::new();
        for (i, c) in data.chunks(chunk).enumerate() {
            if in_flight.len() >= window {
                if let Some(r) = in_flight.next().await {
                    r?;
                }
            }
            let pkt = Self::write_packet(handle, offset + (i * chunk) as u64, c);
            in_flight.push(self.status(pkt, "write", subject()));
        }
        while let Some(r) = in_flight.next().await {
            r?;
        }
        Ok(())
    }
}
