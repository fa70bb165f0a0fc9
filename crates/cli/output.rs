//! Printing: human tables and summaries, or one JSON object, on stdout; notes on stderr.

use std::io::{self, IsTerminal, Write};

use anyhow::Result;
use relstore_core::diff::{Aspect, Diff};
use relstore_core::path::escape;
use relstore_core::progress::{Phase, Progress};
use relstore_core::release::format_utc;
use relstore_engine::catalog::Catalog;
use relstore_engine::push::PushReport;
use relstore_engine::retention::PruneReport;
use relstore_engine::rollback::RollbackReport;
use serde::Serialize;
use serde_json::json;

use crate::progress_bars::Bars;
use crate::units::{human_bytes, thousands};

/// Progress sink of the CLI: progress bars and notes on stderr when it is a terminal
/// (see [`crate::progress_bars`]), notes only otherwise (logs and CI output stay free of
/// control sequences), nothing but errors with `--quiet`. With `--json` there are no
/// bars either: machine callers get one JSON object and plain notes.
pub struct Notes {
    quiet: bool,
    bars: Option<Bars>,
}

impl Notes {
    /// Picks the sink for these global flags and this process's stderr.
    pub fn new(quiet: bool, json: bool) -> Notes {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let bars = (!quiet && !json && !dumb && io::stderr().is_terminal()).then(Bars::new);
        Notes { quiet, bars }
    }

    /// Removes a bar still drawn (an error is about to be printed).
    pub fn clear(&self) {
        if let Some(b) = &self.bars {
            b.clear();
        }
    }
}

impl Progress for Notes {
    fn start(&self, phase: Phase, total: u64) {
        if let Some(b) = &self.bars {
            b.start(phase, total);
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.bars {
            b.advance(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bars {
            b.finish();
        }
    }
    fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(b) => Progress::note(b, message),
            None => {
                let _ = writeln!(io::stderr(), "relstore: {message}");
            }
        }
    }
    fn output(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(b) => b.println_above(line),
            None => {
                let _ = writeln!(io::stderr(), "{line}");
            }
        }
    }
}

/// Result printer.
pub struct Out {
    json: bool,
    stdout: io::BufWriter<io::Stdout>,
    /// With `--json` on a target of several hosts: each host's report, printed as one
    /// object by [`Out::end_hosts`].
    collected: Option<Vec<(String, serde_json::Value)>>,
    host: String,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out {
            json,
            stdout: io::BufWriter::new(io::stdout()),
            collected: None,
            host: String::new(),
        }
    }

    /// Starts the reports of a target with several hosts: `--json` collects them.
    pub fn begin_hosts(&mut self) {
        if self.json {
            self.collected = Some(Vec::new());
        }
    }

    /// The next report is `host`'s: a heading line in human output.
    pub fn host_heading(&mut self, host: &str, i: usize, n: usize) -> Result<()> {
        self.host = host.to_owned();
        if !self.json {
            writeln!(self.stdout, "[{i}/{n}] {host}")?;
        }
        Ok(())
    }

    /// Ends the reports of target `name`: `--json` prints one object with a per-host
    /// list and, when a host failed, which one and why (later hosts were not tried).
    pub fn end_hosts(&mut self, name: &str, failed: Option<(&str, String)>) -> Result<()> {
        let Some(done) = self.collected.take() else {
            return Ok(());
        };
        let hosts: Vec<serde_json::Value> = done
            .into_iter()
            .map(|(host, report)| json!({ "host": host, "report": report }))
            .collect();
        let failed = failed.map(|(host, error)| json!({ "host": host, "error": error }));
        self.json(&json!({ "target": name, "hosts": hosts, "failed": failed }))
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one JSON object (fleet reports, see `fleet_cmd`).
    pub fn emit_json(&mut self, v: &impl Serialize) -> Result<()> {
        self.json(v)
    }

    /// Prints human output as it is.
    pub fn text(&mut self, s: &str) -> Result<()> {
        self.stdout.write_all(s.as_bytes())?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.stdout.flush()?;
        Ok(())
    }

    fn json(&mut self, v: &impl Serialize) -> Result<()> {
        if let Some(c) = &mut self.collected {
            c.push((self.host.clone(), serde_json::to_value(v)?));
            return Ok(());
        }
        serde_json::to_writer(&mut self.stdout, v)?;
        writeln!(self.stdout)?;
        Ok(())
    }

    pub fn push(&mut self, r: &PushReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        for s in &r.skipped {
            writeln!(io::stderr(), "relstore: skipped {s}")?;
        }
        let verb = if r.dry_run { "would seed" } else { "seeded" };
        for s in &r.shared_seeded {
            writeln!(io::stderr(), "relstore: {verb} shared path {s}")?;
        }
        if r.unchanged {
            writeln!(
                self.stdout,
                "{}: unchanged ({} files, {}); the tree equals the current release, nothing pushed; {:.1} s",
                r.release,
                thousands(r.files_total),
                human_bytes(r.bytes_total),
                r.seconds
            )?;
            return Ok(());
        }
        let pct = if r.bytes_total > 0 {
            100.0 * r.bytes_uploaded as f64 / r.bytes_total as f64
        } else {
            0.0
        };
        // A plan reads like the run, in the conditional.
        let (head, upload, link, tail) = if r.dry_run {
            (
                format!("plan for {}", r.release),
                "would upload",
                "would link",
                "nothing changed".to_owned(),
            )
        } else {
            (
                r.release.clone(),
                "uploaded",
                "linked",
                format!("{:.1} s", r.seconds),
            )
        };
        writeln!(
            self.stdout,
            "{head}: {} files ({}); {upload} {} objects ({}, {pct:.1}%); {link} {}; {tail}",
            thousands(r.files_total),
            human_bytes(r.bytes_total),
            thousands(r.objects_uploaded),
            human_bytes(r.bytes_uploaded),
            thousands(r.links),
        )?;
        if r.dry_run {
            if r.staged {
                writeln!(
                    self.stdout,
                    "would stage {} (next); current unchanged",
                    r.release
                )?;
            }
            return Ok(());
        }
        self.hooks(&r.hooks)?;
        if r.staged {
            writeln!(
                self.stdout,
                "staged {}: next -> releases/{}; current unchanged ({})",
                r.release,
                r.release,
                r.previous.as_deref().unwrap_or("none")
            )?;
        }
        if r.reverted {
            writeln!(
                self.stdout,
                "reverted: current -> {} again",
                r.previous.as_deref().unwrap_or("(none)")
            )?;
        }
        if let Some(p) = &r.pruned {
            if !p.plan.evict.is_empty() || !p.plan.objects.is_empty() {
                writeln!(
                    self.stdout,
                    "pruned: evicted {}; removed {} objects ({})",
                    if p.plan.evict.is_empty() {
                        "no release".to_owned()
                    } else {
                        p.plan.evict.join(", ")
                    },
                    thousands(p.plan.objects.len() as u64),
                    human_bytes(p.plan.bytes_freed)
                )?;
            }
            for left in &p.left_behind {
                writeln!(io::stderr(), "relstore: could not delete {left}")?;
            }
        }
        Ok(())
    }

    pub fn releases(&mut self, c: &Catalog) -> Result<()> {
        if self.json {
            return self.json(c);
        }
        if c.releases.is_empty() {
            writeln!(self.stdout, "no releases")?;
        } else {
            writeln!(
                self.stdout,
                "  {:<24} {:<21} {:>11} {:>10}  STATE",
                "NAME", "CREATED", "FILES", "BYTES"
            )?;
        }
        for r in c.releases.iter().rev() {
            let (created, files, bytes) = match &r.header {
                Some(h) => (
                    format_utc(h.created_unix_ns),
                    thousands(h.totals.files),
                    human_bytes(h.totals.bytes),
                ),
                None => ("?".into(), "?".into(), "?".into()),
            };
            let mut state = match (r.current, r.present) {
                (true, _) => "current",
                (false, true) => "present",
                (false, false) => "evicted",
            }
            .to_owned();
            if r.staged {
                state.push_str(", staged (next)");
            }
            if r.pinned {
                state.push_str(", pinned");
            }
            writeln!(
                self.stdout,
                "{} {:<24} {:<21} {:>11} {:>10}  {state}{}",
                match (r.current, r.staged) {
                    (true, _) => '*',
                    (false, true) => '>',
                    _ => ' ',
                },
                r.name.as_str(),
                created,
                files,
                bytes,
                r.problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            )?;
        }
        for d in &c.incomplete {
            writeln!(
                self.stdout,
                "  {d:<24} (no manifest: removed by the next push if an interrupted push left it, else kept)"
            )?;
        }
        Ok(())
    }

    pub fn prune(&mut self, r: &PruneReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        for left in &r.left_behind {
            writeln!(io::stderr(), "relstore: could not delete {left}")?;
        }
        let verb = if r.applied { "evicted" } else { "would evict" };
        let evicted = if r.plan.evict.is_empty() {
            "no release".to_owned()
        } else {
            r.plan.evict.join(", ")
        };
        writeln!(
            self.stdout,
            "{verb} {evicted}; {} {} objects ({}); kept {}",
            if r.applied { "removed" } else { "would remove" },
            thousands(r.plan.objects.len() as u64),
            human_bytes(r.plan.bytes_freed),
            if r.plan.keep.is_empty() {
                "nothing".to_owned()
            } else {
                r.plan.keep.join(", ")
            }
        )?;
        Ok(())
    }

    pub fn verify(&mut self, r: &relstore_engine::verify::VerifyReport) -> Result<()> {
        if self.json {
            return self.json(&serde_json::to_value(r)?);
        }
        for p in &r.repaired {
            writeln!(self.stdout, "repaired: {}", p.line())?;
        }
        for p in &r.unrepairable {
            writeln!(self.stdout, "not repaired: {}", p.line())?;
        }
        for p in &r.problems {
            writeln!(self.stdout, "{}", p.line())?;
        }
        if !r.releases_evicted.is_empty() {
            writeln!(
                self.stdout,
                "evicted, not checked: {}",
                r.releases_evicted.join(", ")
            )?;
        }
        let n = r.problems.len();
        writeln!(
            self.stdout,
            "checked {} objects ({}) and {} release{}: {} problem{}{}",
            thousands(r.objects_checked),
            human_bytes(r.bytes_checked),
            r.releases_checked.len(),
            if r.releases_checked.len() == 1 {
                ""
            } else {
                "s"
            },
            n,
            if n == 1 { "" } else { "s" },
            if r.repair {
                format!(" left, {} repaired", r.repaired.len())
            } else {
                String::new()
            }
        )?;
        Ok(())
    }

    /// One line per hook that ran.
    fn hooks(&mut self, hooks: &[relstore_engine::hooks::HookReport]) -> Result<()> {
        for h in hooks {
            match h.failure() {
                Some(why) => writeln!(self.stdout, "{why} ({:.1} s)", h.seconds)?,
                None => writeln!(
                    self.stdout,
                    "hook {} on {}: ok ({:.1} s)",
                    h.name, h.host, h.seconds
                )?,
            }
        }
        Ok(())
    }

    pub fn activate(&mut self, r: &relstore_engine::activate::ActivateReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        let from = r.previous.as_deref().unwrap_or("(none)");
        if r.already_current {
            writeln!(
                self.stdout,
                "{} is already current; nothing changed",
                r.release
            )?;
        } else if r.dry_run {
            writeln!(
                self.stdout,
                "plan: current {from} -> {}; nothing changed",
                r.release
            )?;
        } else {
            self.hooks(&r.hooks)?;
            if r.activated {
                writeln!(self.stdout, "current: {from} -> {}", r.release)?;
            } else if r.reverted {
                writeln!(self.stdout, "reverted: current -> {from} again")?;
            } else {
                writeln!(
                    self.stdout,
                    "{} stays staged (next); current unchanged ({from})",
                    r.release
                )?;
            }
        }
        Ok(())
    }

    pub fn pin(&mut self, release: &str, pinned: bool) -> Result<()> {
        if self.json {
            return self.json(&json!({ "release": release, "pinned": pinned }));
        }
        writeln!(
            self.stdout,
            "{release} {}",
            if pinned { "pinned" } else { "unpinned" }
        )?;
        Ok(())
    }

    pub fn rollback(&mut self, r: &RollbackReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        if r.already_current {
            writeln!(self.stdout, "{} is already current; nothing changed", r.to)?;
        } else if r.dry_run {
            writeln!(
                self.stdout,
                "plan: current {} -> {}{}; nothing changed",
                r.from.as_deref().unwrap_or("(none)"),
                r.to,
                if r.reassembled {
                    format!(
                        " (re-assembled; would upload {} objects ({}){})",
                        thousands(r.objects_uploaded),
                        human_bytes(r.bytes_uploaded),
                        if r.uploaded_from.is_empty() {
                            String::new()
                        } else {
                            format!(" from {}", r.uploaded_from.join(", "))
                        }
                    )
                } else {
                    String::new()
                }
            )?;
        } else {
            self.hooks(&r.hooks)?;
            writeln!(
                self.stdout,
                "current: {} -> {}{}",
                r.from.as_deref().unwrap_or("(none)"),
                r.to,
                if r.reassembled { " (re-assembled)" } else { "" }
            )?;
            if r.objects_uploaded > 0 {
                writeln!(
                    self.stdout,
                    "uploaded {} objects ({}) from {}",
                    thousands(r.objects_uploaded),
                    human_bytes(r.bytes_uploaded),
                    r.uploaded_from.join(", ")
                )?;
            }
        }
        Ok(())
    }

    /// `relstore bench`: one row per step, relstore and rsync side by side.
    pub fn bench(&mut self, r: &relstore_engine::bench::BenchReport) -> Result<()> {
        if self.json {
            return self.json(r);
        }
        let first = r.steps.first();
        writeln!(
            self.stdout,
            "relstore bench: {} ({} files, {}) -> {}; {}",
            r.tree,
            thousands(first.map_or(0, |s| s.files)),
            human_bytes(first.map_or(0, |s| s.bytes)),
            r.target,
            if r.runs > 1 {
                format!("medians of {} runs", r.runs)
            } else {
                "1 run".to_owned()
            }
        )?;
        writeln!(
            self.stdout,
            "{:<17} {:>9} {:>10} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>10} {:>6}",
            "step", "uploaded", "bytes", "savings", "scan", "hash", "compare", "upload", "assemble", "swap", "total", "rsync", "rsync sent", "ratio"
        )?;
        for s in &r.steps {
            writeln!(
                self.stdout,
                "{:<17} {:>9} {:>10} {:>7.1}% {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8} {:>10} {:>6}",
                s.name,
                thousands(s.objects_uploaded),
                human_bytes(s.bytes_uploaded),
                100.0 * s.savings(),
                s.phases.scan,
                s.phases.hash,
                s.phases.compare,
                s.phases.upload,
                s.phases.assemble,
                s.phases.swap,
                s.seconds,
                s.rsync_seconds.map_or("-".to_owned(), |t| format!("{t:.2}")),
                s.rsync_bytes_sent.map_or("-".to_owned(), human_bytes),
                s.ratio().map_or("-".to_owned(), |x| format!("{x:.2}x")),
            )?;
        }
        writeln!(
            self.stdout,
            "times in seconds; savings: bytes not uploaded against a full upload; ratio: rsync time / relstore time (above 1: relstore faster)"
        )?;
        if let Some(note) = &r.rsync_note {
            writeln!(self.stdout, "rsync: {note}")?;
        }
        Ok(())
    }

    /// `relstore store info`.
    pub fn store_usage(&mut self, u: &relstore_engine::release_store::StoreUsage) -> Result<()> {
        if self.json {
            return self.json(u);
        }
        if u.exists {
            writeln!(
                self.stdout,
                "{}: {} blobs ({} compressed), {} on disk",
                u.root.display(),
                thousands(u.blobs),
                human_bytes(u.bytes),
                human_bytes(u.disk_bytes)
            )?;
        } else {
            writeln!(
                self.stdout,
                "{}: no local release store yet",
                u.root.display()
            )?;
        }
        Ok(())
    }

    /// `relstore store prune`.
    pub fn store_prune(
        &mut self,
        root: &std::path::Path,
        s: &relstore_engine::release_store::PruneStats,
        dry_run: bool,
    ) -> Result<()> {
        if self.json {
            return self.json(&serde_json::json!({
                "root": root.display().to_string(), "dry_run": dry_run,
                "manifests_removed": s.manifests_removed, "blobs_removed": s.blobs_removed,
                "bytes_freed": s.bytes_freed, "blobs_kept": s.blobs_kept, "bytes_kept": s.bytes_kept,
            }));
        }
        writeln!(
            self.stdout,
            "{}{}: {} {} releases, {} blobs ({}); {} blobs ({}) kept",
            if dry_run { "would prune " } else { "pruned " },
            root.display(),
            if dry_run { "would forget" } else { "forgot" },
            thousands(s.manifests_removed),
            thousands(s.blobs_removed),
            human_bytes(s.bytes_freed),
            thousands(s.blobs_kept),
            human_bytes(s.bytes_kept)
        )?;
        Ok(())
    }

    pub fn diff(&mut self, d: &Diff) -> Result<()> {
        if self.json {
            return self.json(&d.to_json());
        }
        let w = &mut self.stdout;
        for e in &d.added {
            writeln!(w, "+ {} ({})", escape(&e.path), e.kind.name())?;
        }
        for e in &d.removed {
            writeln!(w, "- {} ({})", escape(&e.path), e.kind.name())?;
        }
        for m in &d.modified {
            let what: Vec<String> = m
                .aspects
                .iter()
                .map(|a| match a {
                    Aspect::Type => format!("type {} -> {}", m.old.kind.name(), m.new.kind.name()),
                    Aspect::Content => "content".into(),
                    Aspect::Mode => match (&m.old.kind, &m.new.kind) {
                        (
                            relstore_core::EntryKind::File { mode: a, .. }
                            | relstore_core::EntryKind::Dir { mode: a },
                            relstore_core::EntryKind::File { mode: b, .. }
                            | relstore_core::EntryKind::Dir { mode: b },
                        ) => format!("mode {a:04o} -> {b:04o}"),
                        _ => "mode".into(),
                    },
                    Aspect::Target => match (&m.old.kind, &m.new.kind) {
                        (
                            relstore_core::EntryKind::Symlink { target: a },
                            relstore_core::EntryKind::Symlink { target: b },
                        ) => format!("target {} -> {}", escape(a), escape(b)),
                        _ => "target".into(),
                    },
                })
                .collect();
            writeln!(w, "M {} ({})", escape(&m.new.path), what.join(", "))?;
        }
        for r in &d.renamed {
            writeln!(
                w,
                "R {} -> {}{}",
                escape(&r.old.path),
                escape(&r.new.path),
                if r.mode_changed {
                    " (mode changed)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            w,
            "{} added, {} removed, {} modified, {} renamed",
            d.added.len(),
            d.removed.len(),
            d.modified.len(),
            d.renamed.len()
        )?;
        Ok(())
    }
}
