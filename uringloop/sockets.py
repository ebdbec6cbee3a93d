"""sock_* coroutines.

Each tries the non-blocking call first and, when the socket is not ready,
waits with a POLL_ADD on the ring before trying again.  Readiness, not a
RECV/ACCEPT op, is what the kernel is asked for: cancelling the awaiting
task then never loses bytes or a connection that an op had already taken.
As in asyncio, a socket whose fd a live transport owns is refused with
RuntimeError where the call would have to wait.
For non-blocking sockets, receiving and sending try through C helpers that
return None where the socket module would raise BlockingIOError: in a
request-response exchange nearly every first try finds nothing.
"""
from __future__ import annotations

import select
import socket
from asyncio import base_events, exceptions
from typing import TYPE_CHECKING

from . import _c
from .ops import poll_future

if TYPE_CHECKING:
    from typing import Any, Literal, overload

    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._typing import LoopBase as _LoopBase
else:
    _LoopBase = object


def _check_socket(loop: _LoopBase, sock: socket.socket) -> None:
    base_events._check_ssl_socket(sock)  # type: ignore[attr-defined]  # (private to asyncio)
    # as asyncio and uvloop: a blocking socket is refused in debug mode only
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


class SocketMethods(_LoopBase):
    """Loop methods: sock_recv, sock_recv_into, sock_recvfrom,
    sock_recvfrom_into, sock_sendall, sock_sendto, sock_connect, sock_accept."""

    async def _await_readiness(self, fd: int, events: int) -> None:
        """Wait until `fd` reports one of `events` (POLLIN/POLLOUT)."""
        self._ensure_fd_no_transport(fd)
        fut = self.create_future()
        ud = poll_future(self._ops, fd, events, fut)
        try:
            await fut
        except exceptions.CancelledError:
            # A future that is not cancelled was resolved: that poll is over
            # and its slot may already be another op's.
            if fut.cancelled():
                self._ring.prep_cancel(ud)
            raise

    if TYPE_CHECKING:
        # the socket methods it calls, and their results
        @overload
        async def _when_ready(self, sock: socket.socket, events: int, method: Literal["recv"],
                              bufsize: int, /) -> bytes: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int,
                              method: Literal["recv_into"], buf: WriteableBuffer, /) -> int: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int,
                              method: Literal["recvfrom"], bufsize: int,
                              /) -> tuple[bytes, Any]: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int,
                              method: Literal["recvfrom_into"], buf: WriteableBuffer,
                              nbytes: int, /) -> tuple[int, Any]: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int, method: Literal["send"],
                              data: ReadableBuffer, /) -> int: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int, method: Literal["sendto"],
                              data: ReadableBuffer, address: Any, /) -> int: ...
        @overload
        async def _when_ready(self, sock: socket.socket, events: int, method: Literal["accept"],
                              /) -> tuple[socket.socket, Any]: ...

    async def _when_ready(self, sock: socket.socket, events: int, method: str,
                          *args: Any) -> Any:
        """sock.<method>(*args) once it does not block, polling for `events`
        between tries (the method is looked up for each try, as asyncio's
        callbacks do)."""
        _check_socket(self, sock)
        while True:
            try:
                return getattr(sock, method)(*args)
            except (BlockingIOError, InterruptedError):
                await self._await_readiness(sock.fileno(), events)

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        _check_socket(self, sock)
        if sock.gettimeout() != 0:           # a blocking socket blocks, as in asyncio
            return await self._when_ready(sock, select.POLLIN, "recv", n)
        fd = sock.fileno()
        waited = self._sock_recv_waited
        # Where the last receive found nothing, this one asks for readiness
        # first: in a request-response exchange that saves a failed recv().
        if fd in waited:
            await self._await_readiness(fd, select.POLLIN)
        while True:
            data = _c.recv_nowait(fd, n)
            if data is not None:
                return data
            waited.add(fd)
            await self._await_readiness(fd, select.POLLIN)

    async def sock_recv_into(self, sock: socket.socket, buf: WriteableBuffer) -> int:
        return await self._when_ready(sock, select.POLLIN, "recv_into", buf)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        return await self._when_ready(sock, select.POLLIN, "recvfrom", bufsize)

    async def sock_recvfrom_into(self, sock: socket.socket, buf: WriteableBuffer,
                                 nbytes: int = 0) -> tuple[int, Any]:
        # (type: ignore: len() of a buffer, which typeshed's Buffer does not
        # promise; asyncio's sock_recvfrom_into takes it the same way)
        return await self._when_ready(  # type: ignore[call-overload, no-any-return]
            sock, select.POLLIN, "recvfrom_into", buf, nbytes or len(buf))  # type: ignore[arg-type]

    async def sock_sendto(self, sock: socket.socket, data: ReadableBuffer,
                          address: Any) -> int:
        return await self._when_ready(sock, select.POLLOUT, "sendto", data, address)

    async def sock_sendall(self, sock: socket.socket, data: ReadableBuffer) -> None:
        _check_socket(self, sock)
        view = memoryview(data).cast("B")
        sent = 0
        # At least one send, as asyncio's: b"" is a datagram of its own.
        if sock.gettimeout() != 0:
            while True:
                sent += await self._when_ready(sock, select.POLLOUT, "send", view[sent:])
                if sent >= len(view):
                    return
        fd = sock.fileno()
        while True:
            n = _c.send_nowait(fd, view[sent:] if sent else view)
            if n is None:
                await self._await_readiness(fd, select.POLLOUT)
                continue
            sent += n
            if sent >= len(view):
                return

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        _check_socket(self, sock)
        if sock.family == socket.AF_INET or (
                base_events._HAS_IPv6  # type: ignore[attr-defined]  # (private to asyncio)
                and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self)
            _, _, _, _, address = resolved[0]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        await self._await_readiness(sock.fileno(), select.POLLOUT)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"Connect call failed {address}")

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = await self._when_ready(sock, select.POLLIN, "accept")
        conn.setblocking(False)
        return conn, address
