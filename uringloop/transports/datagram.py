"""Datagram transports (UDP over IPv4 and IPv6, Unix datagram sockets).

Receiving: one multishot RECVMSG per transport, picking buffers from a
provided-buffer ring made for datagrams (each buffer holds the largest
datagram asyncio would deliver: 64 KiB for UDP, asyncio's max_size of
256 KiB for Unix sockets, so nothing is cut shorter than on asyncio's
loop).  Each completion brings one datagram with its source address;
bytes and address are copied out and the buffer goes back to the kernel.
Where the kernel has no multishot receive or no buffer rings (before 6.0),
or for other families, a POLL says when to call recvfrom() as asyncio does.

Sending: sendto() tries a non-blocking sendto(2) at once, as asyncio's
loop does: a datagram the kernel takes is gone before sendto() returns,
and one it refuses for lack of room is queued, with pause_writing() from
inside sendto() above the high-water mark.  The queue waits for room with
a POLL_ADD on the ring and then goes out in order, until the kernel
refuses again.  (Batching the sends as SENDMSG requests for the next
enter was measured: 1.2x to 1.3x the CPU per datagram of the direct
call, and it could only learn of a full socket an iteration late.)
"""
from __future__ import annotations

import collections
import errno
import os
import select
import socket
import struct
import sys
from asyncio import constants, futures, transports
from asyncio.log import logger
from typing import TYPE_CHECKING

from .. import _c
from .._uring import ffi
from ..ring import CQE_BUFFER_SHIFT, CQE_F_BUFFER, CQE_F_MORE
from ..sockaddr import NAME_SPACE, Codec
from .base import RingTransport, TransportOp

if TYPE_CHECKING:
    from asyncio import protocols
    from collections.abc import Callable
    from typing import Any

    from .._typing import LoopBase
    from ..ring import BufferRing

# asyncio's datagram transport reads at most this much per datagram.
MAX_SIZE = 256 * 1024
_OUT = struct.Struct("=IIII")          # struct ul_recvmsg_out


def _buffer_size(family: int, payload: int) -> int:
    """Room for struct ul_recvmsg_out, the address and the payload, in
    64-byte steps (each buffer then starts aligned)."""
    return (_OUT.size + NAME_SPACE[family] + payload + 63) & ~63


# The datagram buffer rings: group, buffer count, buffer size.
_GROUPS = {
    socket.AF_INET: (1, 256, _buffer_size(socket.AF_INET6, 0xFFFF)),
    socket.AF_INET6: (1, 256, _buffer_size(socket.AF_INET6, 0xFFFF)),
    socket.AF_UNIX: (2, 32, _buffer_size(socket.AF_UNIX, MAX_SIZE)),
}
# Datagrams read per readiness report on the fallback path.
_READS_PER_POLL = 32
POLLIN = 0x001
# From 3.13 asyncio sends empty datagrams and counts 8 bytes of header
# per queued datagram.
_SENDS_EMPTY = sys.version_info >= (3, 13)
_HEADER_SIZE = 8 if sys.version_info >= (3, 13) else 0


class _Recv(TransportOp):
    """The multishot RECVMSG of one transport; its msghdr says how much
    room each buffer keeps for the address."""

    __slots__ = ("msg", "buffers", "bgid", "space")
    transport: DatagramTransport

    def __init__(self, transport: DatagramTransport, buffers: BufferRing) -> None:
        super().__init__(transport)
        self.buffers = buffers
        self.bgid = buffers.bgid
        self.space = NAME_SPACE[transport._family]
        self.msg = ffi.new("struct msghdr *")
        self.msg.msg_namelen = self.space

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        if not flags & CQE_F_MORE:
            t._recv_ud = 0
            t._live -= 1
        if res >= 0 and flags & CQE_F_BUFFER:
            t._received(*self._datagram(flags >> CQE_BUFFER_SHIFT, res))
        elif res < 0:
            t._recv_failed(res)
        if not t._recv_ud:
            if res == -errno.ENOBUFS:
                t._loop._starve(t)              # re-armed as buffers come back
            else:
                t._start_reading()
        t._release_if_idle()

    def _datagram(self, bid: int, res: int) -> tuple[bytes, Any]:
        memory, size = self.buffers.memory, self.buffers.size
        at = bid * size
        namelen, controllen, _, _ = _OUT.unpack_from(memory, at)
        name_at = at + _OUT.size
        data_at = name_at + self.space + controllen
        name = memory[name_at:name_at + min(namelen, self.space)]
        # (type: ignore: a transport with buffer rings is one with a Codec)
        return memory[data_at:at + res], self.transport._codec.unpack(name)  # type: ignore[union-attr]


class _Readable(TransportOp):
    """The fallback receive: a POLL, then recvfrom() until it would block."""

    __slots__ = ()
    transport: DatagramTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._recv_ud = 0
        t._live -= 1
        if res > 0:
            t._read_ready()
        t._start_reading()
        t._release_if_idle()


class _Writable(TransportOp):
    """The queue's wait for room after the kernel refused a send."""

    __slots__ = ()
    transport: DatagramTransport

    def complete(self, res: int, flags: int) -> None:
        t = self.transport
        t._live -= 1
        t._blocked = False
        if t._conn_lost or t._released:
            t._release_if_idle()
        else:
            t._send_queued()


class DatagramTransport(RingTransport, transports.DatagramTransport):
    """asyncio.DatagramTransport for a datagram socket."""

    max_size = MAX_SIZE
    __slots__ = ("_address", "_family", "_codec", "_sendto", "_recv_ud", "_pending",
                 "_buffer_size", "_blocked", "_ready")
    _sendto: Callable[[int, bytes | bytearray | memoryview, Any], int | None]
    _pending: collections.deque[tuple[bytes, Any]]

    _protocol: protocols.DatagramProtocol

    def __init__(self, loop: LoopBase, sock: socket.socket, protocol: protocols.BaseProtocol,
                 address: Any = None, waiter: futures.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(loop, sock, protocol, extra)
        self._address = address
        self._family = sock.family
        self._codec = Codec(sock.family) if sock.family in NAME_SPACE else None
        self._sendto = _c.sendto_nowait if self._codec else self._sendto_other
        self._recv_ud = 0            # user_data of the receive in flight, 0: none
        self._ready = loop._ready    # the loop's ready queue (the deque is never replaced)
        self._pending = collections.deque()   # (data, sockaddr bytes or None), refused
        self._buffer_size = 0        # what asyncio counts of the queue
        self._blocked = False        # the queue waits for room (a POLLOUT in flight)
        self._call_soon(self._protocol.connection_made, self)
        self._call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled,  # type: ignore[attr-defined]
                           waiter, None)

    # -- receiving

    def _start_reading(self) -> None:
        if self._recv_ud or self._closing or self._conn_lost:
            return
        loop = self._loop
        ring = loop._ring
        group = _GROUPS.get(self._family)
        buffers = loop._buffer_ring(*group) if group and loop._multishot_recv else None
        if buffers is None:
            self._recv_ud = loop._start_op(_Readable(self), ring.prep_poll, self._fd, POLLIN)
        else:
            op = _Recv(self, buffers)
            ud = loop._start_op(op, ring.prep_recvmsg_multishot, self._fd, op.msg, buffers.bgid)
            self._recv_ud = ud | buffers.bgid << 32    # the kernel's name for it
        self._live += 1

    def _stop_reading(self) -> None:
        if self._recv_ud:
            self._loop._ring.prep_cancel(self._recv_ud)

    def _received(self, data: bytes, addr: Any) -> None:
        if self._closing:
            return                   # asyncio stops reading at close()
        if self._ready:
            # asyncio's loop runs what was ready before the I/O it polls;
            # here completions come first, so the datagram waits its turn.
            self._call_soon(self._deliver, data, addr)
            return
        self._deliver(data, addr)

    def _deliver(self, data: bytes, addr: Any) -> None:
        if self._closing:
            return
        try:
            self._protocol.datagram_received(data, addr)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._datagram_received_failed(exc)

    def _datagram_received_failed(self, exc: BaseException) -> None:
        """As on asyncio's loop, where it is a failing callback: reported,
        and the transport reads on."""
        self._loop.call_exception_handler({
            "message": "Exception in protocol.datagram_received()",
            "exception": exc,
            "transport": self,
            "protocol": self._protocol,
        })

    def _recv_failed(self, res: int) -> None:
        if res in (-errno.ECANCELED, -errno.ENOBUFS) or self._closing:
            return                   # re-armed by the caller where still reading
        if res == -errno.EINVAL and self._loop._multishot_recv:
            self._loop._multishot_recv = False    # no multishot RECVMSG here
            return
        self._protocol.error_received(OSError(-res, os.strerror(-res)))

    def _read_ready(self) -> None:
        for _ in range(_READS_PER_POLL):
            if self._closing or self._conn_lost:
                return
            try:
                data, addr = self._sock.recvfrom(self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            self._received(data, addr)

    # -- sending

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data and not _SENDS_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost:
            if self._address:
                if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                    logger.warning("socket.send() raised exception.")
                self._conn_lost += 1
            return
        try:
            # a connected socket sends to its peer whatever addr says, as asyncio's
            name = None if self._extra["peername"] else self._pack(addr)
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
            return
        if not self._pending:
            try:
                if self._sendto(self._fd, data, name) is not None:
                    return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            self._wait_writable()
        # what the kernel refused waits, immutable, for room
        self._pending.append((bytes(data) if type(data) is not bytes else data, name))
        self._buffer_size += len(data) + _HEADER_SIZE
        self._maybe_pause_protocol()

    def _pack(self, addr: Any) -> Any:
        # other families (netlink, packet...) keep the socket module's address
        return addr if self._codec is None else self._codec.pack(addr)

    def _sendto_other(self, fd: int, data: bytes | bytearray | memoryview,
                      addr: Any) -> int | None:
        """sendto_nowait's counterpart for families without a Codec: the
        socket module parses their addresses."""
        try:
            return self._sock.sendto(data, addr) if addr is not None else self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return None

    def _send_queued(self) -> None:
        """Room again: the queue goes out in order until the kernel refuses."""
        pending = self._pending
        while pending:
            data, name = pending[0]
            try:
                sent = self._sendto(self._fd, data, name)
            except Exception as exc:         # (asyncio: OSError reported, others fatal)
                if not isinstance(exc, OSError):
                    self._fatal_error(exc, "Fatal write error on datagram transport")
                    return
                sent = exc  # type: ignore[assignment]  # (reported below, in order)
            if sent is None:
                self._wait_writable()
                break
            pending.popleft()
            self._buffer_size -= len(data) + _HEADER_SIZE
            if isinstance(sent, OSError):
                self._protocol.error_received(sent)
        self._maybe_resume_protocol()        # (may queue more)
        if not pending and not self._blocked and self._closing and not self._conn_lost:
            self._conn_lost += 1
            self._call_connection_lost(None)

    def _wait_writable(self) -> None:
        if self._blocked:
            return
        loop = self._loop
        loop._start_op(_Writable(self), loop._ring.prep_poll, self._fd, select.POLLOUT)
        self._blocked = True
        self._live += 1

    # -- closing

    def _cancel_all(self) -> None:
        self._stop_reading()
        if self._blocked:
            super()._cancel_all()

    def _force_close(self, exc: BaseException | None) -> None:
        self._pending.clear()
        self._buffer_size = 0
        super()._force_close(exc)


_c.register_kind(_Readable)
_c.register_kind(_Writable)
_c.install_datagram(DatagramTransport, _Recv, Codec)
