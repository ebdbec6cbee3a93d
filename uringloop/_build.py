"""cffi builder for uringloop's C core (API mode, compiled at install time).

setup.py names `ffibuilder` in `cffi_modules`; `pip install -e .` rebuilds it.
setup.py's build_ext first checks that the C compiler and Python.h are there,
and says which is missing.

URINGLOOP_SANITIZE=address,undefined (any of gcc's -fsanitize= names) at build
time compiles the core with those sanitizers; scripts/sanitize.sh uses it.
"""
from __future__ import annotations

import os
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).parent
C_DIR = HERE / "_c"
SOURCES = ("ring.c", "prep.c", "module.c", "optable.c", "future.c", "stream.c", "datagram.c",
           "sockets.c", "files.c", "callbacks.c", "timers.c")

# Every UL_* constant of the ABI and the ring's header is exported by name;
# cffi reads the values from the compiled headers, so they are defined
# exactly once.
_HEADERS = (C_DIR / "abi.h").read_text() + (C_DIR / "ring.h").read_text()
_CONSTANTS = sorted(set(re.findall(r"^#define (UL_[A-Z0-9_]+)\s", _HEADERS, re.M)))
# The function prototypes are written once, in ring.h.
# (type: ignore: ring.h has the markers; a build without them fails here, as it should)
_PROTOTYPES = re.search(r"/\* cdef-begin.*?\*/\n(.*?)/\* cdef-end \*/", _HEADERS, re.S).group(1)  # type: ignore[union-attr]

CDEF = "\n".join(f"#define {name} ..." for name in _CONSTANTS) + """

struct ul_ring {
    int fd;
    uint32_t setup_flags;
    uint32_t features;
    uint32_t sq_entries, cq_entries;
    uint32_t enabled;
    uint8_t ops[256];
    uint32_t cqe_pos[2];
    uint64_t *cqe_user_data;
    int32_t *cqe_res;
    uint32_t *cqe_flags;
    uint64_t *cqe_big;
    ...;
};

struct ul_bufring {
    uint32_t count, size;
    uint16_t bgid;
    ...;
};

struct ul_statx_timestamp { int64_t tv_sec; uint32_t tv_nsec; ...; };
struct ul_statx {
    uint32_t mask, blksize;
    uint32_t nlink, uid, gid;
    uint16_t mode;
    uint64_t ino, size, blocks;
    struct ul_statx_timestamp atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    ...;
};

struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
    ...;
};
""" + _PROTOTYPES

COMPILE_ARGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
LINK_ARGS: list[str] = []
SANITIZE = os.environ.get("URINGLOOP_SANITIZE", "").strip()
if SANITIZE:
    # -O1 -g and frame pointers give exact stack traces; a finding of any
    # sanitizer aborts rather than printing and carrying on, so it fails the
    # run.  CPython's CFLAGS add -fwrapv, which would make signed overflow
    # defined and hide it from UBSan: our code must not rely on it.
    SANITIZE_ARGS = [f"-fsanitize={SANITIZE}", "-fno-sanitize-recover=all"]
    COMPILE_ARGS += SANITIZE_ARGS + ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv"]
    LINK_ARGS += SANITIZE_ARGS

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "uringloop._uring",
    '#include <sys/socket.h>\n#include <sys/uio.h>\n#include "ring.h"',
    sources=[str(C_DIR.relative_to(HERE.parent) / name) for name in SOURCES],
    include_dirs=[str(C_DIR.relative_to(HERE.parent))],
    extra_compile_args=COMPILE_ARGS,
    extra_link_args=LINK_ARGS,
    # The op table, stream and callbacks use CPython's full C API: the
    # module is built per Python version, not as one abi3 module.
    py_limited_api=False,
)
