"""A real aiohttp application served and queried inside the loop under test.

The server (web.AppRunner + TCPSite on 127.0.0.1, port 0) and the client
(aiohttp.ClientSession) share one loop, so every byte crosses that loop's
stream transports twice.  Runs on uringloop, asyncio and uvloop alike.
"""
import asyncio
import contextlib
import hashlib
import io
import os
import random
import socket
import struct

import aiohttp
import pytest
from aiohttp import web

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
MiB = 1024 * 1024
BIG = 8 * MiB
DEADLINE = 30.0


def blob(size, seed=0):
    return random.Random(f"{size}/{seed}").randbytes(size)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def wait(aw, timeout=DEADLINE):
    return await asyncio.wait_for(aw, timeout)


async def settle_fds(expected, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while open_fds() != expected and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert open_fds() == expected, "leaked (or closed foreign) file descriptors"


def record_exceptions(loop):
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


class State:
    def __init__(self):
        self.download = blob(BIG, seed=1)
        self.upload_started = asyncio.Event()
        self.upload_outcomes = []


def build_app(state):
    async def hello(request):
        return web.Response(text="Hello, world")

    async def peer_port(request):
        return web.Response(text=str(request.transport.get_extra_info("peername")[1]))

    async def upload(request):
        state.upload_started.set()
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
        except ConnectionError as exc:
            # The client went away mid-body; nobody is left to answer.
            state.upload_outcomes.append(exc)
            return web.Response(status=400)
        state.upload_outcomes.append(size)
        return web.json_response({"sha256": digest.hexdigest(), "size": size})

    async def download(request):
        return web.Response(
            body=state.download, content_type="application/octet-stream"
        )

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/peer-port", peer_port)
    app.router.add_post("/upload", upload)
    app.router.add_get("/download", download)
    return app


@contextlib.asynccontextmanager
async def serving(app):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def fd_baseline(state):
    """Serve and fetch once so loop-lifetime lazy fds (libuv keeps a spare
    one after its first listen) are part of the baseline."""
    async with serving(build_app(state)) as url:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/") as resp:
                await resp.read()
    await asyncio.sleep(0.05)
    return open_fds()


def test_hello_world(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        state = State()
        fds = await fd_baseline(state)
        async with serving(build_app(state)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/") as resp:
                    assert resp.status == 200
                    assert resp.content_type == "text/plain"
                    assert await resp.text() == "Hello, world"
                async with session.get(url + "/missing") as resp:
                    assert resp.status == 404
                    await resp.read()
        assert errors == []
        await settle_fds(fds)

    run(main())


@pytest.mark.parametrize(
    "force_close", [False, True], ids=["keep-alive", "force-close"]
)
def test_keep_alive_reuses_connection(run, force_close):
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        async with serving(build_app(State())) as url:
            connector = aiohttp.TCPConnector(limit=1, force_close=force_close)
            async with aiohttp.ClientSession(connector=connector) as session:
                ports = []
                for _ in range(6):
                    async with session.get(url + "/peer-port") as resp:
                        assert resp.status == 200
                        ports.append(int(await resp.text()))
        if force_close:
            # The control: a fresh connection each time shows up as new ports.
            assert len(set(ports)) == len(ports)
        else:
            assert len(set(ports)) == 1
        assert errors == []

    run(main())


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_request_body(run, framing):
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        state = State()
        body = blob(BIG, seed=2)

        async def pieces():
            view = memoryview(body)
            for offset in range(0, len(view), 300_000):
                yield bytes(view[offset : offset + 300_000])

        # aiohttp warns (ResourceWarning) when handed several MiB of raw bytes.
        data = io.BytesIO(body) if framing == "content-length" else pieces()
        async with serving(build_app(state)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.post(url + "/upload", data=data) as resp:
                    assert resp.status == 200
                    answer = await resp.json()
        assert answer == {"sha256": sha256(body), "size": len(body)}
        assert state.upload_outcomes == [len(body)]
        assert errors == []

    run(main())


def test_large_response_body(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        state = State()
        async with serving(build_app(state)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/download") as resp:
                    assert resp.status == 200
                    assert resp.content_length == BIG
                    body = await resp.read()
                assert len(body) == BIG
                assert sha256(body) == sha256(state.download)

                digest = hashlib.sha256()
                size = 0
                async with session.get(url + "/download") as resp:
                    async for chunk in resp.content.iter_chunked(100_000):
                        digest.update(chunk)
                        size += len(chunk)
                assert size == BIG
                assert digest.hexdigest() == sha256(state.download)
        assert errors == []

    run(main())


def test_file_response(run, tmp_path):
    # FileResponse goes through loop.sendfile(), whose native path differs
    # per loop (asyncio: os.sendfile; uvloop: none, falls back to writes).
    data = blob(3 * MiB + 123, seed=3)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)

    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)

        async def serve_file(request):
            return web.FileResponse(path)

        app = web.Application()
        app.router.add_get("/file", serve_file)
        async with serving(app) as url:
            async with aiohttp.ClientSession() as session:
                for _ in range(2):
                    async with session.get(url + "/file") as resp:
                        assert resp.status == 200
                        body = await resp.read()
                    assert len(body) == len(data)
                    assert sha256(body) == sha256(data)
                headers = {"Range": "bytes=1000-1999"}
                async with session.get(url + "/file", headers=headers) as resp:
                    assert resp.status == 206
                    assert await resp.read() == data[1000:2000]
        assert errors == []

    run(main())


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_disconnects_mid_request(run, how):
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        state = State()
        fds = await fd_baseline(State())
        async with serving(build_app(state)) as url:
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(
                b"POST /upload HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\n"
                b"Content-Length: 1000000\r\n"
                b"\r\n" + blob(200_000, seed=4)
            )
            await wait(state.upload_started.wait())
            await asyncio.sleep(0.02)
            if how == "rst":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            writer.close()
            await writer.wait_closed()

            deadline = loop.time() + DEADLINE
            while not state.upload_outcomes and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert len(state.upload_outcomes) == 1
            assert isinstance(state.upload_outcomes[0], ConnectionResetError)

            async with aiohttp.ClientSession() as session:
                for i in range(3):
                    async with session.get(url + "/") as resp:
                        assert await resp.text() == "Hello, world"
                    body = blob(100_000, seed=10 + i)
                    async with session.post(url + "/upload", data=body) as resp:
                        answer = await resp.json()
                    assert answer == {"sha256": sha256(body), "size": len(body)}
        assert state.upload_outcomes[1:] == [100_000] * 3
        assert errors == []
        await settle_fds(fds)

    run(main())
