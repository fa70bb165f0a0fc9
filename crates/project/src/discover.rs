//! Finding the project file, and never mistaking a store root's format marker for one.
//!
//! Both files are called `relstore.toml`. A directory is a store root when its
//! `relstore.toml` is a format marker (a `format = N` line, what relstore writes first
//! when it lays out a root) or when `objects/` and `releases/` sit beside it. The
//! upward search stops at the first store root it meets, without reading the marker
//! as a project: running relstore on a server inside `/srv/site/releases/…` must not
//! pick up anything above the store either.

use std::io;
use std::path::{Path, PathBuf};

use relstore_core::layout;

use crate::ProjectError;

/// The project file's name (the same name as the store marker, on purpose: one name
/// to learn; the rules above keep them apart).
pub const FILE_NAME: &str = layout::CONFIG;

/// What the upward search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// A project file.
    Project(PathBuf),
    /// The search stopped at this store root (its marker is not a project file).
    StoreRoot(PathBuf),
    /// No `relstore.toml` in the start directory or any parent.
    Nothing,
}

/// Whether `dir` is a store root (see the module docs).
pub fn is_store_root(dir: &Path) -> bool {
    let Ok(bytes) = std::fs::read(dir.join(layout::CONFIG)) else {
        return false;
    };
    if layout::parse_config_format(&String::from_utf8_lossy(&bytes)).is_some() {
        return true;
    }
    dir.join(layout::OBJECTS).is_dir() && dir.join(layout::RELEASES).is_dir()
}

/// Looks for `relstore.toml` in `start` and then each parent, stopping at a store root.
pub fn discover(start: &Path) -> Result<Discovery, ProjectError> {
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() => {
                if is_store_root(dir) {
                    return Ok(Discovery::StoreRoot(dir.to_path_buf()));
                }
                return Ok(Discovery::Project(candidate));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProjectError::Io {
                    path: candidate.display().to_string(),
                    op: "look for the project file",
                    source: e,
                })
            }
        }
    }
    Ok(Discovery::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn finds_the_nearest_project_file_from_a_subdirectory() {
        let t = tempfile::tempdir().expect("tempdir");
        write(&t.path().join("relstore.toml"), "source = \"public\"\n");
        let sub = t.path().join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        assert_eq!(
            discover(&sub).expect("discover"),
            Discovery::Project(t.path().join("relstore.toml"))
        );
    }

    #[test]
    fn a_store_root_stops_the_search_and_its_marker_is_not_read() {
        let t = tempfile::tempdir().expect("tempdir");
        write(&t.path().join("relstore.toml"), "source = \"public\"\n");
        let root = t.path().join("site");
        write(&root.join("relstore.toml"), &layout::config_contents());
        let inside = root.join("releases/r1/css");
        std::fs::create_dir_all(&inside).expect("mkdir");
        assert_eq!(
            discover(&inside).expect("discover"),
            Discovery::StoreRoot(root.clone())
        );
        assert!(is_store_root(&root));
        assert!(!is_store_root(t.path()));
    }

    #[test]
    fn a_root_with_objects_and_releases_is_a_store_root_whatever_its_marker_says() {
        let t = tempfile::tempdir().expect("tempdir");
        write(
            &t.path().join("relstore.toml"),
            "# a future marker\nversion = 9\n",
        );
        std::fs::create_dir_all(t.path().join("objects")).expect("mkdir");
        std::fs::create_dir_all(t.path().join("releases")).expect("mkdir");
        assert!(is_store_root(t.path()));
    }
}
