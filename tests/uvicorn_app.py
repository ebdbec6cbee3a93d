"""The applications test_uvicorn.py serves through uvicorn in a child process.

`app` is a bare ASGI application; make_starlette() and make_fastapi() are
uvicorn app factories (``--factory``) for the same routes on those
frameworks.  Each reports the type of the loop it runs on (GET /loop) and
streams STREAM_LINES (GET /stream), and records its lifespan events, one
line each, in the file named by $UVICORN_TEST_EVENTS: the test reads them
after the child has exited.  GET /gated-stream sends the first line and
the rest only once the file named by $UVICORN_TEST_GATE exists, so that
the test can shut uvicorn down with the response in flight.

    python uvicorn_app.py PORT LOOP     # uvicorn.run(app, ..., loop=LOOP)
"""
import asyncio
import contextlib
import os
import sys

import uvicorn

# Numbered lines of uneven sizes up to 20 KB: read through a small receive
# window they keep the server's writes waiting on the reader.
STREAM_LINES = [f"{i:03d} {chr(97 + i % 26) * (i * 997 % 20_000)}\n".encode() for i in range(100)]


def loop_name():
    cls = type(asyncio.get_running_loop())
    return f"{cls.__module__}.{cls.__qualname__}"


def record(event):
    with open(os.environ["UVICORN_TEST_EVENTS"], "a") as events:
        events.write(event + "\n")


async def stream_lines(gated=False):
    """STREAM_LINES, with a pass through the loop between any two."""
    record("stream started")
    yield STREAM_LINES[0]
    while gated and not os.path.exists(os.environ["UVICORN_TEST_GATE"]):
        await asyncio.sleep(0.01)
    for line in STREAM_LINES[1:]:
        await asyncio.sleep(0)
        yield line
    record("stream finished")


@contextlib.asynccontextmanager
async def lifespan(_app=None):
    record(f"startup {loop_name()}")
    yield
    record("shutdown")


# -- the bare ASGI application


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
    elif scope["path"] == "/loop":
        await respond(send, 200, loop_name().encode())
    elif scope["path"] == "/":
        await respond(send, 200, b"Hello, world")
    elif scope["path"] in ("/stream", "/gated-stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        async for line in stream_lines(gated=scope["path"] == "/gated-stream"):
            await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond(send, 404, b"Not Found")


async def serve_lifespan(receive, send):
    await receive()                             # lifespan.startup
    async with lifespan():
        await send({"type": "lifespan.startup.complete"})
        await receive()                         # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})


async def respond(send, status, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


# -- the same routes on Starlette and on FastAPI


def make_starlette():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    async def loop(request):
        return PlainTextResponse(loop_name())

    async def stream(request):
        return StreamingResponse(stream_lines(), media_type="text/plain")

    return Starlette(routes=[Route("/loop", loop), Route("/stream", stream)], lifespan=lifespan)


def make_fastapi():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse, StreamingResponse

    api = FastAPI(lifespan=lifespan)

    @api.get("/loop", response_class=PlainTextResponse)
    async def loop():
        return loop_name()

    @api.get("/stream")
    async def stream():
        return StreamingResponse(stream_lines(), media_type="text/plain")

    return api


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop=sys.argv[2])
