"""What every transport on the ring shares: its socket and the lifetime of
its fd, its protocol and the context the protocol's callbacks run in,
closing, aborting and fatal errors, repr and extra info.

The fd-lifetime rule.  Every op on the fd counts in `_live` from its prep to
its final completion.  Once connection_lost has run the transport is
released: its ops are cancelled, the socket object is detached (so it reads
as closed at once, as asyncio's and uvloop's do), and the fd number itself
stays open, reserved, until the last op on it has completed; only then is
it closed, so the kernel never acts on a number that was reused meanwhile.
A loop closed first closes the fds of released transports after draining
their ops; a transport dropped without close() is closed by __del__ with a
ResourceWarning once nothing of its is in flight.

Contexts.  asyncio and uvloop run a protocol's callbacks in the context that
was current when the transport was made (the caller of create_connection,
or the server's creator).  The transport keeps a copy of it: its op
records carry it for the dispatch to enter around their completions, and
the callbacks it schedules run in it.

The loop's registry of owned fds (`loop._owned_fds`) names, for each
transport that is open (not closing), its fd and its socket (the
TransportSocket of get_extra_info("socket")), so that sock_* and add_reader
refuse an fd a transport uses, as asyncio's do.  It holds nothing that
holds the transport: a transport dropped unclosed is still collected (and
its socket closed, with a ResourceWarning), as on asyncio's loop.
"""
from __future__ import annotations

import contextvars
import os
import warnings
from asyncio import transports, trsock
from asyncio.log import logger
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket
    from asyncio import protocols
    from collections.abc import Callable
    from typing import Any, TypeVar, TypeVarTuple, Unpack

    from .._typing import AsyncioServer, LoopBase
    from .pipe import _PipeTransport

    _T = TypeVar("_T")
    _Ts = TypeVarTuple("_Ts")


class TransportOp:
    """The base of a transport's op records: the transport, and the context
    its completion runs in (the dispatch reads the `context` slot)."""

    __slots__ = ("transport", "context")

    def __init__(self, transport: RingTransport | _PipeTransport) -> None:
        self.transport = transport
        self.context = transport._context


class RingTransport(transports._FlowControlMixin):
    """The base of the loop's transports; a subclass adds reading and
    writing, and says what closing waits for (get_write_buffer_size)."""

    __slots__ = ("_sock", "_fd", "_ops", "_protocol", "_protocol_connected", "_context",
                 "_server", "_conn_lost", "_closing", "_live", "_released", "__weakref__")

    if TYPE_CHECKING:
        # asyncio's (BaseTransport, _FlowControlMixin), which typeshed leaves out
        _extra: dict[str, Any]
        _loop: LoopBase
        _protocol_paused: bool
        _high_water: int
        _low_water: int
        def _maybe_pause_protocol(self) -> None: ...
        def _maybe_resume_protocol(self) -> None: ...

    # (each None once connection_lost has run: nothing uses them after that)
    _sock: socket.socket
    _protocol: protocols.BaseProtocol

    def __init__(self, loop: LoopBase, sock: socket.socket, protocol: protocols.BaseProtocol,
                 extra: dict[str, Any] | None = None,
                 server: AsyncioServer | None = None) -> None:
        super().__init__(extra, loop)
        self._extra["socket"] = owned = trsock.TransportSocket(sock)
        # A served connection's local address is its server's: shared whole.
        # A client's has its own port: only its host is shared.
        sockname = _address(sock.getsockname)
        self._extra["sockname"] = _shared(sockname) if server is not None else _peer(sockname)
        if "peername" not in self._extra:
            self._extra["peername"] = _peer(_address(sock.getpeername))
        self._sock = sock
        self._fd = sock.fileno()
        self._ops = loop._ops            # for the C fast paths
        self._context = contextvars.copy_context()
        self._server = server
        self._conn_lost = 0          # connection_lost scheduled (and writes dropped)
        self._closing = False
        self._live = 0               # ops in flight on this fd
        self._released = False       # connection_lost ran: close the fd once idle
        self._protocol_connected = False
        self.set_protocol(protocol)
        loop._owned_fds[self._fd] = owned
        if server is not None:
            loop._attach_to_server(server, self)

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fd} {state}>"

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        # Ops still counted live on a closed loop were cancelled and drained
        # without dispatch (or their ring is gone): the socket is ours again.
        if self._sock is not None and (not self._live or self._loop.is_closed()):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._disown()
            self._sock.close()
            self._fd = -1

    def _call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts]) -> None:
        """Schedule a callback in the transport's context."""
        self._loop.call_soon(callback, *args, context=self._context)

    # -- protocol

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> protocols.BaseProtocol:
        return self._protocol

    # -- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._start_closing()
        self._stop_reading()
        if not self.get_write_buffer_size():
            self._conn_lost += 1
            self._call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _start_closing(self) -> None:
        """Closing: asyncio's rule refuses sock_* only the fds of transports
        that are not closing, so this one leaves the registry now."""
        self._closing = True
        self._disown()

    def _disown(self) -> None:
        owned = self._loop._owned_fds
        if owned.get(self._fd) is self._extra["socket"]:
            del owned[self._fd]

    def _stop_reading(self) -> None:
        """Cancel the receive in flight, if any (a subclass that reads)."""

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._start_closing()
        self._conn_lost += 1
        self._cancel_all()
        self._call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._released:
            return
        try:
            if self._protocol_connected:
                # (type: ignore: typeshed says Exception; asyncio's transports
                # pass on whatever failed, as this does)
                self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            self._protocol = None  # type: ignore[assignment]  # (used no more)
            self._release()
            server, self._server = self._server, None
            if server is not None:
                self._loop._detach_from_server(server, self)

    # -- the fd's lifetime

    def _cancel_all(self) -> None:
        if self._live:
            self._loop._ring.prep_cancel_fd(self._fd)

    def _release(self) -> None:
        """connection_lost ran: the socket reads as closed from now on; the
        fd closes once no op on it can complete any more."""
        self._released = True
        self._cancel_all()
        sock, self._sock = self._sock, None  # type: ignore[assignment]  # (released)
        sock.detach()
        if self._live:
            self._loop._releasing.add(self)
        else:
            self._close_fd()

    def _release_if_idle(self) -> None:
        """An op on the fd ended: close the fd if it was the last one."""
        if self._released and not self._live and self._fd >= 0:
            self._close_fd()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        self._loop._releasing.discard(self)
        os.close(fd)


def _address(getter: Callable[[], _T]) -> _T | None:
    try:
        return getter()
    except OSError:
        return None


# Addresses seen, each kept once: a server's connections share their local
# address, and many share their peer's host.  Separate copies of them cost
# about 200 bytes per connection: 2 MiB of 10,000 idle connections.  The
# values are immutable, so sharing an equal one changes nothing a caller
# can see; the table starts over once it holds _SHARED_MAX.
_SHARED: dict[object, object] = {}
_SHARED_MAX = 4096


def _shared(value: _T) -> _T:
    """An equal value already kept, else `value` (now kept)."""
    try:
        return _SHARED[value]  # type: ignore[return-value]  # (equal, so of value's type)
    except KeyError:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[value] = value
        return value


def _peer(address: Any) -> Any:
    """An address with its host shared (its port is its own)."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return (_shared(address[0]), *address[1:])
    return address
