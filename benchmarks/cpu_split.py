"""Where a server's CPU goes: user vs system time per request, side by side.

    python benchmarks/cpu_split.py protocol --size 64
    python benchmarks/cpu_split.py aiohttp --loops uringloop uvloop --rounds 5

run.py reports user + system together; this splits them (from the server's
/proc/<pid>/stat over the load generator's measured window), which is how
the loop's own overhead (user time: dispatch, handlers, the interpreter)
is told apart from the kernel's TCP and io_uring work (system time).  Same
servers (servers.py), same C load generator, pinned the same way; the
loops alternate round by round.  Prints one line per loop with every
round, best first.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import loadgen
from measuring import TICK, process_ticks, rotate

HERE = Path(__file__).resolve().parent
HTTP = ("httptools", "aiohttp")


def one_run(loop, args):
    server = subprocess.Popen(
        ["taskset", "-c", str(args.server_cpu), sys.executable, str(HERE / "servers.py"),
         "--loop", loop, "--workload", args.workload],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().split()[1])
        http = args.workload in HTTP
        gen = subprocess.Popen(
            ["taskset", "-c", str(args.client_cpu), *loadgen.command(
                "http" if http else "echo", port, args.connections, args.size, 0.5,
                args.duration, 10, "Hello, World!" if http else None)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if gen.stdout.readline().strip() != "GO":
            raise RuntimeError("the load generator did not start")
        user0, sys0 = process_ticks(server.pid)
        if gen.stdout.readline().strip() != "END":
            raise RuntimeError("the load generator did not finish")
        user1, sys1 = process_ticks(server.pid)
        gen.stdin.write("quit\n")
        gen.stdin.flush()
        requests = loadgen.parse_result(gen.stdout.readline())["requests"]
        gen.wait()
    finally:
        server.kill()
        server.wait()
    per = 1e6 / TICK / requests
    return (user1 - user0) * per, (sys1 - sys0) * per


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["sock", "streams", "protocol", "buffered", *HTTP])
    parser.add_argument("--loops", nargs="+", default=["uringloop", "uvloop", "asyncio"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    results = {loop: [] for loop in args.loops}
    for rnd in range(args.rounds):
        for loop in rotate(args.loops, rnd):
            results[loop].append(one_run(loop, args))
    print(f"{args.workload}, {args.connections} connections, {args.size} B: "
          "CPU µs per request, user + system = total, each round, best first")
    for loop, runs in results.items():
        runs.sort(key=sum)
        print(f"{loop:10s} " + "   ".join(f"{u:.2f} + {s:.2f} = {u + s:.2f}" for u, s in runs))


if __name__ == "__main__":
    main()
