//! Targets reachable only through a jump host. The bastion, a second bastion and the
//! target run in a private network namespace (tests/util/netns.rs); only the first
//! bastion is exposed on the host's loopback. Push, releases and rollback work via
//! `ProxyJump` (one hop and a two-hop chain) and via `ProxyCommand` (`ssh -W` through
//! the bastion); the bastion's log shows the forwarded connection; the direct route
//! does not exist, and a failing hop is named.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::netns::{hidden_servers, Hidden};
use crate::util::{assert_same_tree, one_line_error, relstore_bin_dir, Env};

/// A client ssh config for the hidden servers: `bastion` (via the bridge), `b2` and
/// `target` inside, each with its own key and known_hosts entry.
fn client_config(env: &Env, h: &Hidden) -> PathBuf {
    let [bastion, b2, target] = &h.servers[..] else {
        panic!("three servers expected")
    };
    let kh = env.path("known_hosts");
    let pubkey = |s: &crate::util::sshd::Sshd| fs::read_to_string(&s.host_pub).unwrap();
    fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {}[127.0.0.1]:{} {}[127.0.0.1]:{} {}",
            h.bridge_port,
            pubkey(bastion),
            b2.port,
            pubkey(b2),
            target.port,
            pubkey(target)
        ),
    )
    .unwrap();
    let cfg = env.path("ssh_config");
    let block = |name: &str, port: u16, s: &crate::util::sshd::Sshd, extra: &str| {
        format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n{extra}",
            s.user,
            s.user_key.display(),
            kh.display()
        )
    };
    let text = [
        block("bastion", h.bridge_port, bastion, ""),
        block("b2", b2.port, b2, ""),
        block("target", target.port, target, "  ProxyJump bastion\n"),
        block(
            "target-2hop",
            target.port,
            target,
            "  ProxyJump bastion,b2\n",
        ),
        block(
            "target-cmd",
            target.port,
            target,
            &format!(
                "  ProxyCommand ssh -F {} -W %h:%p bastion\n",
                cfg_path(env).display()
            ),
        ),
        block("target-direct", target.port, target, ""),
        block(
            "target-badhop",
            target.port,
            target,
            "  ProxyJump b2,bastion\n",
        ),
    ]
    .concat();
    fs::write(&cfg, text).unwrap();
    cfg
}

fn cfg_path(env: &Env) -> PathBuf {
    env.path("ssh_config")
}

/// Push two releases, list, roll back: all through `alias`.
fn deploy(env: &Env, alias: &str) {
    let root = env.root.display().to_string();
    let spec = format!("{alias}:{root}");
    let v1 = env.site("v1", 20, 311);
    let v2 = env.next_release(&v1, "v2", 0.3, 312);
    env.json(&["push", v1.to_str().unwrap(), &spec, "--release", "r1"]);
    env.json(&["push", v2.to_str().unwrap(), &spec, "--release", "r2"]);
    assert_same_tree(&v2, &env.root.join("current"));
    let l = env.json(&["releases", &spec]);
    assert_eq!(l["current"], "r2", "{alias}: {l}");
    let r = env.json(&["rollback", &spec]);
    assert_eq!(r["to"], "r1", "{alias}: {r}");
    assert_same_tree(&v1, &env.root.join("current"));
}

fn env_for(cfg: &Path) -> Env {
    let mut env = Env::local();
    env.extra_env
        .push(("RELSTORE_SSH_CONFIG".into(), cfg.as_os_str().to_owned()));
    env
}

/// Lines of a server's log showing direct-tcpip forwards to `port` (one per relstore
/// command: each opens one connection).
fn forwards_to(s: &crate::util::sshd::Sshd, port: u16) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("direct_tcpip") && l.contains(&format!("port {port}")))
        .count()
}

#[test]
fn a_target_behind_bastions_deploys_via_proxyjump_chains_and_proxycommand() {
    assert!(
        crate::util::on_path("ssh"),
        "this test needs the OpenSSH client (ssh)"
    );
    let path = format!(
        "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin",
        relstore_bin_dir().display()
    );
    let h = hidden_servers(3, &path);
    let (bastion, b2, target) = (&h.servers[0], &h.servers[1], &h.servers[2]);
    let scratch = Env::local();
    let cfg = client_config(&scratch, &h);

    // The direct route does not exist: the target only listens inside.
    let env = env_for(&cfg);
    let out = env.run(&["releases", &format!("target-direct:{}", env.root.display())]);
    let line = one_line_error(&out);
    assert!(
        line.contains(&format!(
            "cannot connect to {}@127.0.0.1:{}",
            target.user, target.port
        )),
        "{line}"
    );
    assert_eq!(forwards_to(bastion, target.port), 0);

    // ProxyJump, one hop: through the bastion, which logs the forward.
    deploy(&env_for(&cfg), "target");
    assert!(forwards_to(bastion, target.port) >= 4, "{}", bastion.log());

    // ProxyCommand: `ssh -W` through the bastion carries the connection.
    let before = forwards_to(bastion, target.port);
    deploy(&env_for(&cfg), "target-cmd");
    assert!(
        forwards_to(bastion, target.port) >= before + 4,
        "{}",
        bastion.log()
    );

    // Two hops: bastion → b2 → target; each hop logs its own forward.
    let before = forwards_to(bastion, b2.port);
    deploy(&env_for(&cfg), "target-2hop");
    assert!(
        forwards_to(bastion, b2.port) >= before + 4,
        "{}",
        bastion.log()
    );
    assert!(forwards_to(b2, target.port) >= 4, "{}", b2.log());

    // Helper mode (an exec channel on the same connection) works through the chain.
    let env = env_for(&cfg);
    let site = env.site("h", 10, 313);
    let spec = format!("target-2hop:{}", env.root.display());
    let r = env.json(&["push", site.to_str().unwrap(), &spec, "--helper", "require"]);
    assert_eq!(
        r["release"].as_str().map(|s| !s.is_empty()),
        Some(true),
        "{r}"
    );
    assert_same_tree(&site, &env.root.join("current"));
    let st = env.json(&["helper", "status", &spec, "--helper", "require"]);
    assert_eq!(
        (&st["helper"], &st["source"]),
        (&true.into(), &"path".into()),
        "{st}"
    );
}

#[test]
fn the_failing_hop_of_a_chain_is_named() {
    let h = hidden_servers(3, "");
    let scratch = Env::local();
    let cfg = client_config(&scratch, &h);
    let env = env_for(&cfg);
    // b2 is only reachable from inside: as the first hop of a chain it fails, and the
    // error says it was hop 1 of 2 on the way to target-badhop.
    let out = env.run(&["releases", &format!("target-badhop:{}", env.root.display())]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    assert!(
        line.contains(&format!(
            "jump host b2 ({}@127.0.0.1:{}, hop 1 of 2 on the way to target-badhop) failed: cannot connect to",
            h.servers[1].user, h.servers[1].port
        )),
        "{line}"
    );
    // A ProxyCommand that dies says so, with what it printed.
    let bad = scratch.path("bad_config");
    fs::write(
        &bad,
        "Host t\n  HostName 127.0.0.1\n  ProxyCommand echo no route to %h:%p >&2; exit 7\n",
    )
    .unwrap();
    let out = env_for(&bad).run(&["releases", "t:/srv"]);
    let line = one_line_error(&out);
    assert!(
        line.contains("ProxyCommand `echo no route to 127.0.0.1:22 >&2; exit 7`")
            && line.contains("exited (exit status: 7)")
            && line.contains("it said: no route to 127.0.0.1:22"),
        "{line}"
    );
}
