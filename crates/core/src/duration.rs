//! Durations as people write them, on the command line (`--hook-timeout 10m`) and in
//! the project file (`hook_timeout = "1h30m"`): one parser so both read alike.

use std::time::Duration;

/// Parses `"30s"`, `"10m"`, `"1h"`, `"500ms"`, a sum such as `"1h30m"`, or plain
/// seconds (`"600"`); whole numbers only. Zero is refused: a limit of no time at all
/// could never be met. The error is one line naming the text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match parse_duration_or_zero(text)? {
        d if d.is_zero() => Err(format!("`{text}` is zero: a limit needs some time")),
        d => Ok(d),
    }
}

/// [`parse_duration`] for a wait, where `0` means none (`--pause 0`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 90s, 500ms, 10m, 1h30m or 600");
    let plain = text.trim();
    if plain.is_empty() {
        return Err(bad());
    }
    if plain.bytes().all(|b| b.is_ascii_digit()) {
        return plain.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total_ms: u64 = 0;
    let mut rest = plain;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, tail) = rest.split_at(digits);
        let letters = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = tail.split_at(letters);
        let per_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total_ms = n
            .checked_mul(per_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(bad)?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// The shortest text [`parse_duration`] reads back as `d`; a fraction of a second
/// (only ever a test's limit) is printed as `1.5s`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
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
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "0",
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
