"""Real third-party users of loop.add_reader()/add_writer(): pyzmq and aiodns.

pyzmq (zmq.asyncio) watches each ZeroMQ socket's notification fd with
add_reader() (edge-style: after every send or recv it checks ZMQ_EVENTS
itself) and, in its Poller, plain fds with add_reader()/add_writer().  The
tests run PUSH/PULL (1,000 multipart messages of 0 bytes to 1 MiB, each
checked) and REQ/REP over ipc:// in the test's tmp_path (no broker), a
recv cancelled by a timeout, and a Poller over a ZeroMQ socket and a
socketpair.  zmq.asyncio finds its loop with get_running_loop() (or
get_event_loop()), so the test's loop is also made the current loop for
the test's duration.  pyzmq works the same on asyncio and uvloop.

aiodns resolves against a small DNS server run by the test on the same
loop (create_datagram_endpoint on 127.0.0.1, an ephemeral port; DNS wire
format by hand: A and AAAA records, NODATA, NXDOMAIN), reached through
c-ares' "127.0.0.1:PORT" server syntax; one test uses TCP
(ARES_FLAG_USEVC) against a create_server responder.  aiodns 4 with
pycares 5 lets c-ares' own event thread watch the sockets and only falls
back to the loop's add_reader/add_writer (c-ares' sock_state_cb) when the
event-thread channel cannot be made.  The tests force that documented
fallback (pycares.Channel refuses a channel without sock_state_cb, as it
does when inotify watches run out) and hand aiodns a stand-in for the loop
that counts the watcher calls, so they prove the loop's watchers carried
the traffic.  One test runs the default event-thread mode: no watcher
used, results come back through call_soon_threadsafe.  aiodns behaves the
same on asyncio and uvloop.

Every test closes what it opened (sockets, contexts, resolvers, endpoints)
and checks that no fd is left behind.
"""
import asyncio
import ipaddress
import logging
import random
import socket
import struct

import aiodns
import pycares
import pytest
import zmq
import zmq.asyncio

from support import open_fds, settle_fds, wait, record_exceptions, MiB, HOST

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def current_loop(loop):
    """The test's loop, also set as the current loop (zmq.asyncio falls back
    to asyncio.get_event_loop()); unset afterwards (the test process has
    no current loop of its own)."""
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)


async def fd_baseline(loop):
    """The fd count once the loop has made its lazy one-off allocations
    (libuv keeps a spare fd after its first listen)."""
    server = await loop.create_server(asyncio.Protocol, HOST, 0)
    server.close()
    await wait(server.wait_closed())
    await asyncio.sleep(0.01)
    return open_fds()


# -- pyzmq


def ipc(tmp_path, name):
    address = f"ipc://{tmp_path}/{name}"
    assert len(address) - len("ipc://") < 100, "ipc path too long for a unix socket"
    return address


def multipart_messages(count):
    """`count` multipart messages: a sequence number, then 1 to 3 parts of
    0 B to 64 KiB; every 200th carries an extra 1 MiB part."""
    rng = random.Random("zmq/push-pull")
    messages = []
    for i in range(count):
        parts = [i.to_bytes(4, "big")]
        for _ in range(rng.randrange(1, 4)):
            parts.append(rng.randbytes(rng.choice([0, 1, 17, 1000, 4096, 65536])))
        if i % 200 == 0:
            parts.append(rng.randbytes(MiB))
        messages.append(parts)
    return messages


def close_zmq(ctx, *sockets):
    for sock in sockets:
        sock.close(linger=0)
    ctx.term()


def test_zmq_push_pull(current_loop, tmp_path):
    """PUSH/PULL over ipc://: 1,000 multipart messages (5 of them with a
    1 MiB part), sent by one task while another receives; every message
    arrives whole, in order, byte for byte."""
    loop = current_loop
    errors = record_exceptions(loop)
    messages = multipart_messages(1000)

    async def main():
        fds = await fd_baseline(loop)
        ctx = zmq.asyncio.Context()
        pull = ctx.socket(zmq.PULL)
        push = ctx.socket(zmq.PUSH)
        try:
            pull.bind(ipc(tmp_path, "pp"))
            push.connect(ipc(tmp_path, "pp"))

            async def send_all():
                for message in messages:
                    await push.send_multipart(message)

            sender = asyncio.ensure_future(send_all())
            for i, want in enumerate(messages):
                got = await wait(pull.recv_multipart())
                assert got == want, f"message {i} differs"
            await wait(sender)
        finally:
            close_zmq(ctx, push, pull)
        await settle_fds(fds)
        assert errors == []

    loop.run_until_complete(main())


def test_zmq_req_rep(current_loop, tmp_path):
    """REQ/REP over ipc://: 200 multipart requests answered by a REP task
    on the same loop; each reply carries its request back."""
    loop = current_loop
    errors = record_exceptions(loop)

    async def main():
        fds = await fd_baseline(loop)
        ctx = zmq.asyncio.Context()
        rep = ctx.socket(zmq.REP)
        req = ctx.socket(zmq.REQ)
        try:
            rep.bind(ipc(tmp_path, "rr"))
            req.connect(ipc(tmp_path, "rr"))

            async def serve(n):
                for _ in range(n):
                    request = await rep.recv_multipart()
                    await rep.send_multipart([b"reply"] + request[::-1])

            server = asyncio.ensure_future(serve(200))
            for i in range(200):
                body = bytes([i]) * (i * 50)
                await req.send_multipart([b"req", str(i).encode(), body])
                assert await wait(req.recv_multipart()) == [b"reply", body, str(i).encode(), b"req"]
            await wait(server)
        finally:
            close_zmq(ctx, req, rep)
        await settle_fds(fds)
        assert errors == []

    loop.run_until_complete(main())


def test_zmq_cancelled_recv_and_poller(current_loop, tmp_path):
    """A recv() cancelled by a timeout leaves the socket usable (the next
    recv gets the message); zmq.asyncio.Poller over a ZeroMQ socket and a
    plain socketpair end (which it watches with add_reader/add_writer):
    POLLIN for each when it has data, POLLOUT for the writable end."""
    loop = current_loop
    errors = record_exceptions(loop)

    async def main():
        fds = await fd_baseline(loop)
        ctx = zmq.asyncio.Context()
        pull = ctx.socket(zmq.PULL)
        push = ctx.socket(zmq.PUSH)
        a, b = socket.socketpair()
        try:
            pull.bind(ipc(tmp_path, "pl"))
            push.connect(ipc(tmp_path, "pl"))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pull.recv(), 0.05)
            await push.send(b"after the timeout")
            assert await wait(pull.recv()) == b"after the timeout"

            poller = zmq.asyncio.Poller()
            poller.register(pull, zmq.POLLIN)
            poller.register(a.fileno(), zmq.POLLIN)
            assert await wait(poller.poll(timeout=50)) == []

            await push.send(b"zmq")
            events = dict(await wait(poller.poll(timeout=5000)))
            assert events == {pull: zmq.POLLIN}
            assert await pull.recv() == b"zmq"

            b.send(b"raw")
            events = dict(await wait(poller.poll(timeout=5000)))
            assert events == {a.fileno(): zmq.POLLIN}
            assert a.recv(10) == b"raw"

            poller.unregister(a.fileno())
            poller.register(b.fileno(), zmq.POLLOUT)
            events = dict(await wait(poller.poll(timeout=5000)))
            assert events == {b.fileno(): zmq.POLLOUT}
        finally:
            a.close()
            b.close()
            close_zmq(ctx, push, pull)
        await settle_fds(fds)
        assert errors == []

    loop.run_until_complete(main())


# -- a DNS server on the loop, for aiodns

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_NXDOMAIN = 3
RECORDS = {
    ("one.test", TYPE_A): "10.0.0.1",
    ("two.test", TYPE_A): "10.0.0.2",
    ("six.test", TYPE_AAAA): "2001:db8::6",
}
# hostN.test (N < 256) has an A record 10.1.0.N; every other name: NXDOMAIN.


def lookup(name, qtype):
    """(rcode, [(type, rdata)]) for a question."""
    name = name.lower()
    if (name, qtype) in RECORDS:
        address = ipaddress.ip_address(RECORDS[name, qtype])
        return 0, [(qtype, address.packed)]
    if name.startswith("host") and name.endswith(".test") and name[4:-5].isdigit():
        return 0, ([(TYPE_A, bytes([10, 1, 0, int(name[4:-5])]))] if qtype == TYPE_A else [])
    if any(known == name for known, _ in RECORDS):
        return 0, []                                   # the name exists: NODATA
    return RCODE_NXDOMAIN, []


def parse_question(query):
    """(name, qtype, the question's bytes) of a query."""
    i = 12
    labels = []
    while query[i]:
        length = query[i]
        labels.append(query[i + 1:i + 1 + length].decode("ascii"))
        i += 1 + length
    end = i + 1 + 4
    qtype, _qclass = struct.unpack("!HH", query[i + 1:end])
    return ".".join(labels), qtype, query[12:end]


def dns_answer(query):
    """The response to a query: header (same id, QR, AA, RD echoed, RA,
    rcode), the question echoed, one answer per record (name as a pointer
    to the question's), no authority or additional section."""
    qid, flags = struct.unpack("!HH", query[:4])
    name, qtype, question = parse_question(query)
    rcode, answers = lookup(name, qtype)
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode,
                         1, len(answers), 0, 0)
    body = b"".join(struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, 300, len(rdata)) + rdata
                    for rtype, rdata in answers)
    return header + question + body


class UdpDns(asyncio.DatagramProtocol):
    """Answers each query at once, or, with hold=N, keeps queries until N
    have arrived and answers them all, in reverse order."""

    def __init__(self):
        self.transport = None
        self.queries = []
        self.hold = 0
        self.held = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.queries.append(parse_question(data)[:2])
        if not self.hold:
            self.transport.sendto(dns_answer(data), addr)
            return
        self.held.append((data, addr))
        if len(self.held) == self.hold:
            for data, addr in reversed(self.held):
                self.transport.sendto(dns_answer(data), addr)
            self.held.clear()


class TcpDns(asyncio.Protocol):
    """DNS over TCP: each message framed by a 2-byte length."""

    def __init__(self, server):
        self.server = server
        self.buffer = b""
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.append(self)

    def data_received(self, data):
        self.buffer += data
        while len(self.buffer) >= 2:
            length = struct.unpack("!H", self.buffer[:2])[0]
            if len(self.buffer) < 2 + length:
                break
            query, self.buffer = self.buffer[2:2 + length], self.buffer[2 + length:]
            self.server.queries.append(parse_question(query)[:2])
            response = dns_answer(query)
            self.transport.write(struct.pack("!H", len(response)) + response)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class WatchCounter:
    """What aiodns gets as its loop: the test's loop, with the calls of
    add_reader/add_writer/remove_reader/remove_writer recorded on the way."""

    def __init__(self, loop):
        self._loop = loop
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._loop, name)

    def _record(self, method, fd, *args):
        self.calls.append((method, fd))
        return getattr(self._loop, method)(fd, *args)

    def add_reader(self, fd, callback, *args):
        return self._record("add_reader", fd, callback, *args)

    def add_writer(self, fd, callback, *args):
        return self._record("add_writer", fd, callback, *args)

    def remove_reader(self, fd):
        return self._record("remove_reader", fd)

    def remove_writer(self, fd):
        return self._record("remove_writer", fd)

    def used(self, method):
        return [fd for m, fd in self.calls if m == method]


FALLBACK_WARNING = "Falling back to socket state callback"


@pytest.fixture
def sock_state_cb(monkeypatch, caplog):
    """Make aiodns use the loop's fd watchers: pycares.Channel refuses to
    make a channel with c-ares' event thread (no sock_state_cb), as when
    inotify watches run out, and aiodns falls back to sock_state_cb, i.e.
    add_reader/add_writer.  Yields a check that the fallback was taken."""
    real_channel = pycares.Channel

    def channel(**kwargs):
        if kwargs.get("sock_state_cb") is None:
            raise pycares.AresError("the test refuses c-ares' event thread")
        return real_channel(**kwargs)

    monkeypatch.setattr(pycares, "Channel", channel)
    caplog.set_level(logging.WARNING, logger="aiodns")

    def fell_back():
        return any(FALLBACK_WARNING in r.getMessage() for r in caplog.records)

    yield fell_back


async def udp_dns(loop):
    transport, server = await loop.create_datagram_endpoint(UdpDns, local_addr=(HOST, 0))
    return transport, server, transport.get_extra_info("sockname")[1]


def resolver_for(counter, port, **kwargs):
    return aiodns.DNSResolver(nameservers=[f"{HOST}:{port}"], loop=counter,
                              timeout=5, tries=1, **kwargs)


def addresses(result):
    return [record.data.addr for record in result.answer]


def check_watchers_used(counter, writer=False):
    """aiodns watched its sockets through the loop, and took every watcher
    off again."""
    assert counter.used("add_reader"), "aiodns never called loop.add_reader()"
    assert set(counter.used("remove_reader")) == set(counter.used("add_reader"))
    if writer:
        assert counter.used("add_writer"), "aiodns never called loop.add_writer()"
        assert set(counter.used("remove_writer")) == set(counter.used("add_writer"))


def test_aiodns_a_aaaa_nodata_nxdomain(loop, sock_state_cb):
    """A, AAAA, a name without the asked type (ARES_ENODATA) and an unknown
    name (NXDOMAIN: DNSError ARES_ENOTFOUND), over UDP, c-ares' sockets
    watched by the loop's add_reader."""
    errors = record_exceptions(loop)

    async def main():
        transport, server, port = await udp_dns(loop)
        fds = open_fds()
        counter = WatchCounter(loop)
        resolver = resolver_for(counter, port)
        try:
            assert sock_state_cb(), "aiodns did not fall back to sock_state_cb"
            result = await wait(resolver.query_dns("one.test", "A"))
            assert addresses(result) == ["10.0.0.1"]
            assert result.answer[0].name == "one.test" and result.answer[0].ttl == 300
            assert addresses(await wait(resolver.query_dns("TWO.test", "A"))) == ["10.0.0.2"]
            assert addresses(await wait(resolver.query_dns("six.test", "AAAA"))) == ["2001:db8::6"]
            with pytest.raises(aiodns.error.DNSError) as info:
                await wait(resolver.query_dns("six.test", "A"))
            assert info.value.args[0] == aiodns.error.ARES_ENODATA
            with pytest.raises(aiodns.error.DNSError) as info:
                await wait(resolver.query_dns("nowhere.test", "A"))
            assert info.value.args[0] == aiodns.error.ARES_ENOTFOUND
            assert info.value.args[1] == "Domain name not found"
        finally:
            await resolver.close()
        assert [q[0].lower() for q in server.queries] == [
            "one.test", "two.test", "six.test", "six.test", "nowhere.test"]
        check_watchers_used(counter)
        await settle_fds(fds)
        transport.close()
        await asyncio.sleep(0)
        assert errors == []

    loop.run_until_complete(main())


def test_aiodns_concurrent_queries(loop, sock_state_cb):
    """50 queries at once: the server holds them until all 50 are in, then
    answers in reverse order; each future gets its own answer."""
    errors = record_exceptions(loop)
    count = 50

    async def main():
        transport, server, port = await udp_dns(loop)
        server.hold = count
        fds = open_fds()
        counter = WatchCounter(loop)
        resolver = resolver_for(counter, port)
        try:
            results = await wait(asyncio.gather(
                *(resolver.query_dns(f"host{i}.test", "A") for i in range(count))))
            assert [addresses(r) for r in results] == [[f"10.1.0.{i}"] for i in range(count)]
        finally:
            await resolver.close()
        assert sorted(q[0] for q in server.queries) == sorted(f"host{i}.test" for i in range(count))
        check_watchers_used(counter)
        await settle_fds(fds)
        transport.close()
        await asyncio.sleep(0)
        assert errors == []

    loop.run_until_complete(main())


def test_aiodns_over_tcp(loop, sock_state_cb):
    """ARES_FLAG_USEVC: queries over TCP to a create_server responder.
    c-ares connects without blocking and waits for writability, so aiodns
    uses add_writer as well as add_reader.  One query, then 20 at once."""
    errors = record_exceptions(loop)

    async def main():
        fds = await fd_baseline(loop)

        class Server:
            queries = []
            connections = []

        server = await loop.create_server(lambda: TcpDns(Server), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        counter = WatchCounter(loop)
        resolver = resolver_for(counter, port, flags=pycares.ARES_FLAG_USEVC)
        try:
            assert addresses(await wait(resolver.query_dns("one.test", "A"))) == ["10.0.0.1"]
            results = await wait(asyncio.gather(
                *(resolver.query_dns(f"host{i}.test", "A") for i in range(20))))
            assert [addresses(r) for r in results] == [[f"10.1.0.{i}"] for i in range(20)]
            with pytest.raises(aiodns.error.DNSError) as info:
                await wait(resolver.query_dns("nowhere.test", "A"))
            assert info.value.args[0] == aiodns.error.ARES_ENOTFOUND
        finally:
            await resolver.close()
        assert len(Server.queries) == 22
        check_watchers_used(counter, writer=True)
        for connection in Server.connections:     # c-ares hangs up; so do we
            await wait(connection.lost)
        server.close()
        await wait(server.wait_closed())
        await settle_fds(fds)
        assert errors == []

    loop.run_until_complete(main())


def test_aiodns_event_thread(loop):
    """aiodns' default with pycares 5: c-ares' own event thread watches the
    sockets, results come back through call_soon_threadsafe, and the loop's
    fd watchers are not used at all (which is why the tests above force
    the sock_state_cb fallback)."""
    errors = record_exceptions(loop)

    async def main():
        transport, server, port = await udp_dns(loop)
        fds = open_fds()
        counter = WatchCounter(loop)
        resolver = resolver_for(counter, port)
        try:
            assert addresses(await wait(resolver.query_dns("one.test", "A"))) == ["10.0.0.1"]
            results = await wait(asyncio.gather(
                *(resolver.query_dns(f"host{i}.test", "A") for i in range(10))))
            assert [addresses(r) for r in results] == [[f"10.1.0.{i}"] for i in range(10)]
        finally:
            await resolver.close()
        assert counter.calls == []
        await settle_fds(fds)        # c-ares' thread closes its fds when it ends
        transport.close()
        await asyncio.sleep(0)
        assert errors == []

    loop.run_until_complete(main())
