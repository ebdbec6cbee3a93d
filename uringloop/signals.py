"""add_signal_handler and remove_signal_handler, with asyncio's semantics
and errors, delivered through the ring.

CPython runs a Python-level signal handler only between bytecodes of the
main thread, and a loop blocked in io_uring_enter may not get there soon.
So, as asyncio's Unix loop does, each handled signal gets a do-nothing
Python handler and CPython's C handler writes the signal's number to the
file named by signal.set_wakeup_fd(): here the write end of a pipe whose
read end a POLL on the ring watches.  Its completion reads the numbers and
queues the handlers' callbacks like any other ready callback.

No signal is blocked (signalfd would need that): a blocked mask would be
inherited by every child the process spawns and would change when
CPython's own handlers run.
"""
from __future__ import annotations

import errno
import os
import signal
import warnings
from asyncio import coroutines
from asyncio.log import logger
from typing import TYPE_CHECKING

from .handle import Handle
from .ring import CQE_F_MORE

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TypeVarTuple, Unpack

    from ._typing import LoopBase as _LoopBase

    _Ts = TypeVarTuple("_Ts")
else:
    _LoopBase = object

POLLIN = 0x001


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the work is done by the wakeup fd."""


class SignalWakeup:
    """The POLL on the read end of the loop's signal pipe (multishot where
    the kernel has it).  A poll owns no memory the kernel writes to."""

    __slots__ = ("loop",)

    def __init__(self, loop: _LoopBase) -> None:
        self.loop = loop

    def complete(self, res: int, flags: int) -> None:
        loop = self.loop
        fd = loop._signal_pipe[0]  # type: ignore[index]  # (there while this poll is)
        while True:
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            for signum in data:
                loop._handle_signal(signum)
            if len(data) < 4096:
                break
        if not flags & CQE_F_MORE and not loop._closed:
            loop._arm_signal_wakeup()

    def __repr__(self) -> str:
        return "<uringloop signal wakeup poll>"


class SignalMethods(_LoopBase):
    """The signal half of asyncio's Unix loop, on the ring."""

    _signal_handlers: dict[int, Handle]

    def _init_signals(self) -> None:
        self._signal_handlers = {}
        self._signal_pipe = None        # (read fd, write fd), made on first use

    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[_Ts]], Any],
                           *args: Unpack[_Ts]) -> None:
        """Run callback(*args) on the loop whenever signal `sig` arrives."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: a loop running in
            # another thread cannot take signals.
            signal.set_wakeup_fd(self._signal_wakeup_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        self._signal_handlers[sig] = Handle(callback, args, self, None)
        try:
            signal.signal(sig, _ignore)
            signal.siginterrupt(sig, False)     # SA_RESTART: fewer EINTRs elsewhere
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._clear_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        """Remove the handler of `sig`; True if there was one."""
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._clear_wakeup_fd()
        return True

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return                      # removed after the signal arrived
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._ready.append(handle)

    def _signal_wakeup_fd(self) -> int:
        if self._signal_pipe is None:
            self._signal_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._arm_signal_wakeup()
        return self._signal_pipe[1]

    def _arm_signal_wakeup(self) -> None:
        ring = self._ring
        prep = ring.prep_poll_multishot if ring.features.has("multishot_poll") else ring.prep_poll
        # (type: ignore: called once the pipe is made)
        self._start_op(SignalWakeup(self), prep, self._signal_pipe[0], POLLIN)  # type: ignore[index]

    def _clear_wakeup_fd(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    def _close_signals(self, finalizing: bool) -> None:
        """Closing the loop: asyncio's loop removes every handler (not while
        the interpreter shuts down, where it only warns)."""
        if not finalizing:
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown stage, "
                          f"skipping signal handlers removal", ResourceWarning, source=self)
            self._signal_handlers.clear()

    def _close_signal_pipe(self) -> None:
        """After the ring: the poll on the read end went with it."""
        if self._signal_pipe is not None:
            for fd in self._signal_pipe:
                os.close(fd)
            self._signal_pipe = None
