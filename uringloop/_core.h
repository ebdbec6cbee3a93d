/*
 * uringloop's C core: the io_uring ABI as this project uses it, and the
 * small API the Python loop calls through cffi.
 *
 * The ABI is spelled out here rather than taken from <linux/io_uring.h>:
 * distribution headers lag the kernels people run (Debian 12's lacks
 * NO_SQARRAY and CQE_MIXED), and the values below are fixed kernel ABI.
 */
#ifndef URINGLOOP_CORE_H
#define URINGLOOP_CORE_H

#include <stdint.h>
#include <stddef.h>

/* ---- io_uring ABI ------------------------------------------------------ */

/* setup flags */
#define UL_SETUP_CQSIZE          (1u << 3)
#define UL_SETUP_R_DISABLED      (1u << 6)
#define UL_SETUP_SUBMIT_ALL      (1u << 7)
#define UL_SETUP_COOP_TASKRUN    (1u << 8)
#define UL_SETUP_TASKRUN_FLAG    (1u << 9)
#define UL_SETUP_SINGLE_ISSUER   (1u << 12)
#define UL_SETUP_DEFER_TASKRUN   (1u << 13)
#define UL_SETUP_NO_SQARRAY      (1u << 16)
#define UL_SETUP_CQE_MIXED       (1u << 18)

/* params->features */
#define UL_FEAT_SINGLE_MMAP      (1u << 0)
#define UL_FEAT_EXT_ARG          (1u << 8)
#define UL_FEAT_NO_IOWAIT        (1u << 17)

/* enter flags */
#define UL_ENTER_GETEVENTS       (1u << 0)
#define UL_ENTER_EXT_ARG         (1u << 3)
#define UL_ENTER_NO_IOWAIT       (1u << 7)

/* sq ring flags */
#define UL_SQ_CQ_OVERFLOW        (1u << 1)
#define UL_SQ_TASKRUN            (1u << 2)

/* sqe->flags */
#define UL_SQE_BUFFER_SELECT     (1u << 5)

/* cqe->flags */
#define UL_CQE_F_BUFFER          (1u << 0)
#define UL_CQE_F_MORE            (1u << 1)
#define UL_CQE_F_SKIP            (1u << 5)
#define UL_CQE_F_32              (1u << 15)
#define UL_CQE_BUFFER_SHIFT      16

/* opcodes (enum io_uring_op) */
#define UL_OP_NOP                0
#define UL_OP_POLL_ADD           6
#define UL_OP_SENDMSG            9
#define UL_OP_ACCEPT             13
#define UL_OP_TIMEOUT            11
#define UL_OP_ASYNC_CANCEL       14
#define UL_OP_SEND               26
#define UL_OP_RECV               27

/* op-specific flags */
#define UL_POLL_ADD_MULTI        (1u << 0)   /* sqe->len of POLL_ADD */
#define UL_RECV_MULTISHOT        (1u << 1)   /* sqe->ioprio of RECV */
#define UL_ACCEPT_MULTISHOT      (1u << 0)   /* sqe->ioprio of ACCEPT */
#define UL_NOP_CQE32             (1u << 5)   /* sqe->nop_flags */
#define UL_CANCEL_ALL            (1u << 0)
#define UL_CANCEL_FD             (1u << 1)
#define UL_CANCEL_ANY            (1u << 2)

/* register opcodes */
#define UL_REGISTER_PROBE        8
#define UL_REGISTER_ENABLE_RINGS 12
#define UL_REGISTER_PBUF_RING    22
#define UL_UNREGISTER_PBUF_RING  23

struct ul_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};

struct ul_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};

struct ul_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle;
    uint32_t features, wq_fd, resv[3];
    struct ul_sqring_offsets sq_off;
    struct ul_cqring_offsets cq_off;
};

/* One 64-byte SQE, with the union members this project uses named flat. */
struct ul_sqe {
    uint8_t  opcode;
    uint8_t  flags;
    uint16_t ioprio;
    int32_t  fd;
    uint64_t off;
    uint64_t addr;
    uint32_t len;
    uint32_t op_flags;      /* rw_flags, poll32_events, msg_flags, nop_flags... */
    uint64_t user_data;
    uint16_t buf_group;
    uint16_t personality;
    uint32_t file_index;
    uint64_t addr3;
    uint64_t pad2;
};

/* A 16-byte CQE slot; a big CQE of a CQE_MIXED ring fills two. */
struct ul_cqe {
    uint64_t user_data;
    int32_t  res;
    uint32_t flags;
};

struct ul_timespec {
    int64_t tv_sec;
    long long tv_nsec;
};

struct ul_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

struct ul_buf {
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv;   /* in entry 0 this is the ring's tail */
};

struct ul_buf_reg {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint32_t min_left;
    uint32_t resv[5];
};

struct ul_probe_op {
    uint8_t op, resv;
    uint16_t flags;
    uint32_t resv2;
};

struct ul_probe {
    uint8_t last_op, ops_len;
    uint16_t resv;
    uint32_t resv2[3];
    struct ul_probe_op ops[256];
};

/* ---- the core's own API ------------------------------------------------ */

/* user_data the reaper drops: internal timeouts and cancel requests. */
#define UL_UD_INTERNAL 0

struct ul_ring {
    int fd;
    uint32_t setup_flags;      /* flags the kernel accepted */
    uint32_t features;         /* params.features, less masked bits */
    uint32_t sq_entries, cq_entries;
    uint32_t enabled;
    uint8_t ops[256];          /* 1 where IORING_REGISTER_PROBE says supported */

    /* completions, copied out by ul_wait() for Python to read in bulk.
     * cqe_pos[0] is the next one to dispatch, cqe_pos[1] how many there
     * are; ul_wait() reaps again only once Python has consumed them all,
     * so an exception in the middle of dispatch loses none. */
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

    /* The provided-buffer ring of this ring, if any: buffers that reaped
     * completions carried go back to it at the next ul_wait(), by which
     * time Python has copied their bytes out. */
    struct ul_bufring *bufring;
    uint16_t *recycle;
    uint32_t nrecycle;

    uint32_t enter_flags;      /* NO_IOWAIT where the kernel has it */
    uint32_t forgotten[2];     /* stand-in SQ head/tail once forgotten */
    struct ul_timespec ts;     /* wait timeout, read by the kernel in enter */

    void *sq_map, *cq_map, *sqe_map;
    size_t sq_map_len, cq_map_len, sqe_map_len;
};

/* A provided-buffer ring: `count` buffers of `size` bytes in group `bgid`,
 * carved from memory the caller owns. */
struct ul_bufring {
    struct ul_buf *ring;
    char *base;
    uint32_t count, size, mask;
    uint16_t bgid, tail;
};

/* cdef-begin: _build.py hands these prototypes to cffi as they are */
int ul_ring_init(struct ul_ring *r, unsigned entries, unsigned cq_entries,
                 unsigned try_flags, unsigned deny_features);
int ul_ring_enable(struct ul_ring *r);
void ul_ring_exit(struct ul_ring *r);
void ul_ring_forget(struct ul_ring *r);
int ul_wait(struct ul_ring *r, long long timeout_ns);

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

int ul_bufring_init(struct ul_ring *r, struct ul_bufring *br, unsigned bgid,
                    unsigned count, unsigned size, void *memory);
void ul_bufring_exit(struct ul_ring *r, struct ul_bufring *br);
/* _hot.c: puts the C hot path's objects into the dict at this address */
int ul_hot_install(uintptr_t dict_address);
/* cdef-end */

#endif
