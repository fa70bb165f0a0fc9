//! Requests of the `@openssh.com` extensions that are not renames or links:
//! `fsync`, `statvfs`, and a raw call for any other extension.

use super::{expect_status, unexpected};
use crate::sftp::error::{SftpError, SftpResult, Subject};
use crate::sftp::proto::{self, Decoder, Encoder};
use crate::sftp::{Handle, SftpClient, StatVfs, EXT_FSYNC, EXT_STATVFS};

impl SftpClient {
    /// Starts an EXTENDED packet for extension `name` with room for `payload_len`.
    pub(super) fn extended_packet(name: &str, payload_len: usize) -> Encoder {
        let mut e = Self::request(proto::FXP_EXTENDED, name.len() + 4 + payload_len);
        e.string(name.as_bytes());
        e
    }

    /// Fails unless the server announced extension `name`.
    pub(super) fn require(&self, name: &str) -> SftpResult<()> {
        if self.has_extension(name) {
            Ok(())
        } else {
            Err(SftpError::ExtensionUnsupported(name.to_string()))
        }
    }

    /// `fsync(2)` of an open file (`fsync@openssh.com`): its data is on disk once this
    /// returns.
    pub async fn fsync(&self, handle: &Handle) -> SftpResult<()> {
        self.require(EXT_FSYNC)?;
        self.status(
            Self::fsync_packet(handle),
            "fsync",
            Subject::one(&handle.path),
        )
        .await
    }

    /// Builds an fsync packet (id placeholder), for callers that queue it themselves.
    pub(in crate::sftp) fn fsync_packet(handle: &Handle) -> Vec<u8> {
        let mut e = Self::extended_packet(EXT_FSYNC, handle.raw.len() + 4);
        e.string(&handle.raw);
        e.finish()
    }

    /// `statvfs(3)` of the file system holding `path` (`statvfs@openssh.com`).
    pub async fn statvfs(&self, path: &[u8]) -> SftpResult<StatVfs> {
        self.require(EXT_STATVFS)?;
        let mut e = Self::extended_packet(EXT_STATVFS, path.len() + 4);
        e.string(path);
        let r = self.send(e.finish()).await?;
        if r.kind != proto::FXP_EXTENDED_REPLY {
            return Err(unexpected(
                r,
                "statvfs",
                Subject::one(path),
                "EXTENDED_REPLY",
            ));
        }
        let mut d = Decoder::new(&r.data[5..], "statvfs reply");
        Ok(StatVfs {
            bsize: d.u64()?,
            frsize: d.u64()?,
            blocks: d.u64()?,
            bfree: d.u64()?,
            bavail: d.u64()?,
            files: d.u64()?,
            ffree: d.u64()?,
            favail: d.u64()?,
            fsid: d.u64()?,
            flag: d.u64()?,
            namemax: d.u64()?,
        })
    }

    /// Sends extension request `name` with an already encoded `payload` (the fields
    /// after the name). Returns the EXTENDED_REPLY payload, or `None` for an OK status.
    /// Does not check that the server announced `name`.
    pub async fn extended(&self, name: &str, payload: &[u8]) -> SftpResult<Option<Vec<u8>>> {
        let mut e = Self::extended_packet(name, payload.len());
        e.raw(payload);
        let r = self.send(e.finish()).await?;
        match r.kind {
            proto::FXP_EXTENDED_REPLY => {
                let mut data = r.data;
                data.drain(..5);
                Ok(Some(data))
            }
            _ => expect_status(r, "call extension", Subject::one(name.as_bytes())).map(|()| None),
        }
    }
}
