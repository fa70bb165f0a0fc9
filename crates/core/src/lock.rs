//! Who holds a store's lock, and whether that holder is provably gone.
//!
//! The lock file records host, pid, the process's start time and the command. A lock
//! whose holder ran on this host and no longer exists (or whose pid now belongs to a
//! younger process) is stale and may be broken automatically; any other lock is only
//! broken on the user's explicit word.

use serde::{Deserialize, Serialize};

use crate::release::{format_utc, now_unix_ns};

/// Contents of `ROOT/lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Start time of the holder in clock ticks since boot (`/proc/PID/stat` field 22),
    /// to tell a reused pid from the holder.
    pub pid_start: Option<u64>,
    pub started_unix_ns: i64,
    pub command: String,
    pub tool_version: String,
}

impl LockInfo {
    /// Describes this process as a lock holder running `command`.
    pub fn for_this_process(command: &str) -> LockInfo {
        let pid = std::process::id();
        LockInfo {
            host: hostname(),
            pid,
            pid_start: process_start_ticks(pid),
            started_unix_ns: now_unix_ns(),
            command: command.to_owned(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Serialised form written to the lock file. An error here would otherwise write an
    /// empty lock that no one could attribute.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parses a lock file; `None` when it is not one of ours (then it is never
    /// considered stale automatically).
    pub fn parse(bytes: &[u8]) -> Option<LockInfo> {
        serde_json::from_slice(bytes).ok()
    }

    /// One line for messages: `pid 123 on host web1 since 2026-11-22 05:30:12Z (push)`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on host {} since {} ({})",
            self.pid,
            self.host,
            format_utc(self.started_unix_ns),
            self.command
        )
    }

    /// True when the holder ran on this host and is provably no longer running.
    pub fn is_stale_here(&self) -> bool {
        if self.host != hostname() {
            return false;
        }
        if !pid_alive(self.pid) {
            return true;
        }
        match (self.pid_start, process_start_ticks(self.pid)) {
            (Some(recorded), Some(now)) => recorded != now,
            _ => false,
        }
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or
    // truncates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Start time of `pid` in clock ticks since boot, where /proc tells it.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the
    // last ')' and count from there (field 3 is the first after it).
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_stale_and_a_dead_one_is() {
        let me = LockInfo::for_this_process("test");
        assert!(me.pid_start.is_some());
        assert!(!me.is_stale_here());
        assert_eq!(LockInfo::parse(&me.to_bytes().unwrap()), Some(me.clone()));

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = LockInfo { pid, ..me.clone() };
        assert!(dead.is_stale_here());

        let elsewhere = LockInfo {
            host: "some-other-host".into(),
            pid,
            ..me.clone()
        };
        assert!(!elsewhere.is_stale_here());

        let reused = LockInfo {
            pid_start: me.pid_start.map(|t| t + 1),
            ..me
        };
        assert!(
            reused.is_stale_here(),
            "a pid reused by another process is stale"
        );
    }
}
