//! Objects the helper has received and verified, waiting to be handed to the store.
//!
//! The helper never writes into `objects/` itself: it collects verified objects in a
//! batch (small ones in memory, large ones in spool files) and passes the batch to the
//! store's own `put_objects` through [`Batch`]'s [`BlobSource`], so durability and the
//! rename into `objects/` stay the store's job. The source re-checks every object's
//! hash as the store reads it, so a spool file changed behind the helper's back
//! cannot become an object either.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use relstore_core::progress::NoProgress;
use relstore_core::target::{BlobSource, Upload};
use relstore_core::verify_read::HashCheckingReader;
use relstore_core::{ContentHash, ObjectId, Target, TargetError, TargetResult};

/// Objects above this size are spooled to a file instead of memory.
pub(crate) const MEMORY_OBJECT_MAX: u64 = 4 << 20;
/// A batch is handed to the store when it holds this many bytes...
const BATCH_BYTES: u64 = 64 << 20;
/// ...or this many objects.
const BATCH_OBJECTS: usize = 4096;

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Bytes shared between the batch and the readers the store opens.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

enum Item {
    Memory(Arc<Vec<u8>>),
    File(PathBuf),
}

/// Verified objects on their way into the store.
pub(crate) struct Batch {
    dir: PathBuf,
    uploads: Vec<Upload>,
    items: HashMap<ObjectId, Item>,
    bytes: u64,
}

impl Batch {
    /// An empty batch spooling large objects under `dir`.
    pub(crate) fn new(dir: PathBuf) -> Batch {
        Batch {
            dir,
            uploads: Vec::new(),
            items: HashMap::new(),
            bytes: 0,
        }
    }

    /// Adds an object whose content was verified against `id`.
    pub(crate) fn add_memory(&mut self, id: ObjectId, content: Vec<u8>) {
        let size = content.len() as u64;
        self.add(id, size, Item::Memory(Arc::new(content)));
    }

    fn add(&mut self, id: ObjectId, size: u64, item: Item) {
        if let Some(Item::File(old)) = self.items.insert(id, item) {
            let _ = fs::remove_file(old);
        } else {
            self.uploads.push(Upload { id, size });
        }
        self.bytes += size;
    }

    /// Whether the batch should be handed to the store now.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.uploads.len() >= BATCH_OBJECTS
    }

    /// Copies exactly `size` bytes from `input` into memory or a spool file, hashing
    /// them, and adds the object if their hash is `id`'s. Returns whether it did; an
    /// error means the input failed (truncated stream, broken connection).
    pub(crate) fn receive(
        &mut self,
        id: ObjectId,
        size: u64,
        input: &mut impl Read,
    ) -> TargetResult<bool> {
        if size <= MEMORY_OBJECT_MAX {
            let mut content = Vec::with_capacity(size as usize);
            input
                .take(size)
                .read_to_end(&mut content)
                .map_err(stream_err)?;
            if content.len() as u64 != size {
                return Err(stream_err(io::ErrorKind::UnexpectedEof.into()));
            }
            let ok = ContentHash::from(blake3::hash(&content)) == id.hash;
            if ok {
                self.add_memory(id, content);
            }
            return Ok(ok);
        }
        let path = self.dir.join(format!(
            "helper-spool-{}-{}",
            std::process::id(),
            SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match spool_to_file(&path, size, input) {
            Ok(hash) if hash == id.hash => {
                self.add(id, size, Item::File(path));
                Ok(true)
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Hands the batch to the store; returns how many objects it stored.
    pub(crate) fn flush(&mut self, target: &dyn Target) -> TargetResult<u64> {
        if self.uploads.is_empty() {
            return Ok(0);
        }
        let result = target.put_objects(&self.uploads, &*self, &NoProgress);
        let n = self.uploads.len() as u64;
        self.clear();
        result.map(|()| n)
    }

    fn clear(&mut self) {
        for (_, item) in self.items.drain() {
            if let Item::File(p) = item {
                let _ = fs::remove_file(p);
            }
        }
        self.uploads.clear();
        self.bytes = 0;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.clear();
    }
}

fn stream_err(e: io::Error) -> TargetError {
    TargetError::Io {
        op: "receive",
        path: "the object stream".into(),
        source: e,
    }
}

/// Writes `size` bytes of `input` to a new file at `path`; returns their hash.
fn spool_to_file(path: &Path, size: u64, input: &mut impl Read) -> TargetResult<ContentHash> {
    let io_err = |op: &'static str, e: io::Error| TargetError::Io {
        op,
        path: path.display().to_string(),
        source: e,
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("create", e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut left = size;
    while left > 0 {
        relstore_core::cancel::check()?;
        let want = left.min(buf.len() as u64) as usize;
        let n = match input.read(&mut buf[..want]) {
            Ok(0) => return Err(stream_err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_err(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err("write", e))?;
        left -= n as u64;
    }
    Ok(ContentHash::from(hasher.finalize()))
}

impl BlobSource for Batch {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let inner: Box<dyn Read + Send> = match self.items.get(&upload.id) {
            Some(Item::Memory(bytes)) => Box::new(Cursor::new(Shared(bytes.clone()))),
            Some(Item::File(path)) => Box::new(File::open(path)?),
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Box::new(HashCheckingReader::new(
            inner,
            upload.id.hash,
            upload.size,
            self.describe(upload),
        )))
    }

    fn describe(&self, upload: &Upload) -> String {
        format!("received object {}", upload.id.hash)
    }
}
