//! Progress reporting, owned by the library so the engine and targets can report
//! without knowing about terminals; the CLI implements it with progress bars and tests
//! use [`NoProgress`].

/// A step of a push (or another command) that can take long enough to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Scan,
    Hash,
    Compare,
    Upload,
    Assemble,
    Swap,
    /// Deleting evicted releases and unreferenced objects.
    Prune,
    /// Re-hashing objects and checking release trees.
    Verify,
}

impl Phase {
    /// Lower-case name, as used in `--json` timings.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Scan => "scan",
            Phase::Hash => "hash",
            Phase::Compare => "compare",
            Phase::Upload => "upload",
            Phase::Assemble => "assemble",
            Phase::Swap => "swap",
            Phase::Prune => "prune",
            Phase::Verify => "verify",
        }
    }
}

/// Receives progress; must be cheap, it is called from worker threads.
pub trait Progress: Sync {
    /// A phase starts; `total` is in items, or bytes for [`Phase::Upload`] and
    /// [`Phase::Hash`]; 0 when unknown.
    fn start(&self, phase: Phase, total: u64);
    /// `n` more items (or bytes) of the current phase are done.
    fn advance(&self, n: u64);
    /// The current phase is over.
    fn finish(&self);
    /// Something the user should know that is not an error (a stale lock broken,
    /// debris of an interrupted push removed, a stat cache that could not be used).
    fn note(&self, _message: &str) {}
    /// One line of a hook's output, already prefixed with its host (`[web1] ...`):
    /// shown as it comes, unlike notes not marked as relstore's own words.
    fn output(&self, line: &str) {
        self.note(line);
    }
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: Phase, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
