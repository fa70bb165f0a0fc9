//! Retention: prune evicts old release directories and exactly the objects only they
//! used; manifests stay; pins, --keep, dry-run plans, kills and undeletable files.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use crate::util::{assert_same_tree, blobs, releases, Env};

fn union_blobs(srcs: &[&PathBuf]) -> BTreeSet<String> {
    srcs.iter().flat_map(|s| blobs(s).into_keys()).collect()
}

fn present(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn prune_keeps_newest_and_removes_exactly_the_objects_only_evicted_releases_used(env: Env) {
    let srcs = releases(&env, 6, 300, 70);
    let plan = env.json(&["prune", &env.target, "--keep", "2", "--dry-run"]);
    assert_eq!(plan["applied"], false);
    assert_eq!(present(&env).len(), 6, "dry-run changed something");
    let r = env.json(&["prune", &env.target, "--keep", "2"]);
    assert_eq!(r["evicted"], serde_json::json!(["r1", "r2", "r3", "r4"]));
    assert_eq!(r["evicted"], plan["evicted"], "plan differs from the run");
    assert_eq!(r["objects_removed"], plan["objects_removed"]);
    assert_eq!(r["bytes_freed"], plan["bytes_freed"]);
    assert_eq!(present(&env), ["r5", "r6"]);
    let expected = union_blobs(&[&srcs[4], &srcs[5]]);
    assert_eq!(env.object_files(), expected, "wrong objects left");
    let gone = union_blobs(&srcs.iter().collect::<Vec<_>>()).len() - expected.len();
    assert_eq!(r["objects_removed"], gone as u64);
    for i in 1..=6 {
        assert!(env.root.join(format!("manifests/r{i}.manifest")).exists());
    }
    assert_same_tree(&srcs[4], &env.root.join("releases/r5"));
    assert_same_tree(&srcs[5], &env.root.join("current"));
    let l = env.json(&["releases", &env.target]);
    let states: Vec<&str> = l["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["evicted", "evicted", "evicted", "evicted", "present", "present"]
    );
}

fn pinned_current_and_newest_releases_are_never_evicted(env: Env) {
    let srcs = releases(&env, 5, 100, 71);
    env.json(&["pin", &env.target, "r2"]);
    env.json(&["rollback", &env.target, "r3"]);
    env.json(&["prune", &env.target, "--keep", "0"]);
    assert_eq!(present(&env), ["r2", "r3", "r5"]);
    assert_same_tree(&srcs[1], &env.root.join("releases/r2"));
    let l = env.json(&["releases", &env.target]);
    assert_eq!(l["releases"][1]["pinned"], true);
    env.json(&["unpin", &env.target, "r2"]);
    env.json(&["prune", &env.target, "--keep", "0"]);
    assert_eq!(present(&env), ["r3", "r5"]);
    let out = env.run(&["pin", &env.target, "r9"]);
    assert_eq!(out.status.code(), Some(1));
}

fn push_keep_prunes_after_the_swap(env: Env) {
    let v1 = env.site("v1", 100, 72);
    env.push(&v1, &["--release", "r1", "--keep", "1"]);
    let v2 = env.next_release(&v1, "v2", 0.2, 73);
    let r = env.push(&v2, &["--release", "r2", "--keep", "1"]);
    assert_eq!(r["pruned"]["evicted"], serde_json::json!(["r1"]));
    assert_eq!(present(&env), ["r2"]);
    assert_eq!(env.object_files(), union_blobs(&[&v2]));
}

fn a_failed_push_never_takes_a_keep_slot(env: Env) {
    let srcs = releases(&env, 3, 100, 74);
    let v4 = env.next_release(&srcs[2], "v4", 0.1, 75);
    let out = env
        .cmd()
        .args(["push", v4.to_str().unwrap(), &env.target, "--release", "r4"])
        .env("RELSTORE_KILL_AT", "push.assembled")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    std::fs::write(v4.join("locked.html"), "x").unwrap();
    env.json(&["prune", &env.target, "--keep", "2"]);
    assert_eq!(
        present(&env),
        ["r2", "r3"],
        "the killed push counted as a release"
    );
    assert_same_tree(&srcs[2], &env.root.join("current"));
}

fn sigkill_during_prune_keeps_every_remaining_release_whole(probe: Env) {
    // Kill points are placed by how many objects the prune removes (from its plan).
    releases(&probe, 5, 150, 76);
    let n = probe.json(&["prune", &probe.target, "--keep", "1", "--dry-run"])["objects_removed"]
        .as_u64()
        .unwrap();
    assert!(n >= 20, "too few objects to prune: {n}");
    let mut points: Vec<String> = (1..=4).map(|i| format!("prune.evicted:{i}")).collect();
    points.extend([1, n / 4, n / 2, 3 * n / 4, n - 1, n].map(|k| format!("gc.removed:{k}")));
    for point in &points {
        let env = probe.sibling();
        let srcs = releases(&env, 5, 150, 76);
        let out = env
            .cmd()
            .args(["prune", &env.target, "--keep", "1"])
            .env("RELSTORE_KILL_AT", point)
            .output()
            .unwrap();
        assert!(env.killed(&out), "{point}: not killed ({})", out.status);
        for (i, src) in srcs.iter().enumerate() {
            let dir = env.root.join(format!("releases/r{}", i + 1));
            if dir.exists() {
                assert_same_tree(src, &dir);
            }
        }
        assert_same_tree(&srcs[4], &env.root.join("current"));
        env.json(&["prune", &env.target, "--keep", "1"]);
        assert_eq!(present(&env), ["r5"], "{point}");
        assert_eq!(env.object_files(), union_blobs(&[&srcs[4]]), "{point}");
    }
}

fn undeletable_files_are_reported_by_path_and_the_rest_is_pruned(env: Env) {
    if std::process::Command::new("chattr")
        .arg("--help")
        .output()
        .is_err()
    {
        panic!("chattr (e2fsprogs) is needed to make a file undeletable for this test");
    }
    let srcs = releases(&env, 3, 60, 77);
    let stuck = env.root.join("releases/r1/index.html");
    let st = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "chattr +i failed (file system without immutable flag?)"
    );
    let out = env.run(&["prune", &env.target, "--keep", "1"]);
    // The flag is on the inode: clearing it through whichever path is left (in tmp/
    // or releases/) also frees the object, so the temp dir can be removed.
    let _ = std::process::Command::new("chattr")
        .args(["-R", "-i"])
        .arg(&env.root)
        .status();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("index.html"), "{stderr}");
    assert_eq!(present(&env), ["r3"]);
    assert_same_tree(&srcs[2], &env.root.join("current"));
}

/// Numbered copies of an object (`…+0444.1`, made when the file system caps the links
/// of copy 0; made by hand here, as the assembler would) that no remaining release
/// links are deleted by prune; a copy a remaining release links stays, and so does
/// copy 0 of an object in use. Local target only: SFTP has no inode numbers, so over
/// SFTP a copy still linked cannot be told from one that is not, and copies of objects
/// in use are kept.
#[test]
fn unreferenced_emlink_copies_are_pruned() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::local();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("logo.svg"), "<svg/>").unwrap();
    std::fs::write(src.join("a.html"), "a").unwrap();
    env.push(&src, &["--release", "r1"]);
    let (logo_key, _) = blobs(&src)
        .into_iter()
        .find(|(_, size)| *size == "<svg/>".len() as u64)
        .unwrap();
    let object = env
        .root
        .join("objects")
        .join(&logo_key[..2])
        .join(&logo_key[2..]);
    let copy = |n: u32| PathBuf::from(format!("{}.{n}", object.display()));
    let link_to_copy = |release: &str, n: u32| {
        std::fs::copy(&object, copy(n)).unwrap();
        std::fs::set_permissions(copy(n), std::fs::Permissions::from_mode(0o444)).unwrap();
        let p = env.root.join("releases").join(release).join("logo.svg");
        std::fs::remove_file(&p).unwrap();
        std::fs::hard_link(copy(n), &p).unwrap();
    };
    link_to_copy("r1", 1);
    std::fs::write(src.join("b.html"), "b").unwrap();
    env.push(&src, &["--release", "r2"]);
    link_to_copy("r2", 2);

    let plan = env.json(&["prune", &env.target, "--keep", "1", "--dry-run"]);
    let r = env.json(&["prune", &env.target, "--keep", "1"]);
    assert_eq!(r["evicted"], serde_json::json!(["r1"]));
    assert_eq!(r["objects_removed"], plan["objects_removed"]);
    assert_eq!(r["objects_removed"], 1, "{r}");
    assert!(!copy(1).exists(), "the copy only r1 linked is still there");
    assert!(copy(2).exists(), "the copy r2 links was deleted");
    assert!(object.exists(), "copy 0 of an object in use was deleted");
    let v = env.json(&["verify", &env.target]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_same_tree(&src, &env.root.join("current"));
}

conformance!(
    prune_keeps_newest_and_removes_exactly_the_objects_only_evicted_releases_used,
    pinned_current_and_newest_releases_are_never_evicted,
    push_keep_prunes_after_the_swap,
    a_failed_push_never_takes_a_keep_slot,
    undeletable_files_are_reported_by_path_and_the_rest_is_pruned,
    sigkill_during_prune_keeps_every_remaining_release_whole,
);
