#!/usr/bin/env python3
"""First push to a local target against `rsync -a SRC/ DEST/ && sync`, alternating.

    python3 benches/first_push_local.py [--files 20000] [--runs 3] [--work DIR] [--bin PATH]

Each run writes into a fresh directory (no delete between runs: the disk here is
mounted with `discard` and writes right after a big delete run 2-3x slower); every
timed command ends with `sync` so both pay for getting the data to disk (relstore
makes its objects durable before the swap; rsync does not without it). The source
is read right before each timed run (the page cache drops data unused for ~30 s).
Prints the median (min-max) of each and the ratio of the medians, for relstore
with the local release store write-through (the default) and without it
(`--no-local-store`).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


def timed(cmd):
    t = time.monotonic()
    r = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stderr}")
    return time.monotonic() - t


def warm(path):
    sh(f"find {path} -type f -print0 | xargs -0 -P2 cat > /dev/null")


def fmt(xs):
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/relstore-first-push")
    ap.add_argument("--bin", help="relstore binary (default: build target/release/relstore)")
    a = ap.parse_args()
    tdir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if a.bin is None:
        sh(f"cd {ROOT} && cargo build --release -q -p relstore -p relstore-fixtures")
    rel = a.bin or os.path.join(tdir, "release/relstore")
    fix = os.path.join(tdir, "release/relstore-fixtures")
    w = a.work
    if os.path.exists(w):
        sh(f"chmod -R u+w {w}; rm -rf {w}")
        time.sleep(40)
    os.makedirs(w)
    src = f"{w}/src"
    sh(f"{fix} generate {src} --files {a.files} --seed 1 > /dev/null")
    sh("sync")
    kinds = {
        "relstore": lambda i: f"{rel} push {src} {w}/store{i} --release r1 --cache-dir {w}/cache{i} --store-dir {w}/blobs{i} && sync",
        "relstore --no-local-store": lambda i: f"{rel} push {src} {w}/nstore{i} --release r1 --cache-dir {w}/ncache{i} --no-local-store && sync",
        "rsync -a + sync": lambda i: f"rsync -a {src}/ {w}/rs{i}/ && sync",
    }
    times = {k: [] for k in kinds}
    for i in range(a.runs):
        for k, cmd in kinds.items():
            warm(src)
            sh("sync")
            times[k].append(timed(cmd(i)))
            print(f"run {i} {k}: {times[k][-1]:.2f} s", file=sys.stderr)
    nbytes = int(subprocess.run(f"du -sb --apparent-size {src} | cut -f1", shell=True,
                                capture_output=True, text=True).stdout)
    base = statistics.median(times["rsync -a + sync"])
    print(f"### First push, {a.files:,} files, {nbytes / 1e9:.2f} GB; {a.runs} runs each, alternating; median (min–max)\n")
    print("| command | time | ratio vs `rsync -a` + `sync` |")
    print("|---|---|---|")
    for k, xs in times.items():
        print(f"| {k} | {fmt(xs)} | **{statistics.median(xs) / base:.2f}×** |")
    sh(f"chmod -R u+w {w}; rm -rf {w}")


if __name__ == "__main__":
    main()
