//! Opening the store root on the server: probing what is there, then executing what
//! `relstore_core::root::decide_open` decides (the same roots are accepted and refused
//! as by the local target, with the same messages).

use relstore_core::layout;
use relstore_core::root::{self, OpenAction, RootFound};
use relstore_core::target::{Opened, TargetError, TargetResult};

use super::{is_failure, other, SftpTarget};
use crate::sftp::SftpClient;
use crate::sftp::SftpError;

impl SftpTarget {
    /// See [`relstore_core::Target::open`].
    pub(super) async fn open_async(&self, create: bool) -> TargetResult<Opened> {
        let found = self.probe_root().await?;
        let config = self.show(&self.p(layout::CONFIG));
        match root::decide_open(&found, create, &self.location, &config)? {
            OpenAction::CreateRoot => {
                self.mkdir_all(&self.root).await?;
                self.lay_out().await
            }
            OpenAction::Layout => self.lay_out().await,
            OpenAction::Existing { complete } => {
                // Checked before anything is created: mkdir must not go through a
                // symlinked store directory either.
                self.check_layout(!complete).await?;
                if complete {
                    self.create_layout_dirs().await?;
                }
                Ok(Opened::Existing)
            }
        }
    }

    /// What is at the root, for [`root::decide_open`].
    async fn probe_root(&self) -> TargetResult<RootFound> {
        let c = self.client();
        match c.stat(&self.root).await {
            Ok(a) if a.is_dir() => {}
            Ok(_) => return Ok(RootFound::NotADirectory),
            Err(e) if e.is_not_found() => {
                return Ok(match c.readlink(&self.root).await {
                    Ok(to) => RootFound::DanglingSymlink {
                        points_at: relstore_core::path::escape(&to),
                    },
                    Err(_) => RootFound::Missing,
                })
            }
            Err(e) => return Err(self.io_err("access", &self.root, e)),
        }
        let config = self.p(layout::CONFIG);
        match c.read_file(&config).await {
            Ok(config) => Ok(RootFound::Marked { config }),
            Err(e) if e.is_not_found() => {
                let entries = c
                    .read_dir(&self.root)
                    .await
                    .map_err(|e| self.io_err("list", &self.root, e))?;
                Ok(if entries.is_empty() {
                    RootFound::EmptyDir
                } else {
                    RootFound::Unmarked
                })
            }
            Err(e) => Err(self.io_err("read", &config, e)),
        }
    }

    /// Lays out a fresh store in the (empty) root.
    async fn lay_out(&self) -> TargetResult<Opened> {
        // The marker first, as locally: a directory holding it is recognisably ours
        // even if the layout below is interrupted.
        self.write_atomic(
            &self.p(layout::CONFIG),
            layout::config_contents().as_bytes(),
        )
        .await
        .map_err(|e| match e {
            // Name the directory the user gave, not the temp file inside it.
            TargetError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                TargetError::Io {
                    op: "create a store in",
                    path: self.show(&self.root),
                    source,
                }
            }
            e => e,
        })?;
        self.create_layout_dirs().await?;
        Ok(Opened::Created)
    }

    /// `mkdir` that accepts an existing directory (SFTP reports "exists" as a
    /// generic failure, so it is told apart by a stat).
    pub(super) async fn mkdir_existing_ok(&self, path: &[u8], mode: u32) -> Result<(), SftpError> {
        let c = self.client();
        match c.mkdir(path, mode).await {
            Ok(()) => Ok(()),
            Err(e) if is_failure(&e) => match c.stat(path).await {
                Ok(a) if a.is_dir() => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// `mkdir -p`.
    pub(super) async fn mkdir_all(&self, path: &[u8]) -> TargetResult<()> {
        let mut missing = Vec::new();
        let mut cur = path.to_vec();
        loop {
            match self.client().stat(&cur).await {
                Ok(a) if a.is_dir() => break,
                Ok(_) => {
                    return Err(TargetError::NotAStore {
                        location: self.location.clone(),
                        reason: format!("{} is not a directory", self.show(&cur)),
                    })
                }
                Err(e) if e.is_not_found() => {
                    missing.push(cur.clone());
                    match cur.iter().rposition(|b| *b == b'/') {
                        Some(0) | None => break,
                        Some(i) => cur.truncate(i),
                    }
                }
                Err(e) => return Err(self.io_err("access", &cur, e)),
            }
        }
        for dir in missing.iter().rev() {
            self.mkdir_existing_ok(dir, 0o755)
                .await
                .map_err(|e| self.io_err("create directory", dir, e))?;
        }
        Ok(())
    }

    async fn create_layout_dirs(&self) -> TargetResult<()> {
        for d in layout::DIRS {
            let p = self.p(d);
            self.mkdir_existing_ok(&p, 0o755)
                .await
                .map_err(|e| self.io_err("create directory", &p, e))?;
        }
        Ok(())
    }
}

/// The store root's absolute path: `path` as given, or resolved against the login's
/// home directory when relative.
pub(super) async fn resolve_root(
    client: &SftpClient,
    path: &str,
    where_: &str,
) -> TargetResult<Vec<u8>> {
    if path.starts_with('/') {
        return Ok(normalize(path.as_bytes()));
    }
    let mut p = client.realpath(b".").await.map_err(|e| {
        other(format!(
            "{where_}: cannot find the login's home directory: {e}"
        ))
    })?;
    if !path.is_empty() {
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(path.as_bytes());
    }
    Ok(normalize(&p))
}

/// Drops trailing slashes and `.` components, collapses repeated slashes.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"/srv//www/./site/"), b"/srv/www/site");
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b"/home/u/site"), b"/home/u/site");
    }
}
