"""The C core through its Python face: setup cascade and masks, SQ-full
flush, mixed-CQE reaping across the CQ's wrap point, provided-buffer rings,
thread ownership and the refused-io_uring error."""
import errno
import mmap
import os
import socket
import threading

import pytest

import uringloop
from uringloop import _c
from uringloop import ring as ringmod
from uringloop._uring import lib
from uringloop.ring import (CQE_F_32, CQE_F_BUFFER, CQE_F_MORE, CQE_BUFFER_SHIFT, Mask, Ring,
                            Sizes)

NO_MASK = Mask()


def drain(ring, expected, timeout_ns=1_000_000_000):
    """Wait until `expected` completions arrived; return them as tuples
    (user_data, res, flags, big0, big1)."""
    out = []
    pos = ring.pos
    for _ in range(expected * 4 + 10):
        if len(out) >= expected:
            break
        ring.wait(timeout_ns)
        for i in range(pos[0], pos[1]):
            out.append((ring.user_data[i], ring.res[i], ring.flags[i],
                        ring.big[2 * i], ring.big[2 * i + 1]))
        pos[0] = pos[1]
    return out


@pytest.fixture
def ring():
    r = Ring(entries=8, cq_entries=16, mask=NO_MASK)
    r.enable()
    yield r
    r.close()


def test_fastest_tier_on_this_kernel(ring):
    f = ring.features
    assert f.tier == "defer_taskrun"
    assert {"single_issuer", "defer_taskrun", "cqe_mixed", "no_sqarray",
            "submit_all", "cqsize"} <= f.setup_flags
    assert {"nop", "poll_add", "async_cancel", "recv"} <= f.opcodes
    assert f.has("ext_arg") and f.has("nodrop")


def test_mixed_cqes_across_the_wrap_point(ring):
    """20 rounds of three NOPs, two asking for 32-byte CQEs, on a 16-slot
    CQ: big CQEs land on the wrap point, where the kernel pads with a skip
    CQE.  Each result must come back once, in order, with its extra words."""
    if "cqe_mixed" not in ring.features.setup_flags:
        pytest.skip("kernel without IORING_SETUP_CQE_MIXED")
    seen = []
    for rnd in range(20):
        base = rnd * 3 + 1
        ring.prep_nop(base)
        ring.prep_nop_cqe32(base + 1, 1000 + base, 2000 + base)
        ring.prep_nop_cqe32(base + 2, 1000 + base + 1, 2000 + base + 1)
        seen += drain(ring, 3)
    assert [ud for ud, *_ in seen] == list(range(1, 61))
    for ud, res, flags, big0, big1 in seen:
        assert res == 0
        if ud % 3 == 1:
            assert not flags & CQE_F_32
        else:
            assert flags & CQE_F_32
            assert (big0, big1) == (1000 + ud - 1, 2000 + ud - 1)


def test_sq_full_is_flushed_not_dropped(ring):
    """50 NOPs through an 8-entry SQ and 16-slot CQ without an explicit
    submit: the full SQ is submitted on the way, the CQ overflows into the
    kernel's backlog, and every completion still arrives exactly once."""
    for ud in range(1, 51):
        ring.prep_nop(ud)
    got = drain(ring, 50)
    assert sorted(ud for ud, *_ in got) == list(range(1, 51))


def test_wait_times_out(ring):
    import time
    started = time.monotonic()
    ring.wait(30_000_000)
    assert time.monotonic() - started >= 0.025
    assert ring.pos[0] == ring.pos[1] == 0


def test_undispatched_completions_are_kept(ring):
    """Completions reaped but not yet consumed survive the next wait: an
    exception in the middle of dispatch loses none."""
    for ud in (1, 2, 3):
        ring.prep_nop(ud)
    ring.wait(-1)
    assert ring.pos[1] == 3
    ring.pos[0] = 1                    # consumed one, then "interrupted"
    ring.prep_nop(4)
    ring.wait(0)
    assert (ring.pos[0], ring.pos[1]) == (1, 3)
    assert [ring.user_data[i] for i in range(1, 3)] == [2, 3]
    ring.pos[0] = 3
    assert [ud for ud, *_ in drain(ring, 1)] == [4]


def test_multishot_recv_with_provided_buffers(ring):
    a, b = socket.socketpair()
    bufs = ring.buffer_ring(bgid=3, count=4, size=64)
    try:
        ring.prep_recv_multishot(5, a.fileno(), 3)
        received = b""
        for chunk in (b"hello", b"world" * 20, b"!"):
            b.sendall(chunk)
            want = len(received) + len(chunk)
            while len(received) < want:
                for ud, res, flags, *_ in drain(ring, 1):
                    assert ud == 5 and res > 0
                    assert flags & CQE_F_BUFFER and flags & CQE_F_MORE
                    bid = flags >> CQE_BUFFER_SHIFT
                    received += bufs.take(bid, res)    # back to the kernel at the next wait
        assert received == b"hello" + b"world" * 20 + b"!"
        b.close()
        (ud, res, flags, *_), = drain(ring, 1)
        assert (ud, res) == (5, 0) and not flags & CQE_F_MORE     # EOF ends it
    finally:
        a.close()
        b.close()
        bufs.close()


class Receiver:
    """A multishot receive kept armed on each of `socks` (user_data: its
    index + 1), every completion's bytes taken at once, before the next
    wait gives its buffers back."""

    def __init__(self, ring, bufs, socks):
        self.ring, self.bufs, self.socks = ring, bufs, socks
        self.got = [bytearray() for _ in socks]
        self.armed = [False] * len(socks)
        self.largest = 0                   # the most bytes of one completion

    def until(self, total):
        """Receive until `total` bytes came in all."""
        pos = self.ring.pos
        while sum(map(len, self.got)) < total:
            for i, sock in enumerate(self.socks):
                if not self.armed[i]:
                    self.ring.prep_recv_multishot(i + 1, sock.fileno(), self.bufs.bgid)
                    self.armed[i] = True
            self.ring.wait(1_000_000_000)
            for k in range(pos[0], pos[1]):
                i, res, flags = self.ring.user_data[k] - 1, self.ring.res[k], self.ring.flags[k]
                if not flags & CQE_F_MORE:
                    self.armed[i] = False  # ENOBUFS (the ring ran dry): re-armed above
                if res > 0:
                    self.got[i] += self.bufs.take(flags >> CQE_BUFFER_SHIFT, res)
                    self.largest = max(self.largest, res)
                else:
                    assert res == -errno.ENOBUFS
            pos[0] = pos[1]


@pytest.mark.parametrize("masked", ["", "recvsend_bundle"])
def test_receive_bundles_keep_every_byte_in_order(masked):
    """Where the kernel bundles, one completion fills as many buffers as the
    bytes waiting need, named by its first; the rest are those that followed
    it in the ring, which the core names before they go back.  Three
    sockets share a ring of eight 64-byte buffers, so buffers go back in
    another order than they were handed out, the ring runs dry now and
    then, and positions wrap many times: every byte still arrives, in order."""
    import random
    r = Ring(entries=8, cq_entries=16, mask=Mask.from_env(masked))
    pairs = [socket.socketpair() for _ in range(3)]
    rng = random.Random(7)
    try:
        r.enable()
        bufs = r.buffer_ring(bgid=2, count=8, size=64)
        receiver = Receiver(r, bufs, [a for a, _ in pairs])
        sent = [bytearray() for _ in pairs]
        for _ in range(60):
            for i, (_, b) in enumerate(pairs):
                chunk = rng.randbytes(rng.randrange(1, 600))
                b.sendall(chunk)
                sent[i] += chunk
            receiver.until(sum(map(len, sent)))
        assert receiver.got == sent
        bundles = r.features.has("recvsend_bundle")
        assert bundles == (not masked and "recvsend_bundle" in r.features.features)
        assert (receiver.largest > 64) == bundles
        bufs.close()
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        r.close()


def resident_pages(memory):
    """How many of an mmap's pages are in memory (mincore(2); smaps would
    do, but valgrind merges the mapping with its neighbours)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    vec = (ctypes.c_ubyte * (len(memory) // mmap.PAGESIZE))()
    address = int(ringmod.ffi.cast("uintptr_t", ringmod.ffi.from_buffer(memory)))
    if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(len(memory)), vec):
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(page & 1 for page in vec)


@pytest.mark.parametrize("masked", ["", "recvsend_bundle"])
def test_a_light_load_rides_few_buffers_and_a_burst_gets_them_all(masked):
    """A buffer costs memory once the kernel writes to it, and the kernel
    takes a ring's buffers in turn: handed all 64 at once, one socket
    receiving a message at a time would touch every one.  The ring hands a
    few out (where the kernel bundles, twice a bundle's cap: 16 buffers of
    4 KiB here) and more as the load asks.  So 200 messages one at a time
    touch at most half of it (a buffer is a page here), and a burst that
    outruns them arrives whole, through all of them."""
    r = Ring(entries=8, cq_entries=64, mask=Mask.from_env(masked))
    a, b = socket.socketpair()
    try:
        r.enable()
        bufs = r.buffer_ring(bgid=2, count=64, size=mmap.PAGESIZE)
        receiver = Receiver(r, bufs, [a])
        sent = bytearray()
        for _ in range(200):
            message = os.urandom(1000)
            b.sendall(message)
            sent += message
            receiver.until(len(sent))
        assert resident_pages(bufs.memory) <= 32
        burst = os.urandom(1 << 20)
        sender = threading.Thread(target=b.sendall, args=(burst,))
        sender.start()
        sent += burst
        receiver.until(len(sent))
        sender.join()
        assert receiver.got == [sent]
        assert resident_pages(bufs.memory) == 64
        bufs.close()
    finally:
        a.close()
        b.close()
        r.close()


def test_ring_owned_by_its_thread():
    r = Ring(entries=8, cq_entries=16, mask=NO_MASK)
    try:
        t = threading.Thread(target=r.enable)
        t.start()
        t.join()
        r.prep_nop(1)
        with pytest.raises(RuntimeError, match="owned by thread"):
            r.wait(0)
    finally:
        r.close()


# -- setup cascade and masks

@pytest.mark.parametrize("masked, tier, absent", [
    ("cqe_mixed", "defer_taskrun", {"cqe_mixed"}),
    ("no_sqarray", "defer_taskrun", {"no_sqarray"}),
    ("taskrun_flag", "defer_taskrun", {"taskrun_flag"}),
    ("submit_all,cqsize", "defer_taskrun", {"submit_all", "cqsize"}),
    ("r_disabled", "defer_taskrun", {"r_disabled"}),
    ("defer_taskrun", "coop_taskrun", {"defer_taskrun", "single_issuer"}),
    ("single_issuer", "coop_taskrun", {"defer_taskrun", "single_issuer"}),
    ("defer_taskrun,coop_taskrun", "plain", {"defer_taskrun", "coop_taskrun", "taskrun_flag"}),
])
def test_masked_setup_flags(masked, tier, absent):
    r = Ring(entries=8, cq_entries=16, mask=Mask.from_env(masked))
    try:
        assert r.features.tier == tier
        assert not absent & r.features.setup_flags
    finally:
        r.close()


@pytest.mark.parametrize("feature", ["ext_arg", "no_iowait", "single_mmap", "recvsend_bundle"])
def test_masked_features_are_gone(feature):
    r = Ring(entries=8, cq_entries=16, mask=Mask.from_env(feature))
    try:
        assert feature not in r.features.features
        assert not r.features.has(feature)
        r.enable()
        for ud in range(1, 40):          # rings still work without them
            r.prep_nop(ud)
        assert len(drain(r, 39)) == 39
    finally:
        r.close()


def test_timeout_without_ext_arg():
    """Without EXT_ARG the wait timeout is a TIMEOUT SQE whose completion
    the core drops: the caller sees a timeout and no stray completion."""
    import time
    r = Ring(entries=8, cq_entries=16, mask=Mask.from_env("ext_arg"))
    try:
        r.enable()
        started = time.monotonic()
        r.wait(30_000_000)
        assert time.monotonic() - started >= 0.025
        r.prep_nop(9)
        assert [ud for ud, *_ in drain(r, 1)] == [9]
        r.wait(0)
        assert r.pos[0] == r.pos[1]
    finally:
        r.close()


def test_unknown_mask_name_is_an_error():
    with pytest.raises(ValueError, match="unknown name 'cqe_mixd'"):
        Mask.from_env("cqe_mixd")


def test_ring_sizes_come_from_the_environment(monkeypatch):
    """URINGLOOP_RING sizes each new loop's io_uring and buffer ring."""
    monkeypatch.setenv("URINGLOOP_RING", "entries=8, cq_entries=64,buffers=8,buffer_size=1024")
    loop = uringloop.new_event_loop()
    try:
        assert (loop.features.sq_entries, loop.features.cq_entries) == (8, 64)
        assert Sizes.from_env() == Sizes(8, 64, 8, 1024)
    finally:
        loop.close()
    assert Sizes.from_env("") == Sizes()


HEAP_FIT_CHILD = r"""
import ctypes, sys
import uringloop

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
uringloop.new_event_loop().close()
for size in map(int, sys.argv[1:]):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    print(libc.mallinfo2().hblks - before)
    libc.free(block)
"""


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"),
                    reason="glibc 2.33+ only (mallinfo2)")
@pytest.mark.skipif(bool(os.environ.get("LD_PRELOAD")),
                    reason="another allocator is preloaded (ASan's)")
@pytest.mark.parametrize("ring_sizes, fits, too_big", [
    ("", 2 << 20, 40 << 20),                  # 64 x 64 KiB: a 4 MiB burst
    ("buffers=1024", 24 << 20, 40 << 20),     # 64 MiB: capped where glibc adapts
])
def test_heap_fits_a_burst_of_received_bytes(ring_sizes, fits, too_big):
    """After the first loop, glibc keeps a burst up to the size of the
    buffer ring in its heap (a block that size is not mmapped, so the heap is not
    trimmed and faulted in again per batch); past glibc's own 32 MiB limit
    the fit is capped there rather than lost.  A block above it is still
    mmapped, which shows the count measures what it should."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env["URINGLOOP_RING"] = ring_sizes
    proc = subprocess.run([sys.executable, "-c", HEAP_FIT_CHILD, str(fits), str(too_big)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1"]


@pytest.mark.parametrize("value, words", [
    ("cq=64", "unknown name 'cq'"),
    ("entries=0", "entries must be a positive integer, not '0'"),
    ("buffer_size=4k", "buffer_size must be a positive integer, not '4k'"),
    ("buffers=48", "buffers must be a power of two up to 32768, not 48"),
])
def test_bad_ring_sizes_are_an_error(value, words):
    with pytest.raises(ValueError, match=words):
        Sizes.from_env(value)


@pytest.mark.parametrize("value, code, words", [
    ("io_uring", errno.ENOSYS, "no io_uring"),
    ("io_uring=EPERM", errno.EPERM, "seccomp"),
    ("io_uring=EINVAL", errno.EINVAL, "too old"),
])
def test_refused_io_uring(monkeypatch, value, code, words):
    import uringloop
    monkeypatch.setenv("URINGLOOP_DISABLE", value)
    with pytest.raises(uringloop.UnsupportedError) as info:
        uringloop.new_event_loop()
    assert info.value.errno == code
    assert isinstance(info.value, OSError)
    assert words in str(info.value) and "fallback=True" in str(info.value)


def test_refused_io_uring_fallback(monkeypatch):
    import asyncio
    import uringloop
    monkeypatch.setenv("URINGLOOP_DISABLE", "io_uring=EPERM")
    with pytest.warns(RuntimeWarning, match="asyncio's default event loop"):
        loop = uringloop.new_event_loop(fallback=True)
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        loop.close()
    with pytest.warns(RuntimeWarning):
        loop = uringloop.Policy(fallback=True).new_event_loop()
    loop.close()


SECCOMP_CHILD = r"""
import ctypes, errno, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
# BPF: load the syscall number; io_uring_setup (425) -> ERRNO(EPERM), else allow.
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7fff0000, 0x00050000
prog = [
    (0x20, 0, 0, 0),                                  # ld [nr]
    (0x15, 0, 1, 425),                                # jeq #425
    (0x06, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),    # ret errno
    (0x06, 0, 0, SECCOMP_RET_ALLOW),                  # ret allow
]
filt = b"".join(struct.pack("HBBI", *ins) for ins in prog)
buf = ctypes.create_string_buffer(filt)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0                # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) == 0, ctypes.get_errno()
import uringloop
try:
    uringloop.new_event_loop()
except uringloop.UnsupportedError as exc:
    print(exc.errno, exc.strerror)
    sys.exit(0)
sys.exit("no error")
"""


def test_seccomp_refusal_is_named():
    """A real seccomp filter that denies io_uring_setup, as container
    profiles do: the loop refuses with EPERM and names the cause."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "URINGLOOP_DISABLE"}
    proc = subprocess.run([sys.executable, "-c", SECCOMP_CHILD], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{errno.EPERM} ")
    assert "io_uring_setup" in proc.stdout


def test_info_command():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "uringloop", "info"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"kernel:    {os.uname().release}" in proc.stdout
    assert "io_uring:  usable" in proc.stdout
    assert "cqe_mixed        yes, used" in proc.stdout
    env = dict(os.environ, URINGLOOP_DISABLE="io_uring=EPERM")
    proc = subprocess.run([sys.executable, "-m", "uringloop", "info"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "unavailable" in proc.stdout and "EPERM" in proc.stdout


def test_info_says_what_was_probed():
    """Capabilities are tried on the kernel, not assumed: on this kernel
    each works; a masked one says so instead of claiming use."""
    import subprocess
    import sys
    env = dict(os.environ, URINGLOOP_DISABLE="multishot_recv")
    proc = subprocess.run([sys.executable, "-m", "uringloop", "info"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "each tried on a throwaway ring" in proc.stdout
    assert "multishot_recv   masked" in proc.stdout
    assert "multishot_accept yes, used" in proc.stdout
    assert "nop              yes\n" in proc.stdout          # only the ring's own tests use NOP


def test_capabilities_are_probed():
    from uringloop.capabilities import probe_capabilities
    found = probe_capabilities(NO_MASK)
    # pidfd_open is a system call of its own: valgrind 3.19, for one, lacks it.
    try:
        os.close(os.pidfd_open(os.getpid()))
        pidfd = True
    except OSError:
        pidfd = False
    # openat2 likewise (valgrind 3.19 answers ENOSYS).
    cached = _c.open_cached(-100, b"/", os.O_PATH | os.O_CLOEXEC)
    if cached >= 0:
        os.close(cached)
    assert found == {**dict.fromkeys(ringmod.CAPABILITIES, True), "pidfd": pidfd,
                     "file_nowait": cached >= 0}
    masked = probe_capabilities(Mask(frozenset({"pbuf_ring"})))
    assert not masked["pbuf_ring"] and masked["multishot_accept"]


def test_every_prep_has_one_entry_in_the_table():
    """ring.PREPS names every ul_prep_* function of the core exactly once,
    with a real opcode: the Python wrappers and info's list come from it."""
    preps = {name[len("ul_prep_"):] for name in dir(lib) if name.startswith("ul_prep_")}
    assert preps == set(ringmod.PREPS)
    assert set(ringmod.PREPS.values()) <= set(ringmod.OPCODES)
    assert all(callable(getattr(Ring, f"prep_{v}")) for v in preps)
