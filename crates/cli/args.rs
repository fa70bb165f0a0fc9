//! Command-line arguments. The verbs and their options are a stable surface that
//! scripts depend on (see docs/store-format.md and the README).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The end of `relstore --help` and of the manual page.
const AFTER_HELP: &str = "TARGET is a local path, [user@]host:path or \
     ssh://[user@]host[:port]/path (every command works on each). Exit status: 0 success, \
     1 failure (one line on stderr), 2 usage error, 130/143 interrupted; `diff --exit-code` \
     exits 1 when the trees differ.";

/// Help of every TARGET argument: the forms a store root can take.
const TARGET_HELP: &str = "Store root: a local path, [user@]host:path (a path without a \
     leading / is relative to the login's home; host may be a Host alias of the ssh config) \
     or ssh://[user@]host[:port]/path [default: the project file's target: --to NAME, its \
     `default` or its only one]";

/// Help of `push`'s TARGET, which is created when missing.
const PUSH_TARGET_HELP: &str = "Store root, created if missing: a local path, \
     [user@]host:path (a path without a leading / is relative to the login's home; host may \
     be a Host alias of the ssh config) or ssh://[user@]host[:port]/path [default: the project \
     file's target: --to NAME, its `default` or its only one]; several make a fleet push: \
     staged on every host, then activated in waves (docs/fleets.md)";

/// Deploy huge file trees atomically and incrementally.
#[derive(Parser, Debug)]
#[command(name = "relstore", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print one JSON object on stdout instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// No notes on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// SSH private key for remote targets, tried before ~/.ssh/config's and the
    /// default ~/.ssh/id_* keys (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE", global = true)]
    pub identity: Vec<PathBuf>,
    /// known_hosts file for remote targets [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE", global = true)]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record the key of a host not yet in known_hosts (a changed key is
    /// always refused).
    #[arg(long, global = true)]
    pub accept_new_host_key: bool,
    /// When the connection to a remote target drops during a push, reconnect up to N
    /// times (waiting 1, 2, 4 … s) and continue: only what the target still lacks is
    /// uploaded. 0 fails at the first loss.
    #[arg(long, value_name = "N", default_value_t = 3, global = true)]
    pub retries: u32,
    /// ssh config file instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE", global = true, hide = true)]
    pub ssh_config: Option<PathBuf>,
    /// Run a relstore helper on SSH servers: auto (when one can run, else SFTP),
    /// off (SFTP only, nothing runs on the server), require [default: $RELSTORE_HELPER or auto].
    #[arg(long, value_name = "MODE", global = true)]
    pub helper: Option<relstore_ssh::HelperMode>,
    /// Project file to use instead of the relstore.toml found in the current directory
    /// or the nearest parent (used when no TARGET is given; see docs/project-file.md).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
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
    /// Make a staged release current (default: the one `next` points at), running the
    /// activation hooks.
    Activate(ActivateArgs),
    /// Per host of a fleet: the current, previous and staged release; flags a mixed
    /// fleet.
    Status(StatusArgs),
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
    /// Measure a series of pushes (first, no change, CI rebuild, changes, rollback) on
    /// a scratch copy, side by side with rsync --link-dest.
    Bench(BenchArgs),
    /// Show or prune the local release store (the client-side copy of pushed releases).
    #[command(subcommand)]
    Store(StoreCommand),
    /// The relstore helper of an SSH target.
    #[command(subcommand)]
    Helper(HelperCommand),
    /// The project file (relstore.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve a store on stdin/stdout for a relstore client (run over SSH by helper mode).
    #[command(hide = true)]
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, or write one page per command into a
    /// directory.
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `relstore completions bash >
    /// ~/.local/share/bash-completion/completions/relstore`.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write relstore.1 and relstore-VERB.1 for every command into DIR (e.g.
    /// ~/.local/share/man/man1) instead of printing relstore.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check the project file and print the resolved plan of every target.
    Check,
}

/// `--to NAME`: a target of the project file instead of a TARGET argument.
#[derive(Args, Debug)]
pub struct ToArgs {
    /// Use target NAME of the project file (relstore.toml) instead of TARGET.
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum HelperCommand {
    /// Which helper TARGET would use (version, where), or why none; installs nothing.
    Status(HelperStatusArgs),
}

#[derive(Args, Debug)]
pub struct HelperStatusArgs {
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    #[command(flatten)]
    pub to: ToArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Speak the helper protocol on stdin/stdout (the only transport).
    #[arg(long, required = true)]
    pub stdio: bool,
    /// Store root on this machine.
    pub root: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The tree to measure (a scratch copy is used; SOURCE is never changed).
    #[arg(required_unless_present = "generate", conflicts_with = "generate")]
    pub source: Option<PathBuf>,
    /// Measure a generated site of N files instead.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Seed of the generated site and of the mutations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Push here instead of a local scratch directory (a scratch sub-directory is
    /// created under it and removed afterwards): a local path, [user@]host:path or
    /// ssh://[user@]host[:port]/path.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Percentages of files to change, one push each, cumulatively.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pub changes: Vec<f64>,
    /// Run the series N times; timings are medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Do not compare with rsync --link-dest.
    #[arg(long)]
    pub no_rsync: bool,
    /// Parent directory for the scratch data [default: the system temp directory].
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Where the local release store is and what it holds.
    Info(StoreInfoArgs),
    /// Keep the blobs of the newest N recorded releases of each target, delete the rest.
    Prune(StorePruneArgs),
}

#[derive(Args, Debug)]
pub struct StoreInfoArgs {
    #[command(flatten)]
    pub store: StoreDirArgs,
}

#[derive(Args, Debug)]
pub struct StorePruneArgs {
    /// Releases to keep per target (their blobs stay).
    #[arg(long, value_name = "N")]
    pub keep: usize,
    /// Count what would go and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub store: StoreDirArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
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
    pub to: ToArgs,
    #[command(flatten)]
    pub store: StoreDirArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    /// How many release directories to keep (the current, pinned and newest ones are
    /// always kept) [default: the project file's `keep`].
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Print the plan (releases evicted, objects and bytes freed) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PinArgs {
    /// With one argument, it is the release name on the project file's target.
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    /// Release name.
    pub release: Option<String>,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Directory to deploy [default: the project file's `source`].
    pub source: Option<PathBuf>,
    #[arg(value_name = "TARGET", help = PUSH_TARGET_HELP)]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub checks: CheckArgs,
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
    /// Leave out source paths matching this gitignore-style pattern (`*.map`,
    /// `node_modules/`, `/build`, `!keep.map`); repeatable; applied after SOURCE/.relstoreignore.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Persistent path linked into every release from TARGET/shared/ (`uploads/`: a
    /// directory, `.env`: a file); seeded from SOURCE the first time; repeatable.
    #[arg(long, value_name = "PATH", value_parser = parse_shared)]
    pub shared: Vec<relstore_core::shared::SharedPath>,
    /// Print the exact plan (objects and bytes to upload, files to link) and change
    /// nothing on the target.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not copy this release's files into the local release store (an evicted
    /// release can then only come back with `rollback --source DIR`).
    #[arg(long)]
    pub no_local_store: bool,
    /// Stop before the swap: point ROOT/next at the new release and leave `current`
    /// alone; `relstore activate` makes it current later (and runs the hooks then).
    #[arg(long)]
    pub stage_only: bool,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub store: StoreDirArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct StoreDirArgs {
    /// The local release store (blobs of every pushed release, zstd-compressed) [default: $RELSTORE_STORE_DIR, $XDG_DATA_HOME/relstore/store or ~/.local/share/relstore/store].
    #[arg(long, value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
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
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    #[command(flatten)]
    pub to: ToArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    /// Release to make current; default: the release before current.
    pub release: Option<String>,
    /// A directory whose files may supply objects of an evicted release that neither
    /// the target nor the local release store holds (used only where the content hash
    /// matches). Repeatable.
    #[arg(long = "source", value_name = "DIR")]
    pub sources: Vec<PathBuf>,
    /// Print the plan (release, rebuild, objects and bytes to upload and from where)
    /// and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    #[command(flatten)]
    pub store: StoreDirArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct ActivateArgs {
    #[arg(value_name = "TARGET", help = TARGET_HELP)]
    pub target: Option<String>,
    /// Release to make current; default: the one `next` points at.
    pub release: Option<String>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Say which release and hooks, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Hooks: shell commands run on the target's host (see docs/hooks.md).
#[derive(Args, Debug)]
pub struct HookArgs {
    /// Run CMD in the new release right before the swap; if it fails, the release is
    /// left staged (ROOT/next) and `current` is untouched.
    #[arg(long, value_name = "CMD")]
    pub before_activate: Option<String>,
    /// Run CMD in the new release right after the swap; if it fails the command exits
    /// 1 (the swap stands unless --revert-on-hook-failure).
    #[arg(long, value_name = "CMD")]
    pub after_activate: Option<String>,
    /// Run CMD in the release made current by a rollback (or by a revert).
    #[arg(long, value_name = "CMD")]
    pub after_rollback: Option<String>,
    /// Kill a hook's process group after this long: 90s, 10m, 1h or seconds [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = relstore_core::duration::parse_duration)]
    pub hook_timeout: Option<std::time::Duration>,
    /// When after_activate fails, point `current` back at the previous release and run
    /// after_rollback.
    #[arg(long)]
    pub revert_on_hook_failure: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Old side: TARGET@RELEASE (RELEASE may be `current`; TARGET is a local path,
    /// [user@]host:path or ssh://[user@]host[:port]/path), a directory, or a manifest file.
    #[arg(value_name = "OLD")]
    pub a: String,
    /// New side, same forms.
    #[arg(value_name = "NEW")]
    pub b: String,
    /// Exit with status 1 when the two sides differ and 0 when they are equal, as `git
    /// diff --exit-code` does (without it, 0 either way). An error also exits 1 but
    /// prints a line starting `relstore: error:` on stderr.
    #[arg(long)]
    pub exit_code: bool,
    /// For a directory side: leave out paths matching this gitignore-style pattern, as
    /// `push --exclude` does (its .relstoreignore always applies); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub to: ToArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// How a command works on several hosts (a fleet: several TARGETs, or `--to` a
/// target with several hosts); see docs/fleets.md.
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Hosts worked on at once (staging, and within a wave).
    #[arg(long, value_name = "N", default_value_t = relstore_engine::fleet::DEFAULT_JOBS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
    /// Activate in waves: cumulative host counts and percentages, e.g. 1,50%,100%
    /// [default: all hosts at once].
    #[arg(long, value_name = "LIST")]
    pub waves: Option<relstore_engine::fleet::Waves>,
    /// Wait this long between two waves: 30s, 500ms, 2m or seconds.
    #[arg(long, value_name = "DURATION", value_parser = relstore_core::duration::parse_duration_or_zero)]
    pub pause: Option<std::time::Duration>,
}

/// Health checks after each host's swap in a fleet push; a failure reverts the fleet.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Run CMD on each host, in the new release, after its swap (like a hook); a
    /// non-zero exit fails the host.
    #[arg(long, value_name = "CMD")]
    pub check: Option<String>,
    /// GET URL from this machine after each host's swap (`{host}` is replaced by the
    /// host's name); passes on a 2xx status.
    #[arg(long, value_name = "URL")]
    pub check_url: Option<String>,
    /// With --check-url: the body must contain TEXT.
    #[arg(long, value_name = "TEXT", requires = "check_url")]
    pub check_body: Option<String>,
    /// Retry a failing check for this long before giving up: 10s, 1m…
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = relstore_core::duration::parse_duration_or_zero)]
    pub check_settle: std::time::Duration,
    /// Time limit of one --check run or one --check-url request.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = relstore_core::duration::parse_duration)]
    pub check_timeout: std::time::Duration,
    /// On a failure, leave the hosts already activated on the new release (the fleet
    /// is then mixed) instead of reverting them.
    #[arg(long)]
    pub no_revert: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Store roots [default: the project file's target's hosts].
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub to: ToArgs,
    /// Hosts read at once.
    #[arg(long, value_name = "N", default_value_t = relstore_engine::fleet::DEFAULT_JOBS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
}

/// `--shared PATH`: a bad path is a usage error naming it.
fn parse_shared(text: &str) -> Result<relstore_core::shared::SharedPath, String> {
    relstore_core::shared::SharedPath::parse(text).map_err(|e| e.to_string())
}
