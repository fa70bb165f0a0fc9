//! The manifests one verify command reads, each downloaded and decoded at most once.
//!
//! A check needs a release's manifest twice (which objects it uses, then its tree),
//! repair needs it again to re-create paths, and the check after repair once more. A
//! manifest of a million files is tens of megabytes, over SSH too, so the decoded
//! manifests are kept for the whole command instead (repair never changes them).

use std::collections::HashMap;

use relstore_core::{Manifest, ReleaseName, Target, TargetError};

use crate::catalog::read_manifest;
use crate::error::{EngineError, EngineResult};

/// A manifest as loaded: decoded, or why it cannot be used.
enum Loaded {
    Decoded(Manifest),
    Unusable(String),
}

/// Decoded manifests by release, loaded on first use.
#[derive(Default)]
pub(super) struct Manifests {
    loaded: HashMap<ReleaseName, Loaded>,
}

impl Manifests {
    /// The manifest of `name`, or why it cannot be used when it does not decode (a
    /// problem to report). Any other failure to read it stops the command.
    pub(super) fn load(
        &mut self,
        target: &dyn Target,
        name: &ReleaseName,
    ) -> EngineResult<Result<&Manifest, &str>> {
        if !self.loaded.contains_key(name) {
            let loaded = read(target, name)?;
            self.loaded.insert(name.clone(), loaded);
        }
        Ok(self.loaded(name))
    }

    /// The manifest of `name` if it can be read and decoded; for repair, which leaves
    /// alone what it cannot read (the checks report what is in scope). A failure other
    /// than decoding is not kept: a later [`Manifests::load`] reports it.
    pub(super) fn load_usable(
        &mut self,
        target: &dyn Target,
        name: &ReleaseName,
    ) -> Option<&Manifest> {
        if !self.loaded.contains_key(name) {
            let loaded = read(target, name).ok()?;
            self.loaded.insert(name.clone(), loaded);
        }
        self.loaded(name).ok()
    }

    /// The already loaded manifest of `name`, if it decoded.
    pub(super) fn get(&self, name: &ReleaseName) -> Option<&Manifest> {
        match self.loaded.get(name) {
            Some(Loaded::Decoded(m)) => Some(m),
            _ => None,
        }
    }

    /// Replaces what was loaded for `name` (a manifest rebuilt by repair).
    pub(super) fn insert(&mut self, name: ReleaseName, manifest: Manifest) {
        self.loaded.insert(name, Loaded::Decoded(manifest));
    }

    /// What was loaded for `name`.
    fn loaded(&self, name: &ReleaseName) -> Result<&Manifest, &str> {
        match self.loaded.get(name) {
            Some(Loaded::Decoded(m)) => Ok(m),
            Some(Loaded::Unusable(why)) => Err(why),
            None => Err("not loaded"),
        }
    }
}

/// Downloads and decodes the manifest of `name`; one that does not decode is kept as
/// unusable, with the reason.
fn read(target: &dyn Target, name: &ReleaseName) -> EngineResult<Loaded> {
    match read_manifest(target, name) {
        Ok(m) => Ok(Loaded::Decoded(m)),
        Err(
            EngineError::Target(TargetError::Manifest { source, .. })
            | EngineError::ManifestNeedsRebuild { source, .. },
        ) => Ok(Loaded::Unusable(format!(
            "manifest cannot be used: {source}"
        ))),
        Err(e) => Err(e),
    }
}
