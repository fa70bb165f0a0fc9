//! The host key policy against real keys and certificates made by `ssh-keygen`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use russh::keys::{self, Certificate, PublicKey, PublicKeyOrCertificate};

use super::*;

/// A fresh ed25519 key pair at `dir/name`; returns its public key line.
fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen (openssh-client must be installed)");
    assert!(st.success(), "ssh-keygen failed");
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// Signs `dir/name.pub` with `dir/ca` as a host certificate for `principals`.
fn host_cert(dir: &Path, name: &str, principals: &str, validity: &str) -> Certificate {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(dir.join("ca"))
        .args(["-I", "test-host", "-h", "-n", principals, "-V", validity])
        .arg(dir.join(format!("{name}.pub")))
        .status()
        .expect("run ssh-keygen -s");
    assert!(st.success(), "ssh-keygen -s failed");
    keys::load_openssh_certificate(dir.join(format!("{name}-cert.pub"))).unwrap()
}

fn key_of(line: &str) -> PublicKey {
    keys::parse_public_key_base64(line.split(' ').nth(1).unwrap()).unwrap()
}

fn plain(line: &str) -> PublicKeyOrCertificate {
    PublicKeyOrCertificate::PublicKey {
        key: key_of(line),
        hash_alg: None,
    }
}

struct Files {
    dir: tempfile::TempDir,
    user: PathBuf,
    global: PathBuf,
}

impl Files {
    fn new(user: &str, global: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("user_kh"), dir.path().join("global_kh"));
        std::fs::write(&u, user).unwrap();
        std::fs::write(&g, global).unwrap();
        Files {
            dir,
            user: u,
            global: g,
        }
    }

    fn policy(&self) -> HostKeyPolicy {
        HostKeyPolicy {
            user_files: vec![self.user.clone()],
            global_files: vec![self.global.clone(), self.dir.path().join("absent")],
            alias: None,
            strict: StrictHostKeyChecking::Yes,
        }
    }
}

fn check(policy: HostKeyPolicy, host: &str, port: u16, offered: &PublicKeyOrCertificate) -> String {
    match KnownHostsCheck::new(host, port, policy).verify(offered) {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_key_only_in_a_global_file_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let host = keygen(tmp.path(), "host");
    let f = Files::new("", &format!("[web1]:2222,10.0.0.5 {host}\n"));
    assert_eq!(check(f.policy(), "web1", 2222, &plain(&host)), "ok");
    // The same line does not cover port 22.
    let err = check(f.policy(), "web1", 22, &plain(&host));
    assert!(err.contains("host key of web1 is unknown"), "{err}");
    assert!(err.contains("SHA256:"), "{err}");
    assert!(
        err.contains("user_kh") && err.contains("global_kh"),
        "{err}"
    );
    assert!(err.contains("absent (missing)"), "{err}");
}

#[test]
fn a_changed_key_names_the_line_even_with_accept_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (keygen(tmp.path(), "old"), keygen(tmp.path(), "new"));
    let f = Files::new(&format!("# c\nweb1 {old}\n"), "");
    let mut p = f.policy();
    p.strict = StrictHostKeyChecking::AcceptNew;
    let err = check(p, "web1", 22, &plain(&new));
    assert!(err.contains("HOST KEY OF web1 HAS CHANGED"), "{err}");
    assert!(err.contains("user_kh:2"), "{err}");
}

#[test]
fn a_revoked_key_is_refused_even_where_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let host = keygen(tmp.path(), "host");
    let f = Files::new(&format!("web1 {host}\n"), &format!("@revoked * {host}\n"));
    let err = check(f.policy(), "web1", 22, &plain(&host));
    assert!(
        err.contains("REVOKED") && err.contains("global_kh:1"),
        "{err}"
    );
}

#[test]
fn wildcard_negation_and_hashed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let host = keygen(tmp.path(), "host");
    let f = Files::new(&format!("*.corp,!bad.corp {host}\n"), "");
    assert_eq!(check(f.policy(), "a.corp", 22, &plain(&host)), "ok");
    assert!(check(f.policy(), "bad.corp", 22, &plain(&host)).contains("unknown"));

    let hashed = tmp.path().join("hashed");
    std::fs::write(&hashed, format!("[web1]:2222 {host}\n")).unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&hashed)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&hashed).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    let mut p = f.policy();
    p.user_files = vec![hashed];
    assert_eq!(check(p.clone(), "web1", 2222, &plain(&host)), "ok");
    assert!(check(p, "web2", 2222, &plain(&host)).contains("unknown"));
}

#[test]
fn an_alias_is_looked_up_instead_of_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let host = keygen(tmp.path(), "host");
    let f = Files::new(&format!("db-primary {host}\n"), "");
    let mut p = f.policy();
    p.alias = Some("db-primary".into());
    assert_eq!(check(p.clone(), "10.1.2.3", 2200, &plain(&host)), "ok");
    p.alias = Some("other".into());
    assert!(check(p, "db-primary", 22, &plain(&host)).contains("host key of other is unknown"));
}

#[test]
fn accept_new_records_in_the_first_user_file_only() {
    let tmp = tempfile::tempdir().unwrap();
    let host = keygen(tmp.path(), "host");
    let f = Files::new("no-newline-at-end", "");
    let second = tmp.path().join("second_user_kh");
    let mut p = f.policy();
    p.user_files.push(second.clone());
    p.strict = StrictHostKeyChecking::AcceptNew;
    assert_eq!(check(p.clone(), "web1", 2222, &plain(&host)), "ok");
    let text = std::fs::read_to_string(&f.user).unwrap();
    assert!(
        text.starts_with("no-newline-at-end\n[web1]:2222 ssh-ed25519 "),
        "{text}"
    );
    assert!(!second.exists());
    p.strict = StrictHostKeyChecking::Yes;
    assert_eq!(check(p, "web1", 2222, &plain(&host)), "ok");
}

#[test]
fn host_certificates_need_a_listed_ca_principal_and_validity() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = keygen(d, "ca");
    keygen(d, "host");
    let good = host_cert(d, "host", "web1.corp,web1", "-5m:+1h");
    let f = Files::new("", &format!("@cert-authority *.corp {ca}\n"));
    let offer = |c: &Certificate| PublicKeyOrCertificate::Certificate(c.clone());
    assert_eq!(check(f.policy(), "web1.corp", 22, &offer(&good)), "ok");
    // As in OpenSSH, another port is looked up as `[web1.corp]:2222`, which `*.corp`
    // does not match; `[*.corp]:*` does, and principals ignore the port.
    let err = check(f.policy(), "web1.corp", 2222, &offer(&good));
    assert!(err.contains("no @cert-authority line applies"), "{err}");
    std::fs::write(&f.user, format!("@cert-authority [*.corp]:* {ca}\n")).unwrap();
    assert_eq!(check(f.policy(), "web1.corp", 2222, &offer(&good)), "ok");
    std::fs::write(&f.user, "").unwrap();
    // No CA line for this name: the certificate's key is checked as a plain key.
    let err = check(f.policy(), "web1", 22, &offer(&good));
    assert!(err.contains("no @cert-authority line applies"), "{err}");
    // A principal the certificate does not name.
    let err = check(f.policy(), "web2.corp", 22, &offer(&good));
    assert!(err.contains("principals"), "{err}");
    // Expired.
    keygen(d, "host2");
    let old = host_cert(d, "host2", "web1.corp", "20200101:20200102");
    let err = check(f.policy(), "web1.corp", 22, &offer(&old));
    assert!(err.contains("not valid now"), "{err}");
    // A revoked CA refuses the certificate outright.
    std::fs::write(&f.user, format!("@revoked * {ca}\n")).unwrap();
    let err = check(f.policy(), "web1.corp", 22, &offer(&good));
    assert!(
        err.contains("certificate authority") && err.contains("REVOKED"),
        "{err}"
    );
}

#[test]
fn a_ca_line_is_not_a_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = keygen(tmp.path(), "ca");
    let f = Files::new(&format!("@cert-authority web1 {ca}\n"), "");
    assert!(check(f.policy(), "web1", 22, &plain(&ca)).contains("unknown"));
}

#[test]
fn strict_host_key_checking_spellings() {
    use std::str::FromStr;
    assert_eq!(
        StrictHostKeyChecking::from_str("accept-new"),
        Ok(StrictHostKeyChecking::AcceptNew)
    );
    assert_eq!(
        StrictHostKeyChecking::from_str("Yes"),
        Ok(StrictHostKeyChecking::Yes)
    );
    assert_eq!(
        StrictHostKeyChecking::from_str("no"),
        Ok(StrictHostKeyChecking::AcceptNew)
    );
    assert!(StrictHostKeyChecking::from_str("maybe").is_err());
}
