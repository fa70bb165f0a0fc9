//! [`SftpTarget`]: a store root on an SSH server, spoken to over SFTP only — nothing
//! needs to be installed on the server.
//!
//! The [`Target`] trait is synchronous; the target owns a small tokio runtime and
//! `block_on`s each operation. Inside an operation everything that is many
//! independent requests is pipelined: existence checks, uploads, mkdir/hardlink/
//! symlink during assembly, deletions, directory listings and object reads run
//! hundreds at a time, spread over a few SFTP channels of one SSH connection (the
//! server's per-channel window caps what one channel carries).
//!
//! The semantics follow the local target step by step (see `relstore-local`); what
//! both decide alike — which roots `open` accepts, the order of assembly, link-cap
//! copies, how `relink` replaces a path — is decided once in `relstore_core::root`
//! and `relstore_core::assembly`, and executed here over SFTP: uploads land in `tmp/`, are fsync'd (`fsync@openssh.com` when offered) and renamed
//! into `objects/` with `posix-rename@openssh.com`; releases are assembled in
//! `tmp/NAME.partial` with `hardlink@openssh.com` and renamed into `releases/`;
//! `current` is replaced by renaming a fresh symlink over it; the lock is a complete
//! file hardlinked to `lock` (link fails if a lock exists, so a lock is never seen
//! half-written). SFTP v3 has no inode numbers: [`Target::object_inodes`] and
//! `TreeEntry::ino` are `None`, which makes `verify` skip its "is a hardlink of its
//! object" check (sizes, modes, kinds, link targets and object hashes are checked).

mod assemble;
mod contain;
mod inspect;
mod lock;
mod rehash;
mod root;
mod shared;
mod staging;
mod upload;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use relstore_core::failpoint::{kill_point, points};
use relstore_core::layout::{self, LockFile};
use relstore_core::manifest::HEADER_PREFIX_LEN;
use relstore_core::path::escape;
use relstore_core::progress::Progress;
use relstore_core::store_path;
use relstore_core::target::{
    AssembleStats, BlobSource, Opened, Removal, StoredObject, TargetError, TargetResult, TreeEntry,
    Upload,
};
use relstore_core::{ContentHash, Entry, ObjectId, ReleaseName, Target};

use crate::config::{self, RemoteOptions};
use crate::session::{error_line, SshSession};
use crate::sftp::{
    FileAttrs, OpenFlags, SftpClient, SftpConfig, SftpError, EXT_FSYNC, EXT_HARDLINK,
    EXT_POSIX_RENAME,
};
use crate::spec::RemoteSpec;

/// SFTP channels opened per target: two keep large uploads from being capped by one
/// channel's window while staying far below sshd's default `MaxSessions` (10).
const CHANNELS: usize = 2;
/// Small requests (stat, hardlink, mkdir, remove) in flight per operation.
const SMALL_IN_FLIGHT: usize = 384;
/// Directory listings in flight.
const LISTINGS_IN_FLIGHT: usize = 32;
/// Objects read at once when hashing.
const READS_IN_FLIGHT: usize = 16;

/// A store root on an SSH server; see the module docs.
pub struct SftpTarget {
    rt: tokio::runtime::Runtime,
    session: SshSession,
    channels: Vec<SftpClient>,
    /// More SFTP channels, opened on the first large upload or assembly (see
    /// `SftpTarget::widen`): each is its own sftp-server process on the server.
    extra: std::sync::OnceLock<Vec<SftpClient>>,
    /// The permission bits the server's umask removes from created files, probed
    /// once (see `SftpTarget::umask`).
    umask: std::sync::OnceLock<u32>,
    next_channel: AtomicUsize,
    /// Absolute path of the store root on the server, no trailing slash.
    root: Vec<u8>,
    location: String,
    /// `user@host` or `ssh://user@host:port`, to name remote paths in messages.
    where_: String,
    has_fsync: bool,
    /// Makes temp names unique to this process (several clients may share a root).
    tag: String,
    counter: AtomicU64,
}

impl std::fmt::Debug for SftpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpTarget")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn other(msg: impl Into<String>) -> TargetError {
    TargetError::Other(msg.into())
}

fn is_failure(e: &SftpError) -> bool {
    matches!(e, SftpError::Failure { .. })
}

impl SftpTarget {
    /// Connects to the target named by `spec` (`[user@]host:path` or
    /// `ssh://[user@]host[:port]/path`) with the user's SSH setup in `opts`: host key
    /// checked, authenticated, SFTP channels open and the needed extensions present.
    /// Nothing on the server is changed (a relative path is resolved against the
    /// login's home directory).
    pub fn connect(spec: &str, opts: &RemoteOptions) -> TargetResult<SftpTarget> {
        let parsed = RemoteSpec::parse(spec).map_err(|e| other(e.to_string()))?;
        let route = config::resolve(&parsed, opts).map_err(|e| TargetError::Connect {
            spec: spec.to_owned(),
            source: Box::new(e),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("relstore-ssh")
            .enable_all()
            .build()
            .map_err(|e| TargetError::Io {
                op: "start the SSH runtime for",
                path: spec.to_string(),
                source: e,
            })?;
        let copts = &route.opts;
        let where_ = if copts.port == 22 {
            format!("{}@{}", copts.user, copts.host)
        } else {
            format!("ssh://{}@{}:{}", copts.user, copts.host, copts.port)
        };
        let (session, channels) = rt.block_on(async {
            let session = SshSession::connect_route(&route).await.map_err(|e| {
                if e.is_transient() {
                    // Typed, so that a push reconnecting after a lost connection tries
                    // again instead of giving up.
                    let kind = std::io::ErrorKind::ConnectionAborted;
                    TargetError::Connect {
                        spec: where_.clone(),
                        source: Box::new(std::io::Error::new(kind, error_line(&e))),
                    }
                } else {
                    other(error_line(&e))
                }
            })?;
            let mut channels = Vec::new();
            for _ in 0..CHANNELS {
                let c = session
                    .open_sftp(SftpConfig::default())
                    .await
                    .map_err(|e| other(error_line(&e)))?;
                channels.push(c);
            }
            Ok::<_, TargetError>((session, channels))
        })?;
        let first = &channels[0];
        check_extensions(first, &where_)?;
        let has_fsync = first.has_extension(EXT_FSYNC);
        let root = rt.block_on(root::resolve_root(first, &parsed.path, &where_))?;
        let tag = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                .unwrap_or(0)
        );
        Ok(SftpTarget {
            rt,
            session,
            channels,
            extra: std::sync::OnceLock::new(),
            umask: std::sync::OnceLock::new(),
            next_channel: AtomicUsize::new(0),
            root,
            location: spec.to_string(),
            where_,
            has_fsync,
            tag,
            counter: AtomicU64::new(0),
        })
    }

    /// The store root's absolute path on the server.
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// `user@host[:port]` this target is connected to.
    pub fn destination(&self) -> &str {
        self.session.destination()
    }

    /// The SSH connection (helper mode opens its exec channels on it).
    pub fn session(&self) -> &SshSession {
        &self.session
    }

    /// The runtime the connection lives on (helper mode's channels run on it too).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// One of the SFTP channels (helper mode installs its helper with it).
    pub fn sftp(&self) -> &SftpClient {
        self.client()
    }

    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// One of the SFTP channels, round robin: requests spread over all of them
    /// (including the extra ones once [`SftpTarget::widen`] opened them).
    fn client(&self) -> &SftpClient {
        let extra = self.extra.get().map(Vec::as_slice).unwrap_or(&[]);
        let n = self.channels.len() + extra.len();
        let i = self.next_channel.fetch_add(1, Ordering::Relaxed) % n;
        match self.channels.get(i) {
            Some(c) => c,
            None => &extra[i - self.channels.len()],
        }
    }

    /// Absolute server path of `rel` (relative to the root).
    fn p(&self, rel: &str) -> Vec<u8> {
        self.pb(rel.as_bytes())
    }

    fn pb(&self, rel: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(self.root.len() + 1 + rel.len());
        p.extend_from_slice(&self.root);
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(rel);
        p
    }

    /// A remote path as shown in messages: `user@host:/path`.
    fn show(&self, path: &[u8]) -> String {
        if self.where_.starts_with("ssh://") {
            format!("{}{}", self.where_, escape(path))
        } else {
            format!("{}:{}", self.where_, escape(path))
        }
    }

    fn io_err(&self, op: &'static str, path: &[u8], e: SftpError) -> TargetError {
        TargetError::Io {
            op,
            path: self.show(path),
            source: e.into_io(),
        }
    }

    /// A fresh path under `tmp/` for something this process writes.
    fn tmp_path(&self, what: &str) -> Vec<u8> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.p(&format!("{}/{what}-{}-{n}", layout::TMP, self.tag))
    }

    async fn exists(&self, path: &[u8]) -> Result<bool, SftpError> {
        match self.client().lstat(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn read_optional(&self, path: &[u8]) -> TargetResult<Option<Vec<u8>>> {
        match self.client().read_file(path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.io_err("read", path, e)),
        }
    }

    /// Writes `bytes` to `path` durably: a temp file beside it, fsync, rename.
    async fn write_atomic(&self, path: &[u8], bytes: &[u8]) -> TargetResult<()> {
        let c = self.client();
        let mut tmp = path.to_vec();
        tmp.extend_from_slice(format!(".tmp{}", self.tag).as_bytes());
        let _ = c.remove(&tmp).await;
        if let Err(e) = c.write_file(&tmp, bytes, 0o644, self.has_fsync).await {
            let _ = c.remove(&tmp).await;
            return Err(self.io_err("write", &tmp, e));
        }
        if let Err(e) = c.posix_rename(&tmp, path).await {
            let _ = c.remove(&tmp).await;
            return Err(self.io_err("rename into place", path, e));
        }
        Ok(())
    }

    async fn list_names(&self, dir: &[u8], suffix: Option<&str>) -> TargetResult<Vec<String>> {
        let entries = self
            .client()
            .read_dir(dir)
            .await
            .map_err(|e| self.io_err("list", dir, e))?;
        Ok(layout::listed_names(
            entries.into_iter().map(|e| e.name),
            suffix,
        ))
    }

    async fn read_prefix(&self, path: &[u8]) -> Result<Vec<u8>, SftpError> {
        let c = self.client();
        let h = c.open(path, OpenFlags::READ, &FileAttrs::default()).await?;
        let mut out = Vec::new();
        let result = async {
            while out.len() < HEADER_PREFIX_LEN {
                let want = (HEADER_PREFIX_LEN - out.len()) as u32;
                match c.read(&h, out.len() as u64, want).await? {
                    Some(d) if !d.is_empty() => out.extend_from_slice(&d),
                    _ => break,
                }
            }
            Ok::<_, SftpError>(())
        }
        .await;
        let closed = c.close(&h).await;
        result?;
        closed?;
        Ok(out)
    }

    async fn activate_async(&self, name: &ReleaseName) -> TargetResult<()> {
        // Never point `current` through a symlink out of the store, nor rename over
        // something that is not the symlink relstore swaps.
        self.existing_store_dir(&layout::release_dir(name)).await?;
        let current = self.p(layout::CURRENT);
        store_path::current_link(&self.show(&current), self.kind(&current).await?)?;
        let c = self.client();
        let tmp = self.tmp_path("current");
        let _ = c.remove(&tmp).await;
        c.symlink(layout::current_link_target(name).as_bytes(), &tmp)
            .await
            .map_err(|e| self.io_err("create symlink", &tmp, e))?;
        kill_point(points::SWAP_BEFORE_RENAME);
        if let Err(e) = c.posix_rename(&tmp, &current).await {
            let _ = c.remove(&tmp).await;
            return Err(self.io_err("replace", &current, e));
        }
        Ok(())
    }

    async fn remove_release_dir_async(&self, name: &str) -> TargetResult<Removal> {
        let dir = self.p(&format!("{}/{name}", layout::RELEASES));
        let aside = self.tmp_path("removing");
        match self.client().posix_rename(&dir, &aside).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(Removal::default()),
            Err(e) => return Err(self.io_err("move aside", &dir, e)),
        }
        Ok(Removal {
            left_behind: self.remove_tree(aside, None).await,
        })
    }

    async fn clear_tmp_async(&self) -> TargetResult<Removal> {
        self.store_dir(layout::TMP).await?;
        let tmp = self.p(layout::TMP);
        let children = match self.client().read_dir(&tmp).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => return Ok(Removal::default()),
            Err(e) => return Err(self.io_err("list", &tmp, e)),
        };
        let left_behind: Vec<Vec<String>> = futures::stream::iter(children)
            .map(|e| {
                let mut p = tmp.clone();
                p.push(b'/');
                p.extend_from_slice(&e.name);
                self.remove_tree(p, Some(e.attrs))
            })
            .buffer_unordered(LISTINGS_IN_FLIGHT)
            .collect()
            .await;
        Ok(Removal {
            left_behind: left_behind.into_iter().flatten().collect(),
        })
    }

    async fn set_pin_async(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        self.store_dir(layout::PINS).await?;
        let dir = self.p(layout::PINS);
        let marker = self.p(&format!("{}/{}", layout::PINS, name.as_str()));
        if pinned {
            self.mkdir_existing_ok(&dir, 0o755)
                .await
                .map_err(|e| self.io_err("create directory", &dir, e))?;
            self.write_atomic(&marker, b"").await
        } else {
            match self.client().remove(&marker).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(self.io_err("remove", &marker, e)),
            }
        }
    }
}

/// Refuses a server without the extensions relstore cannot work without.
fn check_extensions(client: &SftpClient, where_: &str) -> TargetResult<()> {
    let missing: Vec<&str> = [EXT_POSIX_RENAME, EXT_HARDLINK]
        .into_iter()
        .filter(|e| !client.has_extension(e))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(other(format!(
        "the SFTP server of {where_} lacks {} (needed for atomic renames and hardlinked \
         releases); relstore needs an OpenSSH-compatible SFTP server",
        missing.join(" and ")
    )))
}

impl Drop for SftpTarget {
    fn drop(&mut self) {
        // Say goodbye so the server's session process exits at once; bounded, since a
        // dead connection must not hold up the end of the command.
        let session = &self.session;
        self.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
        });
    }
}

impl Target for SftpTarget {
    fn location(&self) -> &str {
        &self.location
    }

    fn open(&self, create: bool) -> TargetResult<Opened> {
        self.run(self.open_async(create))
    }

    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool> {
        self.run(self.create_lock_async(which, contents))
    }

    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>> {
        self.run(self.read_optional(&self.p(which.file_name())))
    }

    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool> {
        self.run(self.remove_lock_async(which, expected))
    }

    fn current(&self) -> TargetResult<Option<ReleaseName>> {
        self.read_release_link(layout::CURRENT)
    }

    fn list_release_dirs(&self) -> TargetResult<Vec<String>> {
        self.run(self.list_names(&self.p(layout::RELEASES), None))
    }

    fn list_manifests(&self) -> TargetResult<Vec<String>> {
        self.run(self.list_names(&self.p(layout::MANIFESTS), Some(layout::MANIFEST_SUFFIX)))
    }

    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>> {
        let p = self.p(&layout::manifest_file(name));
        self.run(self.client().read_file(&p))
            .map_err(|e| self.io_err("read", &p, e))
    }

    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>> {
        self.run(
            futures::stream::iter(names)
                .map(|name| async move {
                    let p = self.p(&layout::manifest_file(name));
                    self.read_prefix(&p)
                        .await
                        .map_err(|e| self.io_err("read", &p, e))
                })
                .buffered(LISTINGS_IN_FLIGHT)
                .collect(),
        )
    }

    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        self.run(self.read_optional(&self.p(&layout::staged_manifest_file(name))))
    }

    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()> {
        self.run(self.write_atomic(&self.p(&layout::staged_manifest_file(name)), bytes))
    }

    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()> {
        let from = self.p(&layout::staged_manifest_file(name));
        let to = self.p(&layout::manifest_file(name));
        self.run(self.client().posix_rename(&from, &to))
            .map_err(|e| self.io_err("rename into place", &to, e))
    }

    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>> {
        self.run(upload::missing_objects(self, ids))
    }

    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        upload::put_objects(self, uploads, source, progress)
    }

    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats> {
        self.run(assemble::assemble(self, name, entries, progress))
    }

    fn activate(&self, name: &ReleaseName) -> TargetResult<()> {
        self.run(self.activate_async(name))
    }

    fn next(&self) -> TargetResult<Option<ReleaseName>> {
        self.read_release_link(layout::NEXT)
    }

    fn set_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        self.write_next(name)
    }

    fn hook_host(&self) -> String {
        self.host_label()
    }

    fn run_hook(
        &self,
        run: &relstore_core::hook::HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<relstore_core::hook::HookExit> {
        self.hook(run, output)
    }

    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal> {
        self.run(self.remove_release_dir_async(name))
    }

    fn clear_tmp(&self) -> TargetResult<Removal> {
        self.run(self.clear_tmp_async())
    }

    fn list_objects(&self) -> TargetResult<Vec<StoredObject>> {
        self.run(inspect::list_objects(self))
    }

    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal> {
        self.run(self.check_object_dirs(objects.iter().map(|o| &o.id)))?;
        let left: Vec<Option<String>> = self.run(
            futures::stream::iter(objects)
                .map(|o| async move {
                    if relstore_core::cancel::requested() {
                        return None; // reported once, below
                    }
                    let p = self.p(&o.rel_path());
                    let r = match self.client().remove(&p).await {
                        Ok(()) => None,
                        Err(e) if e.is_not_found() => None,
                        Err(e) => Some(format!("{}: {e}", self.show(&p))),
                    };
                    progress.advance(1);
                    kill_point(points::GC_REMOVED);
                    r
                })
                .buffer_unordered(SMALL_IN_FLIGHT)
                .collect(),
        );
        relstore_core::cancel::check()?;
        Ok(Removal {
            left_behind: left.into_iter().flatten().collect(),
        })
    }

    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        self.run(inspect::hash_objects(self, objects, progress))
    }

    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>> {
        // SFTP v3 has no inode numbers.
        objects.iter().map(|_| Ok(None)).collect()
    }

    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>> {
        self.run(inspect::list_release_tree(self, name))
    }

    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()> {
        self.run(assemble::relink(self, name, entries))
    }

    fn hash_release_files(
        &self,
        name: &ReleaseName,
        paths: &[Vec<u8>],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        self.run(rehash::hash_release_files(self, name, paths, progress))
    }

    fn list_pins(&self) -> TargetResult<Vec<String>> {
        self.run(async {
            match self.store_dir(layout::PINS).await? {
                false => Ok(Vec::new()),
                true => self.list_names(&self.p(layout::PINS), None).await,
            }
        })
    }

    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        self.run(self.set_pin_async(name, pinned))
    }

    fn shared_kinds(
        &self,
        paths: &[String],
    ) -> TargetResult<Vec<Option<relstore_core::target::TreeKind>>> {
        self.run(self.shared_kinds_async(paths))
    }

    fn seed_shared(
        &self,
        path: &str,
        items: &[relstore_core::shared::SeedItem],
    ) -> TargetResult<bool> {
        self.run(self.seed_shared_async(path, items))
    }

    fn remove_store(&self) -> TargetResult<()> {
        let left = self.run(self.remove_tree(self.root.clone(), None));
        match left.first() {
            None => Ok(()),
            Some(first) => Err(other(format!(
                "{}: could not delete {} path(s), first {first}",
                self.location,
                left.len()
            ))),
        }
    }
}
