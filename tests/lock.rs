//! The store lock: held locks stop a second command at once (or make it wait), stale
//! locks of dead processes are broken with a note, foreign ones only on request.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::util::{one_line_error, Env};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// Writes a lock held by `pid` on `host`.
fn hold(env: &Env, host: &str, pid: u32) {
    let lock = serde_json::json!({
        "host": host, "pid": pid, "pid_start": null,
        "started_unix_ns": 1_795_325_412_000_000_000i64,
        "command": "push", "tool_version": "test",
    });
    std::fs::write(env.root.join("lock"), lock.to_string()).unwrap();
}

fn sleeper() -> Child {
    Command::new("sleep").arg("60").spawn().unwrap()
}

fn a_held_lock_stops_a_second_push_at_once_naming_the_holder(env: Env) {
    let src = env.site("src", 30, 40);
    env.push(&src, &["--release", "r1"]);
    let mut holder = sleeper();
    hold(&env, &hostname(), holder.id());
    std::fs::write(src.join("new.html"), "x").unwrap();
    let t = Instant::now();
    let out = env.run(&["push", src.to_str().unwrap(), &env.target]);
    assert!(t.elapsed() < Duration::from_secs(5), "did not fail at once");
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(line.contains(&format!("pid {}", holder.id())), "{line}");
    assert!(line.contains(&hostname()), "{line}");
    assert_eq!(env.current().as_deref(), Some("r1"));

    // --wait: succeeds once the holder lets go.
    let mut waiting = env
        .cmd()
        .args([
            "push",
            src.to_str().unwrap(),
            &env.target,
            "--wait",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(waiting.try_wait().unwrap().is_none(), "did not wait");
    assert_eq!(env.current().as_deref(), Some("r1"));
    std::fs::remove_file(env.root.join("lock")).unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(env.current().as_deref(), Some("r1"));

    // --wait-timeout gives up with the holder's details.
    hold(&env, &hostname(), holder.id());
    std::fs::write(src.join("newer.html"), "y").unwrap();
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--wait-timeout",
        "0.3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains(&format!("pid {}", holder.id())));
    holder.kill().unwrap();
    holder.wait().unwrap();
}

fn a_lock_of_a_dead_process_on_this_host_is_broken_with_a_message(env: Env) {
    let src = env.site("src", 30, 41);
    env.push(&src, &["--release", "r1"]);
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    hold(&env, &hostname(), pid);
    std::fs::write(src.join("new.html"), "x").unwrap();
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--release",
        "r2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stale lock") && stderr.contains(&format!("pid {pid}")),
        "{stderr}"
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert!(!env.root.join("lock").exists(), "lock not released");
}

fn a_lock_from_another_host_needs_break_lock(env: Env) {
    let src = env.site("src", 30, 42);
    env.push(&src, &["--release", "r1"]);
    hold(&env, "build-server-7", 4242);
    std::fs::write(src.join("new.html"), "x").unwrap();
    let out = env.run(&["push", src.to_str().unwrap(), &env.target]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("build-server-7"));
    let out = env.run(&["rollback", &env.target]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rollback must respect the lock too"
    );
    let out = env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.target,
        "--break-lock",
        "--release",
        "r2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--break-lock"));
    assert_eq!(env.current().as_deref(), Some("r2"));
}

fn two_real_pushes_at_once_never_interleave(env: Env) {
    // Race two real pushes: whichever takes the lock second fails naming the holder
    // (or finds the work done), and `current` is always one complete tree.
    let a = env.site("a", 1500, 43);
    let b = env.site("b", 1500, 44);
    env.push(&a, &["--release", "r0"]);
    let spawn = |src: &std::path::Path, name: &str| {
        env.cmd()
            .args([
                "push",
                src.to_str().unwrap(),
                &env.target,
                "--release",
                name,
            ])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let pa = spawn(&b, "ra");
    let pb = spawn(&a, "rb");
    let oa = pa.wait_with_output().unwrap();
    let ob = pb.wait_with_output().unwrap();
    for o in [&oa, &ob] {
        if !o.status.success() {
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("locked by"), "unexpected failure: {e}");
        }
    }
    assert!(oa.status.success() || ob.status.success());
    let cur = env.current().unwrap();
    let expected = if cur == "ra" { &b } else { &a };
    crate::util::assert_same_tree(expected, &env.root.join("current"));
}

/// Regression: a push that started earlier (and was slower to reach the lock) but
/// published later was listed below the release it replaced, and `rollback` then
/// skipped the release that had been live in between. Releases are ordered by when
/// they went live.
fn publish_order(env: Env) {
    let early_src = env.site("early", 30, 41);
    let late_src = env.site("late", 30, 42);
    env.push(&early_src, &["--release", "r1"]);
    std::fs::write(early_src.join("a.html"), "a").unwrap();
    // `early` starts first and stops between its scan and taking the lock...
    let mut early = env
        .cmd()
        .args(["push", early_src.to_str().unwrap(), &env.target])
        .args(["--release", "early", "--wait"])
        .env("RELSTORE_PAUSE_AT", "push.scanned:6000")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // ...while `late`, started after it, goes live first.
    let late = env.run(&[
        "push",
        late_src.to_str().unwrap(),
        &env.target,
        "--release",
        "late",
    ]);
    assert!(
        late.status.success(),
        "{}",
        String::from_utf8_lossy(&late.stderr)
    );
    assert!(
        early.try_wait().unwrap().is_none(),
        "the early push finished before the late one: nothing was tested"
    );
    let early = early.wait_with_output().unwrap();
    assert!(
        early.status.success(),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    assert_eq!(env.current().as_deref(), Some("early"));
    let listed = env.json(&["releases", &env.target]);
    let names: Vec<&str> = listed["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["r1", "late", "early"],
        "not in the order they went live"
    );
    let out = env.run(&["rollback", &env.target]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.current().as_deref(),
        Some("late"),
        "rollback skipped a live release"
    );
}

/// Bug 1 end to end: six real pushes start together on a stale lock. Were two of them
/// ever to hold the lock at once, the second one's recovery would empty `tmp/` under
/// the first (its uploads or partial release vanish) and a push would fail or publish
/// an incomplete tree. Every push must succeed and every release be whole.
fn two_holders_of_the_lock_under_stress(env: Env) {
    let srcs: Vec<_> = (0..6)
        .map(|i| env.site(&format!("s{i}"), 25, 70 + i as u64))
        .collect();
    for round in 0..2 {
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        if env.root.join("lock").exists() {
            std::fs::remove_file(env.root.join("lock")).unwrap();
        }
        if round == 0 {
            env.push(&srcs[0], &["--release", "base"]);
        }
        hold(&env, &hostname(), pid);
        let children: Vec<_> = srcs
            .iter()
            .enumerate()
            .map(|(i, src)| {
                env.cmd()
                    .args([
                        "push",
                        src.to_str().unwrap(),
                        &env.target,
                        "--wait",
                        "--force",
                    ])
                    .args(["--release", &format!("p{round}-{i}")])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, push {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (i, src) in srcs.iter().enumerate() {
            let dir = env.root.join("releases").join(format!("p{round}-{i}"));
            crate::util::assert_same_tree(src, &dir);
        }
    }
    assert!(!env.root.join("lock").exists());
}

conformance!(
    two_holders_of_the_lock_under_stress,
    publish_order,
    a_held_lock_stops_a_second_push_at_once_naming_the_holder,
    a_lock_of_a_dead_process_on_this_host_is_broken_with_a_message,
    a_lock_from_another_host_needs_break_lock,
    two_real_pushes_at_once_never_interleave,
);
