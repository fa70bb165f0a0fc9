//! Names: removing, renaming and linking them, and resolving symlinks and paths.

use crate::sftp::error::{SftpResult, Subject};
use crate::sftp::proto;
use crate::sftp::{SftpClient, EXT_HARDLINK, EXT_POSIX_RENAME};

impl SftpClient {
    /// Removes a file or symlink (`unlink(2)`).
    pub async fn remove(&self, path: &[u8]) -> SftpResult<()> {
        self.path_status(proto::FXP_REMOVE, "remove", path).await
    }

    /// Plain SFTP rename. OpenSSH refuses to replace an existing target (it uses
    /// `link`+`unlink`); use [`SftpClient::posix_rename`] to replace atomically.
    pub async fn rename(&self, from: &[u8], to: &[u8]) -> SftpResult<()> {
        let mut e = Self::request(proto::FXP_RENAME, from.len() + to.len() + 8);
        e.string(from).string(to);
        self.status(e.finish(), "rename", Subject::two(from, to))
            .await
    }

    /// `rename(2)` on the server (`posix-rename@openssh.com`): replaces `to`
    /// atomically if it exists. This is what swaps `current`.
    pub async fn posix_rename(&self, from: &[u8], to: &[u8]) -> SftpResult<()> {
        self.require(EXT_POSIX_RENAME)?;
        let mut e = Self::extended_packet(EXT_POSIX_RENAME, from.len() + to.len() + 8);
        e.string(from).string(to);
        self.status(e.finish(), "rename", Subject::two(from, to))
            .await
    }

    /// `link(2)` on the server (`hardlink@openssh.com`): `new` becomes another name of
    /// `existing`. Fails (generic Failure) if `new` exists or the inode has too many
    /// links.
    pub async fn hardlink(&self, existing: &[u8], new: &[u8]) -> SftpResult<()> {
        self.require(EXT_HARDLINK)?;
        let mut e = Self::extended_packet(EXT_HARDLINK, existing.len() + new.len() + 8);
        e.string(existing).string(new);
        self.status(e.finish(), "hardlink", Subject::two(existing, new))
            .await
    }

    /// Creates a symlink at `link_path` pointing to `target` (`ln -s TARGET
    /// LINK_PATH`). OpenSSH's server takes the two arguments in the reverse of the
    /// draft's order (target first); this sends them the way OpenSSH expects, which
    /// the tests check on disk.
    pub async fn symlink(&self, target: &[u8], link_path: &[u8]) -> SftpResult<()> {
        let mut e = Self::request(proto::FXP_SYMLINK, target.len() + link_path.len() + 8);
        e.string(target).string(link_path);
        self.status(e.finish(), "symlink", Subject::two(link_path, target))
            .await
    }

    /// The target of a symlink, as raw bytes.
    pub async fn readlink(&self, path: &[u8]) -> SftpResult<Vec<u8>> {
        self.path_name(proto::FXP_READLINK, "readlink", path).await
    }

    /// The canonical absolute form of `path` (`"."` gives the login directory).
    pub async fn realpath(&self, path: &[u8]) -> SftpResult<Vec<u8>> {
        self.path_name(proto::FXP_REALPATH, "realpath", path).await
    }
}
