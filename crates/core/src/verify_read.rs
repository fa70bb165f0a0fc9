//! A reader that proves the bytes it hands out are the bytes that were hashed.
//!
//! A source file may change between the hash phase and the upload; without a check,
//! the target would store content under a hash it does not have. Every upload reads
//! through [`HashCheckingReader`], which fails at end of input when the content differs.

use std::io::{self, Read};

use crate::hash::ContentHash;

/// Wraps a reader, hashing as it goes; at EOF returns an `InvalidData` error if the
/// content's hash or length is not the expected one.
pub struct HashCheckingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    expected: ContentHash,
    expected_len: u64,
    seen: u64,
    what: String,
}

impl<R: Read> HashCheckingReader<R> {
    /// `what` names the source in the error (a path, usually).
    pub fn new(inner: R, expected: ContentHash, expected_len: u64, what: String) -> Self {
        HashCheckingReader {
            inner,
            hasher: blake3::Hasher::new(),
            expected,
            expected_len,
            seen: 0,
            what,
        }
    }
}

impl<R: Read> Read for HashCheckingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if n == 0 && !buf.is_empty() {
            let got = ContentHash::from(self.hasher.finalize());
            if self.seen != self.expected_len || got != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} changed while relstore was reading it (content no longer matches its hash); re-run the push",
                        self.what
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_matching_content_and_fails_other_content() {
        let h = ContentHash::from(blake3::hash(b"hello"));
        let mut out = Vec::new();
        HashCheckingReader::new(&b"hello"[..], h, 5, "x".into())
            .read_to_end(&mut out)
            .expect("matching content");
        assert_eq!(out, b"hello");
        let err = HashCheckingReader::new(&b"hellO"[..], h, 5, "some/path".into())
            .read_to_end(&mut Vec::new())
            .expect_err("changed content");
        assert!(err.to_string().contains("some/path"));
    }
}
