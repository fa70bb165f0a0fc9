//! Progress bars on stderr (indicatif), for people watching a long push at a terminal.
//!
//! The engine reports through [`relstore_core::progress::Progress`] from rayon worker
//! threads, once per file or buffer. So [`Bars::advance`] only adds to an atomic
//! counter; a ticker thread copies the counter into the visible bar ten times a second
//! and animates spinners. indicatif itself draws at most at that rate, so a million
//! `advance` calls cost a million relaxed atomic adds and a few dozen redraws.
//!
//! One bar at a time, for the phase in progress: a spinner for the scan (entries found)
//! and the compare, byte bars with rate and ETA for hash, upload and verify, entry bars
//! for assemble and prune; the swap is too short to show. A finished phase's bar is
//! cleared: the summary line printed at the end says what happened.
//!
//! Notes (a stale lock broken, a stat cache problem) go through
//! [`MultiProgress::suspend`], which hides the bar, prints the note on its own line and
//! redraws the bar below it, so the two never share a line.
//!
//! The CLI uses bars only when stderr is a terminal and neither `--quiet` nor `--json`
//! was given (see `output::Notes`); results on stdout are never touched.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use relstore_core::progress::{Phase, Progress};

use crate::units::{bytes_per_second, human_bytes, items_per_second};

/// How often the ticker copies the counter into the bar (and indicatif's draw limit).
const TICK: Duration = Duration::from_millis(100);
const DRAWS_PER_SECOND: u8 = 10;

/// The phase being shown.
struct Active {
    bar: ProgressBar,
    spinner: bool,
}

/// State shared with the ticker thread.
struct Shared {
    multi: MultiProgress,
    active: Mutex<Option<Active>>,
    /// Items or bytes done in the current phase.
    pos: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn active(&self) -> MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Progress bars on stderr; see the module doc. Dropping it (or [`Bars::clear`]) removes
/// any bar still drawn, so an error message that follows starts on a clean line.
pub struct Bars {
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl Bars {
    /// Bars drawing on stderr; the caller has checked that stderr is a terminal.
    pub fn new() -> Bars {
        let shared = Arc::new(Shared {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(
                DRAWS_PER_SECOND,
            )),
            active: Mutex::new(None),
            pos: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let for_ticker = Arc::clone(&shared);
        // Without the ticker the bars would only freeze, so a failed spawn is no error.
        let ticker = std::thread::Builder::new()
            .name("relstore-progress".into())
            .spawn(move || ticker(&for_ticker))
            .ok();
        Bars {
            shared,
            ticker: Mutex::new(ticker),
        }
    }

    /// Removes the bar of an unfinished phase and stops the ticker.
    pub fn clear(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(active) = self.shared.active().take() {
            active.bar.finish_and_clear();
        }
        let handle = self
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Prints a line above the bars.
    pub fn println_above(&self, line: &str) {
        self.shared.multi.suspend(|| {
            let _ = writeln!(std::io::stderr(), "{line}");
        });
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.clear();
    }
}

fn ticker(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        if let Some(active) = shared.active().as_ref() {
            active.bar.set_position(shared.pos.load(Ordering::Relaxed));
            if active.spinner {
                active.bar.tick();
            }
        }
    }
}

/// A style for `template`, which may use, besides indicatif's own keys, the keys
/// below: they write sizes and rates exactly as the summaries do (decimal units, whole
/// numbers per second; see [`crate::units`]) where indicatif's `{bytes}` would say MiB
/// and `{per_sec}` `20,474.5044/s`.
/// - `{done_bytes}`, `{all_bytes}`: position and length in bytes;
/// - `{byte_rate}`: bytes per second; `{item_rate}`: items per second.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("done_bytes", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&human_bytes(s.pos()));
        })
        .with_key("all_bytes", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&human_bytes(s.len().unwrap_or(0)));
        })
        .with_key("byte_rate", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&bytes_per_second(s.per_sec()));
        })
        .with_key("item_rate", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&items_per_second(s.per_sec()));
        })
        .progress_chars("=> ")
}

/// The bar for `phase`, or `None` for phases not worth showing.
fn make_bar(phase: Phase, total: u64) -> Option<(ProgressBar, bool)> {
    // `wide_bar` takes what the terminal width leaves: a line that wraps would make
    // every redraw erase one line too many.
    const BYTES: &str = "{prefix:>10} [{wide_bar}] {done_bytes}/{all_bytes} {byte_rate} ETA {eta}";
    let name = match phase {
        Phase::Scan => "scanning",
        Phase::Hash => "hashing",
        Phase::Compare => "comparing",
        Phase::Upload => "uploading",
        Phase::Assemble => "assembling",
        Phase::Prune => "pruning",
        Phase::Verify => "verifying",
        Phase::Swap => return None,
    };
    let (bar, spinner) = match phase {
        Phase::Scan => (
            hidden(total).with_style(style(
                "{prefix:>10} {spinner} {human_pos} entries {elapsed}",
            )),
            true,
        ),
        Phase::Compare => (
            hidden(total).with_style(style(
                "{prefix:>10} {spinner} {human_len} objects with the target {elapsed}",
            )),
            true,
        ),
        // Nothing to read (every file vouched for by the stat cache) or to send.
        Phase::Hash | Phase::Upload | Phase::Verify if total == 0 => return None,
        Phase::Hash | Phase::Upload | Phase::Verify => {
            (hidden(total).with_style(style(BYTES)), false)
        }
        Phase::Assemble | Phase::Prune if total == 0 => return None,
        _ => (
            hidden(total).with_style(style(
                "{prefix:>10} [{wide_bar}] {human_pos}/{human_len} {item_rate} ETA {eta}",
            )),
            false,
        ),
    };
    bar.set_prefix(name);
    Some((bar, spinner))
}

/// A bar that draws nothing until [`MultiProgress::add`] gives it the real target (a
/// bar made with `ProgressBar::new` would draw a stray first frame straight to stderr).
fn hidden(total: u64) -> ProgressBar {
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: u64) {
        let mut active = self.shared.active();
        if let Some(prev) = active.take() {
            prev.bar.finish_and_clear();
        }
        self.shared.pos.store(0, Ordering::Relaxed);
        *active = make_bar(phase, total).map(|(bar, spinner)| Active {
            bar: self.shared.multi.add(bar),
            spinner,
        });
    }

    fn advance(&self, n: u64) {
        self.shared.pos.fetch_add(n, Ordering::Relaxed);
    }

    fn finish(&self) {
        if let Some(active) = self.shared.active().take() {
            active.bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        self.println_above(&format!("relstore: {message}"));
    }
}
