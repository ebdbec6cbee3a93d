"""Load: thousands of connections held open at once, and a million requests
through one server, on uringloop, asyncio's default loop and uvloop.

    python benchmarks/load.py                    # full size: 10,000 connections, 1,000,000 requests
    python benchmarks/load.py --connections 2000 --requests 100000 --loops uringloop uvloop

Requests.  A server process on the loop (pinned to one CPU) answers
fixed-size requests (64 bytes), one write() per request.  This process
(pinned to the other CPU, on uvloop) drives it over a few connections, each
keeping several requests in flight (pipelined), and checks every byte of
every response.  The first 10% of the requests are the warm-up: the load
then pauses until every response is in and the server's resident set
(VmRSS, /proc/<pid>/status) is read; the rest run, and once they are all
answered VmRSS is read again.  The growth between the two is what serving
the rest of the requests cost in memory: it should be about nothing.
Requests/s and the server's CPU time per request (/proc/<pid>/stat,
user + system) are over the part after the warm-up.

Connections.  A process on the loop runs an echo server; a second process,
on the same loop, opens N connections to it and holds them all; with all N
held (the server counts them), every connection sends one message at once
and checks that exactly its own bytes come back; then all close and the
server's count returns to 0.  The table gives the connections the server
held at once, the echoes that came back intact, how long that round of N
echoes took, and the server's VmRSS with all N held.

tests/test_load.py runs the same code, scaled down, on every loop kind and
asserts the behaviour (every byte back, nothing leaked, RSS growth under
10 MiB); this script measures.  The loops run one after another, each round
starting with a different one (--rounds); medians over rounds.

Roles (used by the scenarios above, not meant to be typed):
    load.py serve --loop K              the request server (READY <port> on stdout)
    load.py clients --loop K --port P --connections N    the holding clients
    load.py hold --loop K --connections N                one connections run, as JSON
uringloop-compat as K means uringloop with the features in URINGLOOP_DISABLE
masked, which the caller sets (the test suite's compat mask).
"""
import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import measuring  # noqa: E402
import servers  # noqa: E402  (each role imports only its own loop: servers.new_loop)
HOST = "127.0.0.1"
LOOPS = ["uringloop", "asyncio", "uvloop"]
KINDS = LOOPS + ["uringloop-compat"]
BACKLOG = 4096

FULL_REQUESTS = 1_000_000
FULL_CONNECTIONS = 10_000

# Requests: fixed size, each carrying its connection and sequence number, so
# a response that is stale, duplicated or another connection's differs.
REQUEST_SIZE = 64
FILLER = b"." * (REQUEST_SIZE - 27) + b"\n"          # after b"%08x %016x "
PIPELINE_CONNECTIONS = 8
PIPELINE_DEPTH = 32
WARMUP_FRACTION = 0.1
# Fail a run when no response arrives for this long (a hang, not a slow loop).
STALL_SECONDS = 30.0
# Echo message per held connection: its index, repeated.
MESSAGE_REPEAT = 12
CONNECT_CONCURRENCY = 256
STEP_TIMEOUT = 300.0


def new_loop(kind):
    """A fresh loop of `kind` (servers.py's, plus uringloop-compat, which is
    uringloop with the caller's URINGLOOP_DISABLE)."""
    if kind == "uringloop-compat":
        if not os.environ.get("URINGLOOP_DISABLE"):
            raise SystemExit("uringloop-compat: the caller must set URINGLOOP_DISABLE")
        kind = "uringloop"
    return servers.new_loop(kind)


def client_loop():
    """The driving side's loop: uvloop where installed (the lean one)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.SelectorEventLoop()
    return uvloop.new_event_loop()


def raise_fd_limit(need=None):
    """Soft RLIMIT_NOFILE up to the hard limit; returns the previous pair.
    Raises RuntimeError when `need` descriptors cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if need is not None and hard != resource.RLIM_INFINITY and need > hard:
        raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} is below the {need} "
                           f"descriptors needed")
    return soft, hard


def rss_kib(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Errors:
    """An exception handler that counts what the loop reports."""

    def __init__(self):
        self.count = 0
        self.first = None

    def __call__(self, loop, context):
        self.count += 1
        if self.first is None:
            exc = context.get("exception")
            self.first = context.get("message", "") + (f": {exc!r}" if exc else "")


async def _until(predicate, timeout, what, fail=True):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if not fail:
                return
            raise AssertionError(f"{what} not reached within {timeout:.0f} s")
        await asyncio.sleep(0.01)


def pinned(cpu):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def spawn(role_args, kind, env=None, cpu=None):
    """This script in a child process, in role `role_args`, on loop `kind`."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *role_args,
                             "--loop", kind],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=full_env,
                            preexec_fn=pinned(cpu), cwd=REPO)


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def tell(proc, text):
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()


async def read_line(proc, timeout, waiting_for):
    """One line from a child's stdout, read in the default executor (the
    loop may lack pipes and add_reader), with a deadline."""
    loop = asyncio.get_running_loop()
    try:
        line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
    except asyncio.TimeoutError:
        proc.kill()        # unblocks the reading thread
        raise RuntimeError(f"no {waiting_for} from the child within {timeout:.0f} s") from None
    if not line:
        raise RuntimeError(f"the child exited (status {proc.wait()}) before {waiting_for}")
    return line.decode().strip()


def reap(proc, timeout=10.0):
    """End a child (EOF on stdin, then kill), close its pipes; its exit status."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    return proc.returncode


# -- requests: one server, many pipelined requests


class RequestServer(asyncio.Protocol):
    """Answers each 64-byte request with its own write() of the same bytes
    (or, `joined`, the answers to one data_received() in one write())."""

    def __init__(self, stats, joined=False):
        self.stats = stats
        self.pending = b""
        if joined:
            self.data_received = self.data_received_joined

    def connection_made(self, transport):
        self.transport = transport
        self.stats["open"] += 1

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        end = len(data) - len(data) % REQUEST_SIZE
        write = self.transport.write
        for i in range(0, end, REQUEST_SIZE):
            write(data[i:i + REQUEST_SIZE])
        self.pending = data[end:]
        self.stats["requests"] += end // REQUEST_SIZE

    def data_received_joined(self, data):
        if self.pending:
            data = self.pending + data
        end = len(data) - len(data) % REQUEST_SIZE
        if end:
            self.transport.write(b"".join([data[i:i + REQUEST_SIZE]
                                           for i in range(0, end, REQUEST_SIZE)]))
        self.pending = data[end:]
        self.stats["requests"] += end // REQUEST_SIZE

    def connection_lost(self, exc):
        self.stats["open"] -= 1


def serve_main(kind, joined=False):
    """Role `serve`: print READY <port>, serve until EOF on stdin, then
    print one JSON line: requests answered, connections still open, errors."""
    raise_fd_limit()
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)
    errors = Errors()
    loop.set_exception_handler(errors)
    stats = {"open": 0, "requests": 0}
    server = loop.run_until_complete(
        loop.create_server(lambda: RequestServer(stats, joined), HOST, 0, backlog=BACKLOG))

    def control():
        for _ in sys.stdin:
            pass
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=control, daemon=True).start()
    say(f"READY {server.sockets[0].getsockname()[1]}")
    loop.run_forever()
    server.close()
    loop.run_until_complete(server.wait_closed())
    # The clients closed first; their EOFs may still be on the way.
    loop.run_until_complete(_until(lambda: stats["open"] == 0, 10, "all connections closed",
                                   fail=False))
    say(json.dumps({"requests": stats["requests"], "open": stats["open"],
                    "errors": errors.count, "first_error": errors.first}))
    loop.close()


class Pipelined(asyncio.Protocol):
    """One client connection keeping up to `depth` requests in flight."""

    def __init__(self, index, drive):
        self.index = index
        self.drive = drive
        self.expected = bytearray()
        self.received = 0
        self.seq = 0
        self.transport = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def issue(self, count):
        first = self.seq
        self.seq += count
        index = self.index
        requests = b"".join([b"%08x %016x " % (index, s) + FILLER
                             for s in range(first, self.seq)])
        self.expected += requests
        self.transport.write(requests)

    def data_received(self, data):
        if not self.expected.startswith(data):
            self.drive.fail(f"connection {self.index}: a response differs from its request "
                            f"(or came unasked) after {self.received} good bytes")
            return
        del self.expected[:len(data)]
        before = self.received // REQUEST_SIZE
        self.received += len(data)
        self.drive.answered(self, self.received // REQUEST_SIZE - before)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)
        if self.expected:
            self.drive.fail(f"connection {self.index} lost with {len(self.expected)} "
                            f"bytes of responses missing: {exc!r}")


class Drive:
    """Issues requests up to a target, pipelined `depth` deep per connection."""

    def __init__(self, depth):
        self.depth = depth
        self.issued = 0
        self.done = 0
        self.target = 0
        self.phase = None
        self.progress = time.monotonic()

    def start_phase(self, target, conns):
        self.target = target
        self.phase = asyncio.get_running_loop().create_future()
        for conn in conns:
            self.top_up(conn, self.depth)
        return self.phase

    def top_up(self, conn, count):
        count = min(count, self.target - self.issued)
        if count > 0:
            self.issued += count
            conn.issue(count)

    def answered(self, conn, count):
        if count:
            self.done += count
            self.progress = time.monotonic()
            self.top_up(conn, count)
            if self.done == self.target and not self.phase.done():
                self.phase.set_result(None)

    def fail(self, message):
        if self.phase is not None and not self.phase.done():
            self.phase.set_exception(AssertionError(message))


async def _await_phase(drive, phase):
    while True:
        done, _ = await asyncio.wait([phase], timeout=1.0)
        if done:
            return phase.result()
        if time.monotonic() - drive.progress > STALL_SECONDS:
            raise AssertionError(f"no response for {STALL_SECONDS:.0f} s: {drive.done} of "
                                 f"{drive.target} requests answered")


async def drive_requests(port, pid, total, connections=PIPELINE_CONNECTIONS,
                         depth=PIPELINE_DEPTH, warmup=WARMUP_FRACTION, settle=0.2):
    """Send `total` requests to the server at `port` (process `pid`), check
    every response; VmRSS and CPU of `pid` after the warm-up and at the end."""
    loop = asyncio.get_running_loop()
    drive = Drive(depth)
    conns = []
    try:
        for i in range(connections):
            _, conn = await loop.create_connection(lambda i=i: Pipelined(i, drive), HOST, port)
            conns.append(conn)
        warm = max(int(total * warmup), connections * depth)
        await _await_phase(drive, drive.start_phase(warm, conns))
        await asyncio.sleep(settle)          # the server's last completions, reaped
        rss_warm, cpu_warm, started = rss_kib(pid), cpu_seconds(pid), time.monotonic()
        await _await_phase(drive, drive.start_phase(total, conns))
        seconds = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu_warm
        await asyncio.sleep(settle)
        rss_end = rss_kib(pid)
    finally:
        for conn in conns:
            conn.transport.close()
        for conn in conns:
            await asyncio.wait_for(conn.lost, 10)
    measured = total - warm
    return {"requests": drive.done, "measured": measured, "seconds": seconds,
            "rps": measured / seconds, "cpu_us": cpu / measured * 1e6,
            "server_busy": cpu / seconds,
            "rss_warm_kib": rss_warm, "rss_end_kib": rss_end,
            "growth_kib": rss_end - rss_warm}


def run_requests(kind, total, env=None, server_cpu=None, joined=False, **options):
    """The requests scenario against a fresh server process on `kind`,
    driven from this process on its own (uvloop) loop.  Returns the
    measurements plus the server's own report ("server")."""
    proc = spawn(["serve", *(["--joined"] if joined else [])], kind, env, server_cpu)
    loop = client_loop()
    try:
        ready = loop.run_until_complete(read_line(proc, 60, "READY line"))
        if not ready.startswith("READY "):
            raise RuntimeError(f"server said {ready!r} instead of READY")
        result = loop.run_until_complete(
            drive_requests(int(ready.split()[1]), proc.pid, total, **options))
        proc.stdin.close()
        result["server"] = json.loads(loop.run_until_complete(
            read_line(proc, 60, "the server's report")))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        status = reap(proc)
    if status:
        raise RuntimeError(f"the server exited with status {status}")
    return result


# -- connections: many held open at once, all echoing


class HeldEcho(asyncio.Protocol):
    """Echoes; counts the connections it holds."""

    def __init__(self, stats):
        self.stats = stats

    def connection_made(self, transport):
        self.transport = transport
        self.stats["open"] += 1
        self.stats["peak"] = max(self.stats["peak"], self.stats["open"])

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.stats["open"] -= 1


async def hold_connections(n, kind, env=None, client_cpu=None, timeout=STEP_TIMEOUT):
    """The connections scenario, with the echo server on the running loop
    and the clients in a child process on loop `kind`.  Returns what the
    server held and what the clients got; raises when a step fails."""
    loop = asyncio.get_running_loop()
    stats = {"open": 0, "peak": 0}
    server = await loop.create_server(lambda: HeldEcho(stats), HOST, 0, backlog=BACKLOG)
    port = server.sockets[0].getsockname()[1]
    proc = spawn(["clients", "--port", str(port), "--connections", str(n)], kind, env,
                 client_cpu)
    try:
        line = await read_line(proc, timeout, "CONNECTED")
        if not line.startswith("CONNECTED "):
            raise AssertionError(f"clients: {line}")
        connect_seconds = float(line.split()[2])
        await _until(lambda: stats["open"] == n, timeout, f"the server holding {n} connections")
        held = stats["open"]
        rss_held = rss_kib()
        tell(proc, "echo")
        line = await read_line(proc, timeout, "ECHOED")
        if not line.startswith("ECHOED "):
            raise AssertionError(f"clients: {line}")
        _, intact, wrong, echo_seconds = line.split()
        held_after = stats["open"]
        tell(proc, "close")
        closing = time.monotonic()
        line = await read_line(proc, timeout, "CLOSED")
        if line != "CLOSED":
            raise AssertionError(f"clients: {line}")
        await _until(lambda: stats["open"] == 0, timeout, "the server's count back to 0")
        close_seconds = time.monotonic() - closing
    finally:
        # The clients first: from 3.12 on, wait_closed() waits for every
        # connection, which a failed step may have left open.
        status = await loop.run_in_executor(None, reap, proc)
        server.close()
        await server.wait_closed()
    if status:
        raise AssertionError(f"the clients' process exited with status {status}")
    return {"connections": n, "held": held, "held_after_echo": held_after,
            "peak": stats["peak"], "open_after": stats["open"],
            "intact": int(intact), "wrong": int(wrong),
            "connect_seconds": connect_seconds, "echo_seconds": float(echo_seconds),
            "close_seconds": close_seconds,
            "rss_held_kib": rss_held}


class Holder(asyncio.Protocol):
    def __init__(self, index):
        self.message = (b"%08d|" % index) * MESSAGE_REPEAT
        self.got = bytearray()
        loop = asyncio.get_running_loop()
        self.echoed = loop.create_future()
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.got += data
        if len(self.got) >= len(self.message) and not self.echoed.done():
            self.echoed.set_result(None)

    def connection_lost(self, exc):
        if not self.echoed.done():
            self.echoed.set_result(None)
        if not self.lost.done():
            self.lost.set_result(exc)


def clients_main(kind, port, n):
    """Role `clients`: open n connections (CONNECTED n <seconds>), echo on
    all at "echo" (ECHOED <intact> <wrong> <seconds>), close all at "close"
    (CLOSED)."""
    try:
        raise_fd_limit(n + 64)
    except RuntimeError as exc:
        say(f"ERROR {exc}")
        sys.exit(1)
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)

    async def command(expected):
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != expected:
            raise SystemExit(f"expected {expected!r} on stdin, got {line!r}")

    async def main():
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        holders = [Holder(i) for i in range(n)]

        async def connect(holder):
            async with limit:
                await loop.create_connection(lambda: holder, HOST, port)

        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(connect(h) for h in holders)), STEP_TIMEOUT)
        except Exception as exc:
            say(f"ERROR connecting: {exc!r}")
            raise SystemExit(1)
        say(f"CONNECTED {n} {time.monotonic() - started:.3f}")
        await command("echo")
        started = time.monotonic()
        for h in holders:                     # all at once, then wait for all
            h.transport.write(h.message)
        await asyncio.wait_for(asyncio.gather(*(h.echoed for h in holders)), STEP_TIMEOUT)
        seconds = time.monotonic() - started
        intact = sum(bytes(h.got) == h.message for h in holders)
        say(f"ECHOED {intact} {n - intact} {seconds:.3f}")
        await command("close")
        for h in holders:
            h.transport.close()
        await asyncio.wait_for(asyncio.gather(*(h.lost for h in holders)), STEP_TIMEOUT)
        say("CLOSED")

    try:
        loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def hold_main(kind, n, client_cpu):
    """Role `hold`: the connections scenario with the server in this process
    on `kind`; one JSON line."""
    raise_fd_limit(n + 64)
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)
    errors = Errors()
    loop.set_exception_handler(errors)
    try:
        result = loop.run_until_complete(hold_connections(n, kind, client_cpu=client_cpu))
        result["errors"] = errors.count
        result["first_error"] = errors.first
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    say(json.dumps(result))


def run_hold(kind, n, server_cpu=None, client_cpu=None):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "hold",
                             "--loop", kind, "--connections", str(n),
                             *(["--client-cpu", str(client_cpu)] if client_cpu is not None
                               else [])],
                            stdout=subprocess.PIPE, preexec_fn=pinned(server_cpu), cwd=REPO)
    out, _ = proc.communicate(timeout=4 * STEP_TIMEOUT)
    lines = out.decode().strip().splitlines()
    if proc.returncode or not lines:
        return {"error": f"exited with status {proc.returncode}"}
    return json.loads(lines[-1])


# -- the benchmark


def environment():
    versions = [f"Python {platform.python_version()}"]
    for name in ("uvloop",):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "uringloop"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " (uringloop/ modified)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"Linux {platform.release()}, {model} ({os.cpu_count()} CPUs); " \
           f"{', '.join(versions)}; uringloop at {commit}"


def mib(kib):
    return f"{kib / 1024:.1f}"


def table(args, results, started, seconds):
    base = args.baseline
    med = {}
    for loop in args.loops:
        req = [r for r in results[loop]["requests"] if "error" not in r]
        hold = [r for r in results[loop]["hold"] if "error" not in r]
        med[loop] = {
            "req_ok": len(req), "hold_ok": len(hold),
            "rps": statistics.median(r["rps"] for r in req) if req else None,
            "cpu_us": statistics.median(r["cpu_us"] for r in req) if req else None,
            "busy": statistics.median(r["server_busy"] for r in req) if req else None,
            "rss_warm": statistics.median(r["rss_warm_kib"] for r in req) if req else None,
            "growth": max(r["growth_kib"] for r in req) if req else None,
            "held": min(r["held"] for r in hold) if hold else None,
            "intact": min(r["intact"] for r in hold) if hold else None,
            "echo_s": statistics.median(r["echo_seconds"] for r in hold) if hold else None,
            "close_s": statistics.median(r["close_seconds"] for r in hold) if hold else None,
            "rss_held": statistics.median(r["rss_held_kib"] for r in hold) if hold else None,
        }
    b = med[base]

    def vs(loop, key):
        v, ref = med[loop][key], b[key]
        if loop == base or v is None or not ref:
            return "—"
        return f"{v / ref:.2f}x"

    out = [f"## Load: {args.requests:,} requests, {args.connections:,} connections "
           f"({time.strftime('%Y-%m-%d %H:%M', time.localtime(started))})", "",
           f"{environment()}.  Servers pinned to CPU {args.server_cpu}, clients to CPU "
           f"{args.client_cpu}; {args.rounds} round(s), the loops alternating.  "
           f"Took {seconds / 60:.1f} min.", "",
           f"| loop | requests/s | req/s vs {base} | server CPU µs/request | CPU vs {base} "
           f"| server busy | RSS after warm-up MiB | RSS growth MiB | connections held "
           f"| echoes intact | echo round s | close round s | RSS holding them MiB "
           f"| RSS vs {base} |",
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for loop in args.loops:
        m = med[loop]
        if m["req_ok"]:
            req = [f"{m['rps']:,.0f}", vs(loop, "rps"), f"{m['cpu_us']:.2f}",
                   vs(loop, "cpu_us"), f"{m['busy']:.0%}", mib(m["rss_warm"]),
                   f"{m['growth'] / 1024:+.2f}"]
        else:
            req = ["**failed**", "", "", "", "", "", ""]
        if m["hold_ok"]:
            hold = [f"{m['held']:,}", f"{m['intact']:,}", f"{m['echo_s']:.2f}",
                    f"{m['close_s']:.2f}", mib(m["rss_held"]), vs(loop, "rss_held")]
        else:
            hold = ["**failed**", "", "", "", "", ""]
        out.append(f"| {loop} | " + " | ".join(req + hold) + " |")
    out += ["",
            f"Requests: {args.requests:,} requests of {REQUEST_SIZE} B over "
            f"{PIPELINE_CONNECTIONS} connections, {PIPELINE_DEPTH} in flight on each, from one "
            f"uvloop client process; " + (
                "the server answers the requests of each data_received() with one "
                "write().  " if args.joined else
                "the server answers each with its own write().  asyncio's and uvloop's "
                "write() tries a send() at once on an idle socket, so they make a system "
                "call per response; uringloop queues the responses of one loop iteration "
                "into one SEND/SENDMSG (--joined: one write() per data_received()).  ") +
            f"Requests/s and server CPU (user + "
            f"system, /proc/<pid>/stat) over the {1 - WARMUP_FRACTION:.0%} after the "
            f"warm-up; server busy is that CPU time over the wall time (well below 100% "
            f"means the client process set the pace).  RSS growth: the server's VmRSS once all "
            f"requests are answered minus its VmRSS after the warm-up (largest over "
            f"rounds).  Connections: the count the server held at once (smallest over "
            f"rounds), echoes that came back byte for byte, the wall time of one echo on "
            f"every connection at once and of closing them all (clients on the same loop, "
            f"from their close() to the server's count at 0), the server's VmRSS with all "
            f"held.  Medians over rounds; above 1 is better for requests/s, below 1 for "
            f"CPU and RSS."]
    failures = [(loop, kind, r["error"]) for loop in args.loops
                for kind in ("requests", "hold") for r in results[loop][kind] if "error" in r]
    if failures:
        out += ["", "Failures:", ""] + [f"- {loop}, {kind}: {err}" for loop, kind, err in failures]
    return "\n".join(out) + "\n"


def bench_main(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS)
    parser.add_argument("--requests", type=int, default=FULL_REQUESTS,
                        help=f"requests through the one server (default: {FULL_REQUESTS:,})")
    parser.add_argument("--connections", type=int, default=FULL_CONNECTIONS,
                        help=f"connections held at once (default: {FULL_CONNECTIONS:,})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per scenario and loop, the loops alternating (default: 1)")
    parser.add_argument("--joined", action="store_true",
                        help="the request server answers all the requests of one "
                             "data_received() with one write() (default: a write() each)")
    parser.add_argument("--baseline", choices=LOOPS, default="uvloop")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    if args.baseline not in args.loops:
        args.baseline = args.loops[0]
    if min(args.requests, args.connections, args.rounds) < 1:
        parser.error("requests, connections and rounds must be positive")
    cpus = os.sched_getaffinity(0)
    if args.server_cpu == args.client_cpu or not {args.server_cpu, args.client_cpu} <= cpus:
        parser.error(f"--server-cpu and --client-cpu must be two different CPUs of {sorted(cpus)}")
    measuring.compile_bytecode()
    try:
        raise_fd_limit(args.connections + 64)
    except RuntimeError as exc:
        parser.error(str(exc))
    os.sched_setaffinity(0, {args.client_cpu})

    results = {loop: {"requests": [], "hold": []} for loop in args.loops}
    started = time.time()
    total = len(args.loops) * args.rounds * 2
    step = 0
    for rnd in range(args.rounds):
        order = args.loops[rnd % len(args.loops):] + args.loops[:rnd % len(args.loops)]
        for loop in order:
            step += 1
            print(f"[{step}/{total}] round {rnd + 1}: {args.requests:,} requests on {loop}",
                  file=sys.stderr, flush=True)
            try:
                r = run_requests(loop, args.requests, server_cpu=args.server_cpu,
                                 joined=args.joined)
                if r["server"]["errors"] or r["server"]["requests"] != args.requests:
                    r = {"error": f"the server answered {r['server']['requests']:,} requests "
                                  f"and its loop reported {r['server']['errors']} "
                                  f"error(s); first: {r['server']['first_error']}"}
            except Exception as exc:
                r = {"error": f"{type(exc).__name__}: {exc}"}
            results[loop]["requests"].append(r)
            step += 1
            print(f"[{step}/{total}] round {rnd + 1}: {args.connections:,} connections "
                  f"on {loop}", file=sys.stderr, flush=True)
            r = run_hold(loop, args.connections, args.server_cpu, args.client_cpu)
            if "error" not in r and (r["errors"] or r["wrong"] or r["held"] != args.connections):
                r["error"] = (f"held {r['held']}, {r['wrong']} echoes wrong, "
                              f"{r['errors']} loop error(s); first: {r['first_error']}")
            results[loop]["hold"].append(r)
    text = table(args, results, started, time.time() - started)
    print(text)
    return 1 if any("error" in r for v in results.values() for rs in v.values() for r in rs) \
        else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("serve", "clients", "hold"):
        parser = argparse.ArgumentParser(prog=f"load.py {argv[0]}")
        parser.add_argument("--loop", required=True, choices=KINDS)
        parser.add_argument("--port", type=int)
        parser.add_argument("--connections", type=int)
        parser.add_argument("--client-cpu", type=int)
        parser.add_argument("--joined", action="store_true")
        args = parser.parse_args(argv[1:])
        if argv[0] == "serve":
            serve_main(args.loop, args.joined)
        elif argv[0] == "clients":
            clients_main(args.loop, args.port, args.connections)
        else:
            hold_main(args.loop, args.connections, args.client_cpu)
        return 0
    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
