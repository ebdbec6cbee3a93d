"""How far a loop reads ahead of a protocol that pauses reading.

    python benchmarks/read_ahead.py [--loops asyncio uvloop uringloop uringloop-plain]

A sender far ahead fills a TCP connection; the reading protocol pauses in
every data_received().  Once the socket is full, reading resumes once: the
table gives the bytes the loop took out of the socket in that wake-up,
those delivered to data_received() and those it holds for the paused
protocol (a multishot receive keeps reading until its completions reach
the loop, so uringloop holds what came after the first).  asyncio's loop
and uvloop read once, at most 256 KiB.  "uringloop-plain" is uringloop
without receive bundles (URINGLOOP_DISABLE=recvsend_bundle, as on kernels
before 6.10).  Each loop runs in a fresh process; the median of --rounds
runs is printed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

LOOPS = ("asyncio", "uvloop", "uringloop", "uringloop-plain")
HERE = os.path.dirname(os.path.abspath(__file__))   # servers.py, for the child

CHILD = r"""
import asyncio, json, os, socket, sys

async def main():
    loop = asyncio.get_running_loop()
    delivered = [0]
    holder = []

    class PauseEveryTime(asyncio.Protocol):
        def connection_made(self, transport):
            holder.append(transport)

        def data_received(self, data):
            delivered[0] += len(data)
            holder[0].pause_reading()

    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    sender.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(PauseEveryTime, accepted)
    blob = os.urandom(32 << 20)
    writing = asyncio.ensure_future(loop.sock_sendall(sender, blob))
    await asyncio.sleep(0.1)                  # the socket fills; the reader paused at once
    delivered[0] = 0
    transport.resume_reading()
    await asyncio.sleep(0.3)
    held = sum(len(item) for item in getattr(transport, "_held", None) or ()
               if isinstance(item, bytes))
    print(json.dumps({"delivered": delivered[0], "held": held}))
    writing.cancel()
    transport.close()
    sender.close()

sys.path.insert(0, sys.argv[2])
import servers
loop = servers.new_loop(sys.argv[1])
try:
    loop.run_until_complete(main())
finally:
    loop.close()
"""


def measure(kind):
    env = dict(os.environ)
    env.pop("URINGLOOP_DISABLE", None)
    if kind == "uringloop-plain":
        env["URINGLOOP_DISABLE"] = "recvsend_bundle"
    out = subprocess.run([sys.executable, "-c", CHILD, kind.split("-")[0], HERE], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print("| loop | read in one wake-up, KiB | delivered, KiB | held, KiB |")
    print("|---|--:|--:|--:|")
    for kind in args.loops:
        runs = [measure(kind) for _ in range(args.rounds)]
        delivered = statistics.median(r["delivered"] for r in runs) / 1024
        held = statistics.median(r["held"] for r in runs) / 1024
        total = statistics.median((r["delivered"] + r["held"]) for r in runs) / 1024
        print(f"| {kind} | {total:,.0f} | {delivered:,.0f} | {held:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
