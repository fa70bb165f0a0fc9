//! `relstore bench`: show, on the user's own tree (or a generated one), what relstore
//! saves and where its time goes, next to `rsync -a --link-dest` on the same trees.
//!
//! One run of the series, on a scratch copy of the tree (the user's source is never
//! touched) and a fresh target, local stat cache and local release store:
//! 1. `first push` — every object uploaded;
//! 2. `no change` — nothing uploaded, no file re-read (stat cache);
//! 3. `CI rebuild` — every mtime set to now, content equal: every file re-hashed,
//!    nothing uploaded;
//! 4. `change N%` for each `--changes` value, cumulatively — the scratch tree is
//!    mutated with [`BenchTrees::mutate`] (`fraction = N/100`, `seed = SEED + i`
//!    for the i-th change, starting at 1, directory rename on) and pushed;
//! 5. `rollback evicted` — prune to one release, then roll back to the first release:
//!    its lost objects come back from the local release store.
//!
//! With rsync on the PATH (and a local target), steps 1–4 are also deployed with rsync
//! into a second scratch store right after relstore's push of the same tree state.
//! `--runs N` repeats the whole series N times and reports medians of the timings.
//! Scratch data is removed at the end, also on failure.
//!
//! The caller supplies how scratch trees are generated and changed ([`BenchTrees`])
//! and how scratch targets are opened ([`OpenTarget`]).

mod error;
mod rsync;
mod trees;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use relstore_core::progress::{NoProgress, Progress};
use relstore_core::Target;
use serde::{Serialize, Serializer};

use crate::error::{EngineError, EngineResult};
use crate::lock::LockPolicy;
use crate::opener::OpenTarget;
use crate::push::{push, PhaseTimes, PushOptions, PushReport};
use crate::rollback::{rollback, RollbackOptions};

pub use error::BenchError;
pub use rsync::available as rsync_available;
pub use trees::{BenchTrees, TreeError};

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The tree to benchmark (copied to scratch first); `None` with `generate`.
    pub source: Option<PathBuf>,
    /// Generate a site of this many files instead of using `source`.
    pub generate: Option<usize>,
    /// Seed of the generated site and of the mutations.
    pub seed: u64,
    /// Where to push (a scratch sub-directory per run is created under it); default: a
    /// local scratch directory.
    pub target: Option<String>,
    /// Percentages of files to change, one push each, in order.
    pub changes: Vec<f64>,
    /// How many times to run the series (timings are medians).
    pub runs: usize,
    /// Compare with `rsync -a --link-dest` when rsync is available.
    pub rsync: bool,
    /// Parent directory of the scratch data; default: the system temp directory.
    pub scratch: Option<PathBuf>,
}

/// What a benchmark needs from its caller besides the options: the scratch trees and
/// the targets.
#[derive(Clone, Copy)]
pub struct BenchEnv<'a> {
    /// Generates and changes the scratch trees.
    pub trees: &'a dyn BenchTrees,
    /// Opens the scratch targets.
    pub targets: &'a dyn OpenTarget,
    /// Where notes on each step go.
    pub progress: &'a dyn Progress,
}

/// One row of the table: a step of the series, medians over the runs. In `--json`,
/// with its [`BenchStep::savings`] and [`BenchStep::ratio`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchStep {
    #[serde(rename = "step")]
    pub name: String,
    pub files: u64,
    pub bytes: u64,
    pub objects_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Files re-read (hashed) by this step.
    pub files_hashed: u64,
    pub phases: PhaseTimes,
    pub seconds: f64,
    /// The rsync deploy of the same tree state, if it ran.
    pub rsync_seconds: Option<f64>,
    pub rsync_bytes_sent: Option<u64>,
}

impl BenchStep {
    /// `1 - uploaded/total`: what incremental upload saved against a full upload.
    pub fn savings(&self) -> f64 {
        if self.bytes == 0 {
            return 1.0;
        }
        1.0 - self.bytes_uploaded as f64 / self.bytes as f64
    }

    /// rsync's time over relstore's (above 1: relstore is faster).
    pub fn ratio(&self) -> Option<f64> {
        self.rsync_seconds
            .filter(|_| self.seconds > 0.0)
            .map(|r| r / self.seconds)
    }
}

/// The whole table (the field names are the `--json` keys).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    /// What was benchmarked (`generated: N files, seed S` or the source path).
    pub tree: String,
    /// Where relstore pushed (`local scratch` or the `--target`).
    pub target: String,
    pub runs: usize,
    /// Why rsync was not compared, if it was not.
    pub rsync_note: Option<String>,
    #[serde(serialize_with = "steps_with_figures")]
    pub steps: Vec<BenchStep>,
}

/// A step as `--json` shows it: its fields and the figures derived from them.
#[derive(Serialize)]
struct StepWithFigures<'a> {
    #[serde(flatten)]
    step: &'a BenchStep,
    savings: f64,
    ratio: Option<f64>,
}

/// The steps, each with its figures (see [`StepWithFigures`]).
fn steps_with_figures<S: Serializer>(steps: &[BenchStep], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(steps.iter().map(|step| StepWithFigures {
        step,
        savings: step.savings(),
        ratio: step.ratio(),
    }))
}

/// Runs the series `opts.runs` times and returns the medians.
pub fn bench(opts: &BenchOptions, env: BenchEnv<'_>) -> EngineResult<BenchReport> {
    let (tree, origin) = match (&opts.source, opts.generate) {
        (Some(_), Some(_)) => return Err(BenchError::SourceAndGenerate.into()),
        (None, None) => return Err(BenchError::NoTree.into()),
        (Some(src), None) => {
            if !src.is_dir() {
                return Err(BenchError::NotADirectory { path: src.clone() }.into());
            }
            (src.display().to_string(), Origin::Copy(src.clone()))
        }
        (None, Some(n)) => (
            format!("generated: {n} files, seed {}", opts.seed),
            Origin::Generate(n),
        ),
    };
    if opts.changes.iter().any(|c| !(0.0..=100.0).contains(c)) {
        return Err(BenchError::BadChange.into());
    }
    let remote = opts
        .target
        .as_deref()
        .is_some_and(|t| env.targets.is_remote(t));
    let rsync_note = if !opts.rsync {
        Some("rsync comparison turned off".to_owned())
    } else if remote {
        Some("rsync is compared on local targets only".to_owned())
    } else if !rsync::available() {
        Some("rsync is not on the PATH".to_owned())
    } else {
        None
    };
    let scratch_parent = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("relstore-bench-")
        .tempdir_in(&scratch_parent)
        .map_err(|source| BenchError::Scratch {
            parent: scratch_parent.clone(),
            source,
        })?;
    let mut runs = Vec::new();
    for run in 1..=opts.runs.max(1) {
        let dir = scratch.path().join(format!("run{run}"));
        let result = run_series(opts, &origin, &dir, run, rsync_note.is_none(), env);
        // Scratch on the target goes whatever happened; local scratch goes with `scratch`.
        let steps = result?;
        runs.push(steps);
    }
    Ok(BenchReport {
        tree,
        target: opts
            .target
            .clone()
            .unwrap_or_else(|| "local scratch directory".into()),
        runs: runs.len(),
        rsync_note,
        steps: medians(&runs),
    })
}

/// One run of the series under `dir`.
fn run_series(
    opts: &BenchOptions,
    origin: &Origin,
    dir: &Path,
    run: usize,
    with_rsync: bool,
    env: BenchEnv<'_>,
) -> EngineResult<Vec<BenchStep>> {
    let work = dir.join("tree");
    std::fs::create_dir_all(dir).map_err(|source| BenchError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    match origin {
        Origin::Copy(src) => copy_tree(src, &work)?,
        Origin::Generate(n) => {
            env.trees
                .generate(&work, *n, opts.seed)
                .map_err(|source| BenchError::Generate {
                    path: work.clone(),
                    source,
                })?;
        }
    }
    let (target_spec, local_target_root) = match &opts.target {
        Some(t) => (
            format!(
                "{}/relstore-bench-{}-run{run}",
                t.trim_end_matches('/'),
                std::process::id()
            ),
            None,
        ),
        None => {
            let p = dir.join("target");
            (p.display().to_string(), Some(p))
        }
    };
    let target = env.targets.open_target(&target_spec)?;
    let result = series(opts, dir, &work, &target, with_rsync, env);
    let cleanup = if local_target_root.is_some() {
        Ok(()) // inside the scratch directory
    } else {
        target.remove_store().map_err(EngineError::from)
    };
    let steps = result?;
    cleanup?;
    Ok(steps)
}

/// Where each run's scratch tree comes from.
enum Origin {
    /// A copy of the user's tree.
    Copy(PathBuf),
    /// A generated site of this many files.
    Generate(usize),
}

/// The steps of one run: pushes of the scratch tree `work` as it changes (each
/// followed by an rsync deploy when `with_rsync`), then the evicted rollback.
fn series(
    opts: &BenchOptions,
    dir: &Path,
    work: &Path,
    target: &Arc<dyn Target>,
    with_rsync: bool,
    env: BenchEnv<'_>,
) -> EngineResult<Vec<BenchStep>> {
    let progress = env.progress;
    let push_opts = PushOptions {
        cache_dir: Some(dir.join("cache")),
        store: Some(dir.join("local-store")),
        lock: LockPolicy::default(),
        ..PushOptions::default()
    };
    let mut rsync_store = with_rsync.then(|| rsync::RsyncStore::new(dir.join("rsync")));
    let mut steps = Vec::new();
    let mut release = 0u32;
    let mut step = |name: &str, steps: &mut Vec<BenchStep>| -> EngineResult<()> {
        release += 1;
        // A build finishes some time before its deploy starts; a push right in the
        // clock tick of the last write would (correctly) re-hash those racy files.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let opts = PushOptions {
            release: Some(format!("b{release}")),
            ..push_opts.clone()
        };
        let report = push(work, target, &opts, &NoProgress)?;
        let mut row = step_from(name, &report);
        if let Some(store) = rsync_store.as_mut() {
            let r = store.deploy(work)?;
            row.rsync_seconds = Some(r.seconds);
            row.rsync_bytes_sent = Some(r.bytes_sent);
        }
        progress.note(&format!(
            "{name}: {:.2} s{}",
            row.seconds,
            row.rsync_seconds
                .map(|r| format!(" (rsync {r:.2} s)"))
                .unwrap_or_default()
        ));
        steps.push(row);
        Ok(())
    };
    step("first push", &mut steps)?;
    step("no change", &mut steps)?;
    env.trees
        .touch_all(work)
        .map_err(|source| BenchError::Touch {
            path: work.to_path_buf(),
            source,
        })?;
    step("CI rebuild", &mut steps)?;
    for (i, pct) in opts.changes.iter().enumerate() {
        if *pct > 0.0 {
            let seed = opts.seed + i as u64 + 1;
            env.trees
                .mutate(work, pct / 100.0, seed)
                .map_err(|source| BenchError::Mutate {
                    path: work.to_path_buf(),
                    source,
                })?;
        }
        step(&format!("change {pct}%"), &mut steps)?;
    }
    if let Some(first) = steps.first() {
        if let Some(row) = rollback_evicted(target, push_opts.store.clone(), first)? {
            progress.note(&format!("rollback evicted: {:.2} s", row.seconds));
            steps.push(row);
        }
    }
    Ok(steps)
}

/// The last step: keep one release directory, then roll back to the first release
/// (`first`'s push, `b1`), whose objects come back from the local release `store`.
/// `None` when the prune did not evict it.
fn rollback_evicted(
    target: &Arc<dyn Target>,
    store: Option<PathBuf>,
    first: &BenchStep,
) -> EngineResult<Option<BenchStep>> {
    crate::retention::prune(target, 1, false, &LockPolicy::default(), &NoProgress)?;
    let catalog = crate::catalog::Catalog::load(target.as_ref())?;
    if catalog.get("b1").is_none_or(|r| r.present) {
        return Ok(None);
    }
    let t = Instant::now();
    let opts = RollbackOptions {
        release: Some("b1".to_owned()),
        store,
        ..RollbackOptions::default()
    };
    let r = rollback(target, &opts, &NoProgress)?;
    Ok(Some(BenchStep {
        name: "rollback evicted".into(),
        files: first.files,
        bytes: first.bytes,
        objects_uploaded: r.objects_uploaded,
        bytes_uploaded: r.bytes_uploaded,
        seconds: t.elapsed().as_secs_f64(),
        ..BenchStep::default()
    }))
}

/// The row of a push step.
fn step_from(name: &str, r: &PushReport) -> BenchStep {
    BenchStep {
        name: name.to_owned(),
        files: r.files_total,
        bytes: r.bytes_total,
        objects_uploaded: r.objects_uploaded,
        bytes_uploaded: r.bytes_uploaded,
        files_hashed: r.files_hashed,
        phases: r.phases.clone(),
        seconds: r.seconds,
        rsync_seconds: None,
        rsync_bytes_sent: None,
    }
}

/// Copies the user's tree with `cp -a` (modes, symlinks, times kept; a reflink where
/// the file system offers one).
fn copy_tree(from: &Path, to: &Path) -> EngineResult<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|source| BenchError::RunTool { tool: "cp", source })?;
    if !out.status.success() {
        return Err(BenchError::Copy {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Per step: counts of the first run, medians of the timings.
fn medians(runs: &[Vec<BenchStep>]) -> Vec<BenchStep> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, base)| {
            let rows: Vec<&BenchStep> = runs.iter().filter_map(|r| r.get(i)).collect();
            let m = |f: &dyn Fn(&BenchStep) -> f64| median(rows.iter().map(|r| f(r)).collect());
            let mut out = base.clone();
            out.seconds = m(&|r| r.seconds);
            out.phases = PhaseTimes {
                scan: m(&|r| r.phases.scan),
                hash: m(&|r| r.phases.hash),
                compare: m(&|r| r.phases.compare),
                upload: m(&|r| r.phases.upload),
                assemble: m(&|r| r.phases.assemble),
                swap: m(&|r| r.phases.swap),
            };
            if base.rsync_seconds.is_some() {
                out.rsync_seconds = Some(m(&|r| r.rsync_seconds.unwrap_or(0.0)));
            }
            out
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
