//! Reading known_hosts files as OpenSSH does: which lines apply to a host, and what
//! they say about a key.
//!
//! A line is `[MARKER] PATTERNS KEYTYPE BASE64 [COMMENT]`, fields separated by spaces
//! or tabs. `PATTERNS` is a comma list of host names or patterns (`*`, `?`, negation
//! with `!`, `[host]:port` for a port other than 22) or a hashed name
//! (`|1|base64 salt|base64 HMAC-SHA1 of the name`). A negated pattern that matches
//! excludes the host from the line whatever else matches. `MARKER` is
//! `@cert-authority` (the key is a CA whose host certificates are trusted for the
//! matching hosts) or `@revoked` (the key must never be accepted). russh's own reader
//! handles neither markers, patterns nor tabs, hence this module.

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{self, PublicKey};
use sha1::Sha1;

/// What a known_hosts line says about its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// A plain line: the key is this host's key.
    HostKey,
    /// `@cert-authority`: host certificates signed by this key are trusted.
    CertAuthority,
    /// `@revoked`: this key is refused, even where another line lists it.
    Revoked,
}

/// One line of a known_hosts file that applies to the host looked up.
#[derive(Clone, Debug)]
pub struct Entry {
    pub file: PathBuf,
    /// 1-based line number, for messages.
    pub line: usize,
    pub marker: Marker,
    pub key: PublicKey,
}

impl Entry {
    /// `FILE:LINE`, for messages.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// A line that could not be used, with the reason (reported, never fatal: OpenSSH
/// skips such lines too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub place: String,
    pub reason: String,
}

/// The name known_hosts spells for `host` on `port`: `host` on port 22, else
/// `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The lines of `text` (the contents of `file`) that apply to `name`, plus the
/// applicable lines that could not be parsed.
pub fn entries_for(file: &Path, text: &str, name: &str) -> (Vec<Entry>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
        let Some(mut first) = fields.next() else {
            continue;
        };
        let marker = match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            m if m.starts_with('@') => {
                skipped.push(Skipped {
                    place: format!("{}:{}", file.display(), i + 1),
                    reason: format!("unknown marker {m}"),
                });
                continue;
            }
            _ => Marker::HostKey,
        };
        if marker != Marker::HostKey {
            match fields.next() {
                Some(f) => first = f,
                None => continue,
            }
        }
        if !hosts_match(first, name) {
            continue;
        }
        let (Some(_keytype), Some(b64)) = (fields.next(), fields.next()) else {
            skipped.push(Skipped {
                place: format!("{}:{}", file.display(), i + 1),
                reason: "no key on the line".into(),
            });
            continue;
        };
        match keys::parse_public_key_base64(b64) {
            Ok(key) => found.push(Entry {
                file: file.to_path_buf(),
                line: i + 1,
                marker,
                key,
            }),
            Err(e) => skipped.push(Skipped {
                place: format!("{}:{}", file.display(), i + 1),
                reason: format!("unreadable key: {e}"),
            }),
        }
    }
    (found, skipped)
}

/// Whether the hosts field of a line (`PATTERNS`) applies to `name`: some entry
/// matches and no negated entry does. Names compare case-insensitively.
pub fn hosts_match(patterns: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for entry in patterns.split(',') {
        if let Some(hashed) = entry.strip_prefix("|1|") {
            positive |= hashed_match(hashed, &name);
        } else if let Some(neg) = entry.strip_prefix('!') {
            if wildcard_match(&neg.to_ascii_lowercase(), &name) {
                return false;
            }
        } else if wildcard_match(&entry.to_ascii_lowercase(), &name) {
            positive = true;
        }
    }
    positive
}

/// `salt|hash` (both base64) of a hashed entry against `name`.
fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The line to append for `name` and `key` (accept-new), without newline.
pub fn line_for(name: &str, key: &PublicKey) -> Result<String, keys::ssh_key::Error> {
    Ok(format!("{name} {}", key.to_openssh()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "web1.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("web?", "web1"));
        assert!(!wildcard_match("web?", "web10"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("[10.0.0.*]:2222", "[10.0.0.7]:2222"));
    }

    #[test]
    fn comma_lists_and_negation() {
        assert!(hosts_match("web1,web2", "web2"));
        assert!(hosts_match("*.corp,!bad.corp", "good.corp"));
        assert!(!hosts_match("*.corp,!bad.corp", "bad.corp"));
        // A negation alone never makes a line apply.
        assert!(!hosts_match("!bad.corp", "good.corp"));
        assert!(hosts_match("WEB1.Example.COM", "web1.example.com"));
        assert!(!hosts_match("web1", "[web1]:2222"));
        assert!(hosts_match("[web1]:2222", "[web1]:2222"));
    }

    #[test]
    fn hashed_names() {
        // A hashed "example.com" (russh's test vector).
        let h = "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=";
        assert!(hosts_match(h, "example.com"));
        assert!(hosts_match(&format!("other,{h}"), "EXAMPLE.com"));
        assert!(!hosts_match(h, "localhost"));
        assert!(!hosts_match("|1|not base64|x", "localhost"));
    }

    #[test]
    fn markers_tabs_and_bad_lines() {
        let text = format!(
            "# comment\n\n@cert-authority *.corp {ED}\n@revoked\t*\t{ED} old\nweb1\t{ED}\n\
             web1 ssh-ed25519 AAAA!!\n@bogus web1 {ED}\nweb1\n"
        );
        let (found, skipped) = entries_for(Path::new("kh"), &text, "web1");
        let marks: Vec<_> = found.iter().map(|e| (e.marker, e.line)).collect();
        assert_eq!(marks, vec![(Marker::Revoked, 4), (Marker::HostKey, 5)]);
        let places: Vec<_> = skipped.iter().map(|s| s.place.as_str()).collect();
        assert_eq!(places, vec!["kh:6", "kh:7", "kh:8"]);
        let (found, _) = entries_for(Path::new("kh"), &text, "a.corp");
        assert_eq!(found[0].marker, Marker::CertAuthority);
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("web1", 22), "web1");
        assert_eq!(lookup_name("web1", 2222), "[web1]:2222");
    }
}
