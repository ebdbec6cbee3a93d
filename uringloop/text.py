"""TextFile: uringloop.open()'s text mode, over a BinaryFile.

What it returns is what the built-in text file (io.TextIOWrapper) returns:
the codec's incremental decoder and encoder, io.IncrementalNewlineDecoder
for newline=None and "" (a "\\r" at a chunk's end is held back until the
next byte tells whether "\\n" follows), "\\n" written as os.linesep or
`newline`, no BOM written at a position other than 0.

tell() gives an opaque cookie, as the built-in's: the byte position of a
point where the decoder held nothing, the decoder's flags there, how many
bytes past it to decode and how many characters of that to skip, packed
in the bit fields of CPython's C implementation, so that the numbers are
the built-in's.  Where the decoder holds nothing at the current character
(utf-8, latin-1 between lines) the cookie is simply the byte offset.  To
find that point, tell() decodes the last chunk read again from the
snapshot taken before it was read, searching as the built-in does.
"""
from __future__ import annotations

import codecs
import io
import os
from typing import TYPE_CHECKING

from .files import _index, _size, readlines

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterable
    from typing import Any, Self

    from .files import BinaryFile

CHUNK = 8192


def _pack(position: int, dec_flags: int = 0, bytes_to_feed: int = 0, need_eof: bool = False,
          chars_to_skip: int = 0) -> int:
    return (position | (dec_flags << 64) | (bytes_to_feed << 96) | (chars_to_skip << 128)
            | bool(need_eof) << 160)


def _unpack(cookie: int) -> tuple[int, int, int, bool, int]:
    position, rest = cookie & (1 << 64) - 1, cookie >> 64
    fields = []
    for _ in range(3):
        fields.append(rest & 0xFFFFFFFF)
        rest >>= 32
    dec_flags, bytes_to_feed, chars_to_skip = fields
    return position, dec_flags, bytes_to_feed, bool(rest), chars_to_skip


class TextFile:
    """A file opened in text mode by uringloop.open()."""

    _decoder: codecs.IncrementalDecoder | io.IncrementalNewlineDecoder | None
    _encoder: codecs.IncrementalEncoder | None
    _snapshot: tuple[int, bytes] | None

    def __init__(self, buffer: BinaryFile, encoding: str, errors: str, newline: str | None,
                 line_buffering: bool, mode: str) -> None:
        self.buffer = buffer
        self.mode = mode
        self.encoding = encoding
        self.errors = errors
        self.line_buffering = line_buffering
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._decoder = self._encoder = None
        if buffer._readable:
            decoder: codecs.IncrementalDecoder | io.IncrementalNewlineDecoder
            decoder = codecs.getincrementaldecoder(encoding)(errors)
            if newline in (None, ""):
                decoder = io.IncrementalNewlineDecoder(decoder, self._readtranslate)
            self._decoder = decoder
        if buffer._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            if buffer._seekable and buffer._tell() != 0:
                self._encoder.setstate(0)       # no BOM in the middle of a file
        self._decoded = ""          # the last chunk, decoded
        self._used = 0              # characters of it returned
        self._snapshot = None       # (decoder flags, bytes) that made _decoded
        self._b2c = 0.0             # bytes per character of the last chunk

    def __repr__(self) -> str:
        return (f"<uringloop.TextFile name={self.name!r} mode={self.mode!r} "
                f"encoding={self.encoding!r}>")

    # -- what the buffer has

    @property
    def name(self) -> str | bytes | int:
        return self.buffer.name

    @property
    def closed(self) -> bool:
        return self.buffer.closed

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        return getattr(self._decoder, "newlines", None)

    def fileno(self) -> int:
        return self.buffer.fileno()

    async def readable(self) -> bool:
        return await self.buffer.readable()

    async def writable(self) -> bool:
        return await self.buffer.writable()

    async def seekable(self) -> bool:
        return await self.buffer.seekable()

    async def isatty(self) -> bool:
        return await self.buffer.isatty()

    async def flush(self) -> None:
        self._check()
        await self.buffer.flush()

    async def close(self) -> None:
        await self.buffer.close()

    async def fsync(self) -> None:
        await self.buffer.fsync()

    async def fdatasync(self) -> None:
        await self.buffer.fdatasync()

    async def __aenter__(self) -> Self:
        return self

    def __aexit__(self, *exc_info: object) -> Coroutine[Any, Any, None]:
        return self.close()

    # -- the turn is the buffer's: one operation at a time on either

    async def _enter(self) -> None:
        buffer = self.buffer
        if buffer._busy:
            await buffer._turn()
        buffer._busy = True

    def _check(self, allowed: bool = True, what: str = "readable") -> None:
        """Closed first, then whether it can: TextIOWrapper's order."""
        if self.buffer._closed:
            raise ValueError("I/O operation on closed file.")
        if not allowed:
            raise io.UnsupportedOperation(f"not {what}")

    # -- reading (the caller holds the turn)

    def _reset_decoded(self) -> None:
        self._decoded, self._used, self._snapshot = "", 0, None

    async def _read_chunk(self, size: int = CHUNK) -> bool:
        """Decode the next chunk into _decoded; False at the end."""
        # (type: ignore here and below: reading, the file has a decoder)
        dec_buffer, dec_flags = self._decoder.getstate()  # type: ignore[union-attr]
        chunk = await self.buffer._read1(max(size, CHUNK))
        eof = not chunk
        self._decoded = self._decoder.decode(chunk, eof)  # type: ignore[union-attr]
        self._used = 0
        self._snapshot = (dec_flags, dec_buffer + chunk)
        self._b2c = len(chunk) / len(self._decoded) if self._decoded else 0.0
        return not eof

    def _consume(self, n: int) -> str:
        text = self._decoded[self._used:self._used + n]
        self._used += len(text)
        return text

    async def _read(self, size: int) -> str:
        if size < 0:
            text = self._consume(len(self._decoded)) + self._decoder.decode(  # type: ignore[union-attr]
                await self.buffer._readall(), final=True)
            self._reset_decoded()
            return text
        parts = [self._consume(size)]
        got = len(parts[0])
        while got < size:
            more = await self._read_chunk(int((size - got) * max(self._b2c, 1.0)))
            parts.append(self._consume(size - got))
            got += len(parts[-1])
            if not more:
                break
        return "".join(parts)

    def _line_end(self, line: str, start: int) -> int:
        """Where the line that `line` starts ends, or -1 if not in it."""
        if self._readtranslate or self._readnl == "\n":
            end = line.find("\n", start)
            return end + 1 if end >= 0 else -1
        if self._readnl:                    # "\r" or "\r\n"
            end = line.find(self._readnl, start)
            return end + len(self._readnl) if end >= 0 else -1
        # newline="": any of \r, \n, \r\n ends it; the newline decoder
        # has held back a \r that ends a chunk until what follows is known
        cr, lf = line.find("\r", start), line.find("\n", start)
        if cr < 0:
            return lf + 1 if lf >= 0 else -1
        if 0 <= lf < cr:
            return lf + 1
        return cr + 2 if line.startswith("\n", cr + 1) else cr + 1

    async def _readline(self, limit: int) -> str:
        line = self._decoded[self._used:]
        self._used = len(self._decoded)
        start = 0
        while True:
            end = self._line_end(line, start)
            if end >= 0:
                break
            if 0 <= limit <= len(line):
                end = limit
                break
            # "\r\n" may be split by a chunk's end
            start = max(len(line) - 1, 0)
            if not await self._read_chunk():
                line += self._decoded
                self._used = len(self._decoded)
                end = len(line)
                break
            line += self._decoded
            self._used = len(self._decoded)
        if 0 <= limit < end:
            end = limit
        self._used -= len(line) - end   # what follows the line stays unread
        return line[:end]

    # -- the public coroutines

    async def read(self, size: int | None = -1) -> str:
        self._check(self._decoder is not None)
        size = _size(size)
        await self._enter()
        try:
            await self.buffer._flush()
            return await self._read(size)
        finally:
            self.buffer._next()

    async def readline(self, size: int = -1) -> str:
        self._check(self._decoder is not None)
        size = _index(size)             # the built-in takes no None here
        await self._enter()
        try:
            await self.buffer._flush()
            return await self._readline(size)
        finally:
            self.buffer._next()

    async def readlines(self, hint: int | None = -1) -> list[str]:
        self._check()
        return await readlines(self, _size(hint))

    def __aiter__(self) -> Self:
        self._check()
        return self

    async def __anext__(self) -> str:
        self._check()
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def write(self, text: str) -> int:
        self._check(self._encoder is not None, "writable")
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        length = len(text)
        haslf = "\n" in text
        if haslf and self._writetranslate and self._writenl != "\n":
            text = text.replace("\n", self._writenl)
        data = self._encoder.encode(text)  # type: ignore[union-attr]  # (checked above)
        await self._enter()
        try:
            await self.buffer._write(data)
            if self.line_buffering and (haslf or "\r" in text):
                await self.buffer._flush()
            # as the built-in: what was read ahead is forgotten
            self._reset_decoded()
            if self._decoder is not None:
                self._decoder.reset()
        finally:
            self.buffer._next()
        return length

    async def writelines(self, lines: Iterable[str]) -> None:
        self._check()
        for line in lines:
            await self.write(line)

    async def truncate(self, size: int | None = None) -> int:
        self._check()
        await self.flush()
        if size is None:
            size = await self.tell()
        return await self.buffer.truncate(size)

    # -- position

    async def tell(self) -> int:
        self._check()
        if not self.buffer._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        await self._enter()
        try:
            await self.buffer._flush()
            return self._tell()
        finally:
            self.buffer._next()

    def _tell(self) -> int:
        position = self.buffer._tell()
        if self._decoder is None or self._snapshot is None:
            return position
        dec_flags, fed = self._snapshot
        position -= len(fed)
        if not self._used:
            return _pack(position, dec_flags)
        saved = self._decoder.getstate()
        try:
            return self._reconstruct(position, dec_flags, fed, self._used)
        finally:
            self._decoder.setstate(saved)

    def _reconstruct(self, position: int, dec_flags: int, fed: bytes, skip: int) -> int:
        """The cookie of the character `skip` characters into what `fed`
        decodes to from a clean decoder with dec_flags.  The search is the
        built-in's, step for step, so that the cookie is the same number:
        a jump by the last chunk's bytes per character to a point where the
        decoder holds nothing (stepping back one, two, four... bytes while
        past the character), then a byte at a time, moving the start to
        each later point where the decoder holds nothing."""
        decoder: codecs.IncrementalDecoder | io.IncrementalNewlineDecoder
        decoder = self._decoder  # type: ignore[assignment]  # (_tell() checked it)
        start, back = int(self._b2c * skip), 1
        while start > 0:
            decoder.setstate((b"", dec_flags))
            chars = len(decoder.decode(fed[:start]))
            if chars <= skip:
                held, flags = decoder.getstate()
                if not held:
                    dec_flags, skip = flags, skip - chars
                    break
                start, back = start - len(held), 1
            else:
                start, back = start - back, back * 2
        if start <= 0:
            start = 0
            decoder.setstate((b"", dec_flags))
        position += start
        if not skip:
            return _pack(position, dec_flags)
        chars = to_feed = 0
        for i in range(start, len(fed)):
            chars += len(decoder.decode(fed[i:i + 1]))
            to_feed += 1
            held, flags = decoder.getstate()
            if not held and chars <= skip:      # a safe point: start over here
                position, dec_flags, skip = position + to_feed, flags, skip - chars
                chars = to_feed = 0
            if chars >= skip:
                return _pack(position, dec_flags, to_feed, False, skip)
        chars += len(decoder.decode(b"", final=True))
        if chars < skip:
            raise OSError("can't reconstruct logical file position")
        return _pack(position, dec_flags, to_feed, True, skip)

    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        self._check()
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if not self.buffer._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        if whence == os.SEEK_CUR and cookie != 0:
            raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
        if whence == os.SEEK_END and cookie != 0:
            raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
        if whence == os.SEEK_SET and cookie < 0:
            raise ValueError(f"negative seek position {cookie!r}")
        await self._enter()
        try:
            await self.buffer._flush()
            if whence == os.SEEK_CUR:
                cookie = self._tell()
            elif whence == os.SEEK_END:
                return await self._seek_end()
            return await self._seek(cookie)
        finally:
            self.buffer._next()

    async def _seek_end(self) -> int:
        position = await self.buffer._seek(0, os.SEEK_END)
        self._reset_decoded()
        if self._decoder is not None:
            self._decoder.reset()
        self._reset_encoder(position)
        return position

    async def _seek(self, cookie: int) -> int:
        position, dec_flags, bytes_to_feed, need_eof, skip = _unpack(cookie)
        await self.buffer._seek(position, os.SEEK_SET)
        self._reset_decoded()
        if self._decoder is not None:
            if cookie == 0:
                self._decoder.reset()
            else:
                self._decoder.setstate((b"", dec_flags))
            self._snapshot = (dec_flags, b"")
            if skip:
                fed = await self.buffer._read(bytes_to_feed)
                self._decoded = self._decoder.decode(fed, need_eof)
                self._snapshot = (dec_flags, fed)
                if len(self._decoded) < skip:
                    raise OSError("can't restore logical file position")
                self._used = skip
        self._reset_encoder(cookie)
        return cookie

    def _reset_encoder(self, position: int) -> None:
        if self._encoder is not None:
            if position == 0:
                self._encoder.reset()
            else:
                self._encoder.setstate(0)
