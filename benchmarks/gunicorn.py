"""aiohttp under gunicorn: uringloop's worker against aiohttp's uvloop worker.

    python benchmarks/gunicorn.py                    # 2 workers, 3 rounds (under a minute)
    python benchmarks/gunicorn.py --loops uringloop uvloop asyncio --rounds 5
    python benchmarks/gunicorn.py --workers 4 --server-cpus 0 1 2 3 --client-cpu 4
    python benchmarks/gunicorn.py --loops uringloop asyncio uvloop --json

Each run starts gunicorn (`python -m gunicorn benchmarks.gunicorn:app`: the
hello-world application below, no access log) with --workers workers of
one class: uringloop.gunicorn.GunicornWebWorker (uringloop),
aiohttp.worker.GunicornUVLoopWebWorker (uvloop) or
aiohttp.worker.GunicornWebWorker (asyncio).  gunicorn, its workers with it,
is pinned to the server CPUs (by default CPU 0: on a two-CPU machine the two
workers share it), the C load generator (benchmarks/loadgen.c: HTTP/1.1
keep-alive GETs, one in flight per connection, every body checked) to the
client CPU.  Once every worker has answered a GET the generator connects,
warms up and measures.

Requests/s are the generator's.  CPU per request: the user + system time of
gunicorn's master and workers (/proc/<pid>/stat) over the generator's
measured window, per request completed.  The workers' split is each
worker's share of that CPU, largest first: the workers share one listening
socket, and the split shows how evenly they shared its connections.  Busy:
gunicorn's and the generator's CPU time over the window, per CPU they were
pinned to.  The worker classes alternate, each round starting with a
different one; the table gives medians over rounds, ± half the range, and
ratios to uvloop's.

The Markdown table goes to stdout, progress to stderr; with --json, one
JSON object instead: every run, the failures, the notes and each worker
class's medians, spreads and ratios to uvloop's (benchmarks/run.py's
workload "gunicorn" runs this file that way).

A run in which other work took 5% or more of the window is repeated
(--retries); the least disturbed attempt counts and the notes say what
remains.  Other work: the server CPUs' busy time in /proc/stat (user, nice,
system) beyond gunicorn's CPU time, less a tick of rounding per process
and CPU, per server CPU; the generator's run delay (schedstat); or the
hypervisor's steal on any of the CPUs, whichever is largest.
"""
import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if __name__ == "__main__":
    # This script's neighbours (sys.path[0] when it runs); gunicorn's workers
    # import this module for app() alone.
    import loadgen
    import measuring
    import report

HOST = "127.0.0.1"
HELLO = "Hello, World!"
WORKER_CLASSES = {
    "uringloop": "uringloop.gunicorn.GunicornWebWorker",
    "uvloop": "aiohttp.worker.GunicornUVLoopWebWorker",
    "asyncio": "aiohttp.worker.GunicornWebWorker",
}
BASELINE = "uvloop"
# The summary's medians; of the first two also spreads and ratios to BASELINE.
KEYS = ("rps", "cpu_us", "server_busy", "loadgen_busy")
# Starting gunicorn and its workers (aiohttp's import is the slow part),
# and stopping them: far beyond this, something hangs.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


async def app():
    """What gunicorn serves: GET / says Hello, World!, GET /pid names the worker."""
    from aiohttp import web

    async def hello(request):
        return web.Response(text=HELLO)

    async def pid(request):
        return web.Response(text=str(os.getpid()))

    application = web.Application()
    application.router.add_get("/", hello)
    application.router.add_get("/pid", pid)
    return application


def until(predicate, what, proc, log):
    deadline = time.monotonic() + START_TIMEOUT
    while not (result := predicate()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise measuring.RunFailed(f"no {what}; gunicorn's log ends:\n{log_tail(log)}")
        time.sleep(0.05)
    return result


def tasks_and_steal(cpus):
    """{cpu: [seconds it ran tasks (user, nice, system), seconds the
    hypervisor stole]}, from /proc/stat.  Interrupts and softirqs stay out:
    the kernel's work for gunicorn's own loopback traffic is counted there,
    not in gunicorn's CPU time, and would pass for other work."""
    return {cpu: [(t.user + t.nice + t.system) / measuring.TICK, t.steal / measuring.TICK]
            for cpu, t in measuring.cpu_stat(cpus).items()}


def log_tail(log, lines=15):
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def start(worker, args, log):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(log.parent))     # its control socket
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "benchmarks.gunicorn:app",
             "-k", WORKER_CLASSES[worker], "-w", str(args.workers), "-b", f"{HOST}:0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=REPO,
            start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, args.server_cpus))


def workers_of(master):
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(pid) for pid in f.read().split()}


def ask_pid(port):
    conn = http.client.HTTPConnection(HOST, port, timeout=START_TIMEOUT)
    try:
        conn.request("GET", "/pid")
        return int(conn.getresponse().read())
    finally:
        conn.close()


def serving(proc, log, count):
    """The port, and the worker pids once each has answered a GET."""
    found = until(lambda: re.search(r"Listening at: http://[\d.]+:(\d+) ", log.read_text()),
                  "listening socket", proc, log)
    port = int(found[1])
    workers = until(lambda: len(pids := workers_of(proc.pid)) == count and pids,
                    f"{count} workers", proc, log)
    answered = set()

    def everyone_answered():
        answered.add(ask_pid(port))
        return answered >= workers
    until(everyone_answered, "answer from every worker", proc, log)
    return port, workers


def measure(port, pids, args):
    """One generator run against `port`: its RESULT, and in its window
    {pid: CPU seconds} and tasks_and_steal() of the server's and client's CPUs."""
    cpus = args.server_cpus | {args.client_cpu}
    with subprocess.Popen(
            loadgen.command("http", port, args.connections, 1, args.warmup, args.duration,
                            args.stall_timeout, HELLO),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.client_cpu})) as generator:
        try:
            if generator.stdout.readline().strip() != "GO":
                raise measuring.RunFailed("the load generator did not start")
            before = {pid: measuring.process_seconds(pid) for pid in pids}
            stat_before = tasks_and_steal(cpus)
            if generator.stdout.readline().strip() != "END":
                raise measuring.RunFailed("the load generator did not finish")
            cpu = {pid: measuring.process_seconds(pid) - before[pid] for pid in pids}
            stat = {c: [a - b for a, b in zip(v, stat_before[c])]
                    for c, v in tasks_and_steal(cpus).items()}
            generator.stdin.write("quit\n")
            generator.stdin.flush()
            return loadgen.parse_result(generator.stdout.readline()), cpu, stat
        finally:
            generator.kill()            # a no-op once it has printed its RESULT and exited


def stop(proc):
    """SIGTERM, as a deployment stops gunicorn; SIGKILL to all if it will not."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def one_run(worker, args, scratch):
    """A fresh gunicorn with --workers workers of class `worker`, measured
    once; measuring.RunFailed, OSError or ValueError if it fails."""
    log = Path(scratch) / f"{worker}.log"
    proc = start(worker, args, log)
    try:
        port, workers = serving(proc, log, args.workers)
        result, cpu, stat = measure(port, [proc.pid, *workers], args)
    finally:
        stop(proc)
    if not result["requests"]:
        raise measuring.RunFailed("no request completed in the window")
    total = sum(cpu.values())
    elapsed = result["elapsed"]
    worker_cpu = sorted((cpu[pid] for pid in workers), reverse=True)
    # /proc reports CPU time in clock ticks: a tick of rounding per process and CPU.
    slack = (len(cpu) + len(args.server_cpus)) / measuring.TICK
    others = sum(stat[c][0] for c in args.server_cpus) - total - slack
    return {"rps": result["rps"], "requests": int(result["requests"]),
            "cpu_us": total / result["requests"] * 1e6,
            "split": [c / sum(worker_cpu) for c in worker_cpu],
            "server_busy": total / elapsed / len(args.server_cpus),
            "loadgen_busy": result["loadgen_cpu"] / elapsed,
            "lost": max(0.0, others / elapsed / len(args.server_cpus),
                        result["loadgen_wait"] / elapsed,
                        sum(steal for _, steal in stat.values()) / elapsed)}


def collect(args, scratch, out):
    """Fills out: {"runs": {loop: [result]}, "failures": [text], "repeated":
    count} as it goes, so that an interruption leaves what was done."""
    out.update(runs={worker: [] for worker in args.loops}, failures=[], repeated=0)
    for rnd in range(args.rounds):
        for worker in measuring.rotate(args.loops, rnd):
            report.progress(f"gunicorn: round {rnd + 1}/{args.rounds}, {worker}")
            try:
                run = measuring.least_disturbed(lambda: one_run(worker, args, scratch),
                                                args.retries, out)
            except (measuring.RunFailed, OSError, ValueError) as exc:
                out["failures"].append(f"{worker}: {exc}")
                continue
            run["round"] = rnd + 1
            out["runs"][worker].append(run)


def summarize(runs, workers):
    """Per worker class: {loop, worker_class, runs, the median of each of
    KEYS, spreads and per-round values (key_all) of rps and cpu_us and
    their ratios of medians to BASELINE's (key_vs, None without its runs),
    and split: the median share of the busiest worker, the next, ...}."""
    base = runs.get(BASELINE) or []
    out = []
    for loop, rs in runs.items():
        s = {"loop": loop, "worker_class": WORKER_CLASSES[loop], "runs": len(rs)}
        if rs:
            for key in KEYS:
                s[key] = statistics.median(r[key] for r in rs)
            for key in KEYS[:2]:
                # stats() sets s[key] again: the same median, in the same place.
                s.update(report.stats(rs, key))
                s[f"{key}_vs"] = report.ratio_to(s[key], key, base)
            s["split"] = [statistics.median(r["split"][i] for r in rs) for i in range(workers)]
        out.append(s)
    return out


def notes(got):
    lost = [r["lost"] for rs in got["runs"].values() for r in rs]
    return report.contention_notes(lost, got["repeated"], "numbers")


def as_json(args, env, collected, seconds, interrupted):
    """One case, "hello" (report.finish() expects cases)."""
    settings = {key: getattr(args, key) for key in (
        "loops", "rounds", "retries", "workers", "connections", "duration", "warmup",
        "client_cpu")}
    settings["server_cpus"] = sorted(args.server_cpus)
    hello = {"summary": summarize(collected["runs"], args.workers),
             "failures": collected["failures"], "notes": notes(collected),
             "runs": collected["runs"]}
    return {"environment": env, "baseline": BASELINE, "settings": settings,
            "seconds": round(seconds, 1), "interrupted": interrupted, "cases": {"hello": hello}}


def packages(loops):
    """The packages that gunicorn with these worker classes imports."""
    return ["gunicorn", "aiohttp"] + (["uvloop"] if "uvloop" in loops else [])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", nargs="+", choices=list(WORKER_CLASSES),
                        default=["uringloop", "uvloop"], help="the worker classes, by loop")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpus", type=int, nargs="+", default=[0])
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--stall-timeout", type=float, default=10.0)
    parser.add_argument("--retries", type=int, default=1,
                        help=f"repeat a run that lost {measuring.CONTENDED * 100:.0f}%% or more "
                             "of its window to other work up to this many times (default: 1)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of Markdown "
                             "(benchmarks/run.py's workload gunicorn uses this)")
    args = parser.parse_args(argv)
    args.server_cpus = set(args.server_cpus)
    args.loops = list(dict.fromkeys(args.loops))
    if min(args.workers, args.rounds) < 1 or args.retries < 0:
        parser.error("workers and rounds must be positive, retries not negative")
    missing = [name for name in packages(args.loops) if not report.installed(name)]
    if missing:
        parser.error(f"missing packages: {' '.join(missing)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        loadgen.binary()
    except loadgen.BuildError as exc:
        sys.exit(str(exc))
    env = measuring.environment(packages(args.loops))
    started = time.monotonic()
    interrupted = False
    collected = {}
    with tempfile.TemporaryDirectory(prefix="uringloop-bench-") as scratch:
        try:
            collect(args, scratch, collected)
        except KeyboardInterrupt:
            interrupted = True
            report.progress("interrupted: the table holds the runs finished so far")
    data = as_json(args, env, collected, time.monotonic() - started, interrupted)
    return report.finish(data, args.json, report.gunicorn_markdown)


if __name__ == "__main__":
    sys.exit(main())
