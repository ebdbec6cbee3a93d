/*
 * uringloop's C core: one io_uring, its provided-buffer ring, and the small
 * API Python calls through cffi.  It knows nothing of asyncio: every
 * operation is named by a 64-bit user_data, and completions are copied into
 * flat arrays that Python and the op table read in bulk.
 *
 *   ring.c   setup and probe, enable, enter + reap, provided-buffer rings
 *   prep.c   one small function per opcode and variant, as liburing's
 *            io_uring_prep_* helpers
 */
#ifndef URINGLOOP_RING_H
#define URINGLOOP_RING_H

#include <stddef.h>
#include <stdint.h>
#include "abi.h"

/* user_data the reaper drops: internal timeouts and cancel requests. */
#define UL_UD_INTERNAL 0

/* A request that picks a provided buffer carries its group in the upper
 * half of its user_data (the op table's slot is the lower half), so the
 * reaper knows which ring each buffer goes back to. */
#define UL_BUFFER_GROUPS 4
#define UL_UD_GROUP_SHIFT 32

/* The most one bundled receive completion takes (prep.c): a 256 KiB cap
 * cost ten 1 MiB echoes a quarter more CPU, 1 MiB doubled the read-ahead. */
#define UL_BUNDLE_CAP (512u * 1024)

struct ul_ring {
    int fd;
    uint32_t setup_flags;      /* flags the kernel accepted */
    uint32_t features;         /* params.features, less masked bits */
    uint32_t sq_entries, cq_entries;
    uint32_t enabled;
    uint8_t ops[256];          /* 1 where IORING_REGISTER_PROBE says supported */

    /* completions, copied out by ul_wait() for Python to read in bulk.
     * cqe_pos[0] is the next one to dispatch, cqe_pos[1] how many there
     * are; ul_wait() reaps again only once they are all consumed, so an
     * exception in the middle of dispatch loses none. */
    uint32_t cqe_pos[2];
    uint64_t *cqe_user_data;
    int32_t *cqe_res;
    uint32_t *cqe_flags;
    uint64_t *cqe_big;         /* two words per CQE; valid where F_32 is set */

    /* submission queue */
    uint32_t *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
    uint32_t sq_mask, sq_tail;
    struct ul_sqe *sqes;

    /* completion queue */
    uint32_t *cq_khead, *cq_ktail;
    uint32_t cq_mask;
    struct ul_cqe *cqes;

    /* The provided-buffer rings of this ring, by group: buffers that reaped
     * completions carried go back at the next ul_wait(), by which time
     * their bytes have been copied out.  recycle holds group << 16 | bid. */
    struct ul_bufring *bufrings[UL_BUFFER_GROUPS];
    uint32_t *recycle;
    uint32_t nrecycle, recycle_room;

    uint32_t enter_flags;      /* NO_IOWAIT where the kernel has it */
    uint32_t lone;             /* the last reap had one completion */
    uint32_t replied;          /* a reply was submitted since the last wait */
    uint32_t forgotten[2];     /* stand-in SQ head/tail once forgotten */
    struct ul_timespec ts;     /* wait timeout, read by the kernel in enter */

    void *sq_map, *cq_map, *sqe_map;
    size_t sq_map_len, cq_map_len, sqe_map_len;
};

/* A provided-buffer ring: `count` buffers of `size` bytes in group `bgid`,
 * carved from memory the caller owns.  A receive bundle fills several
 * buffers, named only by the first: the rest are the ones that followed it
 * in the ring, so each buffer's ring position is kept (slot) and the reaper
 * links a bundle's buffers in order (next).  Only `want` buffers are out
 * with the kernel at a time; the others wait in `spare`, the most recently
 * used on top (see publish_wanted). */
struct ul_bufring {
    struct ul_buf *ring;
    char *base;
    uint16_t *slot, *next;     /* by bid; in the ring's own mapping */
    uint16_t *spare;           /* a stack of nspare bids, in the same mapping */
    uint32_t count, size, mask;
    uint32_t nspare, out, want;  /* out: published, not yet seen taken */
    uint16_t bgid, tail;
};

/* The kernel maps buffers for a bundle's whole cap before it receives, and
 * ends the multishot once that empties the ring: so a cap is at most a
 * quarter of the ring, or a small ring would end every receive. */
static inline unsigned ul_bundle_cap(const struct ul_bufring *br)
{
    size_t quarter = (size_t)br->count * br->size / 4;
    if (quarter < br->size)
        quarter = br->size;
    return quarter < UL_BUNDLE_CAP ? (unsigned)quarter : UL_BUNDLE_CAP;
}

/* cdef-begin: _build.py hands these prototypes to cffi as they are */
int ul_ring_init(struct ul_ring *r, unsigned entries, unsigned cq_entries,
                 unsigned try_flags, unsigned deny_features);
int ul_ring_enable(struct ul_ring *r);
void ul_ring_exit(struct ul_ring *r);
void ul_ring_forget(struct ul_ring *r);
void ul_fit_malloc_to_bursts(size_t burst);
int ul_wait(struct ul_ring *r, long long timeout_ns);
int ul_flush(struct ul_ring *r);

int ul_bufring_init(struct ul_ring *r, struct ul_bufring *br, unsigned bgid,
                    unsigned count, unsigned size, void *memory);
void ul_bufring_exit(struct ul_ring *r, struct ul_bufring *br);
const char *ul_bufring_data(const struct ul_bufring *br, unsigned bid, unsigned len);
int ul_bufring_take(const struct ul_bufring *br, unsigned *bid, unsigned *at, unsigned n,
                    char *dest);

/* prep.c: each queues one SQE and returns 0, or -errno when the SQ is full
 * and the kernel refuses to take it (-EBADFD: the ring is not running). */
int ul_prep_nop(struct ul_ring *r, uint64_t ud);
int ul_prep_nop_cqe32(struct ul_ring *r, uint64_t ud, uint64_t off, uint64_t addr);
int ul_prep_poll(struct ul_ring *r, uint64_t ud, int fd, unsigned events);
int ul_prep_poll_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned events);
int ul_prep_cancel(struct ul_ring *r, uint64_t target);
int ul_prep_cancel_fd(struct ul_ring *r, int fd);
int ul_prep_cancel_all(struct ul_ring *r);
int ul_prep_recv(struct ul_ring *r, uint64_t ud, int fd, void *buf, unsigned len);
int ul_prep_recv_select(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid);
int ul_prep_recv_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid);
int ul_prep_send(struct ul_ring *r, uint64_t ud, int fd, const void *buf, unsigned len);
int ul_prep_sendmsg(struct ul_ring *r, uint64_t ud, int fd, const void *msg);
int ul_prep_recvmsg_multishot(struct ul_ring *r, uint64_t ud, int fd, const void *msg,
                              unsigned bgid);
int ul_prep_epoll_wait(struct ul_ring *r, uint64_t ud, int epfd, void *events,
                       unsigned maxevents);
unsigned ul_epoll_event_size(void);
unsigned ul_epoll_data_offset(void);
int ul_prep_read_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid);
int ul_prep_waitid(struct ul_ring *r, uint64_t ud, int idtype, int id, void *info,
                   unsigned options);
unsigned ul_siginfo_size(void);
int ul_child_returncode(const void *info);
int ul_prep_accept(struct ul_ring *r, uint64_t ud, int fd, unsigned flags);
int ul_prep_accept_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned flags);
int ul_prep_openat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                   unsigned mode);
int ul_prep_openat_async(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                         unsigned mode);
int ul_prep_close(struct ul_ring *r, uint64_t ud, int fd);
int ul_prep_read(struct ul_ring *r, uint64_t ud, int fd, void *buf, unsigned len,
                 int64_t offset);
int ul_prep_write(struct ul_ring *r, uint64_t ud, int fd, const void *buf, unsigned len,
                  int64_t offset);
int ul_prep_fsync(struct ul_ring *r, uint64_t ud, int fd, unsigned flags);
int ul_prep_ftruncate(struct ul_ring *r, uint64_t ud, int fd, int64_t length);
int ul_prep_statx(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                  unsigned mask, void *statxbuf);
int ul_prep_unlinkat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags);
int ul_prep_renameat(struct ul_ring *r, uint64_t ud, int olddfd, const char *oldpath,
                     int newdfd, const char *newpath, unsigned flags);
int ul_prep_mkdirat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, unsigned mode);
int ul_prep_symlinkat(struct ul_ring *r, uint64_t ud, const char *target, int newdfd,
                      const char *linkpath);
int ul_prep_linkat(struct ul_ring *r, uint64_t ud, int olddfd, const char *oldpath,
                   int newdfd, const char *newpath, int flags);
int ul_register_iowq_max_workers(struct ul_ring *r, unsigned bounded, unsigned unbounded);

/* module.c: puts the CPython objects of the C code into the dict at this
 * address (uringloop/_c/__init__.py's namespace) */
int ul_install(uintptr_t dict_address);
/* cdef-end */

/* For prep.c and ul_wait(): the next free SQE, zeroed, or NULL with *err. */
struct ul_sqe *ul_get_sqe(struct ul_ring *r, int *err);
/* For ul_wait() on kernels without EXT_ARG: a TIMEOUT ending the wait. */
int ul_prep_wait_timeout(struct ul_ring *r, struct ul_timespec *ts);
/* For write(): submit a reply to a lone completion now (see ring.c). */
void ul_submit_reply(struct ul_ring *r);

#endif
