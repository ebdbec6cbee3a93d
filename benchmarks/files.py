"""Files: uringloop.open on uringloop's loop against aiofiles, asyncio.to_thread
and the plain blocking calls.

    python benchmarks/files.py                 # the issue's sizes: a 1 GiB file, 100,000
                                               # reads, 10,000 small files, 3 rounds (minutes)
    python benchmarks/files.py --quick         # a smoke run: 1 round, run.py's default sizes
    python benchmarks/files.py --cases random --file-mib 256 --reads 20000 --rounds 5
    python benchmarks/files.py --dir /var/tmp --loops uringloop asyncio --json

Six contestants run the same cases, side by side:

    uringloop            uringloop.open() and uringloop.os on uringloop's loop (io_uring)
    aiofiles/asyncio     aiofiles.open() and aiofiles.os on asyncio's default loop
    aiofiles/uvloop      the same on uvloop
    to_thread/asyncio    asyncio.to_thread() around each blocking call, on asyncio's loop
    to_thread/uvloop     the same on uvloop
    blocking             the blocking calls in a plain loop, no event loop: the floor

(--loops picks the loops, as benchmarks/run.py passes them; blocking always
runs.)  uringloop and aiofiles run the very same coroutines (aiofiles'
API: `async with open(p, "rb") as f: await f.seek(off); await f.read(n)`).
Until uringloop has open() and os, its rows say "skipped" and why.

Cases (each a Markdown table on stdout; progress goes to stderr; with --json,
one JSON object instead, as benchmarks/run.py's workload "files" runs it):

1. random: --reads (default 100,000) reads of 4 KiB at random 4 KiB-aligned
   offsets (the same offsets for everyone) of a --file-mib (default 1,024)
   MiB file in the page cache, by 1 task and by --tasks (default 64) tasks
   at once, each task with a file object of its own, opened before the
   timed window.  A read is `await f.seek(off)` + `await f.read(4096)`
   (aiofiles: two executor round trips), `await asyncio.to_thread(os.pread,
   fd, 4096, off)`, or `os.pread(fd, 4096, off)` (blocking; its "tasks" are
   as many fds read one after another).  Reads/s and CPU µs per read.
2. sequential: read the whole file in --chunk-kib (default 1,024) KiB
   reads (`f.read(chunk)` until EOF), and write a new file of the same size
   in chunks of that size (`f.write(chunk)`; no fsync: the page cache, not
   the disk; the file is deleted at once, before writeback).  MiB/s and CPU
   ms per MiB.  One task: sequential I/O by one file object.
3. small: --small-files (default 10,000) files, each: create and write
   1 KiB (open "wb", write, close), stat, read back (open "rb", read,
   close; the bytes and st_size are checked), delete; --tasks tasks at once,
   each taking every --tasks-th file.  aiofiles and uringloop: open/write/
   close, os.stat, open/read/close, os.remove; to_thread: one to_thread()
   per blocking call (eight per file, as aiofiles' eight executor round
   trips); blocking: the same calls one file after another.  Files/s and
   CPU µs per file.

Each contestant runs each case in a fresh process (this file's role _run),
after a warm-up of a twentieth of the work (which starts the executor's
threads and io_uring's workers), so nothing one leaves behind carries over.
Neither it nor its threads are pinned: every contestant may use every CPU
this process may (benchmarks/run.py gives it two), io_uring's kernel workers
and the executor's threads alike.

CPU: getrusage(RUSAGE_SELF) of that process, user + sys, over the timed
window: all its threads, the default executor's and io_uring's kernel
workers ("iou-wrk-*", threads of the process) included.  Peak threads: this
process lists /proc/<pid>/task of the runner every 10 ms while its window
is open (comm names read once per thread); "iou-wrk" counts the io_uring
workers, "threads" the rest (the main thread and the executor's).  The
listing costs this process 1-2% of a CPU, outside the runner's account.

The data file (4 KiB blocks, each starting with its index, which the reads
check) and every other file are made in a fresh directory under --dir
(default: the system's temporary directory, unless that is a tmpfs - then
/var/tmp: a disk's filesystem with a page cache, not memory); the report
names the filesystem (/proc/mounts); on ext4 it is marked a top directory
(chattr +T), so that each small-files run's directory lands in a block
group of its own (see spread_directories).  The data file is written and fsynced
once, then read once at the start of every round to bring it into the page
cache; a pass of preadv(RWF_NOWAIT) checks that all of it is there (the
notes give the share).  Everything is deleted at the end.

Rounds alternate: every round runs every case for every contestant, each
round starting with a different one.  Tables give the median over rounds,
the spread (half the range, relative to the median), ratios of medians to
aiofiles (the faster of its rows) and to blocking, and, on uringloop's rows,
the issue's targets, met or not:

    random       reads/s ≥ 20× aiofiles', and ≥ ½ the blocking calls' (within 2×)
    sequential   MiB/s ≥ 90% of the blocking calls'
    small        files/s ≥ 10× aiofiles'

A run in which other work took 5% or more of the window is repeated
(--retries); the least disturbed attempt counts.  Other work: the CPUs' busy
time in /proc/stat, less the runner's CPU, this process's and the tick
sampling's slack, but no more than the runner's threads spent runnable and
waiting for a CPU (schedstat run delay, summed over its threads): work on a
CPU the runner did not want (one thread, two CPUs) took nothing from it.

Roles used above, not meant to be typed:
    files.py _run --case C --contestant K --file F --dir D --tasks N ...
"""
import argparse
import asyncio
import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import random
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/measuring.py and report.py: the suite's measuring, tables and helpers
from measuring import (CONTENDED, TICK, RunFailed, busy, cpu_seconds, cpu_stat, environment,
                       least_disturbed, role_result, rotate, run_delay)
from report import (contention_notes, fewer_rounds, finish, format_size, median_cell,
                    notes_and_failures, plural, progress, ratio_text, saw, section_head, stats)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

LOOPS = ["uringloop", "asyncio", "uvloop"]
KINDS = ["random", "sequential", "small"]
MIB = 1 << 20
BLOCK = 4096
SMALL = 1024
SAMPLE_INTERVAL = 0.01
RUN_TIMEOUT_BASE = 120.0
# The sizes (this script's defaults) and run.py's (--quick's).
FULL = {"file_mib": 1024, "reads": 100_000, "small_files": 10_000}
QUICK = {"file_mib": 256, "reads": 10_000, "small_files": 1_000}
# The targets for uringloop, per case kind: [(reference, minimum ratio, words)].
TARGETS = {
    "random": [("aiofiles", 20.0, "≥ 20× aiofiles"),
               ("blocking", 0.5, "within 2× of blocking")],
    "seq-read": [("blocking", 0.9, "≥ 90% of blocking")],
    "seq-write": [("blocking", 0.9, "≥ 90% of blocking")],
    "small": [("aiofiles", 10.0, "≥ 10× aiofiles")],
}
# Per case kind: (rate header, rate decimals, CPU header, CPU decimals).
UNITS = {
    "random": ("reads/s", 0, "CPU µs/read", 2),
    "seq-read": ("MiB/s", 0, "CPU ms/MiB", 3),
    "seq-write": ("MiB/s", 0, "CPU ms/MiB", 3),
    "small": ("files/s", 0, "CPU µs/file", 1),
}


# -- helpers ------------------------------------------------------------------

def contestants(loops):
    """The contestants for these loops, uringloop's first, blocking last."""
    out = []
    if "uringloop" in loops:
        out.append("uringloop")
    for api in ("aiofiles", "to_thread"):
        out += [f"{api}/{loop}" for loop in loops if loop != "uringloop"]
    return out + ["blocking"]


def kind_of(case):
    return "random" if case.startswith("random") else case


def cpu_busy():
    """Seconds the CPUs this process may use were busy, from /proc/stat."""
    return sum(map(busy, cpu_stat(os.sched_getaffinity(0)).values())) / TICK


def mount_of(path):
    """(mount point, filesystem type, device) holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("/", "?", "?")
    with open("/proc/mounts") as f:
        for line in f:
            device, point, fstype = line.split()[:3]
            point = point.replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) \
                    and len(point) >= len(best[0]):
                best = (point, fstype, device)
    return best


MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs"}


def default_dir():
    """The system's temporary directory, unless it lives in memory."""
    for candidate in (tempfile.gettempdir(), "/var/tmp", str(REPO)):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) \
                and mount_of(candidate)[1] not in MEMORY_FS:
            return candidate
    return tempfile.gettempdir()


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_directories(path):
    """Mark path a top of directory hierarchies (chattr +T), so that ext4
    puts each directory made in it in a block group of its own, and the
    files of each small-files run with it.  ext4 allocates no inode that
    was freed in the last minute (five, while its inode table block is
    dirty): a run in the block group where the run before it deleted its
    10,000 files walks past all of them for every file it makes, and its
    kernel time would depend on what ran before it.  Elsewhere: nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        flags = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
        value = struct.unpack("l", flags)[0] | FS_TOPDIR_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", value))
    except OSError:
        pass
    finally:
        os.close(fd)


# -- the data file ------------------------------------------------------------

def make_data_file(path, size):
    """size bytes of 4 KiB blocks, each starting with its index (8 bytes,
    little-endian), the rest random; written and fsynced, so that no
    writeback runs while the cases do."""
    rng = random.Random(size)
    chunk = bytearray(rng.randbytes(MIB))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for first in range(0, size // BLOCK, MIB // BLOCK):
            for i in range(MIB // BLOCK):
                struct.pack_into("<Q", chunk, i * BLOCK, first + i)
            view = memoryview(chunk)[:min(MIB, size - first * BLOCK)]
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def warm(path):
    """Read the file once, then check with preadv(RWF_NOWAIT) - which reads
    only what is in the page cache - how much of it is there.  (share
    resident before, share resident after)"""
    size = os.path.getsize(path)
    step = 4 * MIB
    buf = bytearray(step)

    def resident(fd):
        got = 0
        for offset in range(0, size, step):
            want = min(step, size - offset)
            try:
                got += os.preadv(fd, [memoryview(buf)[:want]], offset, os.RWF_NOWAIT)
            except BlockingIOError:
                pass
        return got / size if size else 1.0

    fd = os.open(path, os.O_RDONLY)
    try:
        before = resident(fd)
        for offset in range(0, size, step):
            os.preadv(fd, [buf], offset)
        return before, resident(fd)
    finally:
        os.close(fd)


# -- the role: one case for one contestant, in this process ----------------------

class Window:
    """Wall, CPU (the process: all threads), the CPUs' busy time and the
    threads' run delay between start() and stop(); each edge is announced
    on stdout, so that the parent samples the threads while the window is
    open."""

    def start(self):
        print("START", flush=True)
        delay = run_delay()
        self.before = (time.perf_counter(), cpu_seconds(), cpu_busy(), delay)

    def stop(self):
        after = (time.perf_counter(), cpu_seconds(), cpu_busy())
        after += (run_delay(),)
        print("STOP", flush=True)
        wall, cpu, busy, delay = (a - b for a, b in zip(after, self.before))
        return {"wall": wall, "cpu": cpu, "busy": busy, "delay": delay}


def check_block(data, offset):
    if len(data) != BLOCK:
        raise RunFailed(f"read {len(data)} bytes at {offset} instead of {BLOCK}")
    if int.from_bytes(data[:8], "little") != offset // BLOCK:
        raise RunFailed(f"wrong bytes at offset {offset}")


def random_offsets(args):
    """The offsets of the warm-up and of the timed reads, each dealt out to
    the tasks: [[offset] per task] twice.  The same for every contestant."""
    rng = random.Random(args.seed)
    blocks = args.file_size // BLOCK
    warmup = [rng.randrange(blocks) * BLOCK for _ in range(max(args.tasks, args.reads // 20))]
    timed = [rng.randrange(blocks) * BLOCK for _ in range(args.reads)]
    return ([warmup[t::args.tasks] for t in range(args.tasks)],
            [timed[t::args.tasks] for t in range(args.tasks)])


def small_names(args, directory, prefix, count):
    names = [os.path.join(directory, f"{prefix}{i}") for i in range(count)]
    return [names[t::args.tasks] for t in range(args.tasks)]


class AsyncAPI:
    """uringloop's or aiofiles' API: open(), and os.stat / os.remove."""

    def __init__(self, name):
        if name == "uringloop":
            import uringloop
            self.open = uringloop.open
            self.os = importlib.import_module("uringloop.os")
        else:
            import aiofiles
            import aiofiles.os
            self.open = aiofiles.open
            self.os = aiofiles.os


# uringloop's and aiofiles' coroutines: the very same code for both.

async def api_random(api, args, window):
    warmup, timed = random_offsets(args)

    async def reads(f, offsets):
        for offset in offsets:
            await f.seek(offset)
            data = await f.read(BLOCK)
            check_block(data, offset)
        return len(offsets)

    async with contextlib.AsyncExitStack() as stack:
        files = [await stack.enter_async_context(api.open(args.file, "rb"))
                 for _ in range(args.tasks)]
        await asyncio.gather(*(reads(f, offs) for f, offs in zip(files, warmup)))
        window.start()
        done = await asyncio.gather(*(reads(f, offs) for f, offs in zip(files, timed)))
        result = window.stop()
    return dict(result, ops=sum(done), bytes=sum(done) * BLOCK)


async def api_seq_read(api, args, window):
    async with api.open(args.file, "rb") as f:
        for _ in range(args.warmup_chunks):
            await f.read(args.chunk)
    async with api.open(args.file, "rb") as f:
        total = 0
        window.start()
        while True:
            data = await f.read(args.chunk)
            if not data:
                break
            total += len(data)
        result = window.stop()
    if total != args.file_size:
        raise RunFailed(f"read {total:,} bytes of {args.file_size:,}")
    return dict(result, ops=-(-total // args.chunk), bytes=total)


async def api_seq_write(api, args, window):
    chunk = random.Random(1).randbytes(args.chunk)
    path = os.path.join(args.dir, f"write-{os.getpid()}.bin")
    try:
        async with api.open(path + ".warm", "wb") as f:
            for _ in range(args.warmup_chunks):
                await f.write(chunk)
        os.remove(path + ".warm")
        n = args.file_size // args.chunk
        async with api.open(path, "wb") as f:
            window.start()
            for _ in range(n):
                await f.write(chunk)
            result = window.stop()
        if os.stat(path).st_size != n * args.chunk:
            raise RunFailed(f"wrote {os.stat(path).st_size:,} bytes of {n * args.chunk:,}")
    finally:
        for p in (path, path + ".warm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
    return dict(result, ops=n, bytes=n * args.chunk)


async def api_small(api, args, window):
    payload = random.Random(2).randbytes(SMALL)

    async def one(path):
        async with api.open(path, "wb") as f:
            await f.write(payload)
        st = await api.os.stat(path)
        if st.st_size != SMALL:
            raise RunFailed(f"{path}: st_size {st.st_size}, not {SMALL}")
        async with api.open(path, "rb") as f:
            data = await f.read()
        if data != payload:
            raise RunFailed(f"{path}: read back other bytes than written")
        await api.os.remove(path)

    async def worker(paths):
        for path in paths:
            await one(path)
        return len(paths)

    return await small_case(args, window, worker)


async def small_case(args, window, worker):
    directory = os.path.join(args.dir, f"small-{os.getpid()}")
    os.mkdir(directory)
    try:
        warm = small_names(args, directory, "w", max(args.tasks, args.small_files // 20))
        await asyncio.gather(*(worker(p) for p in warm))
        timed = small_names(args, directory, "f", args.small_files)
        window.start()
        done = await asyncio.gather(*(worker(p) for p in timed))
        result = window.stop()
        left = os.listdir(directory)
        if left:
            raise RunFailed(f"{len(left)} files left behind, e.g. {left[0]}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return dict(result, ops=sum(done), bytes=sum(done) * SMALL)


# asyncio.to_thread() around the blocking calls.

async def thread_random(args, window):
    warmup, timed = random_offsets(args)
    to_thread, pread = asyncio.to_thread, os.pread

    async def reads(fd, offsets):
        for offset in offsets:
            data = await to_thread(pread, fd, BLOCK, offset)
            check_block(data, offset)
        return len(offsets)

    with contextlib.ExitStack() as stack:
        fds = [stack.enter_context(open(args.file, "rb")).fileno() for _ in range(args.tasks)]
        await asyncio.gather(*(reads(fd, offs) for fd, offs in zip(fds, warmup)))
        window.start()
        done = await asyncio.gather(*(reads(fd, offs) for fd, offs in zip(fds, timed)))
        result = window.stop()
    return dict(result, ops=sum(done), bytes=sum(done) * BLOCK)


async def thread_seq_read(args, window):
    to_thread = asyncio.to_thread
    with open(args.file, "rb") as f:
        for _ in range(args.warmup_chunks):
            await to_thread(f.read, args.chunk)
    with open(args.file, "rb") as f:
        total = 0
        window.start()
        while True:
            data = await to_thread(f.read, args.chunk)
            if not data:
                break
            total += len(data)
        result = window.stop()
    if total != args.file_size:
        raise RunFailed(f"read {total:,} bytes of {args.file_size:,}")
    return dict(result, ops=-(-total // args.chunk), bytes=total)


async def thread_seq_write(args, window):
    chunk = random.Random(1).randbytes(args.chunk)
    path = os.path.join(args.dir, f"write-{os.getpid()}.bin")
    to_thread = asyncio.to_thread
    try:
        with open(path + ".warm", "wb") as f:
            for _ in range(args.warmup_chunks):
                await to_thread(f.write, chunk)
        os.remove(path + ".warm")
        n = args.file_size // args.chunk
        with open(path, "wb") as f:
            window.start()
            for _ in range(n):
                await to_thread(f.write, chunk)
            result = window.stop()
        if os.stat(path).st_size != n * args.chunk:
            raise RunFailed(f"wrote {os.stat(path).st_size:,} bytes of {n * args.chunk:,}")
    finally:
        for p in (path, path + ".warm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
    return dict(result, ops=n, bytes=n * args.chunk)


async def thread_small(args, window):
    payload = random.Random(2).randbytes(SMALL)
    to_thread = asyncio.to_thread

    async def one(path):
        f = await to_thread(open, path, "wb")
        try:
            await to_thread(f.write, payload)
        finally:
            await to_thread(f.close)
        st = await to_thread(os.stat, path)
        if st.st_size != SMALL:
            raise RunFailed(f"{path}: st_size {st.st_size}, not {SMALL}")
        f = await to_thread(open, path, "rb")
        try:
            data = await to_thread(f.read)
        finally:
            await to_thread(f.close)
        if data != payload:
            raise RunFailed(f"{path}: read back other bytes than written")
        await to_thread(os.remove, path)

    async def worker(paths):
        for path in paths:
            await one(path)
        return len(paths)

    return await small_case(args, window, worker)


# The blocking calls, no event loop.

def blocking_random(args, window):
    warmup, timed = random_offsets(args)
    pread = os.pread

    def reads(fd, offsets):
        for offset in offsets:
            data = pread(fd, BLOCK, offset)
            check_block(data, offset)
        return len(offsets)

    with contextlib.ExitStack() as stack:
        fds = [stack.enter_context(open(args.file, "rb")).fileno() for _ in range(args.tasks)]
        for fd, offs in zip(fds, warmup):
            reads(fd, offs)
        window.start()
        done = [reads(fd, offs) for fd, offs in zip(fds, timed)]
        result = window.stop()
    return dict(result, ops=sum(done), bytes=sum(done) * BLOCK)


def blocking_seq_read(args, window):
    with open(args.file, "rb") as f:
        for _ in range(args.warmup_chunks):
            f.read(args.chunk)
    with open(args.file, "rb") as f:
        total = 0
        window.start()
        while True:
            data = f.read(args.chunk)
            if not data:
                break
            total += len(data)
        result = window.stop()
    if total != args.file_size:
        raise RunFailed(f"read {total:,} bytes of {args.file_size:,}")
    return dict(result, ops=-(-total // args.chunk), bytes=total)


def blocking_seq_write(args, window):
    chunk = random.Random(1).randbytes(args.chunk)
    path = os.path.join(args.dir, f"write-{os.getpid()}.bin")
    try:
        with open(path + ".warm", "wb") as f:
            for _ in range(args.warmup_chunks):
                f.write(chunk)
        os.remove(path + ".warm")
        n = args.file_size // args.chunk
        with open(path, "wb") as f:
            window.start()
            for _ in range(n):
                f.write(chunk)
            result = window.stop()
        if os.stat(path).st_size != n * args.chunk:
            raise RunFailed(f"wrote {os.stat(path).st_size:,} bytes of {n * args.chunk:,}")
    finally:
        for p in (path, path + ".warm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
    return dict(result, ops=n, bytes=n * args.chunk)


def blocking_small(args, window):
    payload = random.Random(2).randbytes(SMALL)
    directory = os.path.join(args.dir, f"small-{os.getpid()}")
    os.mkdir(directory)

    def one(path):
        with open(path, "wb") as f:
            f.write(payload)
        st = os.stat(path)
        if st.st_size != SMALL:
            raise RunFailed(f"{path}: st_size {st.st_size}, not {SMALL}")
        with open(path, "rb") as f:
            data = f.read()
        if data != payload:
            raise RunFailed(f"{path}: read back other bytes than written")
        os.remove(path)

    def worker(paths):
        for path in paths:
            one(path)
        return len(paths)

    try:
        for paths in small_names(args, directory, "w", max(args.tasks, args.small_files // 20)):
            worker(paths)
        timed = small_names(args, directory, "f", args.small_files)
        window.start()
        done = [worker(paths) for paths in timed]
        result = window.stop()
        left = os.listdir(directory)
        if left:
            raise RunFailed(f"{len(left)} files left behind, e.g. {left[0]}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return dict(result, ops=sum(done), bytes=sum(done) * SMALL)


API_CASES = {"random": api_random, "seq-read": api_seq_read, "seq-write": api_seq_write,
             "small": api_small}
THREAD_CASES = {"random": thread_random, "seq-read": thread_seq_read,
                "seq-write": thread_seq_write, "small": thread_small}
BLOCKING_CASES = {"random": blocking_random, "seq-read": blocking_seq_read,
                  "seq-write": blocking_seq_write, "small": blocking_small}


def file_backend(loop):
    """Which backend uringloop.open uses on this loop, for the notes."""
    ops = getattr(loop, "_file_ops", None)
    return type(ops).__name__ if ops is not None else None


def role_run(argv):
    parser = argparse.ArgumentParser(prog="files.py _run")
    parser.add_argument("--case", required=True, choices=list(API_CASES))
    parser.add_argument("--contestant", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--reads", type=int, required=True)
    parser.add_argument("--small-files", type=int, required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.file_size = os.path.getsize(args.file)
    args.warmup_chunks = max(1, args.file_size // args.chunk // 20)

    window = Window()
    result = {}
    if args.contestant == "blocking":
        result = BLOCKING_CASES[args.case](args, window)
    else:
        api, _, loop_name = args.contestant.partition("/")
        loop_name = loop_name or api
        sys.path.insert(0, str(HERE))
        from servers import new_loop
        loop = new_loop(loop_name)
        asyncio.set_event_loop(loop)
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("message", "?")))
        if api == "to_thread":
            coro = THREAD_CASES[args.case](args, window)
        else:
            coro = API_CASES[args.case](AsyncAPI(api), args, window)
        try:
            result = loop.run_until_complete(coro)
            if api == "uringloop":
                result["backend"] = file_backend(loop)
            if errors:
                raise RunFailed(f"the loop reported {len(errors)} error(s); first: {errors[0]}")
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
    print(json.dumps(result), flush=True)


# -- the parent: rounds, contestants, tables --------------------------------------

class Threads:
    """Peak thread counts of a process, from /proc/<pid>/task: io_uring's
    workers (comm "iou-wrk-*") and the rest.  Each thread's comm is read
    once; a listing of the directory per sample."""

    def __init__(self, pid):
        self.dir = f"/proc/{pid}/task"
        self.comm = {}
        self.peak_workers = self.peak_threads = 0
        self.samples = 0

    def sample(self):
        try:
            tids = os.listdir(self.dir)
        except OSError:
            return
        comm = {}
        for tid in tids:
            name = self.comm.get(tid)
            if name is None:
                try:
                    with open(f"{self.dir}/{tid}/comm") as f:
                        name = f.read().strip()
                except OSError:
                    continue
            comm[tid] = name
        self.comm = comm
        workers = sum(name.startswith("iou-wrk") for name in comm.values())
        self.peak_workers = max(self.peak_workers, workers)
        self.peak_threads = max(self.peak_threads,
                                sum(not name.startswith("iou-") for name in comm.values()))
        self.samples += 1


def run_once(args, case, contestant):
    kind = kind_of(case)
    tasks = int(case.split("-")[1]) if kind == "random" else args.tasks
    argv = [sys.executable, str(Path(__file__).resolve()), "_run", "--case", kind,
            "--contestant", contestant, "--file", str(args.data_file), "--dir", str(args.work),
            "--tasks", str(tasks), "--reads", str(args.reads),
            "--small-files", str(args.small_files), "--chunk", str(args.chunk)]
    # Far beyond what the slowest contestant needs: something hangs.
    timeout = RUN_TIMEOUT_BASE + 2e-3 * args.reads + 10e-3 * args.small_files \
        + 0.1 * args.file_mib
    label = f"{case} by {contestant}"
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=REPO)
        threads = Threads(proc.pid)
        fd = proc.stdout.fileno()
        buf = b""
        lines = []
        deadline = time.monotonic() + timeout
        open_since = None
        parent_cpu = 0.0
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunFailed(f"{label}: timed out after {timeout:.0f} s")
                if select.select([fd], [], [], min(left, SAMPLE_INTERVAL))[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        line = line.decode(errors="replace").strip()
                        if line == "START":
                            open_since = cpu_seconds()
                            threads.sample()
                        elif line == "STOP" and open_since is not None:
                            threads.sample()
                            parent_cpu += cpu_seconds() - open_since
                            open_since = None
                        elif line:
                            lines.append(line)
                elif open_since is not None:
                    threads.sample()
            proc.wait(30)
        except BaseException:
            # A failure, a timeout or Ctrl-C: the runner must not outlive
            # this run (its files are about to be deleted).
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-12:]
    result = role_result(label, proc.returncode, lines, tail)
    result.update(peak_workers=threads.peak_workers, peak_threads=threads.peak_threads,
                  samples=threads.samples, parent_cpu=parent_cpu, tasks=tasks)
    # Other work: the CPUs' busy time beyond the runner's and this process's,
    # less two ticks per CPU of sampling slack - but only as far as the
    # runner's threads waited for a CPU meanwhile (their run delay, which
    # alone would count their waiting for each other too): other work on
    # a CPU the runner did not want took nothing from it.
    slack = 2 * len(os.sched_getaffinity(0)) / TICK
    other = min(result["busy"] - result["cpu"] - parent_cpu - slack, result["delay"])
    result["lost"] = max(0.0, other) / result["wall"] if result["wall"] > 0 else 0.0
    return result


def derive(case, r):
    """The per-round numbers the tables show: rate and CPU per unit."""
    kind = kind_of(case)
    if kind in ("seq-read", "seq-write"):
        mib = r["bytes"] / MIB
        r["rate"] = mib / r["wall"]
        r["cpu_per"] = r["cpu"] * 1000 / mib
    else:
        r["rate"] = r["ops"] / r["wall"]
        r["cpu_per"] = r["cpu"] / r["ops"] * 1e6
    return r


def collect(args, out):
    """Fills out: {case: {"runs": {contestant: [result]}, "failures": [text],
    "skipped": {contestant: text}, "repeated": count}} as it goes, so that
    an interruption leaves what was done."""
    out.update({case: {"runs": {c: [] for c in args.contestants}, "failures": [],
                       "skipped": dict(args.skipped), "repeated": 0} for case in args.cases})
    for rnd in range(args.rounds):
        if any(kind_of(c) in ("random", "seq-read") for c in args.cases):
            progress(f"files: round {rnd + 1}/{args.rounds}, reading the data file into the "
                     f"page cache")
            args.resident.append(warm(args.data_file))
        for case in args.cases:
            for contestant in rotate(args.contestants, rnd):
                got = out[case]
                if contestant in got["skipped"]:
                    continue
                progress(f"files: round {rnd + 1}/{args.rounds}, {case} by {contestant}")
                try:
                    best = least_disturbed(lambda: run_once(args, case, contestant),
                                           args.retries, got)
                    best["round"] = rnd + 1
                    got["runs"][contestant].append(derive(case, best))
                except RunFailed as exc:
                    got["failures"].append(str(exc))


def median_of(rs, key):
    return statistics.median(r[key] for r in rs) if rs else None


def summarize(case, runs):
    """Per contestant: {contestant, runs, rate, cpu_per (medians), their
    spreads and per-round values, peak_workers, peak_threads (max over
    rounds), vs_aiofiles and vs_blocking (ratios of median rates; None
    without those runs), target: [(words, ratio, met)] on uringloop's row}."""
    aiofiles = [median_of(rs, "rate") for c, rs in runs.items()
                if c.startswith("aiofiles/") and rs]
    reference = {"aiofiles": max(aiofiles) if aiofiles else None,
                 "blocking": median_of(runs.get("blocking"), "rate")}
    out = []
    for contestant, rs in runs.items():
        s = {"contestant": contestant, "runs": len(rs)}
        if rs:
            for key in ("rate", "cpu_per"):
                s.update(stats(rs, key))
            s["peak_workers"] = max(r["peak_workers"] for r in rs)
            s["peak_threads"] = max(r["peak_threads"] for r in rs)
            for name, ref in reference.items():
                s[f"vs_{name}"] = s["rate"] / ref if ref else None
            if contestant == "uringloop":
                s["target"] = [(words, s[f"vs_{ref}"],
                                None if s[f"vs_{ref}"] is None else s[f"vs_{ref}"] >= minimum)
                               for ref, minimum, words in TARGETS[kind_of(case)]]
        out.append(s)
    return out


def titles(settings):
    size = format_size(settings["file_mib"] * MIB)
    chunk = format_size(settings["chunk"])
    out = {}
    for case in settings["cases"]:
        kind = kind_of(case)
        if kind == "random":
            tasks = int(case.split("-")[1])
            out[case] = (f"random: {settings['reads']:,} reads of 4 KiB at random offsets of a "
                         f"{size} file in the page cache, {plural(tasks, 'task')}"
                         + (" at once, each its own file object" if tasks > 1 else ""))
        elif kind == "seq-read":
            out[case] = f"sequential read: a {size} file in the page cache, {chunk} reads"
        elif kind == "seq-write":
            out[case] = f"sequential write: a new {size} file, {chunk} writes, no fsync"
        else:
            out[case] = (f"small files: {settings['small_files']:,} files of 1 KiB, each "
                         f"created and written, stat()ed, read back and deleted; "
                         f"{plural(settings['tasks'], 'task')} at once")
    return out


def notes(case, part, settings):
    lines = []
    backends = {r["backend"] for r in part["runs"].get("uringloop", []) if r.get("backend")}
    if backends:
        lines.append(f"uringloop's file backend on its loop: {', '.join(sorted(backends))}")
    lost = [r["lost"] for rs in part["runs"].values() for r in rs]
    lines += contention_notes(lost, part["repeated"], "rates")
    short = [f"{c} ({min(r['wall'] for r in rs) * 1000:.0f} ms)"
             for c, rs in part["runs"].items() if rs and min(r["wall"] for r in rs) < 0.05]
    if short:
        lines.append("windows under 50 ms, whose numbers are coarse: " + ", ".join(short)
                     + "; larger --reads, --file-mib or --small-files lengthen them")
    return lines


def as_json(args, env, collected, seconds, interrupted):
    settings = {key: getattr(args, key) for key in (
        "cases", "loops", "contestants", "rounds", "retries", "file_mib", "reads",
        "small_files", "tasks", "chunk")}
    settings.update(dir=str(args.dir), filesystem=args.filesystem,
                    resident=[list(x) for x in args.resident])
    head = titles(settings)
    cases = {}
    for case, got in collected.items():
        cases[case] = {"title": head[case],
                       "summary": summarize(case, got["runs"]),
                       "skipped": got["skipped"],
                       "failures": got["failures"],
                       "notes": notes(case, got, settings),
                       "runs": got["runs"]}
    return {"environment": env, "settings": settings, "seconds": round(seconds, 1),
            "interrupted": interrupted, "cases": cases}


def target_text(targets):
    if not targets:
        return ""
    return "; ".join(f"{words}: {'-' if met is None else 'met' if met else '**not met**'}"
                     for words, _, met in targets)


def markdown(data, loops=None):
    """The report section: a heading, a table per case, notes.  A list of
    lines; benchmarks/run.py appends them to its report."""
    lines = section_head("Files", "files.py", data)
    if "error" in data:
        return lines
    settings = data["settings"]
    resident = settings.get("resident") or []
    cache = (f"; after each round's read of the data file, {min(a for _, a in resident):.1%} "
             f"of it was in the page cache (preadv RWF_NOWAIT)") if resident else ""
    lines += [
        f"Files under {settings['dir']} ({settings['filesystem']}){cache}.  "
        f"uringloop: uringloop.open/uringloop.os on uringloop's loop; aiofiles/L: aiofiles on "
        f"loop L; to_thread/L: asyncio.to_thread() around each blocking call; blocking: the "
        f"calls in a plain loop, no event loop.  Each case for each contestant in a fresh "
        f"process, unpinned (all CPUs: threads and io_uring workers alike), after a warm-up "
        f"of a twentieth of the work.  CPU: getrusage(RUSAGE_SELF), user + sys, all the "
        f"process's threads (executor threads and io_uring's iou-wrk workers included), over "
        f"the timed window.  Peak iou-wrk / threads: io_uring's kernel workers and the other "
        f"threads (main + executor) in /proc/<pid>/task, sampled every 10 ms in the window.  "
        f"Medians over {plural(settings['rounds'], 'round')}, ± half the range; ratios are of "
        f"median rates, vs aiofiles (the faster of its rows) and vs blocking (above 1 is "
        f"faster).", ""]
    for case, part in data["cases"].items():
        rate_head, rate_digits, cpu_head, cpu_digits = UNITS[kind_of(case)]
        lines += [f"#### {part['title']}", ""]
        header = ["contestant", rate_head, cpu_head, "vs aiofiles", "vs blocking",
                  "peak iou-wrk", "peak threads", "target (uringloop)"]
        lines += ["| " + " | ".join(header) + " |", "|---|" + "--:|" * 6 + "---|"]
        by = {s["contestant"]: s for s in part["summary"]}
        blanks = " |" * (len(header) - 2)
        for contestant in settings["contestants"]:
            s = by.get(contestant)
            if contestant in part["skipped"]:
                lines.append(f"| {contestant} | skipped: {part['skipped'][contestant]} |{blanks}")
                continue
            if s is None or not s["runs"]:
                failed = any(f.startswith(f"{case} by {contestant}:") for f in part["failures"])
                lines.append(f"| {contestant} | {'**failed**' if failed else 'not run'} |{blanks}")
                continue
            short = fewer_rounds(s["runs"], settings["rounds"])
            cells = [median_cell(s, "rate", rate_digits), median_cell(s, "cpu_per", cpu_digits),
                     "—" if contestant.startswith("aiofiles/") and s["vs_aiofiles"] == 1
                     else ratio_text(s["vs_aiofiles"]),
                     "—" if contestant == "blocking" else ratio_text(s["vs_blocking"]),
                     str(s["peak_workers"]), str(s["peak_threads"]),
                     target_text(s.get("target"))]
            lines.append(f"| {contestant}{short} | " + " | ".join(cells) + " |")
        lines += notes_and_failures(part)
        lines.append("")
    return lines + saw("files.py", data)


def uringloop_missing():
    """None when this uringloop has open() and os (with stat and remove),
    else why not, in a few words."""
    probe = ("import importlib, uringloop\n"
             "uringloop.open\n"
             "m = importlib.import_module('uringloop.os')\n"
             "m.stat, m.remove\n")
    try:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              cwd=REPO, timeout=60)
    except subprocess.TimeoutExpired:
        return "importing uringloop timed out"
    if proc.returncode == 0:
        return None
    err = proc.stderr.strip().splitlines()
    return f"uringloop.open/uringloop.os not there yet ({err[-1] if err else proc.returncode})"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=KINDS, default=KINDS,
                        help="random (1 task and --tasks tasks), sequential (read and "
                             "write), small (default: all three)")
    parser.add_argument("--loops", nargs="+", choices=LOOPS, default=LOOPS,
                        help="the loops of the contestants (blocking always runs)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per case and contestant, alternating (default: 3)")
    parser.add_argument("--file-mib", type=int, default=FULL["file_mib"],
                        help=f"size of the data file, read at random and in sequence, and of "
                             f"the file written (default: {FULL['file_mib']:,})")
    parser.add_argument("--reads", type=int, default=FULL["reads"],
                        help=f"4 KiB random reads per run (default: {FULL['reads']:,})")
    parser.add_argument("--small-files", type=int, default=FULL["small_files"],
                        help=f"small files per run (default: {FULL['small_files']:,})")
    parser.add_argument("--tasks", type=int, default=64,
                        help="tasks at once: the second random row, and the small files "
                             "(default: 64)")
    parser.add_argument("--chunk-kib", type=int, default=1024,
                        help="chunk of the sequential reads and writes (default: 1024)")
    parser.add_argument("--dir", type=Path,
                        help="where the files go, in a fresh directory deleted afterwards "
                             "(default: the temporary directory, /var/tmp if that is a tmpfs)")
    parser.add_argument("--retries", type=int, default=1,
                        help=f"repeat a run that lost {CONTENDED * 100:.0f}%% or more of its "
                             "window to other work up to this many times (default: 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: 1 round, a {QUICK['file_mib']} MiB file, "
                             f"{QUICK['reads']:,} reads, {QUICK['small_files']:,} small files "
                             f"(benchmarks/run.py's default sizes)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead of Markdown "
                             "(benchmarks/run.py's workload files uses this)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        for key, value in QUICK.items():
            if getattr(args, key) == FULL[key]:
                setattr(args, key, value)
    args.chunk = args.chunk_kib * 1024
    if min(args.rounds, args.file_mib, args.reads, args.small_files, args.tasks,
           args.chunk_kib) < 1 or args.retries < 0:
        parser.error("rounds, file-mib, reads, small-files, tasks and chunk-kib must be "
                     "positive, retries not negative")
    if args.chunk > args.file_mib * MIB:
        parser.error("--chunk-kib is larger than the file")
    missing = [n for n in ("aiofiles",) + (("uvloop",) if "uvloop" in args.loops else ())
               if importlib.util.find_spec(n) is None]
    if missing:
        parser.error(f"missing packages: {' '.join(missing)}")
    args.loops = list(dict.fromkeys(args.loops))
    args.contestants = contestants(args.loops)
    kinds, args.cases = dict.fromkeys(args.cases), []
    for kind in kinds:
        if kind == "random":
            args.cases += ["random-1"] + ([f"random-{args.tasks}"] if args.tasks > 1 else [])
        elif kind == "sequential":
            args.cases += ["seq-read", "seq-write"]
        else:
            args.cases.append("small")
    args.dir = args.dir or Path(default_dir())
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir}: not a directory")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_run"]:
        return role_run(argv[1:])
    args = parse_args(argv)
    point, fstype, device = mount_of(args.dir)
    args.filesystem = f"{fstype} on {device}, mounted at {point}"
    if fstype in MEMORY_FS:
        progress(f"warning: {args.dir} is on {fstype}: memory, not a disk's page cache")
    args.skipped = {}
    if "uringloop" in args.contestants:
        why = uringloop_missing()
        if why:
            args.skipped["uringloop"] = why
            progress(f"note: skipping the uringloop rows: {why}")
    # Unpinned runs: how many CPUs they had matters.
    env = environment(["aiofiles"] + args.loops, allowed=True)
    args.resident = []
    started = time.monotonic()
    interrupted = False
    collected = {}
    args.work = Path(tempfile.mkdtemp(prefix="uringloop-files-", dir=args.dir))
    spread_directories(args.work)
    try:
        args.data_file = args.work / "data.bin"
        progress(f"files: writing a {format_size(args.file_mib * MIB)} data file in "
                 f"{args.work} ({fstype})")
        make_data_file(args.data_file, args.file_mib * MIB)
        collect(args, collected)
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: the tables hold the runs finished so far")
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    data = as_json(args, env, collected, time.monotonic() - started, interrupted)
    return finish(data, args.json, markdown)


if __name__ == "__main__":
    sys.exit(main())
