//! The comparison deploy: the classic `rsync -a --link-dest=../previous` release
//! directory per deploy and a `current` symlink swapped with `mv -T`, the way
//! Capistrano-style scripts do it. Run on the same tree states as relstore's series.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::BenchError;
use crate::error::EngineResult;

/// What one rsync deploy cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RsyncRun {
    /// Wall time of the rsync and the swap.
    pub seconds: f64,
    /// rsync's own "Total bytes sent" (protocol bytes from sender to receiver).
    pub bytes_sent: u64,
}

/// Whether `rsync` can be run at all.
pub fn available() -> bool {
    Command::new("rsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A local rsync release store: `ROOT/releases/N`, `ROOT/current`.
pub struct RsyncStore {
    root: PathBuf,
    previous: Option<String>,
    count: u32,
}

impl RsyncStore {
    /// A store rooted at `root` (created on the first deploy).
    pub fn new(root: PathBuf) -> RsyncStore {
        RsyncStore {
            root,
            previous: None,
            count: 0,
        }
    }

    /// Deploys `source` as the next release, hardlinking unchanged files to the
    /// previous release, then points `current` at it.
    pub fn deploy(&mut self, source: &Path) -> EngineResult<RsyncRun> {
        self.count += 1;
        let name = format!("r{}", self.count);
        let releases = self.root.join("releases");
        std::fs::create_dir_all(&releases).map_err(|source| BenchError::CreateDir {
            path: releases.clone(),
            source,
        })?;
        let started = Instant::now();
        let mut cmd = Command::new("rsync");
        cmd.args(["-a", "--stats"]);
        if let Some(prev) = &self.previous {
            cmd.arg(format!("--link-dest=../{prev}"));
        }
        let mut src = source.as_os_str().to_owned();
        src.push("/");
        cmd.arg(src).arg(releases.join(&name));
        let out = cmd.output().map_err(|source| BenchError::RunTool {
            tool: "rsync",
            source,
        })?;
        if !out.status.success() {
            return Err(BenchError::Rsync {
                dest: releases.join(&name),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }
            .into());
        }
        let tmp_link = self.root.join("current.tmp");
        let _ = std::fs::remove_file(&tmp_link);
        std::os::unix::fs::symlink(format!("releases/{name}"), &tmp_link)
            .and_then(|()| std::fs::rename(&tmp_link, self.root.join("current")))
            .map_err(|source| BenchError::Swap {
                path: self.root.join("current"),
                source,
            })?;
        let seconds = started.elapsed().as_secs_f64();
        self.previous = Some(name);
        Ok(RsyncRun {
            seconds,
            bytes_sent: parse_bytes_sent(&String::from_utf8_lossy(&out.stdout)),
        })
    }
}

/// Finds `Total bytes sent: 1,234` in rsync's `--stats` output (0 if absent).
fn parse_bytes_sent(stats: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes sent:"))
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_sent_is_read_with_thousands_separators() {
        let stats = "Number of files: 3\nTotal bytes sent: 1,234,567\nTotal bytes received: 35\n";
        assert_eq!(parse_bytes_sent(stats), 1_234_567);
        assert_eq!(parse_bytes_sent("nothing"), 0);
    }
}
