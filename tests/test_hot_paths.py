"""Edges of the paths uringloop runs in C (call_soon, the ready queue,
create_task, transport.write, completion dispatch): each must hand the
unusual case to asyncio's semantics, on every loop alike."""
import array
import asyncio
import contextvars
import socket
import threading
import types

import pytest

from support import KiB, MiB, check_bytes, payload, record_exceptions
from test_streams import (HOST, Collect, EchoServer, Peer, close_server, linger_reset, port_of,
                          tcp_pair, until, wait)

pytestmark = pytest.mark.timeout(30)


def spin(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_call_soon_argument_errors(loop):
    with pytest.raises(TypeError):
        loop.call_soon()
    with pytest.raises(TypeError):
        loop.call_soon(print, "x", delay=1)
    spin(loop)


def test_non_callable_fails_when_run_not_when_scheduled(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    handle = loop.call_soon(42)
    loop.call_soon(contexts.append, "after")
    spin(loop)
    assert isinstance(contexts[0]["exception"], TypeError)
    assert contexts[0]["message"].startswith("Exception in callback")
    assert contexts[0]["handle"] is handle
    assert contexts[1:] == ["after"]


def test_debug_handles_remember_where_they_were_made(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(lambda: 1 / 0)
    spin(loop)
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert contexts[0]["source_traceback"]


def test_call_soon_threadsafe_edges(loop):
    """call_soon_threadsafe is call_soon's C path plus the doorbell: the
    same argument errors, context=, a Handle that cancels, and a non-callable
    that fails when run; from another thread it wakes an idle loop."""
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe()
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe(print, "x", delay=1)
    var = contextvars.ContextVar("var", default="unset")
    context = contextvars.copy_context()
    context.run(var.set, "given")
    log, contexts = [], []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    handle = loop.call_soon_threadsafe(lambda: log.append(var.get()), context=context)
    assert not handle.cancelled()
    loop.call_soon_threadsafe(log.append, "cancelled").cancel()
    bad = loop.call_soon_threadsafe(42)
    spin(loop)
    assert log == ["given"]
    assert isinstance(contexts[0]["exception"], TypeError) and contexts[0]["handle"] is bad
    threading.Timer(0.05, loop.call_soon_threadsafe, (loop.stop,)).start()
    loop.run_forever()          # returns only if the other thread's call woke it


def test_call_soon_threadsafe_on_a_closed_loop(new_loop):
    loop = new_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(print)


def test_call_soon_threadsafe_in_debug_mode_checks_the_callback(loop, loop_kind):
    loop.set_debug(True)
    if loop_kind == "uvloop":       # uvloop checks nothing: 42 would fail when run
        loop.call_soon_threadsafe(42).cancel()
    else:
        with pytest.raises(TypeError):
            loop.call_soon_threadsafe(42)
    spin(loop)


def test_keyboard_interrupt_in_callback_keeps_the_rest_queued(loop):
    log = []

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    loop.call_soon(log.append, "queued")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    spin(loop)
    assert log == ["queued"]


def test_callback_cancelled_by_an_earlier_one_in_the_batch_does_not_run(loop):
    log = []
    later = []
    loop.call_soon(lambda: later[0].cancel())
    later.append(loop.call_soon(log.append, "cancelled"))
    loop.call_soon(log.append, "ran")
    spin(loop)
    assert log == ["ran"]


def test_create_task_keywords(loop, run):
    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get()

    async def main():
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        named = loop.create_task(read(), name="named")
        in_ctx = loop.create_task(read(), context=ctx)
        assert named.get_name() == "named"
        return await named, await in_ctx

    assert run(main()) == ("unset", "given")


def test_create_task_on_closed_loop_raises(loop):
    async def nothing():
        pass

    loop.close()
    coro = nothing()
    with pytest.raises(RuntimeError):
        loop.create_task(coro)
    coro.close()


def test_create_future_belongs_to_the_loop(loop):
    fut = loop.create_future()
    assert fut.get_loop() is loop
    assert not fut.done()


def test_write_types_and_order(run):
    """bytes, bytearray and memoryview writes, some while a send is in
    flight, some queued behind it, arrive whole and in order."""
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoServer, HOST, 0)
        transport, client = await loop.create_connection(Peer, HOST, port_of(server))
        want = bytearray()
        for i in range(200):
            chunk = bytes([i % 251]) * (1 + i * 37 % 5000)
            kind = i % 4
            if kind == 0:
                transport.write(chunk)
            elif kind == 1:
                transport.write(bytearray(chunk))
            elif kind == 2:
                transport.write(memoryview(chunk))
            else:
                transport.writelines([chunk[:1], chunk[1:]])
            want += chunk
            if i % 10 == 0:
                await asyncio.sleep(0)
        await until(lambda: len(client.data) >= len(want))
        assert bytes(client.data) == bytes(want)
        assert not client.violations
        transport.close()
        await wait(client.lost)
        await close_server(server)

    run(main())


def test_write_copies_what_the_caller_may_reuse(run):
    """A bytearray or memoryview written to an idle transport may be changed
    as soon as write() returns: the peer gets what it held at the call.  A
    memoryview of ints counts in bytes; a released one is a ValueError."""
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoServer, HOST, 0)
        transport, client = await loop.create_connection(Peer, HOST, port_of(server))
        buf = bytearray(b"a" * 1000)
        transport.write(buf)
        buf[:] = b"b" * 1000
        ints = array.array("i", [1, 2, 3])
        transport.write(memoryview(ints))
        ints[0] = 9
        assert transport.get_write_buffer_size() in (0, 1000 + 12)
        released = memoryview(b"gone")
        released.release()
        with pytest.raises(ValueError):
            transport.write(released)
        want = b"a" * 1000 + array.array("i", [1, 2, 3]).tobytes()
        await until(lambda: len(client.data) >= len(want))
        assert bytes(client.data) == want
        transport.close()
        await wait(client.lost)
        await close_server(server)

    run(main())


class AnswerThenHold(asyncio.Protocol):
    """Answers a request, then holds the loop until its peer has the answer
    (or `patience` has passed), writes more and closes."""

    def __init__(self, peer_has_it, patience):
        self.peer_has_it, self.patience = peer_has_it, patience
        self.connected = threading.Event()
        self.held = []

    def connection_made(self, transport):
        self.transport = transport
        self.connected.set()

    def data_received(self, data):
        self.transport.write(b"answer")
        self.held.append(self.peer_has_it.wait(self.patience))
        self.transport.write(b", and more")
        self.transport.close()


def ask(port, server, peer_has_it, received):
    """A blocking client in a thread: one request, then all it gets."""
    with socket.create_connection((HOST, port)) as sock:
        server.connected.wait(5)
        sock.sendall(b"request")
        data = b""
        while len(data) < len(b"answer"):
            data += sock.recv(100)
        peer_has_it.set()
        while chunk := sock.recv(100):
            data += chunk
        received.append(data)


async def ask_in_a_thread(server, handler, peer_has_it):
    """What `ask` received from the server, which is then closed."""
    received = []
    client = threading.Thread(target=ask, args=(port_of(server), handler, peer_has_it,
                                                received), daemon=True)
    client.start()
    await until(lambda: received)
    await close_server(server)
    return received


def test_a_reply_leaves_while_its_callback_runs(run):
    """A write() answering a request on an idle transport leaves at once,
    before the callback returns, as asyncio's loop and uvloop send inside
    write(): uringloop submits the SEND there when it answers the lone
    completion the loop woke for, where it would otherwise wait for the next
    enter, after whatever the callback and the tasks it wakes do next.
    Writes made meanwhile queue behind it: all arrive, in order."""
    async def main():
        loop = asyncio.get_running_loop()
        peer_has_it = threading.Event()
        server_proto = AnswerThenHold(peer_has_it, 5)
        server = await loop.create_server(lambda: server_proto, HOST, 0)
        assert await ask_in_a_thread(server, server_proto, peer_has_it) == [b"answer, and more"]
        assert server_proto.held == [True]

    run(main())


def test_a_reply_written_by_a_task_leaves_while_the_task_runs(run):
    """The same of a streams handler, whose task writes the answer after the
    receive's callback has returned (and, where the kernel has no multishot
    receive, after the receive was re-armed): the answer leaves inside
    write(), before the task goes on."""
    async def main():
        peer_has_it = threading.Event()
        handler = types.SimpleNamespace(connected=threading.Event(), held=[])

        async def answer_then_hold(reader, writer):
            handler.connected.set()
            await reader.readexactly(len(b"request"))
            writer.write(b"answer")
            handler.held.append(peer_has_it.wait(5))
            writer.write(b", and more")
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(answer_then_hold, HOST, 0)
        assert await ask_in_a_thread(server, handler, peer_has_it) == [b"answer, and more"]
        assert handler.held == [True]

    run(main())


def test_large_write_that_fills_the_socket_keeps_its_order(run):
    """A large write of more than the socket takes sends part of it; the
    rest, and the writes after it, large and small, reach the peer whole
    and in order once it reads."""
    async def main():
        loop = asyncio.get_running_loop()
        server, sp, transport, client = await tcp_pair(loop)
        transport.pause_reading()
        first = payload(8 * MiB, seed=4)
        sp.transport.write(first)
        assert 0 < sp.transport.get_write_buffer_size() < len(first) + 1
        later = [b"small", payload(64 * KiB, seed=5), bytearray(b"x" * 5000)]
        for chunk in later:
            sp.transport.write(chunk)
        want = first + b"".join(later)
        transport.resume_reading()
        await until(lambda: len(client.data) >= len(want), timeout=20)
        check_bytes(client.data, want)
        transport.close()
        await wait(client.lost)
        await close_server(server)

    run(main())


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_a_large_write_to_an_idle_transport_leaves_inside_write(run, kind):
    """A large write to an idle transport goes out within write(), as far as
    the socket takes it (all of it here: the peer reads as it goes), so
    nothing is left buffered, and a bytearray may change right after."""
    async def main():
        loop = asyncio.get_running_loop()
        server, sp, transport, client = await tcp_pair(loop)
        want = b""
        for i, size in enumerate((16 * KiB, 64 * KiB, 200 * KiB)):
            data = payload(size, seed=i)
            buf = bytearray(data)
            sp.transport.write(kind(buf) if kind is memoryview else kind(data))
            assert sp.transport.get_write_buffer_size() == 0
            buf[:] = bytes(size)
            want += data
            await until(lambda: len(client.data) >= len(want))
        check_bytes(client.data, want)
        transport.close()
        await wait(client.lost)
        await close_server(server)

    run(main())


def test_a_large_write_to_a_reset_connection_fails_inside_write(run):
    """A large write that finds the connection reset by its peer is the
    transport's fatal error within write(): it is closing when write()
    returns, and connection_lost gets the error.  (Where the kernel runs a
    receive's completion at once, without IORING_SETUP_DEFER_TASKRUN, the
    receive in flight takes the reset and the write finds a broken pipe;
    asyncio and uvloop have no receive in flight.)"""
    async def main():
        loop = asyncio.get_running_loop()
        errors = record_exceptions(loop)
        with socket.create_server((HOST, 0)) as listener:
            listener.settimeout(5)
            transport, client = await loop.create_connection(Peer, *listener.getsockname())
            conn, _ = listener.accept()
            await asyncio.sleep(0.02)
            linger_reset(conn)
            transport.write(payload(64 * KiB))
            assert transport.is_closing()
            exc = await wait(client.lost)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert errors == []

    run(main())


# (uvloop accepts write(None) silently, so None is not among these)
@pytest.mark.parametrize("bad", ["text", 42, [b"x"]])
def test_write_rejects_what_is_not_bytes_like(run, bad):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoServer, HOST, 0)
        transport, client = await loop.create_connection(Peer, HOST, port_of(server))
        with pytest.raises(TypeError):
            transport.write(bad)
        transport.write(b"still works")
        await until(lambda: len(client.data) >= 11)
        assert bytes(client.data) == b"still works"
        transport.close()
        await wait(client.lost)
        await close_server(server)

    run(main())


class Gather(asyncio.BufferedProtocol):
    """Receives into buffers of `size` bytes; with `pause_every`, pauses
    reading after that many buffer_updated calls and resumes a moment
    later, so some bytes already received wait while reading is paused."""

    def __init__(self, size, pause_every=0):
        self.buffer = bytearray(size)
        self.data = bytearray()
        self.pause_every = pause_every
        self.updates = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]
        self.updates += 1
        if self.pause_every and self.updates % self.pause_every == 0:
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.transport.resume_reading)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.parametrize("size, pause_every", [(1000, 0), (100_003, 0), (300_000, 0),
                                               (100_003, 3)])
def test_bulk_bytes_reach_a_buffered_protocol_whole(run, size, pause_every):
    """Megabytes that pile up in the socket while the receiver is paused
    arrive in receives larger than one ring buffer (uringloop: a receive
    bundle, 64 KiB buffers); a BufferedProtocol's buffers of any size take
    them whole and in order, also when it pauses in buffer_updated."""
    async def main():
        loop = asyncio.get_running_loop()
        servers = Collect()
        server = await loop.create_server(servers, HOST, 0)
        transport, proto = await loop.create_connection(
            lambda: Gather(size, pause_every), HOST, port_of(server))
        transport.pause_reading()
        sender = (await servers.first()).transport
        want = payload(4 * MiB, seed=size)
        for at in range(0, len(want), 256 * KiB):
            sender.write(want[at:at + 256 * KiB])
        await asyncio.sleep(0.05)
        transport.resume_reading()
        await until(lambda: len(proto.data) >= len(want), timeout=20)
        check_bytes(proto.data, want)
        sender.close()
        await wait(proto.lost)
        await close_server(server)

    run(main())


class BadBuffer(asyncio.BufferedProtocol):
    """Hands the transport a buffer it cannot receive into."""

    def __init__(self, buffer):
        self.buffer = buffer
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        raise AssertionError("nothing can have been received")

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.parametrize("buffer, exc_type, message", [
    (bytearray(), RuntimeError, "Fatal error: protocol.get_buffer() call failed."),
    (b"read-only", TypeError, "Fatal read error on socket transport"),
], ids=["empty", "read-only"])
def test_unusable_buffer_is_a_fatal_error(loop_kind, run, buffer, exc_type, message):
    if loop_kind == "uvloop":
        pytest.skip("uvloop 0.23 kills the process on such a buffer")

    async def main():
        loop = asyncio.get_running_loop()
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
        server = await loop.create_server(EchoServer, HOST, 0)
        transport, proto = await loop.create_connection(
            lambda: BadBuffer(buffer), HOST, port_of(server))
        transport.write(b"ping")
        exc = await wait(proto.lost)
        assert isinstance(exc, exc_type)
        assert [c["message"] for c in contexts] == [message]
        assert contexts[0]["exception"] is exc
        await close_server(server)

    run(main())


# -- sock_* methods: non-blocking tries in C, readiness polls on the ring


def socket_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_sock_sendall_larger_than_the_socket_buffer(run):
    payload = bytes(range(256)) * (4 * 1024 * 16)       # 16 MiB

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket_pair()
        with a, b:
            async def drain():
                got = bytearray()
                while len(got) < len(payload):
                    chunk = await loop.sock_recv(b, 1 << 20)
                    assert chunk
                    got += chunk
                return bytes(got)

            reader = asyncio.ensure_future(drain())
            await loop.sock_sendall(a, memoryview(payload))
            assert await wait(reader) == payload

    run(main())


def test_sock_recv_sees_eof_as_empty_bytes(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket_pair()
        with b:
            pending = asyncio.ensure_future(loop.sock_recv(b, 100))
            await asyncio.sleep(0.01)
            a.close()
            assert await wait(pending) == b""

    run(main())


def test_cancelled_sock_recv_loses_no_bytes(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket_pair()
        with a, b:
            for i in range(20):
                pending = asyncio.ensure_future(loop.sock_recv(b, 100))
                await asyncio.sleep(0)              # now waiting for readiness
                pending.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await pending
                await loop.sock_sendall(a, b"%d;" % i)
                assert await wait(loop.sock_recv(b, 100)) == b"%d;" % i

    run(main())


def test_sock_sendall_to_a_closed_peer_raises_oserror(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket_pair()
        with a:
            b.close()
            with pytest.raises(OSError):
                for _ in range(100):
                    await loop.sock_sendall(a, b"x" * 65536)

    run(main())


def test_sock_sendall_rejects_what_is_not_bytes_like(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket_pair()
        with a, b:
            with pytest.raises(TypeError):
                await loop.sock_sendall(a, "text")

    run(main())
