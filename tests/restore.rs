//! The local release store: push writes every release's blobs through to it, so an
//! evicted release comes back (uploading exactly what the target lost) and a corrupt
//! object is repaired without the source tree; `--source` fills in without it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{
    assert_linked_from_objects, assert_same_tree, blobs, object_rel, one_line_error, releases,
    snapshot, store_fingerprint, Env, Node,
};

/// Objects of `src` that are no longer under the target's objects/, with total size:
/// what a rebuild of its release must upload (computed from the files themselves).
fn lost_objects(env: &Env, src: &Path) -> (u64, u64) {
    let stored = env.object_files();
    let lost: Vec<u64> = blobs(src)
        .into_iter()
        .filter(|(id, _)| !stored.contains(id))
        .map(|(_, size)| size)
        .collect();
    (lost.len() as u64, lost.iter().sum())
}

fn rollback_to_a_pruned_release_uploads_exactly_its_lost_blobs_from_the_local_store(env: Env) {
    let srcs = releases(&env, 6, 300, 91);
    let r = env.json(&["prune", &env.target, "--keep", "2"]);
    assert_eq!(r["evicted"], serde_json::json!(["r1", "r2", "r3", "r4"]));
    let (lost, lost_bytes) = lost_objects(&env, &srcs[0]);
    assert!(lost > 10, "the test needs r1 objects that prune removed");

    // The sources of the old releases are gone: only the local store has r1's content.
    let kept = env.path("kept-v1");
    fs::rename(&srcs[0], &kept).unwrap();
    let r = env.json(&["rollback", &env.target, "r1"]);
    assert_eq!(r["reassembled"], true);
    assert_eq!(r["objects_uploaded"], lost, "{r}");
    assert_eq!(r["bytes_uploaded"], lost_bytes, "{r}");
    assert!(
        r["uploaded_from"][0]
            .as_str()
            .unwrap()
            .starts_with("local release store"),
        "{r}"
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&kept, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("releases/r1"));
    let v = env.json(&["verify", &env.target]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");

    // Human output says what was uploaded and from where.
    env.json(&["prune", &env.target, "--keep", "1"]);
    env.json(&["rollback", &env.target, "r6"]);
    env.json(&["prune", &env.target, "--keep", "1"]);
    let out = env.run(&["rollback", &env.target, "r1"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("current: r6 -> r1 (re-assembled)"),
        "{stdout}"
    );
    assert!(stdout.contains("from local release store"), "{stdout}");
}

fn rollback_without_store_or_source_fails_naming_paths_and_changes_nothing(env: Env) {
    let srcs = releases(&env, 2, 150, 92);
    env.json(&["prune", &env.target, "--keep", "1"]);
    fs::remove_dir_all(&env.store).unwrap();
    let before = store_fingerprint(&env.root);

    let out = env.run(&["rollback", &env.target, "r1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("cannot rebuild evicted release r1"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(
        err.contains("no local release store and no --source"),
        "{err}"
    );
    // Paths of r1 whose content the target lost are named, and no other path.
    let stored = env.object_files();
    let (lost_paths, kept_paths): (Vec<_>, Vec<_>) = snapshot(&srcs[0])
        .into_iter()
        .filter_map(|(path, node)| match node {
            Node::File { mode, size, hash } if size > 0 => {
                let id = object_rel(&hash, mode)["objects/".len()..].replace('/', "");
                // Names that are not UTF-8 are shown escaped; the others suffice here.
                Some((String::from_utf8(path).ok()?, stored.contains(&id)))
            }
            _ => None,
        })
        .partition(|(_, present)| !present);
    let lost_paths: Vec<String> = lost_paths.into_iter().map(|(p, _)| p).collect();
    let kept_paths: Vec<String> = kept_paths.into_iter().map(|(p, _)| p).collect();
    assert!(
        lost_paths.iter().any(|p| err.contains(&format!(" {p}"))),
        "no lost path named: {err}"
    );
    assert!(
        !kept_paths.iter().any(|p| err.contains(&format!(" {p},"))),
        "a present path named: {err}"
    );
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "a failed rollback changed the target"
    );
    assert!(
        !env.store.exists(),
        "a failed rollback created the local store"
    );

    // A --source directory whose files match fills in; a non-matching one does not.
    let decoy = env.path("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(decoy.join("index.html"), "something else\n").unwrap();
    let out = env.run(&[
        "rollback",
        &env.target,
        "r1",
        "--source",
        decoy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_line_error(&out).contains("not in --source"),
        "{}",
        one_line_error(&out)
    );
    assert_eq!(store_fingerprint(&env.root), before);

    let (lost, lost_bytes) = lost_objects(&env, &srcs[0]);
    let r = env.json(&[
        "rollback",
        &env.target,
        "r1",
        "--source",
        srcs[0].to_str().unwrap(),
    ]);
    assert_eq!(r["objects_uploaded"], lost);
    assert_eq!(r["bytes_uploaded"], lost_bytes);
    assert_same_tree(&srcs[0], &env.root.join("current"));
}

/// Relative paths of every file under `root` whose name is UTF-8.
fn walk_names(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| Some(e.path().strip_prefix(root).unwrap().to_str()?.to_owned()))
        .collect()
}

fn verify_repair_takes_content_from_the_local_store(env: Env) {
    let srcs = releases(&env, 2, 100, 93);
    // The sources are gone; flip a byte in an object r2 uses.
    let victim = walk_names(&srcs[1])
        .into_iter()
        .find(|p| fs::metadata(srcs[1].join(p)).unwrap().len() > 0)
        .unwrap();
    let ino = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(env.root.join("releases/r2").join(&victim))
            .unwrap()
            .ino()
    };
    let object = find_object_by_inode(&env.root.join("objects"), ino);
    let mut bytes = fs::read(&object).unwrap();
    bytes[0] ^= 0x01;
    let mut perm = fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&object, perm.clone()).unwrap();
    fs::write(&object, &bytes).unwrap();
    let kept = env.path("kept-v2");
    fs::rename(&srcs[1], &kept).unwrap();

    let out = env.run(&["verify", &env.target, "--repair", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["repaired"].as_array().unwrap().is_empty(), "{v}");
    let again = env.json(&["verify", &env.target]);
    assert_eq!(again["problems"], serde_json::json!([]));
    assert_same_tree(&kept, &env.root.join("current"));
}

fn find_object_by_inode(objects: &Path, ino: u64) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(objects)
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file() && e.metadata().unwrap().ino() == ino)
        .map(|e| e.into_path())
        .expect("object of the file")
}

fn push_writes_through_unless_turned_off_and_store_prune_forgets_old_releases(env: Env) {
    let v1 = env.site("v1", 120, 94);
    let r = env.push(&v1, &["--release", "r1", "--no-local-store"]);
    assert_eq!(r["store"], serde_json::Value::Null);
    assert!(!env.store.exists(), "--no-local-store wrote the store");

    let v2 = env.next_release(&v1, "v2", 0.2, 95);
    let r = env.push(&v2, &["--release", "r2"]);
    let distinct: BTreeSet<String> = blobs(&v2)
        .into_keys()
        .map(|id| id[..64].to_owned())
        .collect();
    assert_eq!(r["store"]["blobs_added"], distinct.len() as u64, "{r}");
    assert_eq!(r["store"]["error"], serde_json::Value::Null);
    let info = env.json(&["store", "info"]);
    assert_eq!(info["blobs"], distinct.len() as u64);
    assert!(info["bytes"].as_u64().unwrap() > 0);

    let v3 = env.next_release(&v2, "v3", 0.2, 96);
    let r = env.push(&v3, &["--release", "r3"]);
    let new: BTreeSet<String> = blobs(&v3)
        .into_keys()
        .map(|id| id[..64].to_owned())
        .filter(|h| !distinct.contains(h))
        .collect();
    assert_eq!(r["store"]["blobs_added"], new.len() as u64);

    // Keep one release per target: r2's blobs that r3 does not share go.
    let dry = env.json(&["store", "prune", "--keep", "1", "--dry-run"]);
    let pruned = env.json(&["store", "prune", "--keep", "1"]);
    assert_eq!(dry["blobs_removed"], pruned["blobs_removed"]);
    let r3_blobs: BTreeSet<String> = blobs(&v3)
        .into_keys()
        .map(|id| id[..64].to_owned())
        .collect();
    assert_eq!(pruned["blobs_kept"], r3_blobs.len() as u64);
    assert_eq!(
        pruned["blobs_removed"],
        distinct.difference(&r3_blobs).count() as u64
    );
}

conformance!(
    rollback_to_a_pruned_release_uploads_exactly_its_lost_blobs_from_the_local_store,
    rollback_without_store_or_source_fails_naming_paths_and_changes_nothing,
    verify_repair_takes_content_from_the_local_store,
    push_writes_through_unless_turned_off_and_store_prune_forgets_old_releases,
);
