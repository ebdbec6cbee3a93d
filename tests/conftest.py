"""Every behavioural test of the loop runs on uringloop, asyncio's default
loop and uvloop: the `loop` fixture is parametrized over the three, so a
semantic difference shows up as a test that passes on two and fails on one.

A fourth kind, "uringloop-compat", is uringloop with every kernel feature
it can do without masked (URINGLOOP_DISABLE): the ring an old kernel gives,
so each behavioural test also proves the fallback paths (the path requests
newer than Linux 5.10 go to the executor there, and files skip the caches'
tries, so that every read, open and stat is a ring request).
"""
import asyncio
import functools
import os

import pytest
import uvloop

import uringloop

LOOP_KINDS = ("uringloop", "uringloop-compat", "asyncio", "uvloop")

COMPAT_MASK = ("defer_taskrun,coop_taskrun,cqe_mixed,no_sqarray,taskrun_flag,submit_all,"
               "ext_arg,no_iowait,recvsend_bundle,multishot_poll,multishot_accept,multishot_recv,pbuf_ring,"
               "epoll_wait,read_multishot,waitid,unlinkat,renameat,mkdirat,symlinkat,linkat,"
               "ftruncate,file_nowait")


def make_loop(kind):
    if kind == "uringloop":
        return uringloop.new_event_loop()
    if kind == "uringloop-compat":
        saved = os.environ.get("URINGLOOP_DISABLE")
        os.environ["URINGLOOP_DISABLE"] = COMPAT_MASK
        try:
            return uringloop.new_event_loop()
        finally:
            if saved is None:
                del os.environ["URINGLOOP_DISABLE"]
            else:
                os.environ["URINGLOOP_DISABLE"] = saved
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    if kind == "uvloop":
        return uvloop.new_event_loop()
    raise ValueError(kind)


def close_loop(loop):
    if loop.is_closed():
        return
    if loop.is_running():
        loop.stop()
        return
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request):
    return request.param


@pytest.fixture
def new_loop(loop_kind):
    """A factory for fresh loops of the test's kind; all closed at teardown."""
    made = []

    def factory():
        loop = make_loop(loop_kind)
        made.append(loop)
        return loop

    yield factory
    for loop in made:
        close_loop(loop)


@pytest.fixture
def loop(new_loop):
    """One fresh loop of each kind (uringloop, uringloop-compat, asyncio, uvloop)."""
    return new_loop()


@pytest.fixture
def run(loop):
    """run(coro) runs a coroutine to completion on the test's loop."""
    return functools.partial(loop.run_until_complete)
