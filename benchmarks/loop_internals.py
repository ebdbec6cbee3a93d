"""Loop internals side by side: uringloop, asyncio's default loop, uvloop.

Each case runs on the three loops in turn, alternated over several rounds;
the table shows the median CPU time per operation (process CPU time, which
stays stable when wall-clock throughput swings on a shared machine), the
spread, and each loop's ratio to uvloop.

    python benchmarks/loop_internals.py [--rounds 5] [--scale 1.0] [--cases ...]

benchmarks/run.py runs this file with --json to put these cases in its report.
"""
import argparse
import asyncio
import json
import statistics
import sys
import threading
import time

import uvloop

import uringloop

LOOPS = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
    "uringloop": uringloop.new_event_loop,
}


def call_soon_batch(loop, n):
    """n callbacks queued at once, then run."""
    count = [0]

    def cb():
        count[0] += 1

    for _ in range(n):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert count[0] == n


def call_soon_chain(loop, n):
    """Each callback schedules the next: one loop iteration per call."""
    left = [n]

    def cb():
        left[0] -= 1
        if left[0]:
            loop.call_soon(cb)
        else:
            loop.stop()

    loop.call_soon(cb)
    loop.run_forever()


def sleep0(loop, n):
    """await asyncio.sleep(0): a task step plus one poll of the kernel."""
    async def main():
        for _ in range(n):
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def timer_churn(loop, n):
    """n timers at spread deadlines, half of them cancelled."""
    fired = [0]

    def cb():
        fired[0] += 1

    now = loop.time()
    handles = [loop.call_at(now + (i % 97) * 1e-4, cb) for i in range(n)]
    for h in handles[::2]:
        h.cancel()
    loop.call_at(now + 0.05, loop.stop)   # well after the last timer, even at ms resolution
    loop.run_forever()
    assert fired[0] == n - len(handles[::2]), (type(loop), fired[0], n, loop.time() - now)


def threadsafe(loop, n, threads=4):
    """n calls split over 4 threads into a running loop."""
    done = loop.create_future()
    left = [n]

    def cb():
        left[0] -= 1
        if not left[0]:
            done.set_result(None)

    def producer(k):
        for _ in range(k):
            loop.call_soon_threadsafe(cb)

    # Shares that add up to n exactly, or `done` would never resolve.
    workers = [threading.Thread(target=producer, args=(n // threads + (i < n % threads),))
               for i in range(threads)]
    for w in workers:
        w.start()
    loop.run_until_complete(done)
    for w in workers:
        w.join()


CASES = {
    "call_soon (batch)": (call_soon_batch, 200_000),
    "call_soon (chained)": (call_soon_chain, 100_000),
    "sleep(0) iteration": (sleep0, 50_000),
    "call_at churn, 50% cancelled": (timer_churn, 100_000),
    "call_soon_threadsafe x4 threads": (threadsafe, 100_000),
}


def nop_round_trip(n):
    """uringloop only: one NOP through the ring per iteration, its
    completion dispatched to an op record that queues the next."""
    loop = uringloop.new_event_loop()
    ring, table = loop._ring, loop._ops

    class Nop:
        __slots__ = ("left",)

        def __init__(self):
            self.left = n

        def complete(self, res, flags):
            self.left -= 1
            if self.left:
                ring.prep_nop(table.add(self))
            else:
                loop.stop()

    loop.call_soon(lambda: ring.prep_nop(table.add(Nop())))
    started = time.process_time()
    loop.run_forever()
    took = time.process_time() - started
    loop.close()
    return took / n


def measure(kind, case, n):
    loop = LOOPS[kind]()
    try:
        fn = CASES[case][0]
        fn(loop, max(1, n // 20))                  # warm up
        started = time.process_time()
        fn(loop, n)
        return (time.process_time() - started) / n
    finally:
        loop.close()


def collect(cases, kinds, rounds, scale):
    """{(case, kind): [seconds per operation, one per round]}.  Each round
    starts with a different loop, so none is always first after a switch."""
    results = {(case, kind): [] for case in cases for kind in kinds}
    for rnd in range(rounds):
        order = kinds[rnd % len(kinds):] + kinds[:rnd % len(kinds)]
        for case in cases:
            n = int(CASES[case][1] * scale)
            for kind in order:
                print(f"\rround {rnd + 1}/{rounds}: {case} on {kind}" + " " * 20,
                      end="", file=sys.stderr, flush=True)
                results[case, kind].append(measure(kind, case, n))
    print("\r" + " " * 79 + "\r", end="", file=sys.stderr, flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    parser.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--loops", nargs="*", choices=list(LOOPS), default=list(LOOPS))
    parser.add_argument("--json", action="store_true",
                        help="print the per-round seconds per operation as JSON instead of a table")
    args = parser.parse_args(argv)

    results = collect(args.cases, args.loops, args.rounds, args.scale)
    if args.json:
        nops = []
        if "uringloop" in args.loops:
            nops = [nop_round_trip(int(100_000 * args.scale)) for _ in range(args.rounds)]
        json.dump({"cases": [{"case": case, "loop": kind, "seconds_per_op": results[case, kind]}
                             for case in args.cases for kind in args.loops],
                   "uringloop_nop_round_trip": nops}, sys.stdout)
        print()
        return
    if set(args.loops) != set(LOOPS):
        parser.error("the table needs all three loops; use --json for a subset")

    print(f"CPU time per operation, median of {args.rounds} rounds (spread = max/min)\n")
    print("| case | asyncio | uvloop | uringloop | uringloop / uvloop | uringloop / asyncio |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        med = {k: statistics.median(results[case, k]) for k in LOOPS}
        cells = [f"{med[k] * 1e9:.0f} ns (±{max(results[case, k]) / min(results[case, k]):.2f})"
                 for k in LOOPS]
        print(f"| {case} | {' | '.join(cells)} | {med['uringloop'] / med['uvloop']:.2f}x "
              f"| {med['uringloop'] / med['asyncio']:.2f}x |")
    nops = [nop_round_trip(int(100_000 * args.scale)) for _ in range(args.rounds)]
    print(f"\nuringloop NOP round trip (prep, enter, reap, dispatch to an op record): "
          f"{statistics.median(nops) * 1e9:.0f} ns CPU (median of {args.rounds})")


if __name__ == "__main__":
    main()
