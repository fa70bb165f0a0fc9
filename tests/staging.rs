//! Staged releases: `push --stage-only` points `next` at an assembled release that is
//! not current; `activate` swaps exactly it in; prune, rollback and recovery leave it
//! alone while it is staged.

use std::fs;
use std::path::Path;

use crate::util::{assert_same_tree, one_line_error, Env};

fn next_of(env: &Env) -> Option<String> {
    let t = fs::read_link(env.root.join("next")).ok()?;
    Some(t.to_str()?.strip_prefix("releases/")?.to_owned())
}

fn stage_only_serves_next_and_activate_swaps_exactly_it(env: Env) {
    let v1 = env.site("v1", 60, 20);
    let v2 = env.next_release(&v1, "v2", 0.2, 21);
    env.push(&v1, &["--release", "r1"]);
    let marker = env.path("activated.txt");
    let r = env.push(
        &v2,
        &[
            "--release",
            "r2",
            "--stage-only",
            "--after-activate",
            &format!("touch '{}'", marker.display()),
        ],
    );
    assert_eq!(r["staged"], true);
    assert!(
        r["hooks"].as_array().unwrap().is_empty(),
        "hooks run at activation"
    );
    assert!(!marker.exists());
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(next_of(&env).as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("next"));
    assert_same_tree(&v1, &env.root.join("current"));

    let l = env.json(&["releases", &env.target]);
    assert_eq!(
        (l["current"].as_str(), l["next"].as_str()),
        (Some("r1"), Some("r2"))
    );
    let human = env.run(&["releases", &env.target]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("> r2") && l.contains("staged")),
        "{text}"
    );

    // A mutating command in between (its recovery) keeps the staged release.
    env.json(&["prune", &env.target, "--keep", "1"]);
    assert!(env.root.join("releases/r2").is_dir());

    let before = env.path("before.txt");
    let a = env.json(&[
        "activate",
        &env.target,
        "--before-activate",
        &format!("pwd -P > '{}'", before.display()),
        "--after-activate",
        &format!("touch '{}'", marker.display()),
    ]);
    assert_eq!(a["release"], "r2");
    assert_eq!(a["previous"], "r1");
    assert_eq!(a["activated"], true);
    assert_eq!(a["hooks"].as_array().unwrap().len(), 2);
    assert!(marker.exists());
    let root = fs::canonicalize(&env.root).unwrap();
    assert_eq!(
        fs::read_to_string(&before).unwrap().trim(),
        root.join("releases/r2").to_str().unwrap()
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("current"));
    assert!(fs::symlink_metadata(env.root.join("next")).is_err());

    // Ordered by activation: r2 is the newest, and rolling back goes to r1.
    let l = env.json(&["releases", &env.target]);
    let names: Vec<&str> = l["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"r2"));
    assert_eq!(l["releases"][names.len() - 1]["staged"], false);
    let out = env.run(&["activate", &env.target]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("no staged release"));
}

fn a_staged_release_takes_no_keep_slot_and_is_never_the_default_rollback(env: Env) {
    let v1 = env.site("v1", 30, 22);
    let v2 = env.next_release(&v1, "v2", 0.2, 23);
    let v3 = env.next_release(&v2, "v3", 0.2, 24);
    env.push(&v1, &["--release", "r1"]);
    env.push(&v2, &["--release", "r2", "--stage-only"]);
    env.push(&v3, &["--release", "r3"]);
    assert_eq!(env.current().as_deref(), Some("r3"));
    assert_eq!(next_of(&env).as_deref(), Some("r2"));

    // --keep 1: r3 (current) takes the slot; r2 is staged: kept, no slot; r1 goes.
    let p = env.json(&["prune", &env.target, "--keep", "1"]);
    assert_eq!(p["evicted"], serde_json::json!(["r1"]), "{p}");
    assert!(env.root.join("releases/r2").is_dir());
    assert_same_tree(&v2, &env.root.join("next"));

    // The release before r3 is r1 (rebuilt), not the never-live r2.
    let r = env.json(&["rollback", &env.target]);
    assert_eq!(r["to"], "r1");
    assert_same_tree(&v1, &env.root.join("current"));

    // Activating a named release that is not `next` leaves `next` alone.
    let a = env.json(&["activate", &env.target, "r3"]);
    assert_eq!(a["activated"], true);
    assert_eq!(next_of(&env).as_deref(), Some("r2"));
    let out = env.run(&["activate", &env.target, "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("nope"));
    assert!(Path::new(&env.root.join("releases/r2")).is_dir());
}

conformance!(
    stage_only_serves_next_and_activate_swaps_exactly_it,
    a_staged_release_takes_no_keep_slot_and_is_never_the_default_rollback,
);
