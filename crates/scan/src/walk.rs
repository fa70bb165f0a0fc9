//! Phase Scan: the parallel directory walk.
//!
//! Every directory is one rayon job (`rayon::scope` + `spawn`, not nested
//! `par_iter`, so a deep tree costs heap-allocated jobs rather than stack frames).
//! A job opens its directory relative to its parent's descriptor with `O_NOFOLLOW`,
//! lists it with `getdents64`, `lstat`s each entry relative to the directory (no full
//! path resolution per file), reads symlink targets, spawns a job per subdirectory and
//! stores its own listing, sorted by name, under a numeric id.
//!
//! Sorting siblings by name bytes is enough for the whole tree to come out in
//! [`cmp_paths`](relstore_core::path::cmp_paths) order: a name never contains `/`, so
//! "a subtree, then the next sibling's subtree" is exactly component order. The
//! listings are stitched together at the end with an explicit stack, which avoids a
//! global O(n log n) sort of a million paths.
//!
//! A directory's descriptor stays open (shared through an `Arc`) until the last of its
//! subdirectory jobs has opened its own; rayon runs a thread's own jobs depth first, so
//! this holds about depth × threads descriptors at once, not one per directory.
//!
//! Excluded entries ([`Excludes`]) are dropped from the listing before any system call
//! for them when `d_type` tells their type; an excluded directory is never opened. Every
//! job and every entry also looks at the cancellation flag, so Ctrl-C stops a walk of a
//! huge tree at once.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use relstore_core::cancel;
use relstore_core::path::{PathProblem, MAX_NAME_LEN, MAX_PATH_LEN};
use relstore_core::progress::Progress;
use relstore_core::ContentHash;

use crate::error::{classify, ScanError};
use crate::exclude::Excludes;
use crate::sys;

/// The lstat fields that tell whether a file may have changed since it was hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStat {
    fn of(st: &libc::stat) -> FileStat {
        FileStat {
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: sys::timespec_ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: sys::timespec_ns(st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// One entry of the scanned tree, before it becomes a manifest [`relstore_core::Entry`].
#[derive(Debug)]
pub(crate) struct Node {
    /// Relative path, raw bytes, `/`-separated. A boxed slice, not a `Vec`: 8 bytes
    /// less per entry, which a million-file scan holds twice at its peak.
    pub path: Box<[u8]>,
    pub kind: NodeKind,
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        stat: FileStat,
        /// Filled from the stat cache or by the hash phase.
        hash: Option<ContentHash>,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// What the walk found, in `cmp_paths` order.
pub(crate) struct Walked {
    pub nodes: Vec<Node>,
    pub skipped: Vec<(Vec<u8>, &'static str)>,
    /// Entries left out by the excludes (an excluded directory counts once).
    pub excluded: u64,
}

/// An entry inside one directory's listing; directories point at their own listing.
struct RawEntry {
    path: Box<[u8]>,
    kind: RawKind,
}

enum RawKind {
    Dir { id: usize },
    File { mode: u32, stat: FileStat },
    Symlink { target: Vec<u8> },
    Special(&'static str),
}

struct Listing {
    mode: u32,
    entries: Vec<RawEntry>,
}

/// State shared by every directory job of one walk.
struct Shared<'a> {
    root: &'a Path,
    skip_special: bool,
    excludes: &'a Excludes,
    excluded: AtomicU64,
    progress: &'a dyn Progress,
    next_id: AtomicUsize,
    total: AtomicUsize,
    listings: Mutex<Vec<(usize, Listing)>>,
    failed: AtomicBool,
    error: Mutex<Option<ScanError>>,
}

impl Shared<'_> {
    fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    /// Records the first error and tells the other jobs to stop.
    fn fail(&self, err: ScanError) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(err);
            }
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether jobs should stop: another job failed, or the user interrupted. An
    /// interruption is recorded as the walk's error (unless a real error came first).
    fn should_stop(&self) -> bool {
        if self.failed.load(Ordering::Relaxed) {
            return true;
        }
        if let Err(source) = cancel::check() {
            self.fail(ScanError::Interrupted {
                path: self.root.to_path_buf(),
                source,
            });
            return true;
        }
        false
    }

    fn excluded(&self, rel: &[u8], is_dir: bool) -> bool {
        let out = self.excludes.is_excluded(rel, is_dir);
        if out {
            self.excluded.fetch_add(1, Ordering::Relaxed);
        }
        out
    }
}

/// Walks `root` (already known to be a directory, or a symlink to one).
pub(crate) fn walk(
    root: &Path,
    skip_special: bool,
    excludes: &Excludes,
    progress: &dyn Progress,
) -> Result<Walked, ScanError> {
    let root_fd = sys::open_dir(root).map_err(|source| ScanError::ReadDir {
        path: root.to_path_buf(),
        source,
    })?;
    let shared = Shared {
        root,
        skip_special,
        excludes,
        excluded: AtomicU64::new(0),
        progress,
        next_id: AtomicUsize::new(1),
        total: AtomicUsize::new(0),
        listings: Mutex::new(Vec::new()),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    rayon::scope(|s| list_dir(s, &shared, Arc::new(root_fd), Vec::new(), 0, 0));
    if shared.failed.load(Ordering::Relaxed) {
        let err = shared.error.lock().ok().and_then(|mut e| e.take());
        if let Some(err) = err {
            return Err(err);
        }
    }
    let total = shared.total.load(Ordering::Relaxed);
    let count = shared.next_id.load(Ordering::Relaxed);
    let excluded = shared.excluded.load(Ordering::Relaxed);
    let mut listings: Vec<Option<Listing>> = Vec::new();
    listings.resize_with(count, || None);
    for (id, listing) in shared.listings.into_inner().unwrap_or_default() {
        if let Some(slot) = listings.get_mut(id) {
            *slot = Some(listing);
        }
    }
    let mut walked = flatten(listings, total);
    walked.excluded = excluded;
    Ok(walked)
}

/// Job for one subdirectory: opens it relative to its parent, then lists it.
fn spawn_dir<'s>(
    s: &rayon::Scope<'s>,
    shared: &'s Shared<'s>,
    parent: Arc<OwnedFd>,
    name: CString,
    rel: Vec<u8>,
    id: usize,
) {
    s.spawn(move |s| {
        if shared.should_stop() {
            return;
        }
        let opened = sys::open_dir_at(parent.as_fd(), &name);
        // The parent's descriptor closes once its last child is open.
        drop(parent);
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                return shared.fail(classify(shared.full(&rel), e, |path, source| {
                    ScanError::ReadDir { path, source }
                }))
            }
        };
        let mode = match sys::fstat(fd.as_fd()) {
            Ok(st) => st.st_mode & 0o7777,
            Err(source) => {
                return shared.fail(ScanError::Stat {
                    path: shared.full(&rel),
                    source,
                })
            }
        };
        list_dir(s, shared, Arc::new(fd), rel, id, mode);
    });
}

fn list_dir<'s>(
    s: &rayon::Scope<'s>,
    shared: &'s Shared<'s>,
    fd: Arc<OwnedFd>,
    rel: Vec<u8>,
    id: usize,
    mode: u32,
) {
    match read_listing(s, shared, &fd, &rel) {
        Ok(mut entries) => {
            entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            // Held until the walk ends: no growth slack for a million entries.
            entries.shrink_to_fit();
            shared.total.fetch_add(entries.len(), Ordering::Relaxed);
            shared.progress.advance(entries.len() as u64);
            if let Ok(mut l) = shared.listings.lock() {
                l.push((id, Listing { mode, entries }));
            }
        }
        Err(e) => shared.fail(e),
    }
}

fn read_listing<'s>(
    s: &rayon::Scope<'s>,
    shared: &'s Shared<'s>,
    fd: &Arc<OwnedFd>,
    rel: &[u8],
) -> Result<Vec<RawEntry>, ScanError> {
    let mut entries = Vec::new();
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = sys::getdents(fd.as_fd(), &mut buf).map_err(|source| ScanError::ReadDir {
            path: shared.full(rel),
            source,
        })?;
        if n == 0 {
            return Ok(entries);
        }
        for (name, d_type) in sys::dirents(&buf[..n]) {
            if shared.should_stop() {
                return Ok(entries);
            }
            let path = child_path(rel, name.to_bytes());
            if name.to_bytes().len() > MAX_NAME_LEN || path.len() > MAX_PATH_LEN {
                return Err(ScanError::BadPath {
                    path: shared.full(&path),
                    problem: PathProblem::TooLong,
                });
            }
            if let Some(kind) = classify_entry(s, shared, fd, name, d_type, &path)? {
                entries.push(RawEntry {
                    path: path.into_boxed_slice(),
                    kind,
                });
            }
        }
    }
}

fn child_path(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(rel.len() + 1 + name.len());
    p.extend_from_slice(rel);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn classify_entry<'s>(
    s: &rayon::Scope<'s>,
    shared: &'s Shared<'s>,
    fd: &Arc<OwnedFd>,
    name: &CStr,
    d_type: u8,
    path: &[u8],
) -> Result<Option<RawKind>, ScanError> {
    // With a known type, excluded entries cost no system call at all.
    if d_type != libc::DT_UNKNOWN && shared.excluded(path, d_type == libc::DT_DIR) {
        return Ok(None);
    }
    // d_type saves a syscall for directories (their job fstat()s them anyway) and
    // symlinks; regular files need lstat for the stat cache, and DT_UNKNOWN (some
    // file systems) falls back to lstat for everything.
    let fmt = match d_type {
        libc::DT_DIR => libc::S_IFDIR,
        libc::DT_LNK => libc::S_IFLNK,
        libc::DT_FIFO => libc::S_IFIFO,
        libc::DT_SOCK => libc::S_IFSOCK,
        libc::DT_CHR => libc::S_IFCHR,
        libc::DT_BLK => libc::S_IFBLK,
        _ => {
            let st = sys::lstat_at(fd.as_fd(), name).map_err(|e| {
                classify(shared.full(path), e, |path, source| ScanError::Stat {
                    path,
                    source,
                })
            })?;
            let fmt = st.st_mode & libc::S_IFMT;
            if d_type == libc::DT_UNKNOWN && shared.excluded(path, fmt == libc::S_IFDIR) {
                return Ok(None);
            }
            if fmt == libc::S_IFREG {
                return Ok(Some(RawKind::File {
                    mode: st.st_mode & 0o7777,
                    stat: FileStat::of(&st),
                }));
            }
            fmt
        }
    };
    let kind = match fmt {
        libc::S_IFDIR => {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            spawn_dir(
                s,
                shared,
                Arc::clone(fd),
                name.to_owned(),
                path.to_vec(),
                id,
            );
            RawKind::Dir { id }
        }
        libc::S_IFLNK => RawKind::Symlink {
            target: read_symlink(shared, fd, name, path)?,
        },
        other => special(shared, other, path)?,
    };
    Ok(Some(kind))
}

/// The target of the symlink `name`; a symlink replaced meanwhile is reported as a change.
fn read_symlink(
    shared: &Shared<'_>,
    fd: &Arc<OwnedFd>,
    name: &CStr,
    path: &[u8],
) -> Result<Vec<u8>, ScanError> {
    sys::readlink_at(fd.as_fd(), name).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            // Not a symlink any more.
            ScanError::Changed {
                path: shared.full(path),
                what: "it was replaced".into(),
                source: Some(e),
            }
        } else {
            classify(shared.full(path), e, |path, source| ScanError::ReadLink {
                path,
                source,
            })
        }
    })
}

/// A fifo, socket, device or unknown file: skipped when asked, refused otherwise.
fn special(shared: &Shared<'_>, fmt: libc::mode_t, path: &[u8]) -> Result<RawKind, ScanError> {
    let kind = match fmt {
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        _ => "file of unknown type",
    };
    if shared.skip_special {
        Ok(RawKind::Special(kind))
    } else {
        Err(ScanError::Special {
            path: shared.full(path),
            kind,
        })
    }
}

/// Stitches the per-directory listings (index = directory id, 0 = root) into one
/// list in `cmp_paths` order; special files go to `skipped`, in the same order.
fn flatten(mut listings: Vec<Option<Listing>>, total: usize) -> Walked {
    let mut nodes = Vec::with_capacity(total);
    let mut skipped = Vec::new();
    let root = listings.first_mut().and_then(Option::take);
    let mut stack: Vec<std::vec::IntoIter<RawEntry>> = Vec::new();
    if let Some(root) = root {
        stack.push(root.entries.into_iter());
    }
    while let Some(top) = stack.last_mut() {
        let Some(entry) = top.next() else {
            stack.pop();
            continue;
        };
        let kind = match entry.kind {
            RawKind::Dir { id } => {
                // Every spawned directory stored a listing unless the walk failed,
                // in which case we never get here.
                let Some(listing) = listings.get_mut(id).and_then(Option::take) else {
                    continue;
                };
                stack.push(listing.entries.into_iter());
                NodeKind::Dir { mode: listing.mode }
            }
            RawKind::File { mode, stat } => NodeKind::File {
                mode,
                stat,
                hash: None,
            },
            RawKind::Symlink { target } => NodeKind::Symlink { target },
            RawKind::Special(kind) => {
                skipped.push((entry.path.into_vec(), kind));
                continue;
            }
        };
        nodes.push(Node {
            path: entry.path,
            kind,
        });
    }
    Walked {
        nodes,
        skipped,
        excluded: 0,
    }
}
