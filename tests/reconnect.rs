//! A push whose connection drops: through a TCP proxy that the test cuts mid-upload,
//! `--retries 0` fails with one line naming the host and the step, and the default
//! (`--retries 3`) reconnects and finishes by itself, uploading only what the target
//! still lacked and taking back the lock its lost connection left.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::ssh::{descendants, wait_exit};
use crate::util::cut_proxy::CutProxy;
use crate::util::{
    assert_linked_from_objects, assert_same_tree, blobs, one_line_error, private_server,
    private_server_with_path, relstore_bin_dir, sshd, sshd_pid, Env, Kind,
};

/// A push of `src` as r2 through `proxy`, slowed so it can be cut mid-upload: over
/// SFTP per object; through a helper (which receives objects as fast as the client
/// sends them) after the upload, so the cut surely comes before the push ends.
fn spawn_push(
    env: &Env,
    server: &sshd::Sshd,
    proxy: &CutProxy,
    src: &Path,
    extra: &[&str],
) -> Child {
    let target = env
        .target
        .replace(&format!(":{}/", server.port), &format!(":{}/", proxy.port));
    assert_ne!(target, env.target, "the target goes through the proxy");
    // The server's key, for whatever port the proxy listens on (a wildcard line).
    let line = std::fs::read_to_string(&server.known_hosts).unwrap();
    let key = line.split_once(' ').unwrap().1;
    let kh = env.path("proxy_known_hosts");
    std::fs::write(&kh, format!("[127.0.0.1]:* {key}")).unwrap();
    env.cmd()
        .args([
            "push",
            src.to_str().unwrap(),
            &target,
            "--release",
            "r2",
            "--json",
        ])
        .args(extra)
        .env("RELSTORE_KNOWN_HOSTS", &kh)
        .env(
            "RELSTORE_PAUSE_AT",
            match env.kind {
                Kind::Ssh => "upload.object:40",
                _ => "push.uploaded:3000",
            },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until some objects of the push are stored and more are coming, then cuts
/// the proxy and waits for the server's side of the connection to be gone.
fn cut_mid_upload(
    env: &Env,
    server: &sshd::Sshd,
    proxy: &CutProxy,
    before: usize,
    child: &mut Child,
) {
    let pid = child.id();
    // Over SFTP: some objects stored, more to come. Through a helper (which may hold
    // every object already): the push holds the lock, then pauses after the upload.
    let ready = || match env.kind {
        Kind::Ssh => env.object_files().len() >= before + 5,
        // This push's lock (a killed earlier push may have left its own); by then
        // the helper runs (a loss while it starts is not retried yet).
        _ => std::fs::read(env.root.join("lock"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["pid"] == pid),
    };
    let t = Instant::now();
    while !ready() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the push ended ({st}) before its connection could be cut");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the upload never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if env.kind != Kind::Ssh {
        std::thread::sleep(Duration::from_millis(300));
    }
    proxy.cut();
    let listener = sshd_pid(server);
    let t = Instant::now();
    // A helper outlives its session (re-parented) while it stores what it received.
    while !descendants(listener).is_empty() || helper_running(&env.root) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the server still serves the cut connection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a `relstore serve` for `root` still runs (from /proc).
fn helper_running(root: &Path) -> bool {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("serve") && c.contains(&root)
        })
    })
}

fn cut_push_reconnects(kind: Kind, server: &'static sshd::Sshd) {
    let env = Env::remote_on(kind, server);
    let v1 = env.site("v1", 250, 150);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.5, 151);
    let proxy = CutProxy::start(server.port);

    // --retries 0: the cut is the end, on one line naming the host and the step.
    let before = env.object_files().len();
    let mut child = spawn_push(&env, server, &proxy, &v2, &["--retries", "0"]);
    cut_mid_upload(&env, server, &proxy, before, &mut child);
    proxy.open();
    let out = wait_exit(child, Duration::from_secs(60), "push --retries 0");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    eprintln!("--retries 0: {line}");
    // A helper may have received every object already: the cut then lands on a
    // later request, which says the connection closed.
    let step = match kind {
        Kind::Ssh => "connection lost while uploading objects",
        _ => "connection",
    };
    for needle in ["127.0.0.1", step] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    assert!(!line.contains("reconnect"), "{line}");
    assert_eq!(env.current().as_deref(), Some("r1"));

    // Default retries: cut again; the push continues by itself.
    let before = env.object_files().len();
    let accepted = proxy.accepted();
    let mut child = spawn_push(&env, server, &proxy, &v2, &[]);
    cut_mid_upload(&env, server, &proxy, before, &mut child);
    let present = env.object_files();
    let missing: Vec<(String, u64)> = blobs(&v2)
        .into_iter()
        .filter(|(k, _)| !present.contains(k))
        .collect();
    // Over SFTP the cut stops the upload; a helper that had already received the
    // objects stores them all before it notices, and the second attempt sends none.
    if kind == Kind::Ssh {
        assert!(!missing.is_empty(), "the cut came after the last object");
    }
    proxy.open();
    let out = wait_exit(child, Duration::from_secs(90), "reconnecting push");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "{kind:?}: {} objects missing after the cut; the continued push uploaded {} objects, {} bytes, reconnects {}",
        missing.len(),
        r["objects_uploaded"],
        r["bytes_uploaded"],
        r["reconnects"]
    );
    assert_eq!(r["reconnects"], 1, "{r}");
    assert_eq!(r["release"], "r2", "{r}");
    assert_eq!(
        r["objects_uploaded"],
        missing.len() as u64,
        "only what was missing: {r}"
    );
    assert_eq!(
        r["bytes_uploaded"],
        missing.iter().map(|(_, s)| s).sum::<u64>(),
        "{r}"
    );
    assert!(
        stderr.contains("reconnecting in 1 s (retry 1 of 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("taking back the lock"), "{stderr}");
    assert!(
        proxy.accepted() >= accepted + 2,
        "a second connection was made"
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("current"));
    assert!(!env.root.join("lock").exists());
}

#[test]
fn a_push_cut_mid_upload_over_sftp_reconnects_and_uploads_only_what_is_missing() {
    cut_push_reconnects(Kind::Ssh, private_server());
}

/// The same through a helper. The cut can land while the client is writing the
/// object stream: the write must end with the channel, not wait for window space that
/// never comes (it once hung here).
#[test]
fn a_push_cut_mid_upload_through_the_helper_reconnects_and_uploads_only_what_is_missing() {
    cut_push_reconnects(Kind::Helper, private_server_with_path(&relstore_bin_dir()));
}

/// A server that stays unreachable after the cut: each reconnection fails, with
/// growing waits, until `--retries` is used up; the error says so and names the step
/// where the connection was lost first.
#[test]
fn a_push_gives_up_after_its_retries_when_the_server_stays_down() {
    let server = private_server();
    let env = Env::remote_on(Kind::Ssh, server);
    let v1 = env.site("v1", 250, 170);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.5, 171);
    let proxy = CutProxy::start(server.port);
    let before = env.object_files().len();
    let mut child = spawn_push(&env, server, &proxy, &v2, &["--retries", "2"]);
    cut_mid_upload(&env, server, &proxy, before, &mut child);
    let accepted = proxy.accepted();
    proxy.refuse();
    let t = Instant::now();
    let out = wait_exit(
        child,
        Duration::from_secs(60),
        "push to a server that is down",
    );
    let took = t.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    eprintln!("after {took:?}: {line}");
    for needle in [
        "connection lost while uploading objects",
        "gave up after 2 reconnections (--retries)",
        "127.0.0.1",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connection lost while uploading objects"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reconnecting in 1 s (retry 1 of 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reconnecting in 2 s (retry 2 of 2)"),
        "{stderr}"
    );
    assert_eq!(proxy.accepted(), accepted + 2, "one connection per retry");
    // Waited 1 s and 2 s, and no more.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
}
