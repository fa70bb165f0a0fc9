//! The wire side of the SFTP client: request ids, pipelining and reply routing.
//!
//! [`Transport::start`] splits a byte stream (after the handshake) between two tasks.
//! The writer task sends request packets in the order they are queued, coalescing
//! whatever is queued into one flush. The reader task reads replies and hands each to
//! the oneshot responder registered under its request id. Any number of tasks can
//! therefore issue requests at once and they are pipelined on the wire; a semaphore
//! caps how many are outstanding, and the permit is held until the reply arrives, so
//! the cap is what the server actually has to queue.
//!
//! When the stream ends or breaks, or the server sends garbage, every outstanding and
//! every later request fails with the same [`SftpError`] naming the cause. If requests
//! are outstanding and the server sends nothing for the reply timeout, the session is
//! declared dead the same way (a per-request timeout would misfire under deep
//! pipelining, where a request may legitimately wait behind megabytes of writes). A
//! stream that ends while requests have waited for a while ([`SILENCE_WORTH_NAMING`])
//! is reported as that silence: the SSH layer gives up a connection whose server stops
//! answering keepalives, and "no answer for 9 s" says what happened where "channel
//! closed" would not.
//!
//! This layer knows nothing of SFTP's operations: it moves packets whose bytes 1..5
//! hold the type and bytes 5..9 the request id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::error::{SftpError, SftpResult};
use super::proto::MAX_INCOMING_PACKET;

/// How long requests must have gone unanswered before the end of the stream is
/// reported as the server's silence rather than as a plain close.
const SILENCE_WORTH_NAMING: Duration = Duration::from_secs(2);

/// One reply: the whole packet body (type, id, payload).
pub(super) struct Response {
    pub(super) kind: u8,
    pub(super) data: Vec<u8>,
}

type Responder = oneshot::Sender<SftpResult<Response>>;
/// Where the reply of a queued request arrives.
pub(super) type ReplyRx = oneshot::Receiver<SftpResult<Response>>;

struct State {
    /// Responders by request id, each with the in-flight permit it holds.
    pending: HashMap<u32, (Responder, OwnedSemaphorePermit)>,
    /// Why the session ended, once it has.
    closed: Option<SftpError>,
    /// Last time the server showed progress (a reply), or the time the first request
    /// after an idle period was queued.
    last_progress: Instant,
}

/// What the reader, writer and watchdog tasks and the request side share.
struct Shared {
    state: Mutex<State>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            state: Mutex::new(State {
                pending: HashMap::new(),
                closed: None,
                last_progress: Instant::now(),
            }),
            tasks: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // critical section is a single insert/remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the session: every outstanding request and every later one fails with
    /// (a copy of) `err`. The first cause wins.
    fn fail_all(&self, err: SftpError) {
        let (pending, cause) = {
            let mut st = self.lock();
            let cause = replicate_fatal(st.closed.get_or_insert(err));
            (std::mem::take(&mut st.pending), cause)
        };
        for (_, (tx, _permit)) in pending {
            let _ = tx.send(Err(replicate_fatal(&cause)));
        }
        for t in std::mem::take(&mut *self.tasks()) {
            t.abort();
        }
    }
}

/// Copies a session-ending error for each request it fails.
fn replicate_fatal(e: &SftpError) -> SftpError {
    match e {
        SftpError::Closed(s) => SftpError::Closed(s.clone()),
        SftpError::Broken { context, source } => SftpError::Broken {
            context: context.clone(),
            source: source.clone(),
        },
        SftpError::Timeout(d) => SftpError::Timeout(*d),
        SftpError::Protocol(s) => SftpError::Protocol(s.clone()),
        SftpError::PacketTooLarge { len, max } => SftpError::PacketTooLarge {
            len: *len,
            max: *max,
        },
        other => SftpError::Closed(other.to_string()),
    }
}

/// The stream ended or failed while reading or writing packets.
fn broken(context: String, source: std::io::Error) -> SftpError {
    SftpError::Broken {
        context,
        source: Arc::new(source),
    }
}

/// Reads one length-prefixed packet; `None` on a clean end of stream before it.
pub(super) async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> SftpResult<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(broken("reading from the SFTP channel failed".into(), e)),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_INCOMING_PACKET {
        return Err(SftpError::PacketTooLarge {
            len,
            max: MAX_INCOMING_PACKET,
        });
    }
    if len < 1 {
        return Err(SftpError::Protocol("empty packet from the server".into()));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| broken(format!("SFTP channel ended inside a {len}-byte packet"), e))?;
    Ok(Some(buf))
}

/// Hands one reply to the request waiting for it; an error if none is.
fn route_reply(shared: &Shared, data: Vec<u8>) -> SftpResult<()> {
    if data.len() < 5 {
        return Err(SftpError::Protocol(format!(
            "reply packet of {} bytes has no request id",
            data.len()
        )));
    }
    let kind = data[0];
    let id = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    let responder = {
        let mut st = shared.lock();
        st.last_progress = Instant::now();
        st.pending.remove(&id)
    };
    let Some((tx, permit)) = responder else {
        return Err(SftpError::Protocol(format!(
            "reply (type {kind}) for request id {id}, which is not outstanding"
        )));
    };
    // The receiver may be gone (caller cancelled): the reply is dropped.
    let _ = tx.send(Ok(Response { kind, data }));
    drop(permit);
    Ok(())
}

async fn reader_task<R: AsyncRead + Unpin>(r: R, shared: Arc<Shared>) {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let err = loop {
        let data = match read_packet(&mut r).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                break blame_silence(
                    &shared,
                    SftpError::Closed("the server closed the SFTP channel".into()),
                )
            }
            Err(e @ SftpError::Broken { .. }) => break blame_silence(&shared, e),
            Err(e) => break e,
        };
        if let Err(e) = route_reply(&shared, data) {
            break e;
        }
    };
    shared.fail_all(err);
}

/// Why the stream ended, as callers should hear it: `closed`, or — when requests
/// were outstanding and unanswered for [`SILENCE_WORTH_NAMING`] or longer — the
/// silence that made the SSH layer give the connection up.
fn blame_silence(shared: &Shared, closed: SftpError) -> SftpError {
    let st = shared.lock();
    let silent = st.last_progress.elapsed();
    if !st.pending.is_empty() && silent >= SILENCE_WORTH_NAMING {
        SftpError::Timeout(Duration::from_secs(silent.as_secs_f64().round() as u64))
    } else {
        closed
    }
}

async fn writer_task<W: AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    while let Some(pkt) = rx.recv().await {
        let mut result = w.write_all(&pkt).await;
        // Coalesce whatever else is queued into the same flush: many small requests
        // then share SSH packets instead of costing one each.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(pkt) => result = w.write_all(&pkt).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = w.flush().await;
        }
        if let Err(e) = result {
            shared.fail_all(broken("writing to the SFTP channel failed".into(), e));
            return;
        }
    }
    // Every client handle is gone: tell the server we are done.
    let _ = w.shutdown().await;
}

async fn watchdog_task(shared: Weak<Shared>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let stalled = {
            let st = shared.lock();
            if st.closed.is_some() {
                return;
            }
            !st.pending.is_empty() && st.last_progress.elapsed() > timeout
        };
        if stalled {
            shared.fail_all(SftpError::Timeout(timeout));
            return;
        }
    }
}

/// The request side of a running session. Dropping it drops the queue's sender,
/// which ends the writer task, which shuts its half of the stream (EOF: OpenSSH's
/// server then exits and closes the channel, which ends the reader task).
pub(super) struct Transport {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    next_id: AtomicU32,
    permits: Arc<Semaphore>,
}

impl Transport {
    /// Starts the reader and writer tasks (and, with a `reply_timeout`, the watchdog)
    /// on the current tokio runtime; at most `max_in_flight` requests are outstanding.
    pub(super) fn start<S>(
        stream: S,
        max_in_flight: usize,
        reply_timeout: Option<Duration>,
    ) -> Transport
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let shared = Arc::new(Shared::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(reader_task(read_half, shared.clone()));
        let writer = tokio::spawn(writer_task(write_half, rx, shared.clone()));
        shared
            .tasks()
            .extend([reader.abort_handle(), writer.abort_handle()]);
        if let Some(timeout) = reply_timeout {
            tokio::spawn(watchdog_task(Arc::downgrade(&shared), timeout));
        }
        Transport {
            shared,
            tx,
            next_id: AtomicU32::new(1),
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Whether the session has ended (every request would fail).
    pub(super) fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends one request packet (built with a zero id placeholder at bytes 5..9) and
    /// waits for its reply. Holds one in-flight permit until the reply arrives.
    pub(super) async fn send(&self, pkt: Vec<u8>) -> SftpResult<Response> {
        let rx = self.enqueue(pkt).await?;
        self.reply(rx).await
    }

    /// Queues one request packet and returns where its reply will arrive, without
    /// waiting for it. Requests queued one after another by one task go on the wire
    /// in that order (the in-flight semaphore is fair, and the packet is queued under
    /// the state lock), which is what lets `FileWriter::finish` send fsync and close
    /// right behind the writes: OpenSSH handles one channel's requests strictly in
    /// order, so they act on the data written before them.
    pub(super) async fn enqueue(&self, mut pkt: Vec<u8>) -> SftpResult<ReplyRx> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SftpError::Closed("request limiter closed".into()))?;
        let (tx, rx) = oneshot::channel();
        let mut st = self.shared.lock();
        if let Some(e) = &st.closed {
            return Err(replicate_fatal(e));
        }
        let mut id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Ids wrap after 4 billion requests; skip any still outstanding.
        while st.pending.contains_key(&id) {
            id = self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        pkt[5..9].copy_from_slice(&id.to_be_bytes());
        if st.pending.is_empty() {
            st.last_progress = Instant::now();
        }
        st.pending.insert(id, (tx, permit));
        // Queue under the lock so that packets go out in id order (cheap: an
        // unbounded channel push never waits).
        if self.tx.send(pkt).is_err() {
            st.pending.remove(&id);
            return Err(SftpError::Closed("the SFTP writer task has ended".into()));
        }
        Ok(rx)
    }

    /// Waits for the reply of a request queued with [`Transport::enqueue`].
    pub(super) async fn reply(&self, rx: ReplyRx) -> SftpResult<Response> {
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self
                .shared
                .lock()
                .closed
                .as_ref()
                .map(replicate_fatal)
                .unwrap_or_else(|| SftpError::Closed("session ended".into()))),
        }
    }
}
