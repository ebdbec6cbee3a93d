"""Faults a production event loop must survive (issue 10).

Every test runs on each loop of conftest.LOOP_KINDS (uringloop, uringloop
with every kernel fallback masked, asyncio's SelectorEventLoop, uvloop) and
asserts one behaviour for all of them: nothing lost (every byte, every
completion), the exact exception type and message shape, no file
descriptor leaked (/proc/self/fd counted before and after), and where a
fault could pin memory, that what it involved is freed (weak references;
tracemalloc over repeated rounds).  Nothing here measures time; deadlines
only turn a hang into a failure.

1. The peer: a reset in the middle of a large write; closing, or
   half-closing, while our write buffer holds data; connects refused by a
   full backlog and by a closed port; EMFILE while connecting.
2. Exhaustion: 500 connections sending at once into a provided-buffer
   ring of 4 buffers; more completions at once than a completion queue of
   32 entries holds (both made tiny through URINGLOOP_RING).
3. Signals: a storm of SIGUSR1 while serving; Ctrl-C stopping run().
4. Callbacks: loop.close() from a callback with I/O in flight, and after
   stop() with I/O in flight; a transport closed from its own
   data_received; protocol callbacks that raise.
5. Wrong use: the exception type and message asyncio gives.

Fork with a running server and EMFILE in accept are
tested in test_fallbacks.py and test_accept_limits.py.
"""
import asyncio
import contextlib
import errno
import gc
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
import weakref

import pytest

from conftest import COMPAT_MASK

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
HOST = "127.0.0.1"
DEADLINE = 10.0


# -- helpers


def open_fds():
    return len(os.listdir("/proc/self/fd"))


async def wait(aw, timeout=DEADLINE):
    return await asyncio.wait_for(aw, timeout)


async def until(predicate, timeout=DEADLINE, what="condition not reached before the deadline"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def no_fd_leak():
    """Asserts the body leaves as many fds open as it found, once the
    running loop has made its lazy one-off fds (libuv opens a spare one the
    first time a loop listens) and transports have closed theirs, which
    they may do an iteration or two after connection_lost."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, HOST, 0)
    transport, peer = await loop.create_connection(Peer, *address_of(server))
    transport.close()
    await wait(peer.lost)
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)
    before = open_fds()
    yield
    await until(lambda: open_fds() == before, timeout=5,
                what="leaked (or closed foreign) file descriptors")


@contextlib.contextmanager
def tracing():
    """tracemalloc on for the body (left on if it already was)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()


def memory_in_use():
    """Bytes Python has allocated (and tracemalloc traced), after a full
    collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def assert_freed(refs):
    gc.collect()
    alive = [ref() for ref in refs if ref() is not None]
    assert not alive, f"still referenced: {alive[:3]}"


@contextlib.contextmanager
def nofile_at_least(count):
    """RLIMIT_NOFILE's soft limit raised to `count` for the body, if need be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= count:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"needs {count} file descriptors, RLIMIT_NOFILE's hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def no_fd_left():
    """Not one fd number free: RLIMIT_NOFILE lowered to just above the
    highest fd in use and every free number below it taken."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(map(int, os.listdir("/proc/self/fd")))
    fillers = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def address_of(server):
    return server.sockets[0].getsockname()


def payload(size, seed=0):
    return random.Random(f"{size}/{seed}").randbytes(size)


def record_exceptions(loop):
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


def linger_reset(sock):
    """Close `sock` so that its peer gets an RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextlib.asynccontextmanager
async def raw_peer(factory):
    """A client transport of the running loop connected to a plain
    non-blocking socket: (transport, protocol, peer socket).  The peer is
    closed on the way out, and the transport aborted if the body failed."""
    loop = asyncio.get_running_loop()
    with socket.create_server((HOST, 0)) as listener:
        transport, protocol = await loop.create_connection(factory, *listener.getsockname())
        peer, _ = listener.accept()
    with peer:
        peer.setblocking(False)
        try:
            yield transport, protocol, peer
        except BaseException:
            transport.abort()
            raise


async def recv_exactly(sock, size):
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def recv_until_eof(sock):
    loop = asyncio.get_running_loop()
    data = bytearray()
    while chunk := await loop.sock_recv(sock, 256 * KiB):
        data += chunk
    return bytes(data)


class Recording:
    """Records a protocol's callbacks in order and the exception
    connection_lost got (in `lost`).  Mixed into a Protocol or a
    BufferedProtocol, never both: uvloop takes any Protocol subclass for an
    unbuffered one, where asyncio checks for BufferedProtocol first."""

    def __init__(self):
        self.transport = None
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


class Peer(Recording, asyncio.Protocol):
    """Records callbacks and keeps the bytes received."""

    def __init__(self):
        super().__init__()
        self.data = bytearray()

    def data_received(self, data):
        self.events.append("data")
        self.data += data


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def echo_once(address, message=b"still serving"):
    reader, writer = await asyncio.open_connection(*address)
    writer.write(message)
    try:
        return await wait(reader.readexactly(len(message)))
    finally:
        writer.close()
        await writer.wait_closed()


# -- 1. the peer


def test_peer_reset_in_the_middle_of_a_large_write(run):
    """64 MiB written, the peer reads 1 MiB and resets: connection_lost
    once, with ECONNRESET or EPIPE (all four loops give ECONNRESET here),
    the write buffer dropped, nothing for the exception handler, and the
    transport and protocol freed."""
    async def main():
        errors = record_exceptions(asyncio.get_running_loop())
        async with no_fd_leak(), raw_peer(Peer) as (transport, protocol, peer):
            chunk = b"x" * MiB
            for _ in range(64):
                transport.write(chunk)
            assert len(await recv_exactly(peer, MiB)) == MiB
            assert transport.get_write_buffer_size() > 0
            linger_reset(peer)
            exc = await wait(protocol.lost)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert exc.errno in (errno.ECONNRESET, errno.EPIPE)
        assert protocol.events.count("lost") == 1 and protocol.events[-1] == "lost"
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        assert errors == []
        return weakref.ref(transport), weakref.ref(protocol)

    assert_freed(run(main()))


def test_peer_closing_while_data_is_queued(run):
    """The peer reads some, then closes while megabytes wait in our write
    buffer (pause_writing called): connection_lost exactly once, with
    EPIPE or ECONNRESET, nothing resumed, the transport closed."""
    async def main():
        errors = record_exceptions(asyncio.get_running_loop())
        async with no_fd_leak(), raw_peer(Peer) as (transport, protocol, peer):
            for _ in range(16):
                transport.write(b"y" * MiB)
            assert len(await recv_exactly(peer, 2 * MiB)) == 2 * MiB
            with contextlib.suppress(BlockingIOError):
                while peer.recv(MiB):
                    pass
            assert transport.get_write_buffer_size() > 0
            peer.close()
            exc = await wait(protocol.lost)
        assert isinstance(exc, (BrokenPipeError, ConnectionResetError))
        # all four: made, pause, then eof (where the FIN came before the RST), lost
        assert [e for e in protocol.events if e != "eof"] == ["made", "pause", "lost"]
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
        assert errors == []

    run(main())


def test_peer_half_closing_while_data_is_queued_gets_every_byte(run):
    """The peer shuts down its sending side while 16 MiB (16 writes) wait
    in our write buffer and, once our side has seen the EOF, reads: every
    byte is delivered, then connection_lost(None).  (On io_uring the send
    waiting for room completes with EAGAIN when the FIN arrives.)"""

    async def main():
        errors = record_exceptions(asyncio.get_running_loop())
        async with no_fd_leak(), raw_peer(Peer) as (transport, protocol, peer):
            sent = b"".join(payload(MiB, i) for i in range(16))
            for i in range(16):
                transport.write(sent[i * MiB:(i + 1) * MiB])
            await asyncio.sleep(0.05)             # sends in flight, the kernel's buffers full
            assert transport.get_write_buffer_size() > 0
            peer.shutdown(socket.SHUT_WR)
            await until(lambda: "eof" in protocol.events)
            received = await wait(recv_until_eof(peer))
            exc = await wait(protocol.lost)
        assert received == sent, f"{len(received)} of {len(sent)} bytes arrived"
        assert exc is None
        assert protocol.events == ["made", "pause", "eof", "resume", "lost"]
        assert errors == []

    run(main())


def syn_sent_to(port):
    """Connections of this machine waiting for the SYN-ACK of `port`."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for row in rows if row[2] == f"0100007F:{port:04X}" and row[3] == "02")


@pytest.mark.parametrize("where", ["closed port", "full backlog"])
def test_refused_connects(run, where):
    """Connects to a port nobody listens on fail with ConnectionRefusedError
    (ECONNREFUSED) on every loop.  Behind a full backlog (listen(0) with one
    connection queued) the kernel drops the SYNs; once the listener closes,
    the retransmitted SYN (a second later) is refused."""
    attempts = 4

    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        async with no_fd_leak():
            listener = socket.socket()
            listener.bind((HOST, 0))
            port = listener.getsockname()[1]
            filler = None
            if where == "full backlog":
                listener.listen(0)
                filler = socket.create_connection((HOST, port), timeout=DEADLINE)
            else:
                listener.close()
            connects = [asyncio.ensure_future(loop.create_connection(asyncio.Protocol, HOST, port))
                        for _ in range(attempts // 2)]
            connects += [asyncio.ensure_future(asyncio.open_connection(HOST, port))
                         for _ in range(attempts // 2)]
            if filler is not None:
                await until(lambda: syn_sent_to(port) == attempts)
                listener.close()
                filler.close()
            outcomes = await wait(asyncio.gather(*connects, return_exceptions=True))
        assert [type(o) for o in outcomes] == [ConnectionRefusedError] * attempts, outcomes
        assert {o.errno for o in outcomes} == {errno.ECONNREFUSED}
        assert errors == []

    run(main())


def test_emfile_while_connecting(loop, run):
    """With no fd left, create_connection and open_connection raise
    OSError(EMFILE) on every loop; once fds are free again the same loop
    connects and echoes, and nothing leaked."""
    async def main():
        errors = record_exceptions(loop)
        async with no_fd_leak():
            server = await loop.create_server(Echo, HOST, 0)
            address = address_of(server)
            failures = []
            with no_fd_left():
                for connect in (lambda: loop.create_connection(asyncio.Protocol, *address),
                                lambda: asyncio.open_connection(*address)):
                    try:
                        await wait(connect())
                    except OSError as exc:
                        failures.append(exc)
            assert [(type(e), e.errno) for e in failures] == [(OSError, errno.EMFILE)] * 2
            assert await echo_once(address) == b"still serving"
            server.close()
            await server.wait_closed()
        assert errors == []

    run(main())


# -- 2. exhaustion


def test_500_connections_at_once_overrun_the_buffer_ring(loop_kind, monkeypatch, new_loop):
    """500 clients each send 32 KiB before the server has accepted one, so
    their receives all complete at once, far more than uringloop's buffer
    ring holds (made tiny here: 4 buffers of 4 KiB): it runs dry again and
    again and receives are re-armed.
    Every byte is echoed back intact, in each of three rounds; after the
    first, Python's allocations (tracemalloc) grow by less than 1 MiB over
    two rounds that move 64 MB through 2,000 sockets, and every server-side
    protocol is freed.  (Resident memory is no measure here: the
    allocator's trimming moves it by tens of MiB from round to round.)"""
    connections, size, rounds = 500, 32 * KiB, 3
    monkeypatch.setenv("URINGLOOP_RING", "buffers=4,buffer_size=4096")
    run = new_loop().run_until_complete

    async def round_trip(address, seed):
        clients = [socket.create_connection(address, timeout=DEADLINE) for _ in range(connections)]
        try:
            sent = [payload(size, f"{seed}/{i}") for i in range(connections)]
            for client, data in zip(clients, sent):
                client.sendall(data)
            for client in clients:
                client.setblocking(False)
            echoed = await wait(asyncio.gather(*(recv_exactly(c, size) for c in clients)))
            lost = [i for i, (a, b) in enumerate(zip(echoed, sent)) if a != b]
            assert not lost, f"{len(lost)} connections echoed wrong bytes, first #{lost[0]}"
        finally:
            for client in clients:
                client.close()

    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        protocols, ended = [], []

        class Counted(Echo):
            def __init__(self):
                protocols.append(weakref.ref(self))

            def connection_lost(self, exc):
                ended.append(exc)

        with tracing(), nofile_at_least(4 * connections):
            async with no_fd_leak():
                server = await loop.create_server(Counted, HOST, 0, backlog=connections)
                for seed in range(rounds):
                    await round_trip(address_of(server), seed)
                    await until(lambda: len(ended) == connections * (seed + 1))
                    if seed == 0:
                        baseline = memory_in_use()
                grown = memory_in_use() - baseline
                server.close()
                await server.wait_closed()
        assert grown < MiB, f"Python's allocations grew by {grown} bytes"
        assert ended == [None] * connections * rounds
        assert errors == []
        return protocols

    assert_freed(run(main()))


def test_more_completions_at_once_than_the_cq_holds(loop_kind, monkeypatch, new_loop):
    """1,000 sockets, far more than uringloop's completion queue holds
    (made tiny here: 32 entries), each get a completion at once, twice.
    First 1,000 waiting sock_recv() see their data arrive together.  Then
    the data is there first and 1,000 sock_recv() start together: uringloop
    asks for readiness first where the last receive had to wait, so 1,000
    polls complete as they are submitted, before the loop reaps one, and the
    kernel holds the overflow.  Every receive gets its own bytes."""
    count = 1000
    monkeypatch.setenv("URINGLOOP_RING", "entries=16,cq_entries=32")
    loop = new_loop()
    run = loop.run_until_complete
    if loop_kind.startswith("uringloop"):
        assert loop.features.cq_entries == 32

    async def main():
        errors = record_exceptions(loop)
        with nofile_at_least(2 * count + 256):
            async with no_fd_leak():
                pairs = [socket.socketpair() for _ in range(count)]
                try:
                    for ours, _ in pairs:
                        ours.setblocking(False)
                    for seed in range(2):
                        sent = [(count * seed + i).to_bytes(4, "big") for i in range(count)]
                        if seed:
                            for (_, theirs), data in zip(pairs, sent):
                                theirs.send(data)
                        receives = [loop.create_task(loop.sock_recv(ours, 16)) for ours, _ in pairs]
                        await asyncio.sleep(0)        # each has tried once
                        if not seed:
                            assert not any(r.done() for r in receives)
                            for (_, theirs), data in zip(pairs, sent):
                                theirs.send(data)
                        assert await wait(asyncio.gather(*receives)) == sent
                finally:
                    for ours, theirs in pairs:
                        ours.close()
                        theirs.close()
        assert errors == []

    run(main())


# -- 3. signals


def test_signal_storm_while_serving(run):
    """A thread sends SIGUSR1 to the loop's thread thousands of times while
    3,000 messages are echoed: every echo is intact, the Python handler ran,
    nothing reached the exception handler."""
    messages, storm_size = 3000, 3000

    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        handled = 0

        def on_signal(signum, frame):
            nonlocal handled
            handled += 1

        sent = 0
        stop = threading.Event()
        target = threading.get_ident()

        def storm():
            nonlocal sent
            while not stop.is_set():
                signal.pthread_kill(target, signal.SIGUSR1)
                sent += 1
                time.sleep(0)                     # let the GIL go: signals land mostly in waits

        async with no_fd_leak():
            server = await loop.create_server(Echo, HOST, 0)
            reader, writer = await asyncio.open_connection(*address_of(server))
            previous = signal.signal(signal.SIGUSR1, on_signal)
            thread = threading.Thread(target=storm)
            thread.start()
            try:
                i = 0
                while i < messages or sent < storm_size:
                    message = b"%08d" % i * 16
                    writer.write(message)
                    assert await wait(reader.readexactly(len(message))) == message
                    i += 1
            finally:
                stop.set()
                thread.join()
                signal.signal(signal.SIGUSR1, previous)
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
        assert handled > 0
        assert errors == []

    run(main())


CTRL_C_CHILD = textwrap.dedent(r"""
    import asyncio, sys

    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
        writer.close()

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        # (From 3.12 on, a cancelled serve_forever() waits for its open
        # connections to close: asyncio.run would hang on this one.)
        writer.close()
        await writer.wait_closed()
        print("serving", flush=True)
        try:
            await server.serve_forever()
        finally:
            print("cleanup ran", flush=True)

    kind = sys.argv[1]
    if kind == "asyncio":
        asyncio.run(main())
    elif kind == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        import uringloop
        uringloop.run(main())
""")


def test_ctrl_c_stops_run(loop_kind):
    """SIGINT to a serving program run by uringloop.run() (asyncio.run,
    uvloop.run): main's finally runs, then KeyboardInterrupt ends the
    process as it does asyncio.run's: traceback, killed by SIGINT."""
    env = dict(os.environ)
    env.pop("URINGLOOP_DISABLE", None)
    if loop_kind == "uringloop-compat":
        env["URINGLOOP_DISABLE"] = COMPAT_MASK
    with subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, loop_kind], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        try:
            ready, _, _ = select.select([child.stdout], [], [], DEADLINE)
            line = child.stdout.readline() if ready else ""
            if line == "serving\n":
                child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=DEADLINE)
        finally:
            child.kill()                        # a no-op once it has exited
    assert line == "serving\n", err
    assert out == "cleanup ran\n"
    assert err.splitlines()[-1] == "KeyboardInterrupt", err
    assert child.returncode == -signal.SIGINT


# -- 4. callbacks


def test_close_from_a_callback_with_io_in_flight(loop, run):
    """loop.close() from a callback while connections, an accept and a
    sock_recv are in flight raises RuntimeError as asyncio's does, and the
    loop keeps serving."""
    async def main():
        errors = record_exceptions(loop)
        async with no_fd_leak():
            server = await loop.create_server(Echo, HOST, 0)
            transport, protocol = await loop.create_connection(Peer, *address_of(server))
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            receive = loop.create_task(loop.sock_recv(ours, 16))
            outcome = loop.create_future()

            def try_close():
                try:
                    loop.close()
                except RuntimeError as exc:
                    outcome.set_result(str(exc))

            loop.call_soon(try_close)
            assert await wait(outcome) == "Cannot close a running event loop"
            assert not loop.is_closed()
            transport.write(b"echo")
            await until(lambda: bytes(protocol.data) == b"echo")
            theirs.send(b"recv")
            assert await wait(receive) == b"recv"
            assert await echo_once(address_of(server)) == b"still serving"
            transport.close()
            await wait(protocol.lost)
            ours.close()
            theirs.close()
            server.close()
            await server.wait_closed()
        assert errors == []

    run(main())


def test_close_after_stop_with_io_in_flight(new_loop):
    """A loop stopped while a server accepts, connections read and a
    sock_recv and a sock_accept wait, then closed: no crash, and once the
    abandoned objects are dropped no fd is left open, the closed loop
    object itself still referenced (as the new_loop fixture, or any caller,
    may keep it), with only "unclosed ..." ResourceWarnings for them."""

    def abandon():
        loop = new_loop()
        errors = record_exceptions(loop)

        async def serve():
            server = await loop.create_server(Echo, HOST, 0)
            clients = [await loop.create_connection(Peer, *address_of(server)) for _ in range(3)]
            clients[0][0].write(b"echo")
            await until(lambda: bytes(clients[0][1].data) == b"echo")
            pair = socket.socketpair()
            listener = socket.create_server((HOST, 0))
            for sock in (pair[0], listener):
                sock.setblocking(False)
            waiting = [loop.create_task(loop.sock_recv(pair[0], 16)),
                       loop.create_task(loop.sock_accept(listener))]
            await asyncio.sleep(0.01)
            return server, clients, waiting, (*pair, listener)

        abandoned = loop.run_until_complete(serve())
        loop.close()
        for sock in abandoned[-1]:
            sock.close()
        return errors

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        abandon()                              # first-use fds (uvloop) join the baseline
        gc.collect()
        before = open_fds()
        errors = abandon()
        gc.collect()
    assert open_fds() == before, "leaked file descriptors"
    assert caught and all(issubclass(w.category, ResourceWarning) for w in caught)
    assert all(str(w.message).startswith("unclosed") for w in caught), caught[0].message
    # the two pending tasks, destroyed with the loop
    assert {c["message"] for c in errors} <= {"Task was destroyed but it is pending!"}


class CloseOnFirstData(Peer):
    def data_received(self, data):
        super().data_received(data)
        self.transport.close()


class BufferedCloseOnFirstData(Recording, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        self.buffer = bytearray(64 * KiB)
        return self.buffer

    def buffer_updated(self, nbytes):
        self.events.append("data")
        self.transport.close()


@pytest.mark.parametrize("factory", [CloseOnFirstData, BufferedCloseOnFirstData],
                         ids=["Protocol", "BufferedProtocol"])
def test_transport_closed_inside_data_received(run, factory):
    """1 MiB is waiting before the loop reads any; the protocol closes its
    transport in the first data_received (buffer_updated): nothing more is
    delivered, no EOF, connection_lost(None) exactly once, and the peer
    sees the connection end."""
    async def main():
        errors = record_exceptions(asyncio.get_running_loop())
        async with no_fd_leak(), raw_peer(factory) as (transport, protocol, peer):
            peer.sendall(b"z" * MiB)               # non-blocking: all of it fits
            assert await wait(protocol.lost) is None
            await asyncio.sleep(0.05)              # what a loop would deliver late
            with contextlib.suppress(ConnectionResetError):
                assert await wait(recv_until_eof(peer)) == b""
        assert protocol.events == ["made", "data", "lost"]
        assert transport.is_closing()
        assert errors == []

    run(main())


class Boom(Exception):
    pass


@pytest.mark.parametrize("callback", ["data_received", "connection_made"])
def test_protocol_callback_raising(loop_kind, run, callback):
    """A server protocol whose data_received (connection_made) raises: the
    exception handler gets the context asyncio gives, and the server goes
    on serving other connections.

    data_received: 'message', 'exception', 'transport', 'protocol'; the
    transport is closed, connection_lost gets the exception.  asyncio's
    message is 'Fatal error: protocol.data_received() call failed.',
    uvloop's 'Fatal error on transport TCPTransport'.
    connection_made: 'message' ('Exception in callback ...'), 'exception',
    'handle'; the connection stays open, as on asyncio's loop."""
    async def main():
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        raising = []

        class Raising(Peer):
            def connection_made(self, transport):
                super().connection_made(transport)
                raising.append(self)
                if callback == "connection_made":
                    raise Boom(callback)

            def data_received(self, data):
                super().data_received(data)
                if callback == "data_received":
                    raise Boom(callback)

        def factory():
            return Raising() if not raising else Echo()

        async with no_fd_leak():
            server = await loop.create_server(factory, HOST, 0)
            reader, writer = await asyncio.open_connection(*address_of(server))
            writer.write(b"boom")
            await until(lambda: contexts)
            assert await echo_once(address_of(server)) == b"still serving"
            protocol, = raising
            if callback == "data_received":
                assert await wait(reader.read()) == b""
                assert isinstance(await wait(protocol.lost), Boom)
            else:
                assert not protocol.transport.is_closing()
                protocol.transport.close()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            server.close()
            await server.wait_closed()

        context, = contexts
        assert isinstance(context["exception"], Boom)
        if callback == "data_received":
            assert set(context) == {"message", "exception", "transport", "protocol"}
            assert context["protocol"] is protocol
            assert context["transport"] is protocol.transport
            assert context["message"] == (
                "Fatal error on transport TCPTransport" if loop_kind == "uvloop"
                else "Fatal error: protocol.data_received() call failed.")
        else:
            assert set(context) == {"message", "exception", "handle"}
            assert context["message"].startswith("Exception in callback ")

    run(main())


# -- 5. wrong use

# asyncio's words; uvloop's: "this event loop is already running."
ALREADY_RUNNING = "This event loop is already running"


def already_running(loop_kind):
    return ALREADY_RUNNING.lower() + "." if loop_kind == "uvloop" else ALREADY_RUNNING


def test_run_until_complete_on_a_closed_loop(loop):
    loop.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="^Event loop is closed$"):
        loop.run_until_complete(coro)
    coro.close()


def test_loop_run_from_two_threads(loop_kind, loop, run):
    """While one thread runs the loop, running it from another raises."""
    running = threading.Event()
    thread = threading.Thread(target=loop.run_forever)
    loop.call_soon(running.set)
    thread.start()
    try:
        assert running.wait(DEADLINE)
        coro = asyncio.sleep(0)
        for attempt in (lambda: loop.run_until_complete(coro), loop.run_forever):
            with pytest.raises(RuntimeError) as info:
                attempt()
            assert str(info.value) == already_running(loop_kind)
        coro.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
    assert run(asyncio.sleep(0, result="usable")) == "usable"


def test_run_until_complete_reentered(loop_kind, run):
    async def main():
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError) as info:
            asyncio.get_running_loop().run_until_complete(coro)
        coro.close()
        return str(info.value)

    assert run(main()) == already_running(loop_kind)
    assert run(asyncio.sleep(0, result="usable")) == "usable"


@pytest.mark.parametrize("method", ["sock_recv", "sock_recv_into", "sock_sendall",
                                    "sock_accept", "sock_connect"])
def test_blocking_socket_refused_in_debug_mode(loop, run, method):
    loop.set_debug(True)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        args = {"sock_recv": (1,), "sock_recv_into": (bytearray(1),), "sock_sendall": (b"x",),
                "sock_accept": (), "sock_connect": (("127.0.0.1", 1),)}[method]
        coro = getattr(loop, method)(ours, *args)
        with pytest.raises(ValueError, match="^the socket must be non-blocking$"):
            run(coro)


def test_create_connection_refuses_what_is_no_stream_socket(loop_kind, loop, run):
    """A UDP socket: ValueError('A Stream Socket was expected, got ...').
    A pipe's file object or a bare fd: AttributeError, as asyncio's (which
    looks for .type first, uvloop for .family).  Nothing is closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match=r"^A Stream Socket was expected, got <socket\."):
            run(loop.create_connection(asyncio.Protocol, sock=udp))
        assert udp.fileno() >= 0
    attribute = "family" if loop_kind == "uvloop" else "type"
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe:
        for sock in (pipe, w):
            with pytest.raises(AttributeError, match=f"object has no attribute '{attribute}'$"):
                run(loop.create_connection(asyncio.Protocol, sock=sock))
        os.fstat(w)
        os.close(w)
