"""The loop's capabilities, tried on a throwaway ring.

A capability is a way of using an opcode that IORING_REGISTER_PROBE cannot
tell apart: a multishot receive is a RECV with a flag that kernels before
6.0 refuse with EINVAL.  The loop assumes each one and switches to its
fallback when the kernel answers EINVAL; `python -m uringloop info` uses
these probes to say what this kernel really does.
"""
from __future__ import annotations

import os
import select
import socket

from . import _c
from typing import TYPE_CHECKING

from .ring import CAPABILITIES, CQE_F_MORE, Ring

if TYPE_CHECKING:
    from .ring import BufferRing, Mask

_ACCEPT_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
_POLL, _ACCEPT, _RECV = 1, 2, 3
_WAIT_NS = 100_000_000


def _completions(ring: Ring) -> list[tuple[int, int, int]]:
    """Wait up to 0.1 s; the (user_data, res, flags) that arrived."""
    ring.wait(_WAIT_NS)
    pos = ring.pos
    got = [(ring.user_data[i], ring.res[i], ring.flags[i]) for i in range(pos[0], pos[1])]
    pos[0] = pos[1]
    return got


def _pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def _file_nowait() -> bool:
    """openat2(RESOLVE_CACHED) (Linux 5.12), on the root, which is always
    in the dentry cache; seccomp profiles older than openat2 refuse it."""
    fd = _c.open_cached(-100, b"/", os.O_PATH | os.O_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


def _stays_armed(ring: Ring, ud: int) -> bool:
    """Whether op `ud`'s first completion succeeded and promised more."""
    for _ in range(10):
        for got_ud, res, flags in _completions(ring):
            if got_ud == ud:
                if res >= 0 and ud == _ACCEPT:
                    os.close(res)
                return res >= 0 and bool(flags & CQE_F_MORE)
    return False


def _poll_multishot(ring: Ring) -> bool:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        ring.prep_poll_multishot(_POLL, fd, select.POLLIN)
        os.eventfd_write(fd, 1)
        return _stays_armed(ring, _POLL)
    finally:
        os.close(fd)


def _accept_multishot(ring: Ring) -> bool:
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind("")                       # an abstract address of its own
        listener.listen()
        ring.prep_accept_multishot(_ACCEPT, listener.fileno(), _ACCEPT_FLAGS)
        client.connect(listener.getsockname())
        return _stays_armed(ring, _ACCEPT)


def _recv_multishot(ring: Ring, buffers: BufferRing) -> bool:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_recv_multishot(_RECV, a.fileno(), buffers.bgid)
        b.send(b"x")
        return _stays_armed(ring, _RECV)


def _cancel_and_drain(ring: Ring, armed: set[int]) -> None:
    """Cancel the ops still armed and wait for their final completions."""
    ring.prep_cancel_all()
    for _ in range(10):
        for ud, _res, flags in _completions(ring):
            if not flags & CQE_F_MORE:
                armed.discard(ud)
        if not armed:
            return


def probe_capabilities(mask: Mask | None = None) -> dict[str, bool]:
    """{capability: whether this kernel does it}; a masked one is False."""
    ring = Ring(entries=8, cq_entries=16, mask=mask)
    try:
        ring.enable()
        try:
            buffers: BufferRing | None = ring.buffer_ring(1, 4, 64)
        except OSError:
            buffers = None
        has = {"pbuf_ring": buffers is not None,
               "multishot_poll": _poll_multishot(ring),
               "multishot_accept": _accept_multishot(ring),
               "multishot_recv": buffers is not None and _recv_multishot(ring, buffers),
               "pidfd": _pidfd(),
               "file_nowait": _file_nowait()}
        armed = {ud for ud, name in ((_POLL, "multishot_poll"), (_ACCEPT, "multishot_accept"),
                                     (_RECV, "multishot_recv")) if has[name]}
        _cancel_and_drain(ring, armed)
        if buffers is not None:
            buffers.close()
    finally:
        ring.close()
    return {name: has[name] and name not in ring.features.masked for name in CAPABILITIES}


