//! SSH-only acceptance: what only a remote target can run into. Everything a local
//! target can do too (push, rollback, diff, retention, verify, kill -9 of the client at
//! every named step and at random moments, locks, Ctrl-C…) runs over SSH in the
//! conformance suite (`MODULE::ssh::…`); here:
//! - the connection cut under a running push by SIGKILL of the server's processes
//!   serving it (mid-upload, mid-assembly): `current` stays whole, a re-run finishes
//!   uploading exactly what is missing;
//! - connection and permission failures through the CLI: one line naming the host or
//!   path, exit 1, nothing changed on the server;
//! - hostile (non-UTF-8) names round-tripping over SFTP, byte for byte;
//! - the three ways to name a remote target (`ssh://`, `user@host:path` relative to
//!   the login's home, an ssh config `Host` alias).
//!
//! The server is this machine, so results are checked on its disk directly.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    assert_linked_from_objects, assert_same_tree, blobs, one_line_error, private_server, snapshot,
    sshd, sshd_pid, store_fingerprint, Env,
};

// ---------------------------------------------------------------------------------
// The connection cut under a running push.

/// Pids of every process descended from `root` (`root` excluded), from /proc.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Waits for `child` to exit, at most `limit`; kills it and fails if it does not.
pub(crate) fn wait_exit(mut child: std::process::Child, limit: Duration, what: &str) -> Output {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn tmp_entries(env: &Env) -> Vec<String> {
    fs::read_dir(env.root.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Pushes r1, then starts the push of r2 slowed at `pause`; once `ready` says the
/// slowed step is under way, SIGKILLs every process of the server serving it (the
/// per-connection sshd processes, which run the SFTP server). The client must fail
/// with one line naming the host, `current` must still be r1 whole, and a re-run must
/// upload exactly the objects still missing and finish.
fn cut_connection_during(pause: &str, ready: impl Fn(&Env, usize) -> bool, seed: u64) {
    // A server of its own: every process under its listener serves this test only.
    let server = private_server();
    let env = Env::ssh_on(server);
    let v1 = env.site("v1", 250, seed);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.5, seed + 1);
    let objects_before = env.object_files().len();
    let listener = sshd_pid(server);
    // The sessions of the first push end shortly after its client exits.
    let t = Instant::now();
    while !descendants(listener).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a session of the first push is still alive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Without reconnecting: this is about what a lost connection leaves behind (the
    // reconnecting push is in reconnect.rs).
    let mut child = env
        .cmd()
        .args(["push", v2.to_str().unwrap(), &env.target, "--release", "r2"])
        .args(["--retries", "0"])
        .env("RELSTORE_PAUSE_AT", pause)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !ready(&env, objects_before) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{pause}: the push ended ({st}) before its connection could be cut");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{pause}: the slowed step never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sessions = descendants(listener);
    assert!(!sessions.is_empty(), "{pause}: no session process to kill");
    for pid in &sessions {
        // SAFETY: kill(2) on a process of the sshd this test started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    let out = wait_exit(child, Duration::from_secs(60), pause);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{pause}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    eprintln!("{pause}: {line}");
    assert!(
        line.contains("127.0.0.1"),
        "{pause}: the host is not named: {line}"
    );

    // `current` is the old complete release; nothing of r2 is published.
    assert_eq!(env.current().as_deref(), Some("r1"), "{pause}");
    assert_same_tree(&v1, &env.root.join("current"));
    assert!(!env.root.join("releases/r2").exists(), "{pause}");
    assert!(!env.root.join("manifests/r2.manifest").exists(), "{pause}");

    // The re-run breaks the dead client's lock and uploads exactly what is missing.
    let present = env.object_files();
    let missing: Vec<(String, u64)> = blobs(&v2)
        .into_iter()
        .filter(|(k, _)| !present.contains(k))
        .collect();
    let r = env.push(&v2, &["--release", "r2"]);
    assert_eq!(r["objects_uploaded"], missing.len() as u64, "{pause}: {r}");
    assert_eq!(
        r["bytes_uploaded"],
        missing.iter().map(|(_, s)| s).sum::<u64>(),
        "{pause}"
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("current"));
    assert!(tmp_entries(&env).is_empty(), "tmp/ not cleaned");
    assert!(!env.root.join("lock").exists());
}

#[test]
fn connection_cut_mid_upload_keeps_current_and_a_rerun_uploads_only_what_is_missing() {
    cut_connection_during(
        "upload.object:40",
        |env, before| {
            // Some objects of r2 are complete, others still to come.
            env.object_files().len() >= before + 5
                && tmp_entries(env).iter().any(|n| n.starts_with("obj-"))
        },
        120,
    );
}

#[test]
fn connection_cut_mid_assembly_keeps_current_and_a_rerun_uploads_nothing() {
    cut_connection_during(
        "assemble.entry:15",
        |env, _| {
            let partial = env.root.join("tmp/r2.partial");
            partial.is_dir()
                && walkdir::WalkDir::new(&partial)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_file())
                    .count()
                    >= 10
        },
        130,
    );
}

/// A server that stops answering mid-upload (its processes stopped: the TCP connection
/// stays up, nothing comes back): the client gives up within seconds, not minutes, with
/// one line naming the host, how long it waited and the step it was in; `current` is
/// untouched.
#[test]
fn a_stalled_connection_fails_within_seconds_naming_the_host_and_the_step() {
    let server = private_server();
    let env = Env::ssh_on(server);
    let v1 = env.site("v1", 250, 140);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.5, 141);
    let objects_before = env.object_files().len();
    let listener = sshd_pid(server);
    let t = Instant::now();
    while !descendants(listener).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a session is still alive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let child = env
        .cmd()
        .args(["push", v2.to_str().unwrap(), &env.target, "--release", "r2"])
        .args(["--retries", "0"])
        .env("RELSTORE_PAUSE_AT", "upload.object:40")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while env.object_files().len() < objects_before + 5 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the upload never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sessions = descendants(listener);
    assert!(!sessions.is_empty(), "no session process to stop");
    for pid in &sessions {
        // SAFETY: kill(2) on a process of the sshd this test started.
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let stalled = Instant::now();
    let out = wait_exit(child, Duration::from_secs(45), "stalled push");
    let took = stalled.elapsed();
    for pid in &sessions {
        // SAFETY: as above; the stopped processes are ended for good.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    eprintln!("stalled after {took:?}: {line}");
    for needle in ["127.0.0.1", "no answer for", "while uploading objects"] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} to notice: {line}"
    );
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&v1, &env.root.join("current"));
}

// ---------------------------------------------------------------------------------
// Connection and permission failures through the CLI.

/// Runs `cmd` (a push of `src` that must be refused), asserting exit 1, one error line
/// containing every `needle`, and a store root left exactly as it was.
fn refused(env: &Env, mut cmd: Command, needles: &[&str]) -> String {
    let before = store_fingerprint(&env.root);
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    eprintln!("{line}");
    for n in needles {
        assert!(line.contains(n), "{line:?} does not say {n:?}");
    }
    assert_eq!(
        store_fingerprint(&env.root),
        before,
        "a refused connection changed the server"
    );
    line
}

/// A push of a changed tree to `env`'s store (which holds r1).
fn push_cmd(env: &Env, src: &Path, target: &str) -> Command {
    let mut c = env.cmd();
    c.args(["push", src.to_str().unwrap(), target, "--release", "r2"]);
    c
}

#[test]
fn host_key_and_authentication_failures_are_one_line_and_change_nothing() {
    let env = Env::ssh();
    let s = env.server();
    let src = env.site("src", 40, 140);
    env.push(&src, &["--release", "r1"]);
    fs::write(src.join("new.html"), "new").unwrap();

    // Unknown host key: refused with its fingerprint, nothing recorded.
    let empty = env.path("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let mut c = push_cmd(&env, &src, &env.target);
    c.env("RELSTORE_KNOWN_HOSTS", &empty);
    let line = refused(&env, c, &["127.0.0.1", "SHA256:"]);
    assert!(line.contains("unknown"), "{line}");
    assert_eq!(
        fs::read(&empty).unwrap(),
        b"",
        "an unknown key was recorded"
    );

    // Changed host key: refused loudly, even with --accept-new-host-key.
    let other = env.path("other_host_key");
    sshd::keygen(&other);
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut f = other_pub.split_whitespace();
    let changed = env.path("changed_known_hosts");
    let changed_text = format!(
        "[127.0.0.1]:{} {} {}\n",
        s.port,
        f.next().unwrap(),
        f.next().unwrap()
    );
    fs::write(&changed, &changed_text).unwrap();
    let mut c = push_cmd(&env, &src, &env.target);
    c.env("RELSTORE_KNOWN_HOSTS", &changed)
        .arg("--accept-new-host-key");
    let line = refused(&env, c, &["127.0.0.1", "SHA256:"]);
    assert!(line.to_lowercase().contains("changed"), "{line}");
    assert_eq!(fs::read_to_string(&changed).unwrap(), changed_text);

    // A key the server does not know: the methods tried are named.
    let wrong = env.path("wrong_key");
    sshd::keygen(&wrong);
    let mut c = push_cmd(&env, &src, &env.target);
    c.env("RELSTORE_SSH_IDENTITY", &wrong);
    let line = refused(&env, c, &["127.0.0.1", &wrong.display().to_string()]);
    assert!(line.contains("authentication"), "{line}");

    // An ssh-agent holding no keys, and no other identity.
    let agent = s.start_agent(false);
    let mut c = push_cmd(&env, &src, &env.target);
    c.env_remove("RELSTORE_SSH_IDENTITY")
        .env("SSH_AUTH_SOCK", &agent.socket);
    let line = refused(&env, c, &["127.0.0.1"]);
    assert!(line.contains("agent") && line.contains("no keys"), "{line}");
    drop(agent);

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("ssh://{}@127.0.0.1:{port}{}", s.user, env.root.display());
    let line = refused(
        &env,
        push_cmd(&env, &src, &dead),
        &[&format!("127.0.0.1:{port}")],
    );
    assert!(line.to_lowercase().contains("refused"), "{line}");

    // The same failures stop every verb, not only push.
    let mut c = env.cmd();
    c.args(["releases", &env.target])
        .env("RELSTORE_KNOWN_HOSTS", &empty);
    refused(&env, c, &["127.0.0.1"]);
    let mut c = env.cmd();
    c.args(["rollback", &env.target])
        .env("RELSTORE_SSH_IDENTITY", &wrong);
    refused(&env, c, &["127.0.0.1"]);

    // With the right settings, the push goes through.
    env.push(&src, &["--release", "r2"]);
    assert_same_tree(&src, &env.root.join("current"));
}

#[test]
fn a_target_dir_without_write_permission_is_named_and_nothing_changes() {
    let env = Env::ssh();
    let s = env.server();
    let src = env.site("src", 30, 150);
    // Root ignores modes: log in as an unprivileged user then (the temp dir must be
    // traversable by it).
    let user = if sshd::is_root() {
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        "nobody".to_owned()
    } else {
        s.user.clone()
    };
    let locked = env.path("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let before = store_fingerprint(&locked);

    // A new store inside it, and the read-only directory itself as the store root.
    for root in [locked.join("site"), locked.clone()] {
        let target = s.url_as(&user, &root);
        let out = push_cmd(&env, &src, &target).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = one_line_error(&out);
        eprintln!("{line}");
        assert!(
            line.contains(&root.display().to_string()),
            "the path is not named: {line}"
        );
        assert!(
            line.to_lowercase().contains("permission denied"),
            "the cause is not said: {line}"
        );
        assert_eq!(store_fingerprint(&locked), before, "{target} changed");
    }
}

// ---------------------------------------------------------------------------------
// Hostile names.

#[test]
fn non_utf8_names_and_link_targets_round_trip_byte_for_byte() {
    let env = Env::ssh();
    let src = env.site("src", 60, 160);
    let generated: &[u8] = b"docs/caf\xe9.html";
    assert!(
        src.join(OsStr::from_bytes(generated)).is_file(),
        "the fixture generator no longer makes a non-UTF-8 name"
    );
    let odd_dir: &[u8] = b"\xff\xfe dir";
    fs::create_dir(src.join(OsStr::from_bytes(odd_dir))).unwrap();
    let names: Vec<&[u8]> = vec![
        b"\xff\xfe dir/inner \x80.txt",
        b"back\\slash.txt",
        b"new\nline.txt",
        b"tab\tand space.txt",
        b"latin1-\xe0\xe9\xee.html",
        b"emoji-\xf0\x9f\x9a\x80.txt",
    ];
    for (i, n) in names.iter().enumerate() {
        fs::write(src.join(OsStr::from_bytes(n)), format!("content {i}\n")).unwrap();
    }
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"latin1-\xe0\xe9\xee.html"),
        src.join("to-latin1"),
    )
    .unwrap();

    env.push(&src, &["--release", "r1"]);
    let release = env.root.join("releases/r1");
    assert_same_tree(&src, &release);
    assert_linked_from_objects(&env.root, &release);
    for n in names.iter().copied().chain([generated]) {
        assert!(
            release.join(OsStr::from_bytes(n)).is_file(),
            "{:?} did not arrive byte for byte",
            String::from_utf8_lossy(n)
        );
    }
    // The exact bytes of every name in the directory, nothing lossy next to them.
    let listed: BTreeSet<Vec<u8>> = fs::read_dir(release.join(OsStr::from_bytes(odd_dir)))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(
        listed,
        [b"inner \x80.txt".to_vec()]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        fs::read_link(release.join("to-latin1"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"latin1-\xe0\xe9\xee.html"
    );

    // Read back over SFTP too: a manifest-vs-directory diff finds nothing, and a change
    // to one such file is named (escaped) by diff and pushed.
    let same = env.json(&["diff", &format!("{}@r1", env.target), src.to_str().unwrap()]);
    assert_eq!(
        same["counts"],
        serde_json::json!({"added":0,"removed":0,"modified":0,"renamed":0}),
        "{same}"
    );
    fs::write(src.join(OsStr::from_bytes(names[0])), "changed\n").unwrap();
    let d = env.json(&["diff", &format!("{}@r1", env.target), src.to_str().unwrap()]);
    assert_eq!(
        d["modified"][0]["path"], "\\xff\\xfe dir/inner \\x80.txt",
        "{d}"
    );
    let r = env.push(&src, &["--release", "r2"]);
    assert_eq!(r["objects_uploaded"], 1, "{r}");
    assert_same_tree(&src, &env.root.join("current"));
    // Verify reads every tree over SFTP: clean, so every name was listed exactly.
    let v = env.json(&["verify", &env.target]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
}

// ---------------------------------------------------------------------------------
// Ways to name a remote target.

/// push r1, push r2, releases, diff r1 r2, rollback, all through `spec`, whose store
/// is `root` on the server's disk; `extra` goes on every command line.
fn exercise(env: &Env, spec: &str, root: &Path, extra: &[&str]) {
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(extra);
        env.json(&a)
    };
    let v1 = env.site("v1", 80, 170);
    let v2 = env.next_release(&v1, "v2", 0.2, 171);
    let r = run(&["push", v1.to_str().unwrap(), spec, "--release", "r1"]);
    assert_eq!(
        r["objects_uploaded"],
        blobs(&v1).len() as u64,
        "{spec}: {r}"
    );
    run(&["push", v2.to_str().unwrap(), spec, "--release", "r2"]);
    assert_same_tree(&v2, &root.join("current"));

    let l = run(&["releases", spec]);
    assert_eq!(l["current"], "r2", "{spec}: {l}");
    let names: Vec<&str> = l["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1", "r2"], "{spec}");

    let d = run(&["diff", &format!("{spec}@r1"), &format!("{spec}@r2")]);
    let (a, b) = (snapshot(&v1), snapshot(&v2));
    let changed = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
        .count() as u64;
    assert_eq!(d["counts"]["modified"], changed, "{spec}: {d}");
    assert!(
        d["counts"]["added"].as_u64().unwrap() + d["counts"]["renamed"].as_u64().unwrap() > 0,
        "{spec}: {d}"
    );

    let r = run(&["rollback", spec]);
    assert_eq!(r["to"], "r1", "{spec}: {r}");
    assert_eq!(
        fs::read_link(root.join("current")).unwrap(),
        Path::new("releases/r1")
    );
    assert_same_tree(&v1, &root.join("current"));
}

/// Removes a directory (under the login's home) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.0)
            .status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The home directory of `user` as the server sees it.
fn home_of(user: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("echo ~{user}")])
        .output()
        .unwrap();
    let home = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        home.is_absolute() && home.is_dir(),
        "home of {user}: {home:?}"
    );
    home
}

#[test]
fn ssh_url_form_works_for_every_verb() {
    let env = Env::ssh();
    let root = env.root.clone();
    let spec = env.target.clone();
    assert!(spec.starts_with("ssh://"), "{spec}");
    exercise(&env, &spec, &root, &[]);
}

#[test]
fn user_at_host_path_is_relative_to_the_login_home() {
    let mut env = Env::ssh();
    let s = env.server();
    // The scp form has no port: the ssh config supplies it for this host.
    let cfg = env.path("ssh_config");
    fs::write(&cfg, format!("Host 127.0.0.1\n  Port {}\n", s.port)).unwrap();
    env.extra_env
        .push(("RELSTORE_SSH_CONFIG".into(), cfg.into_os_string()));
    let name = format!(
        "relstore-it-home-{}-{}",
        std::process::id(),
        env.dir.path().file_name().unwrap().to_string_lossy()
    );
    let root = home_of(&s.user).join(&name);
    let _cleanup = RemoveOnDrop(root.clone());
    let spec = format!("{}@127.0.0.1:{name}", s.user);
    exercise(&env, &spec, &root, &[]);
}

#[test]
fn an_ssh_config_host_alias_works_for_every_verb() {
    let mut env = Env::ssh();
    let s = env.server();
    // Everything comes from the alias: host, port, user, key (no -i, no env key).
    let cfg = env.path("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host other\n  Port 1\n\nHost deploy-*\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            s.port,
            s.user,
            s.user_key.display()
        ),
    )
    .unwrap();
    env.extra_env
        .push(("RELSTORE_SSH_IDENTITY".into(), "".into()));
    let spec = format!("deploy-web1:{}", env.root.display());
    let root = env.root.clone();
    let cfg = cfg.to_str().unwrap().to_owned();
    exercise(&env, &spec, &root, &["--ssh-config", &cfg]);
    // And the same alias through RELSTORE_SSH_CONFIG.
    env.extra_env
        .push(("RELSTORE_SSH_CONFIG".into(), cfg.into()));
    let l = env.json(&["releases", &spec]);
    assert_eq!(l["current"], "r1", "{l}");
}
