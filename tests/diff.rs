//! `relstore diff` against an independent comparison of the two trees.

use std::collections::BTreeSet;

use crate::util::{snapshot, Env};

/// Counts (only in A, only in B, in both but different), by an independent walk.
fn independent_counts(a: &std::path::Path, b: &std::path::Path) -> (usize, usize, usize) {
    let sa = snapshot(a);
    let sb = snapshot(b);
    let only_a = sa.keys().filter(|k| !sb.contains_key(*k)).count();
    let only_b = sb.keys().filter(|k| !sa.contains_key(*k)).count();
    let changed = sa
        .iter()
        .filter(|(k, v)| sb.get(*k).is_some_and(|w| w != *v))
        .count();
    (only_a, only_b, changed)
}

fn check(env: &Env, a: &str, b: &str, dir_a: &std::path::Path, dir_b: &std::path::Path) {
    let d = env.json(&["diff", a, b]);
    let (only_a, only_b, changed) = independent_counts(dir_a, dir_b);
    let n = |k: &str| d["counts"][k].as_u64().unwrap() as usize;
    assert_eq!(
        n("removed") + n("renamed"),
        only_a,
        "{a} vs {b}: {}",
        d["counts"]
    );
    assert_eq!(
        n("added") + n("renamed"),
        only_b,
        "{a} vs {b}: {}",
        d["counts"]
    );
    assert_eq!(n("modified"), changed, "{a} vs {b}: {}", d["counts"]);
    assert_eq!(d["added"].as_array().unwrap().len(), n("added"));
    for r in d["renamed"].as_array().unwrap() {
        assert!(r["from"].is_string() && r["to"].is_string());
    }
    for m in d["modified"].as_array().unwrap() {
        assert!(m["path"].is_string());
    }
}

fn diff_counts_match_an_independent_comparison(env: Env) {
    let v1 = env.site("v1", 800, 20);
    let v2 = env.next_release(&v1, "v2", 0.05, 21);
    env.push(&v1, &["--release", "r1"]);
    env.push(&v2, &["--release", "r2"]);
    let r1 = format!("{}@r1", env.target);
    let r2 = format!("{}@r2", env.target);
    check(&env, &r1, &r2, &v1, &v2);
    // A directory against a release, and a manifest file against a directory.
    check(
        &env,
        v1.to_str().unwrap(),
        &format!("{}@current", env.target),
        &v1,
        &v2,
    );
    let manifest = env.root.join("manifests/r1.manifest");
    check(
        &env,
        manifest.to_str().unwrap(),
        v2.to_str().unwrap(),
        &v1,
        &v2,
    );
    let same = env.json(&["diff", &r1, v1.to_str().unwrap()]);
    assert_eq!(same["counts"]["added"], 0);
    assert_eq!(same["counts"]["modified"], 0);
}

/// No target involved (two directories): runs once, not per target.
#[test]
fn diff_reports_type_mode_target_changes_and_renames() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let env = Env::local();
    let a = env.path("a");
    let b = env.path("b");
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("dir")).unwrap();
    }
    std::fs::write(a.join("run.sh"), "x").unwrap();
    std::fs::write(b.join("run.sh"), "x").unwrap();
    std::fs::set_permissions(b.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink("run.sh", a.join("link")).unwrap();
    symlink("other", b.join("link")).unwrap();
    std::fs::write(a.join("flip"), "file").unwrap();
    std::fs::create_dir(b.join("flip")).unwrap();
    std::fs::write(a.join("dir/big.png"), "moved content").unwrap();
    std::fs::write(b.join("moved.png"), "moved content").unwrap();
    let d = env.json(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    let changes: BTreeSet<(String, String)> = d["modified"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| {
            let path = m["path"].as_str().unwrap().to_owned();
            m["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |c| (path.clone(), c.as_str().unwrap().to_owned()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> =
        [("flip", "type"), ("link", "target"), ("run.sh", "mode")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(changes, expected);
    assert_eq!(d["renamed"][0]["from"], "dir/big.png");
    assert_eq!(d["renamed"][0]["to"], "moved.png");
    assert_eq!(d["counts"]["added"], 0);
    assert_eq!(d["counts"]["removed"], 0);
}

conformance!(diff_counts_match_an_independent_comparison,);
