//! Command-line arguments. The verbs and their options are a stable surface that
//! scripts depend on (see DESIGN.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Deploy huge file trees atomically and incrementally.
#[derive(Parser, Debug)]
#[command(name = "relstore", version, about, long_about = None)]
pub struct Cli {
    /// Print one JSON object on stdout instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No notes on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Push SOURCE as a new release to TARGET and make it current.
    Push(PushArgs),
    /// List the releases of TARGET.
    Releases(ReleasesArgs),
    /// Make another release current (default: the one before current).
    Rollback(RollbackArgs),
    /// Compare two trees: TARGET@RELEASE (or @current), a directory, or a manifest file.
    Diff(DiffArgs),
    /// Evict old release directories and delete objects no remaining release uses.
    Prune(PruneArgs),
    /// Pin a release: prune never evicts it.
    Pin(PinArgs),
    /// Unpin a release.
    Unpin(PinArgs),
    /// Re-hash objects and check release trees against their manifests (--repair fixes).
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Store root.
    pub target: String,
    /// Check only this release (`current` for the current one); default: every release.
    pub release: Option<String>,
    /// Re-upload corrupt or missing objects and re-create broken paths (never deletes
    /// extra paths, never moves `current`).
    #[arg(long)]
    pub repair: bool,
    /// With --repair: a directory holding the original files (e.g. the source of a
    /// release); files are used only if their content hash matches. Repeatable.
    #[arg(long = "source", value_name = "DIR", requires = "repair")]
    pub sources: Vec<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Store root.
    pub target: String,
    /// How many release directories to keep (the current, pinned and newest ones are
    /// always kept).
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// Print the plan (releases evicted, objects and bytes freed) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PinArgs {
    /// Store root.
    pub target: String,
    /// Release name.
    pub release: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Directory to deploy.
    pub source: PathBuf,
    /// Store root: a local path (created if missing).
    pub target: String,
    /// Release name ([A-Za-z0-9._-]); default: a UTC timestamp like 20261122T053012Z.
    #[arg(long)]
    pub release: Option<String>,
    /// Create a release even if the tree equals the current release.
    #[arg(long)]
    pub force: bool,
    /// Skip fifos, sockets and device files in SOURCE instead of failing.
    #[arg(long)]
    pub skip_special: bool,
    /// After the push, keep only N release directories (like `prune --keep N`).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// Directory for the stat cache [default: $RELSTORE_CACHE_DIR, $XDG_CACHE_HOME/relstore or ~/.cache/relstore].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Hash every file instead of trusting the stat cache.
    #[arg(long)]
    pub no_stat_cache: bool,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// Wait for a lock held by another process instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// Wait at most this many seconds for the lock (implies --wait).
    #[arg(long, value_name = "SECS")]
    pub wait_timeout: Option<f64>,
    /// Break the target's lock even though its holder may be alive.
    #[arg(long)]
    pub break_lock: bool,
}

#[derive(Args, Debug)]
pub struct ReleasesArgs {
    /// Store root.
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Store root.
    pub target: String,
    /// Release to make current; default: the release before current.
    pub release: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Old side: TARGET@RELEASE, TARGET@current, a directory or a manifest file.
    pub a: String,
    /// New side, same forms.
    pub b: String,
    #[command(flatten)]
    pub cache: CacheArgs,
}
