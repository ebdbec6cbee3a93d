"""uringloop.open: file objects for asyncio whose I/O goes through the ring.

    async with uringloop.open("data.bin", "rb") as f:
        await f.seek(4096)
        block = await f.read(4096)

The built-in open()'s arguments, modes and exceptions, and the built-in
file objects' methods as coroutines (aiofiles' API: fileno() alone is
plain).  BinaryFile is the binary file at every buffering (0: each call is
one request, as FileIO; otherwise a read buffer and a write buffer of the
file's block size, as BufferedRandom); text mode wraps one in a TextFile
(text.py).

Regular files are read and written at explicit offsets: the object keeps
its position (the kernel's file offset is left alone, as with os.pread),
so no request waits for another's offset.  Files without a position of
their own to speak of (pipes, FIFOs, character devices) and files opened
for appending use the kernel's position (offset -1).  A read asks the
page cache first without blocking (_c.pread_nowait); only a miss becomes a
READ on the ring.  On loops that are not uringloop every request runs in
the default executor instead (fileops.ExecutorFileOps).

One operation at a time runs on a file object: calls made while another is
in progress wait their turn in order, as the built-in file's lock makes
threads wait.
"""
from __future__ import annotations

import collections
import errno
import io
import os
import stat
import warnings
from asyncio import events, exceptions
from typing import TYPE_CHECKING

from . import _c

if TYPE_CHECKING:
    from asyncio import futures
    from collections.abc import Awaitable, Callable, Coroutine, Iterable
    from typing import Any, AnyStr, Self

    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._typing import LineReader
    from .fileops import FileOps

_NO_NOWAIT = (errno.EOPNOTSUPP, errno.EINVAL)
_READALL_STEP = 64 * 1024


# The built-in files' words for a closed file: FileIO's, and IOBase's
# where a method of its runs (readlines, writelines, a read-only's flush).
_RAW_CLOSED = "I/O operation on closed file"
_BASE_CLOSED = "I/O operation on closed file."
_WHENCES = (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE)


class BinaryFile:
    """A file opened in binary mode by uringloop.open()."""

    __slots__ = ("_ops", "_fd", "name", "mode", "_readable", "_writable", "_closefd", "_closed",
                 "_size", "_pos", "_seekable", "_close_inline", "_nowait", "_rbuf", "_rpos",
                 "_wbuf", "_behind", "_busy", "_waiters", "__weakref__")
    _pos: int | None
    _behind: tuple[Awaitable[int], memoryview, int] | None
    _waiters: collections.deque[futures.Future[None]] | None

    def __init__(self, ops: FileOps, fd: int, name: str | bytes | int, mode: str,
                 readable: bool, writable: bool, append: bool, buffer_size: int, closefd: bool,
                 info: os.stat_result, fresh: bool) -> None:
        """info: the fd's os.fstat(); fresh: opened here, so at offset 0."""
        self._ops = ops
        self._fd = fd
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._closefd = closefd
        self._closed = False
        self._size = buffer_size        # 0: unbuffered
        # The object's own position (explicit offsets), or None: the kernel's.
        self._pos = None
        if stat.S_ISREG(info.st_mode) and not append:
            self._pos = 0 if fresh else os.lseek(fd, 0, os.SEEK_CUR)
        self._seekable = self._pos is not None or _can_seek(fd)
        self._close_inline = closefd and ops.closes_inline(fd, info)
        self._nowait = ops.nowait           # the ring's, unmasked
        self._rbuf = b""                # read ahead, unread from _rpos on
        self._rpos = 0
        self._wbuf = bytearray()        # written, not yet sent
        self._behind = None             # (future, bytes, offset) of a write in flight
        self._busy = False
        self._waiters = None            # a deque once someone waits for the turn

    def __repr__(self) -> str:
        return f"<uringloop.BinaryFile name={self.name!r} mode={self.mode!r}>"

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
        # As the built-in file's finalizer: the buffered bytes are written
        # (here blocking, there being no loop to wait on) and the fd closed.
        try:
            self._write_buffer_blocking()
        finally:
            self._closed = True
            if self._closefd:
                os.close(self._fd)

    # -- one operation at a time

    async def _turn(self) -> None:
        waiter = events.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = collections.deque()
        self._waiters.append(waiter)
        try:
            await waiter
        except exceptions.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._next()            # handed the turn as it was cancelled
            elif waiter in self._waiters:   # (_next may have dropped it already)
                self._waiters.remove(waiter)
            raise

    def _next(self) -> None:
        """The turn to the first waiter still waiting, or back to nobody."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)     # the turn passes on: still busy
                return
        self._busy = False

    # -- state checks, with the built-in file's errors

    # The built-in's order too: a buffered file says what it cannot do
    # before that it is closed, FileIO (buffering=0) the other way round.

    def _check_read(self, closed: str, unsupported: str = "read") -> None:
        if self._size:
            if not self._readable:
                raise io.UnsupportedOperation(unsupported)
            if self._closed:
                raise ValueError(closed)
        elif self._closed:
            raise ValueError(_RAW_CLOSED)
        elif not self._readable:
            raise io.UnsupportedOperation("File not open for reading")

    def _check_write(self, closed: str) -> None:
        if self._size:
            if not self._writable:
                raise io.UnsupportedOperation("write")
            if self._closed:
                raise ValueError(closed)
        elif self._closed:
            raise ValueError(_RAW_CLOSED)
        elif not self._writable:
            raise io.UnsupportedOperation("File not open for writing")

    def _check_open(self, buffered: str = _RAW_CLOSED) -> None:
        if self._closed:
            raise ValueError(buffered if self._size else _RAW_CLOSED)

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    # -- raw requests (the caller holds the turn)

    def _offset(self) -> int:
        return -1 if self._pos is None else self._pos

    async def _raw_read(self, n: int) -> bytes:
        """One read request at the raw position.  The read-ahead is all
        taken by now; it is dropped, so that it always ends at _pos."""
        self._rbuf, self._rpos = b"", 0
        data = self._try_read(n) if self._nowait else None
        if data is None:
            data = await self._ops.read(self._fd, n, self._offset())
            if self._pos is not None:
                self._pos += len(data)
        return data

    def _try_read(self, n: int) -> bytes | None:
        """Up to n bytes from the page cache at the raw position, or None
        where they are not all there."""
        try:
            data = _c.pread_nowait(self._fd, n, self._offset())
        except OSError as exc:
            if exc.errno not in _NO_NOWAIT:
                raise
            self._nowait = False    # this filesystem has no such try
            return None
        if data is not None and self._pos is not None:
            self._pos += len(data)
        return data

    async def _raw_write(self, data: memoryview) -> int:
        """One write request; how much it took."""
        n = await self._ops.write(self._fd, data, self._offset())
        if self._pos is not None:
            self._pos += n
        return n

    async def _raw_write_all(self, data: ReadableBuffer) -> None:
        view = memoryview(data).cast("B")
        if self._pos is not None:
            return await self._write_behind(view)
        while view:
            view = view[await self._raw_write(view):]

    async def _write_behind(self, view: memoryview) -> None:
        """Queue a write of a regular file and return once the one before it
        is done: a sequence of writes keeps the kernel's worker busy while
        the loop goes on.  An error of the write left in flight is the next
        call's (as a buffered write's is the flush's)."""
        if not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))      # the caller may change theirs
        offset: int = self._pos  # type: ignore[assignment]  # (regular files': an int)
        behind = self._behind
        if behind is not None and offset < behind[2] + len(behind[1]) \
                and behind[2] < offset + len(view):
            await self._settle()            # overlapping: in order, not both at once
            behind = None
        self._behind = (self._ops.write(self._fd, view, offset), view, offset)
        self._pos = offset + len(view)
        if behind is not None:
            await self._settle_write(behind)

    async def _settle(self) -> None:
        behind, self._behind = self._behind, None
        await self._settle_write(behind)  # type: ignore[arg-type]  # (called with one behind)

    async def _settle_write(self, behind: tuple[Awaitable[int], memoryview, int]) -> None:
        fut, view, offset = behind
        done = await fut
        while done < len(view):             # short (a full disk, a signal): the rest
            if not done:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            view, offset = view[done:], offset + done
            done = await self._ops.write(self._fd, view, offset)

    # -- buffers

    def _unread(self) -> int:
        return len(self._rbuf) - self._rpos

    def _drop_read_buffer(self) -> None:
        """Forget the read-ahead; the position goes back to the first byte
        not yet returned."""
        unread = self._unread()
        if unread:
            if self._pos is None:
                os.lseek(self._fd, -unread, os.SEEK_CUR)
            else:
                self._pos -= unread
        self._rbuf = b""
        self._rpos = 0

    async def _send_buffer(self) -> None:
        data = bytes(self._wbuf)
        self._wbuf.clear()
        await self._raw_write_all(data)

    async def _flush(self) -> None:
        """Everything written so far is the kernel's."""
        if self._wbuf:
            if self._behind is None and self._pos is not None:
                # the usual last flush: one write, waited for at once
                data = bytes(self._wbuf)
                self._wbuf.clear()
                offset = self._pos
                self._pos += len(data)
                write = self._ops.write(self._fd, data, offset)
                await self._settle_write((write, memoryview(data), offset))
                return
            await self._send_buffer()
        if self._behind is not None:
            await self._settle()

    def _write_buffer_blocking(self) -> None:
        data, self._wbuf = bytes(self._wbuf), bytearray()
        while data:
            if self._pos is None:
                n = os.write(self._fd, data)
            else:
                n = os.pwrite(self._fd, data, self._pos)
                self._pos += n
            data = data[n:]

    def _take(self, n: int) -> bytes:
        """Up to n bytes of the read-ahead."""
        start = self._rpos
        if start == 0 and n >= len(self._rbuf):
            data = self._rbuf
        else:
            data = self._rbuf[start:start + n]
        self._rpos = start + len(data)
        return data

    def _tell(self) -> int:
        raw = os.lseek(self._fd, 0, os.SEEK_CUR) if self._pos is None else self._pos
        return raw - self._unread() + len(self._wbuf)

    # -- reading (the caller holds the turn)

    async def _read(self, n: int) -> bytes:
        if self._wbuf or self._behind is not None:
            await self._flush()
        if n <= self._unread():
            return self._take(n)
        parts = [self._take(n)] if self._unread() else []
        self._rbuf, self._rpos = b"", 0
        want = n - (len(parts[0]) if parts else 0)
        if not self._size:                  # unbuffered: one request
            data = await self._raw_read(want)
            return parts[0] + data if parts else data
        while want > 0:
            data = await self._raw_read(max(want, self._size))
            if not data:
                break
            if len(data) > want:
                self._rbuf = data
                data = self._take(want)
            parts.append(data)
            want -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _readall(self) -> bytes:
        if self._wbuf or self._behind is not None:
            await self._flush()
        parts = [self._take(self._unread())] if self._rpos < len(self._rbuf) else []
        self._rbuf, self._rpos = b"", 0
        step = _READALL_STEP
        sized = False
        if self._pos is not None:
            # The size tells how much in one request, and one byte more to
            # see the end: less came, so that is the end (a file that says
            # size 0 - /proc's - gets no such trust).
            size = os.fstat(self._fd).st_size
            sized = size > self._pos
            step = max(size - self._pos + 1, 1)
            if sized and not parts and self._nowait:
                data = self._try_read(step)     # the usual: all of it, cached
                if data is not None and len(data) < step:
                    return data
                if data:
                    parts.append(data)
                    sized = False
                    step = max(_READALL_STEP, len(data))
        while True:
            data = await self._raw_read(step)
            if not data:
                break
            parts.append(data)
            if sized and len(data) < step:
                break
            sized = False
            step = max(_READALL_STEP, len(data))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read1(self, size: int) -> bytes:
        """At most one request."""
        if self._wbuf or self._behind is not None:
            await self._flush()
        if size < 0:
            size = self._size or _READALL_STEP
        if not size:
            return b""
        if not self._unread():
            if size > self._size:
                return await self._raw_read(size)
            await self._fill()
        return self._take(size)

    async def _fill(self) -> bool:
        """Read ahead once into the (empty) buffer; False at the end.
        Unbuffered, a regular file reads ahead all the same: what is not
        taken is dropped, its position never having moved."""
        self._rbuf = await self._raw_read(self._size or _READALL_STEP)
        self._rpos = 0
        return bool(self._rbuf)

    async def _readline(self, limit: int) -> bytes:
        if self._wbuf or self._behind is not None:
            await self._flush()
        byte_by_byte = not self._size and self._pos is None
        parts = []
        while True:
            buf, start = self._rbuf, self._rpos
            end = len(buf) if limit < 0 else min(len(buf), start + limit)
            nl = buf.find(b"\n", start, end)
            part = self._take((nl + 1 if nl >= 0 else end) - start)
            if part:
                parts.append(part)
                limit -= len(part)
            if nl >= 0 or limit == 0:
                break
            if byte_by_byte:
                # a pipe's bytes past the line are not ours to take
                self._rbuf, self._rpos = await self._raw_read(1), 0
                if not self._rbuf:
                    break
            elif not await self._fill():
                break
        if not self._size:
            self._drop_read_buffer()    # unbuffered: nothing is kept back
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- writing (the caller holds the turn)

    async def _write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self._unread():
            self._drop_read_buffer()
        if not self._size:
            return await self._raw_write(view)
        if len(self._wbuf) + n <= self._size:
            self._wbuf += view
            return n
        if self._wbuf:
            await self._send_buffer()
        if n >= self._size:
            await self._raw_write_all(view)
        else:
            self._wbuf += view
        return n

    async def _seek(self, offset: int, whence: int) -> int:
        if whence == os.SEEK_CUR and self._pos is not None:
            offset, whence = self._tell() + offset, os.SEEK_SET
        if (whence == os.SEEK_SET and self._pos is not None and not self._wbuf
                and self._behind is None
                and 0 <= offset - (self._pos - len(self._rbuf)) <= len(self._rbuf)):
            self._rpos = offset - (self._pos - len(self._rbuf))   # inside the read-ahead
            return offset
        await self._flush()
        if self._pos is None:
            if whence == os.SEEK_CUR:
                offset -= self._unread()
            self._rbuf, self._rpos = b"", 0
            return os.lseek(self._fd, offset, whence)
        self._drop_read_buffer()
        if whence == os.SEEK_END:
            offset, whence = os.fstat(self._fd).st_size + offset, os.SEEK_SET
        if whence == os.SEEK_SET:
            if offset < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            self._pos = offset
        else:                               # SEEK_DATA, SEEK_HOLE
            self._pos = os.lseek(self._fd, offset, whence)
        return self._pos

    # -- the public coroutines: each takes the turn

    async def read(self, size: int | None = -1) -> bytes:
        if self._closed or not self._readable:
            self._check_read("read of closed file")
        if type(size) is not int:
            size = _size(size)
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            # The common case, a read from the page cache past the buffer,
            # in one try with no further coroutine.
            if (self._nowait and size >= self._size and self._pos is not None
                    and self._rpos == len(self._rbuf) and not self._wbuf
                    and self._behind is None):
                self._rbuf, self._rpos = b"", 0
                try:
                    data = _c.pread_nowait(self._fd, size, self._pos)
                except OSError:
                    data = None         # _read's try says what it was
                if data is not None:
                    self._pos += len(data)
                    if len(data) == size or not data or not self._size:
                        return data
                    return data + await self._read(size - len(data))
            return await (self._readall() if size < 0 else self._read(size))
        finally:
            self._next()

    async def read1(self, size: int | None = -1) -> bytes:
        self._check_read("read of closed file", "read1")
        size = _size(size)
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            return await self._read1(size)
        finally:
            self._next()

    async def readall(self) -> bytes:
        return await self.read()

    async def peek(self, size: int = 0) -> bytes:
        self._check_read("peek of closed file", "peek")
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            if self._wbuf or self._behind is not None:
                await self._flush()
            if not self._unread():
                await self._fill()
            return self._rbuf[self._rpos:]
        finally:
            self._next()

    async def readinto(self, buffer: WriteableBuffer) -> int:
        self._check_read("readinto of closed file")
        return await self._readinto(buffer, self.read)

    async def readinto1(self, buffer: WriteableBuffer) -> int:
        self._check_read("readinto of closed file", "read1")
        return await self._readinto(buffer, self.read1)

    async def _readinto(self, buffer: WriteableBuffer,
                        read: Callable[[int], Awaitable[bytes]]) -> int:
        view = memoryview(buffer).cast("B")
        data = await read(len(view))
        view[:len(data)] = data
        return len(data)

    async def readline(self, size: int | None = -1) -> bytes:
        self._check_read("readline of closed file")
        size = _size(size)
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            return await self._readline(size)
        finally:
            self._next()

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        if self._closed:
            raise ValueError(_BASE_CLOSED)
        return await readlines(self, _size(hint))

    def __aiter__(self) -> Self:
        if self._closed:
            raise ValueError(_BASE_CLOSED)      # IOBase.__iter__'s words
        return self

    async def __anext__(self) -> bytes:
        if self._closed and not self._size:
            raise ValueError(_BASE_CLOSED)      # IOBase.__next__'s words
        self._check_read("readline of closed file")
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def write(self, data: ReadableBuffer) -> int:
        if self._closed or not self._writable:
            self._check_write("write to closed file")
        try:
            data = memoryview(data)
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not "
                            f"'{type(data).__name__}'") from None
        if not self._busy and self._size and self._rpos == len(self._rbuf):
            view = data.cast("B")
            if len(self._wbuf) + len(view) <= self._size:
                self._wbuf += view      # the usual: into the buffer, no turn needed
                return len(view)
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            return await self._write(data)
        finally:
            self._next()

    async def writelines(self, lines: Iterable[ReadableBuffer]) -> None:
        if self._closed:
            raise ValueError(_BASE_CLOSED)
        for line in lines:
            await self.write(line)

    async def flush(self) -> None:
        if self._closed:
            raise ValueError("flush of closed file" if self._size and self._writable
                             else _BASE_CLOSED)
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            await self._flush()
        finally:
            self._next()

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open("seek of closed file")
        offset, whence = _index(offset), _index(whence)
        if self._size:
            if whence not in _WHENCES:
                raise ValueError(f"whence value {whence} unsupported")
            if not self._seekable:
                raise io.UnsupportedOperation("File or stream is not seekable.")
        if (whence == os.SEEK_SET and 0 <= offset and self._pos is not None and not self._busy
                and not self._wbuf and not self._rbuf):
            self._pos = offset          # nothing buffered: only the number moves
            return offset
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            return await self._seek(offset, whence)
        finally:
            self._next()

    async def tell(self) -> int:
        self._check_open()
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            return self._tell()
        finally:
            self._next()

    async def truncate(self, size: int | None = None) -> int:
        self._check_open("truncate of closed file")
        if not self._writable:
            raise io.UnsupportedOperation("truncate" if self._size else
                                          "File not open for writing")
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            await self._flush()
            if size is None:
                size = self._tell()
            await self._ops.ftruncate(self._fd, _index(size))
            return size
        finally:
            self._next()

    async def fsync(self) -> None:
        await self._sync(False)

    async def fdatasync(self) -> None:
        await self._sync(True)

    async def _sync(self, datasync: bool) -> None:
        self._check_open()
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            await self._flush()
            await self._ops.fsync(self._fd, datasync)
        finally:
            self._next()

    async def close(self) -> None:
        if self._closed:
            return
        if self._busy:
            await self._turn()
        self._busy = True
        try:
            if self._closed:
                return
            try:
                if self._wbuf or self._behind is not None:
                    await self._flush()
            finally:
                self._closed = True
                if self._close_inline:
                    os.close(self._fd)
                elif self._closefd:
                    await self._ops.close(self._fd)
                elif self._pos is not None:
                    # someone else's fd: its offset where this object's was
                    os.lseek(self._fd, self._pos, os.SEEK_SET)
        finally:
            self._next()

    # A buffered file made for one way only answers the other without
    # looking whether it is closed, as the built-in's does.

    async def readable(self) -> bool:
        if self._readable or not self._size:
            self._check_open()
        return self._readable

    async def writable(self) -> bool:
        if self._writable or not self._size:
            self._check_open()
        return self._writable

    async def seekable(self) -> bool:
        self._check_open()
        return self._seekable

    async def isatty(self) -> bool:
        self._check_open()
        return os.isatty(self._fd)

    async def __aenter__(self) -> Self:
        return self

    def __aexit__(self, *exc_info: object) -> Coroutine[Any, Any, None]:
        return self.close()


async def readlines(f: LineReader[AnyStr], hint: int) -> list[AnyStr]:
    """f's lines up to the one that takes their total past hint (> 0), as
    IOBase.readlines (BytesIO stops one line earlier)."""
    lines, total = [], 0
    while line := await f.readline():
        lines.append(line)
        total += len(line)
        if 0 < hint < total:
            break
    return lines


def _can_seek(fd: int) -> bool:
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return False
    return True


def _index(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    return value


def _size(size: object) -> int:
    if size is None:
        return -1
    if not isinstance(size, int):
        raise TypeError(f"argument should be integer or None, not '{type(size).__name__}'")
    return size
