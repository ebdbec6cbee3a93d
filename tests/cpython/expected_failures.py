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
