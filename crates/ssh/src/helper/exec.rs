//! A command run on the server over an SSH exec channel, as a blocking byte stream.
//!
//! The helper client is synchronous (it implements the synchronous `Target` trait),
//! while the SSH connection lives on a tokio runtime. [`ExecChannel::start`] opens a
//! session channel on the existing connection, asks for `exec COMMAND` (waiting for
//! the server's answer, so a refusal is reported as such) and splits the channel:
//!
//! - [`ExecWriter`] (`std::io::Write`) sends the command's stdin; each write is one
//!   `block_on` on the runtime (the helper client buffers 256 KiB per write);
//! - a task on the runtime reads everything the server sends: stdout goes to
//!   [`ExecReader`] (`std::io::Read`) through a bounded queue (so a reader that falls
//!   behind holds the data back instead of buffering it without limit), stderr is
//!   kept (its first 16 KiB) and the exit status or signal is recorded.
//!
//! When the command's stdout ends, the reader reports end of file if the command
//! exited cleanly, and otherwise an error saying how it ended with the first line of
//! its stderr (`bash: relstore: command not found`, `cannot execute binary file`), so
//! a failure names its cause instead of "the connection closed".

use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::mpsc;

use crate::session::{SessionError, SshSession};

/// Bytes of stderr kept for messages.
const STDERR_KEPT: usize = 16 << 10;
/// Chunks of stdout queued between the channel and the reader.
const QUEUE: usize = 64;

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Status(u32),
    /// A signal ended it (its name, as `KILL`).
    Signal(String),
}

/// What is known about the command so far.
#[derive(Clone, Debug, Default)]
pub struct ExecState {
    /// The first [`STDERR_KEPT`] bytes it wrote to stderr.
    pub stderr: Vec<u8>,
    /// How it ended, once the server said so.
    pub exit: Option<Exit>,
    /// The channel is closed: nothing more will arrive.
    pub closed: bool,
}

impl ExecState {
    /// The first non-empty line of stderr, trimmed (at most 300 characters).
    pub fn stderr_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.stderr);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Some(line.chars().take(300).collect())
    }

    /// Why the command failed, or `None` for a clean exit (status 0) or while it runs
    /// without having said anything on stderr.
    pub fn failure(&self) -> Option<String> {
        let how = match &self.exit {
            Some(Exit::Status(0)) => return None,
            Some(Exit::Status(n)) => format!("exited with status {n}"),
            Some(Exit::Signal(s)) => format!("was killed by signal {s}"),
            None if self.closed => "ended without an exit status".to_owned(),
            None => return None,
        };
        Some(match self.stderr_line() {
            Some(line) => format!("{how}: {line}"),
            None => how,
        })
    }
}

/// State shared by the channel task and the two halves.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<ExecState>,
    changed: Condvar,
    /// Wakes a writer waiting for window space when the channel ends: a server whose
    /// command died (or a connection that dropped) never opens the window again.
    ended: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ExecState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut ExecState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    /// Waits until the channel is closed (or `timeout` passed) and returns the state.
    fn wait_closed(&self, timeout: Duration) -> ExecState {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        while !g.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = match self.changed.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        g.clone()
    }
}

/// A limit on how long the reader waits for data, shared with whoever set it: the
/// helper's greeting must arrive in time (a program that is not a helper might never
/// answer), later answers may take as long as the store needs.
#[derive(Clone, Default)]
pub struct ReadTimeout(Arc<Mutex<Option<Duration>>>);

impl ReadTimeout {
    /// Sets (or with `None` lifts) the limit.
    pub fn set(&self, limit: Option<Duration>) {
        match self.0.lock() {
            Ok(mut g) => *g = limit,
            Err(poisoned) => *poisoned.into_inner() = limit,
        }
    }

    fn get(&self) -> Option<Duration> {
        match self.0.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// The three parts of a running remote command.
pub struct ExecChannel {
    /// Its stdout.
    pub reader: ExecReader,
    /// Its stdin.
    pub writer: ExecWriter,
    /// Its stderr and exit, as they become known.
    pub status: ExecStatus,
    /// The reader's limit for waiting (none at first).
    pub timeout: ReadTimeout,
}

/// A view of a command's stderr and exit that outlives the reader and writer.
#[derive(Clone)]
pub struct ExecStatus {
    shared: Arc<Shared>,
}

impl ExecStatus {
    /// What is known now.
    pub fn snapshot(&self) -> ExecState {
        self.shared.lock().clone()
    }

    /// Waits until the channel is closed (or `timeout` passed) and returns the state.
    pub fn wait_closed(&self, timeout: Duration) -> ExecState {
        self.shared.wait_closed(timeout)
    }
}

impl ExecChannel {
    /// Runs `command` (bytes: paths in it need not be UTF-8) on the server of
    /// `session`, on the runtime `rt`. `keep` is held by both halves for as long as
    /// they live (the owner of the runtime and connection, so neither goes away under
    /// them).
    pub fn start(
        session: &SshSession,
        rt: &tokio::runtime::Runtime,
        command: &[u8],
        keep: Arc<dyn Send + Sync>,
    ) -> Result<ExecChannel, Box<SessionError>> {
        let destination = session.destination().to_owned();
        let ssh_err = |e: russh::Error| SessionError::from(e).at(&destination);
        let (read_half, write_half) = rt
            .block_on(async {
                let mut channel = session
                    .handle()
                    .channel_open_session()
                    .await
                    .map_err(ssh_err)?;
                channel
                    .exec(true, command.to_vec())
                    .await
                    .map_err(ssh_err)?;
                loop {
                    match channel.wait().await {
                        Some(ChannelMsg::Success) => break,
                        Some(ChannelMsg::Failure) => {
                            return Err(SessionError::Exec {
                                destination: destination.clone(),
                                reason: "the server refused to run a command".into(),
                            })
                        }
                        Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                            return Err(SessionError::Exec {
                                destination: destination.clone(),
                                reason: "the channel was closed".into(),
                            })
                        }
                        Some(_) => continue,
                    }
                }
                Ok(channel.split())
            })
            .map_err(Box::new)?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        rt.spawn(pump(read_half, tx, Arc::clone(&shared)));
        let timeout = ReadTimeout::default();
        Ok(ExecChannel {
            reader: ExecReader {
                rt: rt.handle().clone(),
                timeout: timeout.clone(),
                rx,
                buf: Vec::new(),
                pos: 0,
                shared: Arc::clone(&shared),
                _keep: Arc::clone(&keep),
            },
            writer: ExecWriter {
                rt: rt.handle().clone(),
                half: Some(write_half),
                shared: Arc::clone(&shared),
                _keep: keep,
            },
            status: ExecStatus { shared },
            timeout,
        })
    }
}

/// Moves what the server sends into the reader's queue and the shared state.
async fn pump(mut rx: ChannelReadHalf, tx: mpsc::Sender<Vec<u8>>, shared: Arc<Shared>) {
    let mut tx = Some(tx);
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(t) = &tx {
                    if t.send(data.to_vec()).await.is_err() {
                        tx = None; // the reader is gone; keep collecting stderr
                    }
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => shared.update(|s| {
                let room = STDERR_KEPT.saturating_sub(s.stderr.len());
                s.stderr.extend_from_slice(&data[..data.len().min(room)]);
            }),
            ChannelMsg::ExitStatus { exit_status } => {
                shared.update(|s| s.exit = Some(Exit::Status(exit_status)))
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                let name = format!("{signal_name:?}");
                shared.update(|s| s.exit = Some(Exit::Signal(name)))
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    // State first, then the end of stdout: a reader that sees the end finds the exit.
    shared.update(|s| s.closed = true);
    shared.ended.notify_waiters();
    drop(tx);
}

/// The command's stdout.
pub struct ExecReader {
    rt: tokio::runtime::Handle,
    timeout: ReadTimeout,
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    shared: Arc<Shared>,
    _keep: Arc<dyn Send + Sync>,
}

impl Read for ExecReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.buf.len() {
            let next = match self.timeout.get() {
                None => self.rx.blocking_recv(),
                Some(limit) => self
                    .rt
                    .block_on(async { tokio::time::timeout(limit, self.rx.recv()).await })
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no answer within {} s", limit.as_secs()),
                        )
                    })?,
            };
            match next {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => {
                    let state = self.shared.lock();
                    // Closed without a word on how it ended: the connection is gone
                    // (a kind the engine recognises as a lost connection).
                    let kind = if state.exit.is_none() {
                        io::ErrorKind::ConnectionAborted
                    } else {
                        io::ErrorKind::Other
                    };
                    return match state.failure() {
                        None => Ok(0),
                        Some(why) => Err(io::Error::new(kind, format!("the remote command {why}"))),
                    };
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The command's stdin. Dropping it sends end of file.
pub struct ExecWriter {
    rt: tokio::runtime::Handle,
    half: Option<ChannelWriteHalf<Msg>>,
    shared: Arc<Shared>,
    _keep: Arc<dyn Send + Sync>,
}

impl Write for ExecWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(half) = &self.half else {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let shared = &self.shared;
        let sent = self.rt.block_on(async {
            // Interest first, then the flag: an end between the two still wakes us.
            let ended = shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if shared.lock().closed {
                return None;
            }
            tokio::select! {
                sent = half.data_bytes(buf.to_vec()) => Some(sent),
                () = &mut ended => None,
            }
        });
        match sent {
            Some(Ok(())) => Ok(buf.len()),
            Some(Err(russh::Error::SendError | russh::Error::ChannelOpenFailure(_))) | None => {
                Err(channel_ended(shared))
            }
            Some(Err(e)) => Err(io::Error::other(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error of a write to a channel that ended, as the reader would report it: how
/// the command ended when the server said so (the channel's last messages may still
/// be on their way: waited for briefly), else a lost connection (a kind the engine
/// recognises as one).
fn channel_ended(shared: &Shared) -> io::Error {
    let state = shared.wait_closed(ENDED_WAIT);
    match (&state.exit, state.failure()) {
        (Some(_), Some(why)) => io::Error::other(format!("the remote command {why}")),
        _ => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the channel closed while data was being sent (connection lost)",
        ),
    }
}

/// How long a failed write waits for the channel's closing messages (exit status or
/// signal) to name the cause.
const ENDED_WAIT: Duration = Duration::from_secs(2);

impl Drop for ExecWriter {
    fn drop(&mut self) {
        if let Some(half) = self.half.take() {
            // Best effort: the server may already have closed the channel.
            let _ = self.rt.block_on(half.eof());
        }
    }
}

/// Runs `command` to its end with no input and returns its stdout and final state
/// (waiting at most `timeout`). For short probes such as `uname -sm`.
pub fn run_capture(
    session: &SshSession,
    rt: &tokio::runtime::Runtime,
    command: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, ExecState), Box<SessionError>> {
    let keep: Arc<dyn Send + Sync> = Arc::new(());
    let ExecChannel {
        mut reader,
        writer,
        status,
        ..
    } = ExecChannel::start(session, rt, command, keep)?;
    drop(writer);
    let (tx, rx) = std::sync::mpsc::channel();
    // Read on a thread of its own so that the timeout holds even if the command
    // never ends; such a thread ends when the connection closes.
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.by_ref().take(1 << 20).read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(timeout).unwrap_or_default();
    Ok((out, status.wait_closed(timeout)))
}

/// `s` quoted for a POSIX shell (shared with the hook wrapper).
pub use relstore_core::hook::shell_quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_spaces_and_dollars() {
        assert_eq!(shell_quote(b"/srv/my site"), b"'/srv/my site'".to_vec());
        assert_eq!(shell_quote(b"a'b"), b"'a'\\''b'".to_vec());
        assert_eq!(shell_quote(b"$(rm -rf /)"), b"'$(rm -rf /)'".to_vec());
    }

    #[test]
    fn failures_name_the_status_and_the_first_stderr_line() {
        let mut s = ExecState {
            stderr: b"\nbash: line 1: relstore: command not found\nmore\n".to_vec(),
            exit: Some(Exit::Status(127)),
            closed: true,
        };
        assert_eq!(
            s.failure().as_deref(),
            Some("exited with status 127: bash: line 1: relstore: command not found")
        );
        s.exit = Some(Exit::Status(0));
        assert_eq!(s.failure(), None);
        s.exit = Some(Exit::Signal("KILL".into()));
        s.stderr.clear();
        assert_eq!(s.failure().as_deref(), Some("was killed by signal KILL"));
    }
}
