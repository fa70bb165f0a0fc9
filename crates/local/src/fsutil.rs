//! Small file-system helpers with errors that name their path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use relstore_core::path::escape;
use relstore_core::TargetError;

/// A path as shown in messages (non-UTF-8 bytes escaped).
pub fn show(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

/// Wraps an I/O error with the operation and the path.
pub fn io_err(op: &'static str, path: &Path, source: io::Error) -> TargetError {
    TargetError::Io {
        op,
        path: show(path),
        source,
    }
}

/// Makes a directory's entries durable (after renames into it).
pub fn fsync_dir(dir: &Path) -> Result<(), TargetError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("sync directory", dir, e))
}

/// Starts writeback of a just-written file (see [`relstore_core::durable`]).
pub fn start_writeback(f: &File) {
    relstore_core::durable::start_writeback(f);
}

/// Makes a batch of just-written files whose writeback was started as each was
/// written ([`start_writeback`]) durable (see [`relstore_core::durable`]).
pub fn wait_written(paths: &[PathBuf]) -> Result<(), TargetError> {
    relstore_core::durable::wait_started(paths).map_err(|e| io_err(e.op, &e.path, e.source))
}

/// Writes `bytes` to `path` durably: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TargetError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        // Created afresh (O_EXCL never follows a symlink someone left at this name).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("rename into place", path, e)
    })
}

/// Deletes a tree that may contain read-only directories (release trees have their
/// source's modes, often 0555), continuing past entries it cannot delete and returning
/// them with the reason. Subdirectories are removed in parallel.
pub fn remove_tree(path: &Path) -> Vec<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("{}: {e}", show(path))],
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Ok(()) => Vec::new(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => vec![format!("{}: {e}", show(path))],
        };
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        // Without write and search permission nothing inside can be removed.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    }
    let children: Vec<_> = match fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return vec![format!("{}: {e}", show(path))],
    };
    use rayon::prelude::*;
    let mut left: Vec<String> = children
        .par_iter()
        .with_min_len(64)
        .flat_map_iter(|c| remove_tree(c))
        .collect();
    if let Err(e) = fs::remove_dir(path) {
        if e.kind() != io::ErrorKind::NotFound && left.is_empty() {
            left.push(format!("{}: {e}", show(path)));
        }
    }
    left
}
