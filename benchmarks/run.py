"""uringloop, asyncio's default loop and uvloop, side by side.

    python benchmarks/run.py                 # the quick default set (a few minutes)
    python benchmarks/run.py --full          # every echo style at 1/100/1000 connections
                                             # and 64 B/4 KiB/64 KiB, HTTP at 1/100/1000
    python benchmarks/run.py --workloads protocol httptools --connections 1000 --rounds 5
    python benchmarks/run.py --workloads encrypted   # only the TLS rows
    python benchmarks/run.py --workloads sendfile    # only loop.sendfile/FileResponse
    python benchmarks/run.py --workloads other-io    # only the UDP and add_reader echoes
    python benchmarks/run.py --workloads subprocess  # only spawning /bin/true and piping cat
    python benchmarks/run.py --workloads files       # only uringloop.open vs aiofiles and co.
    python benchmarks/run.py --workloads gunicorn    # only aiohttp under gunicorn

Every run starts a fresh server process (benchmarks/servers.py) for one
workload on one loop, pinned to one CPU, and drives it from the C load
generator (benchmarks/loadgen.c) pinned to the other.  Each connection keeps
one request in flight: an echo message whose bytes must all come back
unchanged, or an HTTP/1.1 keep-alive GET.  After connecting and a warm-up,
the server's own CPU time (getrusage, user + sys) is taken over the
measured window.

The echo workloads over TCP ("protocol", "buffered", "streams",
"streams-timeout", "sock": byte echoes all) also run on the floor, a
"loop" of their own that --loops does not choose: benchmarks/floor_echo.c,
a plain C echo server on io_uring (multishot ACCEPT, multishot RECV into a
provided-buffer ring, a SEND per received chunk, one io_uring_enter per
iteration that submits and waits; built with gcc on first use, as the load
generator is).  It is what any loop on this kernel could at best cost per
request.  It answers servers.py's start/stop protocol, so its CPU is
measured the same way, and it takes its turn in the same rounds.  Its row
is "C io_uring floor", and every loop's echo row gets its CPU per request
relative to the floor's ("CPU/request vs floor"); the JSON holds its runs
as those of the loop "floor".  --no-floor leaves it out.

"streams-timeout" is the streams echo with every request under
asyncio.timeout(), as a server with per-request deadlines runs (aiohttp's
keep-alive and read timeouts): a timer set and cancelled per request.  It
runs at 64 B unless --sizes or --full say otherwise.

Two workloads speak TLS 1.3: "tls", the protocol echo behind
create_server(ssl=) (4 KiB messages unless --sizes or --full say
otherwise), and "aiohttp-https", the aiohttp server with an ssl_context
(the group "encrypted" names both).  The generator's TLS build uses OpenSSL
(libssl-dev; without its headers the default run skips these rows with a
note), completes every handshake while connecting, outside the window, and
checks the decrypted echo byte for byte.  The server's certificate is made
once per run with trustme and handed to each server on its command line.

Two echo workloads leave the stream transports: "udp", a
create_datagram_endpoint protocol that sendto()s each datagram back, driven
by the generator's UDP mode (each "connection" a UDP socket of its own, so
as many source addresses, each keeping one datagram in flight; 64 B and
1,400 B unless --sizes says otherwise), and "reader", TCP served through
loop.add_reader alone: its callbacks accept, recv() and sendall() with plain
socket calls (64 B unless --sizes or --full say otherwise).  A request is
then a datagram or an event, and the CPU time per request the server's per
datagram or per event.  A datagram whose echo has not come back after
200 ms counts as lost (the notes give how many) and its socket sends the
next; that pause shows in requests/s.  Their three rows would add well
over a minute, so the default set leaves them out; the group "other-io"
names both.

Five workloads run a benchmark script of their own in a child process,
after the rest, and each gets its own section of the report (and a key of
the JSON): "internals", benchmarks/loop_internals.py --json (CPU time per loop
operation, counts scaled by --internals-scale), and "sendfile",
benchmarks/sendfile.py --json --parts loops http: loop.sendfile() of a
100 MiB file on a TCP transport, and aiohttp's FileResponse of a 20 MiB
file downloaded 10 times a round, each to a C reader that checks every
byte.  It gets --rounds, --retries and --loops; the server's CPU is the
sender's, the client's the reader's.  Its table gives MiB/s (or ms per
download), the sending process's CPU per MiB (or per download), the path
each loop took (uvloop has no loop.sendfile(): a fallback reads the file in
the executor), and ratios to asyncio.  It adds about 5 s a round.  The raw
kernel mechanisms (sendfile.py's part "mechanisms") run only on their own.
The third, "subprocess", is benchmarks/subprocesses.py --json: each round,
each loop, in a fresh process pinned to the server's CPU, runs
--subprocess-spawns (1,000) sequential create_subprocess_exec("/bin/true")
+ wait(), then, in another fresh process, sends --subprocess-mib (64) MiB
through cat with communicate(input=...) (cat moved to the generator's CPU;
its output must equal the input).  It gets --rounds, --retries, --loops
and --baseline.  Its tables give wall time and the loop process's CPU
(getrusage RUSAGE_SELF, all its threads) per spawn, MiB/s and CPU per MiB,
the children's CPU (the reaped /bin/true or cat) apart, and ratios to the
baseline.  A loop whose create_subprocess_exec() raises NotImplementedError
gets a "not supported" row, not a failure.  It adds about 7 s a round with
all three loops, some 20 s at the default 3 rounds (more when other work
forces retries), so it is in the default set.
The fourth, "files", is benchmarks/files.py --json: uringloop.open() and
uringloop.os on uringloop's loop against aiofiles on asyncio's loop and on
uvloop, asyncio.to_thread() around the blocking calls on both, and the
blocking calls in a plain loop (the floor), each case and contestant in a
fresh process: --files-reads (10,000) 4 KiB reads at random offsets of a
--files-mib (256) MiB file in the page cache by 1 task and by 64, reading
and writing such a file in 1 MiB chunks, and --files-count (1,000) small
files created, written, stat()ed, read back and deleted by 64 tasks.  Its
files go to a fresh directory in the temporary directory (/var/tmp if that
is a tmpfs), deleted afterwards.  It gets --rounds, --retries and --loops;
--full gives it the issue's sizes (1 GiB, 100,000 reads, 10,000 files).  Its
tables give reads/s, MiB/s or files/s, the process's CPU (getrusage
RUSAGE_SELF: executor threads and io_uring's kernel workers included) per
read, MiB or file, ratios to aiofiles and to the blocking calls, the peak
numbers of io_uring workers and of other threads, and whether uringloop
meets the issue's targets.  A uringloop without open() and uringloop.os
gets "skipped" rows, not failures.  It adds about 15 s a round, some 45 s
at the default 3 rounds (more when other work forces retries).
The fifth, "gunicorn" (in the group "http"), is benchmarks/gunicorn.py
--json: gunicorn serving an aiohttp hello world with 2 workers of one
class - uringloop.gunicorn.GunicornWebWorker, aiohttp's GunicornWebWorker
(asyncio) or GunicornUVLoopWebWorker (uvloop) - a fresh gunicorn per run,
master and workers pinned to the server's CPU, the C load generator (100
keep-alive connections, 3 s after 1 s of warm-up) to the client's.  It
gets --rounds, --retries and --loops.  Its table gives requests/s, the CPU
of gunicorn's master and workers per request, each worker's share of the
workers' CPU, and ratios to uvloop.  It adds about 17 s a round with all
three loops, some 50 s at the default 3 rounds (more when other work
forces retries), so it is in the default set.

The loops alternate: every round runs every case on every loop (and the
floor), each round starting with a different one, so slow drift on a shared
machine hits all alike.  The table gives medians over rounds with their
spread, each loop's ratio to uvloop and, on the echo rows, to the floor.
The Markdown table goes to stdout; the same table, the raw numbers (JSON)
and a chart (PNG) go to the results folder.

On a shared machine other work can take either CPU.  Each run records how
long the server and the generator were runnable but waiting for their CPU
(the kernel's run delay); a run that lost 5% or more of its window is
repeated (--retries), and the notes under the table flag what remains, as
well as runs whose pace the generator rather than the server may have set.
Requests/s suffers most from such noise; CPU time per request less so.
"""
import argparse
import collections
import importlib.util
import json
import os
import platform
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import files  # noqa: E402
import loadgen  # noqa: E402
import measuring  # noqa: E402
import report  # noqa: E402
import subprocesses  # noqa: E402
from servers import HELLO, make_certificate  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOOPS = ["uringloop", "asyncio", "uvloop"]
ECHO = ["sock", "streams", "streams-timeout", "protocol", "buffered"]
HTTP = ["httptools", "aiohttp"]
TLS = ["tls", "aiohttp-https"]          # the echo and HTTP rows that speak TLS
TLS_HTTP = ["aiohttp-https"]
OTHER_IO = ["udp", "reader"]            # echoes beyond the stream transports
# The C io_uring echo server, run beside the loops on the echo workloads
# (all of them byte echoes over TCP, which is all it serves).
FLOOR = "floor"
INTERNALS = "internals"
SENDFILE = "sendfile"
SUBPROCESS = "subprocess"
FILES = "files"
GUNICORN = "gunicorn"
# Workloads that run a script of their own.
SCRIPTS = [INTERNALS, SENDFILE, SUBPROCESS, FILES, GUNICORN]
WORKLOADS = ECHO + HTTP + TLS + OTHER_IO + SCRIPTS
GROUPS = {"echo": ECHO, "http": HTTP + [GUNICORN], "encrypted": TLS, "other-io": OTHER_IO,
          "all": WORKLOADS}
DEFAULT = ["protocol", "streams", "streams-timeout", "buffered", "sock", "httptools", "aiohttp",
           "tls",
           "aiohttp-https", INTERNALS, SENDFILE, SUBPROCESS, FILES, GUNICORN]
NEEDS = {"uvloop": ["uvloop"], "httptools": ["httptools"], "aiohttp": ["aiohttp"],
         "tls": ["trustme"], "aiohttp-https": ["aiohttp", "trustme"],
         SENDFILE: ["aiohttp"], FILES: ["aiofiles"], GUNICORN: ["gunicorn", "aiohttp"]}
# Echo sizes of their own, for the rows named, when neither --sizes nor
# --full says otherwise.
OWN_SIZES = {"tls": [4096], "udp": [64, 1400], "reader": [64], "streams-timeout": [64]}
# The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
# What the TLS rows measure, for the report (loadgen.c pins the suite).
TLS_SETTINGS = "TLS 1.3, TLS_AES_256_GCM_SHA384, ECDSA P-256 certificate (trustme)"

READY_TIMEOUT = 30.0
REPLY_TIMEOUT = 10.0


class Case:
    def __init__(self, workload, connections, size=None):
        self.workload = workload
        self.connections = connections
        self.size = size

    @property
    def http(self):
        return self.workload in HTTP + TLS_HTTP

    @property
    def tls(self):
        return self.workload in TLS

    @property
    def udp(self):
        return self.workload == "udp"

    @property
    def label(self):
        kind = "http" if self.http else "echo"
        peers = "sockets" if self.udp else "conn"
        text = f"{kind} {self.workload}, {self.connections} {peers}"
        return text if self.http else f"{text}, {report.format_size(self.size)}"


def steal_seconds(cpus):
    """{cpu: seconds the hypervisor ran something else}, from /proc/stat."""
    return {cpu: t.steal / measuring.TICK for cpu, t in measuring.cpu_stat(cpus).items()}


def tail(path, lines=12):
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_one(case, loop, args, scratch):
    """One measured run: a fresh server, a fresh generator."""
    server_err = Path(scratch) / "server.err"
    gen_err = Path(scratch) / "loadgen.err"
    server = generator = None
    with open(server_err, "wb") as serr, open(gen_err, "wb") as gerr:
        # Both are told what to do on their stdin.
        try:
            server = measuring.spawn(server_command(case, loop, args), args.server_cpu, serr,
                                     stdin=subprocess.PIPE)
            server_out = measuring.Lines(server, "server")
            ready = server_out.next(READY_TIMEOUT, "READY line")
            if not ready.startswith("READY "):
                raise measuring.RunFailed(f"server said {ready!r} instead of READY")
            port = int(ready.split()[1])

            generator = measuring.spawn(loadgen.command(
                "http" if case.http else "echo", port, case.connections, case.size or 1,
                args.warmup, args.duration, args.stall_timeout,
                HELLO.decode() if case.http else None, tls=case.tls, udp=case.udp),
                args.client_cpu, gerr, stdin=subprocess.PIPE)
            gen_out = measuring.Lines(generator, "load generator")
            # Connecting (with TLS, handshaking) may take up to one stall
            # timeout, so may warming up.
            line = gen_out.next(args.warmup + 2 * args.stall_timeout + 10, "GO")
            if line != "GO":
                raise measuring.RunFailed(f"load generator said {line!r} instead of GO")
            measuring.send(server, "start")
            before = steal_seconds({args.server_cpu, args.client_cpu})
            line = gen_out.next(args.duration + args.stall_timeout + 10, "END")
            if line != "END":
                raise measuring.RunFailed(f"load generator said {line!r} instead of END")
            measuring.send(server, "stop")
            after = steal_seconds({args.server_cpu, args.client_cpu})
            usage = json.loads(server_out.next(REPLY_TIMEOUT, "CPU report"))
            measuring.send(generator, "quit")
            result = loadgen.parse_result(gen_out.next(REPLY_TIMEOUT, "RESULT"))
            measuring.end(generator)
            if generator.returncode:
                raise measuring.RunFailed(
                    f"load generator exited with status {generator.returncode}")
        except (measuring.RunFailed, OSError, ValueError) as exc:
            for proc in (generator, server):
                if proc is not None and proc.poll() is None:
                    proc.kill()
            for proc in (generator, server):
                measuring.end(proc)
            details = [str(exc)]
            for name, path in (("load generator", gen_err), ("server", server_err)):
                text = tail(path)
                if text:
                    details.append(f"{name} stderr:\n{text}")
            return {"ok": False, "error": "\n".join(details)}
        measuring.end(server)

    if usage["errors"]:
        return {"ok": False, "error": f"the server's loop reported {usage['errors']} "
                                      f"error(s) while measured; first: {usage['first_error']}\n"
                                      f"server stderr:\n{tail(server_err)}"}
    if result["requests"] == 0:
        return {"ok": False, "error": "no request completed in the measured window"}
    wall = usage["wall"]
    steal = sum(after[c] - before[c] for c in after)
    # The floor says which ring setup the kernel took, for the report.
    ring = {"ring": usage["ring"]} if "ring" in usage else {}
    return {
        "ok": True,
        "requests": int(result["requests"]),
        "rps": result["rps"],
        # Each side's CPU rate over its own window: the two windows differ
        # only by the relay delays at their edges.
        "cpu_us": usage["cpu"] / wall / result["rps"] * 1e6,
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "max_us": result["max_us"],
        "rss_mib": usage["maxrss_kib"] / 1024,
        "server_busy": usage["cpu"] / wall,
        "loadgen_busy": result["loadgen_cpu"] / result["elapsed"],
        # Time each side was runnable but another task had its CPU.
        "server_wait": usage["cpu_wait"] / wall,
        "loadgen_wait": result["loadgen_wait"] / result["elapsed"],
        "steal": steal / wall,
        "lost": int(result.get("lost", 0)),
        **ring,
    }


def server_command(case, loop, args):
    if loop == FLOOR:
        return [str(loadgen.floor_binary())]
    certificate = ["--certfile", args.certfile, "--keyfile", args.keyfile] if case.tls else []
    return [sys.executable, str(HERE / "servers.py"), "--loop", loop,
            "--workload", case.workload, *certificate]


def case_loops(case, args):
    """The loops a case runs on: the floor too, where it serves the workload."""
    return args.loops + [FLOOR] if args.floor and case.workload in ECHO else args.loops


def run_internals(args, loops):
    """loop_internals.py's cases, pinned like a server, in a child process."""
    command = [sys.executable, str(HERE / "loop_internals.py"), "--json",
               "--rounds", str(args.rounds), "--scale", str(args.internals_scale),
               "--loops", *loops]
    # About 10 s at the defaults; far beyond that, something hangs.
    timeout = 120 + 120 * args.rounds * args.internals_scale
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, cwd=REPO,
                              preexec_fn=lambda: os.sched_setaffinity(0, {args.server_cpu}))
    except subprocess.TimeoutExpired:
        return {"error": f"loop_internals.py timed out after {timeout:.0f} s"}
    if proc.returncode:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return {"error": f"loop_internals.py failed (status {proc.returncode}):\n"
                         + "\n".join(err[-15:])}
    return json.loads(proc.stdout)


def run_sendfile(args, loops):
    """sendfile.py's loop.sendfile() and aiohttp FileResponse parts."""
    options = ["--parts", "loops", "http",
               "--sender-cpu", str(args.server_cpu), "--reader-cpu", str(args.client_cpu)]
    # About 5 s a round at the defaults; far beyond that, something hangs.
    return run_script("sendfile.py", options, args, loops,
                      timeout=120 + 60 * args.rounds * (1 + args.retries))


def run_subprocesses(args, loops):
    """subprocesses.py's spawn and cat cases."""
    options = ["--spawns", str(args.subprocess_spawns), "--mib", str(args.subprocess_mib),
               "--loop-cpu", str(args.server_cpu), "--child-cpu", str(args.client_cpu),
               "--baseline", args.baseline]
    # About 2.5 s per loop a round at the defaults; far beyond that, something hangs.
    timeout = 120 + len(loops) * args.rounds * (1 + args.retries) * (
        30 + 0.02 * args.subprocess_spawns + 0.5 * args.subprocess_mib)
    return run_script("subprocesses.py", options, args, loops, timeout)


def run_files(args, loops):
    """files.py's random, sequential and small-file cases."""
    options = ["--file-mib", str(args.files_mib), "--reads", str(args.files_reads),
               "--small-files", str(args.files_count)]
    # About 15 s a round at the defaults (aiofiles' ~20,000 reads/s and
    # ~3,000 files/s set the pace); far beyond that, something hangs.
    timeout = 120 + args.rounds * (1 + args.retries) * (
        30 + 5e-3 * args.files_reads + 20e-3 * args.files_count + 0.2 * args.files_mib)
    return run_script("files.py", options, args, loops, timeout)


def run_gunicorn(args, loops):
    """gunicorn.py's aiohttp hello world, 2 workers of each worker class."""
    options = ["--server-cpus", str(args.server_cpu), "--client-cpu", str(args.client_cpu)]
    # About 6 s a run (starting gunicorn and importing aiohttp, 4 s of load,
    # stopping); far beyond that, something hangs.
    timeout = 120 + 60 * len(loops) * args.rounds * (1 + args.retries)
    return run_script("gunicorn.py", options, args, loops, timeout)


def run_script(script, options, args, loops, timeout):
    """Run benchmarks/<script> --json in a child process: its JSON, or
    {"error": ...}.  Its progress lines are relayed to stderr as they come."""
    command = [sys.executable, str(HERE / script), "--json", *options,
               "--rounds", str(args.rounds), "--retries", str(args.retries), "--loops", *loops]
    tty = sys.stderr.isatty()
    last = collections.deque(maxlen=40)
    with tempfile.TemporaryFile() as out:
        # The script pins itself and its children to one CPU each: let it
        # have both (this process keeps only one).  Its own process group,
        # so that a timeout ends its children too.
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, cwd=REPO,
            process_group=0,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.server_cpu, args.client_cpu}))

        def kill():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()

        def relay():
            for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                last.append(line)
                if tty:
                    print(f"\r  {line[:108]:<108}", end="", file=sys.stderr, flush=True)
                elif line:
                    print(f"  {line}", file=sys.stderr, flush=True)

        relaying = threading.Thread(target=relay, daemon=True)
        relaying.start()
        stopped = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill()
            return {"error": f"{script} timed out after {timeout:.0f} s"}
        except KeyboardInterrupt:
            # Pass Ctrl-C on: the script then prints what it has.
            stopped = True
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired, KeyboardInterrupt):
                kill()
        finally:
            relaying.join(5)
            proc.stderr.close()
            if tty:
                print("\r" + " " * 110 + "\r", end="", file=sys.stderr, flush=True)
        out.seek(0)
        text = out.read()
    try:
        # Runs that failed are in the JSON (status 1): the report shows them.
        return json.loads(text)
    except ValueError:
        if stopped:
            return {"error": "interrupted", "interrupted": True}
        return {"error": f"{script} failed (status {proc.returncode}):\n"
                         + "\n".join(list(last)[-15:])}


def measured(case, loop, rnd, args, scratch, progress):
    """One round of one case on one loop, repeated while other work disturbs it."""
    label = f"round {rnd + 1}/{args.rounds}: {case.label} on {loop}"
    progress.show(label)
    outcome = run_one(case, loop, args, scratch)
    attempts = [outcome]
    # Which attempt counts depends only on how much CPU other work took,
    # never on the numbers the loop produced.
    while outcome["ok"] and len(attempts) <= args.retries \
            and contention(outcome) >= measuring.CONTENDED:
        progress.show(f"{label} (again: lost {contention(outcome):.0%} of the window "
                      f"to other work)")
        outcome = run_one(case, loop, args, scratch)
        attempts.append(outcome)
    ok = [a for a in attempts if a["ok"]]
    kept = min(ok, key=contention) if len(ok) == len(attempts) else outcome
    kept["round"] = rnd + 1
    kept["repeated"] = [round(contention(a), 3) for a in attempts if a is not kept and a["ok"]]
    return kept


def contention(outcome):
    """The largest share of the window that the server or the generator
    spent waiting for its CPU while something else ran there."""
    return max(outcome["server_wait"], outcome["loadgen_wait"], outcome["steal"])


class Progress:
    def __init__(self, total):
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, text):
        eta = ""
        if self.done:
            left = (time.monotonic() - self.started) / self.done * (self.total - self.done)
            eta = f", ~{left / 60:.0f} min left" if left >= 90 else f", ~{left:.0f} s left"
        line = f"[{self.done + 1}/{self.total}] {text}{eta}"
        if self.tty:
            print(f"\r{line[:110]:<110}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def step(self):
        self.done += 1

    def clear(self):
        if self.tty:
            print("\r" + " " * 110 + "\r", end="", file=sys.stderr, flush=True)


def build_cases(args):
    cases = []
    for workload in args.workloads:
        if workload in SCRIPTS:
            continue
        sizes = args.own_sizes.get(workload, args.sizes)
        for connections in args.connections:
            if workload in HTTP + TLS_HTTP:
                cases.append(Case(workload, connections))
            else:
                cases.extend(Case(workload, connections, size) for size in sizes)
    return cases


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", metavar="W",
                        help=f"any of {', '.join(WORKLOADS)}, or the groups "
                             + ", ".join(f"{g} ({' '.join(ws)})" for g, ws in GROUPS.items()
                                         if g != "all")
                             + ", all (default: all but "
                             + " ".join(w for w in WORKLOADS if w not in DEFAULT) + ")")
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    parser.add_argument("--connections", nargs="+", type=int, metavar="N", default=[100],
                        help="concurrent connections (default: 100)")
    parser.add_argument("--sizes", nargs="+", type=report.parse_size, metavar="BYTES",
                        help="echo message sizes, e.g. 64 4k 64k (default: 64 4k; 4k for "
                             "the TLS echo, 64 1400 for udp, 64 for reader)")
    parser.add_argument("--full", action="store_true",
                        help="connections 1 100 1000 and sizes 64 4k 64k (overrides both), "
                             "for the TLS and reader rows too (udp keeps 64 1400: a datagram "
                             "holds at most 65,507 bytes); the files workload at the issue's "
                             "sizes (1 GiB file, 100,000 reads, 10,000 small files)")
    parser.add_argument("--duration", type=float, default=2.0,
                        help="measured seconds per run (default: 2)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of load before measuring (default: 0.5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per case and loop, alternating loops (default: 3)")
    parser.add_argument("--internals-scale", type=float, default=0.5,
                        help="operation counts of the loop-internals cases (default: 0.5)")
    parser.add_argument("--subprocess-spawns", type=int, default=1000, metavar="N",
                        help="spawns of /bin/true per run of the subprocess workload "
                             "(default: 1000)")
    parser.add_argument("--subprocess-mib", type=float, default=64, metavar="MIB",
                        help="MiB through cat per run of the subprocess workload (default: 64)")
    parser.add_argument("--files-mib", type=int, metavar="MIB",
                        help="size of the files workload's file (default: 256; "
                             f"{files.FULL['file_mib']:,} with --full)")
    parser.add_argument("--files-reads", type=int, metavar="N",
                        help="random 4 KiB reads per run of the files workload (default: "
                             f"10,000; {files.FULL['reads']:,} with --full)")
    parser.add_argument("--files-count", type=int, metavar="N",
                        help="small files per run of the files workload (default: 1,000; "
                             f"{files.FULL['small_files']:,} with --full)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="leave the C io_uring echo server (the floor) out of the echo "
                             "workloads")
    parser.add_argument("--baseline", choices=LOOPS, default="uvloop",
                        help="the loop the ratios compare with (default: uvloop)")
    parser.add_argument("--retries", type=int, default=1,
                        help="repeat a run up to this many times when other work took "
                             f"≥ {measuring.CONTENDED * 100:.0f}%% of its window from the server "
                             "or the generator; the least disturbed attempt counts (default: 1)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--stall-timeout", type=float, default=10.0,
                        help="fail a run when no byte arrives for this long (default: 10)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = parser.parse_args(argv)

    # TLS rows the caller named (not only got by default) must run or fail
    # loudly; the default set skips them, with a note, where they cannot.
    args.tls_asked = args.workloads is not None
    workloads = []
    for name in args.workloads or DEFAULT:
        for w in GROUPS.get(name, [name]):
            if w not in WORKLOADS:
                parser.error(f"unknown workload {w!r}")
            if w not in workloads:
                workloads.append(w)
    args.workloads = workloads
    if args.full:
        args.connections, args.sizes = [1, 100, 1000], [64, 4096, 65536]
        args.own_sizes = {"udp": OWN_SIZES["udp"]}
    elif args.sizes is None:
        args.sizes, args.own_sizes = [64, 4096], OWN_SIZES
    else:
        args.own_sizes = {}
    if args.baseline not in args.loops:
        args.baseline = args.loops[0]
    if min(args.connections) < 1 or min(args.sizes) < 1 or args.rounds < 1 or args.duration <= 0:
        parser.error("connections, sizes, rounds and duration must be positive")
    if "udp" in workloads and max(args.own_sizes.get("udp", args.sizes)) > MAX_DATAGRAM:
        parser.error(f"udp: a datagram holds at most {MAX_DATAGRAM:,} bytes")
    if args.retries < 0:
        parser.error("--retries cannot be negative")
    if args.subprocess_spawns < 1 or args.subprocess_mib < 1:
        parser.error("--subprocess-spawns must be positive, --subprocess-mib at least 1")
    sizes = files.FULL if args.full else files.QUICK
    for option, key in (("files_mib", "file_mib"), ("files_reads", "reads"),
                        ("files_count", "small_files")):
        if getattr(args, option) is None:
            setattr(args, option, sizes[key])
        elif getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be positive")
    cpus = os.sched_getaffinity(0)
    if args.server_cpu == args.client_cpu or not {args.server_cpu, args.client_cpu} <= cpus:
        parser.error(f"--server-cpu and --client-cpu must be two different CPUs of {sorted(cpus)}")
    missing = sorted({p for n in args.loops + args.workloads for p in NEEDS.get(n, [])
                      if not report.installed(p)})
    if not args.no_chart and importlib.util.find_spec("matplotlib") is None:
        missing.append("matplotlib")
    if missing:
        parser.error(f"missing packages: {' '.join(missing)} "
                     f"(pip install -e '.[bench]' installs them)")
    return args


def environment(args):
    versions = measuring.versions(
        args.loops + [p for w in args.workloads for p in NEEDS.get(w, [])])
    if any(w in TLS for w in args.workloads):
        versions["OpenSSL"] = ssl.OPENSSL_VERSION.removeprefix("OpenSSL ").split()[0]
    return {"kernel": platform.release(), "cpu": measuring.cpu_model(), "cpus": os.cpu_count(),
            "versions": versions, "commit": measuring.commit()}


def main(argv=None):
    args = parse_args(argv)
    try:
        loadgen.binary()
        if args.floor and any(w in ECHO for w in args.workloads):
            loadgen.floor_binary()
    except loadgen.BuildError as exc:
        sys.exit(str(exc))
    tls = [w for w in args.workloads if w in TLS]
    if tls:
        try:
            loadgen.binary(tls=True)
        except loadgen.BuildError as exc:
            if args.tls_asked:
                sys.exit(str(exc))
            print(f"note: leaving out the TLS rows ({', '.join(tls)}): "
                  f"{str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            args.workloads = [w for w in args.workloads if w not in TLS]
            tls = []
    measuring.compile_bytecode()
    # The parent stays off the server's CPU; measuring.spawn() pins each child.
    os.sched_setaffinity(0, {args.client_cpu})

    cases = build_cases(args)
    runs = {(c.label, loop): [] for c in cases for loop in case_loops(c, args)}
    progress = Progress(len(runs) * args.rounds)
    started = time.time()
    env = environment(args)
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="uringloop-bench-") as scratch:
            if tls:
                args.certfile, args.keyfile = make_certificate(scratch)
            for rnd in range(args.rounds):
                for case in cases:
                    for loop in measuring.rotate(case_loops(case, args), rnd):
                        runs[case.label, loop].append(
                            measured(case, loop, rnd, args, scratch, progress))
                        progress.step()
    except KeyboardInterrupt:
        # Children see EOF on stdin once we stop, and exit on their own.
        interrupted = True
    progress.clear()

    internals = None
    if INTERNALS in args.workloads and not interrupted:
        print("loop internals (benchmarks/loop_internals.py) ...", file=sys.stderr, flush=True)
        internals = run_internals(args, args.loops)
    sendfile = None
    if SENDFILE in args.workloads and not interrupted:
        print("sending a file (benchmarks/sendfile.py --parts loops http) ...",
              file=sys.stderr, flush=True)
        sendfile = run_sendfile(args, args.loops)
        interrupted = bool(sendfile.get("interrupted"))
    subprocs = None
    if SUBPROCESS in args.workloads and not interrupted:
        print("subprocesses (benchmarks/subprocesses.py) ...", file=sys.stderr, flush=True)
        subprocs = run_subprocesses(args, args.loops)
        interrupted = bool(subprocs.get("interrupted"))
    file_io = None
    if FILES in args.workloads and not interrupted:
        print("files (benchmarks/files.py) ...", file=sys.stderr, flush=True)
        file_io = run_files(args, args.loops)
        interrupted = bool(file_io.get("interrupted"))
    gunicorn = None
    if GUNICORN in args.workloads and not interrupted:
        print("aiohttp under gunicorn (benchmarks/gunicorn.py) ...", file=sys.stderr, flush=True)
        gunicorn = run_gunicorn(args, args.loops)
        interrupted = bool(gunicorn.get("interrupted"))

    data = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "interrupted": interrupted,
        "settings": {"loops": args.loops, "floor": args.floor,
                     "baseline": args.baseline, "rounds": args.rounds,
                     "retries": args.retries,
                     "duration": args.duration, "warmup": args.warmup,
                     "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                     "internals_scale": args.internals_scale,
                     "subprocess_spawns": args.subprocess_spawns,
                     "subprocess_mib": args.subprocess_mib,
                     "files_mib": args.files_mib, "files_reads": args.files_reads,
                     "files_count": args.files_count,
                     "tls": TLS_SETTINGS if tls else None},
        "environment": env,
        "cases": [{"case": c.label, "workload": c.workload, "connections": c.connections,
                   "size": c.size, "loop": loop, "runs": runs[c.label, loop]}
                  for c in cases for loop in case_loops(c, args)],
        "internals": internals,
        "sendfile": sendfile,
        "subprocess": subprocs,
        "files": file_io,
        "gunicorn": gunicorn,
    }
    text = report.markdown(data)
    if subprocs:
        # Its own section, after the rest (report.py knows only the others).
        text = text.rstrip("\n") + "\n\n" + "\n".join(subprocesses.markdown(subprocs, args.loops))
    if file_io:
        text = text.rstrip("\n") + "\n\n" + "\n".join(files.markdown(file_io))
    if gunicorn:
        text = text.rstrip("\n") + "\n\n" + "\n".join(report.gunicorn_markdown(gunicorn))
    print(text)

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = args.results_dir / ("bench-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(started)))
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text)
    written = [stem.with_suffix(".md"), stem.with_suffix(".json")]
    if not args.no_chart:
        png = stem.with_suffix(".png")
        if report.chart(data, png):
            written.append(png)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    failed = sum(not r["ok"] for rs in runs.values() for r in rs)
    scripts_failed = script_failed(sendfile, "parts") or any(
        script_failed(data) for data in (subprocs, file_io, gunicorn))
    return 1 if failed or (internals and "error" in internals) or scripts_failed else 0


def script_failed(data, parts="cases"):
    """Whether a workload that ran a script of its own failed, or any of its
    runs did.  A loop without subprocesses ("not supported") is no failure,
    nor are uringloop's rows "skipped" for want of uringloop.open."""
    return bool(data) and ("error" in data or any(
        part["failures"] for part in data[parts].values()))


if __name__ == "__main__":
    sys.exit(main())
