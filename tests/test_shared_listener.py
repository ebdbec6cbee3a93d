"""One listening socket served by two loops at once, as gunicorn's workers
and uvicorn --workers share one (here the two loops run in two threads,
each serving its own dup of the socket given with create_server(sock=)).

While one loop is busy, the other must accept the new connections, on
every loop kind: epoll loops both see the socket readable; uringloop
accepts a handed-in socket one connection at a time, so the kernel's
wake-up goes to whichever loop is waiting (a multishot accept would keep
every connection for the busy loop).  Once the busy loop is free, every
connection is echoed, none lost.  Deadlines only turn a hang into a
failure.
"""
import asyncio
import socket
import threading
import time

import pytest

from conftest import close_loop, make_loop
from support import HOST

CLIENTS = 4
DEADLINE = 10.0

pytestmark = pytest.mark.timeout(60)


class Echo(asyncio.Protocol):
    def __init__(self, server):
        self.server = server

    def connection_made(self, transport):
        self.transport = transport
        self.server.transports.append(transport)

    def data_received(self, data):
        self.transport.write(data)


class Serving(threading.Thread):
    """A loop of `kind` serving `sock` in a thread of its own until stop()."""

    def __init__(self, kind, sock):
        super().__init__()
        self.kind, self.sock = kind, sock
        self.transports = []
        self.ready = threading.Event()

    def run(self):
        self.loop = loop = make_loop(self.kind)
        try:
            server = loop.run_until_complete(loop.create_server(lambda: Echo(self), sock=self.sock))
            loop.call_soon(self.ready.set)
            loop.run_forever()
            for transport in self.transports:
                transport.close()
            server.close()
            loop.run_until_complete(server.wait_closed())
        finally:
            close_loop(loop)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(DEADLINE)


def test_a_busy_loop_leaves_the_connections_to_the_other(loop_kind):
    listener = socket.create_server((HOST, 0), backlog=CLIENTS)
    address = listener.getsockname()
    busy, idle = Serving(loop_kind, listener.dup()), Serving(loop_kind, listener)
    clients = []
    release = threading.Event()
    try:
        for serving in (busy, idle):              # one at a time: make_loop sets the environment
            serving.start()
            assert serving.ready.wait(DEADLINE)
        blocked = threading.Event()
        busy.loop.call_soon_threadsafe(lambda: (blocked.set(), release.wait(DEADLINE)))
        assert blocked.wait(DEADLINE)
        for n in range(CLIENTS):
            client = socket.create_connection(address, timeout=DEADLINE)
            clients.append(client)
            client.sendall(b"%d" % n)
        deadline = time.monotonic() + DEADLINE
        while len(idle.transports) < CLIENTS - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # The busy loop's accept may have been armed first: it keeps at most the first.
        assert len(idle.transports) >= CLIENTS - 1
        release.set()
        assert [client.recv(16) for client in clients] == [b"%d" % n for n in range(CLIENTS)]
        assert len(busy.transports) + len(idle.transports) == CLIENTS
    finally:
        release.set()
        for client in clients:
            client.close()
        for serving in (busy, idle):
            if serving.is_alive():
                serving.stop()
