"""Datagram endpoints and the datagram sock_* calls.

loop.create_datagram_endpoint() with UDP over IPv4 and IPv6 and with Unix
datagram sockets (filesystem paths and Linux abstract names), the datagram
transport (sendto, extra info, flow control, close and abort, errors
reported through error_received), and loop.sock_recvfrom(),
sock_recvfrom_into() and sock_sendto() on plain non-blocking sockets.

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop.  asyncio (of the running Python) is the reference: each
assertion was first checked against it and must hold identically on
uringloop and uringloop-compat.  Payloads are distinct (a sequence number
in each) and checked byte for byte; source addresses are checked too.

Where uvloop parts from asyncio the test asserts each loop's own behaviour
and its docstring says so.  In short:
  - no sock_recvfrom / sock_recvfrom_into / sock_sendto at all
    (AbstractEventLoop's NotImplementedError, before any argument check);
  - create_datagram_endpoint() takes only (host, port) tuples: Unix
    datagram endpoints are made from a socket passed as sock= (local_addr=
    or remote_addr= a path raises TypeError); no unbound AF_UNIX endpoint
    (family=AF_UNIX alone: ValueError 'unexpected address family');
    allow_broadcast=True with remote_addr= connects the socket (asyncio
    leaves it unconnected: peername None); other exceptions and messages
    for bad arguments, and a failed call (address in use, no common
    family) leaves its transport unclosed (a ResourceWarning when
    collected);
  - abstract Unix addresses come out padded with NULs to the full 108 bytes
    of sun_path, and sendto() an abstract address sends to that padded name
    (so nothing arrives: error_received(ConnectionRefusedError));
  - sendto(): another TypeError message, and falsy non-bytes (None) are
    dropped silently; sendto(data) without an address on an unconnected
    transport is error_received(EDESTADDRREQ) (asyncio: a fatal TypeError
    that closes the transport); an address of the wrong family raises
    ValueError (asyncio: error_received(gaierror)), so does a host name
    (asyncio's socket.sendto() resolves it); on a transport made from a
    connected sock=, sendto(data, the peer's address) is
    error_received(EISCONN) (asyncio sends it);
  - an exception raised by datagram_received() reaches the exception
    handler as {'exception': exc}, without a message;
  - abort() with datagrams queued reports each dropped datagram to the
    exception handler; default write-buffer limits (16, 65536); no 8
    header bytes per queued datagram in get_write_buffer_size() on 3.13;
  - an unclosed transport's ResourceWarning says 'unclosed resource';
  - sock_sendall(b'') on a connected UDP socket sends nothing (asyncio
    sends an empty datagram).

Asyncio behaviours that depend on the Python version: DatagramTransport.
sendto(b'') sends nothing before 3.13 and an empty datagram from 3.13
(gh-113812); 3.13 counts 8 header bytes per queued datagram in
get_write_buffer_size() (and early 3.13 releases forget to take them off
again, gh-135444: the size is not checked to return to 0 there).

Waits are on events with generous deadlines (a broken loop fails instead
of hanging); "nothing arrives" checks necessarily watch for a short while.
Nothing here measures speed.
"""
import asyncio
import errno
import gc
import itertools
import os
import socket
import struct
import sys
import tempfile

import pytest

from support import (
    payload, open_fds, settle_fds, wait, until, check_bytes, record_exceptions, DEADLINE, HOST,
)

pytestmark = pytest.mark.timeout(30)

HOST6 = "::1"
MAX_UDP4 = 65507             # 65535 - 20 (IPv4 header) - 8 (UDP header)
MAX_UDP6 = 65527             # 65535 - 8: the IPv6 payload length excludes its header
SUN_PATH = 108               # sizeof(sockaddr_un.sun_path) on Linux
EMPTY_DATAGRAMS_SENT = sys.version_info >= (3, 13)    # gh-113812
HEADER_BYTES = 8 if sys.version_info >= (3, 13) else 0      # asyncio's, per queued datagram
NOT_DGRAM = ("A datagram socket was expected" if sys.version_info >= (3, 13)
             else "A UDP Socket was expected")
QUIET = 0.05                 # how long "nothing arrives" checks watch


def _has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind((HOST6, 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this host")

_names = itertools.count()


def abstract_name():
    """A fresh Linux abstract-namespace address (a str starting with NUL)."""
    return f"\0uringloop-dg-{os.getpid()}-{next(_names)}"


def uvloop_abstract(name):
    """An abstract address as uvloop reports it: the whole sun_path."""
    return name.encode().ljust(SUN_PATH, b"\0")


# -- helpers


def settle(future, value):
    """Resolve a future a test may have given up on (wait_for cancels it)."""
    if not future.done():
        future.set_result(value)


class Recorder(asyncio.DatagramProtocol):
    """Records every callback in order (events: 'made', 'datagram', 'error',
    'pause', 'resume', 'lost'), the datagrams as (data, addr) (also fed to
    `queue`), the exceptions given to error_received and connection_lost.
    echo=True sends each datagram back to its sender."""

    def __init__(self, echo=False):
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.transport = None
        self.events = []
        self.datagrams = []
        self.errors = []
        self.queue = asyncio.Queue()
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        settle(self.made, transport)

    def datagram_received(self, data, addr):
        self.events.append("datagram")
        self.datagrams.append((data, addr))
        self.queue.put_nowait((data, addr))
        if self.echo and addr is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.events.append("error")
        self.errors.append(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        settle(self.lost, exc)

    async def next(self):
        return await wait(self.queue.get())

    async def closed(self):
        """close() and wait for connection_lost; its argument."""
        self.transport.close()
        return await wait(asyncio.shield(self.lost))


_made = []    # (loop, transport) from endpoint() and unix_endpoint()


@pytest.fixture(autouse=True)
def abort_leftovers(new_loop):
    """Abort what a failed test left open before its loop is closed: uvloop's
    close() warns about an open UDP handle, the warning is an error here, and
    the close never returns.  (Set up after new_loop, so torn down before.)"""
    yield
    while _made:
        loop, transport = _made.pop()
        if not loop.is_closed() and not transport.is_closing():
            transport.abort()
            loop.run_until_complete(asyncio.sleep(0.01))


async def endpoint(factory=Recorder, **kwargs):
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(factory, **kwargs)
    _made.append((loop, transport))
    return transport, protocol


async def failed_endpoint(loop_kind, exc_type, **kwargs):
    """create_datagram_endpoint(**kwargs) must raise exc_type: the exception.
    uvloop leaves the UDPTransport it had made for a failed call unclosed:
    once collected it warns ResourceWarning('unclosed resource ...'),
    checked here so that it happens here."""
    if loop_kind != "uvloop":
        with pytest.raises(exc_type) as info:
            await endpoint(**kwargs)
        return info.value
    with pytest.warns(ResourceWarning, match="^unclosed resource"):
        with pytest.raises(exc_type) as info:
            await endpoint(**kwargs)
        exc = info.value
        del info
        for e in (exc, exc.__cause__, exc.__context__):
            if e is not None:
                e.__traceback__ = None
        gc.collect()
    return exc


async def unix_endpoint(loop_kind, factory=Recorder, local=None, remote=None):
    """create_datagram_endpoint(family=AF_UNIX, local_addr=local,
    remote_addr=remote).  uvloop takes only (host, port) tuples (TypeError):
    there the same socket is made by hand and passed as sock=."""
    loop = asyncio.get_running_loop()
    if loop_kind != "uvloop":
        return await endpoint(factory, local_addr=local, remote_addr=remote, family=socket.AF_UNIX)
    with pytest.raises(TypeError, match=r"must be a tuple of \(host, port\)"):
        await loop.create_datagram_endpoint(
            factory, local_addr=local, remote_addr=remote, family=socket.AF_UNIX)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        if local is not None:
            sock.bind(local)
        if remote is not None:
            sock.connect(remote)
        transport_and_protocol = await loop.create_datagram_endpoint(factory, sock=sock)
    except BaseException:
        sock.close()
        raise
    _made.append((loop, transport_and_protocol[0]))
    return transport_and_protocol


@pytest.fixture
def sockets():
    """make(family, bind=None, connect=None): a raw non-blocking datagram
    socket, closed at teardown."""
    made = []

    def make(family=socket.AF_INET, bind=None, connect=None):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        made.append(sock)
        sock.setblocking(False)
        if bind is not None:
            sock.bind(bind)
        if connect is not None:
            sock.connect(connect)
        return sock

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def sockdir():
    """A short directory for Unix socket paths (sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="uringloop-dg-") as path:
        yield path


async def recv_raw(sock, size=65536, timeout=DEADLINE):
    """The next datagram on a raw non-blocking socket, by polling (no
    sock_recvfrom on uvloop): (data, addr)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return sock.recvfrom(size)
        except BlockingIOError:
            if loop.time() > deadline:
                raise AssertionError("no datagram before the deadline") from None
            await asyncio.sleep(0.002)


def drain_raw(sock, size=65536, most=None):
    """The datagrams waiting on a raw non-blocking socket, now (all of
    them, or at most `most`)."""
    got = []
    while most is None or len(got) < most:
        try:
            got.append(sock.recv(size))
        except BlockingIOError:
            break
    return got


async def nothing_arrives(sock):
    await asyncio.sleep(QUIET)
    assert drain_raw(sock) == []


def roomy(sock):
    """Let `sock` send Unix datagrams of a couple of hundred KiB whatever
    net.core.wmem_default says (the kernel caps this at wmem_max)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return sock


def closed_udp_port():
    """A loopback UDP port nobody is bound to (just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def message(seq, size):
    """A distinct datagram of `size` bytes (>= 8) carrying its number."""
    return b"%07d|" % seq + payload(size - 8, seed=seq)


# -- round trips


def test_ping_pong_10000(loop, run):
    """10,000 round trips between a connected client endpoint and a server
    endpoint (IPv4), one datagram in flight at a time, sizes 8..1031 bytes:
    each echo is the datagram sent, in order, and the server sees every one
    from the client's address."""
    n = 10_000
    messages = [message(i, 8 + i % 1024) for i in range(n)]

    class Client(Recorder):
        def __init__(self):
            super().__init__()
            self.next_seq = 0
            self.bad = []
            self.done = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            super().connection_made(transport)
            transport.sendto(messages[0])

        def datagram_received(self, data, addr):
            if data != messages[self.next_seq]:
                self.bad.append(self.next_seq)
            self.next_seq += 1
            if self.next_seq == n:
                settle(self.done, None)
            else:
                self.transport.sendto(messages[self.next_seq])

    async def main():
        errors = record_exceptions(loop)
        server, sp = await endpoint(lambda: Recorder(echo=True), local_addr=(HOST, 0))
        address = server.get_extra_info("sockname")
        client, cp = await endpoint(Client, remote_addr=address)
        await wait(cp.done)
        assert cp.bad == []
        assert cp.next_seq == n
        me = client.get_extra_info("sockname")
        assert sp.datagrams == [(m, me) for m in messages]
        assert sp.errors == cp.errors == []
        assert await cp.closed() is None
        assert await sp.closed() is None
        assert errors == []

    run(main())


@pytest.mark.parametrize("family", ["ipv4", pytest.param("ipv6", marks=needs_ipv6)])
def test_largest_datagrams(loop, run, family):
    """The largest UDP payload over loopback (65507 bytes over IPv4, 65527
    over IPv6) goes there and back intact, four distinct ones in turn.  One
    byte more: sendto() returns, and the transport's error_received() gets
    OSError(EMSGSIZE) (connected and unconnected alike); the transport stays
    open and carries the next datagram."""
    host, biggest = (HOST, MAX_UDP4) if family == "ipv4" else (HOST6, MAX_UDP6)

    async def main():
        errors = record_exceptions(loop)
        server, sp = await endpoint(lambda: Recorder(echo=True), local_addr=(host, 0))
        address = server.get_extra_info("sockname")
        client, cp = await endpoint(remote_addr=address[:2])
        me = client.get_extra_info("sockname")
        for i in range(4):
            data = message(i, biggest)
            client.sendto(data)
            got, addr = await cp.next()
            check_bytes(got, data)
            assert addr == address
            assert sp.datagrams[-1][1] == me
        # one byte too many, from the connected client
        client.sendto(message(99, biggest + 1))
        await until(lambda: cp.errors)
        assert [type(e) for e in cp.errors] == [OSError]
        assert cp.errors[0].errno == errno.EMSGSIZE
        assert not client.is_closing()
        # and from the unconnected server, to the client
        server.sendto(message(98, biggest + 1), me)
        await until(lambda: sp.errors)
        assert sp.errors[0].errno == errno.EMSGSIZE
        assert not server.is_closing()
        # both still work
        data = message(5, biggest)
        client.sendto(data)
        got, _ = await cp.next()
        check_bytes(got, data)
        assert cp.events == ["made"] + ["datagram"] * 4 + ["error", "datagram"]
        assert len(sp.datagrams) == 5
        assert await cp.closed() is None
        assert await sp.closed() is None
        assert errors == []

    run(main())


def test_100_clients_on_one_server(loop, run):
    """100 client endpoints (remote_addr=) on one server endpoint, all at
    once, each doing 5 round trips with its own payloads: every client gets
    its own echoes, in order, from the server's address, and the server saw
    each datagram exactly once, from the address of the client that sent it."""
    clients, rounds = 100, 5

    async def main():
        errors = record_exceptions(loop)
        server, sp = await endpoint(lambda: Recorder(echo=True), local_addr=(HOST, 0))
        address = server.get_extra_info("sockname")

        async def client(i):
            transport, protocol = await endpoint(remote_addr=address)
            sent = []
            for k in range(rounds):
                data = message(i * rounds + k, 16 + (i * 7 + k) % 300)
                transport.sendto(data)
                sent.append(data)
                assert await protocol.next() == (data, address)
            assert protocol.errors == []
            return transport.get_extra_info("sockname"), sent, protocol

        results = await wait(asyncio.gather(*(client(i) for i in range(clients))))
        addresses = {name for name, _, _ in results}
        assert len(addresses) == clients
        expected = {(data, name) for name, sent, _ in results for data in sent}
        assert len(sp.datagrams) == clients * rounds
        assert set(sp.datagrams) == expected
        for name, sent, _ in results:       # each client's datagrams in its order
            assert [d for d, a in sp.datagrams if a == name] == sent
        for _, _, protocol in results:
            assert await protocol.closed() is None
        assert await sp.closed() is None
        assert errors == []

    run(main())


# -- errors reported through error_received


def test_connected_udp_to_a_closed_port(loop, run, sockets):
    """A connected endpoint (remote_addr=) sending to a port nobody listens
    on: the ICMP port-unreachable comes back as error_received(
    ConnectionRefusedError) (asyncio gets it from the failing recv; the
    next send may get it too): never connection_lost, never an exception
    handler call.  The transport stays open: once someone binds the port,
    the next datagram arrives there."""
    async def main():
        errors = record_exceptions(loop)
        port = closed_udp_port()
        client, cp = await endpoint(remote_addr=(HOST, port))
        deadline = loop.time() + DEADLINE
        i = 0
        while not cp.errors:                    # one send is normally enough
            assert loop.time() < deadline, "no ConnectionRefusedError"
            client.sendto(b"probe %d" % i)
            i += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(QUIET)
        assert cp.errors
        for exc in cp.errors:
            assert isinstance(exc, ConnectionRefusedError)
            assert exc.errno == errno.ECONNREFUSED
        assert set(cp.events) == {"made", "error"}
        assert cp.events[0] == "made"
        assert not client.is_closing()
        assert not cp.lost.done()
        receiver = sockets(bind=(HOST, port))
        client.sendto(b"now there is someone")
        assert await recv_raw(receiver) == (b"now there is someone",
                                            client.get_extra_info("sockname"))
        assert await cp.closed() is None
        assert errors == []

    run(main())


def test_send_error_on_unconnected_transport(loop, loop_kind, run, sockets):
    """Unconnected endpoint: sendto() to port 0 is error_received(OSError
    EINVAL), the transport stays open and the next sendto() arrives.
    An IPv6 address on an IPv4 transport: asyncio's sendto() reports the
    socket.gaierror through error_received; uvloop raises ValueError
    ('... socket family mismatch or a DNS lookup is required')."""
    async def main():
        errors = record_exceptions(loop)
        receiver = sockets(bind=(HOST, 0))
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        transport.sendto(b"to port 0", (HOST, 0))
        await until(lambda: protocol.errors)
        assert [type(e) for e in protocol.errors] == [OSError]
        assert protocol.errors[0].errno == errno.EINVAL
        assert not transport.is_closing()
        if loop_kind == "uvloop":
            with pytest.raises(ValueError, match="socket family mismatch"):
                transport.sendto(b"v6", (HOST6, receiver.getsockname()[1]))
        else:
            transport.sendto(b"v6", (HOST6, receiver.getsockname()[1]))
            await until(lambda: len(protocol.errors) == 2)
            assert isinstance(protocol.errors[1], socket.gaierror)
        assert not transport.is_closing()
        transport.sendto(b"still open", receiver.getsockname())
        assert await recv_raw(receiver) == (b"still open", transport.get_extra_info("sockname"))
        assert protocol.events == ["made"] + ["error"] * len(protocol.errors)
        assert await protocol.closed() is None
        assert errors == []

    run(main())


def test_sendto_a_hostname(loop, loop_kind, run, sockets):
    """sendto(data, ('localhost', port)) on an unconnected IPv4 endpoint:
    asyncio's socket.sendto() resolves the name (blocking) and the datagram
    arrives; uvloop raises ValueError('... socket family mismatch or a DNS
    lookup is required')."""
    async def main():
        errors = record_exceptions(loop)
        receiver = sockets(bind=(HOST, 0))
        port = receiver.getsockname()[1]
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        if loop_kind == "uvloop":
            with pytest.raises(ValueError, match="a DNS lookup is required"):
                transport.sendto(b"by name", ("localhost", port))
            await nothing_arrives(receiver)
        else:
            transport.sendto(b"by name", ("localhost", port))
            assert await recv_raw(receiver) == (b"by name", transport.get_extra_info("sockname"))
        assert protocol.events == ["made"]
        assert await protocol.closed() is None
        assert errors == []

    run(main())


def test_sendto_without_address_on_unconnected_transport(loop, loop_kind, run):
    """sendto(data) with no address on an unconnected endpoint.  asyncio:
    socket.sendto(data, None) raises TypeError, a fatal write error: the
    exception handler gets 'Fatal write error on datagram transport' with
    it and connection_lost(TypeError) follows.  uvloop:
    error_received(OSError EDESTADDRREQ), the transport stays open."""
    async def main():
        errors = record_exceptions(loop)
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        transport.sendto(b"where to?")
        if loop_kind == "uvloop":
            await until(lambda: protocol.errors)
            assert protocol.errors[0].errno == errno.EDESTADDRREQ
            assert not transport.is_closing()
            assert await protocol.closed() is None
            assert errors == []
        else:
            exc = await wait(asyncio.shield(protocol.lost))
            assert isinstance(exc, TypeError)
            assert transport.is_closing()
            assert protocol.events == ["made", "lost"]
            assert [c["message"] for c in errors] == ["Fatal write error on datagram transport"]
            assert errors[0]["exception"] is exc

    run(main())


# -- sendto


def test_sendto_on_connected_transport(loop, run, sockets):
    """On a connected endpoint sendto(data) and sendto(data, the remote
    address) both send; another address raises ValueError('Invalid address:
    must be None or <remote address>') and sends nothing; bytearray and
    memoryview are sent as bytes.  After close() a connected transport drops
    datagrams silently (asyncio counts them towards its 'socket.send()
    raised exception.' warning)."""
    async def main():
        errors = record_exceptions(loop)
        receiver = sockets(bind=(HOST, 0))
        remote = receiver.getsockname()
        client, cp = await endpoint(remote_addr=remote)
        me = client.get_extra_info("sockname")
        client.sendto(b"no address")
        client.sendto(b"same address", remote)
        with pytest.raises(ValueError) as info:
            client.sendto(b"other", (HOST, 9 if remote[1] != 9 else 10))
        assert str(info.value) == f"Invalid address: must be None or {remote}"
        client.sendto(bytearray(b"a bytearray"))
        client.sendto(memoryview(b"xa memoryviewx")[1:-1])
        for want in (b"no address", b"same address", b"a bytearray", b"a memoryview"):
            assert await recv_raw(receiver) == (want, me)
        await nothing_arrives(receiver)
        client.close()
        client.sendto(b"after close")
        assert await wait(asyncio.shield(cp.lost)) is None
        client.sendto(b"after connection_lost")
        await nothing_arrives(receiver)
        assert cp.events == ["made", "lost"]
        assert errors == []

    run(main())


@pytest.mark.parametrize("data", ["text", 123, [1], None], ids=["str", "int", "list", "None"])
def test_sendto_non_bytes(loop, loop_kind, run, sockets, data):
    """sendto() of anything not bytes-like raises TypeError and sends
    nothing.  asyncio: 'data argument must be a bytes-like object, not
    <type>'.  uvloop: 'a bytes-like object is required, not <type>', and a
    falsy value (None) is dropped silently instead."""
    async def main():
        errors = record_exceptions(loop)
        receiver = sockets(bind=(HOST, 0))
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        kind = type(data).__name__
        if loop_kind == "uvloop" and not data:
            transport.sendto(data, receiver.getsockname())
        else:
            with pytest.raises(TypeError) as info:
                transport.sendto(data, receiver.getsockname())
            if loop_kind == "uvloop":
                assert str(info.value) == f"a bytes-like object is required, not '{kind}'"
            else:
                assert str(info.value) == f"data argument must be a bytes-like object, not '{kind}'"
        await nothing_arrives(receiver)
        assert not transport.is_closing()
        assert protocol.events == ["made"]
        assert await protocol.closed() is None
        assert errors == []

    run(main())


def test_empty_datagrams(loop, loop_kind, run, sockets):
    """An empty datagram received is datagram_received(b'', sender) on
    every loop.  sendto(b'') (connected or not): asyncio before 3.13 sends
    nothing, from 3.13 an empty datagram (gh-113812); uvloop sends nothing."""
    sends_empty = EMPTY_DATAGRAMS_SENT and loop_kind != "uvloop"

    async def main():
        errors = record_exceptions(loop)
        raw = sockets(bind=(HOST, 0))
        server, sp = await endpoint(local_addr=(HOST, 0))
        address = server.get_extra_info("sockname")
        raw.sendto(b"", address)
        raw.sendto(b"then this", address)
        assert await sp.next() == (b"", raw.getsockname())
        assert await sp.next() == (b"then this", raw.getsockname())
        client, cp = await endpoint(remote_addr=raw.getsockname())
        for transport, addr in ((server, raw.getsockname()), (client, None)):
            transport.sendto(b"", addr)
            transport.sendto(b"after", addr)
            want = [b"", b"after"] if sends_empty else [b"after"]
            got = [(await recv_raw(raw))[0] for _ in want]
            assert got == want
        await nothing_arrives(raw)
        assert await cp.closed() is None
        assert await sp.closed() is None
        assert errors == []

    run(main())


# -- Unix datagram endpoints


def test_unix_path_endpoint(loop, loop_kind, run, sockets, sockdir):
    """A Unix datagram endpoint bound to a path (local_addr=path,
    family=AF_UNIX; uvloop: sock=): sockname is the path, peername None.
    Senders' addresses as datagram_received gets them: a path-bound sender
    its path (str), an unbound one None, an autobound one its abstract name
    (bytes, b'\\0' + 5 hex digits), an abstract-bound one its name (bytes);
    uvloop pads abstract names with NULs to 108 bytes.  sendto(data, path)
    answers a path-bound sender, which sees the endpoint's path.  A stale
    socket file at the path is replaced (asyncio unlinks it first)."""
    path = os.path.join(sockdir, "server")
    abstract = abstract_name()

    async def main():
        errors = record_exceptions(loop)
        if loop_kind != "uvloop":
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            stale.bind(path)
            stale.close()                       # leaves the socket file behind
        server, sp = await unix_endpoint(loop_kind, local=path)
        assert server.get_extra_info("sockname") == path
        assert server.get_extra_info("peername") is None
        bound = sockets(socket.AF_UNIX, bind=os.path.join(sockdir, "bound"))
        unbound = sockets(socket.AF_UNIX)
        auto = sockets(socket.AF_UNIX, bind="")
        named = sockets(socket.AF_UNIX, bind=abstract)
        for i, sock in enumerate((bound, unbound, auto, named)):
            sock.sendto(b"from %d" % i, path)
        got = [await sp.next() for _ in range(4)]
        autoname = auto.getsockname()
        assert isinstance(autoname, bytes) and len(autoname) == 6 and autoname[0] == 0
        if loop_kind == "uvloop":
            autoname, named_as = autoname.ljust(SUN_PATH, b"\0"), uvloop_abstract(abstract)
        else:
            named_as = abstract.encode()
        assert got == [(b"from 0", os.path.join(sockdir, "bound")), (b"from 1", None),
                       (b"from 2", autoname), (b"from 3", named_as)]
        server.sendto(b"answer", os.path.join(sockdir, "bound"))
        assert await recv_raw(bound) == (b"answer", path)
        data = message(1, 200_000)              # Unix datagrams may exceed 64 KiB
        roomy(bound).setblocking(True)
        bound.sendto(data, path)
        bound.setblocking(False)
        got, addr = await sp.next()
        check_bytes(got, data)
        assert addr == os.path.join(sockdir, "bound")
        assert sp.errors == []
        assert await sp.closed() is None
        assert errors == []

    run(main())


def test_unix_abstract_endpoint(loop, loop_kind, run, sockets):
    """An endpoint on a Linux abstract name (local_addr='\\0name',
    family=AF_UNIX; a bytes local_addr is TypeError('string is expected');
    uvloop: sock=): sockname is the name as bytes.  sendto() to an abstract
    address, str or bytes, arrives from the endpoint's name.  uvloop pads
    the names to 108 bytes: what it receives carries the padded name, and
    what it sends to an abstract name goes to the padded one, so nothing
    arrives and error_received gets ConnectionRefusedError."""
    name, peer_name = abstract_name(), abstract_name()

    async def main():
        errors = record_exceptions(loop)
        if loop_kind != "uvloop":
            with pytest.raises(TypeError, match="string is expected"):
                await loop.create_datagram_endpoint(
                    Recorder, local_addr=name.encode(), family=socket.AF_UNIX)
        server, sp = await unix_endpoint(loop_kind, local=name)
        assert server.get_extra_info("sockname") == name.encode()
        peer = sockets(socket.AF_UNIX, bind=peer_name)
        peer.sendto(b"hello abstract", name)
        data, addr = await sp.next()
        assert data == b"hello abstract"
        if loop_kind == "uvloop":
            assert addr == uvloop_abstract(peer_name)
            server.sendto(b"str address", peer_name)
            await until(lambda: sp.errors)
            assert isinstance(sp.errors[0], ConnectionRefusedError)
            await nothing_arrives(peer)
        else:
            assert addr == peer_name.encode()
            server.sendto(b"str address", peer_name)
            server.sendto(b"bytes address", peer_name.encode())
            server.sendto(b"as received", addr)
            for want in (b"str address", b"bytes address", b"as received"):
                assert await recv_raw(peer) == (want, name.encode())
            assert sp.errors == []
        assert await sp.closed() is None
        assert errors == []

    run(main())


def test_unix_connected_client(loop, loop_kind, run, sockets, sockdir):
    """remote_addr=path, family=AF_UNIX (uvloop: a connected socket as
    sock=): peername is the path, sockname '' (unbound), and the server
    sees its datagrams from None.  sendto(data, path) sends too; on
    asyncio sendto() another path raises ValueError('Invalid address: must
    be None or <path>').  uvloop's transport on a connected sock= does not
    know its remote address: sendto(data, path) is error_received(EISCONN).
    With local_addr= as well, the server sees the client's path and its
    answers come back from the server's path."""
    path = os.path.join(sockdir, "server")
    client_path = os.path.join(sockdir, "client")

    async def main():
        errors = record_exceptions(loop)
        server = sockets(socket.AF_UNIX, bind=path)
        client, cp = await unix_endpoint(loop_kind, remote=path)
        assert client.get_extra_info("peername") == path
        assert client.get_extra_info("sockname") == ""
        client.sendto(b"anonymous")
        client.sendto(b"anonymous, addressed", path)
        assert await recv_raw(server) == (b"anonymous", None)
        if loop_kind == "uvloop":
            await until(lambda: cp.errors)
            assert cp.errors[0].errno == errno.EISCONN
            cp.errors.clear()
        else:
            assert await recv_raw(server) == (b"anonymous, addressed", None)
            with pytest.raises(ValueError) as info:
                client.sendto(b"elsewhere", path + "-other")
            assert str(info.value) == f"Invalid address: must be None or {path}"
        assert await cp.closed() is None

        client, cp = await unix_endpoint(loop_kind, local=client_path, remote=path)
        assert client.get_extra_info("peername") == path
        assert client.get_extra_info("sockname") == client_path
        client.sendto(b"named")
        assert await recv_raw(server) == (b"named", client_path)
        server.sendto(b"reply", client_path)
        assert await cp.next() == (b"reply", path)
        await nothing_arrives(server)
        assert cp.errors == []
        assert await cp.closed() is None
        assert errors == []

    run(main())


# -- create_datagram_endpoint's arguments and extra info


def test_local_remote_and_both(loop, run, sockets):
    """local_addr only: bound there, no peer.  remote_addr only: connected,
    bound to an ephemeral loopback port.  Both: bound and connected.
    get_extra_info: 'socket' (a SOCK_DGRAM of the right family, the
    transport's fd), 'sockname', 'peername' (None when unconnected), a
    default for unknown keys.  connection_made has run when the call
    returns."""
    async def main():
        errors = record_exceptions(loop)
        peer = sockets(bind=(HOST, 0))
        server, sp = await endpoint(local_addr=(HOST, 0))
        assert sp.events == ["made"] and sp.transport is server
        address = server.get_extra_info("sockname")
        assert address[0] == HOST and address[1] > 0
        assert server.get_extra_info("peername") is None
        sock = server.get_extra_info("socket")
        assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_DGRAM)
        assert sock.getsockname() == address
        assert server.get_extra_info("no such key", "dflt") == "dflt"
        assert server.get_extra_info("no such key") is None

        client, cp = await endpoint(remote_addr=address)
        assert cp.events == ["made"]
        assert client.get_extra_info("peername") == address
        me = client.get_extra_info("sockname")
        assert me[0] == HOST and me[1] > 0

        both, bp = await endpoint(local_addr=(HOST, 0), remote_addr=peer.getsockname())
        assert both.get_extra_info("peername") == peer.getsockname()
        both_name = both.get_extra_info("sockname")
        client.sendto(b"c")
        assert await sp.next() == (b"c", me)
        both.sendto(b"b")
        assert await recv_raw(peer) == (b"b", both_name)
        peer.sendto(b"back", both_name)
        assert await bp.next() == (b"back", peer.getsockname())
        for p in (sp, cp, bp):
            assert await p.closed() is None
        assert errors == []

    run(main())


def test_hostname_is_resolved(loop, run):
    """local_addr=('localhost', 0) is resolved (to an address the loopback
    datagram reaches)."""
    async def main():
        transport, protocol = await endpoint(local_addr=("localhost", 0))
        host, port = transport.get_extra_info("sockname")[:2]
        assert host in (HOST, HOST6)
        assert port > 0
        assert await protocol.closed() is None

    run(main())


@needs_ipv6
def test_ipv6_endpoints(loop, run):
    """family=AF_INET6: with local_addr=('::1', 0) bound there (4-tuple
    sockname); with no address, an unbound AF_INET6 socket (('::', 0, 0,
    0)); round trip between a connected v6 client and a v6 server."""
    async def main():
        errors = record_exceptions(loop)
        server, sp = await endpoint(lambda: Recorder(echo=True), local_addr=(HOST6, 0),
                                    family=socket.AF_INET6)
        address = server.get_extra_info("sockname")
        assert address[0] == HOST6 and len(address) == 4
        assert server.get_extra_info("socket").family == socket.AF_INET6
        unbound, up = await endpoint(family=socket.AF_INET6)
        assert unbound.get_extra_info("sockname") == ("::", 0, 0, 0)
        client, cp = await endpoint(remote_addr=address[:2], family=socket.AF_INET6)
        assert client.get_extra_info("peername") == address
        client.sendto(b"six")
        assert await cp.next() == (b"six", address)
        assert sp.datagrams == [(b"six", client.get_extra_info("sockname"))]
        for p in (sp, up, cp):
            assert await p.closed() is None
        assert errors == []

    run(main())


def test_family_without_addresses(loop, loop_kind, run):
    """No address at all: family=AF_INET gives an unbound ('0.0.0.0', 0)
    endpoint; family=0 raises ValueError('unexpected address family');
    family=AF_UNIX gives an unbound Unix datagram endpoint (sockname '') on
    asyncio, ValueError('unexpected address family') on uvloop."""
    async def main():
        transport, protocol = await endpoint(family=socket.AF_INET)
        assert transport.get_extra_info("sockname") == ("0.0.0.0", 0)
        assert await protocol.closed() is None
        with pytest.raises(ValueError, match="^unexpected address family$"):
            await endpoint()
        if loop_kind == "uvloop":
            with pytest.raises(ValueError, match="^unexpected address family$"):
                await endpoint(family=socket.AF_UNIX)
        else:
            transport, protocol = await endpoint(family=socket.AF_UNIX)
            assert transport.get_extra_info("sockname") == ""
            assert transport.get_extra_info("socket").family == socket.AF_UNIX
            assert await protocol.closed() is None

    run(main())


def test_reuse_port(loop, loop_kind, run, sockets):
    """reuse_port=True sets SO_REUSEPORT: two endpoints bind the same port,
    a third without it gets EADDRINUSE (asyncio: the OSError itself;
    uvloop: OSError('could not bind to local_addr ...') caused by it)."""
    async def main():
        first, fp = await endpoint(local_addr=(HOST, 0), reuse_port=True)
        port = first.get_extra_info("sockname")[1]
        second, secp = await endpoint(local_addr=(HOST, port), reuse_port=True)
        assert second.get_extra_info("sockname") == (HOST, port)
        for t in (first, second):
            assert t.get_extra_info("socket").getsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        exc = await failed_endpoint(loop_kind, OSError, local_addr=(HOST, port))
        assert exc.errno == errno.EADDRINUSE or exc.__cause__.errno == errno.EADDRINUSE
        # datagrams to the port reach one of the two
        sender = sockets(bind=(HOST, 0))
        sender.sendto(b"either", (HOST, port))
        await until(lambda: fp.datagrams or secp.datagrams)
        assert (fp.datagrams + secp.datagrams) == [(b"either", sender.getsockname())]
        assert await fp.closed() is None
        assert await secp.closed() is None

    run(main())


def test_address_in_use(loop, loop_kind, run, sockets):
    """local_addr= a port already bound: asyncio raises OSError(EADDRINUSE);
    uvloop raises OSError('could not bind to local_addr (...)') whose
    __cause__ is the EADDRINUSE (and warns about the transport it leaves
    unclosed)."""
    async def main():
        taken = sockets(bind=(HOST, 0)).getsockname()
        exc = await failed_endpoint(loop_kind, OSError, local_addr=taken)
        if loop_kind == "uvloop":
            assert str(exc) == f"could not bind to local_addr {taken}"
            assert exc.__cause__.errno == errno.EADDRINUSE
        else:
            assert exc.errno == errno.EADDRINUSE

    run(main())


def test_allow_broadcast(loop, loop_kind, run, sockets):
    """allow_broadcast=True sets SO_BROADCAST (off by default).  With
    remote_addr= as well asyncio does not connect the socket (peername
    None, and the socket unbound until the first send: the 'sockname' taken
    when the transport was made is ('0.0.0.0', 0)); sendto() still only
    takes that address.  uvloop connects it."""
    async def main():
        errors = record_exceptions(loop)
        peer = sockets(bind=(HOST, 0))
        on, op = await endpoint(local_addr=(HOST, 0), allow_broadcast=True)
        off, offp = await endpoint(local_addr=(HOST, 0))
        assert on.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
        assert off.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0
        remote, rp = await endpoint(remote_addr=peer.getsockname(), allow_broadcast=True)
        assert remote.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
        if loop_kind == "uvloop":
            assert remote.get_extra_info("peername") == peer.getsockname()
        else:
            assert remote.get_extra_info("peername") is None
            assert remote.get_extra_info("sockname") == ("0.0.0.0", 0)
        remote.sendto(b"implicit")
        remote.sendto(b"explicit", peer.getsockname())
        with pytest.raises(ValueError, match="Invalid address: must be None or"):
            remote.sendto(b"other", off.get_extra_info("sockname"))
        me = (HOST, remote.get_extra_info("socket").getsockname()[1])   # bound by now
        assert await recv_raw(peer) == (b"implicit", me)
        assert await recv_raw(peer) == (b"explicit", me)
        for p in (op, offp, rp):
            assert await p.closed() is None
        assert errors == []

    run(main())


def test_existing_socket(loop, run, sockets):
    """sock= an already-bound UDP socket: made non-blocking, used as is
    (its address is the sockname), receives and sends; closing the
    transport closes the socket."""
    async def main():
        errors = record_exceptions(loop)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        address = sock.getsockname()
        transport, protocol = await endpoint(lambda: Recorder(echo=True), sock=sock)
        assert sock.gettimeout() == 0
        assert transport.get_extra_info("sockname") == address
        assert transport.get_extra_info("peername") is None
        peer = sockets(bind=(HOST, 0))
        peer.sendto(b"via sock=", address)
        assert await recv_raw(peer) == (b"via sock=", address)
        assert await protocol.closed() is None
        await until(lambda: sock.fileno() == -1)
        assert errors == []

    run(main())


BAD_WITH_SOCK = [
    ("local_addr", dict(local_addr=(HOST, 0)), "local_addr=('127.0.0.1', 0)"),
    ("remote_addr", dict(remote_addr=(HOST, 9)), "remote_addr=('127.0.0.1', 9)"),
    ("family", dict(family=socket.AF_INET), f"family={socket.AF_INET}"),
    ("proto", dict(proto=17), "proto=17"),
    ("flags", dict(flags=1), "flags=1"),
    ("reuse_port", dict(reuse_port=True), "reuse_port=True"),
    ("allow_broadcast", dict(allow_broadcast=True), "allow_broadcast=True"),
]


@pytest.mark.parametrize("name,kwargs,shown", BAD_WITH_SOCK, ids=[b[0] for b in BAD_WITH_SOCK])
def test_sock_with_other_arguments(loop, loop_kind, run, name, kwargs, shown):
    """sock= with any socket modifier: ValueError('socket modifier keyword
    arguments can not be used when sock is specified. (<the arguments>)'),
    the socket left open.  uvloop's list of arguments also names its
    reuse_address sentinel."""
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError) as info:
                await endpoint(sock=sock, **kwargs)
            text = str(info.value)
            assert text.startswith("socket modifier keyword arguments can not be used "
                                   "when sock is specified. (")
            if loop_kind != "uvloop":
                assert text.endswith(f"({shown})")
            else:
                assert shown in text
            assert sock.fileno() != -1

    run(main())


def test_non_datagram_sock(loop, loop_kind, run):
    """sock= a SOCK_STREAM socket: ValueError('A UDP Socket was expected,
    got <socket repr>') ('A datagram socket ...' from Python 3.13; uvloop
    keeps 'A UDP Socket'), the socket left open."""
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            with pytest.raises(ValueError) as info:
                await endpoint(sock=sock)
            words = "A UDP Socket was expected" if loop_kind == "uvloop" else NOT_DGRAM
            assert str(info.value) == f"{words}, got {sock!r}"
            assert sock.fileno() != -1

    run(main())


@pytest.mark.parametrize("which", ["local_addr", "remote_addr"])
@pytest.mark.parametrize("shape", ["str", "3-tuple", "list"])
def test_address_not_a_pair(loop, loop_kind, run, which, shape):
    """An IP address that is not a 2-tuple.  asyncio: TypeError('2-tuple is
    expected') for a str, a 3-tuple and a list.  uvloop: TypeError('<which>
    must be a tuple of (host, port)') for the first two, and it takes the
    list."""
    port = 0 if which == "local_addr" else 9
    addr = {"str": HOST, "3-tuple": (HOST, port, 0), "list": [HOST, port]}[shape]

    async def main():
        if loop_kind == "uvloop" and shape == "list":
            transport, protocol = await endpoint(**{which: addr})
            assert await protocol.closed() is None
            return
        with pytest.raises(TypeError) as info:
            await endpoint(**{which: addr})
        if loop_kind == "uvloop":
            assert str(info.value) == f"{which} must be a tuple of (host, port)"
        else:
            assert str(info.value) == "2-tuple is expected"

    run(main())


@needs_ipv6
def test_families_of_local_and_remote_differ(loop, loop_kind, run):
    """local_addr IPv4 and remote_addr IPv6: no (family, proto) pair suits
    both.  asyncio: ValueError('can not get address information'); uvloop:
    OSError('could not bind to remote_addr (...)'), leaving a transport
    unclosed."""
    async def main():
        if loop_kind == "uvloop":
            exc = await failed_endpoint(loop_kind, OSError,
                                        local_addr=(HOST, 0), remote_addr=(HOST6, 9))
            assert str(exc) == f"could not bind to remote_addr {(HOST6, 9)}"
        else:
            with pytest.raises(ValueError, match="^can not get address information$"):
                await endpoint(local_addr=(HOST, 0), remote_addr=(HOST6, 9))

    run(main())


# -- lifecycle, flow control, buffering


def test_lifecycle(loop, run, sockets):
    """connection_made before create_datagram_endpoint returns;
    is_closing() False until close(); close() does not call
    connection_lost at once, it comes later, once, with None (a second
    close() changes nothing); no datagram_received after close(), not even
    for datagrams already waiting in the socket."""
    async def main():
        errors = record_exceptions(loop)
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        address = transport.get_extra_info("sockname")
        assert protocol.events == ["made"]
        assert not transport.is_closing()
        sender = sockets(bind=(HOST, 0))
        sender.sendto(b"one", address)
        assert await protocol.next() == (b"one", sender.getsockname())
        for i in range(3):
            sender.sendto(b"late %d" % i, address)   # waiting in the socket
        transport.close()
        assert transport.is_closing()
        assert protocol.events == ["made", "datagram"]
        transport.close()
        assert await wait(asyncio.shield(protocol.lost)) is None
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made", "datagram", "lost"]
        assert transport.is_closing()
        assert errors == []

    run(main())


def test_close_from_datagram_received(loop, run, sockets):
    """A protocol that closes its transport in datagram_received gets no
    further datagram, even with more already waiting."""
    class CloseOnFirst(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            self.transport.close()

    async def main():
        errors = record_exceptions(loop)
        transport, protocol = await endpoint(CloseOnFirst, local_addr=(HOST, 0))
        sender = sockets(bind=(HOST, 0))
        for i in range(8):
            sender.sendto(b"d%d" % i, transport.get_extra_info("sockname"))
        assert await wait(asyncio.shield(protocol.lost)) is None
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made", "datagram", "lost"]
        assert protocol.datagrams == [(b"d0", sender.getsockname())]
        assert errors == []

    run(main())


def test_write_buffer_limits(loop, loop_kind, run):
    """get_write_buffer_size() is 0 when nothing is queued.  Default limits
    (low, high) = (16384, 65536) on asyncio, (16, 65536) on uvloop.
    set_write_buffer_limits(high=100) -> (25, 100); (high=100, low=10) ->
    (10, 100); high < low: ValueError('high (1) must be >= low (10) must be
    >= 0')."""
    async def main():
        transport, protocol = await endpoint(local_addr=(HOST, 0))
        assert transport.get_write_buffer_size() == 0
        if loop_kind == "uvloop":
            assert transport.get_write_buffer_limits() == (16, 65536)
        else:
            assert transport.get_write_buffer_limits() == (16384, 65536)
        transport.set_write_buffer_limits(high=100)
        assert transport.get_write_buffer_limits() == (25, 100)
        transport.set_write_buffer_limits(high=100, low=10)
        assert transport.get_write_buffer_limits() == (10, 100)
        with pytest.raises(ValueError) as info:
            transport.set_write_buffer_limits(high=1, low=10)
        assert str(info.value) == "high (1) must be >= low (10) must be >= 0"
        assert transport.get_write_buffer_size() == 0
        assert await protocol.closed() is None

    run(main())


DATAGRAM_SIZE = 1000         # queued against a stalled Unix datagram receiver
HIGH, LOW = 4000, 1000       # the sender's write-buffer limits
CAP = 400                    # a producer never paused by then fails


class Producer(Recorder):
    """A Recorder that notes, at pause_writing(), whether it was called from
    inside sendto() and the write-buffer size then."""

    def __init__(self):
        super().__init__()
        self.in_sendto = False
        self.paused_at = None

    def pause_writing(self):
        super().pause_writing()
        self.paused_at = (self.in_sendto, self.transport.get_write_buffer_size())

    def send(self, data):
        self.in_sendto = True
        try:
            self.transport.sendto(data)
        finally:
            self.in_sendto = False


async def stalled_unix_sender(loop_kind, sockets, sockdir, burst=False):
    """A receiving Unix datagram socket nobody reads and a Producer's
    transport connected to it (remote_addr=; uvloop: sock=), with a small
    SO_SNDBUF so the kernel soon pushes back (as net.unix.max_dgram_qlen
    would too) and write limits (LOW, HIGH).  Distinct datagrams are sent
    until pause_writing() is called: all in one go (burst=True), or letting
    the loop run after each.  pause_writing() must come from inside
    sendto(), once the buffer is above HIGH; the buffer counts the payload
    of each queued datagram (+8 on asyncio from Python 3.13, not uvloop)."""
    path = os.path.join(sockdir, "slow")
    receiver = sockets(socket.AF_UNIX, bind=path)
    transport, protocol = await unix_endpoint(loop_kind, Producer, remote=path)
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport.set_write_buffer_limits(high=HIGH, low=LOW)
    assert transport.get_write_buffer_size() == 0
    sent = []
    while "pause" not in protocol.events:
        assert len(sent) < CAP, "pause_writing() was never called"
        sent.append(message(len(sent), DATAGRAM_SIZE))
        protocol.send(sent[-1])
        if not burst and "pause" not in protocol.events:
            await asyncio.sleep(0)
    assert protocol.events == ["made", "pause"]
    in_sendto, size = protocol.paused_at
    assert in_sendto, "pause_writing() was not called from sendto()"
    per = DATAGRAM_SIZE + (0 if loop_kind == "uvloop" else HEADER_BYTES)
    assert HIGH < size <= len(sent) * per and size % per == 0
    assert transport.get_write_buffer_size() == size
    return receiver, transport, protocol, sent


async def close_and_drain(receiver, transport, protocol, sent):
    """close() with datagrams queued, then read slowly: nothing is lost."""
    loop = asyncio.get_running_loop()
    transport.close()
    assert transport.is_closing()
    await asyncio.sleep(QUIET)
    assert protocol.events == ["made", "pause"]
    assert not protocol.lost.done()
    assert transport.get_write_buffer_size() > 0
    got = []
    deadline = loop.time() + DEADLINE
    while not protocol.lost.done():
        assert loop.time() < deadline, "connection_lost never came"
        got += drain_raw(receiver, most=3)      # a slow reader: a few at a time
        await asyncio.sleep(0.002)
    got += drain_raw(receiver)
    assert protocol.lost.result() is None
    assert len(got) == len(sent)
    assert got == sent
    assert protocol.events == ["made", "pause", "resume", "lost"]


def test_pause_writing_within_a_burst(loop, loop_kind, run, sockets, sockdir):
    """Datagrams sent in one go, without the loop running in between, to a
    stalled receiver: asyncio (and uvloop) try each send at once, so
    pause_writing() comes from the sendto() that takes the queue above the
    high-water mark, within the burst.  Then close() and a slow reader:
    every datagram arrives, in order, before connection_lost(None)."""
    async def main():
        errors = record_exceptions(loop)
        stalled = await stalled_unix_sender(loop_kind, sockets, sockdir, burst=True)
        await close_and_drain(*stalled)
        assert errors == []

    run(main())


def test_a_burst_the_kernel_takes_does_not_pause(loop, run, sockets):
    """Write limits (LOW, HIGH) and, in one go, 4 * HIGH bytes of datagrams
    to a UDP receiver with room for them all: the kernel takes each at once
    (loopback UDP never pushes back), so nothing is ever queued beyond the
    high-water mark: no pause_writing(), and every datagram arrives, in
    order.  (pause_writing() means the kernel refused datagrams, not that
    many were sent.)"""
    async def main():
        errors = record_exceptions(loop)
        receiver = sockets(bind=(HOST, 0))
        transport, protocol = await endpoint(Producer, remote_addr=receiver.getsockname())
        transport.set_write_buffer_limits(high=HIGH, low=LOW)
        sent = [message(i, DATAGRAM_SIZE) for i in range(4 * HIGH // DATAGRAM_SIZE)]
        for data in sent:
            protocol.send(data)
        await asyncio.sleep(QUIET)
        assert protocol.events == ["made"]
        me = transport.get_extra_info("sockname")
        assert [await recv_raw(receiver) for _ in sent] == [(data, me) for data in sent]
        assert transport.get_write_buffer_size() == 0
        assert await protocol.closed() is None
        assert protocol.events == ["made", "lost"]
        assert errors == []

    run(main())


def test_flow_control_and_close_with_queued_datagrams(loop, loop_kind, run, sockets, sockdir):
    """A producer that outruns a stalled Unix datagram receiver (letting the
    loop run after each datagram): sendto() queues what the kernel refuses,
    get_write_buffer_size() counts the queued payload bytes (+8 each from
    Python 3.13) and pause_writing() runs, from sendto(), once above the
    high-water mark.  close() then: is_closing(), but no connection_lost
    while datagrams are queued; as the receiver drains, resume_writing()
    runs and every datagram arrives, in order, then connection_lost(None).
    Callbacks: made, pause, resume, lost."""
    async def main():
        errors = record_exceptions(loop)
        stalled = await stalled_unix_sender(loop_kind, sockets, sockdir)
        await close_and_drain(*stalled)
        transport = stalled[1]
        # gh-135444: early 3.13 releases leave 8 bytes per datagram counted
        if not (loop_kind == "asyncio" and HEADER_BYTES):
            assert transport.get_write_buffer_size() == 0
        assert errors == []

    run(main())


def test_flow_control_resumes_when_drained(loop, loop_kind, run, sockets, sockdir):
    """As above without close(): the receiver drains, resume_writing() runs
    once the buffer is down to the low-water mark, everything arrives in
    order, get_write_buffer_size() is back to 0 and the transport stays
    open."""
    async def main():
        errors = record_exceptions(loop)
        receiver, transport, protocol, sent = await stalled_unix_sender(
            loop_kind, sockets, sockdir)
        got = []
        deadline = loop.time() + DEADLINE
        while len(got) < len(sent):
            assert loop.time() < deadline
            got += drain_raw(receiver)
            await asyncio.sleep(0.002)
        assert got == sent
        await until(lambda: "resume" in protocol.events)
        assert protocol.events == ["made", "pause", "resume"]
        if not (loop_kind == "asyncio" and HEADER_BYTES):
            assert transport.get_write_buffer_size() == 0
        assert not transport.is_closing()
        transport.sendto(b"more")
        assert await recv_raw(receiver) == (b"more", None)
        assert await protocol.closed() is None
        assert errors == []

    run(main())


def test_abort_drops_queued_datagrams(loop, loop_kind, run, sockets, sockdir):
    """abort() with datagrams queued: is_closing() at once and
    connection_lost(None) without waiting for the receiver; the queued
    datagrams are dropped (the receiver gets only a prefix of what was
    sent, in order), no resume_writing.  uvloop reports each dropped
    datagram to the exception handler ('Fatal error on transport
    UDPTransport (Fatal write error on datagram transport)', a
    CancelledError) and a failed resume_writing() ('protocol.
    resume_writing() failed'); asyncio reports nothing."""
    async def main():
        errors = record_exceptions(loop)
        receiver, transport, protocol, sent = await stalled_unix_sender(
            loop_kind, sockets, sockdir)
        transport.abort()
        assert transport.is_closing()
        assert await wait(asyncio.shield(protocol.lost)) is None
        await asyncio.sleep(QUIET)
        got = drain_raw(receiver)
        assert len(got) < len(sent)
        assert got == sent[:len(got)]
        assert protocol.events == ["made", "pause", "lost"]
        if loop_kind == "uvloop":
            assert {c.get("message") for c in errors} <= {
                "Fatal error on transport UDPTransport (Fatal write error on datagram transport)",
                "protocol.resume_writing() failed"}
        else:
            assert errors == []

    run(main())


# -- exceptions raised by the protocol


def test_datagram_received_raises(loop, loop_kind, run, sockets):
    """An exception from datagram_received() is not fatal: it goes to the
    loop's exception handler (context['exception'] is it) and the transport
    stays open, later datagrams delivered.  asyncio's context is that of a
    failing callback ('Exception in callback
    _SelectorDatagramTransport._read_ready()', with 'handle'); uvloop's is
    {'exception': exc} alone (no message)."""
    class Boom(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data.startswith(b"boom"):
                raise RuntimeError(data.decode())

    async def main():
        errors = record_exceptions(loop)
        transport, protocol = await endpoint(Boom, local_addr=(HOST, 0))
        address = transport.get_extra_info("sockname")
        sender = sockets(bind=(HOST, 0))
        for data in (b"boom 1", b"fine 1", b"boom 2", b"fine 2"):
            sender.sendto(data, address)
        await until(lambda: len(protocol.datagrams) == 4)
        await until(lambda: len(errors) == 2)
        assert [d for d, _ in protocol.datagrams] == [b"boom 1", b"fine 1", b"boom 2", b"fine 2"]
        assert [str(c["exception"]) for c in errors] == ["boom 1", "boom 2"]
        assert all(type(c["exception"]) is RuntimeError for c in errors)
        if loop_kind == "uvloop":
            assert all(set(c) == {"exception"} for c in errors)
        else:
            assert all(isinstance(c.get("message"), str) and c["message"] for c in errors)
        if loop_kind == "asyncio":
            assert all(c["message"].startswith("Exception in callback") for c in errors)
        assert not transport.is_closing()
        assert not protocol.lost.done()
        transport.sendto(b"still open", sender.getsockname())
        assert await recv_raw(sender) == (b"still open", address)
        assert await protocol.closed() is None
        assert protocol.events == ["made"] + ["datagram"] * 4 + ["lost"]

    run(main())


# -- sock_recvfrom, sock_recvfrom_into, sock_sendto


def test_sock_datagram_calls_ipv4(loop, loop_kind, run, sockets):
    """On non-blocking UDP sockets: sock_sendto() returns the bytes sent;
    sock_recvfrom(sock, n) returns (data, sender address), truncated to n
    (the rest of that datagram discarded); sock_recvfrom_into(sock, buf)
    returns (nbytes, address) with nbytes <= len(buf) (truncated), with
    nbytes= only that many bytes written, nbytes > len(buf):
    ValueError('nbytes is greater than the length of the buffer'); empty
    datagrams go both ways; a pending call completes when the datagram
    comes; EMSGSIZE raised by sock_sendto.  uvloop: NotImplementedError."""
    async def main():
        a = sockets(bind=(HOST, 0))
        b = sockets(bind=(HOST, 0))
        ab, bb = a.getsockname(), b.getsockname()
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                await loop.sock_sendto(a, b"x", bb)
            with pytest.raises(NotImplementedError):
                await loop.sock_recvfrom(b, 10)
            with pytest.raises(NotImplementedError):
                await loop.sock_recvfrom_into(b, bytearray(10))
            return
        assert await loop.sock_sendto(a, b"hello", bb) == 5
        assert await loop.sock_recvfrom(b, 100) == (b"hello", ab)
        data = message(1, 1000)
        assert await loop.sock_sendto(a, data, bb) == 1000
        assert await loop.sock_sendto(a, b"next", bb) == 4
        assert await loop.sock_recvfrom(b, 10) == (data[:10], ab)
        assert await loop.sock_recvfrom(b, 100) == (b"next", ab)

        buf = bytearray(b"." * 20)
        await loop.sock_sendto(a, b"0123456789", bb)
        assert await loop.sock_recvfrom_into(b, buf) == (10, ab)
        assert buf == b"0123456789" + b"." * 10
        buf = bytearray(b"." * 20)
        await loop.sock_sendto(a, b"0123456789", bb)
        assert await loop.sock_recvfrom_into(b, buf, 4) == (4, ab)
        assert buf == b"0123" + b"." * 16
        small = bytearray(3)
        await loop.sock_sendto(a, b"0123456789", bb)
        await loop.sock_sendto(a, b"after", bb)
        assert await loop.sock_recvfrom_into(b, small) == (3, ab)
        assert small == b"012"
        view = memoryview(bytearray(10))
        assert await loop.sock_recvfrom_into(b, view[2:]) == (5, ab)
        assert view.tobytes() == b"\0\0after\0\0\0"
        with pytest.raises(ValueError, match="^nbytes is greater than the length of the buffer$"):
            await loop.sock_recvfrom_into(b, bytearray(3), 10)

        assert await loop.sock_sendto(a, b"", bb) == 0
        assert await loop.sock_recvfrom(b, 10) == (b"", ab)

        with pytest.raises(OSError) as info:
            await loop.sock_sendto(a, b"x" * (MAX_UDP4 + 1), bb)
        assert info.value.errno == errno.EMSGSIZE
        big = message(2, MAX_UDP4)
        assert await loop.sock_sendto(a, big, bb) == MAX_UDP4
        got, addr = await loop.sock_recvfrom(b, 65536)
        check_bytes(got, big)
        assert addr == ab

        for api in ("recvfrom", "recvfrom_into"):     # waiting, then the datagram comes
            buf = bytearray(100)
            if api == "recvfrom":
                task = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
            else:
                task = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
            await asyncio.sleep(0.01)
            assert not task.done()
            a.sendto(b"later " + api.encode(), bb)
            result = await wait(task)
            if api == "recvfrom":
                assert result == (b"later recvfrom", ab)
            else:
                assert result == (19, ab) and buf[:19] == b"later recvfrom_into"
        assert drain_raw(b) == []

    run(main())


def test_sock_datagram_calls_unix(loop, loop_kind, run, sockets, sockdir):
    """The same on Unix datagram sockets: sock_sendto() to a path and to an
    abstract name; sock_recvfrom() gives the sender's path, None for an
    unbound sender, the abstract name as bytes; sock_recvfrom_into() too.
    uvloop: NotImplementedError."""
    path = os.path.join(sockdir, "r")
    sender_path = os.path.join(sockdir, "s")
    abstract = abstract_name()

    async def main():
        r = sockets(socket.AF_UNIX, bind=path)
        s = sockets(socket.AF_UNIX, bind=sender_path)
        anon = sockets(socket.AF_UNIX)
        named = sockets(socket.AF_UNIX, bind=abstract)
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                await loop.sock_sendto(s, b"x", path)
            with pytest.raises(NotImplementedError):
                await loop.sock_recvfrom(r, 10)
            with pytest.raises(NotImplementedError):
                await loop.sock_recvfrom_into(r, bytearray(10))
            return
        assert await loop.sock_sendto(s, b"from a path", path) == 11
        assert await loop.sock_recvfrom(r, 100) == (b"from a path", sender_path)
        await loop.sock_sendto(anon, b"from nobody", path)
        assert await loop.sock_recvfrom(r, 100) == (b"from nobody", None)
        await loop.sock_sendto(named, b"from abstract", path)
        buf = bytearray(64)
        assert await loop.sock_recvfrom_into(r, buf) == (13, abstract.encode())
        assert buf[:13] == b"from abstract"
        await loop.sock_sendto(r, b"to abstract", abstract)
        assert await loop.sock_recvfrom(named, 100) == (b"to abstract", path)
        await loop.sock_sendto(r, b"to abstract, bytes", abstract.encode())
        assert await loop.sock_recvfrom(named, 100) == (b"to abstract, bytes", path)
        data = message(3, 150_000)
        assert await loop.sock_sendto(roomy(s), data, path) == len(data)
        got, addr = await loop.sock_recvfrom(r, 200_000)
        check_bytes(got, data)
        assert addr == sender_path

    run(main())


@pytest.mark.parametrize("api", ["recvfrom", "recvfrom_into"])
def test_cancelled_sock_recvfrom_loses_nothing(loop, loop_kind, run, sockets, api):
    """200 times: a sock_recvfrom (or sock_recvfrom_into) waits, a datagram
    is sent to its socket and the task is cancelled right away, before the
    loop runs again.  The datagram is received exactly once: by the task (if
    it completes despite the cancel) or else by the next call, and every
    payload arrives in order.  uvloop: NotImplementedError."""
    rounds = 200

    async def main():
        r = sockets(bind=(HOST, 0))
        s = sockets(bind=(HOST, 0))
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                await recvfrom(r)
            return
        received = []
        for i in range(rounds):
            data = message(i, 8 + i)
            task = asyncio.ensure_future(recvfrom(r))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not task.done()
            s.sendto(data, r.getsockname())
            task.cancel()
            try:
                received.append(await wait(task))
            except asyncio.CancelledError:
                received.append(await wait(recvfrom(r)))
        assert received == [(message(i, 8 + i), s.getsockname()) for i in range(rounds)]
        assert drain_raw(r) == []

    async def recvfrom(sock):
        if api == "recvfrom":
            return await loop.sock_recvfrom(sock, 1024)
        buf = bytearray(1024)
        n, addr = await loop.sock_recvfrom_into(sock, buf)
        return bytes(buf[:n]), addr

    run(main())


@pytest.mark.parametrize("api", ["recvfrom", "recvfrom_into"])
def test_sock_recvfrom_cancelled_as_the_datagram_is_read(loop, loop_kind, run, sockets, api):
    """200 times: a sock_recvfrom (or _into) waits, a datagram is sent and
    the cancel is scheduled with call_later(0), so it runs in the loop
    iteration that reads the datagram.  Whatever the loop's order, nothing
    is received twice or late: each round, the datagram is the task's result,
    or the next call's (a marker sent after it shows whether it is still
    queued), or, when the cancel landed after the read had completed, lost
    with the task's result.  asyncio loses every one this way (its I/O
    callbacks run before due timers, and a Task cancelled once its future
    is done throws the result away); a loop may lose fewer, never
    duplicate.  uvloop: NotImplementedError."""
    rounds = 200

    async def main():
        r = sockets(bind=(HOST, 0))
        s = sockets(bind=(HOST, 0))
        if loop_kind == "uvloop":
            with pytest.raises(NotImplementedError):
                await recvfrom(r)
            return
        me = s.getsockname()
        outcomes = []
        for i in range(rounds):
            data = message(i, 8 + i)
            marker = b"marker %d" % i
            task = asyncio.ensure_future(recvfrom(r))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not task.done()
            s.sendto(data, r.getsockname())
            loop.call_later(0, task.cancel)
            try:
                result = await wait(task)
            except asyncio.CancelledError:
                result = None
            s.sendto(marker, r.getsockname())
            after = []
            while True:
                got = await wait(recvfrom(r))
                if got == (marker, me):
                    break
                after.append(got)
            if result is not None:
                assert result == (data, me)
                assert after == []
                outcomes.append("task")
            elif after:
                assert after == [(data, me)]
                outcomes.append("next call")
            else:
                outcomes.append("lost")
        assert len(outcomes) == rounds
        assert drain_raw(r) == []

    async def recvfrom(sock):
        if api == "recvfrom":
            return await loop.sock_recvfrom(sock, 1024)
        buf = bytearray(1024)
        n, addr = await loop.sock_recvfrom_into(sock, buf)
        return bytes(buf[:n]), addr

    run(main())


def test_sock_sendall_and_recv_on_connected_udp(loop, loop_kind, run, sockets):
    """sock_sendall / sock_recv / sock_recv_into on connected UDP sockets
    work on every loop (uvloop too), one datagram per call, a short buffer
    truncating.  sock_sendall(b''): asyncio sends an empty datagram
    (sock_recv returns b''); uvloop sends nothing."""
    async def main():
        a = sockets(bind=(HOST, 0))
        b = sockets(bind=(HOST, 0))
        a.connect(b.getsockname())
        b.connect(a.getsockname())
        await loop.sock_sendall(a, b"first")
        await loop.sock_sendall(a, b"second")
        assert await wait(loop.sock_recv(b, 100)) == b"first"
        buf = bytearray(3)
        assert await wait(loop.sock_recv_into(b, buf)) == 3
        assert buf == b"sec"
        data = message(4, MAX_UDP4)
        await loop.sock_sendall(b, data)
        check_bytes(await wait(loop.sock_recv(a, 65536)), data)
        await loop.sock_sendall(a, b"")
        await loop.sock_sendall(a, b"end")
        if loop_kind == "uvloop":
            assert await wait(loop.sock_recv(b, 100)) == b"end"
        else:
            assert await wait(loop.sock_recv(b, 100)) == b""
            assert await wait(loop.sock_recv(b, 100)) == b"end"
        assert drain_raw(b) == []

    run(main())


def test_sock_datagram_calls_refuse_blocking_sockets_in_debug(loop, loop_kind, run):
    """In debug mode sock_recvfrom, sock_recvfrom_into and sock_sendto on a
    blocking socket raise ValueError('the socket must be non-blocking').
    uvloop: NotImplementedError."""
    loop.set_debug(True)

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            calls = [lambda: loop.sock_recvfrom(sock, 10),
                     lambda: loop.sock_recvfrom_into(sock, bytearray(10)),
                     lambda: loop.sock_sendto(sock, b"x", sock.getsockname())]
            for call in calls:
                if loop_kind == "uvloop":
                    with pytest.raises(NotImplementedError):
                        await call()
                else:
                    with pytest.raises(ValueError, match="^the socket must be non-blocking$"):
                        await call()
            assert sock.gettimeout() is None

    run(main())


# -- closing


def test_no_fd_leak_after_100_endpoints(loop, run):
    """50 server endpoints and 50 clients connected to them, each carrying a
    round trip, all closed: the fd count returns to what it was."""
    async def main():
        warm, wp = await endpoint(local_addr=(HOST, 0))       # lazy one-off allocations
        assert await wp.closed() is None
        await asyncio.sleep(0.01)
        before = open_fds()
        protocols = []
        for i in range(50):
            server, sp = await endpoint(lambda: Recorder(echo=True), local_addr=(HOST, 0))
            client, cp = await endpoint(remote_addr=server.get_extra_info("sockname"))
            client.sendto(b"%d" % i)
            assert (await cp.next())[0] == b"%d" % i
            protocols += [sp, cp]
        assert open_fds() >= before + 100
        for p in protocols:
            p.transport.close()
        for p in protocols:
            assert await wait(asyncio.shield(p.lost)) is None
        await settle_fds(before)

    run(main())


def test_unclosed_transport_warns(new_loop, loop_kind):
    """A datagram transport never closed, its loop closed and the transport
    dropped: a ResourceWarning ('unclosed transport ...' on asyncio,
    'unclosed resource ...' on uvloop; on asyncio the socket, collected in
    the same cycle, may warn 'unclosed <socket.socket ...>' as well) and its
    socket is closed: no fd is left open."""
    def abandon():
        loop = new_loop()

        async def main():      # not endpoint(): abort_leftovers would keep them
            transport, protocol = await loop.create_datagram_endpoint(
                Recorder, local_addr=(HOST, 0))
            client, cp = await loop.create_datagram_endpoint(
                Recorder, remote_addr=transport.get_extra_info("sockname"))
            client.sendto(b"x")
            await protocol.next()

        loop.run_until_complete(main())
        loop.close()

    with pytest.warns(ResourceWarning):
        abandon()                       # first-use fds join the baseline
        gc.collect()
    before = open_fds()
    with pytest.warns(ResourceWarning) as caught:
        abandon()
        gc.collect()
    messages = [str(w.message) for w in caught]
    assert all(m.startswith("unclosed") for m in messages), messages
    kind = "unclosed resource <UDPTransport" if loop_kind == "uvloop" else "unclosed transport"
    assert any(m.startswith(kind) for m in messages), messages
    assert open_fds() <= before


def test_netlink_endpoint(loop, loop_kind, run):
    """A family without its own address codec: a netlink socket (sock=)
    asks the kernel for its network links and gets the dump back, from
    address (0, 0), as asyncio passes such addresses to the socket module.
    uvloop: ValueError('cannot open a UDP handle, invalid family 16')."""
    request = struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + struct.pack(
        "BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)      # RTM_GETLINK, dump

    async def main():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
        sock.bind((0, 0))
        if loop_kind == "uvloop":
            with sock:
                exc = await failed_endpoint(loop_kind, ValueError, sock=sock)
            assert "invalid family" in str(exc)
            return
        transport, protocol = await endpoint(Recorder, sock=sock)
        transport.sendto(request, (0, 0))
        await until(lambda: protocol.datagrams)
        data, addr = protocol.datagrams[0]
        assert addr == (0, 0)
        length, kind = struct.unpack_from("=IH", data)
        assert length <= len(data) and kind in (16, 3)     # RTM_NEWLINK, or NLMSG_DONE
        assert await protocol.closed() is None

    run(main())
