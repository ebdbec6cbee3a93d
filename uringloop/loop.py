"""uringloop.Loop: asyncio's BaseEventLoop with an io_uring for its I/O.

BaseEventLoop supplies the policy-free machinery (handles, timers' heap,
tasks, executors, exception handling, debug mode).  This class adds the
run-once step around one io_uring_enter per iteration, the cross-thread
wake-up, closing (cancel, drain, then close), the registry of fds that
transports own, and the _make_*_transport hooks asyncio's API methods
call.  Each family of API methods is a mixin of its own: serving.py,
sockets.py, readiness.py, sendfile.py, tls.py; each kind of transport a
module in transports/.
"""
from __future__ import annotations

import collections
import math
import os
import sys
import weakref
from asyncio import base_events, events, futures, tasks
from asyncio.log import logger
from typing import TYPE_CHECKING

from . import _c
from ._uring import lib
from .fileops import RingFileOps
from .handle import Handle, TimerHandle, callback_failed
from .readiness import ReadinessMethods
from .ring import CQE_F_MORE, FORKED_MESSAGE, Mask, Ring, Sizes
from .sendfile import SendfileMethods
from .serving import ServingMethods
from .signals import SignalMethods, SignalWakeup
from .sockets import SocketMethods
from .subprocesses import SubprocessMethods
from .tls import TLSMethods
from .transports.datagram import DatagramTransport
from .transports.pipe import ReadPipeTransport, WritePipeTransport
from .transports.stream import StreamTransport

if TYPE_CHECKING:
    import contextvars
    import socket
    from asyncio import protocols
    from collections.abc import Callable
    from typing import Any, TypeVarTuple

    from _typeshed import FileDescriptorLike

    from ._typing import AsyncioServer, PipeObject
    from .ring import BufferRing, Features

    _Ts = TypeVarTuple("_Ts")

_MAX_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]  # (not in typeshed)
# Rebuild the timer heap when at least this many timers, and more than
# this fraction of them, are cancelled (asyncio's own thresholds).
_MIN_TIMERS_TO_PURGE = 100
_MAX_CANCELLED_FRACTION = 0.5
# How long close() waits for the kernel to finish cancelled operations.
_DRAIN_SECONDS = 2.0

# Op records that were still in flight when their ring had to be closed
# without draining them (a loop closed from a thread that may not reap).
# The kernel cancels them as the ring is torn down, at a moment this process
# cannot observe, so their memory is kept for the life of the process.
_ABANDONED: list[object] = []

POLLIN = 0x001

# The loop-wide provided-buffer ring that multishot receives pick from
# (by default 64 x 64 KiB: 4 MiB of address space, resident only as far
# as used; URINGLOOP_RING sizes it, see ring.Sizes).
BUFFER_GROUP = 0


def _format_handle(handle: events.Handle) -> str:
    fmt = getattr(base_events, "_format_handle", repr)
    return fmt(handle)


class _Wakeup:
    """Multishot poll on the loop's eventfd: call_soon_threadsafe's doorbell.

    A poll owns no memory the kernel writes to, so it can be abandoned
    with its ring at any time."""

    __slots__ = ("loop",)

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def complete(self, res: int, flags: int) -> None:
        loop = self.loop
        try:
            os.eventfd_read(loop._wakeup_fd)
        except (BlockingIOError, InterruptedError):
            pass
        # Only after the read: a write the read consumed must not leave the
        # flag set with no ring pending, or later callers would never ring.
        loop._wakeup_pending = False
        if not flags & CQE_F_MORE and not loop._closed:
            loop._arm_wakeup()

    def __repr__(self) -> str:
        return "<uringloop wakeup poll>"


class Loop(TLSMethods, ServingMethods, SendfileMethods, SocketMethods, ReadinessMethods,
           SignalMethods, SubprocessMethods, base_events.BaseEventLoop):
    """An asyncio event loop whose I/O runs through io_uring."""

    # Slots, not dict entries: C (_c/callbacks.c) reads them by offset.
    __slots__ = ("_ready", "_closed", "_debug", "_task_factory", "_wakeup_pending",
                 "_wakeup_fd", "_scheduled", "_timer_cancelled_count", "_clock_resolution",
                 "_starved")

    def __init__(self) -> None:
        super().__init__()
        self._scheduled = _c.TimerHeap()    # (asyncio's is a list; see _c/timers.c)
        self._mask = Mask.from_env()
        self._sizes = Sizes.from_env()
        try:
            self._ring = self._new_ring()
        except BaseException:
            self._closed = True             # nothing for __del__ to close
            raise
        self._ops = _c.OpTable(self._ring.address, self._completion_failed, self._prep_failed)
        # a batch receives at most a buffer ring's worth (ring.c says why)
        lib.ul_fit_malloc_to_bursts(self._sizes.buffers * self._sizes.buffer_size)
        self._buffers = None             # the streams' BufferRing (BUFFER_GROUP)
        self._buffers_failed = not self._ring.features.has("pbuf_ring")
        self._other_buffers = {}         # bgid -> BufferRing, for datagrams
        self._starved: collections.deque[Any] = collections.deque()   # see _starve
        self._multishot_recv = self._ring.features.has("multishot_recv")
        self._bundles_refused = False    # see _multishot_refused
        self._multishot_accept = self._ring.features.has("multishot_accept")
        self._read_multishot = self._ring.features.has("read_multishot")
        self._owned_fds = {}             # fd -> the socket of the open transport owning it
        self._releasing = set()          # fd owners closing once their ops end
        self._acceptors = {}             # listening socket -> its _Accept
        self._handed_in = weakref.WeakSet()   # create_server(sock=) sockets
        self._sock_recv_waited = set()   # fds whose last sock_recv waited
        self._unix_server_sockets = {}
        self._wakeup_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._wakeup_pending = False
        self._arm_wakeup()
        self._init_readiness()
        self._init_signals()
        self._init_subprocesses()
        self._file_ops = RingFileOps(self)  # uringloop.open's and uringloop.os's requests

    def _new_ring(self) -> Ring:
        return Ring(self._sizes.entries, self._sizes.cq_entries, mask=self._mask,
                    workers=self._sizes.workers)

    # -- public extras

    @property
    def features(self) -> Features:
        """What this loop's ring was set up with (see uringloop.Features)."""
        return self._ring.features

    # -- transports: the hooks asyncio's API methods call

    def _make_socket_transport(self, sock: socket.socket, protocol: protocols.BaseProtocol,
                               waiter: futures.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: AsyncioServer | None = None) -> StreamTransport:
        return StreamTransport(self, sock, protocol, waiter, extra, server)

    def _make_datagram_transport(self, sock: socket.socket, protocol: protocols.BaseProtocol,
                                 address: Any = None, waiter: futures.Future[Any] | None = None,
                                 extra: dict[str, Any] | None = None) -> DatagramTransport:
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_read_pipe_transport(self, pipe: PipeObject, protocol: protocols.BaseProtocol,
                                  waiter: futures.Future[Any] | None = None,
                                  extra: dict[str, Any] | None = None) -> ReadPipeTransport:
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe: PipeObject, protocol: protocols.BaseProtocol,
                                   waiter: futures.Future[Any] | None = None,
                                   extra: dict[str, Any] | None = None) -> WritePipeTransport:
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    def _ensure_fd_no_transport(self, fd: FileDescriptorLike) -> None:
        """asyncio's rule, with its errors: an fd that a transport still open
        owns is not for sock_* or add_reader."""
        try:
            fileno = fd if isinstance(fd, int) else int(fd.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fd!r}") from None
        owned = self._owned_fds.get(fileno)
        if owned is not None:
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {owned!r}")

    def _start_op(self, op: object, prep: Callable[[int, *_Ts], None], *args: *_Ts) -> int:
        """Put `op` in the table and queue prep(user_data, *args); the
        user_data.  Where the prep raises, the slot is freed again."""
        ud = self._ops.add(op)
        try:
            prep(ud, *args)
        except BaseException:
            self._ops.release(ud)
            raise
        return ud

    def _buffer_group(self) -> int | None:
        """The provided-buffer group receives pick from, made on first use;
        None where the kernel has no provided-buffer rings (before 5.19)."""
        if self._buffers is None:
            if self._buffers_failed:
                return None
            try:
                self._buffers = self._ring.buffer_ring(BUFFER_GROUP, self._sizes.buffers,
                                                       self._sizes.buffer_size)
            except OSError:
                self._buffers_failed = True
                return None
        return BUFFER_GROUP

    def _multishot_refused(self) -> None:
        """A multishot receive was refused (EINVAL): a kernel that bundles
        but takes no length on a multishot receive (the bundle's cap,
        prep.c; 6.10 to 6.14) is asked for plain multishot receives next;
        one before 6.0, for single receives.  Every receive armed before the
        first refusal was a bundle too, and each is refused in its turn:
        a kernel that bundles has multishot receives, so after a bundle's
        refusal an EINVAL never means that multishot is refused."""
        if self._ring.features.has("recvsend_bundle"):
            self._ring.stop_bundling()
            self._bundles_refused = True
        elif not self._bundles_refused:
            self._multishot_recv = False

    def _buffer_ring(self, bgid: int, count: int, size: int) -> BufferRing | None:
        """Another provided-buffer group (datagrams'), made on first use;
        None where the kernel has no provided-buffer rings."""
        ring = self._other_buffers.get(bgid)
        if ring is None and not self._buffers_failed:
            try:
                ring = self._other_buffers[bgid] = self._ring.buffer_ring(bgid, count, size)
            except OSError:
                return None
        return ring

    # -- lifetime

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._adopt_thread()
        super().run_forever()

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        super().close()
        self._close_signals(sys.is_finalizing())
        self._close_ring()
        self._close_readiness()
        self._close_signal_pipe()
        self._close_subprocesses()
        fd, self._wakeup_fd = self._wakeup_fd, -1
        os.close(fd)
        # The sockets of servers never closed are their Servers' again, as
        # on asyncio's loop: they close (with a ResourceWarning) when those
        # are collected, not when this closed loop is.
        self._acceptors.clear()
        self._starved.clear()
        self._owned_fds.clear()
        self._unix_server_sockets.clear()

    def _adopt_thread(self) -> None:
        """Make the ring drivable from the thread about to run the loop.

        A SINGLE_ISSUER ring accepts submissions only from the thread that
        enabled it.  A loop run later from another thread gets a new ring
        while only its own wakeup poll is in flight; with real I/O in flight
        that is impossible, and it says so."""
        ring = self._ring
        if ring.forked:
            raise RuntimeError(FORKED_MESSAGE)
        if not ring.enabled:
            ring.enable()
            return
        if ring.drivable_here:
            return
        if len(self._ops) > 1 + (self._signal_pipe is not None):
            raise RuntimeError(
                f"uringloop: this loop has I/O in flight on an io_uring owned by thread "
                f"{ring.thread}; only that thread can run it until that I/O is closed")
        self._release_buffers()
        ring.close()                        # the kernel drops the wakeup poll
        self._ring = self._new_ring()
        self._ops.reset(self._ring.address)
        self._arm_wakeup()
        if self._signal_pipe is not None:
            self._arm_signal_wakeup()
        self._ring.enable()

    def _close_ring(self) -> None:
        ring = self._ring
        if ring.forked:
            ring.close()
            self._ops.reset(0)
            return
        if ring.enabled and ring.drivable_here:
            self._drain()
        # Anything still in flight owns memory the kernel may yet write to
        # when it tears the ring down: keep it for the life of the process.
        leftovers = [op for op in self._ops.records()
                     if not isinstance(op, (_Wakeup, SignalWakeup))]
        if leftovers:
            _ABANDONED.extend(leftovers)
            if self._buffers is not None:
                _ABANDONED.append(self._buffers)
                self._buffers = None
            _ABANDONED.extend(self._other_buffers.values())
            self._other_buffers.clear()
        self._release_buffers()
        ring.close()
        self._ops.reset(0)
        # The ring took every op with it: fds waiting for a last completion
        # close now (the kernel holds its own references to their files).
        for owner in list(self._releasing):
            owner._close_fd()

    def _release_buffers(self) -> None:
        if self._buffers is not None:
            self._buffers.close()
            self._buffers = None
        for ring in self._other_buffers.values():
            ring.close()
        self._other_buffers.clear()

    def _drain(self) -> None:
        """Cancel every op in flight and consume their final completions,
        without calling their handlers: the loop is closing.  A record
        with a drained(res) method is told its result (an open's closes
        the fd that nobody will take)."""
        ring, table = self._ring, self._ops
        ring.prep_cancel_all()
        deadline = self.time() + _DRAIN_SECONDS
        pos = ring.pos
        while len(table) and self.time() < deadline:
            ring.wait(10_000_000)
            uds, res, flags = ring.user_data, ring.res, ring.flags
            for i in range(pos[0], pos[1]):
                if not flags[i] & CQE_F_MORE:
                    drained = getattr(table.release(uds[i]), "drained", None)
                    if drained is not None:
                        drained(res[i])
            pos[0] = pos[1]

    # -- cross-thread wakeup

    def _arm_wakeup(self) -> None:
        ring = self._ring
        prep = ring.prep_poll_multishot if ring.features.has("multishot_poll") else ring.prep_poll
        self._start_op(_Wakeup(self), prep, self._wakeup_fd, POLLIN)

    def _write_to_self(self) -> None:
        # One doorbell ring per loop iteration is enough: a caller that sees
        # one pending has appended its callback before the loop clears the
        # flag, so the loop runs it before it next blocks.  (Relies on the
        # GIL ordering the append, this check and the loop's own steps.)
        if self._wakeup_pending:
            return
        self._wakeup_pending = True
        fd = self._wakeup_fd
        if fd >= 0:
            try:
                os.eventfd_write(fd, 1)
            except OSError:
                pass                        # closed meanwhile, or saturated

    # -- timers: call_at, call_later and the heap are C (_c/timers.c)

    def _call_at(self, when: float, callback: Callable[[*_Ts], object], *args: *_Ts,
                 context: contextvars.Context | None = None) -> events.TimerHandle:
        """asyncio's call_at, for what the C one leaves to Python (debug
        mode, a closed loop, a deadline neither int nor float): the same
        checks, pushing onto the loop's TimerHeap instead of a list."""
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
        timer = events.TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:  # type: ignore[attr-defined]
            del timer._source_traceback[-1]  # type: ignore[attr-defined]
        self._scheduled.push(timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    # -- the run-once step

    def _run_once(self) -> None:
        if self._scheduled:
            self._purge_cancelled_timers()
        if self._starved:
            self._rearm_starved()
        if self._ready or self._stopping or self._starved:
            timeout = 0
        elif self._scheduled:
            delay = self._scheduled[0]._when - self.time()
            timeout = math.ceil(min(max(0.0, delay), _MAX_TIMEOUT) * 1e9)
        else:
            timeout = -1
        n = self._ops.run(timeout)          # waits, reaps and dispatches
        if n < 0:
            self._ring.check(n)
        # (re-read: completion handlers may have set timers already due)
        if self._scheduled:
            self._schedule_due_timers()
        self._run_ready()

    def _starve(self, transport: Any) -> None:
        """A transport's receive ended for want of a provided buffer
        (ENOBUFS).  Re-armed at once, it would be issued while the ring is
        still empty and end again: with more busy connections than buffers,
        a completion per connection per iteration for nothing, in an order
        that let some connections wait for seconds.  So starved transports
        queue here and are re-armed in arrival order, a buffer ring's worth
        per iteration, as the ring comes back full (see _run_once)."""
        self._starved.append(transport)

    def _rearm_starved(self) -> None:
        starved = self._starved
        for _ in range(min(len(starved), self._sizes.buffers)):
            starved.popleft()._start_reading()   # a no-op if closing or paused

    def _prep_failed(self, err: int) -> None:
        """A prep in C failed: raise its error, or return None to retry (the
        ring had to be started first)."""
        return self._ring.check(err)

    def _completion_failed(self, op: object, exc: BaseException) -> None:
        """The OpTable's dispatch calls this when a completion handler raised."""
        self.call_exception_handler({
            "message": f"Exception in completion handler of {op!r}",
            "exception": exc,
        })

    # _run_ready() is C (_c.install_loop, below); in debug mode it calls this.
    def _run_ready_debug(self) -> None:
        ready = self._ready
        handle: events.Handle | None
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                self._run_timed(handle)
            # A traceback made inside the callback links to these frames: it
            # must not keep the handle, and so the callback's task, alive.
            handle = None

    def _run_timed(self, handle: events.Handle) -> None:
        try:
            self._current_handle = handle
            started = self.time()
            handle._run()
            took = self.time() - started
            if took >= self.slow_callback_duration:
                logger.warning("Executing %s took %.3f seconds", _format_handle(handle), took)
        finally:
            self._current_handle = handle = None  # type: ignore[assignment]  # (let it go)


# call_soon, call_soon_threadsafe, _run_ready, create_future, create_task,
# time and get_debug in C, with BaseEventLoop's own methods for debug mode
# and a closed loop.
_c.install_loop(Loop, Handle, TimerHandle, futures.Future, tasks.Task,
                 base_events.BaseEventLoop, callback_failed)
# call_at, call_later, _purge_cancelled_timers, _schedule_due_timers and
# TimerHandle.cancel in C, with asyncio's for debug mode and a closed loop.
_c.install_timers(Loop, TimerHandle, base_events.BaseEventLoop, _MIN_TIMERS_TO_PURGE,
                  _MAX_CANCELLED_FRACTION)
