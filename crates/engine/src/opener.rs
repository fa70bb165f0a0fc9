//! How the engine gets a [`Target`] from a TARGET string without naming any kind of
//! target: the caller (the CLI, through `relstore-targets`) hands it an [`OpenTarget`].
//! Most commands get an opened target; `bench` (its scratch targets) and `diff`
//! (`TARGET@RELEASE` operands) open targets themselves, through this.

use std::sync::Arc;

use relstore_core::Target;

use crate::error::EngineResult;

/// Opens the target a TARGET string names.
pub trait OpenTarget {
    /// Whether `spec` names a target on another machine (`bench` compares with rsync
    /// on local targets only).
    fn is_remote(&self, spec: &str) -> bool;

    /// Builds (and, for a remote one, connects) the target `spec` names; nothing on it
    /// is changed yet.
    fn open_target(&self, spec: &str) -> EngineResult<Arc<dyn Target>>;
}
