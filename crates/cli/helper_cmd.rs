//! `relstore helper status TARGET`: which helper a target would use, or why none.

use std::io::Write;

use anyhow::Result;
use relstore_ssh::helper::RunningHelper;
use relstore_ssh::{HelperMode, HelperRequest, HelperStatus};
use relstore_targets::{is_remote, RemoteOptions};
use serde_json::json;

/// Looks (installs nothing, creates nothing) and prints the answer.
pub fn status(target: &str, remote: &RemoteOptions, json_out: bool) -> Result<()> {
    let status = if !is_remote(target) {
        HelperStatus::Unavailable {
            reason: "a local target needs no helper".into(),
        }
    } else if remote.helper == HelperMode::Off {
        HelperStatus::Off
    } else {
        let mut opts = remote.clone();
        opts.helper = HelperMode::Auto;
        let request = HelperRequest {
            may_create: false,
            may_install: false,
        };
        relstore_ssh::connect(target, &opts, request)?.1
    };
    let mut out = std::io::stdout().lock();
    if json_out {
        writeln!(out, "{}", to_json(target, remote.helper, &status))?;
        return Ok(());
    }
    match &status {
        HelperStatus::Running(h) => writeln!(out, "{}", running_text(target, h))?,
        HelperStatus::Off => writeln!(out, "{target}: helper off (--helper off): SFTP only")?,
        HelperStatus::Unavailable { reason } => writeln!(out, "{target}: no helper: {reason}")?,
    }
    Ok(())
}

fn running_text(target: &str, h: &RunningHelper) -> String {
    format!(
        "{target}: helper relstore {} (protocol {}, {} {}) at {} ({})",
        h.version,
        h.protocol,
        h.os,
        h.arch,
        h.path,
        h.source.as_str()
    )
}

fn to_json(target: &str, mode: HelperMode, status: &HelperStatus) -> serde_json::Value {
    match status {
        HelperStatus::Running(h) => json!({
            "target": target,
            "mode": mode.as_str(),
            "helper": true,
            "version": h.version,
            "protocol": h.protocol,
            "os": h.os,
            "arch": h.arch,
            "path": h.path,
            "source": h.source.as_str(),
        }),
        HelperStatus::Off => json!({
            "target": target,
            "mode": mode.as_str(),
            "helper": false,
            "reason": "--helper off",
        }),
        HelperStatus::Unavailable { reason } => json!({
            "target": target,
            "mode": mode.as_str(),
            "helper": false,
            "reason": reason,
        }),
    }
}
