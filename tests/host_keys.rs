//! Host keys through the `relstore` binary: a key known only from a global
//! known_hosts file (`RELSTORE_GLOBAL_KNOWN_HOSTS`, as `/etc/ssh/ssh_known_hosts` is
//! shared by the machine), a `@revoked` key refused on one line naming the host, and
//! `--retries` that is not a number refused as a usage error.

use crate::util::{one_line_error, store_fingerprint, Env};

#[test]
fn a_host_key_only_in_a_global_file_is_trusted_and_a_revoked_one_refused() {
    let env = Env::ssh();
    let src = env.site("src", 20, 160);
    let empty = env.path("user_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let global = env.server().known_hosts.clone();
    let out = env
        .cmd()
        .args([
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--release",
            "r1",
        ])
        .env("RELSTORE_KNOWN_HOSTS", &empty)
        .env("RELSTORE_GLOBAL_KNOWN_HOSTS", &global)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(std::fs::read(&empty).unwrap(), b"", "nothing recorded");

    // The same key revoked in a second global file: refused, nothing changed.
    let line = std::fs::read_to_string(&global).unwrap();
    let key = line.split_once(' ').unwrap().1.trim();
    let revoked = env.path("revoked_known_hosts");
    std::fs::write(&revoked, format!("@revoked * {key}\n")).unwrap();
    let before = store_fingerprint(&env.root);
    let out = env
        .cmd()
        .args([
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--release",
            "r2",
        ])
        .env("RELSTORE_KNOWN_HOSTS", &empty)
        .env(
            "RELSTORE_GLOBAL_KNOWN_HOSTS",
            format!("{}:{}", global.display(), revoked.display()),
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    for needle in ["REVOKED", "127.0.0.1", "revoked_known_hosts:1", "SHA256:"] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    assert_eq!(store_fingerprint(&env.root), before);
}

#[test]
fn retries_must_be_a_number() {
    let env = Env::local();
    let src = env.site("src", 3, 161);
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--retries",
        "many",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--retries"), "{err}");
    assert!(!env.root.exists());
}
