//! Shared paths in a push (see `relstore_core::shared` for how releases link them).
//!
//! The source's copies of shared paths never become release entries: the scan leaves
//! them out with anchored exclude patterns ([`exclude_patterns`]), so they are not even
//! hashed. They are read only to seed `ROOT/shared/PATH` the first time a push finds
//! nothing there (the rules Capistrano's `linked_dirs`/`linked_files` and Deployer's
//! `shared_dirs`/`shared_files` users expect):
//!
//! - a directory is seeded with the source's copy when the source has one, else
//!   created empty;
//! - a file is seeded with the source's copy; with none, the push fails before anything
//!   changes, saying where to put the file;
//! - afterwards the shared data is the application's: the source's copy never
//!   overwrites it.
//!
//! Seeded files are plain files with their source mode plus the owner's write bit,
//! never links to objects (whose write bits are cleared). A symlink at a shared path
//! in the source (a checkout that already links `storage -> ../shared/storage`) counts
//! as no copy.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use relstore_core::shared::{SeedItem, SharedPath, MAX_SEED_BYTES, MAX_SEED_ITEMS};
use relstore_core::target::TreeKind;
use relstore_core::{Target, TargetError};

use crate::error::{EngineError, EngineResult};

/// The mode of a shared directory seeded empty.
const EMPTY_DIR_MODE: u32 = 0o755;

/// Gitignore patterns that keep the source's copies of `shared` out of the scan:
/// anchored at the source root (`/uploads`), trailing spaces escaped (paths with
/// wildcard characters or backslashes are refused by [`SharedPath::parse`]).
pub(crate) fn exclude_patterns(shared: &[SharedPath]) -> Vec<String> {
    shared
        .iter()
        .map(|s| {
            let rel = s.rel();
            let trimmed = rel.trim_end_matches(' ');
            let spaces = rel.len() - trimmed.len();
            format!("/{trimmed}{}", "\\ ".repeat(spaces))
        })
        .collect()
}

/// Fails before the store is opened for writing when a shared file has no copy in the
/// source and the target does not have it either: the message says where to put it.
/// Only looks at the target when such a file exists (a store that does not exist yet
/// has none).
pub(crate) fn precheck(
    source: &Path,
    target: &dyn Target,
    shared: &[SharedPath],
) -> EngineResult<()> {
    let mut lacking = Vec::new();
    for s in shared.iter().filter(|s| !s.is_dir()) {
        if read_source_copy(source, s)?.is_none() {
            lacking.push(s.clone());
        }
    }
    if lacking.is_empty() {
        return Ok(());
    }
    match target.open(false) {
        Ok(_) => {}
        Err(TargetError::NoStore { .. }) => return Err(missing_file(target, &lacking[0])),
        Err(e) => return Err(e.into()),
    }
    let names: Vec<String> = lacking.iter().map(|s| s.rel().to_owned()).collect();
    let kinds = target.shared_kinds(&names)?;
    match lacking.iter().zip(kinds).find(|(_, k)| k.is_none()) {
        Some((s, _)) => Err(missing_file(target, s)),
        None => Ok(()),
    }
}

fn missing_file(target: &dyn Target, s: &SharedPath) -> EngineError {
    EngineError::SharedFileMissing {
        location: target.location().to_owned(),
        path: s.rel().to_owned(),
    }
}

/// A shared path to create on the target, with what to put there.
pub(crate) struct Seed {
    pub path: SharedPath,
    pub items: Vec<SeedItem>,
}

/// Looks at the target's shared paths (`exists`: the store is there; a store that is
/// not has none) and returns the seeds of those missing. A shared path that is there
/// as the wrong kind, or a file missing with no source copy, is an error; a symlink
/// there is the user's choice (shared data on another disk) and is left alone.
pub(crate) fn plan_seeds(
    source: &Path,
    target: &dyn Target,
    shared: &[SharedPath],
    exists: bool,
) -> EngineResult<Vec<Seed>> {
    if shared.is_empty() {
        return Ok(Vec::new());
    }
    let kinds = if exists {
        let names: Vec<String> = shared.iter().map(|s| s.rel().to_owned()).collect();
        target.shared_kinds(&names)?
    } else {
        vec![None; shared.len()]
    };
    let mut seeds = Vec::new();
    for (s, kind) in shared.iter().zip(kinds) {
        match (kind, s.is_dir()) {
            (None, _) => {}
            (Some(TreeKind::Symlink), _)
            | (Some(TreeKind::Dir), true)
            | (Some(TreeKind::File), false) => continue,
            (Some(found), _) => {
                return Err(EngineError::SharedKindMismatch {
                    location: target.location().to_owned(),
                    path: s.to_string(),
                    found: kind_name(found),
                    want: if s.is_dir() { "directory" } else { "file" },
                })
            }
        }
        let items = match read_source_copy(source, s)? {
            Some(items) => items,
            None if s.is_dir() => vec![SeedItem::Dir {
                path: Vec::new(),
                mode: EMPTY_DIR_MODE,
            }],
            None => return Err(missing_file(target, s)),
        };
        seeds.push(Seed {
            path: s.clone(),
            items,
        });
    }
    Ok(seeds)
}

fn kind_name(k: TreeKind) -> &'static str {
    match k {
        TreeKind::Dir => "directory",
        TreeKind::File => "file",
        TreeKind::Symlink => "symlink",
        TreeKind::Other => "special file",
    }
}

/// Seeds the shared paths missing from an existing store (see [`plan_seeds`]); returns
/// those seeded (one that appeared meanwhile is left as it is and not listed).
pub(crate) fn seed_missing(
    source: &Path,
    target: &dyn Target,
    shared: &[SharedPath],
) -> EngineResult<Vec<String>> {
    let mut done = Vec::new();
    for s in plan_seeds(source, target, shared, true)? {
        if target.seed_shared(s.path.rel(), &s.items)? {
            done.push(s.path.to_string());
        }
    }
    Ok(done)
}

/// The source's copy of `s` as seed items: `None` when the source has none (or has a
/// symlink there). A copy of the wrong kind, a special file in it, or one larger than
/// [`MAX_SEED_BYTES`] is an error naming it.
pub(crate) fn read_source_copy(
    source: &Path,
    s: &SharedPath,
) -> EngineResult<Option<Vec<SeedItem>>> {
    let full = source.join(s.rel());
    let meta = match fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(seed_err(s, &full, e.to_string())),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(None);
    }
    let mut reader = SeedReader {
        shared: s,
        items: Vec::new(),
        bytes: 0,
    };
    match (s.is_dir(), ft.is_dir(), ft.is_file()) {
        (true, true, _) => {
            reader.items.push(SeedItem::Dir {
                path: Vec::new(),
                mode: (meta.permissions().mode() & 0o7777) | 0o700,
            });
            reader.walk(&full, &[])?;
        }
        (false, _, true) => reader.file(&full, Vec::new(), &meta)?,
        (want_dir, _, _) => {
            let what = if want_dir {
                "not a directory"
            } else {
                "not a regular file"
            };
            return Err(seed_err(s, &full, what.into()));
        }
    }
    Ok(Some(reader.items))
}

fn seed_err(s: &SharedPath, at: &Path, problem: String) -> EngineError {
    EngineError::SharedSeed {
        path: s.to_string(),
        source_path: at.display().to_string(),
        problem,
    }
}

/// Collects a source copy, within the seed limits.
struct SeedReader<'a> {
    shared: &'a SharedPath,
    items: Vec<SeedItem>,
    bytes: u64,
}

impl SeedReader<'_> {
    fn walk(&mut self, dir: &Path, prefix: &[u8]) -> EngineResult<()> {
        let err = |at: &Path, e: io::Error| seed_err(self.shared, at, e.to_string());
        let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)
            .map_err(|e| err(dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(dir, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let at = child.path();
            let meta = fs::symlink_metadata(&at).map_err(|e| err(&at, e))?;
            let mut rel = prefix.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(child.file_name().as_bytes());
            if self.items.len() >= MAX_SEED_ITEMS {
                return Err(self.too_big(dir));
            }
            let ft = meta.file_type();
            if ft.is_dir() {
                self.items.push(SeedItem::Dir {
                    path: rel.clone(),
                    mode: (meta.permissions().mode() & 0o7777) | 0o700,
                });
                self.walk(&at, &rel)?;
            } else if ft.is_file() {
                self.file(&at, rel, &meta)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&at).map_err(|e| err(&at, e))?;
                self.items.push(SeedItem::Symlink {
                    path: rel,
                    target: target.as_os_str().as_bytes().to_vec(),
                });
            } else {
                return Err(seed_err(self.shared, &at, "is a special file".into()));
            }
        }
        Ok(())
    }

    fn file(&mut self, at: &Path, rel: Vec<u8>, meta: &fs::Metadata) -> EngineResult<()> {
        self.bytes = self.bytes.saturating_add(meta.len());
        if self.bytes > MAX_SEED_BYTES {
            return Err(self.too_big(at));
        }
        let content = fs::read(at).map_err(|e| seed_err(self.shared, at, e.to_string()))?;
        self.items.push(SeedItem::File {
            path: rel,
            mode: (meta.permissions().mode() & 0o7777) | 0o200,
            content,
        });
        Ok(())
    }

    fn too_big(&self, at: &Path) -> EngineError {
        seed_err(
            self.shared,
            at,
            format!(
                "makes the seed larger than {} MiB or {MAX_SEED_ITEMS} entries: copy it into ROOT/shared/{} by hand",
                MAX_SEED_BYTES >> 20,
                self.shared.rel()
            ),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sp(s: &str) -> SharedPath {
        SharedPath::parse(s).unwrap()
    }

    #[test]
    fn excludes_are_anchored_and_keep_trailing_spaces() {
        assert_eq!(
            exclude_patterns(&[sp("uploads/"), sp("a/b "), sp(".env")]),
            ["/uploads", "/a/b\\ ", "/.env"]
        );
    }

    #[test]
    fn source_copies_become_writable_seeds_or_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        fs::create_dir_all(src.join("uploads/sub")).unwrap();
        fs::write(src.join("uploads/sub/a.jpg"), "jpg").unwrap();
        fs::set_permissions(
            src.join("uploads/sub/a.jpg"),
            fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/a.jpg", src.join("uploads/latest")).unwrap();
        fs::write(src.join(".env"), "A=1").unwrap();
        std::os::unix::fs::symlink("../shared/storage", src.join("storage")).unwrap();

        let items = read_source_copy(src, &sp("uploads/")).unwrap().unwrap();
        let paths: Vec<&[u8]> = items.iter().map(SeedItem::path).collect();
        assert_eq!(paths, [&b""[..], b"latest", b"sub", b"sub/a.jpg"]);
        assert!(matches!(
            &items[3],
            SeedItem::File { mode: 0o644, content, .. } if content == b"jpg"
        ));
        relstore_core::shared::validate_seed("uploads", &items).unwrap();
        // Missing, or a symlink already pointing into shared/: no copy.
        assert!(read_source_copy(src, &sp("logs/")).unwrap().is_none());
        assert!(read_source_copy(src, &sp("storage/")).unwrap().is_none());
        // The wrong kind names the path.
        let err = read_source_copy(src, &sp(".env/")).unwrap_err().to_string();
        assert!(err.ends_with(".env not a directory"), "{err}");
        let err = read_source_copy(src, &sp("uploads"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn an_oversized_source_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join("big.bin")).unwrap();
        f.set_len(MAX_SEED_BYTES + 1).unwrap();
        let err = read_source_copy(dir.path(), &sp("big.bin"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("by hand"), "{err}");
    }
}
