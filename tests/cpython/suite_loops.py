"""The loop kind CPython's suite runs on: uringloop, or for comparison
asyncio's own loop or uvloop (CPYTHON_SUITE_LOOP=asyncio|uvloop)."""
import asyncio
import os

import uvloop

import uringloop

KIND = os.environ.get("CPYTHON_SUITE_LOOP", "uringloop")



class _UVLoop(uvloop.Loop):
    # CPython's test harness reads loop._default_executor when it cleans
    # up; uvloop keeps its executor private (and shuts it down in close()).
    _default_executor = None


class _UVLoopPolicy(uvloop.EventLoopPolicy):
    def _loop_factory(self):
        return _UVLoop()


_FACTORIES = {
    "uringloop": (uringloop.new_event_loop, uringloop.Policy),
    "asyncio": (asyncio.SelectorEventLoop, asyncio.DefaultEventLoopPolicy),
    "uvloop": (_UVLoop, _UVLoopPolicy),
}
if KIND not in _FACTORIES:
    raise ValueError(f"CPYTHON_SUITE_LOOP must be one of {sorted(_FACTORIES)}, not {KIND!r}")

_LOOP_FACTORY, POLICY = _FACTORIES[KIND]


def make_loop(*args):
    """A new loop of the kind under test (arguments, such as a selector, are ignored)."""
    return _LOOP_FACTORY()
