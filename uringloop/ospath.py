"""aiofiles.os.path's coroutines (uringloop.os.path), on the loop's ring.

exists, isfile, isdir, islink, getsize, getmtime, getatime and getctime
are a stat each (uringloop.os.stat and lstat: a STATX request on a
uringloop loop, where the dentry cache does not answer first), with
os.path's answers: exists, isfile and isdir are False where stat raises
OSError or ValueError (a broken symlink, a NUL in the path), islink where
lstat does.  ismount, samefile, sameopenfile and abspath run os.path's
function in the loop's default executor on every loop.
"""
import os.path
import stat as _stat
from typing import TYPE_CHECKING

from .os import lstat, stat, wrap

if TYPE_CHECKING:
    from typing import TypeAlias

    from _typeshed import FileDescriptorOrPath, StrOrBytesPath

    # The functions' types are in type comments, not annotations, so that
    # their signatures at run time are os.path's (inspect.signature shows
    # annotations); these are the names those comments use.
    _Path: TypeAlias = FileDescriptorOrPath
    _StrPath: TypeAlias = StrOrBytesPath

__all__ = [
    "abspath", "exists", "getatime", "getctime", "getmtime", "getsize", "isdir", "isfile",
    "islink", "ismount", "samefile", "sameopenfile",
]


async def exists(path):
    # type: (_Path) -> bool
    """os.path.exists: True where stat succeeds."""
    try:
        await stat(path)
    except (OSError, ValueError):
        return False
    return True


async def isfile(path):
    # type: (_Path) -> bool
    """os.path.isfile: whether path is a regular file, symlinks followed."""
    try:
        st = await stat(path)
    except (OSError, ValueError):
        return False
    return _stat.S_ISREG(st.st_mode)


async def isdir(s):
    # type: (_Path) -> bool
    """os.path.isdir: whether s is a directory, symlinks followed."""
    try:
        st = await stat(s)
    except (OSError, ValueError):
        return False
    return _stat.S_ISDIR(st.st_mode)


async def islink(path):
    # type: (_StrPath) -> bool
    """os.path.islink: whether path is a symbolic link."""
    # AttributeError as in os.path's: an __fspath__ raising it means False.
    try:
        st = await lstat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return _stat.S_ISLNK(st.st_mode)


async def getsize(filename):
    # type: (_Path) -> int
    """os.path.getsize: st_size."""
    return (await stat(filename)).st_size


async def getmtime(filename):
    # type: (_Path) -> float
    """os.path.getmtime: st_mtime."""
    return (await stat(filename)).st_mtime


async def getatime(filename):
    # type: (_Path) -> float
    """os.path.getatime: st_atime."""
    return (await stat(filename)).st_atime


async def getctime(filename):
    # type: (_Path) -> float
    """os.path.getctime: st_ctime."""
    return (await stat(filename)).st_ctime


abspath = wrap(os.path.abspath)
ismount = wrap(os.path.ismount)
samefile = wrap(os.path.samefile)
sameopenfile = wrap(os.path.sameopenfile)
