//! The messages of protocol version 4: one request per [`relstore_core::Target`]
//! method, one response each, and the wire forms of the values they carry. Version 4
//! added [`Request::SharedKinds`], [`Request::SeedShared`] and [`Response::Kinds`];
//! version 3 is the same without them, version 2 also without
//! [`Request::ManifestDigest`] and [`Response::Digest`], and version 1 also without
//! [`Request::Cancel`].
//!
//! Requests and responses are serde enums encoded with bincode (see [`crate::frame`]).
//! Appending a variant or changing a field is a protocol change: bump
//! [`crate::handshake::PROTOCOL_VERSION`].

use relstore_core::layout::LockFile;
use std::io;

use relstore_core::manifest::ManifestError;
use relstore_core::target::{AssembleStats, StoredObject, TreeEntry, TreeKind};
use relstore_core::{ContentHash, ObjectId, TargetError};
use serde::{Deserialize, Serialize};

/// A blake3 hash of bytes that are not an object (manifests, entry lists).
pub(crate) type Digest = [u8; 32];

/// What the client asks for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Open {
        create: bool,
    },
    CreateLock(LockFile, #[serde(with = "serde_bytes")] Vec<u8>),
    ReadLock(LockFile),
    RemoveLock(LockFile, #[serde(with = "serde_bytes")] Vec<u8>),
    Current,
    ListReleaseDirs,
    ListManifests,
    ReadManifest(String),
    ReadManifestPrefixes(Vec<String>),
    ReadStagedManifest(String),
    StageManifest {
        name: String,
        body: Delta,
    },
    CommitManifest(String),
    MissingObjects(Vec<ObjectId>),
    /// Starts an object stream: `Data` requests follow, then `End` (or `Abort`).
    PutObjects(StreamParams),
    /// A piece of the object stream.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The object stream is complete.
    End,
    /// The client gave up on the object stream (a source file changed, Ctrl-C).
    Abort(String),
    Assemble {
        name: String,
        entries: Delta,
    },
    Activate(String),
    RemoveReleaseDir(String),
    ClearTmp,
    ListObjects,
    RemoveObjects(Vec<WireObject>),
    HashObjects(Vec<WireObject>),
    ObjectInodes(Vec<WireObject>),
    ListReleaseTree(String),
    Relink {
        name: String,
        entries: Delta,
    },
    ListPins,
    SetPin {
        name: String,
        pinned: bool,
    },
    RemoveStore,
    /// The client is done; the helper exits.
    Bye,
    /// Ctrl-C on the client (protocol 2): the helper stops what it is doing at its next
    /// safe point, as a local command does. Not a request of its own: it may arrive
    /// at any moment, also inside an object stream, and gets no answer; the request in
    /// flight is answered with the `Interrupted` error. Sent at most once.
    Cancel,
    /// The blake3 of committed manifest NAME's file (protocol 3), answered with
    /// `Digest` or the error `ReadManifest` would give: the client reads the manifest
    /// from its own cache when it has a file with that digest.
    ManifestDigest(String),
    /// What is at `shared/PATH` for each path (protocol 4), answered with `Kinds`.
    SharedKinds(Vec<String>),
    /// Seeds `shared/PATH` when nothing is there (protocol 4), answered with `Flag`
    /// (whether it seeded). The items are checked by the helper before it writes.
    SeedShared {
        path: String,
        items: Vec<relstore_core::shared::SeedItem>,
    },
}

/// What the helper answers. `Progress` and `Note` may precede the final answer of a
/// long operation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Done,
    Opened {
        created: bool,
    },
    Flag(bool),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    MaybeBytes(Option<serde_bytes::ByteBuf>),
    MaybeName(Option<String>),
    Names(Vec<String>),
    ManyBytes(Vec<Result<serde_bytes::ByteBuf, WireError>>),
    Ids(Vec<ObjectId>),
    /// The end of an object stream: how many objects were stored, and which must be
    /// sent again whole (a patch whose base is missing or whose result did not match
    /// its id, a whole blob whose content did not match).
    Stored {
        stored: u64,
        resend: Vec<ObjectId>,
    },
    Assembled(WireAssembleStats),
    Removed(Vec<String>),
    Objects(Vec<WireObject>),
    Hashes(Vec<Result<ContentHash, WireError>>),
    Inodes(Vec<Result<Option<u64>, WireError>>),
    Tree(Vec<WireTreeEntry>),
    /// A delta could not be applied (its base is gone or the result did not check):
    /// send the full value.
    NeedFull(String),
    /// Interim: `n` more units of the current phase are done.
    Progress(u64),
    /// Interim: a message for the user.
    Note(String),
    Error(WireError),
    /// The blake3 of a manifest file (the answer to `ManifestDigest`, protocol 3).
    Digest(Digest),
    /// What is at each shared path asked about (protocol 4): a [`tree_kind_code`],
    /// `None` where nothing is.
    Kinds(Vec<Option<u8>>),
}

impl Response {
    /// The variant's name, for messages (the payload may be large).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Response::Done => "Done",
            Response::Opened { .. } => "Opened",
            Response::Flag(_) => "Flag",
            Response::Bytes(_) => "Bytes",
            Response::MaybeBytes(_) => "MaybeBytes",
            Response::MaybeName(_) => "MaybeName",
            Response::Names(_) => "Names",
            Response::ManyBytes(_) => "ManyBytes",
            Response::Ids(_) => "Ids",
            Response::Stored { .. } => "Stored",
            Response::Assembled(_) => "Assembled",
            Response::Removed(_) => "Removed",
            Response::Objects(_) => "Objects",
            Response::Hashes(_) => "Hashes",
            Response::Inodes(_) => "Inodes",
            Response::Tree(_) => "Tree",
            Response::NeedFull(_) => "NeedFull",
            Response::Progress(_) => "Progress",
            Response::Note(_) => "Note",
            Response::Error(_) => "Error",
            Response::Digest(_) => "Digest",
            Response::Kinds(_) => "Kinds",
        }
    }
}

/// How the client compresses the object stream; the helper refuses a window larger
/// than it is willing to hold.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct StreamParams {
    pub window_log: u32,
}

/// A value sent in full or as a patch against bytes the helper can find itself.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Delta {
    /// The bytes themselves (for entries: zstd-compressed).
    Full(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A zstd patch (see [`crate::patch`]) against the unpacked form of a manifest
    /// stored on the helper's side.
    Patch {
        base: ManifestRef,
        #[serde(with = "serde_bytes")]
        patch: Vec<u8>,
        /// Length of the rebuilt bytes.
        len: u64,
        /// blake3 of the final bytes (for a manifest: of the packed file).
        digest: Digest,
    },
}

/// A manifest both ends have: committed (`manifests/NAME.manifest`) or staged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ManifestRef {
    pub name: String,
    pub staged: bool,
    /// blake3 of the manifest file, so a different file of the same name is noticed.
    pub digest: Digest,
}

/// [`StoredObject`] on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireObject {
    pub id: ObjectId,
    pub copy: u32,
    pub size: u64,
}

impl From<&StoredObject> for WireObject {
    fn from(o: &StoredObject) -> Self {
        WireObject {
            id: o.id,
            copy: o.copy,
            size: o.size,
        }
    }
}

impl From<WireObject> for StoredObject {
    fn from(o: WireObject) -> Self {
        StoredObject {
            id: o.id,
            copy: o.copy,
            size: o.size,
        }
    }
}

/// [`AssembleStats`] on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireAssembleStats {
    pub dirs: u64,
    pub links: u64,
    pub empty_files: u64,
    pub symlinks: u64,
    pub object_copies: u64,
}

impl From<AssembleStats> for WireAssembleStats {
    fn from(s: AssembleStats) -> Self {
        WireAssembleStats {
            dirs: s.dirs,
            links: s.links,
            empty_files: s.empty_files,
            symlinks: s.symlinks,
            object_copies: s.object_copies,
        }
    }
}

impl From<WireAssembleStats> for AssembleStats {
    fn from(s: WireAssembleStats) -> Self {
        AssembleStats {
            dirs: s.dirs,
            links: s.links,
            empty_files: s.empty_files,
            symlinks: s.symlinks,
            object_copies: s.object_copies,
        }
    }
}

/// [`TreeKind`] on the wire: 0 dir, 1 file, 2 symlink, 3 other.
pub(crate) fn tree_kind_code(kind: TreeKind) -> u8 {
    match kind {
        TreeKind::Dir => 0,
        TreeKind::File => 1,
        TreeKind::Symlink => 2,
        TreeKind::Other => 3,
    }
}

/// The [`TreeKind`] of a [`tree_kind_code`] (anything unknown is `Other`).
pub(crate) fn tree_kind_of(code: u8) -> TreeKind {
    match code {
        0 => TreeKind::Dir,
        1 => TreeKind::File,
        2 => TreeKind::Symlink,
        _ => TreeKind::Other,
    }
}

/// [`TreeEntry`] on the wire; `kind` is a [`tree_kind_code`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WireTreeEntry {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub size: u64,
    pub ino: Option<u64>,
    pub nlink: Option<u64>,
    pub link_target: Option<serde_bytes::ByteBuf>,
}

impl From<TreeEntry> for WireTreeEntry {
    fn from(e: TreeEntry) -> Self {
        WireTreeEntry {
            path: e.path,
            kind: tree_kind_code(e.kind),
            mode: e.mode,
            size: e.size,
            ino: e.ino,
            nlink: e.nlink,
            link_target: e.link_target.map(serde_bytes::ByteBuf::from),
        }
    }
}

impl From<WireTreeEntry> for TreeEntry {
    fn from(e: WireTreeEntry) -> Self {
        TreeEntry {
            path: e.path,
            kind: tree_kind_of(e.kind),
            mode: e.mode,
            size: e.size,
            ino: e.ino,
            nlink: e.nlink,
            link_target: e.link_target.map(serde_bytes::ByteBuf::into_vec),
        }
    }
}

/// Which [`TargetError`] variant an error was on the helper's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ErrorKind {
    Io,
    NotAStore,
    NoStore,
    Manifest,
    Blob,
    ReleaseExists,
    Other,
    Interrupted,
}

/// The common kinds of an I/O error, so the client can tell "not found" from
/// "permission denied" without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum IoKind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    InvalidData,
    InvalidInput,
    StorageFull,
    Other,
}

/// A store error as it travels: kind, message, and the place (path, operation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub kind: ErrorKind,
    pub message: String,
    /// The path, location, object or release the error is about.
    pub path: Option<String>,
    /// For I/O errors: the operation (`read`, `rename into place`).
    pub op: Option<String>,
    pub io: Option<IoKind>,
    /// Second place, where the variant has one (the location of an existing release).
    pub detail: Option<String>,
}

impl WireError {
    fn new(kind: ErrorKind, message: String) -> WireError {
        WireError {
            kind,
            message,
            path: None,
            op: None,
            io: None,
            detail: None,
        }
    }
}

fn io_kind(e: &io::Error) -> IoKind {
    match e.kind() {
        io::ErrorKind::NotFound => IoKind::NotFound,
        io::ErrorKind::PermissionDenied => IoKind::PermissionDenied,
        io::ErrorKind::AlreadyExists => IoKind::AlreadyExists,
        io::ErrorKind::InvalidData => IoKind::InvalidData,
        io::ErrorKind::InvalidInput => IoKind::InvalidInput,
        io::ErrorKind::StorageFull => IoKind::StorageFull,
        _ => IoKind::Other,
    }
}

fn std_io_kind(k: Option<IoKind>) -> io::ErrorKind {
    match k {
        Some(IoKind::NotFound) => io::ErrorKind::NotFound,
        Some(IoKind::PermissionDenied) => io::ErrorKind::PermissionDenied,
        Some(IoKind::AlreadyExists) => io::ErrorKind::AlreadyExists,
        Some(IoKind::InvalidData) => io::ErrorKind::InvalidData,
        Some(IoKind::InvalidInput) => io::ErrorKind::InvalidInput,
        Some(IoKind::StorageFull) => io::ErrorKind::StorageFull,
        Some(IoKind::Other) | None => io::ErrorKind::Other,
    }
}

impl From<&TargetError> for WireError {
    fn from(e: &TargetError) -> Self {
        let with_path = |kind, message: String, path: &str| WireError {
            path: Some(path.to_owned()),
            ..WireError::new(kind, message)
        };
        match e {
            TargetError::Io { op, path, source } => WireError {
                op: Some((*op).to_owned()),
                io: Some(io_kind(source)),
                ..with_path(ErrorKind::Io, source.to_string(), path)
            },
            TargetError::NotAStore { location, reason } => {
                with_path(ErrorKind::NotAStore, reason.clone(), location)
            }
            TargetError::NoStore { location, reason } => {
                with_path(ErrorKind::NoStore, reason.clone(), location)
            }
            TargetError::Manifest { path, source } => {
                with_path(ErrorKind::Manifest, source.to_string(), path)
            }
            TargetError::Blob { object, source } => WireError {
                io: Some(io_kind(source)),
                ..with_path(ErrorKind::Blob, source.to_string(), object)
            },
            TargetError::ReleaseExists { name, location } => WireError {
                detail: Some(location.clone()),
                ..with_path(ErrorKind::ReleaseExists, String::new(), name)
            },
            TargetError::Interrupted(_) => WireError::new(ErrorKind::Interrupted, String::new()),
            // The rest travel as their one-line message (the client shows it as is).
            other => WireError::new(ErrorKind::Other, crate::error::error_chain(other)),
        }
    }
}

/// `s` with a leading `from` (followed by nothing, `/` or `:`) replaced by `to`.
fn relocate(s: &mut String, from: &str, to: &str) {
    if from.is_empty() || !s.starts_with(from) {
        return;
    }
    if matches!(s.as_bytes().get(from.len()), None | Some(b'/') | Some(b':')) {
        s.replace_range(..from.len(), to);
    }
}

impl WireError {
    /// The same error with places under the helper's store root `from` named under
    /// the client's name for it, `to` (`/srv/site/objects/..` becomes
    /// `web1:/srv/site/objects/..`), so messages name the target as the user wrote it,
    /// as over SFTP.
    pub(crate) fn relocated(mut self, from: &str, to: &str) -> WireError {
        for place in [&mut self.path, &mut self.detail].into_iter().flatten() {
            relocate(place, from, to);
        }
        if self.kind == ErrorKind::Other {
            relocate(&mut self.message, from, to);
        }
        self
    }

    /// The client's error: the same variant, with the helper's message and places.
    pub(crate) fn into_target_error(self) -> TargetError {
        let path = self.path.unwrap_or_default();
        match self.kind {
            ErrorKind::Io => TargetError::Io {
                op: intern_op(self.op.as_deref().unwrap_or("access")),
                path,
                source: io::Error::new(std_io_kind(self.io), self.message),
            },
            ErrorKind::NotAStore => TargetError::NotAStore {
                location: path,
                reason: self.message,
            },
            ErrorKind::NoStore => TargetError::NoStore {
                location: path,
                reason: self.message,
            },
            ErrorKind::Manifest => TargetError::Manifest {
                path,
                source: ManifestError::Decode(self.message),
            },
            ErrorKind::Blob => TargetError::Blob {
                object: path,
                source: io::Error::new(std_io_kind(self.io), self.message),
            },
            ErrorKind::ReleaseExists => TargetError::ReleaseExists {
                name: path,
                location: self.detail.unwrap_or_default(),
            },
            ErrorKind::Other => TargetError::Other(self.message),
            ErrorKind::Interrupted => TargetError::Interrupted(relstore_core::cancel::Interrupted),
        }
    }
}

/// `TargetError::Io` names its operation with a `&'static str`. The operations a
/// store performs are a small fixed vocabulary, so each distinct name is leaked once
/// and reused; a peer sending ever new names gets a generic one past a bound.
fn intern_op(op: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    const MAX_OPS: usize = 256;
    let mut guard = match SEEN.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let seen = guard.get_or_insert_with(HashSet::new);
    if let Some(known) = seen.get(op) {
        return known;
    }
    if seen.len() >= MAX_OPS || op.len() > 64 {
        return "access";
    }
    let leaked: &'static str = Box::leak(op.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_errors_keep_their_variant_and_places() {
        let e = TargetError::Io {
            op: "rename into place",
            path: "/srv/x/objects/ab".into(),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        };
        match WireError::from(&e).into_target_error() {
            TargetError::Io { op, path, source } => {
                assert_eq!(op, "rename into place");
                assert_eq!(path, "/srv/x/objects/ab");
                assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
            }
            other => panic!("{other:?}"),
        }
        let e = TargetError::ReleaseExists {
            name: "r1".into(),
            location: "/srv/x".into(),
        };
        assert_eq!(
            WireError::from(&e).into_target_error().to_string(),
            e.to_string()
        );
        let e = TargetError::NoStore {
            location: "/srv/y".into(),
            reason: "empty".into(),
        };
        assert!(matches!(
            WireError::from(&e).into_target_error(),
            TargetError::NoStore { .. }
        ));
    }
}
