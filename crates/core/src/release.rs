//! Release names and the clock they are drawn from.
//!
//! A release name becomes a directory name under `releases/` and a file name under
//! `manifests/`, on the client's say-so or from a manifest read off a target; it is
//! validated wherever it enters so that `../x` or `a/b` can never reach a path join.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest release name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// Why a release name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("release name is empty")]
    Empty,
    #[error("release name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("release name {0:?} may only contain A-Z a-z 0-9 . _ -")]
    BadChar(String),
    #[error("release name {0:?} may not start with '.' or '-'")]
    BadStart(String),
    /// `current` names the live release wherever a release is named (`TARGET@current`,
    /// `rollback TARGET current`, `verify TARGET current`), so no release may take it.
    #[error("release name {0:?} is reserved: `current` always means the current release (as in TARGET@current)")]
    Reserved(String),
}

/// Names no new release may take: each already means something wherever a release is
/// named.
pub const RESERVED_NAMES: [&str; 1] = [crate::layout::CURRENT];

/// Checks the name of a release about to be created: [`validate_name`], and not one of
/// [`RESERVED_NAMES`]. Names read from a store are checked with [`validate_name`] only,
/// so a store made before `current` was reserved stays readable.
pub fn validate_new_name(name: &str) -> Result<(), NameError> {
    validate_name(name)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Checks a release name: `[A-Za-z0-9._-]`, 1..=100 characters, no leading `.` or `-`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.chars().take(40).collect()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(NameError::BadChar(name.to_owned()));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(NameError::BadStart(name.to_owned()));
    }
    Ok(())
}

/// A validated release name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseName(String);

impl ReleaseName {
    /// Validates and wraps a name.
    pub fn parse(name: &str) -> Result<ReleaseName, NameError> {
        validate_name(name)?;
        Ok(ReleaseName(name.to_owned()))
    }

    /// Validates the name of a release about to be created (see [`validate_new_name`]).
    pub fn parse_new(name: &str) -> Result<ReleaseName, NameError> {
        validate_new_name(name)?;
        Ok(ReleaseName(name.to_owned()))
    }

    /// Whether this is a reserved name (a release of a store made before it was
    /// reserved): commands can no longer name it, since the name means something else.
    pub fn is_reserved(&self) -> bool {
        RESERVED_NAMES.contains(&self.0.as_str())
    }

    /// The default name for a push at `unix_ns`: a sortable UTC timestamp such as
    /// `20261122T053012Z`. Callers add a suffix when two pushes share a second.
    pub fn timestamp(unix_ns: i64) -> ReleaseName {
        let (y, mo, d, h, mi, s) = civil_from_unix(unix_ns.div_euclid(1_000_000_000));
        ReleaseName(format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Formats a Unix time as `2026-11-22 05:30:12Z` for people.
pub fn format_utc(unix_ns: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_ns.div_euclid(1_000_000_000));
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// Splits Unix seconds into a proleptic Gregorian UTC date and time
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-flag",
            "sp ace",
            "é",
            &"a".repeat(101),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["r1", "v1.2.3", "2026-11-22_build-7", "A.b_c-d"] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn current_is_reserved_for_new_releases_but_readable() {
        assert_eq!(
            validate_new_name("current"),
            Err(NameError::Reserved("current".into()))
        );
        assert!(validate_new_name("current-2").is_ok());
        assert!(ReleaseName::parse("current").is_ok_and(|n| n.is_reserved()));
        assert!(ReleaseName::parse_new("current").is_err());
    }

    #[test]
    fn timestamps_are_utc_and_sortable() {
        assert_eq!(ReleaseName::timestamp(0).as_str(), "19700101T000000Z");
        // 2026-11-22 05:30:12 UTC
        let t = 1_795_325_412 * 1_000_000_000;
        assert_eq!(ReleaseName::timestamp(t).as_str(), "20261122T053012Z");
        assert_eq!(format_utc(t), "2026-11-22 05:30:12Z");
        assert!(ReleaseName::timestamp(t) < ReleaseName::timestamp(t + 1_000_000_000));
    }
}
