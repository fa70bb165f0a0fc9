//! Public-key authentication with each configured [`Identity`] in turn: key files
//! (asking for a passphrase on the terminal when allowed), each first with the
//! OpenSSH certificates that certify it (`KEY-cert.pub` and `CertificateFile`s), and
//! ssh-agent keys and certificates. Every
//! attempt that fails leaves a note in the error, so "authentication failed" says
//! what was tried and why each was not accepted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::{self, Certificate, HashAlg, PrivateKeyWithHashAlg};

use super::{ConnectOptions, Identity, KnownHostsCheck, SessionError};

/// Tries `opts.identities` in order until the server accepts one.
pub(super) async fn authenticate(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    destination: &str,
) -> Result<(), SessionError> {
    let mut tried = Vec::new();
    let mut broke = None;
    for identity in &opts.identities {
        let outcome = match identity {
            Identity::KeyFile { path, passphrase } => {
                auth_with_key_file(handle, opts, path, passphrase.as_deref(), &mut tried).await
            }
            Identity::Agent { socket } => auth_with_agent(handle, opts, socket, &mut tried).await,
        };
        match outcome {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                // The server hung up (e.g. MaxAuthTries reached): what was tried is
                // the useful part of the message; the cause goes in the source.
                tried.push("then the connection failed".to_string());
                broke = Some(e);
                break;
            }
        }
    }
    Err(SessionError::AuthFailed {
        user: opts.user.clone(),
        destination: destination.to_string(),
        tried: if tried.is_empty() {
            "no identities: no ssh-agent (SSH_AUTH_SOCK), no -i key, no IdentityFile, no ~/.ssh/id_* key".into()
        } else {
            tried.join(", ")
        },
        source: broke,
    })
}

/// RSA keys sign with SHA-2: OpenSSH ≥ 8.8 refuses SHA-1 signatures, and a server
/// that does not announce `server-sig-algs` gets rsa-sha2-256.
async fn rsa_hash(
    handle: &mut Handle<KnownHostsCheck>,
    key: &keys::PublicKey,
) -> Result<Option<HashAlg>, russh::Error> {
    if key.algorithm().is_rsa() {
        Ok(handle
            .best_supported_rsa_hash()
            .await?
            .unwrap_or(Some(HashAlg::Sha256)))
    } else {
        Ok(None)
    }
}

/// Asks for a key's passphrase on the terminal, if there is one.
async fn ask_passphrase(path: &std::path::Path) -> Option<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt).ok())
        .await
        .ok()
        .flatten()
}

/// Tries one key file; `Ok(false)` (with the reason in `tried`) when it cannot be
/// used or the server refuses it.
async fn auth_with_key_file(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    path: &std::path::Path,
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
) -> Result<bool, russh::Error> {
    let key = match keys::load_secret_key(path, passphrase) {
        Ok(k) => k,
        Err(keys::Error::KeyIsEncrypted) if passphrase.is_none() => {
            let asked = if opts.prompt_passphrase {
                ask_passphrase(path).await
            } else {
                None
            };
            let Some(pass) = asked else {
                tried.push(format!(
                    "key {} (encrypted, and there is no terminal to ask for its passphrase: \
                     add it to ssh-agent with ssh-add)",
                    path.display()
                ));
                return Ok(false);
            };
            match keys::load_secret_key(path, Some(&pass)) {
                Ok(k) => k,
                Err(e) => {
                    tried.push(format!("key {} (cannot decrypt: {e})", path.display()));
                    return Ok(false);
                }
            }
        }
        Err(e) => {
            tried.push(format!("key {} (cannot load: {e})", path.display()));
            return Ok(false);
        }
    };
    let key = Arc::new(key);
    if with_certificates(handle, opts, path, &key, tried).await? {
        return Ok(true);
    }
    let hash = rsa_hash(handle, key.public_key()).await?;
    let result = handle
        .authenticate_publickey(opts.user.clone(), PrivateKeyWithHashAlg::new(key, hash))
        .await?;
    if result.success() {
        return Ok(true);
    }
    tried.push(format!("key {} (refused)", path.display()));
    Ok(false)
}

/// The certificates that certify `key`: `KEY-cert.pub` beside the key file, then
/// `opts.certificate_files`; unreadable files are noted in `tried`.
fn certificates_for(
    opts: &ConnectOptions,
    path: &Path,
    key: &keys::PrivateKey,
    tried: &mut Vec<String>,
) -> Vec<(PathBuf, Certificate)> {
    let mut beside = path.as_os_str().to_owned();
    beside.push("-cert.pub");
    let beside = PathBuf::from(beside);
    let listed = opts.certificate_files.iter().filter(|c| **c != beside);
    let mut found = Vec::new();
    for (file, must_exist) in std::iter::once((&beside, false)).chain(listed.map(|c| (c, true))) {
        if !must_exist && !file.exists() {
            continue;
        }
        match keys::load_openssh_certificate(file) {
            Ok(c) if c.public_key() == key.public_key().key_data() => {
                found.push((file.clone(), c));
            }
            // A CertificateFile for another key is for another identity.
            Ok(_) => {}
            Err(e) => tried.push(format!("certificate {} (cannot load: {e})", file.display())),
        }
    }
    found
}

/// Tries `key` with each certificate that certifies it.
async fn with_certificates(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    path: &Path,
    key: &Arc<keys::PrivateKey>,
    tried: &mut Vec<String>,
) -> Result<bool, russh::Error> {
    for (file, cert) in certificates_for(opts, path, key, tried) {
        let result = handle
            .authenticate_openssh_cert(opts.user.clone(), Arc::clone(key), cert)
            .await?;
        if result.success() {
            return Ok(true);
        }
        tried.push(format!("certificate {} (refused)", file.display()));
    }
    Ok(false)
}

/// Tries every key and certificate the agent at `socket` holds.
async fn auth_with_agent(
    handle: &mut Handle<KnownHostsCheck>,
    opts: &ConnectOptions,
    socket: &std::path::Path,
    tried: &mut Vec<String>,
) -> Result<bool, russh::Error> {
    let mut agent = match keys::agent::client::AgentClient::connect_uds(socket).await {
        Ok(a) => a,
        Err(e) => {
            tried.push(format!(
                "ssh-agent at {} (cannot connect: {e})",
                socket.display()
            ));
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tried.push(format!(
                "ssh-agent at {} (cannot list keys: {e})",
                socket.display()
            ));
            return Ok(false);
        }
    };
    if identities.is_empty() {
        tried.push(format!("ssh-agent at {} (holds no keys)", socket.display()));
        return Ok(false);
    }
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for id in identities {
        match id {
            keys::agent::AgentIdentity::PublicKey { key, .. } => keys.push(key),
            keys::agent::AgentIdentity::Certificate { certificate, .. } => certs.push(certificate),
        }
    }
    // Certificates first, as OpenSSH offers them.
    for cert in certs {
        let label = format!(
            "ssh-agent certificate {} (key {})",
            cert.key_id(),
            cert.public_key().fingerprint(HashAlg::Sha256)
        );
        let key = keys::PublicKey::from(cert.public_key().clone());
        let hash = rsa_hash(handle, &key).await?;
        match handle
            .authenticate_certificate_with(opts.user.clone(), cert, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push(format!("{label} (refused)")),
            Err(russh::AgentAuthError::Send(_)) => return Err(russh::Error::SendError),
            Err(e) => tried.push(format!("{label} (agent failed to sign: {e})")),
        }
    }
    for key in keys {
        let label = format!(
            "ssh-agent key {} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        );
        let hash = rsa_hash(handle, &key).await?;
        match handle
            .authenticate_publickey_with(opts.user.clone(), key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push(format!("{label} (refused)")),
            Err(russh::AgentAuthError::Send(_)) => {
                return Err(russh::Error::SendError);
            }
            Err(e) => tried.push(format!("{label} (agent failed to sign: {e})")),
        }
    }
    Ok(false)
}
