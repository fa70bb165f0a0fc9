//! The client: a [`Target`] whose every method is a request to a helper.
//!
//! One request is in flight at a time (the connection is behind a mutex); each is
//! one round trip whatever the number of objects or entries it concerns, and the
//! object stream of `put_objects` has no round trip per object at all. Long
//! operations report progress with interim messages. A connection that failed in
//! the middle of an exchange is not used again: every later call fails with
//! [`HelperError::Broken`]. Ctrl-C while a request is in flight is passed on to the
//! helper ([`crate::client_cancel`]).

use relstore_core::layout::LockFile;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use relstore_core::progress::Progress;
use relstore_core::shared::SeedItem;
use relstore_core::target::{
    AssembleStats, BlobSource, DeltaBases, Opened, Removal, StoredObject, TreeEntry, TreeKind,
    Upload,
};
use relstore_core::{ContentHash, Entry, ObjectId, ReleaseName, Target, TargetError, TargetResult};

use crate::client_cancel::SharedWriter;
use crate::client_delta::{full_entries, ManifestCache};
use crate::error::HelperError;
use crate::frame::{self, Counters, FrameReader, FrameWriter, WireTotals};
use crate::handshake::{greet, Hello, Peer, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::manifest_cache::DiskCache;
use crate::proto::{Delta, Request, Response, WireError, WireObject};

/// How the client compresses what it sends, and where it caches manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// zstd level of the object stream, patches and entry lists.
    pub level: i32,
    /// log2 of the object stream's window: how far back in the stream (across
    /// objects) a match may reach. The helper accepts at most
    /// [`crate::patch::MAX_WINDOW_LOG`].
    pub window_log: u32,
    /// zstd long-distance matching in the object stream (finds repeats far back in
    /// the window cheaply).
    pub long_distance: bool,
    /// Send patches for uploads with a base (see [`DeltaBases`]).
    pub patches: bool,
    /// Directory of the manifest cache ([`crate::manifest_cache`]): manifests found
    /// there by digest are not downloaded again. `None` (the default): no cache; see
    /// [`crate::manifest_cache::default_dir`] for the usual place.
    pub cache_dir: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            level: 3,
            window_log: 24,
            long_distance: true,
            patches: true,
            cache_dir: None,
        }
    }
}

/// What the object streams of a connection carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Objects sent whole.
    pub objects_whole: u64,
    /// Objects sent as patches.
    pub objects_patched: u64,
    /// Objects sent again whole because the helper could not use their patch.
    pub objects_resent: u64,
    /// Bytes of object content sent or rebuilt from patches (before compression).
    pub content_bytes: u64,
}

#[derive(Default)]
pub(crate) struct StatCounters {
    pub whole: AtomicU64,
    pub patched: AtomicU64,
    pub resent: AtomicU64,
    pub content: AtomicU64,
}

/// Both halves of the stream, and whether an exchange failed half-way.
pub(crate) struct Conn {
    pub r: FrameReader<Box<dyn Read + Send>>,
    pub w: FrameWriter<Box<dyn Write + Send>>,
    /// What `w` writes to, shared with the Ctrl-C watcher ([`crate::client_cancel`]).
    pub out: SharedWriter,
    pub broken: bool,
}

impl Conn {
    /// Reads the answer to a request, passing interim messages to `progress`. While
    /// it waits, a Ctrl-C is passed on to the helper.
    pub(crate) fn answer(
        &mut self,
        progress: Option<&dyn Progress>,
    ) -> Result<Response, HelperError> {
        self.w.flush("sending a request")?;
        self.out.set_idle();
        loop {
            match self
                .r
                .expect::<Response>("waiting for the helper's answer")?
            {
                Response::Progress(n) => {
                    if let Some(p) = progress {
                        p.advance(n);
                    }
                }
                Response::Note(m) => {
                    if let Some(p) = progress {
                        p.note(&m);
                    }
                }
                other => return Ok(other),
            }
        }
    }
}

/// A store reached through a helper.
pub struct HelperClient {
    pub(crate) location: String,
    pub(crate) options: ClientOptions,
    peer: Peer,
    pub(crate) conn: Mutex<Conn>,
    counters: Arc<Counters>,
    pub(crate) stats: StatCounters,
    pub(crate) manifests: Mutex<ManifestCache>,
    disk: Option<DiskCache>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl HelperClient {
    /// Greets the helper at the other end of `reader`/`writer`. `location` names the
    /// store in messages (`host:path`). Fails with [`HelperError::NotAHelper`] or
    /// [`HelperError::Incompatible`] when there is no usable helper there.
    pub fn connect(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        location: impl Into<String>,
        options: ClientOptions,
    ) -> Result<HelperClient, HelperError> {
        let counters = Arc::new(Counters::default());
        let out = SharedWriter::new(Box::new(writer));
        let (mut r, mut w) = frame::split(
            Box::new(reader) as Box<dyn Read + Send>,
            Box::new(out.clone()) as Box<dyn Write + Send>,
            &counters,
        );
        let peer = greet(
            &mut r,
            &mut w,
            (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION),
            &Hello::ours(""),
        )?;
        if peer.protocol >= 2 {
            out.watch(counters.clone())
                .map_err(|e| HelperError::io("starting the Ctrl-C watcher", e))?;
        }
        Ok(HelperClient {
            location: location.into(),
            disk: options.cache_dir.clone().map(DiskCache::new),
            options,
            peer,
            conn: Mutex::new(Conn {
                r,
                w,
                out,
                broken: false,
            }),
            counters,
            stats: StatCounters::default(),
            manifests: Mutex::new(ManifestCache::default()),
        })
    }

    /// The helper, as it introduced itself.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Bytes sent and received so far.
    pub fn wire_totals(&self) -> WireTotals {
        self.counters.totals()
    }

    /// What the object streams carried so far.
    pub fn transfer_stats(&self) -> TransferStats {
        let s = &self.stats;
        TransferStats {
            objects_whole: s.whole.load(Ordering::Relaxed),
            objects_patched: s.patched.load(Ordering::Relaxed),
            objects_resent: s.resent.load(Ordering::Relaxed),
            content_bytes: s.content.load(Ordering::Relaxed),
        }
    }

    /// A store error the helper reported, naming places as the client names them.
    pub(crate) fn store_error(&self, e: WireError) -> TargetError {
        e.relocated(&self.peer.hello.location, &self.location)
            .into_target_error()
    }

    /// The connection, unless an earlier failure broke it.
    pub(crate) fn conn(&self) -> TargetResult<MutexGuard<'_, Conn>> {
        let conn = lock(&self.conn);
        if conn.broken {
            return Err(HelperError::Broken.into_target_error(&self.location));
        }
        Ok(conn)
    }

    /// One request, one answer; a helper error becomes the store error it was.
    fn call_with(&self, req: &Request, progress: Option<&dyn Progress>) -> TargetResult<Response> {
        let mut conn = self.conn()?;
        let answer = conn
            .w
            .send_now(req, "sending a request")
            .and_then(|()| conn.answer(progress));
        match answer {
            Ok(Response::Error(e)) => Err(self.store_error(e)),
            Ok(r) => Ok(r),
            Err(e) => {
                conn.broken = true;
                Err(e.into_target_error(&self.location))
            }
        }
    }

    fn call(&self, req: &Request) -> TargetResult<Response> {
        self.call_with(req, None)
    }

    /// The error for an answer that does not fit the request.
    pub(crate) fn unexpected(&self, what: &str, got: &Response) -> TargetError {
        TargetError::Other(format!(
            "{}: helper protocol error: unexpected answer {} to {what}",
            self.location,
            got.kind()
        ))
    }

    fn done(&self, what: &str, req: &Request) -> TargetResult<()> {
        match self.call(req)? {
            Response::Done => Ok(()),
            other => Err(self.unexpected(what, &other)),
        }
    }

    fn flag(&self, what: &str, req: &Request) -> TargetResult<bool> {
        match self.call(req)? {
            Response::Flag(b) => Ok(b),
            other => Err(self.unexpected(what, &other)),
        }
    }

    fn names(&self, what: &str, req: &Request) -> TargetResult<Vec<String>> {
        match self.call(req)? {
            Response::Names(n) => Ok(n),
            other => Err(self.unexpected(what, &other)),
        }
    }

    fn removal(
        &self,
        what: &str,
        req: &Request,
        p: Option<&dyn Progress>,
    ) -> TargetResult<Removal> {
        match self.call_with(req, p)? {
            Response::Removed(left_behind) => Ok(Removal { left_behind }),
            other => Err(self.unexpected(what, &other)),
        }
    }

    /// Sends a request carrying entries (or a manifest) as a delta, and the full
    /// value if the helper cannot apply the delta.
    fn with_delta(
        &self,
        what: &str,
        delta: Delta,
        full: impl FnOnce() -> TargetResult<Delta>,
        make: impl Fn(Delta) -> Request,
        progress: Option<&dyn Progress>,
    ) -> TargetResult<Response> {
        let was_full = matches!(delta, Delta::Full(_));
        match self.call_with(&make(delta), progress)? {
            Response::NeedFull(why) if was_full => Err(TargetError::Other(format!(
                "{}: the helper refused the {what}: {why}",
                self.location
            ))),
            Response::NeedFull(_) => self.call_with(&make(full()?), progress),
            other => Ok(other),
        }
    }

    /// Manifest `name` from the disk cache, if the helper speaks protocol 3 and the
    /// cache has a file with the digest the helper reports. A store error (no such
    /// manifest) is the error a full read would give.
    fn cached_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        let Some(disk) = self.disk.as_ref().filter(|_| self.peer.protocol >= 3) else {
            return Ok(None);
        };
        match self.call(&Request::ManifestDigest(name.to_string()))? {
            Response::Digest(d) => Ok(disk.get(&d)),
            other => Err(self.unexpected("manifest_digest", &other)),
        }
    }

    fn encode_failed(&self, what: &str) -> TargetError {
        TargetError::Other(format!("{}: cannot encode the {what}", self.location))
    }

    /// Says goodbye and returns the byte totals; the helper exits.
    pub fn close(self) -> WireTotals {
        self.bye();
        self.counters.totals()
    }

    fn bye(&self) {
        let mut conn = lock(&self.conn);
        if !conn.broken {
            conn.broken = true;
            let _ = conn.w.send_now(&Request::Bye, "saying goodbye");
        }
    }
}

impl Drop for HelperClient {
    fn drop(&mut self) {
        self.bye();
    }
}

fn wire_objects(objects: &[StoredObject]) -> Vec<WireObject> {
    objects.iter().map(WireObject::from).collect()
}

impl Target for HelperClient {
    fn location(&self) -> &str {
        &self.location
    }

    fn open(&self, create: bool) -> TargetResult<Opened> {
        match self.call(&Request::Open { create })? {
            Response::Opened { created: true } => Ok(Opened::Created),
            Response::Opened { created: false } => Ok(Opened::Existing),
            other => Err(self.unexpected("open", &other)),
        }
    }

    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool> {
        self.flag(
            "create_lock",
            &Request::CreateLock(which, contents.to_vec()),
        )
    }

    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>> {
        match self.call(&Request::ReadLock(which))? {
            Response::MaybeBytes(b) => Ok(b.map(|b| b.into_vec())),
            other => Err(self.unexpected("read_lock", &other)),
        }
    }

    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool> {
        self.flag(
            "remove_lock",
            &Request::RemoveLock(which, expected.to_vec()),
        )
    }

    fn current(&self) -> TargetResult<Option<ReleaseName>> {
        match self.call(&Request::Current)? {
            Response::MaybeName(None) => Ok(None),
            Response::MaybeName(Some(n)) => ReleaseName::parse(&n).map(Some).map_err(|e| {
                TargetError::Other(format!("{}: current release: {e}", self.location))
            }),
            other => Err(self.unexpected("current", &other)),
        }
    }

    fn list_release_dirs(&self) -> TargetResult<Vec<String>> {
        self.names("list_release_dirs", &Request::ListReleaseDirs)
    }

    fn list_manifests(&self) -> TargetResult<Vec<String>> {
        self.names("list_manifests", &Request::ListManifests)
    }

    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>> {
        let bytes = match self.cached_manifest(name)? {
            Some(b) => b,
            None => match self.call(&Request::ReadManifest(name.to_string()))? {
                Response::Bytes(b) => {
                    if let Some(disk) = &self.disk {
                        disk.put(&b);
                    }
                    b
                }
                other => return Err(self.unexpected("read_manifest", &other)),
            },
        };
        lock(&self.manifests).remember(name.as_str(), false, bytes.clone());
        Ok(bytes)
    }

    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>> {
        let req = Request::ReadManifestPrefixes(names.iter().map(|n| n.to_string()).collect());
        match self.call(&req) {
            Ok(Response::ManyBytes(list)) if list.len() == names.len() => list
                .into_iter()
                .map(|r| r.map(|b| b.into_vec()).map_err(|e| self.store_error(e)))
                .collect(),
            Ok(other) => {
                let e = self
                    .unexpected("read_manifest_prefixes", &other)
                    .to_string();
                names
                    .iter()
                    .map(|_| Err(TargetError::Other(e.clone())))
                    .collect()
            }
            Err(e) => {
                let e = e.to_string();
                names
                    .iter()
                    .map(|_| Err(TargetError::Other(e.clone())))
                    .collect()
            }
        }
    }

    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        match self.call(&Request::ReadStagedManifest(name.to_string()))? {
            Response::MaybeBytes(b) => {
                let b = b.map(|b| b.into_vec());
                if let Some(bytes) = &b {
                    lock(&self.manifests).remember(name.as_str(), true, bytes.clone());
                }
                Ok(b)
            }
            other => Err(self.unexpected("read_staged_manifest", &other)),
        }
    }

    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()> {
        let delta = lock(&self.manifests).manifest_delta(bytes, self.options.level);
        let delta = delta.unwrap_or_else(|| Delta::Full(bytes.to_vec()));
        let make = |body| Request::StageManifest {
            name: name.to_string(),
            body,
        };
        let full = || Ok(Delta::Full(bytes.to_vec()));
        match self.with_delta("manifest", delta, full, make, None)? {
            Response::Done => {
                lock(&self.manifests).remember(name.as_str(), true, bytes.to_vec());
                if let Some(disk) = &self.disk {
                    disk.put(bytes);
                }
                Ok(())
            }
            other => Err(self.unexpected("stage_manifest", &other)),
        }
    }

    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()> {
        self.done(
            "commit_manifest",
            &Request::CommitManifest(name.to_string()),
        )?;
        lock(&self.manifests).committed(name.as_str());
        Ok(())
    }

    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>> {
        match self.call(&Request::MissingObjects(ids.to_vec()))? {
            Response::Ids(ids) => Ok(ids),
            other => Err(self.unexpected("missing_objects", &other)),
        }
    }

    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        crate::client_put::put(self, uploads, source, None, progress)
    }

    fn put_objects_with_bases(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        bases: &dyn DeltaBases,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        let bases = self.options.patches.then_some(bases);
        crate::client_put::put(self, uploads, source, bases, progress)
    }

    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats> {
        let level = self.options.level;
        let delta = lock(&self.manifests)
            .entries(entries, level)
            .ok_or_else(|| self.encode_failed("entries"))?;
        let full = || full_entries(entries, level).ok_or_else(|| self.encode_failed("entries"));
        let make = |entries| Request::Assemble {
            name: name.to_string(),
            entries,
        };
        match self.with_delta("entries", delta, full, make, Some(progress))? {
            Response::Assembled(s) => Ok(s.into()),
            other => Err(self.unexpected("assemble", &other)),
        }
    }

    fn activate(&self, name: &ReleaseName) -> TargetResult<()> {
        self.done("activate", &Request::Activate(name.to_string()))
    }

    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal> {
        self.removal(
            "remove_release_dir",
            &Request::RemoveReleaseDir(name.to_owned()),
            None,
        )
    }

    fn clear_tmp(&self) -> TargetResult<Removal> {
        self.removal("clear_tmp", &Request::ClearTmp, None)
    }

    fn list_objects(&self) -> TargetResult<Vec<StoredObject>> {
        match self.call(&Request::ListObjects)? {
            Response::Objects(list) => Ok(list.into_iter().map(StoredObject::from).collect()),
            other => Err(self.unexpected("list_objects", &other)),
        }
    }

    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal> {
        let req = Request::RemoveObjects(wire_objects(objects));
        self.removal("remove_objects", &req, Some(progress))
    }

    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        let req = Request::HashObjects(wire_objects(objects));
        let answer = self.call_with(&req, Some(progress));
        per_object(self, "hash_objects", objects.len(), answer, |r| match r {
            Response::Hashes(list) => Ok(list),
            other => Err(other),
        })
    }

    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>> {
        let answer = self.call(&Request::ObjectInodes(wire_objects(objects)));
        per_object(self, "object_inodes", objects.len(), answer, |r| match r {
            Response::Inodes(list) => Ok(list),
            other => Err(other),
        })
    }

    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>> {
        match self.call(&Request::ListReleaseTree(name.to_string()))? {
            Response::Tree(list) => Ok(list.into_iter().map(TreeEntry::from).collect()),
            other => Err(self.unexpected("list_release_tree", &other)),
        }
    }

    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()> {
        let entries = full_entries(entries, self.options.level)
            .ok_or_else(|| self.encode_failed("entries"))?;
        self.done(
            "relink",
            &Request::Relink {
                name: name.to_string(),
                entries,
            },
        )
    }

    fn list_pins(&self) -> TargetResult<Vec<String>> {
        self.names("list_pins", &Request::ListPins)
    }

    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        let req = Request::SetPin {
            name: name.to_string(),
            pinned,
        };
        self.done("set_pin", &req)
    }

    fn shared_kinds(&self, paths: &[String]) -> TargetResult<Vec<Option<TreeKind>>> {
        self.require_protocol(4, "shared paths")?;
        match self.call(&Request::SharedKinds(paths.to_vec()))? {
            Response::Kinds(list) if list.len() == paths.len() => Ok(list
                .into_iter()
                .map(|k| k.map(crate::proto::tree_kind_of))
                .collect()),
            other => Err(self.unexpected("shared_kinds", &other)),
        }
    }

    fn seed_shared(&self, path: &str, items: &[SeedItem]) -> TargetResult<bool> {
        self.require_protocol(4, "shared paths")?;
        let req = Request::SeedShared {
            path: path.to_owned(),
            items: items.to_vec(),
        };
        self.flag("seed_shared", &req)
    }

    fn remove_store(&self) -> TargetResult<()> {
        self.done("remove_store", &Request::RemoveStore)
    }
}

impl HelperClient {
    /// Refuses a feature the helper's protocol version lacks, in one line that says
    /// what to do.
    fn require_protocol(&self, version: u16, what: &str) -> TargetResult<()> {
        if self.peer.protocol >= version {
            return Ok(());
        }
        Err(TargetError::Other(format!(
            "{}: the helper there speaks protocol {}, {what} need {version}: update \
             relstore on the server or use --helper off",
            self.location, self.peer.protocol
        )))
    }
}

/// Spreads an answer with one result per object over `n` results (an error for each
/// when the call failed as a whole).
fn per_object<T>(
    client: &HelperClient,
    what: &str,
    n: usize,
    answer: TargetResult<Response>,
    pick: impl FnOnce(Response) -> Result<Vec<Result<T, crate::proto::WireError>>, Response>,
) -> Vec<TargetResult<T>> {
    let all_failed = |msg: String| {
        (0..n)
            .map(|_| Err(TargetError::Other(msg.clone())))
            .collect()
    };
    match answer.map(pick) {
        Ok(Ok(list)) if list.len() == n => list
            .into_iter()
            .map(|r| r.map_err(|e| client.store_error(e)))
            .collect(),
        Ok(Ok(_)) => all_failed(format!(
            "{}: helper protocol error: wrong number of results to {what}",
            client.location
        )),
        Ok(Err(other)) => all_failed(client.unexpected(what, &other).to_string()),
        Err(e) => all_failed(e.to_string()),
    }
}
