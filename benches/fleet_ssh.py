#!/usr/bin/env python3
"""Fleet push vs single-host push over SSH (the fleet table of BENCHMARKS.md).

Starts HOSTS loopback sshd (one per host, each with its own store root), reached
through ssh config aliases web1..webN, plus one more root ("solo") on the first
server. All roots start from the same generated tree. Then, per run, the tree is
rewritten by `relstore-fixtures mutate --fraction F` and pushed

  - to solo alone (`relstore push SRC solo:ROOT`), and
  - to the fleet (`relstore push SRC web1:ROOT1 ... webN:ROOTN`),

each with its own stat cache (so neither profits from the other's hashing), and the
times are compared. The bytes check is independent of relstore's report: the sizes
of the files that appeared under each root's objects/ during the push (what that host
lacked) must add up to the report's bytes_uploaded, host by host and in total.

  python3 benches/fleet_ssh.py --files 20000 --hosts 8 --fraction 0.01 --runs 3
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_ssh import ROOT, Sshd, sh  # noqa: E402


def objects(root):
    """{relative path: size} of the object files of a store root."""
    out = {}
    base = os.path.join(root, "objects")
    for d, _, files in os.walk(base):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, base)] = os.lstat(p).st_size
    return out


def run(cmd, env):
    """(wall seconds, report, client CPU seconds) of one relstore command."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, json.loads(p.stdout), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--helper", action="store_true",
                    help="run the relstore helper on the servers (RELSTORE_HELPER=require); "
                         "default: SFTP only")
    a = ap.parse_args()
    rel = os.path.join(a.bin_dir, "relstore")
    fix = os.path.join(a.bin_dir, "relstore-fixtures")
    w = a.work or tempfile.mkdtemp(prefix="relstore-fleet-bench-")
    os.makedirs(w, exist_ok=True)
    bin_dir = os.path.abspath(a.bin_dir)
    servers = [Sshd(w, f"{bin_dir}:/usr/local/bin:/usr/bin:/bin") for _ in range(a.hosts)]
    try:
        cfg = os.path.join(w, "ssh_config")
        known = os.path.join(w, "known_hosts")
        with open(cfg, "w") as f, open(known, "w") as k:
            for i, s in enumerate(servers):
                f.write(f"Host web{i + 1}\n  HostName 127.0.0.1\n  Port {s.port}\n"
                        f"  User {s.user}\n  IdentityFile {s.key}\n\n")
                k.write(s.host_key_line)
            s = servers[0]
            f.write(f"Host solo\n  HostName 127.0.0.1\n  Port {s.port}\n"
                    f"  User {s.user}\n  IdentityFile {s.key}\n\n")
        env = dict(os.environ, RELSTORE_SSH_CONFIG=cfg, RELSTORE_KNOWN_HOSTS=known,
                   RELSTORE_HELPER="require" if a.helper else "off", RELSTORE_STORE_DIR=os.path.join(w, "store"))
        env.pop("SSH_AUTH_SOCK", None)
        roots = [os.path.join(w, f"root{i + 1}") for i in range(a.hosts)]
        solo = os.path.join(w, "solo")
        fleet = [f"web{i + 1}:{r}" for i, r in enumerate(roots)]
        src = os.path.join(w, "src")
        sh(f"{fix} generate {src} --files {a.files} --seed 1 > /dev/null")
        solo_env = dict(env, RELSTORE_CACHE_DIR=os.path.join(w, "cache-solo"))
        fleet_env = dict(env, RELSTORE_CACHE_DIR=os.path.join(w, "cache-fleet"))
        run([rel, "push", src, f"solo:{solo}", "--json", "--no-local-store"], solo_env)
        run([rel, "push", src, *fleet, "--json"], fleet_env)
        rows = []
        for r in range(a.runs):
            sh(f"{fix} mutate {src} --fraction {a.fraction} --seed {200 + r} > /dev/null")
            before = [objects(x) for x in roots]
            order = [("solo", solo_env), ("fleet", fleet_env)]
            if r % 2:
                order.reverse()
            got = {}
            for kind, e in order:
                cmd = ([rel, "push", src, f"solo:{solo}", "--json", "--no-local-store"]
                       if kind == "solo" else [rel, "push", src, *fleet, "--json"])
                got[kind] = run(cmd, e)
            rep = got["fleet"][1]
            lacked = []
            for i, x in enumerate(roots):
                after = objects(x)
                new = sum(sz for p, sz in after.items() if p not in before[i])
                lacked.append(new)
                reported = rep["hosts"][i]["bytes_uploaded"]
                if new != reported:
                    sys.exit(f"{fleet[i]}: {new} new object bytes on disk, report says {reported}")
            if sum(lacked) != rep["bytes_uploaded"]:
                sys.exit(f"total: {sum(lacked)} != {rep['bytes_uploaded']}")
            rows.append((got["solo"][0], got["fleet"][0], got["solo"][1]["bytes_uploaded"],
                         rep["bytes_uploaded"], lacked,
                         (rep["scan_seconds"], rep["stage_seconds"], rep["activate_seconds"]),
                         got["solo"][2], got["fleet"][2]))
        solo_t = [x[0] for x in rows]
        fleet_t = [x[1] for x in rows]
        mode = "helper" if a.helper else "SFTP"
        print(f"{a.files} files, {a.hosts} hosts, {mode}, --fraction {a.fraction}, {a.runs} runs "
              f"(alternating order), binaries in {a.bin_dir}")
        print()
        print("| push | median s (min-max) | bytes uploaded (per run) |")
        print("|---|---|---|")
        print(f"| one host | {statistics.median(solo_t):.2f} ({min(solo_t):.2f}-{max(solo_t):.2f}) "
              f"| {', '.join(str(x[2]) for x in rows)} |")
        print(f"| {a.hosts} hosts (fleet) | {statistics.median(fleet_t):.2f} "
              f"({min(fleet_t):.2f}-{max(fleet_t):.2f}) | "
              f"{', '.join(str(x[3]) for x in rows)} (= sum of new objects/ bytes per host: "
              f"checked) |")
        phases = [x[5] for x in rows]
        print(f"| fleet phases (median s) | scan {statistics.median(p[0] for p in phases):.2f}, "
              f"stage {statistics.median(p[1] for p in phases):.2f}, "
              f"activate {statistics.median(p[2] for p in phases):.2f} | |")
        print(f"| client CPU s (median) | one host {statistics.median(x[6] for x in rows):.2f}, "
              f"fleet {statistics.median(x[7] for x in rows):.2f} | |")
        print()
        print(f"ratio fleet/one host (medians): "
              f"{statistics.median(fleet_t) / statistics.median(solo_t):.2f}x")
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
