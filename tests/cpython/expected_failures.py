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


SIGNALS = Reason("feature not built yet (issue 13: signals)")
SUBPROCESS = Reason("feature not built yet (issue 13: subprocesses)")
PIPES = Reason("feature not built yet (issue 13: pipes)")
SELECTOR = Reason("inspects selector internals (loop._selector, "
                  "_sock_sendfile_native_impl, asyncio.unix_events.os)")

EXPECTED = {
    # PIPES: connect_read_pipe / connect_write_pipe (pipes and ptys)
    "test_events.EPollEventLoopTests.test_bidirectional_pty": PIPES,
    "test_events.EPollEventLoopTests.test_read_pipe": PIPES,
    "test_events.EPollEventLoopTests.test_read_pty_output": PIPES,
    "test_events.EPollEventLoopTests.test_unclosed_pipe_transport": PIPES,
    "test_events.EPollEventLoopTests.test_write_pipe": PIPES,
    "test_events.EPollEventLoopTests.test_write_pipe_disconnect_on_close": PIPES,
    "test_events.EPollEventLoopTests.test_write_pty": PIPES,
    "test_streams.StreamTests.test_read_all_from_pipe_reader": PIPES,

    # SELECTOR: the selector loop's own internals
    "test_events.EPollEventLoopTests.test_timeout_rounding": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_blocking_error": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel1": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_cancel2": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_exception": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_not_available": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_first_call": SELECTOR,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_os_error_next_call": SELECTOR,

    # SIGNALS: add_signal_handler
    "test_events.EPollEventLoopTests.test_add_signal_handler": SIGNALS,
    "test_events.EPollEventLoopTests.test_signal_handling_args": SIGNALS,
    "test_events.EPollEventLoopTests.test_signal_handling_while_selecting": SIGNALS,

    # SUBPROCESS: subprocess_exec / subprocess_shell
    "test_events.EPollEventLoopTests.test_subprocess_close_after_finish": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_close_client_stream": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_exec": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_exitcode": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_interactive": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_kill": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_send_signal": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_shell": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_stderr": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_stderr_redirect_to_stdout": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_terminate": SUBPROCESS,
    "test_events.EPollEventLoopTests.test_subprocess_wait_no_same_group": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_cancel_make_subprocess_transport_exec": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_cancel_post_init": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_cancel_process_wait": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_close_dont_kill_finished": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_close_kill_running": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_communicate": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_communicate_ignore_broken_pipe": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_create_subprocess_exec_with_path": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_devnull_error": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_devnull_input": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_devnull_output": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_devstdin_input": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_empty_input": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_kill": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_kill_issue43884": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_pause_reading": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_popen_error": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_popen_error_with_stdin_pipe": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_read_stdout_after_process_exit": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_send_signal": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_shell": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_start_new_session": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_stdin_broken_pipe": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_stdin_not_inheritable": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_stdin_stdout": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_subprocess_communicate_stdout": SUBPROCESS,
    "test_subprocess.SubprocessThreadedWatcherTests.test_terminate": SUBPROCESS,

}

# Tests that newer Pythons add, merged in where they run (CI's 3.11 has none
# of them; checked by hand on 3.12.1 and 3.13.0).
NEWER = {
    (3, 12): {
        "test_subprocess.SubprocessThreadedWatcherTests.test_communicate_none_input": SUBPROCESS,
        "test_subprocess.SubprocessThreadedWatcherTests.test_create_subprocess_env_exec":
            SUBPROCESS,
        "test_subprocess.SubprocessThreadedWatcherTests.test_create_subprocess_env_shell":
            SUBPROCESS,
        "test_subprocess.SubprocessThreadedWatcherTests.test_subprocess_concurrent_wait":
            SUBPROCESS,
        "test_subprocess.SubprocessThreadedWatcherTests.test_subprocess_protocol_events":
            SUBPROCESS,
    },
    (3, 13): {
        "test_subprocess.SubprocessThreadedWatcherTests.test_subprocess_send_signal_race":
            SUBPROCESS,
    },
}
for _version, _entries in NEWER.items():
    if sys.version_info >= _version:
        EXPECTED.update(_entries)
