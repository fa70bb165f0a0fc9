//! Small text helpers shared by both config readers: OpenSSH's pattern matching,
//! argument splitting, `%` tokens and `~`.

use std::path::{Path, PathBuf};

/// `*` and `?` glob over bytes (OpenSSH's `match_pattern`, case as given).
pub(crate) fn glob(pat: &str, s: &str) -> bool {
    let (p, s) = (pat.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// OpenSSH's pattern list (`a,!b,c*` or several arguments): true when some positive
/// pattern matches and no negated one does. Case-insensitive, as host names are.
pub(crate) fn pattern_list_matches<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pat in patterns {
        let (neg, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if glob(&pat.to_ascii_lowercase(), &name) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// Splits arguments on whitespace, honouring double quotes.
pub(crate) fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if in_quotes {
        return Err("unterminated quote".into());
    }
    if have {
        out.push(cur);
    }
    Ok(out)
}

/// Replaces `%X` tokens from `table` and `%%`; unknown tokens stay as written.
pub(crate) fn expand_tokens(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match table.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// `~` / `~/x` → home; relative paths stay relative (to the working directory).
pub(crate) fn expand_tilde(s: &str, home: Option<&Path>) -> PathBuf {
    match (s.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(r), Some(h)) if r.starts_with('/') => h.join(r.trim_start_matches('/')),
        _ => PathBuf::from(s),
    }
}

/// The paths a glob pattern (`*`/`?` in any component) names, sorted, existing only.
pub(crate) fn glob_paths(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy();
        let wild = part.contains(['*', '?']);
        let mut next = Vec::new();
        for base in &found {
            if !wild {
                next.push(base.join(comp));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && glob(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*.x.*", "a.x.b"));
        assert!(!glob("web", "web1"));
        assert!(pattern_list_matches(["web*", "!web9"], "WEB1"));
        assert!(!pattern_list_matches(["web*", "!web9"], "web9"));
        assert!(!pattern_list_matches(["!web9"], "db"));
    }

    #[test]
    fn glob_paths_sorted_and_nested() {
        let d = tempfile::tempdir().unwrap();
        for p in [
            "a/x.conf",
            "a/y.conf",
            "b/z.conf",
            "a/.hidden.conf",
            "a/n.txt",
        ] {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let got = glob_paths(&d.path().join("*/*.conf"));
        let want: Vec<PathBuf> = ["a/x.conf", "a/y.conf", "b/z.conf"]
            .iter()
            .map(|p| d.path().join(p))
            .collect();
        assert_eq!(got, want);
        assert!(glob_paths(&d.path().join("none/*")).is_empty());
    }
}
