"""One echo or HTTP case, measured on variants of the loops side by side:
the A/B bench for a lever.

    python benchmarks/lab.py --workload protocol --connections 1 --size 1048576 --rounds 5 \\
        bundles=uringloop 'plain=uringloop:URINGLOOP_DISABLE=recvsend_bundle' uvloop=uvloop

Each variant is LABEL=LOOP[:VAR=VALUE[;VAR=VALUE...]]: a loop run.py knows
(uringloop, asyncio, uvloop, or floor, the C echo server) and environment
variables for its server process only, such as URINGLOOP_DISABLE (a
feature masked) or URINGLOOP_RING (other ring sizes).  The variants take
turns round by round, in a rotating order, through run.py's own
measurement (a fresh server pinned to one CPU, the C load generator on the
other, a round repeated while other work disturbs it).  The table gives
medians over the rounds and each variant's CPU per request relative to
the first one that measured.

--perf DIR records each server with `perf record -g` into DIR/LABEL-N.data,
for `perf report -i ...`: where a variant's CPU goes.
"""
import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

import loadgen
import measuring
import report
import run


def parse_variant(text):
    """LABEL=LOOP[:VAR=VALUE[;VAR=VALUE...]] -> (label, loop, env)."""
    label, sep, rest = text.partition("=")
    loop, _, settings = rest.partition(":")
    if not sep or not label or loop not in run.LOOPS + [run.FLOOR]:
        raise argparse.ArgumentTypeError(f"{text!r}: want LABEL=LOOP[:VAR=VALUE;...] with "
                                         f"LOOP one of {', '.join(run.LOOPS + [run.FLOOR])}")
    env = {}
    for setting in filter(None, settings.split(";")):
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{setting!r}: want VAR=VALUE")
        env[name] = value
    return label, loop, env


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", type=parse_variant, metavar="LABEL=LOOP[:ENV]")
    parser.add_argument("--workload", default="protocol", choices=run.ECHO + run.HTTP)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=report.parse_size, default=64, help="echo message bytes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--perf", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    if len({label for label, _, _ in args.variants}) != len(args.variants):
        parser.error("each variant needs a label of its own")
    if run.FLOOR in (loop for _, loop, _ in args.variants) and args.workload not in run.ECHO:
        parser.error("the floor serves only the echo workloads")
    return args


@contextlib.contextmanager
def environment(env):
    """os.environ with `env` added, for the server spawned inside."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def server_command(original, perf, label, rnd, case, loop, settings):
    """run.py's command for the server, under `perf record` with --perf."""
    command = original(case, loop, settings)
    if perf is None:
        return command
    return ["perf", "record", "-q", "-g", "-o", str(perf / f"{label}-{rnd + 1}.data"), "--",
            *command]


def measure(args):
    """{label: [outcome per round]}."""
    # run.py's settings, for what lab.py does not choose
    settings = run.parse_args(["--duration", str(args.duration), "--warmup", str(args.warmup),
                               "--rounds", str(args.rounds)])
    case = run.Case(args.workload, args.connections,
                    None if args.workload in run.HTTP else args.size)
    loadgen.binary()
    if any(loop == run.FLOOR for _, loop, _ in args.variants):
        loadgen.floor_binary()
    if args.perf:
        args.perf.mkdir(parents=True, exist_ok=True)
    measuring.compile_bytecode()
    os.sched_setaffinity(0, {settings.client_cpu})
    results = {label: [] for label, _, _ in args.variants}
    progress = run.Progress(len(args.variants) * args.rounds)
    original = run.server_command
    try:
        with tempfile.TemporaryDirectory(prefix="uringloop-lab-") as scratch:
            for rnd in range(args.rounds):
                for label, loop, env in measuring.rotate(args.variants, rnd):
                    run.server_command = functools.partial(server_command, original,
                                                           args.perf, label, rnd)
                    with environment(env):
                        results[label].append(run.measured(case, loop, rnd, settings,
                                                           scratch, progress))
                    progress.step()
    finally:
        run.server_command = original
        progress.clear()
    return case, results


def table(case, results):
    """Medians per variant; CPU relative to the first variant that measured
    (named in the heading, so a failed first variant cannot mislead)."""
    medians = {label: statistics.median(o["cpu_us"] for o in outcomes if o["ok"])
               for label, outcomes in results.items() if any(o["ok"] for o in outcomes)}
    base = next(iter(medians), None)
    lines = [f"{case.label}, medians over rounds; CPU relative to {base}", "",
             f"| variant | CPU µs/request | vs {base} | requests/s | p50 µs | p99 µs "
             "| peak RSS MiB | rounds |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for label, outcomes in results.items():
        ok = [o for o in outcomes if o["ok"]]
        if not ok:
            lines.append(f"| {label} | failed: {outcomes[0]['error'].splitlines()[0]} "
                         f"| | | | | | 0 |")
            continue
        cpu = [o["cpu_us"] for o in ok]
        median = medians[label]
        spread = (max(cpu) - min(cpu)) / 2 / median
        lines.append(
            f"| {label} | {median:.2f} ±{spread:.0%} | {median / medians[base]:.3f}x "
            f"| {statistics.median(o['rps'] for o in ok):,.0f} "
            f"| {statistics.median(o['p50_us'] for o in ok):,.0f} "
            f"| {statistics.median(o['p99_us'] for o in ok):,.0f} "
            f"| {max(o['rss_mib'] for o in ok):.1f} | {len(ok)} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    try:
        case, results = measure(args)
    except loadgen.BuildError as exc:
        sys.exit(str(exc))
    print(table(case, results))


if __name__ == "__main__":
    main()
