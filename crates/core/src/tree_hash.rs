//! Re-hashing the files of a release directory on this machine's file system: what
//! [`crate::Target::hash_release_files`] does by default for targets with a local
//! root, when `verify --repair` rebuilds a lost manifest from a release's tree.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::hash::ContentHash;
use crate::layout;
use crate::progress::Progress;
use crate::release::ReleaseName;
use crate::target::{TargetError, TargetResult};

/// Hashes `paths` (relative to `releases/NAME` under `root`), one result per path.
/// A path that is a symlink is refused, never followed.
pub fn hash_local_release_files(
    root: &Path,
    name: &ReleaseName,
    paths: &[Vec<u8>],
    progress: &dyn Progress,
) -> Vec<TargetResult<ContentHash>> {
    let release = root.join(layout::release_dir(name));
    paths
        .iter()
        .map(|rel| {
            crate::cancel::check()?;
            let p = release.join(std::ffi::OsStr::from_bytes(rel));
            hash_file(&p, progress).map_err(|source| TargetError::Io {
                op: "re-hash",
                path: p.display().to_string(),
                source,
            })
        })
        .collect()
}

/// blake3 of one regular file's content, opened without following a symlink.
fn hash_file(p: &PathBuf, progress: &dyn Progress) -> io::Result<ContentHash> {
    let mut f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    Ok(ContentHash::from(hasher.finalize()))
}
