"""The Python face of the C core: one io_uring, its probed features, and
the flat completion arrays the loop reads after each wait.

Setup tries the fastest configuration first and falls back tier by tier:

1. SINGLE_ISSUER | DEFER_TASKRUN, created R_DISABLED so that the thread
   that first runs the loop becomes its issuer;
2. COOP_TASKRUN (any thread may drive the ring);
3. a plain ring.

Optional flags (CQE_MIXED, NO_SQARRAY, TASKRUN_FLAG, SUBMIT_ALL, CQSIZE) are
added where the kernel takes them.  URINGLOOP_DISABLE masks any of these,
and the loop's own capabilities, so tests drive every fallback on a new
kernel: ``URINGLOOP_DISABLE=cqe_mixed,defer_taskrun``.  ``io_uring`` in the
mask (optionally ``io_uring=EPERM``) makes setup fail as a kernel without
io_uring would.
"""
from __future__ import annotations

import dataclasses
import errno
import mmap
import os
import threading
import weakref
from typing import TYPE_CHECKING

from ._uring import ffi, lib

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._typing import CData

SETUP_FLAGS: dict[str, int] = {
    "single_issuer": lib.UL_SETUP_SINGLE_ISSUER,
    "defer_taskrun": lib.UL_SETUP_DEFER_TASKRUN,
    "coop_taskrun": lib.UL_SETUP_COOP_TASKRUN,
    "taskrun_flag": lib.UL_SETUP_TASKRUN_FLAG,
    "cqe_mixed": lib.UL_SETUP_CQE_MIXED,
    "no_sqarray": lib.UL_SETUP_NO_SQARRAY,
    "submit_all": lib.UL_SETUP_SUBMIT_ALL,
    "cqsize": lib.UL_SETUP_CQSIZE,
    "r_disabled": lib.UL_SETUP_R_DISABLED,
}

# io_uring_params.features, by bit (kernel ABI).
FEATURE_BITS = (
    "single_mmap", "nodrop", "submit_stable", "rw_cur_pos", "cur_personality",
    "fast_poll", "poll_32bits", "sqpoll_nonfixed", "ext_arg", "native_workers",
    "rsrc_tags", "cqe_skip", "linked_file", "reg_reg_ring", "recvsend_bundle",
    "min_timeout", "rw_attr", "no_iowait",
)

# enum io_uring_op, by number (kernel ABI).
OPCODES = (
    "nop", "readv", "writev", "fsync", "read_fixed", "write_fixed", "poll_add",
    "poll_remove", "sync_file_range", "sendmsg", "recvmsg", "timeout",
    "timeout_remove", "accept", "async_cancel", "link_timeout", "connect",
    "fallocate", "openat", "close", "files_update", "statx", "read", "write",
    "fadvise", "madvise", "send", "recv", "openat2", "epoll_ctl", "splice",
    "provide_buffers", "remove_buffers", "tee", "shutdown", "renameat",
    "unlinkat", "mkdirat", "symlinkat", "linkat", "msg_ring", "fsetxattr",
    "setxattr", "fgetxattr", "getxattr", "socket", "uring_cmd", "send_zc",
    "sendmsg_zc", "read_multishot", "waitid", "futex_wait", "futex_wake",
    "futex_waitv", "fixed_fd_install", "ftruncate", "bind", "listen", "recv_zc",
    "epoll_wait", "readv_fixed", "writev_fixed", "pipe", "nop128",
    "uring_cmd128",
)

# Capabilities of the loop that are not single kernel bits; masking one
# makes the loop take its fallback.
# ("pidfd": os.pidfd_open, which old kernels and seccomp profiles refuse;
# "file_nowait": the files' tries without blocking before a ring request,
# preadv2(RWF_NOWAIT) and openat2(RESOLVE_CACHED), each of which falls back
# per call where the kernel refuses it.)
CAPABILITIES = ("multishot_poll", "multishot_accept", "multishot_recv", "pbuf_ring", "pidfd",
                "file_nowait")

# The file and path requests (uringloop.open, uringloop.os); where one is
# missing or masked, that call runs in the default executor instead.
FILE_OPCODES = ("openat", "close", "read", "write", "fsync", "ftruncate", "statx",
                "unlinkat", "renameat", "mkdirat", "symlinkat", "linkat")

# Features whose absence changes a code path of the core, so masking them
# is meaningful; the rest are reported, not masked.
MASKABLE_FEATURES = ("single_mmap", "ext_arg", "no_iowait", "recvsend_bundle")
# Opcodes the loop has a fallback for.
MASKABLE_OPCODES = ("epoll_wait", "read_multishot", "waitid", *FILE_OPCODES)

OPTIONAL_SETUP = ("cqe_mixed", "no_sqarray", "taskrun_flag", "submit_all", "cqsize")

DEFAULT_ENTRIES = 512
DEFAULT_CQ_ENTRIES = 4096

# The preps the loop uses, by variant (ul_prep_<variant> in _c/prep.c), and
# the opcode each queues.  Ring.prep_<variant> wraps each; `python -m
# uringloop info` lists their opcodes as used.
PREPS: dict[str, str] = {
    "nop": "nop",
    "nop_cqe32": "nop",
    "poll": "poll_add",
    "poll_multishot": "poll_add",
    "cancel": "async_cancel",
    "cancel_fd": "async_cancel",
    "cancel_all": "async_cancel",
    "recv": "recv",
    "recv_select": "recv",
    "recv_multishot": "recv",
    "send": "send",
    "sendmsg": "sendmsg",
    "recvmsg_multishot": "recvmsg",
    "epoll_wait": "epoll_wait",
    "read_multishot": "read_multishot",
    "waitid": "waitid",
    "accept": "accept",
    "accept_multishot": "accept",
    **{name: name for name in FILE_OPCODES},
    "openat_async": "openat",
}
# NOPs are for tests of the ring itself; ul_wait() queues a TIMEOUT where
# the kernel has no EXT_ARG.
USED_OPCODES = (frozenset(PREPS.values()) - {"nop"}) | {"timeout"}

CQE_F_BUFFER = lib.UL_CQE_F_BUFFER
CQE_F_MORE = lib.UL_CQE_F_MORE
CQE_F_32 = lib.UL_CQE_F_32
CQE_BUFFER_SHIFT = lib.UL_CQE_BUFFER_SHIFT

FORKED_MESSAGE = ("uringloop: this event loop belongs to the parent process; "
                  "a forked child must create its own loop")


class UnsupportedError(OSError):
    """io_uring cannot be used here; the message names the errno and cause."""


@dataclasses.dataclass(frozen=True)
class Features:
    """What the kernel accepted for one ring, after the mask."""

    kernel: str
    tier: str
    setup_flags: frozenset[str]
    features: frozenset[str]
    opcodes: frozenset[str]
    masked: frozenset[str]
    sq_entries: int
    cq_entries: int

    def has(self, name: str) -> bool:
        """True where the ring has `name` (a setup flag, feature, opcode or
        capability) and it is not masked."""
        if name in self.masked:
            return False
        return (name in self.setup_flags or name in self.features
                or name in self.opcodes or name in CAPABILITIES)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """URINGLOOP_RING, parsed: how big each loop's rings are.  `entries`
    and `cq_entries` size the io_uring (the kernel rounds them up to
    powers of two); `buffers` (a power of two) of `buffer_size` bytes
    each make the provided-buffer ring that receives pick from.  `workers`
    caps the kernel threads that run the ring's blocking file work (as
    many as ThreadPoolExecutor's default: one burst of writes must not
    start hundreds)."""

    entries: int = DEFAULT_ENTRIES
    cq_entries: int = DEFAULT_CQ_ENTRIES
    buffers: int = 64
    buffer_size: int = 64 * 1024
    workers: int = min(32, (os.cpu_count() or 1) + 4)

    @classmethod
    def from_env(cls, value: str | None = None) -> Sizes:
        if value is None:
            value = os.environ.get("URINGLOOP_RING", "")
        sizes: dict[str, int] = {}
        for item in filter(None, (part.strip().lower() for part in value.split(","))):
            name, _, number = item.partition("=")
            if name not in cls.__dataclass_fields__:
                known = ", ".join(cls.__dataclass_fields__)
                raise ValueError(f"URINGLOOP_RING: unknown name {name!r}; known: {known}")
            if not number.isdigit() or int(number) < 1:
                raise ValueError(f"URINGLOOP_RING: {name} must be a positive integer, "
                                 f"not {number!r}")
            sizes[name] = int(number)
        made = cls(**sizes)
        if made.buffers & (made.buffers - 1) or made.buffers > 32768:
            raise ValueError(f"URINGLOOP_RING: buffers must be a power of two up to 32768, "
                             f"not {made.buffers}")
        return made


@dataclasses.dataclass(frozen=True)
class Mask:
    """URINGLOOP_DISABLE, parsed."""

    names: frozenset[str] = frozenset()
    refuse_errno: int = 0

    @classmethod
    def from_env(cls, value: str | None = None) -> Mask:
        if value is None:
            value = os.environ.get("URINGLOOP_DISABLE", "")
        names: set[str]
        names, refuse = set(), 0
        for item in filter(None, (part.strip().lower() for part in value.split(","))):
            name, _, arg = item.partition("=")
            if name == "io_uring":
                refuse = _errno_by_name(arg) if arg else errno.ENOSYS
            elif name in (*SETUP_FLAGS, *MASKABLE_FEATURES, *MASKABLE_OPCODES, *CAPABILITIES):
                names.add(name)
            else:
                known = sorted([*SETUP_FLAGS, *MASKABLE_FEATURES, *MASKABLE_OPCODES,
                                *CAPABILITIES, "io_uring"])
                raise ValueError(f"URINGLOOP_DISABLE: unknown name {name!r}; known: {', '.join(known)}")
        return cls(frozenset(names), refuse)

    def bits(self, table: Mapping[str, int]) -> int:
        return sum(bit for name, bit in table.items() if name in self.names)


def _errno_by_name(name: str) -> int:
    code = getattr(errno, name.upper(), None)
    if not isinstance(code, int):
        raise ValueError(f"URINGLOOP_DISABLE: io_uring={name}: not an errno name")
    return code


def _sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/kernel/{name}") as f:
            return f.read().strip()
    except OSError:
        return None


def refusal_message(code: int) -> str:
    """Why io_uring_setup failed with `code`, in words a user can act on."""
    if code == errno.ENOSYS:
        cause = "this kernel has no io_uring (older than 5.1, or built without CONFIG_IO_URING)"
    elif code == errno.EPERM:
        disabled = _sysctl("io_uring_disabled")
        if disabled == "2":
            cause = "io_uring is disabled system-wide (sysctl kernel.io_uring_disabled = 2)"
        elif disabled == "1":
            cause = ("sysctl kernel.io_uring_disabled = 1 allows io_uring only to CAP_SYS_ADMIN "
                     "and the group in kernel.io_uring_group")
        else:
            cause = ("a seccomp profile denies io_uring_setup; container runtimes block it by "
                     "default, so allow io_uring_setup, io_uring_enter and io_uring_register")
    elif code == errno.EINVAL:
        cause = "this kernel's io_uring is too old for uringloop (Linux 5.13 or newer is needed)"
    elif code == errno.ENOMEM:
        cause = "the kernel could not allocate the ring (on kernels before 5.12, raise RLIMIT_MEMLOCK)"
    elif code in (errno.EMFILE, errno.ENFILE):
        cause = "no file descriptor is left for the ring"
    else:
        cause = "io_uring_setup failed"
    return (f"io_uring is unavailable: [{errno.errorcode.get(code, code)}] {os.strerror(code)}: "
            f"{cause}. Pass fallback=True to uringloop.new_event_loop() to use asyncio's "
            f"default loop instead.")


def _tiers(mask: Mask) -> list[tuple[str, int]]:
    """The setup tiers to try, fastest first, skipping masked ones."""
    tiers = []
    if not mask.names & {"single_issuer", "defer_taskrun"}:
        flags = lib.UL_SETUP_SINGLE_ISSUER | lib.UL_SETUP_DEFER_TASKRUN
        if "r_disabled" not in mask.names:
            flags |= lib.UL_SETUP_R_DISABLED
        tiers.append(("defer_taskrun", flags))
    if "coop_taskrun" not in mask.names:
        tiers.append(("coop_taskrun", lib.UL_SETUP_COOP_TASKRUN))
    tiers.append(("plain", 0))
    return tiers


# Rings alive in this process; a forked child forgets them (see _after_fork).
_live_rings: weakref.WeakSet[Ring] = weakref.WeakSet()


class Ring:
    """One io_uring.  Not thread-safe: the loop drives it from one thread."""

    thread: int | None

    def __init__(self, entries: int = DEFAULT_ENTRIES, cq_entries: int = DEFAULT_CQ_ENTRIES,
                 mask: Mask | None = None, workers: int = 0) -> None:
        mask = Mask.from_env() if mask is None else mask
        self._r = r = ffi.new("struct ul_ring *")
        self._r.fd = -1
        self.forked = False
        self.tier = self._setup(entries, cq_entries, mask)
        # Kept by the kernel for whichever thread issues (Linux 5.15; older
        # kernels refuse it and keep their own bound).
        if workers:
            lib.ul_register_iowq_max_workers(r, workers, workers)
        # The issuing thread, marked in a thread-local: thread idents are
        # reused, a thread-local is not inherited by a later thread.
        self.thread = None
        self._issuer = threading.local()
        if r.enabled:
            self._claim()   # a SINGLE_ISSUER ring made enabled is its creator's
        self.features = self._describe(mask)
        cap = r.cq_entries
        self.user_data = memoryview(ffi.buffer(r.cqe_user_data, 8 * cap)).cast("Q")
        self.res = memoryview(ffi.buffer(r.cqe_res, 4 * cap)).cast("i")
        self.flags = memoryview(ffi.buffer(r.cqe_flags, 4 * cap)).cast("I")
        self.big = memoryview(ffi.buffer(r.cqe_big, 16 * cap)).cast("Q")
        # pos[0]: next completion to dispatch; pos[1]: how many were reaped
        self.pos = memoryview(ffi.buffer(r.cqe_pos)).cast("I")
        _live_rings.add(self)

    # -- setup

    def _try(self, entries: int, cq_entries: int, flags: int, mask: Mask) -> int:
        deny = sum(1 << FEATURE_BITS.index(n) for n in MASKABLE_FEATURES if n in mask.names)
        # (type: ignore: cffi's lib is untyped, its results Any)
        return -lib.ul_ring_init(self._r, entries, cq_entries, flags, deny)  # type: ignore[no-any-return]

    def _setup(self, entries: int, cq_entries: int, mask: Mask) -> str:
        if mask.refuse_errno:
            raise UnsupportedError(mask.refuse_errno, refusal_message(mask.refuse_errno))
        optional = [SETUP_FLAGS[n] for n in OPTIONAL_SETUP if n not in mask.names]
        err = errno.EINVAL
        for tier, flags in _tiers(mask):
            err = self._try(entries, cq_entries, flags | sum(optional), mask)
            if not err:
                return tier
            if err != errno.EINVAL:
                break
            # Some optional flag is too new: keep those this kernel takes.
            for bit in optional:
                if not self._try(entries, cq_entries, flags | bit, mask):
                    lib.ul_ring_exit(self._r)
                    flags |= bit
            err = self._try(entries, cq_entries, flags, mask)
            if not err:
                return tier
            if err != errno.EINVAL:
                break
        raise UnsupportedError(err, refusal_message(err))

    def _describe(self, mask: Mask) -> Features:
        r = self._r
        return Features(
            kernel=os.uname().release,
            tier=self.tier,
            setup_flags=frozenset(n for n, bit in SETUP_FLAGS.items() if r.setup_flags & bit),
            features=frozenset(n for i, n in enumerate(FEATURE_BITS) if r.features >> i & 1),
            opcodes=frozenset(n for i, n in enumerate(OPCODES) if r.ops[i]),
            masked=mask.names,
            sq_entries=r.sq_entries,
            cq_entries=r.cq_entries,
        )

    # -- lifetime

    @property
    def single_issuer(self) -> bool:
        return bool(self._r.setup_flags & lib.UL_SETUP_SINGLE_ISSUER)

    @property
    def enabled(self) -> bool:
        return bool(self._r.enabled)

    @property
    def address(self) -> int:
        """Where the core's ring struct lives, for the C hot path."""
        return int(ffi.cast("uintptr_t", self._r))

    @property
    def drivable_here(self) -> bool:
        """Whether this thread may submit to and reap from the ring."""
        return not self.single_issuer or getattr(self._issuer, "here", False)

    def enable(self) -> None:
        """Start the ring; with SINGLE_ISSUER this thread becomes its issuer."""
        if not self._r.enabled:
            err = lib.ul_ring_enable(self._r)
            if err:
                self.check(err)
            self._claim()

    def stop_bundling(self) -> None:
        """Receive one buffer per completion from now on: the kernel took
        bundles but refused their per-completion cap (prep.c)."""
        self._r.features &= ~(1 << FEATURE_BITS.index("recvsend_bundle"))
        self.features = dataclasses.replace(
            self.features, features=self.features.features - {"recvsend_bundle"})

    def _claim(self) -> None:
        self.thread = threading.get_ident()
        self._issuer.here = True

    def close(self) -> None:
        """Release the ring.  The caller has drained every op that points at
        memory it will free; the kernel cancels whatever remains."""
        lib.ul_ring_exit(self._r)
        _live_rings.discard(self)

    def forget(self) -> None:
        """Called in a forked child: drop this process's view of the
        parent's ring without touching the memory the parent still uses."""
        self.forked = True
        lib.ul_ring_forget(self._r)

    def check(self, err: int) -> None:
        """Raise the error a failed core call returned (-errno), in asyncio's
        terms; the one exception is an SQ that filled before the loop first
        ran, whose ring this thread then starts: the call returns, and the
        caller retries.  (The C op table calls this too.)"""
        code = -err
        if self.forked:
            raise RuntimeError(FORKED_MESSAGE)
        if self._r.fd < 0:
            raise RuntimeError("Event loop is closed")
        if code == errno.EEXIST:
            raise RuntimeError(f"uringloop: the ring is owned by thread {self.thread}; "
                               "its io_uring can only be driven from that thread")
        if code == errno.EBADFD and not self._r.enabled:
            self.enable()
            return
        raise OSError(code, os.strerror(code))

    # -- submission: prep_<variant> for each of PREPS, made below the class

    if TYPE_CHECKING:
        # Each returns once the request is queued (ul_prep_<variant> in
        # ring.h; ud is its user_data).
        def prep_nop(self, ud: int, /) -> None: ...
        def prep_nop_cqe32(self, ud: int, off: int, addr: int, /) -> None: ...
        def prep_poll(self, ud: int, fd: int, events: int, /) -> None: ...
        def prep_poll_multishot(self, ud: int, fd: int, events: int, /) -> None: ...
        def prep_cancel(self, target: int, /) -> None: ...
        def prep_cancel_fd(self, fd: int, /) -> None: ...
        def prep_cancel_all(self) -> None: ...
        def prep_recv(self, ud: int, fd: int, buf: CData, len: int, /) -> None: ...
        def prep_recv_select(self, ud: int, fd: int, bgid: int, /) -> None: ...
        def prep_recv_multishot(self, ud: int, fd: int, bgid: int, /) -> None: ...
        def prep_send(self, ud: int, fd: int, buf: bytes | CData, len: int, /) -> None: ...
        def prep_sendmsg(self, ud: int, fd: int, msg: CData, /) -> None: ...
        def prep_recvmsg_multishot(self, ud: int, fd: int, msg: CData, bgid: int, /) -> None: ...
        def prep_epoll_wait(self, ud: int, epfd: int, events: CData, maxevents: int,
                            /) -> None: ...
        def prep_read_multishot(self, ud: int, fd: int, bgid: int, /) -> None: ...
        def prep_waitid(self, ud: int, idtype: int, id: int, info: CData, options: int,
                        /) -> None: ...
        def prep_accept(self, ud: int, fd: int, flags: int, /) -> None: ...
        def prep_accept_multishot(self, ud: int, fd: int, flags: int, /) -> None: ...
        # (the file requests go through _c.file_request instead; their
        # wrappers are here for tests of the ring)
        def prep_openat(self, ud: int, dfd: int, path: bytes, flags: int, mode: int,
                        /) -> None: ...
        def prep_openat_async(self, ud: int, dfd: int, path: bytes, flags: int, mode: int,
                              /) -> None: ...
        def prep_close(self, ud: int, fd: int, /) -> None: ...
        def prep_read(self, ud: int, fd: int, buf: CData, len: int, offset: int, /) -> None: ...
        def prep_write(self, ud: int, fd: int, buf: bytes | CData, len: int, offset: int,
                       /) -> None: ...
        def prep_fsync(self, ud: int, fd: int, flags: int, /) -> None: ...
        def prep_ftruncate(self, ud: int, fd: int, length: int, /) -> None: ...
        def prep_statx(self, ud: int, dfd: int, path: bytes, flags: int, mask: int,
                       statxbuf: CData, /) -> None: ...
        def prep_unlinkat(self, ud: int, dfd: int, path: bytes, flags: int, /) -> None: ...
        def prep_renameat(self, ud: int, olddfd: int, oldpath: bytes, newdfd: int,
                          newpath: bytes, flags: int, /) -> None: ...
        def prep_mkdirat(self, ud: int, dfd: int, path: bytes, mode: int, /) -> None: ...
        def prep_symlinkat(self, ud: int, target: bytes, newdfd: int, linkpath: bytes,
                           /) -> None: ...
        def prep_linkat(self, ud: int, olddfd: int, oldpath: bytes, newdfd: int, newpath: bytes,
                        flags: int, /) -> None: ...

    # -- completion

    def wait(self, timeout_ns: int) -> int:
        """Submit what is queued, wait up to timeout_ns (-1: no limit), and
        copy completions into user_data/res/flags/big, from pos[0] up to
        pos[1].  The caller advances pos[0] as it consumes them; until it
        has consumed all, wait returns at once and reaps nothing.  Returns
        how many wait to be consumed."""
        n: int = lib.ul_wait(self._r, timeout_ns)
        if n < 0:
            self.check(n)
            return 0
        return n

    def flush(self) -> bool:
        """Submit what is queued and run the kernel's deferred work for this
        thread now, outside the loop's wait; False if the ring refused."""
        return lib.ul_flush(self._r) == 0  # type: ignore[no-any-return]  # cffi: untyped

    def buffer_ring(self, bgid: int, count: int, size: int) -> BufferRing:
        return BufferRing(self, bgid, count, size)


def _prep_method(variant: str) -> Callable[..., None]:
    """Ring.prep_<variant>(ud, ...): queue it, retrying where check() says so."""
    prep = getattr(lib, f"ul_prep_{variant}")

    def method(self: Ring, *args: object) -> None:
        while err := prep(self._r, *args):
            self.check(err)
    method.__name__ = f"prep_{variant}"
    method.__qualname__ = f"Ring.prep_{variant}"
    method.__doc__ = f"Queue a {PREPS[variant]} request (ul_prep_{variant} in _c/prep.c)."
    return method


for _variant in PREPS:
    setattr(Ring, f"prep_{_variant}", _prep_method(_variant))


class BufferRing:
    """A provided-buffer ring: `count` buffers of `size` bytes that the
    kernel picks from for ops that select buffers from group `bgid`.

    The buffers live in an anonymous mmap.  A buffer that a completion
    carried goes back to the kernel at the ring's next wait, so its bytes
    must be taken before then."""

    def __init__(self, ring: Ring, bgid: int, count: int, size: int) -> None:
        self._ring = ring
        self.memory = mmap.mmap(-1, count * size)
        self._base = ffi.from_buffer(self.memory)
        self._br = ffi.new("struct ul_bufring *")
        err = lib.ul_bufring_init(ring._r, self._br, bgid, count, size, self._base)
        if err:
            self._release_memory()
            raise OSError(-err, f"registering buffer group {bgid}: {os.strerror(-err)}")
        self.bgid = bgid
        self.size = size
        self.count = count

    def take(self, bid: int, length: int) -> bytes:
        """The `length` bytes a completion left from buffer `bid` on, copied
        out (a receive bundle's fill the buffers that followed it too)."""
        # (type: ignore: cffi's buffers are untyped; these slices are bytes)
        if length <= self.size:
            return ffi.buffer(lib.ul_bufring_data(self._br, bid, length), length)[:]  # type: ignore[no-any-return]
        out = ffi.new("char[]", length)
        err = lib.ul_bufring_take(self._br, ffi.new("unsigned *", bid), ffi.new("unsigned *", 0),
                                  length, out)
        if err:
            raise OSError(-err, f"buffer {bid} of group {self.bgid}: {os.strerror(-err)}")
        return ffi.buffer(out)[:]  # type: ignore[no-any-return]

    def close(self) -> None:
        """Unregister and free; no op selecting from this group may be in flight."""
        lib.ul_bufring_exit(self._ring._r, self._br)
        self._release_memory()

    def _release_memory(self) -> None:
        ffi.release(self._base)
        self.memory.close()


def _after_fork() -> None:
    for ring in list(_live_rings):
        ring.forget()


os.register_at_fork(after_in_child=_after_fork)


def probe(mask: Mask | None = None) -> Features:
    """Features of a throwaway ring made as the loop would make it."""
    ring = Ring(entries=8, cq_entries=16, mask=mask)
    try:
        return ring.features
    finally:
        ring.close()
