//! Reading and changing file attributes (sizes, modes, times, owners).

use super::expect_attrs;
use crate::sftp::error::{SftpResult, Subject};
use crate::sftp::proto;
use crate::sftp::{FileAttrs, Handle, SftpClient};

impl SftpClient {
    /// Attributes of `path`, following symlinks.
    pub async fn stat(&self, path: &[u8]) -> SftpResult<FileAttrs> {
        self.path_attrs(proto::FXP_STAT, "stat", path).await
    }

    /// Attributes of `path` itself (a symlink is reported as a symlink).
    pub async fn lstat(&self, path: &[u8]) -> SftpResult<FileAttrs> {
        self.path_attrs(proto::FXP_LSTAT, "lstat", path).await
    }

    /// Attributes of an open file.
    pub async fn fstat(&self, handle: &Handle) -> SftpResult<FileAttrs> {
        let mut e = Self::request(proto::FXP_FSTAT, handle.raw.len() + 4);
        e.string(&handle.raw);
        let r = self.send(e.finish()).await?;
        expect_attrs(r, "fstat", Subject::one(&handle.path))
    }

    /// Changes attributes of `path` (follows symlinks; OpenSSH applies size, then
    /// permissions, then times, then owner).
    pub async fn setstat(&self, path: &[u8], attrs: &FileAttrs) -> SftpResult<()> {
        let mut e = Self::request(proto::FXP_SETSTAT, path.len() + 40);
        e.string(path).attrs(attrs);
        self.status(e.finish(), "setstat", Subject::one(path)).await
    }

    /// Sets the permission bits of `path` exactly (no umask involved).
    pub async fn set_permissions(&self, path: &[u8], mode: u32) -> SftpResult<()> {
        self.setstat(path, &FileAttrs::with_permissions(mode)).await
    }

    /// Changes attributes of an open file.
    pub async fn fsetstat(&self, handle: &Handle, attrs: &FileAttrs) -> SftpResult<()> {
        self.status(
            Self::fsetstat_packet(handle, attrs),
            "fsetstat",
            Subject::one(&handle.path),
        )
        .await
    }

    /// Builds an FSETSTAT packet (id placeholder), for callers that queue it
    /// themselves.
    pub(in crate::sftp) fn fsetstat_packet(handle: &Handle, attrs: &FileAttrs) -> Vec<u8> {
        let mut e = Self::request(proto::FXP_FSETSTAT, handle.raw.len() + 40);
        e.string(&handle.raw).attrs(attrs);
        e.finish()
    }
}
