"""aiofiles.os's coroutines, on the loop's ring: ``import uringloop.os``
where ``import aiofiles.os`` was, and the same calls work.

    st = await uringloop.os.stat("data.bin")
    await uringloop.os.replace("data.tmp", "data.bin")
    if await uringloop.os.path.isdir("cache"): ...

On a uringloop loop stat, lstat, remove, unlink, rmdir, rename, replace,
mkdir, link and symlink are each one ring request (STATX, UNLINKAT,
RENAMEAT, MKDIRAT, LINKAT, SYMLINKAT), or none where the dentry cache
answers a stat first; on any other loop, and for each request the kernel
lacks, the os function runs in the loop's default executor
(uringloop.fileops).  Directory listing has no ring request: the
executor, on every loop, runs listdir, scandir and the other functions
that have none (readlink, access, makedirs, removedirs, renames, getcwd,
statvfs, sendfile), as aiofiles runs all of them.

Arguments, results and errors are os's.  Only plain arguments go to the
ring: paths str, bytes or os.PathLike without a NUL, an fd (>= 0) to stat
with no other argument, dir_fds and modes that fit a C int.  Anything else
goes to the os function itself in the executor, so that its checks,
warnings and messages (which change between Python versions) are the
answer.

The path functions are uringloop.os.path (uringloop.ospath), as
aiofiles.os.path.
"""
from __future__ import annotations

import asyncio
import functools
import os
import sys
from typing import TYPE_CHECKING

from .fileops import file_ops

if TYPE_CHECKING:
    from asyncio import futures
    from collections.abc import Awaitable, Callable, Coroutine
    from typing import Any, ParamSpec, TypeGuard, TypeVar

    from _typeshed import FileDescriptorOrPath, StrOrBytesPath

    from .fileops import FileOps

    _P = ParamSpec("_P")
    _T = TypeVar("_T")

# The os functions' types are in type comments, not annotations, so that
# their signatures at run time are os's (inspect.signature shows annotations).

__all__ = [
    "path", "stat", "lstat", "rename", "renames", "replace", "remove", "unlink", "mkdir",
    "makedirs", "rmdir", "removedirs", "link", "symlink", "readlink", "listdir", "scandir",
    "access", "getcwd", "statvfs", "sendfile", "wrap",
]

_INT_MIN, _INT_MAX = -2**31, 2**31 - 1
# Before 3.14 os.link, given neither dir_fd, calls link(2), which on Linux
# does not follow a symlink whatever follow_symlinks says (gh-81793).
_LINK_FOLLOWS_ALONE = sys.version_info >= (3, 14)


def wrap(func: Callable[_P, _T]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """The blocking `func` as a coroutine function that runs it in the
    running loop's default executor."""
    @functools.wraps(func)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await _executor(func, *args, **kwargs)
    return run


def _executor(func: Callable[_P, _T], *args: _P.args,
              **kwargs: _P.kwargs) -> futures.Future[_T]:
    return asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args,
                                                                              **kwargs))


def _ops() -> FileOps:
    return file_ops(asyncio.get_running_loop())


def _fspath(path: FileDescriptorOrPath) -> str | bytes | None:
    """path as os.fspath() makes it, where the ring takes it as it is (str
    or bytes without a NUL); None where os must judge it."""
    try:
        path = os.fspath(path)  # type: ignore[arg-type]  # (an fd: TypeError, as wanted)
    except TypeError:
        return None
    return None if ("\0" if isinstance(path, str) else b"\0") in path else path


def _c_int(value: object) -> TypeGuard[int]:
    """Whether the ring takes `value` as it is for an fd or a mode."""
    return type(value) is int and _INT_MIN <= value <= _INT_MAX


def _dir_fds(fd: object, other: object = None) -> bool:
    return (fd is None or _c_int(fd)) and (other is None or _c_int(other))


async def stat(path, *, dir_fd=None, follow_symlinks=True):
    # type: (FileDescriptorOrPath, int | None, bool) -> os.stat_result
    """os.stat: a STATX request (of the open file where path is an fd)."""
    if type(path) is str and dir_fd is None and follow_symlinks is True and "\0" not in path:
        return await _ops().stat(path, None, True)       # the usual: the ring takes it as is
    # An fd with other arguments goes to os, which knows which it refuses.
    if _c_int(path) and path >= 0 and dir_fd is None and follow_symlinks is True:
        return await _fstat(path)
    name = _fspath(path)
    if name is None or not _dir_fds(dir_fd):
        return await _executor(os.stat, path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    return await _ops().stat(name, dir_fd, bool(follow_symlinks))


async def _fstat(fd: int) -> os.stat_result:
    try:
        return await _ops().stat(fd)
    except OSError as exc:
        # os.stat names the fd it was given, where fstat names nothing.
        raise OSError(exc.errno, exc.strerror, fd) from None


async def lstat(path, *, dir_fd=None):
    # type: (StrOrBytesPath, int | None) -> os.stat_result
    """os.lstat: a STATX request."""
    name = _fspath(path)
    if name is None or not _dir_fds(dir_fd):
        return await _executor(os.lstat, path, dir_fd=dir_fd)
    return await _ops().stat(name, dir_fd, False)


async def remove(path, *, dir_fd=None):
    # type: (StrOrBytesPath, int | None) -> None
    """os.remove: an UNLINKAT request."""
    await _unlink(os.remove, path, dir_fd, False)


async def unlink(path, *, dir_fd=None):
    # type: (StrOrBytesPath, int | None) -> None
    """os.unlink: an UNLINKAT request."""
    await _unlink(os.unlink, path, dir_fd, False)


async def rmdir(path, *, dir_fd=None):
    # type: (StrOrBytesPath, int | None) -> None
    """os.rmdir: an UNLINKAT request."""
    await _unlink(os.rmdir, path, dir_fd, True)


def _unlink(func: Callable[..., None], path: StrOrBytesPath, dir_fd: int | None,
            is_dir: bool) -> Awaitable[None]:
    if type(path) is str and dir_fd is None and "\0" not in path:
        return _ops().unlink(path, None, is_dir)         # the usual: the ring takes it as is
    name = _fspath(path)
    if name is None or not _dir_fds(dir_fd):
        return _executor(func, path, dir_fd=dir_fd)
    return _ops().unlink(name, dir_fd, is_dir)


async def rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    # type: (StrOrBytesPath, StrOrBytesPath, int | None, int | None) -> None
    """os.rename: a RENAMEAT request."""
    await _rename(os.rename, src, dst, src_dir_fd, dst_dir_fd)


async def replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    # type: (StrOrBytesPath, StrOrBytesPath, int | None, int | None) -> None
    """os.replace: a RENAMEAT request."""
    await _rename(os.replace, src, dst, src_dir_fd, dst_dir_fd)


async def _rename(func: Callable[..., None], src: StrOrBytesPath, dst: StrOrBytesPath,
                  src_dir_fd: int | None, dst_dir_fd: int | None) -> None:
    old, new = _fspath(src), _fspath(dst)
    if old is None or new is None or not _dir_fds(src_dir_fd, dst_dir_fd):
        await _executor(func, src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    else:
        await _ops().rename(old, new, src_dir_fd, dst_dir_fd)


async def mkdir(path, mode=0o777, *, dir_fd=None):
    # type: (StrOrBytesPath, int, int | None) -> None
    """os.mkdir: a MKDIRAT request."""
    name = _fspath(path)
    # The ring's mode is unsigned; os passes a negative one on as mode_t.
    if name is None or not (_c_int(mode) and mode >= 0 and _dir_fds(dir_fd)):
        await _executor(os.mkdir, path, mode, dir_fd=dir_fd)
    else:
        await _ops().mkdir(name, mode, dir_fd)


async def link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
    # type: (StrOrBytesPath, StrOrBytesPath, int | None, int | None, bool) -> None
    """os.link: a LINKAT request."""
    old, new = _fspath(src), _fspath(dst)
    if old is None or new is None or not _dir_fds(src_dir_fd, dst_dir_fd):
        await _executor(os.link, src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                        follow_symlinks=follow_symlinks)
    else:
        given_dir_fd = src_dir_fd is not None or dst_dir_fd is not None
        follow = bool(follow_symlinks) and (given_dir_fd or _LINK_FOLLOWS_ALONE)
        await _ops().link(old, new, src_dir_fd, dst_dir_fd, follow)


async def symlink(src, dst, target_is_directory=False, *, dir_fd=None):
    # type: (StrOrBytesPath, StrOrBytesPath, bool, int | None) -> None
    """os.symlink: a SYMLINKAT request (target_is_directory matters on
    Windows only)."""
    target, name = _fspath(src), _fspath(dst)
    if target is None or name is None or not _dir_fds(dir_fd):
        await _executor(os.symlink, src, dst, target_is_directory, dir_fd=dir_fd)
    else:
        await _ops().symlink(target, name, dir_fd)


access = wrap(os.access)
getcwd = wrap(os.getcwd)
listdir = wrap(os.listdir)
makedirs = wrap(os.makedirs)
readlink = wrap(os.readlink)
removedirs = wrap(os.removedirs)
renames = wrap(os.renames)
scandir = wrap(os.scandir)
sendfile = wrap(os.sendfile)
statvfs = wrap(os.statvfs)

# Last: ospath takes stat, lstat and wrap from this module.
from . import ospath as path  # noqa: E402
