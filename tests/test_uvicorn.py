"""The real uvicorn serving ASGI applications (uvicorn_app.py) on each loop
of conftest.LOOP_KINDS: ``--loop uringloop:new_event_loop`` (uringloop, and
again with every kernel fallback masked), ``--loop asyncio`` and
``--loop uvloop``, and the same values through uvicorn.run(app, loop=...).

uvicorn runs as a child process in a session of its own on 127.0.0.1; the
test talks HTTP to it with http.client and asserts the same on every loop:
the application runs on the loop asked for, requests and streamed
responses arrive whole and in order, the lifespan events run, and a
graceful shutdown on SIGINT or SIGTERM lets a response in flight finish.
Nothing here measures time; deadlines only turn a hang into a failure.
"""
import asyncio
import contextlib
import http.client
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import uvloop

import uringloop
from conftest import COMPAT_MASK
from support import HOST, check_bytes
from uvicorn_app import STREAM_LINES

pytestmark = pytest.mark.timeout(120)

TESTS = pathlib.Path(__file__).parent
DEADLINE = 30.0

# uvicorn's --loop (and uvicorn.run's loop=) value for each loop kind, and
# the class of the loop the application should find itself running on.
LOOP_OPTIONS = {"uringloop": "uringloop:new_event_loop",
                "uringloop-compat": "uringloop:new_event_loop",
                "asyncio": "asyncio",
                "uvloop": "uvloop"}
LOOP_CLASSES = {"uringloop": uringloop.Loop, "uringloop-compat": uringloop.Loop,
                "asyncio": asyncio.SelectorEventLoop, "uvloop": uvloop.Loop}


def loop_name(loop_kind):
    cls = LOOP_CLASSES[loop_kind]
    return f"{cls.__module__}.{cls.__qualname__}"


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Child:
    """uvicorn running in a child process: how to reach it, its events and
    its output."""

    def __init__(self, process, port, tmp_path):
        self.process = process
        self.port = port
        self.events_path = tmp_path / "events"
        self.gate_path = tmp_path / "gate"
        self.log_path = tmp_path / "uvicorn.log"

    def connection(self, rcvbuf=None):
        """An HTTP connection to the server; with `rcvbuf`, one whose small
        receive window keeps the server waiting for the test to read."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=DEADLINE)
        if rcvbuf is not None:
            conn.sock = socket.socket()
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            conn.sock.settimeout(DEADLINE)
            conn.sock.connect((HOST, self.port))
        return conn

    def get(self, path, conn=None, rcvbuf=None):
        """(status, body) of GET `path`, on `conn` or on a connection of its own."""
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(contextlib.closing(self.connection(rcvbuf)))
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()

    def wait_until_serving(self):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"uvicorn exited early:\n{self.log()}"
            with contextlib.suppress(ConnectionRefusedError):
                return self.get("/loop")
            time.sleep(0.05)
        pytest.fail(f"uvicorn did not start serving:\n{self.log()}")

    def wait_until_refusing(self):
        """Until a connect is refused: the listening socket is closed, which
        uvicorn does once the signal has started its shutdown."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=DEADLINE).close()
            except ConnectionRefusedError:
                return
            time.sleep(0.01)
        pytest.fail(f"uvicorn went on accepting connections:\n{self.log()}")

    def stop(self, sig=signal.SIGINT):
        self.process.send_signal(sig)
        return self.process.wait(timeout=DEADLINE)

    def events(self):
        return self.events_path.read_text().splitlines()

    def log(self):
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(tmp_path, loop_kind, command):
    """Start `command` (a uvicorn serving on 127.0.0.1, port "{port}") and
    yield a Child once it answers; kill its process group afterwards."""
    port = free_port()
    env = dict(os.environ, UVICORN_TEST_EVENTS=str(tmp_path / "events"),
               UVICORN_TEST_GATE=str(tmp_path / "gate"))
    env.pop("URINGLOOP_DISABLE", None)
    if loop_kind == "uringloop-compat":
        env["URINGLOOP_DISABLE"] = COMPAT_MASK
    argv = [arg.format(port=port) for arg in command]
    with open(tmp_path / "uvicorn.log", "wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    child = Child(process, port, tmp_path)
    try:
        status, body = child.wait_until_serving()
        assert (status, body.decode()) == (200, loop_name(loop_kind))
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)


def uvicorn_command(loop_kind, *options, app="uvicorn_app:app"):
    return [sys.executable, "-m", "uvicorn", app, "--app-dir", str(TESTS), "--host", HOST,
            "--port", "{port}", "--loop", LOOP_OPTIONS[loop_kind], *options]


def check_stream(body):
    numbers = [line[:3] for line in body.splitlines()]
    assert numbers == [line[:3] for line in STREAM_LINES], "lines lost or out of order"
    check_bytes(body, b"".join(STREAM_LINES))


def check_clean_exit(child, status, expected_status=0):
    log = child.log()
    assert status == expected_status, log
    for word in ("Traceback", "ERROR", "Exception"):
        assert word not in log, log


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_requests_streaming_and_lifespan(tmp_path, loop_kind, http):
    if http == "httptools":
        pytest.importorskip("httptools")
    with serving(tmp_path, loop_kind, uvicorn_command(loop_kind, "--http", http)) as child:
        with contextlib.closing(child.connection()) as conn:     # kept alive
            for _ in range(3):
                assert child.get("/", conn) == (200, b"Hello, world")
                assert child.get("/missing", conn) == (404, b"Not Found")
        status, body = child.get("/stream", rcvbuf=4096)
        assert status == 200
        check_stream(body)
        check_clean_exit(child, child.stop(signal.SIGINT))
        assert child.events() == [f"startup {loop_name(loop_kind)}", "stream started",
                                  "stream finished", "shutdown"]


# After a graceful shutdown uvicorn raises the signal again with the handler
# it found: SIGINT becomes KeyboardInterrupt, which uvicorn's main catches
# (exit status 0); SIGTERM's default action kills the process.
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)],
                         ids=["SIGINT", "SIGTERM"])
def test_shutdown_lets_a_streaming_response_finish(tmp_path, loop_kind, sig, status):
    with serving(tmp_path, loop_kind, uvicorn_command(loop_kind)) as child:
        with contextlib.closing(child.connection()) as conn:
            conn.request("GET", "/gated-stream")
            response = conn.getresponse()
            assert response.status == 200
            assert response.readline() == STREAM_LINES[0]
            child.process.send_signal(sig)
            child.wait_until_refusing()
            child.gate_path.touch()                 # the app sends the rest now
            check_stream(STREAM_LINES[0] + response.read())
            assert conn.sock.recv(1) == b"", "the connection stays open after shutdown"
        check_clean_exit(child, child.process.wait(timeout=DEADLINE), status)
        assert child.events() == [f"startup {loop_name(loop_kind)}", "stream started",
                                  "stream finished", "shutdown"]


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_framework_app(tmp_path, loop_kind, framework):
    pytest.importorskip(framework)
    command = uvicorn_command(loop_kind, "--factory", app=f"uvicorn_app:make_{framework}")
    with serving(tmp_path, loop_kind, command) as child:
        status, body = child.get("/stream", rcvbuf=4096)
        assert status == 200
        check_stream(body)
        assert child.get("/missing")[0] == 404
        check_clean_exit(child, child.stop(signal.SIGINT))
        assert child.events() == [f"startup {loop_name(loop_kind)}", "stream started",
                                  "stream finished", "shutdown"]


def test_uvicorn_run(tmp_path, loop_kind):
    """uvicorn.run(app, loop=...) in a program of its own (uvicorn_app.py)."""
    command = [sys.executable, str(TESTS / "uvicorn_app.py"), "{port}", LOOP_OPTIONS[loop_kind]]
    with serving(tmp_path, loop_kind, command) as child:
        status, body = child.get("/stream")
        assert status == 200
        check_stream(body)
        check_clean_exit(child, child.stop(signal.SIGINT))
        assert child.events() == [f"startup {loop_name(loop_kind)}", "stream started",
                                  "stream finished", "shutdown"]


def test_workers(tmp_path, loop_kind):
    """--workers 2: uvicorn spawns two processes that each make their loop
    with the factory named; SIGINT to the parent stops both gracefully."""
    with serving(tmp_path, loop_kind, uvicorn_command(loop_kind, "--workers", "2")) as child:
        deadline = time.monotonic() + DEADLINE
        while len(child.events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(4):
            assert child.get("/loop") == (200, loop_name(loop_kind).encode())
        check_clean_exit(child, child.stop(signal.SIGINT))
        assert sorted(child.events()) == ["shutdown"] * 2 + [f"startup {loop_name(loop_kind)}"] * 2
