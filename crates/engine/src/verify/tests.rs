//! verify against a real local store, through the [`Target`] trait.

use relstore_core::layout::LockFile;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use relstore_core::hash::ContentHash;
use relstore_core::progress::{NoProgress, Progress};
use relstore_core::target::{
    AssembleStats, BlobSource, Opened, Removal, StoredObject, TreeEntry, Upload,
};
use relstore_core::{Entry, ObjectId, ReleaseName, Target, TargetResult};
use relstore_local::LocalTarget;
use tempfile::TempDir;

use super::{verify, ProblemKind, VerifyOptions, VerifyReport};
use crate::error::EngineError;
use crate::push::{push, PushOptions};

/// A store with releases pushed from source trees, all in one temporary directory.
struct Store {
    dir: TempDir,
    target: Arc<CountingTarget>,
}

impl Store {
    /// A store holding release `r1` of `base()`, then `r2` of `base()` plus one file.
    fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = Arc::new(CountingTarget {
            inner: LocalTarget::new(dir.path().join("store")),
            reads: Mutex::default(),
        });
        let store = Store { dir, target };
        let src = store.source("src1", &[]);
        store.push(&src, "r1");
        let src = store.source("src2", &[("extra.txt", "only in r2\n")]);
        store.push(&src, "r2");
        store.target.reads.lock().expect("lock").clear();
        store
    }

    /// Writes a source tree: the base files plus `more`.
    fn source(&self, name: &str, more: &[(&str, &str)]) -> PathBuf {
        let src = self.dir.path().join(name);
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        let base = [("a.txt", "hello\n"), ("sub/b.txt", "world\n")];
        for (path, content) in base.iter().chain(more) {
            fs::write(src.join(path), content).expect("write");
        }
        std::os::unix::fs::symlink("../a.txt", src.join("sub/link")).expect("symlink");
        src
    }

    fn push(&self, src: &Path, release: &str) {
        let opts = PushOptions {
            release: Some(release.into()),
            ..PushOptions::default()
        };
        push(src, &self.dyn_target(), &opts, &NoProgress).expect("push");
    }

    fn dyn_target(&self) -> Arc<dyn Target> {
        self.target.clone()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn verify(&self, opts: &VerifyOptions) -> VerifyReport {
        verify(&self.dyn_target(), opts, &NoProgress).expect("verify")
    }

    /// Repairs with the first source tree as `--source`.
    fn repair(&self) -> VerifyReport {
        self.verify(&VerifyOptions {
            repair: true,
            sources: vec![self.dir.path().join("src1")],
            ..VerifyOptions::default()
        })
    }

    /// The stored object file holding `content`.
    fn object_file(&self, content: &str) -> PathBuf {
        walkdir(&self.root().join("objects"))
            .into_iter()
            .find(|p| fs::read(p).is_ok_and(|c| c == content.as_bytes()))
            .expect("object stored")
    }
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Overwrites a (read-only) object file, as a disk fault or a careless operator would.
fn corrupt(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(path, "HELLO\n").expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).expect("chmod");
}

/// `(release, path, kind)` of each problem.
fn keys(problems: &[super::Problem]) -> Vec<(Option<String>, String, ProblemKind)> {
    let mut k: Vec<_> = problems
        .iter()
        .map(|p| (p.release.clone(), p.path.clone(), p.kind))
        .collect();
    k.sort();
    k
}

#[test]
fn clean_store_passes() {
    let store = Store::new();
    let r = store.verify(&VerifyOptions::default());
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.releases_checked, ["r1", "r2"]);
    assert_eq!(r.objects_checked, 3);
    assert_eq!(r.bytes_checked, 6 + 6 + 11);
    assert!(r.repaired.is_empty() && r.unrepairable.is_empty());
}

#[test]
fn corrupt_object_is_reported_with_its_users() {
    let store = Store::new();
    let object = store.object_file("hello\n");
    corrupt(&object);
    let r = store.verify(&VerifyOptions::default());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert_eq!(p.kind, ProblemKind::CorruptObject);
    assert_eq!(p.release, None);
    assert!(
        object.ends_with(&p.path),
        "{} vs {}",
        p.path,
        object.display()
    );
    let users = p.users.as_ref().expect("object problems list their users");
    assert_eq!(users.used_by_total, 2);
    let mut used: Vec<_> = users
        .used_by
        .iter()
        .map(|u| format!("{}:{}", u.release, u.path))
        .collect();
    used.sort();
    assert_eq!(used, ["r1:a.txt", "r2:a.txt"]);
    assert!(!r.failure_summary().is_empty());
}

#[test]
fn missing_release_path_is_reported() {
    let store = Store::new();
    fs::remove_file(store.root().join("releases/r1/sub/b.txt")).expect("rm");
    let r = store.verify(&VerifyOptions::default());
    assert_eq!(
        keys(&r.problems),
        [(
            Some("r1".into()),
            "sub/b.txt".into(),
            ProblemKind::MissingPath
        )]
    );
    assert_eq!(r.problems[0].users, None);
    assert_eq!(r.failure_summary(), "1 problem found");
}

#[test]
fn one_release_only() {
    let store = Store::new();
    fs::remove_file(store.root().join("releases/r1/sub/b.txt")).expect("rm");
    let r = store.verify(&VerifyOptions {
        release: Some("current".into()),
        ..VerifyOptions::default()
    });
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(r.releases_checked, ["r2"]);
    let err = verify(
        &store.dyn_target(),
        &VerifyOptions {
            release: Some("r9".into()),
            ..VerifyOptions::default()
        },
        &NoProgress,
    )
    .expect_err("no such release");
    assert!(matches!(err, EngineError::NoSuchRelease { .. }), "{err}");
}

#[test]
fn repair_restores_objects_and_paths() {
    let store = Store::new();
    let object = store.object_file("hello\n");
    corrupt(&object);
    fs::remove_file(store.root().join("releases/r1/sub/b.txt")).expect("rm");
    fs::remove_file(store.root().join("releases/r2/sub/link")).expect("rm");
    let before = keys(&store.verify(&VerifyOptions::default()).problems);
    assert_eq!(before.len(), 3, "{before:?}");

    let r = store.repair();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(r.unrepairable.is_empty(), "{:?}", r.unrepairable);
    assert_eq!(keys(&r.repaired), before);
    for release in ["r1", "r2"] {
        let dir = store.root().join("releases").join(release);
        assert_eq!(fs::read(dir.join("a.txt")).expect("read"), b"hello\n");
        assert_eq!(fs::read(dir.join("sub/b.txt")).expect("read"), b"world\n");
        let link = fs::read_link(dir.join("sub/link")).expect("readlink");
        assert_eq!(link, Path::new("../a.txt"));
    }
    assert!(store.verify(&VerifyOptions::default()).is_clean());
}

#[test]
fn repair_without_a_source_reports_the_object_unrepairable() {
    let store = Store::new();
    corrupt(&store.object_file("hello\n"));
    let r = store.verify(&VerifyOptions {
        repair: true,
        ..VerifyOptions::default()
    });
    assert_eq!(r.unrepairable.len(), 1, "{:?}", r.unrepairable);
    let u = &r.unrepairable[0];
    assert_eq!(u.kind, ProblemKind::CorruptObject);
    assert!(u.detail.starts_with("not repaired: "), "{}", u.detail);
    assert_eq!(u.users.as_ref().map(|u| u.used_by_total), Some(2));
    assert_eq!(keys(&r.problems), keys(&r.unrepairable));
    assert!(r.failure_summary().contains("1 object not in any source"));
}

#[test]
fn source_without_repair_is_refused() {
    let store = Store::new();
    let err = verify(
        &store.dyn_target(),
        &VerifyOptions {
            sources: vec![store.dir.path().join("src1")],
            ..VerifyOptions::default()
        },
        &NoProgress,
    )
    .expect_err("refused");
    assert!(matches!(err, EngineError::SourceWithoutRepair), "{err}");
}

#[test]
fn each_manifest_is_read_once_per_command() {
    let store = Store::new();
    store.verify(&VerifyOptions::default());
    assert_eq!(
        store.target.take_reads(),
        [("r1".into(), 1), ("r2".into(), 1)]
    );

    // Repair needs every manifest again (object sizes, paths to re-create) and checks
    // once more afterwards: still one read each.
    corrupt(&store.object_file("hello\n"));
    fs::remove_file(store.root().join("releases/r1/sub/b.txt")).expect("rm");
    fs::remove_file(
        store
            .root()
            .join("objects")
            .join(store_object_of(&store, "world\n")),
    )
    .expect("rm");
    let r = store.repair();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(
        store.target.take_reads(),
        [("r1".into(), 1), ("r2".into(), 1)]
    );

    // Repairing one release re-creates the paths of the others that use a replaced
    // object: their manifests are read then, once.
    corrupt(&store.object_file("hello\n"));
    let r = store.verify(&VerifyOptions {
        release: Some("r1".into()),
        repair: true,
        sources: vec![store.dir.path().join("src1")],
        ..VerifyOptions::default()
    });
    assert!(r.is_clean(), "{:?}", r.problems);
    assert_eq!(
        store.target.take_reads(),
        [("r1".into(), 1), ("r2".into(), 1)]
    );
    assert!(store.verify(&VerifyOptions::default()).is_clean());
}

/// The path under `objects/` of the object holding `content`.
fn store_object_of(store: &Store, content: &str) -> PathBuf {
    let objects = store.root().join("objects");
    store
        .object_file(content)
        .strip_prefix(&objects)
        .expect("under objects/")
        .to_owned()
}

#[test]
fn report_serialises_to_the_json_the_cli_prints() {
    let store = Store::new();
    corrupt(&store.object_file("hello\n"));
    fs::remove_file(store.root().join("releases/r1/sub/b.txt")).expect("rm");
    let r = store.verify(&VerifyOptions::default());
    let v = serde_json::to_value(&r).expect("serialise");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes_checked",
            "objects_checked",
            "problems",
            "releases_checked",
            "releases_evicted",
            "repaired",
            "seconds",
            "unrepairable"
        ]
    );
    let object = v["problems"]
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["kind"] == "corrupt-object")
        .expect("corrupt object");
    assert_eq!(object["release"], serde_json::Value::Null);
    assert_eq!(object["used_by_total"], 2);
    assert_eq!(object["used_by"][0]["release"], "r1");
    let path = v["problems"]
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["kind"] == "missing-path")
        .expect("missing path");
    assert_eq!(path["release"], "r1");
    assert_eq!(path["path"], "sub/b.txt");
    assert!(path.get("used_by").is_none() && path.get("used_by_total").is_none());
    let every_kind = [
        ProblemKind::CorruptObject,
        ProblemKind::MissingObject,
        ProblemKind::CorruptManifest,
        ProblemKind::MissingPath,
        ProblemKind::WrongKind,
        ProblemKind::WrongMode,
        ProblemKind::WrongSize,
        ProblemKind::NotLinked,
        ProblemKind::WrongTarget,
        ProblemKind::ExtraPath,
    ];
    for kind in every_kind {
        assert_eq!(serde_json::to_value(kind).expect("kind"), kind.as_str());
    }
}

#[test]
fn an_unreadable_manifest_is_rebuilt_from_the_tree_by_repair() {
    let store = Store::new();
    let name = ReleaseName::parse("r2").expect("name");
    let manifest = store.root().join("manifests/r2.manifest");
    let original = fs::read(&manifest).expect("read");
    let before = relstore_core::Manifest::decode(&original, Some("r2")).expect("decode");
    fs::write(&manifest, b"not a manifest").expect("write");
    // One file no longer linked to its object (a copy in its place): it is found by
    // its content, then linked again.
    let copy = store.root().join("releases/r2/sub/b.txt");
    let content = fs::read(&copy).expect("read");
    fs::remove_file(&copy).expect("remove");
    fs::write(&copy, content).expect("write");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o444)).expect("chmod");

    let err = crate::catalog::read_manifest(store.target.as_ref(), &name).expect_err("corrupt");
    assert!(
        matches!(err, EngineError::ManifestNeedsRebuild { .. }),
        "{err}"
    );
    let r = store.verify(&VerifyOptions {
        repair: true,
        ..VerifyOptions::default()
    });
    assert!(r.is_clean(), "{:?}", r.problems);
    let kinds: Vec<ProblemKind> = keys(&r.repaired).into_iter().map(|k| k.2).collect();
    assert!(kinds.contains(&ProblemKind::CorruptManifest), "{kinds:?}");
    assert!(kinds.contains(&ProblemKind::NotLinked), "{kinds:?}");
    let after = crate::catalog::read_manifest(store.target.as_ref(), &name).expect("rebuilt");
    assert_eq!(after.entries, before.entries);
    // The header was lost too: the current release is placed after the others.
    let catalog = crate::catalog::Catalog::load(store.target.as_ref()).expect("catalog");
    let order: Vec<&str> = catalog.releases.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, ["r1", "r2"]);
}

/// A [`LocalTarget`] that counts how often each manifest is read in full.
struct CountingTarget {
    inner: LocalTarget,
    reads: Mutex<HashMap<String, usize>>,
}

impl CountingTarget {
    /// The reads so far, by release, sorted; and starts counting afresh.
    fn take_reads(&self) -> Vec<(String, usize)> {
        let mut reads: Vec<_> = std::mem::take(&mut *self.reads.lock().expect("lock"))
            .into_iter()
            .collect();
        reads.sort();
        reads
    }
}

impl Target for CountingTarget {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn local_root(&self) -> Option<&Path> {
        self.inner.local_root()
    }
    fn open(&self, create: bool) -> TargetResult<Opened> {
        self.inner.open(create)
    }
    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool> {
        self.inner.create_lock(which, contents)
    }
    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>> {
        self.inner.read_lock(which)
    }
    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool> {
        self.inner.remove_lock(which, expected)
    }
    fn current(&self) -> TargetResult<Option<ReleaseName>> {
        self.inner.current()
    }
    fn list_release_dirs(&self) -> TargetResult<Vec<String>> {
        self.inner.list_release_dirs()
    }
    fn list_manifests(&self) -> TargetResult<Vec<String>> {
        self.inner.list_manifests()
    }
    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>> {
        *self
            .reads
            .lock()
            .expect("lock")
            .entry(name.to_string())
            .or_default() += 1;
        self.inner.read_manifest(name)
    }
    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>> {
        self.inner.read_manifest_prefixes(names)
    }
    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        self.inner.read_staged_manifest(name)
    }
    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()> {
        self.inner.stage_manifest(name, bytes)
    }
    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()> {
        self.inner.commit_manifest(name)
    }
    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>> {
        self.inner.missing_objects(ids)
    }
    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        self.inner.put_objects(uploads, source, progress)
    }
    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats> {
        self.inner.assemble(name, entries, progress)
    }
    fn activate(&self, name: &ReleaseName) -> TargetResult<()> {
        self.inner.activate(name)
    }
    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal> {
        self.inner.remove_release_dir(name)
    }
    fn clear_tmp(&self) -> TargetResult<Removal> {
        self.inner.clear_tmp()
    }
    fn list_objects(&self) -> TargetResult<Vec<StoredObject>> {
        self.inner.list_objects()
    }
    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal> {
        self.inner.remove_objects(objects, progress)
    }
    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        self.inner.hash_objects(objects, progress)
    }
    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>> {
        self.inner.object_inodes(objects)
    }
    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>> {
        self.inner.list_release_tree(name)
    }
    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()> {
        self.inner.relink(name, entries)
    }
    fn hash_release_files(
        &self,
        name: &ReleaseName,
        paths: &[Vec<u8>],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        self.inner.hash_release_files(name, paths, progress)
    }
    fn list_pins(&self) -> TargetResult<Vec<String>> {
        self.inner.list_pins()
    }
    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        self.inner.set_pin(name, pinned)
    }
}
