//! The store lock under contention, in a test binary of its own: it arms a pause point
//! through the environment, which must happen before any other test reaches one.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use relstore_core::layout::LockFile;
use relstore_core::lock::LockInfo;
use relstore_core::progress::NoProgress;
use relstore_core::Target;
use relstore_engine::lock::{acquire, LockPolicy};
use relstore_local::LocalTarget;

/// A lock left by a process of this host that no longer exists.
fn stale_lock() -> Vec<u8> {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let info = LockInfo {
        pid,
        ..LockInfo::for_this_process("push")
    };
    info.to_bytes().unwrap()
}

/// Regression: two processes that both read the same stale lock raced to break it; the
/// slower one renamed aside the live lock a third had just taken, and while that lock
/// was aside a fourth took the lock too, so two pushes ran at once. Eight contenders per
/// trial start together on a stale lock; never may two of them hold it at once.
#[test]
fn two_holders_of_the_lock_after_breaking_a_stale_lock() {
    // Stretch the moment a lock file is renamed aside to be checked, so that a
    // contender that reaches create_lock then really finds the name free.
    std::env::set_var("RELSTORE_PAUSE_AT", "lock.aside:3");
    let dir = tempfile::tempdir().unwrap();
    let target: Arc<dyn Target> = Arc::new(LocalTarget::new(dir.path().join("site")));
    target.open(true).unwrap();
    let policy = LockPolicy {
        wait: true,
        wait_timeout: Some(Duration::from_secs(30)),
        break_lock: false,
        record: None,
    };
    for trial in 0..30 {
        assert!(target.create_lock(LockFile::Store, &stale_lock()).unwrap());
        let holders = AtomicUsize::new(0);
        let overlaps = AtomicUsize::new(0);
        let start = Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    start.wait();
                    let guard = acquire(&target, "push", &policy, &NoProgress).unwrap();
                    if holders.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    holders.fetch_sub(1, Ordering::SeqCst);
                    guard.release().unwrap();
                });
            }
        });
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "trial {trial}: two holders of the lock at once"
        );
        assert_eq!(target.read_lock(LockFile::Store).unwrap(), None);
    }
}
