//! russh settings for relstore's traffic: buffers, keepalives and algorithm order.

use std::borrow::Cow;

use russh::client;
use russh::keys::Algorithm;

use super::ConnectOptions;

/// SSH transport compression (`zlib@openssh.com`) when the user's ssh config does not
/// say: off. Measured on plain SFTP pushes of a 20,000-file generated site
/// (BENCHMARKS.md, "SSH transport compression"): it cut the bytes on the wire to
/// 0.68–0.70× but made every push slower — 1.39× (first push) and 1.71× (10% rewrite)
/// on loopback, 1.18× and 1.01× through a 100 Mbit/s, 25 ms link — because russh's
/// zlib runs on one core at well under the link's rate. It can only pay on links much
/// slower than that, which the user can turn on with `Compression yes`.
pub const DEFAULT_COMPRESSION: bool = false;

/// russh settings for relstore's traffic: Nagle off (pipelined
/// small requests must not wait for ACKs), a larger receive window and channel buffer
/// (deep pipelines of replies), keepalives so a dead server is noticed, host key
/// algorithms already known for this host offered first, host certificates asked for
/// when a certificate authority is listed for it (russh would otherwise offer
/// ed25519 first and fail on a host known only by another key type).
pub fn client_config(opts: &ConnectOptions) -> client::Config {
    let mut preferred = russh::Preferred::default();
    let name = opts.host_keys.lookup_name(&opts.host, opts.port);
    let (known, ca) = opts.host_keys.known_algorithms(&name);
    if ca {
        // As OpenSSH: host certificates are asked for only when a CA is listed for
        // the host (a certificate nobody vouches for would only be checked as a key).
        preferred.host_key_certificates = preferred.key.clone();
    }
    if !known.is_empty() {
        let matches = |a: &Algorithm| {
            known
                .iter()
                .any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()))
        };
        let mut order: Vec<Algorithm> = preferred
            .key
            .iter()
            .filter(|a| matches(a))
            .cloned()
            .collect();
        order.extend(preferred.key.iter().filter(|a| !matches(a)).cloned());
        preferred.key = Cow::Owned(order);
    }
    if aes_in_hardware() {
        // With AES instructions AES-GCM costs a fraction of ChaCha20-Poly1305 on both
        // ends (measured: ring's chacha20 + poly1305 were ~10% of the client's CPU in a
        // 340 MB upload; OpenSSL's AES-GCM in sshd is likewise far cheaper than
        // OpenSSH's chacha20-poly1305). Both are AEAD ciphers every OpenSSH ≥ 6.5
        // offers; without AES instructions russh's default (ChaCha20 first) stands.
        let mut order = vec![russh::cipher::AES_256_GCM];
        order.extend(
            preferred
                .cipher
                .iter()
                .filter(|c| **c != russh::cipher::AES_256_GCM)
                .cloned(),
        );
        preferred.cipher = Cow::Owned(order);
    }
    if compression_wanted(opts.compression) {
        let mut order = vec![russh::compression::ZLIB_LEGACY];
        order.extend(
            preferred
                .compression
                .iter()
                .filter(|c| **c != russh::compression::ZLIB_LEGACY)
                .cloned(),
        );
        preferred.compression = Cow::Owned(order);
    }
    client::Config {
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 512,
        // Sent only after `interval` without a byte from the server (see Keepalive).
        keepalive_interval: Some(opts.keepalive.interval),
        keepalive_max: opts.keepalive.max,
        inactivity_timeout: None,
        preferred,
        ..client::Config::default()
    }
}

/// The benchmark override of SSH compression: `RELSTORE_SSH_COMPRESSION=yes|no`
/// decides over the connection's setting (so `benches/e2e_ssh.py` can measure both on
/// the same ssh config). Anything else, or unset, leaves `configured`.
fn compression_wanted(configured: bool) -> bool {
    match std::env::var("RELSTORE_SSH_COMPRESSION").as_deref() {
        Ok("yes") => true,
        Ok("no") => false,
        _ => configured,
    }
}

/// Whether this CPU has AES (and carry-less multiply) instructions, which make
/// AES-GCM the cheapest cipher on the client and, usually, on the server too.
fn aes_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
