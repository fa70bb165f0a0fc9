//! Bad input: each case fails with exit 1 and one clear line naming the culprit, and
//! leaves the target exactly as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::util::{one_line_error, store_fingerprint, Env};

/// Runs `args`, asserting exit 1, a one-line error containing `needle`, and an
/// untouched store.
fn refused(env: &Env, args: &[&str], needle: &str) -> Output {
    let before = store_fingerprint(&env.root);
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    assert!(
        line.contains(needle),
        "error {line:?} does not name {needle:?}"
    );
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "{args:?} changed the target"
    );
    out
}

fn pushed_env(env: Env) -> (Env, std::path::PathBuf) {
    let src = env.site("src", 60, 30);
    env.push(&src, &["--release", "r1"]);
    (env, src)
}

fn missing_source_is_refused_and_creates_no_target(env: Env) {
    let missing = env.path("nope");
    refused(
        &env,
        &["push", missing.to_str().unwrap(), &env.target],
        "nope",
    );
    assert!(
        !env.root.exists(),
        "target created for a push that could not start"
    );
}

fn fifo_in_source_is_refused_naming_it_and_skipped_on_request(env: Env) {
    let (env, src) = pushed_env(env);
    let fifo = src.join("docs/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    refused(
        &env,
        &["push", src.to_str().unwrap(), &env.target],
        "docs/pipe",
    );
    let r = env.push(&src, &["--skip-special", "--force"]);
    assert!(
        r["skipped"][0].as_str().unwrap().contains("docs/pipe"),
        "{r}"
    );
}

fn bad_release_names_are_refused(env: Env) {
    let (env, src) = pushed_env(env);
    for bad in ["../x", "a/b", ".hidden", ""] {
        refused(
            &env,
            &[
                "push",
                src.to_str().unwrap(),
                &env.target,
                "--release",
                bad,
                "--force",
            ],
            "release name",
        );
    }
}

fn an_existing_release_name_is_refused(env: Env) {
    let (env, src) = pushed_env(env);
    std::fs::write(src.join("new.html"), "new").unwrap();
    refused(
        &env,
        &[
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--release",
            "r1",
        ],
        "r1 already exists",
    );
}

fn a_target_that_is_a_file_or_a_foreign_directory_is_refused(env: Env) {
    let src = env.site("src", 20, 31);
    std::fs::write(&env.root, "not a directory").unwrap();
    refused(
        &env,
        &["push", src.to_str().unwrap(), &env.target],
        &env.target,
    );
    assert_eq!(std::fs::read(&env.root).unwrap(), b"not a directory");

    std::fs::remove_file(&env.root).unwrap();
    std::fs::create_dir(&env.root).unwrap();
    std::fs::write(env.root.join("index.html"), "someone's site").unwrap();
    refused(
        &env,
        &["push", src.to_str().unwrap(), &env.target],
        "not a relstore store",
    );
    refused(&env, &["releases", &env.target], "not a relstore store");
}

fn a_corrupt_manifest_on_the_target_is_refused(env: Env) {
    let (env, src) = pushed_env(env);
    let manifest = env.root.join("manifests/r1.manifest");
    let original = std::fs::read(&manifest).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&manifest, &bytes).unwrap();
    std::fs::write(src.join("changed.html"), "changed").unwrap();
    refused(
        &env,
        &["push", src.to_str().unwrap(), &env.target],
        "manifests/r1.manifest",
    );
    refused(
        &env,
        &["diff", &format!("{}@r1", env.target), src.to_str().unwrap()],
        "corrupt manifest",
    );
    // A manifest that is not a manifest at all, of a release to roll back to.
    std::fs::write(&manifest, &original).unwrap();
    env.push(&src, &["--release", "r2"]);
    std::fs::write(&manifest, b"garbage").unwrap();
    refused(&env, &["rollback", &env.target, "r1"], "r1");
}

/// `current` means the current release wherever a release is named (`TARGET@current`,
/// `rollback TARGET current`, `verify TARGET current`): no new release may take the
/// name, and a store from before, with a release named `current`, stays usable (that
/// release is listed with a problem, `current` still means the live one).
fn a_release_named_current_is_refused(env: Env) {
    let (env, src) = pushed_env(env);
    std::fs::write(src.join("new.html"), "new").unwrap();
    let src_arg = src.to_str().unwrap();
    refused(
        &env,
        &["push", src_arg, &env.target, "--release", "current"],
        "reserved",
    );

    // A store made before the name was reserved: r1 renamed `current`.
    let old = env.root.join("manifests/r1.manifest");
    let mut m = relstore_core::Manifest::decode(&std::fs::read(&old).unwrap(), Some("r1")).unwrap();
    m.header.release = "current".into();
    std::fs::write(
        env.root.join("manifests/current.manifest"),
        m.encode().unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&old).unwrap();
    std::fs::rename(
        env.root.join("releases/r1"),
        env.root.join("releases/current"),
    )
    .unwrap();
    std::fs::remove_file(env.root.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/current", env.root.join("current")).unwrap();

    let l = env.json(&["releases", &env.target]);
    let listed = &l["releases"][0];
    assert_eq!(listed["name"], "current", "{l}");
    assert_eq!(listed["current"], true, "{l}");
    assert!(
        listed["problem"]
            .as_str()
            .unwrap_or("")
            .contains("reserved"),
        "{l}"
    );
    let v = env.json(&["verify", &env.target]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    env.push(&src, &["--release", "r2"]);
    // `current` now means r2, not the old release of that name.
    let v = env.json(&["verify", &env.target, "current"]);
    assert_eq!(v["releases_checked"], serde_json::json!(["r2"]), "{v}");
    let r = env.json(&["rollback", &env.target, "current"]);
    assert_eq!(r["already_current"], true, "{r}");
    let d = env.json(&["diff", &format!("{}@current", env.target), src_arg]);
    assert_eq!(d["added"], serde_json::json!([]), "{d}");
    // It can still be pruned like any old release.
    let p = env.json(&["prune", &env.target, "--keep", "1"]);
    assert_eq!(p["evicted"], serde_json::json!(["current"]), "{p}");
}

/// Local target only: the refusal comes from the client's scan, before any target is
/// touched, and running as `nobody` (below) could not read the root-owned SSH test key.
#[test]
fn an_unreadable_source_file_is_refused_naming_it() {
    let (env, src) = pushed_env(Env::local());
    let secret = src.join("docs/locked.html");
    std::fs::write(&secret, "no").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        refused(
            &env,
            &["push", src.to_str().unwrap(), &env.target],
            "docs/locked.html",
        );
        return;
    }
    // Root reads anything: run relstore as `nobody` over a world-accessible copy so the
    // permission check is the kernel's, not a simulation.
    let open = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    open(env.dir.path());
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(&env.root)
        .arg(&env.cache)
        .status()
        .unwrap();
    assert!(status.success());
    for e in walkdir::WalkDir::new(&src) {
        let e = e.unwrap();
        if e.file_type().is_dir() {
            open(e.path());
        } else if e.file_type().is_file() && e.path() != secret {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let before = store_fingerprint(&env.root);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_relstore"))
        .args(["push", src.to_str().unwrap(), &env.target])
        .env("RELSTORE_CACHE_DIR", &env.cache)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    assert!(line.contains("docs/locked.html"), "{line}");
    assert_eq!(store_fingerprint(&env.root), before);
}

/// Local target only: a store inside the source tree is a property of local paths.
#[test]
fn a_target_inside_the_source_is_refused() {
    let env = Env::local();
    let src = env.site("src", 20, 32);
    let inside = src.join("deploy/site");
    let before = crate::util::snapshot(&src);
    let out = env.run(&["push", src.to_str().unwrap(), inside.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("contain one another"));
    assert_eq!(
        crate::util::snapshot(&src),
        before,
        "the source was changed"
    );
}

/// Regression: `cd src && relstore push . site` created `src/site`, because the
/// containment check gave up on a relative target that did not exist yet; the next
/// push was then refused (and the first one had deployed a tree holding its own store).
#[test]
fn store_created_inside_the_source() {
    let env = Env::local();
    let src = env.site("src", 20, 33);
    let before = crate::util::snapshot(&src);
    let out = env
        .cmd()
        .current_dir(&src)
        .args(["push", ".", "site"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(one_line_error(&out).contains("contain one another"));
    assert!(
        !src.join("site").exists(),
        "a store was created inside the source"
    );
    assert_eq!(
        crate::util::snapshot(&src),
        before,
        "the source was changed"
    );
}

conformance!(
    a_release_named_current_is_refused,
    missing_source_is_refused_and_creates_no_target,
    fifo_in_source_is_refused_naming_it_and_skipped_on_request,
    bad_release_names_are_refused,
    an_existing_release_name_is_refused,
    a_target_that_is_a_file_or_a_foreign_directory_is_refused,
    a_corrupt_manifest_on_the_target_is_refused,
);
