//! The store's lock file on the server: a complete file hardlinked to `lock` (the
//! link fails if a lock exists, so a lock is never seen half-written), released only
//! by its holder.

use relstore_core::layout::LockFile;
use relstore_core::target::TargetResult;

use super::{is_failure, SftpTarget};

impl SftpTarget {
    /// See [`relstore_core::Target::create_lock`].
    pub(super) async fn create_lock_async(
        &self,
        which: LockFile,
        contents: &[u8],
    ) -> TargetResult<bool> {
        let c = self.client();
        let lock = self.p(which.file_name());
        let private = self.p(&format!("{}.{}.new", which.file_name(), self.tag));
        let _ = c.remove(&private).await;
        if let Err(e) = c
            .write_file(&private, contents, 0o644, self.has_fsync)
            .await
        {
            let _ = c.remove(&private).await;
            return Err(self.io_err("write", &private, e));
        }
        // link(2) fails if the lock exists: it appears atomically and always complete.
        // SFTP v3 reports that as a generic failure, so a failure is followed by a look
        // at the lock; when its holder released it in between, the link is tried again.
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let linked = c.hardlink(&private, &lock).await;
            match linked {
                Ok(()) => break Ok(true),
                Err(e) if is_failure(&e) => match self.exists(&lock).await {
                    Ok(true) => break Ok(false),
                    Ok(false) if attempts < 5 => continue,
                    _ => break Err(self.io_err("create lock", &lock, e)),
                },
                Err(e) => break Err(self.io_err("create lock", &lock, e)),
            }
        };
        let _ = c.remove(&private).await;
        result
    }

    /// See [`relstore_core::Target::remove_lock`].
    pub(super) async fn remove_lock_async(
        &self,
        which: LockFile,
        expected: &[u8],
    ) -> TargetResult<bool> {
        let c = self.client();
        let lock = self.p(which.file_name());
        let aside = self.p(&format!("{}.{}.old", which.file_name(), self.tag));
        match c.posix_rename(&lock, &aside).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(self.io_err("remove lock", &lock, e)),
        }
        let found = c
            .read_file(&aside)
            .await
            .map_err(|e| self.io_err("read", &aside, e))?;
        if found == expected {
            c.remove(&aside)
                .await
                .map_err(|e| self.io_err("remove", &aside, e))?;
            Ok(true)
        } else {
            // Someone else's lock: put it back (the link fails only if yet another
            // lock appeared meanwhile, which then stands).
            let _ = c.hardlink(&aside, &lock).await;
            let _ = c.remove(&aside).await;
            Ok(false)
        }
    }
}
