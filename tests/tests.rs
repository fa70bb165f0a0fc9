//! Integration tests: the real `relstore` binary against real directories, with real
//! kills of real processes. Each test builds its own trees under a temp directory.
//!
//! Tests that exercise a store are written once against [`util::Env`], which names a
//! target kind; every kind runs the same conformance cases (`conformance!` below):
//! `MODULE::local::NAME` against a local path, `MODULE::ssh::NAME` against the same kind
//! of store root reached over SSH through a real loopback sshd (one per test process,
//! each test with its own store root), `MODULE::helper::NAME` through a relstore
//! helper started over SSH. Tests that stay local-only say why. `ssh.rs` holds what
//! only an SSH target can run into, `helper.rs` what only helper mode can.

#![allow(clippy::unwrap_used)]

/// Turns target-agnostic test functions `fn name(env: Env)` into tests run against
/// three targets: `MODULE::local::name` (a local path), `MODULE::ssh::name` (the
/// same store root reached over SSH and SFTP through the loopback sshd) and
/// `MODULE::helper::name` (the same through a relstore helper on that server). One
/// test code, three targets: the conformance suite.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod local {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::util::Env::local())
                }
            )+
        }
        mod ssh {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::util::Env::ssh())
                }
            )+
        }
        mod helper {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::util::Env::helper())
                }
            )+
        }
    };
}

mod util;

mod bad_input;
mod bastion;
mod bench;
mod crash;
mod diff;
mod dry_run;
mod emlink;
mod exclude;
mod first_hour;
mod fleet;
mod helper;
mod hooks;
mod host_keys;
mod hostile;
mod interrupt;
mod lock;
mod progress;
mod project;
mod push;
mod reconnect;
mod restore;
mod retention;
mod rollback;
mod shared;
mod ssh;
mod ssh_config;
mod staging;
mod verify;
