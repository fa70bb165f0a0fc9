//! Helper mode only: what the conformance suite (`MODULE::helper::…`, this relstore on
//! the server's PATH) does not show by itself:
//! - the helper uploaded by the client into `ROOT/.relstore/bin/` (same machine, so
//!   the platform matches), checked, reused, and the same store as over SFTP;
//! - `--helper off` opens no exec channel (sshd's log);
//! - a `relstore` on PATH that speaks another protocol: auto falls back with a note,
//!   require fails in one line;
//! - an installed helper whose content is not this relstore is never run;
//! - SIGKILL of the helper process on the server at named moments: `current` stays
//!   whole, a re-run completes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{
    assert_linked_from_objects, assert_same_tree, one_line_error, private_server_with_path,
    relstore_bin_dir, server, sshd, Env,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed: {}", stderr(&out));
    out
}

/// An SSH environment on `server` whose commands use `mode` (`auto`, `require`).
fn env_with(server: &'static sshd::Sshd, mode: &str) -> Env {
    let mut env = Env::ssh_on(server);
    env.extra_env.push(("RELSTORE_HELPER".into(), mode.into()));
    env
}

/// The helpers installed in the store.
fn installed(env: &Env) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(env.root.join(".relstore/bin")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("relstore-") && !n.ends_with(".ok") && !n.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v
}

fn push_out(env: &Env, src: &Path, release: &str, extra: &[&str]) -> Output {
    let mut a = vec![
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--release",
        release,
    ];
    a.extend_from_slice(extra);
    env.run(&a)
}

/// `sshd`'s log lines that start a command (exec channel), as opposed to SFTP.
fn exec_sessions(server: &sshd::Sshd) -> usize {
    server
        .log()
        .lines()
        .filter(|l| l.contains("Starting session: command"))
        .count()
}

#[test]
fn a_helper_on_path_serves_push_and_is_named() {
    let env = Env::helper();
    let src = env.site("v1", 60, 3);
    let out = ok(push_out(&env, &src, "r1", &[]), "push");
    let err = stderr(&out);
    assert!(
        err.contains("using helper relstore 0.1.0 at relstore"),
        "no helper note: {err}"
    );
    assert_same_tree(&src, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("current"));
    assert!(
        installed(&env).is_empty(),
        "a helper was uploaded: {:?}",
        installed(&env)
    );
    let st = env.json(&["helper", "status", &env.target]);
    assert_eq!(st["helper"], true, "{st}");
    assert_eq!(st["source"], "path", "{st}");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"), "{st}");
    assert_eq!(st["protocol"], 4, "{st}");
}

#[test]
fn the_uploaded_helper_is_checked_reused_and_builds_the_same_store_as_sftp() {
    let env = env_with(server(), "require");
    let sftp = Env::ssh();
    let v1 = env.site("v1", 80, 11);
    let v2 = env.next_release(&v1, "v2", 0.2, 12);
    let out = ok(push_out(&env, &v1, "r1", &[]), "first push");
    let exe = installed(&env);
    assert_eq!(exe.len(), 1, "{exe:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "using helper relstore 0.1.0 at {}",
            exe[0].display()
        )),
        "{err}"
    );
    let meta = fs::metadata(&exe[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        blake3::hash(&fs::read(&exe[0]).unwrap()),
        blake3::hash(&fs::read(env!("CARGO_BIN_EXE_relstore")).unwrap())
    );
    let ino = meta.ino();
    ok(push_out(&env, &v2, "r2", &[]), "second push");
    assert_eq!(fs::metadata(&exe[0]).unwrap().ino(), ino, "re-uploaded");
    let st = env.json(&["helper", "status", &env.target]);
    assert_eq!(st["source"], "installed", "{st}");
    // The same pushes over SFTP give the same releases.
    sftp.push(&v1, &["--release", "r1"]);
    sftp.push(&v2, &["--release", "r2"]);
    for r in ["r1", "r2"] {
        assert_same_tree(
            &sftp.root.join("releases").join(r),
            &env.root.join("releases").join(r),
        );
    }
    assert_eq!(env.object_files(), sftp.object_files());
    let names = |e: &Env| e.json(&["releases", &e.target])["releases"].clone();
    let (a, b) = (names(&env), names(&sftp));
    assert_eq!(a.as_array().unwrap().len(), b.as_array().unwrap().len());
    ok(env.run(&["rollback", &env.target]), "rollback");
    assert_eq!(env.current().as_deref(), Some("r1"));
    ok(env.run(&["verify", &env.target]), "verify");
}

#[test]
fn helper_off_opens_no_exec_channel_and_auto_does() {
    let server = crate::util::private_server();
    let env = env_with(server, "off");
    let src = env.site("v1", 20, 21);
    let out = ok(push_out(&env, &src, "r1", &[]), "push --helper off");
    assert!(!stderr(&out).contains("helper"), "{}", stderr(&out));
    ok(env.run(&["releases", &env.target]), "releases");
    assert_eq!(exec_sessions(server), 0, "{}", server.log());
    assert!(installed(&env).is_empty());
    let auto = env_with(server, "auto");
    let src2 = auto.site("v1", 20, 22);
    ok(push_out(&auto, &src2, "r1", &[]), "push --helper auto");
    assert!(exec_sessions(server) > 0, "{}", server.log());
}

/// A `relstore` that answers with protocol version 99 only.
fn fake_relstore_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relstore-it-fake-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("relstore");
    fs::write(
        &script,
        "#!/bin/sh\nprintf 'RELSTHLP\\143\\000\\143\\000\\0059.9.9'\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_helper_with_another_protocol_falls_back_with_a_note_or_fails_in_one_line() {
    let server = private_server_with_path(&fake_relstore_dir());
    let auto = env_with(server, "auto");
    let src = auto.site("v1", 20, 31);
    // A dry run into a new root installs nothing: SFTP, with one line saying why.
    let out = ok(push_out(&auto, &src, "r1", &["--dry-run"]), "dry run");
    let err = stderr(&out);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("no helper")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("speaks helper protocol 99..=99"), "{err}");
    assert!(notes[0].ends_with("using SFTP"), "{err}");
    let require = env_with(server, "require");
    let out = require.run(&["push", src.to_str().unwrap(), &require.target, "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = one_line_error(&out);
    assert!(line.contains("--helper require"), "{line}");
    assert!(line.contains("speaks helper protocol 99..=99"), "{line}");
    // A real push goes on to upload this relstore, which speaks the same protocol.
    let out = ok(push_out(&auto, &src, "r1", &[]), "push");
    assert!(
        stderr(&out).contains("using helper relstore 0.1.0 at /"),
        "{}",
        stderr(&out)
    );
    let _ = relstore_bin_dir();
}

#[test]
fn an_installed_helper_that_is_not_this_relstore_is_never_run() {
    let env = env_with(server(), "require");
    let v1 = env.site("v1", 20, 41);
    ok(push_out(&env, &v1, "r1", &[]), "first push");
    let exe = installed(&env).pop().unwrap();
    let size = fs::metadata(&exe).unwrap().len();
    let marker = env.path("was-run");
    // Same size, other content: a script that would leave a marker.
    let script = format!("#!/bin/sh\ntouch '{}'\nexit 0\n", marker.display());
    // (Written aside and renamed over it: the first push's helper may still be
    // exiting, and a running executable cannot be opened for writing.)
    let aside = exe.with_extension("swap");
    let f = fs::File::create(&aside).unwrap();
    use std::io::Write;
    (&f).write_all(script.as_bytes()).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    fs::set_permissions(&aside, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&aside, &exe).unwrap();
    let v2 = env.next_release(&v1, "v2", 0.3, 42);
    let out = ok(push_out(&env, &v2, "r2", &[]), "push after the swap");
    assert!(!marker.exists(), "the replaced helper was run");
    assert!(
        stderr(&out).contains("using helper relstore 0.1.0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        blake3::hash(&fs::read(&exe).unwrap()),
        blake3::hash(&fs::read(env!("CARGO_BIN_EXE_relstore")).unwrap()),
        "not uploaded again"
    );
    assert_same_tree(&v2, &env.root.join("current"));
}
