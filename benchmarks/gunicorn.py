"""aiohttp under gunicorn: uringloop's worker against aiohttp's uvloop worker.

    python benchmarks/gunicorn.py                    # 2 workers, 3 rounds (under a minute)
    python benchmarks/gunicorn.py --loops uringloop uvloop asyncio --rounds 5
    python benchmarks/gunicorn.py --workers 4 --server-cpus 0 1 2 3 --client-cpu 4

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
"""
import argparse
import http.client
import importlib.metadata
import os
import platform
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
    import report

HOST = "127.0.0.1"
HELLO = "Hello, World!"
WORKER_CLASSES = {
    "uringloop": "uringloop.gunicorn.GunicornWebWorker",
    "uvloop": "aiohttp.worker.GunicornUVLoopWebWorker",
    "asyncio": "aiohttp.worker.GunicornWebWorker",
}
BASELINE = "uvloop"
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


class RunFailed(Exception):
    pass


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def until(predicate, what, proc, log):
    deadline = time.monotonic() + START_TIMEOUT
    while not (result := predicate()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RunFailed(f"no {what}; gunicorn's log ends:\n{log_tail(log)}")
        time.sleep(0.05)
    return result


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
    """One generator run against `port`: (its RESULT, {pid: CPU seconds in its window})."""
    with subprocess.Popen(
            loadgen.command("http", port, args.connections, 1, args.warmup, args.duration,
                            args.stall_timeout, HELLO),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.client_cpu})) as generator:
        try:
            if generator.stdout.readline().strip() != "GO":
                raise RunFailed("the load generator did not start")
            before = {pid: cpu_seconds(pid) for pid in pids}
            if generator.stdout.readline().strip() != "END":
                raise RunFailed("the load generator did not finish")
            cpu = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
            generator.stdin.write("quit\n")
            generator.stdin.flush()
            return loadgen.parse_result(generator.stdout.readline()), cpu
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
    log = Path(scratch) / f"{worker}.log"
    proc = start(worker, args, log)
    try:
        port, workers = serving(proc, log, args.workers)
        result, cpu = measure(port, [proc.pid, *workers], args)
    except (RunFailed, OSError, ValueError) as exc:
        return {"ok": False, "error": f"{worker}: {exc}"}
    finally:
        stop(proc)
    if not result["requests"]:
        return {"ok": False, "error": f"{worker}: no request completed in the window"}
    total = sum(cpu.values())
    worker_cpu = sorted((cpu[pid] for pid in workers), reverse=True)
    return {"ok": True, "rps": result["rps"],
            "cpu_us": total / result["requests"] * 1e6,
            "split": [c / sum(worker_cpu) for c in worker_cpu],
            "server_busy": total / result["elapsed"] / len(args.server_cpus),
            "loadgen_busy": result["loadgen_cpu"] / result["elapsed"]}


def table(runs, args):
    ok = {w: [r for r in rs if r["ok"]] for w, rs in runs.items()}
    keys = ("rps", "cpu_us", "server_busy", "loadgen_busy")
    median = {w: {key: statistics.median(r[key] for r in rs) for key in keys}
              for w, rs in ok.items() if rs}
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("gunicorn", "aiohttp", "uvloop"))
    cpus = ",".join(map(str, sorted(args.server_cpus)))
    lines = [
        f"## aiohttp under gunicorn, {args.workers} workers", "",
        f"Linux {platform.release()}, Python {platform.python_version()}; {versions}.  "
        f"gunicorn pinned to CPU {cpus}, the load generator to CPU {args.client_cpu}; "
        f"{args.connections} keep-alive connections; {args.rounds} round(s) of "
        f"{args.duration:g} s after {args.warmup:g} s of warm-up, the worker classes "
        f"alternating.", "",
        "| worker | requests/s | CPU µs/request | workers' CPU split "
        f"| busy: gunicorn / generator | req/s vs {BASELINE} | CPU/request vs {BASELINE} |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    base = median.get(BASELINE)
    for worker, rs in ok.items():
        if not rs:
            lines.append(f"| {worker} | **failed** | | | | | |")
            continue
        m = median[worker]
        split = " / ".join(f"{statistics.median(r['split'][i] for r in rs):.0%}"
                           for i in range(args.workers))
        ratios = ["—", "—"] if worker == BASELINE or base is None else \
            [report.ratio(m["rps"] / base["rps"]), report.ratio(m["cpu_us"] / base["cpu_us"])]
        lines.append(
            f"| {WORKER_CLASSES[worker]} | {m['rps']:,.0f} ±{report.spread([r['rps'] for r in rs]):.0%} "
            f"| {report.number(m['cpu_us'])} ±{report.spread([r['cpu_us'] for r in rs]):.0%} "
            f"| {split} | {m['server_busy']:.0%} / {m['loadgen_busy']:.0%} "
            f"| {ratios[0]} | {ratios[1]} |")
    return lines + ["", "CPU: gunicorn's master and workers, user + system, per request.  "
                        "Busy: that CPU time (and the generator's own) over the window's wall "
                        "time, per CPU: gunicorn well under 100% means something else set the "
                        "pace (the generator, or other work on the machine).  Ratios of "
                        "medians: above 1 is better for requests/s, below 1 for CPU/request."]


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
    args = parser.parse_args(argv)
    args.server_cpus = set(args.server_cpus)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        loadgen.binary()
    except loadgen.BuildError as exc:
        sys.exit(str(exc))
    runs = {worker: [] for worker in args.loops}
    with tempfile.TemporaryDirectory(prefix="uringloop-bench-") as scratch:
        for rnd in range(args.rounds):
            shift = rnd % len(args.loops)
            for worker in args.loops[shift:] + args.loops[:shift]:
                report.progress(f"round {rnd + 1}/{args.rounds}: {worker}")
                runs[worker].append(one_run(worker, args, scratch))
    failures = [r["error"] for rs in runs.values() for r in rs if not r["ok"]]
    for failure in failures:
        report.progress(failure)
    print("\n".join(table(runs, args)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
