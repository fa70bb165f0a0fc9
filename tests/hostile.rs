//! The hostile-store suite: a store tampered with the way an attacker with write access
//! to it (or a confused operator) would, with plain file-system calls. relstore must
//! never follow a symlink inside the store out of it — never write, delete or serve
//! through one — must never take a symlink for an object, and recovery must never
//! delete a release that was deployed. Each test is named after the bug it guards.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::util::{
    assert_linked_from_objects, assert_same_tree, copy_tree, object_rel, one_line_error, snapshot,
    store_fingerprint, Env, Node,
};

/// A non-empty plain file of `src`: its path, and its object's path under the root.
fn some_file(src: &Path) -> (String, String) {
    snapshot(src)
        .into_iter()
        .find_map(|(p, n)| match n {
            Node::File { mode, size, hash } if size > 0 => {
                let p = String::from_utf8(p).ok()?;
                Some((p, object_rel(&hash, mode)))
            }
            _ => None,
        })
        .expect("the site has a plain file")
}

/// An outside directory with a file in it, standing for data that is not the store's.
fn outside(env: &Env) -> PathBuf {
    let dir = env.path("outside");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("precious.txt"), b"not relstore's to touch\n").unwrap();
    dir
}

/// Replaces the store directory `rel` with a symlink to the directory `to`, its
/// contents moved there (beside what `to` already holds).
fn swap_dir_for_symlink(env: &Env, rel: &str, to: &Path) {
    let p = env.root.join(rel);
    fs::create_dir_all(to).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(p.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
    fs::remove_dir_all(&p).unwrap();
    symlink(to, &p).unwrap();
}

/// Runs relstore; asserts it failed with one error line containing `needle`.
fn fails_naming(env: &Env, args: &[&str], needle: &str) -> String {
    let out = env.run(args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = one_line_error(&out);
    assert!(line.contains(needle), "{args:?}: {line}");
    line
}

/// Bug 3: an object replaced by a symlink to an outside file with the same content
/// passed `verify`, and `verify --repair` relinked a deployed path into that symlink.
fn bug3_symlinked_object_is_reported_by_verify_and_repaired(env: Env) {
    let v1 = env.site("v1", 40, 31);
    env.push(&v1, &["--release", "r1"]);
    let (path, object) = some_file(&v1);
    let secret = env.path("secret");
    fs::copy(env.root.join(&object), &secret).unwrap();
    fs::remove_file(env.root.join(&object)).unwrap();
    symlink(&secret, env.root.join(&object)).unwrap();
    // A deployed path that repair must re-create from the object.
    fs::remove_file(env.root.join("releases/r1").join(&path)).unwrap();

    let out = env.run(&["verify", &env.target, "--json"]);
    assert!(!out.status.success(), "verify passed a symlinked object");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("is a symlink, not a regular file"),
        "{report}"
    );

    env.json(&["verify", &env.target, "--repair"]);
    let meta = fs::symlink_metadata(env.root.join(&object)).unwrap();
    assert!(meta.file_type().is_file(), "{object} is still not a file");
    assert_same_tree(&v1, &env.root.join("releases/r1"));
    assert_linked_from_objects(&env.root, &env.root.join("releases/r1"));
}

/// Bug 3: the next push hardlinked a symlinked object into the new release
/// (`releases/r2/b -> /outside/secret`).
fn bug3_push_never_links_a_symlinked_object(env: Env) {
    let v1 = env.site("v1", 40, 32);
    env.push(&v1, &["--release", "r1"]);
    let (_, object) = some_file(&v1);
    let secret = env.path("secret");
    fs::copy(env.root.join(&object), &secret).unwrap();
    fs::remove_file(env.root.join(&object)).unwrap();
    symlink(&secret, env.root.join(&object)).unwrap();
    let v2 = env.path("v2");
    copy_tree(&v1, &v2);
    fs::write(v2.join("hostile-new.txt"), b"a new file\n").unwrap();

    let out = env.run(&["push", v2.to_str().unwrap(), &env.target, "--release", "r2"]);
    if out.status.success() {
        assert_same_tree(&v2, &env.root.join("releases/r2"));
        assert_linked_from_objects(&env.root, &env.root.join("releases/r2"));
    } else {
        let line = one_line_error(&out);
        assert!(line.contains("is a symlink, not a regular file"), "{line}");
        assert!(!env.root.join("releases/r2").exists());
    }
    assert!(fs::symlink_metadata(&secret).unwrap().is_file());
}

/// Bug 4: `releases/r1` replaced by a symlink to an outside directory was served by
/// `rollback r1`.
fn bug4_rollback_refuses_a_release_dir_symlinked_outside(env: Env) {
    let v1 = env.site("v1", 20, 41);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.2, 42);
    env.push(&v2, &["--release", "r2"]);
    let out = outside(&env);
    swap_dir_for_symlink(&env, "releases/r1", &out);
    let before = store_fingerprint(&out);
    fails_naming(
        &env,
        &["rollback", &env.target, "r1"],
        "releases/r1 is a symlink; refusing to follow it out of the store",
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_eq!(store_fingerprint(&out), before);
}

/// Bug 4: `verify --repair` wrote into an outside directory that `releases/r1` was a
/// symlink to.
fn bug4_repair_never_writes_through_a_symlinked_release_dir(env: Env) {
    let v1 = env.site("v1", 20, 43);
    env.push(&v1, &["--release", "r1"]);
    let out = outside(&env);
    let copy = out.join("r1");
    copy_tree(&env.root.join("releases/r1"), &copy);
    fs::remove_dir_all(env.root.join("releases/r1")).unwrap();
    symlink(&copy, env.root.join("releases/r1")).unwrap();
    let (path, _) = some_file(&v1);
    fs::remove_file(copy.join(&path)).unwrap();
    let before = store_fingerprint(&out);
    fails_naming(
        &env,
        &["verify", &env.target, "--repair"],
        "releases/r1 is a symlink; refusing to follow it out of the store",
    );
    assert_eq!(store_fingerprint(&out), before);
}

/// Bug 4: with `tmp/` a symlink to an outside directory, the next push deleted that
/// directory's contents.
fn bug4_push_never_empties_a_tmp_symlinked_outside(env: Env) {
    let v1 = env.site("v1", 20, 44);
    env.push(&v1, &["--release", "r1"]);
    let out = outside(&env);
    swap_dir_for_symlink(&env, "tmp", &out);
    let before = store_fingerprint(&out);
    let v2 = env.next_release(&v1, "v2", 0.2, 45);
    fails_naming(
        &env,
        &["push", v2.to_str().unwrap(), &env.target],
        "tmp is a symlink; refusing to follow it out of the store",
    );
    assert_eq!(store_fingerprint(&out), before);
}

/// Bug 4: with `objects/xx` a symlink to an outside directory, objects were written
/// outside and `prune` deleted outside files.
fn bug4_objects_prefix_symlinked_outside_is_never_written_or_pruned(env: Env) {
    let v1 = env.site("v1", 40, 46);
    env.push(&v1, &["--release", "r1"]);
    let (_, object) = some_file(&v1);
    let prefix = object[..object.rfind('/').unwrap()].to_owned();
    let out = outside(&env);
    swap_dir_for_symlink(&env, &prefix, &out);
    // An outside file named like an object no release uses: prune would delete it.
    let fake = format!("{}+0444", "0".repeat(62));
    fs::write(out.join(fake), b"outside\n").unwrap();
    let before = store_fingerprint(&out);
    let needle = format!("{prefix} is a symlink; refusing to follow it out of the store");
    fails_naming(&env, &["prune", &env.target, "--keep", "1"], &needle);
    assert_eq!(store_fingerprint(&out), before);
    // A push of new content under that prefix must not write there either.
    let v2 = env.path("v2");
    copy_tree(&v1, &v2);
    for i in 0..64 {
        fs::write(
            v2.join(format!("new-{i}.txt")),
            format!("new content {i}\n"),
        )
        .unwrap();
    }
    let pushed = env.run(&["push", v2.to_str().unwrap(), &env.target]);
    assert!(!pushed.status.success(), "push through a symlinked prefix");
    assert!(one_line_error(&pushed).contains("is a symlink; refusing to follow it"));
    assert_eq!(store_fingerprint(&out), before);
}

/// Bug 4: `manifests/` or `pins/` as a symlink to an outside directory.
fn bug4_manifests_and_pins_symlinked_outside_are_refused(env: Env) {
    let v1 = env.site("v1", 10, 47);
    env.push(&v1, &["--release", "r1"]);
    let out = outside(&env);
    fs::create_dir_all(out.join("pins")).unwrap();
    swap_dir_for_symlink(&env, "pins", &out.join("pins"));
    let before = store_fingerprint(&out);
    fails_naming(
        &env,
        &["pin", &env.target, "r1"],
        "pins is a symlink; refusing to follow it out of the store",
    );
    assert_eq!(store_fingerprint(&out), before);
    fs::remove_file(env.root.join("pins")).unwrap();
    fs::create_dir_all(out.join("manifests")).unwrap();
    swap_dir_for_symlink(&env, "manifests", &out.join("manifests"));
    let before = store_fingerprint(&out);
    let v2 = env.next_release(&v1, "v2", 0.2, 48);
    fails_naming(
        &env,
        &["push", v2.to_str().unwrap(), &env.target],
        "manifests is a symlink; refusing to follow it out of the store",
    );
    assert_eq!(store_fingerprint(&out), before);
}

/// Bug 7: with `manifests/r1.manifest` gone, the next push removed the deployed
/// `releases/r1` as "left by a push that was interrupted before its swap".
fn bug7_recovery_keeps_a_deployed_release_whose_manifest_is_missing(env: Env) {
    let v1 = env.site("v1", 20, 71);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.2, 72);
    env.push(&v2, &["--release", "r2"]);
    fs::remove_file(env.root.join("manifests/r1.manifest")).unwrap();
    let v3 = env.next_release(&v2, "v3", 0.2, 73);
    let out = env.run(&["push", v3.to_str().unwrap(), &env.target, "--release", "r3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("releases/r1"),
        "the kept release is not reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&v1, &env.root.join("releases/r1"));
    assert_eq!(env.current().as_deref(), Some("r3"));
}

/// `current` made a directory: every command failed with "Invalid argument (os error
/// 22)".
fn current_as_a_directory_is_named_in_one_line(env: Env) {
    let v1 = env.site("v1", 10, 81);
    env.push(&v1, &["--release", "r1"]);
    fs::remove_file(env.root.join("current")).unwrap();
    fs::create_dir(env.root.join("current")).unwrap();
    let line = fails_naming(
        &env,
        &["releases", &env.target],
        "current is a directory, not a symlink",
    );
    assert!(!line.contains("os error"), "{line}");
}

/// The target a dangling symlink: a push failed with a bare "File exists".
fn dangling_symlink_target_is_named_in_one_line(env: Env) {
    let v1 = env.site("v1", 5, 82);
    fs::create_dir_all(env.root.parent().unwrap()).unwrap();
    symlink(env.path("nowhere"), &env.root).unwrap();
    let line = fails_naming(
        &env,
        &["push", v1.to_str().unwrap(), &env.target],
        "is a symlink to",
    );
    assert!(line.contains("which does not exist"), "{line}");
    assert!(!env.path("nowhere").exists());
}

/// A manifest file for release `name` whose header declares `entries` entries and whose
/// body repeats one tiny directory entry that many times: a few KB on disk that
/// decompress to hundreds of megabytes of entries.
fn bomb_manifest(name: &str, entries: u64) -> Vec<u8> {
    use relstore_core::manifest::{Header, Totals};
    use relstore_core::{Entry, EntryKind};
    let cfg = bincode::config::standard();
    let header = Header {
        release: name.into(),
        created_unix_ns: 1,
        tool_version: "0".into(),
        totals: Totals {
            entries,
            dirs: entries,
            ..Totals::default()
        },
    };
    let one = Entry {
        path: b"a".to_vec(),
        kind: EntryKind::Dir { mode: 0o755 },
    };
    let one = bincode::serde::encode_to_vec(&one, cfg).unwrap();
    let mut body = bincode::serde::encode_to_vec(entries, cfg).unwrap();
    for _ in 0..entries {
        body.extend_from_slice(&one);
    }
    let header = bincode::serde::encode_to_vec(&header, cfg).unwrap();
    let zbody = zstd::bulk::compress(&body, 3).unwrap();
    let mut out = b"RELSTMF\n".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&(zbody.len() as u64).to_le_bytes());
    out.extend_from_slice(&zbody);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Bug 2: a manifest of a few KB decompressing to millions of tiny entries stayed under
/// the body cap, and verify, prune and rollback then took gigabytes or aborted on a
/// failed allocation (exit 134). Every command now refuses it in one line, at once.
fn bug2_manifest_decompression_bomb_is_refused_by_every_command(env: Env) {
    let src = env.site("src", 30, 90);
    env.push(&src, &["--release", "r1"]);
    fs::write(src.join("new.html"), "new").unwrap();
    env.push(&src, &["--release", "r2"]);
    let bomb = bomb_manifest("r1", 8_000_000);
    assert!(bomb.len() < 64 * 1024, "a bomb is small: {}", bomb.len());
    fs::write(env.root.join("manifests/r1.manifest"), &bomb).unwrap();
    let started = std::time::Instant::now();
    for args in [
        vec!["verify", env.target.as_str()],
        vec!["verify", env.target.as_str(), "r1"],
        vec!["rollback", env.target.as_str(), "r1"],
        vec!["prune", env.target.as_str(), "--keep", "1"],
        vec!["releases", env.target.as_str()],
    ] {
        let out = env.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?} ended with {:?}: {stderr}",
            out.status
        );
        assert!(!stderr.contains("memory allocation"), "{args:?}: {stderr}");
    }
    // verify reports the manifest as a problem (naming it and why) and exits 1.
    let out = env.run(&["verify", &env.target, "r1"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("r1.manifest") && said.contains("decompression bomb"),
        "{said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the bomb was decoded: {:?}",
        started.elapsed()
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
}

conformance!(
    bug2_manifest_decompression_bomb_is_refused_by_every_command,
    bug3_symlinked_object_is_reported_by_verify_and_repaired,
    bug3_push_never_links_a_symlinked_object,
    bug4_rollback_refuses_a_release_dir_symlinked_outside,
    bug4_repair_never_writes_through_a_symlinked_release_dir,
    bug4_push_never_empties_a_tmp_symlinked_outside,
    bug4_objects_prefix_symlinked_outside_is_never_written_or_pruned,
    bug4_manifests_and_pins_symlinked_outside_are_refused,
    bug7_recovery_keeps_a_deployed_release_whose_manifest_is_missing,
    current_as_a_directory_is_named_in_one_line,
    dangling_symlink_target_is_named_in_one_line,
);

/// `objects/` on another file system (a tmpfs mounted there): uploads failed with a
/// raw "Invalid cross-device link". Local only: it needs mount(2) (root), and over
/// SFTP the server reports the error as a bare "Failure". Skipped without root.
#[test]
fn objects_on_another_file_system_is_named_in_one_line() {
    let env = Env::local();
    let v0 = env.site("v0", 2, 84);
    let v1 = env.site("v1", 10, 83);
    // Lay out the store first, then mount another file system over its objects/.
    env.push(&v0, &["--release", "r0"]);
    let objects = env.root.join("objects");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "relstore-test", objects.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(objects);
    let line = fails_naming(
        &env,
        &["push", v1.to_str().unwrap(), &env.target, "--release", "r1"],
        "must be on one file system",
    );
    assert!(line.contains("objects") && line.contains("tmp"), "{line}");
}
