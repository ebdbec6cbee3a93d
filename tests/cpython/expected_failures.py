"""The reviewed list of CPython asyncio tests that do not pass on uringloop
yet, each with its reason.  Keys are CPython's `module.Class.test` names
(the class whose tests the runner takes, its loop replaced by uringloop's).

conftest.py marks each entry strict xfail, so a test that starts passing
fails the run until its entry is removed: every feature issue deletes its
reason's entries.  HANGS_ entries wait for a peer that never comes; they
are reported as expected failures without being run, to spare the timeout.

Reviewed on CPython 3.11 (the Python CI runs); NEWER, at the end, adds
the tests of later Pythons.
"""
import sys


class Reason(str):
    """Why a test is expected to fail."""
    hangs = False


class Hangs(Reason):
    """Why a test is expected to hang: it is reported, not run."""
    hangs = True


SELECTOR = Reason("inspects selector internals (loop._selector, "
                  "_sock_sendfile_native_impl, asyncio.unix_events.os)")

EXPECTED = {

    # SELECTOR: the selector loop's own internals
    "test_events.EPollEventLoopTests.test_timeout_rounding": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_blocking_error": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel1": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel2": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_exception": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_not_available": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_first_call": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_next_call": SELECTOR,

}

# Tests that newer Pythons add, merged in where they run (CI's 3.11 has none
# of them; checked by hand on 3.12.1 and 3.13.0).
NEWER = {
}
for _version, _entries in NEWER.items():
    if sys.version_info >= _version:
        EXPECTED.update(_entries)


# Tests that race their own server thread, on asyncio's loop as on ours: each
# is run again (up to RERUNS times) when it fails, on every loop kind.
RERUNS = 2

RACES = {
    # The test reads the TLS transport's get_extra_info("sockname") after
    # create_connection() returns.  Its HTTPS server thread answers the
    # request MyProto sends in connection_made() and closes at once; when
    # the answer and the close_notify arrive before run_until_complete()
    # returns, SSLProtocol has dropped its transport and answers None (its
    # _get_extra_info, asyncio's code, on every loop).  At that check, in 300
    # runs (600 checks), asyncio's loop had already begun the shutdown twice;
    # on uringloop the test failed once in 300 runs, and once in 600.
    "test_events.EPollEventLoopTests.test_create_ssl_connection":
        "reads extra info of a connection its server may already have closed",
    # The same check, over a Unix socket.
    "test_events.EPollEventLoopTests.test_create_ssl_unix_connection":
        "reads extra info of a connection its server may already have closed",
}
