//! What [`crate::Target::open`] does with what it finds at a store root.
//!
//! Every target probes its root the same way — the root itself, then `relstore.toml`
//! in it, then (only without one) whether the directory is empty — and reports the
//! outcome as a [`RootFound`]. [`decide_open`] turns that into an [`OpenAction`] or a
//! refusal, so both targets accept and refuse exactly the same roots with the same
//! messages.

use crate::layout;
use crate::target::{TargetError, TargetResult};

/// What a target found at its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootFound {
    /// Nothing exists at the path.
    Missing,
    /// Something that is not a directory (a file, a device) is there.
    NotADirectory,
    /// A symlink to a path that does not exist (`points_at`, as messages show it):
    /// creating the root would fail on the link, and following it would create a
    /// store wherever it points.
    DanglingSymlink { points_at: String },
    /// A directory holding `relstore.toml`, with the marker's contents.
    Marked { config: Vec<u8> },
    /// An empty directory.
    EmptyDir,
    /// A directory with entries but no `relstore.toml`: someone else's data.
    Unmarked,
}

/// What the target does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenAction {
    /// Create the root directory (and its missing parents), then lay out a fresh store.
    CreateRoot,
    /// Lay out a fresh store in the existing empty root: the marker first (a directory
    /// holding it is recognisably ours even if the layout is interrupted), then
    /// [`layout::DIRS`].
    Layout,
    /// A store of this format is there. With `complete`, create any of
    /// [`layout::DIRS`] that are missing; without, check [`layout::REQUIRED_DIRS`]
    /// (see [`missing_dir`]).
    Existing { complete: bool },
}

/// Decides what `open(create)` does at a root found as `found`. `location` names the
/// target and `config` shows the marker's path, both for messages.
pub fn decide_open(
    found: &RootFound,
    create: bool,
    location: &str,
    config: &str,
) -> TargetResult<OpenAction> {
    let not_a_store = |reason: String| TargetError::NotAStore {
        location: location.to_string(),
        reason,
    };
    let no_store = |reason: &str| TargetError::NoStore {
        location: location.to_string(),
        reason: reason.to_string(),
    };
    match found {
        RootFound::Missing if create => Ok(OpenAction::CreateRoot),
        RootFound::Missing => Err(no_store("no relstore store here (the path does not exist)")),
        RootFound::NotADirectory => Err(not_a_store("is a file, not a directory".into())),
        RootFound::DanglingSymlink { points_at } => Err(not_a_store(format!(
            "is a symlink to {points_at}, which does not exist; create that directory or \
             give another path"
        ))),
        RootFound::Marked { config: text } => {
            match layout::parse_config_format(&String::from_utf8_lossy(text)) {
                Some(layout::STORE_FORMAT) => Ok(OpenAction::Existing { complete: create }),
                Some(other) => Err(not_a_store(format!(
                    "store format {other} is not supported by this relstore (supports {})",
                    layout::STORE_FORMAT
                ))),
                None => Err(not_a_store(format!("{config} is malformed"))),
            }
        }
        // Only a command that would create the store speaks of writing: `releases`,
        // `diff` and `verify` only read.
        RootFound::Unmarked if create => Err(not_a_store(
            "is not empty and not a relstore store (no relstore.toml); refusing to write into it"
                .into(),
        )),
        RootFound::Unmarked => Err(not_a_store(
            "is not empty and not a relstore store (no relstore.toml)".into(),
        )),
        RootFound::EmptyDir if create => Ok(OpenAction::Layout),
        RootFound::EmptyDir => Err(no_store("no relstore store here (empty directory)")),
    }
}

/// The refusal for an existing store that lacks one of [`layout::REQUIRED_DIRS`].
pub fn missing_dir(location: &str, dir: &str) -> TargetError {
    TargetError::NotAStore {
        location: location.to_string(),
        reason: format!("store is missing its {dir}/ directory"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decide(found: RootFound, create: bool) -> Result<OpenAction, String> {
        decide_open(&found, create, "/srv/site", "/srv/site/relstore.toml").map_err(|e| {
            let kind = match e {
                TargetError::NoStore { .. } => "no store",
                TargetError::NotAStore { .. } => "not a store",
                _ => "other",
            };
            format!("{kind}: {e}")
        })
    }

    fn marked(text: &str) -> RootFound {
        RootFound::Marked {
            config: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn missing_and_empty_roots_are_created_only_when_asked() {
        assert_eq!(decide(RootFound::Missing, true), Ok(OpenAction::CreateRoot));
        assert_eq!(
            decide(RootFound::Missing, false),
            Err("no store: /srv/site: no relstore store here (the path does not exist)".into())
        );
        assert_eq!(decide(RootFound::EmptyDir, true), Ok(OpenAction::Layout));
        assert_eq!(
            decide(RootFound::EmptyDir, false),
            Err("no store: /srv/site: no relstore store here (empty directory)".into())
        );
    }

    #[test]
    fn stores_open_and_complete_their_layout_only_when_creating() {
        let ok = marked(&layout::config_contents());
        assert_eq!(
            decide(ok.clone(), true),
            Ok(OpenAction::Existing { complete: true })
        );
        assert_eq!(
            decide(ok, false),
            Ok(OpenAction::Existing { complete: false })
        );
    }

    #[test]
    fn foreign_roots_are_refused_either_way() {
        for create in [true, false] {
            let dangling = RootFound::DanglingSymlink {
                points_at: "/gone".into(),
            };
            assert_eq!(
                decide(dangling, create),
                Err(
                    "not a store: /srv/site: is a symlink to /gone, which does not exist; \
                     create that directory or give another path"
                        .into()
                )
            );
            assert_eq!(
                decide(RootFound::NotADirectory, create),
                Err("not a store: /srv/site: is a file, not a directory".into())
            );
            let unmarked = decide(RootFound::Unmarked, create).unwrap_err();
            assert!(unmarked.starts_with("not a store: "), "{unmarked}");
            assert_eq!(
                unmarked.contains("writ"),
                create,
                "only a creating open speaks of writing: {unmarked}"
            );
            assert_eq!(
                decide(marked("format = 7\n"), create),
                Err(format!(
                    "not a store: /srv/site: store format 7 is not supported by this relstore \
                     (supports {})",
                    layout::STORE_FORMAT
                ))
            );
            assert_eq!(
                decide(marked("garbage"), create),
                Err("not a store: /srv/site: /srv/site/relstore.toml is malformed".into())
            );
        }
    }

    #[test]
    fn a_marker_that_is_not_utf8_is_malformed_not_an_error_of_reading() {
        let found = RootFound::Marked {
            config: vec![0xff, 0xfe],
        };
        assert!(decide(found, true).is_err_and(|e| e.ends_with("is malformed")));
    }

    #[test]
    fn missing_layout_dirs_are_named() {
        assert_eq!(
            missing_dir("/srv/site", layout::TMP).to_string(),
            "/srv/site: store is missing its tmp/ directory"
        );
    }
}
