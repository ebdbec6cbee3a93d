"""TLS: asyncio's SSLProtocol (a BufferedProtocol: the record layer, the
handshake and shutdown state machines, their timeouts and errors) over the
loop's stream transport.  So ssl=, server_hostname, ssl_handshake_timeout,
ssl_shutdown_timeout and start_tls behave exactly as on asyncio's loop,
with their validation done by asyncio's own create_connection,
create_server and start_tls; this mixin supplies the two hooks those call.

The ciphertext rides the stream transport's BufferedProtocol receive (the C
path: from the buffer ring into SSLProtocol's get_buffer()) and its SEND queue;
start_tls swaps the protocol while reading is paused, and the transport
hands whatever arrived meanwhile to the new protocol (transports/stream.py).
"""
from __future__ import annotations

import mmap
import ssl
from asyncio import base_events, constants, protocols, sslproto, unix_events
from typing import TYPE_CHECKING

from .transports.stream import StreamTransport

if TYPE_CHECKING:
    import socket
    from asyncio import futures, transports
    from collections.abc import Callable
    from typing import Any

    from ._typing import AsyncioServer
    from ._typing import LoopBase as _LoopBase
    from .serving import _Accept
else:
    _LoopBase = object


class _SSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol, receiving into anonymous memory.

    asyncio gives each connection a zero-filled 256 KiB bytearray to
    receive ciphertext into: 256 KiB resident per connection, idle or not
    (1,000 connections: 310 MiB; uvloop's: 63 MiB).  An anonymous mapping
    of the same size gets pages only as receives reach into them, so a
    connection holds what its largest receive needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_buffer = mmap.mmap(-1, self.max_size)
        self._ssl_buffer_view = memoryview(self._ssl_buffer)
        self._socket_transport: transports.BaseTransport | None = None

    def connection_made(self, transport: transports.BaseTransport) -> None:
        self._socket_transport = transport
        super().connection_made(transport)

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        # asyncio's SSLProtocol answers None for the socket's addresses once
        # the connection is lost (it drops its transport), where a plain
        # transport keeps answering; a server that answers and closes at
        # once would take them from a client that had not looked yet.
        # The socket transport keeps them as they were.
        if (self._transport is None and name not in self._extra
                and self._socket_transport is not None):
            return self._socket_transport.get_extra_info(name, default)
        return super()._get_extra_info(name, default)


class _UntilWritable(protocols.Protocol):
    """Stands in for a protocol whose writing is paused, until the transport
    resumes it.  The stream transport counts bytes in flight towards the
    high-water mark, so a large write() right before start_tls() leaves the
    protocol paused where an epoll loop's kernel may have taken it all; the
    SSLProtocol that start_tls() swaps in must not receive the resume that
    pause is owed (it asserts that it was paused)."""

    def __init__(self, transport: StreamTransport) -> None:
        self.transport = transport
        self.protocol = transport.get_protocol()
        self.resumed = transport._loop.create_future()
        transport.set_protocol(self)

    def restore(self) -> None:
        if self.transport.get_protocol() is self:
            self.transport.set_protocol(self.protocol)

    def resume_writing(self) -> None:
        self.restore()
        self.protocol.resume_writing()
        if not self.resumed.done():
            self.resumed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.restore()
        self.protocol.connection_lost(exc)
        if not self.resumed.done():
            self.resumed.set_result(None)   # start_tls then fails as asyncio's does


class TLSMethods(_LoopBase):
    """Loop methods: the hooks asyncio's API methods call for ssl=."""

    # BaseEventLoop leaves this abstract; the Unix selector loop's takes ssl=
    # through to the hooks below as its create_connection does (as its
    # create_unix_server does, which serving.py wraps).
    create_unix_connection = unix_events._UnixSelectorEventLoop.create_unix_connection

    async def start_tls(self, transport: transports.BaseTransport,
                        protocol: protocols.BaseProtocol, sslcontext: ssl.SSLContext,
                        **kwargs: Any) -> transports.Transport | None:
        if (isinstance(transport, StreamTransport) and transport._protocol_paused
                and isinstance(sslcontext, ssl.SSLContext) and not transport.is_closing()):
            transport.pause_reading()       # what arrives now is the new protocol's
            waiting = _UntilWritable(transport)
            try:
                await waiting.resumed
            finally:
                waiting.restore()
        return await super().start_tls(transport, protocol, sslcontext, **kwargs)
    start_tls.__doc__ = base_events.BaseEventLoop.start_tls.__doc__

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: protocols.BaseProtocol,
                            sslcontext: ssl.SSLContext,
                            waiter: futures.Future[Any] | None = None, *,
                            server_side: bool = False, server_hostname: str | None = None,
                            extra: dict[str, Any] | None = None,
                            server: AsyncioServer | None = None,
                            ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout: float | None = constants.SSL_SHUTDOWN_TIMEOUT,
                            ) -> sslproto._SSLProtocolTransport:
        try:
            ssl_protocol = _SSLProtocol(
                self, protocol, sslcontext, waiter, server_side, server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        except BaseException:
            # (ssl= something that is no SSLContext: asyncio's error, without
            # the socket asyncio leaves unclosed)
            rawsock.close()
            raise
        StreamTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _accept_tls(self, conn: socket.socket,
                          protocol_factory: Callable[[], protocols.BaseProtocol],
                          acceptor: _Accept) -> None:
        """An accepted connection on a TLS server: its handshake, and what
        asyncio does when that fails (close; report only in debug mode)."""
        protocol = transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_ssl_transport(
                # (type: ignore: only a TLS server's acceptor comes here)
                conn, protocol, acceptor.sslcontext, waiter, server_side=True,  # type: ignore[arg-type]
                server=acceptor.server,
                ssl_handshake_timeout=acceptor.ssl_handshake_timeout,
                ssl_shutdown_timeout=acceptor.ssl_shutdown_timeout)
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            self._accept_failed(exc, protocol, transport)

