//! How every number a person reads is written: one unit system everywhere.
//!
//! Sizes are decimal (kB, MB, GB: powers of 1000, as disk vendors and `df -H` count),
//! in summaries, tables, progress bars and `bench` alike, so a progress bar's total and
//! the summary printed after it can be compared digit for digit. Counts get thousands
//! separators; rates are whole numbers per second (a fraction of a file per second
//! says nothing).

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in decimal units with one decimal: `999 B`, `1.5 kB`, `236.0 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if v >= 999.95 && unit < UNITS.len() - 1 {
        // 999,999 B would round to "1000.0 kB".
        format!("1.0 {}", UNITS[unit + 1])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Items per second as a whole number: `20,474/s`. Non-finite or negative rates
/// (no time elapsed yet) read `0/s`.
pub fn items_per_second(rate: f64) -> String {
    format!("{}/s", thousands(whole(rate)))
}

/// Bytes per second in the units of [`human_bytes`]: `12.3 MB/s`.
pub fn bytes_per_second(rate: f64) -> String {
    format!("{}/s", human_bytes(whole(rate)))
}

fn whole(rate: f64) -> u64 {
    if rate.is_finite() && rate > 0.0 {
        // Saturates at u64::MAX; rates are far below it.
        rate.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn sizes_are_decimal_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(236_000_000), "236.0 MB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(human_bytes(1_048_576), "1.0 MB");
        assert_eq!(human_bytes(330_000_000_000), "330.0 GB");
        for n in [1u64, 1 << 10, 1 << 20, 1 << 30, 1 << 40, u64::MAX] {
            assert!(!human_bytes(n).contains("iB"), "{}", human_bytes(n));
        }
    }

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(items_per_second(20_474.504_4), "20,475/s");
        assert_eq!(items_per_second(0.4), "0/s");
        assert_eq!(items_per_second(f64::NAN), "0/s");
        assert_eq!(items_per_second(f64::INFINITY), "0/s");
        assert_eq!(items_per_second(-3.0), "0/s");
        assert_eq!(bytes_per_second(12_345_678.9), "12.3 MB/s");
        assert_eq!(bytes_per_second(512.7), "513 B/s");
    }
}
