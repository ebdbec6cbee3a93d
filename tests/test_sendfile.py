"""loop.sendfile() and loop.sock_sendfile(): bytes, offsets, file positions,
errors, and what happens when the connection goes away mid-way.

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop.  asyncio is the reference: each assertion was first checked
against it and holds identically on uringloop and uringloop-compat, except
where a docstring names a difference: asyncio 3.11 hangs when its transport
is closed mid-sendfile, leaves the file position alone when the sendfile is
cancelled, breaks when closed or cancelled while the sendfile waits for
earlier writes to drain (skipped there), raises KeyError for a second
concurrent sendfile, and lets write_eof() cut a running sendfile short.

uvloop has no sendfile at all: loop.sendfile() and loop.sock_sendfile()
are AbstractEventLoop's and raise NotImplementedError (before any argument
check).  Tests of what is sent, errors and TLS assert exactly that on uvloop;
the tests of a sendfile interrupted or overlapped mid-way (write, write_eof
or a second sendfile during one, close, abort, peer reset, cancel, reading
paused meanwhile) skip uvloop, where there is nothing to interrupt.
The aiohttp test passes on all four (aiohttp falls back to plain writes
when loop.sendfile() raises NotImplementedError).

The 100 MiB file is made once per session, random bytes, read once so the
page cache is warm.  Receivers hash what arrives, so every byte is checked.
"Slow" receivers pause reading after every chunk and resume a couple of
milliseconds later, with socket buffers made small so the sender really
waits on a full buffer; "stalled" receivers stop reading altogether, so a
sendfile of more than the buffers hold is certain to be mid-way when the
test interrupts it.  Nothing here measures speed.
"""
import array
import asyncio
import errno
import fcntl
import hashlib
import io
import os
import random
import socket
import ssl
import sys
import termios

import aiohttp
import pytest
import trustme
from aiohttp import web

from support import open_fds, settle_fds, wait, until, record_exceptions, KiB, MiB, HOST

pytestmark = pytest.mark.timeout(30)

BIG = 100 * MiB
SMALL_BUFFER = 64 * KiB      # SO_SNDBUF / SO_RCVBUF where the sender must wait
PACE = 0.002                 # a slow reader's pause after each chunk
IN_PROGRESS = "unable to write; sendfile is in progress"
WRITELINES_IN_PROGRESS = ("unable to writelines; sendfile is in progress"
                          if sys.version_info >= (3, 12) else IN_PROGRESS)


# -- helpers


class BigFile:
    def __init__(self, path, data):
        self.path = path
        self.data = data

    def slice(self, offset, count=None):
        end = len(self.data) if count is None else offset + count
        return memoryview(self.data)[offset:end]


@pytest.fixture(scope="session")
def big(tmp_path_factory):
    """100 MiB of random bytes on disk, once per session, page-cache warm."""
    data = random.Random("sendfile/100MiB").randbytes(BIG)
    path = tmp_path_factory.mktemp("sendfile") / "big.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        while f.read(8 * MiB):
            pass
    return BigFile(path, data)


@pytest.fixture(scope="module")
def tls():
    """(server context, client context) trusting one trustme CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def sha(data):
    return hashlib.sha256(data).hexdigest()


def unread(transport):
    """Bytes waiting in the receive buffer of a transport's socket."""
    buf = array.array("i", [0])
    fcntl.ioctl(transport.get_extra_info("socket").fileno(), termios.FIONREAD, buf)
    return buf[0]


class Sink(asyncio.Protocol):
    """The receiving end: counts and hashes everything, keeps the first
    `keep` bytes.  pace: pause reading for that long after every chunk (a
    slow reader).  stalled: reading paused from the start until release().
    reply: written back when the first bytes arrive."""

    def __init__(self, keep=0, pace=None, stalled=False, reply=None):
        loop = asyncio.get_running_loop()
        self.reply = reply
        self.loop = loop
        self.transport = None
        self.hash = hashlib.sha256()
        self.size = 0
        self.keep = keep
        self.kept = bytearray()
        self.pace = pace
        self.stalled = stalled
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        if self.stalled:
            transport.pause_reading()
        self.made.set_result(transport)

    def data_received(self, data):
        if self.reply and not self.size:
            self.transport.write(self.reply)
        self.hash.update(data)
        self.size += len(data)
        if len(self.kept) < self.keep:
            self.kept += data[:self.keep - len(self.kept)]
        if self.pace and not self.stalled:
            self.transport.pause_reading()
            self.loop.call_later(self.pace, self._resume)

    def _resume(self):
        if not self.stalled and not self.transport.is_closing():
            self.transport.resume_reading()

    def release(self):
        self.stalled = False
        self.transport.resume_reading()

    def eof_received(self):
        settle(self.eof, None)

    def connection_lost(self, exc):
        settle(self.lost, exc)

    def check(self, want):
        """Everything received is exactly `want`."""
        got = (self.size, self.hash.hexdigest())
        assert got == (len(want), sha(want)), (
            f"received {self.size} bytes, expected {len(want)} (or the bytes differ)")


def settle(future, value):
    """Resolve a future a test may have given up on (wait_for cancels it)."""
    if not future.done():
        future.set_result(value)


class Sender(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        settle(self.lost, exc)


class Link:
    """A Sink server and one client connected to it: a raw non-blocking
    socket (`sock`), wrapped in a transport unless raw=True."""

    def __init__(self, server, sink, sock, transport, sender):
        self.server, self.sink, self.sock = server, sink, sock
        self.transport, self.sender = transport, sender

    async def finish(self):
        """Close the sending side, let the sink read to the end, close all."""
        if self.transport is not None:
            self.transport.close()
            await wait(self.sender.lost)
        else:
            self.sock.close()
        if self.sink.stalled:
            self.sink.release()
        await wait(self.sink.lost)
        self.server.close()
        await wait(self.server.wait_closed())

    def abort(self):
        """Tear everything down at once (a test that failed half-way)."""
        if self.transport is not None:
            self.transport.abort()         # owns self.sock
        else:
            self.sock.close()
        if self.sink.transport is not None:
            self.sink.transport.abort()
        self.server.close()


async def link(loop, *, raw=False, small_buffers=False, tls=None, **sink_kw):
    """Connect a client to a fresh Sink server.  small_buffers shrinks the
    sender's SO_SNDBUF and the receiver's SO_RCVBUF so the sender waits on
    a full socket early; tls is (server context, client context)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind((HOST, 0))
    if small_buffers:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    lsock.listen(8)
    lsock.setblocking(False)
    sinks = []

    def factory():
        sinks.append(Sink(**sink_kw))
        return sinks[-1]

    server_ctx, client_ctx = tls or (None, None)
    server = await loop.create_server(factory, sock=lsock, ssl=server_ctx)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_buffers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    sock.setblocking(False)
    transport = sender = None
    try:
        await loop.sock_connect(sock, lsock.getsockname())
        if not raw:
            transport, sender = await loop.create_connection(
                Sender, sock=sock, ssl=client_ctx,
                server_hostname="localhost" if tls else None)
        await until(lambda: sinks)
        await wait(sinks[0].made)
    except BaseException:
        if transport is not None:
            transport.close()
        sock.close()
        server.close()
        raise
    return Link(server, sinks[0], sock, transport, sender)


async def fd_baseline():
    """The fd count once the loop has made its lazy one-off allocations
    (libuv keeps a spare fd after its first listen)."""
    loop = asyncio.get_running_loop()
    conn = await link(loop)
    await conn.finish()
    await asyncio.sleep(0.01)
    return open_fds()


async def sendfile_via(api, loop, conn, file, *args, **kwargs):
    if api == "transport":
        return await loop.sendfile(conn.transport, file, *args, **kwargs)
    return await loop.sock_sendfile(conn.sock, file, *args, **kwargs)


async def started_and_blocked(conn):
    """Wait until a sendfile to a stalled sink has put bytes on the wire,
    and give it a moment to fill the (small) socket buffers."""
    await until(lambda: unread(conn.sink.transport) > 0)
    await asyncio.sleep(0.05)


# -- 1 and 3. what arrives, the return value and the file position

# (name, file size, offset, count); None size = the 100 MiB file
CASES = [
    ("empty", 0, 0, None),
    ("empty-count", 0, 0, 10),
    ("1B", 1, 0, None),
    ("1B-at-eof", 1, 1, None),
    ("1B-count-past-eof", 1, 0, 5),
    ("100MiB", None, 0, None),
    ("100MiB-from-middle", None, 37 * MiB + 123, None),
    ("100MiB-count", None, 1234567, 10 * MiB + 7),
    ("100MiB-count-past-eof", None, BIG - 1000, MiB),
    ("100MiB-offset-past-eof", None, BIG + 10, None),
]


def expected_position(start, offset, sent):
    """Where asyncio leaves the file: just after what was sent, or untouched
    if nothing was (it seeks only when bytes went)."""
    return offset + sent if sent else start


async def check_sendfile(api, loop, loop_kind, path, data, offset, count, **link_kw):
    fds = await fd_baseline()
    errors = record_exceptions(loop)
    conn = await link(loop, raw=(api == "sock"), **link_kw)
    with open(path, "rb") as f:
        # the file's own position is not where sendfile starts
        start = len(data) // 3
        f.seek(start)
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                await sendfile_via(api, loop, conn, f, offset, count)
            sent, want = 0, b""
        else:
            sent = await sendfile_via(api, loop, conn, f, offset, count)
            want = memoryview(data)[offset:offset + count if count else None]
            assert sent == len(want)
            assert f.tell() == expected_position(start, offset, sent)
    await conn.finish()
    conn.sink.check(want)
    assert errors == []
    await settle_fds(fds)


@pytest.mark.parametrize("api", ["transport", "sock"])
@pytest.mark.parametrize("name,size,offset,count", CASES, ids=[c[0] for c in CASES])
def test_sendfile_sizes_offsets_counts(loop, loop_kind, big, tmp_path, api, name, size,
                                       offset, count):
    """loop.sendfile() over TCP and loop.sock_sendfile() on a plain
    non-blocking socket, fast reader: every byte checked, return value =
    bytes sent, file position as asyncio leaves it.  uvloop: NotImplementedError."""
    if size is None:
        path, data = big.path, big.data
    else:
        data = random.Random(name).randbytes(size)
        path = tmp_path / "small.bin"
        path.write_bytes(data)
    loop.run_until_complete(
        check_sendfile(api, loop, loop_kind, path, data, offset, count))


SLOW_CASES = [
    ("3MiB-file", 0, None),
    ("middle-with-count", 1 * MiB + 17, 2 * MiB + 3),
]


@pytest.mark.parametrize("api", ["transport", "sock"])
@pytest.mark.parametrize("name,offset,count", SLOW_CASES, ids=[c[0] for c in SLOW_CASES])
def test_sendfile_slow_reader(loop, loop_kind, big, tmp_path, api, name, offset, count):
    """As above with a reader that pauses after every chunk and small socket
    buffers, so the sendfile waits for room again and again.
    uvloop: NotImplementedError."""
    data = big.data[:3 * MiB]
    path = tmp_path / "3MiB.bin"
    path.write_bytes(data)
    loop.run_until_complete(check_sendfile(
        api, loop, loop_kind, path, data, offset, count, small_buffers=True, pace=PACE))


# -- 2. writes around and during a sendfile


@pytest.mark.parametrize("pre_size", [3, 2 * MiB], ids=["pre-3B", "pre-2MiB"])
def test_writes_before_and_after_arrive_in_order(loop, loop_kind, big, pre_size):
    """write(pre), sendfile, write(post): the peer gets pre + file + post.
    A 2 MiB `pre` is still queued in the transport when sendfile is called
    (slow reader, small buffers): sendfile must wait for it to drain.
    uvloop: NotImplementedError, and the writes still arrive."""
    pre = random.Random("pre").randbytes(pre_size - 3) + b"pre"
    post = b"post"
    offset, count = 5 * MiB + 1, MiB + 1

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, pace=PACE, keep=8 * MiB)
        with open(big.path, "rb") as f:
            conn.transport.write(pre)
            if loop_kind == "uvloop":
                with pytest.raises(NotImplementedError):
                    await loop.sendfile(conn.transport, f, offset, count)
                body = b""
            else:
                assert await loop.sendfile(conn.transport, f, offset, count) == count
                assert f.tell() == offset + count
                body = big.slice(offset, count)
            conn.transport.write(post)
        await conn.finish()
        want = pre + body + post
        conn.sink.check(want)
        assert conn.sink.kept == want
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_write_during_sendfile_raises(loop, loop_kind, big):
    """While sendfile waits on a stalled reader, write(), write(b'') and
    writelines() from another task raise RuntimeError('unable to write;
    sendfile is in progress') (writelines() names itself from 3.12) and
    send nothing; once the reader resumes the
    sendfile completes and writes work again.  Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 3 * MiB, 4 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=8 * MiB)
        with open(big.path, "rb") as f:
            conn.transport.write(b"pre")
            task = asyncio.ensure_future(loop.sendfile(conn.transport, f, offset, count))
            await started_and_blocked(conn)
            assert not task.done()

            async def writer():
                for call in (lambda: conn.transport.write(b"x"),
                             lambda: conn.transport.write(b""),
                             lambda: conn.transport.write(bytearray(b"x" * 100000))):
                    with pytest.raises(RuntimeError, match=IN_PROGRESS):
                        call()
                # asyncio's transport has a writelines() of its own from 3.12,
                # whose error names it
                with pytest.raises(RuntimeError, match=WRITELINES_IN_PROGRESS):
                    conn.transport.writelines([b"x", b"y"])

            await wait(asyncio.ensure_future(writer()))
            assert not conn.transport.is_closing()
            conn.sink.release()
            assert await wait(task) == count
            assert f.tell() == offset + count
            conn.transport.write(b"post")
        await conn.finish()
        want = b"pre" + big.slice(offset, count) + b"post"
        conn.sink.check(want)
        assert conn.sink.kept == want
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_second_concurrent_sendfile(loop, loop_kind, big):
    """A second loop.sendfile() on a transport whose first sendfile waits on
    a stalled reader must fail promptly, not hang, and must not disturb the
    first: it completes, and writes and close() work afterwards.  asyncio
    raises KeyError (its _sendfile_native deletes the transport from the
    loop's table a second time); the test accepts any exception.
    Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 3 * MiB, 4 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=8 * MiB)
        try:
            with open(big.path, "rb") as f, open(big.path, "rb") as f2:
                first = asyncio.ensure_future(
                    loop.sendfile(conn.transport, f, offset, count))
                await started_and_blocked(conn)
                second = asyncio.ensure_future(loop.sendfile(conn.transport, f2, 0, 100))
                done, _ = await asyncio.wait([second], timeout=5)
                if not done:
                    second.cancel()
                assert second in done, "a second concurrent sendfile hung"
                with pytest.raises(Exception):
                    second.result()
                assert f2.tell() == 0
                conn.sink.release()
                assert await wait(first, 5) == count
                assert f.tell() == offset + count
                conn.transport.write(b"post")
            await wait(conn.finish(), 5)
        except BaseException:
            conn.abort()
            raise
        want = bytes(big.slice(offset, count)) + b"post"
        conn.sink.check(want)
        assert conn.sink.kept == want
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_write_eof_during_sendfile(loop, loop_kind, big):
    """write_eof() while sendfile waits on a stalled reader: the peer gets
    EOF right after the bytes sendfile sent.  asyncio shuts the socket's
    write side at once, so its sendfile raises BrokenPipeError part-way; a
    loop that defers the EOF until the sendfile ends may complete it
    instead.  Either is accepted, as long as what arrives is exactly
    file[offset:tell()] and then EOF.  Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 1000, 4 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=count)
        try:
            with open(big.path, "rb") as f:
                task = asyncio.ensure_future(loop.sendfile(conn.transport, f, offset, count))
                await started_and_blocked(conn)
                conn.transport.write_eof()
                conn.sink.release()
                try:
                    assert await wait(task, 5) == count
                except BrokenPipeError:
                    pass                   # asyncio
                sent = f.tell() - offset
                assert 0 < sent <= count
                await wait(conn.sink.eof, 5)
                assert conn.sink.kept == big.slice(offset, sent)
            await wait(conn.finish(), 5)
        except BaseException:
            conn.abort()
            raise
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_reading_paused_during_sendfile(loop, loop_kind, big):
    """While sendfile runs the transport does not read: what the peer sends
    meanwhile reaches the protocol only after sendfile has returned.  A
    transport paused before the sendfile is still paused after it.
    Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, pace=PACE, reply=b"ping")
        with open(big.path, "rb") as f:
            # awaited directly: wait_for() would return a loop iteration later
            assert await loop.sendfile(conn.transport, f, 0, 2 * MiB) == 2 * MiB
            # the sink replied on its first bytes, long before the end
            assert conn.sender.data == b""
            assert conn.transport.is_reading()
            await until(lambda: conn.sender.data == b"ping")
            conn.transport.pause_reading()
            assert await wait(loop.sendfile(conn.transport, f, 0, 10)) == 10
            assert not conn.transport.is_reading()
            conn.transport.resume_reading()
        await conn.finish()
        conn.sink.check(big.data[:2 * MiB] + big.data[:10])
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_sendfile_over_unix_socket(loop, loop_kind, big, tmp_path):
    """A Unix stream transport and socket are plain stream transports too:
    loop.sendfile(fallback=False) and loop.sock_sendfile(fallback=False)
    send natively, as on asyncio.  uvloop: NotImplementedError."""
    path = str(tmp_path / "sink.sock")
    offset, count = 7 * MiB + 3, MiB + 5

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        sinks = []

        def factory():
            sinks.append(Sink())
            return sinks[-1]

        server = await loop.create_unix_server(factory, path)
        transport, sender = await loop.create_unix_connection(Sender, path)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.setblocking(False)
        await loop.sock_connect(raw, path)
        await until(lambda: len(sinks) == 2)
        with open(big.path, "rb") as f:
            if loop_kind == "uvloop":
                with pytest.raises(NotImplementedError):
                    await loop.sendfile(transport, f, offset, count, fallback=False)
                with pytest.raises(NotImplementedError):
                    await loop.sock_sendfile(raw, f, offset, count, fallback=False)
                want = b""
            else:
                assert await wait(loop.sendfile(transport, f, offset, count,
                                                fallback=False)) == count
                assert f.tell() == offset + count
                assert await wait(loop.sock_sendfile(raw, f, offset, count,
                                                     fallback=False)) == count
                assert f.tell() == offset + count
                want = big.slice(offset, count)
        transport.close()
        raw.close()
        await wait(sender.lost)
        for sink in sinks:
            await wait(sink.lost)
            sink.check(want)
        server.close()
        await wait(server.wait_closed())
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 3. files sendfile cannot send natively


class ReadOnly:
    """A binary file object with neither fileno() nor seek()/tell()."""

    mode = "rb"

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readinto(self, buf):
        return self._data.readinto(buf)


HELLO = b"hello world"

# (name, file kind, kwargs, expected result or exception, bytes that arrive,
#  file position after or None if the file has none).  What asyncio does.
NOT_REGULAR = [
    ("bytesio-no-fallback", "bytesio", dict(fallback=False),
     asyncio.SendfileNotAvailableError, b"", 0),
    ("bytesio-fallback", "bytesio", dict(), 11, HELLO, 11),
    ("bytesio-fallback-offset-count", "bytesio", dict(offset=3, count=4), 4, b"lo w", 7),
    ("readonly-no-fallback", "readonly", dict(fallback=False),
     asyncio.SendfileNotAvailableError, b"", None),
    ("readonly-fallback", "readonly", dict(), 11, HELLO, None),
    # a pipe: fstat() says size 0, so without a count it is an empty file
    ("pipe", "pipe", dict(), 0, b"", None),
    ("pipe-no-fallback", "pipe", dict(fallback=False), 0, b"", None),
    # with a count, os.sendfile() from a pipe fails with ESPIPE
    ("pipe-count-no-fallback", "pipe", dict(count=5, fallback=False),
     asyncio.SendfileNotAvailableError, b"", None),
    # the fallback sends, then its final seek() fails: the bytes went anyway
    ("pipe-count-fallback", "pipe", dict(count=5), OSError, b"hello", None),
]


@pytest.mark.parametrize("api", ["transport", "sock"])
@pytest.mark.parametrize("name,kind,kwargs,result,arrives,position", NOT_REGULAR,
                         ids=[c[0] for c in NOT_REGULAR])
def test_not_a_regular_file(loop, loop_kind, api, name, kind, kwargs, result, arrives,
                            position):
    """io.BytesIO, a file object without fileno()/seek(), a pipe: native
    sendfile is unavailable; fallback=False raises SendfileNotAvailableError,
    the fallback reads and writes, exactly as asyncio.  (A pipe without a
    count is an "empty file" to asyncio: 0, nothing sent.)
    uvloop: NotImplementedError."""
    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, raw=(api == "sock"), keep=100)
        if kind == "bytesio":
            file = io.BytesIO(HELLO)
        elif kind == "readonly":
            file = ReadOnly(HELLO)
        else:
            r, w = os.pipe()
            os.write(w, HELLO)
            os.close(w)
            file = open(r, "rb", buffering=0)
        try:
            if loop_kind == "uvloop":
                with pytest.raises(NotImplementedError):
                    await sendfile_via(api, loop, conn, file, **kwargs)
                expect_arrives = b""
            else:
                expect_arrives = arrives
                if isinstance(result, int):
                    assert await sendfile_via(api, loop, conn, file, **kwargs) == result
                else:
                    with pytest.raises(result) as info:
                        await sendfile_via(api, loop, conn, file, **kwargs)
                    if result is OSError:
                        assert info.value.errno == errno.ESPIPE
                if position is not None:
                    assert file.tell() == position
        finally:
            if hasattr(file, "close"):
                file.close()
        await conn.finish()
        assert bytes(conn.sink.kept) == expect_arrives
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 4. argument checks


# (name, kwargs, exception, words in the message); the file is a regular one
INVALID = [
    ("text-mode", dict(text=True), ValueError, "binary mode"),
    ("count-zero", dict(count=0), ValueError, "count must be a positive integer"),
    ("count-negative", dict(count=-1), ValueError, "count must be a positive integer"),
    ("count-float", dict(count=1.5), TypeError, "count must be a positive integer"),
    ("count-str", dict(count="3"), TypeError, "count must be a positive integer"),
    ("offset-negative", dict(offset=-1), ValueError, "offset must be a non-negative integer"),
    ("offset-float", dict(offset=1.0), TypeError, "offset must be a non-negative integer"),
    ("offset-none", dict(offset=None), TypeError, "offset must be a non-negative integer"),
]


@pytest.mark.parametrize("api", ["transport", "sock"])
@pytest.mark.parametrize("name,kwargs,exc,words", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_arguments(loop, loop_kind, tmp_path, api, name, kwargs, exc, words):
    """Bad arguments raise what asyncio raises, send nothing, move nothing,
    and leave the transport or socket fit for a valid sendfile.
    uvloop: NotImplementedError before any argument check."""
    data = random.Random(name).randbytes(1000)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    kwargs = dict(kwargs)
    text = kwargs.pop("text", False)

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, raw=(api == "sock"), keep=2000)
        with open(path, "r" if text else "rb") as f:
            f.seek(7)
            expected = NotImplementedError if loop_kind == "uvloop" else exc
            with pytest.raises(expected) as info:
                await sendfile_via(api, loop, conn, f, **kwargs)
            if loop_kind != "uvloop":
                assert words in str(info.value)
            assert f.tell() == 7
        if loop_kind != "uvloop":
            with open(path, "rb") as f:
                assert await sendfile_via(api, loop, conn, f, 10) == 990
                assert f.tell() == 1000
        await conn.finish()
        assert bytes(conn.sink.kept) == (b"" if loop_kind == "uvloop" else data[10:])
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


def test_sock_sendfile_rejects_non_stream_sockets(loop, loop_kind, tmp_path):
    """A SOCK_DGRAM socket: ValueError('only SOCK_STREAM type sockets are
    supported'); an ssl.SSLSocket: TypeError; a blocking socket in debug
    mode: ValueError('the socket must be non-blocking').
    uvloop: NotImplementedError for each."""
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")

    async def main():
        with open(path, "rb") as f:
            dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dgram.setblocking(False)
            with dgram:
                with pytest.raises(NotImplementedError if loop_kind == "uvloop"
                                   else ValueError) as info:
                    await loop.sock_sendfile(dgram, f)
                if loop_kind != "uvloop":
                    assert "only SOCK_STREAM type sockets are supported" in str(info.value)

            ctx = ssl.create_default_context()
            with ctx.wrap_socket(socket.socket(), do_handshake_on_connect=False,
                                 server_hostname="localhost") as tls_sock:
                tls_sock.setblocking(False)
                with pytest.raises(NotImplementedError if loop_kind == "uvloop"
                                   else TypeError) as info:
                    await loop.sock_sendfile(tls_sock, f)
                if loop_kind != "uvloop":
                    assert "SSLSocket" in str(info.value)

            a, b = socket.socketpair()
            with a, b:
                loop.set_debug(True)
                try:
                    with pytest.raises(NotImplementedError if loop_kind == "uvloop"
                                       else ValueError) as info:
                        await loop.sock_sendfile(a, f)
                finally:
                    loop.set_debug(False)
                if loop_kind != "uvloop":
                    assert "the socket must be non-blocking" in str(info.value)
            assert f.tell() == 0

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_sendfile_on_closing_transport(loop, loop_kind, tmp_path, how):
    """sendfile on a transport already closing: RuntimeError('Transport is
    closing'), checked before the arguments.  uvloop: NotImplementedError."""
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop)
        getattr(conn.transport, how)()
        with open(path, "rb") as f:
            for kwargs in (dict(), dict(count=0)):
                with pytest.raises(NotImplementedError if loop_kind == "uvloop"
                                   else RuntimeError) as info:
                    await loop.sendfile(conn.transport, f, **kwargs)
                if loop_kind != "uvloop":
                    assert "Transport is closing" in str(info.value)
            assert f.tell() == 0
        await conn.finish()
        assert conn.sink.size == 0
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 5. TLS: asyncio's fallback


def test_sendfile_over_tls_falls_back(loop, loop_kind, big, tls):
    """On a TLS transport sendfile reads and writes (asyncio's fallback):
    pre + file slice + post arrive intact through TLS, the return value and
    file position are asyncio's; fallback=False raises RuntimeError
    ('fallback is disabled ...') and sends nothing.
    uvloop: NotImplementedError for both."""
    offset, count = 2 * MiB + 5, 3 * MiB + 1

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, tls=tls, keep=4 * MiB)
        assert conn.transport.get_extra_info("ssl_object") is not None
        with open(big.path, "rb") as f:
            if loop_kind == "uvloop":
                for kwargs in (dict(), dict(fallback=False)):
                    with pytest.raises(NotImplementedError):
                        await loop.sendfile(conn.transport, f, offset, count, **kwargs)
                body = b""
            else:
                with pytest.raises(RuntimeError, match="fallback is disabled"):
                    await loop.sendfile(conn.transport, f, offset, count, fallback=False)
                assert f.tell() == 0
                conn.transport.write(b"pre")
                assert await wait(loop.sendfile(conn.transport, f, offset, count)) == count
                assert f.tell() == offset + count
                conn.transport.write(b"post")
                body = big.slice(offset, count)
        await conn.finish()
        want = b"pre" + body + b"post" if body else b""
        conn.sink.check(want)
        assert conn.sink.kept == want
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 6. the connection goes away mid-sendfile


def is_invalid_state_report(context):
    return isinstance(context.get("exception"), asyncio.InvalidStateError)


@pytest.mark.parametrize("how", ["close", "abort"])
def test_transport_closed_mid_sendfile(loop, loop_kind, big, how):
    """transport.close() / abort() from another task while sendfile waits on
    a stalled reader.  uringloop: sendfile raises ConnectionError, the file
    position is just after what the socket took (the peer, reading on,
    gets exactly those bytes on close()), no fd leaks.

    asyncio (3.11) breaks here: its connection_lost path sets the sendfile's
    "empty waiter" future a second time (InvalidStateError reaches the
    exception handler) and the sendfile never returns (its writer was
    unregistered, or its socket closed, under it).  The test asserts that
    report, cancels the hung sendfile and still checks fds.  Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 1000, 16 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=count)
        with open(big.path, "rb") as f:
            f.seek(5)
            task = asyncio.ensure_future(loop.sendfile(conn.transport, f, offset, count))
            await started_and_blocked(conn)
            assert not task.done()
            getattr(conn.transport, how)()
            if loop_kind == "asyncio":
                await until(lambda: errors)
                assert all(map(is_invalid_state_report, errors)), errors
                errors.clear()
                await asyncio.sleep(0.1)
                assert not task.done()     # hung: nothing will wake it
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert f.tell() == 5       # and the position never moved
                sent = None
            else:
                with pytest.raises(ConnectionError):
                    await wait(task)
                sent = f.tell() - offset
                assert 0 < sent < count
            assert await wait(conn.sender.lost) is None
        conn.sink.release()
        await wait(conn.sink.lost)
        received = bytes(conn.sink.kept)
        assert received == big.slice(offset, len(received))
        if sent is not None:
            if how == "close":
                assert len(received) == sent
            else:
                assert len(received) <= sent
        await conn.finish()
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_peer_closes_mid_sendfile(loop, loop_kind, big, how):
    """The stalled peer closes (or aborts) its end with bytes unread, so the
    kernel resets the connection: sendfile raises ConnectionResetError (or
    BrokenPipeError) on every loop, the file position is after what the
    socket took, no fd leaks.  Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 1000, 16 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True)
        with open(big.path, "rb") as f:
            f.seek(5)
            task = asyncio.ensure_future(loop.sendfile(conn.transport, f, offset, count))
            await started_and_blocked(conn)
            assert not task.done()
            getattr(conn.sink.transport, how)()
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await wait(task)
            assert offset < f.tell() < offset + count
        conn.transport.close()
        lost = await wait(conn.sender.lost)
        assert lost is None or isinstance(lost, ConnectionError)
        await wait(conn.sink.lost)
        await conn.finish()
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["abort", "close", "cancel"])
def test_interrupted_while_earlier_writes_drain(loop, loop_kind, big, how):
    """sendfile first waits until what was written before it has gone.
    Interrupted in that wait (the reader stalled on 2 MiB of earlier
    writes): abort() -> ConnectionError on asyncio and uringloop alike;
    close() -> ConnectionError once the earlier writes have been delivered;
    cancel -> CancelledError and the transport takes writes again.  The file
    is untouched (nothing of it was sent), no fd leaks.

    asyncio 3.11 breaks on close and cancel here (close: the sendfile raises
    AttributeError from a socket already gone, and InvalidStateError reaches
    the exception handler; cancel: the transport's "empty waiter" is never
    reset, so write() raises "sendfile is in progress" forever and the
    transport never closes): skipped there, and on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    if loop_kind == "asyncio" and how != "abort":
        pytest.skip(f"asyncio 3.11 breaks on {how} while sendfile waits for a drain")
    pre = random.Random("drain").randbytes(2 * MiB)

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=4 * MiB)
        try:
            with open(big.path, "rb") as f:
                f.seek(5)
                conn.transport.write(pre)
                task = asyncio.ensure_future(loop.sendfile(conn.transport, f, 0, 4 * MiB))
                await until(lambda: unread(conn.sink.transport) > 0)
                await asyncio.sleep(0.05)
                assert not task.done()
                assert conn.transport.get_write_buffer_size() > 0
                if how == "cancel":
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await wait(task, 5)
                    assert not conn.transport.is_closing()
                    conn.transport.write(b"post")
                    conn.sink.release()
                elif how == "close":
                    conn.transport.close()
                    conn.sink.release()
                    with pytest.raises(ConnectionError):
                        await wait(task, 5)
                else:
                    conn.transport.abort()
                    with pytest.raises(ConnectionError):
                        await wait(task, 5)
                assert f.tell() == 5
            await wait(conn.finish(), 5)
        except BaseException:
            conn.abort()
            raise
        got = bytes(conn.sink.kept)
        if how == "cancel":
            assert got == pre + b"post"
        elif how == "close":
            assert got == pre
        else:
            assert got == pre[:len(got)]
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 7. cancelled mid-way


def test_cancel_mid_sendfile(loop, loop_kind, big):
    """Cancelling the task running sendfile while it waits on a stalled
    reader: CancelledError; the transport stays open, takes writes and
    another sendfile; the peer gets a prefix of the file slice, then what
    followed; no fd leaks.

    The file position differs: uringloop leaves it just after what was sent
    (as asyncio documents for errors), asyncio 3.11 leaves it where it was
    (its cancellation callback unregisters the writer that would have
    seeked).  Skipped on uvloop."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no sendfile")
    offset, count = 1000, 16 * MiB

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        conn = await link(loop, small_buffers=True, stalled=True, keep=count + 100)
        with open(big.path, "rb") as f:
            f.seek(5)
            task = asyncio.ensure_future(loop.sendfile(conn.transport, f, offset, count))
            await started_and_blocked(conn)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await wait(task)
            position = f.tell()
            assert not conn.transport.is_closing()
            conn.transport.write(b"|")
            conn.sink.release()
            assert await wait(loop.sendfile(conn.transport, f, 0, 10)) == 10
            assert f.tell() == 10
            conn.transport.write(b"post")
        await conn.finish()
        received = bytes(conn.sink.kept)
        head, sep, tail = received.rpartition(b"|")
        assert sep and tail == big.data[:10] + b"post"
        assert 0 < len(head) < count
        assert head == big.slice(offset, len(head))
        if loop_kind == "asyncio":
            assert position == 5
        else:
            assert position == offset + len(head)
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())


# -- 8. aiohttp's FileResponse


@pytest.mark.timeout(90)
def test_aiohttp_file_response(loop, big):
    """web.FileResponse of the 100 MiB file served on the loop under test
    and downloaded by a ClientSession on the same loop, hashed; plus a Range
    request from the middle.  Passes on all four (aiohttp uses
    loop.sendfile(), and on uvloop falls back to writes by itself)."""
    async def serve(request):
        return web.FileResponse(big.path)

    async def main():
        fds = await fd_baseline()
        errors = record_exceptions(loop)
        app = web.Application()
        app.router.add_get("/big", serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            url = f"http://{host}:{port}/big"
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as resp:
                    assert resp.status == 200
                    assert resp.content_length == BIG
                    digest, size = hashlib.sha256(), 0
                    async for chunk in resp.content.iter_chunked(MiB):
                        digest.update(chunk)
                        size += len(chunk)
                assert size == BIG
                assert digest.hexdigest() == sha(big.data)
                first, last = 50 * MiB - 3, 51 * MiB + 4
                async with session.get(url, headers={"Range": f"bytes={first}-{last}"}) as resp:
                    assert resp.status == 206
                    assert await resp.read() == big.slice(first, last + 1 - first)
        finally:
            await runner.cleanup()
        await asyncio.sleep(0.05)
        assert errors == []
        await settle_fds(fds)

    loop.run_until_complete(main())
