//! Both ends in one process, over OS pipes, against a local store in a temporary
//! directory.

#![allow(clippy::unwrap_used)]

use relstore_core::layout::LockFile;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use relstore_core::progress::NoProgress;
use relstore_core::target::{BlobSource, DeltaBases, Opened, Upload};
use relstore_core::{
    ContentHash, Entry, EntryKind, Manifest, ObjectId, ReleaseName, Target, TargetError,
};
use relstore_local::LocalTarget;

use crate::error::HelperError;
use crate::proto::{Request, Response, StreamParams};
use crate::stream::{self, PatchHead, RecordHead};
use crate::{serve, ClientOptions, HelperClient, ServeOptions, ServeSummary};

pub(crate) struct Session {
    pub(crate) client: HelperClient,
    pub(crate) server: JoinHandle<Result<ServeSummary, HelperError>>,
    pub(crate) root: PathBuf,
    _dir: tempfile::TempDir,
}

/// A client connected to a helper serving the store at `root`.
pub(crate) fn connect_to(
    root: &Path,
    options: ClientOptions,
    serve_options: ServeOptions,
) -> (HelperClient, JoinHandle<Result<ServeSummary, HelperError>>) {
    let (c2s_r, c2s_w) = io::pipe().unwrap();
    let (s2c_r, s2c_w) = io::pipe().unwrap();
    let server_root = root.to_path_buf();
    let server = thread::spawn(move || {
        let target = LocalTarget::new(server_root);
        serve(c2s_r, s2c_w, &target, &serve_options)
    });
    let client = HelperClient::connect(s2c_r, c2s_w, "test:store", options).unwrap();
    (client, server)
}

fn start_with(options: ClientOptions) -> Session {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (client, server) = connect_to(&root, options, ServeOptions::default());
    Session {
        client,
        server,
        root,
        _dir: dir,
    }
}

pub(crate) fn start() -> Session {
    let s = start_with(ClientOptions::default());
    assert_eq!(s.client.open(true).unwrap(), Opened::Created);
    s
}

impl Session {
    pub(crate) fn finish(self) -> ServeSummary {
        self.client.close();
        self.server.join().unwrap().unwrap()
    }

    fn sent(&self) -> u64 {
        self.client.wire_totals().sent
    }
}

/// Blobs in memory, handed out without any check (so tests can lie).
#[derive(Default)]
struct Mem(HashMap<ObjectId, Vec<u8>>);

impl Mem {
    fn add(&mut self, content: &[u8]) -> Upload {
        let id = ObjectId::for_file(ContentHash::from(blake3::hash(content)), 0o644);
        self.0.insert(id, content.to_vec());
        Upload {
            id,
            size: content.len() as u64,
        }
    }
}

impl BlobSource for Mem {
    fn open(&self, upload: &Upload) -> io::Result<Box<dyn Read + Send>> {
        let data = self.0.get(&upload.id).ok_or(io::ErrorKind::NotFound)?;
        Ok(Box::new(Cursor::new(data.clone())))
    }

    fn describe(&self, upload: &Upload) -> String {
        format!("mem:{}", &upload.id.hash.to_hex()[..8])
    }
}

/// Base hints: upload id → (base id, the client's copy of the base).
#[derive(Default)]
struct Bases(HashMap<ObjectId, (ObjectId, Vec<u8>)>);

impl DeltaBases for Bases {
    fn base_of(&self, upload: &Upload) -> Option<ObjectId> {
        self.0.get(&upload.id).map(|(b, _)| *b)
    }

    fn open_base(&self, base: &ObjectId) -> io::Result<Box<dyn Read + Send>> {
        let (_, data) = self
            .0
            .values()
            .find(|(b, _)| b == base)
            .ok_or(io::ErrorKind::NotFound)?;
        Ok(Box::new(Cursor::new(data.clone())))
    }
}

const WORDS: &[&str] = &[
    "deploy", "release", "object", "manifest", "server", "atomic", "rename", "link", "content",
    "static", "site", "page", "build", "cache", "tree", "file", "hash", "store", "client",
    "helper", "stream", "patch", "version", "rollback",
];

/// An HTML page: a shared template (head, navigation, footer) around text of its own.
fn page(i: usize, len: usize) -> Vec<u8> {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Page {i}</title>\n<link rel=\"stylesheet\" href=\"/assets/css/site.css\">\n<script src=\"/assets/js/site.js\" defer></script>\n</head>\n<body>\n<nav class=\"site\">\n"
    )
    .into_bytes();
    for section in [
        "docs",
        "guide",
        "api",
        "blog",
        "download",
        "about",
        "community",
        "faq",
    ] {
        out.extend_from_slice(
            format!("<a class=\"nav-link\" href=\"/{section}/\">{section}</a>\n").as_bytes(),
        );
    }
    out.extend_from_slice(b"</nav>\n<main>\n");
    let footer = b"</main>\n<footer>\n<p>Copyright the authors. Built with a static site generator.</p>\n<p><a href=\"/privacy/\">Privacy</a> <a href=\"/imprint/\">Imprint</a></p>\n</footer>\n</body>\n</html>\n";
    let mut x = i as u64 + 1;
    while out.len() + footer.len() + 80 < len {
        out.extend_from_slice(b"<p>");
        for _ in 0..8 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(WORDS[(x >> 59) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"</p>\n");
    }
    out.extend_from_slice(footer);
    out
}

fn file_entry(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File {
            size: content.len() as u64,
            hash: ContentHash::from(blake3::hash(content)),
            mode: 0o644,
        },
    }
}

fn dir_entry(path: &str) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::Dir { mode: 0o755 },
    }
}

fn name(s: &str) -> ReleaseName {
    ReleaseName::parse(s).unwrap()
}

/// Every file under `objects/` holds the content its name says.
fn assert_objects_sound(root: &Path) {
    for prefix in fs::read_dir(root.join("objects")).unwrap() {
        let prefix = prefix.unwrap();
        for obj in fs::read_dir(prefix.path()).unwrap() {
            let obj = obj.unwrap();
            let (id, _) = ObjectId::parse_file_name(
                prefix.file_name().to_str().unwrap(),
                obj.file_name().to_str().unwrap(),
            )
            .unwrap();
            let content = fs::read(obj.path()).unwrap();
            assert_eq!(
                ContentHash::from(blake3::hash(&content)),
                id.hash,
                "{} has wrong content",
                obj.path().display()
            );
        }
    }
}

fn stored(root: &Path, id: &ObjectId) -> bool {
    root.join(id.rel_path()).exists()
}

/// Pushes `files` as release `rel` through `t`, the way the engine does.
fn push(t: &dyn Target, rel: &str, files: &[(String, Vec<u8>)], bases: Option<&Bases>) -> Manifest {
    let mut mem = Mem::default();
    let mut uploads = Vec::new();
    let mut entries = vec![dir_entry("d")];
    for (path, content) in files {
        uploads.push(mem.add(content));
        entries.push(file_entry(path, content));
    }
    let manifest = Manifest::new(&name(rel), 1, entries);
    let missing = t.missing_objects(&manifest.objects()).unwrap();
    let uploads: Vec<Upload> = uploads
        .into_iter()
        .filter(|u| missing.contains(&u.id))
        .fold(Vec::new(), |mut v, u| {
            if !v.contains(&u) {
                v.push(u);
            }
            v
        });
    match bases {
        Some(b) => t.put_objects_with_bases(&uploads, &mem, b, &NoProgress),
        None => t.put_objects(&uploads, &mem, &NoProgress),
    }
    .unwrap();
    t.assemble(&name(rel), &manifest.entries, &NoProgress)
        .unwrap();
    t.stage_manifest(&name(rel), &manifest.encode().unwrap())
        .unwrap();
    t.activate(&name(rel)).unwrap();
    t.commit_manifest(&name(rel)).unwrap();
    manifest
}

fn site(n: usize, len: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("d/p{i:04}.html"), page(i, len)))
        .collect()
}

/// Lock, release and manifest methods of a fresh store; returns the first manifest.
fn check_store_methods(s: &Session, files: &[(String, Vec<u8>)]) -> Manifest {
    let t = &s.client;
    assert_eq!(t.open(false).unwrap(), Opened::Existing);
    assert!(t.create_lock(LockFile::Store, b"me").unwrap());
    assert!(!t.create_lock(LockFile::Store, b"other").unwrap());
    assert_eq!(
        t.read_lock(LockFile::Store).unwrap().as_deref(),
        Some(&b"me"[..])
    );
    assert!(!t.remove_lock(LockFile::Store, b"other").unwrap());
    assert!(t.remove_lock(LockFile::Store, b"me").unwrap());
    assert_eq!(t.read_lock(LockFile::Store).unwrap(), None);
    assert_eq!(t.current().unwrap(), None);

    let m1 = push(t, "r1", files, None);
    assert_eq!(t.current().unwrap(), Some(name("r1")));
    assert_eq!(t.list_release_dirs().unwrap(), vec!["r1".to_owned()]);
    assert_eq!(t.list_manifests().unwrap(), vec!["r1".to_owned()]);
    assert_eq!(t.read_manifest(&name("r1")).unwrap(), m1.encode().unwrap());
    assert_eq!(
        t.read_manifest_prefixes(&[name("r1"), name("nope")])
            .into_iter()
            .map(|r| r.is_ok())
            .collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(t.read_staged_manifest(&name("r1")).unwrap(), None);
    for (path, content) in files {
        assert_eq!(
            &fs::read(s.root.join("current").join(path)).unwrap(),
            content
        );
    }
    t.set_pin(&name("r1"), true).unwrap();
    assert_eq!(t.list_pins().unwrap(), vec!["r1".to_owned()]);
    t.set_pin(&name("r1"), false).unwrap();
    assert!(t.list_pins().unwrap().is_empty());
    m1
}

/// Object and tree methods give what the local target gives directly.
fn check_object_methods(s: &Session) -> Vec<relstore_core::target::StoredObject> {
    let t = &s.client;
    let local = LocalTarget::new(&s.root);
    let mut objects = t.list_objects().unwrap();
    let mut direct = local.list_objects().unwrap();
    objects.sort_by_key(|o| o.id);
    direct.sort_by_key(|o| o.id);
    assert_eq!(objects, direct);
    let hashes = t.hash_objects(&objects, &NoProgress);
    assert!(objects
        .iter()
        .zip(&hashes)
        .all(|(o, h)| h.as_ref().unwrap() == &o.id.hash));
    let inodes = |t: &dyn Target| -> Vec<Option<u64>> {
        t.object_inodes(&objects)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(inodes(t), inodes(&local));
    let mut tree = t.list_release_tree(&name("r1")).unwrap();
    let mut tree_direct = local.list_release_tree(&name("r1")).unwrap();
    tree.sort_by(|a, b| a.path.cmp(&b.path));
    tree_direct.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(tree, tree_direct);
    objects
}

#[test]
fn every_target_method_round_trips() {
    let s = start();
    let t = &s.client;
    let files = site(20, 3000);
    let m1 = check_store_methods(&s, &files);
    let objects = check_object_methods(&s);
    assert_eq!(objects.len(), 20);

    // verify --repair: a broken path comes back.
    let broken = s.root.join("releases/r1/d/p0003.html");
    fs::remove_file(&broken).unwrap();
    t.relink(&name("r1"), &m1.entries[4..5]).unwrap();
    assert_eq!(fs::read(&broken).unwrap(), files[3].1);

    push(t, "r2", &site(3, 500), None);
    assert!(t.remove_release_dir("r1").unwrap().left_behind.is_empty());
    assert_eq!(t.list_release_dirs().unwrap(), vec!["r2".to_owned()]);
    assert!(t.clear_tmp().unwrap().left_behind.is_empty());
    let removal = t.remove_objects(&objects[..5], &NoProgress).unwrap();
    assert!(removal.left_behind.is_empty());
    assert_eq!(t.list_objects().unwrap().len(), 20 + 3 - 5);

    // Store errors come back as the same variants, naming the place.
    match t.read_manifest(&name("gone")).unwrap_err() {
        TargetError::Io { op, path, source } => {
            assert_eq!(op, "read");
            assert!(path.contains("gone"), "{path}");
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.assemble(&name("r2"), &m1.entries, &NoProgress).is_err());
    t.remove_store().unwrap();
    assert!(!s.root.exists());
    let summary = s.finish();
    assert!(summary.requests > 30);
}

#[test]
fn a_push_then_an_edited_push_produce_correct_releases_with_patches() {
    let s = start();
    let t = &s.client;
    let v1 = site(50, 4000);
    push(t, "v1", &v1, None);
    t.read_manifest(&name("v1")).unwrap();

    // Every page gets a new nav line: a template change.
    let mut bases = Bases::default();
    let v2: Vec<(String, Vec<u8>)> = v1
        .iter()
        .map(|(p, c)| {
            let text = String::from_utf8(c.clone()).unwrap();
            let new = text
                .replace(
                    "<nav class=\"site\">\n",
                    "<nav class=\"site\">\n<a href=\"/new/\">New</a>\n",
                )
                .into_bytes();
            let old_id = ObjectId::for_file(ContentHash::from(blake3::hash(c)), 0o644);
            let new_id = ObjectId::for_file(ContentHash::from(blake3::hash(&new)), 0o644);
            bases.0.insert(new_id, (old_id, c.clone()));
            (p.clone(), new)
        })
        .collect();
    let before = s.sent();
    push(t, "v2", &v2, Some(&bases));
    let cost = s.sent() - before;
    let stats = t.transfer_stats();
    assert_eq!(stats.objects_patched, 50);
    assert_eq!(stats.objects_resent, 0);
    let content: usize = v2.iter().map(|(_, c)| c.len()).sum();
    assert!(
        cost * 20 < content as u64,
        "{cost} bytes sent for {content}"
    );
    for (path, c) in &v2 {
        assert_eq!(&fs::read(s.root.join("current").join(path)).unwrap(), c);
    }
    assert_eq!(
        Manifest::decode(&t.read_manifest(&name("v2")).unwrap(), Some("v2"))
            .unwrap()
            .entries
            .len(),
        51
    );
    assert_objects_sound(&s.root);
    s.finish();
}

#[test]
fn similar_small_files_compress_much_better_in_one_stream() {
    let s = start();
    let files = site(300, 2000);
    let alone: usize = files
        .iter()
        .map(|(_, c)| zstd::bulk::compress(c, 3).unwrap().len())
        .sum();
    let before = s.sent();
    let mut mem = Mem::default();
    let uploads: Vec<Upload> = files.iter().map(|(_, c)| mem.add(c)).collect();
    s.client.put_objects(&uploads, &mem, &NoProgress).unwrap();
    let streamed = (s.sent() - before) as usize;
    eprintln!("300 similar pages: {streamed} bytes in one stream, {alone} as one frame each");
    assert!(
        streamed * 2 < alone,
        "one stream: {streamed} bytes, one frame per file: {alone} bytes"
    );
    assert_eq!(s.client.list_objects().unwrap().len(), 300);
    assert_objects_sound(&s.root);
    s.finish();
}

#[test]
fn a_slightly_edited_100k_file_travels_as_a_tiny_patch() {
    let s = start();
    let old = page(7, 100_000);
    let mut new = old.clone();
    new.splice(300..300, b"<p>one new line</p>\n".iter().copied());
    let at = new.len() - 5000;
    new[at..at + 4].copy_from_slice(b"2027");
    let mut mem = Mem::default();
    let up_old = mem.add(&old);
    s.client.put_objects(&[up_old], &mem, &NoProgress).unwrap();
    let up_new = mem.add(&new);
    let mut bases = Bases::default();
    bases.0.insert(up_new.id, (up_old.id, old.clone()));
    let before = s.sent();
    s.client
        .put_objects_with_bases(&[up_new], &mem, &bases, &NoProgress)
        .unwrap();
    let cost = s.sent() - before;
    eprintln!("two-line edit of a 100 KB page: {cost} bytes on the wire");
    assert!(cost < 400, "{cost} bytes for a two-line edit of 100 KB");
    assert_eq!(fs::read(s.root.join(up_new.id.rel_path())).unwrap(), new);
    assert_eq!(s.client.transfer_stats().objects_patched, 1);
    s.finish();
}

#[test]
fn manifests_and_entry_lists_travel_as_deltas() {
    let s = start();
    let t = &s.client;
    let v1 = site(2000, 300);
    push(t, "v1", &v1, None);
    t.read_manifest(&name("v1")).unwrap();
    let mut v2 = v1.clone();
    v2[10].1.extend_from_slice(b"<!-- changed -->\n");
    let mut mem = Mem::default();
    let up = mem.add(&v2[10].1);
    t.put_objects(&[up], &mem, &NoProgress).unwrap();
    let mut entries = vec![dir_entry("d")];
    entries.extend(v2.iter().map(|(p, c)| file_entry(p, c)));
    let m2 = Manifest::new(&name("v2"), 2, entries);
    let before = s.sent();
    t.assemble(&name("v2"), &m2.entries, &NoProgress).unwrap();
    let assemble_cost = s.sent() - before;
    let before = s.sent();
    let encoded = m2.encode().unwrap();
    t.stage_manifest(&name("v2"), &encoded).unwrap();
    let stage_cost = s.sent() - before;
    assert!(assemble_cost < 1000, "assemble sent {assemble_cost} bytes");
    assert!(
        stage_cost < 1000,
        "stage sent {stage_cost} bytes for {}",
        encoded.len()
    );
    assert_eq!(t.read_staged_manifest(&name("v2")).unwrap(), Some(encoded));
    assert_eq!(
        fs::read(s.root.join("releases/v2/d/p0010.html")).unwrap(),
        v2[10].1
    );
    s.finish();
}

/// Sends a hand-made object stream: `records` (the decompressed stream), compressed,
/// cut to `cut` compressed bytes if given, closed with `End`.
fn send_stream(client: &HelperClient, records: &[u8], cut: Option<usize>) -> Response {
    let mut compressed = zstd::bulk::compress(records, 3).unwrap();
    if let Some(n) = cut {
        compressed.truncate(n);
    }
    let mut conn = client.conn().unwrap();
    let params = StreamParams { window_log: 20 };
    conn.w.send(&Request::PutObjects(params), "t").unwrap();
    conn.w.send(&Request::Data(compressed), "t").unwrap();
    conn.w.send_now(&Request::End, "t").unwrap();
    conn.answer(None).unwrap()
}

fn whole_record(id: ObjectId, content: &[u8]) -> Vec<u8> {
    let mut out = stream::whole_header(&RecordHead {
        id,
        size: content.len() as u64,
    });
    out.extend_from_slice(content);
    out
}

fn id_of(content: &[u8]) -> ObjectId {
    ObjectId::for_file(ContentHash::from(blake3::hash(content)), 0o644)
}

#[test]
fn truncated_streams_store_nothing_incomplete() {
    let s = start();
    let good = page(1, 5000);
    let cut_obj = page(2, 50_000);
    let mut records = whole_record(id_of(&good), &good);
    records.extend(whole_record(id_of(&cut_obj), &cut_obj));
    records.extend(stream::end_record(2));
    // Cut inside the second object.
    let full_len = zstd::bulk::compress(&records, 3).unwrap().len();
    match send_stream(&s.client, &records, Some(full_len * 2 / 3)) {
        Response::Error(e) => assert!(e.message.contains("stream"), "{}", e.message),
        other => panic!("{}", other.kind()),
    }
    assert!(!stored(&s.root, &id_of(&cut_obj)));
    // A stream cut at a record boundary (no end record) is refused too; the objects
    // complete and verified before the cut are kept (a re-run need not send them).
    let complete = page(3, 3000);
    let boundary = whole_record(id_of(&complete), &complete);
    match send_stream(&s.client, &boundary, None) {
        Response::Error(e) => assert!(e.message.contains("truncated"), "{}", e.message),
        other => panic!("{}", other.kind()),
    }
    assert!(stored(&s.root, &id_of(&complete)));
    // A record announcing more bytes than the stream holds.
    let mut short = stream::whole_header(&RecordHead {
        id: id_of(&cut_obj),
        size: cut_obj.len() as u64,
    });
    short.extend_from_slice(&cut_obj[..100]);
    assert!(matches!(
        send_stream(&s.client, &short, None),
        Response::Error(_)
    ));
    assert!(!stored(&s.root, &id_of(&cut_obj)));
    assert_objects_sound(&s.root);
    // The connection is still usable.
    assert_eq!(s.client.current().unwrap(), None);
    s.finish();
}

#[test]
fn a_connection_cut_mid_stream_leaves_no_partial_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    LocalTarget::new(&root).open(true).unwrap();
    let (c2s_r, mut c2s_w) = io::pipe().unwrap();
    let (s2c_r, s2c_w) = io::pipe().unwrap();
    let server_root = root.clone();
    let server = thread::spawn(move || {
        serve(
            c2s_r,
            s2c_w,
            &LocalTarget::new(server_root),
            &ServeOptions::default(),
        )
    });
    let counters = std::sync::Arc::new(crate::frame::Counters::default());
    let (mut r, mut w) = crate::frame::split(s2c_r, &mut c2s_w, &counters);
    crate::handshake::greet(&mut r, &mut w, (1, 1), &crate::Hello::ours("")).unwrap();
    // Large enough to be spooled to a file under tmp/.
    let big = page(3, 6 << 20);
    let mut records = whole_record(id_of(&big), &big);
    records.extend(stream::end_record(1));
    let compressed = zstd::bulk::compress(&records, 3).unwrap();
    w.send(&Request::PutObjects(StreamParams { window_log: 20 }), "t")
        .unwrap();
    w.send_now(
        &Request::Data(compressed[..compressed.len() / 2].to_vec()),
        "t",
    )
    .unwrap();
    drop(w);
    drop(c2s_w);
    assert!(server.join().unwrap().is_err());
    assert!(!stored(&root, &id_of(&big)));
    assert_objects_sound(&root);
    let leftovers: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupt_patches_and_missing_bases_are_re_requested_never_stored() {
    let s = start();
    let base = page(4, 20_000);
    let mut mem = Mem::default();
    let up_base = mem.add(&base);
    s.client.put_objects(&[up_base], &mem, &NoProgress).unwrap();

    // Hand-made: a garbage patch, and a good patch against a base the helper lacks.
    let target = page(5, 20_000);
    let mut garbage = crate::patch::make_patch(&base, &target, 3).unwrap();
    let mid = garbage.len() / 2;
    garbage[mid] ^= 0xff;
    let absent = id_of(b"not stored anywhere");
    let patch_other = crate::patch::make_patch(b"not stored anywhere", &target, 3).unwrap();
    let mut records = Vec::new();
    for (base_id, patch) in [(up_base.id, &garbage), (absent, &patch_other)] {
        records.extend(stream::patch_header(
            &RecordHead {
                id: id_of(&target),
                size: target.len() as u64,
            },
            &PatchHead {
                base: base_id,
                patch_len: patch.len() as u64,
            },
        ));
        records.extend_from_slice(patch);
    }
    records.extend(stream::end_record(2));
    match send_stream(&s.client, &records, None) {
        Response::Stored { stored: 0, resend } => {
            assert_eq!(resend, vec![id_of(&target), id_of(&target)])
        }
        other => panic!("{}", other.kind()),
    }
    assert!(!stored(&s.root, &id_of(&target)));

    // Through the client: a base the helper lacks, and a client copy of the base that
    // differs from the helper's (so the patch rebuilds wrong content): both resent
    // whole, both stored right.
    let mut lying = base.clone();
    lying[100] = b'#';
    let edited = [&lying[..], b"<p>more</p>\n"].concat();
    let unstored = page(6, 20_000);
    let other = [&unstored[..], b"<p>more</p>\n"].concat();
    let up_edited = mem.add(&edited);
    let up_other = mem.add(&other);
    let mut bases = Bases::default();
    bases.0.insert(up_edited.id, (up_base.id, lying));
    bases
        .0
        .insert(up_other.id, (id_of(&unstored), unstored.clone()));
    s.client
        .put_objects_with_bases(&[up_edited, up_other], &mem, &bases, &NoProgress)
        .unwrap();
    let stats = s.client.transfer_stats();
    assert_eq!((stats.objects_patched, stats.objects_resent), (2, 2));
    assert_eq!(
        fs::read(s.root.join(up_edited.id.rel_path())).unwrap(),
        edited
    );
    assert_eq!(
        fs::read(s.root.join(up_other.id.rel_path())).unwrap(),
        other
    );
    assert_objects_sound(&s.root);
    s.finish();
}

#[test]
fn a_blob_with_the_wrong_hash_is_refused() {
    let s = start();
    let mut mem = Mem::default();
    let good = mem.add(b"good content");
    let claimed = mem.add(b"what the manifest says");
    // The source now hands out other bytes of the same length for that id.
    mem.0.insert(claimed.id, b"what the source has!!!".to_vec());
    let err = s
        .client
        .put_objects(&[good, claimed], &mem, &NoProgress)
        .unwrap_err();
    match err {
        TargetError::Blob { object, source } => {
            assert!(object.starts_with("mem:"), "{object}");
            assert!(source.to_string().contains("does not match"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    assert!(stored(&s.root, &good.id));
    assert!(!stored(&s.root, &claimed.id));
    assert_objects_sound(&s.root);
    // A source that fails mid-object abandons the stream; the connection stays.
    struct Failing;
    impl BlobSource for Failing {
        fn open(&self, _: &Upload) -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(Cursor::new(vec![1u8; 10]).chain(FailRead)))
        }
        fn describe(&self, _: &Upload) -> String {
            "failing".into()
        }
    }
    struct FailRead;
    impl Read for FailRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let up = Upload {
        id: id_of(&[1u8; 20]),
        size: 20,
    };
    let err = s
        .client
        .put_objects(&[up], &Failing, &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("failing"), "{err}");
    assert!(!stored(&s.root, &up.id));
    assert_eq!(s.client.current().unwrap(), None);
    s.finish();
}

/// A fake peer that sends `greeting` and then reads whatever comes.
fn fake_peer(greeting: Vec<u8>) -> HelperError {
    let (c2s_r, c2s_w) = io::pipe().unwrap();
    let (s2c_r, mut s2c_w) = io::pipe().unwrap();
    let peer = thread::spawn(move || {
        s2c_w.write_all(&greeting).unwrap();
        drop(s2c_w);
        let _ = io::copy(&mut { c2s_r }, &mut io::sink());
    });
    let err = HelperClient::connect(s2c_r, c2s_w, "x", ClientOptions::default())
        .err()
        .unwrap();
    peer.join().unwrap();
    err
}

#[test]
fn version_mismatch_and_strangers_give_clear_errors() {
    let err = fake_peer(crate::handshake::preamble(7, 9, "9.0.0"));
    assert!(matches!(
        err,
        HelperError::Incompatible { theirs_min: 7, .. }
    ));
    let text = err.to_string();
    let ours = format!(
        "{}..={}",
        crate::MIN_PROTOCOL_VERSION,
        crate::PROTOCOL_VERSION
    );
    assert!(
        text.contains("9.0.0") && text.contains("7..=9") && text.contains(&ours),
        "{text}"
    );
    let err = fake_peer(b"bash: relstore: command not found\n".to_vec());
    assert!(err.to_string().contains("bash: relstore"), "{err}");
    assert!(matches!(
        fake_peer(Vec::new()),
        HelperError::NotAHelper { .. }
    ));

    // The helper refuses an old client the same way.
    let (c2s_r, c2s_w) = io::pipe().unwrap();
    let (s2c_r, s2c_w) = io::pipe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let server = thread::spawn(move || {
        serve(
            c2s_r,
            s2c_w,
            &LocalTarget::new(root),
            &ServeOptions::default(),
        )
    });
    let counters = std::sync::Arc::new(crate::frame::Counters::default());
    let (mut r, mut w) = crate::frame::split(s2c_r, c2s_w, &counters);
    let client_err =
        crate::handshake::greet(&mut r, &mut w, (0, 0), &crate::Hello::ours("")).unwrap_err();
    assert!(matches!(client_err, HelperError::Incompatible { .. }));
    drop(w);
    let server_err = server.join().unwrap().unwrap_err();
    assert!(server_err.to_string().contains("0..=0"), "{server_err}");
}

/// Reads manifest `rel` through a fresh client with `cache` (and a helper offering
/// at most protocol `max`); returns the bytes and how many bytes the client received.
fn read_fresh(root: &Path, cache: Option<&Path>, max: Option<u16>, rel: &str) -> (Vec<u8>, u64) {
    let options = ClientOptions {
        cache_dir: cache.map(Path::to_path_buf),
        ..ClientOptions::default()
    };
    let serve_options = ServeOptions {
        max_protocol: max,
        ..ServeOptions::default()
    };
    let (client, server) = connect_to(root, options, serve_options);
    if let Some(v) = max {
        assert_eq!(client.peer().protocol, v);
    }
    let before = client.wire_totals().received;
    let bytes = client.read_manifest(&name(rel)).unwrap();
    let received = client.wire_totals().received - before;
    client.close();
    server.join().unwrap().unwrap();
    (bytes, received)
}

#[test]
fn manifests_read_before_come_from_the_disk_cache() {
    let s = start();
    let v1 = site(2000, 300);
    let manifest = push(&s.client, "v1", &v1, None);
    let encoded = manifest.encode().unwrap();
    assert!(encoded.len() > 10_000, "{}", encoded.len());
    let root = s.root.clone();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("manifests");

    let (bytes, full) = read_fresh(&root, Some(&cache), None, "v1");
    assert_eq!(bytes, encoded);
    assert!(
        full as usize > encoded.len() / 2,
        "full read received {full}"
    );
    let (bytes, cached) = read_fresh(&root, Some(&cache), None, "v1");
    assert_eq!(bytes, encoded);
    assert!(cached < 200, "cached read received {cached} bytes");

    // A damaged cache file is ignored, and replaced.
    let file = cache.join(blake3::hash(&encoded).to_hex().as_str());
    fs::write(&file, b"not the manifest").unwrap();
    let (bytes, again) = read_fresh(&root, Some(&cache), None, "v1");
    assert_eq!(bytes, encoded);
    assert!(again as usize > encoded.len() / 2, "received {again}");
    assert_eq!(fs::read(&file).unwrap(), encoded);

    // A missing manifest is the same error as without a cache.
    let options = ClientOptions {
        cache_dir: Some(cache.clone()),
        ..ClientOptions::default()
    };
    let (client, server) = connect_to(&root, options, ServeOptions::default());
    assert!(client.read_manifest(&name("nope")).is_err());
    client.close();
    server.join().unwrap().unwrap();
    s.finish();
}

#[test]
fn a_staged_manifest_is_cached_for_the_next_push() {
    let cache = tempfile::tempdir().unwrap();
    let s = start_with(ClientOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..ClientOptions::default()
    });
    s.client.open(true).unwrap();
    let manifest = push(&s.client, "v1", &site(2000, 300), None);
    let (bytes, received) = read_fresh(&s.root, Some(cache.path()), None, "v1");
    assert_eq!(bytes, manifest.encode().unwrap());
    assert!(received < 200, "received {received} bytes");
    s.finish();
}

#[test]
fn a_version_2_helper_is_read_in_full() {
    let s = start();
    let manifest = push(&s.client, "v1", &site(500, 300), None);
    let encoded = manifest.encode().unwrap();
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (bytes, received) = read_fresh(&s.root, Some(cache.path()), Some(2), "v1");
        assert_eq!(bytes, encoded);
        assert!(received as usize > encoded.len() / 2, "received {received}");
    }
    s.finish();
}
