//! rollback: to the previous or a named release, and rebuilding evicted ones.

use relstore_core::progress::NoProgress;
use relstore_engine::lock::LockPolicy;
use relstore_engine::push::PushOptions;
use relstore_engine::retention::prune;
use relstore_engine::rollback::{rollback, RollbackOptions, RollbackReport};
use relstore_engine::{EngineError, EngineResult};

use crate::util::Env;

fn roll(env: &Env, opts: &RollbackOptions) -> EngineResult<RollbackReport> {
    rollback(&env.target, opts, &NoProgress)
}

/// Pushes `f.txt` = `one` as r1 and `two` as r2, writing through to the local store.
fn two_releases(env: &Env) {
    for (name, content) in [("r1", "one"), ("r2", "two")] {
        env.write("f.txt", content);
        env.push_with(&PushOptions {
            release: Some(name.into()),
            store: Some(env.release_store()),
            ..PushOptions::default()
        });
    }
}

#[test]
fn rollback_goes_to_the_release_before_current_then_forward_by_name() {
    let env = Env::new();
    two_releases(&env);
    let r = roll(&env, &RollbackOptions::default()).expect("rollback");
    assert_eq!((r.from.as_deref(), r.to.as_str()), (Some("r2"), "r1"));
    assert!(!r.reassembled && !r.already_current);
    assert_eq!(env.current_file("f.txt"), "one");

    let named = RollbackOptions {
        release: Some("r2".into()),
        ..RollbackOptions::default()
    };
    let r = roll(&env, &named).expect("rollback to r2");
    assert_eq!(r.to, "r2");
    assert_eq!(env.current_file("f.txt"), "two");
    assert!(roll(&env, &named).expect("again").already_current);
}

#[test]
fn nothing_before_the_first_release_and_nothing_without_one() {
    let env = Env::new();
    env.target.open(true).expect("create store");
    let err = roll(&env, &RollbackOptions::default()).expect_err("no current");
    assert!(
        matches!(err, EngineError::NothingToRollBack { .. }),
        "{err}"
    );

    env.write("f.txt", "one");
    env.push("r1");
    let err = roll(&env, &RollbackOptions::default()).expect_err("no earlier");
    assert!(
        matches!(err, EngineError::NoEarlierRelease { ref current, .. } if current == "r1"),
        "{err}"
    );
    let err = roll(
        &env,
        &RollbackOptions {
            release: Some("r9".into()),
            ..RollbackOptions::default()
        },
    )
    .expect_err("no such release");
    assert!(matches!(err, EngineError::NoSuchRelease { .. }), "{err}");
}

#[test]
fn an_evicted_release_is_rebuilt_from_the_local_release_store() {
    let env = Env::new();
    two_releases(&env);
    prune(&env.target, 1, false, &LockPolicy::default(), &NoProgress).expect("prune");
    assert!(env.catalog().get("r1").is_some_and(|r| !r.present));

    let opts = RollbackOptions {
        release: Some("r1".into()),
        store: Some(env.release_store()),
        ..RollbackOptions::default()
    };
    let plan = roll(
        &env,
        &RollbackOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .expect("dry run");
    assert!(plan.dry_run && plan.reassembled);
    assert_eq!(
        env.current().as_deref(),
        Some("r2"),
        "a dry run changed current"
    );

    let r = roll(&env, &opts).expect("rollback");
    assert!(r.reassembled);
    assert_eq!((r.objects_uploaded, r.bytes_uploaded), (1, 3));
    assert_eq!(r.uploaded_from.len(), 1);
    assert!(
        r.uploaded_from[0].starts_with("local release store"),
        "{r:?}"
    );
    assert_eq!(env.current_file("f.txt"), "one");
}

#[test]
fn an_evicted_release_with_lost_objects_fails_before_changing_anything() {
    let env = Env::new();
    two_releases(&env);
    prune(&env.target, 1, false, &LockPolicy::default(), &NoProgress).expect("prune");
    let err = roll(
        &env,
        &RollbackOptions {
            release: Some("r1".into()),
            ..RollbackOptions::default()
        },
    )
    .expect_err("nowhere to take r1's object from");
    match &err {
        EngineError::CannotRebuild {
            release,
            objects,
            paths,
            ..
        } => assert_eq!(
            (release.as_str(), *objects, paths.as_str()),
            ("r1", 1, "f.txt")
        ),
        other => panic!("unexpected error: {other}"),
    }
    assert!(err
        .to_string()
        .contains("cannot rebuild evicted release r1"));
    assert_eq!(env.current().as_deref(), Some("r2"));

    // A --source tree holding the content (under any name) will do.
    let src = env.dir.path().join("old");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("renamed.txt"), "one").expect("write");
    let r = roll(
        &env,
        &RollbackOptions {
            release: Some("r1".into()),
            sources: vec![src],
            ..RollbackOptions::default()
        },
    )
    .expect("rollback from --source");
    assert_eq!(r.objects_uploaded, 1);
    assert_eq!(env.current_file("f.txt"), "one");
}
