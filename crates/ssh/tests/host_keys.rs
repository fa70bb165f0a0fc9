//! Host keys as fleets manage them and user certificates, against a real OpenSSH
//! sshd on loopback: a key known only from a global file, a host certificate vouched
//! for by `@cert-authority`, `@revoked` keys and CAs, user certificates from a file
//! and from ssh-agent.

mod sshd;

use relstore_ssh::{Identity, SessionError, SshSession};
use sshd::Sshd;

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

fn pub_line(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(path)
        .expect("read public key")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_only_in_a_global_file_is_trusted() {
    let sshd = Sshd::start();
    let d = sshd.dir.path();
    let empty = d.join("user_kh");
    write(&empty, "");
    let mut opts = sshd.options();
    opts.host_keys.user_files = vec![empty.clone()];
    opts.host_keys.global_files = vec![d.join("no-such-global"), sshd.known_hosts.clone()];
    let s = SshSession::connect(&opts)
        .await
        .expect("trusted by the global file");
    s.disconnect().await.expect("disconnect");
    assert_eq!(
        std::fs::read(&empty).expect("read"),
        b"",
        "nothing recorded"
    );

    // Without it: unknown, and the message lists every file read.
    opts.host_keys.global_files = vec![d.join("no-such-global")];
    let msg = SshSession::connect(&opts)
        .await
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.contains("user_kh") && msg.contains("no-such-global (missing)"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_certificate_signed_by_a_listed_ca_is_trusted() {
    let sshd = Sshd::start_with_certs();
    let d = sshd.dir.path();
    let ca = pub_line(d.join("ca.pub"));
    let kh = d.join("ca_kh");
    // Only the CA is listed, for any port of 127.0.0.1: the plain key is not.
    write(&kh, &format!("@cert-authority [127.0.0.1]:*,!bad {ca}\n"));
    let mut opts = sshd.options();
    opts.host_keys.user_files = vec![kh.clone()];
    let s = SshSession::connect(&opts)
        .await
        .expect("host certificate accepted");
    s.disconnect().await.expect("disconnect");

    // The CA listed for another host only: the certificate does not help.
    write(&kh, &format!("@cert-authority [10.9.9.9]:* {ca}\n"));
    let err = SshSession::connect(&opts).await.expect_err("unknown");
    assert!(
        matches!(err, SessionError::UnknownHostKey { .. }),
        "{err:?}"
    );

    // A revoked CA: refused, and said so.
    write(
        &kh,
        &format!("@cert-authority [127.0.0.1]:* {ca}\n@revoked * {ca}\n"),
    );
    let msg = SshSession::connect(&opts)
        .await
        .expect_err("revoked CA")
        .to_string();
    println!("{msg}");
    assert!(
        msg.contains("REVOKED") && msg.contains("certificate authority"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_host_key_is_refused_even_where_listed() {
    let sshd = Sshd::start();
    let host = pub_line(sshd.host_pub.clone());
    let global = sshd.dir.path().join("global_kh");
    write(&global, &format!("@revoked * {host}\n"));
    let mut opts = sshd.options();
    opts.host_keys.global_files = vec![global];
    let err = SshSession::connect(&opts).await.expect_err("revoked");
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, SessionError::HostKeyRevoked { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("global_kh:1") && msg.contains("SHA256:"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_certificate_authenticates_a_key_not_in_authorized_keys() {
    let sshd = Sshd::start_with_certs();
    let d = sshd.dir.path();
    let key = d.join("cert_user_ed25519");
    let mut opts = sshd.options();
    opts.identities = vec![Identity::KeyFile {
        path: key.clone(),
        passphrase: None,
    }];
    // `KEY-cert.pub` beside the key is found by itself.
    let s = SshSession::connect(&opts).await.expect("certificate auth");
    s.disconnect().await.expect("disconnect");
    assert!(sshd.log().contains("Accepted publickey") && sshd.log().contains("CA ED25519"));

    // Moved elsewhere, it is used when listed as a CertificateFile.
    let moved = d.join("elsewhere.cert");
    std::fs::rename(d.join("cert_user_ed25519-cert.pub"), &moved).expect("move cert");
    let err = SshSession::connect(&opts)
        .await
        .expect_err("plain key refused");
    assert!(err.to_string().contains("refused"), "{err}");
    opts.certificate_files = vec![moved.clone()];
    let s = SshSession::connect(&opts)
        .await
        .expect("CertificateFile auth");
    s.disconnect().await.expect("disconnect");

    // Held by ssh-agent (ssh-add loads KEY-cert.pub with the key).
    std::fs::rename(&moved, d.join("cert_user_ed25519-cert.pub")).expect("move back");
    let agent = sshd.start_agent(false);
    let out = std::process::Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .expect("ssh-add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut opts = sshd.options();
    opts.identities = vec![Identity::Agent {
        socket: agent.socket.clone(),
    }];
    let s = SshSession::connect(&opts)
        .await
        .expect("agent certificate auth");
    s.disconnect().await.expect("disconnect");
}
