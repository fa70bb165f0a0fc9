//! Ctrl-C reaches the helper: while the client waits for an answer and a stop is
//! requested ([`relstore_core::cancel`]), a watcher thread sends the helper a `Cancel`
//! message (protocol 2).
//!
//! The client's thread is then blocked reading, so the message is written by a thread
//! of its own: it looks at the flag every [`POLL`], and writes `Cancel` once, and only
//! while the stream to the helper is idle — everything written, the client waiting —
//! so it always lands between two whole messages. The helper reads it at once (its
//! reader runs on a thread of its own), its store stops at the next safe point, and
//! the request in flight is answered with the `Interrupted` error, so the client stops
//! as promptly as a local command. Steps that must complete once started (swapping
//! `current`, committing a manifest) never look at the flag, on either end.
//!
//! While the client is still writing an object stream, the `Cancel` waits: the client
//! itself looks at the flag between objects and abandons the stream, then waits for
//! the answer, and the `Cancel` follows.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::frame::{single_frame, Counters};
use crate::proto::Request;

/// How often the watcher looks at the flag.
const POLL: Duration = Duration::from_millis(20);

struct Outlet {
    w: Box<dyn Write + Send>,
    /// Everything the client wrote has left, and it waits for an answer.
    idle: bool,
}

/// The client's end of the stream to the helper, shared by the connection and the
/// watcher. Every write marks it busy; [`SharedWriter::set_idle`] marks it idle.
#[derive(Clone)]
pub(crate) struct SharedWriter(Arc<Mutex<Outlet>>);

fn lock(m: &Mutex<Outlet>) -> MutexGuard<'_, Outlet> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl SharedWriter {
    /// Shares `w`, busy until the first [`SharedWriter::set_idle`].
    pub(crate) fn new(w: Box<dyn Write + Send>) -> SharedWriter {
        SharedWriter(Arc::new(Mutex::new(Outlet { w, idle: false })))
    }

    /// Says that everything was written (the buffer above was flushed) and the client
    /// now waits for an answer: the watcher may write.
    pub(crate) fn set_idle(&self) {
        lock(&self.0).idle = true;
    }

    /// Starts the watcher for this stream; it ends with the stream (when the last
    /// [`SharedWriter`] is dropped) or after sending `Cancel`.
    pub(crate) fn watch(&self, counters: Arc<Counters>) -> io::Result<()> {
        let frame = single_frame(&Request::Cancel).map_err(io::Error::other)?;
        let outlet = Arc::downgrade(&self.0);
        std::thread::Builder::new()
            .name("relstore-helper-cancel".into())
            .spawn(move || watch(&outlet, &frame, &counters))
            .map(|_| ())
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut o = lock(&self.0);
        o.idle = false;
        o.w.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.0).w.flush()
    }
}

fn watch(outlet: &Weak<Mutex<Outlet>>, frame: &[u8], counters: &Counters) {
    loop {
        std::thread::sleep(POLL);
        let Some(outlet) = outlet.upgrade() else {
            return;
        };
        if !relstore_core::cancel::requested() {
            continue;
        }
        let mut o = lock(&outlet);
        if o.idle {
            // A failure shows on the client's own next read or write.
            if o.w.write_all(frame).and_then(|()| o.w.flush()).is_ok() {
                counters.add_sent(frame.len() as u64);
            }
            return;
        }
    }
}
