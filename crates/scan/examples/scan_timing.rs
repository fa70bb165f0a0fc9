//! Scans a directory and prints what it cost: `cargo run --release -p relstore-scan
//! --example scan_timing -- DIR [CACHE_FILE]`. Run it twice with a cache file to see
//! a cold and a warm (nothing to hash) scan.

use std::path::PathBuf;
use std::time::Instant;

use relstore_core::progress::NoProgress;
use relstore_scan::{scan, ScanOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let root = PathBuf::from(args.next().ok_or("usage: scan_timing DIR [CACHE_FILE]")?);
    let opts = ScanOptions {
        skip_special: true,
        stat_cache: args.next().map(PathBuf::from),
        ..ScanOptions::default()
    };
    let start = Instant::now();
    let out = scan(&root, &opts, &NoProgress)?;
    println!(
        "{} entries, {} files / {} bytes hashed; walk {:.3}s, hash+cache {:.3}s, total {:.3}s{}",
        out.entries.len(),
        out.files_hashed,
        out.bytes_hashed,
        out.walk_seconds,
        out.hash_seconds,
        start.elapsed().as_secs_f64(),
        out.cache_warning
            .map(|w| format!(" (warning: {w})"))
            .unwrap_or_default()
    );
    Ok(())
}
