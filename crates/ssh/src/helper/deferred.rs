//! A remote target that chooses between helper and SFTP when the command first opens
//! the store, not when it connects.
//!
//! Whether a helper may be installed depends on what the command does with the root:
//! `open(true)` (a push) may create the store and install the helper into it,
//! `open(false)` (every other command, and a dry run) never creates a store. A
//! command that fails before opening the store (a push whose source is missing) thus
//! leaves the server untouched, exactly as over SFTP.

use std::sync::{Arc, OnceLock};

use relstore_core::layout::LockFile;
use relstore_core::progress::Progress;
use relstore_core::target::{
    AssembleStats, BlobSource, DeltaBases, Opened, Removal, StoredObject, TreeEntry, Upload,
};
use relstore_core::{ContentHash, Entry, ObjectId, ReleaseName, Target, TargetError, TargetResult};

use super::{find, HelperMode, HelperRequest, HelperStatus};
use crate::target::SftpTarget;

/// Receives the one-line note saying which helper is used, or why none.
pub type NoteSink = Arc<dyn Fn(&str) + Send + Sync>;

struct Choice {
    target: Arc<dyn Target>,
    /// `--helper require` and no helper: the error `open` returns.
    refused: Option<String>,
}

/// See the module docs.
pub struct DeferredTarget {
    sftp: Arc<SftpTarget>,
    location: String,
    mode: HelperMode,
    note: NoteSink,
    choice: OnceLock<Choice>,
    status: OnceLock<HelperStatus>,
}

impl DeferredTarget {
    /// A target on `sftp` that finds a helper as `mode` says on its first `open`,
    /// telling `note` which one.
    pub fn new(sftp: SftpTarget, mode: HelperMode, note: NoteSink) -> DeferredTarget {
        DeferredTarget {
            location: sftp.location().to_owned(),
            sftp: Arc::new(sftp),
            mode,
            note,
            choice: OnceLock::new(),
            status: OnceLock::new(),
        }
    }

    /// Which helper is in use, once chosen.
    pub fn status(&self) -> Option<&HelperStatus> {
        self.status.get()
    }

    fn choose(&self, create: bool) -> &Choice {
        self.choice.get_or_init(|| {
            let request = HelperRequest {
                may_create: create,
                may_install: true,
            };
            let (choice, status) = match find(&self.sftp, &self.location, request) {
                Ok((client, running)) => (
                    Choice {
                        target: Arc::new(client),
                        refused: None,
                    },
                    HelperStatus::Running(running),
                ),
                Err(reason) => (
                    Choice {
                        target: self.sftp.clone(),
                        refused: (self.mode == HelperMode::Require).then(|| {
                            format!(
                                "{}: --helper require: no helper can run there: {reason}",
                                self.location
                            )
                        }),
                    },
                    HelperStatus::Unavailable { reason },
                ),
            };
            if choice.refused.is_none() {
                if let Some(line) = status.note(&self.location) {
                    (self.note)(&line);
                }
            }
            let _ = self.status.set(status);
            choice
        })
    }

    fn t(&self) -> &dyn Target {
        self.choose(false).target.as_ref()
    }
}

impl Target for DeferredTarget {
    fn location(&self) -> &str {
        &self.location
    }

    fn open(&self, create: bool) -> TargetResult<Opened> {
        let choice = self.choose(create);
        if let Some(refused) = &choice.refused {
            return Err(TargetError::Other(refused.clone()));
        }
        choice.target.open(create)
    }

    fn create_lock(&self, which: LockFile, contents: &[u8]) -> TargetResult<bool> {
        self.t().create_lock(which, contents)
    }

    fn read_lock(&self, which: LockFile) -> TargetResult<Option<Vec<u8>>> {
        self.t().read_lock(which)
    }

    fn remove_lock(&self, which: LockFile, expected: &[u8]) -> TargetResult<bool> {
        self.t().remove_lock(which, expected)
    }

    fn current(&self) -> TargetResult<Option<ReleaseName>> {
        self.t().current()
    }

    fn list_release_dirs(&self) -> TargetResult<Vec<String>> {
        self.t().list_release_dirs()
    }

    fn list_manifests(&self) -> TargetResult<Vec<String>> {
        self.t().list_manifests()
    }

    fn read_manifest(&self, name: &ReleaseName) -> TargetResult<Vec<u8>> {
        self.t().read_manifest(name)
    }

    fn read_manifest_prefixes(&self, names: &[ReleaseName]) -> Vec<TargetResult<Vec<u8>>> {
        self.t().read_manifest_prefixes(names)
    }

    fn read_staged_manifest(&self, name: &ReleaseName) -> TargetResult<Option<Vec<u8>>> {
        self.t().read_staged_manifest(name)
    }

    fn stage_manifest(&self, name: &ReleaseName, bytes: &[u8]) -> TargetResult<()> {
        self.t().stage_manifest(name, bytes)
    }

    fn commit_manifest(&self, name: &ReleaseName) -> TargetResult<()> {
        self.t().commit_manifest(name)
    }

    fn missing_objects(&self, ids: &[ObjectId]) -> TargetResult<Vec<ObjectId>> {
        self.t().missing_objects(ids)
    }

    fn put_objects(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        self.t().put_objects(uploads, source, progress)
    }

    fn put_objects_with_bases(
        &self,
        uploads: &[Upload],
        source: &dyn BlobSource,
        bases: &dyn DeltaBases,
        progress: &dyn Progress,
    ) -> TargetResult<()> {
        self.t()
            .put_objects_with_bases(uploads, source, bases, progress)
    }

    fn assemble(
        &self,
        name: &ReleaseName,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> TargetResult<AssembleStats> {
        self.t().assemble(name, entries, progress)
    }

    fn activate(&self, name: &ReleaseName) -> TargetResult<()> {
        self.t().activate(name)
    }

    // `next` and hooks go over the SFTP session and an exec channel of the same
    // connection, helper or not: the helper protocol needs no messages for them.
    fn next(&self) -> TargetResult<Option<ReleaseName>> {
        self.sftp.next()
    }

    fn set_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        self.sftp.set_next(name)
    }

    fn hook_host(&self) -> String {
        self.sftp.hook_host()
    }

    fn run_hook(
        &self,
        run: &relstore_core::hook::HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<relstore_core::hook::HookExit> {
        self.sftp.run_hook(run, output)
    }

    fn remove_release_dir(&self, name: &str) -> TargetResult<Removal> {
        self.t().remove_release_dir(name)
    }

    fn clear_tmp(&self) -> TargetResult<Removal> {
        self.t().clear_tmp()
    }

    fn list_objects(&self) -> TargetResult<Vec<StoredObject>> {
        self.t().list_objects()
    }

    fn remove_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> TargetResult<Removal> {
        self.t().remove_objects(objects, progress)
    }

    fn hash_objects(
        &self,
        objects: &[StoredObject],
        progress: &dyn Progress,
    ) -> Vec<TargetResult<ContentHash>> {
        self.t().hash_objects(objects, progress)
    }

    fn object_inodes(&self, objects: &[StoredObject]) -> Vec<TargetResult<Option<u64>>> {
        self.t().object_inodes(objects)
    }

    fn list_release_tree(&self, name: &ReleaseName) -> TargetResult<Vec<TreeEntry>> {
        self.t().list_release_tree(name)
    }

    fn relink(&self, name: &ReleaseName, entries: &[Entry]) -> TargetResult<()> {
        self.t().relink(name, entries)
    }

    fn list_pins(&self) -> TargetResult<Vec<String>> {
        self.t().list_pins()
    }

    fn set_pin(&self, name: &ReleaseName, pinned: bool) -> TargetResult<()> {
        self.t().set_pin(name, pinned)
    }

    fn shared_kinds(
        &self,
        paths: &[String],
    ) -> TargetResult<Vec<Option<relstore_core::target::TreeKind>>> {
        self.t().shared_kinds(paths)
    }

    fn seed_shared(
        &self,
        path: &str,
        items: &[relstore_core::shared::SeedItem],
    ) -> TargetResult<bool> {
        self.t().seed_shared(path, items)
    }

    fn remove_store(&self) -> TargetResult<()> {
        self.t().remove_store()
    }
}
