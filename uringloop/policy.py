"""Ways in: new_event_loop, Policy, run and install."""
import asyncio
import sys
import warnings

from .loop import Loop
from .ring import UnsupportedError

# asyncio's Unix policy, for its child-watcher methods (up to 3.13 code may
# call asyncio.get_child_watcher()/set_child_watcher(); uringloop's loops
# watch their children themselves and use no watcher).  3.14 deprecates
# policies and drops the watchers: then the base class.
_PolicyBase = getattr(asyncio.unix_events, "_UnixDefaultEventLoopPolicy", None) \
    or getattr(asyncio.events, "_BaseDefaultEventLoopPolicy", None) \
    or asyncio.events.BaseDefaultEventLoopPolicy


def new_event_loop(*, fallback=False):
    """A new uringloop.Loop.

    Where io_uring is unavailable this raises UnsupportedError, whose
    message names the cause; with fallback=True it warns and returns
    asyncio's default loop instead."""
    try:
        return Loop()
    except UnsupportedError as exc:
        if not fallback:
            raise
        warnings.warn(f"uringloop: {exc.strerror}; using asyncio's default event loop",
                      RuntimeWarning, stacklevel=2)
        return asyncio.SelectorEventLoop()


class Policy(_PolicyBase):
    """Event loop policy whose loops are uringloop loops:
    ``asyncio.set_event_loop_policy(uringloop.Policy())``."""

    def __init__(self, *, fallback=False):
        super().__init__()
        self._fallback = fallback

    def _loop_factory(self):
        return new_event_loop(fallback=self._fallback)


def run(main, *, debug=None):
    """Run coroutine `main` on a new uringloop loop, as asyncio.run does."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


def install():
    """Make uringloop the default for asyncio.new_event_loop() and friends.

    On Python 3.12+ prefer ``uringloop.run`` or ``asyncio.run(...,
    loop_factory=uringloop.new_event_loop)``: 3.14 deprecates policies."""
    if sys.version_info >= (3, 12):
        warnings.warn("uringloop.install() sets an event loop policy; prefer uringloop.run() "
                      "or asyncio.run(main, loop_factory=uringloop.new_event_loop)",
                      DeprecationWarning, stacklevel=2)
    asyncio.set_event_loop_policy(Policy())
