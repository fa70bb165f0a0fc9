//! `SftpTarget` against a real OpenSSH sshd on loopback: every `Target` operation,
//! checked on the server's disk with std::fs (the server is this machine), and the
//! connection errors a user can run into, each a clear one-line refusal that changes
//! nothing.

mod sshd;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use relstore_core::layout::LockFile;
use relstore_core::progress::NoProgress;
use relstore_core::target::{BlobSource, Opened, StoredObject, TreeKind, Upload};
use relstore_core::{ContentHash, Entry, EntryKind, ObjectId, ReleaseName, Target};
use relstore_ssh::{RemoteOptions, SftpTarget};
use sshd::Sshd;

/// Object content held in memory, by id.
struct MemSource(HashMap<ObjectId, Vec<u8>>);

impl BlobSource for MemSource {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let data = self
            .0
            .get(&upload.id)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such blob"))?;
        Ok(Box::new(io::Cursor::new(data)))
    }
    fn describe(&self, upload: &Upload) -> String {
        format!("memory:{}", upload.id.rel_path())
    }
}

/// Deterministic incompressible-ish bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn connect(spec: &str, opts: &RemoteOptions, sshd: &Sshd) -> SftpTarget {
    match SftpTarget::connect(spec, opts) {
        Ok(t) => t,
        Err(e) => panic!("connect {spec} failed: {e}\nsshd log:\n{}", sshd.log()),
    }
}

fn file(path: &[u8], content: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::File {
            size: content.len() as u64,
            hash: ContentHash::from(blake3::hash(content)),
            mode,
        },
    }
}

fn dir(path: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Dir { mode },
    }
}

fn symlink(path: &[u8], target: &[u8]) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Symlink {
            target: target.to_vec(),
        },
    }
}

fn at(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

fn uploads_for(
    entries: &[Entry],
    contents: &HashMap<Vec<u8>, Vec<u8>>,
) -> (Vec<Upload>, MemSource) {
    let mut src = HashMap::new();
    let mut ups = Vec::new();
    for e in entries {
        if let (Some(id), Some(data)) = (e.object(), contents.get(&e.path)) {
            if src.insert(id, data.clone()).is_none() {
                ups.push(Upload {
                    id,
                    size: data.len() as u64,
                });
            }
        }
    }
    (ups, MemSource(src))
}

/// Snapshot of a directory tree (paths, kinds, modes, content) to prove "nothing
/// changed".
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let content = if m.is_file() {
                std::fs::read(&p).unwrap_or_default()
            } else {
                Vec::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, m.mode(), content));
        }
    }
    out.sort();
    out
}

#[test]
fn target_round_trip_lands_right_on_disk() {
    let sshd = Sshd::start();
    let root = sshd.work().join("site");
    let t = connect(&sshd.url(&root), &sshd.remote_options(), &sshd);
    assert_eq!(t.local_root(), None);
    assert!(t.open(false).is_err(), "no store yet");
    assert_eq!(t.open(true).expect("create"), Opened::Created);
    assert_eq!(t.open(true).expect("reopen"), Opened::Existing);
    assert_eq!(t.open(false).expect("open"), Opened::Existing);
    for d in ["releases", "objects", "manifests", "tmp", "pins"] {
        assert!(root.join(d).is_dir(), "{d}/ missing");
    }
    assert!(root.join("relstore.toml").is_file());

    // Lock: exclusive, complete, removed only by its holder.
    assert!(t.create_lock(LockFile::Store, b"holder one").expect("lock"));
    assert!(!t
        .create_lock(LockFile::Store, b"holder two")
        .expect("second lock"));
    assert_eq!(
        t.read_lock(LockFile::Store).expect("read"),
        Some(b"holder one".to_vec())
    );
    assert!(!t
        .remove_lock(LockFile::Store, b"holder two")
        .expect("remove other"));
    assert_eq!(
        std::fs::read(root.join("lock")).expect("lock kept"),
        b"holder one"
    );
    assert!(t
        .remove_lock(LockFile::Store, b"holder one")
        .expect("remove"));
    assert_eq!(t.read_lock(LockFile::Store).expect("read"), None);

    // A tree with everything: nested and read-only dirs, modes, empty files,
    // symlinks, a non-UTF-8 name, duplicate content, a large file.
    let big = pattern(3 * 1024 * 1024 + 17, 3);
    let mut contents: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut entries = vec![
        dir(b"a", 0o755),
        dir(b"a/b", 0o755),
        dir(b"ro", 0o555),
        dir(b"priv", 0o700),
    ];
    let mut add = |path: &[u8], data: Vec<u8>, mode: u32, entries: &mut Vec<Entry>| {
        entries.push(file(path, &data, mode));
        contents.insert(path.to_vec(), data);
    };
    add(b"a/b/big.bin", big.clone(), 0o644, &mut entries);
    add(
        b"a/b/index.html",
        b"<h1>hi</h1>\n".to_vec(),
        0o644,
        &mut entries,
    );
    add(
        b"a/copy.html",
        b"<h1>hi</h1>\n".to_vec(),
        0o644,
        &mut entries,
    );
    add(
        b"a/run.sh",
        b"#!/bin/sh\necho hi\n".to_vec(),
        0o755,
        &mut entries,
    );
    add(
        b"a/caf\xe9-latin1.txt",
        b"latin-1 name\n".to_vec(),
        0o644,
        &mut entries,
    );
    add(b"a/empty", Vec::new(), 0o644, &mut entries);
    add(b"priv/secret", b"s3cret".to_vec(), 0o600, &mut entries);
    add(
        b"ro/inside.txt",
        b"read-only dir\n".to_vec(),
        0o644,
        &mut entries,
    );
    entries.push(symlink(b"a/link", b"b/index.html"));
    entries.push(symlink(b"dangling", b"../nowhere/\xff"));
    entries.sort_by(|x, y| relstore_core::path::cmp_paths(&x.path, &y.path));
    let (ups, src) = uploads_for(&entries, &contents);
    assert_eq!(
        ups.len(),
        6,
        "duplicate content is one object, empty files none"
    );
    let ids: Vec<ObjectId> = ups.iter().map(|u| u.id).collect();

    assert_eq!(t.missing_objects(&ids).expect("missing"), ids);
    let start = Instant::now();
    t.put_objects(&ups, &src, &NoProgress).expect("upload");
    println!("uploaded {} objects in {:?}", ups.len(), start.elapsed());
    assert!(t.missing_objects(&ids).expect("missing").is_empty());
    for u in &ups {
        let p = root.join(u.id.rel_path());
        let m = std::fs::metadata(&p).expect("object on disk");
        assert_eq!(m.mode() & 0o7777, u.id.mode, "{}", p.display());
        assert_eq!(m.len(), u.size);
    }
    assert_eq!(
        std::fs::read(root.join(ups[0].id.rel_path()))
            .map(|d| ContentHash::from(blake3::hash(&d)))
            .expect("read"),
        ups[0].id.hash
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).expect("tmp").count(), 0);

    let r1 = ReleaseName::parse("r1").expect("name");
    let stats = t.assemble(&r1, &entries, &NoProgress).expect("assemble");
    assert_eq!(
        (stats.dirs, stats.links, stats.empty_files, stats.symlinks),
        (4, 7, 1, 2)
    );
    let rel = root.join("releases/r1");
    assert!(!root.join("tmp/r1.partial").exists());
    for e in &entries {
        let p = at(&rel, &e.path);
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
        match &e.kind {
            EntryKind::Dir { mode } => {
                assert!(m.is_dir());
                assert_eq!(m.mode() & 0o7777, *mode, "{}", p.display());
            }
            EntryKind::File { size: 0, mode, .. } => {
                assert!(m.is_file());
                assert_eq!((m.len(), m.nlink(), m.mode() & 0o7777), (0, 1, *mode));
            }
            EntryKind::File { size, .. } => {
                let obj = std::fs::metadata(root.join(e.object().expect("obj").rel_path()))
                    .expect("object");
                assert_eq!(
                    m.ino(),
                    obj.ino(),
                    "{} is a hardlink of its object",
                    p.display()
                );
                assert_eq!(m.len(), *size);
                assert_eq!(&std::fs::read(&p).expect("read"), &contents[&e.path]);
            }
            EntryKind::Symlink { target } => {
                assert!(m.file_type().is_symlink());
                assert_eq!(
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .as_os_str()
                        .as_bytes(),
                    target.as_slice(),
                    "symlink argument order"
                );
            }
        }
    }
    assert!(matches!(
        t.assemble(&r1, &entries, &NoProgress),
        Err(relstore_core::TargetError::ReleaseExists { .. })
    ));

    // Manifest staging and commit, activation.
    t.stage_manifest(&r1, b"manifest bytes").expect("stage");
    assert_eq!(
        t.read_staged_manifest(&r1).expect("staged"),
        Some(b"manifest bytes".to_vec())
    );
    assert_eq!(t.current().expect("current"), None);
    t.activate(&r1).expect("activate");
    t.commit_manifest(&r1).expect("commit");
    assert_eq!(
        std::fs::read_link(root.join("current")).expect("current link"),
        Path::new("releases/r1")
    );
    assert_eq!(t.current().expect("current"), Some(r1.clone()));
    assert_eq!(
        t.list_manifests().expect("manifests"),
        vec!["r1".to_string()]
    );
    assert_eq!(t.read_manifest(&r1).expect("read"), b"manifest bytes");
    assert_eq!(
        t.read_manifest_prefixes(std::slice::from_ref(&r1))
            .pop()
            .expect("one")
            .expect("prefix"),
        b"manifest bytes"
    );
    assert_eq!(t.list_release_dirs().expect("dirs"), vec!["r1".to_string()]);

    // A second release swaps `current` by rename (same store, new inode of the link).
    let r2 = ReleaseName::parse("r2").expect("name");
    t.assemble(&r2, &entries[..3], &NoProgress)
        .expect("assemble r2");
    t.activate(&r2).expect("activate r2");
    assert_eq!(t.current().expect("current"), Some(r2.clone()));
    t.activate(&r1).expect("back to r1");

    // Listing the tree: kinds, modes, sizes, link targets; no inode over SFTP.
    let tree = t.list_release_tree(&r1).expect("tree");
    assert_eq!(tree.len(), entries.len());
    for te in &tree {
        let e = entries
            .iter()
            .find(|e| e.path == te.path)
            .expect("listed path is in the manifest");
        assert_eq!(te.ino, None);
        match &e.kind {
            EntryKind::Dir { mode } => assert_eq!((te.kind, te.mode), (TreeKind::Dir, *mode)),
            EntryKind::File { size, .. } => assert_eq!((te.kind, te.size), (TreeKind::File, *size)),
            EntryKind::Symlink { target } => {
                assert_eq!(te.kind, TreeKind::Symlink);
                assert_eq!(te.link_target.as_deref(), Some(target.as_slice()));
            }
        }
    }

    // Objects: listing, hashing, inodes unknown.
    let objects = t.list_objects().expect("objects");
    assert_eq!(objects.len(), ups.len());
    let hashes = t.hash_objects(&objects, &NoProgress);
    for (o, h) in objects.iter().zip(&hashes) {
        assert_eq!(h.as_ref().expect("hash"), &o.id.hash);
    }
    assert!(t
        .object_inodes(&objects)
        .iter()
        .all(|i| matches!(i, Ok(None))));

    // Relink: a path deleted by hand (in a read-only dir) comes back as a hardlink.
    let victim = rel.join("ro/inside.txt");
    std::fs::set_permissions(rel.join("ro"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::fs::remove_file(&victim).expect("rm");
    std::fs::set_permissions(rel.join("ro"), std::fs::Permissions::from_mode(0o555))
        .expect("chmod");
    std::fs::remove_file(rel.join("a/link")).expect("rm link");
    let fix: Vec<Entry> = entries
        .iter()
        .filter(|e| e.path == b"ro/inside.txt" || e.path == b"a/link")
        .cloned()
        .collect();
    t.relink(&r1, &fix).expect("relink");
    assert_eq!(
        std::fs::read(&victim).expect("restored"),
        b"read-only dir\n"
    );
    assert_eq!(
        std::fs::read_link(rel.join("a/link")).expect("link back"),
        Path::new("b/index.html")
    );
    assert_eq!(
        std::fs::metadata(rel.join("ro")).expect("ro").mode() & 0o7777,
        0o555,
        "parent mode restored"
    );

    // Pins.
    t.set_pin(&r1, true).expect("pin");
    assert_eq!(t.list_pins().expect("pins"), vec!["r1".to_string()]);
    t.set_pin(&r1, false).expect("unpin");
    assert!(t.list_pins().expect("pins").is_empty());

    // Removal of a release with a read-only directory, of objects, of tmp debris.
    let removal = t.remove_release_dir("r2").expect("remove r2");
    assert!(removal.left_behind.is_empty(), "{:?}", removal.left_behind);
    assert!(!root.join("releases/r2").exists());
    assert!(t
        .remove_release_dir("r2")
        .expect("again")
        .left_behind
        .is_empty());
    std::fs::create_dir_all(root.join("tmp/junk.partial/x")).expect("debris");
    std::fs::set_permissions(
        root.join("tmp/junk.partial"),
        std::fs::Permissions::from_mode(0o555),
    )
    .expect("chmod");
    std::fs::write(root.join("tmp/obj-orphan"), b"x").expect("debris");
    assert!(t.clear_tmp().expect("clear").left_behind.is_empty());
    assert_eq!(std::fs::read_dir(root.join("tmp")).expect("tmp").count(), 0);

    let gone: Vec<StoredObject> = objects.iter().take(2).copied().collect();
    assert!(t
        .remove_objects(&gone, &NoProgress)
        .expect("rm")
        .left_behind
        .is_empty());
    assert_eq!(t.list_objects().expect("objects").len(), objects.len() - 2);
    let gone_ids: Vec<ObjectId> = gone.iter().map(|o| o.id).collect();
    assert_eq!(t.missing_objects(&gone_ids).expect("missing"), gone_ids);
}

#[test]
fn relative_paths_are_home_relative_and_scp_form_works() {
    let sshd = Sshd::start();
    // The test user's home, as the server sees it.
    let home = PathBuf::from(
        String::from_utf8_lossy(
            &Command::new("sh")
                .args(["-c", "echo ~"])
                .output()
                .expect("sh")
                .stdout,
        )
        .trim(),
    );
    let name = format!("relstore-home-test-{}", std::process::id());
    let spec = format!("{}@127.0.0.1:{name}", sshd.user);
    // scp form has no port: reach the port through an ssh config alias.
    let cfg = sshd.dir.path().join("ssh_config");
    std::fs::write(
        &cfg,
        format!(
            "Host deploytarget\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            sshd.port,
            sshd.user,
            sshd.user_key.display()
        ),
    )
    .expect("config");
    let opts = RemoteOptions {
        identity_files: Vec::new(),
        ssh_config: Some(cfg),
        ..sshd.remote_options()
    };
    let _ = spec;
    let t = connect(&format!("deploytarget:{name}"), &opts, &sshd);
    assert_eq!(t.root(), home.join(&name).as_os_str().as_bytes());
    t.open(true).expect("create in home");
    assert!(home.join(&name).join("relstore.toml").is_file());
    drop(t);
    let t = connect(&format!("deploytarget:~/{name}"), &opts, &sshd);
    assert_eq!(t.open(false).expect("reopen"), Opened::Existing);
    let _ = std::fs::remove_dir_all(home.join(&name));
}

fn connect_err(spec: &str, opts: &RemoteOptions) -> String {
    match SftpTarget::connect(spec, opts) {
        Ok(_) => panic!("connecting to {spec} must fail"),
        Err(e) => {
            // The error and its causes, as the CLI prints them.
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            println!("{msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
    }
}

#[test]
fn unknown_and_changed_host_keys_are_refused_and_accept_new_records_only_unknown() {
    let sshd = Sshd::start();
    let root = sshd.work().join("site");
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let opts = RemoteOptions {
        known_hosts: Some(empty.clone()),
        ..sshd.remote_options()
    };
    let msg = connect_err(&sshd.url(&root), &opts);
    assert!(msg.contains("unknown"), "{msg}");
    assert!(msg.contains("SHA256:"), "fingerprint: {msg}");
    assert!(
        msg.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >>", sshd.port)),
        "hint: {msg}"
    );
    assert_eq!(
        std::fs::read(&empty).expect("read"),
        b"",
        "nothing recorded"
    );
    assert!(!root.exists(), "nothing created");

    // Opt-in: recorded, then trusted.
    let accept = RemoteOptions {
        accept_new_host_key: true,
        ..opts.clone()
    };
    drop(connect(&sshd.url(&root), &accept, &sshd));
    let recorded = std::fs::read_to_string(&empty).expect("read");
    assert!(
        recorded
            .trim_start()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{recorded}"
    );
    drop(connect(&sshd.url(&root), &opts, &sshd));

    // A changed key is refused even with accept-new.
    let other_key = sshd.dir.path().join("other_host");
    sshd::keygen(&other_key);
    let other_pub = std::fs::read_to_string(other_key.with_extension("pub")).expect("pub");
    let mut fields = other_pub.split_whitespace();
    let (alg, b64) = (fields.next().expect("alg"), fields.next().expect("key"));
    let changed = sshd.dir.path().join("changed_known_hosts");
    std::fs::write(&changed, format!("[127.0.0.1]:{} {alg} {b64}\n", sshd.port)).expect("write");
    let before = std::fs::read(&changed).expect("read");
    let msg = connect_err(
        &sshd.url(&root),
        &RemoteOptions {
            known_hosts: Some(changed.clone()),
            accept_new_host_key: true,
            ..sshd.remote_options()
        },
    );
    assert!(msg.contains("HAS CHANGED"), "{msg}");
    assert!(msg.contains("SHA256:"), "{msg}");
    assert_eq!(
        std::fs::read(&changed).expect("read"),
        before,
        "not rewritten"
    );
    assert!(!root.exists());
}

#[test]
fn authentication_failures_say_what_was_tried() {
    let sshd = Sshd::start();
    let root = sshd.work().join("site");
    let wrong = sshd.dir.path().join("wrong_key");
    sshd::keygen(&wrong);
    let msg = connect_err(
        &sshd.url(&root),
        &RemoteOptions {
            identity_files: vec![wrong.clone()],
            ..sshd.remote_options()
        },
    );
    assert!(msg.contains("authentication"), "{msg}");
    assert!(msg.contains(&wrong.display().to_string()), "{msg}");
    assert!(msg.contains("127.0.0.1"), "{msg}");

    // An agent holding no keys, and nothing else.
    let agent = sshd.start_agent(false);
    let msg = connect_err(
        &sshd.url(&root),
        &RemoteOptions {
            identity_files: Vec::new(),
            agent_socket: Some(agent.socket.clone()),
            ..sshd.remote_options()
        },
    );
    assert!(msg.contains("holds no keys"), "{msg}");

    // No identities at all.
    let msg = connect_err(
        &sshd.url(&root),
        &RemoteOptions {
            identity_files: Vec::new(),
            ..sshd.remote_options()
        },
    );
    assert!(msg.contains("no identities"), "{msg}");

    // An encrypted key without a terminal: skipped with the reason.
    let enc = sshd.dir.path().join("encrypted_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-f"])
        .arg(&enc)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let msg = connect_err(
        &sshd.url(&root),
        &RemoteOptions {
            identity_files: vec![enc.clone()],
            ..sshd.remote_options()
        },
    );
    assert!(msg.contains("encrypted"), "{msg}");
    assert!(msg.contains("no terminal"), "{msg}");
    assert!(!root.exists(), "nothing created");
}

#[test]
fn agent_with_the_key_authenticates() {
    let sshd = Sshd::start();
    let agent = sshd.start_agent(true);
    let root = sshd.work().join("site");
    let t = connect(
        &sshd.url(&root),
        &RemoteOptions {
            identity_files: Vec::new(),
            agent_socket: Some(agent.socket.clone()),
            ..sshd.remote_options()
        },
        &sshd,
    );
    assert_eq!(t.open(true).expect("create"), Opened::Created);
}

#[test]
fn unreachable_port_is_a_clear_error() {
    let sshd = Sshd::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let msg = connect_err(
        &format!("ssh://{}@127.0.0.1:{port}/srv/site", sshd.user),
        &sshd.remote_options(),
    );
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

#[test]
fn target_dir_without_write_permission_names_the_path_and_changes_nothing() {
    let sshd = Sshd::start();
    // As root, modes do not stop anything: log in as an unprivileged user then.
    let user = if sshd::is_root() {
        "nobody".to_string()
    } else {
        sshd.user.clone()
    };
    let locked = sshd.work().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let before = snapshot(&locked);
    let t = connect(&sshd.url_as(&user, &locked), &sshd.remote_options(), &sshd);
    let err = t.open(true).expect_err("must be refused");
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains(&locked.display().to_string()), "{msg}");
    let chain = format!("{:?}", err);
    assert!(
        chain.to_lowercase().contains("permission denied"),
        "{chain}"
    );
    let sub = locked.join("site");
    let t = connect(&sshd.url_as(&user, &sub), &sshd.remote_options(), &sshd);
    let err = t.open(true).expect_err("must be refused");
    assert!(
        err.to_string().contains(&sub.display().to_string()),
        "{err}"
    );
    assert_eq!(snapshot(&locked), before, "nothing changed");
}

#[test]
fn many_small_objects_and_links_are_pipelined() {
    let sshd = Sshd::start();
    let root = sshd.work().join("site");
    let t = connect(&sshd.url(&root), &sshd.remote_options(), &sshd);
    t.open(true).expect("create");
    let n = 2000;
    let mut entries = vec![dir(b"d", 0o755)];
    let mut contents = HashMap::new();
    for i in 0..n {
        let path = format!("d/f{i:05}.html").into_bytes();
        let data = format!("<p>page {i}</p>\n").into_bytes();
        entries.push(file(&path, &data, 0o644));
        contents.insert(path, data);
    }
    let (ups, src) = uploads_for(&entries, &contents);
    let ids: Vec<ObjectId> = ups.iter().map(|u| u.id).collect();
    let s = Instant::now();
    assert_eq!(t.missing_objects(&ids).expect("missing").len(), n);
    let check = s.elapsed();
    let s = Instant::now();
    t.put_objects(&ups, &src, &NoProgress).expect("upload");
    let upload = s.elapsed();
    let s = Instant::now();
    let r = ReleaseName::parse("r1").expect("name");
    t.assemble(&r, &entries, &NoProgress).expect("assemble");
    let assemble = s.elapsed();
    let s = Instant::now();
    assert_eq!(t.list_release_tree(&r).expect("tree").len(), n + 1);
    let list = s.elapsed();
    println!("{n} files: check {check:?}, upload {upload:?}, assemble {assemble:?}, list {list:?}");
    assert_eq!(
        std::fs::read_dir(root.join("releases/r1/d"))
            .expect("dir")
            .count(),
        n
    );
}

/// The wide paths of a large push: more channels for uploads, objects created with
/// their final mode when the umask allows (others fixed by fsetstat), large objects
/// streamed among small ones, and the existence check by directory listing (≥ 2048
/// ids) — each object lands complete, with its exact mode, and the check reports
/// exactly the ones not uploaded.
#[test]
fn wide_upload_and_listing_check_are_exact() {
    let sshd = Sshd::start();
    let root = sshd.work().join("site");
    let t = connect(&sshd.url(&root), &sshd.remote_options(), &sshd);
    t.open(true).expect("create");
    let n = 3000;
    let modes = [0o644, 0o755, 0o600, 0o640];
    let mut entries = vec![dir(b"d", 0o755)];
    let mut contents = HashMap::new();
    for i in 0..n {
        let path = format!("d/f{i:05}").into_bytes();
        // Every 500th file spans several WRITE requests.
        let len = if i % 500 == 7 { 700_000 } else { 1 + i % 3000 };
        let data = pattern(len, i as u64);
        entries.push(file(&path, &data, modes[i % modes.len()]));
        contents.insert(path, data);
    }
    let (ups, src) = uploads_for(&entries, &contents);
    let ids: Vec<ObjectId> = ups.iter().map(|u| u.id).collect();
    assert_eq!(
        t.missing_objects(&ids).expect("missing on empty store"),
        ids
    );
    // Upload every other object, then ask about all of them.
    let first: Vec<Upload> = ups.iter().step_by(2).cloned().collect();
    t.put_objects(&first, &src, &NoProgress)
        .expect("upload half");
    let expected: Vec<ObjectId> = ids.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(t.missing_objects(&ids).expect("missing"), expected);
    let rest: Vec<Upload> = ups.iter().skip(1).step_by(2).cloned().collect();
    t.put_objects(&rest, &src, &NoProgress)
        .expect("upload rest");
    assert!(t.missing_objects(&ids).expect("missing").is_empty());
    for u in &ups {
        let p = root.join(u.id.rel_path());
        let meta = std::fs::metadata(&p).expect("object");
        assert_eq!(meta.mode() & 0o7777, u.id.mode, "{}", p.display());
        assert_eq!(std::fs::read(&p).expect("read"), src.0[&u.id]);
    }
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).expect("tmp").count(),
        0,
        "nothing left in tmp/"
    );
}
