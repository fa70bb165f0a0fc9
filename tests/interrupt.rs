//! Ctrl-C: a real SIGINT (or SIGTERM) to the real process in the middle of a push stops
//! it cleanly: exit 130 (143), lock released, `current` and every release untouched,
//! nothing new outside `tmp/` and `objects/` (and only complete objects there), and a
//! re-run finishes the push.
//!
//! `RELSTORE_PAUSE_AT=POINT:MS` slows the chosen step (every object uploaded, every
//! entry assembled) so that the signal lands inside it whatever the machine's speed.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{assert_same_tree, store_fingerprint, Env};

/// The store without `tmp/` and `objects/` (and the root's own entry, whose size a
/// transient lock file may change on some file systems).
fn outside_tmp_and_objects(root: &Path) -> Vec<(Vec<u8>, String)> {
    let skip: Vec<Vec<u8>> = ["tmp", "objects"]
        .iter()
        .map(|d| root.join(d).into_os_string().into_encoded_bytes())
        .collect();
    let root_bytes = root.as_os_str().as_encoded_bytes().to_vec();
    store_fingerprint(root)
        .into_iter()
        .filter(|(p, _)| *p != root_bytes && !skip.iter().any(|s| p.starts_with(s)))
        .collect()
}

/// Every file under objects/ holds exactly the content its name says.
fn objects_are_complete(env: &Env) {
    for name in env.object_files() {
        let hex = &name[..64];
        let rel = format!("objects/{}/{}", &name[..2], &name[2..]);
        let content = std::fs::read(env.root.join(&rel)).unwrap();
        assert_eq!(
            blake3::hash(&content).to_hex().as_str(),
            hex,
            "{rel} is partial"
        );
    }
}

/// Starts a push of `src` as `release` with a pause at `pause`, waits until `ready`
/// says the slowed step is under way, sends `signal`; returns the exit code and how
/// long the process took to exit after the signal.
fn interrupt_push(
    env: &Env,
    src: &Path,
    release: &str,
    pause: &str,
    ready: impl Fn() -> bool,
    signal: i32,
) -> (Option<i32>, Duration, String) {
    let mut child: Child = env
        .cmd()
        .args([
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--release",
            release,
        ])
        .env("RELSTORE_PAUSE_AT", pause)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the slowed step never started"
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!("push ended before it could be interrupted: {st}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    (
        out.status.code(),
        took,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp_has(env: &Env, prefix: &str) -> bool {
    std::fs::read_dir(env.root.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .unwrap_or(false)
}

fn check_stopped_cleanly(env: &Env, v1: &Path, before: &[(Vec<u8>, String)]) {
    assert!(!env.root.join("lock").exists(), "lock not released");
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(v1, &env.root.join("current"));
    assert_eq!(
        outside_tmp_and_objects(&env.root),
        before,
        "something outside tmp/ and objects/ changed"
    );
    objects_are_complete(env);
}

fn sigint_during_upload_exits_130_releases_the_lock_and_a_rerun_finishes(env: Env) {
    let v1 = env.site("v1", 200, 31);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.5, 32);
    let before = outside_tmp_and_objects(&env.root);

    let (code, took, stderr) = interrupt_push(
        &env,
        &v2,
        "r2",
        "upload.object:40",
        || tmp_has(&env, "obj-"),
        libc::SIGINT,
    );
    eprintln!("exit {code:?} {took:?} after SIGINT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    check_stopped_cleanly(&env, &v1, &before);

    let r = env.push(&v2, &["--release", "r2"]);
    assert_eq!(r["release"], "r2");
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("current"));
    assert!(!env.root.join("lock").exists());
}

fn sigterm_during_assembly_exits_143_and_leaves_the_partial_tree_in_tmp(env: Env) {
    let v1 = env.site("v1", 150, 33);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.2, 34);
    let before = outside_tmp_and_objects(&env.root);

    let (code, took, stderr) = interrupt_push(
        &env,
        &v2,
        "r2",
        "assemble.entry:20",
        || tmp_has(&env, "r2.partial"),
        libc::SIGTERM,
    );
    eprintln!("exit {code:?} {took:?} after SIGTERM");
    assert_eq!(code, Some(143), "{stderr}");
    assert!(took < Duration::from_secs(2), "took {took:?} to stop");
    check_stopped_cleanly(&env, &v1, &before);

    // Objects were all uploaded before the assembly: the re-run uploads nothing.
    let r = env.push(&v2, &["--release", "r2"]);
    assert_eq!(r["objects_uploaded"], 0, "{r}");
    assert_same_tree(&v2, &env.root.join("current"));
    let tmp_left = std::fs::read_dir(env.root.join("tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "tmp/ not cleaned by the re-run");
}

conformance!(
    sigint_during_upload_exits_130_releases_the_lock_and_a_rerun_finishes,
    sigterm_during_assembly_exits_143_and_leaves_the_partial_tree_in_tmp,
);
