"""Timers as asyncio makes them: call_at, call_later, TimerHandle.cancel and
the heap of scheduled timers, which uringloop runs in C (_c/timers.c).

Each test runs on every loop kind.  Where asyncio leaves a choice open and
uvloop (libuv's timers) makes another, the test says so: the order of
timers with equal deadlines is asyncio's heap order on asyncio's loop and
uringloop's, scheduling order on uvloop's.
"""
import asyncio
import contextvars
import random
import time

import pytest

from conftest import make_loop
from test_loop import clock_slack

pytestmark = pytest.mark.timeout(30)


def spin(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def fire_all(loop, schedule):
    """Run schedule(loop, log) on `loop`, let every timer come due, run one
    iteration: the order the timers ran in."""
    log = []
    schedule(loop, log)
    time.sleep(0.03)                    # everything due before the loop looks
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    return log


def ties(loop, log):
    """300 timers on 3 deadlines, scheduled out of order, every 7th cancelled
    (too few for asyncio to rebuild the heap)."""
    base = loop.time() + 0.001
    handles = [loop.call_at(base + (i * 7 % 3) * 1e-3, log.append, i) for i in range(300)]
    for handle in handles[::7]:
        handle.cancel()


def mostly_cancelled(loop, log):
    """300 timers on 3 deadlines, 2 in 3 cancelled: asyncio rebuilds the
    heap (heapify) before it runs the rest."""
    base = loop.time() + 0.001
    rng = random.Random(5)
    handles = [loop.call_at(base + rng.randrange(3) * 1e-3, log.append, i) for i in range(300)]
    for i, handle in enumerate(handles):
        if i % 3:
            handle.cancel()


@pytest.mark.parametrize("schedule", [ties, mostly_cancelled])
def test_equal_deadlines_run_in_asyncios_order(loop, loop_kind, schedule):
    got = fire_all(loop, schedule)
    reference = make_loop("asyncio")
    try:
        expected = fire_all(reference, schedule)
    finally:
        reference.close()
    assert sorted(got) == sorted(expected)
    if loop_kind == "uvloop":       # libuv runs equal deadlines in scheduling order
        assert got != expected
    else:
        assert got == expected


def test_when_keeps_the_value_given(loop, loop_kind):
    at_int = loop.call_at(10**6, pytest.fail)
    slack = clock_slack(loop)           # uvloop's clock is whole milliseconds
    if loop_kind == "uvloop":           # it stores now + the delay in whole ms
        assert abs(at_int.when() - 10**6) <= slack
    else:
        assert at_int.when() == 10**6
    before = loop.time()
    later = loop.call_later(3, pytest.fail)
    assert before + 3 - slack <= later.when() <= loop.time() + 3 + slack
    for handle in (at_int, later):
        assert not handle.cancelled()
        handle.cancel()
        handle.cancel()                 # twice is harmless
        assert handle.cancelled()
    spin(loop)


def test_timer_handles_are_asyncios(loop, loop_kind):
    handle = loop.call_later(1, pytest.fail)
    handle.cancel()
    if loop_kind != "uvloop":           # uvloop's are its own class
        assert isinstance(handle, asyncio.TimerHandle)
        assert "cancelled" in repr(handle) and "when=" in repr(handle)


def test_argument_errors(loop):
    with pytest.raises(TypeError):
        loop.call_at(None, print)
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(TypeError):
        loop.call_at(loop.time())
    with pytest.raises(TypeError):
        loop.call_later(1, print, "x", delay=1)
    spin(loop)


def test_closed_loop_refuses_timers(new_loop):
    loop = new_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_at(loop.time() + 1, print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, print)


def test_context_and_arguments(loop):
    var = contextvars.ContextVar("var", default="unset")
    context = contextvars.copy_context()
    context.run(var.set, "given")
    log = []
    loop.call_at(loop.time(), lambda *a: log.append((var.get(), a)), 1, 2, context=context)
    loop.call_later(0, lambda *a: log.append((var.get(), a)), 3, context=context)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert log == [("given", (1, 2)), ("given", (3,))]


def test_debug_mode_checks_the_callback(loop, loop_kind):
    loop.set_debug(True)
    if loop_kind == "uvloop":           # uvloop checks nothing here
        loop.call_later(1, 42).cancel()
    else:
        with pytest.raises(TypeError):
            loop.call_later(1, 42)
        with pytest.raises(TypeError):
            loop.call_at(loop.time() + 1, 42)
    handle = loop.call_later(0, lambda: None)
    spin(loop)
    assert not handle.cancelled()


def test_a_raising_timer_goes_to_the_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    handle = loop.call_later(0, lambda: 1 / 0)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert contexts[0]["handle"] is handle


def test_many_timers_and_cancellations_interleaved(loop):
    """20,000 timers, cancelled and added while others run: each survivor
    runs once, never before its deadline, in deadline order."""
    rng = random.Random(11)
    ran, handles, deadlines = [], [], []
    pending = [0]                       # scheduled, neither run nor cancelled

    def add(delay):
        deadlines.append(loop.time() + delay)    # (uvloop's call_later(0) has no when())
        handles.append(loop.call_later(delay, fire, len(handles)))
        pending[0] += 1

    def fire(i):
        ran.append((deadlines[i], loop.time(), i))
        pending[0] -= 1
        if rng.random() < 0.3 and len(handles) < 20_000:
            add(rng.uniform(0, 0.02))
        if not pending[0]:
            loop.stop()

    for _ in range(15_000):
        add(rng.uniform(0, 0.04))
    cancelled = set(range(0, 15_000, 2))
    for i in cancelled:
        handles[i].cancel()
    pending[0] -= len(cancelled)
    loop.run_forever()
    ids = [i for _, _, i in ran]
    assert len(ids) == len(set(ids)) and not cancelled & set(ids)
    assert set(ids) == set(range(len(handles))) - cancelled
    slack = clock_slack(loop)
    assert [i for when, now, i in ran if now < when - slack] == []
