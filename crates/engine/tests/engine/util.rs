//! A scratch source tree, a local target and push shorthands.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use relstore_core::progress::NoProgress;
use relstore_core::Target;
use relstore_engine::catalog::Catalog;
use relstore_engine::push::{push, PushOptions, PushReport};
use relstore_local::LocalTarget;
use tempfile::TempDir;

/// A temporary directory with a source tree, a store root and a local release store.
pub struct Env {
    pub dir: TempDir,
    pub target: Arc<dyn Target>,
}

impl Env {
    /// An empty source directory and a store root that does not exist yet.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("src")).expect("mkdir src");
        let target: Arc<dyn Target> = Arc::new(LocalTarget::new(dir.path().join("site")));
        Env { dir, target }
    }

    pub fn source(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    pub fn release_store(&self) -> PathBuf {
        self.dir.path().join("local-store")
    }

    /// Writes `content` at `rel` under the source, creating parent directories.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.source().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, content).expect("write");
    }

    /// Pushes the source as `release`, no stat cache, no local release store.
    pub fn push(&self, release: &str) -> PushReport {
        self.push_with(&PushOptions {
            release: Some(release.into()),
            ..PushOptions::default()
        })
    }

    /// Pushes the source with `opts`, failing the test on error.
    pub fn push_with(&self, opts: &PushOptions) -> PushReport {
        self.try_push(opts).expect("push")
    }

    pub fn try_push(&self, opts: &PushOptions) -> relstore_engine::EngineResult<PushReport> {
        push(&self.source(), &self.target, opts, &NoProgress)
    }

    /// What `current/rel` holds on the target.
    pub fn current_file(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join("current").join(rel)).expect("read current file")
    }

    /// The name `current` points at.
    pub fn current(&self) -> Option<String> {
        self.target
            .current()
            .expect("current")
            .map(|n| n.to_string())
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::load(self.target.as_ref()).expect("catalog")
    }

    /// Files under `objects/`.
    pub fn object_files(&self) -> usize {
        count_files(&self.root().join("objects"))
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
