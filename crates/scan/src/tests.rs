//! End-to-end tests of [`scan`] on real temporary trees.

#![allow(clippy::unwrap_used)]

use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use relstore_core::path::cmp_paths;
use relstore_core::progress::{NoProgress, Phase, Progress};
use relstore_core::{ContentHash, Entry, EntryKind};

use super::*;

fn p(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn write(root: &Path, rel: &[u8], content: &[u8], mode: u32) {
    let path = p(root, rel);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn symlink(root: &Path, rel: &[u8], target: &[u8]) {
    std::os::unix::fs::symlink(OsStr::from_bytes(target), p(root, rel)).unwrap();
}

fn mkdir(root: &Path, rel: &[u8], mode: u32) {
    let path = p(root, rel);
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn file(path: &[u8], content: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::File {
            size: content.len() as u64,
            hash: ContentHash::from(blake3::hash(content)),
            mode,
        },
    }
}

fn dir(path: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Dir { mode },
    }
}

fn link(path: &[u8], target: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Symlink {
            target: target.to_vec(),
        },
    }
}

fn plain() -> ScanOptions {
    ScanOptions::default()
}

fn with_cache(cache: &Path) -> ScanOptions {
    ScanOptions {
        stat_cache: Some(cache.to_path_buf()),
        ..ScanOptions::default()
    }
}

fn hash_of(out: &ScanOutput, path: &[u8]) -> ContentHash {
    out.entries
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::File { hash, .. } if e.path == path => Some(*hash),
            _ => None,
        })
        .unwrap()
}

fn assert_sorted(entries: &[Entry]) {
    for w in entries.windows(2) {
        assert!(
            cmp_paths(&w[0].path, &w[1].path).is_lt(),
            "{:?} !< {:?}",
            relstore_core::path::escape(&w[0].path),
            relstore_core::path::escape(&w[1].path)
        );
    }
}

#[test]
fn tree_round_trips_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    fs::create_dir(&root).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|_| rng.u8(..)).collect();

    write(&root, b"caf\xe9.html", b"<p>caf\xc3\xa9</p>", 0o644);
    write(&root, b"empty", b"", 0o644);
    write(&root, b"run.sh", b"#!/bin/sh\n", 0o755);
    write(&root, b"secret.env", b"KEY=1", 0o600);
    mkdir(&root, b"a", 0o755);
    write(&root, b"a/big.bin", &big, 0o644);
    mkdir(&root, b"a/empty-dir", 0o700);
    mkdir(&root, b"a.b", 0o755);
    write(&root, b"a.b/x", b"x", 0o644);
    symlink(&root, b"dangling", b"../missing/\xff");
    symlink(&root, b"to-dir", b"a");
    symlink(&root, b"to-file", b"run.sh");

    let expected = vec![
        dir(b"a", 0o755),
        file(b"a/big.bin", &big, 0o644),
        dir(b"a/empty-dir", 0o700),
        dir(b"a.b", 0o755),
        file(b"a.b/x", b"x", 0o644),
        file(b"caf\xe9.html", b"<p>caf\xc3\xa9</p>", 0o644),
        link(b"dangling", b"../missing/\xff"),
        file(b"empty", b"", 0o644),
        file(b"run.sh", b"#!/bin/sh\n", 0o755),
        file(b"secret.env", b"KEY=1", 0o600),
        link(b"to-dir", b"a"),
        link(b"to-file", b"run.sh"),
    ];
    let out = scan(&root, &plain(), &NoProgress).unwrap();
    assert_eq!(out.entries, expected);
    assert_sorted(&out.entries);
    assert!(out.skipped.is_empty());
    assert_eq!(out.files_hashed, 6);
    let small = "<p>caf\u{e9}</p>".len() + "#!/bin/sh\n".len() + "KEY=1".len() + 1;
    assert_eq!(out.bytes_hashed, (big.len() + small) as u64);
    assert!(out.cache_warning.is_none());
    // The manifest accepts it as is.
    let name = relstore_core::ReleaseName::parse("r1").unwrap();
    relstore_core::Manifest::new(&name, 0, out.entries.clone())
        .validate(None)
        .unwrap();

    // The root may be a symlink to the tree: followed for the root only.
    let via = tmp.path().join("via-link");
    std::os::unix::fs::symlink(&root, &via).unwrap();
    assert_eq!(scan(&via, &plain(), &NoProgress).unwrap().entries, expected);

    assert_eq!(
        hash_file(&root.join("a/big.bin")).unwrap(),
        (ContentHash::from(blake3::hash(&big)), big.len() as u64)
    );
}

/// Lists a tree with std only, as an independent reference for the walk.
fn reference_walk(root: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
    for e in fs::read_dir(p(root, rel)).unwrap() {
        let e = e.unwrap();
        let mut path = rel.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(e.file_name().as_bytes());
        let is_dir = e.file_type().unwrap().is_dir();
        out.push(path.clone());
        if is_dir {
            reference_walk(root, &path, out);
        }
    }
}

#[test]
fn random_tree_comes_out_in_cmp_paths_order() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet: &[u8] = b"ab-._0\xe9\xff";
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    for _ in 0..600 {
        let parent = dirs[rng.usize(..dirs.len())].clone();
        let name: Vec<u8> = (0..rng.usize(1..4))
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect();
        if name == b"." || name == b".." {
            continue;
        }
        let mut rel = parent.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        if p(root, &rel).symlink_metadata().is_ok() {
            continue;
        }
        match rng.u8(..4) {
            0 => {
                mkdir(root, &rel, 0o755);
                dirs.push(rel);
            }
            1 => symlink(root, &rel, &name),
            _ => write(root, &rel, &name, 0o644),
        }
    }
    let out = scan(root, &plain(), &NoProgress).unwrap();
    assert_sorted(&out.entries);
    let mut expected = Vec::new();
    reference_walk(root, b"", &mut expected);
    expected.sort_by(|a, b| cmp_paths(a, b));
    let got: Vec<Vec<u8>> = out.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(got, expected);
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn special_files_are_refused_or_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    mkdir(root, b"sub", 0o755);
    write(root, b"sub/ok", b"ok", 0o644);
    mkfifo(&root.join("sub/pipe"));

    let err = scan(root, &plain(), &NoProgress).unwrap_err();
    assert!(
        matches!(err, ScanError::Special { kind: "fifo", .. }),
        "{err:?}"
    );
    assert_eq!(err.path(), root.join("sub/pipe"));
    assert_eq!(
        err.to_string(),
        format!(
            "{}/sub/pipe is a fifo; relstore deploys files, directories and symlinks (use --skip-special to skip it)",
            root.display()
        )
    );

    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let opts = ScanOptions {
        skip_special: true,
        ..ScanOptions::default()
    };
    let out = scan(root, &opts, &NoProgress).unwrap();
    assert_eq!(
        out.skipped,
        vec![(b"sock".to_vec(), "socket"), (b"sub/pipe".to_vec(), "fifo")]
    );
    assert_eq!(
        out.entries,
        vec![dir(b"sub", 0o755), file(b"sub/ok", b"ok", 0o644)]
    );
}

#[test]
fn source_problems_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = scan(&missing, &plain(), &NoProgress).unwrap_err();
    assert!(matches!(err, ScanError::SourceMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("source directory {} does not exist", missing.display())
    );

    let f = tmp.path().join("file");
    fs::write(&f, b"x").unwrap();
    let err = scan(&f, &plain(), &NoProgress).unwrap_err();
    assert!(matches!(err, ScanError::SourceNotDir { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("source {} is not a directory", f.display())
    );

    // A root symlink to a file is not a directory either.
    let l = tmp.path().join("link");
    std::os::unix::fs::symlink(&f, &l).unwrap();
    assert!(matches!(
        scan(&l, &plain(), &NoProgress),
        Err(ScanError::SourceNotDir { .. })
    ));
}

/// Clears CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling thread's effective
/// set. Capabilities are per thread on Linux, so this makes `chmod 000` bite for a
/// root-run test without affecting other threads.
fn drop_dac_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and a two-element data array, as capget/capset v3 expect.
    unsafe {
        assert_eq!(
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut Header,
                data.as_mut_ptr()
            ),
            0
        );
        data[0].effective &= !((1 << 1) | (1 << 2));
        header.version = VERSION_3;
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
            0
        );
    }
}

/// A pool whose threads cannot bypass permission bits, even when the tests run as root.
fn unprivileged_pool() -> rayon::ThreadPool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(move |_| {
            if root {
                drop_dac_capabilities();
            }
        })
        .build()
        .unwrap()
}

#[test]
fn unreadable_file_and_directory_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, b"ok.html", b"fine", 0o644);
    write(root, b"locked.html", b"secret", 0o000);
    let pool = unprivileged_pool();
    // The test is only meaningful if the pool really cannot read the file.
    let denied = pool.broadcast(|_| fs::File::open(root.join("locked.html")).is_err());
    assert!(
        denied.iter().all(|d| *d),
        "could not make a file unreadable"
    );

    let err = pool
        .install(|| scan(root, &plain(), &NoProgress))
        .unwrap_err();
    assert!(matches!(err, ScanError::ReadFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read file {}/locked.html", root.display())
    );
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("ermission denied"), "{source}");
    fs::remove_file(root.join("locked.html")).unwrap();

    mkdir(root, b"closed", 0o755);
    write(root, b"closed/x", b"x", 0o644);
    fs::set_permissions(root.join("closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let err = pool
        .install(|| scan(root, &plain(), &NoProgress))
        .unwrap_err();
    fs::set_permissions(root.join("closed"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(err, ScanError::ReadDir { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot read directory {}/closed", root.display())
    );
}

/// A tree old enough that none of its entries is racy for a scan starting now.
fn settled_tree(root: &Path) {
    mkdir(root, b"d", 0o755);
    write(root, b"d/a.html", b"aaaa", 0o644);
    write(root, b"d/b.html", b"bbbb", 0o644);
    write(root, b"c.css", b"cccc", 0o644);
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn unchanged_tree_is_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    fs::create_dir(&root).unwrap();
    settled_tree(&root);
    let cache = tmp.path().join("cache/stat/x.cache");

    let first = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(first.files_hashed, 3);
    assert!(first.cache_warning.is_none(), "{:?}", first.cache_warning);
    let ino = fs::metadata(&cache).unwrap().ino();

    let second = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!((second.files_hashed, second.bytes_hashed), (0, 0));
    assert_eq!(second.entries, first.entries);
    // Nothing changed, so the cache file was not rewritten.
    assert_eq!(fs::metadata(&cache).unwrap().ino(), ino);

    // A removed file makes the cache rewrite itself without hashing anything.
    fs::remove_file(root.join("c.css")).unwrap();
    let third = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(third.files_hashed, 0);
    assert_ne!(fs::metadata(&cache).unwrap().ino(), ino);
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0);
}

#[test]
fn changed_times_or_content_are_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    fs::create_dir(&root).unwrap();
    settled_tree(&root);
    let cache = tmp.path().join("c.cache");
    let first = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(first.files_hashed, 3);

    // mtime only (content the same): re-hashed, same hash.
    set_mtime(&root.join("d/a.html"), 1_000_000_000, 5);
    std::thread::sleep(Duration::from_millis(20));
    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!((out.files_hashed, out.bytes_hashed), (1, 4));
    assert_eq!(out.entries, first.entries);

    // Same size, mtime restored: only ctime tells.
    let b = root.join("d/b.html");
    let before = fs::metadata(&b).unwrap();
    fs::write(&b, b"BBBB").unwrap();
    set_mtime(&b, before.mtime(), before.mtime_nsec());
    let after = fs::metadata(&b).unwrap();
    assert_eq!(
        (after.size(), after.mtime(), after.mtime_nsec()),
        (before.size(), before.mtime(), before.mtime_nsec())
    );
    std::thread::sleep(Duration::from_millis(20));
    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(out.files_hashed, 1);
    assert_eq!(
        hash_of(&out, b"d/b.html"),
        ContentHash::from(blake3::hash(b"BBBB"))
    );
}

#[test]
fn racy_records_are_hashed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    fs::create_dir(&root).unwrap();
    settled_tree(&root);
    let cache = tmp.path().join("c.cache");
    scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    let fake = [0xab; 32];

    // Stamp at the earliest ctime: every record's ctime >= its stamp, so none may be
    // trusted although each matches its file exactly.
    stat_cache::forge(&cache, |min_ctime, _| min_ctime, fake);
    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(out.files_hashed, 3);
    assert_eq!(
        hash_of(&out, b"c.css"),
        ContentHash::from(blake3::hash(b"cccc"))
    );

    // Control: one nanosecond later every record is trusted, as the fake hashes show.
    stat_cache::forge(&cache, |_, max_time| max_time + 1, fake);
    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(out.files_hashed, 0);
    assert_eq!(hash_of(&out, b"c.css"), ContentHash(fake));
}

#[test]
fn bad_cache_warns_and_hashes_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    fs::create_dir(&root).unwrap();
    settled_tree(&root);
    let cache = tmp.path().join("c.cache");
    fs::write(
        &cache,
        b"this is not a stat cache at all, just some junk bytes",
    )
    .unwrap();

    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(out.files_hashed, 3);
    let w = out.cache_warning.unwrap();
    assert!(w.contains("corrupt") && w.contains("c.cache"), "{w}");
    // The cache was replaced by a good one.
    let out = scan(&root, &with_cache(&cache), &NoProgress).unwrap();
    assert_eq!(out.files_hashed, 0);
    assert!(out.cache_warning.is_none());

    // An unwritable cache location: a warning, not a failure.
    let blocker = tmp.path().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    let out = scan(
        &root,
        &with_cache(&blocker.join("stat/x.cache")),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(out.files_hashed, 3);
    let w = out.cache_warning.unwrap();
    assert!(w.contains("cannot write stat cache"), "{w}");
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Phase, u64)>>,
    advanced: AtomicU64,
    finished: AtomicU64,
    hash_advanced: AtomicU64,
}

impl Progress for Recorder {
    fn start(&self, phase: Phase, total: u64) {
        let mut ev = self.events.lock().unwrap();
        if phase == Phase::Hash {
            self.hash_advanced
                .store(self.advanced.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        ev.push((phase, total));
    }
    fn advance(&self, n: u64) {
        self.advanced.fetch_add(n, Ordering::SeqCst);
    }
    fn finish(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn progress_reports_entries_then_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    settled_tree(tmp.path());
    let rec = Recorder::default();
    scan(tmp.path(), &plain(), &rec).unwrap();
    assert_eq!(
        *rec.events.lock().unwrap(),
        vec![(Phase::Scan, 0), (Phase::Hash, 12)]
    );
    // 4 entries walked, then 12 bytes hashed.
    assert_eq!(rec.hash_advanced.load(Ordering::SeqCst), 4);
    assert_eq!(rec.advanced.load(Ordering::SeqCst), 16);
    assert_eq!(rec.finished.load(Ordering::SeqCst), 2);
}

fn excluding(root: &Path, patterns: &[&str]) -> ScanOptions {
    let patterns: Vec<String> = patterns.iter().map(|s| (*s).to_owned()).collect();
    ScanOptions {
        excludes: Excludes::build(root, &patterns, true).unwrap(),
        ..ScanOptions::default()
    }
}

fn paths(out: &ScanOutput) -> Vec<String> {
    out.entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect()
}

#[test]
fn excluded_paths_never_reach_the_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, b"index.html", b"hi", 0o644);
    write(root, b"app.js.map", b"map", 0o644);
    write(root, b"keep.map", b"keep", 0o644);
    mkdir(root, b"js", 0o755);
    write(root, b"js/app.js", b"js", 0o644);
    write(root, b"js/app.js.map", b"map2", 0o644);
    mkdir(root, b"build", 0o755);
    write(root, b"build/out.o", b"o", 0o644);
    mkdir(root, b"docs", 0o755);
    mkdir(root, b"docs/build", 0o755);
    write(root, b"docs/build/page.html", b"p", 0o644);
    write(root, b"caf\xe9.tmp", b"t", 0o644);
    write(root, IGNORE_FILE.as_bytes(), b"*.tmp\n", 0o644);
    let out = scan(
        root,
        &excluding(root, &["*.map", "/build", "!keep.map"]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        paths(&out),
        [
            "docs",
            "docs/build",
            "docs/build/page.html",
            "index.html",
            "js",
            "js/app.js",
            "keep.map"
        ]
    );
    // app.js.map, js/app.js.map, build, the .tmp file and the ignore file itself.
    assert_eq!(out.excluded, 5);
    assert_sorted(&out.entries);
}

#[test]
fn excluded_directory_is_not_descended_and_excluded_specials_are_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, b"index.html", b"hi", 0o644);
    mkdir(root, b"node_modules", 0o755);
    mkdir(root, b"node_modules/pkg", 0o755);
    // A fifo is refused wherever the walk meets it: its absence from the error proves
    // the walk never listed node_modules/pkg.
    mkfifo(&root.join("node_modules/pkg/pipe"));
    mkfifo(&root.join("dev.sock"));
    let out = scan(
        root,
        &excluding(root, &["node_modules/", "dev.sock"]),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(paths(&out), ["index.html"]);
    assert_eq!(out.excluded, 2);
    // Without the excludes the same tree is refused.
    assert!(scan(root, &plain(), &NoProgress).is_err());
}

#[test]
fn without_excludes_the_ignore_file_is_an_ordinary_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, IGNORE_FILE.as_bytes(), b"*\n", 0o644);
    let out = scan(root, &plain(), &NoProgress).unwrap();
    assert_eq!(paths(&out), [IGNORE_FILE]);
    assert_eq!(out.excluded, 0);
}
