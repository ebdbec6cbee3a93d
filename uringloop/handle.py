"""Handle and TimerHandle: asyncio's, created and run by C (_c/callbacks.c,
_c/timers.c).

The subclasses add no fields, so every handle is an asyncio.Handle (and
every timer an asyncio.TimerHandle) with asyncio's repr(), when() and
get_context(); only their creation, a timer's cancel() and their _run()
are C.
"""
from __future__ import annotations

import inspect
from asyncio import events, format_helpers
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from ._typing import AsyncioHandle

# Python 3.13 added the debug flag to asyncio's callback formatting.
_FORMAT_HAS_DEBUG = "debug" in inspect.signature(format_helpers._format_callback_source).parameters


class Handle(events.Handle):
    __slots__ = ()


class TimerHandle(events.TimerHandle):
    """asyncio's TimerHandle, made by the loop's C call_at() and
    call_later(), with a C cancel() (_c/timers.c)."""
    __slots__ = ()


def callback_failed(handle: AsyncioHandle, exc: BaseException) -> None:
    """A callback raised: what asyncio's Handle._run tells the loop."""
    if _FORMAT_HAS_DEBUG:
        # (type: ignore: typeshed has debug= from 3.13 on, as _FORMAT_HAS_DEBUG finds)
        cb = format_helpers._format_callback_source(  # type: ignore[call-arg, unused-ignore]
            handle._callback, handle._args, debug=handle._loop.get_debug())
    else:
        cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any]
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)
