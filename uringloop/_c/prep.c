/*
 * One prep function per opcode and variant, in liburing's manner: each takes
 * an SQE, fills the fields its request needs and nothing else, and returns
 * 0 or the -errno of a full SQ the kernel would not take.  The Python
 * wrappers (ring.Ring.prep_*) and `python -m uringloop info`'s list of used
 * opcodes come from ring.PREPS, which names these by their suffix.
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <sys/epoll.h>
#include "ring.h"

static inline uint64_t ptr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* An SQE with the fields every request has filled in; NULL with *err when
 * the SQ is full and the kernel will not take it. */
static inline struct ul_sqe *start(struct ul_ring *r, uint8_t opcode, uint64_t ud, int fd,
                                   int *err)
{
    struct ul_sqe *sqe = ul_get_sqe(r, err);
    if (sqe) {
        sqe->opcode = opcode;
        sqe->user_data = ud;
        sqe->fd = fd;
    }
    return sqe;
}

int ul_prep_nop(struct ul_ring *r, uint64_t ud)
{
    int err = 0;
    start(r, UL_OP_NOP, ud, -1, &err);
    return err;
}

/* A NOP posting a 32-byte CQE whose extra words are off and addr: a test
 * of the reaper on a CQE_MIXED ring. */
int ul_prep_nop_cqe32(struct ul_ring *r, uint64_t ud, uint64_t off, uint64_t addr)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_NOP, ud, -1, &err);
    if (sqe) {
        sqe->op_flags = UL_NOP_CQE32;
        sqe->off = off;
        sqe->addr = addr;
    }
    return err;
}

int ul_prep_poll(struct ul_ring *r, uint64_t ud, int fd, unsigned events)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_POLL_ADD, ud, fd, &err);
    if (sqe)
        sqe->op_flags = events;
    return err;
}

/* Posts a CQE (with F_MORE) every time fd becomes ready, until cancelled. */
int ul_prep_poll_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned events)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_POLL_ADD, ud, fd, &err);
    if (sqe) {
        sqe->op_flags = events;
        sqe->len = UL_POLL_ADD_MULTI;
    }
    return err;
}

/* Cancels the op named `target`; the cancel's own CQE is dropped. */
int ul_prep_cancel(struct ul_ring *r, uint64_t target)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_ASYNC_CANCEL, UL_UD_INTERNAL, -1, &err);
    if (sqe)
        sqe->addr = target;
    return err;
}

/* Cancels every op on fd. */
int ul_prep_cancel_fd(struct ul_ring *r, int fd)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_ASYNC_CANCEL, UL_UD_INTERNAL, fd, &err);
    if (sqe)
        sqe->op_flags = UL_CANCEL_FD | UL_CANCEL_ALL;
    return err;
}

/* Cancels every op in flight. */
int ul_prep_cancel_all(struct ul_ring *r)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_ASYNC_CANCEL, UL_UD_INTERNAL, -1, &err);
    if (sqe)
        sqe->op_flags = UL_CANCEL_ANY | UL_CANCEL_ALL;
    return err;
}

/* Into the caller's buffer, which must stay put until the CQE. */
int ul_prep_recv(struct ul_ring *r, uint64_t ud, int fd, void *buf, unsigned len)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_RECV, ud, fd, &err);
    if (sqe) {
        sqe->addr = ptr(buf);
        sqe->len = len;
    }
    return err;
}

/* Into a buffer the kernel picks from group bgid (CQE flags name it; the
 * user_data names the group, see UL_UD_GROUP_SHIFT). */
int ul_prep_recv_select(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_RECV, ud | (uint64_t)bgid << UL_UD_GROUP_SHIFT, fd, &err);
    if (sqe) {
        sqe->flags = UL_SQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)bgid;
    }
    return err;
}

static unsigned bundle_cap(const struct ul_ring *r, unsigned bgid)
{
    const struct ul_bufring *br = bgid < UL_BUFFER_GROUPS ? r->bufrings[bgid] : NULL;
    return br ? ul_bundle_cap(br) : UL_BUNDLE_CAP;
}

/* recv_select that stays armed: a CQE per arrival, until EOF, an error,
 * ENOBUFS (group bgid ran dry) or a cancel.  Where the kernel bundles, one
 * CQE takes as many buffers as the bytes waiting fill (ul_bufring_take), up
 * to a cap: a completion that reaches it also ends the kernel's retries
 * for that wake-up, which bounds what a protocol about to pause has read
 * ahead of it (about twice the cap; uncapped, the whole buffer ring).
 * Kernels that bundle but take no cap refuse the SQE with EINVAL, and the
 * loop stops bundling (Loop._multishot_refused). */
int ul_prep_recv_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_RECV, ud | (uint64_t)bgid << UL_UD_GROUP_SHIFT, fd, &err);
    if (sqe) {
        sqe->flags = UL_SQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)bgid;
        sqe->ioprio = UL_RECV_MULTISHOT;
        if (r->features & UL_FEAT_RECVSEND_BUNDLE) {
            sqe->ioprio |= UL_RECVSEND_BUNDLE;
            sqe->len = bundle_cap(r, bgid);
        }
    }
    return err;
}

int ul_prep_send(struct ul_ring *r, uint64_t ud, int fd, const void *buf, unsigned len)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_SEND, ud, fd, &err);
    if (sqe) {
        sqe->addr = ptr(buf);
        sqe->len = len;
    }
    return err;
}

/* msg (a struct msghdr) and what it points to stay put until the CQE. */
int ul_prep_sendmsg(struct ul_ring *r, uint64_t ud, int fd, const void *msg)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_SENDMSG, ud, fd, &err);
    if (sqe) {
        sqe->addr = ptr(msg);
        sqe->len = 1;
    }
    return err;
}

/* A multishot RECVMSG: each datagram into a buffer from group bgid, laid
 * out as struct ul_recvmsg_out, the address (msg's msg_namelen bytes set
 * aside), then the payload.  msg is read at submission. */
int ul_prep_recvmsg_multishot(struct ul_ring *r, uint64_t ud, int fd, const void *msg,
                              unsigned bgid)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_RECVMSG, ud | (uint64_t)bgid << UL_UD_GROUP_SHIFT, fd,
                               &err);
    if (sqe) {
        sqe->addr = ptr(msg);
        sqe->len = 1;
        sqe->flags = UL_SQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)bgid;
        sqe->ioprio = UL_RECV_MULTISHOT;
    }
    return err;
}

/* epoll_wait(epfd, events, maxevents, 0) run by the ring: where nothing is
 * ready the kernel waits for the epoll fd itself; res is the number of
 * events written (the array stays put until the CQE). */
int ul_prep_epoll_wait(struct ul_ring *r, uint64_t ud, int epfd, void *events,
                       unsigned maxevents)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_EPOLL_WAIT, ud, epfd, &err);
    if (sqe) {
        sqe->addr = ptr(events);
        sqe->len = maxevents;
    }
    return err;
}

/* The size of one event in that array, and where its data field starts
 * (x86-64 packs the struct). */
unsigned ul_epoll_event_size(void)
{
    return sizeof(struct epoll_event);
}

unsigned ul_epoll_data_offset(void)
{
    return offsetof(struct epoll_event, data);
}

/* read() that stays armed on a pollable file (a pipe, a tty): a CQE per
 * chunk into a buffer from group bgid, until EOF (res 0), an error,
 * ENOBUFS or a cancel.  The file position is the file's own (off -1). */
int ul_prep_read_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned bgid)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_READ_MULTISHOT, ud | (uint64_t)bgid << UL_UD_GROUP_SHIFT,
                               fd, &err);
    if (sqe) {
        sqe->off = (uint64_t)-1;
        sqe->flags = UL_SQE_BUFFER_SELECT;
        sqe->buf_group = (uint16_t)bgid;
    }
    return err;
}

/* waitid(idtype, id, info, options) run by the ring: completes when the
 * child changes state, with the siginfo written to info (which stays put
 * until the CQE). */
int ul_prep_waitid(struct ul_ring *r, uint64_t ud, int idtype, int id, void *info,
                   unsigned options)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_WAITID, ud, id, &err);
    if (sqe) {
        sqe->len = (uint32_t)idtype;
        sqe->file_index = options;
        sqe->off = ptr(info);       /* addr2 */
    }
    return err;
}

unsigned ul_siginfo_size(void)
{
    return sizeof(siginfo_t);
}

/* A waited-for child's status as subprocess.Popen.returncode spells it:
 * the exit status, or minus the signal that ended it. */
int ul_child_returncode(const void *info)
{
    const siginfo_t *si = info;
    return si->si_code == CLD_EXITED ? si->si_status : -si->si_status;
}

/* The peer's address is not asked for: a multishot accept would write
 * every connection's into one buffer.  flags: SOCK_NONBLOCK, SOCK_CLOEXEC. */
int ul_prep_accept(struct ul_ring *r, uint64_t ud, int fd, unsigned flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_ACCEPT, ud, fd, &err);
    if (sqe)
        sqe->op_flags = flags;
    return err;
}

int ul_prep_accept_multishot(struct ul_ring *r, uint64_t ud, int fd, unsigned flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_ACCEPT, ud, fd, &err);
    if (sqe) {
        sqe->op_flags = flags;
        sqe->ioprio = UL_ACCEPT_MULTISHOT;
    }
    return err;
}

/* Internal (ul_wait on kernels without EXT_ARG): a TIMEOUT that also ends
 * at the first other completion. */
int ul_prep_wait_timeout(struct ul_ring *r, struct ul_timespec *ts)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_TIMEOUT, UL_UD_INTERNAL, -1, &err);
    if (sqe) {
        sqe->addr = ptr(ts);
        sqe->len = 1;
        sqe->off = 1;
    }
    return err;
}

/* File and path requests.  Paths and buffers belong to the op record until
 * the final CQE; an offset of -1 means the file's current position (pipes,
 * FIFOs, character devices). */

static int openat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                  unsigned mode, uint8_t sqe_flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_OPENAT, ud, dfd, &err);
    if (sqe) {
        sqe->flags = sqe_flags;
        sqe->addr = ptr(path);
        sqe->len = mode;
        sqe->op_flags = (uint32_t)flags;
    }
    return err;
}

int ul_prep_openat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                   unsigned mode)
{
    return openat(r, ud, dfd, path, flags, mode, 0);
}

/* The same, never tried inline: an inline OPENAT adds O_NONBLOCK, with
 * which a FIFO opened for reading does not wait for a writer. */
int ul_prep_openat_async(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                         unsigned mode)
{
    return openat(r, ud, dfd, path, flags, mode, UL_SQE_ASYNC);
}

int ul_prep_close(struct ul_ring *r, uint64_t ud, int fd)
{
    int err = 0;
    start(r, UL_OP_CLOSE, ud, fd, &err);
    return err;
}

int ul_prep_read(struct ul_ring *r, uint64_t ud, int fd, void *buf, unsigned len,
                 int64_t offset)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_READ, ud, fd, &err);
    if (sqe) {
        sqe->addr = ptr(buf);
        sqe->len = len;
        sqe->off = (uint64_t)offset;
    }
    return err;
}

int ul_prep_write(struct ul_ring *r, uint64_t ud, int fd, const void *buf, unsigned len,
                  int64_t offset)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_WRITE, ud, fd, &err);
    if (sqe) {
        sqe->addr = ptr(buf);
        sqe->len = len;
        sqe->off = (uint64_t)offset;
    }
    return err;
}

/* flags: UL_FSYNC_DATASYNC for fdatasync */
int ul_prep_fsync(struct ul_ring *r, uint64_t ud, int fd, unsigned flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_FSYNC, ud, fd, &err);
    if (sqe)
        sqe->op_flags = flags;
    return err;
}

int ul_prep_ftruncate(struct ul_ring *r, uint64_t ud, int fd, int64_t length)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_FTRUNCATE, ud, fd, &err);
    if (sqe)
        sqe->off = (uint64_t)length;
    return err;
}

int ul_prep_statx(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags,
                  unsigned mask, void *statxbuf)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_STATX, ud, dfd, &err);
    if (sqe) {
        sqe->addr = ptr(path);
        sqe->len = mask;
        sqe->op_flags = (uint32_t)flags;
        sqe->off = ptr(statxbuf);   /* addr2 */
    }
    return err;
}

int ul_prep_unlinkat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, int flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_UNLINKAT, ud, dfd, &err);
    if (sqe) {
        sqe->addr = ptr(path);
        sqe->op_flags = (uint32_t)flags;
    }
    return err;
}

int ul_prep_renameat(struct ul_ring *r, uint64_t ud, int olddfd, const char *oldpath,
                     int newdfd, const char *newpath, unsigned flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_RENAMEAT, ud, olddfd, &err);
    if (sqe) {
        sqe->addr = ptr(oldpath);
        sqe->len = (uint32_t)newdfd;
        sqe->off = ptr(newpath);    /* addr2 */
        sqe->op_flags = flags;
    }
    return err;
}

int ul_prep_mkdirat(struct ul_ring *r, uint64_t ud, int dfd, const char *path, unsigned mode)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_MKDIRAT, ud, dfd, &err);
    if (sqe) {
        sqe->addr = ptr(path);
        sqe->len = mode;
    }
    return err;
}

int ul_prep_symlinkat(struct ul_ring *r, uint64_t ud, const char *target, int newdfd,
                      const char *linkpath)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_SYMLINKAT, ud, newdfd, &err);
    if (sqe) {
        sqe->addr = ptr(target);
        sqe->off = ptr(linkpath);   /* addr2 */
    }
    return err;
}

int ul_prep_linkat(struct ul_ring *r, uint64_t ud, int olddfd, const char *oldpath,
                   int newdfd, const char *newpath, int flags)
{
    int err = 0;
    struct ul_sqe *sqe = start(r, UL_OP_LINKAT, ud, olddfd, &err);
    if (sqe) {
        sqe->addr = ptr(oldpath);
        sqe->len = (uint32_t)newdfd;
        sqe->off = ptr(newpath);    /* addr2 */
        sqe->op_flags = (uint32_t)flags;
    }
    return err;
}
