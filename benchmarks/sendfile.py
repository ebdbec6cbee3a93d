"""Sending a file over TCP: the kernel mechanisms under io_uring, then
loop.sendfile() and aiohttp's FileResponse on uringloop, asyncio and uvloop.

    python benchmarks/sendfile.py                  # everything, 5 rounds (a few minutes)
    python benchmarks/sendfile.py --quick          # a smoke run: 1 round, small files
    python benchmarks/sendfile.py --parts mechanisms --rounds 9 --read-buf 64k
    python benchmarks/sendfile.py --parts loops http --size 50m
    python benchmarks/sendfile.py --parts loops http --loops uringloop asyncio --json

Three parts, each a Markdown table on stdout (progress goes to stderr); with
--json, one JSON object instead: per part its runs, notes and failures, and
for parts 2 and 3 each loop's medians, spreads and ratios to asyncio
(benchmarks/run.py's workload "sendfile" runs parts 2 and 3 this way).

1. Mechanisms (benchmarks/sendfile_paths.c, built on first use into
   benchmarks/.build/ with gcc -O2 and uringloop's ABI header; raw io_uring
   syscalls, no liburing).  One process sends the file (--size, default
   100 MiB, made in /tmp and read once so it is in the page cache) over a
   non-blocking TCP loopback socket to a forked reader that recv()s with a
   --read-buf buffer as fast as it can and compares every byte with the file:

     sendfile-poll   sendfile(2) until EAGAIN, then a single-shot
                     IORING_OP_POLL_ADD(POLLOUT); what asyncio does with epoll
     splice          IORING_OP_SPLICE file->pipe linked to pipe->socket, the
                     pipe sized 64 KiB or 1 MiB (the chunk column); runs in
                     the kernel's io-wq worker threads
     read-send       IORING_OP_READ into a 64 KiB or 1 MiB buffer linked to
                     IORING_OP_SEND: two copies, no io-wq

   Sender and reader are pinned to different CPUs; the io-wq workers are
   confined to the sender's CPU (IORING_REGISTER_IOWQ_AFF; --iowq-cpu any
   lets them run on the reader's CPU too).  A 16 MiB warm-up
   transfer on the same connection precedes the measured one.  MiB/s is wall
   time from the first byte queued to the reader's acknowledgement of the
   last; CPU ms/MiB is the sending process's getrusage(RUSAGE_SELF) over the
   same window.  "io-wq" is the part of that spent by io-wq workers
   (RUSAGE_SELF - RUSAGE_THREAD); the note under the table compares
   RUSAGE_SELF with the sum of every thread's run time in /proc/self/task/,
   which shows whether the workers' time is in the process's account
   (they are threads of the process, PF_IO_WORKER).  --slow-reader USEC adds
   a second table with a reader that sleeps after every read: then the
   sender mostly waits for room in the socket, and CPU/MiB shows what each
   way costs per wake-up.

2. loop.sendfile(transport, file) of the same file on a plain TCP transport
   (create_connection) to the C reader in another process, on each loop.
   The "path" column says what ran: "native" (the loop's own sendfile, e.g.
   asyncio's os.sendfile + epoll), "loop fallback" (asyncio's generic
   _sendfile_fallback: 16 KiB reads in the default executor, transport.write),
   or "app fallback" (the loop has no sendfile at all - uvloop raises
   NotImplementedError - so this script does what asyncio's fallback does).
   CPU is the sending process's getrusage (all its threads, the executor's
   and io-wq's included) from the first sendfile to the reader's
   acknowledgement; each loop's ratio is to asyncio.

3. aiohttp web.FileResponse of a --http-size file (default 20 MiB),
   downloaded (HTTP/1.1 GET, a new connection each, every body byte checked)
   --http-count times per round by the C client in another process: seconds
   per download (client side) and the server's CPU per download (getrusage
   of the server process between "start" and "stop").  aiohttp calls
   loop.sendfile() and falls back to its own 256 KiB executor reads when the
   loop raises NotImplementedError (uvloop); the path column says which.

How to read the CPU columns.  The kernel has no IRQ_TIME_ACCOUNTING here,
so softirq work is charged to whatever task it interrupts, and on loopback
the sender's transmit runs much of the TCP receive path (delivery into the
reader's socket, waking the reader) in the sender's own context - unless
the reader holds its socket lock at that moment, when the reader does it.
So "sender CPU" includes a variable share of receive-side work: compare
mechanisms with each other in the same table, not with a NIC's numbers,
and expect more spread in CPU/MiB than an idle machine would show.

Rounds alternate: every round runs every case on every loop (or mode), each
round starting with a different one, so drift on a shared machine hits all
alike.  Tables give the median over rounds and the spread (half the range,
relative to the median).  On a 2-CPU machine shared with other work the
spread is the honest error bar; CPU per MiB is steadier than MiB/s, which
the reader's copy usually limits (loopback: the reader's recv copy is the
bottleneck for every zero-copy sender).

Roles used by the parts above, not meant to be typed:
    sendfile.py _send --loop K --port P --file F --size N --passes N --warmup W
    sendfile.py _http --loop K --file F
"""
import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# benchmarks/loadgen.py, measuring.py and report.py: the suite's builds, measuring and tables
import loadgen
from measuring import (CONTENDED, Lines, RunFailed, commit, cpu_model, cpu_seconds, end,
                       least_disturbed, rotate, run_delay, spawn, versions)
from report import (format_size, installed, parse_size, progress, ratio_text, ratio_to, spread,
                    stats)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = HERE / "sendfile_paths.c"
ABI_DIR = REPO / "uringloop" / "_c"
# What it includes from this repository, which its build's hash covers.
HEADERS = [ABI_DIR / "abi.h", HERE / "bench_ring.h"]

LOOPS = ["uringloop", "asyncio", "uvloop"]
BASELINE = "asyncio"
PARTS = ["mechanisms", "loops", "http"]
MECHANISMS = [("sendfile-poll", None), ("splice", 64 << 10), ("splice", 1 << 20),
              ("read-send", 64 << 10), ("read-send", 1 << 20)]
MIB = 1 << 20
HOST = "127.0.0.1"
WARMUP = 16 * MIB
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 600.0


# -- building the C side ------------------------------------------------------

def binary():
    """Path of the compiled sendfile_paths, built on first use as the load
    generator is (loadgen.BuildError if it cannot be)."""
    return loadgen.build(SOURCE, "sendfile_paths-", ["-I", str(ABI_DIR)], headers=HEADERS)


TEXT_FIELDS = {"mode", "worker_cpus", "ring", "iowq_aff"}


def parse_result(line):
    """'RESULT key=value ...' -> {key: float, or str for TEXT_FIELDS}."""
    fields = line.split()
    if not fields or fields[0] != "RESULT":
        raise RunFailed(f"not a RESULT line: {line!r}")
    out = {}
    for field in fields[1:]:
        key, value = field.split("=", 1)
        out[key] = value if key in TEXT_FIELDS else float(value)
    return out


# -- helpers ------------------------------------------------------------------

def test_file(size, tag):
    """A file of `size` random bytes in /tmp, made once, read once (page cache)."""
    path = Path(f"/tmp/uringloop-sendfile-{tag}-{size}.bin")
    if not path.exists() or path.stat().st_size != size:
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 4 * MIB))
                f.write(block)
                left -= len(block)
        os.replace(partial, path)
    with open(path, "rb") as f:
        while f.read(4 * MIB):
            pass
    return path


def attempts(args, run, contention):
    """run() until its contention(result) is under CONTENDED, at most
    1 + --retries times; the least contended result."""
    def attempt():
        result = run()
        result["lost"] = contention(result)
        return result
    return least_disturbed(attempt, args.retries)


def lost_note(runs):
    """A note on how much of their windows the runs lost to other work."""
    lost = [r["lost"] for rs in runs.values() for r in rs]
    if not lost:
        return []
    bad = sum(x >= CONTENDED for x in lost)
    if not bad:
        return [f"contention: sender and reader waited for their CPU at most "
                f"{max(lost) * 100:.1f}% of any window"]
    return [f"contention: sender or reader waited for its CPU a median "
            f"{statistics.median(lost) * 100:.0f}% (max {max(lost) * 100:.0f}%) of the window; "
            f"{bad} of {len(lost)} runs over {CONTENDED * 100:.0f}% even after {{retries}} retries"]


def fmt(values, digits=None):
    """'median ±spread%' of a list of numbers."""
    if not values:
        return "-"
    med = statistics.median(values)
    if digits is None:
        digits = 0 if med >= 100 else 1 if med >= 10 else 2 if med >= 1 else 3
    text = f"{med:,.{digits}f}"
    if len(values) > 1:
        text += f" ±{spread(values) * 100:.0f}%"
    return text


def summarize(runs, *keys):
    """Per loop: {loop, runs, path, and for each key its median, spread, the
    per-round values (key_all) and the ratio of medians to BASELINE (None
    without baseline runs)}; the rows of the loops and http tables, and
    what --json prints."""
    base = runs.get(BASELINE)
    out = []
    for loop, rs in runs.items():
        s = {"loop": loop, "runs": len(rs)}
        if rs:
            s["path"] = "/".join(sorted({r["path"] for r in rs}))
            for key in keys:
                s.update(stats(rs, key))
                s[f"{key}_vs_{BASELINE}"] = ratio_to(s[key], key, base)
        out.append(s)
    return out


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def stderr_tail(f, lines=8):
    f.flush()
    f.seek(0)
    text = f.read().decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:])


# -- the roles: a loop sending, a loop serving HTTP --------------------------

def instrument(loop):
    """Count which way loop.sendfile() went: {calls, loop_fallback, not_implemented}."""
    stats = {"calls": 0, "loop_fallback": 0, "not_implemented": 0}
    original = loop.sendfile

    async def sendfile(*args, **kwargs):
        stats["calls"] += 1
        try:
            return await original(*args, **kwargs)
        except NotImplementedError:
            stats["not_implemented"] += 1
            raise

    loop.sendfile = sendfile
    fallback = getattr(loop, "_sendfile_fallback", None)
    if fallback is not None:
        async def counted(*args, **kwargs):
            stats["loop_fallback"] += 1
            return await fallback(*args, **kwargs)
        loop._sendfile_fallback = counted
    return stats


def path_name(stats, app_fallback="app fallback"):
    if stats["not_implemented"]:
        return app_fallback
    if stats["loop_fallback"]:
        return "loop fallback"
    return "native" if stats["calls"] else "-"


class Receiver(asyncio.Protocol):
    """The sending side's protocol: the reader's one-byte acknowledgements,
    and flow control for the app-level fallback."""

    def __init__(self, loop):
        self.loop = loop
        self.acks = b""
        self.waiter = None
        self.drained = None
        self.lost = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.acks += data
        self._wake()

    def connection_lost(self, exc):
        self.lost = exc or ConnectionResetError("the reader closed the connection")
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_exception(self.lost)

    def _wake(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def pause_writing(self):
        if self.drained is None:
            self.drained = self.loop.create_future()

    def resume_writing(self):
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    async def drain(self):
        if self.lost is not None:
            raise self.lost
        if self.drained is not None:
            await self.drained

    async def ack(self, n):
        """Wait for the reader's n-th acknowledgement; it must say 'K'."""
        while len(self.acks) < n:
            if self.lost is not None:
                raise self.lost
            self.waiter = self.loop.create_future()
            await self.waiter
        if self.acks[n - 1:n] != b"K":
            raise RunFailed(f"the reader found wrong bytes (ack {self.acks!r})")


async def app_fallback(loop, transport, proto, file, offset, count):
    """asyncio's generic _sendfile_fallback, for a loop without sendfile():
    16 KiB reads in the default executor, each written once there is room.
    A fresh buffer per block: a transport may keep a reference to what it
    was given instead of copying it."""
    file.seek(offset)
    total = 0
    while total < count:
        buf = bytearray(min(16384, count - total))
        read = await loop.run_in_executor(None, file.readinto, buf)
        if not read:
            break
        await proto.drain()
        transport.write(buf if read == len(buf) else buf[:read])
        total += read
    file.seek(offset + total)
    return total


async def send_file(loop, transport, proto, file, offset, count):
    try:
        return await loop.sendfile(transport, file, offset, count)
    except NotImplementedError:
        return await app_fallback(loop, transport, proto, file, offset, count)


def role_send(argv):
    parser = argparse.ArgumentParser(prog="sendfile.py _send")
    parser.add_argument("--loop", required=True, choices=LOOPS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from servers import new_loop
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    stats = instrument(loop)

    async def main():
        transport, proto = await loop.create_connection(lambda: Receiver(loop), HOST, args.port)
        acks = 0
        with open(args.file, "rb") as f:
            if args.warmup:
                await send_file(loop, transport, proto, f, 0, args.warmup)
                acks += 1
                await proto.ack(acks)
            cpu0, t0, wait0 = cpu_seconds(), time.monotonic(), run_delay()
            for _ in range(args.passes):
                sent = await send_file(loop, transport, proto, f, 0, args.size)
                if sent != args.size:
                    raise RunFailed(f"sendfile sent {sent} of {args.size} bytes")
            acks += 1
            await proto.ack(acks)
            t1, cpu1, wait1 = time.monotonic(), cpu_seconds(), run_delay()
        transport.close()
        await asyncio.sleep(0)
        return {"wall": t1 - t0, "cpu": cpu1 - cpu0, "bytes": args.size * args.passes,
                "wait": wait1 - wait0,
                "path": path_name(stats), "threads": threading.active_count()}

    result = loop.run_until_complete(main())
    print(json.dumps(result), flush=True)
    loop.close()


def role_http(argv):
    parser = argparse.ArgumentParser(prog="sendfile.py _http")
    parser.add_argument("--loop", required=True, choices=LOOPS)
    parser.add_argument("--file", required=True)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from servers import listening_socket, new_loop
    from aiohttp import web
    sys.setswitchinterval(0.001)
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    stats = instrument(loop)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("message", "?")))

    async def setup():
        async def handler(request):
            return web.FileResponse(args.file)
        app = web.Application()
        app.router.add_get("/file", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        sock = listening_socket()
        await web.SockSite(runner, sock).start()
        return runner, sock.getsockname()[1]

    runner, port = loop.run_until_complete(setup())

    def control():
        started = None
        for line in sys.stdin:
            if line.strip() == "start":
                started = (cpu_seconds(), time.monotonic(), dict(stats), len(errors),
                           run_delay())
            elif line.strip() == "stop" and started:
                delta = {k: stats[k] - started[2][k] for k in stats}
                print(json.dumps({"cpu": cpu_seconds() - started[0],
                                  "wait": run_delay() - started[4],
                                  "wall": time.monotonic() - started[1],
                                  "path": path_name(delta, "aiohttp fallback"),
                                  "errors": errors[started[3]:][:3]}), flush=True)
        os._exit(0)

    threading.Thread(target=control, daemon=True).start()
    print(f"READY {port}", flush=True)
    loop.run_forever()


# -- part 1: mechanisms ---------------------------------------------------------

def run_mechanism(args, path, mode, chunk, slow_us):
    argv = [str(binary()), "--mode", mode, "--file", str(path), "--size", str(args.size),
            "--passes", str(args.passes), "--warmup", str(min(WARMUP, args.size)),
            "--read-buf", str(args.read_buf), "--sender-cpu", str(args.sender_cpu),
            "--reader-cpu", str(args.reader_cpu)]
    if chunk:
        argv += ["--chunk", str(chunk)]
    if slow_us:
        argv += ["--slow-reader", str(slow_us)]
    argv += ["--iowq-cpu", args.iowq_cpu]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode or not lines:
        raise RunFailed(f"{mode}: status {proc.returncode}\n{proc.stderr.strip()}")
    result = parse_result(lines[-1])
    if result.get("ok") != 1:
        raise RunFailed(f"{mode}: the reader got wrong data\n{proc.stderr.strip()}")
    return result


def mechanisms(args, path, slow_us):
    runs = {case: [] for case in MECHANISMS}
    failures = []
    for rnd in range(args.rounds):
        for mode, chunk in rotate(MECHANISMS, rnd):
            progress(f"mechanisms{' (slow reader)' if slow_us else ''}: round {rnd + 1}/"
                     f"{args.rounds}, {mode} {format_size(chunk) if chunk else ''}")
            try:
                runs[mode, chunk].append(attempts(
                    args, lambda: run_mechanism(args, path, mode, chunk, slow_us),
                    lambda r: max(r["wait"], r["reader_wait"]) / r["wall"]))
            except (RunFailed, subprocess.TimeoutExpired) as exc:
                failures.append(str(exc))
    rows = []
    base = statistics.median(r["cpu_ms_per_mib"] for r in runs[MECHANISMS[0]]) \
        if runs[MECHANISMS[0]] else None
    accounting = []
    for (mode, chunk), rs in runs.items():
        if not rs:
            rows.append([mode, format_size(chunk) if chunk else "-", "failed"] + [""] * 6)
            continue
        cpu = [r["cpu_ms_per_mib"] for r in rs]
        iowq = max(0.0, statistics.median(r["iowq"] / r["cpu"] if r["cpu"] else 0 for r in rs))
        per_mib = 1 / (rs[0]["bytes"] / MIB)
        rows.append([
            mode, format_size(chunk) if chunk else "-",
            fmt([r["mib_s"] for r in rs]), fmt(cpu, 3),
            f"{statistics.median(cpu) / base:.2f}x" if base else "-",
            f"{iowq * 100:.0f}%",
            f"{statistics.median(r['enters'] for r in rs) * per_mib:.1f}",
            f"{statistics.median(r['calls'] for r in rs) * per_mib:.1f}",
            f"{statistics.median(r['polls'] for r in rs):.0f}",
        ])
        for r in rs:
            if r["workers"]:
                accounting.append((r["cpu"], r["tasks"], r["iowq"], r["worker_cpus"]))
    header = ["mode", "chunk", "MiB/s", "CPU ms/MiB", "CPU vs sendfile-poll", "io-wq share",
              "enters/MiB", "ops/MiB", "polls"]
    title = (f"### Mechanisms: {format_size(args.size)} x {args.passes}, reader buffer "
             f"{format_size(args.read_buf)}"
             + (f", reader sleeps {slow_us} us per read" if slow_us else "")
             + f" ({args.rounds} round{'s' * (args.rounds != 1)})")
    notes = lost_note(runs)
    if accounting:
        worst = max(abs(cpu - tasks) / cpu for cpu, tasks, _, _ in accounting if cpu)
        share = statistics.median(iowq / cpu for cpu, _, iowq, _ in accounting if cpu)
        cpus = sorted({c for *_, cs in accounting for c in cs.split(",")})
        notes.append(
            f"io-wq accounting: in runs with io-wq workers, getrusage(RUSAGE_SELF) and the sum "
            f"of every thread's run time in /proc/self/task/*/schedstat differ by at most "
            f"{worst * 100:.1f}%, and the workers (last seen on CPU {','.join(cpus)}) account "
            f"for a median {share * 100:.0f}% of it: their CPU time is counted.")
    notes.append("ops/MiB: sendfile(2) calls or io_uring operations (READ, SEND, SPLICE) per "
                 "MiB; enters/MiB: io_uring_enter(2) calls per MiB; polls: POLL_ADDs per run.")
    return title, table(header, rows), notes, failures, runs


# -- part 2: loop.sendfile -----------------------------------------------------

def run_loop_sendfile(args, path, loop):
    with _tmp() as rerr, _tmp() as serr:
        reader = sender = None
        try:
            warmup = min(WARMUP, args.size)
            reader = spawn([str(binary()), "--reader", "--file", str(path), "--size",
                            str(args.size), "--passes", str(args.passes), "--warmup",
                            str(warmup), "--read-buf", str(args.read_buf)],
                           args.reader_cpu, rerr)
            rout = Lines(reader, "reader")
            ready = rout.next(READY_TIMEOUT, "READY")
            if not ready.startswith("READY "):
                raise RunFailed(f"reader said {ready!r}")
            sender = spawn([sys.executable, str(Path(__file__).resolve()), "_send", "--loop",
                            loop, "--port", ready.split()[1], "--file", str(path),
                            "--size", str(args.size), "--passes", str(args.passes),
                            "--warmup", str(warmup)], args.sender_cpu, serr)
            result = json.loads(Lines(sender, f"{loop} sender").next(RUN_TIMEOUT, "result"))
            verdict = parse_result(rout.next(READY_TIMEOUT, "RESULT"))
            if verdict.get("ok") != 1:
                raise RunFailed("the reader got wrong data")
            sender.wait(30)
            if sender.returncode:
                raise RunFailed(f"sender exited with status {sender.returncode}")
            result["reader_wait"] = verdict["wait"]
            return result
        except (RunFailed, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            for proc in (sender, reader):
                if proc is not None and proc.poll() is None:
                    proc.kill()
            raise RunFailed(f"{loop}: {exc}\nsender: {stderr_tail(serr)}\n"
                            f"reader: {stderr_tail(rerr)}") from None
        finally:
            end(sender)
            end(reader)


def _tmp():
    return tempfile.TemporaryFile()


def loops_part(args, path):
    runs = {loop: [] for loop in args.loops}
    failures = []
    for rnd in range(args.rounds):
        for loop in rotate(args.loops, rnd):
            progress(f"loop.sendfile: round {rnd + 1}/{args.rounds}, {loop}")
            try:
                r = attempts(args, lambda: run_loop_sendfile(args, path, loop),
                             lambda r: max(r["wait"], r["reader_wait"]) / r["wall"])
                r["mib_s"] = r["bytes"] / MIB / r["wall"]
                r["cpu_ms_per_mib"] = r["cpu"] * 1000 / (r["bytes"] / MIB)
                runs[loop].append(r)
            except RunFailed as exc:
                failures.append(str(exc))
    rows = []
    for s in summarize(runs, "mib_s", "cpu_ms_per_mib"):
        if not s["runs"]:
            rows.append([s["loop"], "failed", "", "", "", ""])
            continue
        rows.append([s["loop"], s["path"], fmt(s["mib_s_all"]), ratio_text(s["mib_s_vs_asyncio"]),
                     fmt(s["cpu_ms_per_mib_all"], 3), ratio_text(s["cpu_ms_per_mib_vs_asyncio"])])
    header = ["loop", "path", "MiB/s", "MiB/s vs asyncio", "CPU ms/MiB", "CPU vs asyncio"]
    title = (f"### loop.sendfile(): {format_size(args.size)} x {args.passes} on a TCP transport"
             f" ({args.rounds} round{'s' * (args.rounds != 1)})")
    return title, table(header, rows), lost_note(runs), failures, runs


# -- part 3: aiohttp FileResponse ------------------------------------------------

def run_http(args, path, loop):
    with _tmp() as serr, _tmp() as cerr:
        server = None
        try:
            server = spawn([sys.executable, str(Path(__file__).resolve()), "_http", "--loop",
                            loop, "--file", str(path)], args.sender_cpu, serr,
                           stdin=subprocess.PIPE)
            sout = Lines(server, f"{loop} server")
            ready = sout.next(READY_TIMEOUT, "READY")
            if not ready.startswith("READY "):
                raise RunFailed(f"server said {ready!r}")
            port = ready.split()[1]

            def download(count):
                proc = subprocess.run(
                    [str(binary()), "--http-get", "/file", "--port", port, "--file", str(path),
                     "--count", str(count), "--read-buf", str(args.read_buf),
                     "--reader-cpu", str(args.reader_cpu)],
                    capture_output=True, text=True, timeout=RUN_TIMEOUT)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
                if proc.returncode or not lines:
                    cerr.write(proc.stderr.encode())
                    raise RunFailed(f"client: status {proc.returncode}")
                result = parse_result(lines[-1])
                if result.get("ok") != 1:
                    raise RunFailed("client: wrong body")
                return result

            download(1)                                  # warm-up
            server.stdin.write(b"start\n")
            server.stdin.flush()
            client = download(args.http_count)
            server.stdin.write(b"stop\n")
            server.stdin.flush()
            usage = json.loads(sout.next(READY_TIMEOUT, "CPU report"))
            if usage["errors"]:
                raise RunFailed(f"server loop errors: {usage['errors']}")
            return {"per": client["per"], "cpu": usage["cpu"] / args.http_count,
                    "path": usage["path"], "wait": usage["wait"],
                    "reader_wait": client["wait"], "wall": client["total"]}
        except (RunFailed, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            if server is not None and server.poll() is None:
                server.kill()
            raise RunFailed(f"{loop}: {exc}\nserver: {stderr_tail(serr)}\n"
                            f"client: {stderr_tail(cerr)}") from None
        finally:
            end(server)


def http_part(args, path):
    runs = {loop: [] for loop in args.loops}
    failures = []
    for rnd in range(args.rounds):
        for loop in rotate(args.loops, rnd):
            progress(f"aiohttp FileResponse: round {rnd + 1}/{args.rounds}, {loop}")
            try:
                r = attempts(args, lambda: run_http(args, path, loop),
                             lambda r: max(r["wait"], r["reader_wait"]) / r["wall"])
                r["ms_per_download"] = r["per"] * 1000
                r["server_cpu_ms"] = r["cpu"] * 1000
                runs[loop].append(r)
            except RunFailed as exc:
                failures.append(str(exc))
    rows = []
    for s in summarize(runs, "ms_per_download", "server_cpu_ms"):
        if not s["runs"]:
            rows.append([s["loop"], "failed", "", "", "", ""])
            continue
        rows.append([s["loop"], s["path"], fmt(s["ms_per_download_all"]),
                     ratio_text(s["ms_per_download_vs_asyncio"]), fmt(s["server_cpu_ms_all"]),
                     ratio_text(s["server_cpu_ms_vs_asyncio"])])
    header = ["loop", "path", "ms per download", "time vs asyncio", "server CPU ms per download",
              "CPU vs asyncio"]
    title = (f"### aiohttp web.FileResponse: {format_size(args.http_size)}, "
             f"{args.http_count} downloads per round ({args.rounds} round"
             f"{'s' * (args.rounds != 1)})")
    notes = lost_note(runs) + [
        "path: native = loop.sendfile() used the loop's own sendfile; loop fallback = "
        "asyncio's generic 16 KiB executor reads; aiohttp fallback = the loop raised "
        "NotImplementedError and aiohttp read 256 KiB chunks in the executor."]
    return title, table(header, rows), notes, failures, runs


# -- main -------------------------------------------------------------------------

def environment(args):
    # Those not installed go unnamed: the parts that need them were not asked for.
    packages = versions(name for name in ("uvloop", "aiohttp") if installed(name))
    native = subprocess.run(
        [sys.executable, "-c",
         "import asyncio, uringloop; print(uringloop.Loop._sendfile_native is not "
         "asyncio.BaseEventLoop._sendfile_native)"],
        capture_output=True, text=True, cwd=REPO, timeout=60).stdout.strip()
    return (f"kernel {platform.release()}, {os.cpu_count()} CPUs ({cpu_model()}); "
            + ", ".join(f"{k} {v}" for k, v in packages.items())
            + f"; uringloop {commit()}, its own _sendfile_native: {native or '?'}; "
            f"sender on CPU {args.sender_cpu}, reader on CPU {args.reader_cpu}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=parse_size, default=100 * MIB,
                        help="the file sent by parts 1 and 2 (default 100m)")
    parser.add_argument("--passes", type=int, default=1,
                        help="send the file this many times per measured run")
    parser.add_argument("--read-buf", type=parse_size, default=256 << 10,
                        help="the reader's recv() buffer (default 256k)")
    parser.add_argument("--slow-reader", type=int, default=0, metavar="USEC",
                        help="also run the mechanisms with a reader sleeping USEC per read")
    parser.add_argument("--iowq-cpu", choices=["sender", "any"], default="sender",
                        help="confine the io-wq workers of the mechanisms to the sender's "
                             "CPU (default) or let them run anywhere")
    parser.add_argument("--http-size", type=parse_size, default=20 * MIB)
    parser.add_argument("--http-count", type=int, default=10,
                        help="downloads per round in part 3")
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    parser.add_argument("--retries", type=int, default=2,
                        help=f"repeat a run that lost {CONTENDED * 100:.0f}%% or more of its "
                             "window to other work on its CPUs up to this many times (default 2)")
    parser.add_argument("--sender-cpu", type=int)
    parser.add_argument("--reader-cpu", type=int)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round, 16 MiB and 4 MiB files, 3 downloads")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of Markdown "
                             "(benchmarks/run.py's workload sendfile uses this)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.size, args.http_size, args.http_count = 1, 16 * MIB, 4 * MIB, 3
    cpus = sorted(os.sched_getaffinity(0))
    if args.sender_cpu is None:
        args.sender_cpu = cpus[0]
    if args.reader_cpu is None:
        args.reader_cpu = cpus[1] if len(cpus) > 1 else cpus[0]
    if not {args.sender_cpu, args.reader_cpu} <= set(cpus):
        parser.error(f"--sender-cpu and --reader-cpu must be among {cpus}")
    if args.sender_cpu == args.reader_cpu:
        progress("warning: sender and reader share a CPU")
    if args.rounds < 1 or args.size < 4096 or args.passes < 1 or args.http_count < 1:
        parser.error("rounds, size, passes and http-count must be positive")
    missing = [n for n in ("uvloop",) if n in args.loops and importlib.util.find_spec(n) is None]
    if "http" in args.parts and importlib.util.find_spec("aiohttp") is None:
        missing.append("aiohttp")
    if missing:
        parser.error(f"missing packages: {' '.join(missing)}")
    if BASELINE not in args.loops:
        progress(f"note: {BASELINE} is not among --loops: no ratios")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_send"]:
        return role_send(argv[1:])
    if argv[:1] == ["_http"]:
        return role_http(argv[1:])
    args = parse_args(argv)
    try:
        binary()
    except loadgen.BuildError as exc:
        sys.exit(str(exc))
    # This process stays off the sender's CPU; children are pinned.
    os.sched_setaffinity(0, {args.reader_cpu})
    env = environment(args)
    sections = []
    started = time.monotonic()
    interrupted = False
    try:
        if "mechanisms" in args.parts or "loops" in args.parts:
            path = test_file(args.size, "data")
        if "mechanisms" in args.parts:
            sections.append(("mechanisms", *mechanisms(args, path, 0)))
            if args.slow_reader:
                sections.append(("mechanisms-slow-reader",
                                 *mechanisms(args, path, args.slow_reader)))
        if "loops" in args.parts:
            sections.append(("loops", *loops_part(args, path)))
        if "http" in args.parts:
            sections.append(("http", *http_part(args, test_file(args.http_size, "http"))))
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: the tables hold the runs finished so far")
    failed = any(failures for *_, failures, _ in sections)
    for *_, failures, _ in sections:
        for failure in failures:
            progress(failure)
    if args.json:
        print(json.dumps(as_json(args, env, sections, time.monotonic() - started, interrupted)))
        return 1 if failed else 0
    print(f"## Sending a file: {env}\n")
    for _, title, text, notes, failures, _ in sections:
        print(title + "\n")
        print(text + "\n")
        for note in notes:
            print(f"- {note.format(retries=args.retries)}")
        for failure in failures:
            print(f"- FAILED: {failure.splitlines()[0]}")
        print()
    print("Medians over rounds; ±: half the range over rounds, relative to the median. "
          f"{time.monotonic() - started:.0f} s in all.")
    return 1 if failed else 0


def as_json(args, env, sections, seconds, interrupted):
    """--json: the settings, and per part its title, notes, failures (full
    text), every run, and for the loops and http parts the per-loop
    summary (see summarize()); the mechanisms parts carry their Markdown
    table instead."""
    parts = {}
    for name, title, text, notes, failures, runs in sections:
        part = {"title": title.removeprefix("### "),
                "notes": [note.format(retries=args.retries) for note in notes],
                "failures": failures}
        if name == "loops":
            part["summary"] = summarize(runs, "mib_s", "cpu_ms_per_mib")
        elif name == "http":
            part["summary"] = summarize(runs, "ms_per_download", "server_cpu_ms")
        else:
            part["table"] = text
        part["runs"] = {key if isinstance(key, str)
                        else f"{key[0]} {format_size(key[1]) if key[1] else '-'}": rs
                        for key, rs in runs.items()}
        parts[name] = part
    settings = {key: getattr(args, key) for key in (
        "parts", "loops", "rounds", "retries", "size", "passes", "read_buf", "http_size",
        "http_count", "sender_cpu", "reader_cpu")}
    return {"environment": env, "baseline": BASELINE, "settings": settings,
            "seconds": round(seconds, 1), "interrupted": interrupted, "parts": parts}


if __name__ == "__main__":
    sys.exit(main())
