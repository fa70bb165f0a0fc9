//! The source tree as a [`BlobSource`]: object bytes read from the files they were
//! hashed from, verified against their hash while they are read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use relstore_core::path::{escape, join};
use relstore_core::target::{BlobSource, Upload};
use relstore_core::verify_read::HashCheckingReader;
use relstore_core::{Entry, ObjectId};

/// Maps each object of a manifest to one source file holding its content.
pub struct SourceTree {
    root: PathBuf,
    paths: HashMap<ObjectId, Vec<u8>>,
}

impl SourceTree {
    /// Indexes `entries` scanned from `root`.
    pub fn new(root: PathBuf, entries: &[Entry]) -> SourceTree {
        let mut paths = HashMap::new();
        for e in entries {
            if let Some(id) = e.object() {
                paths.entry(id).or_insert_with(|| e.path.clone());
            }
        }
        SourceTree { root, paths }
    }
}

impl BlobSource for SourceTree {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let rel = self.paths.get(&upload.id).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "object not in the source tree")
        })?;
        let path = join(&self.root, rel);
        let file = File::open(&path)?;
        Ok(Box::new(HashCheckingReader::new(
            file,
            upload.id.hash,
            upload.size,
            escape(path.as_os_str().as_encoded_bytes()),
        )))
    }

    fn describe(&self, upload: &Upload) -> String {
        match self.paths.get(&upload.id) {
            Some(rel) => escape(join(&self.root, rel).as_os_str().as_encoded_bytes()),
            None => upload.id.rel_path(),
        }
    }
}
