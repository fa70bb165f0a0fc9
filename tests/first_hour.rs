//! What a new user meets in the first hour: completions and a manual page, help texts
//! that name every TARGET form, `diff`'s exit status, a deployed tree compared with its
//! release, read-only commands that never speak of writing, and where the local
//! release store goes by default.
//!
//! Local targets except for the refusal of a foreign directory, which every target
//! words itself: the rest is decided by the CLI and the engine the same way for every
//! target (the SSH forms are exercised by the conformance suite).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::util::{one_line_error, Env};

const VERBS: [&str; 12] = [
    "push",
    "releases",
    "rollback",
    "diff",
    "prune",
    "pin",
    "unpin",
    "verify",
    "bench",
    "store",
    "helper",
    "completions",
];

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn completions_for_every_shell_name_the_verbs() {
    let env = Env::local();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = stdout(&env.run(&["completions", shell]));
        for verb in VERBS {
            assert!(text.contains(verb), "{shell} completions lack {verb}");
        }
        let mut words = text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-');
        assert!(
            !words.any(|w| w == "serve"),
            "{shell}: the hidden serve verb leaks"
        );
    }
    // The bash script is valid bash.
    let script = env.path("relstore.bash");
    fs::write(&script, stdout(&env.run(&["completions", "bash"]))).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    let bad = env.run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn man_page_lists_the_verbs_and_pages_per_verb_name_ssh_targets() {
    let env = Env::local();
    let page = stdout(&env.run(&["man"]));
    assert!(page.contains("\n.TH relstore 1 "), "{page}");
    for verb in VERBS {
        assert!(page.contains(verb), "relstore.1 lacks {verb}");
    }
    let dir = env.path("man1");
    stdout(&env.run(&["man", "--dir", dir.to_str().unwrap()]));
    let push = fs::read_to_string(dir.join("relstore-push.1")).unwrap();
    assert!(
        push.contains("ssh://"),
        "relstore-push.1 names no SSH target"
    );
    for verb in VERBS {
        assert!(
            dir.join(format!("relstore-{verb}.1")).is_file(),
            "no page for {verb}"
        );
    }
    assert!(!dir.join("relstore-serve.1").exists());
    // A directory that cannot be made: one line naming it.
    let file = env.path("a-file");
    fs::write(&file, "x").unwrap();
    let under_file = file.join("man1");
    let out = env.run(&["man", "--dir", under_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains(under_file.to_str().unwrap()));
    // `man -l` renders it, where man is installed.
    if crate::util::on_path("man") {
        let shown = std::process::Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.join("relstore.1"))
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&shown.stdout).contains("rollback"));
    }
}

#[test]
fn every_target_argument_documents_the_ssh_forms() {
    let env = Env::local();
    for verb in [
        &["push"][..],
        &["releases"],
        &["rollback"],
        &["diff"],
        &["prune"],
        &["pin"],
        &["unpin"],
        &["verify"],
        &["bench"],
        &["helper", "status"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let help = stdout(&env.run(&args));
        for form in ["[user@]host:path", "ssh://[user@]host[:port]/path"] {
            assert!(help.contains(form), "{verb:?} --help lacks {form}:\n{help}");
        }
        assert!(
            !help.contains("a local path (created if missing)"),
            "{verb:?}: {help}"
        );
    }
}

/// A source tree with the modes a site has: 0644 pages, a 0755 script, a private 0600
/// file, a symlink, a nested directory.
fn site_with_modes(root: &Path) {
    fs::create_dir_all(root.join("docs/deep")).unwrap();
    for (p, body, mode) in [
        ("index.html", "<h1>hi</h1>", 0o644),
        ("docs/a.html", "a", 0o644),
        ("docs/deep/b.css", "b{}", 0o644),
        ("run.sh", "#!/bin/sh\n", 0o755),
        ("private.key", "secret", 0o600),
    ] {
        let f = root.join(p);
        fs::write(&f, body).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("docs/a.html", root.join("latest.html")).unwrap();
}

#[test]
fn diff_exit_code_follows_git() {
    let env = Env::local();
    let src = env.path("src");
    site_with_modes(&src);
    env.push(&src, &["--release", "r1"]);
    fs::write(src.join("index.html"), "<h1>changed</h1>").unwrap();
    env.push(&src, &["--release", "r2"]);
    let r1 = format!("{}@r1", env.target);
    let r2 = format!("{}@r2", env.target);

    // Without --exit-code: 0 whether or not the trees differ.
    assert_eq!(env.run(&["diff", &r1, &r2]).status.code(), Some(0));
    // With it: 0 when equal, 1 when they differ (no error line), 1 plus an error line
    // on failure, 2 on a usage error.
    let same = env.run(&["diff", &r1, &r1, "--exit-code"]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    let differ = env.run(&["diff", &r1, &r2, "--exit-code"]);
    assert_eq!(differ.status.code(), Some(1), "{differ:?}");
    assert!(differ.stderr.is_empty(), "{differ:?}");
    assert!(String::from_utf8_lossy(&differ.stdout).contains("M index.html (content)"));
    let json = env.run(&["diff", &r1, &r2, "--exit-code", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["counts"]["modified"], 1, "{v}");
    let missing = env.run(&["diff", &r1, &format!("{}@r9", env.target), "--exit-code"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(one_line_error(&missing).contains("r9"), "{missing:?}");
    let usage = env.run(&["diff", &r1, "--exit-code"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn a_deployed_tree_equals_its_release_despite_cleared_write_bits() {
    let env = Env::local();
    let src = env.path("src");
    site_with_modes(&src);
    env.push(&src, &["--release", "r1"]);
    let current = format!("{}/current/", env.target);
    let r1 = format!("{}@r1", env.target);
    // The deployed files really are read-only: the comparison has something to ignore.
    let mode = fs::metadata(env.root.join("current/index.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);

    for (a, b) in [
        (current.as_str(), r1.as_str()),
        (r1.as_str(), current.as_str()),
        (src.to_str().unwrap(), current.as_str()),
    ] {
        let out = env.run(&["diff", a, b, "--exit-code"]);
        assert_eq!(out.status.code(), Some(0), "{a} vs {b}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "0 added, 0 removed, 0 modified, 0 renamed\n"
        );
        let note = String::from_utf8_lossy(&out.stderr);
        assert_eq!(note.lines().count(), 1, "{note}");
        assert!(note.contains("without write bits"), "{note}");
    }
    let via_releases = env.root.join("releases/r1");
    let out = env.run(&["diff", via_releases.to_str().unwrap(), &r1, "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A real mode change still shows (0644 -> 0755 is 0444 -> 0555 on the target).
    fs::set_permissions(src.join("index.html"), fs::Permissions::from_mode(0o755)).unwrap();
    env.push(&src, &["--release", "r2"]);
    let out = env.run(&["diff", &current, &r1, "--exit-code"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("M index.html (mode 0555 -> 0444)"),
        "{out:?}"
    );

    // Two plain directories keep exact modes (no note, write bits count).
    let copy = env.path("copy");
    site_with_modes(&copy);
    fs::set_permissions(copy.join("run.sh"), fs::Permissions::from_mode(0o555)).unwrap();
    let out = env.run(&["diff", src.to_str().unwrap(), copy.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("M run.sh (mode 0755 -> 0555)"), "{text}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

conformance!(read_only_commands_on_a_foreign_directory_never_speak_of_writing);

fn read_only_commands_on_a_foreign_directory_never_speak_of_writing(env: Env) {
    fs::create_dir_all(&env.root).unwrap();
    fs::write(env.root.join("index.html"), "someone's site").unwrap();
    let at = format!("{}@current", env.target);
    for args in [
        vec!["releases", env.target.as_str()],
        vec!["verify", env.target.as_str()],
        vec!["diff", at.as_str(), at.as_str()],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let line = one_line_error(&out);
        assert!(line.contains("not a relstore store"), "{args:?}: {line}");
        assert!(!line.contains("writ"), "{args:?}: {line}");
    }
    // A push would write there: it says it refuses to.
    let src = env.path("src");
    site_with_modes(&src);
    let out = env.run(&["push", src.to_str().unwrap(), &env.target]);
    assert!(one_line_error(&out).contains("refusing to write into it"));
}

/// The store's default place, with HOME set and no RELSTORE_STORE_DIR.
fn store_info_without_override(env: &Env) -> serde_json::Value {
    let out = env
        .cmd()
        .env_remove("RELSTORE_STORE_DIR")
        .args(["store", "info", "--json"])
        .output()
        .unwrap();
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn the_default_local_store_has_no_doubled_path_segment() {
    let env = Env::local();
    let src = env.path("src");
    site_with_modes(&src);
    let out = env
        .cmd()
        .env_remove("RELSTORE_STORE_DIR")
        .args(["push", src.to_str().unwrap(), &env.target])
        .output()
        .unwrap();
    stdout(&out);
    let root = env.home.join(".local/share/relstore/store");
    assert!(root.join("relstore-blobstore.toml").is_file());
    let blobs = fs::read_dir(root.join("blobs")).unwrap().count();
    assert!(blobs > 0, "no blob under {}", root.display());
    assert!(!root.join("blobs/blobs").exists());
    let info = store_info_without_override(&env);
    assert_eq!(info["root"], root.to_str().unwrap(), "{info}");
    // What it occupies (as du counts) is at least the compressed bytes it holds.
    let (bytes, disk) = (
        info["bytes"].as_u64().unwrap(),
        info["disk_bytes"].as_u64().unwrap(),
    );
    assert!(bytes > 0 && disk >= bytes, "{info}");

    // A store an earlier version made at …/relstore/blobs is still found when the
    // new place does not exist.
    let env = Env::local();
    let legacy = env.home.join(".local/share/relstore/blobs");
    let out = env
        .cmd()
        .env("RELSTORE_STORE_DIR", &legacy)
        .args(["push", src.to_str().unwrap(), &env.target])
        .output()
        .unwrap();
    stdout(&out);
    let info = store_info_without_override(&env);
    assert_eq!(info["root"], legacy.to_str().unwrap(), "{info}");
    assert!(info["blobs"].as_u64().unwrap() > 0, "{info}");
}
