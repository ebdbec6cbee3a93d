"""gunicorn serving an aiohttp application with two workers of each of three
worker classes: uringloop's (uringloop.gunicorn.GunicornWebWorker),
aiohttp's own on asyncio's loop (aiohttp.worker.GunicornWebWorker) and
aiohttp's uvloop one (aiohttp.worker.GunicornUVLoopWebWorker).  The same
assertions hold for the three: both workers serve, on the loop their class
names, both taking connections from the listening socket they share; SIGHUP
replaces both workers with new ones, which serve, while the old ones run
the application's shutdown hooks and are reaped; SIGTERM stops gunicorn
with exit status 0 once each worker has run its on_shutdown and on_cleanup
hooks, after finishing a request in progress, within the graceful timeout.

The application is tests/gunicorn_app.py.  Each test runs `python -m
gunicorn` in a session of its own, bound to port 0 on 127.0.0.1 (the port
is read from gunicorn's log), and kills that session at the end, whatever
happened.  Deadlines only turn a hang into a failure.
"""
import asyncio
import http.client
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import uvloop

import uringloop

pytestmark = pytest.mark.timeout(90)

HOST = "127.0.0.1"
DEADLINE = 20.0
# Workers still there this long after the arbiter's SIGTERM are SIGKILLed:
# their hooks would not run, and the tests would see it.
GRACEFUL_TIMEOUT = 15
TESTS = pathlib.Path(__file__).parent

WORKER_CLASSES = {
    "uringloop": ("uringloop.gunicorn.GunicornWebWorker", uringloop.Loop),
    "asyncio": ("aiohttp.worker.GunicornWebWorker", asyncio.SelectorEventLoop),
    "uvloop": ("aiohttp.worker.GunicornUVLoopWebWorker", uvloop.Loop),
}

# What each worker's app notes from its start to its end, run to completion.
LIFETIME = ["on_startup", "on_shutdown", "on_cleanup"]


def qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


class Gunicorn:
    """A gunicorn master with two workers, and what a test asks of it."""

    def __init__(self, worker_class, tmp_path):
        self.log = tmp_path / "gunicorn.log"
        self.events = tmp_path / "events"
        env = dict(os.environ, GUNICORN_APP_EVENTS=str(self.events),
                   # gunicorn's control socket (25.1+) in the test's own
                   # directory, not the one every gunicorn of the user shares.
                   XDG_RUNTIME_DIR=str(tmp_path))
        command = [sys.executable, "-m", "gunicorn", "gunicorn_app:app", "-k", worker_class,
                   "-w", "2", "-b", f"{HOST}:0", "--pythonpath", str(TESTS),
                   "--graceful-timeout", str(GRACEFUL_TIMEOUT)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, env=env, cwd=tmp_path,
                                         start_new_session=True)
        self.port = None

    def until(self, predicate, what):
        """Poll predicate() until it returns something true, and return that."""
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"gunicorn exited with status {self.proc.returncode} before "
                            f"any {what}; its log:\n{self.log.read_text()}")
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} before the deadline; gunicorn's log:\n"
                            f"{self.log.read_text()}")
            time.sleep(0.02)

    def listening(self):
        found = self.until(lambda: re.search(r"Listening at: http://127\.0\.0\.1:(\d+) ",
                                             self.log.read_text()), "listening socket")
        self.port = int(found[1])

    def workers(self):
        """The pids of the master's children, reaped or not; gunicorn runs no
        other children here."""
        pids = set()
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    pids.update(int(pid) for pid in f.read().split())
            except FileNotFoundError:           # a thread that has just ended
                pass
        return pids

    def two_new_workers(self, old=frozenset()):
        def found():
            pids = self.workers()
            return len(pids) == 2 and not pids & old and pids
        return self.until(found, "two workers")

    def get(self, path="/"):
        """GET on a connection of its own: (worker pid, loop class name)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=DEADLINE)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
        finally:
            conn.close()
        assert response.status == 200, body
        pid, loop = body.split()
        return int(pid), loop

    def answers(self, workers):
        """GET until each of `workers` has answered: {pid: loop class name}."""
        seen = {}

        def everyone_answered():
            pid, loop = self.get()
            seen[pid] = loop
            return seen.keys() >= workers
        self.until(everyone_answered, f"answer from each of the workers {sorted(workers)}")
        return seen

    def noted(self):
        """What each worker's application noted, in order: {pid: [event, ...]}."""
        events = {}
        if self.events.exists():
            for line in self.events.read_text().splitlines():
                pid, event = line.split()
                events.setdefault(int(pid), []).append(event)
        return events

    def assert_stopped_cleanly(self):
        """The master exits with status 0, leaving no process of its session,
        having SIGKILLed no worker; no traceback in its log."""
        assert self.proc.wait(DEADLINE) == 0, self.log.read_text()
        with pytest.raises(ProcessLookupError):
            os.killpg(self.proc.pid, 0)
        log = self.log.read_text()
        assert "Traceback" not in log and "SIGKILL" not in log, log

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(DEADLINE)


@pytest.fixture(params=list(WORKER_CLASSES))
def gunicorn(request, tmp_path):
    worker_class, loop_class = WORKER_CLASSES[request.param]
    server = Gunicorn(worker_class, tmp_path)
    server.loop_class = qualified_name(loop_class)
    try:
        server.listening()
        yield server
    finally:
        server.kill()


def test_both_workers_serve(gunicorn):
    """Each of the two workers answers GETs (new connections, one after the
    other, to the listening socket both accept on), from its app on the
    loop its class names."""
    workers = gunicorn.two_new_workers()
    assert gunicorn.answers(workers) == dict.fromkeys(workers, gunicorn.loop_class)
    assert gunicorn.noted() == {pid: ["on_startup"] for pid in workers}


def test_sighup_replaces_the_workers(gunicorn):
    """SIGHUP to the master: two new workers, which serve on the same loop
    class; the old ones shut their apps down and are reaped.  SIGTERM then
    stops the lot."""
    old = gunicorn.two_new_workers()
    gunicorn.answers(old)
    gunicorn.proc.send_signal(signal.SIGHUP)
    new = gunicorn.two_new_workers(old)
    assert gunicorn.answers(new) == dict.fromkeys(new, gunicorn.loop_class)
    noted = gunicorn.noted()
    assert {pid: noted.get(pid) for pid in old} == dict.fromkeys(old, LIFETIME)
    gunicorn.proc.send_signal(signal.SIGTERM)
    gunicorn.assert_stopped_cleanly()
    assert gunicorn.noted() == dict.fromkeys(old | new, LIFETIME)


def test_sigterm_stops_gunicorn(gunicorn):
    """SIGTERM to the master: each worker's app runs on_shutdown and
    on_cleanup, and gunicorn exits with status 0."""
    workers = gunicorn.two_new_workers()
    gunicorn.answers(workers)
    gunicorn.proc.send_signal(signal.SIGTERM)
    gunicorn.assert_stopped_cleanly()
    assert gunicorn.noted() == dict.fromkeys(workers, LIFETIME)


def test_sigterm_finishes_a_request_in_progress(gunicorn):
    """SIGTERM while a worker handles a slow request: the response still
    comes, then the worker's app shuts down and gunicorn exits with status 0."""
    workers = gunicorn.two_new_workers()
    gunicorn.answers(workers)
    conn = http.client.HTTPConnection(HOST, gunicorn.port, timeout=DEADLINE)
    try:
        conn.request("GET", "/slow")
        busy = gunicorn.until(
            lambda: [pid for pid, events in gunicorn.noted().items() if "slow" in events],
            "slow request under way")
        gunicorn.proc.send_signal(signal.SIGTERM)
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert (response.status, body) == (200, f"{busy[0]} {gunicorn.loop_class}")
    gunicorn.assert_stopped_cleanly()
    assert gunicorn.noted() == {pid: ["on_startup", "slow", "on_shutdown", "on_cleanup"]
                                if pid in busy else LIFETIME for pid in workers}


def test_io_uring_refused_stops_gunicorn(tmp_path, monkeypatch):
    """Where io_uring is refused, uringloop's workers fail to boot and
    gunicorn stops with a non-zero status, its log naming the cause.  (Only
    uringloop's worker class has this failure to show.)"""
    monkeypatch.setenv("URINGLOOP_DISABLE", "io_uring=EPERM")
    server = Gunicorn(WORKER_CLASSES["uringloop"][0], tmp_path)
    try:
        status = server.proc.wait(DEADLINE)
    finally:
        server.kill()
    log = server.log.read_text()
    assert status != 0, log
    assert "uringloop.ring.UnsupportedError" in log and "Worker failed to boot" in log, log
