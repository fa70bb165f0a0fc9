//! Directories: listing, creating and removing them.

use super::expect_names;
use crate::sftp::error::{SftpResult, Subject};
use crate::sftp::proto;
use crate::sftp::{DirEntry, FileAttrs, Handle, SftpClient};

impl SftpClient {
    /// Opens a directory for [`SftpClient::readdir`].
    pub async fn opendir(&self, path: &[u8]) -> SftpResult<Handle> {
        let mut e = Self::request(proto::FXP_OPENDIR, path.len() + 4);
        e.string(path);
        self.handle_request(e.finish(), "opendir", path).await
    }

    /// Next batch of entries (OpenSSH sends up to 100), `None` when the listing is
    /// complete. Includes `.` and `..`.
    pub async fn readdir(&self, handle: &Handle) -> SftpResult<Option<Vec<DirEntry>>> {
        let mut e = Self::request(proto::FXP_READDIR, handle.raw.len() + 4);
        e.string(&handle.raw);
        let r = self.send(e.finish()).await?;
        expect_names(r, "readdir", Subject::one(&handle.path))
    }

    /// Lists a whole directory (without `.` and `..`), closing the handle whatever
    /// happens.
    pub async fn read_dir(&self, path: &[u8]) -> SftpResult<Vec<DirEntry>> {
        let h = self.opendir(path).await?;
        let mut all = Vec::new();
        let listed = loop {
            match self.readdir(&h).await {
                Ok(Some(batch)) => all.extend(
                    batch
                        .into_iter()
                        .filter(|e| e.name != b"." && e.name != b".."),
                ),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let closed = self.close(&h).await;
        listed?;
        closed?;
        Ok(all)
    }

    /// Creates a directory with permission bits `mode` (the server's umask applies).
    pub async fn mkdir(&self, path: &[u8], mode: u32) -> SftpResult<()> {
        let mut e = Self::request(proto::FXP_MKDIR, path.len() + 12);
        e.string(path).attrs(&FileAttrs::with_permissions(mode));
        self.status(e.finish(), "mkdir", Subject::one(path)).await
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, path: &[u8]) -> SftpResult<()> {
        self.path_status(proto::FXP_RMDIR, "rmdir", path).await
    }
}
