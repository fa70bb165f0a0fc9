//! Relative paths inside a release, kept as raw bytes.
//!
//! Unix file names are bytes, not text: a non-UTF-8 name is legal and must round-trip.
//! Paths in a manifest are input (a manifest may come from a hostile or corrupt
//! target), so every path is validated before it is joined onto a directory.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest relative path accepted (Linux PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest single component accepted (Linux NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;

/// Why a relative path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("empty component")]
    EmptyComponent,
    #[error("`.` or `..` component")]
    DotComponent,
    #[error("NUL byte")]
    Nul,
    #[error("too long")]
    TooLong,
}

/// Checks that `path` is a clean relative path: no leading `/`, no empty, `.` or `..`
/// components, no NUL, within the kernel's length limits.
pub fn validate_rel_path(path: &[u8]) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathProblem::TooLong);
    }
    if path[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    if path.contains(&0) {
        return Err(PathProblem::Nul);
    }
    for component in path.split(|b| *b == b'/') {
        match component {
            b"" => return Err(PathProblem::EmptyComponent),
            b"." | b".." => return Err(PathProblem::DotComponent),
            c if c.len() > MAX_NAME_LEN => return Err(PathProblem::TooLong),
            _ => {}
        }
    }
    Ok(())
}

/// Orders paths component by component, so that a directory sorts immediately before
/// everything under it ("a", "a/b", "a.b" rather than plain byte order's "a", "a.b",
/// "a/b"). Manifests are kept in this order: parents come first, and diffs are one merge.
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    // Valid paths hold no NUL, so mapping '/' to 0 makes it sort below every other byte.
    let key = |c: &u8| if *c == b'/' { 0 } else { *c };
    a.iter().map(key).cmp(b.iter().map(key))
}

/// The parent of a relative path, `None` for a top-level entry.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|b| *b == b'/').map(|i| &path[..i])
}

/// The last component of a relative path.
pub fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a validated relative path onto a directory.
pub fn join(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

/// Displays raw path bytes losslessly: valid UTF-8 as is (a backslash doubled), every
/// other byte as `\xNN`. Used in human output and JSON so a non-UTF-8 name stays
/// distinguishable and can be mapped back with [`unescape`].
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Escapes raw path bytes into a string; see [`Escaped`].
pub fn escape(path: &[u8]) -> String {
    Escaped(path).to_string()
}

/// Inverse of [`escape`]; `None` on a malformed escape.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            match bytes.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_hostile_paths() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"a//b",
            b"a/",
            b"./a",
            b"a/../../b",
            b"..",
            b"a\0b",
        ] {
            assert!(
                validate_rel_path(bad).is_err(),
                "{:?}",
                Escaped(bad).to_string()
            );
        }
        assert!(validate_rel_path(&vec![b'a'; 256]).is_err());
        assert!(validate_rel_path(b"a/b.c/..d/caf\xe9").is_ok());
    }

    #[test]
    fn component_order_puts_children_after_parent() {
        let mut v: Vec<&[u8]> = vec![b"a.b", b"a/b", b"a", b"a-c", b"a/b/c", b"b"];
        v.sort_by(|x, y| cmp_paths(x, y));
        assert_eq!(v, vec![&b"a"[..], b"a/b", b"a/b/c", b"a-c", b"a.b", b"b"]);
    }

    #[test]
    fn escape_round_trips() {
        for p in [
            &b"plain/path.html"[..],
            b"caf\xe9",
            b"back\\slash",
            b"\xff\xfe/x",
        ] {
            assert_eq!(unescape(&escape(p)).as_deref(), Some(p));
        }
        assert_eq!(escape(b"caf\xe9"), "caf\\xe9");
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent(b"a/b/c"), Some(&b"a/b"[..]));
        assert_eq!(parent(b"a"), None);
        assert_eq!(file_name(b"a/b/c"), b"c");
    }
}
