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
            n.starts_with("relstore-") && !n.contains('.')
                || n.starts_with("relstore-0") && n.matches('.').count() == 2 && !n.ends_with(".ok")
        })
        .collect();
    v.sort();
    v
}

fn push_out(env: &Env, src: &Path, release: &str, extra: &[&str]) -> Output {
    let mut a = vec!["push", src.to_str().unwrap(), &env.target, "--release", release];
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
    assert!(installed(&env).is_empty(), "a helper was uploaded: {:?}", installed(&env));
    let st = env.json(&["helper", "status", &env.target]);
    assert_eq!(st["helper"], true, "{st}");
    assert_eq!(st["source"], "path", "{st}");
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"), "{st}");
    assert_eq!(st["protocol"], 1, "{st}");
}
