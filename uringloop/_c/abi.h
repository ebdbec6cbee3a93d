/*
 * The io_uring ABI, as uringloop uses it.
 *
 * Spelled out here rather than taken from <linux/io_uring.h>: distribution
 * headers lag the kernels people run (Debian 12's lacks NO_SQARRAY and
 * CQE_MIXED), and these values are fixed kernel ABI.  Every UL_* constant
 * here is also visible to Python (as uringloop._uring.lib.UL_*).
 */
#ifndef URINGLOOP_ABI_H
#define URINGLOOP_ABI_H

#include <stdint.h>
#include <sys/syscall.h>

/* the syscalls, where the C library's headers predate them */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* mmap offsets of the SQ ring, the CQ ring and the SQE array */
#define OFF_SQ_RING 0ULL
#define OFF_CQ_RING 0x8000000ULL
#define OFF_SQES    0x10000000ULL

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
#define UL_FEAT_RECVSEND_BUNDLE  (1u << 14)
#define UL_FEAT_NO_IOWAIT        (1u << 17)

/* enter flags */
#define UL_ENTER_GETEVENTS       (1u << 0)
#define UL_ENTER_EXT_ARG         (1u << 3)
#define UL_ENTER_NO_IOWAIT       (1u << 7)

/* sq ring flags */
#define UL_SQ_CQ_OVERFLOW        (1u << 1)
#define UL_SQ_TASKRUN            (1u << 2)

/* sqe->flags */
#define UL_SQE_ASYNC             (1u << 4)
#define UL_SQE_BUFFER_SELECT     (1u << 5)

/* cqe->flags */
#define UL_CQE_F_BUFFER          (1u << 0)
#define UL_CQE_F_MORE            (1u << 1)
#define UL_CQE_F_SKIP            (1u << 5)
#define UL_CQE_F_32              (1u << 15)
#define UL_CQE_BUFFER_SHIFT      16

/* opcodes (enum io_uring_op) */
#define UL_OP_NOP                0
#define UL_OP_FSYNC              3
#define UL_OP_POLL_ADD           6
#define UL_OP_SENDMSG            9
#define UL_OP_RECVMSG            10
#define UL_OP_TIMEOUT            11
#define UL_OP_ACCEPT             13
#define UL_OP_ASYNC_CANCEL       14
#define UL_OP_OPENAT             18
#define UL_OP_CLOSE              19
#define UL_OP_STATX              21
#define UL_OP_READ               22
#define UL_OP_WRITE              23
#define UL_OP_SEND               26
#define UL_OP_RECV               27
#define UL_OP_RENAMEAT           35
#define UL_OP_UNLINKAT           36
#define UL_OP_MKDIRAT            37
#define UL_OP_SYMLINKAT          38
#define UL_OP_LINKAT             39
#define UL_OP_READ_MULTISHOT     49
#define UL_OP_WAITID             50
#define UL_OP_FTRUNCATE          55
#define UL_OP_EPOLL_WAIT         59

/* op-specific flags */
#define UL_POLL_ADD_MULTI        (1u << 0)   /* sqe->len of POLL_ADD */
#define UL_RECV_MULTISHOT        (1u << 1)   /* sqe->ioprio of RECV */
#define UL_RECVSEND_BUNDLE       (1u << 4)   /* sqe->ioprio of RECV */
#define UL_ACCEPT_MULTISHOT      (1u << 0)   /* sqe->ioprio of ACCEPT */
#define UL_NOP_CQE32             (1u << 5)   /* sqe->nop_flags */
#define UL_CANCEL_ALL            (1u << 0)
#define UL_CANCEL_FD             (1u << 1)
#define UL_CANCEL_ANY            (1u << 2)
#define UL_FSYNC_DATASYNC        (1u << 0)   /* sqe->fsync_flags */

/* What a multishot RECVMSG writes at the start of each buffer it picks:
 * then the source address (msg_namelen bytes are set aside for it), the
 * control data (none here) and the payload. */
struct ul_recvmsg_out {
    uint32_t namelen;       /* the address's full length */
    uint32_t controllen;
    uint32_t payloadlen;    /* the datagram's full length, even where truncated */
    uint32_t flags;         /* MSG_TRUNC where it did not fit */
};

/* What STATX writes (struct statx of <linux/stat.h>, 256 bytes). */
struct ul_statx_timestamp {
    int64_t  tv_sec;
    uint32_t tv_nsec;
    int32_t  reserved;
};

struct ul_statx {
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, spare0;
    uint64_t ino, size, blocks, attributes_mask;
    struct ul_statx_timestamp atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare[14];
};

/* register opcodes */
#define UL_REGISTER_PROBE        8
#define UL_REGISTER_ENABLE_RINGS 12
#define UL_REGISTER_IOWQ_MAX_WORKERS 19
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

#endif
