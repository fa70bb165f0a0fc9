//! Manifest encode / decode (with full validation) / diff on a 100,000-entry release.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use relstore_core::diff::diff;
use relstore_core::{ContentHash, Entry, EntryKind, Manifest, ReleaseName};

/// A site-like manifest: 100 dirs of 1,000 files, names like `section-17/page-0421.html`.
fn manifest(files: usize, salt: u64) -> Manifest {
    let mut entries = Vec::with_capacity(files + files / 1000 + 1);
    for d in 0..files.div_ceil(1000) {
        entries.push(Entry {
            path: format!("section-{d}").into_bytes(),
            kind: EntryKind::Dir { mode: 0o755 },
        });
        for f in 0..1000.min(files - d * 1000) {
            // 1% of files differ between salts.
            let content = if f % 100 == 0 { salt } else { 0 };
            let h = blake3::hash(format!("{d}/{f}/{content}").as_bytes());
            entries.push(Entry {
                path: format!("section-{d}/page-{f:04}.html").into_bytes(),
                kind: EntryKind::File {
                    size: 10_000 + f as u64,
                    hash: ContentHash::from(h),
                    mode: 0o644,
                },
            });
        }
    }
    let name = ReleaseName::parse("bench").expect("valid name");
    Manifest::new(&name, 0, entries)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest");
    for files in [10_000usize, 100_000] {
        let m = manifest(files, 1);
        let encoded = m.encode().expect("encode");
        g.throughput(Throughput::Elements(files as u64));
        g.bench_with_input(BenchmarkId::new("encode", files), &m, |b, m| {
            b.iter(|| m.encode().expect("encode"))
        });
        g.bench_with_input(
            BenchmarkId::new("decode+validate", files),
            &encoded,
            |b, e| b.iter(|| Manifest::decode(e, Some("bench")).expect("valid manifest")),
        );
        let other = manifest(files, 2);
        g.bench_with_input(
            BenchmarkId::new("diff-1pct", files),
            &(m, other),
            |b, (x, y)| b.iter(|| diff(&x.entries, &y.entries)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
