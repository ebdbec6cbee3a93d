"""The file and path operations under uringloop.open and uringloop.os.

Two backends with one interface (coroutines taking fds, offsets, and paths
as os.fspath() made them, str or bytes):

- RingFileOps, one per uringloop loop: each call is one request on the
  ring (OPENAT, READ, WRITE, CLOSE, STATX, FSYNC, FTRUNCATE, UNLINKAT,
  RENAMEAT, MKDIRAT, SYMLINKAT, LINKAT), made and queued for the
  iteration's single enter by one C call (_c.file_request).  The op record
  owns the path, the buffer or the statx struct the kernel reads or writes
  until the request's completion, whoever cancels.  An open or a stat
  first asks the dentry cache without blocking (_c.open_cached, openat2
  RESOLVE_CACHED): STATX and the path requests never run inline in
  io_uring, each costs a worker thread's hop.  The file objects close a
  file themselves where io_uring would close it inline (closes_inline).
- ExecutorFileOps, for any other loop (asyncio's, uvloop) and for each
  request this kernel lacks or URINGLOOP_DISABLE masks: the blocking call in
  the loop's default executor, as aiofiles does.

Offsets of -1 mean the file's own position (pipes, FIFOs, character
devices).  Errors are the OSError subclasses os raises, naming the paths as
os does.  The page-cache try before a ring READ (_c.pread_nowait) is the
file object's, which knows whether the file's filesystem has one.
"""
from __future__ import annotations

import asyncio
import errno
import os
import stat
import sys
from asyncio import exceptions
from typing import TYPE_CHECKING

from . import _c
from ._uring import ffi, lib
from .ops import FutureOp
from .ring import FILE_OPCODES

if TYPE_CHECKING:
    from asyncio import events, futures
    from collections.abc import Awaitable, Callable
    from typing import Any, TypeAlias, TypeVar, TypeVarTuple, Unpack

    from _typeshed import ReadableBuffer

    from ._c import _Keep
    from ._typing import CData, LoopBase

    _T = TypeVar("_T")
    _Ts = TypeVarTuple("_Ts")
    # A path as os.fspath() makes it
    _Path: TypeAlias = str | bytes
    # Either backend: the loop's ring's, or the executor's
    FileOps: TypeAlias = "RingFileOps | ExecutorFileOps"

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400
AT_NO_AUTOMOUNT = 0x800
AT_EMPTY_PATH = 0x1000
STATX_BASIC_STATS = 0x7FF
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_STATX_SIZE = ffi.sizeof("struct ul_statx")
# OPENAT never tried inline (the SQE flag in bits 8-15 of file_request's opcode)
_OPENAT_ASYNC = lib.UL_OP_OPENAT | lib.UL_SQE_ASYNC << 8
# statfs f_type of filesystems whose regular files have no flush on close
# (f_op->flush): ext2/3/4, xfs, btrfs, tmpfs.
_NO_FLUSH_FILESYSTEMS = frozenset((0xEF53, 0x58465342, 0x9123683E, 0x01021994))
# What a lookup in the dentry cache alone answers for certain (a negative
# dentry is cached too); any other error goes to the ring to be told again.
_CACHED_ANSWERS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.ENAMETOOLONG)


class _FileOp(FutureOp):
    """A request whose completion resolves `future` (in C, as FutureOp's);
    `keep` is what the kernel reads or writes: path, buffer, statx."""

    __slots__ = ("keep",)


class _Open(_FileOp):
    """OPENAT: a future cancelled before the completion leaves an fd that
    the kernel opened anyway, which its completion (in C) closes; so does
    a completion that a closing loop drains."""

    __slots__ = ()

    @staticmethod
    def drained(res: int) -> None:
        if res >= 0:
            os.close(res)


_c.install_file_ops(_FileOp, _Open)
_file_request = _c.file_request


def file_ops(loop: events.AbstractEventLoop) -> FileOps:
    """The backend for `loop`: its ring's, or the executor's."""
    ops = getattr(loop, "_file_ops", None)
    return ops if ops is not None else ExecutorFileOps(loop)


def _error(exc: OSError, *filenames: _Path | None) -> OSError:
    """exc again, with the filenames os would name."""
    return OSError(exc.errno, exc.strerror, *filenames)


def _encoded(path: _Path) -> bytes:
    """path (str or bytes) as bytes, refused as os refuses it where it holds
    a NUL."""
    raw = path.encode(_FS_ENCODING, _FS_ERRORS) if isinstance(path, str) else path
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    return raw


def stat_result(sx: CData) -> os.stat_result:
    """os.stat_result from a struct statx, as os.stat() builds it."""
    times = []
    for ts in (sx.atime, sx.mtime, sx.ctime):
        times.append((ts.tv_sec, ts.tv_sec + ts.tv_nsec * 1e-9, ts.tv_sec * 10**9 + ts.tv_nsec))
    (ai, af, an), (mi, mf, mn), (ci, cf, cn) = times
    return os.stat_result((sx.mode, sx.ino, os.makedev(sx.dev_major, sx.dev_minor), sx.nlink,
                           sx.uid, sx.gid, sx.size, ai, mi, ci, af, mf, cf, an, mn, cn,
                           sx.blksize, sx.blocks, os.makedev(sx.rdev_major, sx.rdev_minor)))


class RingFileOps:
    __slots__ = ("_loop", "_ring", "_table", "_executor", "_has", "nowait", "_no_flush")
    _no_flush: dict[int, bool]

    def __init__(self, loop: LoopBase) -> None:
        self._loop = loop
        self._ring = loop._ring
        self._table = loop._ops
        self._executor = ExecutorFileOps(loop)
        has = loop._ring.features.has
        self._has = {name: has(name) for name in FILE_OPCODES}
        self.nowait = has("file_nowait")    # try the caches before a request
        self._no_flush = {}                 # st_dev: its filesystem has no flush on close

    def _request(self, keep: _Keep, opcode: int, a: int = 0, b: int = 0,
                 c: int = 0) -> futures.Future[int]:
        """The future of a request that always ends (a regular file's, a
        path's): a cancelled caller leaves it to end, its record owning
        `keep` until then, and its result to nobody."""
        fut = self._loop.create_future()
        _file_request(self._table, _FileOp, fut, keep, opcode, a, b, c)
        return fut

    async def _run(self, fut: futures.Future[int], cls: type[_FileOp], keep: _Keep, opcode: int,
                   a: int = 0, b: int = 0, c: int = 0) -> int:
        """A request that may wait without end (a FIFO's open, a pipe's
        read): a cancelled caller cancels it in the kernel."""
        ud = _file_request(self._table, cls, fut, keep, opcode, a, b, c)
        try:
            return await fut
        except exceptions.CancelledError:
            # A future that is not cancelled was resolved: that request is
            # over and its slot may be another's already.
            if fut.cancelled():
                self._ring.prep_cancel(ud)
            raise

    # -- fds

    async def open(self, path: _Path, flags: int) -> tuple[int, os.stat_result]:
        """open(path, flags, 0o666): the fd and its os.fstat()."""
        if not self._has["openat"]:
            return await self._executor.open(path, flags)
        raw = _encoded(path)
        fd = -1
        if self.nowait and not flags & (os.O_CREAT | os.O_TRUNC):
            # What an inline OPENAT does (dentry cache only, O_NONBLOCK so
            # that no FIFO or device waits), without the loop iteration.
            fd = _c.open_cached(AT_FDCWD, raw, flags)
        try:
            if fd < 0:                      # not cached, or refused: the ring says why
                fd = await self._open(lib.UL_OP_OPENAT, raw, flags)
            info = os.fstat(fd)
            if flags & os.O_ACCMODE == os.O_RDONLY and stat.S_ISFIFO(info.st_mode):
                # Opened inline with O_NONBLOCK: it did not wait for a
                # writer, as open(2) does.  Again in a worker, which waits;
                # the first fd keeps the FIFO open meanwhile, so a writer
                # that it woke sees no moment without a reader.
                first = fd
                try:
                    fd = await self._open(_OPENAT_ASYNC, raw, flags)
                finally:
                    os.close(first)
                info = os.fstat(fd)
        except OSError as exc:
            raise _error(exc, path) from None
        return fd, info

    def _open(self, opcode: int, raw: bytes, flags: int) -> Awaitable[int]:
        return self._run(self._loop.create_future(), _Open, raw, opcode, AT_FDCWD, flags, 0o666)

    async def read(self, fd: int, n: int, offset: int) -> bytes:
        if not self._has["read"]:
            return await self._executor.read(fd, n, offset)
        buf = bytearray(n)
        got = await self._run(self._loop.create_future(), _FileOp, buf, lib.UL_OP_READ, fd,
                              offset)
        del buf[got:]
        return bytes(buf)

    def write(self, fd: int, data: ReadableBuffer, offset: int) -> futures.Future[int]:
        """The future of a write, which nothing cancels: the bytes are the
        kernel's to write (data must not change meanwhile)."""
        if not self._has["write"]:
            return self._executor.write(fd, data, offset)
        return self._request(data, lib.UL_OP_WRITE, fd, offset)

    def close(self, fd: int) -> futures.Future[Any]:
        if not self._has["close"]:
            return self._executor.close(fd)
        return self._request(None, lib.UL_OP_CLOSE, fd)

    def closes_inline(self, fd: int, info: os.stat_result) -> bool:
        """Whether a close(2) of fd (a regular file, os.fstat() info) in the
        loop's thread does what a CLOSE on the ring would: io_uring closes a
        file inline, in the thread that submits, unless its filesystem
        flushes on close (NFS, FUSE, CIFS, overlayfs...), which a worker
        does.  Filesystems known to have no such flush say yes."""
        if not (self.nowait and stat.S_ISREG(info.st_mode)):
            return False
        no_flush = self._no_flush.get(info.st_dev)
        if no_flush is None:
            no_flush = self._no_flush[info.st_dev] = _c.fs_type(fd) in _NO_FLUSH_FILESYSTEMS
        return no_flush

    def fsync(self, fd: int, datasync: bool = False) -> futures.Future[Any]:
        if not self._has["fsync"]:
            return self._executor.fsync(fd, datasync)
        return self._request(None, lib.UL_OP_FSYNC, fd, lib.UL_FSYNC_DATASYNC if datasync else 0)

    def ftruncate(self, fd: int, length: int) -> futures.Future[Any]:
        if not self._has["ftruncate"]:
            return self._executor.ftruncate(fd, length)
        return self._request(None, lib.UL_OP_FTRUNCATE, fd, length)

    # -- paths

    async def stat(self, path: _Path | int, dir_fd: int | None = None,
                   follow_symlinks: bool = True) -> os.stat_result:
        """path: bytes, or an fd (int) to stat the open file."""
        if not self._has["statx"]:
            return await self._executor.stat(path, dir_fd, follow_symlinks)
        if self.nowait:
            found = self._stat_cached(path, dir_fd, follow_symlinks)
            if found is not None:
                return found
        sx = bytearray(_STATX_SIZE)
        if isinstance(path, int):
            dfd, name, flags = path, b"", AT_EMPTY_PATH
        else:
            dfd, name = _at(dir_fd), _encoded(path)
            # as stat(2): an automount point is not mounted by a stat
            flags = AT_NO_AUTOMOUNT | (0 if follow_symlinks else AT_SYMLINK_NOFOLLOW)
        try:
            await self._request((name, sx), lib.UL_OP_STATX, dfd, flags, STATX_BASIC_STATS)
        except OSError as exc:
            raise (exc if isinstance(path, int) else _error(exc, path)) from None
        return stat_result(ffi.from_buffer("struct ul_statx *", sx))

    @staticmethod
    def _stat_cached(path: _Path | int, dir_fd: int | None,
                     follow_symlinks: bool) -> os.stat_result | None:
        """os.stat's answer where the dentry cache has it all (an fd's
        inode is at hand), else None: STATX would cost a worker thread."""
        if isinstance(path, int):
            return os.fstat(path)
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
        fd = _c.open_cached(AT_FDCWD if dir_fd is None else dir_fd, _encoded(path), flags)
        if fd >= 0:
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        if -fd in _CACHED_ANSWERS:
            raise OSError(-fd, os.strerror(-fd), path)
        return None

    async def unlink(self, path: _Path, dir_fd: int | None = None, rmdir: bool = False) -> None:
        if not self._has["unlinkat"]:
            return await self._executor.unlink(path, dir_fd, rmdir)
        try:
            await self._request(_encoded(path), lib.UL_OP_UNLINKAT, _at(dir_fd),
                                AT_REMOVEDIR if rmdir else 0)
        except OSError as exc:
            raise _error(exc, path) from None

    async def rename(self, src: _Path, dst: _Path, src_dir_fd: int | None = None,
                     dst_dir_fd: int | None = None) -> None:
        if not self._has["renameat"]:
            return await self._executor.rename(src, dst, src_dir_fd, dst_dir_fd)
        try:
            await self._request((_encoded(src), _encoded(dst)), lib.UL_OP_RENAMEAT,
                                _at(src_dir_fd), _at(dst_dir_fd), 0)
        except OSError as exc:
            raise _error(exc, src, None, dst) from None

    async def mkdir(self, path: _Path, mode: int, dir_fd: int | None = None) -> None:
        if not self._has["mkdirat"]:
            return await self._executor.mkdir(path, mode, dir_fd)
        try:
            await self._request(_encoded(path), lib.UL_OP_MKDIRAT, _at(dir_fd), mode)
        except OSError as exc:
            raise _error(exc, path) from None

    async def symlink(self, target: _Path, link: _Path, dir_fd: int | None = None) -> None:
        if not self._has["symlinkat"]:
            return await self._executor.symlink(target, link, dir_fd)
        try:
            await self._request((_encoded(target), _encoded(link)), lib.UL_OP_SYMLINKAT,
                                _at(dir_fd))
        except OSError as exc:
            raise _error(exc, target, None, link) from None

    async def link(self, src: _Path, dst: _Path, src_dir_fd: int | None = None,
                   dst_dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        if not self._has["linkat"]:
            return await self._executor.link(src, dst, src_dir_fd, dst_dir_fd, follow_symlinks)
        try:
            await self._request((_encoded(src), _encoded(dst)), lib.UL_OP_LINKAT,
                                _at(src_dir_fd), _at(dst_dir_fd),
                                AT_SYMLINK_FOLLOW if follow_symlinks else 0)
        except OSError as exc:
            raise _error(exc, src, None, dst) from None


def _at(dir_fd: int | None) -> int:
    return AT_FDCWD if dir_fd is None else dir_fd


def _close_unwanted(opening: futures.Future[tuple[int, os.stat_result]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        os.close(opening.result()[0])


def _pread(fd: int, n: int, offset: int) -> bytes:
    return os.read(fd, n) if offset < 0 else os.pread(fd, n, offset)


def _pwrite(fd: int, view: ReadableBuffer, offset: int) -> int:
    return os.write(fd, view) if offset < 0 else os.pwrite(fd, view, offset)


def _open(path: _Path, flags: int) -> tuple[int, os.stat_result]:
    fd = os.open(path, flags, 0o666)
    return fd, os.fstat(fd)


def _stat(path: _Path | int, dir_fd: int | None, follow_symlinks: bool) -> os.stat_result:
    if isinstance(path, int):
        return os.fstat(path)
    return os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)


def _remove(path: _Path, dir_fd: int | None, rmdir: bool) -> None:
    return (os.rmdir if rmdir else os.unlink)(path, dir_fd=dir_fd)


class ExecutorFileOps:
    """The same calls as blocking os functions in the default executor."""

    __slots__ = ("_loop",)
    nowait = False          # no tries before the executor

    def __init__(self, loop: events.AbstractEventLoop) -> None:
        self._loop = loop

    def _call(self, func: Callable[[Unpack[_Ts]], _T], *args: Unpack[_Ts]) -> futures.Future[_T]:
        return self._loop.run_in_executor(None, func, *args)

    async def open(self, path: _Path, flags: int) -> tuple[int, os.stat_result]:
        opening = self._call(_open, path, flags)
        try:
            # shielded: a thread already in open(2) cannot be stopped, and
            # the fd it returns to a cancelled caller must still be closed
            return await asyncio.shield(opening)
        except exceptions.CancelledError:
            opening.add_done_callback(_close_unwanted)
            raise

    async def read(self, fd: int, n: int, offset: int) -> bytes:
        return await self._call(_pread, fd, n, offset)

    def write(self, fd: int, data: ReadableBuffer, offset: int) -> futures.Future[int]:
        """Started at once, as the ring's."""
        return self._call(_pwrite, fd, memoryview(data).cast("B"), offset)

    def close(self, fd: int) -> futures.Future[None]:
        return self._call(os.close, fd)

    @staticmethod
    def closes_inline(fd: int, info: os.stat_result) -> bool:
        return False        # each call a thread's, as aiofiles' close

    def fsync(self, fd: int, datasync: bool = False) -> futures.Future[None]:
        return self._call(os.fdatasync if datasync else os.fsync, fd)

    def ftruncate(self, fd: int, length: int) -> futures.Future[None]:
        return self._call(os.ftruncate, fd, length)

    async def stat(self, path: _Path | int, dir_fd: int | None = None,
                   follow_symlinks: bool = True) -> os.stat_result:
        return await self._call(_stat, path, dir_fd, follow_symlinks)

    async def unlink(self, path: _Path, dir_fd: int | None = None, rmdir: bool = False) -> None:
        await self._call(_remove, path, dir_fd, rmdir)

    async def rename(self, src: _Path, dst: _Path, src_dir_fd: int | None = None,
                     dst_dir_fd: int | None = None) -> None:
        await self._call(lambda: os.rename(src, dst, src_dir_fd=src_dir_fd,
                                           dst_dir_fd=dst_dir_fd))

    async def mkdir(self, path: _Path, mode: int, dir_fd: int | None = None) -> None:
        await self._call(lambda: os.mkdir(path, mode, dir_fd=dir_fd))

    async def symlink(self, target: _Path, link: _Path, dir_fd: int | None = None) -> None:
        await self._call(lambda: os.symlink(target, link, dir_fd=dir_fd))

    async def link(self, src: _Path, dst: _Path, src_dir_fd: int | None = None,
                   dst_dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        await self._call(lambda: os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                                         follow_symlinks=follow_symlinks))
