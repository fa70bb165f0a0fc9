//! Ctrl-C and SIGTERM: ask the running command to stop cleanly, and say how it ended.
//!
//! The first SIGINT or SIGTERM only sets [`relstore_core::cancel`]'s flag; the engine
//! stops at its next safe point, its lock guard releases the lock, and the process
//! exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell
//! reports a death by that signal. A second signal exits at once with the same status
//! (the lock is then left behind, and broken as stale by the next command on this
//! host).

use relstore_core::cancel;
use relstore_engine::EngineError;

/// Installs the handlers. A failure leaves the default behaviour (immediate death,
/// which the crash-safety design already covers), so it is not an error.
pub fn install() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only performs atomic operations (`cancel::request`) and
        // `_exit` (`low_level::exit`), all async-signal-safe.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                if cancel::request(sig) {
                    signal_hook::low_level::exit(128 + sig);
                }
            })
        };
    }
}

/// The exit status for a failed command if it failed because it was interrupted.
pub fn exit_status(err: &anyhow::Error) -> Option<u8> {
    let by_error = err
        .downcast_ref::<EngineError>()
        .is_some_and(EngineError::is_interrupted);
    (by_error || cancel::requested()).then(cancel::exit_status)
}

/// The one line printed for an interrupted command.
pub fn message() -> String {
    let name = match cancel::signal() {
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "SIGINT",
    };
    format!(
        "relstore: interrupted ({name}); stopped at a safe point, lock released (a re-run finishes the work)"
    )
}
