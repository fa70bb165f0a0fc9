#!/usr/bin/env python3
"""End-to-end comparison over SSH: relstore vs `rsync -a --link-dest` release deploys.

Regenerates the SSH table of BENCHMARKS.md (printed as markdown on stdout; with
--update also written between the e2e-ssh markers of BENCHMARKS.md).

    python3 benches/e2e_ssh.py [--files 100000] [--runs 3] [--work /tmp/relstore-ssh-bench]
                               [--update] [--no-build] [--local-store]

Starts its own throwaway OpenSSH server on 127.0.0.1 (fresh host and user keys, as in
crates/ssh/tests/sshd/mod.rs), generates a tree with relstore-fixtures, and then, per
run, against fresh empty targets, deploys the same sequence of source states with both
tools, alternating (relstore first in even runs, rsync first in odd ones), each command
started with the source in the page cache and after a `sync` (see `settle`):

  first push (v1) -> no-change push (v1 again) -> 1% change -> 10% change

relstore: `relstore push SRC ssh://root@127.0.0.1:PORT/ROOT --json --no-local-store`
          (release build; the local release store, a client-side zstd copy of every
          release that rsync has no counterpart of, is left out unless --local-store).
rsync:    `rsync -a [--link-dest=../PREV] SRC/ root@127.0.0.1:ROOT/releases/NAME/` over
          `ssh -p PORT -i KEY`, then `ssh ... 'ln -sfn releases/NAME current.tmp &&
          mv -T current.tmp current'` (the classic atomic release-dir deploy).

Bytes on the wire: an nftables table (installed from Debian if `nft` is missing) counts
every IP packet on the output hook whose TCP source or destination port is our sshd's
port — one counter per direction, so each packet is counted once, only our server's
connections count and other traffic on lo does not. The figure is IP bytes (SSH payload
+ TCP/IP headers + pure ACKs), read before and after each command: the same counter
for both tools. (sshd's own "Transferred: sent N, received M bytes" line is not
written when the client ends the connection with a disconnect message, as both ssh
and relstore do, so it cannot be used.)

sshd runs the stock Debian SFTP server (/usr/lib/openssh/sftp-server: one process per
SFTP channel) and `SetEnv SHLVL=1`, which keeps bash from sourcing root's ~/.bashrc for
commands run over ssh (here it runs `pyenv init`, ~0.2 s per command: rsync would pay
it twice per deploy, relstore once per SFTP channel).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def warm(path):
    sh(f"find {path} -type f -print0 | xargs -0 -P2 cat > /dev/null")


def settle(path):
    """Before each timed command: the source in the page cache, and no dirty data of
    the previous command waiting to be written back. rsync does not fsync, so without
    the `sync` the 1.5 GB it just wrote would be flushed during the next command —
    which, if it is relstore, fsyncs every object and would pay for rsync's writes."""
    warm(path)
    sh("sync")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """A throwaway sshd on 127.0.0.1 (see crates/ssh/tests/sshd/mod.rs)."""

    def __init__(self, base):
        self.dir = tempfile.mkdtemp(prefix="sshd-", dir=base)
        d = self.dir
        os.chmod(d, 0o755)
        os.makedirs("/run/sshd", exist_ok=True)
        for k in ("host_ed25519", "user_ed25519"):
            sh(f"ssh-keygen -q -t ed25519 -N '' -C relstore-bench -f {d}/{k}")
        shutil.copy(f"{d}/user_ed25519.pub", f"{d}/authorized_keys")
        self.key = f"{d}/user_ed25519"
        self.log = f"{d}/sshd.log"
        self.known_hosts = f"{d}/known_hosts"
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        for _ in range(5):
            self.port = free_port()
            cfg = f"{d}/sshd_config"
            with open(cfg, "w") as f:
                f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp {SFTP_SERVER}
MaxSessions 64
MaxStartups 100:30:200
SetEnv SHLVL=1
LogLevel VERBOSE
""")
            sh(f"{SSHD} -t -f {cfg}")
            if os.path.exists(self.log):
                os.remove(self.log)
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", cfg, "-E", self.log],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                if "Server listening" in self.read_log():
                    break
                time.sleep(0.02)
            if self.proc.poll() is None and "Server listening" in self.read_log():
                break
            self.stop()
            if "Address already in use" not in self.read_log():
                sys.exit(f"sshd did not start:\n{self.read_log()}")
        else:
            sys.exit("sshd could not bind a free port")
        scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(self.port), "127.0.0.1"],
                              capture_output=True, check=True)
        with open(self.known_hosts, "wb") as f:
            f.write(scan.stdout)
        self.ssh = (f"ssh -p {self.port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} "
                    f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes")
        self.dest = f"{self.user}@127.0.0.1"

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def url(self, path):
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class Wire:
    """nftables byte counters of the TCP traffic to and from one port on lo."""

    def __init__(self, port):
        if not shutil.which("nft"):
            sh("apt-get install -y -qq nftables > /dev/null")
        self.table = f"relstore_bench_{port}"
        rules = f"""table inet {self.table} {{
  chain out {{
    type filter hook output priority 0; policy accept;
    tcp dport {port} counter comment "up"
    tcp sport {port} counter comment "down"
  }}
}}
"""
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)

    def read(self):
        """(bytes to the server, bytes from the server) so far."""
        out = subprocess.run(["nft", "-j", "list", "table", "inet", self.table],
                             capture_output=True, text=True, check=True).stdout
        got = {}
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if rule:
                for e in rule["expr"]:
                    if "counter" in e:
                        got[rule.get("comment")] = e["counter"]["bytes"]
        return got["up"], got["down"]

    def close(self):
        subprocess.run(["nft", "delete", "table", "inet", self.table], check=False)


def timed(cmd, env=None):
    """Wall seconds of a shell command; its stdout. Exits on failure."""
    t = time.perf_counter()
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"failed: {cmd}\n{out.stderr}")
    return secs, out.stdout


def content_index(tree):
    """{(sha1 of content, mode & 0o7555): size} of every non-empty regular file under
    `tree` — relstore's notion of an object (content plus permission bits without the
    write bits), so a mode change counts as new content, as it must be stored anew."""
    import hashlib
    idx = {}
    for d, _, files in os.walk(tree):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p):
                continue
            st = os.lstat(p)
            if st.st_size == 0:
                continue
            h = hashlib.sha1()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            idx[(h.digest(), st.st_mode & 0o7555)] = st.st_size
    return idx


def summary(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt_s(xs):
    m, lo, hi = summary(xs)
    return f"{m:.2f} s ({lo:.2f}–{hi:.2f})"


def fmt_b(n):
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}" if div >= 1e9 else f"{n / div:.1f} {unit}"
    return f"{n} B"


def bins():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "release", "relstore"), os.path.join(target, "release", "relstore-fixtures")


def machine():
    def out(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    model = out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = int(out("awk '/MemTotal/{print $2}' /proc/meminfo") or 0) / 1024 / 1024
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {os.uname().release}; "
            f"{out('ssh -V 2>&1')}; {out('rsync --version | head -1')}")


STATES = [("first push", None), ("no-change push", None),
          ("push after 1% change", 0.01), ("push after 10% change", 0.10)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/relstore-ssh-bench")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the e2e-ssh block of BENCHMARKS.md with the tables")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--local-store", action="store_true",
                    help="let relstore also write its local release store (default: --no-local-store)")
    a = ap.parse_args()

    if not a.no_build:
        sh("cargo build --release -q -p relstore -p relstore-fixtures", cwd=ROOT)
    rel, fix = bins()
    for tool in ("rsync", "ssh", "ssh-keygen", "ssh-keyscan", SSHD, SFTP_SERVER, rel, fix):
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"{tool} is required (apt-get install rsync openssh-server openssh-client)")

    w = a.work
    if os.path.exists(w):
        sh(f"chmod -R u+w {w}; rm -rf {w}")
        time.sleep(40)  # the disk is mounted with discard: let it settle
    os.makedirs(w)
    v1 = f"{w}/v1"
    sh(f"{fix} generate {v1} --files {a.files} --seed 1 > /dev/null")
    nbytes = int(subprocess.run(f"du -sb --apparent-size {v1} | cut -f1", shell=True,
                                capture_output=True, text=True).stdout)

    # Every run deploys the same four source states from its own copy of v1, mutated
    # in place with fixed seeds (so every run pushes identical content).
    for run in range(a.runs):
        sh(f"cp -a {v1} {w}/src-{run}")
    sh("sync")

    # New distinct content of each state (what a change must cost at least).
    probe = f"{w}/probe"
    sh(f"cp -a {v1} {probe}")
    idx = [content_index(probe)]
    new_content = [sum(idx[0].values()), 0]
    for i, (_, frac) in enumerate(STATES[2:]):
        sh(f"{fix} mutate {probe} --fraction {frac} --seed {101 + i} > /dev/null")
        idx.append(content_index(probe))
        new_content.append(sum(size for h, size in idx[-1].items() if h not in idx[-2]))

    sshd = Sshd(w)
    wire = Wire(sshd.port)
    env = dict(os.environ, RELSTORE_STORE_DIR=f"{w}/localstore")
    store_flag = "" if a.local_store else "--no-local-store"
    # results[state] = {"rel": [...], "rs": [...], "rel_up": [...], ...}
    res = [dict(rel=[], rs=[], rel_up=[], rel_down=[], rs_up=[], rs_down=[], phases=[],
                uploaded=[]) for _ in STATES]
    load = [os.getloadavg()[0]]
    try:
        for run in range(a.runs):
            src, cache = f"{w}/src-{run}", f"{w}/cache-{run}"
            store, rs = f"{w}/rel-{run}", f"{w}/rs-{run}"
            os.makedirs(f"{rs}/releases")
            for si, (name, frac) in enumerate(STATES):
                if frac is not None:
                    time.sleep(1)  # mtimes of the change differ from the cached ones
                    sh(f"{fix} mutate {src} --fraction {frac} --seed {101 + si - 2} > /dev/null")
                rname = f"r{si + 1}"

                def relstore():
                    settle(src)
                    before = wire.read()
                    secs, out = timed(
                        f"{rel} push {src} {sshd.url(store)} -i {sshd.key} "
                        f"--known-hosts {sshd.known_hosts} --cache-dir {cache} {store_flag} "
                        f"--release {rname} --json", env=env)
                    after = wire.read()
                    j = json.loads(out)
                    r = res[si]
                    r["rel"].append(secs)
                    r["rel_up"].append(after[0] - before[0])
                    r["rel_down"].append(after[1] - before[1])
                    r["phases"].append(j["phases"])
                    r["uploaded"].append(j["bytes_uploaded"])

                def rsync():
                    settle(src)
                    link = f"--link-dest=../r{si} " if si else ""
                    before = wire.read()
                    secs, _ = timed(
                        f"rsync -a {link}-e '{sshd.ssh}' {src}/ {sshd.dest}:{rs}/releases/{rname}/ && "
                        f"{sshd.ssh} {sshd.dest} 'cd {rs} && ln -sfn releases/{rname} current.tmp "
                        f"&& mv -T current.tmp current'")
                    after = wire.read()
                    r = res[si]
                    r["rs"].append(secs)
                    r["rs_up"].append(after[0] - before[0])
                    r["rs_down"].append(after[1] - before[1])

                # Alternate which tool goes first from run to run.
                for f in ((relstore, rsync) if run % 2 == 0 else (rsync, relstore)):
                    f()
                print(f"run {run + 1}/{a.runs} {name}: relstore {res[si]['rel'][-1]:.2f} s, "
                      f"rsync {res[si]['rs'][-1]:.2f} s", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    finally:
        wire.close()
        sshd.stop()

    lines = [
        f"Tree: {a.files:,} files, {nbytes / 1e9:.2f} GB (relstore-fixtures --seed 1; changes: "
        f"`mutate --fraction 0.01` then `0.10`, each changing, adding and deleting that fraction of "
        f"files). {a.runs} runs, fresh targets each run, tools alternating; median (min–max). "
        f"Machine: {machine()}. Load average during the runs: {min(load):.1f}–{max(load):.1f} "
        f"(other work shared the machine: trust the ratios, measured side by side).",
        "",
        "| push | relstore | rsync --link-dest + ssh swap | ratio relstore/rsync "
        "| new distinct content | relstore bytes sent / received | rsync bytes sent / received "
        "| sent ÷ new content (relstore / rsync) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for si, (name, _) in enumerate(STATES):
        r = res[si]
        ratio = statistics.median(r["rel"]) / statistics.median(r["rs"])
        up_rel, up_rs = statistics.median(r["rel_up"]), statistics.median(r["rs_up"])
        new = new_content[si]
        per_new = f"{up_rel / new:.3f} / {up_rs / new:.3f}" if new else "– (nothing new)"
        lines.append(
            f"| {name} | {fmt_s(r['rel'])} | {fmt_s(r['rs'])} | **{ratio:.2f}×** | {fmt_b(new)} "
            f"| {fmt_b(up_rel)} / {fmt_b(statistics.median(r['rel_down']))} "
            f"| {fmt_b(up_rs)} / {fmt_b(statistics.median(r['rs_down']))} | {per_new} |")
    lines += ["", "relstore's phases (`push --json`, seconds, median per phase; `bytes_uploaded` "
              "is the object content it sent):", "",
              "| push | scan | hash | compare | upload | assemble | swap | total | bytes_uploaded |",
              "|---|---|---|---|---|---|---|---|---|"]
    for si, (name, _) in enumerate(STATES):
        r = res[si]
        cells = [f"{statistics.median(p[k] for p in r['phases']):.3f}"
                 for k in ("scan", "hash", "compare", "upload", "assemble", "swap")]
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {statistics.median(r['rel']):.2f} | {fmt_b(statistics.median(r['uploaded']))} |")
    table = "\n".join(lines)
    print(table)

    if a.update:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        with open(path) as f:
            text = f.read()
        start, end = "<!-- e2e-ssh:start -->", "<!-- e2e-ssh:end -->"
        if start not in text or end not in text:
            sys.exit(f"{path} lacks the {start} / {end} markers")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        with open(path, "w") as f:
            f.write(f"{head}{start}\n{table}\n{end}{tail}")
        print(f"updated {path}", file=sys.stderr)
    sh(f"chmod -R u+w {w}; rm -rf {w}")


if __name__ == "__main__":
    main()
