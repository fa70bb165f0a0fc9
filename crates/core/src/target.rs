//! The one trait every kind of target implements.
//!
//! Operations are coarse and batched — "which of these objects are missing", "put these
//! objects", "assemble this release" — so each target can use its best tool: parallel
//! `link(2)` and `rename(2)` locally, hundreds of pipelined `hardlink@openssh.com` and
//! `posix-rename@openssh.com` requests over SFTP. The push, rollback, prune and verify
//! algorithms are written once, in the engine, against this trait. The trait is
//! synchronous and object-safe (`Arc<dyn Target>`); an async target keeps its runtime
//! inside.

use std::io::{self, Read};

use crate::hash::{ContentHash, ObjectId};
use crate::layout::LockFile;
use crate::manifest::{Entry, ManifestError};
use crate::progress::Progress;
use crate::release::ReleaseName;

/// What went wrong on a target, always naming the place.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A file-system (or remote file-system) operation failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The location exists but is not something relstore may use as a store root.
    #[error("{location}: {reason}")]
    NotAStore { location: String, reason: String },
    /// Nothing is there yet: the root does not exist or is an empty directory. A push
    /// creates the store there; `push --dry-run` plans against an empty store.
    #[error("{location}: {reason}")]
    NoStore { location: String, reason: String },
    /// A manifest on the target could not be decoded or failed validation.
    #[error("corrupt manifest {path}")]
    Manifest {
        path: String,
        #[source]
        source: ManifestError,
    },
    /// Reading the content of an object to upload failed (source changed, unreadable).
    #[error("cannot read content for object {object}")]
    Blob {
        object: String,
        #[source]
        source: io::Error,
    },
    /// A release to create already exists.
    #[error("release {name} already exists on {location}")]
    ReleaseExists { name: String, location: String },
    /// An object a release needs is not stored (assembly or repair was asked to link
    /// it): the store lost it, or the caller skipped uploading it.
    #[error("object {object} is missing from the store (needed for {needed_for})")]
    MissingObject { object: String, needed_for: String },
    /// Something in the way could not be deleted (`first` names the first path left
    /// and why), so the step cannot go on.
    #[error("cannot {what}: {first}")]
    LeftBehind { what: &'static str, first: String },
    /// `current` exists but is not a link to a release.
    #[error("{link} points at {found}, which is not a release")]
    BadCurrent { link: String, found: String },
    /// The target cannot do this at all.
    #[error("{location}: {what} is not supported by this target")]
    Unsupported {
        location: String,
        what: &'static str,
    },
    /// Connecting to a remote target failed; the source says why (DNS, refused, host
    /// key, authentication).
    #[error("{spec}")]
    Connect {
        spec: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else, with its context already in the message.
    #[error("{0}")]
    Other(String),
    /// The command was interrupted (Ctrl-C, SIGTERM; see [`crate::cancel`]) and stopped
    /// at a safe point: whatever it wrote is in `tmp/` or complete.
    #[error(transparent)]
    Interrupted(#[from] crate::cancel::Interrupted),
}

/// Result type of target operations.
pub type TargetResult<T> = Result<T, TargetError>;

/// State of the root after [`Target::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A store was already there.
    Existing,
    /// The layout was just created.
    Created,
}

/// One object to upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub id: ObjectId,
    pub size: u64,
}

/// Where the bytes of objects to upload come from: the source tree during a push, a
/// local release store or `--source` directory when an evicted release comes back.
/// Readers must verify content against the id (see
/// [`crate::verify_read::HashCheckingReader`]).
pub trait BlobSource: Sync {
    /// Opens the content of `upload`.
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>>;
    /// Names the source of `upload` for messages (a path, usually).
    fn describe(&self, upload: &Upload) -> String;
}

/// Earlier versions of objects to upload, for targets that can receive an object as a
/// patch against one the target already stores (the previous content of the same
/// path, usually): a one-line edit of a page then travels as a few bytes. A target
/// that cannot use them ignores them; a wrong or unavailable base only costs the
/// saving, never correctness, because the target checks every rebuilt object against
/// its id.
pub trait DeltaBases: Sync {
    /// An object the target probably stores whose content resembles `upload`'s.
    fn base_of(&self, upload: &Upload) -> Option<ObjectId>;
    /// Opens a local copy of `base`'s content; an error when there is none (the upload
    /// then travels whole).
    fn open_base(&self, base: &ObjectId) -> io::Result<Box<dyn Read + Send>>;
}

/// Totals of one assembly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssembleStats {
    pub dirs: u64,
    pub links: u64,
    pub empty_files: u64,
    pub symlinks: u64,
    /// Extra object copies made because a file system capped links per inode.
    pub object_copies: u64,
}

/// One object file under `objects/` (a numbered copy made after `EMLINK` is listed
/// separately, with its `copy` number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoredObject {
    pub id: ObjectId,
    pub copy: u32,
    pub size: u64,
}

impl StoredObject {
    /// Path relative to the store root.
    pub fn rel_path(&self) -> String {
        self.id.copy_rel_path(self.copy)
    }
}

/// Kind of a path found in a release directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeKind {
    Dir,
    File,
    Symlink,
    /// Anything else (a fifo or device someone put there).
    Other,
}

/// One path of a release directory as the target sees it: what `verify` compares with
/// the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative path, raw bytes.
    pub path: Vec<u8>,
    pub kind: TreeKind,
    /// Permission bits.
    pub mode: u32,
    pub size: u64,
    /// Inode number, where the target can tell (tells a hardlink from a copy).
    pub ino: Option<u64>,
    /// Link count, where the target can tell: without inode numbers (SFTP), a
    /// non-empty file with one link is certainly not linked to its object.
    pub nlink: Option<u64>,
    /// Symlink target, for symlinks.
    pub link_target: Option<Vec<u8>>,
}

/// What removing a release left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Paths (under the target) that could not be deleted, with the reason.
    pub left_behind: Vec<String>,
}

/// A store root: the embedded local directory, or a directory on an SSH server.
pub trait Target: Send + Sync {
    /// Where this target is, for messages: a path or `user@host:path`.
    fn location(&self) -> &str;

    /// The store root on this machine's file system, for targets that have one (used to
    /// refuse pushing a tree into a store inside itself).
    fn local_root(&self) -> Option<&std::path::Path> {
        None
    }

    /// Checks that the root is a store of a supported format. With `create`, a missing
    /// or empty root gets the layout; a non-empty directory that is not a store, or a
    /// path that is a file, is refused either way.
    fn open(&self, create: bool) -> TargetResult<Opened>;

    /// Creates the lock file `which` with `contents` exclusively; `false` when it
    /// exists. The file appears atomically and always complete.
    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool>;
    /// Contents of the lock file `which`, `None` when there is none.
    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>>;
    /// Removes the lock file `which` if its contents are still `expected`. Returns
    /// whether it did. On its own this is not safe against every race (a lock that is
    /// not `expected` is put back, and another process may take the lock in between):
    /// the engine breaks other processes' locks only while holding
    /// [`LockFile::Breaker`].
    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool>;

    /// The release `current` points at, `None` before the first push. A `current`
    /// that points anywhere else is an error.
    fn current(&self) -> TargetResult<Option<ReleaseName>>;
    /// Names of the directories under `releases/` (unvalidated).
    fn list_release_dirs(&self) -> TargetResult<Vec<String>>;
    /// Names of the releases with a manifest in `manifests/` (unvalidated).
    fn list_manifests(&self) -> TargetResult<Vec<String>>;
    /// The whole manifest file of `name`.
    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>>;
    /// The first [`crate::manifest::HEADER_PREFIX_LEN`] bytes (or fewer) of several
    /// manifests, fetched together: listing a store needs only headers.
    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>>;
    /// A manifest staged by an interrupted push, if any.
    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>>;
    /// Writes `tmp/NAME.manifest` durably.
    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()>;
    /// Moves the staged manifest into `manifests/`: from here on the release exists.
    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()>;

    /// Which of `ids` are not stored. Checks run concurrently.
    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>>;
    /// Uploads objects, each into `tmp/` first and renamed into `objects/` only once
    /// complete and durable. Progress advances in bytes.
    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()>;
    /// [`Target::put_objects`] with hints of earlier versions of the uploads: a target
    /// that can receive deltas sends patches against them, the others (the default)
    /// ignore them.
    fn put_objects_with_bases(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        bases: &dyn DeltaBases,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        let _ = bases;
        self.put_objects(uploads, source, progress)
    }

    /// Builds `releases/NAME` from `entries` (validated, in manifest order): assembled
    /// in `tmp/NAME.partial`, directories first, then hardlinks from objects, fresh
    /// zero-length files and symlinks, then renamed into place. Every object the entries
    /// use must be stored. Progress advances in entries.
    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats>;
    /// Points `current` at `releases/NAME` with one atomic rename.
    fn activate(&self, name: &ReleaseName) -> TargetResult<()>;
    /// The release `next` points at (a staged release: assembled, not current), `None`
    /// when there is no `next`. A `next` that points anywhere else is an error.
    fn next(&self) -> TargetResult<Option<ReleaseName>> {
        Ok(None)
    }
    /// Points `next` at `releases/NAME` with one atomic rename, or with `None` removes
    /// it. The default refuses: such a target cannot stage releases.
    fn set_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        let _ = name;
        Err(TargetError::Unsupported {
            location: self.location().to_owned(),
            what: "staging releases (`next`)",
        })
    }
    /// The host hooks run on, as output lines are prefixed with it: `local`, or the
    /// SSH host name.
    fn hook_host(&self) -> String {
        "local".to_owned()
    }
    /// Runs a hook on the target's host in `releases/NAME` (see [`crate::hook`]),
    /// passing each line of its output to `output` as it comes; kills its process group
    /// at the timeout or on Ctrl-C. The default refuses.
    fn run_hook(
        &self,
        run: &crate::hook::HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<crate::hook::HookExit> {
        let _ = (run, output);
        Err(TargetError::Unsupported {
            location: self.location().to_owned(),
            what: "running hooks",
        })
    }
    /// Removes `releases/NAME` (moved into `tmp/` first, so it vanishes at once).
    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal>;
    /// Empties `tmp/`: only called under the lock, when nothing else can be in flight.
    fn clear_tmp(&self) -> TargetResult<Removal>;

    /// Every object file stored, copies included; files under `objects/` that are not
    /// object names are ignored.
    fn list_objects(&self) -> TargetResult<Vec<StoredObject>>;
    /// Deletes object files (concurrently); what could not be deleted is reported.
    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal>;
    /// Re-reads and hashes stored objects (concurrently), one result per object, in
    /// order. Progress advances in bytes.
    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>>;
    /// Inode numbers of stored objects, in order; `None` where the target cannot tell.
    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>>;
    /// Every path under `releases/NAME` (the root excluded), in any order.
    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>>;
    /// Re-reads and hashes regular files of the release directory `name` (`paths`
    /// relative to it), one result per path, in order; progress advances in bytes.
    /// `verify --repair` rebuilds a release's unreadable manifest from its tree this
    /// way where inode numbers cannot tell which object a file is linked to. The
    /// default reads the files under [`Target::local_root`] (never through a
    /// symlink); a target without one reports that it cannot.
    fn hash_release_files(
        &self,
        name: &ReleaseName,
        paths: &[Vec<u8>],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        match self.local_root() {
            Some(root) => crate::tree_hash::hash_local_release_files(root, name, paths, progress),
            None => paths
                .iter()
                .map(|_| {
                    Err(TargetError::Other(format!(
                        "{}: this target cannot re-read the files of releases/{name}",
                        self.location()
                    )))
                })
                .collect(),
        }
    }
    /// Re-creates the given paths of an existing release directory from their entries
    /// (validated, parents present in the release): each new link, empty file or
    /// symlink is made under a temporary name and renamed over the path, so a reader
    /// never sees the path missing. Directory entries get their mode set (created if
    /// missing). Used by `verify --repair`.
    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()>;

    /// Names of pinned releases (never evicted by prune).
    fn list_pins(&self) -> TargetResult<Vec<String>>;
    /// Pins or unpins a release (`pins/NAME`).
    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()>;

    /// What is at `shared/PATH` for each of `paths` (relative to `shared/`, validated
    /// by the caller as [`crate::shared::SharedPath`]s), `None` where nothing is. A
    /// symlink at the path itself is reported as one and not followed (users may link
    /// a shared path to another disk); directories above it are followed.
    fn shared_kinds(&self, paths: &[String]) -> TargetResult<Vec<Option<TreeKind>>> {
        let _ = paths;
        Err(TargetError::Unsupported {
            location: self.location().to_owned(),
            what: "shared paths",
        })
    }
    /// Creates `shared/PATH` from `items` (see [`crate::shared::SeedItem`]; checked
    /// with [`crate::shared::validate_seed`] first) when nothing is there: the
    /// directories above it are created, the seed is built under a temporary name
    /// beside it and renamed into place, so the path never appears half-seeded.
    /// Returns `false`, changing nothing, when something is already at the path.
    fn seed_shared(&self, path: &str, items: &[crate::shared::SeedItem]) -> TargetResult<bool> {
        let _ = (path, items);
        Err(TargetError::Unsupported {
            location: self.location().to_owned(),
            what: "shared paths",
        })
    }

    /// Deletes the whole store root, releases and objects included. Only for stores a
    /// command created for itself (`relstore bench`'s scratch targets); never called
    /// on a user's store.
    fn remove_store(&self) -> TargetResult<()> {
        Err(TargetError::Unsupported {
            location: self.location().to_owned(),
            what: "removing a whole store",
        })
    }
}
