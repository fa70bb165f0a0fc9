//! The SFTP client and SSH session against a real OpenSSH sshd on loopback. Every
//! effect is checked on the server's disk with std::fs (the server is this machine).

mod sshd;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use relstore_ssh::sftp::{FileAttrs, OpenFlags, SftpClient, SftpConfig, SftpError};
use relstore_ssh::{SessionError, SshSession};
use sshd::Sshd;

async fn connect(sshd: &Sshd) -> (SshSession, SftpClient) {
    connect_as(sshd, &sshd.user).await
}

async fn connect_as(sshd: &Sshd, user: &str) -> (SshSession, SftpClient) {
    let session = match SshSession::connect(&sshd.options_as(user)).await {
        Ok(s) => s,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()),
    };
    let sftp = match session.open_sftp(SftpConfig::default()).await {
        Ok(s) => s,
        Err(e) => panic!("open_sftp failed: {e}\nsshd log:\n{}", sshd.log()),
    };
    (session, sftp)
}

fn b(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn join(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_round_trip_including_5_mib() {
    let sshd = Sshd::start();
    let (_session, sftp) = connect(&sshd).await;
    let work = sshd.work();
    assert_eq!(sftp.version(), 3);
    for ext in [
        "posix-rename@openssh.com",
        "hardlink@openssh.com",
        "fsync@openssh.com",
    ] {
        assert!(
            sftp.has_extension(ext),
            "server lacks {ext}: {:?}",
            sftp.extensions()
        );
    }
    let limits = sftp.limits();
    println!("server limits: {limits:?}");
    assert!(limits.from_server, "OpenSSH 9 offers limits@openssh.com");
    assert!(limits.max_write_len >= 255 * 1024, "{limits:?}");

    // Small file, exclusive create, exact mode, fsync on.
    let small = work.join("small.txt");
    sftp.write_file(&b(&small), b"hello\n", 0o640, true)
        .await
        .expect("write small");
    assert_eq!(std::fs::read(&small).expect("on disk"), b"hello\n");
    assert_eq!(
        std::fs::metadata(&small).expect("meta").mode() & 0o7777,
        0o640
    );
    assert_eq!(
        sftp.read_file(&b(&small)).await.expect("read back"),
        b"hello\n"
    );
    let again = sftp
        .write_file(&b(&small), b"x", 0o644, false)
        .await
        .expect_err("exclusive create must refuse an existing file");
    assert!(matches!(again, SftpError::Failure { .. }), "{again}");
    assert!(again.to_string().contains("small.txt"), "{again}");
    assert_eq!(std::fs::read(&small).expect("unchanged"), b"hello\n");

    // Empty file.
    let empty = work.join("empty");
    sftp.write_file(&b(&empty), b"", 0o444, false)
        .await
        .expect("empty");
    assert_eq!(std::fs::metadata(&empty).expect("meta").len(), 0);
    assert_eq!(
        std::fs::metadata(&empty).expect("meta").mode() & 0o7777,
        0o444
    );

    // 5 MiB from memory, then from a reader, then read back through SFTP.
    let big = pattern(5 * 1024 * 1024 + 12345, 7);
    let path = work.join("big.bin");
    let t = Instant::now();
    sftp.write_file(&b(&path), &big, 0o444, false)
        .await
        .expect("write 5 MiB");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "write_file 5 MiB: {:.1} MiB/s ({:.0} ms)",
        big.len() as f64 / secs / 1048576.0,
        secs * 1000.0
    );
    assert!(
        std::fs::read(&path).expect("on disk") == big,
        "content differs on disk"
    );

    let path2 = work.join("big-from-reader.bin");
    let n = sftp
        .write_file_from(&b(&path2), &big[..], 0o644, true)
        .await
        .expect("write from reader");
    assert_eq!(n, big.len() as u64);
    assert!(
        std::fs::read(&path2).expect("on disk") == big,
        "content differs on disk"
    );

    let t = Instant::now();
    let back = sftp.read_file(&b(&path)).await.expect("read 5 MiB");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "read_file 5 MiB: {:.1} MiB/s ({:.0} ms)",
        big.len() as f64 / secs / 1048576.0,
        secs * 1000.0
    );
    assert!(back == big, "content read back differs");

    // A 64 MiB upload for a throughput figure (not asserted).
    let huge = pattern(64 * 1024 * 1024, 3);
    let hp = work.join("huge.bin");
    let t = Instant::now();
    sftp.write_file(&b(&hp), &huge, 0o644, false)
        .await
        .expect("64 MiB");
    let secs = t.elapsed().as_secs_f64();
    println!("write_file 64 MiB: {:.1} MiB/s", 64.0 / secs);
    assert_eq!(
        std::fs::metadata(&hp).expect("meta").len(),
        huge.len() as u64
    );
    std::fs::remove_file(&hp).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_files_open_at_once_with_interleaved_writes() {
    let sshd = Sshd::start();
    let (_session, sftp) = connect(&sshd).await;
    let dir = sshd.work().join("many");
    std::fs::create_dir(&dir).expect("mkdir");
    const FILES: usize = 300;
    const ROUNDS: usize = 4;
    const PIECE: usize = 1000;

    let mut handles = Vec::new();
    for i in 0..FILES {
        let p = b(&dir.join(format!("f{i:03}")));
        handles.push(sftp.create(&p, 0o644).await.expect("create"));
    }
    // OpenSSH handles are 4-byte big-endian indexes: from the 129th on they contain a
    // byte >= 0x80, which is what russh-sftp corrupted.
    let high = handles
        .iter()
        .filter(|h| h.raw().iter().any(|&c| c >= 0x80))
        .count();
    assert!(
        high > 0,
        "no handle with a byte >= 0x80; the test would prove nothing"
    );
    println!("{high} of {FILES} handles contain a byte >= 0x80");

    // Round by round, every file gets its next piece; all writes of a round at once.
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let (sftp, h) = (sftp.clone(), h.clone());
            tasks.push(tokio::spawn(async move {
                let data = pattern(PIECE, (i * ROUNDS + round) as u64);
                sftp.write(&h, (round * PIECE) as u64, &data).await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("write");
        }
    }
    for h in &handles {
        sftp.close(h).await.expect("close");
    }
    for i in 0..FILES {
        let mut want = Vec::new();
        for round in 0..ROUNDS {
            want.extend(pattern(PIECE, (i * ROUNDS + round) as u64));
        }
        let got = std::fs::read(dir.join(format!("f{i:03}"))).expect("read on disk");
        assert!(
            got == want,
            "file f{i:03} has wrong content ({} bytes)",
            got.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_names_round_trip_byte_exact() {
    let sshd = Sshd::start();
    let (_session, sftp) = connect(&sshd).await;
    let dir = sshd.work().join("names");
    std::fs::create_dir(&dir).expect("mkdir");
    let d = b(&dir);
    let p = |name: &[u8]| [d.as_slice(), b"/", name].concat();

    let file: &[u8] = b"caf\xe9.html";
    sftp.write_file(&p(file), b"<html>", 0o644, false)
        .await
        .expect("create non-UTF-8 file");
    sftp.mkdir(&p(b"dir\xe9\xff"), 0o755).await.expect("mkdir");
    sftp.symlink(file, &p(b"link\xe9")).await.expect("symlink");
    sftp.hardlink(&p(file), &p(b"hard\xe9"))
        .await
        .expect("hardlink");
    sftp.write_file(&p(b"tmp\x80"), b"x", 0o644, false)
        .await
        .expect("tmp");
    sftp.posix_rename(&p(b"tmp\x80"), &p(b"renamed\xfe"))
        .await
        .expect("posix-rename");
    let h = sftp
        .open(
            &p(b"opened\xc0"),
            OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC,
            &FileAttrs::with_permissions(0o600),
        )
        .await
        .expect("open");
    sftp.close(&h).await.expect("close");

    let mut want: Vec<Vec<u8>> = vec![
        file.to_vec(),
        b"dir\xe9\xff".to_vec(),
        b"link\xe9".to_vec(),
        b"hard\xe9".to_vec(),
        b"renamed\xfe".to_vec(),
        b"opened\xc0".to_vec(),
    ];
    want.sort();
    let mut listed: Vec<Vec<u8>> = sftp
        .read_dir(&d)
        .await
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect();
    listed.sort();
    assert_eq!(listed, want, "readdir over SFTP");
    let mut on_disk: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().as_bytes().to_vec())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, want, "names on the server's disk");

    assert_eq!(std::fs::read(join(&dir, file)).expect("file"), b"<html>");
    assert!(std::fs::metadata(join(&dir, b"dir\xe9\xff"))
        .expect("dir")
        .is_dir());
    assert_eq!(
        std::fs::read_link(join(&dir, b"link\xe9"))
            .expect("link")
            .as_os_str()
            .as_bytes(),
        file
    );
    assert_eq!(
        sftp.readlink(&p(b"link\xe9")).await.expect("readlink"),
        file
    );
    let ino = |n: &[u8]| std::fs::metadata(join(&dir, n)).expect("meta").ino();
    assert_eq!(ino(file), ino(b"hard\xe9"));
    // Names in listings' attributes and stat agree.
    let st = sftp.lstat(&p(b"link\xe9")).await.expect("lstat");
    assert!(st.is_symlink());
    let st = sftp.stat(&p(b"link\xe9")).await.expect("stat follows");
    assert!(st.is_file() && st.size == Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_and_atomic_swap_and_hardlinks_land_right() {
    let sshd = Sshd::start();
    let (_session, sftp) = connect(&sshd).await;
    let root = sshd.work().join("store");
    std::fs::create_dir_all(root.join("releases/r1")).expect("mkdir");
    std::fs::create_dir_all(root.join("releases/r2")).expect("mkdir");
    let r = b(&root);
    let p = |rel: &str| [r.as_slice(), b"/", rel.as_bytes()].concat();

    // symlink(target, link_path): what lands on disk is `current -> releases/r1`.
    sftp.symlink(b"releases/r1", &p("current"))
        .await
        .expect("symlink");
    let current = root.join("current");
    assert!(std::fs::symlink_metadata(&current)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&current).expect("readlink"),
        Path::new("releases/r1")
    );
    assert!(!root.join("releases/r1/current").exists() && !root.join("releases/r1").is_symlink());

    // Swap: a new link, renamed over `current`; the inode is the new link's.
    sftp.symlink(b"releases/r2", &p("tmp-current"))
        .await
        .expect("symlink 2");
    let new_ino = std::fs::symlink_metadata(root.join("tmp-current"))
        .expect("lstat")
        .ino();
    let plain = sftp
        .rename(&p("tmp-current"), &p("current"))
        .await
        .expect_err("plain SFTP rename does not replace on OpenSSH");
    assert!(matches!(plain, SftpError::Failure { .. }), "{plain}");
    sftp.posix_rename(&p("tmp-current"), &p("current"))
        .await
        .expect("posix-rename over the existing symlink");
    let meta = std::fs::symlink_metadata(&current).expect("lstat");
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.ino(), new_ino, "current is the renamed link itself");
    assert_eq!(
        std::fs::read_link(&current).expect("readlink"),
        Path::new("releases/r2")
    );
    assert!(!root.join("tmp-current").exists());

    // Hardlinks: one inode, two names.
    sftp.write_file(&p("obj"), b"blob", 0o444, false)
        .await
        .expect("obj");
    sftp.hardlink(&p("obj"), &p("releases/r2/index.html"))
        .await
        .expect("hardlink");
    let a = std::fs::metadata(root.join("obj")).expect("obj");
    let l = std::fs::metadata(root.join("releases/r2/index.html")).expect("link");
    assert_eq!(a.ino(), l.ino());
    assert_eq!(a.nlink(), 2);
    let dup = sftp
        .hardlink(&p("obj"), &p("releases/r2/index.html"))
        .await
        .expect_err("link onto an existing name");
    assert!(matches!(dup, SftpError::Failure { .. }), "{dup}");
    assert!(dup.to_string().contains("index.html"), "{dup}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_fast() {
    let sshd = Sshd::start();
    let (_session, sftp) = connect(&sshd).await;
    let dir = sshd.work().join("pipe");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("obj"), b"x").expect("obj");
    let obj = b(&dir.join("obj"));
    const N: usize = 2000;

    // One at a time, for comparison.
    let t = Instant::now();
    for _ in 0..200 {
        sftp.lstat(&obj).await.expect("lstat");
    }
    let serial = 200.0 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let results = futures::future::join_all((0..N).map(|_| sftp.lstat(&obj))).await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        assert_eq!(r.expect("lstat").size, Some(1));
    }
    println!(
        "lstat: {N} pipelined in {:.0} ms = {:.0} ops/s (one at a time: {serial:.0} ops/s)",
        secs * 1000.0,
        N as f64 / secs
    );

    let names: Vec<Vec<u8>> = (0..N).map(|i| b(&dir.join(format!("l{i}")))).collect();
    let t = Instant::now();
    let results = futures::future::join_all(names.iter().map(|n| sftp.hardlink(&obj, n))).await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r.expect("hardlink");
    }
    println!(
        "hardlink: {N} pipelined in {:.0} ms = {:.0} ops/s",
        secs * 1000.0,
        N as f64 / secs
    );
    assert_eq!(
        std::fs::metadata(dir.join("obj")).expect("meta").nlink(),
        N as u64 + 1
    );

    let files: Vec<Vec<u8>> = (0..500).map(|i| b(&dir.join(format!("s{i}")))).collect();
    let contents: Vec<Vec<u8>> = (0..500).map(|i| pattern(8192, i as u64)).collect();
    let t = Instant::now();
    let results = futures::future::join_all(
        files
            .iter()
            .zip(&contents)
            .map(|(f, c)| sftp.write_file(f, c, 0o444, false)),
    )
    .await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r.expect("small upload");
    }
    println!(
        "small uploads: 500 x 8 KiB in {:.0} ms = {:.0} files/s",
        secs * 1000.0,
        500.0 / secs
    );
    assert_eq!(
        std::fs::read(dir.join("s499")).expect("s499"),
        pattern(8192, 499)
    );

    // The same with fsync@openssh.com per file (what durable object uploads cost).
    let files: Vec<Vec<u8>> = (0..200).map(|i| b(&dir.join(format!("y{i}")))).collect();
    let t = Instant::now();
    let results = futures::future::join_all(
        files
            .iter()
            .zip(&contents)
            .map(|(f, c)| sftp.write_file(f, c, 0o444, true)),
    )
    .await;
    let secs = t.elapsed().as_secs_f64();
    for r in results {
        r.expect("small upload with fsync");
    }
    println!(
        "small uploads with fsync: 200 x 8 KiB in {:.0} ms = {:.0} files/s",
        secs * 1000.0,
        200.0 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start();
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, b"").expect("write");
    let mut opts = sshd.options();
    opts.host_keys.user_files = vec![empty.clone()];
    let err = SshSession::connect(&opts).await.expect_err("must refuse");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&sshd.host_pub)
        .output()
        .expect("ssh-keygen -l");
    let listing = String::from_utf8_lossy(&out.stdout);
    let want = listing
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .expect("fingerprint in ssh-keygen -l output");
    match &err {
        SessionError::UnknownHostKey {
            fingerprint, host, ..
        } => {
            assert_eq!(fingerprint, want);
            assert_eq!(host, &format!("[127.0.0.1]:{}", sshd.port));
        }
        other => panic!("expected UnknownHostKey, got {other:?}"),
    }
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.contains(want) && msg.contains("empty_known_hosts"),
        "{msg}"
    );
    // Nothing was learned behind our back.
    assert_eq!(std::fs::read(&empty).expect("read"), b"");

    // A missing file is just as unknown.
    opts.host_keys.user_files = vec![sshd.dir.path().join("does-not-exist")];
    let err = SshSession::connect(&opts).await.expect_err("must refuse");
    assert!(
        matches!(err, SessionError::UnknownHostKey { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let other = sshd.dir.path().join("other_host_key");
    sshd::keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let mut fields = other_pub.split_whitespace();
    let (algo, key) = (fields.next().expect("algo"), fields.next().expect("key"));
    let kh = sshd.dir.path().join("changed_known_hosts");
    std::fs::write(
        &kh,
        format!("# a comment line\n[127.0.0.1]:{} {algo} {key}\n", sshd.port),
    )
    .expect("write");
    let mut opts = sshd.options();
    opts.host_keys.user_files = vec![kh];
    let err = SshSession::connect(&opts).await.expect_err("must refuse");
    match &err {
        SessionError::HostKeyChanged {
            place, fingerprint, ..
        } => {
            assert!(place.ends_with("changed_known_hosts:2"), "{place}");
            assert!(fingerprint.starts_with("SHA256:"));
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    println!("{err}");
    assert!(err.to_string().contains("HAS CHANGED"));

    // The right key, hashed (`ssh-keygen -H` format), is accepted.
    let hashed = sshd.dir.path().join("hashed_known_hosts");
    std::fs::copy(&sshd.known_hosts, &hashed).expect("copy");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .expect("ssh-keygen -H");
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&hashed)
        .expect("read")
        .starts_with("|1|"));
    let mut opts = sshd.options();
    opts.host_keys.user_files = vec![hashed];
    SshSession::connect(&opts)
        .await
        .expect("hashed known_hosts entry accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_an_authentication_failure() {
    let sshd = Sshd::start();
    let stranger = sshd.dir.path().join("stranger");
    sshd::keygen(&stranger);
    let mut opts = sshd.options();
    opts.identities = vec![relstore_ssh::Identity::KeyFile {
        path: stranger,
        passphrase: None,
    }];
    let err = SshSession::connect(&opts).await.expect_err("must fail");
    assert!(matches!(err, SessionError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("stranger"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_path() {
    let sshd = Sshd::start();
    let work = sshd.work();
    // As root, permissions do not stop anything: log in as an unprivileged user then.
    let user = if sshd::is_root() {
        "nobody".to_string()
    } else {
        sshd.user.clone()
    };
    let locked = work.join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let (_session, sftp) = connect_as(&sshd, &user).await;

    let target = b(&locked.join("caf\u{e9}.html"));
    let err = sftp
        .write_file(&target, b"x", 0o644, false)
        .await
        .expect_err("must be denied");
    assert!(
        matches!(err, SftpError::PermissionDenied { op: "open", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.contains(&format!("{}/caf\u{e9}.html", locked.display())),
        "{msg}"
    );
    let err = sftp
        .mkdir(&b(&locked.join("d")), 0o755)
        .await
        .expect_err("denied");
    assert!(
        matches!(err, SftpError::PermissionDenied { op: "mkdir", .. }),
        "{err:?}"
    );

    let missing = b(&work.join("no/such/file"));
    let err = sftp.lstat(&missing).await.expect_err("missing");
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("no/such/file"), "{err}");
    assert_eq!(err.into_io().kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_operations() {
    let sshd = Sshd::start();
    let (session, sftp) = connect(&sshd).await;
    let work = sshd.work();
    let w = b(&work);
    let p = |rel: &str| [w.as_slice(), b"/", rel.as_bytes()].concat();

    // realpath canonicalises; "." is the login directory.
    let real = sftp.realpath(&p("a/../.")).await;
    // OpenSSH's realpath needs existing components.
    assert!(real.is_err() || real.as_deref().ok() == Some(w.as_slice()));
    assert_eq!(sftp.realpath(&p(".")).await.expect("realpath"), w);
    assert!(!sftp.realpath(b".").await.expect("login dir").is_empty());

    // mkdir with a mode, setstat to an exact mode, rmdir.
    sftp.mkdir(&p("d"), 0o700).await.expect("mkdir");
    assert_eq!(
        std::fs::metadata(work.join("d")).expect("d").mode() & 0o7777,
        0o700
    );
    sftp.set_permissions(&p("d"), 0o2775)
        .await
        .expect("setstat");
    assert_eq!(
        std::fs::metadata(work.join("d")).expect("d").mode() & 0o7777,
        0o2775
    );
    let attrs = sftp.stat(&p("d")).await.expect("stat");
    assert!(attrs.is_dir() && attrs.mode() == Some(0o2775));
    sftp.rmdir(&p("d")).await.expect("rmdir");
    assert!(!work.join("d").exists());

    // Handles: fstat, fsetstat, fsync, read with offsets and EOF.
    let h = sftp
        .open(
            &p("f"),
            OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL,
            &FileAttrs::with_permissions(0o600),
        )
        .await
        .expect("open");
    sftp.write(&h, 0, b"0123456789").await.expect("write");
    sftp.fsync(&h).await.expect("fsync");
    assert_eq!(sftp.fstat(&h).await.expect("fstat").size, Some(10));
    sftp.fsetstat(&h, &FileAttrs::with_permissions(0o640))
        .await
        .expect("fsetstat");
    assert_eq!(
        sftp.read(&h, 3, 4).await.expect("read"),
        Some(b"3456".to_vec())
    );
    assert_eq!(
        sftp.read(&h, 8, 100).await.expect("read"),
        Some(b"89".to_vec())
    );
    assert_eq!(sftp.read(&h, 10, 100).await.expect("read at EOF"), None);
    sftp.close(&h).await.expect("close");
    assert_eq!(
        std::fs::metadata(work.join("f")).expect("f").mode() & 0o7777,
        0o640
    );
    let closed_again = sftp.close(&h).await.expect_err("handle is gone");
    assert!(closed_again.status_code().is_some(), "{closed_again:?}");

    // readdir of a large directory takes several batches.
    std::fs::create_dir(work.join("big")).expect("mkdir");
    for i in 0..250 {
        std::fs::write(work.join(format!("big/{i}")), b"").expect("file");
    }
    let entries = sftp.read_dir(&p("big")).await.expect("read_dir");
    assert_eq!(entries.len(), 250);
    assert!(entries
        .iter()
        .all(|e| e.attrs.is_file() && e.attrs.size == Some(0)));

    // remove, statvfs, a second SFTP channel on the same connection.
    sftp.remove(&p("f")).await.expect("remove");
    assert!(!work.join("f").exists());
    let err = sftp.remove(&p("f")).await.expect_err("gone");
    assert!(err.is_not_found());
    let vfs = sftp.statvfs(&w).await.expect("statvfs");
    assert!(vfs.bsize > 0 && vfs.blocks > 0, "{vfs:?}");
    let second = session
        .open_sftp(SftpConfig::default())
        .await
        .expect("second channel");
    assert_eq!(second.realpath(&p(".")).await.expect("realpath"), w);

    // Dropping every client ends the channel; the connection goes on.
    drop(second);
    drop(sftp);
    let third = session
        .open_sftp(SftpConfig::default())
        .await
        .expect("third channel");
    third.lstat(&w).await.expect("lstat");
    session.disconnect().await.expect("disconnect");
    let err = third.lstat(&w).await.expect_err("after disconnect");
    assert!(err.is_fatal(), "{err:?}");
}
