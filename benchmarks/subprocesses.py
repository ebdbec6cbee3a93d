"""Subprocesses: spawning and piping on uringloop, asyncio's default loop and uvloop.

    python benchmarks/subprocesses.py                          # 5 rounds, 1,000 spawns, 64 MiB
    python benchmarks/subprocesses.py --rounds 2 --spawns 200 --mib 16   # a quick run
    python benchmarks/subprocesses.py --loops asyncio uvloop --cases cat --json

Two cases, each a Markdown table on stdout (progress goes to stderr); with
--json, one JSON object instead: per case its runs, failures, the loops
that do not support subprocesses, and each loop's medians, spreads and
ratios to --baseline (benchmarks/run.py's workload "subprocess" runs this
file that way):

1. spawn: --spawns (default 1,000) sequential
   `await asyncio.create_subprocess_exec("/bin/true")` + `await proc.wait()`
   (no pipes: the child inherits the runner's stdin, stdout and stderr),
   after a warm-up of a twentieth as many.  Per spawn: wall time, and the
   CPU time of the process running the loop (getrusage RUSAGE_SELF, user +
   sys, all its threads: asyncio's child-watcher threads included) - the
   headline - and, apart, the children's (RUSAGE_CHILDREN: what /bin/true's
   exec and exit cost, reaped).

2. cat: --mib (default 64) MiB of random bytes through `cat` with
   `proc.communicate(input=payload)` (stdin and stdout PIPE); the output
   must equal the input.  Timed from the first byte written until
   communicate() returns (cat has exited and been reaped); the spawn is
   outside that window, after a 1 MiB warm-up through another cat.  MiB/s
   (wall), the loop process's CPU per MiB (RUSAGE_SELF) and cat's
   (RUSAGE_CHILDREN).

Each case runs on each loop in a fresh process (this file's role _run),
pinned to --loop-cpu, so nothing one loop or case leaves behind (threads,
handlers, a heap grown by 64 MiB buffers) carries over.  /bin/true inherits
that pinning and runs on the loop's CPU; cat is moved to --child-cpu as soon
as it exists (sched_setaffinity), so the pipe's two ends run side by side.
This process stays on --child-cpu.  Rounds alternate: every round runs every
case on every loop, each round starting with a different loop, so drift on
a shared machine hits all alike.  Tables give the median over rounds, the
spread (half the range, relative to the median) and ratios of medians to
the baseline loop (uvloop unless --baseline says otherwise).

A loop whose create_subprocess_exec() raises NotImplementedError (uringloop
until it has subprocesses) gets a "not supported" row instead of numbers,
is not tried again in later rounds, and does not count as a failure.

A run in which other work took 5% or more of the window on the loop's CPU
(or, for cat, on cat's) is repeated (--retries); the least disturbed attempt
counts and the notes say what remains.  Other work: the CPU's busy time in
/proc/stat (the hypervisor's steal included) less what this process and its
children ran there and 20 ms for its tick sampling, or, where larger, the
loop thread's run delay (schedstat) less its own threads' and children's
CPU.

Roles used above, not meant to be typed:
    subprocesses.py _run --case C --loop K --spawns N --mib M --loop-cpu A --child-cpu B
"""
import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/measuring.py and report.py: the suite's measuring, tables and helpers
from measuring import (CONTENDED, TICK, RunFailed, busy, cpu_seconds, cpu_stat, environment,
                       least_disturbed, role_result, rotate, thread_run_delay)
from report import (contention_notes, fewer_rounds, finish, median_cell, notes_and_failures,
                    plural, progress, ratio_text, ratio_to, saw, section_head, stats)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LOOPS = ["uringloop", "asyncio", "uvloop"]
CASES = ["spawn", "cat"]
MIB = 1 << 20
TRUE = "/bin/true"
# The summary keys of each case: (key, header, decimals, header of its ratio).
COLUMNS = {
    "spawn": [("us_per_spawn", "µs per spawn (wall)", 0, "wall"),
              ("cpu_us_per_spawn", "loop process CPU µs per spawn", 0, "CPU"),
              ("children_cpu_us_per_spawn", "children CPU µs per spawn", 0, None)],
    "cat": [("mib_s", "MiB/s", 0, "MiB/s"),
            ("cpu_ms_per_mib", "loop process CPU ms/MiB", 3, "CPU/MiB"),
            ("children_cpu_ms_per_mib", "cat CPU ms/MiB", 3, None)],
}


class Unsupported(Exception):
    """The loop has no subprocesses: a row that says so, not a failure."""


# -- helpers ------------------------------------------------------------------

def cpu_busy(cpus):
    """[(busy seconds, of them stolen by the hypervisor)] of each CPU, from
    /proc/stat (tick-sampled, 10 ms)."""
    stat = cpu_stat(cpus)
    return [(busy(stat[c]) / TICK, stat[c].steal / TICK) if c in stat else (0.0, 0.0)
            for c in cpus]


class Window:
    """Wall, CPU (self, this thread, reaped children), the loop thread's run
    delay and how busy the two CPUs were, between start() and stop()."""

    def __init__(self, loop_cpu, child_cpu):
        self.cpus = [loop_cpu, child_cpu]

    def _sample(self):
        (busy0, steal0), (busy1, steal1) = cpu_busy(self.cpus)
        return (time.perf_counter(), cpu_seconds(), cpu_seconds(resource.RUSAGE_THREAD),
                cpu_seconds(resource.RUSAGE_CHILDREN), thread_run_delay(),
                busy0, busy1, steal0 + steal1)

    def start(self):
        self.before = self._sample()

    def stop(self, children_on_loop_cpu):
        """children_on_loop_cpu: the children ran on the loop's CPU (spawn:
        /bin/true), else on the child's (cat), which then matters too."""
        after = self._sample()
        wall, cpu, thread, children, wait, busy_loop, busy_child, steal = (
            a - b for a, b in zip(after, self.before))
        # Other work on the loop's CPU: what the CPU was busy with beyond
        # this process (and its children, if there), less the slack of
        # tick sampling.  A lower bound, exact to the nanosecond: the loop
        # thread's run delay less this process's other threads and those
        # children (it was not always runnable while they ran).  On the
        # child's CPU, for cat: busy beyond cat.
        slack = 2 / TICK
        if children_on_loop_cpu:
            others = [busy_loop - cpu - children - slack, wait - (cpu - thread) - children]
        else:
            others = [busy_loop - cpu - slack, wait - (cpu - thread),
                      busy_child - children - slack]
        return {"wall": wall, "cpu": cpu, "children_cpu": children,
                "other_threads_cpu": cpu - thread, "wait": wait, "steal": steal,
                "lost": max(0.0, *others, steal) / wall if wall > 0 else 0.0}


def transport_name(proc):
    kind = type(proc._transport)
    return f"{kind.__module__}.{kind.__qualname__}"


def where_raised(exc):
    """'file.py: Qualified.name' of the frame that raised exc."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    code = tb.tb_frame.f_code
    return f"{Path(code.co_filename).name}: {getattr(code, 'co_qualname', code.co_name)}"


def child_watcher(loop):
    """asyncio's way of learning that a child exited (3.11: the policy's
    child watcher), for the notes; None for other loops."""
    if type(loop).__module__.split(".")[0] != "asyncio":
        return None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return type(asyncio.get_child_watcher()).__name__
        except (AttributeError, NotImplementedError):
            return "pidfd" if hasattr(os, "pidfd_open") else "thread per child"


# -- the role: one case on one loop, in this process ----------------------------

async def spawn_case(loop, args, window):
    async def once():
        proc = await asyncio.create_subprocess_exec(TRUE)
        code = await proc.wait()
        if code != 0:
            raise RunFailed(f"/bin/true exited with status {code}")
        return proc

    for _ in range(max(1, args.spawns // 20)):
        proc = await once()
    window.start()
    for _ in range(args.spawns):
        await once()
    result = window.stop(children_on_loop_cpu=True)
    result["transport"] = transport_name(proc)
    result["spawns"] = args.spawns
    return result


async def through_cat(data, child_cpu, window=None):
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        os.sched_setaffinity(proc.pid, {child_cpu})
    except ProcessLookupError:
        pass
    if window:
        window.start()
    out, _ = await proc.communicate(data)
    result = window.stop(children_on_loop_cpu=False) if window else {}
    if proc.returncode != 0:
        raise RunFailed(f"cat exited with status {proc.returncode}")
    if out != data:
        raise RunFailed(f"cat's output differs from its input ({len(out):,} bytes back "
                        f"of {len(data):,})")
    result["transport"] = transport_name(proc)
    return result


async def cat_case(loop, args, window):
    payload = random.Random(args.mib).randbytes(int(args.mib * MIB))
    await through_cat(payload[:MIB], args.child_cpu)
    result = await through_cat(payload, args.child_cpu, window)
    result["bytes"] = len(payload)
    return result


def role_run(argv):
    parser = argparse.ArgumentParser(prog="subprocesses.py _run")
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--loop", required=True, choices=LOOPS)
    parser.add_argument("--spawns", type=int, required=True)
    parser.add_argument("--mib", type=float, required=True)
    parser.add_argument("--loop-cpu", type=int, required=True)
    parser.add_argument("--child-cpu", type=int, required=True)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from servers import new_loop
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("message", "?")))
    case = {"spawn": spawn_case, "cat": cat_case}[args.case]
    try:
        result = loop.run_until_complete(case(loop, args, Window(args.loop_cpu, args.child_cpu)))
        result["watcher"] = child_watcher(loop)
        if errors:
            raise RunFailed(f"the loop reported {len(errors)} error(s); first: {errors[0]}")
    except NotImplementedError as exc:
        text = f"NotImplementedError{': ' + str(exc) if str(exc) else ''} in {where_raised(exc)}"
        result = {"unsupported": text}
    print(json.dumps(result), flush=True)
    loop.close()


# -- the parent: rounds, loops, tables -----------------------------------------

def run_once(args, case, loop):
    """One case on one loop in a fresh process: its result; Unsupported
    where the loop has no subprocesses."""
    argv = [sys.executable, str(Path(__file__).resolve()), "_run", "--case", case,
            "--loop", loop, "--spawns", str(args.spawns), "--mib", str(args.mib),
            "--loop-cpu", str(args.loop_cpu), "--child-cpu", str(args.child_cpu)]
    # Seconds at the defaults; far beyond that, something hangs.
    timeout = 60 + 0.05 * args.spawns + 1.0 * args.mib
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, cwd=REPO,
                              preexec_fn=lambda: os.sched_setaffinity(0, {args.loop_cpu}))
    except subprocess.TimeoutExpired:
        raise RunFailed(f"{case} on {loop}: timed out after {timeout:.0f} s") from None
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    result = role_result(f"{case} on {loop}", proc.returncode, lines, err[-12:])
    if "unsupported" in result:
        raise Unsupported(result["unsupported"])
    return result


def derive(case, r):
    """The per-round numbers the tables show."""
    if case == "spawn":
        n = r["spawns"]
        r["us_per_spawn"] = r["wall"] / n * 1e6
        r["cpu_us_per_spawn"] = r["cpu"] / n * 1e6
        r["children_cpu_us_per_spawn"] = r["children_cpu"] / n * 1e6
    else:
        mib = r["bytes"] / MIB
        r["mib_s"] = mib / r["wall"]
        r["cpu_ms_per_mib"] = r["cpu"] * 1000 / mib
        r["children_cpu_ms_per_mib"] = r["children_cpu"] * 1000 / mib
    return r


def collect(args, out):
    """Fills out: {case: {"runs": {loop: [result]}, "failures": [text],
    "unsupported": {loop: text}, "repeated": count}}, so that an
    interruption leaves what was done."""
    out.update({case: {"runs": {loop: [] for loop in args.loops}, "failures": [],
                       "unsupported": {}, "repeated": 0} for case in args.cases})
    for rnd in range(args.rounds):
        for case in args.cases:
            for loop in rotate(args.loops, rnd):
                got = out[case]
                if loop in got["unsupported"]:
                    continue
                progress(f"subprocesses: round {rnd + 1}/{args.rounds}, {case} on {loop}")
                try:
                    best = least_disturbed(lambda: run_once(args, case, loop), args.retries, got)
                    best["round"] = rnd + 1
                    got["runs"][loop].append(derive(case, best))
                except Unsupported as exc:
                    got["unsupported"][loop] = str(exc)
                except RunFailed as exc:
                    got["failures"].append(str(exc))


def summarize(runs, case, baseline):
    """Per loop: {loop, runs, and for each column key its median, spread,
    per-round values (key_all) and ratio of medians to the baseline (key_vs,
    None without baseline runs)}."""
    base = runs.get(baseline) or []
    out = []
    for loop, rs in runs.items():
        s = {"loop": loop, "runs": len(rs)}
        if rs:
            for key, *_ in COLUMNS[case]:
                s.update(stats(rs, key))
                s[f"{key}_vs"] = ratio_to(s[key], key, base)
        out.append(s)
    return out


def titles(settings):
    return {
        "spawn": f"spawn: {settings['spawns']:,} sequential create_subprocess_exec(\"/bin/true\") "
                 f"+ wait()",
        "cat": f"cat: {settings['mib']:g} MiB through cat with communicate(input=...)",
    }


def notes(case, part, runs):
    lines = []
    transports = {}
    for loop, rs in runs.items():
        for r in rs:
            name = r["transport"]
            if r.get("watcher"):
                name += f" ({r['watcher']})"
            transports.setdefault(loop, set()).add(name)
    if transports:
        lines.append("transports: " + "; ".join(f"{loop}: {', '.join(sorted(names))}"
                                               for loop, names in transports.items()))
    lost = [r["lost"] for rs in runs.values() for r in rs]
    return lines + contention_notes(lost, part["repeated"], "wall times",
                                    " on the CPUs the case uses")


def as_json(args, env, collected, seconds, interrupted):
    settings = {key: getattr(args, key) for key in (
        "cases", "loops", "rounds", "retries", "spawns", "mib", "loop_cpu", "child_cpu")}
    head = titles(settings)
    cases = {}
    for case, got in collected.items():
        cases[case] = {"title": head[case],
                       "summary": summarize(got["runs"], case, args.baseline),
                       "unsupported": got["unsupported"],
                       "failures": got["failures"],
                       "notes": notes(case, got, got["runs"]),
                       "runs": got["runs"]}
    return {"environment": env, "baseline": args.baseline, "settings": settings,
            "seconds": round(seconds, 1), "interrupted": interrupted, "cases": cases}


def markdown(data, loops=None):
    """The report section: a heading, a table per case, notes.  A list of
    lines; benchmarks/run.py appends them to its report."""
    lines = section_head("Subprocesses", "subprocesses.py", data)
    if "error" in data:
        return lines
    settings, base = data["settings"], data["baseline"]
    loops = loops or settings["loops"]
    lines += [
        f"Each case on each loop in a fresh process pinned to CPU {settings['loop_cpu']}; "
        f"cat moved to CPU {settings['child_cpu']}, /bin/true left on the loop's.  Loop process "
        f"CPU: getrusage(RUSAGE_SELF), user + sys, all its threads, over the timed window; "
        f"children: RUSAGE_CHILDREN (the reaped /bin/true or cat).  Medians over "
        f"{plural(settings['rounds'], 'round')}, ± half the range; ratios are of medians, "
        f"vs {base} (below 1 is better for time and CPU, above 1 for MiB/s).", ""]
    for case, part in data["cases"].items():
        columns = COLUMNS[case]
        rated = [c for c in columns if c[3]]
        lines += [f"#### {part['title']}", ""]
        header = ["loop"] + [h for _, h, _, _ in columns] + [f"{r} vs {base}" for *_, r in rated]
        lines += ["| " + " | ".join(header) + " |",
                  "|---|" + "--:|" * (len(header) - 1)]
        by_loop = {s["loop"]: s for s in part["summary"]}
        blanks = " |" * (len(header) - 2)
        for loop in loops:
            s = by_loop.get(loop)
            if loop in part["unsupported"]:
                lines.append(f"| {loop} | not supported ({part['unsupported'][loop]}) |{blanks}")
                continue
            if s is None or not s["runs"]:
                failed = any(f.startswith(f"{case} on {loop}:") for f in part["failures"])
                status = "**failed**" if failed else "not run"
                lines.append(f"| {loop} | {status} |{blanks}")
                continue
            cells = [median_cell(s, key, digits) for key, _, digits, _ in columns]
            ratios = ["—" if loop == base else ratio_text(s[f"{key}_vs"])
                      for key, *_ in rated]
            short = fewer_rounds(s["runs"], settings["rounds"])
            lines.append(f"| {loop}{short} | " + " | ".join(cells + ratios) + " |")
        lines += notes_and_failures(part)
        lines.append("")
    return lines + saw("subprocesses.py", data)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    parser.add_argument("--rounds", type=int, default=5,
                        help="runs per case and loop, alternating loops (default: 5)")
    parser.add_argument("--spawns", type=int, default=1000,
                        help="spawns of /bin/true measured per run (default: 1000)")
    parser.add_argument("--mib", type=float, default=64,
                        help="MiB sent through cat per run (default: 64)")
    parser.add_argument("--baseline", choices=LOOPS, default="uvloop",
                        help="the loop the ratios compare with (default: uvloop, or the first "
                             "of --loops without it)")
    parser.add_argument("--retries", type=int, default=1,
                        help=f"repeat a run that lost {CONTENDED * 100:.0f}%% or more of its "
                             "window to other work up to this many times (default: 1)")
    parser.add_argument("--loop-cpu", type=int,
                        help="CPU of the process running the loop (default: the first allowed)")
    parser.add_argument("--child-cpu", type=int,
                        help="CPU cat is moved to, and this process's (default: the second)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of Markdown "
                             "(benchmarks/run.py's workload subprocess uses this)")
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if args.loop_cpu is None:
        args.loop_cpu = cpus[0]
    if args.child_cpu is None:
        args.child_cpu = next((c for c in cpus if c != args.loop_cpu), args.loop_cpu)
    if not {args.loop_cpu, args.child_cpu} <= set(cpus):
        parser.error(f"--loop-cpu and --child-cpu must be among {cpus}")
    if args.loop_cpu == args.child_cpu:
        progress("warning: cat shares the loop's CPU")
    if args.rounds < 1 or args.spawns < 1 or args.mib < 1 or args.retries < 0:
        parser.error("rounds, spawns and mib must be positive (mib at least 1), "
                     "retries not negative")
    if not os.access(TRUE, os.X_OK) or not shutil.which("cat"):
        parser.error("needs /bin/true and cat")
    if "uvloop" in args.loops and importlib.util.find_spec("uvloop") is None:
        parser.error("missing package: uvloop")
    if args.baseline not in args.loops:
        args.baseline = args.loops[0]
    args.loops = list(dict.fromkeys(args.loops))
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_run"]:
        return role_run(argv[1:])
    args = parse_args(argv)
    # This process stays off the loop's CPU; each runner is pinned to it.
    os.sched_setaffinity(0, {args.child_cpu})
    env = environment(args.loops)
    started = time.monotonic()
    interrupted = False
    collected = {}
    try:
        collect(args, collected)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: the tables hold the runs finished so far")
    data = as_json(args, env, collected, time.monotonic() - started, interrupted)
    return finish(data, args.json, markdown)


if __name__ == "__main__":
    sys.exit(main())
