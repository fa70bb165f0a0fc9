#!/usr/bin/env python3
"""End-to-end comparison over SSH: relstore (helper mode and SFTP mode) vs `rsync -az
--link-dest` and `rsync -a --link-dest` release deploys, on loopback and through a
throttled link.

Regenerates the SSH tables of BENCHMARKS.md (printed as markdown on stdout; with
--update also written between the e2e-ssh markers of BENCHMARKS.md).

    python3 benches/e2e_ssh.py [--files 20000] [--runs 1] [--work /tmp/relstore-ssh-bench]
                               [--helper auto|on|off] [--net loopback,proxy]
                               [--rate 100] [--delay 25] [--update] [--no-build]
                               [--bin-dir DIR] [--local-store] [--settle 40]

(`--files 100000 --runs 3` is the full-size run; the default finishes in about ten
minutes on two cores.)

Starts its own throwaway OpenSSH server on 127.0.0.1 (fresh host and user keys, as in
crates/ssh/tests/sshd/mod.rs), generates a tree with relstore-fixtures, and then, per
network and run, against fresh empty targets, deploys the same sequence of source
states with every tool, in an order that rotates from state to state, each command
started with the source in the page cache and after a `sync` (see `settle`):

  first push (v1) -> no change (v1 again) -> 1% rewrite (`mutate --fraction 0.01`)
  -> 10% rewrite (`--fraction 0.10`) -> 10% edits (`mutate --edit 0.1`)
  -> sitewide edit (`--edit 1.0`: a template change touching every page)

relstore helper: `relstore push SRC ssh://USER@127.0.0.1:PORT/ROOT --helper require --json`
          (the local release store on: patches are made against the previous
          content of a path, read from it). The server finds `relstore` on its PATH
          (sshd's `SetEnv PATH=…`, a wrapper that records the helper's CPU time with
          /usr/bin/time), so the one-time upload of the executable is not measured.
          Skipped (with `--helper auto`, the default) when `relstore push --help` does
          not mention `--helper`.
relstore SFTP: the same with `--helper off` (when the flag exists) and
          `--no-local-store` (unless --local-store: rsync has no counterpart of it).
rsync:    `rsync -az|-a [--link-dest=../PREV] SRC/ USER@127.0.0.1:ROOT/releases/NAME/`
          over `ssh -p PORT -i KEY`, then `ssh ... 'ln -sfn releases/NAME current.tmp &&
          mv -T current.tmp current'` (the classic atomic release-dir deploy).

Networks: `loopback` connects to sshd directly; `proxy` goes through
benches/netem_proxy.py (a TCP proxy with --rate Mbit/s per direction and --delay ms
each way; default 100 Mbit/s and 25 ms, a CI runner far from its server): every tool
uses the proxy's port (ssh/rsync `-p`, relstore's ssh://…:PORT, and a known_hosts entry
for [127.0.0.1]:PORT).

Bytes on the wire: an nftables table (installed from Debian if `nft` is missing) counts
every IP packet on the output hook whose TCP source or destination port is our sshd's
port — one counter per direction, so each packet is counted once, only our server's
connections count and other traffic on lo does not (through the proxy, that is the
proxy–sshd leg, which carries the same bytes). The figure is IP bytes (SSH payload +
TCP/IP headers + pure ACKs), read before and after each command: the same counter for
every tool. (sshd's own "Transferred: sent N, received M bytes" line is not written
when the client ends the connection with a disconnect message, as both ssh and
relstore do, so it cannot be used.)

sshd runs the stock Debian SFTP server (/usr/lib/openssh/sftp-server: one process per
SFTP channel) and `SetEnv SHLVL=1`, which keeps bash from sourcing root's ~/.bashrc for
commands run over ssh (here it runs `pyenv init`, ~0.2 s per command: rsync would pay
it twice per deploy, relstore once per SFTP channel or helper).
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

    def __init__(self, base, server_path):
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
SetEnv SHLVL=1 PATH={server_path}
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
        self.host_key_line = scan.stdout.decode()
        with open(self.known_hosts, "w") as f:
            f.write(self.host_key_line)
        self.dest = f"{self.user}@127.0.0.1"

    def trust_port(self, port):
        """Adds the server's host key for [127.0.0.1]:PORT (a proxy in front of it)."""
        line = self.host_key_line.replace(f"[127.0.0.1]:{self.port} ", f"[127.0.0.1]:{port} ")
        with open(self.known_hosts, "a") as f:
            f.write(line)

    def ssh(self, port):
        """The ssh command (for rsync -e) reaching this server through `port`."""
        return (f"ssh -p {port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} "
                f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes")

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def url(self, path, port):
        return f"ssh://{self.user}@127.0.0.1:{port}{path}"

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


def bins(bin_dir):
    if not bin_dir:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        bin_dir = os.path.join(target, "release")
    bin_dir = os.path.abspath(bin_dir)
    return os.path.join(bin_dir, "relstore"), os.path.join(bin_dir, "relstore-fixtures")


def machine():
    def out(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    model = out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = int(out("awk '/MemTotal/{print $2}' /proc/meminfo") or 0) / 1024 / 1024
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {os.uname().release}; "
            f"{out('ssh -V 2>&1')}; {out('rsync --version | head -1')}")


# Source states, each applied to the previous one: (name, `relstore-fixtures mutate` args).
STATES = [
    ("first push", None),
    ("no change", None),
    ("1% rewrite", "--fraction 0.01"),
    ("10% rewrite", "--fraction 0.10"),
    ("10% edits", "--edit 0.1"),
    ("sitewide edit", "--edit 1.0"),
]

# The tools compared: key, label.
TOOLS = [
    ("helper", "relstore helper"),
    ("sftp", "relstore SFTP"),
    ("sftp_z", "relstore SFTP + zlib@openssh.com"),
    ("rsync_z", "rsync -az"),
    ("rsync", "rsync -a"),
]


def mutate_cmd(fix, src, si):
    return f"{fix} mutate {src} {STATES[si][1]} --seed {101 + si} > /dev/null"


def helper_support(rel):
    """Whether this relstore has helper mode (`push --help` mentions `--helper`)."""
    out = subprocess.run([rel, "push", "--help"], capture_output=True, text=True)
    return "--helper" in out.stdout


def server_bin(w, rel):
    """A directory for the server's PATH holding `relstore`: a wrapper that runs the real
    executable under /usr/bin/time, appending its user and system CPU seconds to a log."""
    d = f"{w}/server-bin"
    os.makedirs(d, exist_ok=True)
    log = f"{w}/helper-cpu.log"
    timer = shutil.which("time") or "/usr/bin/time"
    with open(f"{d}/relstore", "w") as f:
        if os.path.exists(timer):
            f.write(f'#!/bin/sh\nexec {timer} -a -o {log} -f "%U %S" {rel} "$@"\n')
        else:
            f.write(f'#!/bin/sh\nexec {rel} "$@"\n')
    os.chmod(f"{d}/relstore", 0o755)
    return d, log


def cpu_total(log):
    """Helper CPU seconds (user + system) recorded so far."""
    total = 0.0
    try:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    try:
                        total += float(parts[0]) + float(parts[1])
                    except ValueError:
                        pass  # "Command exited with non-zero status" lines
    except FileNotFoundError:
        pass
    return total


class Proxy:
    """benches/netem_proxy.py in front of sshd."""

    def __init__(self, w, to_port, rate, delay):
        self.stats = f"{w}/proxy-stats.json"
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "benches", "netem_proxy.py"),
             "--to", f"127.0.0.1:{to_port}", "--rate", str(rate), "--delay", str(delay),
             "--stats", self.stats], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"netem_proxy did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def read(self):
        """(up, down) payload bytes so far, once no connection is open (at most 5 s)."""
        deadline = time.time() + 5
        while True:
            try:
                with open(self.stats) as f:
                    s = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                s = {"up": 0, "down": 0, "active": 1}
            if s["active"] == 0 or time.time() > deadline:
                return s["up"], s["down"]
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class Bench:
    """One benchmark session: the binaries, the server, the counters and the results."""

    def __init__(self, a, w, rel, fix, tools):
        self.a, self.w, self.rel, self.fix, self.tools = a, w, rel, fix, tools
        self.helper_flag = helper_support(rel)
        self.prev = None
        self.states = [int(x) for x in a.states.split(",")] if a.states else range(len(STATES))
        bindir, self.cpu_log = server_bin(w, rel)
        path = f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self.sshd = Sshd(w, path)
        self.wire = Wire(self.sshd.port)
        self.proxy = None
        # res[net][tool][state] = {"t": [...], "up": [...], "down": [...], ...}
        self.res = {}
        self.load = [os.getloadavg()[0]]

    def close(self):
        self.wire.close()
        if self.proxy:
            self.proxy.stop()
        self.sshd.stop()

    def port(self, net):
        if net == "loopback":
            return self.sshd.port
        if not self.proxy:
            self.proxy = Proxy(self.w, self.sshd.port, self.a.rate, self.a.delay)
            self.sshd.trust_port(self.proxy.port)
        return self.proxy.port

    def record(self, net, tool, si, secs, before, after, **extra):
        r = self.res.setdefault(net, {}).setdefault(tool, {}).setdefault(si, {})
        r.setdefault("t", []).append(secs)
        r.setdefault("up", []).append(after[0] - before[0])
        r.setdefault("down", []).append(after[1] - before[1])
        for k, v in extra.items():
            r.setdefault(k, []).append(v)

    def relstore(self, net, run, si, tool, src):
        """One relstore push (helper or SFTP mode) of `src` as release r{si+1}."""
        w, port = self.w, self.port(net)
        seq = f"{net}-{run}-{tool}"
        helper = tool == "helper"
        if helper:
            mode = "--helper require"
        else:
            mode = "--helper off" if self.helper_flag else ""
        store = "" if helper or self.a.local_store else "--no-local-store"
        env = dict(os.environ, RELSTORE_STORE_DIR=f"{w}/localstore-{seq}")
        # SSH transport compression: on only for sftp_z (the benchmark override).
        env["RELSTORE_SSH_COMPRESSION"] = "yes" if tool == "sftp_z" else "no"
        settle(src)
        before, cpu = self.wire.read(), cpu_total(self.cpu_log)
        secs, out = timed(
            f"{self.rel} push {src} {self.sshd.url(f'{w}/{seq}', port)} -i {self.sshd.key} "
            f"--known-hosts {self.sshd.known_hosts} --cache-dir {w}/cache-{seq} {mode} {store} "
            f"--release r{si + 1} --json", env=env)
        after = self.wire.read()
        j = json.loads(out)
        self.record(net, tool, si, secs, before, after, phases=j["phases"],
                    uploaded=j["bytes_uploaded"], cpu=cpu_total(self.cpu_log) - cpu)
        return secs, before, after

    def rsync(self, net, run, si, tool, src):
        """One rsync deploy of `src` into releases/r{si+1}, then the swap of `current`."""
        ssh = self.sshd.ssh(self.port(net))
        dest = f"{self.w}/{net}-{run}-{tool}"
        os.makedirs(f"{dest}/releases", exist_ok=True)
        flags = "-az" if tool == "rsync_z" else "-a"
        link = f"--link-dest=../{self.prev} " if self.prev else ""
        name = f"r{si + 1}"
        settle(src)
        before = self.wire.read()
        secs, _ = timed(
            f"rsync {flags} {link}-e '{ssh}' {src}/ {self.sshd.dest}:{dest}/releases/{name}/ && "
            f"{ssh} {self.sshd.dest} 'cd {dest} && ln -sfn releases/{name} current.tmp "
            f"&& mv -T current.tmp current'")
        after = self.wire.read()
        self.record(net, tool, si, secs, before, after)
        return secs, before, after

    def sequence(self, net, run, v1):
        """Every state with every tool, on fresh targets, from a fresh copy of v1."""
        src = f"{self.w}/src-{net}-{run}"
        sh(f"cp -a {v1} {src}")
        for si, (name, mutation) in enumerate(STATES):
            if si not in self.states:
                continue
            if mutation:
                time.sleep(1)  # mtimes of the change differ from the cached ones
                sh(mutate_cmd(self.fix, src, si))
            self.prev = None if si == self.states[0] else self.prev
            # Rotate which tool goes first from state to state and run to run.
            k = (si + run) % len(self.tools)
            for tool in self.tools[k:] + self.tools[:k]:
                push = self.rsync if tool.startswith("rsync") else self.relstore
                secs, before, after = push(net, run, si, tool, src)
                print(f"{net} run {run + 1}/{self.a.runs} {name}: {tool} {secs:.2f} s, "
                      f"{fmt_b(after[0] - before[0])} up / {fmt_b(after[1] - before[1])} down",
                      file=sys.stderr, flush=True)
            self.prev = f"r{si + 1}"
        self.load.append(os.getloadavg()[0])
        # Free the disk for the next sequence, then let the discards settle.
        sh(f"chmod -R u+w {self.w}/*-{net}-{run}* {self.w}/{net}-{run}-* 2>/dev/null; "
           f"rm -rf {self.w}/*-{net}-{run}* {self.w}/{net}-{run}-*")
        sh("sync")
        time.sleep(self.a.settle)


def med(r, key):
    return statistics.median(r[key]) if r and r.get(key) else None


def ratio(x, y):
    return f"**{x / y:.2f}×**" if x is not None and y else "–"


def cell_time(r):
    return fmt_s(r["t"]) if r else "–"


def cell_bytes(r):
    return f"{fmt_b(med(r, 'up'))} / {fmt_b(med(r, 'down'))}" if r else "–"


def total(r):
    return med(r, "up") + med(r, "down") if r else None


def bytes_table(res, net, new_content):
    lines = [
        "| push | new distinct content | relstore helper ↑/↓ | relstore SFTP ↑/↓ | rsync -az ↑/↓ "
        "| rsync -a ↑/↓ | helper ÷ rsync -az | SFTP ÷ rsync -az |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for si, (name, _) in enumerate(STATES):
        r = {t: res.get(t, {}).get(si) for t, _ in TOOLS}
        lines.append(
            f"| {name} | {fmt_b(new_content[si])} | {cell_bytes(r['helper'])} "
            f"| {cell_bytes(r['sftp'])} | {cell_bytes(r['rsync_z'])} | {cell_bytes(r['rsync'])} "
            f"| {ratio(total(r['helper']), total(r['rsync_z']))} "
            f"| {ratio(total(r['sftp']), total(r['rsync_z']))} |")
    return lines


def time_table(res):
    lines = [
        "| push | relstore helper | relstore SFTP | rsync -az | rsync -a | helper ÷ rsync -az "
        "| helper ÷ rsync -a | SFTP ÷ rsync -az | SFTP ÷ rsync -a |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for si, (name, _) in enumerate(STATES):
        r = {t: res.get(t, {}).get(si) for t, _ in TOOLS}
        t = {k: med(v, "t") for k, v in r.items()}
        lines.append(
            f"| {name} | {cell_time(r['helper'])} | {cell_time(r['sftp'])} "
            f"| {cell_time(r['rsync_z'])} | {cell_time(r['rsync'])} "
            f"| {ratio(t['helper'], t['rsync_z'])} | {ratio(t['helper'], t['rsync'])} "
            f"| {ratio(t['sftp'], t['rsync_z'])} | {ratio(t['sftp'], t['rsync'])} |")
    return lines


def phases_table(res, nets):
    lines = [
        "| network | mode | push | scan | hash | compare | upload | assemble | swap | total "
        "| bytes_uploaded | helper CPU on the server |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for net in nets:
        for tool in ("helper", "sftp"):
            for si, (name, _) in enumerate(STATES):
                r = res.get(net, {}).get(tool, {}).get(si)
                if not r:
                    continue
                cells = [f"{statistics.median(p[k] for p in r['phases']):.3f}"
                         for k in ("scan", "hash", "compare", "upload", "assemble", "swap")]
                cpu = f"{med(r, 'cpu'):.2f} s" if tool == "helper" else "–"
                lines.append(f"| {net} | {tool} | {name} | " + " | ".join(cells) +
                             f" | {med(r, 't'):.2f} | {fmt_b(med(r, 'uploaded'))} | {cpu} |")
    return lines


def compression_table(res, nets):
    """relstore SFTP without and with zlib@openssh.com, per network and push."""
    lines = [
        "| network | push | SFTP ↑/↓ | SFTP + zlib ↑/↓ | bytes zlib ÷ plain | SFTP time "
        "| SFTP + zlib time | time zlib ÷ plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for net in nets:
        for si, (name, _) in enumerate(STATES):
            r = {t: res.get(net, {}).get(t, {}).get(si) for t in ("sftp", "sftp_z")}
            if not r["sftp"] or not r["sftp_z"]:
                continue
            lines.append(
                f"| {net} | {name} | {cell_bytes(r['sftp'])} | {cell_bytes(r['sftp_z'])} "
                f"| {ratio(total(r['sftp_z']), total(r['sftp']))} | {cell_time(r['sftp'])} "
                f"| {cell_time(r['sftp_z'])} | {ratio(med(r['sftp_z'], 't'), med(r['sftp'], 't'))} |")
    return lines


def report(a, b, nbytes, new_content, nets):
    helper_note = ("relstore helper: `--helper require`, `relstore` on the server's PATH, local "
                   "release store on (the source of patch bases)" if "helper" in b.tools else
                   "relstore helper: not measured (this relstore has no `--helper`)")
    lines = [
        f"Tree: {a.files:,} files, {nbytes / 1e9:.2f} GB (relstore-fixtures --seed 1; states in "
        f"order: first push, no change, `mutate --fraction 0.01`, `--fraction 0.10` (changing, "
        f"adding and deleting that fraction of files), `mutate --edit 0.1`, `--edit 1.0` (small "
        f"in-place edits to that fraction of text files)). {a.runs} run(s) per network, fresh "
        f"targets each run, tools in rotating order; median (min–max). {helper_note}; relstore "
        f"SFTP: {'--helper off, ' if b.helper_flag else ''}"
        f"{'local release store on' if a.local_store else '--no-local-store'}. Proxy: "
        f"benches/netem_proxy.py, {a.rate:g} Mbit/s per direction, {a.delay:g} ms each way. "
        f"Machine: {machine()}. Load average during the runs: {min(b.load):.1f}–{max(b.load):.1f} "
        f"(other work shared the machine: trust the ratios, measured side by side).",
        "",
        f"Bytes on the wire (IP bytes to / from sshd, {nets[0]}; ratios of the totals):",
        "",
    ]
    lines += bytes_table(b.res.get(nets[0], {}), nets[0], new_content)
    for net in nets:
        title = ("loopback" if net == "loopback" else
                 f"through the proxy ({a.rate:g} Mbit/s, {a.delay:g} ms each way)")
        lines += ["", f"Time, {title}:", ""]
        lines += time_table(b.res.get(net, {}))
    lines += ["", "relstore's phases (`push --json`, seconds, median) and the helper's CPU time "
              "on the server (user + system, all helper processes of the push):", ""]
    lines += phases_table(b.res, nets)
    if "sftp_z" in b.tools:
        lines += ["", "SSH transport compression on plain SFTP (`RELSTORE_SSH_COMPRESSION=yes`):", ""]
        lines += compression_table(b.res, nets)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--work", default="/tmp/relstore-ssh-bench")
    ap.add_argument("--helper", choices=("auto", "on", "off"), default="auto",
                    help="measure relstore's helper mode: auto (when `push --help` has "
                         "--helper), on (fail without it), off")
    ap.add_argument("--net", default="loopback,proxy",
                    help="comma-separated networks: loopback, proxy")
    ap.add_argument("--rate", type=float, default=100.0, help="proxy rate, Mbit/s per direction")
    ap.add_argument("--delay", type=float, default=25.0, help="proxy one-way delay, ms")
    ap.add_argument("--update", action="store_true",
                    help="rewrite the e2e-ssh block of BENCHMARKS.md with the tables")
    ap.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    ap.add_argument("--bin-dir", help="where relstore and relstore-fixtures are "
                                      "(default: target/release; implies --no-build)")
    ap.add_argument("--local-store", action="store_true",
                    help="let relstore's SFTP mode also write its local release store")
    ap.add_argument("--settle", type=float, default=40.0,
                    help="seconds to wait after deleting a sequence's trees (discard)")
    ap.add_argument("--tools", help="comma-separated tools (default: helper,sftp,rsync_z,rsync; "
                                    "sftp_z is relstore SFTP with zlib@openssh.com compression)")
    ap.add_argument("--states", help="comma-separated state indexes to push (default: all; "
                                     "0 first push, 3 10%% rewrite); skipped states are not applied")
    a = ap.parse_args()
    nets = [n for n in a.net.split(",") if n]
    if not nets or any(n not in ("loopback", "proxy") for n in nets):
        sys.exit("--net takes loopback, proxy or both")

    if not a.no_build and not a.bin_dir:
        sh("cargo build --release -q -p relstore -p relstore-fixtures", cwd=ROOT)
    rel, fix = bins(a.bin_dir)
    for tool in ("rsync", "ssh", "ssh-keygen", "ssh-keyscan", SSHD, SFTP_SERVER, rel, fix):
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"{tool} is required (apt-get install rsync openssh-server openssh-client)")
    tools = ([t for t in a.tools.split(",")] if a.tools else
             [t for t, _ in TOOLS if t != "sftp_z"])
    if any(t not in dict(TOOLS) for t in tools):
        sys.exit(f"--tools takes {', '.join(dict(TOOLS))}")
    has_helper = helper_support(rel)
    if a.helper == "on" and not has_helper:
        sys.exit(f"{rel} has no --helper option: build a relstore with helper mode")
    if (a.helper == "off" or not has_helper) and "helper" in tools:
        tools.remove("helper")
        if a.helper == "auto":
            print("relstore has no --helper: helper mode not measured", file=sys.stderr)

    w = a.work
    if os.path.exists(w):
        sh(f"chmod -R u+w {w}; rm -rf {w}")
        time.sleep(a.settle)  # the disk is mounted with discard: let it settle
    os.makedirs(w)
    v1 = f"{w}/v1"
    sh(f"{fix} generate {v1} --files {a.files} --seed 1 > /dev/null")
    nbytes = int(subprocess.run(f"du -sb --apparent-size {v1} | cut -f1", shell=True,
                                capture_output=True, text=True).stdout)

    # New distinct content of each state (what a change must cost at least).
    probe = f"{w}/probe"
    sh(f"cp -a {v1} {probe}")
    idx = [content_index(probe), content_index(probe)]
    new_content = [sum(idx[0].values()), 0]
    for si in range(2, len(STATES)):
        sh(mutate_cmd(fix, probe, si))
        idx.append(content_index(probe))
        new_content.append(sum(size for h, size in idx[-1].items() if h not in idx[-2]))
    sh(f"rm -rf {probe}")

    b = Bench(a, w, rel, fix, tools)
    try:
        for net in nets:
            for run in range(a.runs):
                b.sequence(net, run, v1)
    finally:
        b.close()

    table = report(a, b, nbytes, new_content, nets)
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
