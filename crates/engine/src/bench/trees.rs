//! Where the scratch trees of a benchmark come from and how they change between steps.
//! The caller supplies this (the CLI uses `relstore-fixtures`), so the engine carries
//! no site generator.

use std::path::Path;

/// A failure of a [`BenchTrees`] operation, with its causes.
pub type TreeError = Box<dyn std::error::Error + Send + Sync>;

/// Makes and changes the scratch tree of a benchmark run.
pub trait BenchTrees {
    /// Writes a generated site of `files` files under `dir` (which does not exist yet),
    /// the same for the same `seed`.
    fn generate(&self, dir: &Path, files: usize, seed: u64) -> Result<(), TreeError>;

    /// Sets the mtime of every file under `dir` to now, content unchanged (what a CI
    /// rebuild does to a tree).
    fn touch_all(&self, dir: &Path) -> Result<(), TreeError>;

    /// Changes `fraction` (0..=1) of the files under `dir`, chosen by `seed`, and
    /// renames a directory.
    fn mutate(&self, dir: &Path, fraction: f64, seed: u64) -> Result<(), TreeError>;
}
