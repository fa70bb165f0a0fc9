#!/usr/bin/env python3
"""A TCP proxy that behaves like a slow, distant link: a rate limit per direction and
a one-way delay, with byte counters per direction.

    python3 benches/netem_proxy.py --to 127.0.0.1:2222 [--listen 127.0.0.1:0]
                                   [--rate 100] [--delay 25] [--stats FILE]

Every connection accepted on --listen is forwarded to --to. Each direction is one
link shared by all connections (as a real uplink is): a chunk occupies it for
len × 8 / rate seconds after the chunks before it, then arrives --delay ms later. So
a 64 kB write at 100 Mbit/s with 25 ms each way arrives ~30 ms after it was sent, a
round trip costs at least 50 ms, and no tool can move more than the rate however many
connections or channels it opens. A connection's queue is bounded (twice the link's
bandwidth-delay product plus 1 MB); when it is full the proxy stops reading from that
side, so the sender's TCP window fills as on a real link instead of the proxy
buffering a whole upload. --rate 0 means no rate limit, --delay 0 no delay.

Counters (payload bytes, without TCP/IP headers) are written as JSON to --stats after
every connection ends and at most twice a second while data moves:
{"up": bytes towards --to, "down": bytes back, "connections": n, "active": n}.
The first line on stdout is `listening on HOST:PORT`.

The benchmarks use it so that both tools go through the same link: for ssh and
rsync `-p PORT`, for relstore an ssh://…:PORT target (and a known_hosts entry for
[127.0.0.1]:PORT with the server's host key).
"""
import argparse
import asyncio
import json
import os
import sys
import time

CHUNK = 16 << 10


class Link:
    """One direction of the emulated link: when the next chunk can start."""

    def __init__(self, rate_bps, delay_s):
        self.rate = rate_bps
        self.delay = delay_s
        self.free_at = 0.0
        self.bytes = 0

    def schedule(self, n, now):
        """Arrival time of a chunk of n bytes handed to the link at `now`."""
        self.bytes += n
        if self.rate <= 0:
            return now + self.delay
        start = max(now, self.free_at)
        self.free_at = start + n * 8 / self.rate
        return self.free_at + self.delay

    def queue_limit(self):
        bdp = self.rate / 8 * self.delay if self.rate > 0 else 0
        return int(2 * bdp) + (1 << 20)


class Stats:
    def __init__(self, path, up, down):
        self.path, self.up, self.down = path, up, down
        self.connections = 0
        self.active = 0
        self.written_at = 0.0
        self.dirty = False

    def write(self, force=False):
        if not self.path:
            return
        now = time.monotonic()
        if not force and (not self.dirty or now - self.written_at < 0.5):
            return
        data = {"up": self.up.bytes, "down": self.down.bytes,
                "connections": self.connections, "active": self.active}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)
        self.written_at, self.dirty = now, False


async def pump(reader, writer, link, stats):
    """Copies reader → writer through `link`, ending with a half-close."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    limit = link.queue_limit()
    queued = 0
    room = asyncio.Event()
    room.set()

    async def deliver():
        nonlocal queued
        while True:
            at, data = await queue.get()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
            queued -= len(data)
            if queued < limit:
                room.set()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            await room.wait()
            data = await reader.read(CHUNK)
            if not data:
                break
            queued += len(data)
            if queued >= limit:
                room.clear()
            await queue.put((link.schedule(len(data), loop.time()), data))
            stats.dirty = True
            stats.write()
    except (ConnectionError, OSError):
        pass
    await queue.put((loop.time() + link.delay, None))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def handle(client_r, client_w, target, up, down, stats):
    host, port = target
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
    except OSError as e:
        print(f"cannot connect to {host}:{port}: {e}", file=sys.stderr)
        client_w.close()
        return
    stats.connections += 1
    stats.active += 1
    try:
        await asyncio.gather(pump(client_r, server_w, up, stats),
                             pump(server_r, client_w, down, stats))
    finally:
        for w in (server_w, client_w):
            w.close()
        stats.active -= 1
        stats.write(force=True)


def host_port(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--to", required=True, type=host_port, help="HOST:PORT to forward to")
    ap.add_argument("--listen", default="127.0.0.1:0", type=host_port)
    ap.add_argument("--rate", type=float, default=100.0, help="Mbit/s per direction (0: no limit)")
    ap.add_argument("--delay", type=float, default=25.0, help="one-way delay in ms")
    ap.add_argument("--stats", help="file the byte counters are written to (JSON)")
    a = ap.parse_args()
    up = Link(a.rate * 1e6, a.delay / 1000)
    down = Link(a.rate * 1e6, a.delay / 1000)
    stats = Stats(a.stats, up, down)
    stats.write(force=True)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, a.to, up, down, stats), *a.listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
