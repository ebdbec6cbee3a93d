"""Datagram transports (UDP over IPv4 and IPv6, Unix datagram sockets).

Receiving: one multishot RECVMSG per transport, picking buffers from a
provided-buffer ring made for datagrams (each buffer holds the largest
datagram asyncio would deliver: 64 KiB for UDP, asyncio's max_size of
256 KiB for Unix sockets, so nothing is cut shorter than on asyncio's
loop).  Each completion brings one datagram with its source address;
bytes and address are copied out and the buffer goes back to the kernel.
Where the kernel has no multishot receive or no buffer rings (before 6.0),
or for other families, a POLL says when to call recvfrom() as asyncio does.

Sending: sendto() queues the datagram with its address as raw sockaddr
bytes; before its next enter the loop hands each transport's queue to the
kernel as SENDMSGs linked into one chain, so they go out in order even
where the kernel holds one back (its wait queues would otherwise wake
them in any order).  One chain per transport is in flight at a time.  A
send that fails reaches error_received(), as on asyncio's loop; the rest
of its chain, cancelled by the kernel, goes out again.

Flow control counts queued plus in-flight bytes; as on asyncio's loop,
pause_writing() comes only when the kernel pushes back (a chain still in
flight when sendto() is called), not for a burst it takes at once.
"""
import collections
import errno
import os
import socket
import struct
import sys
from asyncio import constants, futures, transports
from asyncio.log import logger

from .. import _c
from .._uring import ffi
from ..ring import CQE_BUFFER_SHIFT, CQE_F_BUFFER, CQE_F_MORE
from ..sockaddr import NAME_SPACE, Codec
from .base import RingTransport

# asyncio's datagram transport reads at most this much per datagram.
MAX_SIZE = 256 * 1024
# The datagram buffer rings: group, buffer count, buffer size (each buffer
# holds struct ul_recvmsg_out, the address and the largest payload).
_GROUPS = {
    socket.AF_INET: (1, 256, 16 + 28 + 0xFFFF),
    socket.AF_INET6: (1, 256, 16 + 28 + 0xFFFF),
    socket.AF_UNIX: (2, 32, 16 + NAME_SPACE[socket.AF_UNIX] + MAX_SIZE),
}
_OUT = struct.Struct("=IIII")          # struct ul_recvmsg_out
# Datagrams handed to the kernel per chain; more wait for it to complete.
_CHAIN_MAX = 64
# Datagrams read per readiness report on the fallback path.
_READS_PER_POLL = 32
POLLIN = 0x001
# From 3.13 asyncio sends empty datagrams and counts 8 bytes of header
# per queued datagram.
_SENDS_EMPTY = sys.version_info >= (3, 13)
_HEADER_SIZE = 8 if sys.version_info >= (3, 13) else 0


class _Recv:
    """The multishot RECVMSG of one transport; its msghdr says how much
    room each buffer keeps for the address."""

    __slots__ = ("transport", "context", "msg", "buffers", "space")

    def __init__(self, transport, buffers):
        self.transport = transport
        self.context = transport._context
        self.buffers = buffers
        self.space = NAME_SPACE[transport._family]
        self.msg = ffi.new("struct msghdr *")
        self.msg.msg_namelen = self.space

    def complete(self, res, flags):
        t = self.transport
        if not flags & CQE_F_MORE:
            t._recv_ud = 0
            t._live -= 1
        if res >= 0 and flags & CQE_F_BUFFER:
            t._received(*self._datagram(flags >> CQE_BUFFER_SHIFT, res))
        elif res < 0:
            t._recv_failed(res)
        if not t._recv_ud:
            t._start_reading()
        t._release_if_idle()

    def _datagram(self, bid, res):
        memory, size = self.buffers.memory, self.buffers.size
        at = bid * size
        namelen, controllen, _, _ = _OUT.unpack_from(memory, at)
        name_at = at + _OUT.size
        data_at = name_at + self.space + controllen
        name = memory[name_at:name_at + min(namelen, self.space)]
        return memory[data_at:at + res], self.transport._codec.unpack(name)


class _Readable:
    """The fallback receive: a POLL, then recvfrom() until it would block."""

    __slots__ = ("transport", "context")

    def __init__(self, transport):
        self.transport = transport
        self.context = transport._context

    def complete(self, res, flags):
        t = self.transport
        t._recv_ud = 0
        t._live -= 1
        if res > 0:
            t._read_ready()
        t._start_reading()
        t._release_if_idle()


class _Send:
    """One SENDMSG; owns the datagram, its address and the msghdr pointing
    at them until its completion."""

    __slots__ = ("transport", "context", "data", "name", "pinned")

    def __init__(self, transport, data, name):
        self.transport = transport
        self.context = transport._context
        self.data = data
        self.name = name
        buf = ffi.from_buffer(data)
        iov = ffi.new("struct iovec *", (buf, len(data)))
        msg = ffi.new("struct msghdr *")
        msg.msg_iov = iov
        msg.msg_iovlen = 1
        if name is not None:
            pinned_name = ffi.from_buffer(name)
            msg.msg_name = pinned_name
            msg.msg_namelen = len(name)
            self.pinned = (msg, iov, buf, pinned_name)
        else:
            self.pinned = (msg, iov, buf)

    def complete(self, res, flags):
        self.pinned = None
        self.transport._sent(self, res)


class DatagramTransport(RingTransport, transports.DatagramTransport):
    """asyncio.DatagramTransport for a datagram socket."""

    max_size = MAX_SIZE
    __slots__ = ("_address", "_family", "_codec", "_recv_ud", "_pending", "_buffer_size",
                 "_chain", "_retry", "_flushing")

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        super().__init__(loop, sock, protocol, extra)
        self._address = address
        self._family = sock.family
        self._codec = Codec(sock.family) if sock.family in NAME_SPACE else None
        self._recv_ud = 0            # user_data of the receive in flight, 0: none
        self._pending = collections.deque()   # (data, sockaddr bytes or None)
        self._buffer_size = 0        # queued plus in-flight bytes, as asyncio counts them
        self._chain = 0              # sends in flight
        self._retry = []             # sends of a broken chain, to go out again
        self._flushing = False       # on the loop's list of queues to hand over
        self._call_soon(self._protocol.connection_made, self)
        self._call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    # -- receiving

    def _start_reading(self):
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

    def _stop_reading(self):
        if self._recv_ud:
            self._loop._ring.prep_cancel(self._recv_ud)

    def _received(self, data, addr):
        if self._closing:
            return                   # asyncio stops reading at close()
        try:
            self._protocol.datagram_received(data, addr)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")

    def _recv_failed(self, res):
        if res in (-errno.ECANCELED, -errno.ENOBUFS) or self._closing:
            return                   # re-armed by the caller where still reading
        if res == -errno.EINVAL and self._loop._multishot_recv:
            self._loop._multishot_recv = False    # no multishot RECVMSG here
            return
        self._protocol.error_received(OSError(-res, os.strerror(-res)))

    def _read_ready(self):
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

    def get_write_buffer_size(self):
        return self._buffer_size

    def sendto(self, data, addr=None):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data and not _SENDS_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = None              # connected: the kernel knows where
        if self._conn_lost:
            if self._address:
                if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                    logger.warning("socket.send() raised exception.")
                self._conn_lost += 1
            return
        try:
            name = None if addr is None else self._pack(addr)
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
            return
        self._pending.append((bytes(data) if type(data) is not bytes else data, name))
        self._buffer_size += len(data) + _HEADER_SIZE
        if self._chain:              # the kernel is holding the last chain back
            self._maybe_pause_protocol()
        if not self._flushing:
            self._flushing = True
            self._loop._to_flush.append(self)

    def _pack(self, addr):
        if self._codec is None:
            raise OSError(errno.EAFNOSUPPORT, f"sendto() to {addr!r}: "
                          f"address family {self._family!r} is not supported by uringloop")
        return self._codec.pack(addr)

    def _flush(self):
        """Called by the loop before its enter: the queue, as one chain."""
        self._flushing = False
        pending = self._pending
        if self._chain or not pending or self._conn_lost:
            return
        loop = self._loop
        ring = loop._ring
        count = min(len(pending), _CHAIN_MAX, max(1, ring.sq_space()))
        for i in range(count):
            data, name = pending.popleft()
            prep = ring.prep_sendmsg_link if i < count - 1 else ring.prep_sendmsg
            op = _Send(self, data, name)
            loop._start_op(op, prep, self._fd, op.pinned[0])
            self._chain += 1
            self._live += 1

    def _sent(self, op, res):
        self._chain -= 1
        self._live -= 1
        if self._conn_lost or self._released:
            self._buffer_size = 0
            self._release_if_idle()
            return
        if res == -errno.ECANCELED:
            self._retry.append((op.data, op.name))     # an earlier send broke the chain
        else:
            self._buffer_size -= len(op.data) + _HEADER_SIZE
            if res < 0:
                self._protocol.error_received(OSError(-res, os.strerror(-res)))
        if self._chain:
            return
        if self._retry:
            self._pending.extendleft(reversed(self._retry))
            self._retry = []
        if self._pending:
            self._flush()
        self._maybe_resume_protocol()
        if self._closing and not self._pending and not self._chain:
            self._conn_lost += 1
            self._call_connection_lost(None)

    # -- closing

    def _cancel_all(self):
        self._stop_reading()
        if self._chain:
            super()._cancel_all()

    def _force_close(self, exc):
        self._pending.clear()
        self._buffer_size = 0
        super()._force_close(exc)


_c.register_kind(_Recv)
_c.register_kind(_Readable)
_c.register_kind(_Send)
