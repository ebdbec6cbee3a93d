"""uringloop-only behaviour: every masked fallback still runs a loop
correctly, a forked child cannot touch its parent's ring, and the ring
follows the loop across threads.  (Semantics shared with asyncio and uvloop
are tested in test_loop.py on all three loops.)"""
import asyncio
import errno
import os
import signal
import socket
import tempfile
import threading
import time

import pytest

import uringloop
from uringloop import loop as loopmod
from uringloop.ring import FILE_OPCODES

MASKS = [
    "",
    "cqe_mixed",
    "no_sqarray",
    "taskrun_flag",
    "submit_all,cqsize",
    "r_disabled",
    "defer_taskrun",
    "defer_taskrun,coop_taskrun",
    "ext_arg",
    "no_iowait",
    "recvsend_bundle",
    "single_mmap",
    "multishot_poll",
    "multishot_accept",
    "multishot_recv",
    "pbuf_ring",
    "epoll_wait",
    "read_multishot",
    "waitid",
    "pidfd",
    "openat,close,read,write,fsync,ftruncate,statx",
    "unlinkat,renameat,mkdirat,symlinkat,linkat",
    # an old kernel: every fallback at once
    "defer_taskrun,coop_taskrun,cqe_mixed,no_sqarray,taskrun_flag,submit_all,ext_arg,"
    "no_iowait,recvsend_bundle,multishot_poll,multishot_accept,multishot_recv,pbuf_ring,"
    "epoll_wait,"
    "read_multishot,waitid,pidfd," + ",".join(FILE_OPCODES),
]


async def workload():
    loop = asyncio.get_running_loop()
    fired = []
    now = loop.time()        # one base: a GC pause between calls cannot reorder them
    for delay in (0.02, 0.0, 0.01):
        loop.call_at(now + delay, fired.append, delay)
    await asyncio.sleep(0.03)
    assert fired == [0.0, 0.01, 0.02]

    # cross-thread calls, then an idle loop woken from another thread
    done = loop.create_future()
    count = [0]

    def bump():
        count[0] += 1
        if count[0] == 2000:
            done.set_result(None)

    threads = [threading.Thread(target=lambda: [loop.call_soon_threadsafe(bump)
                                                 for _ in range(1000)]) for _ in range(2)]
    for t in threads:
        t.start()
    await asyncio.wait_for(done, 10)
    for t in threads:
        t.join()
    for _ in range(5):
        woke = loop.create_future()
        threading.Timer(0.01, loop.call_soon_threadsafe, (woke.set_result, time.monotonic())).start()
        sent = await asyncio.wait_for(woke, 5)
        assert time.monotonic() - sent < 1.0
    assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6

    # streams: accept, receive and send under this mask
    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    payload = os.urandom(300_000)
    for _ in range(3):
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(payload)
        writer.write_eof()
        assert await reader.read() == payload
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()

    # datagrams, and an fd watcher, under this mask
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.received = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.received.put_nowait(data)

    echo_end, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    client_end, client = await loop.create_datagram_endpoint(
        Client, remote_addr=echo_end.get_extra_info("sockname"))
    for size in (1, 1400, 65507):
        datagram = os.urandom(size)
        client_end.sendto(datagram)
        assert await asyncio.wait_for(client.received.get(), 5) == datagram
    client_end.close()
    echo_end.close()

    a, b = socket.socketpair()
    with a, b:
        readable = loop.create_future()
        loop.add_reader(a, lambda: readable.done() or readable.set_result(a.recv(10)))
        b.send(b"ping")
        assert await asyncio.wait_for(readable, 5) == b"ping"
        assert loop.remove_reader(a)
        for _ in range(3):
            await asyncio.sleep(0)       # the cancelled wait on the watchers completes

    await files_workload()

    # a child through pipes, its exit, and a signal, under this mask
    payload = os.urandom(300_000)
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert await asyncio.wait_for(proc.communicate(payload), 10) == (payload, None)
    assert proc.returncode == 0
    if threading.current_thread() is not threading.main_thread():
        return "ok"                     # signals reach the main thread's loop only
    signalled = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, signalled.set_result, "usr1")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(signalled, 5) == "usr1"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    return "ok"


async def files_workload():
    """Files and paths, through the ring or (masked) the executor."""
    import uringloop.os as uos
    with tempfile.TemporaryDirectory() as top:
        path = os.path.join(top, "data")
        payload = os.urandom(200_000)
        async with uringloop.open(path, "wb") as f:
            assert await f.write(payload) == len(payload)
            await f.fsync()
            await f.truncate(150_000)
        async with uringloop.open(path, "rb") as f:
            await f.seek(1000)
            assert await f.read(5000) == payload[1000:6000]
            assert await f.read() == payload[6000:150_000]
        assert (await uos.stat(path)).st_size == 150_000
        await uringloop.write_text(path, "a\r\nb\nc")
        assert await uringloop.read_text(path) == "a\nb\nc"
        await uos.mkdir(os.path.join(top, "dir"))
        await uos.rename(path, os.path.join(top, "dir", "moved"))
        await uos.symlink("moved", os.path.join(top, "dir", "sym"))
        await uos.link(os.path.join(top, "dir", "moved"), os.path.join(top, "hard"))
        assert await uringloop.read_text(os.path.join(top, "dir", "sym")) == "a\nb\nc"
        for name in ("dir/sym", "dir/moved", "hard"):
            await uos.remove(os.path.join(top, name))
        await uos.rmdir(os.path.join(top, "dir"))
        assert os.listdir(top) == []
        try:
            await uringloop.open(os.path.join(top, "missing"))
        except FileNotFoundError as exc:
            assert exc.filename == os.path.join(top, "missing")
        else:
            raise AssertionError("opened a missing file")


@pytest.mark.parametrize("mask", MASKS)
def test_loop_under_mask(monkeypatch, mask):
    monkeypatch.setenv("URINGLOOP_DISABLE", mask)
    loop = uringloop.new_event_loop()
    try:
        assert loop.features.masked == frozenset(filter(None, mask.split(",")))
        assert loop.run_until_complete(workload()) == "ok"
    finally:
        loop.close()


@pytest.mark.parametrize("mask", ["", "r_disabled", "defer_taskrun"])
def test_created_in_one_thread_run_in_others(monkeypatch, mask):
    monkeypatch.setenv("URINGLOOP_DISABLE", mask)
    loop = uringloop.new_event_loop()
    results = []
    try:
        for _ in range(2):
            t = threading.Thread(target=lambda: results.append(loop.run_until_complete(workload())))
            t.start()
            t.join()
        results.append(loop.run_until_complete(workload()))
        assert results == ["ok"] * 3
    finally:
        loop.close()


def _pipe_poll(loop):
    """Put a real op in flight: a poll on a pipe nobody writes to."""
    r, w = os.pipe()

    class Poll:
        def complete(self, res, flags):
            pass
    ud = loop._ops.add(Poll())
    loop._ring.prep_poll(ud, r, 1)
    return r, w


def test_run_from_another_thread_with_io_in_flight_is_refused():
    loop = uringloop.new_event_loop()
    try:
        t = threading.Thread(target=loop.run_until_complete, args=(asyncio.sleep(0),))
        t.start()
        t.join()
        r, w = _pipe_poll(loop)
        loop.call_soon(loop.stop)
        with pytest.raises(RuntimeError, match="owned by thread"):
            loop.run_forever()
        before = len(loopmod._ABANDONED)
        loop.close()            # this thread may not reap: the op is kept, not freed
        assert len(loopmod._ABANDONED) == before + 1
        os.close(r)
        os.close(w)
    finally:
        loop.close()


def test_close_cancels_and_drains_in_flight_ops():
    loop = uringloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    r, w = _pipe_poll(loop)
    before = len(loopmod._ABANDONED)
    loop.close()
    assert len(loopmod._ABANDONED) == before          # drained, nothing abandoned
    os.close(r)
    os.close(w)


# Under pytest-xdist the worker has threads of its own, which 3.12+ warns of
# at fork(); the child here runs no Python that could need them.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_cannot_use_parents_loop():
    loop = uringloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                       # child
        code = 1
        try:
            try:
                loop.run_until_complete(asyncio.sleep(0))
            except RuntimeError as exc:
                if "forked child must create its own loop" in str(exc):
                    code = 2
            loop.close()
            child = uringloop.new_event_loop()
            if child.run_until_complete(asyncio.sleep(0.01, "fine")) == "fine" and code == 2:
                code = 0
            child.close()
        finally:
            os.write(wfd, bytes([code]))
            os._exit(code)
    os.close(wfd)
    _, status = os.waitpid(pid, 0)
    assert os.read(rfd, 1) == b"\0"
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(rfd)
    # the parent's loop is untouched by the child
    assert loop.run_until_complete(asyncio.sleep(0.01, "parent")) == "parent"
    loop.close()


def test_ways_in():
    async def main():
        return type(asyncio.get_running_loop())

    assert uringloop.run(main()) is uringloop.Loop
    with asyncio.Runner(loop_factory=uringloop.new_event_loop) as runner:
        assert runner.run(main()) is uringloop.Loop
    old = asyncio.get_event_loop_policy()
    try:
        for policy in (uringloop.Policy, uringloop.EventLoopPolicy):   # uvloop's name too
            asyncio.set_event_loop_policy(policy())
            assert asyncio.run(main()) is uringloop.Loop
            loop = asyncio.new_event_loop()
            assert isinstance(loop, uringloop.Loop)
            loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert uringloop.run(main(), debug=True) is True
    assert uringloop.run(main(), debug=False) is False


def test_buffer_ring_exhaustion_loses_nothing(monkeypatch):
    """With only 4 provided buffers, 40 connections sending at once run the
    ring dry: multishot receives end with ENOBUFS and are re-armed, and
    every byte still arrives, in order, on the right connection."""
    monkeypatch.setenv("URINGLOOP_RING", "buffers=4,buffer_size=4096")
    loop = uringloop.new_event_loop()

    async def main():
        received = {}

        async def collect(reader, writer):
            ident = await reader.readexactly(4)
            received[ident] = await reader.read()
            writer.close()

        server = await asyncio.start_server(collect, "127.0.0.1", 0)
        payloads = {i.to_bytes(4, "big"): os.urandom(200_000) for i in range(40)}

        async def send(ident, payload):
            _, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(ident + payload)
            writer.write_eof()
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(send(i, p) for i, p in payloads.items()))
        while len(received) < len(payloads):
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return received == payloads

    try:
        assert loop.run_until_complete(main())
    finally:
        loop.close()


def test_starved_receives_wait_for_the_ring_to_refill(monkeypatch):
    """More busy connections than provided buffers: a receive that ends with
    ENOBUFS is re-armed once buffers are back, not at once into a ring
    still empty (which ended it again at once: ten to twenty-five ENOBUFS
    completions per buffer of data, and connections left waiting for
    seconds).  So the ENOBUFS completions stay about one per buffer filled,
    and every echo still comes back whole."""
    monkeypatch.setenv("URINGLOOP_RING", "buffers=4,buffer_size=4096")
    from uringloop.transports.stream import StreamTransport
    starved = 0
    recv_ended = StreamTransport._recv_ended

    def counting(self, res):
        nonlocal starved
        starved += res == -errno.ENOBUFS
        return recv_ended(self, res)

    monkeypatch.setattr(StreamTransport, "_recv_ended", counting)
    conns, rounds, size = 40, 10, 16384

    async def main():
        served = []

        async def echo(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()
            await writer.wait_closed()
            served.append(writer)

        server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=conns)

        async def client():
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            message = os.urandom(size)
            for _ in range(rounds):
                writer.write(message)
                assert await reader.readexactly(size) == message
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(client() for _ in range(conns)))
        while len(served) < conns:
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    loop = uringloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    filled = 2 * conns * rounds * size // 4096      # both ways, server and clients
    assert 0 < starved <= 2 * filled


@pytest.mark.parametrize("masked", ["", "recvsend_bundle"])
def test_a_refused_multishot_receive_steps_down_and_loses_nothing(monkeypatch, masked):
    """A kernel that bundles but takes no length on a multishot receive (the
    bundle's cap; 6.10 to 6.14) refuses it with EINVAL; the loop then asks
    for plain multishot receives.  Every receive armed before the first
    refusal is refused in its turn, and none of those may step further
    down: such a kernel has multishot receives (on Linux 6.12 the third
    of three connections armed at once failed with EINVAL before).  A
    kernel without bundles that refuses a multishot receive (before 6.0)
    gets single receives.  Each refusal is delivered here as the kernel
    would, once the transport's receive has ended; every byte still
    arrives."""
    monkeypatch.setenv("URINGLOOP_DISABLE", masked)
    loop = uringloop.new_event_loop()

    async def main():
        got = bytearray()
        arrived = asyncio.Event()
        transports = []

        class Collect(asyncio.Protocol):
            def connection_made(self, transport):
                transports.append(transport)

            def data_received(self, data):
                got.extend(data)
                arrived.set()

        server = await loop.create_server(Collect, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname())

        async def through(payload):
            del got[:]
            writer.write(payload)
            while len(got) < len(payload):
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 5)
            assert got == payload

        await through(os.urandom(600_000))
        transport = transports[0]
        steps = []
        for _ in range(1 if masked else 3):
            transport.pause_reading()
            while transport._recv_ud:            # the cancelled receive ends
                await asyncio.sleep(0.001)
            transport._paused = False
            transport._recv_ended(-errno.EINVAL)
            steps.append((loop._ring.features.has("recvsend_bundle"), loop._multishot_recv))
            await through(os.urandom(600_000))
        assert not transport.is_closing()
        transport.close()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return steps

    try:
        if not loop._ring.features.has("multishot_recv"):
            pytest.skip("this kernel has no multishot receives")
        if not masked and not loop._ring.features.has("recvsend_bundle"):
            pytest.skip("this kernel has no receive bundles")
        steps = loop.run_until_complete(main())
        if masked:
            assert steps == [(False, False)]
        else:
            assert steps == [(False, True)] * 3
    finally:
        loop.close()


def test_nodelay_on_tcp_sockets_made_with_proto_0():
    """Sockets made as socket.socket() have proto 0; uringloop (like uvloop,
    unlike asyncio) still disables Nagle on them, since a large message
    reaches the protocol in pieces and Nagle would delay the last echo."""
    import socket
    loop = uringloop.new_event_loop()
    seen = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = await loop.create_server(Probe, sock=listener)
        client = socket.create_connection(listener.getsockname())
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    try:
        assert loop.run_until_complete(main()) != 0
    finally:
        loop.close()


def test_interrupted_dispatch_loses_no_completion():
    """A KeyboardInterrupt raised while completions are being dispatched
    leaves the rest reaped-but-undispatched; the next run dispatches them."""
    loop = uringloop.new_event_loop()
    done = []

    class Nop:
        def __init__(self, name):
            self.name = name

        def complete(self, res, flags):
            done.append(self.name)
            if self.name == "first":
                raise KeyboardInterrupt

    try:
        loop.run_until_complete(asyncio.sleep(0))
        for name in ("first", "second", "third"):
            loop._ring.prep_nop(loop._ops.add(Nop(name)))
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(0.01))
        assert done == ["first"]
        loop.run_until_complete(asyncio.sleep(0.01))
        assert done == ["first", "second", "third"]
        assert len(loop._ops) == 1              # only the wake-up poll is left
    finally:
        loop.close()


def _kernel_workers():
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().startswith("iou-wrk")
        except OSError:
            pass                        # a thread gone meanwhile
    return count


def test_file_workers_are_bounded(monkeypatch, tmp_path):
    """1,000 writes at once (each a worker's job on ext4, whose buffered
    writes cannot be tried inline; a filesystem that can may need none)
    start no more kernel threads than URINGLOOP_RING's workers, here 3."""
    monkeypatch.setenv("URINGLOOP_RING", "workers=3")
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _kernel_workers())
            time.sleep(0.002)

    async def write(i, data):
        async with uringloop.open(tmp_path / str(i), "wb") as f:
            await f.write(data)

    async def main():
        data = os.urandom(256 * 1024)
        await asyncio.gather(*(write(i, data) for i in range(1000)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    loop = uringloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        done.set()
        sampler.join()
        loop.close()
    assert all((tmp_path / str(i)).stat().st_size == 256 * 1024 for i in range(1000))
    assert peak[0] <= 3
