"""Pipe transports: connect_read_pipe and connect_write_pipe, with asyncio's
ReadPipeTransport and WritePipeTransport semantics, for pipes, FIFOs,
sockets and character devices (PTYs among them).

Reading: the fd is made non-blocking, as asyncio does (io_uring's reads of
blocking pipes and TTYs have missed EOF or hung on some kernels), and one
multishot READ (IORING_OP_READ_MULTISHOT, Linux 6.7) per transport picks
buffers from the loop's provided-buffer ring: a completion per chunk, until
EOF.  Where the kernel has no multishot read or no buffer rings, or the
file cannot be polled by the ring (a device without a poll method), a POLL
says when to read(), as asyncio's loop does.

Writing: write() tries a non-blocking write(2) at once, as asyncio's loop
does; what the pipe cannot take is buffered and goes out as a POLL on the
ring reports room.  io_uring's own WRITE would gain nothing: on a
non-blocking pipe it hands EAGAIN back just the same.  The write end of a
pipe or socket is also polled for readability, which reports the reader
closing its end (asyncio's way of noticing it before the next write).

Closing: the pipe object is closed right after connection_lost, as on
asyncio's loop.  Ops still in flight on it are cancelled and the ring
flushed first, so no queued request names the fd number when it is
released (the kernel's requests hold the file itself, not the number).
"""
from __future__ import annotations

import collections
import contextvars
import errno
import itertools
import os
import stat
import warnings
from asyncio import constants, futures, transports
from asyncio.log import logger
from typing import TYPE_CHECKING

from ..ring import CQE_BUFFER_SHIFT, CQE_F_BUFFER, CQE_F_MORE
from .base import TransportOp

if TYPE_CHECKING:
    from asyncio import protocols
    from collections.abc import Callable
    from typing import Any, TypeVarTuple, Unpack

    from .._typing import LoopBase, PipeObject
    from ..ring import BufferRing

    _Ts = TypeVarTuple("_Ts")
    _TransportBase = transports.BaseTransport
else:
    _TransportBase = object

POLLIN = 0x001
POLLOUT = 0x004
# Chunks handed to one writev().
_IOV_MAX = 64
# asyncio's pipe transports read at most this much at a time.
MAX_SIZE = 256 * 1024
# Where the ring cannot run a multishot read on the file: fall back.
_NO_MULTISHOT = (-errno.EINVAL, -errno.EBADFD, -errno.EOPNOTSUPP, -errno.EAGAIN)


class _PipeTransport(_TransportBase):
    """What both directions share: the pipe object and its fd, the
    protocol, the context its callbacks run in, and closing the pipe."""

    _kinds: tuple[Callable[[int], bool], ...] = ()   # the st_mode tests a subclass accepts
    _kind_error = ""

    if TYPE_CHECKING:
        _extra: dict[str, Any]      # BaseTransport's, which typeshed leaves out
        def _close(self, exc: BaseException | None) -> None: ...
    _pipe: PipeObject | None
    _protocol: protocols.BaseProtocol   # None once connection_lost has run

    def _attach(self, loop: LoopBase, pipe: PipeObject, protocol: protocols.BaseProtocol,
                waiter: futures.Future[Any] | None) -> int:
        self._extra["pipe"] = pipe
        fd = pipe.fileno()
        mode = os.fstat(fd).st_mode
        if not any(test(mode) for test in self._kinds):
            raise ValueError(self._kind_error)
        os.set_blocking(fd, False)
        self._loop = loop
        self._pipe = pipe
        self._fd = fd
        self._protocol = protocol
        self._context = contextvars.copy_context()
        self._closing = False
        self._live = 0              # ops in flight on the fd
        self._call_soon(protocol.connection_made, self)
        return mode

    def _announce(self, waiter: futures.Future[Any] | None) -> None:
        if waiter is not None:
            # only once connection_made() has run
            self._call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                            waiter, None)

    def _call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts]) -> None:
        self._loop.call_soon(callback, *args, context=self._context)

    def __repr__(self) -> str:
        state = "closed" if self._pipe is None else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fd} {state}>"

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        # Ops in flight hold the transport: only an idle one is collected.
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()  # type: ignore[union-attr]  # (not None: getattr said)

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> protocols.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        self._loop.call_exception_handler({
            "message": message,
            "exception": exc,
            "transport": self,
            "protocol": self._protocol,
        })
        self._close(exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]  # (as base.py's)
        finally:
            self._close_pipe()
            self._protocol = None  # type: ignore[assignment]  # (used no more)

    def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if self._live and not self._loop.is_closed():
            ring = self._loop._ring
            ring.prep_cancel_fd(self._fd)
            ring.flush()
        pipe.close()  # type: ignore[union-attr]  # (closed once: after connection_lost)


class _Read(TransportOp):
    """The multishot READ of a read pipe transport."""

    __slots__ = ("buffers",)
    transport: ReadPipeTransport

    def __init__(self, transport: ReadPipeTransport, buffers: BufferRing) -> None:
        super().__init__(transport)
        self.buffers = buffers

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        if not flags & CQE_F_MORE:
            t._read_ud = 0
            t._live -= 1
        if res > 0 and flags & CQE_F_BUFFER:
            t._received(self.buffers.take(flags >> CQE_BUFFER_SHIFT, res))
        elif res == 0:
            t._received(b"")
        elif res in _NO_MULTISHOT and not t._multishot_failed:
            t._multishot_failed = True          # e.g. a device the ring cannot poll
        elif res not in (-errno.ECANCELED, -errno.ENOBUFS):
            t._read_failed(OSError(-res, os.strerror(-res)))
        if not t._read_ud:
            if res == -errno.ENOBUFS:
                t._loop._starve(t)              # re-armed as buffers come back
            else:
                t._start_reading()              # paused or closing makes this a no-op


class _Readable(TransportOp):
    """The fallback: a POLL, then one read() (asyncio reads once per event)."""

    __slots__ = ()
    transport: ReadPipeTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._read_ud = 0
        t._live -= 1
        if res > 0 and t._pipe is not None and not t._paused:
            t._read_ready()
        t._start_reading()


class ReadPipeTransport(_PipeTransport, transports.ReadTransport):
    _kinds = (stat.S_ISFIFO, stat.S_ISSOCK, stat.S_ISCHR)
    _kind_error = "Pipe transport is for pipes/sockets only."
    _protocol: protocols.Protocol
    _held: collections.deque[bytes]

    def __init__(self, loop: LoopBase, pipe: PipeObject, protocol: protocols.BaseProtocol,
                 waiter: futures.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._attach(loop, pipe, protocol, waiter)
        self._paused = False
        self._read_ud = 0
        self._held = collections.deque()    # chunks that arrived after pause_reading()
        self._multishot_failed = False
        self._call_soon(self._start_reading)
        self._announce(waiter)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        # The read stays armed: a protocol often resumes before more data
        # comes (a StreamReader pauses above twice its limit and resumes
        # as soon as its reader takes a chunk).  Data that does come is
        # held, and only then is the read cancelled.
        self._paused = True
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._held:
            self._call_soon(self._deliver_held)
        else:
            self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._held.clear()
        self._stop_reading()
        self._call_soon(self._call_connection_lost, exc)

    # -- reading

    def _start_reading(self) -> None:
        if self._read_ud or self._paused or self._closing or self._held:
            return
        loop = self._loop
        if loop._read_multishot and not self._multishot_failed:
            bgid = loop._buffer_group()
            if bgid is not None:
                # (type: ignore: a group, so its buffer ring is there)
                self._read_ud = loop._start_op(_Read(self, loop._buffers),  # type: ignore[arg-type]
                                               loop._ring.prep_read_multishot, self._fd, bgid)
                self._live += 1
                return
        self._read_ud = loop._start_op(_Readable(self), loop._ring.prep_poll, self._fd, POLLIN)
        self._live += 1

    def _stop_reading(self) -> None:
        if self._read_ud and not self._loop.is_closed():
            self._loop._ring.prep_cancel(self._read_ud)

    def _received(self, data: bytes) -> None:
        """A chunk from the multishot read (b"": end of file)."""
        if self._closing:
            return
        if self._paused or self._held:
            if self._paused and not self._held:
                self._stop_reading()
            self._held.append(data)
        elif data:
            self._protocol.data_received(data)
        else:
            self._on_eof()

    def _deliver_held(self) -> None:
        while self._held and not self._paused and not self._closing:
            data = self._held.popleft()
            if data:
                self._protocol.data_received(data)
            else:
                self._on_eof()
        self._start_reading()

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, MAX_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._read_failed(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self._on_eof()

    def _on_eof(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._stop_reading()
        self._call_soon(self._protocol.eof_received)
        self._call_soon(self._call_connection_lost, None)

    def _read_failed(self, exc: OSError) -> None:
        if self._closing:
            return
        if exc.errno == errno.EIO:
            # A PTY whose other side closed: the end of the stream.
            if self._loop.get_debug():
                logger.debug("%r: Fatal read error on pipe transport", self, exc_info=exc)
            self._close(exc)
        else:
            self._fatal_error(exc, "Fatal read error on pipe transport")


class _Writable(TransportOp):
    """A write pipe's wait for room after the pipe refused bytes."""

    __slots__ = ()
    transport: WritePipeTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._write_ud = 0
        t._live -= 1
        if t._queued and t._pipe is not None and res != -errno.ECANCELED:
            t._write_ready()


class _PeerClosed(TransportOp):
    """A write pipe's POLL for readability: on a pipe's write end it reports
    the reader closing its end (POLLERR)."""

    __slots__ = ()
    transport: WritePipeTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._peer_ud = 0
        t._live -= 1
        if res >= 0 and t._pipe is not None and not t._conn_lost:
            t._peer_closed()


class WritePipeTransport(_PipeTransport, transports._FlowControlMixin, transports.WriteTransport):
    _kinds = (stat.S_ISFIFO, stat.S_ISSOCK, stat.S_ISCHR)
    _kind_error = "Pipe transport is only for pipes, sockets and character devices"

    if TYPE_CHECKING:
        # asyncio's _FlowControlMixin's, which typeshed leaves out
        _loop: LoopBase
        def _maybe_pause_protocol(self) -> None: ...
        def _maybe_resume_protocol(self) -> None: ...
    _queue: collections.deque[bytes | memoryview]

    def __init__(self, loop: LoopBase, pipe: PipeObject, protocol: protocols.BaseProtocol,
                 waiter: futures.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra, loop)
        self._queue = collections.deque()   # bytes, or views of bytes, to write in order
        self._queued = 0                    # bytes in the queue
        self._conn_lost = 0
        self._write_ud = 0
        self._peer_ud = 0
        mode = self._attach(loop, pipe, protocol, waiter)
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self._call_soon(self._watch_peer)
        self._announce(waiter)

    def get_write_buffer_size(self) -> int:
        return self._queued

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._queued:
            try:
                n = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            self._wait_writable()
        else:
            n = 0
        # bytes are queued as they are (a view past what went out), not
        # copied: they cannot change.  Anything else can, once write()
        # returns, so its rest is copied, as asyncio's loop copies it.
        rest = memoryview(data)[n:]
        self._queue.append(rest if type(data) is bytes else bytes(rest))
        self._queued += len(rest)
        self._maybe_pause_protocol()

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._queued:
            self._stop_watching()
            self._call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        self._close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
            self._close(exc)
        else:
            super()._fatal_error(exc, message)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        self._drop_queue()
        self._stop_watching()
        if self._write_ud and not self._loop.is_closed():
            self._loop._ring.prep_cancel(self._write_ud)
        self._call_soon(self._call_connection_lost, exc)

    # -- writing

    def _wait_writable(self) -> None:
        if not self._write_ud:
            loop = self._loop
            self._write_ud = loop._start_op(_Writable(self), loop._ring.prep_poll, self._fd,
                                            POLLOUT)
            self._live += 1

    def _write_ready(self) -> None:
        queue = self._queue
        while queue:
            try:
                if len(queue) == 1:
                    n = os.write(self._fd, queue[0])
                else:
                    n = os.writev(self._fd, list(itertools.islice(queue, _IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                break
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._drop_queue()
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if not self._consume(n):
                break                           # the pipe is full
        if queue:
            self._wait_writable()
            return
        self._maybe_resume_protocol()           # may write again
        if self._closing and not self._queued:
            self._stop_watching()
            self._call_connection_lost(None)

    def _consume(self, n: int) -> bool:
        """Take n written bytes off the queue's head; True if every chunk
        offered was written whole."""
        queue = self._queue
        self._queued -= n
        while n:
            head = queue[0]
            if n < len(head):
                queue[0] = head[n:]
                return False
            n -= len(head)
            queue.popleft()
        return True

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued = 0

    # -- the reader going away

    def _watch_peer(self) -> None:
        if self._pipe is not None and not self._closing:
            loop = self._loop
            self._peer_ud = loop._start_op(_PeerClosed(self), loop._ring.prep_poll, self._fd,
                                           POLLIN)
            self._live += 1

    def _stop_watching(self) -> None:
        if self._peer_ud and not self._loop.is_closed():
            self._loop._ring.prep_cancel(self._peer_ud)

    def _peer_closed(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._close(BrokenPipeError() if self._queued else None)
