//! The on-target layout of a store root, shared by every target.
//!
//! ```text
//! ROOT/current -> releases/NAME   replaced only by rename(2)
//! ROOT/next -> releases/NAME      a staged release (assembled, not yet current)
//! ROOT/releases/NAME/…            assembled trees, regular files hardlinked from objects/
//! ROOT/objects/ab/cdef…+0444      blobs named by content hash and stored mode
//! ROOT/manifests/NAME.manifest    one per release that ever became current
//! ROOT/tmp/                       uploads, partial releases, staged manifests
//! ROOT/lock                       held by mutating commands
//! ROOT/pins/NAME                  pinned releases (never evicted)
//! ROOT/relstore.toml              format version of this root
//! ROOT/shared/PATH                persistent data linked into releases (see `shared`)
//! ```
//!
//! A release exists once its manifest is in `manifests/`. A push stages the manifest in
//! `tmp/` and moves it into `manifests/` right after the swap made the release current,
//! so a push that died before its swap never counts as a release (it leaves at most
//! debris that the next mutating command removes).

use crate::release::ReleaseName;

/// The symlink a web server serves.
pub const CURRENT: &str = "current";
/// The symlink to a staged release (assembled, not current), for a preview host; only
/// ever replaced by rename(2), like `current`.
pub const NEXT: &str = "next";
/// Directory of assembled releases.
pub const RELEASES: &str = "releases";
/// Directory of content-addressed blobs.
pub const OBJECTS: &str = "objects";
/// Directory of release manifests.
pub const MANIFESTS: &str = "manifests";
/// Work area: never served, emptied by every mutating command once it holds the lock.
pub const TMP: &str = "tmp";
/// Directory of pin markers: `pins/NAME` (empty file) keeps release NAME from eviction.
pub const PINS: &str = "pins";
/// Persistent data linked into every release (see [`crate::shared`]): never in
/// objects, never pruned, created on the first push that needs it.
pub const SHARED: &str = "shared";
/// The lock file.
pub const LOCK: &str = "lock";
/// The second-level lock held while breaking `lock` (see [`LockFile::Breaker`]).
pub const BREAK_LOCK: &str = "lock.break";

/// The lock files of a store root. Both are created exclusively (link(2) of a complete
/// private file) and hold a [`crate::lock::LockInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LockFile {
    /// `lock`: held by every mutating command for its whole run.
    Store,
    /// `lock.break`: held for the few operations of breaking a stale `lock`. Without it
    /// two processes that found the same stale lock race: the slower one would remove
    /// the live lock that a third process took after the faster one broke the stale
    /// one, and two commands would then run at once.
    Breaker,
}

impl LockFile {
    /// The file's name in the store root.
    pub fn file_name(self) -> &'static str {
        match self {
            LockFile::Store => LOCK,
            LockFile::Breaker => BREAK_LOCK,
        }
    }
}
/// The store's format marker.
pub const CONFIG: &str = "relstore.toml";
/// Version of this layout; a root with another version is refused.
pub const STORE_FORMAT: u32 = 1;
/// File name suffix of manifests.
pub const MANIFEST_SUFFIX: &str = ".manifest";
/// The directories a fresh layout gets (and `open(create)` completes).
pub const DIRS: [&str; 5] = [RELEASES, OBJECTS, MANIFESTS, TMP, PINS];
/// The directories an existing store must have to be opened read-only: `pins/` is
/// made on first use, so a store may lack it.
pub const REQUIRED_DIRS: [&str; 4] = [RELEASES, OBJECTS, MANIFESTS, TMP];

/// The names a target lists in one of its directories, as relstore uses them: UTF-8
/// only (every name relstore creates is), with `suffix` stripped and required when
/// given, sorted. Shared by every target so they list alike.
pub fn listed_names(names: impl IntoIterator<Item = Vec<u8>>, suffix: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .filter_map(|n| String::from_utf8(n).ok())
        .filter_map(|name| match suffix {
            Some(s) => name.strip_suffix(s).map(str::to_owned),
            None => Some(name),
        })
        .collect();
    out.sort();
    out
}

/// Content of a fresh `relstore.toml`.
pub fn config_contents() -> String {
    format!(
        "# relstore store root: see https://example.invalid/relstore\nformat = {STORE_FORMAT}\n"
    )
}

/// Reads the `format = N` line of `relstore.toml`; `None` when absent or malformed.
pub fn parse_config_format(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        if k.trim() == "format" {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// `releases/NAME`
pub fn release_dir(name: &ReleaseName) -> String {
    format!("{RELEASES}/{name}")
}

/// `manifests/NAME.manifest`
pub fn manifest_file(name: &ReleaseName) -> String {
    format!("{MANIFESTS}/{name}{MANIFEST_SUFFIX}")
}

/// `tmp/NAME.manifest`: a manifest written before the swap, moved into `manifests/`
/// right after it.
pub fn staged_manifest_file(name: &ReleaseName) -> String {
    format!("{TMP}/{name}{MANIFEST_SUFFIX}")
}

/// `tmp/NAME.partial`: where a release is assembled before it is renamed into place.
pub fn partial_dir(name: &ReleaseName) -> String {
    format!("{TMP}/{name}.partial")
}

/// What `current` points at for a release: relative, so the root can be moved.
pub fn current_link_target(name: &ReleaseName) -> String {
    release_dir(name)
}

/// Extracts the release name from the target of `current`; `None` when the link
/// points anywhere else.
pub fn release_from_link_target(target: &[u8]) -> Option<ReleaseName> {
    let s = std::str::from_utf8(target).ok()?;
    let s = s.strip_prefix("./").unwrap_or(s);
    let name = s.strip_prefix(RELEASES)?.strip_prefix('/')?;
    let name = name.strip_suffix('/').unwrap_or(name);
    ReleaseName::parse(name).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn current_target_round_trips() {
        let n = ReleaseName::parse("v1").unwrap();
        assert_eq!(
            release_from_link_target(current_link_target(&n).as_bytes()),
            Some(n)
        );
        assert_eq!(release_from_link_target(b"/etc"), None);
        assert_eq!(release_from_link_target(b"releases/../x"), None);
    }

    #[test]
    fn config_format_parses() {
        assert_eq!(parse_config_format(&config_contents()), Some(STORE_FORMAT));
        assert_eq!(parse_config_format("nothing"), None);
    }
}
