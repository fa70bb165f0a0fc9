//! Process-wide cancellation: how Ctrl-C (SIGINT) and SIGTERM stop a command cleanly.
//!
//! The CLI's signal handler calls [`request`]; the scanner, the targets and the engine
//! call [`check`] (or [`requested`]) between steps and inside their long loops, so a
//! command stops within a fraction of a second, returns an error through the normal
//! path, and so releases its lock (the engine's lock guard is dropped) and leaves its
//! debris only in the target's `tmp/`. The steps that keep the store's invariants (docs/crash-safety.md) —
//! swapping `current` and committing the manifest — never look at the flag, so they
//! always complete once started.
//!
//! A flag rather than unwinding or exiting in the handler: a signal handler may only do
//! async-signal-safe work, and stopping at a safe point is the only way to keep the lock
//! and `tmp/` tidy. Checking costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The command was interrupted by a signal; returned by [`check`] so that every layer
/// can turn it into its own error variant (and the CLI into exit status 128 + signal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Asks the running command to stop at its next safe point. Async-signal-safe (two
/// atomic stores), so it may be called from a signal handler. `signal` is the signal
/// number (0 when not caused by a signal); the first one is kept for the exit status.
/// Returns whether a stop had already been requested (a second Ctrl-C).
pub fn request(signal: i32) -> bool {
    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    REQUESTED.swap(true, Ordering::SeqCst)
}

/// Whether a stop was requested.
#[inline]
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once a stop was requested: put it wherever stopping is safe.
#[inline]
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// The signal that requested the stop, 0 if none did.
pub fn signal() -> i32 {
    SIGNAL.load(Ordering::Relaxed)
}

/// Exit status for an interrupted command, as shells report a death by signal:
/// 128 + the signal number (130 for SIGINT, 143 for SIGTERM; 130 when no signal is
/// known).
pub fn exit_status() -> u8 {
    match signal() {
        s @ 1..=127 => 128 + s as u8,
        _ => 130,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test only: the flag is process-wide, and other tests of this crate must not
    // see it set.
    #[test]
    fn request_sets_the_flag_and_keeps_the_first_signal() {
        assert!(check().is_ok());
        assert!(!request(2));
        assert!(request(15));
        assert_eq!(check(), Err(Interrupted));
        assert_eq!(signal(), 2);
        assert_eq!(exit_status(), 130);
    }
}
