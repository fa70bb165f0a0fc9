//! `relstore bench`: the series runs on scratch data only, reports what was uploaded
//! (checked against an independent count of new distinct content), compares with
//! rsync when it is installed, and removes its scratch data.

use std::collections::BTreeMap;
use std::fs;

use relstore_fixtures::{generate, mutate, touch_all, MutationSpec, SiteSpec};

use crate::util::{blobs, Env};

/// Bytes of the objects in `now` that are not in `seen`; adds them to `seen`.
fn new_content(seen: &mut BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> (u64, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for (id, size) in now {
        if seen.insert(id.clone(), *size).is_none() {
            count += 1;
            bytes += size;
        }
    }
    (count, bytes)
}

// `relstore bench` measures on local scratch stores by default; `--target` also takes an
// SSH target (tested below).

#[test]
fn bench_uploads_exactly_the_new_distinct_content_and_cleans_up() {
    let env = Env::local();
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    let v = env.json(&[
        "bench",
        "--generate",
        "1500",
        "--seed",
        "7",
        "--changes",
        "1,10",
        "--scratch",
        scratch.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch data left behind"
    );
    let steps = v["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "first push",
            "no change",
            "CI rebuild",
            "change 1%",
            "change 10%",
            "rollback evicted"
        ]
    );

    // The same trees, built independently with the documented seeds.
    let tree = env.path("tree");
    generate(&tree, &SiteSpec::new(1500, 7)).unwrap();
    let mut seen = BTreeMap::new();
    let first = blobs(&tree);
    let mut expected = vec![new_content(&mut seen, &first), (0, 0)];
    touch_all(&tree, 0).unwrap();
    expected.push(new_content(&mut seen, &blobs(&tree)));
    for (i, pct) in [1.0, 10.0].into_iter().enumerate() {
        mutate(
            &tree,
            &MutationSpec {
                fraction: pct / 100.0,
                seed: 7 + i as u64 + 1,
                rename_dir: true,
            },
        )
        .unwrap();
        expected.push(new_content(&mut seen, &blobs(&tree)));
    }
    // Rollback to the first release after pruning to the last: what only it had.
    let last = blobs(&tree);
    let lost: Vec<u64> = first
        .iter()
        .filter(|(id, _)| !last.contains_key(*id))
        .map(|(_, s)| *s)
        .collect();
    expected.push((lost.len() as u64, lost.iter().sum()));

    for (step, (count, bytes)) in steps.iter().zip(&expected) {
        assert_eq!(step["objects_uploaded"], *count, "{}", step["step"]);
        assert_eq!(step["bytes_uploaded"], *bytes, "{}", step["step"]);
    }
    assert_eq!(steps[1]["files_hashed"], 0, "no-change push re-read files");
    assert_eq!(
        steps[2]["files_hashed"], steps[2]["files"],
        "CI rebuild must re-hash every file"
    );
    assert!(steps[4]["savings"].as_f64().unwrap() > 0.5);

    // rsync runs beside relstore when installed (scripts/test.sh installs it).
    if crate::util::on_path("rsync") {
        assert_eq!(v["rsync_note"], serde_json::Value::Null, "{v}");
        for s in &steps[..5] {
            assert!(s["rsync_seconds"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["ratio"].as_f64().is_some(), "{s}");
        }
        assert!(steps[0]["rsync_bytes_sent"].as_u64().unwrap() >= expected[0].1);
    } else {
        assert_eq!(v["rsync_note"], "rsync is not on the PATH");
    }
}

#[test]
fn bench_prints_a_table_and_never_touches_the_source() {
    let env = Env::local();
    let src = env.site("src", 200, 8);
    let before = crate::util::snapshot(&src);
    let out = env.run(&[
        "bench",
        src.to_str().unwrap(),
        "--changes",
        "5",
        "--no-rsync",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("relstore bench: "), "{stdout}");
    for row in [
        "first push",
        "no change",
        "CI rebuild",
        "change 5%",
        "rollback evicted",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no {row} row: {stdout}"
        );
    }
    assert!(
        stdout.contains("rsync: rsync comparison turned off"),
        "{stdout}"
    );
    assert_eq!(
        crate::util::snapshot(&src),
        before,
        "bench changed the source"
    );

    let out = env.run(&["bench", env.path("nope").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(crate::util::one_line_error(&out).contains("nope: not a directory"));
}

#[test]
fn bench_on_an_ssh_target_runs_the_series_there_and_removes_its_scratch_store() {
    let env = Env::ssh();
    fs::create_dir_all(&env.root).unwrap();
    let v = env.json(&[
        "bench",
        "--generate",
        "300",
        "--changes",
        "10",
        "--target",
        &env.target,
    ]);
    assert_eq!(
        v["rsync_note"], "rsync is compared on local targets only",
        "{v}"
    );
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{v}");
    assert!(steps[0]["objects_uploaded"].as_u64().unwrap() > 200, "{v}");
    assert_eq!(steps[1]["objects_uploaded"], 0);
    assert!(steps[3]["objects_uploaded"].as_u64().unwrap() > 0);
    assert!(
        steps[4]["objects_uploaded"].as_u64().unwrap() > 0,
        "rollback uploaded nothing"
    );
    // The scratch store under the target directory is gone; the directory stays.
    assert!(env.root.is_dir());
    assert_eq!(
        fs::read_dir(&env.root).unwrap().count(),
        0,
        "bench left scratch data on the server"
    );
}
