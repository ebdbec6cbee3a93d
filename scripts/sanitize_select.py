"""pytest plugin for scripts/sanitize.sh (-p sanitize_select): which tests run.

Only uringloop's own loop kinds: the memory-safety runs check our C code,
and the asyncio and uvloop copies of each behavioural test never reach it.
Tests without a loop kind (the ring's own tests) are kept.

Under valgrind, also not the tests below.  Valgrind 3.19 (Debian 12) does
not treat io_uring_enter as a call that may block: it keeps its global lock
through the wait, so no other thread runs and no signal is delivered until
a completion arrives (fixed in valgrind 3.23, bug 428364).  A test in which
another thread must act while the loop waits hangs for good.
"""
import os
import re

VALGRIND_SKIP = [
    # The loop waits for a thread: getaddrinfo(None) in the executor, a
    # loop driven from a second thread, a thread sending signals.
    r"test_create_server_hosts\[.*none\]", r"test_hostname_is_resolved\[",
    r"test_loop_run_from_two_threads\[",
    r"test_call_soon_threadsafe_edges\[",
    r"test_signal_storm_while_serving\[",
    # /proc/self/fd also lists valgrind's own fds, above the limit it sets.
    r"test_emfile_while_connecting\[",
    # Too slow under valgrind: 1 MiB echoed through 100-byte buffers (2
    # minutes each with --track-origins), the half-close test (15 s), and
    # 500 connections echoing 32 KiB each against a 10 s deadline.
    r"test_buffered_protocol_echo\[.*-100-1048576B\]",
    r"test_peer_half_closing_while_data_is_queued",
    r"test_500_connections_at_once_overrun_the_buffer_ring\[",
    # sendfile's fallback reads the file in the executor (a thread), as do
    # aiohttp's FileResponse and the TLS fallback; and what moves MiBs
    # through Python or OpenSSL takes minutes under valgrind.  Their small
    # cases, and the rest of both files, run.
    r"test_not_a_regular_file\[", r"test_sendfile_over_tls_falls_back\[",
    r"test_aiohttp_file_response\[", r"test_sendfile_sizes_offsets_counts\[.*100MiB",
    r"test_sendfile_slow_reader\[", r"test_streams_echo\[.*16MiB\]",
    r"test_write_flow_control\[", r"test_aiohttp_https\[", r"test_concurrent_connections\[",
    # pyzmq's and c-ares' own threads and MiB messages miss their deadlines
    # under valgrind; the ASan run covers that file.
    r"test_zmq_", r"test_aiodns_",
    # 10,000 datagrams round trip: the smaller datagram tests run.
    r"test_ping_pong_10000\[",
    # 20,000 timers: the other timer tests run.
    r"test_many_timers_and_cancellations_interleaved\[",
    # A thousand clients (30 s), and MiBs through one socket (2-3 s each):
    # their smaller siblings run, the ASan run takes them all.
    r"test_thousand_concurrent_stream_clients\[", r"test_protocol_echo\[.*-16777216B\]",
    r"test_sock_sendall_larger_than_the_socket_buffer\[",
    r"test_large_write_that_fills_the_socket_keeps_its_order\[",
]
# Of the signal, pipe and subprocess files only these run under valgrind:
# each reaches the C core the same way as the rest (the multishot read, the
# write queue's polls), and the whole files, which wait for threads and
# child processes at every turn, would take valgrind past its 10 minutes.
# The ASan run takes all of them (WAITID's siginfo among them).
VALGRIND_ONLY = {
    # None: valgrind 3.19 delivers a signal sent while the loop waits only
    # once some completion ends the wait, so a signal test may wait forever
    # (the same lock as above); the signal path has no C of its own.
    "test_signals.py": [],
    "test_pipes.py": [r"test_read_pipe_receives_everything_then_eof\[.*-(1B|64KiB)-write_pipe-raw\]",
                      r"test_read_pipe_pause_and_resume\[", r"test_pty_master_to_slave\[",
                      r"test_reader_closes_with_data_queued\["],
    # None: valgrind 3.19 does not know pidfd_open (syscall 434) and answers
    # ENOSYS, so the loop waits for children in a thread (its fallback for
    # kernels without pidfds), and that thread cannot run while valgrind
    # holds its lock through the loop's wait.
    "test_subprocess.py": [],
    # A sample: each ring request with a buffer or path of its own (READ
    # into a cancelled read's buffer, WRITE, OPENAT, STATX...) under memcheck.
    # Not the compat kind's truncate and path calls: those run in the
    # executor there, whose threads cannot run while valgrind holds its lock
    # through the loop's wait (as with test_subprocess.py above).
    "test_files.py": [r"test_binary_round_trip\[uringloop(-compat)?-(0|4097)B-(unbuffered|default)\]",
                      r"test_text_round_trip\[uringloop-compat-4097B-",
                      r"test_cancelled_read_in_flight\[", r"test_cancelled_open_of_a_fifo\[",
                      r"test_truncate\[uringloop-[rw]", r"test_whole_file_helpers\[uringloop\]"],
    # None: uringloop.os hands arguments the ring cannot take as they are to
    # os in the executor, which every case of these tests mixes in (ASan
    # runs them all).
    "test_fileos.py": [],
}
# Of these files only the uringloop kind runs under valgrind, not the
# compat kind: their compat cases reach the same C as the uringloop kind's
# (sends, sock_* tries) plus the ring's fallback paths, which the compat
# cases of the other files run too; the ASan run takes them all.  Without
# this cut valgrind took 9 of its 10 minutes on a slow day (7 on a quiet one).
VALGRIND_ONE_KIND = {"test_streams.py", "test_datagram.py", "test_transport_semantics.py",
                     "test_sendfile.py", "test_tls.py"}
UNDER_VALGRIND = "vgpreload" in os.environ.get("LD_PRELOAD", "")   # valgrind preloads its own


def skipped(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("loop_kind") in ("asyncio", "uvloop"):
        return True
    if not UNDER_VALGRIND:
        return False
    if item.path.name in VALGRIND_ONE_KIND and params.get("loop_kind") == "uringloop-compat":
        return True
    only = VALGRIND_ONLY.get(item.path.name)
    if only is not None:
        return not any(re.match(pattern, item.name) for pattern in only)
    return any(re.match(pattern, item.name) for pattern in VALGRIND_SKIP)


def pytest_collection_modifyitems(config, items):
    drop = [item for item in items if skipped(item)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not skipped(item)]
