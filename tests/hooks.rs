//! Hooks around the swap: run on the target's host (locally, or over SSH on the
//! loopback server, whose files this test reads directly), in the release directory,
//! with the RELSTORE_* environment; their failures, timeouts and kills.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{assert_same_tree, one_line_error, Env};

/// Waits (at most `limit`) for `f` to hold.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The pid a hook wrote into `file` (once it is there).
fn pid_in(file: &Path) -> u32 {
    assert!(
        eventually(Duration::from_secs(20), || fs::read_to_string(file)
            .is_ok_and(|s| s.ends_with('\n'))),
        "the hook never wrote {}",
        file.display()
    );
    fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

fn gone(pid: u32) -> bool {
    eventually(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    })
}

fn hook_sees_its_release_environment_and_working_directory(env: Env) {
    let v1 = env.site("v1", 20, 1);
    let v2 = env.next_release(&v1, "v2", 0.2, 2);
    let out1 = env.path("before.txt");
    let out2 = env.path("after.txt");
    let record = |file: &Path| {
        format!(
            "printf '%s\\n' \"$RELSTORE_RELEASE\" \"$RELSTORE_PREVIOUS\" \"$RELSTORE_ROOT\" \"$RELSTORE_HOOK\" \"$(pwd -P)\" > '{}'; echo hook-line-$RELSTORE_HOOK",
            file.display()
        )
    };
    let r = env.push(
        &v1,
        &["--release", "r1", "--before-activate", &record(&out1)],
    );
    assert_eq!(r["hooks"][0]["name"], "before_activate");
    assert_eq!(r["hooks"][0]["exit_code"], 0);
    assert_eq!(r["hooks"][0]["ok"], true);
    assert_eq!(r["hooks"][0]["last_lines"][0], "hook-line-before_activate");
    let root = fs::canonicalize(&env.root).unwrap();
    let root = root.to_str().unwrap();
    let lines = fs::read_to_string(&out1).unwrap();
    let want = format!("r1\n\n{root}\nbefore_activate\n{root}/releases/r1\n");
    assert_eq!(lines, want);

    let out = env
        .cmd()
        .args(["push", v2.to_str().unwrap(), &env.target, "--release", "r2"])
        .args(["--after-activate", &record(&out2)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = fs::read_to_string(&out2).unwrap();
    assert_eq!(
        lines,
        format!("r2\nr1\n{root}\nafter_activate\n{root}/releases/r2\n")
    );
    // Output streams to stderr, prefixed with the host.
    let host = if env.is_ssh() { "127.0.0.1" } else { "local" };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("[{host}] hook-line-after_activate")),
        "{stderr}"
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert_same_tree(&v2, &env.root.join("current"));
}

fn failing_before_activate_leaves_current_untouched_and_the_release_staged(env: Env) {
    let v1 = env.site("v1", 30, 3);
    let v2 = env.next_release(&v1, "v2", 0.2, 4);
    env.push(&v1, &["--release", "r1"]);
    let out = env.run(&[
        "push",
        v2.to_str().unwrap(),
        &env.target,
        "--release",
        "r2",
        "--before-activate",
        "echo migration failed >&2; exit 3",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(
        line.contains("before_activate") && line.contains("status 3"),
        "{line}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["staged"], true);
    assert_eq!(r["hooks"][0]["exit_code"], 3);
    assert_eq!(r["hooks"][0]["last_lines"][0], "migration failed");
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&v1, &env.root.join("current"));
    assert_eq!(
        fs::read_link(env.root.join("next")).unwrap(),
        Path::new("releases/r2")
    );
    assert_same_tree(&v2, &env.root.join("next"));
    let l = env.json(&["releases", &env.target]);
    assert_eq!(l["next"], "r2");
    let r2 = &l["releases"].as_array().unwrap()[1];
    assert_eq!(
        (r2["name"].as_str(), &r2["staged"]),
        (Some("r2"), &true.into())
    );

    // A later command's recovery keeps it; activate makes it current.
    let a = env.json(&["activate", &env.target]);
    assert_eq!(
        (a["release"].as_str(), &a["activated"]),
        (Some("r2"), &true.into())
    );
    assert_eq!(env.current().as_deref(), Some("r2"));
    assert!(fs::symlink_metadata(env.root.join("next")).is_err());
}

fn a_hung_hook_is_killed_at_its_timeout(env: Env) {
    let v1 = env.site("v1", 10, 5);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.3, 6);
    let pidfile = env.path("hung.pid");
    let hook = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
    let t = Instant::now();
    let out = env.run(&[
        "push",
        v2.to_str().unwrap(),
        &env.target,
        "--release",
        "r2",
        "--before-activate",
        &hook,
        "--hook-timeout",
        "2s",
    ]);
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_line_error(&out).contains("timed out after 2s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let pid = pid_in(&pidfile);
    assert!(gone(pid), "the hook's child {pid} outlived its timeout");
    assert_eq!(env.current().as_deref(), Some("r1"));
}

fn revert_on_hook_failure_puts_the_previous_release_back(env: Env) {
    let v1 = env.site("v1", 20, 7);
    let v2 = env.next_release(&v1, "v2", 0.2, 8);
    env.push(&v1, &["--release", "r1"]);
    let marker = env.path("rolled.txt");
    let out = env.run(&[
        "push",
        v2.to_str().unwrap(),
        &env.target,
        "--release",
        "r2",
        "--after-activate",
        "exit 5",
        "--revert-on-hook-failure",
        "--after-rollback",
        &format!(
            "echo \"$RELSTORE_RELEASE $RELSTORE_PREVIOUS $RELSTORE_HOOK\" > '{}'",
            marker.display()
        ),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("after_activate"));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["reverted"], true);
    assert_eq!(r["hooks"].as_array().unwrap().len(), 2);
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&v1, &env.root.join("current"));
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        "r1 r2 after_rollback\n"
    );

    // Without the flag the swap stands, and the command still fails.
    let out = env.run(&["rollback", &env.target, "r2", "--after-rollback", "exit 2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("after_rollback"));
    assert_eq!(env.current().as_deref(), Some("r2"));
}

fn dry_run_names_the_hooks_and_runs_none(env: Env) {
    let v1 = env.site("v1", 10, 9);
    let touched = env.path("touched");
    let hook = format!("touch '{}'", touched.display());
    let r = env.push(
        &v1,
        &[
            "--dry-run",
            "--before-activate",
            &hook,
            "--after-activate",
            &hook,
        ],
    );
    let planned: Vec<&str> = r["hooks_planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["before_activate", "after_activate"]);
    assert!(!touched.exists());
}

fn sigkill_of_the_client_during_a_hook_keeps_current_whole(env: Env) {
    let v1 = env.site("v1", 30, 10);
    env.push(&v1, &["--release", "r1"]);
    for (i, flag) in ["--before-activate", "--after-activate"].iter().enumerate() {
        let v2 = env.next_release(&v1, &format!("v2-{i}"), 0.3, 11 + i as u64);
        let pidfile = env.path(&format!("hook-{i}.pid"));
        let hook = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
        let name = format!("k{i}");
        let mut child = env
            .cmd()
            .args([
                "push",
                v2.to_str().unwrap(),
                &env.target,
                "--release",
                &name,
            ])
            .args([*flag, hook.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = pid_in(&pidfile);
        child.kill().unwrap();
        child.wait().unwrap();
        env.settle();
        assert!(gone(pid), "{flag}: the hook outlived its client");
        if i == 0 {
            assert_eq!(env.current().as_deref(), Some("r1"));
            assert_same_tree(&v1, &env.root.join("current"));
        } else {
            assert_eq!(env.current().as_deref(), Some(name.as_str()));
            assert_same_tree(&v2, &env.root.join("current"));
        }
        // The next command recovers; a rerun finishes.
        env.push(&v2, &["--release", &format!("again{i}")]);
        assert_same_tree(&v2, &env.root.join("current"));
        env.json(&["rollback", &env.target, "r1"]);
    }
}

fn ctrl_c_during_a_hook_kills_it_and_leaves_the_release_staged(env: Env) {
    let v1 = env.site("v1", 10, 12);
    env.push(&v1, &["--release", "r1"]);
    let v2 = env.next_release(&v1, "v2", 0.3, 13);
    let pidfile = env.path("int.pid");
    let hook = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
    let mut child = env
        .cmd()
        .args(["push", v2.to_str().unwrap(), &env.target, "--release", "r2"])
        .args(["--before-activate", hook.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = pid_in(&pidfile);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    env.settle();
    assert_eq!(status.code(), Some(130));
    assert!(gone(pid), "the hook outlived Ctrl-C");
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_eq!(
        fs::read_link(env.root.join("next")).unwrap(),
        Path::new("releases/r2")
    );

    // During after_activate: the swap stands, even with --revert-on-hook-failure.
    let v3 = env.next_release(&v1, "v3", 0.3, 14);
    let pidfile = env.path("int3.pid");
    let hook = format!("sleep 300 & echo $! > '{}'; wait", pidfile.display());
    let mut child = env
        .cmd()
        .args(["push", v3.to_str().unwrap(), &env.target, "--release", "r3"])
        .args([
            "--after-activate",
            hook.as_str(),
            "--revert-on-hook-failure",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = pid_in(&pidfile);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    env.settle();
    assert_eq!(status.code(), Some(130));
    assert!(gone(pid), "the hook outlived Ctrl-C");
    assert_eq!(env.current().as_deref(), Some("r3"));
    assert_same_tree(&v3, &env.root.join("current"));
}

fn a_background_process_of_a_hook_does_not_hold_the_deploy(env: Env) {
    let v1 = env.site("v1", 5, 14);
    let pidfile = env.path("bg.pid");
    // The background sleep keeps the hook's output open; the hook itself is done.
    let hook = format!("sleep 30 & echo $! > '{}'; echo started", pidfile.display());
    let t = Instant::now();
    let r = env.push(&v1, &["--release", "r1", "--after-activate", &hook]);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(r["hooks"][0]["ok"], true);
    assert_eq!(r["hooks"][0]["last_lines"][0], "started");
    let pid = pid_in(&pidfile);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "a finished hook's daemon is left alone"
    );
    // SAFETY: kill(2) on a process this test started (through the hook).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

conformance!(
    a_background_process_of_a_hook_does_not_hold_the_deploy,
    ctrl_c_during_a_hook_kills_it_and_leaves_the_release_staged,
    hook_sees_its_release_environment_and_working_directory,
    failing_before_activate_leaves_current_untouched_and_the_release_staged,
    a_hung_hook_is_killed_at_its_timeout,
    revert_on_hook_failure_puts_the_previous_release_back,
    dry_run_names_the_hooks_and_runs_none,
    sigkill_of_the_client_during_a_hook_keeps_current_whole,
);
