//! prune: which release directories go, which objects follow them, pins, dry runs.

use relstore_core::progress::NoProgress;
use relstore_engine::lock::LockPolicy;
use relstore_engine::retention::{prune, set_pin, PruneReport};

use crate::util::Env;

/// Pushes r1..r4, each adding a file with its own content to the previous tree.
fn four_releases(env: &Env) {
    for i in 1..=4 {
        env.write(&format!("f{i}.txt"), &format!("content {i}"));
        env.push(&format!("r{i}"));
    }
}

fn run(env: &Env, keep: usize, dry_run: bool) -> PruneReport {
    prune(
        &env.target,
        keep,
        dry_run,
        &LockPolicy::default(),
        &NoProgress,
    )
    .expect("prune")
}

fn present(env: &Env) -> Vec<String> {
    env.catalog()
        .releases
        .iter()
        .filter(|r| r.present)
        .map(|r| r.name.to_string())
        .collect()
}

#[test]
fn prune_keeps_the_newest_and_removes_objects_only_evicted_releases_used() {
    let env = Env::new();
    env.write("shared.txt", "in every release");
    four_releases(&env);
    env.write("f1.txt", "changed");
    env.push("r5");
    assert_eq!(env.object_files(), 6);

    let r = run(&env, 2, false);
    assert!(r.applied && r.left_behind.is_empty());
    assert_eq!(r.plan.evict, ["r1", "r2", "r3"]);
    assert_eq!(r.plan.keep, ["r4", "r5"]);
    // "content 1" was used by r1..r4; r4 stays, so nothing is unreferenced yet.
    assert_eq!(r.plan.objects.len(), 0);
    assert_eq!(present(&env), ["r4", "r5"]);
    // Manifests stay: evicted releases are still listed.
    assert_eq!(env.catalog().releases.len(), 5);

    let r = run(&env, 1, false);
    assert_eq!(r.plan.evict, ["r4"]);
    assert_eq!(r.plan.objects.len(), 1, "only r4 used \"content 1\"");
    assert_eq!(r.plan.bytes_freed, 9);
    assert_eq!(env.object_files(), 5);
    assert_eq!(env.current_file("f1.txt"), "changed");
}

#[test]
fn a_dry_run_plans_the_same_and_changes_nothing() {
    let env = Env::new();
    four_releases(&env);
    let plan = run(&env, 1, true);
    assert!(!plan.applied);
    assert_eq!(plan.plan.evict, ["r1", "r2", "r3"]);
    assert_eq!(present(&env).len(), 4);
    let done = run(&env, 1, false);
    assert_eq!(done.plan.evict, plan.plan.evict);
    assert_eq!(done.plan.objects.len(), plan.plan.objects.len());
    assert_eq!(present(&env), ["r4"]);
}

#[test]
fn pinned_and_current_releases_are_never_evicted() {
    let env = Env::new();
    four_releases(&env);
    set_pin(&env.target, "r2", true, &LockPolicy::default(), &NoProgress).expect("pin");
    relstore_engine::rollback::rollback(
        &env.target,
        &relstore_engine::rollback::RollbackOptions {
            release: Some("r1".into()),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("rollback");
    let r = run(&env, 0, false);
    assert_eq!(r.plan.evict, ["r3"]);
    assert_eq!(
        present(&env),
        ["r1", "r2", "r4"],
        "current, pinned, newest stay"
    );

    set_pin(
        &env.target,
        "r2",
        false,
        &LockPolicy::default(),
        &NoProgress,
    )
    .expect("unpin");
    assert_eq!(run(&env, 0, false).plan.evict, ["r2"]);
    let err = set_pin(&env.target, "r9", true, &LockPolicy::default(), &NoProgress)
        .expect_err("no such release");
    assert!(
        err.to_string().contains("release r9 does not exist"),
        "{err}"
    );
}

#[test]
fn the_report_serializes_with_its_json_keys() {
    let env = Env::new();
    four_releases(&env);
    let v = serde_json::to_value(run(&env, 1, true)).expect("serialize");
    assert_eq!(v["evicted"], serde_json::json!(["r1", "r2", "r3"]));
    assert_eq!(v["kept"], serde_json::json!(["r4"]));
    assert_eq!(v["objects_removed"], 0);
    assert_eq!(v["applied"], false);
    for key in ["bytes_freed", "left_behind", "seconds"] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
}
