"""Op records that belong to no transport.

FutureOp is the one record for operations whose only consumer is a future:
the readiness polls of the sock_* methods today; connect, file and path
operations as they come.  Its completion (in C, _c/future.c) sets the
future's result to the CQE's res, or an OSError for a negative res other
than ECANCELED; a future already done (cancelled) is left alone.

    fut = loop.create_future()
    ud = loop._start_op(FutureOp(fut), loop._ring.prep_<variant>, ...)
    res = await fut          # on cancellation: loop._ring.prep_cancel(ud)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import _c

if TYPE_CHECKING:
    from asyncio import futures


class FutureOp:
    __slots__ = ("future",)

    def __init__(self, future: futures.Future[int]) -> None:
        self.future = future

    def __repr__(self) -> str:
        return f"<FutureOp for {self.future!r}>"


_c.install_future_op(FutureOp)

# poll_future(table, fd, events, future) -> user_data: a FutureOp and its
# POLL in one call from C, for the sock_* methods' waits.
poll_future = _c.poll_future
