# The names the C code puts into this package's namespace at import
# (uringloop/_c/*.c: each file's PyMethodDef table and install function;
# __init__.py calls lib.ul_install).  All the functions are METH_O or
# METH_FASTCALL without keywords: positional-only.
from asyncio import events, futures
from collections.abc import Callable, Mapping
from typing import Self, TypeAlias, final

from _typeshed import ReadableBuffer

from .._typing import AsyncioHandle, AsyncioTimerHandle
from .._uring import lib as lib
from ..fileops import _FileOp

# What a file request's record keeps for the kernel (future.c, prep_file):
# a path, two paths, a path and a statx buffer, a buffer, or nothing.
_Keep: TypeAlias = ReadableBuffer | tuple[bytes, bytes] | tuple[bytes, bytearray] | None

# optable.c

@final
class OpTable:
    """Op records by user_data; slot 0 is reserved."""
    def __new__(cls, ring_address: int, on_error: Callable[[object, BaseException], object],
                check: Callable[[int], object], /) -> Self: ...
    def add(self, op: object, /) -> int: ...
    def release(self, ud: int, /) -> object: ...    # the record, or None
    def records(self) -> list[object]: ...
    def reset(self, ring_address: int, /) -> None: ...
    def run(self, timeout_ns: int, /) -> int: ...
    def __len__(self) -> int: ...

def register_kind(cls: type, /) -> None: ...

# future.c

def install_future_op(cls: type, /) -> None: ...
def poll_future(table: OpTable, fd: int, events: int, future: futures.Future[int], /) -> int: ...
def install_file_ops(cls: type[_FileOp], open_cls: type[_FileOp], /) -> None: ...
def file_request(table: OpTable, cls: type[_FileOp], future: futures.Future[int], keep: _Keep,
                 opcode: int, a: int, b: int, c: int, /) -> int: ...

# stream.c

def install_stream(transport_cls: type, recv_cls: type, send_cls: type,
                   messages: Mapping[str, str], /) -> None: ...

# datagram.c

def install_datagram(transport_cls: type, recv_cls: type, codec_cls: type, /) -> None: ...

# sockets.c

def recv_nowait(fd: int, n: int, /) -> bytes | None: ...
def send_nowait(fd: int, data: ReadableBuffer, /) -> int | None: ...
def sendto_nowait(fd: int, data: ReadableBuffer, name: bytes | None, /) -> int | None: ...

# files.c

def pread_nowait(fd: int, n: int, offset: int, /) -> bytes | None: ...
def open_cached(dfd: int, path: bytes, flags: int, /) -> int: ...    # the fd, or -errno
def fs_type(fd: int, /) -> int: ...

# callbacks.c: gives loop_cls its C call_soon, call_soon_threadsafe,
# _run_ready, create_future, create_task, time and get_debug;
# callback_failed gets the handles it runs (asyncio's Handle, handle_cls
# and timer_cls).

def install_loop(loop_cls: type, handle_cls: type[events.Handle],
                 timer_cls: type[events.TimerHandle], future_cls: type, task_cls: type,
                 base_loop_cls: type,
                 callback_failed: Callable[[AsyncioHandle, BaseException], object],
                 /) -> None: ...

# timers.c: gives loop_cls its C call_at, call_later, _purge_cancelled_timers
# and _schedule_due_timers, and timer_cls (asyncio's TimerHandle with no
# fields added) its C cancel.

def install_timers(loop_cls: type, timer_cls: type[events.TimerHandle], base_loop_cls: type,
                   min_to_purge: int, max_cancelled_fraction: float, /) -> None: ...

@final
class TimerHeap:
    """A loop's scheduled timers (its _scheduled), in heapq's order."""
    def push(self, timer: events.TimerHandle, /) -> None: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int, /) -> AsyncioTimerHandle: ...
