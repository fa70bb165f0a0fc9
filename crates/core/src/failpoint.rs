//! Named kill points for crash tests, compiled in only for tests.
//!
//! The invariants ("`current` is always a complete release", "a re-run finishes an
//! interrupted push") are defended by killing the real process with a real SIGKILL at
//! precise moments. That machinery must never ship: the shipped tool would kill itself
//! whenever an environment variable said so. So it exists only with the `failpoints`
//! cargo feature, which the workspace enables through a dev-dependency of the binary
//! package: `cargo test` builds the binary with it, `cargo build --release` does not,
//! and then [`kill_point`] is an empty inline function and the variable names below are
//! not in the executable at all.
//!
//! With the feature, `RELSTORE_KILL_AT=NAME` (or `NAME:N` for the N-th time the point is
//! reached) makes the process send SIGKILL to itself there, and `RELSTORE_PAUSE_AT=NAME:MS`
//! makes it sleep MS milliseconds every time it reaches NAME instead: interrupt tests use
//! it to stretch a step (the upload of each object, say) so that a real SIGINT reliably
//! lands in the middle of it. Without either variable a kill point costs one relaxed
//! atomic load.
//!
//! Point names are the constants of [`points`], so a test and the code it kills agree
//! on the spelling.

/// The name of every kill point, for the code that marks it and the tests that use it.
pub mod points {
    /// After each object is uploaded (local and SFTP targets).
    pub const UPLOAD_OBJECT: &str = "upload.object";
    /// After a batch of objects is written, before it is flushed.
    pub const UPLOAD_BEFORE_SYNC: &str = "upload.before_sync";
    /// After a batch of objects is renamed into `objects/`.
    pub const UPLOAD_PUBLISHED: &str = "upload.published";
    /// After each entry of a release under assembly.
    pub const ASSEMBLE_ENTRY: &str = "assemble.entry";
    /// Before `tmp/NAME.partial` is renamed to `releases/NAME`.
    pub const ASSEMBLE_BEFORE_RENAME: &str = "assemble.before_rename";
    /// Before the new `current` symlink is renamed over the old one.
    pub const SWAP_BEFORE_RENAME: &str = "swap.before_rename";
    /// After each unreferenced object is removed by garbage collection.
    pub const GC_REMOVED: &str = "gc.removed";
    /// After the source is scanned, before the push takes the store's lock.
    pub const PUSH_SCANNED: &str = "push.scanned";
    /// After every object of a push is uploaded.
    pub const PUSH_UPLOADED: &str = "push.uploaded";
    /// After the release directory is in place, before the swap.
    pub const PUSH_ASSEMBLED: &str = "push.assembled";
    /// After the manifest is staged in `tmp/`, before the release is assembled.
    pub const PUSH_STAGED: &str = "push.staged";
    /// Right after the swap.
    pub const PUSH_SWAPPED: &str = "push.swapped";
    /// A fleet push: after each wave of hosts was activated and checked.
    pub const FLEET_WAVE: &str = "fleet.wave";
    /// Right after a lock file is renamed aside to be checked and removed (the moment
    /// its name is free for another process to take).
    pub const LOCK_ASIDE: &str = "lock.aside";
    /// After each release directory evicted by prune.
    pub const PRUNE_EVICTED: &str = "prune.evicted";
    /// After a shared path's seed is built beside it, before it is moved into place.
    pub const SEED_BEFORE_RENAME: &str = "seed.before_rename";
    /// After a push seeded its shared paths, before it compares and uploads.
    pub const PUSH_SEEDED: &str = "push.seeded";
    /// In the helper, after each record of an object stream is decoded and checked,
    /// before its batch is stored (the stream is mid-way, objects may be in memory).
    pub const HELPER_STREAM_RECORD: &str = "helper.stream_record";
    /// In the helper, after a manifest sent as a delta is rebuilt, before it is staged.
    pub const HELPER_MANIFEST_REBUILT: &str = "helper.manifest_rebuilt";
    /// In the helper, after a release's entry list sent as a delta is rebuilt and
    /// checked, before assembly starts.
    pub const HELPER_ENTRIES_REBUILT: &str = "helper.entries_rebuilt";
}

/// Marks a point where a crash test may kill (or pause) the process.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn kill_point(_name: &str) {}

/// Marks a point where a crash test may kill (or pause) the process.
#[cfg(feature = "failpoints")]
pub fn kill_point(name: &str) {
    armed::kill_point(name);
}

/// The kill and pause settings of this process as `NAME=VALUE` pairs, for a relstore
/// this one starts elsewhere (the helper on an SSH server), so that a crash test's
/// points fire in whichever process reaches them. Empty without the feature.
#[cfg(not(feature = "failpoints"))]
pub fn forwarded_env() -> Vec<(&'static str, String)> {
    Vec::new()
}

/// The kill and pause settings of this process as `NAME=VALUE` pairs, for a relstore
/// this one starts elsewhere (the helper on an SSH server), so that a crash test's
/// points fire in whichever process reaches them. Empty without the feature.
#[cfg(feature = "failpoints")]
pub fn forwarded_env() -> Vec<(&'static str, String)> {
    ["RELSTORE_KILL_AT", "RELSTORE_PAUSE_AT"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect()
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// Environment variable naming the point (and occurrence) to die at.
    const KILL_VAR: &str = "RELSTORE_KILL_AT";
    /// Environment variable naming a point to stretch, and by how many milliseconds.
    const PAUSE_VAR: &str = "RELSTORE_PAUSE_AT";

    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();

    fn pause() -> &'static Option<(String, u64)> {
        PAUSE.get_or_init(|| {
            let raw = std::env::var(PAUSE_VAR).ok()?;
            let (name, ms) = raw.rsplit_once(':')?;
            Some((name.to_owned(), ms.parse().ok()?))
        })
    }

    fn spec() -> &'static Option<(String, u64)> {
        SPEC.get_or_init(|| {
            let raw = std::env::var(KILL_VAR).ok()?;
            match raw.rsplit_once(':') {
                Some((name, n)) => Some((name.to_owned(), n.parse().ok()?)),
                None => Some((raw, 1)),
            }
        })
    }

    pub(super) fn kill_point(name: &str) {
        if let Some((want, ms)) = pause() {
            if want == name {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
        }
        if let Some((want, nth)) = spec() {
            if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                // SAFETY: kill(2) with our own pid has no memory-safety preconditions.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}
