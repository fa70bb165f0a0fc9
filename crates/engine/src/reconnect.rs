//! Continuing a push over a new connection when the old one drops (`--retries`).
//!
//! A push is re-runnable by design: it uploads only the objects the target lacks, and
//! recovery removes the debris of an interrupted attempt. So when the connection is
//! lost mid-push, reconnecting and running the same push again *continues* it: objects
//! that reached `objects/` are not sent again. Two things make the second run the same
//! push rather than a new one: the release is created with the first attempt's time
//! (so a default, timestamp-based name is the same), and the lock record is the first
//! attempt's, byte for byte, so the lock the lost connection left behind is recognised
//! as this run's own and taken back (see [`crate::lock::LockPolicy::record`]) instead
//! of being reported as held by someone else.
//!
//! Only a lost connection is retried: errors whose cause is an I/O error of the
//! connection kind (aborted, reset, broken pipe, timed out, refused while
//! reconnecting). A refused host key, a failed authentication, a full disk or a bad
//! source fail at once. Waits double from one second up to 30 seconds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use relstore_core::lock::LockInfo;
use relstore_core::progress::Progress;
use relstore_core::release::now_unix_ns;
use relstore_core::{Target, TargetError};

use crate::error::{caused_by_lost_connection, error_chain, EngineError, EngineResult};
use crate::push::{push_at, PushOptions, PushReport};

/// How often, and how patiently, to reconnect.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Reconnections allowed over the whole push (0: fail on the first loss).
    pub retries: u32,
    /// The first wait before reconnecting; doubled after each failed attempt.
    pub first_wait: Duration,
    /// The longest wait between attempts.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// `retries` reconnections, waiting 1 s, 2 s, 4 s … up to 30 s.
    pub fn new(retries: u32) -> Self {
        RetryPolicy {
            retries,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// Whether `e` means the connection to the target was lost (or could not be made
/// again), as opposed to a failure that another attempt would repeat.
pub fn is_connection_lost(e: &EngineError) -> bool {
    match e {
        EngineError::ConnectionLost { .. } => true,
        // The source tree, not the connection.
        EngineError::Target(TargetError::Blob { .. }) => false,
        _ => caused_by_lost_connection(e),
    }
}

/// Pushes `source` to `target`; when the connection is lost, reconnects with `reopen`
/// (waiting as `policy` says) and continues, up to `policy.retries` times.
pub fn push_reconnecting(
    source: &Path,
    target: Arc<dyn Target>,
    reopen: &dyn Fn() -> EngineResult<Arc<dyn Target>>,
    opts: &PushOptions,
    policy: &RetryPolicy,
    progress: &dyn Progress,
) -> EngineResult<PushReport> {
    let mut opts = opts.clone();
    if opts.lock.record.is_none() && !opts.dry_run {
        opts.lock.record = Some(
            LockInfo::for_this_process("push")
                .to_bytes()
                .map_err(EngineError::LockRecord)?,
        );
    }
    let created = now_unix_ns();
    let mut target = target;
    let mut reconnects = 0u32;
    let mut wait = policy.first_wait;
    let mut first: Option<String> = None;
    loop {
        let lost = match push_at(source, &target, &opts, created, progress) {
            Ok(mut report) => {
                report.reconnects = reconnects;
                return Ok(report);
            }
            Err(e) if is_connection_lost(&e) => e,
            Err(e) => return Err(e),
        };
        // Reconnect: each attempt, successful or not, counts against the budget.
        let first = first.get_or_insert_with(|| error_chain(&lost)).clone();
        let mut last = lost;
        target = loop {
            // An interrupted push is not continued (its connection may have been
            // closed on purpose).
            relstore_core::cancel::check()?;
            if reconnects >= policy.retries {
                return Err(gave_up(last, reconnects, first));
            }
            reconnects += 1;
            progress.note(&format!(
                "{}; reconnecting in {} s (retry {reconnects} of {})",
                error_chain(&last),
                wait.as_secs(),
                policy.retries
            ));
            std::thread::sleep(wait);
            relstore_core::cancel::check()?;
            wait = (wait * 2).min(policy.max_wait);
            match reopen() {
                Ok(t) => break t,
                Err(e) if is_connection_lost(&e) => last = e,
                Err(e) => return Err(e),
            }
        };
    }
}

/// The error after the last allowed reconnection failed (`first`: the first loss).
fn gave_up(last: EngineError, reconnects: u32, first: String) -> EngineError {
    if reconnects == 0 {
        return last;
    }
    EngineError::GaveUp {
        first,
        reconnects,
        source: Box::new(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> EngineError {
        EngineError::Target(TargetError::Io {
            op: "write",
            path: "objects/ab".into(),
            source: std::io::Error::from(kind),
        })
    }

    #[test]
    fn only_connection_failures_are_retried() {
        assert!(is_connection_lost(&io(ErrorKind::ConnectionAborted)));
        assert!(is_connection_lost(&io(ErrorKind::TimedOut)));
        assert!(is_connection_lost(&EngineError::Target(
            TargetError::Connect {
                spec: "web1:/srv".into(),
                source: Box::new(std::io::Error::from(ErrorKind::ConnectionRefused)),
            }
        )));
        assert!(!is_connection_lost(&io(ErrorKind::PermissionDenied)));
        assert!(!is_connection_lost(&io(ErrorKind::StorageFull)));
        assert!(!is_connection_lost(&EngineError::Target(
            TargetError::Other("host key of web1 is unknown".into())
        )));
    }

    #[test]
    fn giving_up_says_how_often_it_tried() {
        let e = gave_up(io(ErrorKind::ConnectionReset), 3, "lost while x".into());
        assert_eq!(
            e.to_string(),
            "lost while x; gave up after 3 reconnections (--retries)"
        );
        let e = gave_up(io(ErrorKind::ConnectionReset), 0, String::new());
        assert!(!e.to_string().contains("reconnect"), "{e}");
    }
}
