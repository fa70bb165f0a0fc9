//! Pushing: tree equality, upload accounting, the stat cache, unchanged pushes.

use std::collections::BTreeSet;

use relstore_fixtures::touch_all;

use crate::util::{assert_linked_from_objects, assert_same_tree, blobs, Env};

fn first_push_makes_current_equal_the_source_and_links_every_file(env: Env) {
    let src = env.site("src", 400, 1);
    let r = env.push(&src, &["--release", "r1"]);
    assert_eq!(r["release"], "r1");
    assert_eq!(r["unchanged"], false);
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&src, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("releases/r1"));

    let expected = blobs(&src);
    assert_eq!(r["objects_uploaded"], expected.len() as u64);
    assert_eq!(r["bytes_uploaded"], expected.values().sum::<u64>());
    assert_eq!(r["files_total"], 400);
    assert_eq!(r["files_hashed"], 400);
    assert_eq!(r["objects_reused"], 0);
    let stored: BTreeSet<String> = env.object_files();
    assert_eq!(stored, expected.keys().cloned().collect::<BTreeSet<_>>());
    for key in ["seconds", "bytes_total"] {
        assert!(r[key].is_number(), "{key} missing in {r}");
    }
    for phase in ["scan", "hash", "compare", "upload", "assemble", "swap"] {
        assert!(
            r["phases"][phase].is_number(),
            "phase {phase} missing in {r}"
        );
    }
}

fn unchanged_tree_reads_no_file_and_creates_no_release(env: Env) {
    let src = env.site("src", 300, 2);
    // Files written within the clock tick of the first scan are (correctly) not
    // trusted by the stat cache; make sure the tree is older than that.
    std::thread::sleep(std::time::Duration::from_millis(30));
    env.push(&src, &["--release", "r1"]);
    let r = env.push(&src, &[]);
    assert_eq!(r["unchanged"], true, "{r}");
    assert_eq!(r["files_hashed"], 0);
    assert_eq!(r["objects_uploaded"], 0);
    assert_eq!(r["release"], "r1");
    let rel = env.json(&["releases", &env.target]);
    assert_eq!(rel["releases"].as_array().unwrap().len(), 1);

    let forced = env.push(&src, &["--force", "--release", "r2"]);
    assert_eq!(forced["unchanged"], false);
    assert_eq!(forced["objects_uploaded"], 0);
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&src, &env.root.join("current"));
}

fn ci_rebuild_with_new_mtimes_stores_nothing_twice(env: Env) {
    let src = env.site("src", 300, 3);
    env.push(&src, &["--release", "r1"]);
    let before = env.object_files();
    touch_all(&src, 3600).unwrap();
    let r = env.push(&src, &[]);
    assert_eq!(r["unchanged"], true, "same content is the same tree: {r}");
    assert_eq!(r["files_hashed"], 300, "new mtimes must be re-hashed");
    assert_eq!(r["objects_uploaded"], 0);

    touch_all(&src, 7200).unwrap();
    let r = env.push(&src, &["--force", "--release", "r2"]);
    assert_eq!(r["objects_uploaded"], 0);
    assert_eq!(r["bytes_uploaded"], 0);
    assert_eq!(env.object_files(), before, "an object was stored twice");
    assert_same_tree(&src, &env.root.join("current"));
}

fn one_percent_change_uploads_exactly_the_new_distinct_blobs(env: Env) {
    let v1 = env.site("v1", 2000, 4);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.01, 40);
    let old = blobs(&v1);
    let new = blobs(&v2);
    let fresh: Vec<(&String, &u64)> = new.iter().filter(|(k, _)| !old.contains_key(*k)).collect();
    assert!(!fresh.is_empty(), "the mutator changed nothing");
    let r = env.push(&v2, &["--release", "r2"]);
    assert_eq!(r["objects_uploaded"], fresh.len() as u64, "{r}");
    assert_eq!(
        r["bytes_uploaded"],
        fresh.iter().map(|(_, s)| **s).sum::<u64>()
    );
    assert_eq!(r["objects_reused"], (new.len() - fresh.len()) as u64);
    assert_same_tree(&v2, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("releases/r2"));
    // r1 is untouched by the push of r2.
    assert_same_tree(&v1, &env.root.join("releases/r1"));
    let all: BTreeSet<String> = old.keys().chain(new.keys()).cloned().collect();
    assert_eq!(env.object_files(), all);
}

fn private_and_executable_modes_survive_and_objects_are_read_only(env: Env) {
    use std::os::unix::fs::PermissionsExt;
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for (name, mode) in [
        ("secret", 0o600),
        ("run.sh", 0o755),
        ("page", 0o644),
        ("same", 0o755),
    ] {
        let p = src.join("d").join(name);
        std::fs::write(
            &p,
            if name == "same" {
                "page".as_bytes()
            } else {
                name.as_bytes()
            },
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(src.join("d/page"), "page").unwrap();
    let r = env.push(&src, &["--release", "r1"]);
    assert_eq!(
        r["objects_uploaded"], 4,
        "equal content with two modes is two objects"
    );
    let mode = |p: &str| {
        std::fs::metadata(env.root.join("current").join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("d/secret"), 0o400);
    assert_eq!(mode("d/run.sh"), 0o555);
    assert_eq!(mode("d/page"), 0o444);
    assert_eq!(mode("d/same"), 0o555);
}

fn default_release_names_are_timestamps_and_never_collide(env: Env) {
    let src = env.site("src", 50, 5);
    let a = env.push(&src, &[]);
    let b = env.push(&src, &["--force"]);
    let (a, b) = (
        a["release"].as_str().unwrap(),
        b["release"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(a.len() >= 16 && a.ends_with('Z') || a.contains("Z-"), "{a}");
    assert!(b > a, "names sort in push order: {a} {b}");
}

conformance!(
    first_push_makes_current_equal_the_source_and_links_every_file,
    unchanged_tree_reads_no_file_and_creates_no_release,
    ci_rebuild_with_new_mtimes_stores_nothing_twice,
    one_percent_change_uploads_exactly_the_new_distinct_blobs,
    private_and_executable_modes_survive_and_objects_are_read_only,
    default_release_names_are_timestamps_and_never_collide,
);
