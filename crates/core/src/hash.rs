//! Content hashes and object ids.
//!
//! An object on a target is identified by the blake3 hash of its content *and* the
//! permission bits it is stored with: hardlinks share one inode, so two paths with equal
//! content but different modes (0644 vs 0755, or a private 0600 file) need two objects.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A blake3 hash of a file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of zero bytes; zero-length files are created fresh, never linked.
    pub fn empty() -> Self {
        ContentHash(*blake3::hash(b"").as_bytes())
    }

    /// Lower-case hex, the form used in object file names and in output.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Parses 64 hex digits (object file names are input when a store is listed).
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(ContentHash(out))
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(h: blake3::Hash) -> Self {
        ContentHash(*h.as_bytes())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The permission bits an object is stored with: the source's bits with every write
/// bit cleared, so that a process writing into one release cannot silently change every
/// release sharing the blob.
pub fn stored_mode(source_mode: u32) -> u32 {
    source_mode & 0o7555
}

/// Identity of one blob on a target: content hash plus stored permission bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ObjectId {
    /// blake3 of the content.
    pub hash: ContentHash,
    /// Permission bits as stored (write bits already cleared).
    pub mode: u32,
}

impl ObjectId {
    /// The object a regular file with this content and source mode is linked from.
    pub fn for_file(hash: ContentHash, source_mode: u32) -> Self {
        ObjectId {
            hash,
            mode: stored_mode(source_mode),
        }
    }

    /// Path of the object relative to the store root: `objects/ab/cdef…+0444`.
    pub fn rel_path(&self) -> String {
        self.copy_rel_path(0)
    }

    /// Path of the `copy`-th copy of this object. Copy 0 is the object itself; further
    /// copies exist only because a file system capped the link count of the first
    /// (ext4: 65,000 links per inode) and are named `…+0444.1`, `…+0444.2`.
    pub fn copy_rel_path(&self, copy: u32) -> String {
        let hex = self.hash.to_hex();
        if copy == 0 {
            format!("objects/{}/{}+{:04o}", &hex[..2], &hex[2..], self.mode)
        } else {
            format!(
                "objects/{}/{}+{:04o}.{copy}",
                &hex[..2],
                &hex[2..],
                self.mode
            )
        }
    }

    /// Parses an object file name found under `objects/PREFIX/`, returning the id and
    /// the copy number; `None` for anything that is not an object name.
    pub fn parse_file_name(prefix: &str, name: &str) -> Option<(ObjectId, u32)> {
        let (rest, mode_part) = name.split_once('+')?;
        let (mode_str, copy) = match mode_part.split_once('.') {
            Some((m, c)) => (m, c.parse::<u32>().ok().filter(|c| *c > 0)?),
            None => (mode_part, 0),
        };
        if mode_str.len() != 4 {
            return None;
        }
        let mode = u32::from_str_radix(mode_str, 8).ok()?;
        if mode != stored_mode(mode) {
            return None;
        }
        let hash = ContentHash::from_hex(&format!("{prefix}{rest}"))?;
        Some((ObjectId { hash, mode }, copy))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h = ContentHash::from(blake3::hash(b"hello"));
        assert_eq!(ContentHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ContentHash::from_hex("zz"), None);
        assert_eq!(ContentHash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn stored_mode_clears_write_bits_and_keeps_privacy() {
        assert_eq!(stored_mode(0o644), 0o444);
        assert_eq!(stored_mode(0o755), 0o555);
        assert_eq!(stored_mode(0o600), 0o400);
    }

    #[test]
    fn object_names_parse_back() {
        let id = ObjectId::for_file(ContentHash::from(blake3::hash(b"x")), 0o755);
        let path = id.copy_rel_path(3);
        let mut parts = path.split('/');
        assert_eq!(parts.next(), Some("objects"));
        let prefix = parts.next().unwrap();
        let name = parts.next().unwrap();
        assert_eq!(ObjectId::parse_file_name(prefix, name), Some((id, 3)));
        assert_eq!(
            ObjectId::parse_file_name(prefix, name.trim_end_matches(".3")),
            Some((id, 0))
        );
        assert_eq!(ObjectId::parse_file_name(prefix, "junk"), None);
        assert_eq!(
            ObjectId::parse_file_name(prefix, &name.replace("+0555", "+0755")),
            None
        );
    }
}
