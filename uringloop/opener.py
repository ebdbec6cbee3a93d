"""uringloop.open() and the whole-file helpers read_bytes, read_text,
write_bytes and write_text.

open() checks its arguments as the built-in open() does, with the same
exceptions and messages, opens the file with OPENAT on the ring (or the
executor, on other loops) and wraps the fd in a BinaryFile, and that in a
TextFile for text mode.  What it returns is awaitable and an async context
manager, as aiofiles.open()'s is:

    f = await uringloop.open(path)          # or
    async with uringloop.open(path) as f:   # closed on the way out

One difference from the built-in: an unknown encoding is refused before the
file is opened, so a refused open(path, "w", encoding=...) leaves the file
as it was (the built-in has truncated it already).
"""
from __future__ import annotations

import codecs
import errno
import functools
import io
import locale
import os
import stat
import warnings
from asyncio import events
from typing import TYPE_CHECKING

from .fileops import file_ops
from .files import BinaryFile
from .text import TextFile

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator
    from typing import Any, TypeAlias, overload

    from _typeshed import FileDescriptorOrPath, OpenBinaryMode, OpenTextMode, ReadableBuffer

    from ._typing import Opening
    from .fileops import FileOps

    # as the built-in open()'s (a bytes path gives it bytes, as there)
    _Opener: TypeAlias = Callable[[str, int], int]

_MODE_CHARS = frozenset("rwxab+t")
_NEWLINES = (None, "", "\n", "\r", "\r\n")


@functools.lru_cache(maxsize=64)
def _parse(mode: str) -> _Mode:
    return _Mode(mode)


class _Mode:
    """A mode string, read as the built-in open() reads it."""

    def __init__(self, mode: str) -> None:
        chars = set(mode)
        if chars - _MODE_CHARS or len(chars) != len(mode):
            raise ValueError(f"invalid mode: '{mode}'")
        self.text = "t" in chars
        self.binary = "b" in chars
        if self.text and self.binary:
            raise ValueError("can't have text and binary mode at once")
        kinds = [c for c in "xrwa" if c in chars]
        if len(kinds) > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if not kinds:
            raise ValueError("Must have exactly one of create/read/write/append mode and "
                             "at most one plus")
        kind, plus = kinds[0], "+" in chars
        self.readable = kind == "r" or plus
        self.writable = kind != "r" or plus
        self.append = kind == "a"
        self.flags = os.O_CLOEXEC | (os.O_RDWR if plus else
                                     os.O_RDONLY if kind == "r" else os.O_WRONLY)
        self.flags |= {"r": 0, "w": os.O_CREAT | os.O_TRUNC, "a": os.O_CREAT | os.O_APPEND,
                       "x": os.O_CREAT | os.O_EXCL}[kind]
        # the raw file's mode string, as FileIO.mode spells it
        self.raw = {"x": "xb", "a": "ab", "r": "rb", "w": "rb" if plus else "wb"}[kind]
        if plus:
            self.raw += "+"


def _check_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{name}' must be str or None, "
                        f"not {type(value).__name__}")


def _text_encoding(encoding: str | None) -> str:
    """The codec text mode will use, refused as TextIOWrapper refuses it."""
    encoding = io.text_encoding(encoding, 4)
    if encoding == "locale":
        encoding = locale.getencoding()
    if not codecs.lookup(encoding)._is_text_encoding:
        raise LookupError(f"{encoding!r} is not a text encoding; "
                          "use codecs.open() to handle arbitrary codecs")
    return encoding


class _Opening:
    """What open() returns: await it for the file, or use it in `async
    with` to have the file closed at the end of the block."""

    __slots__ = ("_coro", "file")
    file: BinaryFile | TextFile | None

    def __init__(self, *args: Any) -> None:     # (open()'s arguments)
        self._coro = _open(self, *args)   # sets self.file
        self.file = None

    def __await__(self) -> Generator[Any, None, BinaryFile | TextFile]:
        return self._coro.__await__()

    def __aenter__(self) -> Coroutine[Any, Any, BinaryFile | TextFile]:
        return self._coro

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        return self.file.close()  # type: ignore[union-attr]  # (__aenter__ set it)


if TYPE_CHECKING:
    # as the built-in open(): text modes give a TextFile, binary ones a BinaryFile
    @overload
    def open(file: FileDescriptorOrPath, mode: OpenTextMode = "r", buffering: int = -1,
             encoding: str | None = None, errors: str | None = None,
             newline: str | None = None, closefd: bool = True,
             opener: _Opener | None = None) -> Opening[TextFile]: ...
    @overload
    def open(file: FileDescriptorOrPath, mode: OpenBinaryMode, buffering: int = -1,
             encoding: None = None, errors: None = None, newline: None = None,
             closefd: bool = True, opener: _Opener | None = None) -> Opening[BinaryFile]: ...
    @overload
    def open(file: FileDescriptorOrPath, mode: str, buffering: int = -1,
             encoding: str | None = None, errors: str | None = None,
             newline: str | None = None, closefd: bool = True,
             opener: _Opener | None = None) -> Opening[BinaryFile | TextFile]: ...


def open(file: FileDescriptorOrPath, mode: str = "r", buffering: int = -1,
         encoding: str | None = None, errors: str | None = None, newline: str | None = None,
         closefd: bool = True, opener: _Opener | None = None) -> Opening[BinaryFile | TextFile]:
    """The built-in open(), for asyncio: the file's methods are coroutines."""
    return _Opening(file, mode, buffering, encoding, errors, newline, closefd, opener)


async def _open(opening: _Opening, file: FileDescriptorOrPath, mode: str, buffering: int,
                encoding: str | None, errors: str | None, newline: str | None, closefd: bool,
                opener: _Opener | None) -> BinaryFile | TextFile:
    if type(file) is str and type(mode) is str and buffering == -1 and encoding is None \
            and errors is None and newline is None and closefd is True and opener is None \
            and _parse(mode).binary:
        # the usual binary open, its argument checks all passed
        if "\0" in file:
            raise ValueError("embedded null byte")     # the built-in's words, not os.open's
        parsed = _parse(mode)
        ops = file_ops(events.get_running_loop())
        fd, info = await ops.open(file, parsed.flags)
    else:
        parsed, ops = _check(file, mode, buffering, encoding, errors, newline)
        if not parsed.binary:
            encoding, errors = _text_encoding(encoding), "strict" if errors is None else errors
        if not isinstance(file, int):
            file = os.fspath(file)
        if isinstance(file, int) or opener is not None or not closefd:
            fd = _open_fd(file, parsed.flags, closefd, opener)
            info = None
        else:
            if ("\0" if isinstance(file, str) else b"\0") in file:  # type: ignore[operator]
                raise ValueError("embedded null byte")
            fd, info = await ops.open(file, parsed.flags)
    try:
        opening.file = _wrap(ops, fd, info, file, mode, parsed, buffering, encoding, errors,
                             newline, closefd, opener is None and not isinstance(file, int))
        return opening.file
    except BaseException:
        if closefd:
            os.close(fd)
        raise


def _check(file: FileDescriptorOrPath, mode: str, buffering: int, encoding: str | None,
           errors: str | None, newline: str | None) -> tuple[_Mode, FileOps]:
    """The built-in's checks of the arguments, in its order: the parsed
    mode, and the loop's file operations."""
    if not isinstance(file, int):
        os.fspath(file)
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    if not isinstance(buffering, int):
        raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted as an "
                        "integer")
    for name, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        _check_str(name, value)
    parsed = _parse(mode)
    if parsed.binary:
        for name, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
            if value is not None:
                raise ValueError(f"binary mode doesn't take an {name} argument"
                                 if name != "newline" else
                                 "binary mode doesn't take a newline argument")
        if buffering == 1:
            warnings.warn("line buffering (buffering=1) isn't supported in binary mode, "
                          "the default buffer size will be used", RuntimeWarning, 5)
    else:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        if newline not in _NEWLINES:
            raise ValueError(f"illegal newline value: {newline}")
    return parsed, file_ops(events.get_running_loop())


def _open_fd(file: str | bytes | int, flags: int, closefd: bool,
             opener: _Opener | None) -> int:
    """The fd of an int file or an opener's."""
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        return file
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    # (type: ignore: "\0" is the path's type; opener is not None here, the
    # caller's condition says, and gets a bytes path as bytes, as the built-in's)
    if ("\0" if isinstance(file, str) else b"\0") in file:  # type: ignore[operator]
        raise ValueError("embedded null byte")
    fd = opener(file, flags)  # type: ignore[misc, arg-type]
    if not isinstance(fd, int):
        raise TypeError("expected integer from opener")
    if fd < 0:
        raise ValueError(f"opener returned {fd}")
    return fd


def _wrap(ops: FileOps, fd: int, info: os.stat_result | None, file: str | bytes | int,
          mode: str, parsed: _Mode, buffering: int, encoding: str | None, errors: str | None,
          newline: str | None, closefd: bool, fresh: bool) -> BinaryFile | TextFile:
    """info: the fd's os.fstat(), or None."""
    if info is None:
        info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), file)
    if parsed.append:
        os.lseek(fd, 0, os.SEEK_END)        # as FileIO: tell() says the end at once
    line_buffering = not parsed.binary and (buffering == 1 or
                                            (buffering < 0 and os.isatty(fd)))
    if buffering == 1 or buffering < 0:
        buffering = info.st_blksize if info.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE
    binary = BinaryFile(ops, fd, file, parsed.raw, parsed.readable, parsed.writable,
                        parsed.append, buffering, closefd, info, fresh)
    if parsed.binary:
        return binary
    # (type: ignore: for text, _open has chosen the encoding and errors)
    return TextFile(binary, encoding, errors, newline, line_buffering, mode)  # type: ignore[arg-type]


# -- whole files, as pathlib.Path's methods

async def read_bytes(path: FileDescriptorOrPath) -> bytes:
    async with open(path, "rb") as f:
        return await f.read()


async def read_text(path: FileDescriptorOrPath, encoding: str | None = None,
                    errors: str | None = None, newline: str | None = None) -> str:
    encoding = io.text_encoding(encoding)
    async with open(path, "r", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.read()


async def write_bytes(path: FileDescriptorOrPath, data: ReadableBuffer) -> int:
    view = memoryview(data)
    async with open(path, "wb") as f:
        return await f.write(view)


async def write_text(path: FileDescriptorOrPath, data: str, encoding: str | None = None,
                     errors: str | None = None, newline: str | None = None) -> int:
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {type(data).__name__}")
    encoding = io.text_encoding(encoding)
    async with open(path, "w", encoding=encoding, errors=errors, newline=newline) as f:
        return await f.write(data)
