//! Shared paths over SFTP (`ROOT/shared/PATH`, see `relstore_core::shared`), step for
//! step as the local target: `LSTAT` to look, a seed built under a temporary name
//! beside the path and moved into place with a plain SFTP `RENAME`, which OpenSSH's
//! server refuses when something is already there (link-then-unlink for files), so data
//! that appeared meanwhile is never replaced.

use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout;
use relstore_core::shared::{validate_seed, SeedItem};
use relstore_core::target::{TargetResult, TreeKind};

use super::{other, SftpTarget};
use crate::sftp::FileKind;

impl SftpTarget {
    fn shared_abs(&self, rel: &str) -> Vec<u8> {
        self.p(&format!("{}/{rel}", layout::SHARED))
    }

    /// See `Target::shared_kinds`.
    pub(super) async fn shared_kinds_async(
        &self,
        paths: &[String],
    ) -> TargetResult<Vec<Option<TreeKind>>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let full = self.shared_abs(p);
            out.push(match self.client().lstat(&full).await {
                Ok(a) => Some(match a.kind() {
                    Some(FileKind::Dir) => TreeKind::Dir,
                    Some(FileKind::File) => TreeKind::File,
                    Some(FileKind::Symlink) => TreeKind::Symlink,
                    _ => TreeKind::Other,
                }),
                // OpenSSH answers "no such file" also when a parent is not a directory.
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(self.io_err("stat", &full, e)),
            });
        }
        Ok(out)
    }

    /// See `Target::seed_shared`.
    pub(super) async fn seed_shared_async(
        &self,
        path: &str,
        items: &[SeedItem],
    ) -> TargetResult<bool> {
        validate_seed(path, items).map_err(|e| other(format!("{}: {e}", self.location)))?;
        let full = self.shared_abs(path);
        if self.client().lstat(&full).await.is_ok() {
            return Ok(false);
        }
        let Some(slash) = full.iter().rposition(|b| *b == b'/') else {
            return Err(other(format!(
                "{}: bad shared path {path:?}",
                self.location
            )));
        };
        self.mkdir_all(&full[..slash]).await?;
        let mut prefix = b".".to_vec();
        prefix.extend_from_slice(&full[slash + 1..]);
        prefix.extend_from_slice(b".relstore-seed-");
        self.remove_stale_seeds(&full[..slash], &prefix).await;
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = full[..=slash].to_vec();
        tmp.extend_from_slice(&prefix);
        tmp.extend_from_slice(format!("{}-{n}", self.tag).as_bytes());
        if let Err(e) = self.build_seed(&tmp, items).await {
            self.remove_tree(tmp, None).await;
            return Err(e);
        }
        kill_point(points::SEED_BEFORE_RENAME);
        let result = match self.client().rename(&tmp, &full).await {
            Ok(()) => Ok(true),
            Err(_) if self.client().lstat(&full).await.is_ok() => Ok(false),
            Err(e) => Err(self.io_err("move into place", &full, e)),
        };
        self.remove_tree(tmp, None).await;
        result
    }

    /// Deletes what an interrupted (killed) seed left beside the shared path; the
    /// caller holds the store's lock, so no other seed of this store is in flight.
    async fn remove_stale_seeds(&self, parent: &[u8], prefix: &[u8]) {
        let Ok(list) = self.client().read_dir(parent).await else {
            return;
        };
        for e in list {
            if e.name.starts_with(prefix) {
                let mut p = parent.to_vec();
                p.push(b'/');
                p.extend_from_slice(&e.name);
                self.remove_tree(p, Some(e.attrs)).await;
            }
        }
    }

    /// Creates the seed at `tmp`: directories writable while filled, their modes set
    /// last (deepest first); files written (synced where the server can) with their
    /// mode set explicitly, past the server's umask.
    async fn build_seed(&self, tmp: &[u8], items: &[SeedItem]) -> TargetResult<()> {
        let c = self.client();
        let mut dirs = Vec::new();
        for item in items {
            let mut dest = tmp.to_vec();
            if !item.path().is_empty() {
                dest.push(b'/');
                dest.extend_from_slice(item.path());
            }
            match item {
                SeedItem::Dir { mode, .. } => {
                    c.mkdir(&dest, 0o700)
                        .await
                        .map_err(|e| self.io_err("create directory", &dest, e))?;
                    dirs.push((dest, *mode));
                }
                SeedItem::File { mode, content, .. } => {
                    c.write_file(&dest, content, 0o600, self.has_fsync)
                        .await
                        .map_err(|e| self.io_err("write", &dest, e))?;
                    c.set_permissions(&dest, *mode)
                        .await
                        .map_err(|e| self.io_err("set the mode of", &dest, e))?;
                }
                SeedItem::Symlink { target, .. } => {
                    c.symlink(target, &dest)
                        .await
                        .map_err(|e| self.io_err("create symlink", &dest, e))?;
                }
            }
        }
        for (dir, mode) in dirs.iter().rev() {
            c.set_permissions(dir, *mode)
                .await
                .map_err(|e| self.io_err("set the mode of", dir, e))?;
        }
        Ok(())
    }
}
