//! Reading blobs back: restoring evicted releases and repairing corrupt objects.
//!
//! Bytes leave the store only through [`VerifiedBlob`], which checks length and blake3
//! hash, so a blob damaged on disk (bit rot, a truncated copy of the store) makes the
//! read fail instead of putting wrong bytes on a server under the right name.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use relstore_core::target::{BlobSource, Upload};
use relstore_core::ContentHash;

use crate::ReleaseStore;

impl ReleaseStore {
    /// A reader of the original bytes of the blob `hash`, which is `size` bytes long.
    ///
    /// The reader fails (`InvalidData`, naming the blob file) rather than hand out
    /// bytes that do not hash to `hash`: the check runs as soon as `size` bytes were
    /// decoded, before the last of them is returned, so even a consumer that reads
    /// exactly `size` bytes and stops is protected. A blob proven corrupt (invalid zstd,
    /// or exactly `size` bytes with another hash) is moved into `tmp/`, so that the next
    /// push of a release with this content stores it again instead of trusting it.
    /// A missing blob is a `NotFound` error naming the path.
    pub fn open_blob(&self, hash: &ContentHash, size: u64) -> io::Result<Box<dyn Read + Send>> {
        let path = self.blob_path(hash);
        let file = File::open(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open local release store blob {}: {e}",
                    path.display()
                ),
            )
        })?;
        let decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::new(file)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot read local release store blob {}: {e}",
                        path.display()
                    ),
                )
            })?;
        Ok(Box::new(VerifiedBlob {
            inner: decoder,
            hasher: blake3::Hasher::new(),
            expected: *hash,
            size,
            seen: 0,
            quarantine: self.tmp_path(&format!("{}.corrupt", hash.to_hex())),
            path,
            state: State::Reading,
        }))
    }
}

enum State {
    Reading,
    Done,
    Failed(io::ErrorKind, String),
}

/// Decoded content, checked against length and hash; see [`ReleaseStore::open_blob`].
struct VerifiedBlob<R> {
    inner: R,
    hasher: blake3::Hasher,
    expected: ContentHash,
    size: u64,
    seen: u64,
    path: PathBuf,
    quarantine: PathBuf,
    state: State,
}

impl<R: Read> VerifiedBlob<R> {
    /// Called once `size` bytes were decoded: the hash decides.
    fn finish_at_size(&mut self) -> io::Result<()> {
        if ContentHash::from(self.hasher.finalize()) == self.expected {
            self.state = State::Done;
            return Ok(());
        }
        // Corrupt for sure only if the stream really ends here; longer content may
        // just mean the caller's size is wrong, and a good blob must not be moved.
        let mut one = [0u8; 1];
        match self.inner.read(&mut one) {
            Ok(0) => Err(self.fail("its content does not match its hash".to_owned(), true)),
            Ok(_) => Err(self.fail(
                format!(
                    "it decompresses to more than the expected {} bytes",
                    self.size
                ),
                false,
            )),
            Err(e) => Err(self.decode_failed(e)),
        }
    }

    /// An error from the decoder: an I/O error of the file, or invalid zstd data.
    fn decode_failed(&mut self, e: io::Error) -> io::Error {
        if e.raw_os_error().is_some() {
            let msg = format!(
                "cannot read local release store blob {}: {e}",
                self.path.display()
            );
            self.state = State::Failed(e.kind(), msg.clone());
            io::Error::new(e.kind(), msg)
        } else {
            self.fail(format!("it is not valid zstd data ({e})"), true)
        }
    }

    /// Records and returns a corruption error; with `quarantine`, moves the blob aside.
    fn fail(&mut self, detail: String, quarantine: bool) -> io::Error {
        let mut msg = format!(
            "local release store blob {} is corrupt: {detail}",
            self.path.display()
        );
        if quarantine {
            match fs::rename(&self.path, &self.quarantine) {
                Ok(()) => msg.push_str(&format!(
                    "; moved it to {} (the next push of a release with this content stores it again)",
                    self.quarantine.display()
                )),
                Err(e) => msg.push_str(&format!(
                    "; could not move it aside ({e}): delete it so that the next push stores it again"
                )),
            }
        }
        self.state = State::Failed(io::ErrorKind::InvalidData, msg.clone());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
}

impl<R: Read> Read for VerifiedBlob<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Reading => {}
            State::Done => return Ok(0),
            State::Failed(kind, msg) => return Err(io::Error::new(*kind, msg.clone())),
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let remaining = self.size - self.seen;
        if remaining == 0 {
            // Only for size 0: nothing to decode, the hash of nothing decides.
            self.finish_at_size()?;
            return Ok(0);
        }
        let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => return Err(self.decode_failed(e)),
        };
        if n == 0 {
            // A shorter stream may mean a wrong size from the caller: not moved aside.
            return Err(self.fail(
                format!(
                    "it decompresses to {} bytes, expected {}",
                    self.seen, self.size
                ),
                false,
            ));
        }
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if self.seen == self.size {
            self.finish_at_size()?;
        }
        Ok(n)
    }
}

/// The store as a [`BlobSource`], so the engine can hand it to
/// [`relstore_core::Target::put_objects`] when a release evicted from its target is
/// restored or a corrupt object is repaired. Object ids carry a mode; the store keys by
/// content alone, so every mode of one content is served by one blob.
pub struct StoreSource<'a>(pub &'a ReleaseStore);

impl BlobSource for StoreSource<'_> {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        self.0.open_blob(&upload.id.hash, upload.size)
    }

    fn describe(&self, upload: &Upload) -> String {
        format!(
            "local release store {}",
            self.0.blob_path(&upload.id.hash).display()
        )
    }
}
