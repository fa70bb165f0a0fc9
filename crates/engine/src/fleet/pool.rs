//! Running one job per host on at most `--jobs` threads at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `job` on every item on at most `jobs` threads (at least one); the results
/// come back in the order of `items`. A job that panics yields `None` for its item.
pub(crate) fn run_all<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    job: &(dyn Fn(usize, &T) -> R + Sync),
) -> Vec<Option<R>> {
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let workers = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(i, item)));
                if let (Ok(r), Ok(mut all)) = (r, results.lock()) {
                    all[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_their_order_and_jobs_bound_the_threads() {
        let running = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        let out = super::run_all(&items, 3, &|_, x| {
            let now = running.fetch_add(1, super::Ordering::SeqCst) + 1;
            peak.fetch_max(now, super::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, super::Ordering::SeqCst);
            x * 2
        });
        let want: Vec<Option<u32>> = (0..20).map(|x| Some(x * 2)).collect();
        assert_eq!(out, want);
        assert!(peak.load(super::Ordering::SeqCst) <= 3);
    }
}
