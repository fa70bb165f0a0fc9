//! The manifest: a sorted list of every entry of a release, with a small header.
//!
//! On disk (`manifests/NAME.manifest`) a manifest is
//! `MAGIC | u32 format | u32 header_len | header | u64 body_len | u64 zbody_len |
//! zstd(body) | blake3(all preceding bytes)`, where header and body are bincode (serde).
//! The header comes first and uncompressed so `releases` can list a store by reading a
//! few hundred bytes per release; the trailing checksum turns any corruption into a
//! clear error instead of a wrong tree.
//!
//! A manifest read from a target is input: decoding never panics, allocates within
//! declared bounds, and [`Manifest::validate`] rejects absolute paths, `..`, `.`, empty
//! components, NUL, unsorted or duplicate entries, and entries whose parent is not a
//! directory of the same manifest (so assembly can never write through a symlink).

use std::collections::HashSet;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::hash::{ContentHash, ObjectId};
use crate::path::{self, cmp_paths, Escaped, PathProblem};
use crate::release::{self, ReleaseName};

/// Version of the on-disk manifest encoding; bumped on any incompatible change.
pub const MANIFEST_FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"RELSTMF\n";
/// Upper bound on the encoded header, so a listing never reads more than this.
pub const MAX_HEADER_LEN: usize = 16 * 1024;
/// Upper bound on the decoded body (about 10 million entries); guards against a
/// hostile length or a decompression bomb.
pub const MAX_BODY_LEN: u64 = 2 << 30;
const PREFIX_LEN: usize = 8 + 4 + 4;

/// What kind of file system object an entry is, with what it needs to be recreated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory (empty ones included); `mode` is its permission bits.
    Dir { mode: u32 },
    /// A regular file; its content lives in the object `ObjectId::for_file(hash, mode)`.
    File {
        size: u64,
        hash: ContentHash,
        mode: u32,
    },
    /// A symbolic link, stored verbatim and never followed.
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

impl EntryKind {
    /// Short lower-case name for output.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Dir { .. } => "dir",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
        }
    }
}

/// One path of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, raw bytes, `/`-separated.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// What is at that path.
    pub kind: EntryKind,
}

impl Entry {
    /// What it takes to recreate this entry on a target: every entry kind is fully
    /// described, so a caller never meets a "file without object" case.
    pub fn recipe(&self) -> Recipe<'_> {
        match self.kind {
            EntryKind::Dir { mode } => Recipe::Dir { mode },
            EntryKind::File { size: 0, mode, .. } => Recipe::Leaf(Leaf::Empty { mode }),
            EntryKind::File { hash, mode, .. } => Recipe::Leaf(Leaf::Link {
                object: ObjectId::for_file(hash, mode),
            }),
            EntryKind::Symlink { ref target } => Recipe::Leaf(Leaf::Symlink { target }),
        }
    }

    /// The object this entry is linked from: `None` for directories, symlinks and
    /// zero-length files (those are created fresh in every release).
    pub fn object(&self) -> Option<ObjectId> {
        match self.recipe() {
            Recipe::Leaf(Leaf::Link { object }) => Some(object),
            _ => None,
        }
    }
}

/// How an entry is recreated on a target (see [`Entry::recipe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe<'a> {
    /// A directory with these permission bits (applied once it is filled).
    Dir { mode: u32 },
    /// Anything else: made in one step once its parent directory exists.
    Leaf(Leaf<'a>),
}

/// A non-directory entry as a target makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf<'a> {
    /// A hardlink of the stored object (its mode is part of the object).
    Link { object: ObjectId },
    /// A fresh zero-length file: never shared between releases, since one write to a
    /// shared inode would change every release at once.
    Empty { mode: u32 },
    /// A symbolic link with this target, verbatim.
    Symlink { target: &'a [u8] },
}

/// Counts that describe a release without decoding its body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

impl Totals {
    /// Counts `entries`.
    pub fn of(entries: &[Entry]) -> Totals {
        let mut t = Totals {
            entries: entries.len() as u64,
            ..Totals::default()
        };
        for e in entries {
            match &e.kind {
                EntryKind::Dir { .. } => t.dirs += 1,
                EntryKind::File { size, .. } => {
                    t.files += 1;
                    t.bytes = t.bytes.saturating_add(*size);
                }
                EntryKind::Symlink { .. } => t.symlinks += 1,
            }
        }
        t
    }
}

/// Metadata of a release, readable on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Release name; must equal the manifest's file name.
    pub release: String,
    /// When the release was published, nanoseconds since the Unix epoch (UTC): set by
    /// the push right before its swap, under the store's lock, so releases ordered by
    /// it are in the order they first went live (not the order their pushes started).
    pub created_unix_ns: i64,
    /// Version of relstore that wrote it.
    pub tool_version: String,
    /// Counts, checked against the body on load.
    pub totals: Totals,
}

/// A complete manifest: header plus entries in [`cmp_paths`] order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub header: Header,
    pub entries: Vec<Entry>,
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a relstore manifest (bad magic bytes)")]
    BadMagic,
    #[error("manifest format {0} is not supported by this relstore (supports {MANIFEST_FORMAT})")]
    UnsupportedFormat(u32),
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch (the file is corrupt)")]
    Checksum,
    #[error("declared size {0} exceeds the limit")]
    TooLarge(u64),
    #[error(
        "declares {declared} entries in a {compressed}-byte compressed body (limit {limit}): \
         refused as a decompression bomb"
    )]
    TooManyEntries {
        declared: u64,
        compressed: u64,
        limit: u64,
    },
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("undecodable: {0}")]
    Decode(String),
    #[error("invalid path {path:?}: {problem}")]
    InvalidPath { path: String, problem: PathProblem },
    #[error("entries out of order or duplicated at {0:?}")]
    NotSorted(String),
    #[error("{0:?} has no parent directory entry")]
    MissingParent(String),
    #[error("invalid symlink target at {0:?}")]
    BadSymlink(String),
    #[error("invalid mode {mode:o} at {path:?}")]
    BadMode { path: String, mode: u32 },
    #[error("header totals do not match the entries")]
    BadTotals,
    #[error("invalid release name in header: {0}")]
    BadName(String),
    #[error("header names release {found:?}, expected {expected:?}")]
    NameMismatch { expected: String, found: String },
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_BODY_LEN as usize }>()
}

impl Manifest {
    /// Builds a manifest from entries in any order; sorts them and computes totals.
    pub fn new(release: &ReleaseName, created_unix_ns: i64, mut entries: Vec<Entry>) -> Manifest {
        entries.sort_unstable_by(|a, b| cmp_paths(&a.path, &b.path));
        let totals = Totals::of(&entries);
        Manifest {
            header: Header {
                release: release.as_str().to_owned(),
                created_unix_ns,
                tool_version: env!("CARGO_PKG_VERSION").to_owned(),
                totals,
            },
            entries,
        }
    }

    /// Distinct objects this release links, in first-use order.
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut seen = HashSet::with_capacity(self.entries.len());
        self.entries
            .iter()
            .filter_map(Entry::object)
            .filter(|id| seen.insert(*id))
            .collect()
    }

    /// Encodes to the on-disk form. Fails only if serialisation or compression does,
    /// which would otherwise produce a manifest with a valid checksum and a wrong body.
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        let encode_err = |e: bincode::error::EncodeError| ManifestError::Encode(e.to_string());
        let header =
            bincode::serde::encode_to_vec(&self.header, bincode_config()).map_err(encode_err)?;
        let body =
            bincode::serde::encode_to_vec(&self.entries, bincode_config()).map_err(encode_err)?;
        let zbody =
            zstd::bulk::compress(&body, 3).map_err(|e| ManifestError::Encode(e.to_string()))?;
        let header_len = u32::try_from(header.len())
            .map_err(|_| ManifestError::Encode("header too large".into()))?;
        let mut out = Vec::with_capacity(PREFIX_LEN + header.len() + 16 + zbody.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&MANIFEST_FORMAT.to_le_bytes());
        out.extend_from_slice(&header_len.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&(zbody.len() as u64).to_le_bytes());
        out.extend_from_slice(&zbody);
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        Ok(out)
    }

    /// Decodes and fully validates a manifest. `expected_name`, when given, must match
    /// the header (a manifest renamed on the target is refused).
    ///
    /// The body is decompressed and decoded as a stream, one entry at a time, after the
    /// header's entry count has been checked against [`entry_limit`]: a small hostile
    /// file that would decompress into tens of millions of entries is refused before
    /// any of them is allocated.
    pub fn decode(bytes: &[u8], expected_name: Option<&str>) -> Result<Manifest, ManifestError> {
        let (header, zbody, body_len) = open_checked(bytes)?;
        let count = check_entry_count(&header, zbody.len(), body_len)?;
        let decoder = zstd::stream::read::Decoder::new(zbody)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        let mut body = CountingReader::new(decoder);
        let entries = decode_entries(&mut body, body_len, count)?;
        let mut extra = [0u8; 1];
        let trailing = body
            .inner
            .read(&mut extra)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        if trailing != 0 {
            return Err(ManifestError::Decode(
                "body length differs from header".into(),
            ));
        }
        let manifest = Manifest { header, entries };
        manifest.validate(expected_name)?;
        Ok(manifest)
    }

    /// Whether the manifest in `bytes` lists exactly `entries` (sorted, as
    /// [`Manifest::new`] leaves them), without materialising its own entries: the body
    /// is decompressed and decoded one entry at a time and compared as it streams, so a
    /// no-change push of a million-file tree holds one copy of the tree in memory, not
    /// two. The checksum and header are verified as by [`Manifest::decode`]; the body is
    /// not validated, which is sound because it is only ever found equal to entries
    /// that are valid. Returns the header for the report.
    pub fn equals_entries(
        bytes: &[u8],
        expected_name: Option<&str>,
        entries: &[Entry],
    ) -> Result<(bool, Header), ManifestError> {
        let (header, zbody, body_len) = open_checked(bytes)?;
        validate_header(&header, expected_name)?;
        if header.totals != Totals::of(entries) {
            return Ok((false, header));
        }
        let decoder = zstd::stream::read::Decoder::new(zbody)
            .map_err(|e| ManifestError::Decode(e.to_string()))?;
        let mut body = io::BufReader::new(decoder.take(body_len));
        let decode_err = |e: bincode::error::DecodeError| ManifestError::Decode(e.to_string());
        let count: u64 = bincode::serde::decode_from_std_read(&mut body, bincode_config())
            .map_err(decode_err)?;
        if count != entries.len() as u64 {
            return Ok((false, header));
        }
        for want in entries {
            let got: Entry = bincode::serde::decode_from_std_read(&mut body, bincode_config())
                .map_err(decode_err)?;
            if &got != want {
                return Ok((false, header));
            }
        }
        Ok((true, header))
    }

    /// Checks every invariant a manifest from an untrusted source must hold.
    pub fn validate(&self, expected_name: Option<&str>) -> Result<(), ManifestError> {
        validate_header(&self.header, expected_name)?;
        let mut dirs: HashSet<&[u8]> = HashSet::new();
        let mut prev: Option<&[u8]> = None;
        for entry in &self.entries {
            let p = entry.path.as_slice();
            path::validate_rel_path(p).map_err(|problem| ManifestError::InvalidPath {
                path: path::escape(p),
                problem,
            })?;
            if let Some(prev) = prev {
                if cmp_paths(prev, p).is_ge() {
                    return Err(ManifestError::NotSorted(path::escape(p)));
                }
            }
            prev = Some(p);
            if let Some(parent) = path::parent(p) {
                if !dirs.contains(parent) {
                    return Err(ManifestError::MissingParent(path::escape(p)));
                }
            }
            match &entry.kind {
                EntryKind::Dir { mode } => {
                    check_mode(p, *mode)?;
                    dirs.insert(p);
                }
                EntryKind::File { mode, .. } => check_mode(p, *mode)?,
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.len() > path::MAX_PATH_LEN || target.contains(&0)
                    {
                        return Err(ManifestError::BadSymlink(path::escape(p)));
                    }
                }
            }
        }
        if Totals::of(&self.entries) != self.header.totals {
            return Err(ManifestError::BadTotals);
        }
        Ok(())
    }
}

fn check_mode(p: &[u8], mode: u32) -> Result<(), ManifestError> {
    if mode & !0o7777 != 0 {
        return Err(ManifestError::BadMode {
            path: Escaped(p).to_string(),
            mode,
        });
    }
    Ok(())
}

/// Hard cap on the entries of one manifest, whatever its size: about 20 times the
/// largest trees relstore is built for.
pub const MAX_ENTRIES: u64 = 20_000_000;
/// Entries a manifest may hold however small its compressed body is.
const MIN_ENTRY_LIMIT: u64 = 1 << 20;
/// Entries allowed per compressed body byte above [`MIN_ENTRY_LIMIT`]. A real entry
/// carries a distinct path (and, for a file, a 32-byte hash that does not compress), so
/// real manifests stay far below one entry per compressed byte; a decompression bomb
/// of millions of identical tiny entries is far above this.
const ENTRIES_PER_COMPRESSED_BYTE: u64 = 8;
/// Largest encoding of one entry: a path and a symlink target of the maximum length plus
/// the fixed fields.
const MAX_ENTRY_ENCODED: u64 = 2 * path::MAX_PATH_LEN as u64 + 64;

/// How many entries a manifest whose compressed body has `compressed_len` bytes may
/// declare before it is refused as a decompression bomb.
pub fn entry_limit(compressed_len: usize) -> u64 {
    (compressed_len as u64)
        .saturating_mul(ENTRIES_PER_COMPRESSED_BYTE)
        .clamp(MIN_ENTRY_LIMIT, MAX_ENTRIES)
}

/// Checks the header's entry count and the declared body length against the limits
/// before anything is decompressed; returns the count.
fn check_entry_count(
    h: &Header,
    compressed_len: usize,
    body_len: u64,
) -> Result<u64, ManifestError> {
    let count = h.totals.entries;
    let limit = entry_limit(compressed_len);
    if count > limit {
        return Err(ManifestError::TooManyEntries {
            declared: count,
            compressed: compressed_len as u64,
            limit,
        });
    }
    if body_len > count.saturating_add(1).saturating_mul(MAX_ENTRY_ENCODED) {
        return Err(ManifestError::TooLarge(body_len));
    }
    Ok(count)
}

/// Decodes exactly `count` entries that must fill exactly `body_len` bytes of `body`.
fn decode_entries<R: Read>(
    body: &mut CountingReader<R>,
    body_len: u64,
    count: u64,
) -> Result<Vec<Entry>, ManifestError> {
    let decode_err = |e: bincode::error::DecodeError| ManifestError::Decode(e.to_string());
    let mut limited = io::BufReader::new(body.by_ref().take(body_len));
    let stored: u64 =
        bincode::serde::decode_from_std_read(&mut limited, bincode_config()).map_err(decode_err)?;
    if stored != count {
        return Err(ManifestError::BadTotals);
    }
    let mut entries = Vec::with_capacity(count.min(MIN_ENTRY_LIMIT) as usize);
    for _ in 0..count {
        entries.push(
            bincode::serde::decode_from_std_read(&mut limited, bincode_config())
                .map_err(decode_err)?,
        );
    }
    let mut rest = [0u8; 1];
    let left = limited
        .read(&mut rest)
        .map_err(|e| ManifestError::Decode(e.to_string()))?;
    drop(limited);
    if left != 0 {
        return Err(ManifestError::Decode("trailing bytes after entries".into()));
    }
    if body.count != body_len {
        return Err(ManifestError::Decode(
            "body length differs from header".into(),
        ));
    }
    Ok(entries)
}

/// Counts the bytes read through it (the decoded body's true length).
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        CountingReader { inner, count: 0 }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn validate_header(h: &Header, expected_name: Option<&str>) -> Result<(), ManifestError> {
    release::validate_name(&h.release).map_err(|e| ManifestError::BadName(e.to_string()))?;
    if let Some(expected) = expected_name {
        if h.release != expected {
            return Err(ManifestError::NameMismatch {
                expected: expected.to_owned(),
                found: h.release.clone(),
            });
        }
    }
    if h.tool_version.len() > 64 {
        return Err(ManifestError::Decode("tool version too long".into()));
    }
    Ok(())
}

fn read_u32(b: &[u8], at: usize) -> Result<u32, ManifestError> {
    let s = b.get(at..at + 4).ok_or(ManifestError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Checks magic, format, header and checksum; returns the header, the compressed body
/// and the body's declared (bounded) length.
fn open_checked(bytes: &[u8]) -> Result<(Header, &[u8], u64), ManifestError> {
    let (header, header_end) = decode_header_at(bytes)?;
    if bytes.len() < header_end + 16 + 32 {
        return Err(ManifestError::Truncated);
    }
    let (payload, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(payload).as_bytes() != sum {
        return Err(ManifestError::Checksum);
    }
    let body_len = read_u64(payload, header_end)?;
    let zbody_len = read_u64(payload, header_end + 8)?;
    if body_len > MAX_BODY_LEN {
        return Err(ManifestError::TooLarge(body_len));
    }
    let zstart = header_end + 16;
    if (payload.len() - zstart) as u64 != zbody_len {
        return Err(ManifestError::Truncated);
    }
    Ok((header, &payload[zstart..], body_len))
}

fn read_u64(b: &[u8], at: usize) -> Result<u64, ManifestError> {
    let s = b.get(at..at + 8).ok_or(ManifestError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn decode_header_at(bytes: &[u8]) -> Result<(Header, usize), ManifestError> {
    if bytes.len() < PREFIX_LEN {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
            ManifestError::Truncated
        } else {
            ManifestError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(ManifestError::BadMagic);
    }
    let format = read_u32(bytes, 8)?;
    if format != MANIFEST_FORMAT {
        return Err(ManifestError::UnsupportedFormat(format));
    }
    let header_len = read_u32(bytes, 12)? as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(ManifestError::TooLarge(header_len as u64));
    }
    let raw = bytes
        .get(PREFIX_LEN..PREFIX_LEN + header_len)
        .ok_or(ManifestError::Truncated)?;
    let (header, used): (Header, usize) = bincode::serde::decode_from_slice(
        raw,
        bincode::config::standard().with_limit::<MAX_HEADER_LEN>(),
    )
    .map_err(|e| ManifestError::Decode(e.to_string()))?;
    if used != header_len {
        return Err(ManifestError::Decode("header length mismatch".into()));
    }
    Ok((header, PREFIX_LEN + header_len))
}

/// Decodes only the header from the first bytes of a manifest file (at most
/// [`MAX_HEADER_LEN`] + 16 are needed). The body and checksum are not checked here;
/// anything that uses the entries goes through [`Manifest::decode`].
pub fn decode_header(prefix: &[u8], expected_name: Option<&str>) -> Result<Header, ManifestError> {
    let (header, _) = decode_header_at(prefix)?;
    validate_header(&header, expected_name)?;
    Ok(header)
}

/// How many leading bytes of a manifest file [`decode_header`] may need.
pub const HEADER_PREFIX_LEN: usize = PREFIX_LEN + MAX_HEADER_LEN;

#[cfg(test)]
mod tests;
