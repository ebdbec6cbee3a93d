"""Pipe transports: loop.connect_read_pipe() and loop.connect_write_pipe().

The read transport (connection_made, data_received, eof_received then
connection_lost(None) at EOF; is_reading, pause_reading, resume_reading;
close; the pipe object closed once connection_lost has run), the write
transport (write and writelines of bytes, bytearray and memoryview, empty
writes, flow control with set_write_buffer_limits, write_eof, close with
data still buffered, abort, writes after close, the reader going away with
and without data buffered, EPIPE) and the kinds of file descriptor they
take: os.pipe() ends, a FIFO, a socket from socket.socketpair(), character
devices (/dev/zero, /dev/null, a PTY in raw mode: EIO on the master once the
slave is closed) and a regular file (refused with ValueError).  Payloads
are random bytes checked byte for byte and in order; no fd is left open.

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop.  asyncio (of the running Python, unix_events.
_UnixReadPipeTransport and _UnixWritePipeTransport) is the reference: each
assertion was first checked against it and must hold identically on
uringloop and uringloop-compat.  Python ignores SIGPIPE, so writing to a
pipe whose reader has gone is an error (EPIPE), never a signal.

Where uvloop parts from asyncio the test asserts each loop's own behaviour
and its docstring says so.  In short (uvloop 0.23):
  - the read transport has an abort() that raises NotImplementedError
    (asyncio's has no abort attribute at all);
  - pause_reading() inside connection_made() is ignored: reading starts
    anyway;
  - the default write-buffer limits are (16, 65536) (asyncio: (16384,
    65536)): uvloop forgets to multiply the low-water mark by 1024;
  - write(bytearray) keeps a reference to the caller's buffer while the
    data is queued: changing it afterwards changes what is sent (asyncio
    copies);
  - write_eof() leaves is_closing() False, a write() after it raises
    RuntimeError, and connection_lost() gets OSError(ENOTSOCK) from
    libuv's shutdown() on a pipe (asyncio: ignored, None);
  - abort() keeps reporting the dropped bytes in get_write_buffer_size()
    until connection_lost;
  - write() after close() with data still queued is sent after it (asyncio
    drops it, and logs a warning from the sixth such write on); write()
    once connection_lost has run raises RuntimeError (asyncio: dropped);
  - character devices that epoll refuses (/dev/zero, /dev/null) and
    regular files abort the whole process inside libuv: those tests are
    skipped on uvloop.
"""
import asyncio
import errno
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time
import tty

import pytest

from support import (
    payload, open_fds, settle_fds, wait, until, check_bytes, record_exceptions, shape, KiB, MiB,
)

pytestmark = pytest.mark.timeout(30)

QUIET = 0.1                  # how long "nothing happens" checks watch
PIPE_CAPACITY = 64 * KiB     # Linux's default pipe buffer
CONNLOST_WARNING = "pipe closed by peer or os.write(pipe, data) raised exception."
CONNLOST_THRESHOLD = 5       # asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES


# -- helpers


def settle(future, value):
    if not future.done():
        future.set_result(value)


class Reader(asyncio.Protocol):
    """Records a read transport's callbacks in order ('made', 'data', 'eof',
    'lost'), the bytes received, and each data_received() that came while
    the test had reading paused (`paused` is set by the test or by
    subclasses)."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.paused = False
        self.data_while_paused = 0
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        settle(self.made, transport)

    def data_received(self, data):
        self.events.append("data")
        if self.paused:
            self.data_while_paused += 1
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        settle(self.lost, exc)

    async def closed(self):
        """Wait for connection_lost; its argument."""
        return await wait(asyncio.shield(self.lost))


class Writer(asyncio.BaseProtocol):
    """Records a write transport's callbacks ('made', 'pause', 'resume',
    'lost'), the write-buffer size at each pause and resume, and lets a
    producer wait while it is paused."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.events = []
        self.pause_sizes = []
        self.resume_sizes = []
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")
        self.pause_sizes.append(self.transport.get_write_buffer_size())
        self.can_write.clear()

    def resume_writing(self):
        self.events.append("resume")
        self.resume_sizes.append(self.transport.get_write_buffer_size())
        self.can_write.set()

    def connection_lost(self, exc):
        self.events.append("lost")
        self.can_write.set()
        settle(self.lost, exc)

    async def closed(self):
        return await wait(asyncio.shield(self.lost))


_made = []       # (loop, transport, is_read) from read_pipe() and write_pipe()
_closeables = []  # file objects and sockets a test made
_threads = []


@pytest.fixture(autouse=True)
def cleanup(new_loop):
    """Close what a failed test left open, in an order that cannot hang:
    transports first (before their loop is closed: set up after new_loop,
    so torn down before it), then the files and sockets, which ends the
    helper threads (EOF or EPIPE), then join those."""
    yield
    while _made:
        loop, transport, is_read = _made.pop()
        if loop.is_closed() or transport.is_closing():
            continue
        if is_read:
            transport.close()
        else:
            transport.abort()
        if not loop.is_running():
            loop.run_until_complete(asyncio.sleep(0.02))
    while _closeables:
        _closeables.pop().close()
    while _threads:
        _threads.pop().join(5)


def track(thing):
    _closeables.append(thing)
    return thing


def fileobj(fd, mode, buffered=False):
    """`fd` wrapped in a file object at once (closed at teardown): the only
    way fds are closed here, so none is ever closed twice."""
    return track(open(fd, mode, buffering=-1 if buffered else 0))


def pipe(buffered_reader=False):
    r, w = os.pipe()
    return fileobj(r, "rb", buffered_reader), fileobj(w, "wb")


def socketpair():
    a, b = socket.socketpair()
    return track(a), track(b)


async def read_pipe(pipe_obj, factory=Reader):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_read_pipe(factory, pipe_obj)
    _made.append((loop, transport, True))
    return transport, protocol


async def write_pipe(pipe_obj, factory=Writer):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(factory, pipe_obj)
    _made.append((loop, transport, False))
    return transport, protocol


class Thread(threading.Thread):
    def __init__(self, target):
        super().__init__(target=self._body, daemon=True)
        self._work = target
        self.result = None
        self.error = None
        _threads.append(self)
        self.start()

    def _body(self):
        try:
            self.result = self._work()
        except OSError as exc:
            self.error = exc

    async def finished(self):
        await until(lambda: not self.is_alive())
        if self.error is not None:
            raise self.error
        return self.result


def write_in_thread(wfile, data, chunk=256 * KiB):
    """Write `data` to a blocking pipe end from a thread, then close it."""
    def body():
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(wfile.fileno(), view[:chunk]):]
        finally:
            wfile.close()
    return Thread(body)


def read_in_thread(rfile, delay=0.0, chunk=64 * KiB):
    """Read a blocking pipe end from a thread until EOF (sleeping `delay`
    after each read: a slow reader); .finished() returns the bytes."""
    def body():
        got = bytearray()
        try:
            while True:
                data = os.read(rfile.fileno(), chunk)
                if not data:
                    return bytes(got)
                got += data
                if delay:
                    time.sleep(delay)
        finally:
            rfile.close()
    return Thread(body)


def assert_fully_read(protocol, data):
    check_bytes(protocol.data, data)
    expected = ["made", "data", "eof", "lost"] if data else ["made", "eof", "lost"]
    assert shape(protocol.events) == expected
    assert protocol.events.count("eof") == protocol.events.count("lost") == 1


# -- the read transport


SIZES = [1, 64 * KiB, 1 * MiB, 16 * MiB]


@pytest.mark.parametrize("buffered", [False, True], ids=["raw", "buffered"])
@pytest.mark.parametrize("source", ["thread", "write_pipe"])
@pytest.mark.parametrize("size", SIZES, ids=["1B", "64KiB", "1MiB", "16MiB"])
def test_read_pipe_receives_everything_then_eof(loop, run, size, source, buffered):
    """connect_read_pipe() on an os.pipe() read end, wrapped raw
    (open(fd, 'rb', buffering=0)) or buffered (open(fd, 'rb')): it returns
    once connection_made() has run; the fd is non-blocking from then on;
    get_extra_info('pipe') is the object passed.  The bytes a thread (or
    the loop's own write pipe transport) writes arrive intact and in order;
    the writer closing its end is eof_received() then connection_lost(None),
    once each, in that order; the pipe object is closed by then, reading
    has stopped and the transport is closing."""
    data = payload(size)

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe(buffered_reader=buffered)
        transport, protocol = await read_pipe(rfile)
        assert protocol.events == ["made"]
        assert protocol.transport is transport
        assert transport.get_extra_info("pipe") is rfile
        assert os.get_blocking(rfile.fileno()) is False
        assert transport.is_reading()
        assert not transport.is_closing()
        if source == "thread":
            writer = write_in_thread(wfile, data)
        else:
            wt, wp = await write_pipe(wfile)
            wt.write(data)
            wt.close()
        assert await protocol.closed() is None
        assert_fully_read(protocol, data)
        assert rfile.closed
        assert not transport.is_reading()
        assert transport.is_closing()
        assert transport.get_extra_info("pipe") is rfile
        if source == "thread":
            await writer.finished()
        else:
            assert await wp.closed() is None
            assert wfile.closed
        assert errors == []

    run(main())


def test_read_pipe_of_a_pipe_already_at_eof(loop, run):
    """A pipe whose write end was closed before connect_read_pipe():
    connection_made, eof_received, connection_lost(None); no data."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        wfile.close()
        transport, protocol = await read_pipe(rfile)
        assert await protocol.closed() is None
        assert protocol.events == ["made", "eof", "lost"]
        assert rfile.closed
        assert errors == []

    run(main())


def test_read_pipe_pause_and_resume(loop, run):
    """pause_reading() (twice: the second is a no-op) stops delivery:
    is_reading() is False and bytes written meanwhile are not delivered,
    nor is the EOF of the writer closing its end; resume_reading() (twice,
    likewise) delivers them, in order, then eof_received and
    connection_lost(None).  Once closed, pause/resume do nothing and
    is_reading() stays False."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await read_pipe(rfile)
        os.write(wfile.fileno(), b"before ")
        await until(lambda: len(protocol.data) == 7)
        transport.pause_reading()
        transport.pause_reading()
        protocol.paused = True
        assert not transport.is_reading()
        assert not transport.is_closing()
        os.write(wfile.fileno(), b"while paused ")
        wfile.close()
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made", "data"]
        assert protocol.data_while_paused == 0
        protocol.paused = False
        transport.resume_reading()
        transport.resume_reading()
        assert transport.is_reading()
        assert await protocol.closed() is None
        assert protocol.data == b"before while paused "
        assert_fully_read(protocol, b"before while paused ")
        transport.pause_reading()
        transport.resume_reading()
        assert not transport.is_reading()
        assert errors == []

    run(main())


def test_read_pipe_paused_on_every_chunk_loses_nothing(loop, run):
    """4 MiB from a thread to a protocol that pauses reading in each
    data_received() and resumes 1 ms later: no data_received() while
    paused, every byte arrives once, in order, then EOF."""
    data = payload(4 * MiB, seed=1)

    class Pausing(Reader):
        def data_received(self, chunk):
            super().data_received(chunk)
            self.transport.pause_reading()
            self.paused = True
            asyncio.get_running_loop().call_later(0.001, self.resume)

        def resume(self):
            self.paused = False
            self.transport.resume_reading()

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await read_pipe(rfile, Pausing)
        writer = write_in_thread(wfile, data)
        assert await protocol.closed() is None
        await writer.finished()
        assert protocol.data_while_paused == 0
        assert protocol.events.count("data") > 1
        assert_fully_read(protocol, data)
        assert errors == []

    run(main())


def test_read_pipe_paused_in_connection_made(loop, loop_kind, run):
    """pause_reading() inside connection_made(): data already in the pipe
    waits for resume_reading().  uvloop ignores that pause (reading starts
    after connection_made() whatever it did): the data comes at once and
    is_reading() is True."""
    class PausedFromTheStart(Reader):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        os.write(wfile.fileno(), b"waiting")
        transport, protocol = await read_pipe(rfile, PausedFromTheStart)
        await asyncio.sleep(QUIET)
        if loop_kind == "uvloop":
            assert transport.is_reading()
            assert protocol.data == b"waiting"
        else:
            assert not transport.is_reading()
            assert protocol.events == ["made"]
            transport.resume_reading()
        wfile.close()
        assert await protocol.closed() is None
        assert_fully_read(protocol, b"waiting")
        assert errors == []

    run(main())


def test_read_pipe_close(loop, run):
    """close(): is_closing() at once, is_reading() False, then
    connection_lost(None) without eof_received(); the pipe object is
    closed, so the writer's next write is EPIPE.  A second close() (before
    and after connection_lost) does nothing."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await read_pipe(rfile)
        transport.close()
        assert transport.is_closing()
        assert not transport.is_reading()
        transport.close()
        assert await protocol.closed() is None
        assert protocol.events == ["made", "lost"]
        assert rfile.closed
        with pytest.raises(BrokenPipeError):
            os.write(wfile.fileno(), b"anyone?")
        transport.close()
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made", "lost"]
        assert errors == []

    run(main())


def test_read_pipe_close_while_paused_with_data_waiting(loop, run):
    """close() while paused with data and EOF waiting in the pipe:
    connection_lost(None), and neither the data nor the EOF is delivered."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await read_pipe(rfile)
        transport.pause_reading()
        os.write(wfile.fileno(), b"never read")
        wfile.close()
        await asyncio.sleep(QUIET)
        transport.close()
        assert await protocol.closed() is None
        assert protocol.events == ["made", "lost"]
        assert rfile.closed
        assert errors == []

    run(main())


def test_read_pipe_abort(loop, loop_kind, run):
    """A read pipe transport cannot be aborted: asyncio's
    _UnixReadPipeTransport has no abort attribute (AttributeError); uvloop's
    has one that raises NotImplementedError.  The transport is unharmed:
    still reading, data still arrives, close() still ends it with
    connection_lost(None)."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await read_pipe(rfile)
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                transport.abort()
        else:
            assert not hasattr(transport, "abort")
            with pytest.raises(AttributeError):
                transport.abort()
        assert not transport.is_closing()
        assert transport.is_reading()
        os.write(wfile.fileno(), b"still here")
        await until(lambda: protocol.data == b"still here")
        transport.close()
        assert await protocol.closed() is None
        assert protocol.events == ["made", "data", "lost"]
        assert rfile.closed
        assert errors == []

    run(main())


# -- the write transport


def test_write_pipe_accepts_bytes_bytearray_memoryview(loop, loop_kind, run):
    """write() and writelines() of bytes, bytearray and memoryview (a slice
    too) arrive in order; empty writes of each type, writelines([]) and
    writelines([b'']) send nothing and queue nothing.  The write end is
    non-blocking once connected, get_extra_info('pipe') is the object
    passed, can_write_eof() is True, the default write-buffer limits are
    (16384, 65536) (uvloop: (16, 65536)).  A bytearray queued behind a
    full pipe is copied: changing it after write()/writelines() does not
    change what is sent (uvloop sends the changed bytes)."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        assert protocol.events == ["made"]
        assert os.get_blocking(wfile.fileno()) is False
        assert transport.get_extra_info("pipe") is wfile
        assert transport.can_write_eof() is True
        assert not transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        if loop_kind == "uvloop":
            assert transport.get_write_buffer_limits() == (16, 64 * KiB)
        else:
            assert transport.get_write_buffer_limits() == (16 * KiB, 64 * KiB)
        for empty in (b"", bytearray(), memoryview(b""), memoryview(b"abc")[3:]):
            transport.write(empty)
        transport.writelines([])
        transport.writelines([b"", bytearray()])
        assert transport.get_write_buffer_size() == 0
        transport.write(b"ab")
        transport.write(bytearray(b"cd"))
        transport.write(memoryview(b"xxef")[2:])
        transport.writelines([b"gh", bytearray(b"ij"), memoryview(b"kl"), b""])
        transport.writelines(iter([b"mn"]))
        expected = b"abcdefghijklmn"
        await until(lambda: transport.get_write_buffer_size() == 0)
        assert os.read(rfile.fileno(), 100) == expected

        # now fill the pipe so that what follows is queued
        filler = payload(PIPE_CAPACITY + 1000, seed=2)
        transport.write(filler)
        assert transport.get_write_buffer_size() > 0
        one, two = bytearray(b"original"), bytearray(b"ORIGINAL")
        transport.write(one)
        transport.writelines([two])
        one[:] = b"changed!"
        two[:] = b"CHANGED!"
        transport.close()
        got = await read_in_thread(rfile).finished()
        assert await protocol.closed() is None
        check_bytes(got[:len(filler)], filler)
        if loop_kind == "uvloop":
            assert got[len(filler):] == b"changed!CHANGED!"
        else:
            assert got[len(filler):] == b"originalORIGINAL"
        assert wfile.closed
        assert errors == []

    run(main())


def test_write_pipe_flow_control_16mib_to_a_slow_reader(loop, run):
    """16 MiB written in 128 KiB pieces, waiting while paused, to a thread
    that reads 64 KiB at a time with a pause after each read.  With
    set_write_buffer_limits(high=256 KiB, low=64 KiB)
    (get_write_buffer_limits() says (low, high)): pause_writing() and
    resume_writing() alternate, starting with a pause; each pause comes
    with more than `high` queued, each resume with `low` or less; every
    byte arrives in order; close() then connection_lost(None) once drained,
    and the buffer is empty."""
    data = payload(16 * MiB, seed=3)
    high, low, piece = 256 * KiB, 64 * KiB, 128 * KiB

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.set_write_buffer_limits(high=high, low=low)
        assert transport.get_write_buffer_limits() == (low, high)
        reader = read_in_thread(rfile, delay=0.001)
        for offset in range(0, len(data), piece):
            await wait(protocol.can_write.wait())
            transport.write(data[offset:offset + piece])
        transport.close()
        assert await protocol.closed() is None
        check_bytes(await reader.finished(), data)
        flow = [e for e in protocol.events if e in ("pause", "resume")]
        assert flow, "a slow reader never paused the writer"
        assert flow == ["pause", "resume"] * (len(flow) // 2) + ["pause"] * (len(flow) % 2)
        assert all(size > high for size in protocol.pause_sizes)
        assert all(size <= low for size in protocol.resume_sizes)
        assert protocol.events[0] == "made" and protocol.events[-1] == "lost"
        assert transport.get_write_buffer_size() == 0
        assert wfile.closed
        assert errors == []

    run(main())


def test_write_pipe_set_write_buffer_limits(loop, run):
    """set_write_buffer_limits(): high alone makes low = high // 4, low
    alone makes high = 4 * low, high < low is ValueError.  Lowering high
    below what is queued pauses the protocol at once."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.set_write_buffer_limits(high=100, low=10)
        assert transport.get_write_buffer_limits() == (10, 100)
        transport.set_write_buffer_limits(high=100)
        assert transport.get_write_buffer_limits() == (25, 100)
        transport.set_write_buffer_limits(low=10)
        assert transport.get_write_buffer_limits() == (10, 40)
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=10, low=100)
        transport.set_write_buffer_limits(high=1 * MiB)
        transport.write(payload(PIPE_CAPACITY + 10 * KiB, seed=4))
        assert 10 * KiB <= transport.get_write_buffer_size() <= PIPE_CAPACITY + 10 * KiB
        assert protocol.events == ["made"]
        transport.set_write_buffer_limits(high=KiB)
        assert protocol.events == ["made", "pause"]
        reader = read_in_thread(rfile)
        await until(lambda: protocol.events[-1] == "resume")
        transport.close()
        assert await protocol.closed() is None
        assert len(await reader.finished()) == PIPE_CAPACITY + 10 * KiB
        assert errors == []

    run(main())


def test_write_pipe_write_eof(loop, loop_kind, run):
    """write_eof() with 1 MiB queued: the reader gets all of it, then EOF;
    the transport closes its end once drained: connection_lost(None), the
    pipe object closed.  Right after write_eof() is_closing() is True and
    a write() is dropped silently.  uvloop: is_closing() stays False,
    write() raises RuntimeError('Cannot call write() after write_eof()'),
    and connection_lost() gets OSError(ENOTSOCK) (libuv shuts the pipe
    down with shutdown(2))."""
    data = payload(1 * MiB, seed=5)

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        transport.write_eof()
        if loop_kind == "uvloop":
            assert not transport.is_closing()
            with pytest.raises(RuntimeError, match="after write_eof"):
                transport.write(b"more")
        else:
            assert transport.is_closing()
            transport.write(b"more")
        transport.write_eof()
        await asyncio.sleep(QUIET)
        assert not protocol.lost.done(), "connection_lost before the buffer drained"
        check_bytes(await read_in_thread(rfile).finished(), data)
        exc = await protocol.closed()
        if loop_kind == "uvloop":
            assert isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK
        else:
            assert exc is None
        assert shape(protocol.events) == ["made", "pause", "resume", "lost"]
        assert wfile.closed
        assert errors == []

    run(main())


def test_write_pipe_write_eof_with_nothing_queued(loop, loop_kind, run):
    """write_eof() with nothing queued: the reader sees EOF and
    connection_lost() follows at once (None; uvloop: OSError(ENOTSOCK))."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(b"last words")
        transport.write_eof()
        exc = await protocol.closed()
        if loop_kind == "uvloop":
            assert isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK
        else:
            assert exc is None
        assert protocol.events == ["made", "lost"]
        assert wfile.closed
        assert await read_in_thread(rfile).finished() == b"last words"
        assert errors == []

    run(main())


def test_write_pipe_close_with_data_queued(loop, run):
    """close() with 1 MiB queued: is_closing() at once, but the data is
    still delivered, all of it, before the end is closed; connection_lost
    (None) only once the buffer has drained (not while nobody reads)."""
    data = payload(1 * MiB, seed=6)

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(data)
        assert transport.get_write_buffer_size() >= len(data) - PIPE_CAPACITY
        transport.close()
        assert transport.is_closing()
        transport.close()
        await asyncio.sleep(QUIET)
        assert not protocol.lost.done()
        assert not wfile.closed
        check_bytes(await read_in_thread(rfile).finished(), data)
        assert await protocol.closed() is None
        assert transport.get_write_buffer_size() == 0
        assert wfile.closed
        assert errors == []

    run(main())


def test_write_pipe_abort_drops_queued_data(loop, loop_kind, run):
    """abort() with 1 MiB queued: what the kernel already holds (one pipe
    buffer, a prefix of the data) reaches the reader, then EOF; the queued
    rest is dropped; connection_lost(None); the buffer size is 0 at once
    (uvloop: still the dropped size until connection_lost)."""
    data = payload(1 * MiB, seed=7)

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(data)
        await asyncio.sleep(QUIET)           # the pipe is full by now
        queued = transport.get_write_buffer_size()
        assert queued >= len(data) - PIPE_CAPACITY
        transport.abort()
        assert transport.is_closing()
        if loop_kind == "uvloop":
            assert transport.get_write_buffer_size() == queued
        else:
            assert transport.get_write_buffer_size() == 0
        assert await protocol.closed() is None
        assert transport.get_write_buffer_size() == 0
        assert wfile.closed
        got = await read_in_thread(rfile).finished()
        assert len(got) == PIPE_CAPACITY
        check_bytes(got, data[:len(got)])
        assert errors == []

    run(main())


def test_write_after_close(loop, loop_kind, run, caplog):
    """write() after close() while data is still queued: asyncio drops it
    (no exception, the buffer does not grow, the reader never sees it) and
    logs a warning ('pipe closed by peer or os.write(pipe, data) raised
    exception.') on the asyncio logger for each such write after the
    fifth; once connection_lost has run, write() is still dropped (and
    still counted).  uvloop queues writes after close() and sends them;
    once connection_lost has run, write() raises RuntimeError."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    data = payload(200 * KiB, seed=8)

    def warnings():
        return [r for r in caplog.records
                if r.name == "asyncio" and r.levelno == logging.WARNING
                and r.getMessage() == CONNLOST_WARNING]

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(data)
        queued = transport.get_write_buffer_size()
        transport.close()
        late = 7
        for i in range(late):
            transport.write(b"late%d" % i)
        reader = read_in_thread(rfile)
        assert await protocol.closed() is None
        got = await reader.finished()
        if loop_kind == "uvloop":
            check_bytes(got, data + b"".join(b"late%d" % i for i in range(late)))
            assert warnings() == []
            with pytest.raises(RuntimeError):
                transport.write(b"after connection_lost")
        else:
            assert queued > 0
            check_bytes(got, data)
            assert len(warnings()) == late - CONNLOST_THRESHOLD
            transport.write(b"after connection_lost")
            assert len(warnings()) == late + 1 - CONNLOST_THRESHOLD
            assert transport.get_write_buffer_size() == 0
        assert protocol.events.count("lost") == 1
        assert errors == []

    run(main())


def test_reader_closes_with_data_queued(loop, run):
    """The read end closed while the transport has data queued: the write
    transport notices without writing (asyncio watches its write end for
    readability: a pipe whose reader is gone polls as an error) and ends
    with connection_lost(BrokenPipeError); the queue is emptied, the pipe
    object closed, no exception handler call.  (asyncio's BrokenPipeError
    is made without arguments; uvloop's carries EPIPE: only the class is
    checked.)"""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(payload(256 * KiB, seed=9))
        assert transport.get_write_buffer_size() > 0
        await asyncio.sleep(0.01)
        rfile.close()
        exc = await protocol.closed()
        assert isinstance(exc, BrokenPipeError)
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        assert wfile.closed
        assert protocol.events.count("lost") == 1
        assert errors == []

    run(main())


def test_reader_closes_with_nothing_queued(loop, run):
    """The read end closed while nothing is queued and nothing is being
    written: the write transport still notices, and ends with
    connection_lost(None); the pipe object is closed."""
    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        transport.write(b"read, then gone")
        await asyncio.sleep(0.01)
        rfile.close()
        assert await protocol.closed() is None
        assert protocol.events == ["made", "lost"]
        assert transport.is_closing()
        assert wfile.closed
        assert errors == []

    run(main())


def test_write_after_the_reader_closed(loop, loop_kind, run):
    """write() right after the read end was closed (before the loop could
    notice): SIGPIPE is ignored (Python's default), so the failed write
    is EPIPE: write() itself raises nothing, is_closing() is True at once,
    connection_lost(BrokenPipeError with errno EPIPE) follows, the pipe
    object is closed and the exception handler is not called.  Later
    writes are dropped (uvloop: RuntimeError, the handle is closed)."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        transport, protocol = await write_pipe(wfile)
        rfile.close()
        transport.write(b"to nobody")
        assert transport.is_closing()
        exc = await protocol.closed()
        assert isinstance(exc, BrokenPipeError)
        assert exc.errno == errno.EPIPE
        assert protocol.events == ["made", "lost"]
        assert wfile.closed
        if loop_kind == "uvloop":
            with pytest.raises(RuntimeError):
                transport.write(b"again")
        else:
            transport.write(b"again")
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made", "lost"]
        assert errors == []

    run(main())


def test_write_pipe_1000_ordered_writes(loop, run):
    """1,000 write() calls of numbered chunks of 1..3,000 bytes, most of
    them queued behind a full pipe, read by a read pipe transport on the
    same loop: each chunk arrives whole, once, in the order written."""
    chunks = [struct.pack(">I", i) + payload(1 + (i * 7919) % 3000, seed=i) for i in range(1000)]
    data = b"".join(chunks)

    async def main():
        errors = record_exceptions(loop)
        rfile, wfile = pipe()
        reader, rp = await read_pipe(rfile)
        transport, protocol = await write_pipe(wfile)
        for chunk in chunks:
            transport.write(chunk)
        assert transport.get_write_buffer_size() > 0
        transport.close()
        assert await protocol.closed() is None
        assert await rp.closed() is None
        check_bytes(rp.data, data)
        offset = 0
        for i, chunk in enumerate(chunks):
            assert struct.unpack(">I", rp.data[offset:offset + 4])[0] == i
            offset += len(chunk)
        assert_fully_read(rp, data)
        assert errors == []

    run(main())


# -- kinds of file descriptor


def test_fifo(loop, run, tmp_path):
    """A FIFO (os.mkfifo): the read end opened O_RDONLY|O_NONBLOCK for a
    read pipe transport, the write end O_WRONLY for a write pipe transport:
    1 MiB arrives intact; close() on the writer is EOF for the reader;
    connection_lost(None) on both; both file objects closed."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    data = payload(1 * MiB, seed=10)

    async def main():
        errors = record_exceptions(loop)
        rfile = fileobj(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        wfile = fileobj(os.open(path, os.O_WRONLY), "wb")
        assert stat.S_ISFIFO(os.fstat(rfile.fileno()).st_mode)
        rt, rp = await read_pipe(rfile)
        wt, wp = await write_pipe(wfile)
        wt.write(data)
        wt.close()
        assert await wp.closed() is None
        assert await rp.closed() is None
        assert_fully_read(rp, data)
        assert rfile.closed and wfile.closed
        assert errors == []

    run(main())


def test_fifo_reader_closing_ends_the_writer(loop, run, tmp_path):
    """On a FIFO too, the write transport notices its reader going away
    (the read transport's close()) with nothing queued: connection_lost
    (None)."""
    path = tmp_path / "fifo"
    os.mkfifo(path)

    async def main():
        errors = record_exceptions(loop)
        rfile = fileobj(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
        wfile = fileobj(os.open(path, os.O_WRONLY), "wb")
        rt, rp = await read_pipe(rfile)
        wt, wp = await write_pipe(wfile)
        wt.write(b"hello")
        await until(lambda: rp.data == b"hello")
        rt.close()
        assert await rp.closed() is None
        assert await wp.closed() is None
        assert wp.events == ["made", "lost"]
        assert wfile.closed
        assert errors == []

    run(main())


def test_socketpair_as_pipes(loop, run):
    """Sockets are accepted as pipes: a read pipe transport on one end of a
    socket.socketpair() and a write pipe transport on the other carry 1 MiB
    intact; closing the writer is EOF for the reader; both sockets are
    closed afterwards (fileno() -1)."""
    data = payload(1 * MiB, seed=11)

    async def main():
        errors = record_exceptions(loop)
        a, b = socketpair()
        rt, rp = await read_pipe(a)
        wt, wp = await write_pipe(b)
        assert rt.get_extra_info("pipe") is a
        assert wt.get_extra_info("pipe") is b
        wt.write(data)
        wt.close()
        assert await wp.closed() is None
        assert await rp.closed() is None
        assert_fully_read(rp, data)
        assert a.fileno() == -1 and b.fileno() == -1
        assert errors == []

    run(main())


def test_socket_write_pipe_peer_closes(loop, run):
    """A write pipe transport on a socket whose peer closes, nothing
    queued: connection_lost(None)."""
    async def main():
        errors = record_exceptions(loop)
        a, b = socketpair()
        wt, wp = await write_pipe(b)
        a.close()
        assert await wp.closed() is None
        assert wp.events == ["made", "lost"]
        assert b.fileno() == -1
        assert errors == []

    run(main())


def test_dev_null_as_write_pipe(loop, loop_kind, run):
    """/dev/null is a character device: accepted as a write pipe; 1 MiB
    written is swallowed (the buffer empties, no pause), close() is
    connection_lost(None), the file closed.  uvloop aborts the process on
    this fd (epoll refuses it): skipped there."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop 0.23 kills the process on an fd epoll refuses")

    async def main():
        errors = record_exceptions(loop)
        wfile = fileobj(os.open("/dev/null", os.O_WRONLY), "wb")
        assert stat.S_ISCHR(os.fstat(wfile.fileno()).st_mode)
        transport, protocol = await write_pipe(wfile)
        assert os.get_blocking(wfile.fileno()) is False
        for _ in range(16):
            transport.write(payload(64 * KiB, seed=12))
        await until(lambda: transport.get_write_buffer_size() == 0)
        transport.close()
        assert await protocol.closed() is None
        assert protocol.events == ["made", "lost"]
        assert wfile.closed
        assert errors == []

    run(main())


def test_dev_zero_as_read_pipe(loop, loop_kind, run):
    """/dev/zero is a character device: connect_read_pipe() accepts it
    (connection_made, fd made non-blocking).  asyncio then cannot watch it
    (epoll_ctl refuses /dev/zero with EPERM): its exception handler gets
    that PermissionError once, from the callback that adds the reader, and
    no data ever arrives; a loop that reads it without epoll delivers
    zeros instead.  Either way: only zero bytes, never eof_received, and
    close() is connection_lost(None) with the file closed.  uvloop aborts
    the process on this fd: skipped there."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop 0.23 kills the process on an fd epoll refuses")

    class Closer(Reader):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) >= 1 * MiB and not self.transport.is_closing():
                self.transport.close()

    async def main():
        errors = record_exceptions(loop)
        rfile = fileobj(os.open("/dev/zero", os.O_RDONLY), "rb")
        transport, protocol = await read_pipe(rfile, Closer)
        assert os.get_blocking(rfile.fileno()) is False
        await until(lambda: protocol.lost.done() or errors)
        if not protocol.lost.done():
            await asyncio.sleep(QUIET)
            assert len(errors) == 1
            assert isinstance(errors[0]["exception"], PermissionError)
            assert errors[0]["exception"].errno == errno.EPERM
            assert protocol.events == ["made"]
            assert not transport.is_closing()
            transport.close()
            errors.clear()
        assert await protocol.closed() is None
        assert protocol.events[-1] == "lost" and "eof" not in protocol.events
        assert not any(protocol.data)
        assert rfile.closed
        assert errors == []

    run(main())


def open_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


def test_pty_master_to_slave(loop, run):
    """A PTY with its slave in raw mode: a write pipe transport on the
    master, a read pipe transport on the slave: 256 KiB of random bytes
    arrive unchanged.  Closing the master is EOF for the slave's reader:
    eof_received then connection_lost(None)."""
    data = payload(256 * KiB, seed=13)

    async def main():
        errors = record_exceptions(loop)
        master, slave = open_pty()
        mfile, sfile = fileobj(master, "wb"), fileobj(slave, "rb")
        rt, rp = await read_pipe(sfile)
        wt, wp = await write_pipe(mfile)
        wt.write(data)
        await until(lambda: len(rp.data) >= len(data))
        check_bytes(rp.data, data)
        wt.close()
        assert await wp.closed() is None
        assert await rp.closed() is None
        assert_fully_read(rp, data)
        assert mfile.closed and sfile.closed
        assert errors == []

    run(main())


def test_pty_slave_to_master_then_eio(loop, run):
    """A PTY with its slave in raw mode: a write pipe transport on the
    slave, a read pipe transport on the master: 256 KiB arrive unchanged.
    Closing the slave makes the master's read fail with EIO: the reader
    gets connection_lost(OSError(EIO)), no eof_received, and the exception
    handler is not called (asyncio treats EIO as a normal hang-up)."""
    data = payload(256 * KiB, seed=14)

    async def main():
        errors = record_exceptions(loop)
        master, slave = open_pty()
        mfile, sfile = fileobj(master, "rb"), fileobj(slave, "wb")
        rt, rp = await read_pipe(mfile)
        wt, wp = await write_pipe(sfile)
        wt.write(data)
        await until(lambda: len(rp.data) >= len(data))
        check_bytes(rp.data, data)
        wt.close()
        assert await wp.closed() is None
        exc = await rp.closed()
        assert type(exc) is OSError
        assert exc.errno == errno.EIO
        assert shape(rp.events) == ["made", "data", "lost"]
        assert mfile.closed and sfile.closed
        assert errors == []

    run(main())


@pytest.mark.parametrize("direction", ["read", "write"])
def test_regular_file_is_refused(loop, loop_kind, run, tmp_path, direction):
    """A regular file is not a pipe: connect_read_pipe() and
    connect_write_pipe() raise ValueError (asyncio: 'Pipe transport is for
    pipes/sockets only.' and 'Pipe transport is only for pipes, sockets and
    character devices'; only the type is checked), before touching the
    file: it stays open and blocking, connection_made() is never called,
    no fd is left behind.  uvloop aborts the process: skipped there."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop 0.23 kills the process on a regular file")
    path = tmp_path / "regular"
    path.write_bytes(b"not a pipe")

    async def main():
        errors = record_exceptions(loop)
        before = open_fds()
        f = track(open(path, "rb" if direction == "read" else "r+b", buffering=0))
        made = []

        class P(Reader):
            def connection_made(self, transport):
                made.append(transport)

        with pytest.raises(ValueError):
            if direction == "read":
                await loop.connect_read_pipe(P, f)
            else:
                await loop.connect_write_pipe(P, f)
        await asyncio.sleep(0.02)
        assert made == []
        assert not f.closed
        assert os.get_blocking(f.fileno()) is True
        f.close()
        await settle_fds(before)
        assert errors == []

    run(main())


# -- resources


def test_no_fd_leak_over_100_pipes(loop, run):
    """100 pipes in turn, each with a read and a write transport carrying a
    few bytes, the writer closed, both connection_lost: afterwards the
    process has exactly the fds it had before (counted after one warm-up
    pipe: uvloop opens /dev/null once per loop for its EMFILE reserve)."""
    async def cycle(i):
        rfile, wfile = pipe()
        rt, rp = await read_pipe(rfile)
        wt, wp = await write_pipe(wfile)
        wt.write(b"pipe %d" % i)
        wt.close()
        assert await wp.closed() is None
        assert await rp.closed() is None
        assert rp.data == b"pipe %d" % i

    async def main():
        errors = record_exceptions(loop)
        await cycle(-1)
        await asyncio.sleep(0.05)         # let the warm-up's closes land
        before = open_fds()
        for i in range(100):
            await cycle(i)
        await settle_fds(before)
        assert errors == []

    run(main())
