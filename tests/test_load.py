"""Load (issue 10): thousands of connections held open and echoing at once,
and a great many requests through one server without its memory growing,
on every loop kind.

CI runs them scaled down: 2,000 connections and 100,000 requests.
STRESS_SCALE (test_stress's knob) multiplies both; STRESS_SCALE=10 is the
issue's full size, 10,000 connections (the cap) and 1,000,000 requests.
LOAD_CONNECTIONS and LOAD_REQUESTS set either size directly.

The scenarios themselves are benchmarks/load.py's, which measures them at
full size on uringloop, asyncio and uvloop; here they assert behaviour only:
every byte back, every connection held, no fd leaked, RSS flat.
"""
import importlib.util
import os
import resource
from pathlib import Path

import pytest

from conftest import COMPAT_MASK
from test_streams import fd_baseline, record_exceptions, settle_fds

SCALE = int(os.environ.get("STRESS_SCALE", "1"))
CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", min(10_000, 2_000 * SCALE)))
REQUESTS = int(os.environ.get("LOAD_REQUESTS", 100_000 * SCALE))
RSS_GROWTH_LIMIT_KIB = 10 * 1024
STEP_TIMEOUT = 60.0 * SCALE

pytestmark = [pytest.mark.stress, pytest.mark.timeout(120 * SCALE)]


HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("uringloop_benchmarks_load",
                                               HERE.parent / "benchmarks" / "load.py")
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)


def child_env(kind):
    """What a child process on loop `kind` needs: the compat kind is
    uringloop with conftest's mask."""
    return {"URINGLOOP_DISABLE": COMPAT_MASK} if kind == "uringloop-compat" else {}


def test_many_connections_held_open_and_echoing(loop, loop_kind):
    """CONNECTIONS clients (a child process on the same loop kind) connect
    to an echo server on the loop under test and stay connected; with all
    of them held, every one sends its own message at once and must get
    exactly it back; then all close: the server's count returns to 0 and
    this process has the descriptors it started with."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    try:
        load.raise_fd_limit(CONNECTIONS + in_use + 64)
    except RuntimeError as exc:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)
        pytest.skip(f"{exc} ({CONNECTIONS:,} server-side connections in this process, "
                    f"plus the {in_use} already open); set LOAD_CONNECTIONS lower")
    errors = record_exceptions(loop)

    async def main():
        baseline = await fd_baseline()
        result = await load.hold_connections(CONNECTIONS, loop_kind, child_env(loop_kind),
                                             timeout=STEP_TIMEOUT)
        await settle_fds(baseline, timeout=STEP_TIMEOUT)
        return result

    try:
        result = loop.run_until_complete(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)
    assert result["held"] == CONNECTIONS
    assert result["held_after_echo"] == CONNECTIONS, "connections dropped while echoing"
    assert (result["intact"], result["wrong"]) == (CONNECTIONS, 0)
    assert result["peak"] == CONNECTIONS
    assert result["open_after"] == 0
    assert errors == []


def test_requests_through_one_server_rss_flat(loop_kind):
    """REQUESTS pipelined requests to one server (a child process on the
    loop under test; the clients are uvloop in this process): every
    response byte for byte, the server counts every request and reports no
    error, and its VmRSS at the end is within 10 MiB of its VmRSS after the
    warm-up (the first 10%)."""
    result = load.run_requests(loop_kind, REQUESTS, env=child_env(loop_kind))
    assert result["requests"] == REQUESTS
    assert result["server"] == {"requests": REQUESTS, "open": 0, "errors": 0,
                                "first_error": None}
    growth = result["growth_kib"]
    assert growth < RSS_GROWTH_LIMIT_KIB, (
        f"the server's RSS grew {growth / 1024:.1f} MiB over {result['measured']:,} requests "
        f"after the warm-up ({result['rss_warm_kib'] / 1024:.1f} -> "
        f"{result['rss_end_kib'] / 1024:.1f} MiB)")
