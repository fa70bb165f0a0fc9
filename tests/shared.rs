//! Shared paths (`--shared uploads/`, `--shared .env`): persistent data in
//! `ROOT/shared/` linked into every release by a relative symlink, seeded from the
//! source on first use and never overwritten by it afterwards.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{one_line_error, store_fingerprint, Env};

const SHARED: [&str; 6] = [
    "--shared",
    "uploads/",
    "--shared",
    ".env",
    "--shared",
    "storage/logs/",
];

/// A small site with its own `uploads/` (one file) and `.env`.
fn site_with_app_files(env: &Env, rel: &str, seed: u64, env_text: &str) -> PathBuf {
    let src = env.site(rel, 30, seed);
    fs::create_dir_all(src.join("uploads")).unwrap();
    fs::write(
        src.join("uploads/from-source.txt"),
        format!("source {seed}"),
    )
    .unwrap();
    fs::write(src.join(".env"), env_text).unwrap();
    src
}

fn link_of(env: &Env, release: &str, rel: &str) -> String {
    let p = env.root.join("releases").join(release).join(rel);
    fs::read_link(&p)
        .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", p.display()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn app_data_survives_pushes_rollbacks_and_prune(env: Env) {
    let src = site_with_app_files(&env, "src1", 1, "DB=one\n");
    let r = env.push(&src, &[&["--release", "r1"][..], &SHARED].concat());
    assert_eq!(
        strings(&r["shared_seeded"]),
        ["uploads/", ".env", "storage/logs/"]
    );
    // Relative links, created before the swap, with the parents a nested one needs.
    assert_eq!(link_of(&env, "r1", "uploads"), "../../shared/uploads");
    assert_eq!(link_of(&env, "r1", ".env"), "../../shared/.env");
    assert_eq!(
        link_of(&env, "r1", "storage/logs"),
        "../../../shared/storage/logs"
    );
    // Seeded: the directory and the file from the source, the missing one empty.
    let shared = env.root.join("shared");
    assert_eq!(
        fs::read_to_string(shared.join("uploads/from-source.txt")).unwrap(),
        "source 1"
    );
    assert!(fs::read_dir(shared.join("storage/logs"))
        .unwrap()
        .next()
        .is_none());
    let dotenv = fs::symlink_metadata(shared.join(".env")).unwrap();
    assert!(dotenv.is_file());
    assert_eq!(
        dotenv.nlink(),
        1,
        ".env must be a copy, not a link to an object"
    );
    assert_ne!(
        dotenv.permissions().mode() & 0o200,
        0,
        ".env must be writable"
    );

    // The application writes through `current`.
    let current = env.root.join("current");
    fs::write(current.join("uploads/user.jpg"), "photo").unwrap();
    fs::write(current.join(".env"), "DB=edited on the server\n").unwrap();
    fs::write(current.join("storage/logs/app.log"), "log line\n").unwrap();

    // Five more pushes whose sources carry other copies of the shared paths.
    let mut prev = src;
    for i in 2..=6u64 {
        let next = env.next_release(&prev, &format!("src{i}"), 0.2, i);
        fs::create_dir_all(next.join("uploads")).unwrap();
        fs::write(next.join("uploads/user.jpg"), "the source's version").unwrap();
        fs::write(next.join(".env"), format!("DB=source {i}\n")).unwrap();
        let r = env.push(
            &next,
            &[&["--release", &format!("r{i}"), "--keep", "3"][..], &SHARED].concat(),
        );
        assert_eq!(strings(&r["shared_seeded"]), Vec::<String>::new());
        prev = next;
    }
    let check = |when: &str| {
        assert_eq!(
            fs::read_to_string(current.join("uploads/user.jpg")).unwrap(),
            "photo",
            "{when}"
        );
        assert_eq!(
            fs::read_to_string(current.join(".env")).unwrap(),
            "DB=edited on the server\n",
            "{when}"
        );
        assert_eq!(
            fs::read_to_string(current.join("storage/logs/app.log")).unwrap(),
            "log line\n",
            "{when}"
        );
    };
    check("after five pushes");
    assert!(
        !env.root.join("releases/r1").exists(),
        "--keep 3 evicted r1"
    );

    // Rollback to an evicted release re-assembles it, links included.
    let out = env.run(&["rollback", &env.target, "r1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(link_of(&env, "r1", "uploads"), "../../shared/uploads");
    check("after the rollback to evicted r1");
    let out = env.run(&["rollback", &env.target, "r6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check("after rolling forward to r6");

    let out = env.run(&["prune", &env.target, "--keep", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check("after prune --keep 1");
    let out = env.run(&["verify", &env.target]);
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn a_missing_shared_file_fails_and_changes_nothing(env: Env) {
    let src = env.site("src", 20, 7);
    // No store yet: nothing may be created.
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--shared",
        ".env",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("shared file .env does not exist yet"), "{err}");
    assert!(
        err.contains("/shared/.env or add it to the source"),
        "{err}"
    );
    assert!(!env.root.exists(), "a failed push created the store");

    // An existing store is left exactly as it was.
    env.push(&src, &["--release", "r1"]);
    let before = store_fingerprint(&env.root);
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--shared",
        ".env",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1));
    one_line_error(&out);
    assert_eq!(store_fingerprint(&env.root), before);

    // Put there by hand, it is linked and never replaced.
    fs::create_dir_all(env.root.join("shared")).unwrap();
    fs::write(env.root.join("shared/.env"), "SECRET=1\n").unwrap();
    let r = env.push(&src, &["--release", "r2", "--shared", ".env"]);
    assert_eq!(strings(&r["shared_seeded"]), Vec::<String>::new());
    assert_eq!(
        fs::read_to_string(env.root.join("current/.env")).unwrap(),
        "SECRET=1\n"
    );
}

fn seeding_respects_what_is_there(env: Env) {
    let src = site_with_app_files(&env, "src", 3, "A=1\n");
    env.push(&src, &["--release", "r0"]);
    // A shared directory the admin keeps on another disk (a symlink) is left alone.
    let elsewhere = env.path("bigdisk/uploads");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("old.jpg"), "old").unwrap();
    fs::create_dir_all(env.root.join("shared")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.root.join("shared/uploads")).unwrap();
    // `.env` is there as a directory: the wrong kind is refused, naming it.
    fs::create_dir_all(env.root.join("shared/.env")).unwrap();
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--shared",
        "uploads/",
        "--shared",
        ".env",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(
        err.contains("shared path .env is a directory") && err.contains("not a file"),
        "{err}"
    );
    fs::remove_dir(env.root.join("shared/.env")).unwrap();
    // What a seed killed half-way left beside the path is cleared by the next seed.
    let stale = env.root.join("shared/..env.relstore-seed-1-0");
    fs::write(&stale, "half").unwrap();

    let dry = env.push(
        &src,
        &["--dry-run", "--shared", "uploads/", "--shared", ".env"],
    );
    assert_eq!(strings(&dry["shared_seeded"]), [".env"]);
    assert!(!env.root.join("shared/.env").exists(), "a dry run seeded");
    let r = env.push(
        &src,
        &[
            "--release",
            "r1",
            "--shared",
            "uploads/",
            "--shared",
            ".env",
        ],
    );
    assert_eq!(strings(&r["shared_seeded"]), [".env"]);
    assert_eq!(
        fs::read_to_string(env.root.join("current/uploads/old.jpg")).unwrap(),
        "old"
    );
    assert!(!elsewhere.join("from-source.txt").exists());
    assert!(!stale.exists(), "a stale seed was left");
    assert_eq!(
        fs::read_to_string(env.root.join("current/.env")).unwrap(),
        "A=1\n"
    );
    // The source's copies are not release files.
    let own_files = walkdir::WalkDir::new(&src)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let rel = e.path().strip_prefix(&src).unwrap();
            !rel.starts_with("uploads") && rel != Path::new(".env")
        })
        .count() as u64;
    assert_eq!(r["files_total"].as_u64().unwrap(), own_files);
}

fn verify_checks_the_link_and_repair_restores_it(env: Env) {
    let src = site_with_app_files(&env, "src", 5, "A=1\n");
    env.push(&src, &["--release", "r1", "--shared", "uploads/"]);
    fs::write(env.root.join("current/uploads/user.jpg"), "photo").unwrap();
    let link = env.root.join("releases/r1/uploads");
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("../../elsewhere", &link).unwrap();
    let out = env.run(&["verify", &env.target]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("uploads: points at ../../elsewhere, expected ../../shared/uploads"),
        "{said}"
    );
    let out = env.run(&["verify", &env.target, "--repair"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(link_of(&env, "r1", "uploads"), "../../shared/uploads");
    assert_eq!(
        fs::read_to_string(env.root.join("current/uploads/user.jpg")).unwrap(),
        "photo"
    );
    // A link that is gone altogether is found and re-created as well.
    fs::remove_file(&link).unwrap();
    assert_eq!(env.run(&["verify", &env.target]).status.code(), Some(1));
    let out = env.run(&["verify", &env.target, "--repair"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(link_of(&env, "r1", "uploads"), "../../shared/uploads");
}

fn diff_ignores_shared_content(env: Env) {
    let src = site_with_app_files(&env, "src", 9, "A=1\n");
    env.push(
        &src,
        &[
            "--release",
            "r1",
            "--shared",
            "uploads/",
            "--shared",
            ".env",
        ],
    );
    // The source's shared copies differ from what the release links: not a change.
    fs::write(src.join("uploads/another.txt"), "more").unwrap();
    fs::write(src.join(".env"), "A=2\n").unwrap();
    let current = format!("{}@current", env.target);
    let d = env.json(&["diff", src.to_str().unwrap(), &current]);
    assert_eq!(
        d["counts"],
        serde_json::json!({"added": 0, "removed": 0, "modified": 0, "renamed": 0}),
        "{d}"
    );
    // A real change still shows.
    fs::write(src.join("new-page.html"), "<p>new</p>").unwrap();
    let d = env.json(&["diff", src.to_str().unwrap(), &current]);
    assert_eq!(d["counts"]["removed"], 1, "{d}");
}

/// SIGKILL while seeding (the seed built, not yet in place) and right after it:
/// `current` stays the old release, and a re-run seeds exactly once and finishes.
fn a_push_killed_while_seeding_is_finished_by_a_rerun(env: Env) {
    let src = site_with_app_files(&env, "src", 11, "A=1\n");
    env.push(&src, &["--release", "r0"]);
    let args = |name: &'static str| {
        vec![
            "push".to_owned(),
            src.to_str().unwrap().to_owned(),
            env.target.clone(),
            "--release".to_owned(),
            name.to_owned(),
            "--shared".to_owned(),
            "uploads/".to_owned(),
        ]
    };
    let out = env
        .cmd()
        .args(args("r1"))
        .env("RELSTORE_KILL_AT", "seed.before_rename")
        .output()
        .unwrap();
    assert!(
        env.killed(&out),
        "not killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.current().as_deref(), Some("r0"));
    assert!(
        !env.root.join("shared/uploads").exists(),
        "half a seed in place"
    );
    // Killed once more, right after seeding: the seed stands, current does not move.
    let out = env
        .cmd()
        .args(args("r1"))
        .env("RELSTORE_KILL_AT", "push.seeded")
        .output()
        .unwrap();
    assert!(
        env.killed(&out),
        "not killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.current().as_deref(), Some("r0"));
    assert_eq!(
        fs::read_to_string(env.root.join("shared/uploads/from-source.txt")).unwrap(),
        "source 11"
    );
    let r = env.push(&src, &["--release", "r1", "--shared", "uploads/"]);
    assert_eq!(strings(&r["shared_seeded"]), Vec::<String>::new());
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(link_of(&env, "r1", "uploads"), "../../shared/uploads");
    let leftovers: Vec<_> = fs::read_dir(env.root.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["uploads"], "debris left in shared/");
}

conformance!(
    a_push_killed_while_seeding_is_finished_by_a_rerun,
    app_data_survives_pushes_rollbacks_and_prune,
    a_missing_shared_file_fails_and_changes_nothing,
    seeding_respects_what_is_there,
    verify_checks_the_link_and_repair_restores_it,
    diff_ignores_shared_content,
);

/// Bad `--shared` values are usage errors naming the value (no target involved).
#[test]
fn bad_shared_paths_are_usage_errors() {
    let env = Env::local();
    let src = env.site("src", 3, 1);
    for (bad, why) in [
        ("../etc/", "`.` or `..` component"),
        ("/etc/passwd", "absolute path"),
        ("up*loads/", "wildcard"),
        ("a//b", "empty component"),
    ] {
        let out = env.run(&["push", src.to_str().unwrap(), &env.target, "--shared", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(why) && stderr.contains(bad),
            "{bad}: {stderr}"
        );
    }
    for (set, why) in [
        (["uploads/", "uploads/"], "given twice"),
        (["storage/", "storage/logs/"], "is inside shared path"),
    ] {
        let out = env.run(&[
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--shared",
            set[0],
            "--shared",
            set[1],
        ]);
        assert_eq!(out.status.code(), Some(1), "{set:?}");
        assert!(one_line_error(&out).contains(why), "{set:?}");
    }
    assert!(!Path::new(&env.target).exists());
}
