//! Push, rollback and repair through a relstore helper (both ends in this process,
//! over pipes, serving a local store): objects whose path had other content in the
//! release the store holds travel as patches against it, read from the local release
//! store.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use relstore_core::progress::NoProgress;
use relstore_core::Target;
use relstore_engine::lock::LockPolicy;
use relstore_engine::push::{push, PushOptions, PushReport};
use relstore_engine::retention::prune;
use relstore_engine::rollback::{rollback, RollbackOptions};
use relstore_engine::verify::{verify, VerifyOptions};
use relstore_helper::{
    serve, ClientOptions, HelperClient, HelperError, ServeOptions, ServeSummary,
};
use relstore_local::LocalTarget;
use tempfile::TempDir;

/// A source tree, a local release store, and a store served by a helper.
struct HelperEnv {
    dir: TempDir,
    client: Arc<HelperClient>,
    target: Arc<dyn Target>,
    server: JoinHandle<Result<ServeSummary, HelperError>>,
}

impl HelperEnv {
    fn new() -> HelperEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("site");
        let (c2s_r, c2s_w) = io::pipe().expect("pipe");
        let (s2c_r, s2c_w) = io::pipe().expect("pipe");
        let server = thread::spawn(move || {
            let target = LocalTarget::new(root);
            serve(c2s_r, s2c_w, &target, &ServeOptions::default())
        });
        let client = Arc::new(
            HelperClient::connect(s2c_r, c2s_w, "test:site", ClientOptions::default())
                .expect("connect"),
        );
        let target: Arc<dyn Target> = client.clone();
        HelperEnv {
            dir,
            client,
            target,
            server,
        }
    }

    fn source(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    fn release_store(&self) -> PathBuf {
        self.dir.path().join("local-store")
    }

    /// Pushes the source as `release`, writing through to the local release store.
    fn push(&self, release: &str) -> PushReport {
        let opts = PushOptions {
            release: Some(release.into()),
            store: Some(self.release_store()),
            ..PushOptions::default()
        };
        push(&self.source(), &self.target, &opts, &NoProgress).expect("push")
    }

    fn sent(&self) -> u64 {
        self.client.wire_totals().sent
    }

    /// Says goodbye and checks that the helper ended cleanly.
    fn finish(self) {
        drop(self.target);
        drop(self.client);
        self.server
            .join()
            .expect("server thread")
            .expect("helper session");
    }
}

/// A page of a documentation site: a shared template around text of its own that
/// compresses poorly (hex digits of a pseudo-random sequence), with a version string.
fn page(i: usize, version: &str) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n<head><title>Page {i}</title></head>\n<body>\n<nav>docs guide api blog</nav>\n<main>\n"
    );
    let mut x = i as u64 * 7919 + 1;
    for _ in 0..64 {
        out.push_str("<p>");
        for _ in 0..8 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.push_str(&format!("{:08x} ", x >> 32));
        }
        out.push_str("</p>\n");
    }
    out.push_str(&format!(
        "</main>\n<footer>Built for version {version}.</footer>\n</body>\n</html>\n"
    ));
    out
}

const PAGES: usize = 40;

/// Writes every page of the site for `version`, and a stylesheet that never changes.
fn write_site(src: &Path, version: &str) {
    for i in 0..PAGES {
        let dir = src.join(format!("docs/s{}", i % 4));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("p{i}.html")), page(i, version)).expect("write page");
    }
    fs::write(src.join("site.css"), "body { margin: 0 }\n").expect("write css");
}

#[test]
fn a_sitewide_edit_travels_as_patches_against_the_current_release() {
    let env = HelperEnv::new();
    write_site(&env.source(), "1.0.0");
    let first = env.push("r1");
    assert_eq!(first.objects_uploaded, PAGES as u64 + 1);
    assert_eq!(env.client.transfer_stats().objects_patched, 0);

    write_site(&env.source(), "1.0.1");
    let before = env.sent();
    let second = env.push("r2");
    let sent = env.sent() - before;
    assert_eq!(second.objects_uploaded, PAGES as u64);
    let stats = env.client.transfer_stats();
    assert_eq!(stats.objects_patched, PAGES as u64, "{stats:?}");
    assert_eq!(stats.objects_resent, 0, "{stats:?}");
    // Each page is a few kilobytes of poorly compressible text: whole, even
    // compressed, they would cost a good part of the new content.
    assert!(
        sent * 20 < second.bytes_uploaded,
        "{sent} bytes on the wire for {} bytes of new content",
        second.bytes_uploaded
    );
    let p = env.root().join("current/docs/s1/p5.html");
    assert_eq!(fs::read_to_string(p).expect("read"), page(5, "1.0.1"));
    env.finish();
}

#[test]
fn without_a_local_release_store_every_object_travels_whole() {
    let env = HelperEnv::new();
    write_site(&env.source(), "1.0.0");
    env.push("r1");
    fs::remove_dir_all(env.release_store()).expect("remove local store");
    write_site(&env.source(), "1.0.1");
    let opts = PushOptions {
        release: Some("r2".into()),
        ..PushOptions::default()
    };
    let before = env.sent();
    let second = push(&env.source(), &env.target, &opts, &NoProgress).expect("push");
    let sent = env.sent() - before;
    let stats = env.client.transfer_stats();
    assert_eq!(stats.objects_patched, 0, "{stats:?}");
    // The same pages whole, compressed together: many times the patches' bytes.
    assert!(sent * 3 > second.bytes_uploaded, "{sent} bytes on the wire");
    let p = env.root().join("current/docs/s0/p4.html");
    assert_eq!(fs::read_to_string(p).expect("read"), page(4, "1.0.1"));
    env.finish();
}

#[test]
fn an_evicted_release_comes_back_as_patches_against_current() {
    let env = HelperEnv::new();
    write_site(&env.source(), "1.0.0");
    env.push("r1");
    write_site(&env.source(), "1.0.1");
    env.push("r2");
    prune(&env.target, 1, false, &LockPolicy::default(), &NoProgress).expect("prune");
    let patched = env.client.transfer_stats().objects_patched;
    let before = env.sent();
    let opts = RollbackOptions {
        release: Some("r1".into()),
        store: Some(env.release_store()),
        ..RollbackOptions::default()
    };
    let r = rollback(&env.target, &opts, &NoProgress).expect("rollback");
    let sent = env.sent() - before;
    assert!(r.reassembled);
    assert_eq!(r.objects_uploaded, PAGES as u64);
    let stats = env.client.transfer_stats();
    assert_eq!(stats.objects_patched - patched, PAGES as u64, "{stats:?}");
    assert!(sent * 20 < r.bytes_uploaded, "{sent} bytes on the wire");
    let p = env.root().join("current/docs/s3/p7.html");
    assert_eq!(fs::read_to_string(p).expect("read"), page(7, "1.0.0"));
    env.finish();
}

#[test]
fn a_repaired_object_travels_as_a_patch_against_a_neighbouring_release() {
    let env = HelperEnv::new();
    write_site(&env.source(), "1.0.0");
    env.push("r1");
    write_site(&env.source(), "1.0.1");
    env.push("r2");
    // Damage the object behind one page of r2 on the server.
    let page_path = env.root().join("releases/r2/docs/s2/p2.html");
    fs::set_permissions(&page_path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = fs::read(&page_path).expect("read");
    bytes[100] ^= 1;
    fs::write(&page_path, &bytes).expect("corrupt");
    fs::set_permissions(&page_path, fs::Permissions::from_mode(0o444)).expect("chmod");

    let patched = env.client.transfer_stats().objects_patched;
    let opts = VerifyOptions {
        repair: true,
        store: Some(env.release_store()),
        ..VerifyOptions::default()
    };
    let report = verify(&env.target, &opts, &NoProgress).expect("verify --repair");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(!report.repaired.is_empty());
    let stats = env.client.transfer_stats();
    assert_eq!(stats.objects_patched - patched, 1, "{stats:?}");
    let p = env.root().join("current/docs/s2/p2.html");
    assert_eq!(fs::read_to_string(p).expect("read"), page(2, "1.0.1"));
    env.finish();
}
