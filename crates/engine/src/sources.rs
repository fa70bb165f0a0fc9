//! Where object content comes from: the source tree being pushed, and — when it is
//! not there — `--source DIR` trees and the local release store, used by `rollback`
//! (to rebuild an evicted release) and `verify --repair` (to replace corrupt or
//! missing objects).
//! Every source hands content out verified against its hash while it is read, so a
//! wrong byte can never reach a target.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use relstore_core::path::{escape, join};
use relstore_core::progress::Progress;
use relstore_core::target::{BlobSource, Upload};
use relstore_core::verify_read::HashCheckingReader;
use relstore_core::{ContentHash, Entry, EntryKind};
pub use relstore_release_store::StoreSource;

use crate::error::EngineResult;
use crate::push::scan_source;

/// A place repair can take object content from. Implementations hand out content
/// through [`BlobSource::open`], verified against the hash while it is read.
pub trait RepairSource: BlobSource + Send {
    /// Whether this source can supply content with this hash.
    fn has(&self, hash: &ContentHash) -> bool;
    /// Names the source for messages (`--source /path`).
    fn label(&self) -> String;
}

/// A directory whose files supply content by hash: the source of a push, or a
/// `--source DIR` of rollback and repair. Reads are verified against the hash.
pub struct DirSource {
    root: PathBuf,
    paths: HashMap<ContentHash, Vec<u8>>,
}

impl DirSource {
    /// Indexes the non-empty regular files among `entries` (scanned from `dir`) by
    /// content hash.
    pub fn new(dir: PathBuf, entries: &[Entry]) -> DirSource {
        let mut paths = HashMap::new();
        for e in entries {
            if let EntryKind::File { size, hash, .. } = &e.kind {
                if *size > 0 {
                    paths.entry(*hash).or_insert_with(|| e.path.clone());
                }
            }
        }
        DirSource { root: dir, paths }
    }

    /// Scans `dir` (with the stat cache under `cache_dir`, if any) and indexes it.
    pub fn scan(
        dir: &Path,
        cache_dir: Option<&Path>,
        progress: &dyn Progress,
    ) -> EngineResult<DirSource> {
        let scanned = scan_source(dir, false, cache_dir, progress)?;
        Ok(DirSource::new(dir.to_path_buf(), &scanned.entries))
    }

    /// Whether a file with this content was found in the directory.
    pub fn has(&self, hash: &ContentHash) -> bool {
        self.paths.contains_key(hash)
    }

    fn file(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.paths.get(hash).map(|rel| join(&self.root, rel))
    }
}

impl BlobSource for DirSource {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let path = self.file(&upload.id.hash).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file with this content in {}", self.root.display()),
            )
        })?;
        let file = File::open(&path)?;
        Ok(Box::new(HashCheckingReader::new(
            file,
            upload.id.hash,
            upload.size,
            escape(path.as_os_str().as_encoded_bytes()),
        )))
    }

    fn describe(&self, upload: &Upload) -> String {
        match self.file(&upload.id.hash) {
            Some(p) => escape(p.as_os_str().as_encoded_bytes()),
            None => upload.id.rel_path(),
        }
    }
}

impl RepairSource for DirSource {
    fn has(&self, hash: &ContentHash) -> bool {
        DirSource::has(self, hash)
    }

    fn label(&self) -> String {
        format!(
            "--source {}",
            escape(self.root.as_os_str().as_encoded_bytes())
        )
    }
}

/// The sources repair may use, tried in order; itself a [`BlobSource`] that reads each
/// object from the first source holding it.
#[derive(Default)]
pub struct Sources<'a> {
    list: Vec<Box<dyn RepairSource + 'a>>,
}

impl<'a> Sources<'a> {
    /// No sources.
    pub fn new() -> Sources<'a> {
        Sources { list: Vec::new() }
    }

    /// Adds a source after those already there.
    pub fn push(&mut self, source: Box<dyn RepairSource + 'a>) {
        self.list.push(source);
    }

    /// True when no source was given.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first source holding `hash`.
    pub fn find(&self, hash: &ContentHash) -> Option<&(dyn RepairSource + 'a)> {
        self.list.iter().find(|s| s.has(hash)).map(|s| s.as_ref())
    }

    /// Labels of all sources, for messages.
    pub fn labels(&self) -> Vec<String> {
        self.list.iter().map(|s| s.label()).collect()
    }
}

impl BlobSource for Sources<'_> {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        match self.find(&upload.id.hash) {
            Some(s) => s.open(upload),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no source holds this content",
            )),
        }
    }

    fn describe(&self, upload: &Upload) -> String {
        match self.find(&upload.id.hash) {
            Some(s) => s.describe(upload),
            None => upload.id.rel_path(),
        }
    }
}

/// The client's local release store (see [`relstore_release_store`]) holds the blobs of
/// every release pushed with write-through on, whatever happened to the source tree
/// since; it serves repairs as it serves uploads.
impl RepairSource for StoreSource<'_> {
    fn has(&self, hash: &ContentHash) -> bool {
        self.0.contains(hash)
    }

    fn label(&self) -> String {
        format!(
            "local release store {}",
            escape(self.0.root().as_os_str().as_encoded_bytes())
        )
    }
}
