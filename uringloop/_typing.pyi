# Names for type checking only: no module of this name exists at run time,
# and the package imports it only under `if TYPE_CHECKING:`.
#
# LoopBase is the loop as its parts see it.  uringloop.Loop is
# BaseEventLoop plus mixins, one per API family (serving.py, sockets.py,
# readiness.py, signals.py, subprocesses.py, sendfile.py, tls.py), and its
# transports and op records reach back into it.  For a type checker each
# mixin, and every part that holds the loop, sees this class: asyncio's
# BaseEventLoop with the attributes of it that typeshed leaves out, and the
# attributes and methods that one part of uringloop uses of another.  The
# implementations (loop.py and the mixins) are checked against these
# declarations as overrides; at run time the mixins are plain classes.
import collections
import selectors
import socket
import traceback
from asyncio import base_events, events, futures, protocols, transports, trsock
from collections.abc import Awaitable, Callable, Generator
from contextvars import Context
from typing import IO, Any, Protocol, TypeAlias, TypeVar, TypeVarTuple

from _typeshed import FileDescriptorLike

from ._c import OpTable, TimerHeap
from .fileops import RingFileOps
from .handle import Handle
from .readiness import _EpollReadable, _EpollWait
from .ring import BufferRing, Ring
from .serving import _Accept
from .subprocesses import _ChildExit
from .transports.base import RingTransport
from .transports.subprocess import SubprocessTransport

# A cffi cdata object (a pointer, an array, a from_buffer view), as
# _uring.ffi.new() and ffi.from_buffer() make them: untyped, as ffi is.
CData: TypeAlias = Any

_Ts = TypeVarTuple("_Ts")
_T_co = TypeVar("_T_co", covariant=True)
_AnyStr_co = TypeVar("_AnyStr_co", str, bytes, covariant=True)

class AsyncioHandle(events.Handle):
    """asyncio.Handle as it is at run time: the slots typeshed leaves out."""

    _callback: Callable[..., object]
    _loop: events.AbstractEventLoop
    _source_traceback: traceback.StackSummary | None
    _repr: str | None
    _context: Context

class AsyncioTimerHandle(events.TimerHandle, AsyncioHandle):
    """asyncio.TimerHandle as it is at run time."""

    _when: float
    _scheduled: bool

class AsyncioServer(base_events.Server):
    """asyncio.Server as it is at run time: what the loop's serving hooks use."""

    # from 3.13 on each takes the transport (for close_clients); before, nothing
    def _attach(self, *transport: transports.BaseTransport) -> None: ...
    def _detach(self, *transport: transports.BaseTransport) -> None: ...

class LoopBase(base_events.BaseEventLoop):
    # -- asyncio's BaseEventLoop (base_events.py)

    _ready: collections.deque[events.Handle]
    _scheduled: TimerHeap
    _stopping: bool
    _closed: bool
    _debug: bool
    _clock_resolution: float
    _timer_cancelled_count: int
    def _check_closed(self) -> None: ...
    def _check_running(self) -> None: ...
    async def _ensure_resolved(
        self, address: socket._Address, *, family: int = 0, type: int = ..., proto: int = 0,
        flags: int = 0, loop: events.AbstractEventLoop,
    ) -> socket._GetAddrInfoResult: ...
    def _check_sendfile_params(self, sock: socket.socket, file: IO[bytes], offset: int,
                               count: int | None) -> None: ...
    # C (_c.install_loop): runs the callbacks ready now
    def _run_ready(self) -> None: ...
    # C (_c.install_timers): the loop iteration's two timer steps
    def _purge_cancelled_timers(self) -> None: ...
    def _schedule_due_timers(self) -> None: ...

    # -- loop.py

    _ring: Ring
    _ops: OpTable
    _buffers: BufferRing | None
    _other_buffers: dict[int, BufferRing]
    _multishot_recv: bool
    _multishot_accept: bool
    _read_multishot: bool
    _owned_fds: dict[int, trsock.TransportSocket]
    _releasing: set[RingTransport | _Accept]
    _acceptors: dict[socket.socket, _Accept]
    _sock_recv_waited: set[int]
    _unix_server_sockets: dict[socket.socket, int]
    def _start_op(self, op: object, prep: Callable[[int, *_Ts], None], *args: *_Ts) -> int: ...
    def _multishot_refused(self) -> None: ...
    def _ensure_fd_no_transport(self, fd: FileDescriptorLike) -> None: ...
    def _buffer_group(self) -> int | None: ...
    def _buffer_ring(self, bgid: int, count: int, size: int) -> BufferRing | None: ...
    def _starve(self, transport: Any) -> None: ...
    def _make_socket_transport(
        self, sock: socket.socket, protocol: protocols.BaseProtocol,
        waiter: futures.Future[Any] | None = None, *, extra: dict[str, Any] | None = None,
        server: AsyncioServer | None = None,
    ) -> transports.Transport: ...

    # -- serving.py

    def _accepted(self, fd: int, acceptor: _Accept) -> None: ...
    def _accept_failed(self, exc: BaseException, protocol: protocols.BaseProtocol | None,
                       transport: transports.BaseTransport | None) -> None: ...
    def _attach_to_server(self, server: AsyncioServer,
                          transport: transports.BaseTransport) -> None: ...
    def _detach_from_server(self, server: AsyncioServer,
                            transport: transports.BaseTransport) -> None: ...

    # -- tls.py

    async def _accept_tls(self, conn: socket.socket,
                          protocol_factory: Callable[[], protocols.BaseProtocol],
                          acceptor: _Accept) -> None: ...

    # -- sockets.py

    async def _await_readiness(self, fd: int, events: int) -> None: ...

    # -- readiness.py

    _watchers: selectors.EpollSelector
    _watched: dict[int, tuple[Handle | None, Handle | None]]
    _watch_op: _EpollWait | _EpollReadable | None
    def _remove_watcher(self, fd: FileDescriptorLike, event: int) -> bool: ...
    def _watch_ended(self) -> None: ...
    def _watcher_events(self, key: selectors.SelectorKey, events: int) -> None: ...
    def _watchers_failed(self, res: int) -> None: ...

    # -- signals.py

    _signal_pipe: tuple[int, int] | None
    def _handle_signal(self, sig: int) -> None: ...
    def _arm_signal_wakeup(self) -> None: ...

    # -- subprocesses.py

    def _child_exited(self, watch: _ChildExit, returncode: int | None) -> None: ...
    def _child_status(self, transport: SubprocessTransport, returncode: int | None) -> None: ...

class PipeObject(Protocol):
    """What connect_read_pipe and connect_write_pipe take: a file object."""

    def fileno(self) -> int: ...
    def close(self) -> object: ...

class LineReader(Protocol[_AnyStr_co]):
    """A file object's readline(), as readlines() (files.py) calls it."""

    def readline(self) -> Awaitable[_AnyStr_co]: ...

class Opening(Protocol[_T_co]):
    """What uringloop.open() returns: awaitable for the file, and an async
    context manager that closes it (opener._Opening)."""

    def __await__(self) -> Generator[Any, None, _T_co]: ...
    def __aenter__(self) -> Awaitable[_T_co]: ...
    def __aexit__(self, *exc_info: object) -> Awaitable[None]: ...
