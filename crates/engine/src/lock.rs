//! Holding a store's lock for the duration of a mutating command.
//!
//! The lock is a file created exclusively on the target (see
//! [`relstore_core::target::Target::create_lock`]) holding a [`LockInfo`]. A lock left by a
//! process of this host that no longer exists is broken with a note; any other held lock
//! stops the command with the holder's details, unless the user asked to wait or to
//! break it.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use relstore_core::layout::LockFile;
use relstore_core::lock::LockInfo;
use relstore_core::progress::Progress;
use relstore_core::Target;

use crate::error::{EngineError, EngineResult};

/// What to do when the lock is held.
#[derive(Clone, Debug, Default)]
pub struct LockPolicy {
    /// Wait for the holder to finish instead of failing at once.
    pub wait: bool,
    /// Give up waiting after this long (`None`: wait indefinitely).
    pub wait_timeout: Option<Duration>,
    /// Break a lock held by anyone, once (the user's explicit word).
    pub break_lock: bool,
    /// The lock record to write, fixed by a caller that reconnects and runs the
    /// command again (see [`crate::reconnect`]): a lock holding exactly these bytes was
    /// taken by this very run over a connection since lost, and is taken back. `None`:
    /// a fresh record.
    pub record: Option<Vec<u8>>,
}

/// The held lock; released when dropped.
pub struct LockGuard {
    target: Arc<dyn Target>,
    contents: Vec<u8>,
    released: bool,
}

impl LockGuard {
    /// Releases the lock, reporting failure (dropping the guard ignores it).
    pub fn release(mut self) -> EngineResult<()> {
        self.released = true;
        self.target.remove_lock(LockFile::Store, &self.contents)?;
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.target.remove_lock(LockFile::Store, &self.contents);
        }
    }
}

/// Takes the lock of `target` for `command`, following `policy`.
pub fn acquire(
    target: &Arc<dyn Target>,
    command: &str,
    policy: &LockPolicy,
    progress: &dyn Progress,
) -> EngineResult<LockGuard> {
    let mine = match &policy.record {
        Some(record) => record.clone(),
        None => LockInfo::for_this_process(command)
            .to_bytes()
            .map_err(EngineError::LockRecord)?,
    };
    let started = Instant::now();
    let mut may_break = policy.break_lock;
    let mut announced_wait = false;
    let mut backoff = Duration::from_millis(10);
    loop {
        if target.create_lock(LockFile::Store, &mine)? {
            return Ok(LockGuard {
                target: Arc::clone(target),
                contents: mine,
                released: false,
            });
        }
        let Some(held) = target.read_lock(LockFile::Store)? else {
            continue; // released between our attempt and the read
        };
        if held == mine {
            // Unique to this run (pid, its start time, nanoseconds): ours.
            progress.note(&format!(
                "taking back the lock on {} that this {command} took before its connection was lost",
                target.location()
            ));
            return Ok(LockGuard {
                target: Arc::clone(target),
                contents: mine,
                released: false,
            });
        }
        let info = LockInfo::parse(&held);
        let holder = info.as_ref().map_or_else(
            || "an unrecognised lock file".to_owned(),
            LockInfo::describe,
        );
        if info.as_ref().is_some_and(LockInfo::is_stale_here) {
            progress.note(&format!(
                "breaking stale lock on {}: held by {holder}, a process that no longer exists",
                target.location()
            ));
            break_lock(target, &held)?;
            continue;
        }
        if may_break {
            progress.note(&format!(
                "breaking lock on {} held by {holder} (--break-lock)",
                target.location()
            ));
            break_lock(target, &held)?;
            may_break = false;
            continue;
        }
        if !policy.wait {
            return Err(EngineError::Locked {
                location: target.location().to_owned(),
                holder,
            });
        }
        if policy
            .wait_timeout
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            return Err(EngineError::LockTimeout {
                location: target.location().to_owned(),
                holder,
            });
        }
        if !announced_wait {
            progress.note(&format!(
                "waiting for the lock on {} held by {holder}",
                target.location()
            ));
            announced_wait = true;
        }
        relstore_core::cancel::check()?;
        sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// How long to wait for another process to finish breaking a lock (a few file
/// operations) before giving up.
const BREAKER_PATIENCE: Duration = Duration::from_secs(10);

/// Removes the store lock whose contents were `held`, but only if it is still exactly
/// that lock. The check and the removal happen under the breaker lock: every process
/// that removes a lock other than its own holds it, creators cannot replace a lock that
/// exists, and the holder of a stale lock is gone, so between the check and the removal
/// nothing can put another lock in its place. (An explicitly broken *live* lock can
/// still be released by its owner in between; `--break-lock` is the user's word that it
/// is gone.) Returns whether the lock was removed.
fn break_lock(target: &Arc<dyn Target>, held: &[u8]) -> EngineResult<bool> {
    let breaker = take_breaker(target)?;
    let removed = match target.read_lock(LockFile::Store) {
        Ok(Some(now)) if now == held => target.remove_lock(LockFile::Store, held),
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    let released = target.remove_lock(LockFile::Breaker, &breaker);
    let removed = removed?;
    released?;
    Ok(removed)
}

/// Takes the breaker lock, waiting for another breaker to finish. A breaker lock whose
/// holder died (killed in the middle of breaking) is itself removed; that last step can
/// race only with another process that found the same dead breaker in the same instant.
fn take_breaker(target: &Arc<dyn Target>) -> EngineResult<Vec<u8>> {
    let mine = LockInfo::for_this_process("break-lock")
        .to_bytes()
        .map_err(EngineError::LockRecord)?;
    let started = Instant::now();
    loop {
        if target.create_lock(LockFile::Breaker, &mine)? {
            return Ok(mine);
        }
        let Some(held) = target.read_lock(LockFile::Breaker)? else {
            continue;
        };
        let info = LockInfo::parse(&held);
        if info.as_ref().is_some_and(LockInfo::is_stale_here) {
            target.remove_lock(LockFile::Breaker, &held)?;
            continue;
        }
        if started.elapsed() >= BREAKER_PATIENCE {
            return Err(EngineError::LockTimeout {
                location: format!("{} ({})", target.location(), LockFile::Breaker.file_name()),
                holder: info.as_ref().map_or_else(
                    || "an unrecognised lock file".to_owned(),
                    LockInfo::describe,
                ),
            });
        }
        relstore_core::cancel::check()?;
        sleep(Duration::from_millis(5));
    }
}
