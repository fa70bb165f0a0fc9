//! `next` (the staged release) and hooks on the server: `next` over SFTP like
//! `current`; hooks over an SSH exec channel on the same connection, under the
//! shared wrapper of [`relstore_core::hook`].

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use relstore_core::hook::{self, Ended, HookExit, HookRun};
use relstore_core::path::escape;
use relstore_core::target::{TargetError, TargetResult};
use relstore_core::{layout, store_path, ReleaseName, Target};

use super::SftpTarget;
use crate::helper::exec::{run_capture, shell_quote, ExecChannel, Exit};

/// How long the exec that kills a hook's group may take.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the exit status once the hook's output ended.
const EXIT_WAIT: Duration = Duration::from_secs(10);

impl SftpTarget {
    /// The release the link `name` (`current` or `next`) points at; `None` when there
    /// is no link. Anything else there is refused by name.
    pub(super) fn read_release_link(&self, name: &str) -> TargetResult<Option<ReleaseName>> {
        let link = self.p(name);
        match self.run(self.client().readlink(&link)) {
            Ok(target) => layout::release_from_link_target(&target)
                .map(Some)
                .ok_or_else(|| TargetError::BadCurrent {
                    link: self.show(&link),
                    found: escape(&target),
                }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => {
                // Say what is there instead (a directory, say) rather than how the
                // server refused to read it as a link.
                let k = self.run(self.kind(&link))?;
                store_path::current_link(&self.show(&link), k)?;
                Err(self.io_err("read symlink", &link, e))
            }
        }
    }

    /// Points `next` at a release with one `posix-rename`, or removes it.
    pub(super) fn write_next(&self, name: Option<&ReleaseName>) -> TargetResult<()> {
        self.run(async {
            let link = self.p(layout::NEXT);
            let present = store_path::current_link(&self.show(&link), self.kind(&link).await?)?;
            let c = self.client();
            let Some(name) = name else {
                if present {
                    c.remove(&link)
                        .await
                        .map_err(|e| self.io_err("remove", &link, e))?;
                }
                return Ok(());
            };
            self.existing_store_dir(&layout::release_dir(name)).await?;
            let tmp = self.tmp_path("next");
            let _ = c.remove(&tmp).await;
            c.symlink(layout::current_link_target(name).as_bytes(), &tmp)
                .await
                .map_err(|e| self.io_err("create symlink", &tmp, e))?;
            if let Err(e) = c.posix_rename(&tmp, &link).await {
                let _ = c.remove(&tmp).await;
                return Err(self.io_err("replace", &link, e));
            }
            Ok(())
        })
    }

    /// The host as the target names it (an ssh config alias stays an alias).
    pub(super) fn host_label(&self) -> String {
        crate::spec::RemoteSpec::parse(self.location())
            .map(|s| s.host)
            .unwrap_or_else(|_| self.location().to_owned())
    }

    /// Runs a hook on the server (see [`relstore_core::hook`]).
    pub(super) fn hook(
        &self,
        run: &HookRun<'_>,
        output: &mut dyn FnMut(&str),
    ) -> TargetResult<HookExit> {
        let script = hook::wrapper_script(self.root(), run);
        let mut command = b"sh -c ".to_vec();
        command.extend_from_slice(&shell_quote(&script));
        let keep: Arc<dyn Send + Sync> = Arc::new(());
        let ch =
            ExecChannel::start(self.session(), self.runtime(), &command, keep).map_err(|e| {
                TargetError::Other(format!(
                    "{}: cannot start hook {}: {e}",
                    self.location(),
                    run.hook
                ))
            })?;
        let ExecChannel {
            reader,
            writer,
            status,
            ..
        } = ch;
        let mut writer = Some(writer); // held open: its end tells the watcher to kill
        let (tx, rx) = mpsc::channel();
        let reading = std::thread::spawn(move || hook::forward_lines(reader, &tx));
        let ended = hook::supervise(
            &rx,
            run.timeout,
            output,
            &mut || status.snapshot().exit.is_some(),
            &mut || {
                if let Some(pgid) = hook::parse_pgid(&status.snapshot().stderr) {
                    let kill =
                        format!("kill -9 -{pgid} 2>/dev/null || kill -9 {pgid} 2>/dev/null; true");
                    let _ = run_capture(self.session(), self.runtime(), kill.as_bytes(), KILL_WAIT);
                }
                drop(writer.take());
            },
        );
        drop(writer);
        // The exit status arrives before the channel closes; a background process of
        // the hook may hold the channel open (its reader then ends with it).
        let state = match status.snapshot() {
            s if s.exit.is_some() => s,
            _ => status.wait_closed(EXIT_WAIT),
        };
        drop(reading);
        for line in String::from_utf8_lossy(&state.stderr).lines() {
            if hook::parse_pgid(line.as_bytes()).is_none() {
                output(line);
            }
        }
        let code = match state.exit {
            Some(Exit::Status(n)) => i32::try_from(n).ok(),
            Some(Exit::Signal(_)) | None => None,
        };
        Ok(HookExit {
            code,
            timed_out: ended == Ended::TimedOut,
            interrupted: ended == Ended::Interrupted,
        })
    }
}
