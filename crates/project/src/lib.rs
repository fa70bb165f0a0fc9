//! The project file: `relstore.toml` in a project's directory, naming where its tree
//! goes (`[targets.NAME] hosts = [...]`) and how (`source`, `keep`, `exclude`, shared
//! paths, hooks, helper mode), so that `relstore push --to prod` replaces a wrapper
//! script.
//!
//! The file is found by [`discover`] (the current directory or the nearest parent; a
//! store root ends the search, see [`is_store_root`]) or named with `--config FILE`,
//! parsed strictly ([`Project::load`]: unknown keys, wrong types and unknown target
//! names are errors naming the file, the line and the key) and resolved per target
//! into one plain [`ResolvedTarget`] that the CLI merges with its flags (the command
//! line always wins). This crate does no I/O besides reading the file and looking at
//! directories during discovery; it knows nothing of SSH or of the engine.
//!
//! A store root holds a file of the same name, the store's format marker
//! (`format = N`). The two never mix: discovery stops at a store root without reading
//! its marker as a project, and a file with a `format` key is refused as a project
//! file. docs/project-file.md describes every key and these rules.

mod discover;
mod error;
mod raw;
mod resolve;

pub use discover::{discover, is_store_root, Discovery, FILE_NAME};
pub use error::ProjectError;
pub use relstore_core::duration::{format_duration, parse_duration};
pub use resolve::{Helper, Hooks, Project, ResolvedTarget, DEFAULT_HOOK_TIMEOUT};

#[cfg(test)]
mod tests;
