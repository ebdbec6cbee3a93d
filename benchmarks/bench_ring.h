/*
 * The io_uring ring of the standalone C benchmarks (floor_echo.c,
 * sendfile_paths.c): setup, mapping and the raw syscalls, on uringloop's own
 * ABI definitions rather than a system liburing.  It is uringloop/_c/ring.c
 * without what a program that keeps one ring until it exits does not need:
 * no NO_SQARRAY, no probe, no teardown.
 *
 * abi.h is included by its path from here, so the header builds with or
 * without -I uringloop/_c (loadgen.py builds floor_echo.c without it).
 */
#ifndef BENCH_RING_H
#define BENCH_RING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../uringloop/_c/abi.h"

/* The kernel reads and writes the ring heads and tails concurrently. */
#define load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

struct ring {
    int fd;
    uint32_t *sq_khead, *sq_ktail, sq_mask, sq_entries;
    uint32_t sq_tail;           /* ours: SQEs queued, published by ring_enter() */
    struct ul_sqe *sqes;
    uint32_t *cq_khead, *cq_ktail, cq_mask;
    struct ul_cqe *cqes;
};

static inline void *ring_mmap(int fd, size_t len, unsigned long long off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

/* Map the SQ and CQ rings (one mapping where the kernel shares it,
 * FEAT_SINGLE_MMAP, Linux 5.4 on) and the SQE array.  0, or -1 and errno. */
static inline int ring_map(struct ring *r, const struct ul_params *p)
{
    size_t sq_len = p->sq_off.array + p->sq_entries * sizeof(uint32_t);
    size_t cq_len = p->cq_off.cqes + p->cq_entries * sizeof(struct ul_cqe);
    char *sq, *cq;

    if (p->features & UL_FEAT_SINGLE_MMAP) {
        sq = cq = ring_mmap(r->fd, sq_len > cq_len ? sq_len : cq_len, OFF_SQ_RING);
    } else {
        sq = ring_mmap(r->fd, sq_len, OFF_SQ_RING);
        cq = ring_mmap(r->fd, cq_len, OFF_CQ_RING);
    }
    r->sqes = ring_mmap(r->fd, p->sq_entries * sizeof(struct ul_sqe), OFF_SQES);
    if (!sq || !cq || !r->sqes)
        return -1;
    r->sq_khead = (uint32_t *)(sq + p->sq_off.head);
    r->sq_ktail = (uint32_t *)(sq + p->sq_off.tail);
    r->sq_mask = *(uint32_t *)(sq + p->sq_off.ring_mask);
    r->sq_entries = p->sq_entries;
    r->cq_khead = (uint32_t *)(cq + p->cq_off.head);
    r->cq_ktail = (uint32_t *)(cq + p->cq_off.tail);
    r->cq_mask = *(uint32_t *)(cq + p->cq_off.ring_mask);
    r->cqes = (struct ul_cqe *)(cq + p->cq_off.cqes);
    /* SQE i always sits in slot i (SQEs go in in the order they are
     * queued), so the index array is filled once, here */
    uint32_t *array = (uint32_t *)(sq + p->sq_off.array);
    for (uint32_t i = 0; i < p->sq_entries; i++)
        array[i] = i;
    return 0;
}

/* Make and map a ring of sq_entries SQEs, and of cq_entries CQEs where not
 * 0 (else the kernel's default, twice sq_entries), with the fastest setup
 * this kernel accepts: uringloop's first choice, then its fallbacks, taken
 * only where the kernel refuses the newer flags with EINVAL, as older ones
 * do.  Returns the name of the setup taken, for the programs' reports, or
 * NULL and errno; the programs exit then, so nothing is unwound. */
static inline const char *ring_init(struct ring *r, unsigned sq_entries, unsigned cq_entries)
{
    static const struct { unsigned flags; const char *name; } tiers[] = {
        {UL_SETUP_SINGLE_ISSUER | UL_SETUP_DEFER_TASKRUN, "defer_taskrun"},
        {UL_SETUP_COOP_TASKRUN, "coop_taskrun"},
        {0, "plain"},
    };
    struct ul_params p;

    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = tiers[i].flags;
        if (cq_entries) {
            p.flags |= UL_SETUP_CQSIZE;
            p.cq_entries = cq_entries;
        }
        r->fd = (int)syscall(__NR_io_uring_setup, sq_entries, &p);
        if (r->fd >= 0)
            return ring_map(r, &p) == 0 ? tiers[i].name : NULL;
        if (errno != EINVAL)
            break;
    }
    return NULL;
}

/* The next SQE, zeroed but for its opcode, fd and user_data; NULL where
 * the SQ is full, which each program handles its own way. */
static inline struct ul_sqe *ring_get_sqe(struct ring *r, uint8_t opcode, int fd, uint64_t user_data)
{
    if (r->sq_tail - load_acquire(r->sq_khead) >= r->sq_entries)
        return NULL;
    struct ul_sqe *sqe = &r->sqes[r->sq_tail++ & r->sq_mask];
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = opcode;
    sqe->fd = fd;
    sqe->user_data = user_data;
    return sqe;
}

/* Submit what is queued; with UL_ENTER_GETEVENTS, wait for wait_nr
 * completions too.  0, or -1 and errno.  EINTR and EBUSY (a full CQ) only
 * end the wait early, and after EAGAIN (no memory just now) the SQEs stay
 * queued for the next call, so all three count as success: both programs
 * come round again. */
static inline int ring_enter(struct ring *r, unsigned wait_nr, unsigned flags)
{
    store_release(r->sq_ktail, r->sq_tail);
    unsigned n = r->sq_tail - load_acquire(r->sq_khead);
    if (syscall(__NR_io_uring_enter, r->fd, n, wait_nr, flags, NULL, 0) < 0 &&
        errno != EINTR && errno != EBUSY && errno != EAGAIN)
        return -1;
    return 0;
}

/* io_uring_register(2): its result, or -1 and errno. */
static inline int ring_register(struct ring *r, unsigned opcode, void *arg, unsigned nr_args)
{
    return (int)syscall(__NR_io_uring_register, r->fd, opcode, arg, nr_args);
}

#endif
