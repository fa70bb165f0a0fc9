//! Turning the TARGET argument into a [`Target`].
//!
//! rsync's rule: a colon before the first slash makes a remote target
//! (`[user@]host:path`); `ssh://` URLs are remote too; anything else is a local path.
//! Remote targets are SFTP targets ([`relstore_ssh::SftpTarget`]); how to reach them
//! (keys, known_hosts, ssh config) comes from [`RemoteOptions`], which the CLI fills
//! from its flags on top of [`RemoteOptions::from_env`].
//!
//! This is the one place that knows every kind of target, so that the engine (written
//! against the [`Target`] trait) links neither the local nor the SSH implementation.

mod serve;

use std::path::PathBuf;
use std::sync::Arc;

use relstore_core::{Target, TargetError};
use relstore_local::LocalTarget;

pub use relstore_ssh::RemoteOptions;
pub use serve::{serve_stdio, ServeError};

/// Makes `dir` (the user's `--cache-dir`) the client's cache directory for this
/// process, so that what a helper connection caches (manifests, see
/// [`relstore_helper::manifest_cache`]) lives beside the stat cache there.
pub fn use_cache_dir(dir: PathBuf) {
    relstore_helper::manifest_cache::use_cache_dir(dir);
}

/// Whether `spec` names a remote (SSH) target.
pub fn is_remote(spec: &str) -> bool {
    if spec.starts_with("ssh://") {
        return true;
    }
    match (spec.find(':'), spec.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The host a TARGET string names (what `{host}` stands for in a fleet's
/// `--check-url`): the SSH host as written (an ssh config alias stays the alias), or
/// `localhost` for a local path.
pub fn host_of(spec: &str) -> String {
    if !is_remote(spec) {
        return "localhost".to_owned();
    }
    relstore_ssh::spec::RemoteSpec::parse(spec).map_or_else(|_| spec.to_owned(), |r| r.host)
}

/// Builds the target named by `spec`. A remote one is connected here (host key
/// checked, authenticated with `remote`'s settings), so connection problems surface
/// before any work starts; nothing on the target is changed yet.
pub fn open_target(spec: &str, remote: &RemoteOptions) -> Result<Arc<dyn Target>, TargetError> {
    if spec.is_empty() {
        return Err(TargetError::Other("empty target".into()));
    }
    open_target_noted(spec, remote, Arc::new(|_: &str| {}))
}

/// Like [`open_target`]; a remote target runs a relstore helper on the server as
/// `remote.helper` says, and tells `note` on the command's first open of the store
/// which helper it uses or why none (see [`relstore_ssh::helper`]).
pub fn open_target_noted(
    spec: &str,
    remote: &RemoteOptions,
    note: relstore_ssh::helper::NoteSink,
) -> Result<Arc<dyn Target>, TargetError> {
    if spec.is_empty() {
        return Err(TargetError::Other("empty target".into()));
    }
    if is_remote(spec) {
        return relstore_ssh::connect_for_command(spec, remote, note);
    }
    Ok(Arc::new(LocalTarget::new(PathBuf::from(spec))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_rule_decides_remote() {
        assert!(is_remote("web1:/srv/www"));
        assert!(is_remote("deploy@web1:site"));
        assert!(is_remote("ssh://deploy@web1:2222/srv"));
        assert!(!is_remote("/srv/www/site"));
        assert!(!is_remote("./a:b"));
        assert!(!is_remote("out"));
    }

    #[test]
    fn host_of_names_the_ssh_host() {
        assert_eq!(host_of("web1:/srv/site"), "web1");
        assert_eq!(host_of("deploy@web2:site"), "web2");
        assert_eq!(host_of("ssh://u@10.0.0.3:2222/srv"), "10.0.0.3");
        assert_eq!(host_of("/srv/site"), "localhost");
    }

    #[test]
    fn empty_spec_is_refused() {
        let err = open_target("", &RemoteOptions::default()).err();
        assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("empty target"));
    }

    #[test]
    fn a_path_opens_a_local_target() {
        let t = open_target("some/dir", &RemoteOptions::default());
        assert!(t.is_ok_and(|t| t.local_root().is_some()));
    }
}
