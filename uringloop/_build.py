"""cffi builder for uringloop's C core (API mode, compiled at install time).

setup.py names `ffibuilder` in `cffi_modules`; `pip install -e .` rebuilds it.
"""
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).parent
HEADER = HERE / "_core.h"

# Every UL_* constant of the header is exported by name; cffi reads the
# values from the compiled header, so they are defined exactly once.
_CONSTANTS = sorted(set(re.findall(r"^#define (UL_[A-Z0-9_]+)\s", HEADER.read_text(), re.M)))

CDEF = "\n".join(f"#define {name} ..." for name in _CONSTANTS if name != "URINGLOOP_CORE_H") + """

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

int ul_ring_init(struct ul_ring *r, unsigned entries, unsigned cq_entries,
                 unsigned try_flags, unsigned deny_features);
int ul_ring_enable(struct ul_ring *r);
void ul_ring_exit(struct ul_ring *r);
void ul_ring_forget(struct ul_ring *r);
int ul_wait(struct ul_ring *r, long long timeout_ns);
unsigned ul_sq_pending(struct ul_ring *r);

int ul_prep_nop(struct ul_ring *r, uint64_t ud, unsigned nop_flags,
                uint64_t off, uint64_t addr);
int ul_prep_poll_add(struct ul_ring *r, uint64_t ud, int fd, unsigned events,
                     unsigned multishot);
int ul_prep_cancel(struct ul_ring *r, uint64_t ud, uint64_t target, int fd,
                   unsigned flags);
int ul_prep_recv(struct ul_ring *r, uint64_t ud, int fd, void *buf,
                 unsigned len, unsigned msg_flags, unsigned ioprio, int bgid);
int ul_prep_send(struct ul_ring *r, uint64_t ud, int fd, const char *buf,
                 unsigned len, unsigned msg_flags);
int ul_prep_sendmsg(struct ul_ring *r, uint64_t ud, int fd, const void *msg,
                    unsigned msg_flags);
int ul_prep_accept(struct ul_ring *r, uint64_t ud, int fd, unsigned flags,
                   unsigned ioprio);
int ul_prep_connect(struct ul_ring *r, uint64_t ud, int fd, const void *addr,
                    unsigned addrlen);

struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
    ...;
};

int ul_bufring_init(struct ul_ring *r, struct ul_bufring *br, unsigned bgid,
                    unsigned count, unsigned size, void *memory);
void ul_bufring_exit(struct ul_ring *r, struct ul_bufring *br);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "uringloop._uring",
    '#include <sys/socket.h>\n#include <sys/uio.h>\n#include "_core.h"',
    sources=[str(HERE.relative_to(HERE.parent) / "_core.c")],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)
