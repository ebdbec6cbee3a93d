"""What the loop tests share: sizes, deadlines, payloads, waiting, fd
counting and the checks of received bytes."""
import asyncio
import hashlib
import os
import random

import pytest

KiB = 1024
MiB = 1024 * KiB
DEADLINE = 20.0
HOST = "127.0.0.1"


def payload(size, seed=0):
    return random.Random(f"{size}/{seed}").randbytes(size)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(expected, timeout=5.0):
    """Wait until the process's fd count is back to `expected`.

    Transports close their sockets a loop iteration or two after close()
    (uvloop closes libuv handles in a callback), so poll briefly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while open_fds() != expected and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert open_fds() == expected, "leaked (or closed foreign) file descriptors"


async def wait(aw, timeout=DEADLINE):
    return await asyncio.wait_for(aw, timeout)


async def until(predicate, timeout=DEADLINE, step=0.005):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(step)


def check_bytes(got, want):
    """Compare large payloads without pytest rendering a multi-MiB diff."""
    got = bytes(got)
    if got == want:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(got, want)) if a != b),
        min(len(got), len(want)),
    )
    pytest.fail(
        f"received {len(got)} bytes, expected {len(want)}; first difference "
        f"at offset {first}; sha256 {hashlib.sha256(got).hexdigest()[:16]} vs "
        f"{hashlib.sha256(want).hexdigest()[:16]}"
    )


def shape(events):
    """Callback names with runs of the same name collapsed."""
    out = []
    for e in events:
        if not out or out[-1] != e:
            out.append(e)
    return out


def record_exceptions(loop):
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


def port_of(server):
    return server.sockets[0].getsockname()[1]


async def close_server(server):
    server.close()
    await wait(server.wait_closed())
