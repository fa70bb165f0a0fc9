//! Resolution end to end: both readers on the same files, identities, known_hosts,
//! routes and the alias-typo error.

#![allow(clippy::unwrap_used)]

use super::*;

const CFG: &str = "\
# global first
IdentityFile ~/.ssh/global_key
Host web1 web1.example
    HostName 127.0.0.5
    User deploy
    Port 2222
    IdentityFile %d/.ssh/%r@%h
Host *.internal !bad.internal
  User=ops
  HostName \"%h.corp\"
Host jumped
  ProxyJump me@bastion:2200,b2
Host b2
  ProxyJump ignored-for-chain
Host cmd
  ProxyCommand nc %h %p
Host bastion
  HostName 127.0.0.1
Match host 127.0.0.5
  Compression yes
Match originalhost web2 user deploy2
  Port 2202
Match originalhost web3 !localuser nobody-here
  Port 2203
  IdentitiesOnly yes
Host *
  User fallback
";

fn home_with(cfg: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".ssh")).unwrap();
    std::fs::write(dir.path().join(".ssh/config"), cfg).unwrap();
    dir
}

fn opts(home: &Path, client: bool) -> RemoteOptions {
    RemoteOptions {
        home: Some(home.to_path_buf()),
        ssh_client: client.then(|| openssh::find_client().expect("ssh on PATH for this test")),
        ..RemoteOptions::default()
    }
}

/// Both readers agree on what matters (the OpenSSH one is the reference).
#[test]
fn builtin_reader_agrees_with_ssh_g() {
    let d = home_with(CFG);
    for alias in [
        "web1",
        "db.internal",
        "bad.internal",
        "jumped",
        "cmd",
        "other",
    ] {
        let a = resolve_host(alias, None, None, &opts(d.path(), true)).unwrap();
        let b = resolve_host(alias, None, None, &opts(d.path(), false)).unwrap();
        assert!(a.from_openssh && !b.from_openssh);
        assert_eq!(
            (&a.hostname, &a.user, a.port, &a.identity_files),
            (&b.hostname, &b.user, b.port, &b.identity_files),
            "{alias}"
        );
        assert_eq!(
            (&a.proxy_jump, &a.proxy_command),
            (&b.proxy_jump, &b.proxy_command),
            "{alias}"
        );
        assert_eq!(
            a.user_known_hosts_files, b.user_known_hosts_files,
            "{alias}"
        );
        assert_eq!(a.files_read, vec![d.path().join(".ssh/config")]);
        assert_eq!(a.files_read, b.files_read);
    }
    for (alias, user) in [
        ("web2", Some("deploy2")),
        ("web2", None),
        ("web3", None),
        ("web1", None),
    ] {
        let a = resolve_host(alias, user, None, &opts(d.path(), true)).unwrap();
        let b = resolve_host(alias, user, None, &opts(d.path(), false)).unwrap();
        assert_eq!(
            (a.port, a.compression, a.identities_only, &a.user),
            (b.port, b.compression, b.identities_only, &b.user),
            "{alias} {user:?}"
        );
        let want = match (alias, user) {
            ("web2", Some(_)) => (2202, false, false),
            ("web2", None) => (22, false, false),
            ("web3", _) => (2203, false, true),
            _ => (2222, true, false),
        };
        assert_eq!(
            (a.port, a.compression, a.identities_only),
            want,
            "{alias} {user:?}"
        );
    }
    let w = resolve_host("web1", Some("me"), Some(22), &opts(d.path(), false)).unwrap();
    assert_eq!((w.user.as_str(), w.port), ("me", 22));
    assert_eq!(
        w.identity_files,
        vec![
            d.path().join(".ssh/global_key"),
            d.path().join(".ssh/me@127.0.0.5")
        ]
    );
}

#[test]
fn routes_follow_jump_chains_and_commands() {
    let d = home_with(CFG);
    for client in [true, false] {
        let o = opts(d.path(), client);
        let r = resolve(&RemoteSpec::parse("jumped:/srv").unwrap(), &o).unwrap();
        let hops: Vec<String> = r.hops().iter().map(|h| h.opts.destination()).collect();
        assert_eq!(
            hops,
            ["me@127.0.0.1:2200", "fallback@b2", "fallback@jumped"],
            "{client}"
        );
        let Via::Jump(b2) = &r.via else {
            panic!("no jump")
        };
        assert!(
            matches!(b2.via, Via::Jump(_)),
            "b2's own ProxyJump is replaced by the chain"
        );
        let r = resolve(&RemoteSpec::parse("cmd:/srv").unwrap(), &o).unwrap();
        match &r.via {
            Via::Command(c) => assert_eq!(c, "nc cmd 22"),
            v => panic!("{v:?}"),
        }
    }
}

#[test]
fn a_jump_loop_is_refused() {
    let d = home_with("Host *\n  ProxyJump bastion\n");
    for client in [true, false] {
        let e = resolve(
            &RemoteSpec::parse("web:/x").unwrap(),
            &opts(d.path(), client),
        )
        .unwrap_err()
        .to_string();
        // ssh -G finds the loop itself ("jumphost loop via bastion").
        assert!(e.contains("loop"), "{e}");
    }
}

#[test]
fn an_alias_typo_names_the_alias_and_the_files_read() {
    let d = home_with("Host web1\n  HostName 127.0.0.1\n");
    for client in [true, false] {
        let e = resolve(
            &RemoteSpec::parse("web1x:/srv").unwrap(),
            &opts(d.path(), client),
        )
        .unwrap_err()
        .to_string();
        let want = format!(
            "no Host entry matches web1x in {}, and web1x does not resolve",
            d.path().join(".ssh/config").display()
        );
        assert!(e.starts_with(&want), "{e}");
        // A name that resolves is fine without any entry.
        resolve(
            &RemoteSpec::parse("localhost:/srv").unwrap(),
            &opts(d.path(), client),
        )
        .unwrap();
    }
}

#[test]
fn identities_known_hosts_and_flags() {
    let d = home_with(CFG);
    let home = d.path();
    std::fs::write(home.join(".ssh/deploy@127.0.0.5"), "k").unwrap();
    std::fs::write(home.join(".ssh/id_rsa"), "k").unwrap();
    let mut o = opts(home, false);
    o.agent_socket = Some(PathBuf::from("/agent"));
    let r = resolve(&RemoteSpec::parse("web1:/srv").unwrap(), &o).unwrap();
    let c = &r.opts;
    assert_eq!(
        (c.host.as_str(), c.port, c.user.as_str()),
        ("127.0.0.5", 2222, "deploy")
    );
    assert_eq!(
        c.host_keys.user_files.first(),
        Some(&home.join(".ssh/known_hosts"))
    );
    let got: Vec<String> = c.identities.iter().map(|i| format!("{i:?}")).collect();
    assert_eq!(
        got.len(),
        2,
        "agent + the one existing config file: {got:?}"
    );
    assert!(
        got[0].contains("/agent") && got[1].contains("deploy@127.0.0.5"),
        "{got:?}"
    );
    // Defaults (id_rsa) only when the config names no IdentityFile, as OpenSSH does.
    let r = resolve(&RemoteSpec::parse("other:/srv").unwrap(), &o);
    assert!(r.is_err(), "`other` does not resolve");
    let plain = home_with(
        "IdentitiesOnly yes\nCompression yes\nStrictHostKeyChecking accept-new\nConnectTimeout 7\n\
         HostKeyAlias webalias\nGlobalKnownHostsFile /tmp/g1 /tmp/g2\n\
         ServerAliveInterval 20\nServerAliveCountMax 4\n",
    );
    std::fs::write(plain.path().join(".ssh/id_rsa"), "k").unwrap();
    let mut o = opts(plain.path(), false);
    o.agent_socket = Some(PathBuf::from("/agent"));
    let c = resolve(&RemoteSpec::parse("localhost:/srv").unwrap(), &o)
        .unwrap()
        .opts;
    assert_eq!(c.identities.len(), 1, "IdentitiesOnly drops the agent");
    assert!(c.compression);
    assert_eq!(
        c.host_keys.strict,
        crate::session::StrictHostKeyChecking::AcceptNew
    );
    assert_eq!(c.host_keys.alias.as_deref(), Some("webalias"));
    assert_eq!(
        c.keepalive,
        crate::session::Keepalive {
            interval: Duration::from_secs(20),
            max: 4
        }
    );
    assert_eq!(
        c.host_keys.global_files,
        [PathBuf::from("/tmp/g1"), PathBuf::from("/tmp/g2")]
    );
    assert_eq!(c.connect_timeout, Duration::from_secs(7));

    let missing = RemoteOptions {
        identity_files: vec![home.join("nope")],
        ..opts(home, false)
    };
    let e = resolve(&RemoteSpec::parse("web1:/srv").unwrap(), &missing).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let bad_cfg = RemoteOptions {
        ssh_config: Some(home.join("missing_config")),
        ..opts(home, true)
    };
    let e = resolve(&RemoteSpec::parse("web1:/srv").unwrap(), &bad_cfg).unwrap_err();
    assert!(e.to_string().contains("missing_config"), "{e}");
}

#[test]
fn ssh_g_errors_are_one_line() {
    let d = home_with("Host a\n  NoSuchKeyword yes\n");
    let e = resolve_host("a", None, None, &opts(d.path(), true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("-G a` failed:") && e.to_lowercase().contains("nosuchkeyword"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn a_bad_jump_hop_is_named() {
    let d = home_with("Host t\n  ProxyJump me@b:notaport\n");
    for client in [true, false] {
        let e = resolve(&RemoteSpec::parse("t:/x").unwrap(), &opts(d.path(), client))
            .unwrap_err()
            .to_string();
        // OpenSSH rejects it itself ("Invalid ProxyJump …"); the built-in reader says
        // which host's ProxyJump and which hop.
        assert!(e.contains("notaport") || e.contains("ProxyJump"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        if !client {
            assert_eq!(e, "ProxyJump of t: me@b:notaport: bad port \"notaport\"");
        }
    }
}

/// `none` and the ProxyJump/ProxyCommand exclusion follow OpenSSH (observed with
/// `ssh -G`): `ProxyJump none` still lets a later ProxyCommand apply, `ProxyCommand
/// none` blocks a later ProxyJump, and whichever real one comes first wins.
#[test]
fn proxy_none_and_exclusion_follow_openssh() {
    let d = home_with(
        "Host a\n  ProxyJump none\nHost 127.0.0.1 hop\n  ProxyCommand none\nHost c\n  ProxyJump hop\nHost d\n  ProxyCommand nc\nHost hop\n  HostName 127.0.0.1\nHost *\n  ProxyJump hop\n  ProxyCommand nc %h %p\n",
    );
    for client in [true, false] {
        let via = |host: &str| {
            let r = resolve(
                &RemoteSpec::parse(&format!("{host}:/x")).unwrap(),
                &opts(d.path(), client),
            );
            match r.unwrap().via {
                Via::Direct => "direct".to_string(),
                Via::Command(c) => format!("command {c}"),
                Via::Jump(j) => format!("jump {}", j.host.alias),
            }
        };
        assert_eq!(via("a"), "command nc a 22", "{client}");
        assert_eq!(via("127.0.0.1"), "direct", "{client}");
        assert_eq!(via("c"), "jump hop", "{client}");
        assert_eq!(via("d"), "command nc", "{client}");
        assert_eq!(via("e"), "jump hop", "{client}");
    }
}

/// An `ssh` that is not OpenSSH (no `-G`) is not fatal: the built-in reader takes over.
#[test]
fn an_ssh_without_dash_g_falls_back_to_the_builtin_reader() {
    let d = home_with("Host web1\n  HostName 127.0.0.1\n  Port 2200\n");
    let fake = d.path().join("ssh");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"ssh: illegal option -- G\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = RemoteOptions {
        ssh_client: Some(fake),
        ..opts(d.path(), false)
    };
    // A fork elsewhere in this test process may briefly hold the fresh script open
    // for writing (ETXTBSY): retry starting it.
    let mut h = resolve_host("web1", None, None, &o);
    for _ in 0..20 {
        if !matches!(h, Err(ConfigError::OpenSshRun { .. })) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        h = resolve_host("web1", None, None, &o);
    }
    let h = h.unwrap();
    assert!(!h.from_openssh);
    assert_eq!((h.hostname.as_str(), h.port), ("127.0.0.1", 2200));
}

#[test]
fn a_jump_host_typo_names_the_host_it_was_for() {
    let d = home_with("Host t\n  ProxyJump bastoin\n");
    for client in [true, false] {
        let e = resolve(&RemoteSpec::parse("t:/x").unwrap(), &opts(d.path(), client))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ProxyJump of t: no Host entry matches bastoin in "),
            "{e}"
        );
    }
}
