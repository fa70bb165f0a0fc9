//! Named kill points for crash tests.
//!
//! The invariants ("`current` is always a complete release", "a re-run finishes an
//! interrupted push") are defended by killing the real process with a real SIGKILL at
//! precise moments. With `RELSTORE_KILL_AT=NAME` (or `NAME:N` for the N-th time the
//! point is reached) the process sends SIGKILL to itself there. Without the variable a
//! kill point costs one relaxed atomic load.
//!
//! `RELSTORE_PAUSE_AT=NAME:MS` makes the process sleep MS milliseconds every time it
//! reaches the point NAME instead: interrupt tests use it to stretch a step (the upload
//! of each object, say) so that a real SIGINT reliably lands in the middle of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);
static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();

fn pause() -> &'static Option<(String, u64)> {
    PAUSE.get_or_init(|| {
        let raw = std::env::var("RELSTORE_PAUSE_AT").ok()?;
        let (name, ms) = raw.rsplit_once(':')?;
        Some((name.to_owned(), ms.parse().ok()?))
    })
}

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let raw = std::env::var("RELSTORE_KILL_AT").ok()?;
        match raw.rsplit_once(':') {
            Some((name, n)) => Some((name.to_owned(), n.parse().ok()?)),
            None => Some((raw, 1)),
        }
    })
}

/// Marks a point where a crash test may kill the process.
pub fn kill_point(name: &str) {
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
