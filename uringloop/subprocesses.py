"""subprocess_exec and subprocess_shell (so asyncio.create_subprocess_*):
children whose exit the ring reports.

Each child gets a pidfd (Linux 5.3).  IORING_OP_WAITID (Linux 6.7) on it
completes when the child exits, having reaped it and written its siginfo
into the op record, which owns that memory until the completion (a cancel
racing the exit must not leave the kernel writing into a freed buffer).
Before 6.7, a POLL on the pidfd says when waitid(WNOHANG) will reap it.
There is no SIGCHLD handler and no watcher thread, so nothing races other
code that waits for children of its own: a pidfd names one process, never
"any child".

Where pidfd_open is refused (Linux before 5.3; container seccomp profiles
that predate it answer ENOSYS or EPERM), a thread waits for each child
with waitpid(), as asyncio's ThreadedChildWatcher does.  A loop closed
while children still run hands each to such a thread too (so no zombie is
left behind), which logs, as asyncio's watcher does, when the child exits.
"""
from __future__ import annotations

import errno
import os
import threading
from asyncio.log import logger
from typing import TYPE_CHECKING

from ._uring import ffi, lib
from .transports.subprocess import SubprocessTransport

if TYPE_CHECKING:
    from asyncio import protocols
    from collections.abc import Sequence
    from typing import Any, Literal

    from .transports.subprocess import _File
    from ._typing import LoopBase as _LoopBase
else:
    _LoopBase = object

POLLIN = 0x001
_SIGINFO_SIZE = lib.ul_siginfo_size()


class _ChildExit:
    """WAITID(P_PIDFD, pidfd, WEXITED): reaps the child; owns the siginfo
    the kernel fills in."""

    __slots__ = ("loop", "transport", "pidfd", "info")

    def __init__(self, loop: _LoopBase, transport: SubprocessTransport, pidfd: int) -> None:
        self.loop = loop
        self.transport = transport
        self.pidfd = pidfd
        self.info = ffi.new("char[]", _SIGINFO_SIZE)

    def start(self) -> None:
        self.loop._start_op(self, self.loop._ring.prep_waitid, os.P_PIDFD, self.pidfd,
                            self.info, os.WEXITED)

    def complete(self, res: int, flags: int) -> None:
        if res == -errno.ECANCELED:
            return
        self.loop._child_exited(self, lib.ul_child_returncode(self.info) if res >= 0 else None)


class _ChildPoll(_ChildExit):
    """Before WAITID: a POLL on the pidfd (readable once the child has
    exited), then waitid(WNOHANG) to reap it."""

    __slots__ = ()

    def start(self) -> None:
        self.loop._start_op(self, self.loop._ring.prep_poll, self.pidfd, POLLIN)

    def complete(self, res: int, flags: int) -> None:
        if res == -errno.ECANCELED:
            return
        info: os.waitid_result | Literal[False] | None
        try:
            info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            info = False                # reaped by someone else
        if info is None:                # not yet (a spurious wake-up)
            self.start()
            return
        self.loop._child_exited(self, _returncode(info) if info else None)


def _returncode(info: os.waitid_result) -> int:
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


class SubprocessMethods(_LoopBase):

    _children: dict[int, _ChildExit]

    def _init_subprocesses(self) -> None:
        self._children = {}             # pid -> its _ChildExit/_ChildPoll
        self._waitid = self._ring.features.has("waitid")
        self._pidfd = self._ring.features.has("pidfd")

    async def _make_subprocess_transport(
            self, protocol: protocols.SubprocessProtocol,
            args: str | bytes | Sequence[str | bytes], shell: bool, stdin: _File,
            stdout: _File, stderr: _File, bufsize: int, extra: dict[str, Any] | None = None,
            **kwargs: Any) -> SubprocessTransport:
        waiter = self.create_future()
        transport = SubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                        bufsize, waiter=waiter, extra=extra, **kwargs)
        self._watch_child(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _watch_child(self, transport: SubprocessTransport) -> None:
        pid = transport.get_pid()
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                # Already reaped by other code: its status is lost.
                self._report_unknown(transport, pid)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
                    raise
                self._pidfd = False
        if not self._pidfd:
            threading.Thread(target=_wait_in_thread, args=(self, transport, pid),
                             name=f"uringloop-waitpid-{pid}", daemon=True).start()
            return
        watch = (_ChildExit if self._waitid else _ChildPoll)(self, transport, pidfd)
        self._children[pid] = watch
        try:
            watch.start()
        except BaseException:
            del self._children[pid]
            os.close(pidfd)
            raise

    def _child_exited(self, watch: _ChildExit, returncode: int | None) -> None:
        del self._children[watch.transport.get_pid()]
        os.close(watch.pidfd)
        self._child_status(watch.transport, returncode)

    def _child_status(self, transport: SubprocessTransport, returncode: int | None) -> None:
        if returncode is None:
            # Reaped meanwhile by other code: Popen.poll() (asyncio's
            # send_signal and close call it) keeps what it found.
            # (type: ignore: _proc goes only with connection_lost, after the exit)
            returncode = transport._proc.returncode  # type: ignore[union-attr]
            if returncode is None:
                self._report_unknown(transport, transport.get_pid())
                return
        # One iteration later, as asyncio's loop does: pipe data the child
        # wrote before exiting is delivered first.
        self.call_soon(transport._process_exited, returncode)

    def _report_unknown(self, transport: SubprocessTransport, pid: int) -> None:
        logger.warning("Unknown child process pid %d, will report returncode 255", pid)
        self.call_soon(transport._process_exited, 255)

    def _close_subprocesses(self) -> None:
        """The loop is closed with children still running: reap each when it
        exits, in a thread, so none is left a zombie."""
        for pid, watch in self._children.items():
            threading.Thread(target=_reap, args=(repr(self), pid, watch.pidfd),
                             name=f"uringloop-reaper-{pid}", daemon=True).start()
        self._children.clear()


def _wait_in_thread(loop: _LoopBase, transport: SubprocessTransport, pid: int) -> None:
    try:
        _, status = os.waitpid(pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        returncode = None               # reaped by other code
    try:
        loop.call_soon_threadsafe(loop._child_status, transport, returncode)
    except RuntimeError:
        if returncode is not None:
            logger.warning("Loop %r that handles pid %r is closed", loop, pid)


def _reap(loop: str, pid: int, pidfd: int) -> None:
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    except ChildProcessError:
        pass                            # reaped by other code (or by the ring)
    else:
        logger.warning("Loop %s that handles pid %r is closed", loop, pid)
    finally:
        os.close(pidfd)
