"""sendfile: the kernel copies from the page cache straight to the socket.

loop.sendfile(transport, file) on a plain stream transport and
loop.sock_sendfile(sock, file) go through a non-blocking os.sendfile(),
driven by a POLLOUT on the ring whenever the socket's buffer is full (the
winner of the candidates measured in benchmarks/sendfile.py; the README says
why).  asyncio's BaseEventLoop keeps the rest: argument checks, the
fallback (read + write) for TLS transports, non-regular files and
fallback=True, and SendfileNotAvailableError where fallback=False.

While a transport's sendfile runs, its reading is paused, write() raises
RuntimeError (as on asyncio's loop), and the transport counts the sendfile
as an op on its fd: closing it mid-way keeps the fd number reserved until
the sendfile has stopped touching it.
"""
from __future__ import annotations

import errno
import io
import os
import select
from asyncio import exceptions
from typing import TYPE_CHECKING

from .transports.stream import StreamTransport

if TYPE_CHECKING:
    import socket
    from asyncio import transports
    from collections.abc import Awaitable, Callable
    from typing import IO

    from ._typing import LoopBase as _LoopBase
else:
    _LoopBase = object


def _file_size(file: IO[bytes]) -> tuple[int, int]:
    """The fd and size of a file sendfile can read, else SendfileNotAvailableError."""
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        raise exceptions.SendfileNotAvailableError("not a regular file") from None
    try:
        return fileno, os.fstat(fileno).st_size
    except OSError:
        raise exceptions.SendfileNotAvailableError("not a regular file") from None


class SendfileMethods(_LoopBase):
    """Loop methods: the native halves of asyncio's sendfile and sock_sendfile."""

    async def _sock_sendfile_native(self, sock: socket.socket, file: IO[bytes], offset: int,
                                    count: int | None) -> int:
        fileno, size = _file_size(file)
        return await self._sendfile_fd(sock.fileno(), fileno, offset, count, size,
                                       self._await_readiness)

    async def _sendfile_native(self, transp: transports.WriteTransport, file: IO[bytes],
                               offset: int, count: int | None) -> int:
        if type(transp) is not StreamTransport:
            raise exceptions.SendfileNotAvailableError(
                f"sendfile is not supported for transport {transp!r}")
        self._check_sendfile_params(transp._sock, file, offset, count)
        if transp._sendfile is not None:
            # (asyncio's loop fails this case with a KeyError)
            raise RuntimeError("sendfile is already in progress on this transport")
        fileno, size = _file_size(file)
        reading = transp.is_reading()
        transp.pause_reading()
        try:
            await transp._begin_sendfile()
            return await self._sendfile_fd(transp._fd, fileno, offset, count, size,
                                           transp._sendfile_wait)
        finally:
            transp._end_sendfile()
            if reading:
                transp.resume_reading()

    async def _sendfile_fd(self, fd: int, fileno: int, offset: int, count: int | None,
                           size: int,
                           wait_writable: Callable[[int, int], Awaitable[None]]) -> int:
        """os.sendfile() from `fileno` to the socket `fd` until `count` bytes
        (or EOF) went; the file's position ends after what was sent, as
        asyncio leaves it."""
        if not (count or size):
            return 0                           # an empty file, as asyncio
        total = 0
        try:
            while not count or total < count:
                want = count - total if count else size
                try:
                    sent = os.sendfile(fd, fileno, offset, want)
                except (BlockingIOError, InterruptedError):
                    await wait_writable(fd, select.POLLOUT)
                    continue
                except OSError as exc:
                    if not total:
                        raise exceptions.SendfileNotAvailableError(
                            "os.sendfile call failed") from exc
                    if exc.errno == errno.ENOTCONN:
                        raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                    raise
                if not sent:
                    break                      # EOF
                offset += sent
                total += sent
                if sent < want and (count or offset < size):
                    # The socket's buffer is full: wait for room rather than
                    # spend a system call on EAGAIN.
                    await wait_writable(fd, select.POLLOUT)
            return total
        finally:
            if total:
                os.lseek(fileno, offset, os.SEEK_SET)
