//! `next` (the staged release) and hooks on the local machine.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};

use relstore_core::hook::{self, Ended, HookExit, HookRun};
use relstore_core::layout;
use relstore_core::store_path;
use relstore_core::target::{TargetError, TargetResult};
use relstore_core::ReleaseName;

use crate::fsutil::{fsync_dir, io_err, show};
use crate::{contain, LocalTarget};

impl LocalTarget {
    /// The release the link `name` (`current` or `next`) points at; `None` when there
    /// is no link. Anything else there is refused by name.
    pub(crate) fn read_release_link(&self, name: &str) -> TargetResult<Option<ReleaseName>> {
        let link = self.p(name);
        if !store_path::current_link(&show(&link), contain::kind(&link)?)? {
            return Ok(None);
        }
        match fs::read_link(&link) {
            Ok(target) => {
                let bytes = target.as_os_str().as_bytes();
                layout::release_from_link_target(bytes)
                    .map(Some)
                    .ok_or_else(|| TargetError::BadCurrent {
                        link: show(&link),
                        found: relstore_core::path::escape(bytes),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read symlink", &link, e)),
        }
    }

    /// Points `next` at a release by renaming a fresh symlink over it, or removes it.
    pub(crate) fn write_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        let link = self.p(layout::NEXT);
        let present = store_path::current_link(&show(&link), contain::kind(&link)?)?;
        let Some(name) = name else {
            if present {
                fs::remove_file(&link).map_err(|e| io_err("remove", &link, e))?;
                fsync_dir(self.root())?;
            }
            return Ok(());
        };
        self.existing_store_dir(&layout::release_dir(name))?;
        let tmp = self.tmp_name("next");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(layout::current_link_target(name), &tmp)
            .map_err(|e| io_err("create symlink", &tmp, e))?;
        fs::rename(&tmp, &link).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("replace", &link, e)
        })?;
        fsync_dir(self.root())
    }

    /// Runs a hook under the shared wrapper with `sh -c` (see [`relstore_core::hook`]).
    pub(crate) fn hook(
        &self,
        run: &HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<HookExit> {
        let root = fs::canonicalize(self.root()).map_err(|e| io_err("resolve", self.root(), e))?;
        let script = hook::wrapper_script(root.as_os_str().as_bytes(), run);
        let script = std::ffi::OsStr::from_bytes(&script);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                TargetError::Other(format!("cannot start sh for hook {}: {e}", run.hook))
            })?;
        let mut stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        let pgid = Arc::new(AtomicU32::new(0));
        let threads = [
            child.stdout.take().map(|o| {
                let tx = tx.clone();
                std::thread::spawn(move || hook::forward_lines(o, &tx))
            }),
            child.stderr.take().map(|e| {
                let (tx, pgid) = (tx.clone(), Arc::clone(&pgid));
                std::thread::spawn(move || wrapper_stderr(e, &tx, &pgid))
            }),
        ];
        drop(tx);
        let child_pid = child.id();
        let mut exited = None;
        let ended = hook::supervise(
            &rx,
            run.timeout,
            output,
            &mut || {
                exited = exited.take().or_else(|| child.try_wait().ok().flatten());
                exited.is_some()
            },
            &mut || {
                kill_group(pgid.load(Ordering::SeqCst), child_pid);
                drop(stdin.take()); // and the wrapper's watcher kills the group too
            },
        );
        drop(stdin); // the watcher ends with its stdin
        let status = match exited {
            Some(status) => status,
            None => child.wait().map_err(|e| {
                TargetError::Other(format!("hook {}: cannot wait for sh: {e}", run.hook))
            })?,
        };
        if ended == Ended::Finished && !rx_closed(&rx) {
            // A background process of the hook still holds its output: leave the
            // readers to end with it.
        } else {
            for t in threads.into_iter().flatten() {
                let _ = t.join();
            }
        }
        Ok(HookExit {
            code: status.code().or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|s| 128 + s)
            }),
            timed_out: ended == Ended::TimedOut,
            interrupted: ended == Ended::Interrupted,
        })
    }
}

/// Whether both readers ended (their senders are gone).
fn rx_closed(rx: &mpsc::Receiver<String>) -> bool {
    matches!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected))
}

/// Reads the wrapper's stderr: the line giving the hook's process group is kept in
/// `pgid`, any other line (the wrapper's own errors) goes to the output.
fn wrapper_stderr(stderr: impl io::Read, tx: &mpsc::Sender<String>, pgid: &AtomicU32) {
    use std::io::BufRead;
    for line in io::BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { return };
        match hook::parse_pgid(&line) {
            Some(n) if pgid.load(Ordering::SeqCst) == 0 => pgid.store(n, Ordering::SeqCst),
            _ => {
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
}

/// Kills the hook's process group (or, before the wrapper said which it is, the
/// wrapper itself: its watcher then kills the hook).
fn kill_group(pgid: u32, wrapper: u32) {
    let target = match i32::try_from(pgid) {
        Ok(g) if g > 1 => -g,
        _ => match i32::try_from(wrapper) {
            Ok(p) if p > 1 => p,
            _ => return,
        },
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of this process; a
    // group or process that is already gone only yields ESRCH, which is ignored.
    unsafe {
        libc::kill(target, libc::SIGKILL);
    }
}
