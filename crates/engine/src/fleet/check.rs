//! Health checks after a host's swap: `--check CMD` on the host and `--check-url URL`
//! fetched from the client.
//!
//! A check passes as soon as one attempt passes; attempts repeat every
//! [`RETRY_EVERY`] until the settle time (`--check-settle`) has passed, so a service
//! that needs a moment to reload is not declared dead on its first answer. The output
//! of the last failed attempt is kept for the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relstore_core::{ReleaseName, Target};
use serde::Serialize;

/// How long to wait between two attempts of a check.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How much of a check's output the report keeps (its end, where errors are).
const OUTPUT_KEPT: usize = 2000;

/// The checks to run on each host after its swap.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// `--check CMD`: a shell command run on the host, in the new release.
    pub command: Option<String>,
    /// Timeout of one run of the command (`--check-timeout`).
    pub command_timeout: Duration,
    /// `--check-url URL`, `{host}` replaced by the host's name.
    pub url: Option<String>,
    /// `--check-body TEXT`: the response body must contain it.
    pub body: Option<String>,
    /// `--check-settle`: how long failed attempts are retried.
    pub settle: Duration,
}

impl Checks {
    /// Whether there is any check to run.
    pub fn any(&self) -> bool {
        self.command.is_some() || self.url.is_some()
    }
}

/// What one check did on one host (the `--json` keys).
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `command` or `url`.
    pub kind: &'static str,
    /// The command, or the URL after `{host}` was replaced.
    pub what: String,
    pub passed: bool,
    pub attempts: u32,
    /// Output (command) or status and body (URL) of the last attempt, shortened.
    pub output: String,
    pub seconds: f64,
}

/// Runs a command on a target's host in one of its releases: the seam through which
/// `--check CMD` reaches the host. [`LocalShell`] serves local targets; the hook runner
/// of SSH targets plugs in here.
pub trait CommandRunner: Sync {
    /// Runs `command` in `ROOT/releases/NAME` of `target`; returns whether it
    /// succeeded and its output (stdout and stderr).
    fn run(
        &self,
        target: &Arc<dyn Target>,
        release: &ReleaseName,
        command: &str,
        timeout: Duration,
    ) -> Result<(bool, String), String>;
}

/// Runs check commands on the target's host the way hooks run (see
/// [`relstore_core::hook`]): `sh -c` in the release, over SSH for remote targets,
/// killed at the timeout; `RELSTORE_HOOK` is `check`.
pub struct TargetShell;

impl CommandRunner for TargetShell {
    fn run(
        &self,
        target: &Arc<dyn Target>,
        release: &ReleaseName,
        command: &str,
        timeout: Duration,
    ) -> Result<(bool, String), String> {
        let run = relstore_core::hook::HookRun {
            hook: "check",
            command,
            release,
            previous: None,
            timeout,
        };
        let mut output = String::new();
        let exit = target
            .run_hook(&run, &mut |line| {
                output.push_str(line);
                output.push('\n');
            })
            .map_err(|e| e.to_string())?;
        if exit.timed_out {
            output.push_str(&format!(
                "(killed after its {:.1}s timeout)",
                timeout.as_secs_f64()
            ));
        } else if let Some(code) = exit.code.filter(|c| *c != 0) {
            output.push_str(&format!("(exit status {code})"));
        }
        Ok((exit.success(), output))
    }
}

/// Everything a host's checks need.
pub(crate) struct HostCheck<'a> {
    pub target: &'a Arc<dyn Target>,
    pub host: &'a str,
    pub release: &'a ReleaseName,
    pub runner: &'a dyn CommandRunner,
}

/// Runs every configured check on one host, stopping at the first that fails.
pub(crate) fn run_checks(checks: &Checks, on: &HostCheck<'_>) -> Vec<CheckResult> {
    let mut results = Vec::new();
    if let Some(cmd) = &checks.command {
        let r = retry(checks.settle, "command", cmd.clone(), || {
            on.runner
                .run(on.target, on.release, cmd, checks.command_timeout)
                .unwrap_or_else(|e| (false, e))
        });
        let passed = r.passed;
        results.push(r);
        if !passed {
            return results;
        }
    }
    if let Some(url) = &checks.url {
        let url = url.replace("{host}", on.host);
        let timeout = checks.command_timeout;
        let body = checks.body.as_deref();
        results.push(retry(checks.settle, "url", url.clone(), || {
            fetch(&url, body, timeout)
        }));
    }
    results
}

/// Repeats `attempt` until it passes or `settle` has passed since the first one.
fn retry(
    settle: Duration,
    kind: &'static str,
    what: String,
    mut attempt: impl FnMut() -> (bool, String),
) -> CheckResult {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (passed, output) = attempt();
        let out_of_time = started.elapsed() + RETRY_EVERY > settle;
        if passed || out_of_time || relstore_core::cancel::requested() {
            return CheckResult {
                kind,
                what,
                passed,
                attempts,
                output: tail(&output),
                seconds: started.elapsed().as_secs_f64(),
            };
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// One GET of `url` from the client: passes on a 2xx status whose body contains
/// `body` (when given).
fn fetch(url: &str, body: Option<&str>, timeout: Duration) -> (bool, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(e) => return (false, format!("GET {url}: {e}")),
    };
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_else(|e| format!("(body unreadable: {e})"));
    let ok_status = (200..300).contains(&status);
    let ok_body = body.is_none_or(|b| text.contains(b));
    let mut output = format!("GET {url}: HTTP {status}");
    if ok_status && !ok_body {
        output.push_str(&format!(
            "; body does not contain {:?}",
            body.unwrap_or_default()
        ));
    }
    if !(ok_status && ok_body) {
        output.push('\n');
        output.push_str(&text);
    }
    (ok_status && ok_body, output)
}

/// The end of `s`, at most [`OUTPUT_KEPT`] bytes, cut at a character boundary.
fn tail(s: &str) -> String {
    let s = s.trim_end();
    if s.len() <= OUTPUT_KEPT {
        return s.to_owned();
    }
    let mut start = s.len() - OUTPUT_KEPT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_stops_at_the_settle_time_and_keeps_the_last_output() {
        let mut n = 0;
        let r = retry(Duration::from_millis(1200), "command", "x".into(), || {
            n += 1;
            (false, format!("attempt {n}"))
        });
        assert!(!r.passed);
        assert!(r.attempts >= 2, "{}", r.attempts);
        assert_eq!(r.output, format!("attempt {}", r.attempts));
        let r = retry(Duration::from_secs(10), "command", "x".into(), || {
            (true, String::new())
        });
        assert!(r.passed && r.attempts == 1);
    }

    #[test]
    fn an_unreachable_url_fails_naming_it() {
        let (ok, out) = fetch("http://127.0.0.1:1/healthz", None, Duration::from_secs(2));
        assert!(!ok);
        assert!(out.starts_with("GET http://127.0.0.1:1/healthz"), "{out}");
    }
}
