//! Hashing throughput: one file through `hash_file` (buffered and mmap paths), and a
//! whole generated tree through `scan` without a stat cache (walk + parallel hash).

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use relstore_core::progress::NoProgress;
use relstore_fixtures::{generate, SiteSpec};
use relstore_scan::{hash_file, scan, ScanOptions};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("hash_file");
    for size in [4 << 10, 64 << 10, 4 << 20, 64 << 20] {
        let p = dir.path().join(format!("f{size}"));
        let mut f = std::fs::File::create(&p).expect("create");
        let block: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        f.write_all(&block).expect("write");
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &p, |b, p| {
            b.iter(|| hash_file(p).expect("hash"))
        });
    }
    g.finish();

    let site = dir.path().join("site");
    let summary = generate(&site, &SiteSpec::new(5_000, 1)).expect("generate");
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(summary.bytes));
    let opts = ScanOptions::default();
    g.bench_function("cold-5000-files", |b| {
        b.iter(|| scan(&site, &opts, &NoProgress).expect("scan"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
