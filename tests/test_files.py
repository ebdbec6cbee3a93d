"""uringloop.open(): the asyncio file API modelled on aiofiles, and the
whole-file helpers read_bytes, read_text, write_bytes and write_text.

Covered: round trips of 0 B up to URINGLOOP_TEST_FILE_MIB MiB (default 8;
256 runs the big one) in binary and text at every kind of buffering (0,
default, 1, 7 bytes, 1 MiB), writes of bytes, bytearray and memoryview;
random seek(whence 0/1/2)/tell/read/read1/readinto/readline/write/flush
sequences in "r+b"; text tell() cookies recorded after readline and
read(n) in utf-8, latin-1 and utf-16 files under every newline mode, then
seek()ed back to in random order; 1,000 files open at once; append mode
from two file objects interleaving; readline over 1 MiB lines and files
without a trailing newline, readline(size), readlines(hint), async
iteration; utf-16 and utf-8-sig BOMs on write, append and "r+"; newline=
None, "", "\\n", "\\r\\n", "\\r" reading (with "\\r\\n" split across the
8192-byte chunk boundary and f.newlines after every line) and writing;
errors="strict", "replace", "ignore", "surrogateescape", "backslashreplace"
on reading and writing; read1 and readinto; truncate with and without a
size; reading after writing and writing after reading in "r+"/"r+b"; mode
"x"; every error of open() (missing file, directory, permission denied,
not a directory, file exists, bad fd, bad modes and argument types and
values, binary mode with text arguments, unbuffered text, unknown and
non-text encodings, opener errors) and of file objects (reading a
write-only file, writing a read-only one, every method of a closed file,
bad seeks and argument types); the attributes name, mode, closed,
encoding, errors, newlines, line_buffering and readable/writable/seekable/
isatty; /proc and /sys files, /dev/zero, /dev/null, a pty, a FIFO (both
ends through the API, or one end the built-in's in a thread); a file
opened from an fd with closefd=False and True, and with opener=; a path
unlinked and made again, renamed over, replaced by a directory or
symlinks, relative after chdir (no stale answers); fsync and fdatasync;
a read cancelled while in flight and an open() of a FIFO cancelled while
blocked in the kernel (no fd left behind either way, the loop still
working), and one left in the kernel by a loop closed meanwhile; calls made at once on one file object taking their turns in
order.

The oracle is the built-in file object: each test does the same
operations with the built-in open() on an identical copy of the file and
compares what comes back (data, tell() positions, exceptions: type,
errno, filename and message), and the final contents of both files.
An exception that differs from the built-in's in its message alone does
not stop the test: the messages are gathered and fail it at teardown
("ERROR at teardown ... exception messages differ"), so such a test
reports a message and nothing worse.  Where the built-in cannot say
exactly (read1() may return less than asked) the API's result must be a
non-empty prefix of what the built-in would read next, and the built-in
is then advanced by as much.  Where the C built-in is at odds with the
documentation the oracle is _pyio, CPython's reference implementation:
text truncate() after a read (the C one cuts at the end of what it read
ahead, not at tell()).

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop with the same assertions: on uringloop the requests go through
the ring, elsewhere through the loop's default executor.

The implementation under test is uringloop.open when it exists; until
then, or with URINGLOOP_TEST_FILES_IMPL=aiofiles, aiofiles.open (the API it
copies; aiofiles' readable() of a binary file is a plain method, so tests
await results only when they are awaitable).  Tests of what aiofiles lacks
(fsync, fdatasync, the whole-file helpers, coroutine-ness of every method,
calls queued in order) skip under aiofiles.  Nothing here measures time.
"""
import _pyio
import array
import asyncio
import contextlib
import errno
import gc
import inspect
import itertools
import os
import pathlib
import pty
import random
import resource
import threading
import time
import warnings

import aiofiles
import pytest

import uringloop
from support import KiB, MiB, check_bytes, open_fds, payload, settle_fds, wait

pytestmark = pytest.mark.timeout(120)


def _implementation():
    forced = os.environ.get("URINGLOOP_TEST_FILES_IMPL", "")
    if forced not in ("", "aiofiles", "uringloop"):
        raise RuntimeError(f"URINGLOOP_TEST_FILES_IMPL={forced!r}: aiofiles or uringloop")
    if forced == "aiofiles" or (not forced and getattr(uringloop, "open", None) is None):
        return "aiofiles", aiofiles.open
    return "uringloop", uringloop.open


IMPL, OPEN = _implementation()
ON_URINGLOOP = IMPL == "uringloop"
uringloop_only = pytest.mark.skipif(not ON_URINGLOOP, reason="aiofiles has no such thing")

FILE_MIB = int(os.environ.get("URINGLOOP_TEST_FILE_MIB", "8"))
CHUNK = 8192                  # io.TextIOWrapper's chunk size
NEWLINES = [None, "", "\n", "\r\n", "\r"]
NEWLINE_IDS = ["None", "empty", "LF", "CRLF", "CR"]


# -- helpers


def describe(exc):
    """What must agree between the API's exception and the built-in's:
    type, errno, filename (a UnicodeError's reason), and last the message."""
    if isinstance(exc, UnicodeError):
        # positions are relative to the chunk decoded: the reason is not
        return (type(exc), getattr(exc, "reason", None), None, None)
    return (type(exc), getattr(exc, "errno", None), getattr(exc, "filename", None), str(exc))


MESSAGE_DIFFERENCES = []


@pytest.fixture(autouse=True)
def same_messages():
    """Exceptions whose type, errno and filename are the built-in's but
    whose message is not do not stop a test: they are gathered and fail it
    at teardown (an error "at teardown" is a message, nothing else)."""
    MESSAGE_DIFFERENCES.clear()
    yield
    if MESSAGE_DIFFERENCES:
        differences = "\n".join(dict.fromkeys(MESSAGE_DIFFERENCES))
        MESSAGE_DIFFERENCES.clear()
        pytest.fail(f"exception messages differ from the built-in's:\n{differences}")


def agree(got, want, what):
    """Two outcomes: the same result, or exceptions of the same type, errno
    and filename (a different message is recorded, see same_messages)."""
    if got[0] == want[0] == "raised":
        assert got[:-1] == want[:-1], what
        if got[-1] != want[-1]:
            MESSAGE_DIFFERENCES.append(f"{what}: {got[1].__name__}({got[-1]!r}), "
                                       f"the built-in's {want[-1]!r}")
    else:
        assert got == want, what


def builtin_outcome(func, *args, **kwargs):
    try:
        return ("ok", func(*args, **kwargs))
    except Exception as exc:
        return ("raised",) + describe(exc)


async def api_outcome(make, *args, **kwargs):
    """make(*args) (a plain call or a coroutine), awaited as need be."""
    try:
        result = make(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return ("ok", result)
    except Exception as exc:
        return ("raised",) + describe(exc)


async def same(af, bf, name, *args):
    """name(*args) on the API's file and the built-in's: the same result
    or the same exception.  The result, or None when both raised."""
    want = builtin_outcome(getattr(bf, name), *args)
    got = await api_outcome(getattr(af, name), *args)
    agree(got, want, f"{name}{args!r}")
    return got[1] if got[0] == "ok" else None


async def api_lines(af):
    lines = []
    async for line in af:
        lines.append(line)
    return lines


async def same_iteration(af, bf):
    want = builtin_outcome(list, bf)
    got = await api_outcome(api_lines, af)
    agree(got, want, "async for")
    return got[1] if got[0] == "ok" else None


@contextlib.asynccontextmanager
async def pair(tmp_path, data, mode, name="f", oracle=open, **kwargs):
    """The API's file and the built-in's (or `oracle`'s), opened alike on
    two identical files holding `data` (None: no file there beforehand)."""
    pa, pb = tmp_path / f"{name}.api", tmp_path / f"{name}.builtin"
    if data is not None:
        pa.write_bytes(data)
        pb.write_bytes(data)
    bf = oracle(pb, mode, **kwargs)
    try:
        af = await OPEN(pa, mode, **kwargs)
        try:
            yield af, bf
        finally:
            await af.close()
    finally:
        bf.close()


def same_contents(tmp_path, name="f"):
    check_bytes((tmp_path / f"{name}.api").read_bytes(),
                (tmp_path / f"{name}.builtin").read_bytes())


def pieces(data, pattern):
    """data cut into pieces of the sizes in `pattern`, cycled."""
    pos, sizes = 0, itertools.cycle(pattern)
    while pos < len(data):
        n = next(sizes)
        yield data[pos:pos + n]
        pos += n


def random_bytes(size, seed=0):
    """support.payload(size), in pieces of 64 MiB past that (randbytes
    cannot make 256 MiB at once: its bit count overflows a C int)."""
    step = 64 * MiB
    if size <= step:
        return payload(size, seed)
    return b"".join(payload(min(step, size - start), f"{seed}/{start}")
                    for start in range(0, size, step))


_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
_TO_TEXT = bytes(ord("\n") if i % 40 == 0 else _ALNUM[i % len(_ALNUM)] for i in range(256))
_cache = {}


def sample_text(size, seed=0, wide=("é", "€", "𝄞")):
    """Text of exactly `size` bytes in utf-8: ascii words and newlines
    (about one line in 37 characters) with the `wide` characters among
    them every 61 bytes."""
    key = (size, seed, wide)
    if key not in _cache:
        raw = random_bytes(size, f"text/{seed}").translate(_TO_TEXT)
        raw = raw.decode("ascii")
        out, pos = [], 0
        for i, at in enumerate(range(37, size - 4, 61)):
            char = wide[i % len(wide)]
            out.append(raw[pos:at])
            out.append(char)
            pos = at + len(char.encode())
        out.append(raw[pos:])
        _cache[key] = "".join(out)
        assert len(_cache[key].encode()) == size
    return _cache[key]


def mixed_lines(seed, count, latin1=False):
    """`count` lines of mixed characters ended by \\n, \\r\\n or \\r at
    random (some empty, the last one without an end)."""
    rng = random.Random(f"lines/{seed}")
    alphabet = "abcdefghij KLMNO 0123 éàüß" + ("" if latin1 else "€𝄞ж")
    lines = []
    for i in range(count):
        n = rng.choice([0, 1, 3, 10, 40, 100, 300])
        text = "".join(rng.choice(alphabet) for _ in range(n))
        lines.append(text + ("" if i == count - 1 else rng.choice(["\n", "\r\n", "\r"])))
    return "".join(lines)


@contextlib.contextmanager
def nofile_at_least(count):
    """RLIMIT_NOFILE's soft limit raised to `count` for the body, if need
    be, and put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"needs {count} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def sleeping_in_kernel(function, timeout=2.0):
    """Wait until a thread of this process (an executor's, or an io_uring
    worker) sleeps in the kernel in `function` (its /proc wchan); False if
    none does before the timeout (wchan hidden, or nothing blocks)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/self/task/{tid}/wchan") as f:
                    if f.read() == function:
                        return True
        await asyncio.sleep(0.005)
    return False


async def threads_at_rest(timeout=5.0):
    """Wait until every other thread of this process sleeps, none in a FIFO
    open's wait_for_partner: a blocked open that was released has then
    returned, its fd installed (a thread woken but not yet run is 'R')."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    me = str(threading.get_native_id())
    while loop.time() < deadline:
        busy = False
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/self/task/{tid}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
                with open(f"/proc/self/task/{tid}/wchan") as f:
                    wchan = f.read()
                busy |= tid != me and (state in "RD" or wchan == "wait_for_partner")
        if not busy:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("a thread is still busy or in wait_for_partner")


def fds_on(path):
    """How many of this process's fds are open on `path`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == os.fspath(path)
    return count


async def settle_fds_on(path, expected, timeout=5.0):
    """Wait until `expected` fds are open on `path` (an fd closed a loop
    iteration or two later is not a leak); a count of all fds could be
    thrown off by the loop closing one of its own meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while fds_on(path) != expected and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert fds_on(path) == expected, f"{fds_on(path)} fds open on {path}, not {expected}"


def kinds(data):
    """data as bytes, bytearray and memoryview, in turn."""
    for i, piece in enumerate(data):
        yield (bytes, bytearray, memoryview)[i % 3](piece)


# -- round trips

SIZES = [0, 1, 4095, 4096, 4097, MiB + 3, FILE_MIB * MiB]
SIZE_IDS = ["0B", "1B", "4095B", "4096B", "4097B", "1MiB+3", f"{FILE_MIB}MiB"]
WRITE_PATTERN = (1, 5, 7, 100, 4096, 65539, 3 * MiB)
READ_PATTERN = (3, 1, 4096, 7, 65536, 100, 2 * MiB + 1)


@pytest.mark.parametrize("buffering", [0, -1, 7, MiB], ids=["unbuffered", "default", "7B", "1MiB"])
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_binary_round_trip(run, tmp_path, size, buffering):
    """Written in pieces of 1 B to 3 MiB (bytes, bytearray, memoryview):
    each write() says it took all, tell() counts them, the built-in reads
    back every byte; read() gives it all and then b""; read(n) in pieces
    gives each slice with tell() after each; no fd is left open."""
    data = random_bytes(size)
    path = tmp_path / "data.bin"

    async def main():
        fds = open_fds()
        async with OPEN(path, "wb", buffering=buffering) as f:
            written = 0
            for piece in kinds(pieces(data, WRITE_PATTERN)):
                assert await f.write(piece) == len(piece)
                written += len(piece)
            assert await f.tell() == written == size
        check_bytes(path.read_bytes(), data)
        async with OPEN(path, "rb", buffering=buffering) as f:
            check_bytes(await f.read(), data)
            assert await f.read() == b""
            assert await f.read(10) == b""
            assert await f.seek(0) == 0
            pos = 0
            for n in itertools.cycle(READ_PATTERN):
                got = await f.read(n)
                check_bytes(got, data[pos:pos + n])
                pos += len(got)
                assert await f.tell() == pos
                if not got:
                    break
            assert pos == size
        await settle_fds(fds)

    run(main())


TEXT_PATTERN = (1, 3, 700, 4097, 1, 9000, MiB)


@pytest.mark.parametrize("buffering", [-1, 1, 7, MiB], ids=["default", "line", "7B", "1MiB"])
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_text_round_trip(run, tmp_path, size, buffering):
    """utf-8 text with 2-, 3- and 4-byte characters written in pieces:
    write() returns the characters taken, the file's bytes are the
    encoding; read() gives the text back, read(n) each slice of n
    characters, readline() (up to 2 MiB) the built-in's lines."""
    text = sample_text(size)
    path = tmp_path / "data.txt"

    async def main():
        fds = open_fds()
        async with OPEN(path, "w", buffering=buffering, encoding="utf-8") as f:
            for piece in pieces(text, TEXT_PATTERN):
                assert await f.write(piece) == len(piece)
        check_bytes(path.read_bytes(), text.encode())
        async with OPEN(path, "r", buffering=buffering, encoding="utf-8") as f:
            assert await f.read() == text
            assert await f.read() == ""
            await f.seek(0)
            pos = 0
            for n in itertools.cycle(TEXT_PATTERN):
                got = await f.read(n)
                assert got == text[pos:pos + n]
                pos += len(got)
                if not got:
                    break
            if size <= 2 * MiB:
                await f.seek(0)
                with open(path, encoding="utf-8") as bf:
                    want = bf.readlines()
                lines = []
                while line := await f.readline():
                    lines.append(line)
                assert lines == want
        await settle_fds(fds)

    run(main())


# -- positions

@pytest.mark.parametrize("buffering", [0, -1, 7, 3 * 4096 + 5],
                         ids=["unbuffered", "default", "7B", "12KiB+5"])
def test_binary_random_seek_tell_read_write(run, tmp_path, buffering):
    """400 random operations on "r+b", the same on the built-in's file:
    seek with whence 0, 1 and 2 (past the end too; before the start is the
    same error), tell, read(n) and read(), readline(size), readinto, read1
    (a prefix of what the built-in reads), write, flush.  Every result
    agrees and so do the files in the end."""
    rng = random.Random(f"seek/{buffering}")

    async def main():
        async with pair(tmp_path, payload(50_000, seed=1), "r+b", buffering=buffering) as (af, bf):
            for _ in range(400):
                op = rng.choices(["read", "readall", "readline", "readinto", "read1", "seek0",
                                  "seek1", "seek2", "tell", "write", "flush"],
                                 [8, 1, 3, 2, 2 if buffering else 0, 3, 3, 2, 3, 4, 1])[0]
                if op == "read":
                    await same(af, bf, "read", rng.choice([0, 1, 7, 100, 4096, 4097, 20000]))
                elif op == "readall":
                    await same(af, bf, "read")
                elif op == "readline":
                    await same(af, bf, "readline", rng.choice([-1, -1, 0, 1, 50, 5000]))
                elif op == "readinto":
                    n = rng.choice([0, 1, 100, 5000])
                    ba, bb = bytearray(n), bytearray(n)
                    assert await af.readinto(ba) == bf.readinto(bb)
                    assert ba == bb
                elif op == "read1":
                    await read1_like_builtin(af, bf, rng.choice([-1, 0, 1, 100, 9000, 70000]))
                elif op == "seek0":
                    await same(af, bf, "seek", rng.randrange(0, 60_000), 0)
                elif op == "seek1":
                    await same(af, bf, "seek", rng.randrange(-bf.tell() - 10, 5000), 1)
                elif op == "seek2":
                    await same(af, bf, "seek", rng.randrange(-60_000, 3000), 2)
                elif op == "tell":
                    await same(af, bf, "tell")
                elif op == "write":
                    await same(af, bf, "write", rng.randbytes(rng.choice([0, 1, 5, 300, 9000])))
                else:
                    await same(af, bf, "flush")
                assert await af.tell() == bf.tell()
        same_contents(tmp_path)

    run(main())


async def read1_like_builtin(af, bf, n):
    """read1(n): at most n bytes (any, if n < 0), at least one unless n is
    0 or at the end, and exactly the bytes the built-in reads next."""
    if IMPL == "aiofiles":
        # CPython before 3.12.3 (gh-115059): BufferedRandom.read1() after a
        # write reads from where the unflushed write began
        await af.flush()
    got = await af.read1(n)
    if n >= 0:
        assert len(got) <= n
    if got:
        assert got == bf.read(len(got))
    elif n != 0:
        pos = bf.tell()
        assert bf.read(1) == b"", "read1() gave nothing before the end"
        bf.seek(pos)
    return got


TELL_ENCODINGS = ["utf-8", "latin-1", "utf-16"]


@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
@pytest.mark.parametrize("encoding", TELL_ENCODINGS)
def test_text_tell_cookies_seek_back(run, tmp_path, encoding, newline):
    """A text file of ~1,500 lines ended by \\n, \\r\\n or \\r (about 5
    chunks): readline(), readline(size) and read(n) at random, the same on
    the built-in, tell() recorded on both before each.  In utf-8 and
    latin-1 the cookie after a readline() (and at the start) is the
    built-in's.  Then, in random order, seek() to each recorded cookie
    (the built-in to its own) and what read(n) and readline() give next
    agree."""
    text = mixed_lines(f"{encoding}/{newline!r}", 1500, latin1=encoding == "latin-1")
    rng = random.Random(f"cookies/{encoding}/{newline!r}")
    plain = encoding in ("utf-8", "latin-1")

    async def main():
        async with pair(tmp_path, text.encode(encoding), "r", encoding=encoding,
                        newline=newline) as (af, bf):
            points, after_readline = [], True
            while True:
                ta, tb = await af.tell(), bf.tell()
                if plain and after_readline:
                    assert ta == tb
                points.append((ta, tb))
                r = rng.random()
                if r < 0.5:
                    got = await same(af, bf, "readline")
                    after_readline = True
                elif r < 0.7:
                    got = await same(af, bf, "readline", rng.choice([0, 1, 2, 30, 200]))
                    after_readline = False
                else:
                    got = await same(af, bf, "read", rng.choice([0, 1, 2, 3, 50, 999, 9000]))
                    after_readline = False
                if got == "" and r < 0.5:
                    break
            assert await af.read() == bf.read() == ""
            rng.shuffle(points)
            for ta, tb in points:
                await af.seek(ta)
                bf.seek(tb)
                await same(af, bf, "read", rng.choice([0, 1, 3, 100, 5000]))
                await same(af, bf, "readline")
            await same(af, bf, "seek", 0, 2)
            await same(af, bf, "read")

    run(main())


# -- many files


def test_thousand_files_open_at_once(run, tmp_path):
    """1,000 files opened at once ("w+b", opens started together), each
    written its own bytes, read back from its start, closed; 1,000 more
    fds while they are open, none left after (RLIMIT_NOFILE raised if it
    must be, put back after)."""
    count = 1000

    async def main():
        fds = open_fds()
        with nofile_at_least(fds + count + 64):
            files = await asyncio.gather(*(OPEN(tmp_path / f"{i}", "w+b") for i in range(count)))
            try:
                assert open_fds() == fds + count
                await asyncio.gather(*(f.write(b"%d\n" % i * (i % 7 + 1))
                                       for i, f in enumerate(files)))
                await asyncio.gather(*(f.seek(0) for f in files))
                got = await asyncio.gather(*(f.read() for f in files))
                assert got == [b"%d\n" % i * (i % 7 + 1) for i in range(count)]
            finally:
                await asyncio.gather(*(f.close() for f in files))
            assert all(f.closed for f in files)
            await settle_fds(fds)
        for i in (0, 1, 500, 999):
            assert (tmp_path / f"{i}").read_bytes() == b"%d\n" % i * (i % 7 + 1)

    run(main())


# -- append


@pytest.mark.parametrize("mode,buffering", [("ab", 0), ("ab", -1), ("ab+", 7), ("a", -1),
                                            ("a+", 1)])
def test_append_two_file_objects_interleaving(run, tmp_path, mode, buffering):
    """Two file objects appending to one file (which holds something
    already), writes interleaved at random and each flushed, the same with
    two built-in files on another: tell() of each after each write and
    the final contents agree.  In "+" modes, a read from the start between
    writes gives what is there and the next write still goes at the
    end."""
    rng = random.Random(f"append/{mode}/{buffering}")
    binary = "b" in mode
    pa, pb = tmp_path / "api", tmp_path / "builtin"
    for p in (pa, pb):
        p.write_bytes(b"start\n")

    async def main():
        a = [await OPEN(pa, mode, buffering=buffering) for _ in range(2)]
        b = [open(pb, mode, buffering=buffering) for _ in range(2)]
        try:
            for i in range(2):
                await same(a[i], b[i], "tell")
            for step in range(60):
                i = rng.randrange(2)
                data = f"{step}:{i}:" + "x" * rng.choice([0, 1, 10, 5000]) + "\n"
                await same(a[i], b[i], "write", data.encode() if binary else data)
                await same(a[i], b[i], "flush")
                await same(a[i], b[i], "tell")
                if "+" in mode and step % 10 == 3:
                    await same(a[i], b[i], "seek", 0)
                    await same(a[i], b[i], "read", 7)
                    await same(a[i], b[i], "readline")
        finally:
            for f in a:
                await f.close()
            for f in b:
                f.close()
        check_bytes(pa.read_bytes(), pb.read_bytes())

    run(main())


# -- lines


LINE_FILES = {
    "long-lines": b"x" * (MiB + 5) + b"\nshort\n\n" + b"y" * MiB,
    "medium-lines": b"x" * (KiB + 5) + b"\nshort\n\n" + b"y" * 300,
    "no-trailing-newline": b"a\nbb\nccc",
    "trailing-newline": b"a\nbb\nccc\n",
    "only-newlines": b"\n\n\n",
    "empty": b"",
    "crlf": b"one\r\ntwo\rthree\n\r\nfour\r",
}


LINE_CASES = [(content, mode, buffering)
              for content in LINE_FILES
              for mode, buffering in [("rb", 0), ("rb", -1), ("rb", 7), ("rb", MiB), ("r", -1),
                                      ("r", 7)]
              if not (content == "long-lines" and buffering in (0, 7))]


@pytest.mark.parametrize("content,mode,buffering", LINE_CASES)
def test_readline_readlines_iteration(run, tmp_path, content, mode, buffering):
    """readline() to the end, readline(size) with sizes from 0 to past the
    line, readlines() and readlines(hint), async for: the built-in's lines
    every time.  (Lines of 1 MiB are read at buffering 0 and 7 as 1 KiB
    ones: there the built-in reads a byte, or 7, per system call, and so
    does the API, through the executor on the other loops.)"""
    data = LINE_FILES[content]

    async def main():
        async with pair(tmp_path, data, mode, buffering=buffering) as (af, bf):
            while await same(af, bf, "readline"):
                pass
            await same(af, bf, "readline")
            for sizes in ([0, 1, 2, 5], [100, 70_000, -1], [2 * MiB, 3, None]):
                await same(af, bf, "seek", 0)
                for size in itertools.islice(itertools.cycle(sizes), 40):
                    await same(af, bf, "readline", size)
            for hint in (-1, 0, 1, 5, 10_000, MiB + 6):
                await same(af, bf, "seek", 0)
                await same(af, bf, "readlines", hint)
                await same(af, bf, "readlines")
            await same(af, bf, "seek", 0)
            await same(af, bf, "readline")
            await same_iteration(af, bf)
            await same(af, bf, "read")

    run(main())


# -- encodings


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_bom_written_once(run, tmp_path, encoding):
    """Text written in "w", then appended in "a" (twice), then written at
    the end of "r+" after seek(0, 2), then in "a" on an empty file and in
    "w+" read back after seek(0): the BOM is written at position 0 only
    (the files' bytes are the built-in's), and reading gives the text
    without it."""
    async def main():
        for name, steps in {
            "w-a-a": [("w", "héllo\n"), ("a", "wörld\n"), ("a", "𝄞\n")],
            "w-r+": [("w", "one\n"), ("r+", "two\n")],
            "empty-a": [("a", "first\n"), ("a", "second\n")],
        }.items():
            for mode, text in steps:
                async with pair(tmp_path, None, mode, name, encoding=encoding) as (af, bf):
                    if mode == "r+":
                        await same(af, bf, "seek", 0, 2)
                    await same(af, bf, "write", text)
                same_contents(tmp_path, name)
            async with pair(tmp_path, None, "r", name, encoding=encoding) as (af, bf):
                got = await same(af, bf, "read")
                assert "\ufeff" not in got
        async with pair(tmp_path, None, "w+", "w+", encoding=encoding) as (af, bf):
            await same(af, bf, "write", "abc\ndéf\n")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
            await same(af, bf, "write", "more")
        same_contents(tmp_path, "w+")

    run(main())


def test_latin1_every_byte(run, tmp_path):
    """All 256 latin-1 characters written (newline="") and read back: the
    file holds bytes 0..255, read() gives the same string."""
    text = "".join(map(chr, range(256)))

    async def main():
        async with OPEN(tmp_path / "l1", "w", encoding="latin-1", newline="") as f:
            assert await f.write(text) == 256
        assert (tmp_path / "l1").read_bytes() == bytes(range(256))
        async with OPEN(tmp_path / "l1", "r", encoding="latin-1", newline="") as f:
            assert await f.read() == text

    run(main())


def newline_content(encoding):
    """Mixed \\r, \\n and \\r\\n, with a \\r\\n split across the 8192-byte
    chunk boundary (\\r its last byte), a \\r ending the second chunk
    followed by a plain character, a \\r\\r\\n, and a \\r at the very end."""
    def filler(before, target):
        # "a"s making `before` + them + "\r" end at byte `target`
        unit = len("aa".encode(encoding)) - len("a".encode(encoding))
        base = len((before + "\r").encode(encoding))
        return before + "a" * ((target - base) // unit)

    text = filler("start\r\nab\rcd\nef\r\r\n", CHUNK) + "\r\nnext\n"
    text = filler(text, 2 * CHUNK) + "\rplain\r\r\nx\n\n"
    text = filler(text, 3 * CHUNK - 1) + "\r\n\r" + "tail" * 3000 + "\r"
    unit = "\r\n".encode(encoding)[-2:] if encoding == "utf-8" else "\r\n".encode("utf-16-le")
    half = len(unit) // 2
    assert text.encode(encoding)[CHUNK - half:CHUNK + half] == unit
    return text


@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_newline_reading(run, tmp_path, encoding, newline):
    """Reading mixed \\r, \\n, \\r\\n (split across chunk boundaries) with
    each newline mode: read(), readline() with f.newlines after each,
    read(n) for n around the chunk size, readlines(), async for: all as
    the built-in gives them."""
    data = newline_content(encoding).encode(encoding)

    async def main():
        async with pair(tmp_path, data, "r", encoding=encoding, newline=newline) as (af, bf):
            assert af.newlines == bf.newlines
            await same(af, bf, "read")
            assert af.newlines == bf.newlines
            await same(af, bf, "seek", 0)
            while True:
                line = await same(af, bf, "readline")
                assert af.newlines == bf.newlines
                if not line:
                    break
            for n in (1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 10_000):
                await same(af, bf, "seek", 0)
                while await same(af, bf, "read", n):
                    assert af.newlines == bf.newlines
            await same(af, bf, "seek", 0)
            await same(af, bf, "readlines")
            await same(af, bf, "seek", 0)
            await same_iteration(af, bf)
            assert af.newlines == bf.newlines

    run(main())


@pytest.mark.parametrize("newline", NEWLINES, ids=NEWLINE_IDS)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_newline_writing(run, tmp_path, encoding, newline):
    """Writing \\n, \\r, \\r\\n (also a \\r and its \\n in two writes, and
    writelines) with each newline mode: the file's bytes are the
    built-in's."""
    async def main():
        async with pair(tmp_path, None, "w", encoding=encoding, newline=newline) as (af, bf):
            for text in ["a\nb\r\nc\rd\n", "e\r", "\nf", "", "\n\n\r\r", "g" * 9000 + "\n"]:
                await same(af, bf, "write", text)
            await same(af, bf, "writelines", ["x\n", "y\r\n", "z\r"])
        same_contents(tmp_path)

    run(main())


BAD_UTF8 = b"ok\xff\xfe\nline \x80two\n\xed\xa0\x80sur\n" + b"fine\n" * 3000 + b"end \xe2\x82"


@pytest.mark.parametrize("errors", ["strict", "replace", "ignore", "surrogateescape",
                                    "backslashreplace"])
def test_decode_errors(run, tmp_path, errors):
    """utf-8 with invalid bytes (a lone \\xff\\xfe, a stray continuation
    byte, an encoded surrogate, a truncated sequence at the end): read(),
    readline() and read(n) give what the built-in gives with that errors=
    (UnicodeDecodeError, same reason, with "strict"); f.errors is it."""
    async def main():
        async with pair(tmp_path, BAD_UTF8, "r", encoding="utf-8", errors=errors) as (af, bf):
            assert af.errors == bf.errors == errors
            await same(af, bf, "read")
        async with pair(tmp_path, BAD_UTF8, "r", "lines", encoding="utf-8", errors=errors) as (
                af, bf):
            for _ in range(3010):
                if not await same(af, bf, "readline"):
                    break
        async with pair(tmp_path, BAD_UTF8, "r", "n", encoding="utf-8", errors=errors) as (af, bf):
            for _ in range(1000):
                if not await same(af, bf, "read", 3):
                    break

    run(main())


def test_encode_errors_and_surrogateescape_round_trip(run, tmp_path):
    """What utf-8 with surrogateescape read from invalid bytes writes back
    as those bytes; a lone surrogate under strict is UnicodeEncodeError
    from write(); latin-1 writes "€" as "?" with replace, "\\u20ac" with
    backslashreplace, and refuses it under strict: as the built-in."""
    async def main():
        async with OPEN(tmp_path / "bad", "wb") as f:
            await f.write(BAD_UTF8)
        async with OPEN(tmp_path / "bad", "r", encoding="utf-8", errors="surrogateescape",
                        newline="") as f:
            text = await f.read()
        async with pair(tmp_path, None, "w", "back", encoding="utf-8", errors="surrogateescape",
                        newline="") as (af, bf):
            await same(af, bf, "write", text)
        check_bytes((tmp_path / "back.api").read_bytes(), BAD_UTF8)
        same_contents(tmp_path, "back")
        for encoding, errors, texts in [
            ("utf-8", "strict", ["ok\n", "\udcff", "after\n"]),
            ("latin-1", "strict", ["café ", "€", "end"]),
            ("latin-1", "replace", ["café ", "€", "end"]),
            ("latin-1", "backslashreplace", ["café ", "€𝄞", "end"]),
            ("ascii", "ignore", ["a", "é", "b"]),
        ]:
            name = f"{encoding}-{errors}"
            async with pair(tmp_path, None, "w", name, encoding=encoding, errors=errors) as (
                    af, bf):
                for text in texts:
                    await same(af, bf, "write", text)
            same_contents(tmp_path, name)

    run(main())


# -- read1, readinto, truncate, r+


@pytest.mark.parametrize("buffering", [-1, 7, MiB], ids=["default", "7B", "1MiB"])
def test_read1(run, tmp_path, buffering):
    """read1(n) for n in -1, 0, 1, 100, 9000, 100000 in turn to the end
    of a 300 KiB file, with seeks now and then: each result is what the
    built-in reads next, never more than n, empty only at the end (or
    for n == 0); tell() agrees throughout."""
    sizes = itertools.cycle([-1, 0, 1, 100, 9000, 100_000])

    async def main():
        async with pair(tmp_path, payload(300 * KiB, seed=3), "rb", buffering=buffering) as (
                af, bf):
            for i in itertools.count():
                n = next(sizes)
                got = await read1_like_builtin(af, bf, n)
                assert await af.tell() == bf.tell()
                if not got and n:
                    break
                if i % 17 == 16:
                    await same(af, bf, "seek", -3000, 1)

    run(main())


@pytest.mark.parametrize("buffering", [0, -1, 7], ids=["unbuffered", "default", "7B"])
def test_readinto(run, tmp_path, buffering):
    """readinto() of a bytearray, a memoryview of part of one, an
    array('i') and an empty buffer: the counts and the buffers' contents
    are the built-in's, to the end of the file."""
    async def main():
        async with pair(tmp_path, payload(70_000, seed=4), "rb", buffering=buffering) as (af, bf):
            for i in itertools.count():
                kind = i % 4
                if kind == 0:
                    ba, bb = bytearray(5000), bytearray(5000)
                    views = ba, bb
                elif kind == 1:
                    ba, bb = bytearray(b"#" * 300), bytearray(b"#" * 300)
                    views = memoryview(ba)[10:250], memoryview(bb)[10:250]
                elif kind == 2:
                    ba, bb = array.array("i", [0] * 1000), array.array("i", [0] * 1000)
                    views = ba, bb
                else:
                    ba, bb = bytearray(), bytearray()
                    views = ba, bb
                n = await af.readinto(views[0])
                assert n == bf.readinto(views[1])
                assert ba == bb
                assert await af.tell() == bf.tell()
                if kind != 3 and n == 0:
                    break

    run(main())


@pytest.mark.parametrize("mode,buffering", [("r+b", 0), ("r+b", -1), ("r+b", 7), ("w+b", -1),
                                            ("r+", -1), ("w+", 7)])
def test_truncate(run, tmp_path, mode, buffering):
    """truncate() at the position after a read or with writes still
    buffered, truncate(size) below the position (which stays: a write
    there leaves a hole of zeros), above the end (the file grows), at 0:
    return values, tell() and the files as the built-in's.  In text mode
    the oracle is _pyio's TextIOWrapper: the C one's truncate() after a
    read cuts at the end of what it read ahead, not at tell() as the
    documentation (and _pyio) say."""
    binary = "b" in mode
    oracle = open if binary else _pyio.open

    def b(text):
        return text.encode() if binary else text

    async def main():
        async with pair(tmp_path, b"0123456789" * 3000, mode, oracle=oracle,
                        buffering=buffering) as (af, bf):
            if mode.startswith("r"):
                await same(af, bf, "read", 10)
                await same(af, bf, "truncate")
                if not binary:
                    # (a text write right after a read goes where the
                    # reading got to in the buffer, a chunk on)
                    await same(af, bf, "seek", 0, 1)
            await same(af, bf, "tell")
            await same(af, bf, "write", b("abcdefghij" * 3))
            await same(af, bf, "truncate")
            await same(af, bf, "tell")
            await same(af, bf, "truncate", 5)
            await same(af, bf, "tell")
            await same(af, bf, "write", b("XY"))
            await same(af, bf, "truncate", 1000)
            await same(af, bf, "tell")
            await same(af, bf, "seek", 0, 2)
            await same(af, bf, "tell")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
            await same(af, bf, "truncate", 0)
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        same_contents(tmp_path)

    run(main())


def test_text_truncate_after_readline(run, tmp_path):
    """Text truncate() right after a readline() (no seek) cuts the file at
    tell(), as the documentation and _pyio say (the C TextIOWrapper cuts
    at the end of what it read ahead: _pyio is the oracle here)."""
    async def main():
        async with pair(tmp_path, b"line one\nline two\n" * 100, "r+",
                        oracle=_pyio.open) as (af, bf):
            await same(af, bf, "readline")
            await same(af, bf, "truncate")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        same_contents(tmp_path)

    run(main())


@pytest.mark.parametrize("buffering", [0, -1, 7], ids=["unbuffered", "default", "7B"])
def test_binary_read_write_mixed(run, tmp_path, buffering):
    """"r+b": a write right after a read, a read right after a write, with
    and without a seek between, seek(-n, 1) into what was just written:
    every result and the file as the built-in's."""
    async def main():
        async with pair(tmp_path, payload(20_000, seed=5), "r+b", buffering=buffering) as (af, bf):
            await same(af, bf, "read", 5)
            await same(af, bf, "write", b"XYZ")
            await same(af, bf, "read", 3)
            await same(af, bf, "seek", -4, 1)
            await same(af, bf, "read", 6)
            await same(af, bf, "seek", 100)
            await same(af, bf, "write", b"W" * 9000)
            await same(af, bf, "read", 10)
            await same(af, bf, "seek", 50)
            await same(af, bf, "read", 100)
            await same(af, bf, "seek", 0, 1)
            await same(af, bf, "write", b"after")
            await same(af, bf, "seek", -10, 2)
            await same(af, bf, "write", b"past the end")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        same_contents(tmp_path)

    run(main())


@pytest.mark.parametrize("buffering", [-1, 7], ids=["default", "7B"])
def test_text_read_write_with_seeks(run, tmp_path, buffering):
    """"r+" text: read, seek(tell()), write, seek back to a recorded
    cookie, read what was written, seek(0, 2), write, seek(0), read():
    as the built-in."""
    data = "première ligne\nzweite Zeile\n€ trois\n".encode() * 200

    async def main():
        async with pair(tmp_path, data, "r+", encoding="utf-8", buffering=buffering) as (af, bf):
            await same(af, bf, "readline")
            await same(af, bf, "read", 5)
            ta, tb = await af.tell(), bf.tell()
            await af.seek(ta)
            bf.seek(tb)
            await same(af, bf, "write", "ÉCRIT")
            await af.seek(ta)
            bf.seek(tb)
            await same(af, bf, "read", 8)
            await same(af, bf, "readline")
            await same(af, bf, "seek", 0, 2)
            await same(af, bf, "write", "la fin\n")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        same_contents(tmp_path)

    run(main())


# -- open() modes and errors


def test_mode_x(run, tmp_path):
    """"x" and "xb" create a new file (writable, "x+" readable too); on an
    existing one FileExistsError naming it, the file untouched."""
    async def main():
        async with pair(tmp_path, None, "x") as (af, bf):
            await same(af, bf, "write", "new\n")
            await same(af, bf, "readable")
        same_contents(tmp_path)
        async with pair(tmp_path, None, "x+b", "plus") as (af, bf):
            await same(af, bf, "write", b"new\n")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        path = tmp_path / "f.api"
        for mode in ("x", "xb", "x+"):
            want = builtin_outcome(open, path, mode)
            assert want[0] == "raised"
            agree(await api_outcome(OPEN, path, mode), want, mode)
            assert want[1] is FileExistsError
        assert path.read_bytes() == b"new\n"

    run(main())


def open_error_cases(tmp_path):
    """(description, setup, args, kwargs): open() calls that fail."""
    missing = tmp_path / "missing"
    adir = tmp_path / "adir"
    afile = tmp_path / "afile"

    def make_dir():
        adir.mkdir(exist_ok=True)

    def make_file():
        afile.write_bytes(b"content\n")

    def nothing():
        pass

    cases = []
    for mode in ("r", "rb", "r+", "r+b"):
        cases.append((f"missing {mode}", nothing, (missing, mode), {}))
    cases += [
        ("missing str", nothing, (str(missing),), {}),
        ("missing bytes", nothing, (os.fsencode(missing), "rb"), {}),
        ("missing parent", nothing, (tmp_path / "nodir" / "f", "w"), {}),
        ("not a directory", make_file, (afile / "f", "r"), {}),
        ("not a directory w", make_file, (afile / "f", "wb"), {}),
        ("embedded null", nothing, (str(tmp_path / "a\0b"), "r"), {}),
        ("exists x", make_file, (afile, "x"), {}),
        ("exists xb", make_file, (afile, "xb+"), {}),
    ]
    for mode in ("r", "rb", "w", "wb", "a", "r+b", "x"):
        cases.append((f"directory {mode}", make_dir, (adir, mode), {}))
    cases.append(("directory bytes", make_dir, (os.fsencode(adir),), {}))
    for mode in ("", "rw", "rr", "z", "rbt", "r+b+", "U", "wx", "ab+x", "+", "b", "t", "rU",
                 "bb", "r ", "R"):
        cases.append((f"mode {mode!r}", make_file, (afile, mode), {}))
    cases += [
        ("mode int", make_file, (afile, 1), {}),
        ("mode bytes", make_file, (afile, b"r"), {}),
        ("file float", nothing, (1.5,), {}),
        ("file None", nothing, (None,), {}),
        ("buffering str", make_file, (afile,), {"buffering": "1"}),
        ("buffering float", make_file, (afile,), {"buffering": 1.5}),
        ("encoding int", make_file, (afile,), {"encoding": 1}),
        ("errors int", make_file, (afile,), {"errors": 1}),
        ("newline int", make_file, (afile,), {"newline": 1}),
        ("newline bad", make_file, (afile,), {"newline": "x"}),
        ("newline bad 2", make_file, (afile,), {"newline": "\n\r"}),
        ("binary encoding", make_file, (afile, "rb"), {"encoding": "utf-8"}),
        ("binary errors", make_file, (afile, "rb"), {"errors": "strict"}),
        ("binary newline", make_file, (afile, "rb"), {"newline": ""}),
        ("binary newline None+enc", make_file, (afile, "wb"), {"encoding": "latin-1"}),
        ("unbuffered text", make_file, (afile, "r"), {"buffering": 0}),
        ("unbuffered text w", make_file, (afile, "w"), {"buffering": 0}),
        ("unknown encoding", make_file, (afile, "r"), {"encoding": "no-such-codec"}),
        ("non-text encoding", make_file, (afile, "r"), {"encoding": "hex"}),
        ("closefd with name", make_file, (afile, "r"), {"closefd": False}),
        ("negative fd", nothing, (-1, "r"), {}),
        ("bad fd", nothing, (max(map(int, os.listdir("/proc/self/fd"))) + 200, "rb"), {}),
        ("opener -1", make_file, (afile, "r"), {"opener": lambda path, flags: -1}),
        ("opener str", make_file, (afile, "r"), {"opener": lambda path, flags: "3"}),
        ("opener raises", make_file, (afile, "r"),
         {"opener": lambda path, flags: os.open(tmp_path / "missing", flags)}),
    ]
    return cases


def test_open_errors(run, tmp_path):
    """Every failing open() of the list (missing file or parent, not a
    directory, embedded NUL, existing file with "x", directory in every
    mode, bad mode strings and types, bad buffering,
    encoding, errors, newline, text arguments in binary mode, unbuffered
    text, unknown and non-text encodings, closefd=False with a name,
    negative and closed fds, openers that fail): the exception's type,
    message, errno and filename are the built-in's, and no fd is left."""
    async def main():
        fds = open_fds()
        checked = []
        for description, setup, args, kwargs in open_error_cases(tmp_path):
            setup()
            want = builtin_outcome(open, *args, **kwargs)
            assert want[0] == "raised", description
            setup()
            got = await api_outcome(OPEN, *args, **kwargs)
            agree(got, want, description)
            checked.append(description)
        assert (tmp_path / "afile").read_bytes() == b"content\n"
        assert len(checked) > 50
        await settle_fds(fds)

    run(main())


@pytest.mark.parametrize("mode", ["r", "rb", "wb", "a", "r+", "x"])
def test_open_permission_denied(run, tmp_path, mode):
    """A file (and for "x" a directory) that chmod 000 closes: the
    built-in's PermissionError (errno, filename); the file untouched.
    Skipped where access is granted anyway (root, CAP_DAC_OVERRIDE)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    path = locked / "f"
    path.write_bytes(b"secret\n")
    target = tmp_path / "locked" / "new" if mode == "x" else path
    (locked if mode == "x" else path).chmod(0o500 if mode == "x" else 0)
    want = builtin_outcome(open, target, mode)
    if want[0] == "ok":
        want[1].close()
        if mode == "x":
            target.unlink()
        pytest.skip("access granted despite chmod (root?)")

    async def main():
        fds = open_fds()
        agree(await api_outcome(OPEN, target, mode), want, mode)
        assert want[1] is PermissionError
        await settle_fds(fds)

    try:
        run(main())
    finally:
        locked.chmod(0o700)
        path.chmod(0o600)
    assert path.read_bytes() == b"secret\n"
    assert not (locked / "new").exists()


def test_binary_line_buffering_warns(run, tmp_path):
    """buffering=1 in binary mode: the built-in's RuntimeWarning, and the
    file works."""
    path = tmp_path / "f"
    path.write_bytes(b"abc\n")

    async def main():
        with warnings.catch_warnings(record=True) as want:
            warnings.simplefilter("always")
            open(path, "rb", buffering=1).close()
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            async with OPEN(path, "rb", buffering=1) as f:
                assert await f.read() == b"abc\n"
        assert [(w.category, str(w.message)) for w in got] == \
            [(w.category, str(w.message)) for w in want]

    run(main())


READ_METHODS = [("read",), ("read", 1), ("readline",), ("readlines",)]
WRITE_METHODS = [("write", None), ("writelines", [None]), ("truncate",), ("truncate", 0)]


@pytest.mark.parametrize("mode,buffering", [("wb", 0), ("wb", -1), ("ab", -1), ("w", -1),
                                            ("a", 1), ("xb", 7)])
def test_reading_a_write_only_file(run, tmp_path, mode, buffering):
    """read(), read(n), readline(), readlines(), read1() and readinto()
    (binary), async for, and readable(): io.UnsupportedOperation with the
    built-in's message; the file is still usable after."""
    binary = "b" in mode

    async def main():
        async with pair(tmp_path, None, mode, buffering=buffering) as (af, bf):
            calls = list(READ_METHODS)
            if binary:
                calls += [("readinto", bytearray(4))]
                if buffering:
                    calls += [("read1", 3)]
            for name, *args in calls:
                await same(af, bf, name, *args)
            await same_iteration(af, bf)
            await same(af, bf, "readable")
            await same(af, bf, "write", b"still\n" if binary else "still\n")
        same_contents(tmp_path)

    run(main())


@pytest.mark.parametrize("mode,buffering", [("rb", 0), ("rb", -1), ("rb", 7), ("r", -1),
                                            ("r", 1)])
def test_writing_a_read_only_file(run, tmp_path, mode, buffering):
    """write(), writelines(), truncate(), truncate(0) and writable() on a
    file opened for reading: io.UnsupportedOperation as the built-in's;
    the file is unchanged and still readable."""
    binary = "b" in mode

    async def main():
        async with pair(tmp_path, b"keep me\n", mode, buffering=buffering) as (af, bf):
            for name, *args in WRITE_METHODS:
                args = [(b"x" if binary else "x") if a is None else
                        [b"x" if binary else "x"] if a == [None] else a for a in args]
                await same(af, bf, name, *args)
            await same(af, bf, "writable")
            await same(af, bf, "read")
        same_contents(tmp_path)
        assert (tmp_path / "f.api").read_bytes() == b"keep me\n"

    run(main())


CLOSED_CALLS = [("read",), ("read", 1), ("readline",), ("readlines",), ("write", None),
                ("writelines", [None]), ("seek", 0), ("seek", 0, 2), ("tell",), ("truncate",),
                ("flush",), ("readable",), ("writable",), ("seekable",), ("isatty",),
                ("fileno",), ("close",)]


@pytest.mark.parametrize("mode,buffering", [("r+b", 0), ("rb", -1), ("wb", -1), ("r+", -1),
                                            ("w", 1)])
def test_closed_file(run, tmp_path, mode, buffering):
    """Every method of a closed file, and async for: what the built-in's
    does (ValueError; close() again is fine; the built-in checks some
    modes before closedness: read() of a closed write-only file is
    io.UnsupportedOperation, a closed write-only file's readable() answers
    False); closed is True."""
    binary = "b" in mode

    async def main():
        async with pair(tmp_path, b"data\n", mode, buffering=buffering) as (af, bf):
            await af.close()
            bf.close()
            assert af.closed and bf.closed
            calls = list(CLOSED_CALLS)
            if binary:
                calls += [("readinto", bytearray(4))] + ([("read1", 2)] if buffering else [])
            for name, *args in calls:
                args = [(b"x" if binary else "x") if a is None else
                        [b"x" if binary else "x"] if a == [None] else a for a in args]
                await same(af, bf, name, *args)
            await same_iteration(af, bf)
            if ON_URINGLOOP:
                for name in ("fsync", "fdatasync"):
                    with pytest.raises(ValueError):
                        await getattr(af, name)()

    run(main())


@pytest.mark.parametrize("mode,buffering", [("r+b", 0), ("r+b", -1), ("r+", -1), ("w+", 7)])
def test_bad_arguments_of_methods(run, tmp_path, mode, buffering):
    """Seeks before the start, with a bad whence, nonzero relative seeks in
    text, arguments of the wrong type (str to a binary write, bytes to a
    text one, float sizes and offsets): the built-in's exceptions, and
    the file keeps working."""
    binary = "b" in mode

    async def main():
        async with pair(tmp_path, b"0123456789\n" * 10, mode, buffering=buffering) as (af, bf):
            await same(af, bf, "read", 3)
            calls = [("seek", -1), ("seek", -1, 0), ("seek", 0, 7), ("seek", 0, -1),
                     ("seek", 1, 1), ("seek", -1, 2), ("seek", 1, 2), ("seek", "1"),
                     ("read", 1.5), ("read", "1"), ("readline", 2.0), ("readlines", "x"), ("truncate", -1), ("truncate", 1.5),
                     ("write", "str" if binary else b"bytes"), ("write", 5),
                     ("writelines", [1])]
            if binary:
                # (the built-in text file takes a float cookie and returns it)
                calls += [("seek", -1000, 1), ("seek", -1000, 2), ("seek", 1.5)]
            for name, *args in calls:
                await same(af, bf, name, *args)
                await same(af, bf, "tell")
            await same(af, bf, "seek", 0)
            await same(af, bf, "read")
        same_contents(tmp_path)

    run(main())


# -- attributes


ATTRIBUTE_MODES = ["r", "rb", "rt", "br", "r+", "r+b", "rb+", "+r", "w", "wb", "w+", "wb+",
                   "a", "ab", "a+", "ab+", "x", "xb", "x+b", "wt"]


@pytest.mark.parametrize("mode", ATTRIBUTE_MODES)
def test_attributes(run, tmp_path, mode):
    """name, mode, closed (before and after close), readable(), writable(),
    seekable(), isatty(), and in text mode encoding, errors, newlines,
    line_buffering: the built-in's, for a str path, a pathlib.Path, a
    bytes path and an fd; also with encoding and errors given."""
    binary = "b" in mode

    async def main():
        texts = [{}] if binary else [{}, {"encoding": "UTF8", "errors": "replace",
                                          "newline": "\r\n", "buffering": 1}]
        for i, kwargs in enumerate(texts):
            for kind in ("str", "path", "bytes", "fd"):
                pa, pb = tmp_path / f"{kind}{i}.api", tmp_path / f"{kind}{i}.builtin"
                if not mode.startswith("x"):
                    pa.write_bytes(b"x\n")
                    pb.write_bytes(b"x\n")
                if kind == "fd":
                    flags = os.O_RDWR | os.O_CREAT
                    ta, tb = os.open(pa, flags), os.open(pb, flags)
                else:
                    ta, tb = {"str": (str(pa), str(pb)), "path": (pa, pb),
                              "bytes": (os.fsencode(pa), os.fsencode(pb))}[kind]
                bf = open(tb, mode, **kwargs)
                af = await OPEN(ta, mode, **kwargs)
                try:
                    names = ["mode", "closed"] + ([] if binary else [
                        "encoding", "errors", "newlines", "line_buffering"])
                    for name in names:
                        assert getattr(af, name) == getattr(bf, name), (kind, name)
                    if kind == "fd":
                        assert af.name == ta and bf.name == tb
                    else:
                        assert af.name == os.fspath(ta)
                        assert type(af.name) is type(bf.name)
                    for name in ("readable", "writable", "seekable", "isatty"):
                        await same(af, bf, name)
                    assert af.fileno() != bf.fileno()
                finally:
                    await af.close()
                    bf.close()
                assert af.closed and bf.closed

    run(main())


# -- files that are not regular files


def test_proc_and_sys_files(run, tmp_path):
    """/proc/version, /proc/self/cmdline and /proc/filesystems (their size
    says 0) and a /sys file if there is one: read() binary and text,
    readline() to the end, read(10) in turn: as the built-in."""
    paths = ["/proc/version", "/proc/self/cmdline", "/proc/filesystems"]
    paths += [p for p in ("/sys/kernel/mm/transparent_hugepage/enabled",
                          "/sys/devices/system/cpu/online", "/sys/class/net/lo/mtu")
              if os.path.exists(p)][:1]

    async def main():
        for path in paths:
            for mode in ("rb", "r"):
                with open(path, mode) as bf:
                    async with OPEN(path, mode) as af:
                        assert os.stat(path).st_size == 0 or path.startswith("/sys")
                        await same(af, bf, "read")
                        await same(af, bf, "read")
                with open(path, mode) as bf:
                    async with OPEN(path, mode) as af:
                        while await same(af, bf, "readline"):
                            pass
                with open(path, mode) as bf:
                    async with OPEN(path, mode) as af:
                        while await same(af, bf, "read", 10):
                            pass

    run(main())


def test_character_devices_and_pty(run):
    """/dev/zero reads zeros (read(n) and readinto), /dev/null takes writes
    and reads empty; a pty's slave is a tty (isatty() True, seekable()
    False) and lines written to the master are read through the API."""
    async def main():
        fds = open_fds()
        async with OPEN("/dev/zero", "rb") as f:
            assert await f.read(100_000) == bytes(100_000)
            buf = bytearray(b"x" * 10)
            assert await f.readinto(buf) == 10 and buf == bytes(10)
            with open("/dev/zero", "rb") as bf:
                await same(f, bf, "seekable")
                await same(f, bf, "isatty")
        async with OPEN("/dev/null", "w") as f:
            assert await f.write("gone\n" * 1000) == 5000
        async with OPEN("/dev/null", "rb", buffering=0) as f:
            assert await f.read(10) == b""
        master, slave = pty.openpty()
        try:
            name = os.ttyname(slave)
            with open(name, "rb", buffering=0) as bf:
                async with OPEN(name, "rb", buffering=0) as af:
                    for meth in ("isatty", "seekable", "readable", "writable"):
                        await same(af, bf, meth)
                    os.write(master, b"hello\n")
                    assert await wait(af.readline()) == b"hello\n"
        finally:
            os.close(master)
            os.close(slave)
        await settle_fds(fds)

    run(main())


@pytest.mark.parametrize("ends", ["api-api", "api-reader", "api-writer"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "text"])
def test_fifo(run, tmp_path, ends, binary):
    """A FIFO, its two ends opened at once (each open() waits for the
    other): 1 MiB (more than the pipe holds) written in pieces through the
    API to a reader through the API, or with one end the built-in's in a
    thread; read() (binary) or readline() and async for (text) get it all,
    in order, then EOF; no fd is left."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = sample_text(MiB, seed=7)
    data = payload(MiB, seed=7) if binary else text.encode()
    rmode, wmode = ("rb", "wb") if binary else ("r", "w")
    kwargs = {} if binary else {"encoding": "utf-8"}

    def builtin_reader():
        with open(fifo, rmode, **kwargs) as f:
            return f.read()

    def builtin_writer():
        with open(fifo, wmode, **kwargs) as f:
            f.write(data if binary else text)

    async def api_reader():
        async with OPEN(fifo, rmode, **kwargs) as f:
            if binary:
                return await f.read()
            first = [await f.readline() for _ in range(100)]
            rest = [line async for line in f]
            return "".join(first + rest)

    async def api_writer():
        async with OPEN(fifo, wmode, **kwargs) as f:
            for piece in pieces(data if binary else text, WRITE_PATTERN[:-1]):
                await f.write(piece)

    async def main():
        fds = open_fds()
        loop = asyncio.get_running_loop()
        if ends == "api-api":
            got, _ = await wait(asyncio.gather(api_reader(), api_writer()))
        elif ends == "api-reader":
            got, _ = await wait(asyncio.gather(api_reader(),
                                               loop.run_in_executor(None, builtin_writer)))
        else:
            got, _ = await wait(asyncio.gather(loop.run_in_executor(None, builtin_reader),
                                               api_writer()))
        if binary:
            check_bytes(got, data)
        else:
            assert got == text
        await settle_fds(fds)

    run(main())


def test_fifo_is_not_seekable(run, tmp_path):
    """A FIFO's seekable(), tell(), seek() and, in text mode, tell() and
    seek(): the built-in's answers and errors (ESPIPE and the like)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main():
        holder = os.open(fifo, os.O_RDWR)      # both ends: no open() waits
        try:
            for mode, buffering in (("rb", 0), ("rb", -1), ("wb", -1), ("r", -1), ("w", 1)):
                with open(fifo, mode, buffering=buffering) as bf:
                    async with OPEN(fifo, mode, buffering=buffering) as af:
                        for name, *args in [("seekable",), ("tell",), ("seek", 0),
                                            ("seek", 0, 2), ("isatty",)]:
                            await same(af, bf, name, *args)
        finally:
            os.close(holder)

    run(main())


# -- fds, closefd and opener


FD_CASES = {
    "unbuffered read": ("rb", 0, [("read", 10)]),
    "buffered read": ("rb", -1, [("read", 10)]),
    "buffered seek in buffer": ("rb", -1, [("read", 10), ("seek", 5)]),
    "buffered write": ("r+b", -1, [("seek", 3), ("write", b"abc")]),
    "unbuffered write": ("wb", 0, [("write", b"abc")]),
    "text readline": ("r", -1, [("readline",)]),
    "text write": ("r+", -1, [("seek", 0, 2), ("write", "tail\n")]),
    "nothing": ("rb", -1, []),
}


@pytest.mark.parametrize("case", list(FD_CASES))
def test_fd_closefd_false(run, tmp_path, case):
    """A file opened from an fd (at offset 7) with closefd=False: tell()
    starts at 7, name is the fd, the operations give the built-in's
    results; after close() the fd is still open and its offset is where
    the built-in leaves its own; the file contents agree."""
    mode, buffering, ops = FD_CASES[case]

    async def main():
        for p in ("f.api", "f.builtin"):
            (tmp_path / p).write_bytes(b"line one\nline two\nline three\n")
        fa, fb = (os.open(tmp_path / p, os.O_RDWR) for p in ("f.api", "f.builtin"))
        try:
            os.lseek(fa, 7, os.SEEK_SET)
            os.lseek(fb, 7, os.SEEK_SET)
            bf = open(fb, mode, buffering=buffering, closefd=False)
            af = await OPEN(fa, mode, buffering=buffering, closefd=False)
            try:
                assert af.name == fa
                await same(af, bf, "tell")
                for name, *args in ops:
                    await same(af, bf, name, *args)
            finally:
                await af.close()
                bf.close()
            assert os.lseek(fa, 0, os.SEEK_CUR) == os.lseek(fb, 0, os.SEEK_CUR)
            os.fstat(fa)
        finally:
            os.close(fa)
            os.close(fb)
        same_contents(tmp_path)

    run(main())


def test_fd_closefd_true(run, tmp_path):
    """An fd given with closefd=True (the default) is closed by close()."""
    async def main():
        path = tmp_path / "f"
        path.write_bytes(b"abc")
        fd = os.open(path, os.O_RDONLY)
        f = await OPEN(fd, "rb")
        assert await f.read() == b"abc"
        await f.close()
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF

    run(main())


OPENER_MODES = ["r", "rb", "r+", "w", "wb+", "a", "ab+", "x", "xb"]


def test_opener(run, tmp_path):
    """opener= gets the path and the same flags the built-in passes in
    every mode (O_CLOEXEC included); the fd it returns is the file's
    (here: opened relative to a directory fd); name is the path."""
    async def main():
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for mode in OPENER_MODES:
                seen = {"api": [], "builtin": []}

                def opener(who):
                    def call(path, flags):
                        seen[who].append((path, flags))
                        return os.open(os.path.basename(path), flags, 0o644, dir_fd=dfd)
                    return call

                for who in ("api", "builtin"):
                    p = tmp_path / f"{mode}.{who}"
                    if not mode.startswith("x"):
                        p.write_bytes(b"before\n")
                bf = open(str(tmp_path / f"{mode}.builtin"), mode, opener=opener("builtin"))
                af = await OPEN(str(tmp_path / f"{mode}.api"), mode, opener=opener("api"))
                try:
                    assert af.name == str(tmp_path / f"{mode}.api")
                    for name, *args in [("tell",), ("readable",), ("writable",)]:
                        await same(af, bf, name, *args)
                    if "r" in mode or "+" in mode:
                        await same(af, bf, "seek", 0)
                        await same(af, bf, "read")
                    if "r" not in mode or "+" in mode:
                        await same(af, bf, "write", b"new\n" if "b" in mode else "new\n")
                finally:
                    await af.close()
                    bf.close()
                assert [flags for _, flags in seen["api"]] == \
                    [flags for _, flags in seen["builtin"]], mode
                assert seen["api"][0][0] == str(tmp_path / f"{mode}.api")
                assert (tmp_path / f"{mode}.api").read_bytes() == \
                    (tmp_path / f"{mode}.builtin").read_bytes()
        finally:
            os.close(dfd)

    run(main())


# -- paths that change


def test_open_sees_the_filesystem_as_it_is_now(run, tmp_path, monkeypatch):
    """A path opened, then unlinked and made again with other bytes,
    renamed over, replaced by a directory, by a symlink (absolute,
    relative, dangling, a loop), given with a trailing slash, then a
    relative path after chdir: each open() and read() answers as the
    built-in's at that moment (no stale answer from an earlier open)."""
    path = tmp_path / "f"
    other = tmp_path / "other"

    def builtin_read(p, mode):
        with open(p, mode) as f:
            return f.read()

    async def api_read(p, mode):
        async with OPEN(p, mode) as f:
            return await f.read()

    async def check(what, p=path):
        for mode in ("rb", "r"):
            for _ in range(2):
                agree(await api_outcome(api_read, p, mode), builtin_outcome(builtin_read, p, mode),
                      f"{what} {mode}")

    async def main():
        path.write_bytes(b"one")
        await check("first")
        path.unlink()
        await check("unlinked")
        path.write_bytes(b"two, longer")
        await check("made again")
        other.write_bytes(b"renamed over")
        other.rename(path)
        await check("renamed over")
        path.unlink()
        path.mkdir()
        await check("a directory")
        path.rmdir()
        other.write_bytes(b"target")
        path.symlink_to(other)
        await check("absolute symlink")
        path.unlink()
        path.symlink_to("other")
        await check("relative symlink")
        other.unlink()
        await check("dangling symlink")
        path.unlink()
        path.symlink_to(path)
        await check("symlink loop")
        path.unlink()
        path.write_bytes(b"plain again")
        await check("trailing slash", str(path) + "/")
        await check("plain again")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "f").write_bytes(b"in sub")
        monkeypatch.chdir(tmp_path)
        await check("relative", "f")
        monkeypatch.chdir(tmp_path / "sub")
        await check("relative after chdir", "f")
        await check("dot dot", "../f")

    run(main())


# -- fsync, helpers, coroutines, order


@uringloop_only
@pytest.mark.parametrize("mode", ["wb", "w", "r+b", "rb"])
def test_fsync_fdatasync(run, tmp_path, mode):
    """fsync() and fdatasync() write out what is buffered first (the
    built-in then reads it) and return None; on a read-only file they
    work too, as os.fsync does."""
    path = tmp_path / "f"
    path.write_bytes(b"before\n")

    async def main():
        async with OPEN(path, mode) as f:
            if "w" in mode or "+" in mode:
                await f.write(b"synced\n" if "b" in mode else "synced\n")
            assert await f.fsync() is None
            assert await f.fdatasync() is None
            expected = b"before\n" if mode == "rb" else b"synced\n"
            assert path.read_bytes().startswith(expected)

    run(main())


@uringloop_only
def test_whole_file_helpers(run, tmp_path):
    """write_bytes, write_text, read_bytes, read_text as pathlib.Path's
    (return values, the bytes written with encoding, errors and newline,
    the text read with them), errors included (missing file, directory,
    str given to write_bytes and bytes to write_text)."""
    async def main():
        pa, pb = tmp_path / "api", tmp_path / "builtin"
        data = payload(100_000, seed=9)
        assert await uringloop.write_bytes(pa, data) == pb.write_bytes(data)
        check_bytes(pa.read_bytes(), pb.read_bytes())
        check_bytes(await uringloop.read_bytes(pa), pb.read_bytes())
        assert await uringloop.write_bytes(pa, memoryview(bytearray(b"view"))) == 4
        assert await uringloop.read_bytes(pa) == b"view"
        text = "héllo\nwörld\r\n€\r" * 1000
        for kwargs in [{}, {"encoding": "latin-1", "errors": "replace"},
                       {"encoding": "utf-16"}, {"encoding": "utf-8", "newline": "\r\n"},
                       {"encoding": "utf-8", "newline": ""}]:
            assert await uringloop.write_text(pa, text, **kwargs) == \
                pb.write_text(text, **kwargs)
            check_bytes(pa.read_bytes(), pb.read_bytes())
        pa.write_bytes(BAD_UTF8 + b"\r\nx\r")
        for kwargs in [{"encoding": "utf-8", "errors": "replace"},
                       {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""},
                       {"encoding": "latin-1", "newline": "\r"}, {"encoding": "utf-8"}]:
            want = builtin_outcome(_read_text, pa, **kwargs)
            agree(await api_outcome(uringloop.read_text, pa, **kwargs), want, kwargs)
        missing, adir = tmp_path / "missing", tmp_path / "adir"
        adir.mkdir()
        for func, args, builtin in [
            (uringloop.read_bytes, (missing,), lambda: missing.read_bytes()),
            (uringloop.read_text, (str(missing),), lambda: pathlib.Path(str(missing)).read_text()),
            (uringloop.read_bytes, (adir,), lambda: adir.read_bytes()),
            (uringloop.write_bytes, (adir, b"x"), lambda: adir.write_bytes(b"x")),
            (uringloop.write_text, (pa, b"bytes"), lambda: pa.write_text(b"bytes")),
            (uringloop.write_bytes, (pa, "str"), lambda: pa.write_bytes("str")),
        ]:
            agree(await api_outcome(func, *args), builtin_outcome(builtin), func.__name__)

    run(main())


def _read_text(path, encoding=None, errors=None, newline=None):
    with open(path, encoding=encoding, errors=errors, newline=newline) as f:
        return f.read()


COROUTINE_CALLS = [("read",), ("read1",), ("readinto", bytearray(1)), ("readline",),
                   ("readlines",), ("write", b""), ("writelines", []), ("seek", 0), ("tell",),
                   ("truncate",), ("flush",), ("fsync",), ("fdatasync",), ("readable",),
                   ("writable",), ("seekable",), ("isatty",), ("close",)]


@uringloop_only
@pytest.mark.parametrize("mode", ["r+b", "r+"])
def test_methods_are_coroutines_but_fileno(run, tmp_path, mode):
    """Every method but fileno() returns an awaitable (what it does happens
    when awaited); fileno() gives the fd at once."""
    path = tmp_path / "f"
    path.write_bytes(b"abc\n")

    async def main():
        async with OPEN(path, mode) as f:
            assert isinstance(f.fileno(), int)
            for name, *args in COROUTINE_CALLS:
                if "b" not in mode:
                    if name in ("read1", "readinto"):
                        continue
                    args = ["" if a == b"" else a for a in args]
                aw = getattr(f, name)(*args)
                assert inspect.isawaitable(aw), name
                await aw
            assert f.closed

    run(main())


@uringloop_only
@pytest.mark.parametrize("mode,buffering", [("r+b", 0), ("r+b", -1), ("r+", -1)])
def test_calls_made_at_once_take_turns(run, tmp_path, mode, buffering):
    """Calls started together on one file object (reads, a write, seeks,
    tell) run one at a time in the order made: the results are what the
    built-in gives for the same calls one after the other."""
    data = b"0123456789abcdef\n" * 2000
    calls = [("read", 5), ("read", 3), ("tell",), ("seek", 100), ("readline",), ("read", 7),
             ("write", "WRITTEN"), ("tell",), ("seek", 0), ("read", 20), ("seek", 0, 2),
             ("tell",)]
    binary = "b" in mode

    async def main():
        async with pair(tmp_path, data, mode, buffering=buffering) as (af, bf):
            calls_ = [(n, *[a.encode() if binary and isinstance(a, str) else a for a in args])
                      for n, *args in calls]
            got = await asyncio.gather(*(getattr(af, n)(*args) for n, *args in calls_))
            want = [getattr(bf, n)(*args) for n, *args in calls_]
            assert got == want
        same_contents(tmp_path)

    run(main())


# -- cancellation


@pytest.mark.parametrize("mode,buffering", [("rb", 0), ("rb", -1), ("r", -1)])
def test_cancelled_read_in_flight(run, tmp_path, mode, buffering):
    """read(n) of a FIFO whose writer has sent nothing cannot complete:
    cancelled, the task is cancelled; close() then works, no fd is left
    once the writer has gone; the loop keeps working (a file round trip,
    and a new read of the FIFO gets what is written)."""
    if IMPL == "aiofiles" and buffering:
        pytest.skip("the built-in BufferedReader's close() waits for the read in its thread")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main():
        fds = open_fds()
        writer = os.open(fifo, os.O_RDWR)       # a writer, so open() does not wait
        try:
            f = await OPEN(fifo, mode, buffering=buffering)
            task = asyncio.create_task(f.read(10))
            await asyncio.sleep(0.05)           # into the kernel (either way, same asserts)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
            await wait(f.close(), 10)
            assert f.closed
            await settle_fds_on(fifo, 1)        # the writer's alone
        finally:
            os.close(writer)
        assert fds_on(fifo) == 0
        await settle_fds(fds)
        path = tmp_path / "after"
        async with OPEN(path, "wb") as g:
            await g.write(b"still working")
        async with OPEN(path, "rb") as g:
            assert await g.read() == b"still working"
        writer = os.open(fifo, os.O_RDWR)
        try:
            async with OPEN(fifo, mode, buffering=buffering) as g:
                os.write(writer, b"0123456789")
                assert await wait(g.read(10)) in (b"0123456789", "0123456789")
        finally:
            os.close(writer)
        await settle_fds(fds)

    run(main())


def test_loop_closed_with_an_open_in_flight(request, loop_kind, new_loop, tmp_path):
    """A loop closed (never run again) while an open() it started is still
    in the kernel: once that open has finished, no fd is left on the file.
    The open is of a FIFO for writing, which waits for a reader; the
    reader comes once the loop has stopped, so the open finishes with an
    fd that no task will ever take.  On uringloop the closing loop drains
    the OPENAT's completion and closes that fd.  asyncio's loop and uvloop
    run the open in the default executor: the thread's fd comes back to a
    closed loop, which drops it (a leak: expected to fail there)."""
    if loop_kind in ("asyncio", "uvloop"):
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="the executor's fd is handed to a closed loop, which drops it"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = new_loop()

    async def opening():
        return await OPEN(fifo, "wb")

    task = loop.create_task(opening())
    loop.run_until_complete(asyncio.sleep(0.05))    # the open waits in the kernel
    assert not task.done()
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)    # lets it finish
    try:
        deadline = time.monotonic() + 5
        while fds_on(fifo) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        loop.close()
        assert fds_on(fifo) == 1                    # the reader's alone
    finally:
        # Where it leaked (the executor's kinds): the thread's fd, and the
        # task, go now, without warnings in later tests.
        executor = getattr(loop, "_default_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
        del task
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") == os.fspath(fifo):
                    os.close(int(fd))


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_cancelled_open_of_a_fifo(run, tmp_path, mode):
    """open() of a FIFO with no writer blocks in the kernel; cancelled,
    the task is cancelled.  Once a writer opens the FIFO (which lets the
    kernel's open finish, if it still waits) the fd count is back to
    where it was (the fd the kernel opened anyway is closed); the loop
    keeps working."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def opening():
        return await OPEN(fifo, mode)

    async def main():
        fds = open_fds()
        task = asyncio.create_task(opening())
        # in the kernel, waiting for a writer (same asserts if wchan is hidden)
        await sleeping_in_kernel("wait_for_partner")
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        writer = os.open(fifo, os.O_RDWR)       # never waits; releases the reader's open
        try:
            # the released open's fd may appear late (its thread runs when
            # the machine lets it): count once that thread is done
            await threads_at_rest()
            await settle_fds_on(fifo, 1)        # the writer's alone
            await settle_fds(fds + 1)
        finally:
            os.close(writer)
        assert fds_on(fifo) == 0
        await settle_fds(fds)
        async with OPEN(tmp_path / "after", "w") as f:
            assert await f.write("ok") == 2

    run(main())
