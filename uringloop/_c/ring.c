/*
 * The ring: setup and probe, enable, submit + wait + reap into flat arrays,
 * and provided-buffer rings.  Preps are in prep.c.
 */
#define _GNU_SOURCE
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's side of the ring indices: read with acquire, publish with
 * release, so the SQE/CQE contents are ordered with the index moves. */
#define load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static int sys_setup(unsigned entries, struct ul_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete,
                     unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
                        flags, arg, argsz);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned nr)
{
    return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

/* ---- setup ------------------------------------------------------------- */

static void unmap_all(struct ul_ring *r)
{
    if (r->sqe_map)
        munmap(r->sqe_map, r->sqe_map_len);
    if (r->cq_map && r->cq_map != r->sq_map)
        munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map)
        munmap(r->sq_map, r->sq_map_len);
    r->sq_map = r->cq_map = r->sqe_map = NULL;
}

static void *map_ring(int fd, size_t len, unsigned long long off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

static int map_rings(struct ul_ring *r, struct ul_params *p)
{
    size_t cqe_size = sizeof(struct ul_cqe);
    r->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(uint32_t);
    r->cq_map_len = p->cq_off.cqes + p->cq_entries * cqe_size;
    if (p->flags & UL_SETUP_NO_SQARRAY)
        r->sq_map_len = p->sq_off.flags + sizeof(uint32_t) * 4;
    if (p->features & UL_FEAT_SINGLE_MMAP) {
        if (r->cq_map_len > r->sq_map_len)
            r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = map_ring(r->fd, r->sq_map_len, OFF_SQ_RING);
    if (!r->sq_map)
        return -errno;
    r->cq_map = r->sq_map;
    if (!(p->features & UL_FEAT_SINGLE_MMAP)) {
        r->cq_map = map_ring(r->fd, r->cq_map_len, OFF_CQ_RING);
        if (!r->cq_map)
            return -errno;
    }
    r->sqe_map_len = p->sq_entries * sizeof(struct ul_sqe);
    r->sqe_map = map_ring(r->fd, r->sqe_map_len, OFF_SQES);
    if (!r->sqe_map)
        return -errno;

    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_khead = (uint32_t *)(sq + p->sq_off.head);
    r->sq_ktail = (uint32_t *)(sq + p->sq_off.tail);
    r->sq_kflags = (uint32_t *)(sq + p->sq_off.flags);
    r->sq_mask = *(uint32_t *)(sq + p->sq_off.ring_mask);
    r->sq_array = (p->flags & UL_SETUP_NO_SQARRAY)
                      ? NULL : (uint32_t *)(sq + p->sq_off.array);
    r->sq_tail = *r->sq_ktail;
    r->sqes = r->sqe_map;
    r->cq_khead = (uint32_t *)(cq + p->cq_off.head);
    r->cq_ktail = (uint32_t *)(cq + p->cq_off.tail);
    r->cq_mask = *(uint32_t *)(cq + p->cq_off.ring_mask);
    r->cqes = (struct ul_cqe *)(cq + p->cq_off.cqes);
    return 0;
}

static void probe_ops(struct ul_ring *r)
{
    struct ul_probe *probe = calloc(1, sizeof(*probe));
    if (!probe)
        return;
    if (sys_register(r->fd, UL_REGISTER_PROBE, probe, 256) >= 0) {
        for (unsigned i = 0; i < probe->ops_len && i < 256; i++)
            if (probe->ops[i].flags & 1)
                r->ops[probe->ops[i].op] = 1;
    }
    free(probe);
}

static int alloc_completion_arrays(struct ul_ring *r)
{
    size_t n = r->cq_entries;
    r->cqe_user_data = calloc(n, sizeof(uint64_t));
    r->cqe_res = calloc(n, sizeof(int32_t));
    r->cqe_flags = calloc(n, sizeof(uint32_t));
    r->cqe_big = calloc(2 * n, sizeof(uint64_t));
    r->recycle = calloc(n, sizeof(uint32_t));
    r->recycle_room = (uint32_t)n;
    if (!r->cqe_user_data || !r->cqe_res || !r->cqe_flags || !r->cqe_big || !r->recycle)
        return -ENOMEM;
    return 0;
}

/* Make a ring with exactly `try_flags`; the caller chooses the cascade.
 * Returns 0 or -errno (the errno of io_uring_setup where that failed). */
int ul_ring_init(struct ul_ring *r, unsigned entries, unsigned cq_entries,
                 unsigned try_flags, unsigned deny_features)
{
    struct ul_params p;
    int err;

    memset(r, 0, sizeof(*r));
    memset(&p, 0, sizeof(p));
    p.flags = try_flags;
    p.cq_entries = cq_entries;
    r->fd = sys_setup(entries, &p);
    if (r->fd < 0) {
        r->fd = -1;
        return -errno;
    }
    r->setup_flags = p.flags;
    p.features &= ~deny_features;   /* masked features take no code path */
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->enabled = !(p.flags & UL_SETUP_R_DISABLED);
    if (r->features & UL_FEAT_NO_IOWAIT)
        r->enter_flags = UL_ENTER_NO_IOWAIT;
    err = map_rings(r, &p);
    if (!err)
        err = alloc_completion_arrays(r);
    if (err) {
        ul_ring_exit(r);
        return err;
    }
    probe_ops(r);
    return 0;
}

/* With SINGLE_ISSUER the thread that enables the ring becomes its only
 * submitter, so the loop calls this from the thread that runs it. */
int ul_ring_enable(struct ul_ring *r)
{
    if (r->enabled)
        return 0;
    if (sys_register(r->fd, UL_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    r->enabled = 1;
    return 0;
}

/* Leave indices that make every later prep or wait fail with EBADFD
 * instead of touching queues that are no longer this process's. */
static void detach_queues(struct ul_ring *r)
{
    r->enabled = 0;
    r->sq_entries = 0;
    r->sq_tail = 0;
    r->forgotten[0] = r->forgotten[1] = 0;
    r->sq_khead = &r->forgotten[0];
    r->sq_ktail = &r->forgotten[1];
}

/* In a forked child the ring's mappings are shared with the parent, which
 * still owns the ring: drop the child's view without touching the shared
 * memory. */
void ul_ring_forget(struct ul_ring *r)
{
    unmap_all(r);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    detach_queues(r);
}

/* Unmap, close and free: the ring ends with this process's last use. */
void ul_ring_exit(struct ul_ring *r)
{
    ul_ring_forget(r);
    free(r->cqe_user_data);
    free(r->cqe_res);
    free(r->cqe_flags);
    free(r->cqe_big);
    free(r->recycle);
    r->recycle = NULL;
    memset(r->bufrings, 0, sizeof(r->bufrings));
    r->nrecycle = r->recycle_room = 0;
    r->cqe_pos[0] = r->cqe_pos[1] = 0;
    r->cqe_user_data = NULL;
    r->cqe_res = NULL;
    r->cqe_flags = NULL;
    r->cqe_big = NULL;
}

/* ---- submission -------------------------------------------------------- */

static unsigned sq_pending(struct ul_ring *r)
{
    return r->sq_tail - load_acquire(r->sq_khead);
}

static int submit(struct ul_ring *r, unsigned flags, unsigned wait_nr,
                  void *arg, size_t argsz)
{
    store_release(r->sq_ktail, r->sq_tail);
    unsigned n = sq_pending(r);
    int ret = sys_enter(r->fd, n, wait_nr, flags | r->enter_flags, arg, argsz);
    return ret < 0 ? -errno : ret;
}

/* The next free SQE, zeroed.  A full SQ is submitted first, so an SQE is
 * never dropped; NULL (with *err) only when the kernel refuses that. */
struct ul_sqe *ul_get_sqe(struct ul_ring *r, int *err)
{
    if (sq_pending(r) >= r->sq_entries) {
        if (!r->enabled) {
            *err = -EBADFD;
            return NULL;
        }
        int ret = submit(r, 0, 0, NULL, 0);
        if (ret < 0 || sq_pending(r) >= r->sq_entries) {
            *err = ret < 0 ? ret : -EBUSY;
            return NULL;
        }
    }
    unsigned idx = r->sq_tail & r->sq_mask;
    struct ul_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof(*sqe));
    if (r->sq_array)
        r->sq_array[idx] = idx;
    r->sq_tail++;
    return sqe;
}

/* ---- completion -------------------------------------------------------- */

static void hold_buffers(struct ul_ring *r, unsigned group, unsigned bid, int32_t res);
static void publish_all(struct ul_bufring *br);

/* Copy up to cq_entries completions into the flat arrays.  Padding CQEs
 * of a mixed ring and internal user_data are dropped here, so Python sees
 * one entry per operation result. */
static int reap(struct ul_ring *r)
{
    unsigned head = *r->cq_khead, tail = load_acquire(r->cq_ktail);
    unsigned n = 0, max = r->cq_entries;

    while (head != tail && n < max) {
        struct ul_cqe *c = &r->cqes[head & r->cq_mask];
        unsigned flags = c->flags;
        head += (flags & UL_CQE_F_32) ? 2 : 1;
        if ((flags & UL_CQE_F_SKIP) || c->user_data == UL_UD_INTERNAL)
            continue;
        unsigned group = (unsigned)(c->user_data >> UL_UD_GROUP_SHIFT);
        r->cqe_user_data[n] = (uint32_t)c->user_data;
        r->cqe_res[n] = c->res;
        r->cqe_flags[n] = flags;
        if (group < UL_BUFFER_GROUPS && r->bufrings[group]) {
            if (flags & UL_CQE_F_BUFFER)
                hold_buffers(r, group, flags >> UL_CQE_BUFFER_SHIFT, c->res);
            else if (c->res == -ENOBUFS)
                publish_all(r->bufrings[group]);
        }
        if (flags & UL_CQE_F_32) {
            /* a big CQE never straddles the wrap: the kernel pads first */
            const uint64_t *extra = (const uint64_t *)(c + 1);
            r->cqe_big[2 * n] = extra[0];
            r->cqe_big[2 * n + 1] = extra[1];
        }
        n++;
    }
    store_release(r->cq_khead, head);
    r->cqe_pos[0] = 0;
    r->cqe_pos[1] = n;
    r->lone = n == 1;
    return (int)n;
}

static void add_buffer(struct ul_bufring *br, unsigned bid);
static void publish_wanted(struct ul_bufring *br);

/* The kernel took one of the buffers it was given. */
static void taken(struct ul_bufring *br)
{
    if (br->out)
        br->out--;
}

/* A completion carried buffer `bid` of `group` and, if it was a bundle of
 * `res` bytes, the buffers after it in the ring, as many as res filled: all
 * go back at the next wait.  They are named here, while their ring entries
 * are as the kernel took them: the kernel takes buffers in the order it
 * posts their completions, and the entries recycled at a wait are those of
 * the completions reaped before it. */
static void hold_buffers(struct ul_ring *r, unsigned group, unsigned bid, int32_t res)
{
    struct ul_bufring *br = r->bufrings[group];
    unsigned more = res > 0 ? ((unsigned)res - 1) / br->size : 0;

    if (bid >= br->count || r->nrecycle >= r->recycle_room)
        return;
    taken(br);
    r->recycle[r->nrecycle++] = group << 16 | bid;
    for (uint16_t at = br->slot[bid]; more && r->nrecycle < r->recycle_room; more--) {
        unsigned after = br->ring[++at & br->mask].bid;
        if (after >= br->count)
            return;
        taken(br);
        br->next[bid] = (uint16_t)after;
        bid = after;
        r->recycle[r->nrecycle++] = group << 16 | bid;
    }
}

/* The last batch is consumed: its buffers go back on top of the spares,
 * and each ring is given what it wants from the top. */
static void recycle_buffers(struct ul_ring *r)
{
    for (unsigned i = 0; i < r->nrecycle; i++) {
        struct ul_bufring *br = r->bufrings[r->recycle[i] >> 16];
        if (br->nspare < br->count)      /* never past the stack, whatever came back */
            br->spare[br->nspare++] = (uint16_t)(r->recycle[i] & 0xffff);
    }
    for (unsigned g = 0; g < UL_BUFFER_GROUPS; g++) {
        struct ul_bufring *br = r->bufrings[g];
        if (!br)
            continue;
        if (br->out <= br->want / 2)               /* a batch took half */
            br->want = br->want * 2 < br->count ? br->want * 2 : br->count;
        publish_wanted(br);
    }
    r->nrecycle = 0;
}

static int cq_ready(struct ul_ring *r)
{
    return *r->cq_khead != load_acquire(r->cq_ktail);
}

/* A syscall is needed unless nothing is queued, nothing must be waited for,
 * and the kernel has flagged no deferred work or overflow. */
static int needs_enter(struct ul_ring *r, long long timeout_ns)
{
    if (timeout_ns != 0 || sq_pending(r))
        return 1;
    if (!(r->setup_flags & UL_SETUP_TASKRUN_FLAG))
        return 1;
    return load_acquire(r->sq_kflags) & (UL_SQ_TASKRUN | UL_SQ_CQ_OVERFLOW);
}

/* Submit everything queued, wait up to timeout_ns (<0: forever, 0: not at
 * all) for a completion, and copy completions out.  Returns how many wait
 * in the arrays, or -errno.  While earlier ones are still undispatched it
 * returns at once and reaps nothing.  EINTR returns early so Python can run
 * its signal handlers; ETIME is a timeout; EBUSY/EAGAIN mean the CQ must
 * drain first, which this reap does. */
int ul_wait(struct ul_ring *r, long long timeout_ns)
{
    unsigned flags = UL_ENTER_GETEVENTS, wait_nr = 0;
    struct ul_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
    int ret;

    if (!r->enabled)
        return -EBADFD;
    if (r->cqe_pos[0] < r->cqe_pos[1])
        return (int)(r->cqe_pos[1] - r->cqe_pos[0]);
    if (r->nrecycle)
        recycle_buffers(r);
    unsigned replied = r->replied;
    r->replied = 0;
    if (cq_ready(r)) {
        /* After a reply went out (ul_submit_reply), its completion is taken
         * as it lies in the CQ, without an enter: anything queued since (a
         * receive re-armed, where the kernel has no multishot receive) and
         * any deferred work wait for the next wait's enter, which comes
         * right after.  An enter here would do no more than that one. */
        if (replied)
            return reap(r);
        timeout_ns = 0;
    }
    if (!needs_enter(r, timeout_ns))
        return reap(r);
    if (timeout_ns != 0) {
        wait_nr = 1;
        if (timeout_ns > 0) {
            r->ts.tv_sec = timeout_ns / 1000000000LL;
            r->ts.tv_nsec = timeout_ns % 1000000000LL;
            if (r->features & UL_FEAT_EXT_ARG) {
                memset(&arg, 0, sizeof(arg));
                arg.ts = (uint64_t)(uintptr_t)&r->ts;
                argp = &arg;
                argsz = sizeof(arg);
                flags |= UL_ENTER_EXT_ARG;
            } else {
                /* old kernels: a TIMEOUT that also ends at the first CQE */
                int err = ul_prep_wait_timeout(r, &r->ts);
                if (err)
                    return err;
            }
        }
    }
    ret = submit(r, flags, wait_nr, argp, argsz);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY &&
        ret != -EAGAIN)
        return ret;
    return reap(r);
}

/* The loop woke for one completion and the SEND just queued answers it:
 * the peer is waiting, so it goes out now instead of at the next enter,
 * after whatever Python runs past write() (a timeout's cancel, the next
 * read's setup).  Whatever else is queued goes with it: where the kernel
 * has no multishot receive, the receive re-armed before a task wrote the
 * reply.  The SEND's completion is usually posted before this returns,
 * and the next wait then reaps it without entering: the same number of
 * enters as before.  Once per reap, and only for lone completions: a busy
 * loop still sends a batch's replies in one enter.  An error leaves the
 * SQEs queued for the next enter, which reports it. */
void ul_submit_reply(struct ul_ring *r)
{
    if (r->lone && r->enabled) {
        r->lone = 0;
        r->replied = 1;
        submit(r, 0, 0, NULL, 0);
    }
}

/* Submit everything queued and let the kernel run the work it deferred
 * for this task (DEFER_TASKRUN), so a cancelled request is finished and
 * has let go of its file; its completion stays in the CQ for ul_wait.
 * Returns 0 or -errno. */
int ul_flush(struct ul_ring *r)
{
    if (!r->enabled)
        return -EBADFD;
    int ret = submit(r, UL_ENTER_GETEVENTS, 0, NULL, 0);
    return ret < 0 ? ret : 0;
}

/* ---- provided-buffer rings --------------------------------------------- */

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static char *buffer_at(const struct ul_bufring *br, unsigned bid)
{
    return br->base + (size_t)bid * br->size;
}

static void add_buffer(struct ul_bufring *br, unsigned bid)
{
    struct ul_buf *b = &br->ring[br->tail & br->mask];
    b->addr = (uint64_t)(uintptr_t)buffer_at(br, bid);
    b->len = br->size;
    b->bid = (uint16_t)bid;
    br->slot[bid] = br->tail++;
    br->out++;
}

/* A buffer costs memory once the kernel has written to it, and the kernel
 * takes a ring's buffers in turn: given all of them, one connection
 * receiving 64 KiB at a time would touch all 4 MiB.  So a ring starts
 * with a few out (first_want) and gives the kernel more as the load asks:
 * twice as many once a batch took half of them, all at once after ENOBUFS
 * (reap).  It never shrinks: the memory is touched by then.  The spares
 * go out most recently used first, so the same few buffers carry a light
 * load. */
#define UL_BUFFERS_FIRST 4

/* Where the kernel bundles, twice the buffers of a cap: a bundle's receive
 * maps a cap's worth and ends its multishot if that takes the last one out,
 * so as many again are there for a batch to take before the ring grows. */
static unsigned first_want(const struct ul_ring *r, const struct ul_bufring *br)
{
    unsigned want = UL_BUFFERS_FIRST;
    if (r->features & UL_FEAT_RECVSEND_BUNDLE) {
        unsigned cap = (ul_bundle_cap(br) + br->size - 1) / br->size;
        if (2 * cap > want)
            want = 2 * cap;
    }
    return want < br->count ? want : br->count;
}

static void publish_wanted(struct ul_bufring *br)
{
    while (br->out < br->want && br->nspare)
        add_buffer(br, br->spare[--br->nspare]);
    store_release(&br->ring[0].resv, br->tail);
}

static void publish_all(struct ul_bufring *br)
{
    br->want = br->count;
    publish_wanted(br);
}

/* Where buffer `bid` holds `len` bytes a completion reported; NULL when
 * the pair is not one this ring could have given out. */
const char *ul_bufring_data(const struct ul_bufring *br, unsigned bid, unsigned len)
{
    if (!br->ring || bid >= br->count || len > br->size)
        return NULL;
    return buffer_at(br, bid);
}

/* Copy the next n of a completion's bytes, which start in buffer *bid at
 * offset *at, to dest, and move *bid and *at past them: a bundle's bytes
 * run on in the buffers reap linked after its first.  0, or -EINVAL where
 * *bid is not one of this ring's. */
int ul_bufring_take(const struct ul_bufring *br, unsigned *bid, unsigned *at, unsigned n,
                    char *dest)
{
    while (n) {
        if (!br->ring || *bid >= br->count || *at >= br->size)
            return -EINVAL;
        unsigned k = br->size - *at < n ? br->size - *at : n;
        memcpy(dest, buffer_at(br, *bid) + *at, k);
        dest += k;
        n -= k;
        *at += k;
        if (*at == br->size) {
            *bid = br->next[*bid];
            *at = 0;
        }
    }
    return 0;
}

/* The ring entries, then slot, next and spare: one mapping. */
static size_t bufring_map_len(unsigned count)
{
    return count * (sizeof(struct ul_buf) + 3 * sizeof(uint16_t));
}

/* Room in r->recycle for every buffer of every group, `count` more
 * included: a bundle brings many per completion, and none is out twice. */
static int fit_recycle(struct ul_ring *r, unsigned count)
{
    size_t room = r->cq_entries + (size_t)count;
    for (unsigned g = 0; g < UL_BUFFER_GROUPS; g++)
        if (r->bufrings[g])
            room += r->bufrings[g]->count;
    if (room <= r->recycle_room)
        return 0;
    uint32_t *grown = realloc(r->recycle, room * sizeof(uint32_t));
    if (!grown)
        return -ENOMEM;
    r->recycle = grown;
    r->recycle_room = (uint32_t)room;
    return 0;
}

/* Received bytes reach Python as bytes objects, which are freed a batch at
 * a time (an echo's, once its SEND completes).  glibc gives the top of its
 * heap back to the kernel whenever more than its trim threshold is free
 * there (128 KiB until it adapts) and faults it back in page by page for
 * the next batch: 1,000 connections echoing 64 KiB spent a third of their
 * CPU on that.  glibc adapts by itself: freeing a block it had mmapped
 * raises the mmap threshold to that block's size and the trim threshold to
 * twice it, but only for blocks of 32 MiB at most (its
 * DEFAULT_MMAP_THRESHOLD_MAX on 64-bit).  One such block the size of the
 * buffer ring, the most a batch can receive (capped so glibc still takes
 * it), moves the thresholds where a batch's burst fits, and leaves the
 * adaptation on, which mallopt() would turn off; where the program or its
 * environment has set the thresholds, glibc ignores this.  Once per
 * process, for the largest burst asked. */
#define UL_GLIBC_ADAPTS_UP_TO ((size_t)32 << 20)

void ul_fit_malloc_to_bursts(size_t burst)
{
#ifdef __GLIBC__
    static size_t fitted;
    /* 64 KiB below the limit: the block's chunk adds a header and is
     * rounded up to a page, and glibc compares its size with the mmapped
     * flag bit set, so a chunk of exactly 32 MiB is already too big. */
    if (burst > UL_GLIBC_ADAPTS_UP_TO - 65536)
        burst = UL_GLIBC_ADAPTS_UP_TO - 65536;
    if (burst <= fitted)
        return;
    fitted = burst;
    void *volatile block = malloc(burst);     /* volatile: kept, not elided */
    free(block);
#else
    (void)burst;
#endif
}

/* count must be a power of two; memory holds count * size bytes and stays
 * the caller's.  The first buffers are handed to the kernel, and the ring
 * recycles and adds them by itself from then on (see publish_wanted). */
int ul_bufring_init(struct ul_ring *r, struct ul_bufring *br, unsigned bgid,
                    unsigned count, unsigned size, void *memory)
{
    struct ul_buf_reg reg;

    memset(br, 0, sizeof(*br));
    if (count == 0 || (count & (count - 1)) || count > 32768 || bgid >= UL_BUFFER_GROUPS ||
        r->bufrings[bgid])
        return -EINVAL;
    if (fit_recycle(r, count) < 0)
        return -ENOMEM;
    br->ring = map_anon(bufring_map_len(count));
    if (!br->ring)
        return -ENOMEM;
    br->slot = (uint16_t *)(br->ring + count);
    br->next = br->slot + count;
    br->spare = br->next + count;
    br->base = memory;
    br->count = count;
    br->size = size;
    br->mask = count - 1;
    br->bgid = (uint16_t)bgid;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = count;
    reg.bgid = (uint16_t)bgid;
    if (sys_register(r->fd, UL_REGISTER_PBUF_RING, &reg, 1) < 0) {
        int err = -errno;
        munmap(br->ring, bufring_map_len(count));
        br->ring = NULL;
        return err;
    }
    for (unsigned bid = count; bid-- > 0;)     /* bid 0 on top */
        br->spare[br->nspare++] = (uint16_t)bid;
    br->want = first_want(r, br);
    publish_wanted(br);
    r->bufrings[bgid] = br;
    return 0;
}

/* Unregister (when the ring is still open) and free the ring entries.  The
 * caller guarantees no op that selects from this group is in flight. */
void ul_bufring_exit(struct ul_ring *r, struct ul_bufring *br)
{
    if (r->fd >= 0 && br->ring) {
        struct ul_buf_reg reg;
        memset(&reg, 0, sizeof(reg));
        reg.bgid = br->bgid;
        sys_register(r->fd, UL_UNREGISTER_PBUF_RING, &reg, 1);
    }
    if (br->bgid < UL_BUFFER_GROUPS && r->bufrings[br->bgid] == br) {
        /* buffers of this group awaiting their return are forgotten */
        uint32_t kept = 0;
        for (uint32_t i = 0; i < r->nrecycle; i++)
            if (r->recycle[i] >> 16 != br->bgid)
                r->recycle[kept++] = r->recycle[i];
        r->nrecycle = kept;
        r->bufrings[br->bgid] = NULL;
    }
    if (br->ring)
        munmap(br->ring, bufring_map_len(br->count));
    br->ring = NULL;
}

/* Caps the kernel's worker threads that run this ring's blocking work
 * (file reads and writes that miss the page cache, path lookups): bounded
 * work (regular files) and unbounded (sockets, pipes).  0 leaves a count
 * as it is. */
int ul_register_iowq_max_workers(struct ul_ring *r, unsigned bounded, unsigned unbounded)
{
    uint32_t counts[2] = {bounded, unbounded};
    return sys_register(r->fd, UL_REGISTER_IOWQ_MAX_WORKERS, counts, 2) < 0 ? -errno : 0;
}
