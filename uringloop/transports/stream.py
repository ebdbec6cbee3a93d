"""Stream transports (TCP and Unix sockets) on io_uring.

Reads: one multishot RECV per connection, selecting buffers from the loop's
provided-buffer ring; each completion's bytes are copied out once (into the
bytes for data_received, or into a BufferedProtocol's get_buffer()) and the
buffer goes straight back.
The common cases of receiving, sending and write() run in C
(_c.install_stream, _c/stream.c); the methods here define what they do.

Writes: on an idle transport, write() of 16 KiB or more calls send(2)
at once, as asyncio's loop does; everything else (smaller writes, what the
socket did not take, writes behind one in flight) queues.  One SEND (or a
vectored SENDMSG for several queued chunks) is in flight at a time and goes
out with the loop's next enter, or at once where it answers the lone
completion the loop woke for (ul_submit_reply); a partial send continues
from where it stopped.  Flow control counts queued plus in-flight bytes.

Held data: what arrives while reading is paused (a receive already in
flight when pause_reading() was called) is kept as bytes, and EOF after it,
and reaches whichever protocol the transport has once reading resumes: a
BufferedProtocol through as many get_buffer()/buffer_updated() calls as it
takes.  So a protocol swapped in while paused (start_tls) gets every byte.

Every op record owns what the kernel may touch (the bytes being sent, the
private receive buffer where there is no buffer ring) and carries the
transport's context; the fd's lifetime is the base transport's (base.py).
"""
from __future__ import annotations

import collections
import errno
import os
import select
import socket
import sys
from asyncio import constants, exceptions, futures, protocols, transports
from asyncio.log import logger
from typing import TYPE_CHECKING

from .. import _c
from .._uring import ffi
from ..ring import CQE_BUFFER_SHIFT, CQE_F_MORE
from .base import RingTransport, TransportOp

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TypeAlias

    from .._typing import AsyncioServer, LoopBase

    # a queued or sent chunk: bytes, or what is left of them after a partial send
    _Chunk: TypeAlias = bytes | memoryview

# Queued chunks up to this size are joined into one SEND; above, SENDMSG
# hands the kernel their iovecs instead of copying.
_JOIN_LIMIT = 16 * 1024
_IOV_MAX = 1024
_EOF = object()        # in the held-data queue: EOF arrived while paused
_SENDFILE_OWNS_FD = object()   # in _sendfile: loop.sendfile() is writing to the socket
# From 3.12 asyncio's socket transport checks writelines() itself, and its
# errors name writelines(); before, they are write()'s.
_OWN_WRITELINES_CHECKS = sys.version_info >= (3, 12)
# Receive buffer per connection where the kernel has no provided-buffer rings.
PRIVATE_BUFFER_SIZE = 64 * 1024

# What the transport's errors say, as asyncio words them; the C fast paths
# take them from here (_c.install_stream, below).
MESSAGES = {
    "data_received": "Fatal error: protocol.data_received() call failed.",
    "buffer_updated": "Fatal error: protocol.buffer_updated() call failed.",
    "get_buffer": "Fatal error: protocol.get_buffer() call failed.",
    "empty_buffer": "get_buffer() returned an empty buffer",
    "read": "Fatal read error on socket transport",
    "write": "Fatal write error on socket transport",
}


def _set_nodelay(sock: socket.socket) -> None:
    # Every TCP socket, including those made with proto 0 (which asyncio
    # skips, and uvloop does not): a message larger than one receive buffer
    # reaches the protocol in pieces, and Nagle would hold the echo of the
    # last piece until the peer's delayed ACK, 40 ms later.
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Recv(TransportOp):
    """The receive of one transport from the loop's buffer ring (multishot
    where the kernel has it); reused for every re-arm."""

    __slots__ = ()
    transport: StreamTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        if not flags & CQE_F_MORE:
            t._recv_ud = 0
            t._live -= 1
        if res > 0:
            # The buffer returns to the kernel at the ring's next wait.
            # (type: ignore: a buffer came, so the group's ring is there)
            t._received(t._loop._buffers.take(flags >> CQE_BUFFER_SHIFT, res))  # type: ignore[union-attr]
            if not t._recv_ud:
                t._start_reading()
        else:
            t._recv_ended(res)
        t._release_if_idle()


class _RecvPrivate(TransportOp):
    """Where the kernel has no provided-buffer rings: a single receive into
    the transport's own buffer, which this record keeps alive (and
    unresizable) until the kernel is done with it; the bytes are copied out."""

    __slots__ = ("view", "buffer", "size")
    transport: StreamTransport

    def __init__(self, transport: StreamTransport, buffer: bytearray) -> None:
        super().__init__(transport)
        self.view = buffer
        self.buffer = ffi.from_buffer(buffer, require_writable=True)
        self.size = len(self.buffer)

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._recv_ud = 0
        t._live -= 1
        ffi.release(self.buffer)
        t._received_into(res, bytes(memoryview(self.view)[:res]) if res > 0 else None)
        t._release_if_idle()


class _Send(TransportOp):
    """The one SEND/SENDMSG in flight of a transport; owns the bytes (and
    for SENDMSG the iovec array and msghdr, in `pinned`) until its completion."""

    __slots__ = ("chunks", "size", "pinned")
    transport: StreamTransport
    chunks: Sequence[_Chunk] | None
    pinned: object          # what the kernel reads: a buffer, or iovecs and msghdr

    def __init__(self, transport: StreamTransport) -> None:
        super().__init__(transport)
        self.chunks = None
        self.size = 0
        self.pinned = None

    def complete(self, res: int, flags: int) -> None:
        chunks, self.chunks, self.pinned = self.chunks, None, None
        self.transport._sent(res, chunks)  # type: ignore[arg-type]  # (a send has its chunks)


class _Writable(TransportOp):
    """A POLLOUT wait standing in for the send in flight: after the kernel
    handed a send's EAGAIN back, the queue goes out once there is room."""

    __slots__ = ()
    transport: StreamTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._live -= 1
        t._sending = False
        if t._conn_lost or t._released:
            t._release_if_idle()
        elif t._pending:
            t._send_pending()


class _SendfileWritable(TransportOp):
    """loop.sendfile()'s wait for room in the socket: a POLLOUT on the fd."""

    __slots__ = ("future",)
    transport: StreamTransport

    def __init__(self, transport: StreamTransport, future: futures.Future[int]) -> None:
        super().__init__(transport)
        self.future = future

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._live -= 1
        if not self.future.done():
            self.future.set_result(res)
        t._release_if_idle()


class StreamTransport(RingTransport, transports.Transport):
    """asyncio.Transport for a connected stream socket."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    # No per-instance dict: a server may hold tens of thousands of these.
    __slots__ = ("_buffered", "_paused", "_read_eof", "_eof", "_held", "_recv_op", "_recv_ud",
                 "_private", "_send_op", "_sending", "_inflight_size",
                 "_pending", "_pending_size", "_sendfile")

    # (see set_protocol: _buffered says which)
    _protocol: protocols.Protocol | protocols.BufferedProtocol
    _held: collections.deque[bytes | object] | None
    _private: bytearray | None
    _pending: list[_Chunk] | None
    _sendfile: futures.Future[None] | object | None

    def __init__(self, loop: LoopBase, sock: socket.socket, protocol: protocols.BaseProtocol,
                 waiter: futures.Future[Any] | None = None, extra: dict[str, Any] | None = None,
                 server: AsyncioServer | None = None) -> None:
        super().__init__(loop, sock, protocol, extra, server)
        self._paused = False
        self._read_eof = False
        self._eof = False            # write_eof() called
        self._held = None            # deque: received while paused, in order
        self._recv_op = _Recv(self)
        self._recv_ud = 0            # user_data of the receive in flight, 0: none
        self._private = None         # receive buffer where there is no buffer ring
        self._send_op = _Send(self)
        self._sending = False
        self._inflight_size = 0      # bytes of the send in flight
        self._pending = None         # list: queued, not yet handed to the kernel
        self._pending_size = 0
        self._sendfile = None        # a future while loop.sendfile() owns the socket
        _set_nodelay(sock)
        self._call_soon(self._protocol.connection_made, self)
        # The first receive is armed a loop turn later than asyncio adds its
        # reader: this loop dispatches what a wait brought before it runs
        # the callbacks already queued, and bytes already waiting would reach
        # the protocol before the task awaiting create_connection() (woken
        # by the waiter below) had resumed; asyncio's loop resumes it first.
        self._call_soon(self._call_soon, self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                           waiter, None)

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        super().set_protocol(protocol)
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)

    # -- reading

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._held:
            # asyncio calls get_buffer() from the loop, not from here
            self._call_soon(self._deliver_held)
        else:
            self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _start_reading(self) -> None:
        if self._recv_ud or self._closing or self._paused or self._read_eof or self._conn_lost:
            return
        loop = self._loop
        group = loop._buffer_group()
        if group is None:
            if self._private is None:
                self._private = bytearray(PRIVATE_BUFFER_SIZE)
            op = _RecvPrivate(self, self._private)
            self._recv_ud = loop._start_op(op, loop._ring.prep_recv, self._fd, op.buffer, op.size)
        elif loop._multishot_recv:
            self._recv_ud = loop._start_op(self._recv_op, loop._ring.prep_recv_multishot,
                                           self._fd, group)
        else:
            self._recv_ud = loop._start_op(self._recv_op, loop._ring.prep_recv_select,
                                           self._fd, group)
        self._live += 1

    def _stop_reading(self) -> None:
        if self._recv_ud:
            self._loop._ring.prep_cancel(self._recv_ud)

    def _cancel_all(self) -> None:
        """The receive is cancelled by its user_data, which the kernel finds
        by hash; only a send in flight needs the cancel by fd, which scans
        every request in the ring (closing thousands of transports at once
        would otherwise cost time quadratic in their number)."""
        self._stop_reading()
        if self._sending:
            super()._cancel_all()

    def _received_into(self, res: int, data: bytes | None) -> None:
        """A single receive ended: `res` bytes arrived (in `data`; None
        where the transport is closing), or else EOF, cancellation or an
        error."""
        if res > 0:
            self._received(data)  # type: ignore[arg-type]  # (None only where closing)
            self._start_reading()
        else:
            self._recv_ended(res)

    def _received(self, data: bytes) -> None:
        if self._closing:
            return                   # read side stopped at close(), as asyncio's
        if self._paused or self._held:
            self._hold(data)
            return
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        if self._buffered:
            self._feed_buffer(data)
            return
        try:
            self._protocol.data_received(data)  # type: ignore[union-attr]  # (not buffered)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, MESSAGES["data_received"])

    def _feed_buffer(self, data: bytes) -> None:
        """Bytes to a BufferedProtocol, as asyncio's loop gives them:
        get_buffer(-1), as many bytes as that buffer takes, buffer_updated(n),
        until all are in (_c/stream.c's feed_buffer, for the common case).
        What a pause, a close or a new protocol in between leaves over is
        held first in line, or dropped when closing."""
        rest = memoryview(data)
        while rest:
            if self._paused or self._closing or not self._buffered:
                if not self._closing:
                    self._hold(bytes(rest), first=True)
                return
            protocol: protocols.BufferedProtocol = self._protocol  # type: ignore[assignment]
            message = MESSAGES["get_buffer"]
            try:
                buf = protocol.get_buffer(-1)
                if not len(buf):  # type: ignore[arg-type]  # (asyncio calls len() too)
                    raise RuntimeError(MESSAGES["empty_buffer"])
                message = MESSAGES["read"]
                # (released before buffer_updated(), which may resize it)
                with memoryview(buf) as whole, whole.cast("B") as view:
                    if view.readonly:
                        raise TypeError(f"get_buffer() returned a read-only "
                                        f"{type(buf).__name__}")
                    n = min(len(view), len(rest))
                    view[:n] = rest[:n]
                message = MESSAGES["buffer_updated"]
                protocol.buffer_updated(n)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, message)
                return
            rest = rest[n:]

    def _hold(self, item: bytes | object, first: bool = False) -> None:
        if self._held is None:
            self._held = collections.deque()
        if first:
            self._held.appendleft(item)
        else:
            self._held.append(item)

    def _deliver_held(self) -> None:
        held = self._held
        while held and not self._paused and not self._closing:
            item = held.popleft()
            if item is _EOF:
                self._on_eof()
            else:
                self._deliver(item)  # type: ignore[arg-type]  # (bytes, if not _EOF)
        self._start_reading()

    def _recv_ended(self, res: int) -> None:
        """A receive ended without data: EOF, cancellation or an error."""
        if res == 0:
            if self._paused or self._held:
                self._hold(_EOF)
                self._read_eof = True
            elif not self._closing:
                self._on_eof()
        elif res == -errno.ECANCELED:
            self._start_reading()    # paused or closing makes this a no-op
        elif res == -errno.ENOBUFS:
            self._loop._starve(self)
        elif res == -errno.EINVAL and self._loop._multishot_recv:
            self._loop._multishot_refused()
            self._start_reading()
        elif not self._closing:
            self._fatal_error(OSError(-res, os.strerror(-res)), MESSAGES["read"])

    def _on_eof(self) -> None:
        self._read_eof = True
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- writing

    # write() is C (_c.install_stream, below): a bytes-like object written
    # to an idle transport goes out with send(2) if it is 16 KiB or more,
    # and into a SEND otherwise (a bytearray or memoryview copied to bytes
    # first), as does what the socket did not take; everything else comes
    # here.
    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._sendfile is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if type(data) is not bytes:
            data = bytes(data)       # the caller may reuse its buffer at once
        if self._pending is None:
            self._pending = []       # (idle connections keep no list)
        self._pending.append(data)
        self._pending_size += len(data)
        if not self._sending:
            self._send_pending()
        if self._pending_size + self._inflight_size > self._high_water:
            self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        if _OWN_WRITELINES_CHECKS:
            if self._eof:
                raise RuntimeError("Cannot call writelines() after write_eof()")
            if self._sendfile is not None:
                raise RuntimeError("unable to writelines; sendfile is in progress")
        for data in list_of_data:
            self.write(data)

    def _send_pending(self) -> None:
        # (type: ignore: called with chunks queued, never with no list)
        pending = self._pending
        op = self._send_op
        ring = self._loop._ring
        if len(pending) > 1 and self._pending_size <= _JOIN_LIMIT:  # type: ignore[arg-type]
            pending[:] = [b"".join(pending)]  # type: ignore[index, arg-type]
        if len(pending) == 1:  # type: ignore[arg-type]
            chunk = pending.pop()  # type: ignore[union-attr]
            size = len(chunk)
            # bytes go to the kernel as they are: their storage never moves
            # and op.chunks keeps them alive until the completion
            buf = chunk if type(chunk) is bytes else ffi.from_buffer(chunk)
            op.chunks = (chunk,)
            op.pinned = buf
            op.size = size
            self._loop._start_op(op, ring.prep_send, self._fd, buf, size)
        else:
            chunks = pending[:_IOV_MAX]  # type: ignore[index]
            del pending[:_IOV_MAX]  # type: ignore[union-attr]
            size = sum(map(len, chunks))
            iov = ffi.new("struct iovec[]", len(chunks))
            bufs = [ffi.from_buffer(c) for c in chunks]
            for i, (buf, chunk) in enumerate(zip(bufs, chunks)):
                iov[i].iov_base = buf
                iov[i].iov_len = len(chunk)
            msg = ffi.new("struct msghdr *")
            msg.msg_iov = iov
            msg.msg_iovlen = len(chunks)
            op.chunks = chunks
            op.pinned = (bufs, iov, msg)
            op.size = size
            self._loop._start_op(op, ring.prep_sendmsg, self._fd, msg)
        self._pending_size -= size
        self._inflight_size = size
        self._sending = True
        self._live += 1

    def _sent(self, res: int, chunks: Sequence[_Chunk]) -> None:
        self._live -= 1
        self._sending = False
        self._inflight_size = 0
        if self._conn_lost or self._released:
            self._release_if_idle()
            return
        if res == -errno.EAGAIN:
            self._send_when_writable(chunks)
            return
        if res < 0:
            if res != -errno.ECANCELED:
                self._pending = None
                self._pending_size = 0
                self._fatal_error(OSError(-res, os.strerror(-res)), MESSAGES["write"])
            return
        if res < self._send_op.size:
            rest = self._unsent(chunks, res)
            self._pending = rest + (self._pending or [])
            self._pending_size += sum(map(len, rest))
        if self._pending:
            self._send_pending()
        if self._protocol_paused:
            self._maybe_resume_protocol()
        if not self._pending and not self._sending:
            if self._closing:
                self._conn_lost += 1
                self._call_connection_lost(None)
            elif self._eof:
                self._shutdown_write()
            elif isinstance(self._sendfile, futures.Future) and not self._sendfile.done():
                self._sendfile.set_result(None)

    def _send_when_writable(self, chunks: Sequence[_Chunk]) -> None:
        """Nothing went out: the kernel gives a non-blocking socket's EAGAIN
        back where it stops polling for room itself (seen when the peer
        half-closes while a send waits).  The chunks return to the front of
        the queue, which a POLLOUT wait sends on."""
        self._pending = [*chunks, *(self._pending or ())]
        self._pending_size += sum(map(len, chunks))
        loop = self._loop
        loop._start_op(_Writable(self), loop._ring.prep_poll, self._fd, select.POLLOUT)
        self._sending = True
        self._live += 1

    @staticmethod
    def _unsent(chunks: Sequence[_Chunk], sent: int) -> list[_Chunk]:
        """What is left of `chunks` after the first `sent` bytes went out."""
        for i, chunk in enumerate(chunks):
            if sent < len(chunk):
                return [memoryview(chunk)[sent:], *chunks[i + 1:]]
            sent -= len(chunk)
        return []

    def get_write_buffer_size(self) -> int:
        return self._pending_size + self._inflight_size

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._pending and not self._sending:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "Fatal error on transport")

    def can_write_eof(self) -> bool:
        return True

    # -- sendfile (the loop's half is in sendfile.py)

    async def _begin_sendfile(self) -> None:
        """Wait until everything written has gone, then hand the socket to
        sendfile: until _end_sendfile(), write() raises (the C paths leave a
        transport with _sendfile set to Python) and the sendfile counts as a
        send in flight on the fd (so a close meanwhile keeps the fd number
        reserved until the sendfile stops touching it)."""
        if self._sending or self._pending:
            self._sendfile = self._loop.create_future()
            await self._sendfile               # resolved by _sent(), once drained
        self._check_sendfile_open()
        self._sendfile = _SENDFILE_OWNS_FD
        self._sending = True
        self._live += 1

    def _end_sendfile(self) -> None:
        owned, self._sendfile = self._sendfile, None
        if owned is not _SENDFILE_OWNS_FD:
            return
        self._sending = False
        self._live -= 1
        if self._released:
            self._release_if_idle()
        elif self._eof and not self._closing:
            self._shutdown_write()           # write_eof() waited for the sendfile

    async def _sendfile_wait(self, fd: int, events: int) -> None:
        """Wait for room; the poll counts in _live until its final
        completion, so even a cancelled wait keeps the fd number reserved."""
        loop = self._loop
        fut = loop.create_future()
        ud = loop._start_op(_SendfileWritable(self, fut), loop._ring.prep_poll, fd, events)
        self._live += 1
        try:
            await fut
        except exceptions.CancelledError:
            if fut.cancelled():         # (else the poll is over, its slot maybe reused)
                loop._ring.prep_cancel(ud)
            raise
        self._check_sendfile_open()

    def _check_sendfile_open(self) -> None:
        if self._conn_lost or self._closing:
            raise ConnectionError("Connection closed by peer")

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        waiter = self._sendfile
        if isinstance(waiter, futures.Future) and not waiter.done():
            waiter.set_exception(ConnectionError("Connection is closed by peer"))
        super()._call_connection_lost(exc)

    # -- closing

    def _force_close(self, exc: BaseException | None) -> None:
        self._pending = None
        self._pending_size = 0
        super()._force_close(exc)


_c.install_stream(StreamTransport, _Recv, _Send, MESSAGES)
_c.register_kind(_RecvPrivate)
_c.register_kind(_Writable)
_c.register_kind(_SendfileWritable)
