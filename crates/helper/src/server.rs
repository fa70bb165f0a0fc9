//! The helper's loop: greet, then execute one request after the other on a store.
//!
//! The helper works on any [`Target`]; `relstore serve --stdio ROOT` gives it the
//! local target on ROOT, so a push through the helper runs the same store code as a
//! local push. Store errors travel back as values and the loop goes on; a broken
//! connection or protocol ends it. A client's Ctrl-C (`Cancel`) stops the request
//! in flight at the store's next safe point; the session goes on, so the client can
//! still release its lock.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use relstore_core::progress::{Phase, Progress};
use relstore_core::Target;

use crate::error::HelperError;
use crate::frame::{self, Counters, FrameWriter, WireTotals};
use crate::handshake::{greet, Hello, Peer, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::inbox::Inbox;
use crate::proto::{Request, Response, WireError};
use crate::server_ops;
use crate::server_put::{self, PutContext};

/// How the helper runs.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Directory for spooling large received objects; default: the store's `tmp/`
    /// when the target has a local root, else the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
    /// Store root whose `objects/` holds the bases of patches; default: the
    /// target's local root. Without one, every patch is answered with a resend.
    pub base_root: Option<PathBuf>,
    /// The highest protocol version to offer; default (and at most):
    /// [`PROTOCOL_VERSION`]. Lower only to play an older helper (tests of clients
    /// against older peers).
    pub max_protocol: Option<u16>,
}

/// What a helper session did.
#[derive(Clone, Debug)]
pub struct ServeSummary {
    /// The client, as it introduced itself.
    pub peer: Peer,
    /// Requests executed.
    pub requests: u64,
    /// Bytes each way.
    pub wire: WireTotals,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Serves `target` to the client at the other end of `reader`/`writer` until it says
/// goodbye or closes the stream. `reader` is read on a thread of its own (so a
/// client's `Cancel` is seen during a long request: see [`crate::inbox`]), which ends
/// after the client's goodbye or at the end of the stream.
pub fn serve<R: Read + Send + 'static, W: Write + Send>(
    reader: R,
    writer: W,
    target: &dyn Target,
    options: &ServeOptions,
) -> Result<ServeSummary, HelperError> {
    let counters = Arc::new(Counters::default());
    let (mut r, mut w) = frame::split(reader, writer, &counters);
    let peer = greet(
        &mut r,
        &mut w,
        (
            MIN_PROTOCOL_VERSION,
            options.max_protocol.map_or(PROTOCOL_VERSION, |v| {
                v.clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)
            }),
        ),
        &Hello::ours(target.location()),
    )?;
    let root = target.local_root().map(|p| p.to_path_buf());
    let ctx = PutContext {
        base_root: options.base_root.clone().or_else(|| root.clone()),
        spool_dir: options
            .spool_dir
            .clone()
            .or_else(|| root.map(|r| r.join(relstore_core::layout::TMP)))
            .unwrap_or_else(std::env::temp_dir),
    };
    let inbox = Inbox::start(r);
    let w = Mutex::new(w);
    let mut requests = 0;
    while let Some(request) = inbox.recv("reading a request")? {
        requests += 1;
        let response = match request {
            Request::Bye => break,
            Request::PutObjects(params) => {
                server_put::receive(&inbox, params, target, &ctx).map_err(HelperError::Protocol)?
            }
            Request::Data(_) | Request::End | Request::Abort(_) | Request::Cancel => {
                return Err(HelperError::Protocol(
                    "object stream data outside an object stream".into(),
                ))
            }
            other => {
                let relay = Relay::new(&w);
                let response = server_ops::execute(other, target, &relay);
                relay.flush();
                response
            }
        };
        lock(&w).send_now(&response, "sending a response")?;
    }
    Ok(ServeSummary {
        peer,
        requests,
        wire: counters.totals(),
    })
}

/// Progress of a long operation, forwarded to the client as interim messages: at
/// most one every [`Relay::INTERVAL`], so a million tiny steps cost a few messages.
pub(crate) struct Relay<'a, W: Write> {
    w: &'a Mutex<FrameWriter<W>>,
    pending: AtomicU64,
    last: Mutex<Instant>,
}

impl<'a, W: Write> Relay<'a, W> {
    const INTERVAL: Duration = Duration::from_millis(100);

    fn new(w: &'a Mutex<FrameWriter<W>>) -> Self {
        Relay {
            w,
            pending: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn send(&self, msg: &Response) {
        // A failed send shows again, and ends the session, at the final response.
        let _ = lock(self.w).send_now(msg, "sending progress");
    }

    /// Sends what has not been reported yet.
    fn flush(&self) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.send(&Response::Progress(n));
        }
    }
}

impl<W: Write + Send> Progress for Relay<'_, W> {
    fn start(&self, _: Phase, _: u64) {}

    fn advance(&self, n: u64) {
        self.pending.fetch_add(n, Ordering::Relaxed);
        let due = match self.last.try_lock() {
            Ok(mut last) if last.elapsed() >= Self::INTERVAL => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.flush();
        }
    }

    fn finish(&self) {}

    fn note(&self, message: &str) {
        self.flush();
        self.send(&Response::Note(message.to_owned()));
    }
}

/// A store error as a response.
pub(crate) fn error_response(e: &relstore_core::TargetError) -> Response {
    Response::Error(WireError::from(e))
}
