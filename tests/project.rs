//! The project file (relstore.toml): `--to NAME`, the default target, `config check`,
//! malformed files, command line over file, discovery, and the store marker that is
//! never read as a project file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::util::{assert_same_tree, one_line_error, Env};

/// Runs relstore in `dir` (where discovery starts).
fn run_in(env: &Env, dir: &Path, args: &[&str]) -> Output {
    env.cmd().current_dir(dir).args(args).output().unwrap()
}

/// [`run_in`] with `--json`, asserting success.
fn json_in(env: &Env, dir: &Path, args: &[&str]) -> Value {
    let out = env
        .cmd()
        .current_dir(dir)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "relstore {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A project directory holding `relstore.toml` with `text` and a small site in
/// `public/`.
fn project(env: &Env, text: &str) -> PathBuf {
    let dir = env.path("proj");
    fs::create_dir_all(&dir).unwrap();
    env.site("proj/public", 30, 7);
    fs::write(dir.join("relstore.toml"), text).unwrap();
    dir
}

fn current_of(root: &Path) -> Option<String> {
    let t = fs::read_link(root.join("current")).ok()?;
    Some(t.to_str()?.strip_prefix("releases/")?.to_owned())
}

fn push_to_deploys_to_that_target_only(env: Env) {
    let other = env.path("other-site");
    let dir = project(
        &env,
        &format!(
            "source = \"public\"\ndefault = \"other\"\n\n[targets.main]\nhosts = [\"{}\"]\n\n[targets.other]\nhosts = [\"{}\"]\n",
            env.target,
            other.display()
        ),
    );
    let r = json_in(&env, &dir, &["push", "--to", "main", "--release", "r1"]);
    assert_eq!(r["release"], "r1", "{r}");
    assert_eq!(env.current().as_deref(), Some("r1"));
    assert_same_tree(&dir.join("public"), &env.root.join("current"));
    assert!(!other.exists(), "--to main touched the other target");

    let rel = json_in(&env, &dir, &["releases", "--to", "main"]);
    assert_eq!(rel["releases"].as_array().unwrap().len(), 1, "{rel}");

    // No --to: the `default` target, and the main one is left alone.
    json_in(&env, &dir, &["push", "--release", "d1"]);
    assert_eq!(current_of(&other).as_deref(), Some("d1"));
    assert_eq!(env.current().as_deref(), Some("r1"));
}

conformance!(
    push_to_deploys_to_that_target_only,
    the_files_hooks_and_shared_paths_apply
);

const TWO_TARGETS: &str = r#"
source = "public"
keep = 4
exclude = ["*.map"]
hook_timeout = "30s"

[targets.staging]
hosts = ["out/staging"]

[targets.prod]
hosts = ["out/web1", "ssh://deploy@web2:2222/srv/site"]
keep = 2
exclude = ["*.log"]

[shared]
paths = ["uploads/", ".env"]

[hooks]
before_activate = "php artisan migrate --force"
after_activate = "sudo systemctl reload php8.3-fpm"
"#;

#[test]
fn config_check_prints_the_resolved_plan_of_each_target() {
    let env = Env::local();
    let dir = project(&env, TWO_TARGETS);
    let out = run_in(&env, &dir, &["config", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let file = dir.join("relstore.toml");
    assert!(
        text.starts_with(&format!("{}: ok, 2 targets\n", file.display())),
        "{text}"
    );
    for want in [
        "target prod:".to_owned(),
        format!(
            "  hosts: {}, ssh://deploy@web2:2222/srv/site",
            dir.join("out/web1").display()
        ),
        format!("  source: {}", dir.join("public").display()),
        "  keep: 2".into(),
        "  exclude: *.log".into(),
        "  exclude: *.map".into(),
        "  shared: uploads/, .env".into(),
        "  before_activate: php artisan migrate --force".into(),
        "  after_rollback: (none)".into(),
        "  hook_timeout: 30s".into(),
        "  revert_on_hook_failure: false".into(),
        "target staging:".into(),
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "no line {want:?} in:\n{text}"
        );
    }

    let v = json_in(&env, &dir, &["config", "check"]);
    assert_eq!(v["file"], file.to_str().unwrap());
    assert_eq!(v["default"], Value::Null, "two targets and no `default`");
    let prod = &v["targets"][0];
    assert_eq!(prod["name"], "prod");
    assert_eq!(prod["keep"], 2);
    assert_eq!(prod["hosts"][1], "ssh://deploy@web2:2222/srv/site");
    assert_eq!(prod["hook_timeout_seconds"], 30);
    assert_eq!(
        prod["hooks"]["after_activate"],
        "sudo systemctl reload php8.3-fpm"
    );
    assert_eq!(v["targets"][1]["keep"], 4);
    assert_eq!(v["targets"][1]["exclude"][0], "*.map");
}

#[test]
fn malformed_project_files_give_one_line_errors_with_file_line_and_key() {
    let env = Env::local();
    let cases: &[(&str, &str, &str)] = &[
        (
            "bad syntax",
            "source = \"public\"\nkeep = = 3\n",
            ":2: keep",
        ),
        (
            "unknown key",
            "source = \"public\"\n\nkepp = 3\n",
            ":3: unknown field `kepp`",
        ),
        (
            "wrong type",
            "keep = \"ten\"\n",
            ":1: keep: invalid type: string \"ten\"",
        ),
        (
            "unknown default",
            "default = \"prod\"\n[targets.staging]\nhosts = [\"out\"]\n",
            ":1: default: no target `prod` (targets: staging)",
        ),
        (
            "empty hosts",
            "[targets.prod]\nhosts = []\n",
            ":2: targets.prod.hosts: empty",
        ),
        (
            "store marker",
            "# relstore store root\nformat = 1\n",
            ":2: format: a project file has no `format` key",
        ),
        (
            "bad timeout",
            "[targets.a]\nhosts = [\"out\"]\n\nhook_timeout = \"ten minutes\"\n",
            ":4: unknown field `hook_timeout`",
        ),
        (
            "bad timeout value",
            "hook_timeout = \"ten minutes\"\n",
            ":1: hook_timeout: `ten minutes` is not a duration",
        ),
        (
            "bad hook key",
            "[hooks]\nbefore_swap = \"x\"\n",
            ":2: unknown field `before_swap`",
        ),
        (
            "bad helper",
            "helper = \"sometimes\"\n",
            ":1: helper: unknown variant `sometimes`",
        ),
        (
            "bad shared",
            "[shared]\npaths = [\"/etc\"]\n",
            ":2: shared.paths: shared path \"/etc\"",
        ),
    ];
    for (what, text, want) in cases {
        let dir = env.path(&format!("case-{}", what.replace(' ', "-")));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relstore.toml");
        fs::write(&file, text).unwrap();
        // Discovery takes a marker for what it is (a store root: see the test
        // below); named with --config, it is refused as a project file.
        let out = match *what {
            "store marker" => run_in(&env, &dir, &["--config", "relstore.toml", "push"]),
            _ => run_in(&env, &dir, &["push"]),
        };
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let line = one_line_error(&out);
        let expected = format!("relstore: error: {}{want}", file.display());
        assert!(
            line.starts_with(&expected),
            "{what}:\n got: {line}\nwant: {expected}…"
        );
        // config check says the same.
        let out = run_in(
            &env,
            &dir,
            &["--config", "relstore.toml", "config", "check"],
        );
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(one_line_error(&out).starts_with(&expected), "{what}");
    }
}

#[test]
fn naming_no_target_or_an_unknown_one_is_a_usage_error_listing_the_targets() {
    let env = Env::local();
    let dir = project(&env, TWO_TARGETS);
    let file = dir.join("relstore.toml");
    let out = run_in(&env, &dir, &["push", "--to", "qa"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_line_error(&out),
        format!(
            "relstore: error: {}: no target `qa` (targets: prod, staging)",
            file.display()
        )
    );
    let out = run_in(&env, &dir, &["push"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        one_line_error(&out).ends_with(
            "several targets (prod, staging) and no `default`: choose one with --to NAME"
        ),
        "{out:?}"
    );
    let out = run_in(&env, &dir, &["push", "public", "/tmp/x", "--to", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("both TARGET `/tmp/x` and --to prod given"));
    let nowhere = env.path("nowhere");
    fs::create_dir_all(&nowhere).unwrap();
    let out = run_in(&env, &nowhere, &["releases"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out).contains("no project file: no relstore.toml in"));
}

#[test]
fn the_command_line_wins_over_the_file() {
    let env = Env::local();
    let dir = project(
        &env,
        &format!(
            "source = \"public\"\nkeep = 1\nexclude = [\"*.map\"]\n[targets.t]\nhosts = [\"{}\"]\n",
            env.target
        ),
    );
    fs::write(dir.join("public/app.js.map"), "map").unwrap();
    fs::write(dir.join("public/keep.map"), "keep").unwrap();
    // The file's keep (1) and exclude apply…
    json_in(&env, &dir, &["push", "--release", "r1"]);
    assert!(!env.root.join("current/app.js.map").exists());
    json_in(&env, &dir, &["push", "--release", "r2", "--force"]);
    assert!(
        !env.root.join("releases/r1").exists(),
        "file keep = 1 not applied"
    );
    // …flags beat them: --keep, a later --exclude, SOURCE.
    let r = json_in(
        &env,
        &dir,
        &[
            "push",
            "--release",
            "r3",
            "--force",
            "--keep",
            "3",
            "--exclude",
            "!keep.map",
        ],
    );
    assert_eq!(r["release"], "r3");
    assert!(
        env.root.join("releases/r2").exists(),
        "--keep 3 lost to the file"
    );
    assert!(
        env.root.join("current/keep.map").exists(),
        "--exclude '!keep.map'"
    );
    assert!(!env.root.join("current/app.js.map").exists());
    let other = env.site("other-src", 5, 9);
    json_in(
        &env,
        &dir,
        &["push", other.to_str().unwrap(), "--release", "r4"],
    );
    assert_same_tree(&other, &env.root.join("current"));

    // An explicit TARGET does not read the file at all (even a broken one).
    fs::write(dir.join("relstore.toml"), "this is = = not toml").unwrap();
    let plain = env.path("plain-target");
    let r = json_in(
        &env,
        &dir,
        &["push", other.to_str().unwrap(), plain.to_str().unwrap()],
    );
    assert_eq!(r["files_total"], 5);
    let out = run_in(
        &env,
        &dir,
        &[
            "--config",
            "relstore.toml",
            "releases",
            plain.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "--config with TARGET");
}

#[test]
fn the_project_file_is_found_from_a_subdirectory_and_paths_are_its_own() {
    let env = Env::local();
    let dir = project(
        &env,
        "source = \"public\"\n[targets.t]\nhosts = [\"out/site\"]\n",
    );
    let deep = dir.join("src/components");
    fs::create_dir_all(&deep).unwrap();
    json_in(&env, &deep, &["push", "--release", "r1"]);
    let root = dir.join("out/site");
    assert_eq!(current_of(&root).as_deref(), Some("r1"));
    assert_same_tree(&dir.join("public"), &root.join("current"));
    // --config from anywhere, relative paths still anchored at the file.
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let cfg = dir.join("relstore.toml");
    let v = json_in(
        &env,
        &elsewhere,
        &["--config", cfg.to_str().unwrap(), "releases"],
    );
    assert_eq!(v["releases"][0]["name"], "r1", "{v}");
}

#[test]
fn inside_a_store_root_the_format_marker_is_never_read_as_a_project_file() {
    let env = Env::local();
    // A project above the store root must not be found from inside it either.
    let dir = project(
        &env,
        "source = \"public\"\n[targets.t]\nhosts = [\"site\"]\n",
    );
    json_in(&env, &dir, &["push", "--release", "r1"]);
    let root = dir.join("site");
    for inside in [root.clone(), root.join("releases/r1")] {
        let out = run_in(&env, &inside, &["releases"]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let line = one_line_error(&out);
        assert!(
            line.contains(&format!("{} is a store root", root.display())),
            "{line}"
        );
    }
    // The store still opens with its marker untouched, and naming the marker as
    // --config says what it is.
    let marker = root.join("relstore.toml");
    let before = fs::read(&marker).unwrap();
    let v = json_in(&env, &root, &["releases", "."]);
    assert_eq!(v["releases"][0]["name"], "r1");
    let out = run_in(&env, &root, &["--config", "relstore.toml", "releases"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_line_error(&out).contains("relstore.toml:2: format: a project file has no `format` key; this looks like the format marker of a store root"),
        "{out:?}"
    );
    assert_eq!(fs::read(&marker).unwrap(), before);
}

#[test]
fn a_target_with_several_hosts_is_a_fleet_push_and_a_failing_host_stops_every_swap() {
    let env = Env::local();
    let dir = project(
        &env,
        "source = \"public\"\n[targets.fleet]\nhosts = [\"a\", \"b\"]\n[targets.broken]\nhosts = [\"c\", \"blocker/site\", \"d\"]\n",
    );
    let v = json_in(&env, &dir, &["push", "--to", "fleet"]);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[1]["target"], dir.join("b").to_str().unwrap());
    let name = v["release"].as_str().unwrap();
    for h in ["a", "b"] {
        assert_eq!(
            current_of(&dir.join(h)).as_deref(),
            Some(name),
            "one release name everywhere"
        );
    }
    let out = run_in(&env, &dir, &["releases", "--to", "fleet"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("[1/2] {}\n", dir.join("a").display())),
        "{text}"
    );
    assert!(text.contains(&format!("[2/2] {}\n", dir.join("b").display())));

    // A host that cannot be a store root: no host swaps (the fleet's barrier).
    fs::write(dir.join("blocker"), "a file, not a directory").unwrap();
    let out = run_in(&env, &dir, &["push", "--to", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(
        line.contains(dir.join("blocker/site").to_str().unwrap()),
        "{line}"
    );
    assert!(line.contains("no host was activated"), "{line}");
    assert!(current_of(&dir.join("c")).is_none());
    assert!(current_of(&dir.join("d")).is_none());
    let out = run_in(&env, &dir, &["push", "--to", "broken", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["hosts"][1]["outcome"], "failed", "{v}");
    assert_eq!(
        v["hosts"][1]["target"],
        dir.join("blocker/site").to_str().unwrap(),
        "{v}"
    );
}

#[test]
fn every_verb_takes_to_and_the_files_keep() {
    let env = Env::local();
    let dir = project(
        &env,
        &format!(
            "source = \"public\"\nkeep = 2\n[targets.t]\nhosts = [\"{}\"]\n",
            env.target
        ),
    );
    for r in ["r1", "r2", "r3"] {
        json_in(
            &env,
            &dir,
            &["push", "--release", r, "--force", "--keep", "9"],
        );
    }
    let p = json_in(&env, &dir, &["pin", "r1"]);
    assert_eq!(p["pinned"], true);
    json_in(&env, &dir, &["unpin", "--to", "t", "r1"]);
    let rb = json_in(&env, &dir, &["rollback", "--to", "t", "r2"]);
    assert_eq!(rb["to"], "r2", "{rb}");
    json_in(&env, &dir, &["rollback", "--to", "t", "r3"]);
    json_in(&env, &dir, &["verify", "--to", "t", "current"]);
    json_in(&env, &dir, &["verify"]);
    // prune without --keep: the file's keep = 2.
    json_in(&env, &dir, &["prune", "--to", "t"]);
    assert!(!env.root.join("releases/r1").exists());
    assert!(env.root.join("releases/r2").exists());
    // helper status on the file's target (a local one needs no helper).
    let h = json_in(&env, &dir, &["helper", "status", "--to", "t"]);
    assert!(h.to_string().contains("needs no helper"), "{h}");
    // diff @current against the source: nothing changed.
    let d = json_in(&env, &dir, &["diff", "@current", "public"]);
    assert_eq!(d["added"].as_array().map(Vec::len), Some(0), "{d}");
    let out = run_in(&env, &dir, &["diff", "--to", "t", "public", "public"]);
    assert_eq!(out.status.code(), Some(2));
}

/// SSH only (through the server whose PATH has this relstore): a helper mode shows on
/// a real connection only.
#[test]
fn the_files_helper_mode_applies_unless_the_flag_or_the_environment_says() {
    let env = Env::helper();
    let dir = project(&env, "");
    let write = |mode: &str| {
        let text = format!(
            "source = \"public\"\nhelper = \"{mode}\"\n[targets.t]\nhosts = [\"{}\"]\n",
            env.target
        );
        fs::write(dir.join("relstore.toml"), text).unwrap();
        dir.clone()
    };
    let push = |dir: &Path, envvar: Option<&str>, extra: &[&str]| {
        let mut c = env.cmd();
        c.current_dir(dir).env_remove("RELSTORE_HELPER");
        if let Some(v) = envvar {
            c.env("RELSTORE_HELPER", v);
        }
        let out = c.args(["push", "--force"]).args(extra).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).contains(": using helper relstore")
    };
    let dir = write("off");
    assert!(
        !push(&dir, None, &[]),
        "helper = \"off\" in the file was ignored"
    );
    assert!(
        push(&dir, None, &["--helper", "require"]),
        "--helper lost to the file"
    );
    assert!(
        push(&dir, Some("auto"), &[]),
        "RELSTORE_HELPER lost to the file"
    );
    let dir = write("require");
    assert!(
        push(&dir, None, &[]),
        "helper = \"require\" in the file was ignored"
    );
    assert!(
        !push(&dir, Some("off"), &[]),
        "RELSTORE_HELPER lost to the file"
    );
}

#[test]
fn what_the_file_cannot_supply_is_a_one_line_usage_error() {
    let env = Env::local();
    let dir = project(
        &env,
        "[targets.one]\nhosts = [\"a\"]\n[targets.two]\nhosts = [\"b\", \"c\"]\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["push", "--to", "one"],
            "no SOURCE given and target `one` has no `source`",
        ),
        (
            &["prune", "--to", "one"],
            "prune needs --keep N (or `keep` in the project file)",
        ),
        (
            &["diff", "--to", "two", "@current", "public"],
            "target `two` has 2 hosts",
        ),
        (
            &["rollback", "a", "r1", "--to", "one"],
            "both TARGET `a` and --to one given",
        ),
        (&["pin"], "RELEASE missing"),
        (
            &["--config", "missing.toml", "releases"],
            "missing.toml: cannot read the project file",
        ),
    ];
    for (args, want) in cases {
        let out = run_in(&env, &dir, args);
        let line = one_line_error(&out);
        assert!(line.contains(want), "{args:?}: {line}");
        let code = if want.contains("cannot read") { 1 } else { 2 };
        assert_eq!(out.status.code(), Some(code), "{args:?}: {line}");
    }
}

/// The file's `[hooks]`, `hook_timeout` and `[shared]` reach push, activate and
/// rollback; a flag replaces the file's hook.
fn the_files_hooks_and_shared_paths_apply(env: Env) {
    let log = env.path("hook.log");
    let dir = project(
        &env,
        &format!(
            "source = \"public\"\nhook_timeout = \"1m\"\n\n[targets.main]\nhosts = [\"{}\"]\n\n\
             [shared]\npaths = [\"uploads/\"]\n\n[hooks]\n\
             before_activate = \"echo before $RELSTORE_RELEASE >> {log}\"\n\
             after_rollback = \"echo rollback $RELSTORE_RELEASE >> {log}\"\n",
            env.target,
            log = log.display()
        ),
    );
    json_in(&env, &dir, &["push", "--release", "r1"]);
    let r = json_in(&env, &dir, &["push", "--release", "r2", "--force"]);
    assert_eq!(r["shared"][0], "uploads/", "{r}");
    let link = fs::read_link(env.root.join("releases/r2/uploads")).unwrap();
    assert_eq!(link, Path::new("../../shared/uploads"));
    json_in(&env, &dir, &["rollback"]);
    // A flag wins over the file's hook.
    let flag = format!("echo flag $RELSTORE_RELEASE >> {}", log.display());
    json_in(
        &env,
        &dir,
        &[
            "push",
            "--release",
            "r3",
            "--force",
            "--before-activate",
            &flag,
        ],
    );
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["before r1", "before r2", "rollback r1", "flag r3"],
        "{text}"
    );
}
