"""Ways in: new_event_loop, Policy (or EventLoopPolicy, as uvloop names it), run
and install.

uvicorn (0.36 and later) takes a loop factory as an import string,
``uvicorn app:app --loop uringloop:new_event_loop`` or
``uvicorn.run(app, loop="uringloop:new_event_loop")``: it imports the named
callable and hands it, as it is, to asyncio.Runner as the loop_factory,
which calls it with no arguments.  Only uvicorn's own names ("auto",
"asyncio", "uvloop") are called with use_subprocess= first, to choose a
factory; a custom one is the factory.  So new_event_loop is already what
uvicorn wants, and needs no keyword of uvicorn's.
"""
import asyncio
import sys
import warnings
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .loop import Loop
from .ring import UnsupportedError

if TYPE_CHECKING:
    # What the lookup below finds on every version from 3.11 to 3.14; a type
    # checker cannot follow getattr.
    from asyncio.unix_events import _UnixDefaultEventLoopPolicy as _PolicyBase
else:
    # asyncio's Unix policy, for its child-watcher methods (up to 3.13 code
    # may call asyncio.get_child_watcher()/set_child_watcher(); uringloop's
    # loops watch their children themselves and use no watcher).  3.14
    # deprecates policies and drops the watchers: then the base class.
    _PolicyBase = getattr(asyncio.unix_events, "_UnixDefaultEventLoopPolicy", None) \
        or getattr(asyncio.events, "_BaseDefaultEventLoopPolicy", None) \
        or asyncio.events.BaseDefaultEventLoopPolicy

_T = TypeVar("_T")


@overload
def new_event_loop(*, fallback: Literal[False] = False) -> Loop: ...
@overload
def new_event_loop(*, fallback: bool) -> asyncio.AbstractEventLoop: ...


def new_event_loop(*, fallback: bool = False) -> asyncio.AbstractEventLoop:
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

    def __init__(self, *, fallback: bool = False) -> None:
        super().__init__()
        self._fallback = fallback

    def _loop_factory(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(fallback=self._fallback)


# uvloop's name for its policy, so that code written for uvloop
# (`asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())`) switches by
# its module name alone.
EventLoopPolicy = Policy


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run coroutine `main` on a new uringloop loop, as asyncio.run does."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


def install() -> None:
    """Make uringloop the default for asyncio.new_event_loop() and friends.

    On Python 3.12+ prefer ``uringloop.run`` or ``asyncio.run(...,
    loop_factory=uringloop.new_event_loop)``: 3.14 deprecates policies."""
    if sys.version_info >= (3, 12):
        warnings.warn("uringloop.install() sets an event loop policy; prefer uringloop.run() "
                      "or asyncio.run(main, loop_factory=uringloop.new_event_loop)",
                      DeprecationWarning, stacklevel=2)
    asyncio.set_event_loop_policy(Policy())
