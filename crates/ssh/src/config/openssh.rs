//! Asking the installed OpenSSH client how it would connect: `ssh -G` prints the
//! fully evaluated configuration for a host (Include, Match, `Host *`, defaults and
//! all), so relstore resolves a host exactly as `ssh HOST` would. With `-v` the same
//! run also lists every config file it read, for messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::builtin::Evaluated;
use super::ConfigError;

/// What to ask: the host as written, the user/port the TARGET gave, and the config
/// file to read instead of the defaults (`-F`).
pub(crate) struct Ask<'a> {
    pub client: &'a Path,
    pub alias: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub config: Option<&'a Path>,
}

/// Runs `ssh -v -G …` and returns its evaluation; `None` when the program is not an
/// OpenSSH client that knows `-G` (another `ssh`, say Dropbear's), so the caller can
/// use the built-in reader instead.
pub(crate) fn evaluate(ask: &Ask) -> Result<Option<Evaluated>, ConfigError> {
    let mut cmd = Command::new(ask.client);
    cmd.arg("-v").arg("-G");
    if let Some(f) = ask.config {
        cmd.arg("-F").arg(f);
    }
    if let Some(p) = ask.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = ask.user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(ask.alias);
    let shown = format!("{} -G {}", ask.client.display(), ask.alias);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ConfigError::OpenSshRun {
            command: shown.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lower = stderr.to_ascii_lowercase();
    let no_g = [
        "illegal option",
        "unknown option",
        "invalid option",
        "unrecognized option",
    ];
    if !out.status.success() && no_g.iter().any(|m| lower.contains(m)) && !lower.contains(" line ")
    {
        return Ok(None);
    }
    if !out.status.success() {
        let reason = stderr
            .lines()
            .filter(|l| !l.starts_with("debug") && !l.starts_with("OpenSSH_"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ConfigError::OpenSsh {
            command: shown,
            reason: if reason.is_empty() {
                format!("exited with {}", out.status)
            } else {
                reason
            },
        });
    }
    let ev = parse(&String::from_utf8_lossy(&out.stdout), &stderr);
    Ok(ev.get("hostname").is_some().then_some(ev))
}

/// `ssh -G` output (`keyword value` lines) plus the files `-v` says it read.
pub(crate) fn parse(stdout: &str, stderr: &str) -> Evaluated {
    let mut ev = Evaluated::default();
    for line in stdout.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        ev.pairs.push((k.to_ascii_lowercase(), v.to_string()));
    }
    for line in stderr.lines() {
        if let Some(f) = line.strip_prefix("debug1: Reading configuration data ") {
            ev.files_read.push(PathBuf::from(f.trim()));
        }
    }
    ev
}

/// The `ssh` program on `PATH`, if any.
pub fn find_client() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ssh"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_files() {
        let ev = parse(
            "user root\nhostname 10.0.0.1\nidentityfile ~/.ssh/a\nidentityfile ~/.ssh/b\nproxycommand nc %h %p\n",
            "OpenSSH_9\ndebug1: Reading configuration data /x/config\ndebug1: /x/config line 1: Applying options for a\ndebug1: Reading configuration data /x/inc.conf\n",
        );
        assert_eq!(ev.get("hostname"), Some("10.0.0.1"));
        assert_eq!(ev.get("proxycommand"), Some("nc %h %p"));
        assert_eq!(
            ev.pairs.iter().filter(|(k, _)| k == "identityfile").count(),
            2
        );
        assert_eq!(
            ev.files_read,
            vec![PathBuf::from("/x/config"), PathBuf::from("/x/inc.conf")]
        );
    }
}
