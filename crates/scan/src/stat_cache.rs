//! The stat cache: lets an unchanged file skip re-hashing, like git's index.
//!
//! For every regular file of the last scan the cache keeps `path → (dev, ino, size,
//! mtime_ns, ctime_ns, hash)`. A file whose lstat matches its record field for field is
//! assumed unchanged and not read. `ctime` is what makes this sound: a user can reset
//! `mtime` (`touch -d`, `utimensat`, `tar x`, `rsync -t`) but not `ctime`, which the
//! kernel sets to "now" on every content or metadata change, `utimensat` included.
//!
//! # The racy-entry rule
//!
//! File times have a granularity (the kernel stamps them from its coarse clock, one
//! tick is 1–10 ms). A file written, hashed, and written again within the same tick
//! keeps the same mtime and ctime; its record would then vouch for content it never
//! saw (git's "racily clean" problem). So at the start of each scan we read
//! `CLOCK_REALTIME_COARSE` — the clock file times come from — and store it with the
//! cache as `scan_started_ns`. A record is trusted only if its ctime *and* mtime are
//! strictly less than that stamp: any modification after the stamp gets a ctime
//! ≥ the stamp (the coarse clock only moves forward unless someone sets the system
//! clock back, and the kernel's fine-grained timestamps are never below it), so a
//! record whose file could still have been changed after it was taken is never
//! trusted; it is simply hashed again next time. The cost is that a file with an mtime
//! in the future is re-hashed on every scan.
//!
//! # On disk
//!
//! See `format` for the bytes: magic, format version, zstd-compressed bincode of the
//! records (front-coded paths, delta-coded numbers, hashes in one block) and a blake3
//! checksum. Records are in `cmp_paths` order, so lookup is one merge with the sorted
//! walk, streaming through the records without allocating per record. The file is
//! replaced atomically (temp file in the same directory, fsync, rename) and only when
//! something changed.
//!
//! The cache is an optimisation, never a reason to fail: a missing file is an empty
//! cache; an unreadable, corrupt or foreign-format file, or an unwritable directory,
//! becomes a warning and a full hash. A record is only ever used for the exact path it
//! names, so even a stale or mis-sorted cache can cause extra hashing, never a wrong hash.

mod format;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use relstore_core::path::{cmp_paths, Escaped};
use relstore_core::ContentHash;

use crate::walk::{FileStat, Node, NodeKind};
use format::{Reader, Unpack, CACHE_FORMAT};

/// Where the stat cache for `root` lives inside `cache_dir`:
/// `cache_dir/stat/<first 32 hex digits of blake3(canonical root path)>.cache`.
///
/// Keyed by the canonical path so that `./site`, `site/` and a symlink to it share one
/// cache; errors if `root` cannot be canonicalised (it does not exist, say).
pub fn cache_file_for(cache_dir: &Path, root: &Path) -> io::Result<PathBuf> {
    let canonical = fs::canonicalize(root)?;
    let hex = blake3::hash(canonical.as_os_str().as_bytes()).to_hex();
    Ok(cache_dir
        .join("stat")
        .join(format!("{}.cache", &hex.as_str()[..32])))
}

/// The racy-entry rule (see the module doc): a record is trusted only if it was
/// certainly taken after the file's last change.
pub(crate) fn trusted(stat: &FileStat, scan_started_ns: i64) -> bool {
    stat.ctime_ns < scan_started_ns && stat.mtime_ns < scan_started_ns
}

/// A cache file as read from disk, before decoding.
pub(crate) enum Loaded {
    /// No cache yet: an empty cache, silently.
    Missing,
    /// The verified, decompressed body.
    Body(Vec<u8>),
    /// Unusable; the message becomes `ScanOutput::cache_warning`.
    Unusable(String),
}

/// Reads and verifies the cache file (checksum, format, bounds) and decompresses it,
/// streaming (see [`format::unpack_stream`]).
pub(crate) fn read(path: &Path) -> Loaded {
    let opened = fs::File::open(path).and_then(|f| {
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok((meta.len(), f))
    });
    let (len, file) = match opened {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => {
            return Loaded::Unusable(format!(
                "cannot read stat cache {} ({e}); hashing every file",
                shown(path)
            ))
        }
    };
    match format::unpack_stream(io::BufReader::new(file), len) {
        Ok(body) => Loaded::Body(body),
        Err(Unpack::Format(v)) => Loaded::Unusable(format!(
            "stat cache {} has format {v}, this relstore uses {CACHE_FORMAT}; hashing every file",
            shown(path)
        )),
        Err(Unpack::Corrupt(why)) => Loaded::Unusable(corrupt(path, why)),
    }
}

fn corrupt(path: &Path, why: &str) -> String {
    format!(
        "stat cache {} is corrupt ({why}); hashing every file",
        shown(path)
    )
}

/// Fills in the hash of every file node whose record matches exactly and is trusted;
/// returns the number of records in the cache. `nodes` must be in `cmp_paths` order:
/// the lookup is one merge. `Err` is a warning; no node is then left with a hash.
pub(crate) fn apply(body: &[u8], path: &Path, nodes: &mut [Node]) -> Result<usize, String> {
    let result = merge(body, nodes);
    if result.is_err() {
        for node in nodes.iter_mut() {
            if let NodeKind::File { hash, .. } = &mut node.kind {
                *hash = None;
            }
        }
    }
    result.map_err(|why| corrupt(path, why))
}

fn merge(body: &[u8], nodes: &mut [Node]) -> Result<usize, &'static str> {
    let mut reader = Reader::new(body)?;
    let stamp = reader.scan_started_ns();
    let mut have = reader.advance()?;
    for node in nodes {
        let NodeKind::File { stat, hash, .. } = &mut node.kind else {
            continue;
        };
        // Records before this file are of files that are gone. (Equal paths, the
        // common case, are settled by a memcmp before the component-wise order.)
        while have
            && reader.path() != &node.path[..]
            && cmp_paths(reader.path(), &node.path).is_lt()
        {
            have = reader.advance()?;
        }
        if !have {
            break;
        }
        if reader.path() == &node.path[..] {
            if reader.stat() == *stat && trusted(stat, stamp) {
                *hash = Some(reader.hash());
            }
            have = reader.advance()?;
        }
    }
    Ok(reader.len())
}

/// Encodes the cache for the hashed files among `nodes`, stamped `scan_started_ns`.
pub(crate) fn encode(scan_started_ns: i64, nodes: &[Node]) -> Vec<u8> {
    format::encode(
        scan_started_ns,
        hashed_files(nodes).count(),
        hashed_files(nodes),
    )
}

fn hashed_files(nodes: &[Node]) -> impl Iterator<Item = (&[u8], &FileStat, &ContentHash)> {
    nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::File {
            stat,
            hash: Some(hash),
            ..
        } => Some((&n.path[..], stat, hash)),
        _ => None,
    })
}

/// Replaces `path` with `bytes` atomically: temp file in the same directory, fsync,
/// rename. A crash leaves the old cache or the new one, never a torn file. Parent
/// directories are created; the file is private (0600) since it lists every name of
/// the source tree.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut tmp_name = b".".to_vec();
    tmp_name.extend_from_slice(path.file_name().map_or(&b"cache"[..], |n| n.as_bytes()));
    tmp_name.extend_from_slice(
        format!(
            ".tmp.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, AtomicOrdering::Relaxed)
        )
        .as_bytes(),
    );
    let tmp = dir.join(std::ffi::OsStr::from_bytes(&tmp_name));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Rewrites the cache at `path` with every hash replaced by `fake_hash` and the stamp
/// chosen by `stamp(min ctime, max of all ctimes and mtimes)`: lets tests prove which
/// records a scan trusted (a trusted record's fake hash shows up in the output).
#[cfg(test)]
pub(crate) fn forge(path: &Path, stamp: impl Fn(i64, i64) -> i64, fake_hash: [u8; 32]) {
    let Loaded::Body(body) = read(path) else {
        panic!("no cache to forge at {}", path.display())
    };
    let mut reader = Reader::new(&body).unwrap_or_else(|e| panic!("{e}"));
    let mut nodes = Vec::new();
    while reader.advance().unwrap_or_else(|e| panic!("{e}")) {
        nodes.push(Node {
            path: reader.path().into(),
            kind: NodeKind::File {
                mode: 0o644,
                stat: reader.stat(),
                hash: Some(ContentHash(fake_hash)),
            },
        });
    }
    let stats = nodes.iter().filter_map(|n| match &n.kind {
        NodeKind::File { stat, .. } => Some(*stat),
        _ => None,
    });
    let min_ctime = stats.clone().map(|s| s.ctime_ns).min().unwrap_or(0);
    let max_time = stats.map(|s| s.ctime_ns.max(s.mtime_ns)).max().unwrap_or(0);
    let bytes = encode(stamp(min_ctime, max_time), &nodes);
    write_atomic(path, &bytes).unwrap_or_else(|e| panic!("{e}"));
}

pub(crate) fn shown(path: &Path) -> Escaped<'_> {
    Escaped(path.as_os_str().as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file_node(path: &[u8], n: u64, hashed: bool) -> Node {
        Node {
            path: path.into(),
            kind: NodeKind::File {
                mode: 0o644,
                stat: FileStat {
                    dev: 1,
                    ino: n,
                    size: n * 10,
                    mtime_ns: 1_000 + n as i64,
                    ctime_ns: 2_000 + n as i64,
                },
                hash: hashed.then_some(ContentHash([n as u8; 32])),
            },
        }
    }

    fn dir_node(path: &[u8]) -> Node {
        Node {
            path: path.into(),
            kind: NodeKind::Dir { mode: 0o755 },
        }
    }

    fn hashes(nodes: &[Node]) -> Vec<Option<ContentHash>> {
        nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::File { hash, .. } => Some(*hash),
                _ => None,
            })
            .collect()
    }

    fn body_of(nodes: &[Node], stamp: i64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deep/er/c.cache");
        write_atomic(&p, &encode(stamp, nodes)).unwrap();
        let Loaded::Body(body) = read(&p) else {
            panic!("cache did not load");
        };
        body
    }

    #[test]
    fn racy_rule_needs_both_times_strictly_before_the_stamp() {
        let stat = FileStat {
            dev: 1,
            ino: 1,
            size: 1,
            mtime_ns: 100,
            ctime_ns: 100,
        };
        assert!(trusted(&stat, 101));
        assert!(!trusted(&stat, 100));
        assert!(!trusted(
            &FileStat {
                mtime_ns: 101,
                ..stat
            },
            101
        ));
        assert!(!trusted(
            &FileStat {
                ctime_ns: 101,
                ..stat
            },
            101
        ));
    }

    #[test]
    fn merge_uses_exact_matches_only() {
        let old = vec![
            file_node(b"a", 1, true),
            dir_node(b"a-dir"),
            file_node(b"a-dir/x\xff", 2, true),
            file_node(b"b", 3, true),
            file_node(b"d", 5, true),
        ];
        let body = body_of(&old, 1_000_000);
        // Now: "a" unchanged, "a-dir/x\xff" has a new ctime, "b" is gone, "c" is new,
        // "d" unchanged, "e" new after the last record.
        let mut now = vec![
            file_node(b"a", 1, false),
            dir_node(b"a-dir"),
            file_node(b"a-dir/x\xff", 2, false),
            file_node(b"c", 4, false),
            file_node(b"d", 5, false),
            file_node(b"e", 6, false),
        ];
        if let NodeKind::File { stat, .. } = &mut now[2].kind {
            stat.ctime_ns += 1;
        }
        assert_eq!(apply(&body, Path::new("c"), &mut now), Ok(4));
        assert_eq!(
            hashes(&now),
            vec![
                Some(ContentHash([1; 32])),
                None,
                None,
                Some(ContentHash([5; 32])),
                None
            ]
        );
    }

    #[test]
    fn racy_records_are_not_used() {
        let old = vec![file_node(b"a", 1, true), file_node(b"b", 2, true)];
        // Stamp equal to b's ctime: b is racy, a is not.
        let body = body_of(&old, 2_002);
        let mut now = vec![file_node(b"a", 1, false), file_node(b"b", 2, false)];
        apply(&body, Path::new("c"), &mut now).unwrap();
        assert_eq!(hashes(&now), vec![Some(ContentHash([1; 32])), None]);
    }

    #[test]
    fn undecodable_body_sets_no_hash() {
        let old: Vec<Node> = (0..50u8)
            .map(|i| file_node(&[b'a', i + 48], i.into(), true))
            .collect();
        let mut body = body_of(&old, i64::MAX);
        let len = body.len();
        body.truncate(len - 3);
        let mut now: Vec<Node> = (0..50u8)
            .map(|i| file_node(&[b'a', i + 48], i.into(), false))
            .collect();
        let err = apply(&body, Path::new("x.cache"), &mut now).unwrap_err();
        assert!(err.contains("corrupt") && err.contains("x.cache"), "{err}");
        assert!(hashes(&now).iter().all(Option::is_none));
    }

    #[test]
    fn damaged_or_foreign_files_are_unusable() {
        let bytes = encode(5, &[file_node(b"a", 1, true)]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cache");
        assert!(matches!(read(&p), Loaded::Missing));

        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        fs::write(&p, &flipped).unwrap();
        let Loaded::Unusable(w) = read(&p) else {
            panic!("corrupt cache accepted")
        };
        assert!(w.contains("corrupt") && w.contains("c.cache"), "{w}");

        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&p, &other).unwrap();
        let Loaded::Unusable(w) = read(&p) else {
            panic!("foreign format accepted")
        };
        assert!(w.contains("format 99"), "{w}");

        fs::create_dir(dir.path().join("d.cache")).unwrap();
        let Loaded::Unusable(w) = read(&dir.path().join("d.cache")) else {
            panic!("a directory was read as a cache")
        };
        assert!(w.contains("cannot read stat cache"), "{w}");
    }

    #[test]
    fn cache_file_is_keyed_by_canonical_root() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(&src, dir.path().join("link")).unwrap();
        let a = cache_file_for(Path::new("/c"), &src).unwrap();
        let b = cache_file_for(Path::new("/c"), &dir.path().join("link")).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("/c/stat"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 32 + ".cache".len());
        assert!(cache_file_for(Path::new("/c"), &dir.path().join("nope")).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod perf {
    use super::*;
    use std::time::Instant;

    /// Run with `cargo test --release -p relstore-scan -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; meaningful in release builds only"]
    fn million_records_save_and_load() {
        let mut nodes: Vec<Node> = (0..1_000_000u64)
            .map(|i| Node {
                path: format!("site/section-{}/page-{}/index-{i}.html", i % 97, i % 1013)
                    .into_bytes()
                    .into(),
                kind: NodeKind::File {
                    mode: 0o644,
                    stat: FileStat {
                        dev: 2049,
                        ino: 1_000_000 + (i * 7919) % 1_000_003,
                        size: 1000 + i % 5000,
                        mtime_ns: 1_700_000_000_000_000_000
                            + (i * 104_729 % 1_000_003) as i64 * 1_000,
                        ctime_ns: 1_700_000_000_000_000_000 + (i * 7919 % 1_000_003) as i64 * 1_000,
                    },
                    hash: Some(ContentHash(*blake3::hash(&i.to_le_bytes()).as_bytes())),
                },
            })
            .collect();
        nodes.sort_by(|a, b| cmp_paths(&a.path, &b.path));
        // Reallocate paths in sorted order, as the walk's per-directory allocation
        // would have them: memory locality is most of the cost here.
        for n in &mut nodes {
            n.path = n.path.to_vec().into_boxed_slice();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cache");

        let t = Instant::now();
        let bytes = encode(i64::MAX, &nodes);
        let t_encode = t.elapsed();
        write_atomic(&p, &bytes).unwrap();
        let t_save = t.elapsed();

        for n in &mut nodes {
            if let NodeKind::File { hash, .. } = &mut n.kind {
                *hash = None;
            }
        }
        let t = Instant::now();
        let Loaded::Body(body) = read(&p) else {
            panic!("cache did not load")
        };
        let t_read = t.elapsed();
        let count = apply(&body, &p, &mut nodes).unwrap();
        let t_load = t.elapsed();
        println!(
            "{} bytes on disk, {} in memory; save: encode {t_encode:?}, total {t_save:?}; \
             load: read+check+unzstd {t_read:?}, total with merge {t_load:?}",
            bytes.len(),
            body.len()
        );
        assert_eq!(count, 1_000_000);
        assert!(hashes(&nodes).iter().all(Option::is_some));
    }

    fn hashes(nodes: &[Node]) -> Vec<Option<ContentHash>> {
        nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::File { hash, .. } => Some(*hash),
                _ => None,
            })
            .collect()
    }
}
