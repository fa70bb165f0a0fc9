//! Re-reading and hashing files of a release directory over SFTP, for
//! [`relstore_core::Target::hash_release_files`]: SFTP has no inode numbers, so
//! `verify --repair` learns which object a file of a release with a lost manifest is
//! linked to from its content.

use futures::StreamExt;
use relstore_core::layout;
use relstore_core::progress::Progress;
use relstore_core::target::{TargetError, TargetResult};
use relstore_core::{ContentHash, ReleaseName};

use super::{SftpTarget, READS_IN_FLIGHT};
use crate::sftp::FileKind;

/// blake3 of each of `paths` (relative to `releases/NAME`), in order, many read at
/// once. A path that is not a regular file (a symlink put there since the listing) is
/// refused, never followed.
pub(super) async fn hash_release_files(
    t: &SftpTarget,
    name: &ReleaseName,
    paths: &[Vec<u8>],
    progress: &dyn Progress,
) -> Vec<TargetResult<ContentHash>> {
    let dir = layout::release_dir(name);
    futures::stream::iter(paths)
        .map(|rel| {
            let mut p = t.p(&dir);
            p.push(b'/');
            p.extend_from_slice(rel);
            async move {
                relstore_core::cancel::check()?;
                let c = t.client();
                let attrs = c.lstat(&p).await.map_err(|e| t.io_err("stat", &p, e))?;
                if attrs.kind() != Some(FileKind::File) {
                    return Err(TargetError::Io {
                        op: "re-hash",
                        path: t.show(&p),
                        source: std::io::Error::other("not a regular file"),
                    });
                }
                super::inspect::hash_file(t, &p, progress).await
            }
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await
}
