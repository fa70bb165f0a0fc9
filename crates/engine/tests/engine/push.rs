//! push: what it uploads, links and reports; unchanged trees, dry runs, refusals.

use relstore_core::TargetError;
use relstore_engine::push::PushOptions;
use relstore_engine::EngineError;

use crate::util::Env;

#[test]
fn first_push_uploads_each_distinct_content_once_and_makes_the_release_current() {
    let env = Env::new();
    env.write("index.html", "home");
    env.write("a/copy.html", "home");
    env.write("a/b/other.css", "body{}");
    let r = env.push("r1");
    assert_eq!(r.release, "r1");
    assert!(!r.unchanged && !r.dry_run);
    assert_eq!(r.previous, None);
    assert_eq!((r.files_total, r.dirs_total, r.bytes_total), (3, 2, 14));
    assert_eq!(r.objects_total, 2);
    assert_eq!(
        (r.objects_uploaded, r.bytes_uploaded, r.objects_reused),
        (2, 10, 0)
    );
    assert_eq!(r.links, 3);
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(env.current_file("a/copy.html"), "home");
    assert_eq!(env.current_file("a/b/other.css"), "body{}");
    assert_eq!(env.object_files(), 2);
}

#[test]
fn a_changed_tree_uploads_only_new_content() {
    let env = Env::new();
    env.write("keep.txt", "same");
    env.write("change.txt", "old");
    env.push("r1");
    env.write("change.txt", "new!");
    env.write("added.txt", "same");
    let r = env.push("r2");
    assert_eq!(r.previous.as_deref(), Some("r1"));
    assert_eq!(r.objects_total, 2);
    assert_eq!(
        (r.objects_uploaded, r.bytes_uploaded, r.objects_reused),
        (1, 4, 1)
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_eq!(env.current_file("change.txt"), "new!");
    let names: Vec<String> = env
        .catalog()
        .releases
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(names, ["r1", "r2"]);
}

#[test]
fn an_unchanged_tree_creates_nothing_unless_forced() {
    let env = Env::new();
    env.write("a.txt", "a");
    env.push("r1");
    let r = env.push("r2");
    assert!(r.unchanged);
    assert_eq!(
        r.release, "r1",
        "an unchanged push names the current release"
    );
    assert_eq!(
        (r.files_total, r.objects_total, r.objects_reused),
        (1, 1, 1)
    );
    assert_eq!(r.objects_uploaded, 0);
    assert_eq!(env.catalog().releases.len(), 1);

    let forced = env.push_with(&PushOptions {
        release: Some("r2".into()),
        force: true,
        ..PushOptions::default()
    });
    assert!(!forced.unchanged);
    assert_eq!(forced.objects_uploaded, 0, "the object is already stored");
    assert_eq!(env.current().as_deref(), Some("r2"));
}

#[test]
fn a_dry_run_plans_what_the_run_then_does_and_changes_nothing() {
    let env = Env::new();
    env.write("a.txt", "aaa");
    env.write("b.txt", "bb");
    let dry = PushOptions {
        release: Some("r1".into()),
        dry_run: true,
        ..PushOptions::default()
    };
    let plan = env.try_push(&dry).expect("dry run");
    assert!(plan.dry_run);
    assert!(!env.root().exists(), "a dry run created the store");
    let run = env.push("r1");
    assert_eq!(
        (
            plan.release.as_str(),
            plan.objects_uploaded,
            plan.bytes_uploaded
        ),
        (
            run.release.as_str(),
            run.objects_uploaded,
            run.bytes_uploaded
        )
    );
    assert_eq!(plan.links, run.links);

    env.write("c.txt", "c");
    let plan = env
        .try_push(&PushOptions {
            release: Some("r2".into()),
            ..dry
        })
        .expect("dry run");
    assert_eq!((plan.objects_uploaded, plan.objects_reused), (1, 2));
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(env.catalog().releases.len(), 1);
}

#[test]
fn a_taken_release_name_is_refused_before_anything_is_uploaded() {
    let env = Env::new();
    env.write("a.txt", "a");
    env.push("r1");
    env.write("b.txt", "b");
    let err = env
        .try_push(&PushOptions {
            release: Some("r1".into()),
            ..PushOptions::default()
        })
        .expect_err("name taken");
    assert!(
        matches!(err, EngineError::Target(TargetError::ReleaseExists { ref name, .. }) if name == "r1"),
        "{err}"
    );
    assert_eq!(env.object_files(), 1);
}

#[test]
fn a_store_inside_its_source_is_refused() {
    let env = Env::new();
    env.write("a.txt", "a");
    let inner = relstore_local::LocalTarget::new(env.source().join("store"));
    let err = relstore_engine::push::push(
        &env.source(),
        &(std::sync::Arc::new(inner) as std::sync::Arc<dyn relstore_core::Target>),
        &PushOptions::default(),
        &relstore_core::progress::NoProgress,
    )
    .expect_err("store inside source");
    assert!(
        matches!(err, EngineError::StoreInsideSource { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("contain one another"), "{err}");
}

#[test]
fn keep_prunes_after_the_swap() {
    let env = Env::new();
    for (i, content) in ["one", "two", "three"].iter().enumerate() {
        env.write("f.txt", content);
        let r = env.push_with(&PushOptions {
            release: Some(format!("r{}", i + 1)),
            keep: Some(1),
            ..PushOptions::default()
        });
        let pruned = r.pruned.expect("--keep reports its prune");
        assert!(pruned.applied);
        assert_eq!(pruned.plan.evict.len(), usize::from(i > 0));
    }
    let present: Vec<String> = env
        .catalog()
        .releases
        .iter()
        .filter(|r| r.present)
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(present, ["r3"]);
    assert_eq!(env.object_files(), 1);
}

#[test]
fn the_report_serializes_with_its_json_keys() {
    let env = Env::new();
    env.write("a.txt", "a");
    let r = env.push("r1");
    let v = serde_json::to_value(&r).expect("serialize");
    for key in [
        "release",
        "dry_run",
        "unchanged",
        "previous",
        "files_total",
        "objects_uploaded",
        "bytes_uploaded",
        "objects_reused",
        "links",
        "skipped",
        "pruned",
        "store",
        "seconds",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert!(v["phases"]["upload"].is_f64(), "{v}");
}
