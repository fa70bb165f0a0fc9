//! Excludes (`--exclude GLOB`, the source's `.relstoreignore`): excluded paths never
//! reach the release on disk nor its manifest; an excluded directory is not even read.

use std::fs;
use std::path::Path;

use crate::util::{assert_same_tree, copy_tree, one_line_error, Env};

/// Adds build debris to a generated site: source maps, a node_modules tree holding a
/// fifo (refused if the walk ever met it), a root build/ dir, a docs/build/ dir that an
/// anchored `/build` must not touch, and the ignore file.
fn add_debris(src: &Path) {
    fs::write(src.join("app.js.map"), "map").unwrap();
    fs::write(src.join("keep.map"), "kept by a negation").unwrap();
    fs::create_dir_all(src.join("js/deep")).unwrap();
    fs::write(src.join("js/deep/x.js.map"), "map2").unwrap();
    fs::create_dir_all(src.join("node_modules/pkg")).unwrap();
    fs::write(src.join("node_modules/pkg/index.js"), "module").unwrap();
    let fifo = std::ffi::CString::new(
        src.join("node_modules/pkg/pipe")
            .to_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    fs::create_dir_all(src.join("build")).unwrap();
    fs::write(src.join("build/out.o"), "obj").unwrap();
    fs::create_dir_all(src.join("docs/build")).unwrap();
    fs::write(src.join("docs/build/page.html"), "<p>stays</p>").unwrap();
    fs::write(
        src.join(".relstoreignore"),
        "# build output\n*.map\n/build\n",
    )
    .unwrap();
}

/// What the release must equal: the source without everything excluded.
fn expected(env: &Env, src: &Path) -> std::path::PathBuf {
    let exp = env.path("expected");
    copy_tree(src, &exp);
    for f in ["app.js.map", "js/deep/x.js.map", ".relstoreignore"] {
        fs::remove_file(exp.join(f)).unwrap();
    }
    for d in ["node_modules", "build"] {
        fs::remove_dir_all(exp.join(d)).unwrap();
    }
    exp
}

const EXCLUDES: [&str; 4] = ["--exclude", "node_modules/", "--exclude", "!keep.map"];

fn excluded_paths_are_absent_from_the_release_and_its_manifest(env: Env) {
    let src = env.site("src", 80, 21);
    add_debris(&src);
    let exp = expected(&env, &src);

    // No --skip-special: the fifo inside node_modules/ must never be looked at.
    let r = env.push(&src, &[&["--release", "r1"][..], &EXCLUDES].concat());
    let release = env.root.join("current");
    assert_same_tree(&exp, &release);
    for gone in [
        "app.js.map",
        "js/deep/x.js.map",
        "node_modules",
        "build",
        ".relstoreignore",
    ] {
        assert!(
            release.join(gone).symlink_metadata().is_err(),
            "{gone} was deployed"
        );
    }
    assert!(release.join("keep.map").is_file(), "negation ignored");
    assert!(
        release.join("docs/build/page.html").is_file(),
        "/build is anchored"
    );
    let files = crate::util::snapshot(&exp)
        .values()
        .filter(|n| matches!(n, crate::util::Node::File { .. }))
        .count() as u64;
    assert_eq!(r["files_total"], files, "{r}");

    // The manifest: a diff of the expected tree against the release finds nothing, and
    // the manifest file itself lists none of the excluded paths.
    let d = env.json(&["diff", exp.to_str().unwrap(), &format!("{}@r1", env.target)]);
    assert_eq!(
        d["counts"],
        serde_json::json!({"added":0,"removed":0,"modified":0,"renamed":0}),
        "{d}"
    );
    let manifest = env.root.join("manifests/r1.manifest");
    let d = env.json(&["diff", manifest.to_str().unwrap(), exp.to_str().unwrap()]);
    assert!(d["added"].as_array().unwrap().is_empty(), "{d}");
    assert!(d["removed"].as_array().unwrap().is_empty(), "{d}");

    // Pushing again with the same excludes changes nothing.
    let r = env.push(&src, &EXCLUDES);
    assert_eq!(r["unchanged"], true, "{r}");
}

fn diff_of_a_directory_applies_its_ignore_file_and_the_excludes(env: Env) {
    let src = env.site("src", 30, 22);
    add_debris(&src);
    // Diffed once without --exclude below, where the fifo would be refused.
    fs::remove_file(src.join("node_modules/pkg/pipe")).unwrap();
    env.push(&src, &[&["--release", "r1"][..], &EXCLUDES].concat());
    let at = format!("{}@current", env.target);
    // Without --exclude only node_modules/ shows up (the ignore file still applies).
    let d = env.json(&["diff", &at, src.to_str().unwrap()]);
    let added: Vec<&str> = d["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert!(added.iter().all(|p| p.starts_with("node_modules")), "{d}");
    assert!(!added.is_empty(), "{d}");
    let mut args = vec!["diff", &at, src.to_str().unwrap()];
    args.extend_from_slice(&EXCLUDES);
    let d = env.json(&args);
    assert_eq!(d["counts"]["added"], 0, "{d}");
    assert_eq!(d["counts"]["removed"], 0, "{d}");
}

fn a_bad_pattern_is_one_line_naming_it_and_touches_nothing(env: Env) {
    let src = env.site("src", 10, 23);
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--exclude",
        "[z-a].map",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(
        line.contains("[z-a].map") && line.contains("--exclude"),
        "{line}"
    );
    assert!(!env.root.exists(), "the target was created");

    fs::write(src.join(".relstoreignore"), "*.map\n\n[z-a]\n").unwrap();
    let out = env.run(&["push", src.to_str().unwrap(), &env.target]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(line.contains(".relstoreignore line 3"), "{line}");
    assert!(line.contains("\"[z-a]\""), "{line}");
    assert!(!env.root.exists(), "the target was created");
}

conformance!(
    excluded_paths_are_absent_from_the_release_and_its_manifest,
    diff_of_a_directory_applies_its_ignore_file_and_the_excludes,
    a_bad_pattern_is_one_line_naming_it_and_touches_nothing,
);
