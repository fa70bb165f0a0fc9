//! Behaviour of the local release store, through its public API only.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use relstore_core::progress::{NoProgress, Phase, Progress};
use relstore_core::release::ReleaseName;
use relstore_core::target::{BlobSource, Upload};
use relstore_core::{ContentHash, Entry, EntryKind, Manifest, ObjectId};
use relstore_release_store::{ReleaseStore, ReleaseStoreError, StoreSource, MARKER_FILE};

type Item = (ContentHash, PathBuf, u64);

fn hash(bytes: &[u8]) -> ContentHash {
    ContentHash::from(blake3::hash(bytes))
}

/// Writes `bytes` to `dir/name` and returns the put item for it.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> Item {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    (hash(bytes), path, bytes.len() as u64)
}

/// Text-like content: words from a small vocabulary, like HTML/CSS/JS of a site.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "<div class=\"",
        "container",
        "\">",
        "</div>\n",
        "the ",
        "release ",
        "store ",
        "href=\"/",
        "docs/",
        "index.html",
        "function ",
        "return ",
        "{ ",
        "} ",
        "const ",
        "= ",
        ";\n",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
        if rng.u8(..) < 8 {
            out.extend_from_slice(rng.u64(..).to_string().as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

fn read_blob(store: &ReleaseStore, h: &ContentHash, size: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.open_blob(h, size)?.read_to_end(&mut out)?;
    Ok(out)
}

fn tmp_entries(store: &ReleaseStore) -> usize {
    fs::read_dir(store.root().join("tmp")).unwrap().count()
}

#[derive(Default)]
struct Counting(AtomicU64);

impl Progress for Counting {
    fn start(&self, _: Phase, _: u64) {}
    fn advance(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

#[test]
fn round_trips_small_tiny_large_and_incompressible_content() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(&dir.path().join("store")).unwrap();
    let contents: Vec<(&str, Vec<u8>)> = vec![
        (
            "small.html",
            b"<html><body>hello, world</body></html>\n".to_vec(),
        ),
        ("one-byte", b"x".to_vec()),
        ("empty", Vec::new()),
        ("large.js", text(3 << 20, 1)),
        ("random.bin", random(3 << 20, 2)),
        ("random-small.bin", random(100_000, 3)),
    ];
    let items: Vec<Item> = contents
        .iter()
        .map(|(name, bytes)| file(src.path(), name, bytes))
        .collect();
    for (h, _, _) in &items {
        assert!(!store.contains(h));
    }
    let progress = Counting::default();
    let stats = store.put_files(&items, &progress).unwrap();
    assert_eq!(stats.blobs_added, items.len() as u64);
    assert_eq!(stats.blobs_present, 0);
    let total: u64 = items.iter().map(|(_, _, s)| s).sum();
    assert_eq!(stats.bytes_read, total);
    assert_eq!(progress.0.load(Ordering::Relaxed), total);
    // Text compresses; random data costs at most a little framing overhead.
    let large_blob = fs::metadata(store.blob_path(&items[3].0)).unwrap().len();
    assert!(
        large_blob < (3 << 20) / 2,
        "text blob is {large_blob} bytes"
    );
    let random_blob = fs::metadata(store.blob_path(&items[4].0)).unwrap().len();
    assert!(
        random_blob < (3 << 20) + 4096,
        "random blob is {random_blob} bytes"
    );
    assert_eq!(tmp_entries(&store), 0, "nothing left in tmp/");

    for ((h, _, size), (name, bytes)) in items.iter().zip(&contents) {
        assert!(store.contains(h), "{name}");
        assert_eq!(&read_blob(&store, h, *size).unwrap(), bytes, "{name}");
        // A consumer that reads exactly `size` bytes and stops gets them too.
        let mut exact = vec![0u8; *size as usize];
        store
            .open_blob(h, *size)
            .unwrap()
            .read_exact(&mut exact)
            .unwrap();
        assert_eq!(&exact, bytes, "{name}");
    }
    let (count, bytes) = store.usage().unwrap();
    assert_eq!(count, items.len() as u64);
    assert_eq!(bytes, stats.bytes_written);

    // Reopening finds the same store.
    drop(store);
    let store = ReleaseStore::open(&dir.path().join("store")).unwrap();
    assert!(store.contains(&items[0].0));
    let again = store.put_files(&items, &NoProgress).unwrap();
    assert_eq!(again.blobs_added, 0);
    assert_eq!(again.blobs_present, items.len() as u64);
}

#[test]
fn equal_content_is_one_blob() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    let content = text(20_000, 7);
    let a = file(src.path(), "a.html", &content);
    let b = file(src.path(), "b.html", &content);
    let c = file(src.path(), "c.html", b"other");
    let stats = store
        .put_files(&[a.clone(), b.clone(), c], &NoProgress)
        .unwrap();
    assert_eq!(stats.blobs_added, 2);
    assert_eq!(stats.blobs_present, 1);
    assert_eq!(stats.bytes_read, 20_000 + 5);
    assert_eq!(store.usage().unwrap().0, 2);
    let stats = store.put_files(&[b], &NoProgress).unwrap();
    assert_eq!((stats.blobs_added, stats.blobs_present), (0, 1));
    assert_eq!(read_blob(&store, &a.0, a.2).unwrap(), content);
}

#[test]
fn a_file_changed_after_hashing_is_refused_by_name_and_not_stored() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    // Same size, other bytes (small path); grown and shrunk (streamed path).
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "same-size.html",
            b"original content".to_vec(),
            b"ORIGINAL content".to_vec(),
        ),
        ("grown.js", text(2 << 20, 1), text((2 << 20) + 10, 1)),
        ("shrunk.js", text(2 << 20, 2), text((2 << 20) - 10, 2)),
    ];
    for (name, before, after) in cases {
        let item = file(src.path(), name, &before);
        fs::write(&item.1, &after).unwrap();
        let err = store
            .put_files(std::slice::from_ref(&item), &NoProgress)
            .unwrap_err();
        assert!(
            matches!(err, ReleaseStoreError::Source { .. }),
            "{name}: {err:?}"
        );
        let shown = format!("{err}");
        assert!(
            shown.contains(&item.1.display().to_string()),
            "{name}: {shown}"
        );
        assert!(!store.contains(&item.0), "{name} must not be stored");
        assert_eq!(store.usage().unwrap(), (0, 0), "{name}");
        assert_eq!(tmp_entries(&store), 0, "{name}: temp file left behind");
    }
    // The other files of the batch, verified, are kept; only the changed one is not.
    let good = file(src.path(), "good.css", b"body { margin: 0 }");
    let changed = file(src.path(), "changed.css", b"p { color: red }");
    fs::write(&changed.1, b"p { color: RED }").unwrap();
    let err = store
        .put_files(&[good.clone(), changed.clone()], &NoProgress)
        .unwrap_err();
    assert!(format!("{err}").contains("changed.css"), "{err}");
    assert!(store.contains(&good.0));
    assert!(!store.contains(&changed.0));
    assert_eq!(tmp_entries(&store), 0);
    // A missing source file names the path too.
    let missing = (hash(b"gone"), src.path().join("gone.txt"), 4);
    let err = store.put_files(&[missing], &NoProgress).unwrap_err();
    assert!(format!("{err}").contains("gone.txt"), "{err}");
}

#[test]
fn a_corrupt_blob_never_reads_as_wrong_bytes() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    let contents = [text(3 << 20, 9), text(30_000, 10), random(200_000, 11)];
    let items: Vec<Item> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| file(src.path(), &format!("f{i}"), c))
        .collect();
    store.put_files(&items, &NoProgress).unwrap();
    let pristine: Vec<Vec<u8>> = items
        .iter()
        .map(|(h, _, _)| fs::read(store.blob_path(h)).unwrap())
        .collect();
    for ((h, _, size), (original, blob)) in items.iter().zip(contents.iter().zip(&pristine)) {
        let path = store.blob_path(h);
        let mut positions: Vec<usize> = (0..blob.len()).step_by(blob.len() / 23 + 1).collect();
        positions.extend([blob.len() / 2, blob.len() - 1]);
        let mut failures = 0;
        for pos in positions {
            let mut bad = blob.clone();
            bad[pos] ^= 0x5a;
            // Restore the blob file (it may have been moved aside by the last read).
            let _ = fs::remove_file(&path);
            fs::write(&path, &bad).unwrap();
            match read_blob(&store, h, *size) {
                Ok(data) => assert!(&data == original, "wrong bytes returned (flip at {pos})"),
                Err(e) => {
                    failures += 1;
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
                    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                    assert!(!store.contains(h), "a corrupt blob is moved aside");
                }
            }
        }
        assert!(failures > 0, "no corruption detected");
        // Truncated blob.
        let _ = fs::remove_file(&path);
        fs::write(&path, &blob[..blob.len() / 2]).unwrap();
        assert!(read_blob(&store, h, *size).is_err());
        // Once moved aside, the next put stores the content again.
        store.put_files(&items, &NoProgress).unwrap();
        assert_eq!(&read_blob(&store, h, *size).unwrap(), original);
    }
    // A wrong expected size is an error, and does not move a good blob aside.
    let (h, _, size) = &items[1];
    assert!(read_blob(&store, h, size - 1).is_err());
    assert!(read_blob(&store, h, size + 1).is_err());
    assert!(store.contains(h));
    assert_eq!(&read_blob(&store, h, *size).unwrap(), &contents[1]);
    // A missing blob is NotFound, naming the path.
    let err = read_blob(&store, &hash(b"never stored"), 12).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("blobs/"), "{err}");
}

fn manifest_of(name: &str, created: i64, files: &[&Item]) -> Vec<u8> {
    let entries = files
        .iter()
        .enumerate()
        .map(|(i, (h, _, size))| Entry {
            path: format!("f{i}").into_bytes(),
            kind: EntryKind::File {
                size: *size,
                hash: *h,
                mode: 0o644,
            },
        })
        .collect();
    Manifest::new(&ReleaseName::parse(name).unwrap(), created, entries)
        .encode()
        .unwrap()
}

#[test]
fn prune_keeps_exactly_the_blobs_of_the_newest_manifests_per_target() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    let blobs: Vec<Item> = (0..8)
        .map(|i| file(src.path(), &format!("b{i}"), &text(5000 + i, i as u64)))
        .collect();
    store.put_files(&blobs, &NoProgress).unwrap();
    let b = |i: usize| &blobs[i];
    // Target A: four releases; names deliberately not in creation order.
    let a = "deploy@web1:/srv/www/site";
    store
        .record_manifest(a, "zz-oldest", &manifest_of("zz-oldest", 10, &[b(0), b(1)]))
        .unwrap();
    store
        .record_manifest(a, "aa-old", &manifest_of("aa-old", 20, &[b(1), b(2)]))
        .unwrap();
    store
        .record_manifest(a, "mm-new", &manifest_of("mm-new", 30, &[b(3), b(6)]))
        .unwrap();
    store
        .record_manifest(a, "bb-newest", &manifest_of("bb-newest", 40, &[b(4)]))
        .unwrap();
    // Target B: one release, sharing b6 with A.
    let t = "/srv/other";
    store
        .record_manifest(t, "r1", &manifest_of("r1", 5, &[b(5), b(6)]))
        .unwrap();
    // b7 is referenced by nothing.

    let sizes: Vec<u64> = blobs
        .iter()
        .map(|(h, _, _)| fs::metadata(store.blob_path(h)).unwrap().len())
        .collect();
    let gone = [0usize, 1, 2, 7];
    let dry = store.prune(2, true).unwrap();
    assert_eq!(dry.manifests_removed, 2);
    assert_eq!(dry.blobs_removed, gone.len() as u64);
    assert_eq!(dry.bytes_freed, gone.iter().map(|&i| sizes[i]).sum::<u64>());
    assert_eq!(dry.blobs_kept, 4);
    // A dry run removes nothing.
    for (h, _, _) in &blobs {
        assert!(store.contains(h));
    }
    assert_eq!(store.usage().unwrap().0, 8);

    let stats = store.prune(2, false).unwrap();
    assert_eq!(stats, dry);
    for (i, (h, _, _)) in blobs.iter().enumerate() {
        assert_eq!(store.contains(h), !gone.contains(&i), "blob {i}");
    }
    let records = |loc: &str| -> Vec<String> {
        let key = &blake3::hash(loc.as_bytes()).to_hex()[..32];
        let mut names: Vec<String> = fs::read_dir(store.root().join("manifests").join(key))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        records(a),
        ["bb-newest.manifest", "mm-new.manifest", "target"]
    );
    assert_eq!(records(t), ["r1.manifest", "target"]);
    // Pruning again changes nothing.
    let again = store.prune(2, false).unwrap();
    assert_eq!((again.manifests_removed, again.blobs_removed), (0, 0));
    // keep 1: A keeps bb-newest (b4), B keeps r1 (b5, b6): b3 goes.
    let one = store.prune(1, false).unwrap();
    assert_eq!((one.manifests_removed, one.blobs_removed), (1, 1));
    assert!(!store.contains(&blobs[3].0));
    assert!(store.contains(&blobs[6].0));
    // keep 0 empties the store.
    store.prune(0, false).unwrap();
    assert_eq!(store.usage().unwrap(), (0, 0));
}

#[test]
fn prune_refuses_while_another_handle_is_open_and_clears_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    fs::write(store.root().join("tmp/debris.tmp"), b"x").unwrap();
    let other = ReleaseStore::open(dir.path()).unwrap();
    let err = store.prune(3, false).unwrap_err();
    assert!(matches!(err, ReleaseStoreError::Busy { .. }), "{err:?}");
    assert!(store.prune(3, true).is_ok(), "a dry run needs no lock");
    drop(other);
    store.prune(3, false).unwrap();
    assert_eq!(tmp_entries(&store), 0);
    // The store is still usable (the shared lock came back).
    let third = ReleaseStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.prune(3, false),
        Err(ReleaseStoreError::Busy { .. })
    ));
    drop(third);
}

#[test]
fn record_manifest_refuses_bad_names_and_mismatched_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    let bytes = manifest_of("r1", 1, &[]);
    assert!(matches!(
        store.record_manifest("/t", "../r1", &bytes),
        Err(ReleaseStoreError::ReleaseName { .. })
    ));
    assert!(matches!(
        store.record_manifest("/t", "r2", &bytes),
        Err(ReleaseStoreError::Manifest { .. })
    ));
    assert!(matches!(
        store.record_manifest("/t", "r1", b"garbage"),
        Err(ReleaseStoreError::Manifest { .. })
    ));
    store.record_manifest("/t", "r1", &bytes).unwrap();
    // A record corrupted on disk stops prune with its name instead of guessing.
    let key = &blake3::hash(b"/t").to_hex()[..32];
    let path = store.root().join("manifests").join(key).join("r1.manifest");
    let mut bad = fs::read(&path).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(&path, bad).unwrap();
    let err = store.prune(1, false).unwrap_err();
    assert!(format!("{err}").contains("r1.manifest"), "{err}");
}

#[test]
fn open_refuses_foreign_directories() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("photos");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
    let err = ReleaseStore::open(&foreign).err().unwrap();
    assert!(
        matches!(err, ReleaseStoreError::NotAStore { .. }),
        "{err:?}"
    );
    assert!(
        format!("{err}").contains(&foreign.display().to_string()),
        "{err}"
    );
    let names: Vec<_> = fs::read_dir(&foreign).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written into a foreign directory");

    let a_file = dir.path().join("file");
    fs::write(&a_file, b"x").unwrap();
    assert!(matches!(
        ReleaseStore::open(&a_file),
        Err(ReleaseStoreError::NotAStore { .. })
    ));

    let future = dir.path().join("future");
    fs::create_dir(&future).unwrap();
    fs::write(future.join(MARKER_FILE), "format = 99\n").unwrap();
    assert!(matches!(
        ReleaseStore::open(&future),
        Err(ReleaseStoreError::UnsupportedFormat { .. })
    ));

    // An empty directory becomes a store.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    ReleaseStore::open(&empty).unwrap();
    assert!(empty.join(MARKER_FILE).is_file());
}

#[test]
fn concurrent_puts_of_overlapping_sets_both_succeed() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Item> = (0..300)
        .map(|i| file(src.path(), &format!("f{i}"), &text(1000 + i * 37, i as u64)))
        .collect();
    let first = &items[..200];
    let second = &items[100..];
    let shared = ReleaseStore::open(dir.path()).unwrap();
    let separate = ReleaseStore::open(dir.path()).unwrap();
    // Same handle from two threads, then two handles (as two processes would).
    for other in [&shared, &separate] {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| shared.put_files(first, &NoProgress));
            let b = s.spawn(|| other.put_files(second, &NoProgress));
            (a.join().unwrap(), b.join().unwrap())
        });
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.blobs_added + a.blobs_present == 200 && b.blobs_added + b.blobs_present == 200);
    }
    assert_eq!(shared.usage().unwrap().0, 300);
    assert_eq!(tmp_entries(&shared), 0);
    for (h, path, size) in &items {
        assert_eq!(
            read_blob(&shared, h, *size).unwrap(),
            fs::read(path).unwrap()
        );
    }
}

#[test]
fn store_source_serves_uploads_by_content() {
    let src = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ReleaseStore::open(dir.path()).unwrap();
    let item = file(src.path(), "run.sh", b"#!/bin/sh\necho hi\n");
    store
        .put_files(std::slice::from_ref(&item), &NoProgress)
        .unwrap();
    let source = StoreSource(&store);
    // Any mode of the content is served by the one blob.
    for mode in [0o644, 0o755] {
        let upload = Upload {
            id: ObjectId::for_file(item.0, mode),
            size: item.2,
        };
        let mut out = Vec::new();
        source.open(&upload).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"#!/bin/sh\necho hi\n");
        let described = source.describe(&upload);
        assert!(described.starts_with("local release store "), "{described}");
        assert!(described.contains(&store.blob_path(&item.0).display().to_string()));
    }
}
