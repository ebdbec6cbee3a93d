"""The servers under test: one workload on one event loop, in this process.

    python benchmarks/servers.py --loop uringloop --workload protocol
    python benchmarks/servers.py --loop uvloop --workload tls \
        --certfile server.pem --keyfile server.key

The TLS workloads ("tls", the protocol echo over TLS, and "aiohttp-https")
serve the certificate chain and key given by --certfile and --keyfile
(run.py makes them once per run with trustme); without those they make a
throwaway one themselves.

Two echoes use no stream transport: "udp" sends each datagram back from a
create_datagram_endpoint protocol (its port is a UDP one), and "reader"
serves TCP through loop.add_reader alone, with plain socket calls in the
callbacks.

Prints "READY <port>" on stdout once listening on 127.0.0.1, then obeys
lines on stdin: "start" and "stop" bracket the measured window, and "stop"
answers with one JSON line of this process's CPU time (getrusage, user +
sys, all threads) over the window, how long the loop's thread waited for
its CPU meanwhile, its peak RSS and the errors the loop reported.  EOF on
stdin ends the process.

The control channel is a plain thread blocked in read(), not the loop under
test: it must cost nothing while the load runs and must not depend on
features (pipes, add_reader) that a young loop may lack.
"""
import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
HELLO = b"Hello, World!"
HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                 + str(len(HELLO)).encode() + b"\r\n\r\n" + HELLO)
READ_SIZE = 64 * 1024
# The load generator opens up to thousands of connections at once.
BACKLOG = 4096
# streams-timeout's deadline per request: far beyond any request's time.
REQUEST_TIMEOUT = 30.0
# The UDP echo's receive buffer: the default (208 KiB, charged per buffer,
# not per byte) overflows with a 1,400 B datagram from each of 100 sockets,
# and each drop costs a socket the generator's resend timeout.  The kernel
# caps the request at net.core.rmem_max (often 208 KiB) and doubles it: at
# least room for those 100, for 1,000 (run.py --full) where allowed.
UDP_RCVBUF = 4 << 20


def new_loop(name):
    # Each server imports only its own loop, so peak RSS compares like with like.
    if name == "uringloop":
        import uringloop
        return uringloop.new_event_loop()
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    raise ValueError(f"unknown loop {name!r}")


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def datagram_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


# -- echo, four ways

async def serve_sock(loop, sock):
    async def echo(conn):
        with conn:
            try:
                while True:
                    data = await loop.sock_recv(conn, READ_SIZE)
                    if not data:
                        return
                    await loop.sock_sendall(conn, data)
            except ConnectionError:
                pass

    async def accept_forever():
        tasks = set()
        while True:
            conn, _ = await loop.sock_accept(sock)
            # Transports get TCP_NODELAY from every loop; raw sockets need it here.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(echo(conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    loop.create_task(accept_forever())


async def serve_streams(loop, sock, request_timeout=None):
    """The streams echo; with request_timeout, each request runs under
    asyncio.timeout(), as a server with per-request deadlines does (a timer
    set and cancelled per request)."""
    async def echo(reader, writer):
        try:
            while True:
                if request_timeout is None:
                    more = await echo_request(reader, writer)
                else:
                    async with asyncio.timeout(request_timeout):
                        more = await echo_request(reader, writer)
                if not more:
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(echo, sock=sock, backlog=BACKLOG)


async def echo_request(reader, writer):
    """One request of the streams echo; False at the end of the stream."""
    data = await reader.read(READ_SIZE)
    if data:
        writer.write(data)
        await writer.drain()
    return bool(data)


async def serve_streams_timeout(loop, sock):
    return await serve_streams(loop, sock, REQUEST_TIMEOUT)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray(READ_SIZE)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        # Slicing a bytearray copies: the next read reuses self.buffer while
        # the loop may still hold the bytes written here.
        self.transport.write(self.buffer[:nbytes])


async def serve_protocol(loop, sock):
    return await loop.create_server(EchoProtocol, sock=sock, backlog=BACKLOG)


async def serve_buffered(loop, sock):
    return await loop.create_server(EchoBufferedProtocol, sock=sock, backlog=BACKLOG)


# -- echo without TCP transports: datagrams, and fd watchers

class DatagramEchoProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def serve_udp(loop, sock):
    transport, _ = await loop.create_datagram_endpoint(DatagramEchoProtocol, sock=sock)
    return transport


async def serve_reader(loop, sock):
    """Accepts and echoes through add_reader callbacks only: the loop just
    reports readiness, the callbacks make the socket calls themselves."""
    def on_readable(conn):
        try:
            data = conn.recv(READ_SIZE, socket.MSG_DONTWAIT)
            if data:
                # Blocking: a small echo always fits the send buffer, and a
                # large one waits for the generator to read, with no add_writer.
                conn.sendall(data)
                return
        except BlockingIOError:
            return
        except ConnectionError:
            pass
        loop.remove_reader(conn.fileno())
        conn.close()

    def on_acceptable():
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                return
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.add_reader(conn.fileno(), on_readable, conn)

    loop.add_reader(sock.fileno(), on_acceptable)


# -- HTTP

class HttptoolsProtocol(asyncio.Protocol):
    def __init__(self):
        import httptools
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(HTTP_RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve_httptools(loop, sock):
    return await loop.create_server(HttptoolsProtocol, sock=sock, backlog=BACKLOG)


async def serve_aiohttp(loop, sock, ssl_context=None):
    from aiohttp import web

    async def hello(request):
        return web.Response(text=HELLO.decode())

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context, backlog=BACKLOG).start()
    return runner


# -- TLS: the same servers behind ssl=

async def serve_tls(loop, sock, ssl_context):
    return await loop.create_server(EchoProtocol, sock=sock, ssl=ssl_context, backlog=BACKLOG)


async def serve_aiohttp_https(loop, sock, ssl_context):
    return await serve_aiohttp(loop, sock, ssl_context)


def make_certificate(folder):
    """(certfile, keyfile) for 127.0.0.1 and localhost, from a throwaway CA
    (trustme: an ECDSA P-256 key)."""
    import trustme
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = os.path.join(folder, "server.pem"), os.path.join(folder, "server.key")
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(certfile, append=i > 0)
    leaf.private_key_pem.write_to_path(keyfile)
    return certfile, keyfile


def server_context(certfile, keyfile):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


WORKLOADS = {
    "sock": serve_sock,
    "streams": serve_streams,
    "streams-timeout": serve_streams_timeout,
    "protocol": serve_protocol,
    "buffered": serve_buffered,
    "httptools": serve_httptools,
    "aiohttp": serve_aiohttp,
    "udp": serve_udp,
    "reader": serve_reader,
}
# Served on a UDP socket rather than a listening TCP one.
DATAGRAM_WORKLOADS = {"udp"}
TLS_WORKLOADS = {
    "tls": serve_tls,
    "aiohttp-https": serve_aiohttp_https,
}


class Errors:
    """The loop's exception handler: count, and show the first few."""

    SHOWN = 5

    def __init__(self):
        self.count = 0
        self.first = None

    def __call__(self, loop, context):
        self.count += 1
        if self.first is None:
            exc = context.get("exception")
            self.first = context.get("message", "") + (f": {exc!r}" if exc else "")
        if self.count <= self.SHOWN:
            loop.default_exception_handler(context)


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_delay(tid):
    """Seconds thread `tid` has been runnable but waiting for its CPU, which
    other work on that CPU took (the kernel's schedstat, CONFIG_SCHED_INFO)."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def control(errors, loop_tid):
    started = None
    for line in sys.stdin:
        command = line.strip()
        if command == "start":
            errors.first = None
            started = (cpu_seconds(), time.monotonic(), errors.count, run_delay(loop_tid))
        elif command == "stop" and started is not None:
            cpu, wall, delay = cpu_seconds(), time.monotonic(), run_delay(loop_tid)
            print(json.dumps({
                "cpu": cpu - started[0],
                "wall": wall - started[1],
                "cpu_wait": delay - started[3],
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "errors": errors.count - started[2],
                "first_error": errors.first,
            }), flush=True)
    sys.stdout.flush()
    os._exit(0)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop", required=True, choices=["uringloop", "asyncio", "uvloop"])
    parser.add_argument("--workload", required=True, choices=list(WORKLOADS) + list(TLS_WORKLOADS))
    parser.add_argument("--certfile", help="TLS workloads: the certificate chain (PEM)")
    parser.add_argument("--keyfile", help="TLS workloads: its private key (PEM)")
    args = parser.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")

    ssl_context = None
    if args.workload in TLS_WORKLOADS:
        if args.certfile is None:
            with tempfile.TemporaryDirectory(prefix="uringloop-bench-cert-") as folder:
                ssl_context = server_context(*make_certificate(folder))
        else:
            ssl_context = server_context(args.certfile, args.keyfile)

    raise_fd_limit()
    # The control thread must get the GIL promptly when a marker arrives,
    # so both ends of the window are taken with equally short delays.
    sys.setswitchinterval(0.001)
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    errors = Errors()
    loop.set_exception_handler(errors)
    sock = datagram_socket() if args.workload in DATAGRAM_WORKLOADS else listening_socket()
    if ssl_context is None:
        loop.run_until_complete(WORKLOADS[args.workload](loop, sock))
    else:
        loop.run_until_complete(TLS_WORKLOADS[args.workload](loop, sock, ssl_context))
    threading.Thread(target=control, args=(errors, threading.get_native_id()),
                     daemon=True).start()
    print(f"READY {sock.getsockname()[1]}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
