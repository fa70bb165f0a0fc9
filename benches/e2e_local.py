#!/usr/bin/env python3
"""End-to-end comparison on a local disk: relstore vs b3sum, find, rsync --link-dest
and a full copy (`cp -a`), on generated trees of one or more sizes.

Regenerates the local tables of BENCHMARKS.md (printed as markdown on stdout; with
--update, also written between the e2e-local markers of BENCHMARKS.md).

    python3 benches/e2e_local.py [--files 20000,100000,1000000] [--runs 3] [--work DIR] [--update]

Trees of 1,000,000 files or more are generated with small files only (`--small`) and
measured once (first push, no-change push with peak memory, 1% change), because one
run takes many minutes here.

Each row alternates the two commands (A, B, A, B, ...) in the same run, reads the
source tree right before each timed run (the page cache drops data unused for ~30 s
here), and reports medians with min-max and the ratio A/B. Needs: rsync, b3sum
(Debian package, installed if missing), GNU time (/usr/bin/time).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def timed(cmd, stdout="/dev/null"):
    """Wall seconds and peak RSS (KiB) of a shell command, its stdout sent to `stdout`."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "sh", "-c", f"{cmd} > {stdout}"],
        stderr=subprocess.PIPE, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"failed: {cmd}\n{out.stderr}")
    secs, rss = out.stderr.strip().splitlines()[-1].split()
    return float(secs), int(rss)


def warm(path):
    sh(f"find {path} -type f -print0 | xargs -0 -P2 cat > /dev/null")


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(xs):
    m, lo, hi = summary(xs)
    return f"{m:.2f} s ({lo:.2f}–{hi:.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", default="100000",
                    help="comma-separated tree sizes, e.g. 20000,100000,1000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/relstore-bench")
    ap.add_argument("--update", action="store_true",
                    help="also rewrite the e2e-local block of BENCHMARKS.md")
    a = ap.parse_args()

    sh("cargo build --release -q -p relstore -p relstore-fixtures", cwd=ROOT)
    tdir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    rel = os.path.join(tdir, "release/relstore")
    fix = os.path.join(tdir, "release/relstore-fixtures")
    if not shutil.which("b3sum"):
        sh("apt-get install -y -qq b3sum || cargo install -q b3sum --locked")
    for tool in ("rsync", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (apt-get install rsync time)")

    import contextlib
    import io
    out = io.StringIO()
    for files in [int(x) for x in a.files.split(",")]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            if files >= 1_000_000:
                bench_huge(rel, fix, a.work, files)
            else:
                bench_size(rel, fix, a.work, files, a.runs)
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
        out.write(buf.getvalue())
    if a.update:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        with open(path) as f:
            text = f.read()
        start, end = "<!-- e2e-local:start -->\n", "<!-- e2e-local:end -->"
        i, j = text.index(start) + len(start), text.index(end)
        with open(path, "w") as f:
            f.write(text[:i] + out.getvalue() + text[j:])


def fresh_work(w):
    if os.path.exists(w):
        sh(f"chmod -R u+w {w}; rm -rf {w}")
        time.sleep(40)  # the disk is mounted with discard: let it settle
    os.makedirs(f"{w}/rs")


def bench_huge(rel, fix, w, files):
    """A million-file tree of small files, measured once: first push (vs rsync -a),
    no-change push with peak memory, push after a 1% change (vs rsync --link-dest)."""
    fresh_work(w)
    v1, cache = f"{w}/v1", f"{w}/cache"
    sh(f"{fix} generate {v1} --files {files} --seed 1 --small")
    nbytes = int(sh(f"du -sb --apparent-size {v1} | cut -f1", capture_output=True, text=True).stdout)
    env = f"RELSTORE_STORE_DIR={w}/local-store"
    warm(v1)
    first_s, first_rss = timed(f"{env} {rel} push {v1} {w}/store --release r1 --cache-dir {cache} --json")
    warm(v1)
    rsync_first_s, _ = timed(f"rsync -a {v1}/ {w}/rs/r1/")
    time.sleep(1)
    nc, nc_rss = [], []
    for _ in range(3):
        warm(v1)
        s, r = timed(f"{env} {rel} push {v1} {w}/store --cache-dir {cache} --json")
        nc.append(s)
        nc_rss.append(r)
    sh(f"{fix} mutate {v1} --fraction 0.01 --seed 100")
    time.sleep(1)
    warm(v1)
    ch_s, ch_rss = timed(f"{env} {rel} push {v1} {w}/store --release r2 --cache-dir {cache} --json",
                         stdout=f"{w}/r2.json")
    warm(v1)
    rs_ch_s, _ = timed(f"rsync -a --link-dest={w}/rs/r1 {v1}/ {w}/rs/r2/")
    with open(f"{w}/r2.json") as f:
        ph = json.load(f)["phases"]
    print(f"### {files:,} files, {nbytes / 1e9:.2f} GB (small files, `--small --seed 1`), one run\n")
    print("| what | relstore | rsync | ratio relstore/rsync |")
    print("|---|---|---|---|")
    print(f"| first push | {first_s:.1f} s | {rsync_first_s:.1f} s (`rsync -a`) | **{first_s / rsync_first_s:.2f}×** |")
    print(f"| no-change push (median of 3) | {statistics.median(nc):.2f} s | – | – |")
    print(f"| push after 1% change | {ch_s:.2f} s | {rs_ch_s:.2f} s (`--link-dest`) | **{ch_s / rs_ch_s:.2f}×** |")
    print()
    print("Phases of the 1% change push (s): " + ", ".join(f"{k} {ph[k]:.2f}" for k in
          ["scan", "hash", "compare", "upload", "assemble", "swap"]))
    print()
    m = statistics.median(nc_rss)
    print("| push | max RSS | bytes per file |")
    print("|---|---|---|")
    print(f"| first push | {first_rss * 1024 / 1e6:.0f} MB | {first_rss * 1024 / files:.0f} |")
    print(f"| no-change push | {m * 1024 / 1e6:.0f} MB | {m * 1024 / files:.0f} |")
    print(f"| 1% change push | {ch_rss * 1024 / 1e6:.0f} MB | {ch_rss * 1024 / files:.0f} |")
    print()
    sh(f"chmod -R u+w {w}; rm -rf {w}")


def bench_size(rel, fix, w, files, runs):
    fresh_work(w)
    # Pushes write through to the local release store (the default); keep it here.
    os.environ["RELSTORE_STORE_DIR"] = f"{w}/local-store"
    v1, src, cache = f"{w}/v1", f"{w}/src", f"{w}/cache"
    sh(f"{fix} generate {v1} --files {files} --seed 1")
    a = argparse.Namespace(runs=runs)
    nbytes = int(sh(f"du -sb --apparent-size {v1} | cut -f1", capture_output=True, text=True).stdout)

    # First push (reference store) and a plain copy for rsync.
    warm(v1)
    first_s, first_rss = timed(f"{rel} push {v1} {w}/store --release r1 --cache-dir {cache} --json")
    warm(v1)
    rsync_first_s, _ = timed(f"rsync -a {v1}/ {w}/rs/r1/")

    rows = []
    # 1. Cold hash (no stat cache) vs b3sum -P2.
    A, B = [], []
    for _ in range(a.runs):
        warm(v1)
        A.append(timed(f"{rel} diff {w}/store/manifests/r1.manifest {v1} --no-stat-cache --json")[0])
        warm(v1)
        B.append(timed(f"find {v1} -type f -print0 | xargs -0 -P2 b3sum")[0])
    rows.append(("cold hash, no stat cache (`relstore diff MANIFEST DIR --no-stat-cache`)",
                 A, "`find -print0 \\| xargs -0 -P2 b3sum`", B))

    # 2. No-change push vs a bare stat walk.
    A, B, rss_nochange = [], [], []
    for _ in range(a.runs):
        warm(v1)
        s, r = timed(f"{rel} push {v1} {w}/store --cache-dir {cache} --json")
        A.append(s)
        rss_nochange.append(r)
        warm(v1)
        B.append(timed(f"find {v1} -printf '%s %T@\\n'")[0])
    rows.append(("no-change push", A, "`find -printf '%s %T@\\n'` (stat walk)", B))

    # 3. Push after a 1% change (source mutated in place, stat cache primed before the
    #    change, as in a real deploy) vs rsync -a --link-dest into a new release dir.
    A, B, C, rss_change, phases_change = [], [], [], [], []
    for i in range(a.runs):
        for p in (src, f"{w}/store-run", f"{w}/rs/r2"):
            if os.path.exists(p):
                sh(f"chmod -R u+w {p}; rm -rf {p}")
        sh(f"cp -a {v1} {src}")
        sh(f"cp -al {w}/store {w}/store-run")
        sh(f"{rel} diff {w}/store/manifests/r1.manifest {src} --cache-dir {cache}-src --json",
           stdout=subprocess.DEVNULL)
        time.sleep(1)
        sh(f"{fix} mutate {src} --fraction 0.01 --seed {100 + i}")
        warm(src)
        s, r = timed(f"{rel} push {src} {w}/store-run --release r2 --cache-dir {cache}-src --json",
                     stdout=f"{w}/r2.json")
        A.append(s)
        rss_change.append(r)
        with open(f"{w}/r2.json") as f:
            phases_change.append(json.load(f)["phases"])
        warm(src)
        B.append(timed(f"rsync -a --link-dest={w}/rs/r1 {src}/ {w}/rs/r2/")[0])
        if os.path.exists(f"{w}/copy"):
            sh(f"chmod -R u+w {w}/copy; rm -rf {w}/copy")
        warm(src)
        C.append(timed(f"cp -a {src} {w}/copy")[0])
    rows.append(("push after 1% change (complete hardlinked release)", A,
                 "`rsync -a --link-dest=PREV SRC/ NEW/`", B))
    rows.append(("push after 1% change", A, "full copy `cp -a SRC NEW`", C))

    print(f"### {files:,} files, {nbytes / 1e9:.2f} GB (relstore-fixtures --seed 1); "
          f"{a.runs} runs each, alternating; median (min–max)\n")
    print("| what | relstore | comparison | comparison time | ratio relstore/comparison |")
    print("|---|---|---|---|---|")
    for name, A, bname, B in rows:
        ratio = statistics.median(A) / statistics.median(B)
        print(f"| {name} | {fmt(A)} | {bname} | {fmt(B)} | **{ratio:.2f}×** |")
    print(f"| first push (all objects) | {first_s:.2f} s | `rsync -a SRC/ NEW/` | {rsync_first_s:.2f} s | {first_s / rsync_first_s:.2f}× |")
    print()
    print("Phases of the 1% change push (seconds, median per phase):\n")
    names = ["scan", "hash", "compare", "upload", "assemble", "swap"]
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    print("| " + " | ".join(f"{statistics.median(p[n] for p in phases_change):.3f}" for n in names) + " |")
    print()
    per_file = lambda kib: kib * 1024 / files
    print("Peak memory (max RSS, /usr/bin/time):\n")
    print("| push | max RSS | bytes per file |")
    print("|---|---|---|")
    print(f"| first push | {first_rss * 1024 / 1e6:.1f} MB | {per_file(first_rss):.0f} |")
    m = statistics.median(rss_nochange)
    print(f"| no-change push | {m * 1024 / 1e6:.1f} MB | {per_file(m):.0f} |")
    m = statistics.median(rss_change)
    print(f"| 1% change push | {m * 1024 / 1e6:.1f} MB | {per_file(m):.0f} |")
    print()
    sh(f"chmod -R u+w {w}; rm -rf {w}")


if __name__ == "__main__":
    main()
