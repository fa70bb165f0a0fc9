#!/usr/bin/env python3
"""End-to-end comparison on a local disk: relstore vs b3sum, find and rsync --link-dest.

Regenerates the local table of BENCHMARKS.md (printed as markdown on stdout).

    python3 benches/e2e_local.py [--files 100000] [--runs 3] [--work /tmp/relstore-bench]

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
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/relstore-bench")
    a = ap.parse_args()

    sh("cargo build --release -q -p relstore -p relstore-fixtures", cwd=ROOT)
    rel = os.path.join(ROOT, "target/release/relstore")
    fix = os.path.join(ROOT, "target/release/relstore-fixtures")
    if not shutil.which("b3sum"):
        sh("apt-get install -y -qq b3sum || cargo install -q b3sum --locked")
    for tool in ("rsync", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (apt-get install rsync time)")

    w = a.work
    if os.path.exists(w):
        sh(f"chmod -R u+w {w}; rm -rf {w}")
        time.sleep(40)  # the disk is mounted with discard: let it settle
    os.makedirs(f"{w}/rs")
    v1, src, cache = f"{w}/v1", f"{w}/src", f"{w}/cache"
    sh(f"{fix} generate {v1} --files {a.files} --seed 1")
    files = a.files
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
    A, B, rss_change, phases_change = [], [], [], []
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
    rows.append(("push after 1% change (complete hardlinked release)", A,
                 "`rsync -a --link-dest=PREV SRC/ NEW/`", B))

    print(f"Tree: {files:,} files, {nbytes / 1e9:.2f} GB (relstore-fixtures --seed 1); "
          f"{a.runs} runs each, alternating; median (min–max).\n")
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
    print(f"| first push | {first_rss / 1024:.1f} MiB | {per_file(first_rss):.0f} |")
    m = statistics.median(rss_nochange)
    print(f"| no-change push | {m / 1024:.1f} MiB | {per_file(m):.0f} |")
    m = statistics.median(rss_change)
    print(f"| 1% change push | {m / 1024:.1f} MiB | {per_file(m):.0f} |")
    sh(f"chmod -R u+w {w}; rm -rf {w}")


if __name__ == "__main__":
    main()
