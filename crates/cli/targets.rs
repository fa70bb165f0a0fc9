//! What the engine asks of the CLI to open targets and make benchmark trees: the kinds
//! of targets come from `relstore-targets`, the generated sites from
//! `relstore-fixtures`, so the engine depends on neither.

use std::path::Path;
use std::sync::Arc;

use relstore_core::Target;
use relstore_engine::bench::{BenchTrees, TreeError};
use relstore_engine::opener::OpenTarget;
use relstore_engine::EngineResult;
use relstore_fixtures::{generate, mutate, touch_all, MutationSpec, SiteSpec};
use relstore_targets::{is_remote, open_target, RemoteOptions};

/// Opens TARGET strings with the command line's SSH settings.
pub struct Targets {
    pub remote: RemoteOptions,
}

impl OpenTarget for Targets {
    fn is_remote(&self, spec: &str) -> bool {
        is_remote(spec)
    }

    fn open_target(&self, spec: &str) -> EngineResult<Arc<dyn Target>> {
        Ok(open_target(spec, &self.remote)?)
    }
}

/// `relstore bench`'s scratch trees: generated sites and their mutations.
pub struct FixtureTrees;

impl BenchTrees for FixtureTrees {
    fn generate(&self, dir: &Path, files: usize, seed: u64) -> Result<(), TreeError> {
        generate(dir, &SiteSpec::new(files, seed))?;
        Ok(())
    }

    fn touch_all(&self, dir: &Path) -> Result<(), TreeError> {
        touch_all(dir, 0)?;
        Ok(())
    }

    fn mutate(&self, dir: &Path, fraction: f64, seed: u64) -> Result<(), TreeError> {
        let spec = MutationSpec {
            fraction,
            seed,
            rename_dir: true,
        };
        mutate(dir, &spec)?;
        Ok(())
    }
}
