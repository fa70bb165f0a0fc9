//! Test harness: temp trees, running the binary, independent tree snapshots.
//!
//! Everything that checks relstore's results here is computed independently of
//! relstore's own crates (walkdir + blake3), so a bug in the scanner cannot hide itself.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use relstore_fixtures::{generate, mutate, MutationSpec, SiteSpec};
use serde_json::Value;

/// Servers in a private network namespace, reachable only through a bastion.
pub mod netns;
/// The shared loopback sshd of this test process (crates/ssh/tests/sshd).
#[path = "../../crates/ssh/tests/sshd/mod.rs"]
pub mod sshd;

/// Which kind of target an [`Env`] deploys to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A local path.
    Local,
    /// `ssh://USER@127.0.0.1:PORT/ABS/PATH` on the shared loopback sshd: the same
    /// directory on this machine's disk, reached over SSH and SFTP (`--helper off`).
    Ssh,
    /// The same over SSH through a relstore helper (`relstore serve --stdio`, this
    /// build of relstore on the server's PATH), with `--helper require`: a test fails
    /// if the helper does not run.
    Helper,
}

static SERVER: OnceLock<&'static sshd::Sshd> = OnceLock::new();

/// The one sshd of this test process, started on first use. Each [`Env::ssh`] still
/// gets its own store root (under its own temp dir): only the server is shared.
pub fn server() -> &'static sshd::Sshd {
    SERVER.get_or_init(private_server)
}

static HELPER_SERVER: OnceLock<&'static sshd::Sshd> = OnceLock::new();

/// The sshd of this test process whose commands find this build of relstore on
/// their PATH (started on first use).
pub fn helper_server() -> &'static sshd::Sshd {
    HELPER_SERVER.get_or_init(|| private_server_with_path(&relstore_bin_dir()))
}

/// A directory holding only `relstore`, a link to the binary under test.
pub fn relstore_bin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relstore-it-bin-{}", std::process::id()));
    let link = dir.join("relstore");
    if !link.exists() {
        fs::create_dir_all(&dir).unwrap();
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_relstore"), &link);
    }
    dir
}

/// A private server (see [`private_server`]) whose commands run with `dir` first on
/// their PATH.
pub fn private_server_with_path(dir: &Path) -> &'static sshd::Sshd {
    private_server_with(&format!(
        "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin",
        dir.display()
    ))
}

/// A new sshd of its own, for tests that kill the server's processes (every
/// per-connection process of it then serves that test only). It lives as long as this
/// test process: statics are never dropped, so a watchdog process stops the server and
/// removes its temp dir once this process has exited (however it exits).
pub fn private_server() -> &'static sshd::Sshd {
    private_server_with("")
}

/// [`private_server`] with `extra` lines in its config.
pub fn private_server_with(extra: &str) -> &'static sshd::Sshd {
    let s: &'static sshd::Sshd = Box::leak(Box::new(sshd::Sshd::start_with(extra)));
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill {sshd_pid}; rm -rf '{dir}'",
        me = std::process::id(),
        sshd_pid = sshd_pid(s),
        dir = s.dir.path().display()
    );
    // Never waited for: it outlives this process by design.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the sshd watchdog");
    s
}

/// The pid of a server's listening sshd (from its pid file).
pub fn sshd_pid(s: &sshd::Sshd) -> u32 {
    let pid_file = s.dir.path().join("sshd.pid");
    let t = std::time::Instant::now();
    loop {
        if let Ok(text) = fs::read_to_string(&pid_file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "sshd wrote no pid file {}:\n{}",
            pid_file.display(),
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A scratch area for one test: sources, a target, a client cache.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    /// The server of an SSH environment.
    ssh: Option<&'static sshd::Sshd>,
    /// Extra environment variables of every command (an ssh config, say).
    pub extra_env: Vec<(String, std::ffi::OsString)>,
    /// Store root on this machine's disk (what a web server would serve from). For an
    /// SSH target it is the server's disk: the server runs on this machine.
    pub root: PathBuf,
    /// The TARGET argument naming that root.
    pub target: String,
    pub cache: PathBuf,
    /// The client's local release store (`RELSTORE_STORE_DIR` of every command).
    pub store: PathBuf,
    /// `HOME` of every command: an empty `.ssh/`, so no key, config or known_hosts of
    /// the machine's user leaks into a test.
    pub home: PathBuf,
}

impl Env {
    /// An environment of `kind`.
    pub fn new(kind: Kind) -> Env {
        match kind {
            Kind::Local => Env::local(),
            Kind::Ssh => Env::ssh(),
            Kind::Helper => Env::helper(),
        }
    }

    fn scratch(kind: Kind) -> Env {
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                Kind::Local => "relstore-it-",
                Kind::Ssh => "relstore-it-ssh-",
                Kind::Helper => "relstore-it-helper-",
            })
            .tempdir()
            .unwrap();
        let root = dir.path().join("site");
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".ssh")).unwrap();
        Env {
            kind,
            ssh: None,
            extra_env: Vec::new(),
            target: root.to_str().unwrap().to_owned(),
            root,
            cache: dir.path().join("cache"),
            store: dir.path().join("local-store"),
            home,
            dir,
        }
    }

    /// A local-target environment.
    pub fn local() -> Env {
        Env::scratch(Kind::Local)
    }

    /// An SSH-target environment: `target` is `ssh://USER@127.0.0.1:PORT/ROOT` on the
    /// shared loopback sshd (started here if needed; a test fails if it cannot start),
    /// `root` the same directory seen on disk.
    pub fn ssh() -> Env {
        Env::ssh_on(server())
    }

    /// [`Env::ssh`] on a given server.
    pub fn ssh_on(server: &'static sshd::Sshd) -> Env {
        Env::remote_on(Kind::Ssh, server)
    }

    /// A helper environment: like [`Env::ssh`], on the server whose PATH has this
    /// relstore, every command with `--helper require`.
    pub fn helper() -> Env {
        Env::remote_on(Kind::Helper, helper_server())
    }

    /// An environment of remote `kind` on `server`.
    pub fn remote_on(kind: Kind, server: &'static sshd::Sshd) -> Env {
        let mut env = Env::scratch(kind);
        env.target = server.url(&env.root);
        env.ssh = Some(server);
        env
    }

    /// Another, fresh environment of the same kind (on the same server).
    pub fn sibling(&self) -> Env {
        match self.ssh {
            Some(s) => Env::remote_on(self.kind, s),
            None => Env::local(),
        }
    }

    /// Whether the target is reached over SSH (with or without a helper).
    pub fn is_ssh(&self) -> bool {
        self.kind != Kind::Local
    }

    /// The sshd behind an SSH environment.
    pub fn server(&self) -> &'static sshd::Sshd {
        self.ssh.expect("a local environment has no server")
    }

    /// `n` for a local target, a smaller count over SSH (never below 1): where a case
    /// needs many files only to be realistic, SSH runs it on a smaller tree.
    pub fn scaled(&self, n: usize, ssh_divisor: usize) -> usize {
        match self.kind {
            Kind::Local => n,
            Kind::Ssh | Kind::Helper => (n / ssh_divisor).max(1),
        }
    }

    /// Whether a command was killed at a kill point (`RELSTORE_KILL_AT`): by SIGKILL
    /// itself or, through a helper, the helper on the server was (kill points of the
    /// store's own code fire there) and the client failed naming that signal. Waits
    /// for the helper to be gone either way.
    pub fn killed(&self, out: &Output) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.settle();
        out.status.signal() == Some(9)
            || (self.kind == Kind::Helper
                && out.status.code() == Some(1)
                && String::from_utf8_lossy(&out.stderr).contains("killed by signal KILL"))
    }

    /// Waits (at most 10 s) until no helper process serves this root any more: a
    /// helper whose client died ends on its own as soon as it notices.
    pub fn settle(&self) {
        if self.kind != Kind::Helper {
            return;
        }
        let needle = format!("--stdio\0{}\0", self.root.display());
        let t = std::time::Instant::now();
        loop {
            let alive = fs::read_dir("/proc").unwrap().flatten().any(|e| {
                fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            });
            if !alive {
                return;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "a helper of {} outlived its client",
                self.root.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A path inside the scratch area.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Generates a site of `files` files at `rel`; returns its path.
    pub fn site(&self, rel: &str, files: usize, seed: u64) -> PathBuf {
        let p = self.path(rel);
        generate(&p, &SiteSpec::new(files, seed)).unwrap();
        p
    }

    /// Copies the tree at `from` to `to` (cp -a) and mutates the copy.
    pub fn next_release(&self, from: &Path, to: &str, fraction: f64, seed: u64) -> PathBuf {
        let dest = self.path(to);
        copy_tree(from, &dest);
        mutate(
            &dest,
            &MutationSpec {
                fraction,
                seed,
                rename_dir: true,
            },
        )
        .unwrap();
        dest
    }

    /// A `relstore` command with this environment's cache.
    ///
    /// Never the machine's SSH setup: `HOME` is the environment's own (empty `.ssh/`),
    /// no agent, no ssh config; an SSH environment adds the test key and the server's
    /// known_hosts (`RELSTORE_SSH_IDENTITY`, `RELSTORE_KNOWN_HOSTS`).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_relstore"));
        c.env("RELSTORE_CACHE_DIR", &self.cache)
            .env("RELSTORE_STORE_DIR", &self.store)
            .env("HOME", &self.home)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RELSTORE_SSH_IDENTITY")
            .env_remove("RELSTORE_KNOWN_HOSTS")
            .env_remove("RELSTORE_SSH_CONFIG")
            .env_remove("RELSTORE_ACCEPT_NEW_HOST_KEY")
            .env_remove("RELSTORE_KILL_AT")
            .env_remove("RELSTORE_PAUSE_AT")
            .env(
                "RELSTORE_HELPER",
                match self.kind {
                    Kind::Helper => "require",
                    _ => "off",
                },
            );
        if let Some(s) = self.ssh {
            c.env("RELSTORE_SSH_IDENTITY", &s.user_key)
                .env("RELSTORE_KNOWN_HOSTS", &s.known_hosts);
        }
        // Last, so that a test can override any of the above.
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Runs relstore with `args`, returning the raw output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs relstore with `args` plus `--json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert!(
            out.status.success(),
            "relstore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout of {args:?} is not one JSON object ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Pushes `source` with extra args; returns the JSON report.
    pub fn push(&self, source: &Path, extra: &[&str]) -> Value {
        let mut a = vec!["push", source.to_str().unwrap(), &self.target];
        a.extend_from_slice(extra);
        self.json(&a)
    }

    /// The release `current` points at.
    pub fn current(&self) -> Option<String> {
        let t = fs::read_link(self.root.join("current")).ok()?;
        Some(
            t.to_str()
                .unwrap()
                .strip_prefix("releases/")
                .unwrap()
                .to_owned(),
        )
    }

    /// Object ids ("hex+mode" names, copies included) stored under objects/.
    pub fn object_files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let objects = self.root.join("objects");
        let Ok(rd) = fs::read_dir(&objects) else {
            return out;
        };
        for prefix in rd {
            let prefix = prefix.unwrap();
            for f in fs::read_dir(prefix.path()).unwrap() {
                let f = f.unwrap();
                out.insert(format!(
                    "{}{}",
                    prefix.file_name().to_str().unwrap(),
                    f.file_name().to_str().unwrap()
                ));
            }
        }
        out
    }
}

/// `cp -a from to`.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// An entry of a tree as seen by an independent walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        size: u64,
        hash: [u8; 32],
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// Every entry under `root` (relative path bytes → node), root excluded.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let meta = e.path().symlink_metadata().unwrap();
        let mode = meta.mode() & 0o7777;
        let node = if meta.file_type().is_symlink() {
            Node::Symlink {
                target: fs::read_link(e.path())
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            }
        } else if meta.is_dir() {
            Node::Dir { mode }
        } else {
            let content = fs::read(e.path()).unwrap();
            Node::File {
                mode,
                size: content.len() as u64,
                hash: *blake3::hash(&content).as_bytes(),
            }
        };
        out.insert(rel, node);
    }
    out
}

/// Asserts that the release at `release` is `source` exactly: paths, kinds, content,
/// permission bits (write bits of regular files aside: objects are stored read-only),
/// symlink targets, empty directories, non-UTF-8 names.
pub fn assert_same_tree(source: &Path, release: &Path) {
    let a = snapshot(source);
    let b = snapshot(release);
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "paths differ: only in source {:?}, only in release {:?}",
        only_a
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>(),
        only_b
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>()
    );
    for (path, na) in &a {
        let nb = &b[path];
        let same = match (na, nb) {
            (
                Node::File {
                    mode: m1,
                    size: s1,
                    hash: h1,
                },
                Node::File {
                    mode: m2,
                    size: s2,
                    hash: h2,
                },
            ) => m1 & 0o7555 == m2 & 0o7555 && s1 == s2 && h1 == h2,
            _ => na == nb,
        };
        assert!(
            same,
            "{} differs: source {na:?}, release {nb:?}",
            String::from_utf8_lossy(path)
        );
    }
}

/// The object path (relative to the store root) for content `hash` with `mode`.
pub fn object_rel(hash: &[u8; 32], mode: u32) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("objects/{}/{}+{:04o}", &hex[..2], &hex[2..], mode & 0o7555)
}

/// Asserts every regular non-empty file of the release is a hardlink to its object
/// (or to a numbered copy of it) and that objects are stored without write bits.
pub fn assert_linked_from_objects(store: &Path, release: &Path) {
    for (path, node) in snapshot(release) {
        let Node::File { mode, size, hash } = node else {
            continue;
        };
        let file = release.join(OsStr::from_bytes(&path));
        let fm = file.symlink_metadata().unwrap();
        if size == 0 {
            assert_eq!(fm.nlink(), 1, "empty file {} is linked", file.display());
            continue;
        }
        let obj = store.join(object_rel(&hash, mode));
        let linked = (0..100).any(|copy| {
            let p = if copy == 0 {
                obj.clone()
            } else {
                PathBuf::from(format!("{}.{copy}", obj.display()))
            };
            p.symlink_metadata()
                .map(|om| om.ino() == fm.ino() && om.dev() == fm.dev())
                .unwrap_or(false)
        });
        assert!(
            linked,
            "{} is not a hardlink to {}",
            file.display(),
            obj.display()
        );
        assert_eq!(fm.mode() & 0o222, 0, "{} is writable", file.display());
    }
}

/// Distinct (content, stored mode) objects of a tree, non-empty files only, with sizes:
/// the blobs a push must store for it.
pub fn blobs(root: &Path) -> BTreeMap<String, u64> {
    snapshot(root)
        .into_values()
        .filter_map(|n| match n {
            Node::File { mode, size, hash } if size > 0 => {
                let rel = object_rel(&hash, mode);
                Some((rel["objects/".len()..].replace('/', ""), size))
            }
            _ => None,
        })
        .collect()
}

/// A fingerprint of everything under a store root (paths, kinds, sizes, content,
/// modes, link targets, inode numbers), to prove a failed command changed nothing.
pub fn store_fingerprint(root: &Path) -> Vec<(Vec<u8>, String)> {
    if !root.exists() {
        return Vec::new();
    }
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let extra = if m.is_file() {
            blake3::hash(&fs::read(e.path()).unwrap())
                .to_hex()
                .to_string()
        } else if m.file_type().is_symlink() {
            fs::read_link(e.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        v.push((
            e.path().as_os_str().as_bytes().to_vec(),
            format!("{:o} {} {} {extra}", m.mode(), m.len(), m.ino()),
        ));
    }
    v
}

/// The single line relstore printed on stderr for a failure (asserting it is one line).
pub fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("relstore: error"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    lines[0].to_owned()
}

/// Whether `program` can be found on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Pushes `n` successive releases r1..rn of a tree mutating 10% per release (seeded by
/// `seed`); returns their sources.
pub fn releases(env: &Env, n: usize, files: usize, seed: u64) -> Vec<PathBuf> {
    let mut srcs = vec![env.site("v1", files, seed)];
    env.push(&srcs[0], &["--release", "r1"]);
    for i in 2..=n {
        let next = env.next_release(&srcs[i - 2], &format!("v{i}"), 0.1, seed * 100 + i as u64);
        env.push(&next, &["--release", &format!("r{i}")]);
        srcs.push(next);
    }
    srcs
}
