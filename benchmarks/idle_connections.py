"""Resident memory of a server holding many idle connections, per loop.

    python benchmarks/idle_connections.py [--connections 10000] [--loops ...]

For each loop, a fresh server process accepts N connections that then sit
idle; once all are in, it reports its resident set size (VmRSS).  The
clients are plain blocking sockets in this process.
"""
import argparse
import os
import resource
import socket
import sys

import measuring

LOOPS = ("uringloop", "asyncio", "uvloop")


def serve(kind, n, out):
    import asyncio
    if kind == "uringloop":
        import uringloop
        loop = uringloop.new_event_loop()
    elif kind == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    transports = []

    class Idle(asyncio.Protocol):
        def connection_made(self, transport):
            transports.append(transport)

    server = loop.run_until_complete(loop.create_server(Idle, "127.0.0.1", 0, backlog=4096))
    os.write(out, server.sockets[0].getsockname()[1].to_bytes(4, "big"))

    async def settle():
        while len(transports) < n:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)

    loop.run_until_complete(settle())
    with open("/proc/self/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    os.write(out, rss_kib.to_bytes(8, "big"))


def measure(kind, n):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            serve(kind, n, w)
        finally:
            os._exit(0)
    port = int.from_bytes(os.read(r, 4), "big")
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    rss_kib = int.from_bytes(os.read(r, 8), "big")
    os.waitpid(pid, 0)
    for c in clients:
        c.close()
    return rss_kib / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--loops", nargs="*", choices=LOOPS, default=list(LOOPS))
    args = parser.parse_args(argv)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.connections + 64 > hard:          # each process holds one end of each
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.connections} connections")
    measuring.compile_bytecode()
    rss = {kind: measure(kind, args.connections) for kind in args.loops}
    print(f"| loop | RSS with {args.connections:,} idle connections | vs uvloop |")
    print("|---|--:|--:|")
    for kind, mib in rss.items():
        ratio = f"{mib / rss['uvloop']:.2f}x" if "uvloop" in rss else "—"
        print(f"| {kind} | {mib:.1f} MiB | {ratio} |")


if __name__ == "__main__":
    main()
