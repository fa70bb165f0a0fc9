//! What relstore accepts at the paths of a store, decided once for every target.
//!
//! A store can be tampered with: a directory replaced by a symlink to somewhere
//! else, an object replaced by a symlink to an outside file with the same content,
//! `current` replaced by a directory. relstore never follows a symlink inside the
//! store out of it: every store directory it writes into, deletes from or serves
//! (`releases/`, `objects/`, `manifests/`, `tmp/`, `pins/`, `objects/xx/`,
//! `releases/NAME/`) must be a real directory, every object a regular file, and
//! `current` a symlink. Targets look at each path without following it (`lstat`,
//! `O_NOFOLLOW`) and report what they found as a [`PathKind`]; the functions here
//! turn that into a go-ahead or a one-line refusal naming the path and the cause.
//! The root itself may be a symlink: it is the path the user gave.

use std::borrow::Borrow;

use crate::hash::ObjectId;
use crate::layout;
use crate::target::{TargetError, TargetResult};

/// What is at a path, looked at without following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Dir,
    File,
    Symlink,
    /// A fifo, socket or device.
    Other,
}

impl PathKind {
    /// Words for messages: "a symlink", "a directory", …
    fn described(self) -> &'static str {
        match self {
            PathKind::Missing => "missing",
            PathKind::Dir => "a directory",
            PathKind::File => "a regular file",
            PathKind::Symlink => "a symlink",
            PathKind::Other => "a special file (fifo, socket or device)",
        }
    }
}

/// A store directory found as `kind` at `shown` (the path as messages show it):
/// `Ok(true)` when it is a directory, `Ok(false)` when it is missing, and the
/// refusal when it is anything else — a symlink above all, which would lead out of
/// the store.
pub fn store_dir(shown: &str, kind: PathKind) -> TargetResult<bool> {
    match kind {
        PathKind::Dir => Ok(true),
        PathKind::Missing => Ok(false),
        PathKind::Symlink => Err(TargetError::Other(format!(
            "{shown} is a symlink; refusing to follow it out of the store"
        ))),
        other => Err(TargetError::Other(format!(
            "{shown} is {}, not a directory; refusing to use it",
            other.described()
        ))),
    }
}

/// [`store_dir`] for a directory that must exist (a release being served or
/// repaired): missing is refused too.
pub fn existing_store_dir(shown: &str, kind: PathKind) -> TargetResult<()> {
    if store_dir(shown, kind)? {
        Ok(())
    } else {
        Err(TargetError::Other(format!("{shown} does not exist")))
    }
}

/// Whether an object found as `kind` counts as stored: only a regular file does. A
/// symlink (even to a file with the right content), a directory or a device is not
/// an object; the existence check reports it missing, so an upload replaces it.
pub fn object_stored(kind: PathKind) -> bool {
    kind == PathKind::File
}

/// An object file found as `kind` at `shown`, about to be linked, copied or hashed:
/// only a regular file goes ahead. `Missing` is left to the caller (it has its own
/// message for a missing object), so it is accepted here.
pub fn object_file(shown: &str, kind: PathKind) -> TargetResult<()> {
    match kind {
        PathKind::File | PathKind::Missing => Ok(()),
        other => Err(TargetError::Other(format!(
            "object {shown} is {}, not a regular file",
            other.described()
        ))),
    }
}

/// `current` or `next` found as `kind` at `shown`: `Ok(true)` when it is a symlink
/// (read its target), `Ok(false)` when there is none yet, the refusal otherwise.
pub fn current_link(shown: &str, kind: PathKind) -> TargetResult<bool> {
    match kind {
        PathKind::Symlink => Ok(true),
        PathKind::Missing => Ok(false),
        other => Err(TargetError::Other(format!(
            "{shown} is {}, not a symlink to a release; move it away (relstore replaces \
             this link only by renaming a new symlink over it)",
            other.described()
        ))),
    }
}

/// The prefix directories (`objects/xx`) that `ids` live in, each once, sorted: the
/// store directories an operation on those objects goes through. Cheap for millions
/// of ids (a prefix is the first byte of the hash).
pub fn object_dirs<I>(ids: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: Borrow<ObjectId>,
{
    let mut seen = [false; 256];
    for id in ids {
        seen[usize::from(id.borrow().hash.0[0])] = true;
    }
    (0..=255u8)
        .filter(|b| seen[usize::from(*b)])
        .map(|b| format!("{}/{b:02x}", layout::OBJECTS))
        .collect()
}

/// `objects/xx` of one object.
pub fn object_dir(id: &ObjectId) -> String {
    format!("{}/{:02x}", layout::OBJECTS, id.hash.0[0])
}

/// The error for a rename from `tmp/` into `into` (`objects/`, `releases/`) that the
/// kernel refused as crossing file systems: relstore publishes by `rename(2)` and
/// assembles by `link(2)`, which both need one file system.
pub fn cross_device(into: &str, tmp: &str) -> TargetError {
    TargetError::Other(format!(
        "{into} and {tmp} must be on one file system (relstore publishes by rename and \
         assembles by hardlink); they are not"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::ContentHash;

    #[test]
    fn store_dirs_must_be_real_directories() {
        assert!(store_dir("/s/tmp", PathKind::Dir).unwrap());
        assert!(!store_dir("/s/tmp", PathKind::Missing).unwrap());
        assert_eq!(
            store_dir("/s/tmp", PathKind::Symlink)
                .unwrap_err()
                .to_string(),
            "/s/tmp is a symlink; refusing to follow it out of the store"
        );
        assert_eq!(
            store_dir("/s/tmp", PathKind::File).unwrap_err().to_string(),
            "/s/tmp is a regular file, not a directory; refusing to use it"
        );
        assert_eq!(
            existing_store_dir("/s/releases/r1", PathKind::Missing)
                .unwrap_err()
                .to_string(),
            "/s/releases/r1 does not exist"
        );
    }

    #[test]
    fn only_regular_files_are_objects() {
        assert!(object_stored(PathKind::File));
        for k in [
            PathKind::Missing,
            PathKind::Dir,
            PathKind::Symlink,
            PathKind::Other,
        ] {
            assert!(!object_stored(k), "{k:?}");
        }
        assert!(object_file("o", PathKind::File).is_ok());
        assert!(object_file("o", PathKind::Missing).is_ok());
        assert_eq!(
            object_file("/s/objects/ab/cd+0444", PathKind::Symlink)
                .unwrap_err()
                .to_string(),
            "object /s/objects/ab/cd+0444 is a symlink, not a regular file"
        );
    }

    #[test]
    fn current_must_be_a_symlink() {
        assert!(current_link("c", PathKind::Symlink).unwrap());
        assert!(!current_link("c", PathKind::Missing).unwrap());
        let e = current_link("/s/current", PathKind::Dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/s/current is a directory, not a symlink"),
            "{e}"
        );
    }

    #[test]
    fn object_dirs_are_listed_once() {
        let a = ObjectId {
            hash: ContentHash::empty(),
            mode: 0o444,
        };
        let b = ObjectId {
            hash: ContentHash::empty(),
            mode: 0o555,
        };
        let hex = ContentHash::empty().to_hex();
        assert_eq!(
            object_dirs([&a, &b]),
            vec![format!("objects/{}", &hex[..2])]
        );
        assert_eq!(object_dir(&a), format!("objects/{}", &hex[..2]));
        assert!(a.rel_path().starts_with(&object_dir(&a)));
    }
}
