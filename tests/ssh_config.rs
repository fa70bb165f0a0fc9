//! Resolving a host as OpenSSH does, through the CLI against the loopback sshd:
//! `Include` (glob, nested), `Match host` (after `HostName`), `Host *` defaults and
//! an alias typo, each with an OpenSSH client on PATH (`ssh -G` evaluates) and with
//! PATH hiding it (relstore's own reader). Bastions: `bastion.rs`.

use std::fs;
use std::path::Path;

use crate::util::{one_line_error, Env};

/// A PATH without `ssh` (nothing at all: relstore needs no program for SFTP).
fn hide_ssh(env: &mut Env) {
    let empty = env.path("empty-bin");
    fs::create_dir_all(&empty).unwrap();
    env.extra_env.push(("PATH".into(), empty.into_os_string()));
}

/// Config files exercising Include, Match and `Host *`; returns the main file and
/// the files a run reads (for the typo message).
fn write_config(env: &Env) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let s = env.server();
    let d = env.path("sshcfg");
    fs::create_dir_all(d.join("conf.d")).unwrap();
    fs::create_dir_all(d.join("nested")).unwrap();
    let main = d.join("config");
    fs::write(
        &main,
        format!(
            "Include {d}/conf.d/*.conf\n\
             Host mh\n  HostName 127.0.0.1\n\
             Match host 127.0.0.1 originalhost mh\n  Port {port}\n\
             Host *\n  User {user}\n  IdentityFile {key}\n  Port 1\n",
            d = d.display(),
            port = s.port,
            user = s.user,
            key = s.user_key.display(),
        ),
    )
    .unwrap();
    fs::write(
        d.join("conf.d/10-web.conf"),
        format!(
            "Host web-inc\n  HostName 127.0.0.1\n  Include {}/nested/*.conf\n",
            d.display()
        ),
    )
    .unwrap();
    fs::write(d.join("conf.d/20-other.conf"), "Host other\n  Port 3\n").unwrap();
    fs::write(d.join("nested/port.conf"), format!("Port {}\n", s.port)).unwrap();
    let read = vec![
        main.clone(),
        d.join("conf.d/10-web.conf"),
        d.join("nested/port.conf"),
        d.join("conf.d/20-other.conf"),
    ];
    (main, read)
}

fn resolves_like_openssh(hide: bool) {
    let mut env = Env::ssh();
    let (cfg, read) = write_config(&env);
    env.extra_env
        .push(("RELSTORE_SSH_CONFIG".into(), cfg.into_os_string()));
    // Only the config's `Host *` IdentityFile can log in.
    env.extra_env
        .push(("RELSTORE_SSH_IDENTITY".into(), "".into()));
    if hide {
        hide_ssh(&mut env);
    }
    let site = env.site("v1", 5, 41);
    let root = env.root.display().to_string();
    // Include (glob, nested) gives the port; `Host *` the user and key.
    let r = env.json(&[
        "push",
        site.to_str().unwrap(),
        &format!("web-inc:{root}"),
        "--release",
        "r1",
    ]);
    assert_eq!(r["release"], "r1", "{r}");
    // Match host sees the HostName (127.0.0.1) and wins over `Host *`'s Port 1.
    let l = env.json(&["releases", &format!("mh:{root}")]);
    assert_eq!(l["current"], "r1", "{l}");
    // A typo: no entry, no such name; the message says both and which files were read.
    let out = env.run(&["releases", "web1x:/srv"]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&out);
    let files: Vec<String> = read.iter().map(|p| p.display().to_string()).collect();
    let want = format!(
        "no Host entry matches web1x in {}, and web1x does not resolve",
        files.join(", ")
    );
    assert!(line.contains(&want), "{line}\nwant: {want}");
}

#[test]
fn include_match_and_host_star_resolve_with_ssh_g() {
    assert!(
        crate::util::on_path("ssh"),
        "this test needs the OpenSSH client (ssh)"
    );
    resolves_like_openssh(false);
}

#[test]
fn include_match_and_host_star_resolve_without_an_ssh_client() {
    resolves_like_openssh(true);
}

/// Without `ssh`, keywords relstore's reader does not apply are named in one note.
#[test]
fn the_builtin_reader_names_what_it_ignores() {
    let mut env = Env::ssh();
    let s = env.server();
    let cfg = env.path("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host t\n  HostName 127.0.0.1\n  Port {}\n  ForwardAgent yes\n  SendEnv LANG\nMatch exec true\n  Port 1\nHost unrelated\n  LocalForward 1 a:2\n",
            s.port
        ),
    )
    .unwrap();
    hide_ssh(&mut env);
    env.extra_env
        .push(("RELSTORE_SSH_CONFIG".into(), cfg.into_os_string()));
    let out = env.run(&["releases", &format!("{}@t:{}", s.user, env.root.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].ends_with("ignored for t: ForwardAgent, Match exec, SendEnv"),
        "{stderr}"
    );
    assert!(!Path::new(&env.root).join("relstore.toml").exists());
}
