/*
 * sendfile_paths: three ways to send a file over a TCP socket with io_uring,
 * measured on the sending side, and the fast verifying reader that
 * benchmarks/sendfile.py also uses for its loop-level runs.
 *
 * Built and driven by benchmarks/sendfile.py (gcc -O2, into
 * benchmarks/.build/).  The ring is bench_ring.h's: raw io_uring syscalls
 * and uringloop's own ABI header (uringloop/_c/abi.h); no liburing.
 *
 * Sender modes (--mode), each over a connected, non-blocking TCP loopback
 * socket whose other end a forked reader process drains:
 *
 *   sendfile-poll  sendfile(2) until EAGAIN, then one single-shot
 *                  IORING_OP_POLL_ADD(POLLOUT), wait for its CQE, repeat:
 *                  what asyncio's loop.sendfile does with epoll.
 *   splice         IORING_OP_SPLICE file -> pipe (explicit file offset),
 *                  IOSQE_IO_LINK'ed to IORING_OP_SPLICE pipe -> socket; the
 *                  pipe is sized with F_SETPIPE_SZ (--chunk).  A short or
 *                  -EAGAIN socket splice leaves bytes in the pipe: a
 *                  POLL_ADD(POLLOUT) linked to a splice of what is left.
 *                  The kernel runs SPLICE in io-wq worker threads.
 *   read-send      IORING_OP_READ at an offset into a --chunk byte buffer,
 *                  linked (--no-link: one after the other) to IORING_OP_SEND
 *                  (MSG_WAITALL); short sends are finished with more sends.
 *
 * The reader (pinned to --reader-cpu) recv()s with a --read-buf buffer as
 * fast as it can (or sleeps --slow-reader microseconds after every read) and
 * memcmp()s every chunk with the file, which it has mapped: a path that
 * loses, duplicates or reorders a byte fails the run.  After the last byte
 * it writes one byte back ('K' good, 'X' bad); the sender's clock stops when
 * that byte arrives, so the wall time covers delivery, not just queueing.
 *
 * The sender's CPU time is taken over the transfer three ways:
 *   cpu     getrusage(RUSAGE_SELF): every thread of the process, io-wq
 *           workers included (they are threads of the process, PF_IO_WORKER)
 *   thread  getrusage(RUSAGE_THREAD) of the submitting thread alone
 *   tasks   the sum over /proc/self/task/ of each thread's run time
 *           (schedstat, ns), a cross-check of cpu that names the workers
 * so iowq = cpu - thread is what the io-wq workers burned.  By default the
 * workers are confined to the sender's CPU (IORING_REGISTER_IOWQ_AFF) so
 * their work competes with the sender, not with the reader; --iowq-cpu any
 * leaves them free.
 *
 * One line on stdout per run:
 *   RESULT mode=... chunk=... bytes=... wall=... mib_s=... cpu=...
 *          cpu_ms_per_mib=... thread=... iowq=... tasks=... workers=...
 *          worker_cpus=... enters=... calls=... polls=... eagain=...
 *          shorts=... wait=... reader_wait=... ring=... ok=1
 * where wait and reader_wait are how long the sender's threads and the
 * reader were runnable but kept off their CPU by other work (schedstat's
 * run delay) during the window: a run on a busy machine shows it there.
 *
 * Reader roles, for the loop-level benchmarks:
 *   --reader --file F --size N [--passes K] [--warmup W]
 *        listen on 127.0.0.1, print "READY <port>", accept one connection,
 *        expect W bytes (the file's first W; then write 'K'), then K times
 *        the file's first N bytes (then 'K'), then EOF.
 *   --http-get PATH --port P --file F [--count K]
 *        K times: connect, GET PATH (Connection: close), check the status,
 *        Content-Length and every body byte against F; print the times.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_ring.h"

/* ABI values abi.h does not spell (it has what the loop itself uses):
 * enum io_uring_op, IOSQE_IO_LINK_BIT, IORING_REGISTER_IOWQ_AFF. */
#define SF_OP_READ            22
#define SF_OP_SPLICE          30
#define SF_SQE_IO_LINK        (1u << 2)
#define SF_REGISTER_IOWQ_AFF  17

#define MIB (1024.0 * 1024.0)

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "sendfile_paths[%d]: ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        die("sched_setaffinity(%d): %s", cpu, strerror(errno));
}

/* ---- the ring (bench_ring.h's) ---------------------------------------- */

/* io_uring_enter calls, for RESULT's enters= (one ring a process) */
static unsigned long enters;

/* Every step below queues at most two SQEs and waits for their CQEs, so
 * the SQ never fills. */
static struct ul_sqe *get_sqe(struct ring *r, uint8_t opcode, int fd, uint64_t ud,
                              unsigned sqe_flags)
{
    struct ul_sqe *sqe = ring_get_sqe(r, opcode, fd, ud);
    if (!sqe)
        die("submission queue full");
    sqe->flags = (uint8_t)sqe_flags;
    return sqe;
}

static void prep_poll(struct ring *r, int fd, unsigned events, uint64_t ud, unsigned sqe_flags)
{
    struct ul_sqe *sqe = get_sqe(r, UL_OP_POLL_ADD, fd, ud, sqe_flags);
    sqe->op_flags = events;
}

/* off_in/off_out of -1: no offset (a pipe or socket end). */
static void prep_splice(struct ring *r, int fd_in, int64_t off_in, int fd_out,
                        int64_t off_out, unsigned len, uint64_t ud, unsigned sqe_flags)
{
    struct ul_sqe *sqe = get_sqe(r, SF_OP_SPLICE, fd_out, ud, sqe_flags);
    sqe->off = (uint64_t)off_out;
    sqe->addr = (uint64_t)off_in;        /* splice_off_in */
    sqe->len = len;
    sqe->op_flags = 0;                   /* splice_flags */
    sqe->file_index = (uint32_t)fd_in;   /* splice_fd_in */
}

static void prep_read(struct ring *r, int fd, void *buf, unsigned len, uint64_t off,
                      uint64_t ud, unsigned sqe_flags)
{
    struct ul_sqe *sqe = get_sqe(r, SF_OP_READ, fd, ud, sqe_flags);
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = len;
    sqe->off = off;
}

static void prep_send(struct ring *r, int fd, const void *buf, unsigned len,
                      unsigned msg_flags, uint64_t ud, unsigned sqe_flags)
{
    struct ul_sqe *sqe = get_sqe(r, UL_OP_SEND, fd, ud, sqe_flags);
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = len;
    sqe->op_flags = msg_flags;
}

/* Submit what is queued and wait until `want` CQEs are in `out`. */
static void wait_cqes(struct ring *r, unsigned want, struct ul_cqe *out)
{
    unsigned got = 0;
    for (;;) {
        unsigned head = *r->cq_khead, tail = load_acquire(r->cq_ktail);
        while (head != tail && got < want)
            out[got++] = r->cqes[head++ & r->cq_mask];
        store_release(r->cq_khead, head);
        if (got == want)
            return;
        enters++;
        if (ring_enter(r, want - got, UL_ENTER_GETEVENTS) < 0)
            die("io_uring_enter: %s", strerror(errno));
    }
}

/* The CQE of `ud` among n. */
static int res_of(const struct ul_cqe *c, unsigned n, uint64_t ud)
{
    for (unsigned i = 0; i < n; i++)
        if (c[i].user_data == ud)
            return c[i].res;
    die("no completion for user_data %llu", (unsigned long long)ud);
    return 0;
}

/* ---- the three senders ------------------------------------------------- */

enum { UD_POLL = 1, UD_IN, UD_OUT };

struct sender {
    struct ring ring;
    int sock, file;
    int mode;
    unsigned chunk;
    int link;
    char *buf;                /* read-send */
    int pipe_rd, pipe_wr;     /* splice */
    unsigned long calls, polls, eagain, shorts;
};

enum { MODE_SENDFILE_POLL, MODE_SPLICE, MODE_READ_SEND };
static const char *const MODE_NAMES[] = {"sendfile-poll", "splice", "read-send"};

static void send_sendfile_poll(struct sender *s, long long n)
{
    off_t off = 0;
    struct ul_cqe c;
    while (off < n) {
        ssize_t sent = sendfile(s->sock, s->file, &off, (size_t)(n - off));
        s->calls++;
        if (sent > 0)
            continue;
        if (sent == 0)
            die("sendfile: end of file at %lld", (long long)off);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            die("sendfile: %s", strerror(errno));
        s->eagain++;
        prep_poll(&s->ring, s->sock, POLLOUT, UD_POLL, 0);
        wait_cqes(&s->ring, 1, &c);
        s->polls++;
        if (c.res < 0)
            die("poll: %s", strerror(-c.res));
    }
}

static void send_splice(struct sender *s, long long n)
{
    long long off = 0, in_pipe = 0;
    int need_poll = 0;
    struct ul_cqe c[2];
    while (off < n || in_pipe > 0) {
        if (in_pipe == 0) {
            unsigned len = (unsigned)(n - off < s->chunk ? n - off : s->chunk);
            prep_splice(&s->ring, s->file, off, s->pipe_wr, -1, len, UD_IN, SF_SQE_IO_LINK);
            prep_splice(&s->ring, s->pipe_rd, -1, s->sock, -1, len, UD_OUT, 0);
            wait_cqes(&s->ring, 2, c);
            s->calls += 2;
            int in = res_of(c, 2, UD_IN), out = res_of(c, 2, UD_OUT);
            if (in < 0)
                die("splice file->pipe: %s", strerror(-in));
            if (in == 0)
                die("splice file->pipe: end of file at %lld", off);
            off += in;
            in_pipe += in;
            if (out > 0) {
                in_pipe -= out;
                need_poll = in_pipe > 0;      /* the socket took less: full */
                s->shorts += in_pipe > 0;
            } else if (out == -EAGAIN) {
                s->eagain++;
                need_poll = 1;
            } else if (out != -ECANCELED) {   /* -ECANCELED: the first was short */
                die("splice pipe->socket: %s", out ? strerror(-out) : "wrote 0");
            }
        } else {
            unsigned len = (unsigned)in_pipe;
            if (need_poll) {
                prep_poll(&s->ring, s->sock, POLLOUT, UD_POLL, SF_SQE_IO_LINK);
                s->polls++;
            }
            prep_splice(&s->ring, s->pipe_rd, -1, s->sock, -1, len, UD_OUT, 0);
            wait_cqes(&s->ring, need_poll ? 2 : 1, c);
            s->calls++;
            if (need_poll) {
                int p = res_of(c, 2, UD_POLL);
                if (p < 0)
                    die("poll: %s", strerror(-p));
            }
            int out = res_of(c, need_poll ? 2 : 1, UD_OUT);
            if (out > 0) {
                in_pipe -= out;
                need_poll = in_pipe > 0;
                s->shorts += in_pipe > 0;
            } else if (out == -EAGAIN) {
                s->eagain++;
                need_poll = 1;
            } else {
                die("splice pipe->socket: %s", out ? strerror(-out) : "wrote 0");
            }
        }
    }
}

/* Send buf[0:have] with more SENDs, a POLL first where the socket was full. */
static void finish_send(struct sender *s, long long have, long long sent, int need_poll)
{
    struct ul_cqe c[2];
    while (sent < have) {
        if (need_poll) {
            prep_poll(&s->ring, s->sock, POLLOUT, UD_POLL, SF_SQE_IO_LINK);
            s->polls++;
        }
        prep_send(&s->ring, s->sock, s->buf + sent, (unsigned)(have - sent), MSG_WAITALL,
                  UD_OUT, 0);
        wait_cqes(&s->ring, need_poll ? 2 : 1, c);
        s->calls++;
        if (need_poll && res_of(c, 2, UD_POLL) < 0)
            die("poll: %s", strerror(-res_of(c, 2, UD_POLL)));
        int out = res_of(c, need_poll ? 2 : 1, UD_OUT);
        if (out > 0) {
            sent += out;
            need_poll = sent < have;
            s->shorts += sent < have;
        } else if (out == -EAGAIN) {
            s->eagain++;
            need_poll = 1;
        } else {
            die("send: %s", out ? strerror(-out) : "sent 0");
        }
    }
}

static void send_read_send(struct sender *s, long long n)
{
    long long off = 0;
    struct ul_cqe c[2];
    while (off < n) {
        unsigned len = (unsigned)(n - off < s->chunk ? n - off : s->chunk);
        int in, out;
        if (s->link) {
            prep_read(&s->ring, s->file, s->buf, len, (uint64_t)off, UD_IN, SF_SQE_IO_LINK);
            prep_send(&s->ring, s->sock, s->buf, len, MSG_WAITALL, UD_OUT, 0);
            wait_cqes(&s->ring, 2, c);
            s->calls += 2;
            in = res_of(c, 2, UD_IN);
            out = res_of(c, 2, UD_OUT);
        } else {
            prep_read(&s->ring, s->file, s->buf, len, (uint64_t)off, UD_IN, 0);
            wait_cqes(&s->ring, 1, c);
            in = c[0].res;
            if (in < 0)
                die("read: %s", strerror(-in));
            if (in == 0)
                die("read: end of file at %lld", off);
            prep_send(&s->ring, s->sock, s->buf, (unsigned)in, MSG_WAITALL, UD_OUT, 0);
            wait_cqes(&s->ring, 1, c);
            s->calls += 2;
            out = c[0].res;
        }
        if (in < 0)
            die("read: %s", strerror(-in));
        if (in == 0)
            die("read: end of file at %lld", off);
        long long sent = 0;
        int need_poll = 0;
        if (out > 0) {
            sent = out;
            need_poll = sent < in;
            s->shorts += sent < in;
        } else if (out == -EAGAIN) {
            s->eagain++;
            need_poll = 1;
        } else if (out != -ECANCELED) {       /* -ECANCELED: the read was short */
            die("send: %s", out ? strerror(-out) : "sent 0");
        }
        finish_send(s, in, sent, need_poll);
        off += in;
    }
}

static void send_file(struct sender *s, long long n)
{
    switch (s->mode) {
    case MODE_SENDFILE_POLL: send_sendfile_poll(s, n); break;
    case MODE_SPLICE: send_splice(s, n); break;
    default: send_read_send(s, n); break;
    }
}

/* ---- CPU accounting ---------------------------------------------------- */

#define MAX_TASKS 256

struct tasks {
    int n;
    int tid[MAX_TASKS];
    long long ns[MAX_TASKS];     /* schedstat: time on CPU */
    long long wait[MAX_TASKS];   /* schedstat: time runnable, waiting for a CPU */
    int worker[MAX_TASKS];       /* an io-wq worker (comm iou-wrk-*) */
    int cpu[MAX_TASKS];          /* the CPU it last ran on */
};

static int read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return 0;
}

static void snap_tasks(struct tasks *t)
{
    char path[96], buf[1024];
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    t->n = 0;
    if (!d)
        return;
    while ((e = readdir(d)) && t->n < MAX_TASKS) {
        if (e->d_name[0] == '.')
            continue;
        int tid = atoi(e->d_name), i = t->n;
        snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
        if (read_small(path, buf, sizeof(buf)) < 0)
            continue;
        t->tid[i] = tid;
        t->ns[i] = atoll(buf);
        t->wait[i] = atoll(strchr(buf, ' ') ? strchr(buf, ' ') + 1 : "0");
        snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
        t->worker[i] = read_small(path, buf, sizeof(buf)) == 0 &&
                       strncmp(buf, "iou-wrk", 7) == 0;
        t->cpu[i] = -1;
        snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
        if (read_small(path, buf, sizeof(buf)) == 0) {
            /* field 39, "processor", counted after the ")" ending comm */
            char *p = strrchr(buf, ')');
            int field = 2;
            while (p && *p && field < 39) {
                p = strchr(p + 1, ' ');
                field++;
            }
            if (p)
                t->cpu[i] = atoi(p + 1);
        }
        t->n++;
    }
    closedir(d);
}

/* All threads' time runnable but kept off a CPU by other work, in ns
 * (threads that exited meanwhile drop out: this is for flagging runs). */
static long long run_delay(void)
{
    struct tasks t;
    long long sum = 0;
    snap_tasks(&t);
    for (int i = 0; i < t.n; i++)
        sum += t.wait[i];
    return sum;
}

static double rusage_seconds(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- the reader -------------------------------------------------------- */

struct verdict {
    long long received;
    long long first_bad;     /* offset in its segment of the first wrong byte, or -1 */
    long long extra;         /* bytes after the last expected one */
    int segment;             /* the segment first_bad is in */
    int failed;
    long long wait_ns;       /* run delay over the measured segments */
};

static const char *map_file(const char *path, long long need)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %s", path, strerror(errno));
    if (st.st_size < need)
        die("%s has %lld bytes, %lld needed", path, (long long)st.st_size, need);
    void *p = mmap(NULL, (size_t)need, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        die("mmap %s: %s", path, strerror(errno));
    close(fd);
    return p;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write: %s", n ? strerror(errno) : "wrote 0");
        p += n;
        len -= (size_t)n;
    }
}

/* Receive exactly len bytes, each compared with map[0:len]. */
static int verify = 1;

static void read_segment(int sock, const char *map, long long len, char *buf, size_t bufsize,
                         long slow_us, struct verdict *v, int segment)
{
    long long got = 0;
    while (got < len) {
        size_t want = len - got < (long long)bufsize ? (size_t)(len - got) : bufsize;
        ssize_t n = recv(sock, buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "sendfile_paths reader: %s after %lld of %lld bytes (segment %d)\n",
                    n ? strerror(errno) : "end of stream", got, len, segment);
            v->failed = 1;
            return;
        }
        if (verify && memcmp(buf, map + got, (size_t)n) != 0 && v->first_bad < 0) {
            long long i = 0;
            while (buf[i] == map[got + i])
                i++;
            v->first_bad = got + i;
            v->segment = segment;
            v->failed = 1;
        }
        got += n;
        v->received += n;
        if (slow_us > 0) {
            struct timespec ts = {slow_us / 1000000, (slow_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* The reader's protocol: warm-up segment, 'K', passes segments, 'K', EOF. */
static void reader_run(int sock, const char *map, long long size, long long warmup, int passes,
                       size_t bufsize, long slow_us, struct verdict *v)
{
    char *buf = malloc(bufsize);
    if (!buf)
        die("out of memory");
    memset(v, 0, sizeof(*v));
    v->first_bad = -1;
    if (warmup > 0) {
        read_segment(sock, map, warmup, buf, bufsize, slow_us, v, 0);
        write_all(sock, v->failed ? "X" : "K", 1);
    }
    long long wait0 = run_delay();
    for (int i = 0; i < passes && !v->failed; i++)
        read_segment(sock, map, size, buf, bufsize, slow_us, v, i + 1);
    v->wait_ns = run_delay() - wait0;
    write_all(sock, v->failed ? "X" : "K", 1);
    /* nothing more may come: the next read must see the sender's EOF */
    for (;;) {
        ssize_t n = recv(sock, buf, bufsize, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        v->extra += n;
        v->failed = 1;
    }
    free(buf);
}

/* The sender's side of a word from the reader: one byte ('R' ready, 'K'
 * all bytes right, 'X' some wrong). */
static char wait_word(int sock)
{
    struct pollfd pfd = {sock, POLLIN, 0};
    char c = 0;
    for (;;) {
        int r = poll(&pfd, 1, 120000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("no word from the reader in 120 s");
        ssize_t n = recv(sock, &c, 1, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            die("the reader went away");
        return c;
    }
}

/* ---- plumbing ---------------------------------------------------------- */

static int listen_loopback(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        die("socket: %s", strerror(errno));
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0)
        die("listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return l;
}

static int connect_loopback(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket: %s", strerror(errno));
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect to port %d: %s", port, strerror(errno));
    return s;
}

static long long parse_size(const char *text)
{
    char *end;
    double v = strtod(text, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 0: break;
    default: die("bad size %s", text);
    }
    return (long long)v;
}

static void warm_page_cache(int fd, long long n)
{
    static char buf[1 << 20];
    for (long long off = 0; off < n;) {
        ssize_t r = pread(fd, buf, sizeof(buf), off);
        if (r <= 0)
            die("reading the file: %s", r ? strerror(errno) : "short file");
        off += r;
    }
}

struct opts {
    const char *mode, *file, *http_path;
    long long size, warmup;
    long long chunk, read_buf;
    int passes, count, port;
    int sender_cpu, reader_cpu;
    int iowq_any, link, reader, verbose;
    long slow_us;
};

static void usage(void)
{
    fprintf(stderr,
        "usage: sendfile_paths --mode sendfile-poll|splice|read-send --file F [--size N]\n"
        "         [--chunk B] [--passes K] [--warmup W] [--read-buf B] [--slow-reader USEC]\n"
        "         [--sender-cpu C] [--reader-cpu C] [--iowq-cpu same|any] [--no-link]\n"
        "       sendfile_paths --reader --file F --size N [--passes K] [--warmup W] [--read-buf B]\n"
        "       sendfile_paths --http-get PATH --port P --file F [--count K] [--read-buf B]\n");
    exit(2);
}

/* ---- roles ------------------------------------------------------------- */

static int run_sender(struct opts *o)
{
    struct sender s;
    memset(&s, 0, sizeof(s));
    s.mode = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(o->mode, MODE_NAMES[i]) == 0)
            s.mode = i;
    if (s.mode < 0)
        die("unknown mode %s", o->mode);
    s.link = o->link;
    s.file = open(o->file, O_RDONLY | O_CLOEXEC);
    if (s.file < 0)
        die("%s: %s", o->file, strerror(errno));
    struct stat st;
    fstat(s.file, &st);
    if (o->size <= 0)
        o->size = st.st_size;
    if (st.st_size < o->size || o->size <= 0)
        die("%s has %lld bytes, %lld wanted", o->file, (long long)st.st_size, o->size);
    if (o->warmup > o->size)
        o->warmup = o->size;
    warm_page_cache(s.file, o->size);

    int port, l = listen_loopback(&port);
    int sock = connect_loopback(port);
    int peer = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (peer < 0)
        die("accept: %s", strerror(errno));
    close(l);
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    struct verdict *v = mmap(NULL, sizeof(*v), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        die("fork: %s", strerror(errno));
    if (child == 0) {
        close(sock);
        close(s.file);
        pin(o->reader_cpu);
        const char *map = map_file(o->file, o->size);
        write_all(peer, "R", 1);
        reader_run(peer, map, o->size, o->warmup, o->passes, (size_t)o->read_buf,
                   o->slow_us, v);
        close(peer);
        _exit(v->failed ? 1 : 0);
    }
    close(peer);
    pin(o->sender_cpu);
    s.sock = sock;
    if (fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK) < 0)
        die("O_NONBLOCK: %s", strerror(errno));

    const char *ring_setup = ring_init(&s.ring, 8, 0);
    if (!ring_setup)
        die("io_uring_setup: %s", strerror(errno));
    if (!o->iowq_any && o->sender_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(o->sender_cpu, &set);
        if (ring_register(&s.ring, SF_REGISTER_IOWQ_AFF, &set, sizeof(set)) < 0)
            die("IORING_REGISTER_IOWQ_AFF: %s", strerror(errno));
    }
    s.chunk = (unsigned)o->chunk;
    if (s.mode == MODE_SPLICE) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
        int got = fcntl(p[1], F_SETPIPE_SZ, (int)o->chunk);
        if (got < 0)
            die("F_SETPIPE_SZ %lld: %s (see /proc/sys/fs/pipe-max-size)", o->chunk,
                strerror(errno));
        s.pipe_rd = p[0];
        s.pipe_wr = p[1];
        s.chunk = (unsigned)got;
    } else if (s.mode == MODE_READ_SEND) {
        s.buf = mmap(NULL, s.chunk, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (s.buf == MAP_FAILED)
            die("mmap: %s", strerror(errno));
    }

    if (wait_word(sock) != 'R')
        die("the reader did not start");
    if (o->warmup > 0) {
        send_file(&s, o->warmup);
        if (wait_word(sock) != 'K')
            die("the reader found the warm-up transfer wrong");
    }

    struct tasks t0, t1;
    unsigned long e0 = enters;
    s.calls = s.polls = s.eagain = s.shorts = 0;
    snap_tasks(&t0);
    double cpu0 = rusage_seconds(RUSAGE_SELF), th0 = rusage_seconds(RUSAGE_THREAD);
    double w0 = now();
    for (int i = 0; i < o->passes; i++)
        send_file(&s, o->size);
    int ok = wait_word(sock) == 'K';
    double w1 = now();
    double cpu1 = rusage_seconds(RUSAGE_SELF), th1 = rusage_seconds(RUSAGE_THREAD);
    snap_tasks(&t1);

    shutdown(sock, SHUT_WR);
    int status = 0;
    waitpid(child, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 && !v->failed;
    if (!ok) {
        fprintf(stderr, "sendfile_paths: mode %s delivered wrong data: received %lld, "
                "first bad byte %lld of segment %d, %lld extra bytes\n",
                o->mode, v->received, v->first_bad, v->segment, v->extra);
    }

    long long task_ns = 0, wait_ns = 0;
    int workers = 0;
    char cpus[128] = "";
    for (int i = 0; i < t1.n; i++) {
        long long before = 0;
        for (int j = 0; j < t0.n; j++)
            if (t0.tid[j] == t1.tid[i])
                before = t0.ns[j];
        task_ns += t1.ns[i] - before;
        for (int j = 0; j < t0.n; j++)
            if (t0.tid[j] == t1.tid[i])
                wait_ns -= t0.wait[j];
        wait_ns += t1.wait[i];
        if (t1.worker[i]) {
            workers++;
            size_t len = strlen(cpus);
            if (len < sizeof(cpus) - 8)
                snprintf(cpus + len, sizeof(cpus) - len, "%s%d", len ? "," : "", t1.cpu[i]);
        }
    }
    /* workers that exited in the window are in cpu but not in tasks */
    double bytes = (double)o->size * o->passes, wall = w1 - w0, cpu = cpu1 - cpu0;
    printf("RESULT mode=%s chunk=%u link=%d size=%lld passes=%d bytes=%.0f wall=%.6f "
           "mib_s=%.1f cpu=%.6f cpu_ms_per_mib=%.4f thread=%.6f iowq=%.6f tasks=%.6f "
           "workers=%d worker_cpus=%s enters=%lu calls=%lu polls=%lu eagain=%lu shorts=%lu "
           "wait=%.6f reader_wait=%.6f ring=%s iowq_aff=%s verified=%d ok=%d\n",
           o->mode, s.mode == MODE_SENDFILE_POLL ? 0 : s.chunk, s.link, o->size, o->passes,
           bytes, wall, bytes / MIB / wall, cpu, cpu * 1000 / (bytes / MIB), th1 - th0,
           cpu - (th1 - th0), task_ns / 1e9, workers, workers ? cpus : "-",
           enters - e0, s.calls, s.polls, s.eagain, s.shorts, wait_ns / 1e9,
           v->wait_ns / 1e9, ring_setup,
           o->iowq_any || o->sender_cpu < 0 ? "any" : "sender", verify, ok);
    return ok ? 0 : 1;
}

static int run_reader(struct opts *o)
{
    if (o->size <= 0)
        die("--reader needs --size");
    long long need = o->size > o->warmup ? o->size : o->warmup;
    const char *map = map_file(o->file, need);
    int port, l = listen_loopback(&port);
    printf("READY %d\n", port);
    fflush(stdout);
    int sock = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (sock < 0)
        die("accept: %s", strerror(errno));
    close(l);
    struct verdict v;
    double t0 = now();
    reader_run(sock, map, o->size, o->warmup, o->passes, (size_t)o->read_buf, o->slow_us, &v);
    double t1 = now();
    close(sock);
    if (v.failed)
        fprintf(stderr, "sendfile_paths reader: wrong data: received %lld, first bad byte "
                "%lld of segment %d, %lld extra bytes\n", v.received, v.first_bad,
                v.segment, v.extra);
    printf("RESULT received=%lld wall=%.6f wait=%.6f ok=%d\n", v.received, t1 - t0,
           v.wait_ns / 1e9, !v.failed);
    return v.failed;
}

static int run_http_get(struct opts *o)
{
    int fd = open(o->file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %s", o->file, strerror(errno));
    close(fd);
    long long size = st.st_size;
    const char *map = map_file(o->file, size);
    size_t bufsize = (size_t)o->read_buf;
    char *buf = malloc(bufsize + 1);
    char req[512];
    int reqlen = snprintf(req, sizeof(req),
                          "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                          o->http_path, o->port);
    double total = 0, best = 1e9;
    long long wait0 = run_delay();
    int ok = 1;
    for (int i = 0; i < o->count && ok; i++) {
        double t0 = now();
        int s = connect_loopback(o->port);
        write_all(s, req, (size_t)reqlen);
        /* the head, then the body: exactly Content-Length bytes, all compared */
        size_t have = 0;
        char *end = NULL;
        while (!end) {
            if (have == bufsize)
                die("HTTP head longer than %zu bytes", bufsize);
            ssize_t n = recv(s, buf + have, bufsize - have, 0);
            if (n <= 0)
                die("HTTP: connection ended in the head");
            have += (size_t)n;
            buf[have] = 0;
            end = strstr(buf, "\r\n\r\n");
        }
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
            die("HTTP: %.*s", (int)(strchr(buf, '\r') - buf), buf);
        long long length = -1;
        for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
            if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                length = atoll(line + 17);
        if (length != size)
            die("HTTP: Content-Length %lld, the file has %lld", length, size);
        long long got = (long long)(have - (size_t)(end + 4 - buf));
        if (got > size || memcmp(end + 4, map, (size_t)got) != 0)
            ok = 0;
        while (ok && got < size) {
            size_t want = size - got < (long long)bufsize ? (size_t)(size - got) : bufsize;
            ssize_t n = recv(s, buf, want, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                die("HTTP: body ended after %lld of %lld bytes", got, size);
            if (memcmp(buf, map + got, (size_t)n) != 0)
                ok = 0;
            got += n;
        }
        ssize_t extra = ok ? recv(s, buf, bufsize, 0) : 0;
        if (extra > 0)
            ok = 0;
        close(s);
        double dt = now() - t0;
        total += dt;
        best = dt < best ? dt : best;
        if (!ok)
            fprintf(stderr, "sendfile_paths http-get: wrong body in download %d\n", i + 1);
    }
    printf("RESULT count=%d size=%lld total=%.6f per=%.6f best=%.6f wait=%.6f ok=%d\n",
           o->count, size, total, total / o->count, best, (run_delay() - wait0) / 1e9, ok);
    return !ok;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .mode = "sendfile-poll", .file = NULL, .http_path = NULL,
        .size = 0, .warmup = -1, .chunk = 64 * 1024, .read_buf = 256 * 1024,
        .passes = 1, .count = 1, .port = 0,
        .sender_cpu = -1, .reader_cpu = -1, .iowq_any = 0, .link = 1, .slow_us = 0,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && (val || (usage(), 0)) && ++i)
        if (ARG("--mode")) o.mode = val;
        else if (ARG("--file")) o.file = val;
        else if (ARG("--size")) o.size = parse_size(val);
        else if (ARG("--warmup")) o.warmup = parse_size(val);
        else if (ARG("--chunk")) o.chunk = parse_size(val);
        else if (ARG("--read-buf")) o.read_buf = parse_size(val);
        else if (ARG("--passes")) o.passes = atoi(val);
        else if (ARG("--count")) o.count = atoi(val);
        else if (ARG("--port")) o.port = atoi(val);
        else if (ARG("--sender-cpu")) o.sender_cpu = atoi(val);
        else if (ARG("--reader-cpu")) o.reader_cpu = atoi(val);
        else if (ARG("--slow-reader")) o.slow_us = atol(val);
        else if (ARG("--iowq-cpu")) o.iowq_any = strcmp(val, "any") == 0;
        else if (ARG("--http-get")) o.http_path = val;
        else if (strcmp(a, "--reader") == 0) o.reader = 1;
        else if (strcmp(a, "--no-link") == 0) o.link = 0;
        else if (strcmp(a, "--no-verify") == 0) verify = 0;
        else usage();
#undef ARG
    }
    if (!o.file || o.passes < 1 || o.count < 1 || o.chunk < 4096 || o.read_buf < 4096)
        usage();
    if (o.http_path) {
        pin(o.reader_cpu);
        return run_http_get(&o);
    }
    if (o.warmup < 0)
        o.warmup = o.reader ? 0 : 16 * 1024 * 1024;
    if (o.reader) {
        pin(o.reader_cpu);
        return run_reader(&o);
    }
    return run_sender(&o);
}
