//! The file as written: serde structs that mirror the TOML one to one, with spans kept
//! where a later check needs to point at a line. Every table denies unknown keys, so a
//! typo (`kepp = 3`) is an error, never silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::resolve::Helper;

/// The top level of `relstore.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    pub source: Option<Spanned<String>>,
    pub keep: Option<usize>,
    pub exclude: Option<Vec<Spanned<String>>>,
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: BTreeMap<Spanned<String>, RawTarget>,
    pub shared: Option<RawShared>,
    pub hooks: Option<RawHooks>,
    pub hook_timeout: Option<Spanned<String>>,
    pub revert_on_hook_failure: Option<bool>,
    pub helper: Option<Helper>,
}

/// Only the `format` key, read before the strict parse: a store root's marker
/// (`format = N`) must be refused as what it is, not as an unknown key.
#[derive(Debug, Deserialize)]
struct FormatProbe {
    format: Option<Spanned<toml::Value>>,
}

/// `[targets.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub source: Option<Spanned<String>>,
    pub keep: Option<usize>,
    pub exclude: Option<Vec<Spanned<String>>>,
}

/// `[shared]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShared {
    pub paths: Vec<Spanned<String>>,
}

/// `[hooks]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    pub before_activate: Option<Spanned<String>>,
    pub after_activate: Option<Spanned<String>>,
    pub after_rollback: Option<Spanned<String>>,
}

/// The text of a project file, for turning byte offsets into line numbers and keys.
pub(crate) struct Source<'a> {
    pub path: String,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    /// An error at `offset` saying `message`.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> crate::ProjectError {
        crate::ProjectError::At {
            path: self.path.clone(),
            line: self.line(offset),
            message: message.into(),
        }
    }

    /// The key that the line of `offset` (or the nearest line above it that starts a
    /// key or a table) sets: what a serde message about a value's type leaves out.
    fn key_near(&self, offset: usize) -> Option<String> {
        let line = self.line(offset);
        let lines: Vec<&str> = self.text.lines().take(line).collect();
        lines.iter().rev().find_map(|l| {
            let t = l.trim_start();
            if let Some(table) = t.strip_prefix('[') {
                let name = table.trim_start_matches('[').split(']').next()?;
                return Some(format!("[{}]", name.trim()));
            }
            let (key, _) = t.split_once('=')?;
            let key = key.trim();
            let plain = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c));
            plain.then(|| key.to_owned())
        })
    }

    /// A TOML syntax or type error as one line: the file, the line, the key, toml's
    /// message (whose own rendering spans several lines with a caret drawing).
    pub fn toml_error(&self, e: &toml::de::Error) -> crate::ProjectError {
        let message = e.message().trim().replace('\n', " ");
        let Some(span) = e.span() else {
            return crate::ProjectError::File {
                path: self.path.clone(),
                message,
            };
        };
        let message = match self.key_near(span.start) {
            Some(key) if !message.contains(&format!("`{key}`")) => format!("{key}: {message}"),
            _ => message,
        };
        self.error_at(span.start, message)
    }
}

/// Parses `src` into the raw structs.
pub(crate) fn parse(src: &Source<'_>) -> Result<RawProject, crate::ProjectError> {
    if let Ok(FormatProbe { format: Some(f) }) = toml::from_str(src.text) {
        return Err(src.error_at(
            f.span().start,
            "format: a project file has no `format` key; this looks like the format \
             marker of a store root (ROOT/relstore.toml), not a project file",
        ));
    }
    toml::from_str(src.text).map_err(|e| src.toml_error(&e))
}
