//! `hook_timeout = "10m"`: durations as people write them in config files.

use std::time::Duration;

/// Parses `"30s"`, `"10m"`, `"1h"` or a sum such as `"1h30m"`; whole numbers only,
/// each followed by `s`, `m` or `h`. Zero is refused: a hook that may run for no time
/// at all could never succeed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like \"30s\", \"10m\" or \"1h30m\"");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("`{text}` is zero: a hook needs some time to run"));
    }
    Ok(Duration::from_secs(total))
}

/// The shortest text [`parse_duration`] reads back as `d` (whole seconds).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400)] {
            let d = parse_duration(text).expect(text);
            assert_eq!(d.as_secs(), secs);
            assert_eq!(format_duration(d), text);
        }
        assert_eq!(format_duration(Duration::from_secs(3605)), "1h5s");
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "10",
            "m",
            "10x",
            "-5s",
            "1.5m",
            "0s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text} was accepted");
        }
    }
}
