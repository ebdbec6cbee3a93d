/*
 * The floor of benchmarks/run.py's echo rows: a plain C TCP echo server on
 * io_uring, what any event loop on this kernel could at best cost per
 * request.  One thread; each iteration makes one io_uring_enter that
 * submits what the last batch of completions queued and waits for more.
 *
 *   a multishot ACCEPT on the listening socket;
 *   a multishot RECV per connection, picking buffers from a provided-buffer
 *   ring (re-armed when it ends: ENOBUFS, or the kernel's own reasons);
 *   one SEND at a time per connection, straight from the buffer the bytes
 *   arrived in: chunks queue in arrival order, a partial send continues,
 *   and a buffer goes back to the ring once all of it is sent.
 *
 * It speaks benchmarks/servers.py's protocol, so run.py measures it as it
 * measures the Python servers: it listens on 127.0.0.1 (a port the kernel
 * picks), prints "READY <port>", then obeys lines on stdin, read through
 * the ring so the process stays single-threaded: "start" and "stop"
 * bracket the measured window, and "stop" answers with one JSON line (CPU
 * time from getrusage, wall time, run delay, peak RSS, errors, and which
 * ring setup the kernel took).  EOF on stdin ends the process.
 *
 * The ring (setup, mapping, syscalls) is bench_ring.h's, on uringloop's
 * own io_uring ABI definitions (abi.h), not a system liburing.
 * benchmarks/loadgen.py builds this file on first use.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_ring.h"

#define SQ_ENTRIES  1024
/* Room for every completion a batch can bring: an accept, a receive and a
 * send per connection, for thousands of connections. */
#define CQ_ENTRIES  8192
/* A buffer stays out until its bytes are sent, so there are many; 64 KiB
 * each, as uringloop's, so a large message takes as few receives. */
#define BUF_COUNT   1024
#define BUF_SIZE    (64 * 1024)
#define BGID        0
#define BACKLOG     4096

/* user_data: the fd, and in the low bits what the operation was. */
enum { OP_ACCEPT, OP_RECV, OP_SEND, OP_CONTROL };
#define OP_BITS 2

static struct ring ring;
static const char *ring_setup;  /* the tier the kernel took, for the report */

/* The provided-buffer ring, and per buffer the bytes it holds and the next
 * buffer in its connection's send queue. */
static struct ul_buf *bufs;
static char *buf_base;
static uint16_t buf_tail;
static uint32_t buf_len[BUF_COUNT];
static int buf_next[BUF_COUNT];

/* Per fd: the queue of received buffers to send back (bids, -1: none),
 * how much of the first is sent, and which operations are in flight. */
struct conn {
    int head, tail;
    uint32_t sent;
    uint8_t recving, sending, dead;
};
static struct conn *conns;
static int nconns;

/* Failures other than a peer going away, counted from "start". */
static unsigned long errors;
static char first_error[128];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- the ring ------------------------------------------------------------ */

static void enter(unsigned wait_nr, unsigned flags)
{
    if (ring_enter(&ring, wait_nr, flags) < 0)
        die("io_uring_enter");
}

/* The next SQE, zeroed.  A full SQ (more than SQ_ENTRIES new operations in
 * one batch) is submitted first. */
static struct ul_sqe *get_sqe(int fd, unsigned op, uint8_t opcode)
{
    uint64_t user_data = (uint64_t)fd << OP_BITS | op;
    struct ul_sqe *sqe = ring_get_sqe(&ring, opcode, fd, user_data);
    if (!sqe) {
        enter(0, 0);
        sqe = ring_get_sqe(&ring, opcode, fd, user_data);
        if (!sqe)
            die("submission queue stuck full");
    }
    return sqe;
}

/* ---- provided buffers ---------------------------------------------------- */

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap buffers");
    return p;
}

static char *buf_at(unsigned bid)
{
    return buf_base + (size_t)bid * BUF_SIZE;
}

/* Give a buffer back; the kernel sees it at the next buf_publish(). */
static void buf_return(unsigned bid)
{
    struct ul_buf *b = &bufs[buf_tail++ & (BUF_COUNT - 1)];
    /* field by field: entry 0's resv is the ring's tail */
    b->addr = (uint64_t)(uintptr_t)buf_at(bid);
    b->len = BUF_SIZE;
    b->bid = (uint16_t)bid;
}

static void buf_publish(void)
{
    store_release(&bufs[0].resv, buf_tail);
}

static void buf_init(void)
{
    struct ul_buf_reg reg;

    bufs = map_anon(BUF_COUNT * sizeof(*bufs));
    buf_base = map_anon((size_t)BUF_COUNT * BUF_SIZE);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)bufs;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = BGID;
    if (ring_register(&ring, UL_REGISTER_PBUF_RING, &reg, 1) < 0)
        die("IORING_REGISTER_PBUF_RING");
    for (unsigned bid = 0; bid < BUF_COUNT; bid++)
        buf_return(bid);
    buf_publish();
}

/* ---- echo ---------------------------------------------------------------- */

static void failed(const char *what, int err)
{
    if (!first_error[0])
        snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(err));
    errors++;
}

static void arm_accept(int fd)
{
    get_sqe(fd, OP_ACCEPT, UL_OP_ACCEPT)->ioprio = UL_ACCEPT_MULTISHOT;
}

static void arm_recv(int fd)
{
    struct ul_sqe *sqe = get_sqe(fd, OP_RECV, UL_OP_RECV);
    sqe->ioprio = UL_RECV_MULTISHOT;
    sqe->flags = UL_SQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    conns[fd].recving = 1;
}

/* Send what is left of the connection's first queued buffer. */
static void send_next(int fd)
{
    struct conn *c = &conns[fd];
    struct ul_sqe *sqe = get_sqe(fd, OP_SEND, UL_OP_SEND);
    sqe->addr = (uint64_t)(uintptr_t)(buf_at(c->head) + c->sent);
    sqe->len = buf_len[c->head] - c->sent;
    sqe->op_flags = MSG_NOSIGNAL;
    c->sending = 1;
}

static unsigned pop(struct conn *c)
{
    unsigned bid = c->head;
    c->head = buf_next[bid];
    if (c->head < 0)
        c->tail = -1;
    c->sent = 0;
    return bid;
}

/* Close a dead connection once no operation of it is in flight, so no
 * late completion can name its fd after accept has reused the number. */
static void maybe_close(int fd)
{
    struct conn *c = &conns[fd];
    if (!c->dead || c->recving || c->sending)
        return;
    while (c->head >= 0)
        buf_return(pop(c));
    close(fd);
}

static void open_conn(int fd)
{
    int one = 1;
    /* as every loop's TCP transports do */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fd >= nconns) {
        int n = nconns ? nconns : 1024;
        while (n <= fd)
            n *= 2;
        conns = realloc(conns, n * sizeof(*conns));
        if (!conns)
            die("realloc");
        nconns = n;
    }
    conns[fd] = (struct conn){.head = -1, .tail = -1};
    arm_recv(fd);
}

static void on_accept(int fd, const struct ul_cqe *cqe)
{
    if (cqe->res >= 0)
        open_conn(cqe->res);
    else
        failed("accept", -cqe->res);
    if (!(cqe->flags & UL_CQE_F_MORE))
        arm_accept(fd);
}

static void echo(int fd, unsigned bid, unsigned len)
{
    struct conn *c = &conns[fd];
    if (c->dead) {
        buf_return(bid);
        return;
    }
    buf_len[bid] = len;
    buf_next[bid] = -1;
    if (c->tail >= 0)
        buf_next[c->tail] = bid;
    else
        c->head = bid;
    c->tail = bid;
    if (!c->sending)
        send_next(fd);
}

static void on_recv(int fd, const struct ul_cqe *cqe)
{
    struct conn *c = &conns[fd];
    if (!(cqe->flags & UL_CQE_F_MORE))
        c->recving = 0;
    if (cqe->res > 0) {
        echo(fd, cqe->flags >> UL_CQE_BUFFER_SHIFT, cqe->res);
    } else if (cqe->res != -ENOBUFS) {
        /* EOF, or the connection failed */
        if (cqe->res < 0 && cqe->res != -ECONNRESET)
            failed("recv", -cqe->res);
        c->dead = 1;
    }
    if (!c->recving && !c->dead)
        arm_recv(fd);
    maybe_close(fd);
}

static void on_send(int fd, const struct ul_cqe *cqe)
{
    struct conn *c = &conns[fd];
    c->sending = 0;
    if (cqe->res < 0) {
        if (cqe->res != -EPIPE && cqe->res != -ECONNRESET)
            failed("send", -cqe->res);
        c->dead = 1;
        /* ends the multishot receive, with EOF */
        shutdown(fd, SHUT_RDWR);
    } else if ((c->sent += cqe->res) == buf_len[c->head]) {
        buf_return(pop(c));
    }
    if (!c->dead && c->head >= 0)
        send_next(fd);
    maybe_close(fd);
}

/* ---- the control channel: servers.py's protocol -------------------------- */

static struct {
    char line[256];
    unsigned len;
    int started;
    double cpu, wall, delay;
    unsigned long errors;
} ctl;

static void arm_control(void)
{
    struct ul_sqe *sqe = get_sqe(STDIN_FILENO, OP_CONTROL, UL_OP_READ);
    sqe->addr = (uint64_t)(uintptr_t)(ctl.line + ctl.len);
    sqe->len = sizeof(ctl.line) - ctl.len;
    sqe->off = (uint64_t)-1;    /* a pipe: no offset */
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Seconds this thread was runnable but waiting for its CPU, which other
 * work on that CPU took (schedstat's second field, in ns). */
static double run_delay(void)
{
    unsigned long long ran, waited;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    int got = f ? fscanf(f, "%llu %llu", &ran, &waited) : 0;
    if (f)
        fclose(f);
    return got == 2 ? waited / 1e9 : 0.0;
}

static void start(void)
{
    first_error[0] = 0;
    ctl.errors = errors;
    ctl.delay = run_delay();
    ctl.wall = wall_seconds();
    ctl.cpu = cpu_seconds();
    ctl.started = 1;
}

static void stop(void)
{
    double cpu = cpu_seconds(), wall = wall_seconds(), delay = run_delay();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"cpu\": %.6f, \"wall\": %.6f, \"cpu_wait\": %.6f, \"maxrss_kib\": %ld, "
           "\"errors\": %lu, \"first_error\": ",
           cpu - ctl.cpu, wall - ctl.wall, delay - ctl.delay, ru.ru_maxrss, errors - ctl.errors);
    if (first_error[0])
        printf("\"%s\"", first_error);    /* strerror() text: nothing to escape */
    else
        fputs("null", stdout);
    printf(", \"ring\": \"%s\"}\n", ring_setup);
    fflush(stdout);
}

static void command(const char *line)
{
    if (strcmp(line, "start") == 0)
        start();
    else if (strcmp(line, "stop") == 0 && ctl.started)
        stop();
}

static void on_control(const struct ul_cqe *cqe)
{
    char *end;

    if (cqe->res <= 0)          /* EOF: run.py is done with this server */
        exit(0);
    ctl.len += cqe->res;
    while ((end = memchr(ctl.line, '\n', ctl.len))) {
        *end = 0;
        command(ctl.line);
        ctl.len -= end + 1 - ctl.line;
        memmove(ctl.line, end + 1, ctl.len);
    }
    if (ctl.len == sizeof(ctl.line))    /* no command is this long */
        ctl.len = 0;
    arm_control();
}

/* ---- main ---------------------------------------------------------------- */

static void dispatch(struct ul_cqe cqe)
{
    int fd = (int)(cqe.user_data >> OP_BITS);
    switch (cqe.user_data & ((1u << OP_BITS) - 1)) {
    case OP_ACCEPT: on_accept(fd, &cqe); break;
    case OP_RECV: on_recv(fd, &cqe); break;
    case OP_SEND: on_send(fd, &cqe); break;
    case OP_CONTROL: on_control(&cqe); break;
    }
}

static void reap(void)
{
    unsigned head = *ring.cq_khead, tail = load_acquire(ring.cq_ktail);
    for (; head != tail; head++)
        dispatch(ring.cqes[head & ring.cq_mask]);
    store_release(ring.cq_khead, head);
}

static int listen_on_loopback(int *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        die("listening socket");
    *port = ntohs(addr.sin_port);
    return fd;
}

/* The generator opens up to thousands of connections (servers.py does
 * the same). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1 << 16 : rl.rlim_max;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

int main(int argc, char **argv)
{
    int port;

    if (argc > 1) {
        fprintf(stderr, "usage: %s (no arguments: see the top of floor_echo.c)\n", argv[0]);
        return 2;
    }
    /* a send to a peer that is gone fails with EPIPE instead */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    ring_setup = ring_init(&ring, SQ_ENTRIES, CQ_ENTRIES);
    if (!ring_setup)
        die("io_uring_setup");
    buf_init();
    arm_accept(listen_on_loopback(&port));
    arm_control();
    printf("READY %d\n", port);
    fflush(stdout);
    for (;;) {
        buf_publish();
        enter(1, UL_ENTER_GETEVENTS);
        reap();
    }
}
