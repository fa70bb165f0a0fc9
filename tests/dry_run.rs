//! `--dry-run` on push and rollback: the plan is computed by the same code as the run,
//! changes nothing on the target, and equals what the run then does.

use crate::util::{blobs, store_fingerprint, Env};

/// The numbers a push plan and its run must agree on.
fn plan_keys(v: &serde_json::Value) -> Vec<(&'static str, serde_json::Value)> {
    [
        "release",
        "unchanged",
        "files_total",
        "dirs_total",
        "symlinks_total",
        "bytes_total",
        "objects_total",
        "objects_uploaded",
        "bytes_uploaded",
        "objects_reused",
        "links",
    ]
    .into_iter()
    .map(|k| (k, v[k].clone()))
    .collect()
}

fn push_plan_equals_the_run_and_changes_nothing(env: Env) {
    let v1 = env.site("v1", 300, 101);

    // A target that does not exist yet: plan everything, create nothing.
    let plan = env.push(&v1, &["--release", "r1", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert!(!env.root.exists(), "a dry run created the target");
    assert!(!env.store.exists(), "a dry run wrote the local store");
    assert_eq!(plan["objects_uploaded"], blobs(&v1).len() as u64);
    let run = env.push(&v1, &["--release", "r1"]);
    assert_eq!(run["dry_run"], false);
    assert_eq!(plan_keys(&plan), plan_keys(&run));

    // A change: plan against the existing store, then run.
    let v2 = env.next_release(&v1, "v2", 0.1, 102);
    let before = store_fingerprint(&env.root);
    let plan = env.push(&v2, &["--release", "r2", "--dry-run"]);
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "a dry run changed the target"
    );
    assert!(plan["objects_uploaded"].as_u64().unwrap() > 0);
    let run = env.push(&v2, &["--release", "r2"]);
    assert_eq!(plan_keys(&plan), plan_keys(&run));

    // Unchanged tree: the plan says so too.
    let plan = env.push(&v2, &["--dry-run"]);
    assert_eq!(plan["unchanged"], true);
    assert_eq!(plan["objects_uploaded"], 0);

    // A taken name fails the plan like the run.
    let out = env.run(&[
        "push",
        v1.to_str().unwrap(),
        &env.target,
        "--release",
        "r1",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1));

    // Human output names it a plan.
    let out = env.run(&["push", v1.to_str().unwrap(), &env.target, "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("plan for "), "{stdout}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
}

fn rollback_plan_of_an_evicted_release_equals_the_run_and_changes_nothing(env: Env) {
    let v1 = env.site("v1", 200, 103);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.3, 104);
    env.push(&v2, &["--release", "r2"]);
    env.json(&["prune", &env.target, "--keep", "1"]);
    let before = store_fingerprint(&env.root);
    let plan = env.json(&["rollback", &env.target, "r1", "--dry-run"]);
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "a dry run changed the target"
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["reassembled"], true);
    assert!(plan["objects_uploaded"].as_u64().unwrap() > 0, "{plan}");
    let run = env.json(&["rollback", &env.target, "r1"]);
    for k in [
        "from",
        "to",
        "reassembled",
        "objects_uploaded",
        "bytes_uploaded",
        "uploaded_from",
    ] {
        assert_eq!(plan[k], run[k], "{k}: plan {plan} run {run}");
    }
    assert_eq!(env.current().as_deref(), Some("r1"));
    // A plain flip back: planned, not done.
    let plan = env.json(&["rollback", &env.target, "r2", "--dry-run"]);
    assert_eq!(plan["to"], "r2");
    assert_eq!(plan["reassembled"], false);
    assert_eq!(env.current().as_deref(), Some("r1"));
}

fn push_plan_into_an_empty_directory_plans_everything_and_writes_nothing(env: Env) {
    let v1 = env.site("v1", 50, 105);
    std::fs::create_dir(&env.root).unwrap();
    let plan = env.push(&v1, &["--release", "r1", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["objects_uploaded"], blobs(&v1).len() as u64, "{plan}");
    assert_eq!(
        std::fs::read_dir(&env.root).unwrap().count(),
        0,
        "a dry run wrote into the empty target directory"
    );
    let run = env.push(&v1, &["--release", "r1"]);
    assert_eq!(plan_keys(&plan), plan_keys(&run));
}

conformance!(
    push_plan_into_an_empty_directory_plans_everything_and_writes_nothing,
    push_plan_equals_the_run_and_changes_nothing,
    rollback_plan_of_an_evicted_release_equals_the_run_and_changes_nothing,
);
