"""Serving: one multishot ACCEPT per listening socket.

asyncio's BaseEventLoop.create_server and base_events.Server do the
address handling and bookkeeping; they call the loop's _start_serving and
_stop_serving hooks for each listening socket, implemented here.
"""
import errno
import inspect
import os
import socket
from asyncio import base_events, constants, trsock, unix_events
from asyncio.log import logger

from .ring import CQE_F_MORE
from .transports.stream import StreamTransport

_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC

# Server._attach/_detach take the transport from 3.13 on (close_clients).
_ATTACH_TAKES_TRANSPORT = len(inspect.signature(base_events.Server._attach).parameters) > 1

TLS_MESSAGE = "uringloop does not support TLS (ssl=) yet"


class _Accept:
    """The multishot accept of one listening socket."""

    __slots__ = ("loop", "sock", "protocol_factory", "server", "ud", "stopped", "backing_off")

    def __init__(self, loop, sock, protocol_factory, server):
        self.loop = loop
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.server = server
        self.ud = 0
        self.stopped = False
        self.backing_off = False

    def arm(self):
        if self.ud or self.stopped or self.backing_off:
            return
        loop = self.loop
        self.ud = loop._ops.add(self)
        loop._ring.prep_accept(self.ud, self.sock.fileno(), _ACCEPT_FLAGS,
                               loop._multishot_accept)

    def stop(self):
        """Stop accepting; the socket closes after the final completion."""
        self.stopped = True
        if self.ud:
            self.loop._ring.prep_cancel(0, target=self.ud)
        else:
            self.sock.close()

    def complete(self, res, flags):
        if not flags & CQE_F_MORE:
            self.ud = 0
        if res >= 0:
            if self.stopped:
                os.close(res)
            else:
                self.loop._accepted(res, self)
        elif res == -errno.EINVAL and self.loop._multishot_accept:
            self.loop._multishot_accept = False    # a kernel before 5.19: one at a time
        elif -res in _RESOURCE_ERRORS and not self.stopped:
            self.loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(-res, os.strerror(-res)),
                "socket": trsock.TransportSocket(self.sock),
            })
            self.backing_off = True
            self.loop.call_later(constants.ACCEPT_RETRY_DELAY, self._retry)
        if not self.ud:
            if self.stopped:
                self.sock.close()
            else:
                self.arm()

    def _retry(self):
        self.backing_off = False
        self.arm()


class ServingMethods:
    """Loop methods for servers and the stream transports they create."""

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return StreamTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(self, *args, **kwargs):
        raise NotImplementedError(TLS_MESSAGE)

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        if sslcontext:
            raise NotImplementedError(TLS_MESSAGE)
        acceptor = _Accept(self, sock, protocol_factory, server)
        self._acceptors[sock] = acceptor
        acceptor.arm()

    def _stop_serving(self, sock):
        path = self._unix_socket_to_clean(sock)
        acceptor = self._acceptors.pop(sock, None)
        if acceptor is None:
            sock.close()
        else:
            acceptor.stop()
        if path is not None:
            try:
                os.unlink(path)
            except OSError as exc:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)

    def _unix_socket_to_clean(self, sock):
        """3.13+ create_unix_server(cleanup_socket=True) records the socket
        file it made; unlink it on close if it is still that file."""
        inode = getattr(self, "_unix_server_sockets", {}).pop(sock, None)
        if inode is None:
            return None
        try:
            path = sock.getsockname()
            if path and os.stat(path).st_ino == inode:
                return path
        except (OSError, TypeError):
            pass
        return None

    def _accepted(self, fd, acceptor):
        listener = acceptor.sock
        conn = socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
        conn.setblocking(False)
        protocol = transport = None
        try:
            protocol = acceptor.protocol_factory()
            transport = StreamTransport(self, conn, protocol, None, None, acceptor.server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context = {"message": "Error on transport creation for incoming connection",
                           "exception": exc}
                if protocol is not None:
                    context["protocol"] = protocol
                self.call_exception_handler(context)

    def _attach_to_server(self, server, transport):
        if _ATTACH_TAKES_TRANSPORT:
            server._attach(transport)
        else:
            server._attach()

    def _detach_from_server(self, server, transport):
        if _ATTACH_TAKES_TRANSPORT:
            server._detach(transport)
        else:
            server._detach()

    # Unix sockets: asyncio's own argument handling, which calls this loop's
    # sock_connect, _create_connection_transport and _start_serving.
    create_unix_connection = unix_events._UnixSelectorEventLoop.create_unix_connection
    create_unix_server = unix_events._UnixSelectorEventLoop.create_unix_server

    async def start_tls(self, *args, **kwargs):
        raise NotImplementedError(TLS_MESSAGE)
