//! `verify`: re-hashing objects and checking release trees against manifests, and
//! `verify --repair` putting corrupt objects and broken paths right from a source.
//!
//! Damage is done with plain file-system calls, the way a stray process or an
//! operator would do it; expected results come from the harness's independent walk.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util::{
    assert_linked_from_objects, assert_same_tree, blobs, object_rel, one_line_error, releases,
    snapshot, store_fingerprint, Env, Node,
};

/// Runs `relstore verify ARGS --json` whatever its exit status; returns the output and
/// the parsed report.
fn verify(env: &Env, args: &[&str]) -> (Output, Value) {
    let mut a = vec!["verify", env.target.as_str()];
    a.extend_from_slice(args);
    a.push("--json");
    let out = env.run(&a);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify {args:?}: stdout is not one JSON object ({e}): {} / stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

/// `verify ARGS` must succeed with no problem; returns the report.
fn verify_clean(env: &Env, args: &[&str]) -> Value {
    let (out, v) = verify(env, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify {args:?} failed: {} {}",
        v["problems"],
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["problems"], serde_json::json!([]), "{args:?}");
    v
}

/// The (release, path, kind) of each problem in a report list.
fn keys(list: &Value) -> BTreeSet<(Option<String>, String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["release"].as_str().map(str::to_owned),
                p["path"].as_str().unwrap().to_owned(),
                p["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn key(release: Option<&str>, path: &str, kind: &str) -> (Option<String>, String, String) {
    (release.map(str::to_owned), path.to_owned(), kind.to_owned())
}

/// Flips one byte in the middle of the file at `p` in place (same inode, so every
/// hardlink sees it), keeping its mode.
fn flip_byte(p: &Path) {
    let mode = fs::metadata(p).unwrap().permissions().mode();
    fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o200)).unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let at = f.metadata().unwrap().len() / 2;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
    drop(f);
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Non-empty 0644 regular files of a tree with plain UTF-8 names (their escaped form
/// is the name itself), in path order: (path, hash).
fn plain_files(root: &Path) -> Vec<(String, [u8; 32])> {
    snapshot(root)
        .into_iter()
        .filter_map(|(p, n)| match n {
            Node::File { mode, size, hash } if size > 0 && mode == 0o644 => {
                let p = String::from_utf8(p).ok()?;
                (!p.contains('\\')).then_some((p, hash))
            }
            _ => None,
        })
        .collect()
}

/// Every (release, path) of the given releases whose file has this content and mode:
/// the paths that use one object.
fn users(rels: &[(&str, &Path)], hash: &[u8; 32], mode: u32) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (name, src) in rels {
        for (p, n) in snapshot(src) {
            if let Node::File {
                mode: m, hash: h, ..
            } = n
            {
                if &h == hash && m & 0o7555 == mode & 0o7555 {
                    out.insert((name.to_string(), String::from_utf8_lossy(&p).into_owned()));
                }
            }
        }
    }
    out
}

fn used_by(problem: &Value) -> BTreeSet<(String, String)> {
    problem["used_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["release"].as_str().unwrap().to_owned(),
                u["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn find<'a>(list: &'a Value, kind: &str, path: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind && p["path"] == path)
        .unwrap_or_else(|| panic!("no {kind} problem for {path} in {list}"))
}

fn a_clean_store_verifies_clean_before_and_after_prune(env: Env) {
    let srcs = releases(&env, 5, 150, 80);
    let v = verify_clean(&env, &[]);
    assert_eq!(
        v["releases_checked"],
        serde_json::json!(["r1", "r2", "r3", "r4", "r5"])
    );
    assert_eq!(v["objects_checked"], env.object_files().len() as u64);
    let all_bytes: u64 = srcs
        .iter()
        .flat_map(|s| blobs(s))
        .collect::<std::collections::BTreeMap<_, _>>()
        .values()
        .sum();
    assert_eq!(v["bytes_checked"], all_bytes);
    // Human output: a summary line and exit 0.
    let out = env.run(&["verify", &env.target]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("checked {} objects", env.object_files().len()))
            && stdout.contains("and 5 releases: 0 problems"),
        "{stdout}"
    );

    env.json(&["prune", &env.target, "--keep", "2"]);
    let v = verify_clean(&env, &[]);
    assert_eq!(v["releases_checked"], serde_json::json!(["r4", "r5"]));
    assert_eq!(v["releases_evicted"], serde_json::json!(["r1", "r2", "r3"]));
    assert_eq!(v["objects_checked"], env.object_files().len() as u64);
    let v = verify_clean(&env, &["r1"]);
    assert_eq!(v["releases_checked"], serde_json::json!([]));
    assert_eq!(v["releases_evicted"], serde_json::json!(["r1"]));
    let out = env.run(&["verify", &env.target, "r1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("evicted, not checked: r1"));
    // A repair of a clean store changes nothing.
    let before = store_fingerprint(&env.root);
    verify_clean(&env, &["--repair", "--source", srcs[4].to_str().unwrap()]);
    assert_eq!(store_fingerprint(&env.root), before);
}

fn corrupt_object_missing_path_and_replaced_link_are_reported_and_repaired(env: Env) {
    let srcs = releases(&env, 3, 120, 81);
    let rels: Vec<(&str, &Path)> = vec![
        ("r1", srcs[0].as_path()),
        ("r2", srcs[1].as_path()),
        ("r3", srcs[2].as_path()),
    ];
    // A file all three releases share unchanged: its object gets corrupted.
    let f1 = plain_files(&srcs[0]);
    let f3 = plain_files(&srcs[2]);
    let f2 = plain_files(&srcs[1]);
    let (shared, shared_hash) = f2
        .iter()
        .find(|(p, h)| f1.contains(&(p.clone(), *h)) && f3.contains(&(p.clone(), *h)))
        .cloned()
        .expect("a file shared by all releases");
    let obj = object_rel(&shared_hash, 0o644);
    // A file of r2 (another object) is deleted; one of r1 is replaced by a copy.
    let (deleted, _) = f2.iter().find(|(_, h)| *h != shared_hash).cloned().unwrap();
    let (replaced, _) = f1
        .iter()
        .rev()
        .find(|(p, h)| *h != shared_hash && *p != deleted)
        .cloned()
        .unwrap();

    verify_clean(&env, &[]);
    flip_byte(&env.root.join(&obj));
    fs::remove_file(env.root.join("releases/r2").join(&deleted)).unwrap();
    let r1_replaced = env.root.join("releases/r1").join(&replaced);
    fs::remove_file(&r1_replaced).unwrap();
    fs::write(&r1_replaced, "written over by hand\n").unwrap();
    fs::set_permissions(&r1_replaced, fs::Permissions::from_mode(0o644)).unwrap();

    let (out, v) = verify(&env, &[]);
    assert_eq!(out.status.code(), Some(1));
    // SFTP has no inode numbers; over SSH the copy is told from a hardlink by its
    // link count (1), from OpenSSH's long listing.
    let expected: BTreeSet<_> = [
        key(None, &obj, "corrupt-object"),
        key(Some("r2"), &deleted, "missing-path"),
        key(Some("r1"), &replaced, "wrong-size"),
        key(Some("r1"), &replaced, "not-linked"),
    ]
    .into_iter()
    .collect();
    let n = expected.len();
    assert_eq!(keys(&v["problems"]), expected, "{}", v["problems"]);
    let corrupt = find(&v["problems"], "corrupt-object", &obj);
    let expected_users = users(&rels, &shared_hash, 0o644);
    assert!(expected_users.len() >= 3);
    assert!(expected_users.contains(&("r2".to_owned(), shared.clone())));
    assert_eq!(used_by(corrupt), expected_users);
    assert_eq!(corrupt["used_by_total"], expected_users.len() as u64);
    assert!(one_line_error(&out).contains(&format!("{n} problems found")));
    // Human output: one line per problem, by release and path.
    let out = env.run(&["verify", &env.target]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("r2: {deleted}: missing")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("r1: {replaced}: not a hardlink")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "r1: {replaced}: {} bytes, expected",
            "written over by hand\n".len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{obj}: corrupt")), "{stdout}");
    assert!(
        stdout.contains(&format!("and 3 releases: {n} problems")),
        "{stdout}"
    );

    let (out, v) = verify(&env, &["--repair", "--source", srcs[1].to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}",
        v,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(keys(&v["repaired"]), expected);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["unrepairable"], serde_json::json!([]));
    verify_clean(&env, &[]);
    for (i, src) in srcs.iter().enumerate() {
        let rel = env.root.join(format!("releases/r{}", i + 1));
        assert_same_tree(src, &rel);
        assert_linked_from_objects(&env.root, &rel);
    }
    assert_eq!(env.current().as_deref(), Some("r3"));
}

fn repair_without_a_source_names_the_object_and_changes_nothing_else(env: Env) {
    let srcs = releases(&env, 2, 80, 82);
    // Without the local release store, only --source could supply the content.
    fs::remove_dir_all(&env.store).unwrap();
    let rels: Vec<(&str, &Path)> = vec![("r1", srcs[0].as_path()), ("r2", srcs[1].as_path())];
    let (file, hash) = plain_files(&srcs[0]).into_iter().next().unwrap();
    let obj = object_rel(&hash, 0o644);
    flip_byte(&env.root.join(&obj));
    let before = store_fingerprint(&env.root);

    let (out, v) = verify(&env, &["--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("1 problem remains after repair"), "{err}");
    assert!(err.contains("not in any source"), "{err}");
    assert_eq!(
        keys(&v["unrepairable"]),
        [key(None, &obj, "corrupt-object")].into_iter().collect()
    );
    let unrepairable = &v["unrepairable"][0];
    assert!(
        unrepairable["detail"]
            .as_str()
            .unwrap()
            .contains("--source"),
        "{unrepairable}"
    );
    let expected_users = users(&rels, &hash, 0o644);
    assert!(expected_users.contains(&("r1".to_owned(), file.clone())));
    assert_eq!(used_by(unrepairable), expected_users);
    assert_eq!(keys(&v["problems"]), keys(&v["unrepairable"]));
    assert_eq!(v["repaired"], serde_json::json!([]));
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "repair changed the store"
    );

    // With a source that lacks the content, everything else is still repaired: a
    // deleted path (whose object is sound) comes back, the corrupt object stays.
    let other = env.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("unrelated.txt"), "not the content\n").unwrap();
    let (sound, _) = plain_files(&srcs[1])
        .into_iter()
        .find(|(_, h)| *h != hash)
        .unwrap();
    fs::remove_file(env.root.join("releases/r2").join(&sound)).unwrap();
    let (out, v) = verify(&env, &["--repair", "--source", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        keys(&v["repaired"]),
        [key(Some("r2"), &sound, "missing-path")]
            .into_iter()
            .collect()
    );
    assert_eq!(
        keys(&v["problems"]),
        [key(None, &obj, "corrupt-object")].into_iter().collect()
    );
    assert!(
        v["unrepairable"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("other"),
        "{}",
        v["unrepairable"]
    );
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "the restored path differs from the original link, or something else changed"
    );
}

fn verify_of_one_release_checks_only_that_release(env: Env) {
    let srcs = releases(&env, 3, 120, 83);
    // Damage r1 only: a deleted path, and an object no other release uses.
    let b1 = blobs(&srcs[0]);
    let others: BTreeSet<String> = blobs(&srcs[1])
        .into_keys()
        .chain(blobs(&srcs[2]).into_keys())
        .collect();
    let (only_r1, hash) = plain_files(&srcs[0])
        .into_iter()
        .find(|(_, h)| {
            let rel = object_rel(h, 0o644);
            !others.contains(&rel["objects/".len()..].replace('/', ""))
        })
        .expect("a file only r1 has");
    let obj = object_rel(&hash, 0o644);
    flip_byte(&env.root.join(&obj));
    let (deleted, _) = plain_files(&srcs[0])
        .into_iter()
        .find(|(p, _)| *p != only_r1)
        .unwrap();
    fs::remove_file(env.root.join("releases/r1").join(&deleted)).unwrap();

    let v = verify_clean(&env, &["r2"]);
    assert_eq!(v["releases_checked"], serde_json::json!(["r2"]));
    assert_eq!(v["objects_checked"], blobs(&srcs[1]).len() as u64);
    let v = verify_clean(&env, &["current"]);
    assert_eq!(v["releases_checked"], serde_json::json!(["r3"]));

    let (out, v) = verify(&env, &["r1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["releases_checked"], serde_json::json!(["r1"]));
    assert_eq!(v["objects_checked"], b1.len() as u64);
    assert_eq!(
        keys(&v["problems"]),
        [
            key(None, &obj, "corrupt-object"),
            key(Some("r1"), &deleted, "missing-path"),
        ]
        .into_iter()
        .collect()
    );
    assert!(used_by(&v["problems"][0]).iter().all(|(r, _)| r == "r1"));

    let out = env.run(&["verify", &env.target, "r9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("r9"));
}

fn modes_targets_kinds_are_repaired_and_extra_paths_are_left_alone(env: Env) {
    let srcs = releases(&env, 2, 120, 84);
    let r2 = env.root.join("releases/r2");
    let files = plain_files(&srcs[1]);
    // An object's mode changed through one of its links (shared by every link; write
    // bits are not compared, so the change adds execute bits).
    let (chmodded, chmod_hash) = files[0].clone();
    fs::set_permissions(r2.join(&chmodded), fs::Permissions::from_mode(0o755)).unwrap();
    // A file replaced by a directory.
    let (to_dir, _) = files
        .iter()
        .find(|(_, h)| *h != chmod_hash)
        .cloned()
        .unwrap();
    fs::remove_file(r2.join(&to_dir)).unwrap();
    fs::create_dir(r2.join(&to_dir)).unwrap();
    fs::write(r2.join(&to_dir).join("inside"), "x").unwrap();
    // A directory's mode, a symlink's target, an extra file.
    fs::set_permissions(r2.join("assets"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(r2.join("index.htm")).unwrap();
    std::os::unix::fs::symlink("elsewhere.html", r2.join("index.htm")).unwrap();
    fs::write(
        r2.join("assets/uploaded-by-the-web-server.txt"),
        "keep me\n",
    )
    .unwrap();

    let (out, v) = verify(&env, &["r2"]);
    assert_eq!(out.status.code(), Some(1));
    let found = keys(&v["problems"]);
    for k in [
        key(Some("r2"), &chmodded, "wrong-mode"),
        key(Some("r2"), &to_dir, "wrong-kind"),
        key(Some("r2"), "assets", "wrong-mode"),
        key(Some("r2"), "index.htm", "wrong-target"),
        key(
            Some("r2"),
            "assets/uploaded-by-the-web-server.txt",
            "extra-path",
        ),
    ] {
        assert!(found.contains(&k), "{k:?} not in {found:?}");
    }
    assert!(
        !found.iter().any(|(_, p, _)| p.ends_with("/inside")),
        "contents of a wrong-kind path reported: {found:?}"
    );

    let (out, v) = verify(&env, &["--repair", "--source", srcs[1].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the extra path must remain");
    assert_eq!(
        keys(&v["problems"]),
        [key(
            Some("r2"),
            "assets/uploaded-by-the-web-server.txt",
            "extra-path"
        )]
        .into_iter()
        .collect()
    );
    assert!(r2.join("assets/uploaded-by-the-web-server.txt").exists());
    fs::remove_file(r2.join("assets/uploaded-by-the-web-server.txt")).unwrap();
    verify_clean(&env, &[]);
    for (i, src) in srcs.iter().enumerate() {
        let rel = env.root.join(format!("releases/r{}", i + 1));
        assert_same_tree(src, &rel);
        assert_linked_from_objects(&env.root, &rel);
    }
}

fn numbered_copies_count_as_links_and_a_corrupt_copy_is_replaced(env: Env) {
    use std::os::unix::fs::MetadataExt;
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("logo.svg"), "<svg/>").unwrap();
    env.push(&src, &["--release", "r1"]);
    let (blob, _) = blobs(&src).into_iter().next().unwrap();
    let object = env.root.join("objects").join(&blob[..2]).join(&blob[2..]);
    let c = std::ffi::CString::new(object.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    let link_max = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_LINK_MAX) };
    assert!(
        (1000..=1_000_000).contains(&link_max),
        "cannot exercise EMLINK here: the file system allows {link_max} links per inode"
    );
    // Use up the object's links from outside the store, so r2 needs a second copy.
    let hoard = env.path("hoard");
    fs::create_dir(&hoard).unwrap();
    let have = fs::metadata(&object).unwrap().nlink() as i64;
    for i in 0..(link_max - have - 5) {
        fs::hard_link(&object, hoard.join(i.to_string())).unwrap();
    }
    for i in 0..20 {
        fs::write(src.join(format!("logo-{i}.svg")), "<svg/>").unwrap();
    }
    let r = env.push(&src, &["--release", "r2"]);
    assert!(r["object_copies"].as_u64().unwrap() >= 1, "{r}");
    let copy = PathBuf::from(format!("{}.1", object.display()));
    assert!(copy.exists());
    let v = verify_clean(&env, &[]);
    assert_eq!(v["objects_checked"], 2, "the copy is an object file too");

    // Corrupting the copy corrupts every path linked to it.
    flip_byte(&copy);
    let copy_rel = format!("{}.1", object_rel_of(&env, &object));
    let (out, v) = verify(&env, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        keys(&v["problems"]),
        [key(None, &copy_rel, "corrupt-object")]
            .into_iter()
            .collect()
    );
    let (out, v) = verify(&env, &["--repair", "--source", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{v}");
    fs::remove_dir_all(&hoard).unwrap();
    verify_clean(&env, &[]);
    assert_same_tree(&src, &env.root.join("releases/r2"));
    assert_linked_from_objects(&env.root, &env.root.join("releases/r2"));
}

/// `objects/ab/cdef…+0444` of an object file path under the store root.
/// A truncated manifest of the current release: every command that needs it stops with
/// one line naming the file and the way out, and `verify --repair` rebuilds it from
/// the release's tree, after which the store is whole and usable again.
fn a_truncated_current_manifest_is_rebuilt_by_verify_repair(env: Env) {
    let srcs = releases(&env, 2, 80, 95);
    let manifest = env.root.join("manifests/r2.manifest");
    let original = fs::read(&manifest).unwrap();
    // Cut inside the header: not even the release's time can be read.
    fs::write(&manifest, &original[..20]).unwrap();
    let hint = format!(
        "run `relstore verify {} --repair` to rebuild it",
        env.target
    );
    let src = srcs[1].to_str().unwrap();
    for args in [
        vec!["push", src, &env.target],
        vec!["rollback", &env.target],
        vec!["prune", &env.target, "--keep", "1"],
        vec![
            "diff",
            &format!("{}@r1", env.target),
            &format!("{}@current", env.target),
        ],
    ] {
        let before = store_fingerprint(&env.root);
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let line = one_line_error(&out);
        assert!(
            line.contains("manifests/r2.manifest") && line.contains(&hint),
            "{args:?}: {line}"
        );
        assert_eq!(
            store_fingerprint(&env.root),
            before,
            "{args:?} changed the store"
        );
    }

    let (out, v) = verify(&env, &["--repair"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{v} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        keys(&v["repaired"]),
        [key(Some("r2"), "manifests/r2.manifest", "corrupt-manifest")]
            .into_iter()
            .collect()
    );
    verify_clean(&env, &[]);
    // The rebuilt manifest is the tree: same order, same files, and a push of the
    // same source changes nothing.
    let l = env.json(&["releases", &env.target]);
    let names: Vec<&str> = l["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(l["releases"][1]["problem"], Value::Null, "{l}");
    let r = env.push(&srcs[1], &[]);
    assert_eq!(r["unchanged"], true, "{r}");
    let d = env.json(&[
        "diff",
        &format!("{}@r2", env.target),
        srcs[1].to_str().unwrap(),
    ]);
    assert_eq!(d["added"], serde_json::json!([]), "{d}");
    assert_eq!(d["modified"], serde_json::json!([]), "{d}");
    env.json(&["rollback", &env.target]);
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&srcs[1], &env.root.join("releases/r2"));
}

fn object_rel_of(env: &Env, object: &Path) -> String {
    object
        .strip_prefix(&env.root)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

conformance!(
    a_clean_store_verifies_clean_before_and_after_prune,
    corrupt_object_missing_path_and_replaced_link_are_reported_and_repaired,
    repair_without_a_source_names_the_object_and_changes_nothing_else,
    verify_of_one_release_checks_only_that_release,
    modes_targets_kinds_are_repaired_and_extra_paths_are_left_alone,
    numbered_copies_count_as_links_and_a_corrupt_copy_is_replaced,
    a_truncated_current_manifest_is_rebuilt_by_verify_repair,
);
