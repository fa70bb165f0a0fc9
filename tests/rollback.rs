//! Releases listing and rollback.

use crate::util::{assert_same_tree, Env};

fn rollback_flips_current_back_and_forth(env: Env) {
    let v1 = env.site("v1", 300, 10);
    let v2 = env.next_release(&v1, "v2", 0.05, 11);
    env.push(&v1, &["--release", "r1"]);
    env.push(&v2, &["--release", "r2"]);
    assert_eq!(env.current().as_deref(), Some("r2"));

    let r = env.json(&["rollback", &env.target]);
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("r2"), Some("r1"))
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&v1, &env.root.join("current"));

    let r = env.json(&["rollback", &env.target, "r2"]);
    assert_eq!(r["to"], "r2");
    assert_same_tree(&v2, &env.root.join("current"));
    let r = env.json(&["rollback", &env.target, "r1"]);
    assert_eq!(r["to"], "r1");
    assert_same_tree(&v1, &env.root.join("current"));

    // No release before r1.
    let out = env.run(&["rollback", &env.target]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.current().as_deref(), Some("r1"));
    let out = env.run(&["rollback", &env.target, "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

fn releases_lists_names_created_files_bytes_and_marks_current(env: Env) {
    let v1 = env.site("v1", 120, 12);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.1, 13);
    env.push(&v2, &["--release", "r2"]);
    env.json(&["rollback", &env.target, "r1"]);
    let l = env.json(&["releases", &env.target]);
    assert_eq!(l["current"], "r1");
    let rs = l["releases"].as_array().unwrap();
    let names: Vec<&str> = rs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["r1", "r2"], "oldest first");
    assert_eq!(rs[0]["current"], true);
    assert_eq!(rs[1]["current"], false);
    assert_eq!(rs[0]["files"], 120);
    assert!(rs[1]["bytes"].as_u64().unwrap() > 0);
    assert!(rs[0]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rs[0]["state"], "present");

    let human = env.run(&["releases", &env.target]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.lines().any(|l| l.starts_with("* r1")), "{text}");
}

fn rollback_reassembles_an_evicted_release_whose_objects_are_still_stored(env: Env) {
    let v1 = env.site("v1", 100, 14);
    let v2 = env.next_release(&v1, "v2", 0.1, 15);
    env.push(&v1, &["--release", "r1"]);
    env.push(&v2, &["--release", "r2"]);
    // Evict r1's directory by hand (prune does this later); its manifest stays.
    let dir = env.root.join("releases/r1");
    std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&dir)
        .status()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let l = env.json(&["releases", &env.target]);
    assert_eq!(l["releases"][0]["state"], "evicted");
    let r = env.json(&["rollback", &env.target, "r1"]);
    assert_eq!(r["reassembled"], true);
    assert_same_tree(&v1, &env.root.join("current"));
}

conformance!(
    rollback_flips_current_back_and_forth,
    releases_lists_names_created_files_bytes_and_marks_current,
    rollback_reassembles_an_evicted_release_whose_objects_are_still_stored,
);
