//! Measures the local release store's write-through cost and disk ratio.
//!
//! `cargo run --release -p relstore-release-store --example throughput [-- [--levels] [DIR...]]`
//!
//! Datasets: 1,000 text-like files of 15 KB, one 64 MiB text-like file, one 64 MiB
//! random (incompressible) file, a 20,000-file generated site from
//! `relstore-fixtures`, and every DIR given (a real static site is the most honest
//! one: e.g. the Rust documentation, `$(rustc --print sysroot)/share/doc/rust/html`). Source files are in the page cache (they were just written and
//! hashed), so this measures reading + verifying + compressing + writing + `syncfs`,
//! not a cold source disk. `--levels` also prints single-thread zstd speed and ratio
//! per level, the numbers behind the choice of level.

use std::error::Error;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use relstore_core::progress::NoProgress;
use relstore_core::ContentHash;
use relstore_release_store::ReleaseStore;

type Item = (ContentHash, PathBuf, u64);

fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "<div class=\"",
        "container",
        "\">",
        "</div>\n",
        "the ",
        "release ",
        "store ",
        "href=\"/",
        "docs/",
        "index.html",
        "function ",
        "return ",
        "{ ",
        "} ",
        "const ",
        "= ",
        ";\n",
        "<p>",
        "</p>\n",
        "content ",
        "atomic ",
        "deploy ",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
        if rng.u8(..) < 16 {
            out.extend_from_slice(rng.u64(..).to_string().as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = vec![0u8; len];
    rng.fill(&mut out);
    out
}

fn items_under(root: &Path) -> Result<Vec<Item>, Box<dyn Error>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry?;
        if entry.file_type().is_file() {
            let path = entry.path().to_path_buf();
            let bytes = fs::read(&path)?;
            out.push((
                ContentHash::from(blake3::hash(&bytes)),
                path,
                bytes.len() as u64,
            ));
        }
    }
    Ok(out)
}

/// Bytes allocated on disk under `dir` (block-rounded, like `du`).
fn allocated(dir: &Path) -> Result<u64, Box<dyn Error>> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry?;
        if entry.file_type().is_file() {
            total += entry.metadata()?.blocks() * 512;
        }
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn measure(name: &str, items: &[Item], work: &Path) -> Result<(), Box<dyn Error>> {
    let root = work.join(format!("store-{}", name.replace(' ', "-")));
    let store = ReleaseStore::open(&root)?;
    // Flush the freshly written sources first, so the store's one syncfs measures the
    // store's own writes.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let t = Instant::now();
    let stats = store.put_files(items, &NoProgress)?;
    let put = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = store.put_files(items, &NoProgress)?;
    let recheck = t.elapsed().as_secs_f64();
    assert_eq!(again.blobs_added, 0);
    let t = Instant::now();
    let mut read_back = 0u64;
    for (h, _, size) in items {
        read_back += io::copy(&mut store.open_blob(h, *size)?, &mut io::sink())?;
    }
    let read = t.elapsed().as_secs_f64();
    let on_disk = allocated(&root.join("blobs"))?;
    println!(
        "{name:>24}: {:>6} files {:>8.1} MiB -> {:>7.1} MiB compressed ({:.3}), {:>7.1} MiB allocated ({:.3}) | put {:>6.2}s = {:>6.0} MiB/s, {:>6.0} files/s | re-put (all present) {:.3}s | read back {:>6.0} MiB/s",
        stats.blobs_added,
        mib(stats.bytes_read),
        mib(stats.bytes_written),
        stats.bytes_written as f64 / stats.bytes_read.max(1) as f64,
        mib(on_disk),
        on_disk as f64 / stats.bytes_read.max(1) as f64,
        put,
        mib(stats.bytes_read) / put,
        stats.blobs_added as f64 / put,
        recheck,
        mib(read_back) / read,
    );
    // Stores are left for the temp dir's cleanup at the end: deleting thousands of
    // files here would slow the next measurement's file creation (ext4 scans recently
    // freed inodes when allocating).
    Ok(())
}

fn level_survey(samples: &[(&str, Vec<u8>)], files: &[Item]) -> Result<(), Box<dyn Error>> {
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|(_, p, _)| fs::read(p))
        .collect::<Result<_, _>>()?;
    let raw: usize = contents.iter().map(Vec::len).sum();
    for level in [1, 3, 6] {
        let mut c = zstd::bulk::Compressor::new(level)?;
        let t = Instant::now();
        let mut out = 0;
        for data in &contents {
            out += c.compress(data)?.len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:>16} level {level:>2}: ratio {:.3}, compress {:>6.0} MiB/s (one thread, file by file)",
            format!("site {} files", contents.len()),
            out as f64 / raw as f64,
            mib(raw as u64) / secs,
        );
    }
    for (name, data) in samples {
        for level in [-5, -1, 1, 3, 6] {
            let t = Instant::now();
            let c = zstd::bulk::compress(data, level)?;
            let secs = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut d = Vec::with_capacity(data.len());
            zstd::stream::read::Decoder::new(&c[..])?.read_to_end(&mut d)?;
            let dsecs = t.elapsed().as_secs_f64();
            println!(
                "{name:>16} level {level:>2}: ratio {:.3}, compress {:>6.0} MiB/s, decompress {:>6.0} MiB/s (one thread)",
                c.len() as f64 / data.len() as f64,
                mib(data.len() as u64) / secs,
                mib(data.len() as u64) / dsecs,
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let work = tempfile::tempdir()?;
    let src = work.path().join("src");

    let small = src.join("small");
    fs::create_dir_all(&small)?;
    for i in 0..1000u64 {
        fs::write(small.join(format!("page{i}.html")), text(15_000, i))?;
    }
    let big_text = src.join("big-text");
    fs::create_dir_all(&big_text)?;
    let big = text(64 << 20, 1_000_001);
    fs::write(big_text.join("bundle.js"), &big)?;
    let big_random = src.join("big-random");
    fs::create_dir_all(&big_random)?;
    let noise = random(64 << 20, 7);
    fs::write(big_random.join("video.bin"), &noise)?;
    let site = src.join("site");
    relstore_fixtures::generate(&site, &relstore_fixtures::SiteSpec::new(20_000, 42))?;

    let dirs: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    if std::env::args().any(|a| a == "--levels") {
        level_survey(
            &[("64 MiB text", big), ("64 MiB random", noise)],
            &items_under(&site)?,
        )?;
        for dir in &dirs {
            level_survey(&[], &items_under(dir)?)?;
        }
    }

    measure("1000 x 15 KB text", &items_under(&small)?, work.path())?;
    measure("64 MiB text", &items_under(&big_text)?, work.path())?;
    measure("64 MiB random", &items_under(&big_random)?, work.path())?;
    measure("fixtures site 20k files", &items_under(&site)?, work.path())?;
    for dir in &dirs {
        let name = dir
            .file_name()
            .map_or("dir".into(), |n| n.to_string_lossy().into_owned());
        measure(&name, &items_under(dir)?, work.path())?;
    }
    Ok(())
}
