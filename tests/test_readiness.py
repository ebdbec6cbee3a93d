"""File-descriptor watchers: loop.add_reader(), add_writer(), remove_reader()
and remove_writer().

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop; asyncio is the reference and each assertion was first checked
against it.  What is covered:

- readiness on a pipe, a socketpair and an eventfd: the callback runs with
  its arguments when the fd is readable (writable), again on every loop
  iteration while it stays so (level-triggered, as epoll: an unread byte
  keeps the reader running), not while it is not, and never after remove_*;
- fds given as ints or as objects with fileno(); what remove_* returns;
  replacing a callback; a reader and a writer on one fd, independent;
- callbacks that remove themselves, remove another fd's watcher (ready in
  the same iteration) or add a watcher;
- refusals: objects that are not fds (ValueError), fds that are not open
  (OSError EBADF), files epoll cannot watch, i.e. regular files,
  directories, /dev/null (PermissionError EPERM), fds owned by a transport
  (RuntimeError), a closed loop (RuntimeError; remove_* quietly False);
- an fd closed by its owner while watched: the watch silently goes with it
  (the socket really closes, the peer sees EOF; the callback never runs
  again; a new fd that reuses the number does not trigger it);
- a callback that raises (the loop's exception handler, the watcher lives
  on); the contextvars context callbacks run in; loop.close() with
  watchers left (no fd leaked, the user's fds left open); 200 watchers at
  once; an echo of 1,000 round trips driven by readers alone.

The one difference between asyncio and uvloop here: uvloop's remove_reader()
and remove_writer() return None whatever happened, where asyncio returns
True when a watcher was removed and False otherwise.  `check_removed`
asserts asyncio's answer on every loop but uvloop, and None there.
(uvloop's message for a callback that raised also differs; both begin
"Exception in callback" and name the callback, which is what is asserted.)

asyncio behaviour an io_uring implementation must take care to match:
level-triggered callbacks (a multishot POLL posts on wake-ups, not while
ready); refusals raised synchronously from add_reader (an io_uring POLL
on a regular file succeeds at once, on a closed fd it fails only in its
completion); and close(fd) dropping the watch (an armed io_uring request
holds a reference to the file, which keeps a closed socket open).
"""
import asyncio
import contextvars
import errno
import os
import socket
import tempfile

import pytest

from support import open_fds, settle_fds, wait, until, record_exceptions, HOST

pytestmark = pytest.mark.timeout(30)

EVENTFD_MAX = 0xFFFF_FFFF_FFFF_FFFE    # an eventfd at this count is not writable


# -- helpers


async def iterations(n=10):
    """Let the loop go round n times (each time polling its fds)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def settle():
    """Long enough that a callback due to run would have run: some loop
    iterations, and a short real sleep so every loop polls its fds."""
    await iterations(10)
    await asyncio.sleep(0.02)
    await iterations(5)


def check_removed(loop_kind, result, expected):
    """remove_reader()/remove_writer() return whether a watcher was removed
    (asyncio); uvloop returns None whatever happened."""
    if loop_kind == "uvloop":
        assert result is None
    else:
        assert result is expected


class Pipe:
    """A non-blocking pipe: read end `r`, write end `w` (ints)."""
    name = "pipe"

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def make_readable(self):
        os.write(self.w, b"x")

    def drain(self):
        """Empty the pipe: `r` is no longer readable, `w` writable."""
        try:
            while os.read(self.r, 1 << 16):
                pass
        except BlockingIOError:
            pass

    def fill(self):
        """Fill the pipe: `w` is no longer writable."""
        chunk = b"f" * (1 << 16)
        try:
            while True:
                os.write(self.w, chunk)
        except BlockingIOError:
            pass

    def close(self):
        os.close(self.r)
        os.close(self.w)


class SocketPair(Pipe):
    """A non-blocking AF_UNIX socketpair: `r` receives what `w` sends."""
    name = "socketpair"

    def __init__(self):
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.r, self.w = self.a.fileno(), self.b.fileno()

    def make_readable(self):
        self.b.send(b"x")

    def drain(self):
        try:
            while self.a.recv(1 << 16):
                pass
        except BlockingIOError:
            pass

    def fill(self):
        chunk = b"f" * (1 << 16)
        try:
            while True:
                self.b.send(chunk)
        except BlockingIOError:
            pass

    def close(self):
        self.a.close()
        self.b.close()


class EventFd(Pipe):
    """A non-blocking eventfd: one fd, readable while its count is above
    0, writable while the count is below its maximum."""
    name = "eventfd"

    def __init__(self):
        self.r = self.w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def make_readable(self):
        os.eventfd_write(self.r, 1)

    def drain(self):
        try:
            os.eventfd_read(self.r)      # resets the count to 0
        except BlockingIOError:
            pass

    def fill(self):
        self.drain()
        os.eventfd_write(self.w, EVENTFD_MAX)

    def close(self):
        os.close(self.r)


PAIRS = [Pipe, SocketPair, EventFd]


@pytest.fixture(params=PAIRS, ids=[p.name for p in PAIRS])
def pair(request):
    p = request.param()
    yield p
    p.close()


# -- readiness, level-triggered, on three kinds of fd


def test_reader_runs_while_readable(loop, loop_kind, pair):
    """A reader runs with its arguments once the fd is readable, and again
    on every iteration while it stays readable (an unread byte: level-
    triggered), not once it has been drained, again when readable again,
    and never after remove_reader() even with the byte still unread."""
    errors = record_exceptions(loop)
    calls = []
    state = {"drain": False}

    def on_readable(*args):
        calls.append(args)
        if state["drain"]:
            state["drain"] = False
            pair.drain()

    async def main():
        loop.add_reader(pair.r, on_readable, "r", 1)
        await settle()
        assert calls == [], "reader ran on an fd that was not readable"

        pair.make_readable()
        await wait(until(lambda: calls))
        first = len(calls)
        await iterations(10)
        assert len(calls) - first >= 5, (
            f"an unread byte ran the reader {len(calls) - first} times in 10 "
            "iterations: readiness must be level-triggered")
        assert set(calls) == {("r", 1)}

        state["drain"] = True            # the next call empties the fd
        await wait(until(lambda: not state["drain"]))
        drained = len(calls)
        await settle()
        assert len(calls) == drained, "reader ran after the fd was drained"

        pair.make_readable()
        await wait(until(lambda: len(calls) > drained))

        check_removed(loop_kind, loop.remove_reader(pair.r), True)
        removed = len(calls)
        await settle()
        assert len(calls) == removed, "reader ran after remove_reader()"
        check_removed(loop_kind, loop.remove_reader(pair.r), False)
        assert errors == []

    loop.run_until_complete(main())


def test_writer_runs_while_writable(loop, loop_kind, pair):
    """A writer runs with its arguments while the fd is writable, on every
    iteration, not while the fd is full, and never after remove_writer()."""
    errors = record_exceptions(loop)
    calls = []
    state = {"fill": False}

    def on_writable(*args):
        calls.append(args)
        if state["fill"]:
            state["fill"] = False
            pair.fill()

    async def main():
        pair.fill()
        loop.add_writer(pair.w, on_writable, "w", 2)
        await settle()
        assert calls == [], "writer ran on a full fd"

        pair.drain()
        await wait(until(lambda: calls))
        first = len(calls)
        await iterations(10)
        assert len(calls) - first >= 5, (
            f"a writable fd ran the writer {len(calls) - first} times in 10 "
            "iterations: readiness must be level-triggered")
        assert set(calls) == {("w", 2)}

        state["fill"] = True             # the next call fills the fd
        await wait(until(lambda: not state["fill"]))
        full = len(calls)
        await settle()
        assert len(calls) == full, "writer ran while the fd was full"

        pair.drain()
        await wait(until(lambda: len(calls) > full))

        check_removed(loop_kind, loop.remove_writer(pair.w), True)
        removed = len(calls)
        await settle()
        assert len(calls) == removed, "writer ran after remove_writer()"
        check_removed(loop_kind, loop.remove_writer(pair.w), False)
        assert errors == []

    loop.run_until_complete(main())


# -- fds, return values, replacing, reader and writer on one fd


class FileNo:
    """Any object with a fileno() method is accepted where an fd is."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def test_fd_as_int_or_object_with_fileno(loop, loop_kind):
    """An fd may be given as an int or an object with fileno() (a socket,
    or any class), and removed either way: the watch is on the fd."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    r, w = os.pipe()
    got = []

    async def main():
        loop.add_reader(a, got.append, "socket object")
        loop.add_reader(FileNo(r), got.append, "fileno object")
        loop.add_writer(FileNo(w), got.append, "fileno writer")
        b.send(b"x")
        os.write(w, b"x")
        await wait(until(lambda: {"socket object", "fileno object", "fileno writer"} <= set(got)))
        check_removed(loop_kind, loop.remove_reader(a.fileno()), True)     # added as object
        check_removed(loop_kind, loop.remove_reader(r), True)              # added as FileNo
        check_removed(loop_kind, loop.remove_writer(FileNo(w)), True)      # another object
        check_removed(loop_kind, loop.remove_reader(a), False)
        check_removed(loop_kind, loop.remove_writer(w), False)

        got.clear()
        loop.add_reader(a.fileno(), got.append, "int")
        await wait(until(lambda: got))
        check_removed(loop_kind, loop.remove_reader(a), True)              # added as int
        n = len(got)
        await settle()
        assert len(got) == n
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()
        os.close(r)
        os.close(w)


def test_remove_returns_whether_something_was_removed(loop, loop_kind):
    """remove_reader()/remove_writer() are True when they removed a watcher,
    False for an fd never registered, already removed, or watched only in
    the other direction (which stays watched).  uvloop: always None."""
    a, b = socket.socketpair()
    r, w = os.pipe()
    got = []
    try:
        check_removed(loop_kind, loop.remove_reader(r), False)            # never registered
        check_removed(loop_kind, loop.remove_writer(w), False)
        check_removed(loop_kind, loop.remove_writer(a), False)
        loop.add_reader(a, got.append, "reader")
        check_removed(loop_kind, loop.remove_writer(a), False)            # only a reader
        b.send(b"x")
        loop.run_until_complete(wait(until(lambda: got)))                 # reader still there
        check_removed(loop_kind, loop.remove_reader(a), True)
        check_removed(loop_kind, loop.remove_reader(a), False)            # already removed
        loop.add_writer(w, got.append, "writer")
        check_removed(loop_kind, loop.remove_reader(w), False)            # only a writer
        check_removed(loop_kind, loop.remove_writer(w), True)
        check_removed(loop_kind, loop.remove_writer(w), False)
    finally:
        a.close()
        b.close()
        os.close(r)
        os.close(w)


def test_replacing_the_callback(loop, loop_kind):
    """add_reader()/add_writer() on an fd already watched replace the
    callback and its arguments: the new one runs, the old never again."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    got = []

    async def main():
        loop.add_reader(a, got.append, "old reader")
        loop.add_reader(a, got.append, "new reader")
        loop.add_writer(a, got.append, "old writer")
        loop.add_writer(a, got.append, "new writer")
        b.send(b"x")
        await wait(until(lambda: got.count("new reader") >= 3 and got.count("new writer") >= 3))
        assert set(got) == {"new reader", "new writer"}
        check_removed(loop_kind, loop.remove_reader(a), True)
        check_removed(loop_kind, loop.remove_writer(a), True)
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


def test_replacing_a_callback_already_due(loop, loop_kind):
    """Two fds become readable in the same iteration; whichever callback
    runs first replaces the other fd's callback.  The replaced one must not
    run (though its fd was ready), the replacement must."""
    errors = record_exceptions(loop)
    p1, p2 = socket.socketpair(), socket.socketpair()
    got = []

    def replacement(name, sock):
        got.append(("new", name))
        loop.remove_reader(sock)

    def original(name, sock, other_name, other_sock):
        got.append(("old", name))
        loop.remove_reader(sock)
        loop.add_reader(other_sock, replacement, other_name, other_sock)

    async def main():
        loop.add_reader(p1[0], original, "p1", p1[0], "p2", p2[0])
        loop.add_reader(p2[0], original, "p2", p2[0], "p1", p1[0])
        p1[1].send(b"x")
        p2[1].send(b"x")
        await wait(until(lambda: len(got) >= 2))
        await settle()
        first = got[0][1]
        other = "p2" if first == "p1" else "p1"
        assert got == [("old", first), ("new", other)]
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        for s in p1 + p2:
            s.close()


def test_reader_and_writer_on_one_fd_are_independent(loop, loop_kind):
    """A reader and a writer on the same socket: both run; removing one
    leaves the other running, and re-adding one does not disturb the other."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    got = []

    async def main():
        b.send(b"x")                      # never read: `a` stays readable
        loop.add_reader(a, got.append, "r")
        loop.add_writer(a, got.append, "w")
        await wait(until(lambda: got.count("r") >= 3 and got.count("w") >= 3))

        check_removed(loop_kind, loop.remove_writer(a), True)
        got.clear()
        await wait(until(lambda: got.count("r") >= 5))
        assert set(got) == {"r"}, "the writer ran after remove_writer()"

        loop.add_writer(a, got.append, "w2")
        check_removed(loop_kind, loop.remove_reader(a), True)
        got.clear()
        await wait(until(lambda: got.count("w2") >= 5))
        assert set(got) == {"w2"}, "the reader ran after remove_reader()"

        loop.add_reader(a, got.append, "r2")
        await wait(until(lambda: "r2" in got))
        check_removed(loop_kind, loop.remove_reader(a), True)
        check_removed(loop_kind, loop.remove_writer(a), True)
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


# -- callbacks that change the watchers


def test_callback_removing_itself_runs_once(loop, loop_kind):
    """A reader (writer) that removes itself runs exactly once, although its
    fd stays readable (writable)."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    got = []

    def reader():
        got.append("r")
        check_removed(loop_kind, loop.remove_reader(a), True)

    def writer():
        got.append("w")
        check_removed(loop_kind, loop.remove_writer(a), True)

    async def main():
        b.send(b"x")
        loop.add_reader(a, reader)
        loop.add_writer(a, writer)
        await wait(until(lambda: len(got) >= 2))
        await settle()
        assert sorted(got) == ["r", "w"]
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


def test_callback_removing_another_fds_watcher(loop, loop_kind):
    """Two fds become readable in the same iteration; each callback removes
    both watchers.  Only the first to run may run: the other fd's watcher is
    gone before its (already due) callback could."""
    errors = record_exceptions(loop)
    p1, p2 = socket.socketpair(), socket.socketpair()
    got = []

    def callback(name):
        got.append(name)
        loop.remove_reader(p1[0])
        loop.remove_reader(p2[0])

    async def main():
        loop.add_reader(p1[0], callback, "p1")
        loop.add_reader(p2[0], callback, "p2")
        p1[1].send(b"x")
        p2[1].send(b"x")
        await wait(until(lambda: got))
        await settle()
        assert got in (["p1"], ["p2"])
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        for s in p1 + p2:
            s.close()


def test_watcher_added_from_a_callback_fires(loop, loop_kind):
    """A reader's callback adds a reader and a writer on other fds (already
    ready); both fire, with their arguments."""
    errors = record_exceptions(loop)
    p1, p2 = socket.socketpair(), socket.socketpair()
    got = []

    def second(*args):
        got.append(args)

    def first():
        got.append("first")
        loop.remove_reader(p1[0])
        loop.add_reader(p2[0], second, "added reader", 7)
        loop.add_writer(p2[1], second, "added writer", 8)

    async def main():
        p2[1].send(b"x")                  # p2[0] readable before it is watched
        loop.add_reader(p1[0], first)
        p1[1].send(b"x")
        await wait(until(lambda: ("added reader", 7) in got and ("added writer", 8) in got))
        assert got[0] == "first" and got.count("first") == 1
        check_removed(loop_kind, loop.remove_reader(p2[0]), True)
        check_removed(loop_kind, loop.remove_writer(p2[1]), True)
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        for s in p1 + p2:
            s.close()


# -- what is refused


METHODS = ["add_reader", "add_writer", "remove_reader", "remove_writer"]


def call(loop, method, fd):
    if method.startswith("add"):
        return getattr(loop, method)(fd, lambda: None)
    return getattr(loop, method)(fd)


@pytest.mark.parametrize("method", METHODS)
def test_not_a_file_descriptor(loop, loop_kind, method):
    """Objects that are no fd: ValueError "Invalid file object: ..."; a
    negative fd, or a closed socket (fileno() -1): ValueError "Invalid file
    descriptor: -1".  Same on asyncio and uvloop, for all four methods."""
    for bad in (object(), "3", None, 1.5, b"3"):
        with pytest.raises(ValueError, match="^Invalid file object: "):
            call(loop, method, bad)
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        call(loop, method, -1)
    with pytest.raises(ValueError, match="^Invalid file descriptor: -5$"):
        call(loop, method, FileNo(-5))
    sock = socket.socket()
    sock.close()
    with pytest.raises(ValueError, match="^Invalid file descriptor: -1$"):
        call(loop, method, sock)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_fd_not_open(loop, loop_kind, method):
    """An fd number with no open file behind it (just closed, or far beyond
    any open fd): OSError EBADF from add_reader/add_writer, raised there and
    then; nothing stays registered (remove_* finds nothing)."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for fd in (r, 1_000_000):
        with pytest.raises(OSError) as info:
            call(loop, method, fd)
        assert info.value.errno == errno.EBADF
        check_removed(loop_kind, loop.remove_reader(fd), False)
        check_removed(loop_kind, loop.remove_writer(fd), False)


@pytest.mark.parametrize("what", ["regular-file", "directory", "dev-null"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_file_epoll_cannot_watch(loop, loop_kind, tmp_path, what, method):
    """A regular file, a directory or /dev/null (files without a poll
    method, always "ready"): epoll refuses them, and so add_reader and
    add_writer raise PermissionError (EPERM), as an fd or a file object;
    nothing stays registered.  Same on asyncio and uvloop."""
    if what == "regular-file":
        path = tmp_path / "regular"
        path.write_bytes(b"data")
        fd = os.open(path, os.O_RDWR)
    elif what == "directory":
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        fd = os.open(os.devnull, os.O_RDWR)
    try:
        for target in (fd, FileNo(fd)):
            with pytest.raises(PermissionError) as info:
                call(loop, method, target)
            assert info.value.errno == errno.EPERM
            check_removed(loop_kind, loop.remove_reader(fd), False)
            check_removed(loop_kind, loop.remove_writer(fd), False)
    finally:
        os.close(fd)


def test_regular_file_object(loop, loop_kind):
    """A Python file object of a regular file: PermissionError too."""
    with tempfile.TemporaryFile() as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f, lambda: None)
        with pytest.raises(PermissionError):
            loop.add_writer(f, lambda: None)
        check_removed(loop_kind, loop.remove_reader(f), False)


def test_fd_owned_by_a_transport(loop, loop_kind):
    """The socket of a connection made by open_connection() belongs to its
    transport: all four methods raise RuntimeError "File descriptor ... is
    used by transport ...", for the fd and for the transport's socket
    object.  Same on asyncio and uvloop."""
    errors = record_exceptions(loop)

    async def main():
        served = loop.create_future()

        async def serve(reader, writer):
            await reader.read()           # until the client closes
            writer.close()
            await writer.wait_closed()
            served.set_result(None)

        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await wait(asyncio.open_connection(HOST, port))
        sock = writer.get_extra_info("socket")
        fd = sock.fileno()
        for method in METHODS:
            for target in (fd, sock):
                with pytest.raises(RuntimeError, match="^File descriptor .* is used by transport"):
                    call(loop, method, target)
        writer.close()
        await wait(writer.wait_closed())
        await wait(served)
        server.close()
        await wait(server.wait_closed())
        assert errors == []

    loop.run_until_complete(main())


def test_closed_loop(loop, loop_kind):
    """On a closed loop add_reader/add_writer raise RuntimeError "Event loop
    is closed"; remove_reader/remove_writer quietly return False (asyncio
    checks is_closed() first), even for an fd watched when the loop closed.
    uvloop: the same, with None."""
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, lambda: None)
        loop.add_writer(a, lambda: None)
        loop.close()
        for method in ("add_reader", "add_writer"):
            with pytest.raises(RuntimeError, match="^Event loop is closed$"):
                call(loop, method, b)
            with pytest.raises(RuntimeError, match="^Event loop is closed$"):
                call(loop, method, a)
        for method in ("remove_reader", "remove_writer"):
            check_removed(loop_kind, call(loop, method, a), False)
            check_removed(loop_kind, call(loop, method, b), False)
    finally:
        a.close()
        b.close()


# -- fds closed while watched


def reopen_as(fd):
    """A new pipe whose read end has the number `fd`, closed just before
    (nothing ran in between: the number is still free).  os.pipe() takes
    the lowest free numbers; if a lower one was free, dup2 moves it."""
    r, w = os.pipe()
    if r != fd:
        os.dup2(r, fd, inheritable=False)
        os.close(r)
    os.set_blocking(fd, False)
    return fd, w


def test_closed_fd_number_reused(loop, loop_kind):
    """The owner closes a watched pipe's read end without remove_reader():
    the watch silently goes with it (epoll drops a closed file).  A new pipe
    given the same fd number, readable, must not run the old callback.
    remove_reader(fd) then returns True (asyncio still had the fd in its
    table; uvloop: None), and add_reader() on the new fd works.

    (add_reader() on the new fd *before* remove_reader() is left out: on
    asyncio and uvloop alike it only swaps the callback of the stale entry
    and the new fd is never polled, a hang nobody should rely on.)"""
    errors = record_exceptions(loop)
    old = []
    new = []

    async def main():
        r1, w1 = os.pipe()
        loop.add_reader(r1, old.append, "old")
        await settle()
        os.close(r1)                      # closed by its owner, still "watched"
        r2, w2 = reopen_as(r1)
        try:
            os.write(w2, b"new")          # the new fd is readable at once
            await settle()
            assert old == [], "a closed fd's callback ran for the fd that reused its number"
            check_removed(loop_kind, loop.remove_reader(r1), True)
            await settle()
            assert old == []

            def on_new():
                new.append(os.read(r2, 100))
                check_removed(loop_kind, loop.remove_reader(r2), True)

            loop.add_reader(r2, on_new)
            await wait(until(lambda: new))
            await settle()
            assert new == [b"new"] and old == []
        finally:
            os.close(r2)
            os.close(w2)
            os.close(w1)
        assert errors == []

    loop.run_until_complete(main())


@pytest.mark.parametrize("direction", ["reader", "writer"])
def test_closing_a_watched_socket_closes_it(loop, loop_kind, direction):
    """The owner closes a socket it watches (for reading, or for writing)
    without remove_*: the socket really closes at once (the peer reads EOF:
    the loop holds no reference to it), and the callback never runs again
    (bar one already due in the iteration of the close), not even when the
    peer then closes its end.  remove_* afterwards finds the stale entry
    (asyncio: True; uvloop: None).

    (A reader *and* a writer on the closed fd are left out: asyncio's
    remove_reader() then raises OSError EBADF from epoll_ctl(MOD) and
    drops both, an accident of its selector that uvloop does not share.)"""
    errors = record_exceptions(loop)
    calls = []

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        fd = a.fileno()
        if direction == "reader":
            loop.add_reader(fd, lambda: calls.append(a.recv(10)))
            b.send(b"1")
            await wait(until(lambda: calls))
            assert calls == [b"1"]
        else:
            loop.add_writer(fd, calls.append, "w")
            await wait(until(lambda: len(calls) >= 2))
        a.close()
        await settle()
        seen = len(calls)
        try:
            assert b.recv(10) == b"", "the peer did not see EOF"
        except BlockingIOError:
            pytest.fail("the peer did not see EOF: the closed socket is kept open by the loop")
        finally:
            b.close()
        await settle()
        assert len(calls) == seen, "a closed fd's callback ran"
        remove = loop.remove_reader if direction == "reader" else loop.remove_writer
        check_removed(loop_kind, remove(fd), True)
        assert errors == []

    loop.run_until_complete(main())


# -- callbacks: errors and context


def test_callback_that_raises(loop, loop_kind):
    """An exception from a reader goes to the loop's exception handler:
    context "message" begins "Exception in callback" and names the callback
    (asyncio: "Exception in callback boom('x') at ..."; uvloop:
    "Exception in callback <function ...boom at ...>"), "exception" is the
    exception, "handle" is there.  The watcher stays: it runs again while
    the fd is readable, and a writer raising is handled the same way."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    a.setblocking(False)
    calls = []

    def boom(arg):
        calls.append(arg)
        if len(calls) == 1:
            raise ZeroDivisionError(arg)
        a.recv(10)                       # second call: drain, stop raising

    def writer_boom():
        loop.remove_writer(a)
        raise KeyError("writer")

    async def main():
        loop.add_reader(a, boom, "x")
        b.send(b"y")
        await wait(until(lambda: len(calls) >= 2))
        await settle()
        assert calls == ["x", "x"]
        assert len(errors) == 1
        context = errors[0]
        assert context["message"].startswith("Exception in callback ")
        assert "boom" in context["message"]
        assert isinstance(context["exception"], ZeroDivisionError)
        assert context["exception"].args == ("x",)
        assert "handle" in context

        b.send(b"z")                     # the reader is still there
        await wait(until(lambda: len(calls) >= 3))
        check_removed(loop_kind, loop.remove_reader(a), True)

        loop.add_writer(a, writer_boom)
        await wait(until(lambda: len(errors) >= 2))
        await settle()
        assert len(errors) == 2
        assert isinstance(errors[1]["exception"], KeyError)
        assert errors[1]["message"].startswith("Exception in callback ")

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()


VAR = contextvars.ContextVar("readiness_var", default="unset")


def test_callbacks_run_in_the_context_of_registration(loop, loop_kind):
    """As asyncio's Handle: add_reader/add_writer copy the current context;
    the callback sees the values set before the call, not later ones, and
    what it sets stays in that copy: it carries over to the next run of the
    same watcher, and never leaks out to the registering code or to another
    watcher.  Same on asyncio and uvloop."""
    errors = record_exceptions(loop)
    a, b = socket.socketpair()
    seen = {"reader": [], "writer": []}

    def callback(name, remove):
        seen[name].append(VAR.get())
        VAR.set(f"{name} run {len(seen[name])}")
        if len(seen[name]) == 3:
            remove(a)

    async def main():
        VAR.set("at add_reader")
        loop.add_reader(a, callback, "reader", loop.remove_reader)
        VAR.set("at add_writer")
        loop.add_writer(a, callback, "writer", loop.remove_writer)
        VAR.set("after")
        b.send(b"x")
        await wait(until(lambda: len(seen["reader"]) == 3 and len(seen["writer"]) == 3))
        await settle()
        assert seen["reader"] == ["at add_reader", "reader run 1", "reader run 2"]
        assert seen["writer"] == ["at add_writer", "writer run 1", "writer run 2"]
        assert VAR.get() == "after"
        assert errors == []

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()
    assert VAR.get() == "unset"


# -- closing the loop, many watchers, an echo


def test_close_with_watchers_registered(new_loop, loop_kind):
    """loop.close() with readers and writers still registered on a pipe, a
    socketpair and an eventfd: no error, every fd the loop made is closed,
    and the user's fds stay open and usable (the loop closes none of them).
    A first loop is made and closed before counting (libuv opens a
    process-wide pipe with its first loop)."""
    new_loop().close()
    baseline = open_fds()
    loop = new_loop()
    pairs = [Pipe(), SocketPair(), EventFd()]
    try:
        for p in pairs:
            p.make_readable()
            loop.add_reader(p.r, lambda: None)
            loop.add_writer(p.w, lambda: None)
        loop.run_until_complete(settle())
        loop.close()
        user_fds = 2 + 2 + 1
        assert open_fds() == baseline + user_fds
        for p in pairs:
            os.fstat(p.r)
            os.fstat(p.w)
        pairs[0].drain()
        os.write(pairs[0].w, b"still")
        assert os.read(pairs[0].r, 10) == b"still"
        pairs[1].drain()
        pairs[1].b.send(b"open")
        assert pairs[1].a.recv(10) == b"open"
        pairs[2].drain()
        os.eventfd_write(pairs[2].w, 5)
        assert os.eventfd_read(pairs[2].r) == 5
    finally:
        for p in pairs:
            p.close()
    assert open_fds() == baseline


def test_many_watchers(loop, loop_kind):
    """200 socketpairs, a reader on each, different data written to each
    (some before, some after the reader is added): every callback gets its
    own socket and its own bytes, once; no fd leaks."""
    errors = record_exceptions(loop)
    count = 200

    async def main():
        baseline = open_fds()
        pairs = [socket.socketpair() for _ in range(count)]
        want = [f"pair {i} ".encode() * (1 + i % 7) for i in range(count)]
        got = [bytearray() for _ in range(count)]
        done = set()

        def on_readable(i, sock):
            data = sock.recv(1 << 16)
            got[i] += data
            if len(got[i]) >= len(want[i]):
                done.add(i)
                loop.remove_reader(sock)

        try:
            for i, (a, b) in enumerate(pairs):
                a.setblocking(False)
                if i % 2:
                    b.send(want[i])
                loop.add_reader(a, on_readable, i, a)
            for i, (a, b) in enumerate(pairs):
                if not i % 2:
                    b.send(want[i])
            await wait(until(lambda: len(done) == count))
            await settle()
            assert [bytes(g) for g in got] == want
        finally:
            for a, b in pairs:
                loop.remove_reader(a)
                a.close()
                b.close()
        await settle_fds(baseline)
        assert errors == []

    loop.run_until_complete(main())


def test_echo_driven_by_readers(loop, loop_kind):
    """A socketpair with a reader on each end: one end echoes what it reads
    back through the pair, the other checks each echo and sends the next
    message.  1,000 round trips of 1 byte to 4 KiB, each payload checked."""
    errors = record_exceptions(loop)
    rounds = 1000

    async def main():
        done = loop.create_future()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        messages = [bytes([i % 251]) * (1 + (i * 37) % 4096) for i in range(rounds)]
        state = {"i": 0, "buf": bytearray(), "echoed": 0}

        def echo():                       # the far end
            data = a.recv(1 << 16)
            state["echoed"] += len(data)
            a.sendall(data)

        def client():
            state["buf"] += b.recv(1 << 16)
            want = messages[state["i"]]
            if len(state["buf"]) < len(want):
                return
            if bytes(state["buf"]) != want:
                done.set_exception(AssertionError(f"round {state['i']}: wrong echo"))
                loop.remove_reader(b)
                return
            state["buf"].clear()
            state["i"] += 1
            if state["i"] == rounds:
                loop.remove_reader(b)
                done.set_result(None)
            else:
                b.sendall(messages[state["i"]])

        try:
            loop.add_reader(a, echo)
            loop.add_reader(b, client)
            b.sendall(messages[0])
            await wait(done)
            assert state["i"] == rounds
            assert state["echoed"] == sum(map(len, messages))
        finally:
            loop.remove_reader(a)
            loop.remove_reader(b)
            a.close()
            b.close()
        assert errors == []

    loop.run_until_complete(main())
