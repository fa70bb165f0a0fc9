//! Hooks: shell commands run on the target's host around the swap of `current`.
//!
//! Every target runs a hook the same way, under the same small POSIX `sh` wrapper
//! ([`wrapper_script`]), locally through `sh -c` or remotely over an SSH exec channel:
//!
//! - the hook runs as `sh -c COMMAND` in the release directory, with `RELSTORE_RELEASE`,
//!   `RELSTORE_PREVIOUS` (empty when there is none), `RELSTORE_ROOT` and
//!   `RELSTORE_HOOK` in its environment, stdin from `/dev/null` and stderr merged into
//!   stdout (so its lines arrive in the order it wrote them);
//! - it runs in a session and process group of its own (`setsid`), whose id the
//!   wrapper prints on its stderr as `relstore-hook-pgid N`: a timeout or Ctrl-C kills
//!   the whole group (`kill -KILL -- -N`), grandchildren included;
//! - a watcher in the wrapper reads the wrapper's stdin, which relstore keeps open while
//!   it waits: when relstore dies (even by `kill -9`) or the SSH connection drops, the
//!   stdin ends and the watcher kills the group. Nothing relies on sshd or the kernel
//!   killing an orphaned command, which neither does.
//!
//! [`supervise`] is the client side every target shares: it forwards output lines,
//! enforces the timeout and honours [`crate::cancel`].

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::release::ReleaseName;

/// The prefix of the wrapper's stderr line that gives the hook's process group.
pub const PGID_PREFIX: &str = "relstore-hook-pgid ";

/// How long output still drains after the hook's group was killed.
const DRAIN: Duration = Duration::from_secs(3);

/// One hook to run.
#[derive(Clone, Debug)]
pub struct HookRun<'a> {
    /// Its name (`before_activate`, ...): `RELSTORE_HOOK`.
    pub hook: &'a str,
    /// The shell command.
    pub command: &'a str,
    /// The release it runs in (`ROOT/releases/NAME`): `RELSTORE_RELEASE`.
    pub release: &'a ReleaseName,
    /// The release current before (or, after a rollback, the one rolled away from):
    /// `RELSTORE_PREVIOUS`.
    pub previous: Option<&'a ReleaseName>,
    /// When the hook's process group is killed.
    pub timeout: Duration,
}

/// How a hook ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookExit {
    /// Its exit status, when it exited.
    pub code: Option<i32>,
    /// The timeout passed and its process group was killed.
    pub timed_out: bool,
    /// A stop was requested (Ctrl-C) and its process group was killed.
    pub interrupted: bool,
}

impl HookExit {
    /// It exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.interrupted
    }
}

/// `s` quoted for a POSIX shell: inside single quotes, each `'` written as `'\''`.
pub fn shell_quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &b in s {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The `sh` script that runs `run` in `ROOT/releases/NAME` (`root` is the store root's
/// absolute path on the host); see the module docs. Its exit status is the hook's
/// (`128 + N` when signal N killed it; 126 when the release directory is missing).
pub fn wrapper_script(root: &[u8], run: &HookRun<'_>) -> Vec<u8> {
    let q = |b: &[u8]| shell_quote(b);
    let mut release_dir = root.to_vec();
    release_dir.extend_from_slice(b"/");
    release_dir.extend_from_slice(crate::layout::release_dir(run.release).as_bytes());
    let previous = run.previous.map(|p| p.as_str()).unwrap_or("");
    let mut s = Vec::new();
    s.extend_from_slice(b"exec 3<&0\ncd ");
    s.extend_from_slice(&q(&release_dir));
    s.extend_from_slice(b" || exit 126\nRELSTORE_RELEASE=");
    s.extend_from_slice(&q(run.release.as_str().as_bytes()));
    s.extend_from_slice(b" RELSTORE_PREVIOUS=");
    s.extend_from_slice(&q(previous.as_bytes()));
    s.extend_from_slice(b" RELSTORE_ROOT=");
    s.extend_from_slice(&q(root));
    s.extend_from_slice(b" RELSTORE_HOOK=");
    s.extend_from_slice(&q(run.hook.as_bytes()));
    s.extend_from_slice(
        b"\nexport RELSTORE_RELEASE RELSTORE_PREVIOUS RELSTORE_ROOT RELSTORE_HOOK\nh=",
    );
    s.extend_from_slice(&q(run.command.as_bytes()));
    s.extend_from_slice(
        b"
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c \"$h\" </dev/null 3<&- 2>&1 &
else
  sh -c \"$h\" </dev/null 3<&- 2>&1 &
fi
pid=$!
echo \"relstore-hook-pgid $pid\" >&2
{ cat <&3 >/dev/null 2>&1; kill -9 -$pid 2>/dev/null || kill -9 $pid 2>/dev/null; } >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait $pid
st=$?
kill $watcher 2>/dev/null
exit $st
",
    );
    s
}

/// The hook's process group, from the wrapper's stderr.
pub fn parse_pgid(stderr: &[u8]) -> Option<u32> {
    String::from_utf8_lossy(stderr)
        .lines()
        .find_map(|l| l.trim().strip_prefix(PGID_PREFIX)?.trim().parse().ok())
        .filter(|&n| n > 1)
}

/// How [`supervise`] saw the hook end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its output ended: the hook (and the wrapper) finished.
    Finished,
    /// The timeout passed; `kill` was called.
    TimedOut,
    /// A stop was requested; `kill` was called.
    Interrupted,
}

/// Forwards `lines` (the hook's output) to `output` until they end or `exited` says
/// the wrapper exited (a hook may leave a background process holding its output
/// open; what it writes later is not waited for), the `timeout` passes or a stop is
/// requested; in the last two cases calls `kill` once and drains what is still coming
/// for a few seconds.
pub fn supervise(
    lines: &Receiver<String>,
    timeout: Duration,
    output: &mut dyn FnMut(&str),
    exited: &mut dyn FnMut() -> bool,
    kill: &mut dyn FnMut(),
) -> Ended {
    let deadline = Instant::now() + timeout;
    let tick = Duration::from_millis(100);
    let ended = loop {
        match lines.recv_timeout(tick) {
            Ok(line) => output(&line),
            Err(RecvTimeoutError::Disconnected) => return Ended::Finished,
            Err(RecvTimeoutError::Timeout) => {
                if exited() {
                    // What the hook wrote just before it exited is still on its way.
                    while let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
                        output(&line);
                    }
                    return Ended::Finished;
                }
            }
        }
        if crate::cancel::requested() {
            break Ended::Interrupted;
        }
        if Instant::now() >= deadline {
            break Ended::TimedOut;
        }
    };
    kill();
    let until = Instant::now() + DRAIN;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => output(&line),
            Err(_) => break,
        }
    }
    ended
}

/// Splits what a hook wrote into lines (lossy UTF-8, without the line break) and
/// sends each to `tx`; for a reader thread.
pub fn forward_lines(reader: impl std::io::Read, tx: &std::sync::mpsc::Sender<String>) {
    use std::io::BufRead;
    let mut r = std::io::BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pgid_line_is_found() {
        assert_eq!(parse_pgid(b"x\nrelstore-hook-pgid 4242\n"), Some(4242));
        assert_eq!(parse_pgid(b"nothing"), None);
        assert_eq!(parse_pgid(b"relstore-hook-pgid 1\n"), None);
    }
}
