//! `relstore config check`: the project file's resolved plan, per target, as a push
//! would use it (before command-line flags).

use std::io::Write;

use anyhow::Result;
use relstore_project::{format_duration, Project, ResolvedTarget};
use serde_json::json;

/// Prints the plan (one JSON object with `--json`). Loading the file already checked it.
pub fn check(project: &Project, json_out: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let default = project.default_target().ok().map(|t| t.name.clone());
    if json_out {
        let targets: Vec<serde_json::Value> = project.targets.values().map(to_json).collect();
        let v = json!({
            "file": project.path.display().to_string(),
            "default": default,
            "targets": targets,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: ok, {} target{}{}",
        project.path.display(),
        project.targets.len(),
        if project.targets.len() == 1 { "" } else { "s" },
        default
            .as_deref()
            .map(|d| format!(" (default: {d})"))
            .unwrap_or_default()
    )?;
    for t in project.targets.values() {
        for line in lines(t) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// One target in human form: a heading and one indented line per setting.
fn lines(t: &ResolvedTarget) -> Vec<String> {
    let or_none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let hook = |h: &Option<String>| h.clone().unwrap_or_else(|| "(none)".into());
    vec![
        format!("target {}:", t.name),
        format!("  hosts: {}", t.hosts.join(", ")),
        format!(
            "  source: {}",
            t.source
                .as_ref()
                .map_or("(none: give SOURCE)".into(), |s| s.display().to_string())
        ),
        format!(
            "  keep: {}",
            t.keep.map_or("(all)".into(), |k| k.to_string())
        ),
        format!("  exclude: {}", or_none(&t.exclude)),
        format!("  shared: {}", or_none(&t.shared)),
        format!("  before_activate: {}", hook(&t.hooks.before_activate)),
        format!("  after_activate: {}", hook(&t.hooks.after_activate)),
        format!("  after_rollback: {}", hook(&t.hooks.after_rollback)),
        format!("  hook_timeout: {}", format_duration(t.hook_timeout)),
        format!("  revert_on_hook_failure: {}", t.revert_on_hook_failure),
        format!(
            "  helper: {}",
            t.helper
                .map_or("(auto, or --helper / RELSTORE_HELPER)", |h| h.as_str())
        ),
    ]
}

fn to_json(t: &ResolvedTarget) -> serde_json::Value {
    json!({
        "name": t.name,
        "hosts": t.hosts,
        "source": t.source.as_ref().map(|s| s.display().to_string()),
        "keep": t.keep,
        "exclude": t.exclude,
        "shared": t.shared,
        "hooks": t.hooks,
        "hook_timeout_seconds": t.hook_timeout.as_secs(),
        "revert_on_hook_failure": t.revert_on_hook_failure,
        "helper": t.helper.map(|h| h.as_str()),
    })
}
