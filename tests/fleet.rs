//! Fleets: one push to several hosts, each its own loopback sshd with its own store
//! root, reached through ssh config aliases `web1`…`web4` (so `{host}` and the
//! per-host table name real host names). Local-only Env for the client side: the
//! targets are the SSH aliases.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::util::{
    assert_same_tree, one_line_error, private_server_with_path, relstore_bin_dir, sshd, Env,
};

/// The fleet's servers: started once per test process, one sshd per host.
fn servers() -> &'static [&'static sshd::Sshd] {
    static S: OnceLock<Vec<&'static sshd::Sshd>> = OnceLock::new();
    // Commands run over SSH find this build of relstore: helper mode works too.
    S.get_or_init(|| {
        (0..4)
            .map(|_| private_server_with_path(&relstore_bin_dir()))
            .collect()
    })
}

/// A test's fleet: `n` hosts `web1`… with roots under the test's own temp dir.
struct Fleet {
    env: Env,
    roots: Vec<PathBuf>,
    specs: Vec<String>,
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        Fleet::with_helper(n, false)
    }

    /// [`Fleet::new`]; with `helper`, every command runs with `--helper require`.
    fn with_helper(n: usize, helper: bool) -> Fleet {
        let mut env = Env::local();
        let servers = servers();
        let mut cfg = String::from("Host dead\n  HostName 127.0.0.1\n  Port 1\n\n");
        let mut known = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!(
                "Host web{}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n\n",
                i + 1,
                s.port,
                s.user,
                s.user_key.display()
            ));
            known.extend(fs::read(&s.known_hosts).unwrap());
        }
        let cfg_path = env.path("ssh_config");
        fs::write(&cfg_path, cfg).unwrap();
        let known_path = env.path("known_hosts");
        fs::write(&known_path, known).unwrap();
        env.extra_env
            .push(("RELSTORE_SSH_CONFIG".into(), cfg_path.into_os_string()));
        env.extra_env
            .push(("RELSTORE_KNOWN_HOSTS".into(), known_path.into_os_string()));
        env.extra_env.push((
            "RELSTORE_SSH_IDENTITY".into(),
            servers[0].user_key.clone().into_os_string(),
        ));
        if helper {
            env.extra_env
                .push(("RELSTORE_HELPER".into(), "require".into()));
        }
        let roots: Vec<PathBuf> = (1..=n).map(|i| env.path(&format!("web{i}"))).collect();
        let specs = roots
            .iter()
            .enumerate()
            .map(|(i, r)| format!("web{}:{}", i + 1, r.display()))
            .collect();
        Fleet { env, roots, specs }
    }

    fn spec_refs(&self) -> Vec<&str> {
        self.specs.iter().map(String::as_str).collect()
    }

    /// `relstore push SOURCE web1… EXTRA`.
    fn push(&self, source: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["push", source.to_str().unwrap()];
        args.extend(self.spec_refs());
        args.extend_from_slice(extra);
        self.env.run(&args)
    }

    /// [`Fleet::push`] with `--json`, asserting success.
    fn push_ok(&self, source: &Path, extra: &[&str]) -> Value {
        let mut e = extra.to_vec();
        e.push("--json");
        let out = self.push(source, &e);
        assert!(
            out.status.success(),
            "fleet push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn current(&self, i: usize) -> Option<String> {
        let t = fs::read_link(self.roots[i].join("current")).ok()?;
        Some(t.to_str()?.strip_prefix("releases/")?.to_owned())
    }

    fn currents(&self) -> Vec<Option<String>> {
        (0..self.roots.len()).map(|i| self.current(i)).collect()
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn a_fleet_push_uploads_to_each_host_what_it_lacks_and_dry_run_says_so() {
    let f = Fleet::new(3);
    let a = f.env.site("a", 40, 1);
    // web1 already holds release a; web2 and web3 are empty.
    let out = f.env.run(&[
        "push",
        a.to_str().unwrap(),
        &f.specs[0],
        "--release",
        "a",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = f.env.next_release(&a, "b", 0.1, 2);
    let single = f
        .env
        .json(&["push", b.to_str().unwrap(), &f.specs[0], "--dry-run"]);
    let fresh = f
        .env
        .json(&["push", b.to_str().unwrap(), &f.specs[1], "--dry-run"]);

    let mut args = vec!["push", b.to_str().unwrap()];
    args.extend(f.spec_refs());
    args.extend(["--dry-run", "--json"]);
    let plan = f.env.json(&args[..args.len() - 1]);
    assert_eq!(plan["dry_run"], true);
    let hosts = plan["hosts"].as_array().unwrap();
    assert_eq!(hosts[0]["host"], "web1");
    assert_eq!(hosts[0]["outcome"], "planned");
    assert_eq!(
        hosts[0]["bytes_uploaded"], single["bytes_uploaded"],
        "{plan}"
    );
    assert_eq!(hosts[0]["objects_uploaded"], single["objects_uploaded"]);
    for h in &hosts[1..] {
        assert_eq!(h["bytes_uploaded"], fresh["bytes_uploaded"], "{plan}");
        assert_eq!(h["objects_uploaded"], fresh["objects_uploaded"]);
    }
    assert_eq!(
        f.currents(),
        vec![some("a"), None, None],
        "a dry run changed nothing"
    );
    // The human plan names every host with its objects and bytes.
    let mut args = vec!["push", b.to_str().unwrap()];
    args.extend(f.spec_refs());
    args.push("--dry-run");
    let text = String::from_utf8(f.env.run(&args).stdout).unwrap();
    for h in ["web1", "web2", "web3"] {
        assert!(text.contains(h), "{text}");
    }
    assert!(text.contains("would upload"), "{text}");

    let done = f.push_ok(&b, &["--no-stat-cache"]);
    let name = done["release"].as_str().unwrap().to_owned();
    let sum: u64 = (0..3)
        .map(|i| done["hosts"][i]["bytes_uploaded"].as_u64().unwrap())
        .sum();
    assert_eq!(done["bytes_uploaded"].as_u64(), Some(sum));
    assert_eq!(done["hosts"][0]["bytes_uploaded"], single["bytes_uploaded"]);
    assert_eq!(done["hosts"][2]["bytes_uploaded"], fresh["bytes_uploaded"]);
    for (i, root) in f.roots.iter().enumerate() {
        assert_eq!(
            f.current(i).as_deref(),
            Some(name.as_str()),
            "one name everywhere"
        );
        assert_same_tree(&b, &root.join("current"));
    }
    // The tree was hashed once for the fleet (every file once), not once per host.
    assert_eq!(done["files_hashed"], done["files_total"]);
    // The local release store took b's new blobs once, for the whole fleet: rollback
    // to an evicted release and patch bases for the next push come from it.
    assert!(
        done["store"]["blobs_added"].as_u64().unwrap_or(0) > 0,
        "{}",
        done["store"]
    );
    assert!(done["store"]["error"].is_null(), "{}", done["store"]);
}

#[test]
fn staging_failing_on_one_host_swaps_no_host() {
    let f = Fleet::new(3);
    let a = f.env.site("a", 30, 3);
    f.push_ok(&a, &["--release", "a"]);
    let b = f.env.next_release(&a, "b", 0.2, 4);
    // web2's object store cannot take new objects (immutable, even for root).
    let objects = f.roots[1].join("objects");
    let st = Command::new("chattr")
        .arg("-R")
        .arg("+i")
        .arg(&objects)
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "chattr +i (e2fsprogs, a file system with the immutable flag) is needed"
    );
    let out = f.push(&b, &["--release", "b"]);
    let _ = Command::new("chattr")
        .arg("-R")
        .arg("-i")
        .arg(&objects)
        .status();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    assert!(line.contains("web2"), "{line}");
    assert!(line.contains("no host was activated"), "{line}");
    assert_eq!(f.currents(), vec![some("a"), some("a"), some("a")]);
    for root in &f.roots {
        assert_same_tree(&a, &root.join("current"));
    }
    // Re-running once the host is fixed converges on one release.
    let done = f.push_ok(&b, &["--release", "b"]);
    assert_eq!(done["release"], "b");
    assert_eq!(f.currents(), vec![some("b"), some("b"), some("b")]);
}

#[test]
fn a_failing_check_in_the_second_wave_reverts_the_first() {
    a_failing_check_reverts(Fleet::new(3));
}

#[test]
fn a_failing_check_in_the_second_wave_reverts_the_first_through_helpers() {
    a_failing_check_reverts(Fleet::with_helper(3, true));
}

fn a_failing_check_reverts(f: Fleet) {
    let a = f.env.site("a", 30, 5);
    f.push_ok(&a, &["--release", "a"]);
    let b = f.env.next_release(&a, "b", 0.2, 6);
    fs::write(f.roots[1].join("unhealthy"), "").unwrap();
    let check = r#"if [ -e "$RELSTORE_ROOT/unhealthy" ]; then echo "health: down on $(hostname)"; exit 3; fi"#;
    let out = f.push(
        &b,
        &[
            "--release",
            "b",
            "--waves",
            "1,100%",
            "--check",
            check,
            "--check-timeout",
            "20s",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = one_line_error(&out);
    assert!(line.contains("web2") && line.contains("check"), "{line}");
    assert!(line.contains("reverted"), "{line}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("health: down"), "{table}");
    assert!(
        table.contains("web1") && table.contains("reverted"),
        "{table}"
    );
    assert_eq!(f.currents(), vec![some("a"), some("a"), some("a")]);
    for root in &f.roots {
        assert_same_tree(&a, &root.join("current"));
    }

    // --no-revert leaves the fleet mixed, and says so.
    let out = f.push(
        &b,
        &[
            "--release",
            "b2",
            "--waves",
            "1,2",
            "--check",
            check,
            "--no-revert",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["mixed"], true, "{v}");
    assert_eq!(v["hosts"][1]["step"], "check", "{v}");
    assert!(v["hosts"][1]["checks"][0]["output"]
        .as_str()
        .unwrap()
        .contains("health: down"));
    assert_eq!(f.current(0), some("b2"));
    let st = f
        .env
        .run(&["status", &f.specs[0], &f.specs[1], &f.specs[2], "--json"]);
    let st = json_of(&st);
    assert_eq!(st["mixed"], true, "{st}");
    assert_eq!(st["hosts"][0]["current"], "b2");
    // b was current for a moment (then reverted): it is the release before b2.
    assert_eq!(st["hosts"][0]["previous"], "b");
    assert_eq!(
        st["hosts"][2]["current"], "a",
        "the third host was never activated"
    );
}

/// A web server on loopback serving `dir` (`python3 -m http.server`).
struct Http {
    child: Child,
    port: u16,
}

impl Http {
    fn start(dir: &Path) -> Http {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the HTTP check test");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Http { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        panic!("python3 -m http.server did not start");
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn check_url_substitutes_the_host_and_checks_status_and_body() {
    let f = Fleet::new(2);
    let a = f.env.site("a", 20, 7);
    f.push_ok(&a, &["--release", "a"]);
    let www = f.env.path("www");
    for h in ["web1", "web2"] {
        fs::create_dir_all(www.join(h)).unwrap();
        fs::write(www.join(h).join("healthz"), "status: ok\n").unwrap();
    }
    let http = Http::start(&www);
    let url = format!("http://127.0.0.1:{}/{{host}}/healthz", http.port);
    let b = f.env.next_release(&a, "b", 0.2, 8);
    let v = f.push_ok(
        &b,
        &["--release", "b", "--check-url", &url, "--check-body", "ok"],
    );
    assert_eq!(
        v["hosts"][1]["checks"][0]["what"],
        format!("http://127.0.0.1:{}/web2/healthz", http.port)
    );
    assert_eq!(f.currents(), vec![some("b"), some("b")]);

    // web2 answers 404: every host goes back to b, exit 1 naming web2.
    fs::remove_file(www.join("web2/healthz")).unwrap();
    let c = f.env.next_release(&b, "c", 0.2, 9);
    let out = f.push(
        &c,
        &[
            "--release",
            "c",
            "--check-url",
            &url,
            "--check-settle",
            "1s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(line.contains("web2") && line.contains("404"), "{line}");
    assert_eq!(f.currents(), vec![some("b"), some("b")]);
    // A body without the text fails too.
    fs::write(www.join("web2/healthz"), "status: degraded\n").unwrap();
    let out = f.push(
        &c,
        &["--release", "c2", "--check-url", &url, "--check-body", "ok"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_line_error(&out).contains("does not contain"),
        "{}",
        one_line_error(&out)
    );
    assert_eq!(f.currents(), vec![some("b"), some("b")]);
}

#[test]
fn an_unreachable_host_stops_the_push_before_any_swap() {
    let f = Fleet::new(2);
    let a = f.env.site("a", 20, 10);
    f.push_ok(&a, &["--release", "a"]);
    let b = f.env.next_release(&a, "b", 0.2, 11);
    let dead = format!("dead:{}", f.env.path("dead").display());
    let mut args = vec!["push", b.to_str().unwrap()];
    args.extend(f.spec_refs());
    args.push(&dead);
    let out = f.env.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(
        line.starts_with("relstore: error: dead: connect failed"),
        "{line}"
    );
    assert_eq!(f.currents(), vec![some("a"), some("a")]);
}

#[test]
fn rollback_and_activate_on_a_project_fleet() {
    let f = Fleet::new(3);
    let proj = f.env.path("proj");
    fs::create_dir_all(&proj).unwrap();
    let a = f.env.site("proj/public", 20, 12);
    let hosts: Vec<String> = f.specs.iter().map(|s| format!("\"{s}\"")).collect();
    fs::write(
        proj.join("relstore.toml"),
        format!(
            "source = \"public\"\n[targets.prod]\nhosts = [{}]\n",
            hosts.join(", ")
        ),
    )
    .unwrap();
    let run =
        |args: &[&str]| -> Output { f.env.cmd().current_dir(&proj).args(args).output().unwrap() };
    let ok = |args: &[&str]| -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = run(&a);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&out)
    };
    ok(&["push", "--to", "prod", "--release", "r1"]);
    f.env.next_release(&a, "tmp-next", 0.3, 13);
    fs::remove_dir_all(&a).unwrap();
    fs::rename(f.env.path("tmp-next"), &a).unwrap();
    ok(&[
        "push",
        "--to",
        "prod",
        "--release",
        "r2",
        "--waves",
        "1,50%",
    ]);
    assert_eq!(f.currents(), vec![some("r2"), some("r2"), some("r2")]);
    let st = ok(&["status", "--to", "prod"]);
    assert_eq!(st["mixed"], false, "{st}");

    let t = std::time::Instant::now();
    let v = ok(&[
        "rollback", "--to", "prod", "--waves", "1,100%", "--pause", "1500ms",
    ]);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(1500),
        "--pause between the waves"
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["hosts"][0]["wave"], 1);
    assert_eq!(v["hosts"][2]["wave"], 2);
    assert_eq!(f.currents(), vec![some("r1"), some("r1"), some("r1")]);

    // Staged everywhere, then activated everywhere.
    ok(&[
        "push",
        "--to",
        "prod",
        "--release",
        "r3",
        "--stage-only",
        "--force",
    ]);
    assert_eq!(f.currents(), vec![some("r1"), some("r1"), some("r1")]);
    let st = ok(&["status", "--to", "prod"]);
    assert_eq!(st["hosts"][1]["staged"], "r3", "{st}");
    ok(&["activate", "--to", "prod", "r3"]);
    assert_eq!(f.currents(), vec![some("r3"), some("r3"), some("r3")]);
    // status over a mixed fleet (one host rolled back alone).
    let out = f.env.run(&["rollback", &f.specs[2], "r1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["status", "--to", "prod"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mixed"), "{text}");
}

#[test]
fn kill_9_during_a_fleet_push_leaves_every_host_old_or_new_and_a_rerun_converges() {
    let f = Fleet::new(3);
    let a = f.env.site("a", 30, 14);
    f.push_ok(&a, &["--release", "base"]);
    let points = [
        "push.scanned",
        "upload.object:2",
        "push.uploaded:1",
        "push.uploaded:3",
        "push.staged:2",
        "push.assembled:1",
        "push.assembled:3",
        "push.swapped:1",
        "push.swapped:2",
        "fleet.wave:1",
        "swap.before_rename:2",
    ];
    for (n, point) in points.iter().enumerate() {
        // A tree none of the hosts has seen: every moment has uploads to interrupt.
        let b = f
            .env
            .next_release(&a, &format!("b{n}"), 0.3, 100 + n as u64);
        let release = format!("b{n}");
        let out = f
            .env
            .cmd()
            .env("RELSTORE_KILL_AT", point)
            .args(["push", b.to_str().unwrap()])
            .args(f.spec_refs())
            .args(["--release", &release, "--waves", "1,2,100%"])
            .output()
            .unwrap();
        assert!(
            f.env.killed(&out),
            "{point}: not killed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, root) in f.roots.iter().enumerate() {
            let cur = f.current(i).unwrap();
            let tree = if cur == release { &b } else { &a };
            assert!(
                cur == release || cur.starts_with('a') || cur == "base",
                "{point}: {cur}"
            );
            assert_same_tree(tree, &root.join("current"));
        }
        // The re-run converges on one release with the new tree.
        let v = f.push_ok(&b, &["--release", &release]);
        assert_eq!(v["release"], release.as_str(), "{point}");
        assert_eq!(f.currents(), vec![some(&release); 3], "{point}");
        let st = f
            .env
            .json(&["status", &f.specs[0], &f.specs[1], &f.specs[2]]);
        assert_eq!(st["mixed"], false, "{point}: {st}");
        // Back to the old tree for the next moment.
        f.push_ok(&a, &["--release", &format!("a{n}")]);
    }
}

#[test]
fn bad_fleet_flags_are_usage_errors_naming_the_value() {
    let env = Env::local();
    let src = env.site("src", 3, 1);
    let s = src.to_str().unwrap();
    for (args, want) in [
        (vec!["--waves", "0"], "invalid --waves item \"0\""),
        (vec!["--waves", "1,150%"], "at most 100"),
        (vec!["--waves", "1,,2"], "invalid --waves item \"\""),
        (vec!["--pause", "soon"], "`soon` is not a duration"),
        (vec!["--check-settle", "3d"], "`3d` is not a duration"),
        (vec!["--jobs", "0"], "'--jobs <N>'"),
        (vec!["--check-body", "ok"], "--check-url"),
    ] {
        let mut a = vec!["push", s, "t1", "t2"];
        a.extend(&args);
        let out = env.run(&a);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        // clap's own message: its first line says what is wrong (a missing required
        // flag is named on the next line).
        assert!(
            err.starts_with("error:") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    assert!(!env.path("t1").exists() && !env.path("t2").exists());
}
