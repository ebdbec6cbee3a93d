"""Transport semantics that asyncio and uvloop share beyond moving bytes.

Every test runs on every loop of conftest.LOOP_KINDS and asserts one
behaviour for all of them.  Where asyncio and uvloop differ in a detail, the
assertion is narrowed to what they share and a comment says where they part.

1. contextvars: a protocol's callbacks run in the context that was current
   when its transport was made (by create_server, create_connection,
   connect_accepted_socket or their Unix forms), whatever the context of
   the code that runs the loop or of the other end of the connection.
2. Server.close(): the listening sockets are closed at once (fileno() is -1
   right after close()); after wait_closed() the address refuses
   connections and no file descriptor is left open.
3. A socket handed to a transport belongs to it: sock_recv, sock_recv_into
   and a sock_sendall that has to wait raise RuntimeError("... is used by
   transport ...") while the transport lives; once connection_lost has run
   the socket object is closed and its fd number is free for anyone.
4. Data that arrives while reading is paused is held for whichever protocol
   is current at resume_reading(): after set_protocol() (Protocol to
   BufferedProtocol and back) the new protocol gets exactly the bytes the
   old one did not, in order, then EOF; the old one gets nothing after the
   pause.
"""
import asyncio
import contextlib
import contextvars
import functools
import os
import random
import socket
import sys

import pytest

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB
HOST = "127.0.0.1"
# Generous for what should happen at once, short enough that a loop which
# lacks a feature fails quickly instead of stalling the file.
DEADLINE = 5.0
FAMILIES = ("tcp", "unix")

VAR = contextvars.ContextVar("test_transport_semantics")


# -- helpers


async def wait(aw, timeout=DEADLINE):
    return await asyncio.wait_for(aw, timeout)


async def until(predicate, timeout=DEADLINE):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.005)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def address_of(server):
    return server.sockets[0].getsockname()


async def open_server(family, factory, tmp_path, name="server.sock"):
    loop = asyncio.get_running_loop()
    if family == "tcp":
        return await loop.create_server(factory, HOST, 0)
    return await loop.create_unix_server(factory, str(tmp_path / name))


async def open_client(family, factory, address):
    loop = asyncio.get_running_loop()
    if family == "tcp":
        return await loop.create_connection(factory, *address)
    return await loop.create_unix_connection(factory, address)


def raw_listener(family, tmp_path):
    if family == "tcp":
        listener = socket.create_server((HOST, 0))
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "raw.sock"))
        listener.listen()
    listener.settimeout(DEADLINE)
    return listener


def raw_pair(family):
    """Two connected blocking sockets: (the one for the loop, its peer)."""
    if family == "unix":
        return socket.socketpair()
    with socket.create_server((HOST, 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    return sock, peer


async def adopt(family, factory, sock):
    """Hand `sock` to a new transport: create_(unix_)connection(sock=)."""
    loop = asyncio.get_running_loop()
    if family == "tcp":
        return await loop.create_connection(factory, sock=sock)
    return await loop.create_unix_connection(factory, sock=sock)


class Collect:
    """A protocol factory that remembers every protocol it made."""

    def __init__(self, cls):
        self.cls = cls
        self.made = []

    def __call__(self):
        proto = self.cls()
        self.made.append(proto)
        return proto

    async def first(self):
        await until(lambda: self.made)
        await wait(self.made[0].made)
        return self.made[0]


# -- 1. contextvars in protocol callbacks


class ContextRecorder:
    """Notes (callback name, VAR's value) for every callback it gets.

    Returning None from eof_received lets the transport close once its
    write buffer is flushed, so connection_lost follows on its own."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.seen = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.resumed = loop.create_future()
        self.lost = loop.create_future()

    def note(self, name):
        self.seen.append((name, VAR.get("<unset>")))

    def connection_made(self, transport):
        self.note("connection_made")
        self.transport = transport
        self.made.set_result(None)

    def eof_received(self):
        self.note("eof_received")

    def connection_lost(self, exc):
        self.note("connection_lost")
        self.lost.set_result(exc)

    def pause_writing(self):
        self.note("pause_writing")

    def resume_writing(self):
        self.note("resume_writing")
        if not self.resumed.done():
            self.resumed.set_result(None)


COMMON_CALLBACKS = {"connection_made", "eof_received", "connection_lost"}
WRITER_CALLBACKS = {"pause_writing", "resume_writing"}


class ContextProtocol(ContextRecorder, asyncio.Protocol):
    READ_CALLBACKS = {"data_received"}

    def data_received(self, data):
        self.note("data_received")
        self.data += data


class ContextBufferedProtocol(ContextRecorder, asyncio.BufferedProtocol):
    READ_CALLBACKS = {"get_buffer", "buffer_updated"}

    def __init__(self):
        super().__init__()
        self.buf = bytearray(64)

    def get_buffer(self, sizehint):
        self.note("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        self.note("buffer_updated")
        self.data += self.buf[:nbytes]


async def in_inner(make):
    """Await make() in a new task whose context has VAR = "inner"."""

    async def inner():
        VAR.set("inner")
        return await make()

    return await asyncio.create_task(inner())


async def write_until_paused(proto, cap=32 * MiB):
    """Write until pause_writing() is called (synchronously, from write());
    returns the number of bytes written."""
    chunk = bytes(64 * KiB)
    written = 0
    while "pause_writing" not in {name for name, _ in proto.seen}:
        assert written < cap, "pause_writing() was not called by write()"
        proto.transport.write(chunk)
        written += len(chunk)
    return written


async def connect_subject(side, family, subject_cls, tmp_path):
    """One connection whose `side` end (the subject) is made from an "inner"
    task and whose other end (the peer, a ContextProtocol) is made from the
    calling context.  Returns (subject, peer, listener)."""
    loop = asyncio.get_running_loop()
    if side == "server":
        subjects = Collect(subject_cls)
        listener = await in_inner(lambda: open_server(family, subjects, tmp_path))
        _, peer = await open_client(family, ContextProtocol, address_of(listener))
        subject = await subjects.first()
    elif side == "client":
        peers = Collect(ContextProtocol)
        listener = await open_server(family, peers, tmp_path)
        _, subject = await in_inner(
            lambda: open_client(family, subject_cls, address_of(listener))
        )
        peer = await peers.first()
    else:
        listener = raw_listener(family, tmp_path)
        _, peer = await open_client(family, ContextProtocol, listener.getsockname())
        conn, _ = listener.accept()
        conn.setblocking(False)
        _, subject = await in_inner(lambda: loop.connect_accepted_socket(subject_cls, conn))
    return subject, peer, listener


async def context_scenario(side, family, subject_cls, tmp_path):
    """Drive every callback of the subject and check the contexts they saw.

    asyncio calls pause_writing() in the context of the write() that
    overflows the buffer, and captures the caller's context again whenever
    a transport re-registers with the selector (a write() that has to
    buffer, resume_reading()); uvloop runs every callback in the
    transport's own context.  So every call into the subject's transport
    is made from an "inner" task, where the two agree.  The peer is only
    touched from the calling ("outer") context."""
    subject, peer, listener = await connect_subject(side, family, subject_cls, tmp_path)
    try:
        peer.transport.pause_reading()
        written = await in_inner(lambda: write_until_paused(subject))
        peer.transport.resume_reading()
        await wait(subject.resumed)
        message = b"0123456789" * 20
        peer.transport.write(message)
        peer.transport.write_eof()
        await wait(subject.lost)
        await wait(peer.lost)
    finally:
        subject.transport.abort()
        peer.transport.abort()
        listener.close()
    if hasattr(listener, "wait_closed"):
        await wait(listener.wait_closed())
    assert subject.data == message
    assert len(peer.data) == written
    check_contexts(subject, "inner", WRITER_CALLBACKS | subject_cls.READ_CALLBACKS)
    check_contexts(peer, "outer", ContextProtocol.READ_CALLBACKS)


def check_contexts(proto, value, kinds):
    """Every callback `proto` got saw VAR == value, and each of `kinds`
    (and connection_made, eof_received, connection_lost) did run."""
    missing = (COMMON_CALLBACKS | kinds) - {name for name, _ in proto.seen}
    assert not missing, f"callbacks that never ran: {sorted(missing)}"
    strays = [seen for seen in proto.seen if seen[1] != value]
    assert not strays, f"callbacks that did not see {value!r}: {strays}"


SIDES = ("server", "client", "accepted")
SUBJECTS = {"Protocol": ContextProtocol, "BufferedProtocol": ContextBufferedProtocol}


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", SIDES)
def test_callbacks_run_in_the_transports_context(run, side, family, subject, tmp_path):
    """Every callback of a transport made from an "inner" context sees
    "inner", while the coroutine that runs the test sets "outer"."""

    async def main():
        VAR.set("outer")
        await context_scenario(side, family, SUBJECTS[subject], tmp_path)

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_callbacks_do_not_run_in_the_loops_context(run, side, tmp_path):
    """The loop is run from a context where VAR is "outer": callbacks of a
    transport made from an "inner" context still see "inner"."""
    context = contextvars.copy_context()
    context.run(VAR.set, "outer")
    context.run(run, context_scenario(side, "tcp", ContextProtocol, tmp_path))


# -- 2. Server.close(): closed means closed


def assert_refused(family, address):
    """A blocking connect to `address` is refused.

    Up to Python 3.12 a closed Unix server leaves its socket file behind
    (asyncio and uvloop alike); 3.13's asyncio removes it on close, so there
    the connect may find no file at all."""
    if family == "tcp":
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=DEADLINE).close()
        return
    refused = ConnectionRefusedError
    if sys.version_info >= (3, 13):
        refused = (ConnectionRefusedError, FileNotFoundError)
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(refused):
        client.connect(address)


@pytest.mark.parametrize("family", FAMILIES)
def test_server_close_closes_listening_sockets(run, family, tmp_path):
    """close() closes every listening socket before returning: right after
    it the address refuses connections (a pre-forked worker's peers would
    otherwise queue on a listener nobody serves) and the fd count is what
    it was before the server was made; wait_closed() then returns."""

    async def main():
        # libuv opens a spare fd the first time a loop listens (to recover
        # from EMFILE); a throwaway server makes it part of the baseline.
        throwaway = await open_server(family, asyncio.Protocol, tmp_path, "throwaway.sock")
        throwaway.close()
        await wait(throwaway.wait_closed())
        fds = open_fds()

        server = await open_server(family, asyncio.Protocol, tmp_path)
        socks = server.sockets
        address = socks[0].getsockname()
        assert socks and all(sock.fileno() >= 0 for sock in socks)
        assert open_fds() > fds
        server.close()
        assert [sock.fileno() for sock in socks] == [-1] * len(socks)
        assert_refused(family, address)
        assert open_fds() == fds
        await wait(server.wait_closed())

    run(main())


@pytest.mark.parametrize("family", FAMILIES)
def test_server_close_after_serving_a_connection(run, family, tmp_path):
    """Once the server has accepted (and finished) a connection, too:
    right after close() fileno() is -1 and the address refuses connections."""

    async def main():
        servers = Collect(ContextProtocol)
        server = await open_server(family, servers, tmp_path)
        socks = server.sockets
        address = address_of(server)
        transport, client = await open_client(family, ContextProtocol, address)
        proto = await servers.first()
        transport.write_eof()
        await wait(proto.lost)
        await wait(client.lost)
        server.close()
        assert [sock.fileno() for sock in socks] == [-1] * len(socks)
        assert_refused(family, address)
        await wait(server.wait_closed())

    run(main())


@pytest.mark.parametrize("family", FAMILIES)
def test_loop_closed_right_after_server_close_leaks_no_fd(new_loop, family, tmp_path):
    """A loop closed at once after server.close(), before it ran again:
    no fd of the server is left open (on io_uring the accept's last
    completion never comes; the loop closes the fd when it closes)."""
    fds = open_fds()
    loop = new_loop()
    server = loop.run_until_complete(open_server(family, asyncio.Protocol, tmp_path))
    address = address_of(server)
    server.close()
    loop.close()
    assert open_fds() == fds
    assert_refused(family, address)


# -- 3. A socket that belongs to a transport
#
# What asyncio (selector_events._ensure_fd_no_transport) and uvloop do with
# sock_* calls on a socket whose fd a live transport owns:
# - sock_recv / sock_recv_into with no data pending (paused or not), and a
#   sock_sendall that has to wait for the socket to become writable: both
#   raise RuntimeError("File descriptor ... is used by transport ...").
# - sock_recv with data pending (transport paused): asyncio returns the
#   data, since it checks only once the call would have to wait; uvloop
#   raises.  Not asserted.
# - sock_sendall that completes at once: both send without complaint (the
#   check again comes only on waiting).  Not asserted: it is a loophole,
#   not a promise.
# - sock_accept on a server's listening socket: asyncio waits normally
#   (servers are not in its transport table), uvloop raises
#   FileExistsError.  Not asserted.
# - add_reader / add_writer / remove_reader / remove_writer: both raise
#   the same RuntimeError; uringloop has no fd watchers at all.  Not here.
# - After transport.close() and connection_lost: the socket object the
#   transport was given is closed (fileno() -1); sock_recv on it raises
#   OSError EBADF on asyncio and ValueError on uvloop; a new socket that
#   gets the same fd number is free to use with sock_*.


class Sink(asyncio.Protocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.lost = loop.create_future()

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def owned_socket(family, factory=Sink):
    """(sock, peer, transport, protocol): a connected socket handed to a
    transport, and its blocking peer.  On the way out a transport still
    open is aborted and its current protocol's `lost` future waited for
    (without raising: a failure inside has already been reported)."""
    sock, peer = raw_pair(family)
    with peer:
        transport, proto = await adopt(family, factory, sock)
        try:
            yield sock, peer, transport, proto
        finally:
            if not transport.is_closing():
                lost = transport.get_protocol().lost
                transport.abort()
                await asyncio.wait([lost], timeout=DEADLINE)


REFUSED = "is used by transport"
# asyncio and uvloop refuse before the call first yields; a loop that does
# not should fail fast.
REFUSAL_WAIT = 0.1
SOCK_READS = {
    "sock_recv": lambda loop, sock: loop.sock_recv(sock, 10),
    "sock_recv_into": lambda loop, sock: loop.sock_recv_into(sock, bytearray(10)),
}


@pytest.mark.parametrize("paused", [False, True], ids=["reading", "paused"])
@pytest.mark.parametrize("op", SOCK_READS)
@pytest.mark.parametrize("family", FAMILIES)
def test_sock_read_on_a_transports_socket_is_refused(run, family, op, paused):
    """With no data pending, sock_recv(_into) on a socket a live transport
    owns raises RuntimeError at once, paused or not; the transport is not
    disturbed and still receives what the peer sends next."""

    async def main():
        loop = asyncio.get_running_loop()
        async with owned_socket(family) as (sock, peer, transport, proto):
            if paused:
                transport.pause_reading()
            with pytest.raises(RuntimeError, match=REFUSED):
                await wait(SOCK_READS[op](loop, sock), REFUSAL_WAIT)
            transport.resume_reading()
            peer.sendall(b"still mine")
            await until(lambda: proto.data == b"still mine")

    run(main())


@pytest.mark.parametrize("family", FAMILIES)
def test_sock_sendall_that_must_wait_is_refused(run, family):
    """sock_sendall of more than the socket can take at once, on a socket a
    live transport owns, raises RuntimeError (asyncio sends what fits
    first, so only the exception is asserted)."""

    async def main():
        loop = asyncio.get_running_loop()
        async with owned_socket(family) as (sock, _, _, _):
            with pytest.raises(RuntimeError, match=REFUSED):
                await wait(loop.sock_sendall(sock, bytes(16 * MiB)), REFUSAL_WAIT)

    run(main())


def socketpair_at(fd):
    """A connected Unix socket pair whose first socket has the (free) fd
    number `fd`."""
    a, b = socket.socketpair()
    if b.fileno() == fd:
        return b, a
    if a.fileno() != fd:
        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    return a, b


@pytest.mark.parametrize("family", FAMILIES)
def test_socket_is_released_after_connection_lost(run, family):
    """After connection_lost the transport has closed the socket object it
    was given, and a new socket that gets the same fd number works with
    sock_recv (also when it has to wait) and sock_sendall."""

    async def main():
        loop = asyncio.get_running_loop()
        async with owned_socket(family) as (sock, _, transport, proto):
            fd = sock.fileno()
            transport.close()
            await wait(proto.lost)
        assert sock.fileno() == -1
        # asyncio: OSError(EBADF); uvloop: ValueError("Invalid file descriptor: -1").
        with pytest.raises((OSError, ValueError)):
            await wait(loop.sock_recv(sock, 10), 1.0)

        fresh, other = socketpair_at(fd)
        with fresh, other:
            fresh.setblocking(False)
            loop.call_later(0.02, other.send, b"ping")
            assert await wait(loop.sock_recv(fresh, 10)) == b"ping"
            await wait(loop.sock_sendall(fresh, b"pong"))
            assert other.recv(10) == b"pong"

    run(main())


# -- 4. Held data across a protocol swap while paused


class SwapRecorder:
    """Records the callbacks and bytes that reach it.  A protocol installed
    by set_protocol() gets no connection_made, so it is given no transport
    and needs none.  `on_first(transport)` runs in the first data callback."""

    def __init__(self, on_first=None):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.on_first = on_first
        self.events = []
        self.data = bytearray()
        self.sizes = []
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def received(self, data):
        self.events.append("data")
        self.sizes.append(len(data))
        self.data += data
        if len(self.sizes) == 1 and self.on_first:
            self.on_first(self.transport)

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class SwapProtocol(SwapRecorder, asyncio.Protocol):
    def data_received(self, data):
        self.received(data)


class SwapBufferedProtocol(SwapRecorder, asyncio.BufferedProtocol):
    """Reads into a buffer of `bufsize` bytes."""

    def __init__(self, *args, bufsize=64 * KiB, **kwargs):
        super().__init__(*args, **kwargs)
        self.buf = bytearray(bufsize)

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.received(bytes(self.buf[:nbytes]))


SMALL_BUFFER = 7
FIRST = b"first-16-bytes.."
REST = bytes(range(32, 127))
LATE = b"late:" + bytes(range(48, 91))
# More than one 64 KiB provided buffer: a multishot receive completes it in
# several pieces at once, so all but the first arrive after the pause.
BURST = random.Random(0).randbytes(70 * KiB)
# (sent before the pause, sent right after pause_reading() returns):
# - outside: the test pauses a reading transport, the peer sends at once;
# - in-callback: the old protocol pauses in its first data callback, and
#   the peer sends the rest from inside that callback;
# - back-to-back: the peer sends everything at once, the old protocol
#   pauses in its first data callback.
# With a selector nothing is read while paused and the bytes wait in the
# socket; on io_uring a receive already in flight may complete after
# pause_reading(), and the transport must hold what it got.
TIMINGS = {
    "outside": ([], [FIRST, REST]),
    "in-callback": ([FIRST], [REST]),
    "back-to-back": ([FIRST, BURST, b"third-chunk", REST], []),
}
SWAPS = {
    "Protocol-to-Buffered": (
        SwapProtocol,
        functools.partial(SwapBufferedProtocol, bufsize=SMALL_BUFFER),
    ),
    "Buffered-to-Protocol": (SwapBufferedProtocol, SwapProtocol),
}


@pytest.mark.parametrize("eof", [False, True], ids=["open", "eof"])
@pytest.mark.parametrize("timing", TIMINGS)
@pytest.mark.parametrize("swap", SWAPS)
def test_held_data_goes_to_the_new_protocol(run, swap, timing, eof):
    """Reading is paused (see TIMINGS) while the peer's bytes arrive; the
    peer sends more a little later, and optionally EOF; then
    set_protocol(new) and resume_reading().  The old protocol got at most
    the one data callback that paused and nothing after; the new one gets
    all the rest, in order (a BufferedProtocol in 7-byte pieces), then EOF."""
    old_cls, new_cls = SWAPS[swap]
    before, after = TIMINGS[timing]

    async def main():
        def pause_and_send(transport):
            transport.pause_reading()
            for chunk in after:
                peer.sendall(chunk)

        make_old = functools.partial(old_cls, on_first=pause_and_send)
        async with owned_socket("tcp", make_old) as (_, peer, transport, old):
            if before:
                for chunk in before:
                    peer.sendall(chunk)
                await until(lambda: old.data)
            else:
                await asyncio.sleep(0.01)  # the transport is reading by now
                pause_and_send(transport)
            peer.sendall(LATE)
            if eof:
                peer.shutdown(socket.SHUT_WR)
            # Paused: nothing more may reach the old protocol.
            await asyncio.sleep(0.05)
            old_events = ["made", "data"] if before else ["made"]
            assert old.events == old_events
            assert not transport.is_reading()

            sent = b"".join(before + after + [LATE])
            held = sent[len(old.data):]
            assert sent.startswith(bytes(old.data))
            assert old.data.startswith(FIRST) if before else not old.data
            assert held.endswith(LATE)

            new = new_cls()
            transport.set_protocol(new)
            transport.resume_reading()
            # A transport that fails closes: stop waiting then, too.
            if eof:
                await until(lambda: new.eof.done() or new.lost.done())
            else:
                await until(lambda: len(new.data) >= len(held) or new.lost.done())
            assert new.data == held
            if isinstance(new, asyncio.BufferedProtocol):
                assert all(0 < n <= SMALL_BUFFER for n in new.sizes)
            transport.close()
            await wait(new.lost)
            tail = ["eof", "lost"] if eof else ["lost"]
            assert new.events == ["data"] * len(new.sizes) + tail
            assert old.events == old_events

    run(main())
