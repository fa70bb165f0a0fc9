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
        self.target.remove_lock(&self.contents)?;
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.target.remove_lock(&self.contents);
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
    let mine = LockInfo::for_this_process(command).to_bytes();
    let started = Instant::now();
    let mut may_break = policy.break_lock;
    let mut announced_wait = false;
    loop {
        if target.create_lock(&mine)? {
            return Ok(LockGuard {
                target: Arc::clone(target),
                contents: mine,
                released: false,
            });
        }
        let Some(held) = target.read_lock()? else {
            continue; // released between our attempt and the read
        };
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
            target.remove_lock(&held)?;
            continue;
        }
        if may_break {
            progress.note(&format!(
                "breaking lock on {} held by {holder} (--break-lock)",
                target.location()
            ));
            target.remove_lock(&held)?;
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
        sleep(Duration::from_millis(100));
    }
}
