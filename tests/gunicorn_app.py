"""The aiohttp application tests/test_gunicorn.py serves under gunicorn.

GET / answers "<worker pid> <class of the running loop>"; GET /slow does
the same after a second and a half.  Each worker appends "<pid> <event>"
lines to the file named by $GUNICORN_APP_EVENTS: on_startup, on_shutdown,
on_cleanup, and "slow" as a /slow request begins.
"""
import asyncio
import os

from aiohttp import web


def note(event):
    # One short write per line to a file opened for appending: the lines of
    # the two workers never interleave.
    with open(os.environ["GUNICORN_APP_EVENTS"], "a") as f:
        f.write(f"{os.getpid()} {event}\n")


def hook(event):
    async def run(app):
        note(event)
    return run


async def whoami(request):
    cls = type(asyncio.get_running_loop())
    return web.Response(text=f"{os.getpid()} {cls.__module__}.{cls.__qualname__}")


async def slow(request):
    note("slow")
    await asyncio.sleep(1.5)
    return await whoami(request)


app = web.Application()
app.router.add_get("/", whoami)
app.router.add_get("/slow", slow)
for name in ("on_startup", "on_shutdown", "on_cleanup"):
    getattr(app, name).append(hook(name))
