"""Serving: one multishot ACCEPT per listening socket.

asyncio's BaseEventLoop.create_server (and create_unix_server) and
base_events.Server do the address handling and bookkeeping; they call the
loop's _start_serving and _stop_serving hooks for each listening socket,
implemented here.

A socket handed in with sock= is accepted from one connection at a time.
Such sockets are how pre-fork servers (gunicorn, uvicorn --workers) share
one listening socket between processes, and the kernel wakes only the
first accept waiting on a socket: a multishot accept stays first, so its
process would take every connection, even while busy; a single-shot
accept waits again at the back after each one, so the processes take
turns, as they do on epoll loops.

Closing a listening socket closes it at once, as on asyncio's loop (see
_Accept.stop for how that keeps the fd-lifetime rule); the server's
wait_closed() also waits for any listener whose close had to wait for its
accept's final completion.
"""
from __future__ import annotations

import contextvars
import errno
import inspect
import os
import socket
import weakref
from asyncio import base_events, constants, tasks, trsock, unix_events
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from . import _c
from .ring import CQE_F_MORE

if TYPE_CHECKING:
    import ssl
    from asyncio import futures, protocols, transports
    from collections.abc import Callable

    from ._typing import AsyncioServer
    from ._typing import LoopBase as _LoopBase
else:
    _LoopBase = object

_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC

# Server._attach/_detach take the transport from 3.13 on (close_clients).
_ATTACH_TAKES_TRANSPORT = len(
    inspect.signature(base_events.Server._attach).parameters) > 1  # type: ignore[attr-defined]


class Server(base_events.Server):
    """asyncio's Server, whose wait_closed() also waits for the listening
    fds to be closed.  The loop makes the servers it serves this class
    (the layout is asyncio's: it adds no slots)."""

    _listeners_closing: list[futures.Future[None]]

    async def wait_closed(self) -> None:
        await super().wait_closed()
        closing = [f for f in self._listeners_closing if not f.done()]
        if closing:
            await tasks.wait(closing)


class _Accept:
    """The accept of one listening socket (multishot where the kernel has
    it), run in the context of whoever started the server."""

    __slots__ = ("loop", "sock", "fd", "protocol_factory", "server", "context", "ud",
                 "multishot", "stopped", "backing_off", "closed", "sslcontext",
                 "ssl_handshake_timeout", "ssl_shutdown_timeout")
    closed: futures.Future[None] | None

    def __init__(self, loop: _LoopBase, sock: socket.socket,
                 protocol_factory: Callable[[], protocols.BaseProtocol],
                 server: AsyncioServer | None, sslcontext: ssl.SSLContext | None = None,
                 ssl_handshake_timeout: float | None = None,
                 ssl_shutdown_timeout: float | None = None, multishot: bool = True) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol_factory = protocol_factory
        self.server = server
        self.sslcontext = sslcontext             # a TLS server's; None for plain TCP
        self.ssl_handshake_timeout = ssl_handshake_timeout
        self.ssl_shutdown_timeout = ssl_shutdown_timeout
        self.context = contextvars.copy_context()
        self.ud = 0
        self.multishot = multishot and loop._multishot_accept
        self.stopped = False
        self.backing_off = False
        self.closed = None           # resolved when the fd is closed, once stopped

    def arm(self) -> None:
        if self.ud or self.stopped or self.backing_off:
            return
        loop, ring = self.loop, self.loop._ring
        prep = ring.prep_accept_multishot if self.multishot else ring.prep_accept
        self.ud = loop._start_op(self, prep, self.fd, _ACCEPT_FLAGS)

    def stop(self) -> None:
        """Stop accepting at once, as asyncio's loop does: the socket object
        reads as closed now, and the listener is closed (connects are
        refused) before this returns.  The cancel is submitted and the
        kernel's deferred work run first, so no request still holds the
        socket or will look up its fd number; if the ring refuses that, the
        fd closes after the accept's final completion instead."""
        self.stopped = True
        self.sock.detach()
        self.closed = self.loop.create_future()
        if isinstance(self.server, Server):
            self.server._listeners_closing.append(self.closed)
        if self.ud:
            ring = self.loop._ring
            ring.prep_cancel(self.ud)
            if not ring.flush():
                self.loop._releasing.add(self)
                return
        self._close_fd()

    def _close_fd(self) -> None:
        self.loop._releasing.discard(self)
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        # A closed loop (this runs from its close()) can no longer wake
        # wait_closed(), and would raise trying to schedule it.
        # (type: ignore: stop() made `closed` before anything closes the fd)
        if not self.closed.done() and not self.loop.is_closed():  # type: ignore[union-attr]
            self.closed.set_result(None)  # type: ignore[union-attr]

    def complete(self, res: int, flags: int) -> None:
        if not flags & CQE_F_MORE:
            self.ud = 0
        if res >= 0:
            if self.stopped:
                os.close(res)
            else:
                self.loop._accepted(res, self)
        elif res == -errno.EINVAL and self.multishot:
            self.multishot = self.loop._multishot_accept = False    # before 5.19: one at a time
        elif -res in _RESOURCE_ERRORS and not self.stopped:
            self.loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(-res, os.strerror(-res)),
                "socket": trsock.TransportSocket(self.sock),
            })
            self.backing_off = True
            self.loop.call_later(constants.ACCEPT_RETRY_DELAY, self._retry,
                                 context=self.context)
        if not self.ud:
            if self.stopped:
                self._close_fd()
            else:
                self.arm()

    def _retry(self) -> None:
        self.backing_off = False
        self.arm()


_c.register_kind(_Accept)


class ServingMethods(_LoopBase):
    """Loop methods: the serving hooks of asyncio's create_server and
    create_unix_server, and the stream transports they accept."""

    _handed_in: weakref.WeakSet[socket.socket]    # sockets given with sock= (docstring)

    async def create_server(self, protocol_factory: Callable[[], protocols.BaseProtocol],
                            host: Any = None, port: Any = None, *,
                            sock: socket.socket | None = None,
                            **kwargs: Any) -> base_events.Server:
        if sock is not None:
            self._handed_in.add(sock)
        return await super().create_server(protocol_factory, host, port, sock=sock, **kwargs)

    async def create_unix_server(self, protocol_factory: Callable[[], protocols.BaseProtocol],
                                 path: Any = None, *, sock: socket.socket | None = None,
                                 **kwargs: Any) -> base_events.Server:
        # BaseEventLoop leaves it abstract: the Unix selector loop's takes
        # ssl= through to the hooks as create_server does.
        if sock is not None:
            self._handed_in.add(sock)
        return await unix_events._UnixSelectorEventLoop.create_unix_server(
            self, protocol_factory, path, sock=sock, **kwargs)

    def _start_serving(self, protocol_factory: Callable[[], protocols.BaseProtocol],
                       sock: socket.socket, sslcontext: ssl.SSLContext | None = None,
                       server: AsyncioServer | None = None, backlog: int = 100,
                       ssl_handshake_timeout: float | None = None,
                       ssl_shutdown_timeout: float | None = None) -> None:
        if type(server) is base_events.Server:
            server.__class__ = Server
            server._listeners_closing = []
        acceptor = _Accept(self, sock, protocol_factory, server, sslcontext,
                           ssl_handshake_timeout, ssl_shutdown_timeout,
                           multishot=sock not in self._handed_in)
        self._acceptors[sock] = acceptor
        acceptor.arm()

    def _stop_serving(self, sock: socket.socket) -> None:
        path = self._unix_socket_to_clean(sock)
        acceptor = self._acceptors.pop(sock, None)
        if acceptor is None or self.is_closed():
            sock.close()                # (a closed loop's ring took its ops with it)
        else:
            acceptor.stop()
        if path is not None:
            try:
                os.unlink(path)
            except OSError as exc:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)

    def _unix_socket_to_clean(self, sock: socket.socket) -> str | bytes | None:
        """3.13+ create_unix_server(cleanup_socket=True) records the socket
        file it made; unlink it on close if it is still that file."""
        inode = self._unix_server_sockets.pop(sock, None)
        if inode is None:
            return None
        try:
            path: str | bytes = sock.getsockname()
            if path and os.stat(path).st_ino == inode:
                return path
        except (OSError, TypeError):
            pass
        return None

    def _accepted(self, fd: int, acceptor: _Accept) -> None:
        listener = acceptor.sock
        conn = socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
        conn.setblocking(False)
        if acceptor.sslcontext:
            # the handshake runs in the server creator's context, as the
            # plain path's callbacks do
            self.create_task(self._accept_tls(conn, acceptor.protocol_factory, acceptor),
                             context=acceptor.context)
            return
        protocol = transport = None
        try:
            protocol = acceptor.protocol_factory()
            transport = self._make_socket_transport(conn, protocol, server=acceptor.server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            self._accept_failed(exc, protocol, transport)

    def _accept_failed(self, exc: BaseException, protocol: protocols.BaseProtocol | None,
                       transport: transports.BaseTransport | None) -> None:
        """An accepted connection could not be set up: as asyncio, reported
        only in debug mode."""
        if self._debug:
            context = {"message": "Error on transport creation for incoming connection",
                       "exception": exc}
            if protocol is not None:
                context["protocol"] = protocol
            if transport is not None:
                context["transport"] = transport
            self.call_exception_handler(context)

    def _attach_to_server(self, server: AsyncioServer,
                          transport: transports.BaseTransport) -> None:
        if _ATTACH_TAKES_TRANSPORT:
            server._attach(transport)
        else:
            server._attach()

    def _detach_from_server(self, server: AsyncioServer,
                            transport: transports.BaseTransport) -> None:
        if _ATTACH_TAKES_TRANSPORT:
            server._detach(transport)
        else:
            server._detach()
