"""add_reader, add_writer, remove_reader, remove_writer: asyncio's fd
watchers, with epoll's semantics, waited for on the ring.

The watchers live in an epoll set of the loop's own (a
selectors.EpollSelector, which keeps asyncio's (reader, writer) pair per
fd and raises asyncio's errors), and the ring waits on that set:
IORING_OP_EPOLL_WAIT (Linux 6.15) hands back the ready events in its
completion; before it, a POLL on the epoll fd says when to call
epoll_wait(0).  Either is re-armed from its completion and goes out with
the iteration's one enter, so watching costs no system call per
iteration; changing a watcher costs one epoll_ctl, as on asyncio's loop.

Why not a multishot POLL per fd, which needs no epoll_ctl at all:
- a multishot poll reports each wake-up once (edge-triggered; the kernel's
  IORING_POLL_ADD_LEVEL only changes how it is armed), while asyncio's
  selector is level-triggered: a callback that leaves bytes unread runs
  again at the next iteration, and libraries count on that;
- a poll holds a reference to the file: an fd its owner closes while it
  is watched would stay open inside the ring (the peer never sees the
  close), and the callback would run for whatever file reuses the number.
  epoll forgets a closed fd by itself, as asyncio's loop does;
- epoll_ctl refuses what asyncio's refuses (EPERM for a regular file).
"""
from __future__ import annotations

import errno
import selectors
import struct
from typing import TYPE_CHECKING

from ._uring import ffi, lib
from .handle import Handle

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVarTuple, Unpack

    from _typeshed import FileDescriptorLike

    from ._typing import LoopBase as _LoopBase
    from .ring import Ring

    _Ts = TypeVarTuple("_Ts")
    # (reader, writer): the selector's data for an fd
    _Pair = tuple[Handle | None, Handle | None]
else:
    _LoopBase = object

POLLIN = 0x001
# Ready events taken per completion; more wait for the next one.
_MAX_EVENTS = 128
# struct epoll_event: u32 events, then the fd select.epoll put in its data
# (x86-64 packs the struct; other ABIs pad it).
_EVENT_SIZE = lib.ul_epoll_event_size()
_DATA_AT = lib.ul_epoll_data_offset()
_EVENT = struct.Struct(f"=I{_DATA_AT - 4}xi{_EVENT_SIZE - _DATA_AT - 4}x")
# selectors' reading of an epoll mask: errors and hang-ups wake both sides.
_READ_BITS = ~0x004          # anything but EPOLLOUT wakes the reader
_WRITE_BITS = ~0x001         # anything but EPOLLIN wakes the writer


class _EpollWait:
    """IORING_OP_EPOLL_WAIT on the watchers' set; owns the events array
    until its completion.  One per loop: a new wait starts only once the
    last one has completed (see ReadinessMethods._watch)."""

    __slots__ = ("loop", "events", "pinned")

    def __init__(self, loop: _LoopBase) -> None:
        self.loop = loop
        self.events = bytearray(_MAX_EVENTS * _EVENT_SIZE)
        self.pinned = ffi.from_buffer(self.events)

    def start(self, ring: Ring, ud: int) -> None:
        ring.prep_epoll_wait(ud, self.loop._watchers.fileno(), self.pinned, _MAX_EVENTS)

    def complete(self, res: int, flags: int) -> None:
        loop = self.loop
        if res > 0:
            # (inlined: the hot path of every fd-watcher event)
            watched = loop._watched
            ready = loop._ready
            for mask, fd in _EVENT.iter_unpack(memoryview(self.events)[:res * _EVENT_SIZE]):
                pair = watched.get(fd)
                if pair is None:
                    continue             # removed since the kernel looked
                reader, writer = pair
                if reader is not None and mask & _READ_BITS:
                    if reader._cancelled:
                        loop._remove_watcher(fd, selectors.EVENT_READ)
                    else:
                        ready.append(reader)
                if writer is not None and mask & _WRITE_BITS:
                    if writer._cancelled:
                        loop._remove_watcher(fd, selectors.EVENT_WRITE)
                    else:
                        ready.append(writer)
        elif res < 0 and res not in (-errno.ECANCELED, -errno.EINTR):
            loop._watchers_failed(res)
        loop._watch_ended()


class _EpollReadable:
    """Where the ring has no EPOLL_WAIT: a POLL on the epoll fd, and the
    events read with epoll_wait(0) once it fires (a fresh POLL completes at
    once while any fd is still ready: epoll's level-triggering holds)."""

    __slots__ = ("loop",)

    def __init__(self, loop: _LoopBase) -> None:
        self.loop = loop

    def start(self, ring: Ring, ud: int) -> None:
        ring.prep_poll(ud, self.loop._watchers.fileno(), POLLIN)

    def complete(self, res: int, flags: int) -> None:
        loop = self.loop
        if res > 0:
            for key, events in loop._watchers.select(0):
                loop._watcher_events(key, events)
        loop._watch_ended()


class ReadinessMethods(_LoopBase):
    """Loop methods: add_reader, remove_reader, add_writer, remove_writer."""

    def _init_readiness(self) -> None:
        self._watchers = selectors.EpollSelector()
        self._watched = {}               # fd -> (reader, writer): the selector's data, by fd
        self._watch_op = None            # the _EpollWait, made on first use
        self._watch_ud = 0               # the wait in flight, 0: none
        self._watch_cancelled = False

    def _close_readiness(self) -> None:
        self._watchers.close()

    # -- the API

    def add_reader(self, fd: FileDescriptorLike, callback: Callable[[Unpack[_Ts]], Any],
                   *args: Unpack[_Ts]) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_watcher(fd, selectors.EVENT_READ, callback, args)

    def add_writer(self, fd: FileDescriptorLike, callback: Callable[[Unpack[_Ts]], Any],
                   *args: Unpack[_Ts]) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_watcher(fd, selectors.EVENT_WRITE, callback, args)

    def remove_reader(self, fd: FileDescriptorLike) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_watcher(fd, selectors.EVENT_READ)

    def remove_writer(self, fd: FileDescriptorLike) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_watcher(fd, selectors.EVENT_WRITE)

    # -- the set, as asyncio's selector loop keeps it

    def _add_watcher(self, fd: FileDescriptorLike, event: int, callback: Callable[..., object],
                     args: Sequence[Any]) -> Handle:
        self._check_closed()
        handle = Handle(callback, args, self, None)
        watchers = self._watchers
        pair: _Pair
        try:
            key = watchers.get_key(fd)
        except KeyError:
            pair = (handle, None) if event == selectors.EVENT_READ else (None, handle)
            key = watchers.register(fd, event, pair)
        else:
            reader, writer = key.data
            old = reader if event == selectors.EVENT_READ else writer
            pair = (handle, writer) if event == selectors.EVENT_READ else (reader, handle)
            key = watchers.modify(fd, key.events | event, pair)
            if old is not None:
                old.cancel()
        self._watched[key.fd] = pair
        self._watch()
        return handle

    def _remove_watcher(self, fd: FileDescriptorLike, event: int) -> bool:
        if self.is_closed():
            return False
        watchers = self._watchers
        try:
            key = watchers.get_key(fd)
        except KeyError:
            return False
        reader, writer = key.data
        old = reader if event == selectors.EVENT_READ else writer
        rest = key.events & ~event
        if not rest:
            watchers.unregister(fd)
            del self._watched[key.fd]
            if not self._watched:
                self._unwatch()
        else:
            pair = (None, writer) if event == selectors.EVENT_READ else (reader, None)
            watchers.modify(fd, rest, pair)
            self._watched[key.fd] = pair
        if old is None:
            return False
        old.cancel()
        return True

    # -- the wait on the ring

    def _watch(self) -> None:
        """Keep a wait on the set in flight while it has members."""
        if self._watch_ud or not self._watched:
            return
        ring = self._ring
        op = self._watch_op
        if op is None:
            op = _EpollWait(self) if ring.features.has("epoll_wait") else _EpollReadable(self)
            self._watch_op = op
        ud = self._ops.add(op)
        try:
            op.start(ring, ud)
        except BaseException:
            self._ops.release(ud)
            raise
        self._watch_ud = ud
        self._watch_cancelled = False

    def _unwatch(self) -> None:
        if self._watch_ud and not self._watch_cancelled:
            self._watch_cancelled = True
            self._ring.prep_cancel(self._watch_ud)

    def _watch_ended(self) -> None:
        self._watch_ud = 0
        if not self._closed:
            self._watch()

    def _watcher_events(self, key: selectors.SelectorKey, events: int) -> None:
        reader, writer = key.data
        if events & selectors.EVENT_READ and reader is not None:
            if reader._cancelled:
                self._remove_watcher(key.fd, selectors.EVENT_READ)
            else:
                self._ready.append(reader)
        if events & selectors.EVENT_WRITE and writer is not None:
            if writer._cancelled:
                self._remove_watcher(key.fd, selectors.EVENT_WRITE)
            else:
                self._ready.append(writer)

    def _watchers_failed(self, res: int) -> None:
        self.call_exception_handler({
            "message": f"uringloop: waiting for fd watchers failed: "
                       f"[Errno {-res}] {errno.errorcode.get(-res, -res)}",
        })
