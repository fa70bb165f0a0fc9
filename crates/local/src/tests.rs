//! The local target on a scratch directory: every step checked on disk with std::fs.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use relstore_core::progress::NoProgress;
use relstore_core::target::{AssembleStats, BlobSource, Opened, TargetError, Upload};
use relstore_core::{ContentHash, Entry, EntryKind, ObjectId, ReleaseName, Target};

use crate::assemble::test_hooks::cap_links;
use crate::LocalTarget;

/// Object content held in memory, by id.
#[derive(Default)]
struct MemSource(HashMap<ObjectId, Vec<u8>>);

impl BlobSource for MemSource {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let data = self.0.get(&upload.id).cloned().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no such blob in the test source")
        })?;
        Ok(Box::new(io::Cursor::new(data)))
    }
    fn describe(&self, upload: &Upload) -> String {
        format!("memory:{}", upload.id.rel_path())
    }
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::Dir { mode },
    }
}

fn file(path: &str, content: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File {
            size: content.len() as u64,
            hash: ContentHash::from(blake3::hash(content)),
            mode,
        },
    }
}

fn symlink(path: &str, target: &str) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::Symlink {
            target: target.as_bytes().to_vec(),
        },
    }
}

fn name(s: &str) -> ReleaseName {
    ReleaseName::parse(s).expect("valid release name")
}

/// A store in a fresh temp dir, opened with `create`.
fn store() -> (tempfile::TempDir, LocalTarget) {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = LocalTarget::new(dir.path().join("store"));
    assert_eq!(t.open(true).expect("open"), Opened::Created);
    (dir, t)
}

/// Uploads the content of every file entry of `files` (given with their content).
fn put(t: &LocalTarget, files: &[(&Entry, &[u8])]) {
    let mut source = MemSource::default();
    let mut uploads = Vec::new();
    for (e, content) in files {
        if let Some(id) = e.object() {
            if source.0.insert(id, content.to_vec()).is_none() {
                uploads.push(Upload {
                    id,
                    size: content.len() as u64,
                });
            }
        }
    }
    t.put_objects(&uploads, &source, &NoProgress)
        .expect("put objects");
}

fn meta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn release(t: &LocalTarget, n: &str) -> PathBuf {
    t.root().join("releases").join(n)
}

fn tmp_is_empty(t: &LocalTarget) -> bool {
    std::fs::read_dir(t.root().join("tmp"))
        .expect("list tmp")
        .next()
        .is_none()
}

fn err_text(r: Result<Opened, TargetError>) -> String {
    match r {
        Ok(o) => panic!("expected a refusal, got {o:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn open_creates_missing_and_empty_roots_only_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = LocalTarget::new(dir.path().join("a/b"));
    assert!(matches!(t.open(false), Err(TargetError::NoStore { .. })));
    assert!(
        !dir.path().join("a").exists(),
        "open(false) created something"
    );
    assert_eq!(t.open(true).expect("create"), Opened::Created);
    for d in ["releases", "objects", "manifests", "tmp", "pins"] {
        assert!(t.root().join(d).is_dir(), "{d}/ missing");
    }
    assert_eq!(t.open(false).expect("reopen"), Opened::Existing);
    assert_eq!(t.open(true).expect("reopen"), Opened::Existing);

    let empty = LocalTarget::new(dir.path().join("empty"));
    std::fs::create_dir(empty.root()).expect("mkdir");
    assert!(matches!(
        empty.open(false),
        Err(TargetError::NoStore { .. })
    ));
    assert_eq!(empty.open(true).expect("create"), Opened::Created);
}

#[test]
fn open_refuses_files_foreign_directories_and_other_formats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("file");
    std::fs::write(&f, "x").expect("write");
    for create in [true, false] {
        let text = err_text(LocalTarget::new(&f).open(create));
        assert!(text.ends_with("is a file, not a directory"), "{text}");
    }

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("index.html"), "hi").expect("write");
    let text = err_text(LocalTarget::new(&foreign).open(true));
    assert!(text.contains("refusing to write into it"), "{text}");
    assert_eq!(std::fs::read_dir(&foreign).expect("list").count(), 1);

    let future = dir.path().join("future");
    std::fs::create_dir(&future).expect("mkdir");
    std::fs::write(future.join("relstore.toml"), "format = 99\n").expect("write");
    let text = err_text(LocalTarget::new(&future).open(true));
    assert!(text.contains("store format 99 is not supported"), "{text}");
    std::fs::write(future.join("relstore.toml"), [0xff, 0xfe]).expect("write");
    let text = err_text(LocalTarget::new(&future).open(false));
    assert!(text.ends_with("relstore.toml is malformed"), "{text}");
}

#[test]
fn open_checks_the_layout_and_completes_it_when_creating() {
    let (_dir, t) = store();
    std::fs::remove_dir(t.root().join("tmp")).expect("rmdir");
    let text = err_text(t.open(false));
    assert!(
        text.ends_with("store is missing its tmp/ directory"),
        "{text}"
    );
    assert_eq!(t.open(true).expect("complete"), Opened::Existing);
    assert!(t.root().join("tmp").is_dir());
}

#[test]
fn put_objects_stores_content_read_only_and_leaves_tmp_empty() {
    let (_dir, t) = store();
    let a = file("a", b"alpha", 0o755);
    let b = file("b", b"beta", 0o644);
    let ids = [a.object().expect("id"), b.object().expect("id")];
    assert_eq!(t.missing_objects(&ids).expect("check"), ids.to_vec());
    put(&t, &[(&a, b"alpha"), (&b, b"beta")]);
    assert_eq!(t.missing_objects(&ids).expect("check"), Vec::new());
    let stored = t.root().join(ids[0].rel_path());
    assert_eq!(std::fs::read(&stored).expect("read"), b"alpha");
    assert_eq!(meta(&stored).mode() & 0o7777, 0o555);
    assert_eq!(t.list_objects().expect("list").len(), 2);
    assert!(tmp_is_empty(&t));
}

#[test]
fn put_objects_fails_naming_the_blob_and_publishes_nothing() {
    let (_dir, t) = store();
    let a = file("a", b"alpha", 0o644);
    let up = Upload {
        id: a.object().expect("id"),
        size: 5,
    };
    let err = t
        .put_objects(&[up], &MemSource::default(), &NoProgress)
        .expect_err("no content");
    assert!(err
        .to_string()
        .starts_with("cannot read content for object memory:objects/"));
    assert_eq!(t.missing_objects(&[up.id]).expect("check"), vec![up.id]);
    assert!(tmp_is_empty(&t));
}

/// A small tree with every kind of entry, and the content of its files.
fn sample() -> (Vec<Entry>, Vec<(usize, &'static [u8])>) {
    let entries = vec![
        dir("d", 0o755),
        dir("d/ro", 0o555),
        file("d/ro/x.txt", b"x content", 0o644),
        file("d/same.txt", b"x content", 0o644),
        file("d/empty", b"", 0o640),
        file("d/empty2", b"", 0o600),
        file("run.sh", b"#!/bin/sh\n", 0o755),
        symlink("link", "d/ro/x.txt"),
    ];
    let contents = vec![
        (2, &b"x content"[..]),
        (3, b"x content"),
        (6, b"#!/bin/sh\n"),
    ];
    (entries, contents)
}

fn assemble_sample(t: &LocalTarget, n: &str) -> (Vec<Entry>, AssembleStats) {
    let (entries, contents) = sample();
    let files: Vec<(&Entry, &[u8])> = contents.iter().map(|(i, c)| (&entries[*i], *c)).collect();
    put(t, &files);
    let stats = t
        .assemble(&name(n), &entries, &NoProgress)
        .expect("assemble");
    (entries, stats)
}

#[test]
fn assemble_links_objects_and_makes_empty_files_and_symlinks_fresh() {
    let (_dir, t) = store();
    let (entries, stats) = assemble_sample(&t, "r1");
    assert_eq!(
        stats,
        AssembleStats {
            dirs: 2,
            links: 3,
            empty_files: 2,
            symlinks: 1,
            object_copies: 0,
        }
    );
    let r = release(&t, "r1");
    assert_eq!(meta(&r).mode() & 0o7777, 0o755);
    assert_eq!(meta(&r.join("d/ro")).mode() & 0o7777, 0o555);
    let object = t.root().join(entries[2].object().expect("id").rel_path());
    assert_eq!(meta(&r.join("d/ro/x.txt")).ino(), meta(&object).ino());
    assert_eq!(meta(&r.join("d/same.txt")).ino(), meta(&object).ino());
    assert_eq!(
        std::fs::read(r.join("run.sh")).expect("read"),
        b"#!/bin/sh\n"
    );
    assert_eq!(meta(&r.join("run.sh")).mode() & 0o7777, 0o555);
    let (e1, e2) = (meta(&r.join("d/empty")), meta(&r.join("d/empty2")));
    assert_ne!(e1.ino(), e2.ino(), "empty files must not share an inode");
    assert_eq!((e1.len(), e1.mode() & 0o7777), (0, 0o640));
    assert_eq!(e2.mode() & 0o7777, 0o600);
    let target = std::fs::read_link(r.join("link")).expect("readlink");
    assert_eq!(target.as_os_str().as_bytes(), b"d/ro/x.txt");
    assert_eq!(t.list_release_tree(&name("r1")).expect("tree").len(), 8);
    assert!(tmp_is_empty(&t));

    let again = t.assemble(&name("r1"), &entries, &NoProgress);
    assert!(matches!(again, Err(TargetError::ReleaseExists { .. })));
}

#[test]
fn assemble_names_a_missing_object() {
    let (_dir, t) = store();
    let entries = vec![file("a", b"never uploaded", 0o644)];
    let err = t
        .assemble(&name("r1"), &entries, &NoProgress)
        .expect_err("missing object");
    let text = err.to_string();
    assert!(
        text.starts_with("object ") && text.contains("is missing from the store"),
        "{text}"
    );
    assert!(!release(&t, "r1").exists());
}

#[test]
fn activate_swaps_current_and_remove_release_deletes_read_only_trees() {
    let (_dir, t) = store();
    assert_eq!(t.current().expect("current"), None);
    assemble_sample(&t, "r1");
    assemble_sample(&t, "r2");
    t.activate(&name("r1")).expect("activate");
    assert_eq!(t.current().expect("current"), Some(name("r1")));
    t.activate(&name("r2")).expect("activate");
    assert_eq!(t.current().expect("current"), Some(name("r2")));
    let current = std::fs::read_link(t.root().join("current")).expect("readlink");
    assert_eq!(current, Path::new("releases/r2"));
    assert!(t.root().join("current/d/ro/x.txt").is_file());

    let removal = t.remove_release_dir("r1").expect("remove");
    assert!(removal.left_behind.is_empty(), "{removal:?}");
    assert!(!release(&t, "r1").exists());
    assert_eq!(t.list_release_dirs().expect("list"), vec!["r2".to_string()]);
    assert!(t
        .remove_release_dir("r1")
        .expect("again")
        .left_behind
        .is_empty());
    assert!(tmp_is_empty(&t));
}

#[test]
fn emlink_moves_linking_to_numbered_copies_and_reuses_them() {
    let (_dir, t) = store();
    // Each inode takes 3 links: the object's own name and two release paths.
    cap_links(t.root(), 3);
    let mut entries = vec![dir("d", 0o755)];
    for i in 0..5 {
        entries.push(file(&format!("d/logo{i}.svg"), b"<svg/>", 0o644));
    }
    put(&t, &[(&entries[1], b"<svg/>")]);
    let stats = t
        .assemble(&name("r1"), &entries, &NoProgress)
        .expect("assemble");
    assert_eq!((stats.links, stats.object_copies), (5, 2));
    let id = entries[1].object().expect("id");
    let copies: Vec<u32> = t
        .list_objects()
        .expect("list")
        .iter()
        .map(|o| o.copy)
        .collect();
    assert_eq!(copies, vec![0, 1, 2]);
    let copy_inodes: Vec<u64> = (0..3)
        .map(|c| meta(&t.root().join(id.copy_rel_path(c))).ino())
        .collect();
    for i in 0..5 {
        let p = release(&t, "r1").join(format!("d/logo{i}.svg"));
        assert!(
            copy_inodes.contains(&meta(&p).ino()),
            "{} not linked",
            p.display()
        );
        assert_eq!(std::fs::read(&p).expect("read"), b"<svg/>");
    }
    assert_eq!(
        meta(&t.root().join(id.copy_rel_path(1))).mode() & 0o7777,
        0o444
    );

    // The next assembly walks past the full copies to the one with room: no new copy.
    let stats = t
        .assemble(&name("r2"), &entries[..2], &NoProgress)
        .expect("assemble");
    assert_eq!(stats.object_copies, 0);
    assert_eq!(meta(&t.root().join(id.copy_rel_path(2))).nlink(), 3);
    assert!(tmp_is_empty(&t));
}

#[test]
fn relink_repairs_each_kind_of_damage_in_place() {
    let (_dir, t) = store();
    let (entries, _) = assemble_sample(&t, "r1");
    let r = release(&t, "r1");
    let object = t.root().join(entries[2].object().expect("id").rel_path());
    // A copy instead of a link, inside a read-only directory.
    std::fs::set_permissions(r.join("d/ro"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::remove_file(r.join("d/ro/x.txt")).expect("rm");
    std::fs::write(r.join("d/ro/x.txt"), b"x content").expect("write");
    std::fs::set_permissions(r.join("d/ro"), std::fs::Permissions::from_mode(0o555))
        .expect("chmod");
    // A directory where an empty file belongs, a file where a symlink belongs.
    std::fs::remove_file(r.join("d/empty")).expect("rm");
    std::fs::create_dir_all(r.join("d/empty/junk")).expect("mkdir");
    std::fs::remove_file(r.join("link")).expect("rm");
    std::fs::write(r.join("link"), b"not a link").expect("write");
    // A wrong directory mode, and a file where a directory belongs.
    std::fs::set_permissions(r.join("d"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let repair = vec![
        entries[0].clone(),
        entries[2].clone(),
        entries[4].clone(),
        symlink("link", "d/ro/x.txt"),
        dir("extra", 0o750),
    ];
    std::fs::write(r.join("extra"), b"in the way").expect("write");

    t.relink(&name("r1"), &repair).expect("relink");
    assert_eq!(meta(&r.join("d/ro/x.txt")).ino(), meta(&object).ino());
    assert_eq!(meta(&r.join("d/ro")).mode() & 0o7777, 0o555);
    let empty = meta(&r.join("d/empty"));
    assert!(empty.is_file() && empty.len() == 0);
    assert_eq!(empty.mode() & 0o7777, 0o640);
    let link = std::fs::read_link(r.join("link")).expect("readlink");
    assert_eq!(link.as_os_str().as_bytes(), b"d/ro/x.txt");
    assert_eq!(meta(&r.join("d")).mode() & 0o7777, 0o755);
    let extra = meta(&r.join("extra"));
    assert!(extra.is_dir());
    assert_eq!(extra.mode() & 0o7777, 0o750);
    assert!(tmp_is_empty(&t));
}
