//! Crash safety: real SIGKILLs of the real process at named steps and at random
//! moments. After each, `current` is the old or the new complete release, and a re-run
//! finishes the push uploading only what is still missing.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use crate::util::{assert_linked_from_objects, assert_same_tree, blobs, Env};

/// Checks `current` is exactly `old` (release `old_name`) or `new` (`new_name`).
pub(crate) fn current_is_whole(env: &Env, old: &Path, old_name: &str, new: &Path, new_name: &str) {
    env.settle();
    let cur = env.current().expect("current vanished");
    let expected = if cur == old_name {
        old
    } else {
        assert_eq!(cur, new_name, "current points at an unexpected release");
        new
    };
    assert_same_tree(expected, &env.root.join("current"));
}

/// Re-runs the push and checks it uploads exactly the blobs still missing.
pub(crate) fn rerun_completes(env: &Env, new: &Path, new_name: &str) {
    let present: BTreeSet<String> = env.object_files();
    let missing: Vec<(String, u64)> = blobs(new)
        .into_iter()
        .filter(|(k, _)| !present.contains(k))
        .collect();
    let r = env.push(new, &["--release", new_name]);
    assert_eq!(r["objects_uploaded"], missing.len() as u64, "{r}");
    assert_eq!(
        r["bytes_uploaded"],
        missing.iter().map(|(_, s)| s).sum::<u64>()
    );
    assert_eq!(env.current().as_deref(), Some(new_name));
    assert_same_tree(new, &env.root.join("current"));
    assert_linked_from_objects(&env.root, &env.root.join("current"));
    let tmp_left = std::fs::read_dir(env.root.join("tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "tmp/ not cleaned");
    assert!(!env.root.join("lock").exists());
}

const KILL_POINTS: &[&str] = &[
    "upload.before_sync:1",
    "upload.published:1",
    "upload.published:9",
    "push.uploaded",
    "assemble.entry:1",
    "assemble.entry:40",
    "assemble.entry:250",
    "assemble.before_rename",
    "push.assembled",
    "push.staged",
    "swap.before_rename",
    "push.swapped",
];

fn sigkill_at_every_named_step_keeps_current_whole_and_a_rerun_finishes(env: Env) {
    let v1 = env.site("v1", 400, 50);
    env.push(&v1, &["--release", "r0"]);
    let mut old = v1.clone();
    let mut old_name = "r0".to_owned();
    for (i, point) in KILL_POINTS.iter().enumerate() {
        let new = env.next_release(&old, &format!("v{}", i + 2), 0.05, 500 + i as u64);
        let new_name = format!("r{}", i + 1);
        let out = env
            .cmd()
            .args([
                "push",
                new.to_str().unwrap(),
                &env.target,
                "--release",
                &new_name,
            ])
            .env("RELSTORE_KILL_AT", point)
            .output()
            .unwrap();
        assert!(
            env.killed(&out),
            "{point}: not killed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        current_is_whole(&env, &old, &old_name, &new, &new_name);
        if *point == "push.swapped" {
            assert_eq!(env.current().as_deref(), Some(new_name.as_str()));
        } else {
            assert_eq!(env.current().as_deref(), Some(old_name.as_str()), "{point}");
        }
        rerun_completes(&env, &new, &new_name);
        let listed = env.json(&["releases", &env.target]);
        let names: Vec<&str> = listed["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.last(), Some(&new_name.as_str()), "{point}");
        assert_eq!(
            names.len(),
            i + 2,
            "{point}: a killed push left an extra release"
        );
        old = new;
        old_name = new_name;
    }
}

fn sigkill_at_random_moments_keeps_current_whole_and_a_rerun_finishes(probe: Env) {
    // Calibrate: how long does one such push take here (debug build, busy machine)?
    let files = probe.scaled(3000, 3);
    let p1 = probe.site("v1", files, 60);
    probe.push(&p1, &["--release", "r0"]);
    let p2 = probe.next_release(&p1, "v2", 0.1, 600);
    let t = std::time::Instant::now();
    probe.push(&p2, &["--release", "r1"]);
    let full_ms = (t.elapsed().as_millis() as u64).max(20);

    let env = probe.sibling();
    let v1 = env.site("v1", files, 60);
    env.push(&v1, &["--release", "r0"]);
    let mut rng = fastrand::Rng::with_seed(61);
    let mut old = v1.clone();
    let mut old_name = "r0".to_owned();
    let mut killed = 0;
    // The calibration can be off when the machine's load changes: a push that finished
    // before its kill shrinks the window for the next ones, and pushes go on until ten
    // were really killed mid-way.
    let mut window_ms = full_ms;
    let mut i = 0;
    while killed < 10 {
        assert!(
            i < 30,
            "only {killed} of {i} pushes were still running when killed"
        );
        let new = env.next_release(&old, &format!("v{}", i + 2), 0.1, 600 + i);
        let new_name = format!("r{}", i + 1);
        let mut child = env
            .cmd()
            .args([
                "push",
                new.to_str().unwrap(),
                &env.target,
                "--release",
                &new_name,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(1..window_ms.max(2))));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            window_ms = (window_ms * 7 / 10).max(2);
        }
        current_is_whole(&env, &old, &old_name, &new, &new_name);
        rerun_completes(&env, &new, &new_name);
        old = new;
        old_name = new_name;
        i += 1;
    }
}

conformance!(
    sigkill_at_every_named_step_keeps_current_whole_and_a_rerun_finishes,
    sigkill_at_random_moments_keeps_current_whole_and_a_rerun_finishes,
);
