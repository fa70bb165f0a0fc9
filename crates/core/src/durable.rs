//! Making a batch of freshly written files durable without `syncfs(2)`.
//!
//! Both the local target (objects) and the local release store (blobs) write thousands
//! of files, then rename them into place; a name may only appear once its content is on
//! disk. An fsync per file costs a journal commit each (far too slow for 100k files),
//! and `syncfs` also flushes every unrelated dirty page of the file system — such as
//! the build output that was just written next to the store, which can take seconds.
//! So: start writeback of every file, wait for each file's data, then fsync one file,
//! which commits the journal holding the metadata of the whole batch (ext4 and xfs keep
//! one journal per file system).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Which file of a batch could not be made durable, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct FlushError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Starts writing a file's dirty pages to disk without waiting, so that by the time the
/// batch is flushed most of the I/O is done. Only a hint: a failure is ignored.
pub fn start_writeback(f: &File) {
    // SAFETY: the fd is valid for the lifetime of `f`.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Makes `paths` (just written, not yet renamed) durable: writeback is started for all
/// of them first, so the waits that follow overlap, then the last one is fsynced to
/// commit the journal.
pub fn flush_files(paths: &[PathBuf]) -> Result<(), FlushError> {
    let open = |p: &Path| {
        File::open(p).map_err(|source| FlushError {
            op: "open",
            path: p.to_path_buf(),
            source,
        })
    };
    for p in paths {
        start_writeback(&open(p)?);
    }
    wait_started(paths)
}

/// Like [`flush_files`] for files whose writeback the writer already started (with
/// [`start_writeback`] right after writing each): saves reopening each file once.
pub fn wait_started(paths: &[PathBuf]) -> Result<(), FlushError> {
    let open = |p: &Path| {
        File::open(p).map_err(|source| FlushError {
            op: "open",
            path: p.to_path_buf(),
            source,
        })
    };
    for p in paths {
        let f = open(p)?;
        // SAFETY: valid fd for the lifetime of `f`.
        let rc = unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                0,
                0,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if rc != 0 {
            return Err(FlushError {
                op: "flush",
                path: p.clone(),
                source: io::Error::last_os_error(),
            });
        }
    }
    if let Some(last) = paths.last() {
        open(last)?.sync_all().map_err(|source| FlushError {
            op: "sync",
            path: last.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_written_files_and_names_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("relstore-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let a = dir.join("a");
        std::fs::write(&a, b"content").unwrap_or_default();
        assert!(flush_files(std::slice::from_ref(&a)).is_ok());
        let missing = dir.join("missing");
        let err = flush_files(&[a, missing.clone()]).err();
        assert_eq!(err.map(|e| e.path), Some(missing));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
