"""A gunicorn worker that serves aiohttp applications on uringloop.

    gunicorn mymodule:app -k uringloop.gunicorn.GunicornWebWorker -w 4

`app` is an aiohttp.web.Application, or an async function returning one or
an AppRunner, as for aiohttp's own workers: this is aiohttp's
GunicornWebWorker (the uvloop one is GunicornUVLoopWebWorker) with a
uringloop.Loop as each worker's loop.  The workers take turns at the
listening socket they share (serving.py: a socket given with sock= is
accepted from one connection at a time).  SIGHUP, SIGTERM, SIGQUIT and
SIGINT, --graceful-timeout, --max-requests and the access log behave as
there.

Where io_uring is unavailable the workers fail to boot, and gunicorn stops
with uringloop's error naming the cause.  This module needs gunicorn and
aiohttp; ``import uringloop`` imports neither: only gunicorn's -k imports it.
"""
import asyncio
import contextlib

from aiohttp import worker

from .policy import new_event_loop


class GunicornWebWorker(worker.GunicornWebWorker):
    """aiohttp's gunicorn worker, run on a uringloop loop."""

    def init_process(self) -> None:
        # aiohttp's init_process only replaces the loop inherited over fork
        # with asyncio.new_event_loop(), which asks the event loop policy
        # (deprecated from Python 3.14).  So make the loop here, without a
        # policy, and go on with gunicorn's init_process, which runs the
        # worker.
        with contextlib.suppress(RuntimeError):     # no loop set (3.14 raises)
            asyncio.get_event_loop().close()
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        super(worker.GunicornWebWorker, self).init_process()
