//! The stat cache's bytes on disk (what the records mean is the parent module's job).
//!
//! ```text
//! MAGIC "RELSTSC\n" | u32 LE format | u64 LE body_len | zstd(body) | blake3(all preceding)
//! body = bincode(Body), bincode 2 standard config (varints):
//!   struct Body { scan_started_ns: i64, hashes: bytes /* 32 per record */, rows: Vec<Row> }
//!   struct Row  { prefix: u16, suffix: bytes, dev: i64, ino: i64, size: u64,
//!                 mtime_ns: i64, ctime_ns: i64 }
//! ```
//!
//! Rows are in `cmp_paths` order. A row's path is the first `prefix` bytes of the
//! previous row's path followed by `suffix` (front coding: sorted paths share long
//! prefixes); `dev`, `ino`, `mtime_ns` and `ctime_ns` are differences from the previous
//! row (wrapping), which makes their varints short. The hashes, random bytes that no
//! compressor can shrink, sit in one block instead of breaking up the compressible rows.
//! With this shape a million records encode to a few tens of MB, and a reader streams
//! through the rows one at a time, borrowing from the decompressed body, so loading
//! allocates nothing per record. `body_len` bounds decompression; the checksum turns
//! any damage into "corrupt" rather than into wrong records.
//!
//! The body is bincode, but written and read by the few lines of [`varint`] rather than
//! through serde: for a million rows serde's per-field machinery cost more than
//! everything else put together. The tests check the bytes against bincode itself.

use std::io::{self, Cursor, Read};

use relstore_core::path::MAX_PATH_LEN;
use relstore_core::ContentHash;

use crate::walk::FileStat;

/// Version of the on-disk encoding; a cache of another version is ignored.
pub(crate) const CACHE_FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"RELSTSC\n";
const PREFIX_LEN: usize = 8 + 4 + 8;
const SUM_LEN: usize = 32;
const HASH_LEN: usize = 32;
/// Guards against a hostile length or a decompression bomb (tens of millions of records).
const MAX_BODY_LEN: u64 = 2 << 30;
/// Fast compression: the cache is rewritten on most pushes.
const ZSTD_LEVEL: i32 = 1;

/// bincode 2's standard-config encoding of the types the body uses: unsigned varints
/// (one byte up to 250, else a marker 251/252/253 and a little-endian u16/u32/u64),
/// zigzag for signed ones, a varint length before bytes.
mod varint {
    pub(super) fn put_u64(out: &mut Vec<u8>, v: u64) {
        if v <= 250 {
            out.push(v as u8);
        } else if let Ok(v) = u16::try_from(v) {
            out.push(251);
            out.extend_from_slice(&v.to_le_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            out.push(252);
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.push(253);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub(super) fn put_i64(out: &mut Vec<u8>, v: i64) {
        let zigzag = if v < 0 {
            (!(v as u64)).wrapping_mul(2).wrapping_add(1)
        } else {
            (v as u64).wrapping_mul(2)
        };
        put_u64(out, zigzag);
    }

    pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
        put_u64(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub(super) fn take_u64(rest: &mut &[u8]) -> Option<u64> {
        let (&marker, tail) = rest.split_first()?;
        let (v, used) = match marker {
            0..=250 => (u64::from(marker), 0),
            251 => (
                u64::from(u16::from_le_bytes(tail.get(..2)?.try_into().ok()?)),
                2,
            ),
            252 => (
                u64::from(u32::from_le_bytes(tail.get(..4)?.try_into().ok()?)),
                4,
            ),
            253 => (u64::from_le_bytes(tail.get(..8)?.try_into().ok()?), 8),
            _ => return None,
        };
        *rest = &tail[used..];
        Some(v)
    }

    pub(super) fn take_i64(rest: &mut &[u8]) -> Option<i64> {
        let v = take_u64(rest)?;
        Some(if v & 1 == 1 {
            !(v >> 1) as i64
        } else {
            (v >> 1) as i64
        })
    }

    pub(super) fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = usize::try_from(take_u64(rest)?).ok()?;
        let bytes = rest.get(..len)?;
        *rest = &rest[len..];
        Some(bytes)
    }
}

/// Delta-coding state shared by the writer and the reader.
#[derive(Default)]
struct Prev {
    dev: u64,
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

/// Encodes `count` records (`path`, `stat`, `hash`), which must come in `cmp_paths`
/// order.
pub(crate) fn encode<'a, I>(scan_started_ns: i64, count: usize, records: I) -> Vec<u8>
where
    I: Iterator<Item = (&'a [u8], &'a FileStat, &'a ContentHash)>,
{
    // One pass over the records, filling the hash block and the rows side by side.
    let mut hashes = Vec::with_capacity(count * HASH_LEN);
    let mut rows = Vec::with_capacity(count * 40);
    let mut prev_path: &[u8] = &[];
    let mut prev = Prev::default();
    let mut written = 0usize;
    for (path, stat, hash) in records.take(count) {
        hashes.extend_from_slice(&hash.0);
        let common = common_prefix(path, prev_path).min(usize::from(u16::MAX));
        varint::put_u64(&mut rows, common as u64);
        varint::put_bytes(&mut rows, &path[common..]);
        varint::put_i64(&mut rows, stat.dev.wrapping_sub(prev.dev) as i64);
        varint::put_i64(&mut rows, stat.ino.wrapping_sub(prev.ino) as i64);
        varint::put_u64(&mut rows, stat.size);
        varint::put_i64(&mut rows, stat.mtime_ns.wrapping_sub(prev.mtime_ns));
        varint::put_i64(&mut rows, stat.ctime_ns.wrapping_sub(prev.ctime_ns));
        prev = Prev {
            dev: stat.dev,
            ino: stat.ino,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
        };
        prev_path = path;
        written += 1;
    }
    let mut body = Vec::with_capacity(32 + hashes.len() + rows.len());
    varint::put_i64(&mut body, scan_started_ns);
    varint::put_bytes(&mut body, &hashes);
    drop(hashes);
    varint::put_u64(&mut body, written as u64);
    body.extend_from_slice(&rows);
    drop(rows);

    let mut out = Cursor::new(Vec::with_capacity(
        PREFIX_LEN + zstd::zstd_safe::compress_bound(body.len()) + SUM_LEN,
    ));
    out.get_mut().extend_from_slice(MAGIC);
    out.get_mut().extend_from_slice(&CACHE_FORMAT.to_le_bytes());
    out.get_mut()
        .extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.set_position(PREFIX_LEN as u64);
    let compressed = zstd::bulk::Compressor::new(ZSTD_LEVEL)
        .and_then(|mut c| c.compress_to_buffer(&body, &mut out));
    let mut out = out.into_inner();
    if compressed.is_err() {
        // Cannot happen with a compress_bound-sized buffer; an empty frame makes the
        // file read back as corrupt, which only costs a full hash next time.
        out.truncate(PREFIX_LEN);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Length of the common prefix of `a` and `b`, eight bytes at a time where possible
/// (sibling paths share long prefixes, and this runs once per record).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Why a cache file cannot be used.
pub(crate) enum Unpack {
    /// Written by another version of relstore.
    Format(u32),
    Corrupt(&'static str),
}

/// Checks magic, format, checksum and bounds, and decompresses the body (the tests'
/// entry point to [`unpack_stream`]).
#[cfg(test)]
pub(crate) fn unpack(bytes: &[u8]) -> Result<Vec<u8>, Unpack> {
    unpack_stream(bytes, bytes.len() as u64)
}

/// Checks magic, format, checksum and bounds, and decompresses the body, reading the
/// cache file of `len` bytes as a stream: the
/// compressed bytes (about 42 per record, hashes do not compress) are never held in
/// memory next to the decompressed body. The checksum is computed while reading, so a
/// damaged file is still refused, only after it was decompressed.
pub(crate) fn unpack_stream(mut file: impl Read, len: u64) -> Result<Vec<u8>, Unpack> {
    let unreadable = |_| Unpack::Corrupt("cannot be read to the end");
    if len < (PREFIX_LEN + SUM_LEN) as u64 {
        return Err(Unpack::Corrupt("not a relstore stat cache"));
    }
    let mut prefix = [0u8; PREFIX_LEN];
    file.read_exact(&mut prefix).map_err(unreadable)?;
    if &prefix[..8] != MAGIC {
        return Err(Unpack::Corrupt("not a relstore stat cache"));
    }
    let version = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if version != CACHE_FORMAT {
        return Err(Unpack::Format(version));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&prefix[12..PREFIX_LEN]);
    let body_len = u64::from_le_bytes(n);
    if body_len > MAX_BODY_LEN {
        return Err(Unpack::Corrupt("declared size too large"));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prefix);
    let zlen = len - (PREFIX_LEN + SUM_LEN) as u64;
    let mut hashed = Hashing {
        inner: (&mut file).take(zlen),
        hasher: &mut hasher,
    };
    let body = {
        let mut decoder = zstd::stream::read::Decoder::new(&mut hashed)
            .map_err(|_| Unpack::Corrupt("cannot decompress"))?;
        let mut body = Vec::with_capacity(usize::try_from(body_len).unwrap_or(0));
        // A stream longer than declared is read one byte past, and refused below.
        (&mut decoder)
            .take(body_len + 1)
            .read_to_end(&mut body)
            .map_err(|_| Unpack::Corrupt("cannot decompress"))?;
        body
    };
    // Whatever the decoder did not need still counts for the checksum.
    io::copy(&mut hashed, &mut io::sink()).map_err(unreadable)?;
    let mut sum = [0u8; SUM_LEN];
    file.read_exact(&mut sum).map_err(unreadable)?;
    if hasher.finalize().as_bytes() != &sum {
        return Err(Unpack::Corrupt("checksum mismatch"));
    }
    if body.len() as u64 != body_len {
        return Err(Unpack::Corrupt("body length differs from header"));
    }
    Ok(body)
}

/// A reader that feeds what passes through it to a hasher.
struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut blake3::Hasher,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams the records of a body returned by [`unpack_stream`].
pub(crate) struct Reader<'a> {
    scan_started_ns: i64,
    hashes: &'a [u8],
    rows: &'a [u8],
    count: usize,
    index: usize,
    // The current record; numbers double as the delta-coding base.
    path: Vec<u8>,
    prev: Prev,
    size: u64,
    hash: ContentHash,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Result<Reader<'a>, &'static str> {
        let mut rest = body;
        let scan_started_ns = varint::take_i64(&mut rest).ok_or("truncated")?;
        let hashes = varint::take_bytes(&mut rest).ok_or("truncated")?;
        let count = varint::take_u64(&mut rest).ok_or("truncated")?;
        let count = usize::try_from(count).map_err(|_| "record count too large")?;
        if Some(hashes.len()) != count.checked_mul(HASH_LEN) {
            return Err("hash block does not match the record count");
        }
        Ok(Reader {
            scan_started_ns,
            hashes,
            rows: rest,
            count,
            index: 0,
            path: Vec::new(),
            prev: Prev::default(),
            size: 0,
            hash: ContentHash([0; HASH_LEN]),
        })
    }

    /// The stamp taken when the scan that wrote this cache started.
    pub(crate) fn scan_started_ns(&self) -> i64 {
        self.scan_started_ns
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Moves to the next record; `false` after the last.
    pub(crate) fn advance(&mut self) -> Result<bool, &'static str> {
        if self.index == self.count {
            return if self.rows.is_empty() {
                Ok(false)
            } else {
                Err("trailing bytes after the last record")
            };
        }
        let rows = &mut self.rows;
        let mut row = || -> Option<_> {
            let prefix = usize::try_from(varint::take_u64(rows)?).ok()?;
            let suffix = varint::take_bytes(rows)?;
            let dev = varint::take_i64(rows)?;
            let ino = varint::take_i64(rows)?;
            let size = varint::take_u64(rows)?;
            let mtime = varint::take_i64(rows)?;
            let ctime = varint::take_i64(rows)?;
            Some((prefix, suffix, dev, ino, size, mtime, ctime))
        };
        let (prefix, suffix, dev, ino, size, mtime, ctime) = row().ok_or("truncated row")?;
        if prefix > self.path.len() || prefix + suffix.len() > MAX_PATH_LEN {
            return Err("bad path coding");
        }
        self.path.truncate(prefix);
        self.path.extend_from_slice(suffix);
        self.prev = Prev {
            dev: self.prev.dev.wrapping_add(dev as u64),
            ino: self.prev.ino.wrapping_add(ino as u64),
            mtime_ns: self.prev.mtime_ns.wrapping_add(mtime),
            ctime_ns: self.prev.ctime_ns.wrapping_add(ctime),
        };
        self.size = size;
        let at = self.index * HASH_LEN;
        self.hash.0.copy_from_slice(&self.hashes[at..at + HASH_LEN]);
        self.index += 1;
        Ok(true)
    }

    /// Path of the current record.
    pub(crate) fn path(&self) -> &[u8] {
        &self.path
    }

    /// Stat fields of the current record.
    pub(crate) fn stat(&self) -> FileStat {
        FileStat {
            dev: self.prev.dev,
            ino: self.prev.ino,
            size: self.size,
            mtime_ns: self.prev.mtime_ns,
            ctime_ns: self.prev.ctime_ns,
        }
    }

    /// Hash of the current record.
    pub(crate) fn hash(&self) -> ContentHash {
        self.hash
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// The documented row, for checking the hand-rolled encoding against bincode.
    #[derive(Serialize)]
    struct Row<'a> {
        prefix: u16,
        #[serde(with = "serde_bytes")]
        suffix: &'a [u8],
        dev: i64,
        ino: i64,
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
    }

    fn enc(stamp: i64, recs: &[(Vec<u8>, FileStat, ContentHash)]) -> Vec<u8> {
        encode(
            stamp,
            recs.len(),
            recs.iter().map(|(p, s, h)| (p.as_slice(), s, h)),
        )
    }

    #[test]
    fn varints_match_bincode() {
        let cfg = bincode::config::standard();
        for v in [
            0u64,
            1,
            250,
            251,
            65535,
            65536,
            u32::MAX.into(),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            varint::put_u64(&mut ours, v);
            assert_eq!(ours, bincode::serde::encode_to_vec(v, cfg).unwrap(), "{v}");
            assert_eq!(varint::take_u64(&mut ours.as_slice()), Some(v));
        }
        for v in [0i64, 1, -1, 125, -126, 40000, -40000, i64::MAX, i64::MIN] {
            let mut ours = Vec::new();
            varint::put_i64(&mut ours, v);
            assert_eq!(ours, bincode::serde::encode_to_vec(v, cfg).unwrap(), "{v}");
            assert_eq!(varint::take_i64(&mut ours.as_slice()), Some(v));
        }
        assert_eq!(varint::take_u64(&mut &[253u8, 1, 2][..]), None);
        assert_eq!(varint::take_u64(&mut &[254u8; 20][..]), None);
    }

    fn stat(n: u64) -> FileStat {
        FileStat {
            dev: 66306,
            ino: 1000 + n,
            size: n * 100,
            mtime_ns: 1_700_000_000_000_000_000 + n as i64,
            ctime_ns: 1_700_000_000_000_000_000 - n as i64,
        }
    }

    fn sample() -> Vec<(Vec<u8>, FileStat, ContentHash)> {
        [&b"a"[..], b"a/b\xff", b"a/bc", b"a.x", b"zz/top"]
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_vec(), stat(i as u64), ContentHash([i as u8; 32])))
            .collect()
    }

    #[test]
    fn records_round_trip() {
        let recs = sample();
        let bytes = enc(42, &recs);
        let body = unpack(&bytes).ok().unwrap();
        let mut r = Reader::new(&body).unwrap();
        assert_eq!((r.scan_started_ns(), r.len()), (42, recs.len()));
        for (p, s, h) in &recs {
            assert!(r.advance().unwrap());
            assert_eq!((r.path(), r.stat(), r.hash()), (p.as_slice(), *s, *h));
        }
        assert!(!r.advance().unwrap());
    }

    /// The streamed writer must produce exactly `bincode(Body)` as documented.
    #[test]
    fn body_is_bincode_of_the_documented_struct() {
        #[derive(Serialize)]
        struct Body<'a> {
            scan_started_ns: i64,
            #[serde(with = "serde_bytes")]
            hashes: Vec<u8>,
            rows: Vec<Row<'a>>,
        }
        let recs = sample();
        let bytes = enc(-7, &recs);
        let body = unpack(&bytes).ok().unwrap();
        let mut prev: (&[u8], FileStat) = (
            b"",
            FileStat {
                dev: 0,
                ino: 0,
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
            },
        );
        let mut rows = Vec::new();
        for (p, s, _) in &recs {
            let common = p.iter().zip(prev.0).take_while(|(a, b)| a == b).count();
            rows.push(Row {
                prefix: common as u16,
                suffix: &p[common..],
                dev: s.dev.wrapping_sub(prev.1.dev) as i64,
                ino: s.ino.wrapping_sub(prev.1.ino) as i64,
                size: s.size,
                mtime_ns: s.mtime_ns.wrapping_sub(prev.1.mtime_ns),
                ctime_ns: s.ctime_ns.wrapping_sub(prev.1.ctime_ns),
            });
            prev = (p, *s);
        }
        let expected = Body {
            scan_started_ns: -7,
            hashes: recs.iter().flat_map(|(_, _, h)| h.0).collect(),
            rows,
        };
        assert_eq!(
            body,
            bincode::serde::encode_to_vec(&expected, bincode::config::standard()).unwrap()
        );
    }

    #[test]
    fn damage_is_detected() {
        let recs = sample();
        let bytes = enc(1, &recs);
        for i in [0, 9, 13, PREFIX_LEN + 3, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(unpack(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(unpack(&bytes[..bytes.len() - 1]).is_err());
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(unpack(&other), Err(Unpack::Format(99))));
    }

    #[test]
    fn hostile_bodies_are_refused_without_panicking() {
        let recs = sample();
        let bytes = enc(1, &recs);
        let body = unpack(&bytes).ok().unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..2000 {
            let mut b = body.clone();
            match rng.u8(..3) {
                0 => b.truncate(rng.usize(..b.len())),
                _ => {
                    let i = rng.usize(..b.len());
                    b[i] = rng.u8(..);
                }
            }
            if let Ok(mut r) = Reader::new(&b) {
                while let Ok(true) = r.advance() {}
            }
        }
    }
}
