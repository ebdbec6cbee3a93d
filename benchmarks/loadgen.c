/* Closed-loop load generator for the benchmark suite (epoll, one thread).
 *
 * N connections each keep exactly one request outstanding: an echo message
 * of S bytes (the whole echo must come back, byte for byte, before the next
 * is sent) or an HTTP/1.1 keep-alive GET (the response is complete when its
 * Content-Length body has arrived).
 *
 * Phases: connect all; warm up until every connection has completed one
 * request and the warm-up time has passed; measure for the duration; then
 * keep the same load running, uncounted, until "quit" (or EOF) on stdin.
 * Running on after the window lets the caller take the server's closing CPU
 * snapshot under the same load as its opening one.
 *
 * stdout protocol, one line each:
 *   GO                    the measured window has started
 *   END                   it has ended (the load goes on)
 *   RESULT key=value ...  after "quit": counts, latency percentiles, own
 *                         CPU time and time spent waiting for its CPU
 * Any protocol violation, lost connection or stall prints "ERROR: ..." on
 * stderr and exits with status 1: a number from a broken server is no
 * number.
 *
 * --tls speaks TLS 1.3 (OpenSSL, non-blocking over the same epoll loop):
 * each connection completes its handshake while connecting, before the
 * warm-up, and each request is then SSL_write + SSL_read.  The server's
 * certificate is not verified (the benchmark's servers use a throwaway one)
 * and sessions are not resumed.  The echo is still checked byte for byte,
 * on the decrypted bytes.  TLS needs a build with -DLOADGEN_TLS and
 * -lssl -lcrypto (benchmarks/loadgen.py builds that variant separately, so
 * the plain one needs no OpenSSL headers).
 *
 * --udp sends each echo message as one datagram, from N UDP sockets (each
 * connect()ed to the server, so N source addresses and only the server's
 * datagrams get in).  The echo must come back as one datagram, byte for
 * byte.  A request with no echo after RESEND_MS is counted lost (RESULT
 * lost=, the measured window's) and the socket moves on to the next, so a
 * dropped datagram costs that socket a pause, not the run; the lost one's
 * echo may still come late, and is then set aside.  Anything else is an
 * error, as over TCP.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
/* OpenSSL's default first choice for TLS 1.3, pinned so that every run and
 * every server negotiates the same. */
#define TLS_SUITE "TLS_AES_256_GCM_SHA384"
#endif

enum mode { MODE_ECHO, MODE_HTTP };
enum phase { CONNECTING, WARMUP, MEASURE, AFTER };

/* Room for one HTTP response (headers and body); a longer one is an error. */
#define HTTP_MAX 8192
/* Pattern offsets vary per request over this many positions, so a stale or
 * duplicated echo does not compare equal to the expected one. */
#define PATTERN_SPAN 251
#define STDIN_TAG UINT64_MAX
/* --udp: how long a request waits for its echo before it counts as lost,
 * and how many lost ones per socket may still see their echo arrive. */
#define RESEND_MS 200
#define LATE_SLOTS 8

struct conn {
    int fd;
    uint32_t id;
    int connected;          /* TCP connected and, with --tls, handshake done */
    int handshaking;        /* --tls: TCP connected, handshake under way */
    int writing;            /* EPOLLOUT is armed */
    int write_wants_read;   /* --tls: SSL_write waits for readable */
    int done_one;           /* completed a request: warm-up may end */
    uint64_t seq;
    const char *msg;        /* the request being sent */
    size_t len, sent, got;
    uint64_t started_ns;
    char *resp;             /* http: the response so far */
    size_t resp_len;
    uint64_t lost[LATE_SLOTS];  /* --udp: requests given up on (0: none) */
#ifdef LOADGEN_TLS
    SSL *ssl;
#endif
};

static struct {
    enum mode mode;
    const char *host;
    int port;
    int nconns;
    size_t size;
    double warmup, duration, timeout;
    const char *expect_body;
    int tls, udp;
} opt = { MODE_ECHO, "127.0.0.1", 0, 1, 64, 0.5, 2.0, 10.0, NULL, 0, 0 };

static int ep;
static struct conn *conns;
static char *pattern;
static char http_req[256];
static size_t http_req_len;
static char scratch[256 * 1024];
#ifdef LOADGEN_TLS
static SSL_CTX *tls_ctx;
#endif

static enum phase phase = CONNECTING;
static int nconnected, nwarm;
static uint64_t window_start, window_end, last_progress;
static uint64_t completed, bytes_done, lost;
static uint64_t *lat;
static size_t nlat, caplat;
static struct rusage ru_start, ru_end;
static double delay_start, delay_end;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ERROR: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static double cpu_seconds(const struct rusage *r)
{
    return r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6
         + r->ru_stime.tv_sec + r->ru_stime.tv_usec / 1e6;
}

/* Seconds this thread has spent runnable but waiting for its CPU: time
 * taken by other work on the same CPU. */
static double run_delay(void)
{
    unsigned long long on_cpu, delay = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &on_cpu, &delay) != 2)
            delay = 0;
        fclose(f);
    }
    return delay / 1e9;
}

static void arm(struct conn *c, int want_out)
{
    struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                              .data.u64 = c->id };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->writing = want_out;
}

#ifdef LOADGEN_TLS
static const char *tls_error(int code)
{
    static char text[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, text, sizeof text);
    else if (code == SSL_ERROR_SYSCALL)
        snprintf(text, sizeof text, "%s", errno ? strerror(errno) : "unexpected EOF");
    else
        snprintf(text, sizeof text, "SSL error %d", code);
    ERR_clear_error();
    return text;
}
#endif

/* Bytes sent (> 0), or 0 when the socket must become writable first
 * (*want_out) or, with TLS, readable (!*want_out). */
static ssize_t io_send(struct conn *c, const char *buf, size_t len, int *want_out)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        int code = SSL_get_error(c->ssl, n);
        if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ) {
            *want_out = code == SSL_ERROR_WANT_WRITE;
            return 0;
        }
        die("SSL_write on connection %u: %s", c->id, tls_error(code));
    }
#endif
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *want_out = 1;
            return 0;
        }
        if (errno != EINTR)
            die("send on connection %u: %s", c->id, strerror(errno));
    }
}

/* Bytes received (> 0), 0 at the end of the stream, -1 when none are
 * waiting. */
static ssize_t io_recv(struct conn *c, char *buf, size_t len)
{
#ifdef LOADGEN_TLS
    if (c->ssl) {
        int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0)
            return n;
        int code = SSL_get_error(c->ssl, n);
        if (code == SSL_ERROR_WANT_READ)
            return -1;
        if (code == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (code == SSL_ERROR_WANT_WRITE)
            die("connection %u: TLS wants to write while reading (renegotiation or a "
                "key update the generator does not handle)", c->id);
        die("SSL_read on connection %u: %s", c->id, tls_error(code));
    }
#endif
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        if (errno != EINTR)
            die("recv on connection %u: %s", c->id, strerror(errno));
    }
}

/* Whether bytes already read from the socket may wait in the TLS library,
 * where epoll does not see them. */
static int io_pending(struct conn *c)
{
#ifdef LOADGEN_TLS
    if (c->ssl)
        return SSL_has_pending(c->ssl);
#else
    (void)c;
#endif
    return 0;
}

static void send_some(struct conn *c)
{
    while (c->sent < c->len) {
        int want_out = 1;
        ssize_t n = io_send(c, c->msg + c->sent, c->len - c->sent, &want_out);
        if (n == 0) {
            if (want_out && !c->writing)
                arm(c, 1);
            else if (!want_out)
                c->write_wants_read = 1;    /* on_readable sends again */
            return;
        }
        c->sent += n;
    }
    if (c->writing)
        arm(c, 0);
}

static const char *echo_msg(const struct conn *c, uint64_t seq)
{
    return pattern + (c->id * 31u + seq * 7u) % PATTERN_SPAN;
}

static void start_request(struct conn *c, uint64_t now)
{
    c->seq++;
    if (opt.mode == MODE_ECHO) {
        c->msg = echo_msg(c, c->seq);
        c->len = opt.size;
    } else {
        c->msg = http_req;
        c->len = http_req_len;
        c->resp_len = 0;
    }
    c->sent = c->got = 0;
    c->started_ns = now;
    send_some(c);
}

static void record(uint64_t ns)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat)
            die("out of memory for latencies");
    }
    lat[nlat++] = ns;
}

static void finish_request(struct conn *c, uint64_t now)
{
    if (phase == MEASURE) {
        completed++;
        bytes_done += c->len + c->got;
        record(now - c->started_ns);
    }
    if (!c->done_one) {
        c->done_one = 1;
        nwarm++;
    }
    start_request(c, now);
}

static void on_echo_bytes(struct conn *c, const char *buf, size_t n, uint64_t now)
{
    if (c->got + n > c->sent)
        die("connection %u: %zu bytes back but only %zu sent of request %llu "
            "(extra or unsolicited bytes)", c->id, c->got + n, c->sent,
            (unsigned long long)c->seq);
    if (memcmp(buf, c->msg + c->got, n) != 0) {
        size_t i = 0;
        while (buf[i] == c->msg[c->got + i])
            i++;
        die("connection %u: echo differs at byte %zu of request %llu (%zu bytes)",
            c->id, c->got + i, (unsigned long long)c->seq, c->len);
    }
    c->got += n;
    if (c->got == c->len)
        finish_request(c, now);
}

static const char *find_header(const char *head, size_t head_len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', head_len);
    while (p && (size_t)(p + 1 - head) < head_len) {
        p++;
        if ((size_t)(head + head_len - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return p + nl + 1;
        p = memchr(p, '\n', head + head_len - p);
    }
    return NULL;
}

/* Bytes of the complete response, 0 if more are needed. */
static size_t http_complete(struct conn *c)
{
    char *r = c->resp;
    size_t len = c->resp_len;
    char *end = memmem(r, len, "\r\n\r\n", 4);
    if (!end) {
        if (len == HTTP_MAX)
            die("connection %u: response headers larger than %d bytes", c->id, HTTP_MAX);
        return 0;
    }
    size_t head = end + 4 - r;
    if (head < 13 || memcmp(r, "HTTP/1.1 200 ", 13) != 0)
        die("connection %u: unexpected status line: %.*s", c->id,
            (int)((char *)memchr(r, '\r', head) - r), r);
    const char *cl = find_header(r, head, "content-length");
    if (!cl)
        die("connection %u: response without Content-Length", c->id);
    const char *conn_hdr = find_header(r, head, "connection");
    if (conn_hdr) {
        while (*conn_hdr == ' ')
            conn_hdr++;
        if (strncasecmp(conn_hdr, "close", 5) == 0)
            die("connection %u: server answered Connection: close", c->id);
    }
    size_t body = strtoul(cl, NULL, 10);
    if (head + body > HTTP_MAX)
        die("connection %u: response larger than %d bytes", c->id, HTTP_MAX);
    if (len < head + body)
        return 0;
    if (len > head + body)
        die("connection %u: %zu bytes after the response (none requested)",
            c->id, len - head - body);
    if (opt.expect_body && (body != strlen(opt.expect_body)
                            || memcmp(r + head, opt.expect_body, body) != 0))
        die("connection %u: unexpected body: %.*s", c->id, (int)body, r + head);
    return len;
}

static void on_http_bytes(struct conn *c, const char *buf, size_t n, uint64_t now)
{
    if (c->sent < c->len)
        die("connection %u: response before the request was sent", c->id);
    if (c->resp_len + n > HTTP_MAX)
        die("connection %u: response larger than %d bytes", c->id, HTTP_MAX);
    memcpy(c->resp + c->resp_len, buf, n);
    c->resp_len += n;
    size_t total = http_complete(c);
    if (total) {
        c->got = total;
        finish_request(c, now);
    }
}

static void on_readable(struct conn *c)
{
    if (c->write_wants_read) {
        c->write_wants_read = 0;
        send_some(c);
    }
    for (;;) {
        ssize_t n = io_recv(c, scratch, sizeof scratch);
        if (n < 0)
            return;
        if (n == 0)
            die("connection %u closed by the server (request %llu, %zu of %zu bytes back)",
                c->id, (unsigned long long)c->seq, c->got, c->len);
        uint64_t now = now_ns();
        last_progress = now;
        if (opt.mode == MODE_ECHO)
            on_echo_bytes(c, scratch, n, now);
        else
            on_http_bytes(c, scratch, n, now);
        /* A short read drained the socket, unless TLS holds more (a
         * record yields at most 16 KiB; read-ahead may hold the next). */
        if ((size_t)n < sizeof scratch && !io_pending(c))
            return;
    }
}

/* --udp: whether a datagram that is not the current echo is the late echo
 * of a request given up on (each such echo is taken once). */
static int late_echo(struct conn *c, const char *buf, size_t n)
{
    for (int i = 0; i < LATE_SLOTS; i++) {
        if (c->lost[i] && n == c->len && memcmp(buf, echo_msg(c, c->lost[i]), n) == 0) {
            c->lost[i] = 0;
            return 1;
        }
    }
    return 0;
}

/* --udp: one datagram per readiness (each socket has one request in flight;
 * epoll reports a second one, if any, again). */
static void on_datagram(struct conn *c)
{
    ssize_t n = io_recv(c, scratch, sizeof scratch);
    if (n < 0)
        return;
    uint64_t now = now_ns();
    if ((size_t)n == c->len && memcmp(scratch, c->msg, n) == 0) {
        last_progress = now;
        c->got = n;
        finish_request(c, now);
    } else if (!late_echo(c, scratch, n)) {
        die("socket %u: a datagram of %zd bytes that is not the echo of request %llu "
            "(%zu bytes) nor of one given up on", c->id, n, (unsigned long long)c->seq, c->len);
    }
}

/* --udp: requests whose echo is overdue count as lost; their sockets move on. */
static void give_up_overdue(uint64_t now)
{
    for (int i = 0; i < opt.nconns; i++) {
        struct conn *c = &conns[i];
        if (c->got < c->len && now - c->started_ns >= RESEND_MS * 1000000ull) {
            if (phase == MEASURE)
                lost++;
            c->lost[c->seq % LATE_SLOTS] = c->seq;
            start_request(c, now);
        }
    }
}

static void ready(struct conn *c, uint64_t now)
{
    c->connected = 1;
    nconnected++;
    last_progress = now;
    arm(c, 0);
}

#ifdef LOADGEN_TLS
static void handshake(struct conn *c, uint64_t now)
{
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        c->handshaking = 0;
        ready(c, now);
        return;
    }
    int code = SSL_get_error(c->ssl, r);
    if (code == SSL_ERROR_WANT_READ) {
        if (c->writing)
            arm(c, 0);
    } else if (code == SSL_ERROR_WANT_WRITE) {
        if (!c->writing)
            arm(c, 1);
    } else {
        die("TLS handshake with %s:%d on connection %u: %s", opt.host, opt.port, c->id,
            tls_error(code));
    }
}
#endif

static void on_connected(struct conn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err)
        die("connect %s:%d: %s", opt.host, opt.port, strerror(err));
#ifdef LOADGEN_TLS
    if (opt.tls) {
        c->ssl = SSL_new(tls_ctx);
        if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
            die("SSL_new: %s", tls_error(0));
        SSL_set_connect_state(c->ssl);
        c->handshaking = 1;
        last_progress = now;
        handshake(c, now);
        return;
    }
#endif
    ready(c, now);
}

static void open_conn(struct conn *c, const struct sockaddr_in *addr)
{
    int one = 1;
    c->fd = socket(AF_INET, (opt.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    /* Partial sends of large messages must not wait for ACKs. */
    if (!opt.udp)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A UDP socket "connects" at once; it reports writable, as a TCP one
     * does once connected, and joins the same path. */
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS)
        die("connect %s:%d: %s", opt.host, opt.port, strerror(errno));
    struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = c->id };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->writing = 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(double p)
{
    if (!nlat)
        return 0;
    size_t rank = (size_t)(p * nlat + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > nlat)
        rank = nlat;
    return lat[rank - 1] / 1e3;
}

static void report(void)
{
    double elapsed = (window_end - window_start) / 1e9;
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < nlat; i++)
        sum += lat[i];
    printf("RESULT requests=%llu bytes=%llu elapsed=%.6f rps=%.1f "
           "mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f "
           "loadgen_cpu=%.6f loadgen_wait=%.6f connections=%d",
           (unsigned long long)completed, (unsigned long long)bytes_done, elapsed,
           completed / elapsed, nlat ? sum / nlat / 1e3 : 0.0, percentile_us(0.50),
           percentile_us(0.90), percentile_us(0.99), nlat ? lat[nlat - 1] / 1e3 : 0.0,
           cpu_seconds(&ru_end) - cpu_seconds(&ru_start), delay_end - delay_start, opt.nconns);
    if (opt.udp)
        printf(" lost=%llu", (unsigned long long)lost);
    printf("\n");
    fflush(stdout);
}

/* Returns 1 when the caller asked to stop. */
static int on_stdin(void)
{
    char buf[64];
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return n <= 0 || memmem(buf, n, "quit", 4) != NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode echo|http --port P [--host 127.0.0.1] [--conns N]\n"
            "               [--size BYTES] [--warmup S] [--duration S] [--timeout S]\n"
            "               [--expect-body TEXT] [--tls | --udp]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tls")) {
#ifdef LOADGEN_TLS
            opt.tls = 1;
            continue;
#else
            fprintf(stderr, "this loadgen was built without TLS (-DLOADGEN_TLS, "
                            "-lssl -lcrypto)\n");
            exit(2);
#endif
        }
        if (!strcmp(a, "--udp")) {
            opt.udp = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "echo")) opt.mode = MODE_ECHO;
            else if (!strcmp(v, "http")) opt.mode = MODE_HTTP;
            else usage();
        } else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--conns")) opt.nconns = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--expect-body")) opt.expect_body = v;
        else usage();
    }
    if (opt.port <= 0 || opt.nconns <= 0 || opt.size == 0 || opt.duration <= 0
            || (opt.udp && (opt.tls || opt.mode != MODE_ECHO)))
        usage();
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)opt.nconns + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)opt.nconns + 16)
            die("RLIMIT_NOFILE hard limit %llu is too low for %d connections",
                (unsigned long long)rl.rlim_max, opt.nconns);
    }

    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(opt.port) };
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
        die("not an IPv4 address: %s", opt.host);

    pattern = malloc(opt.size + PATTERN_SPAN);
    for (size_t i = 0; i < opt.size + PATTERN_SPAN; i++)
        pattern[i] = (char)(i * 131 + (i >> 8) * 7 + 1);
    http_req_len = snprintf(http_req, sizeof http_req,
                            "GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n", opt.host, opt.port);

#ifdef LOADGEN_TLS
    if (opt.tls) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx
                || !SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION)
                || !SSL_CTX_set_ciphersuites(tls_ctx, TLS_SUITE))
            die("setting up TLS: %s", tls_error(0));
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
        /* Large messages go out record by record; a retried write may
         * come from the same bytes at the same place, as here. */
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                                  | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* One recv per burst of records rather than two per record. */
        SSL_CTX_set_read_ahead(tls_ctx, 1);
    }
#endif

    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc(opt.nconns, sizeof *conns);
    for (int i = 0; i < opt.nconns; i++) {
        conns[i].id = i;
        if (opt.mode == MODE_HTTP)
            conns[i].resp = malloc(HTTP_MAX);
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = { .events = EPOLLIN, .data.u64 = STDIN_TAG };
    int watching_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev) == 0;

    uint64_t t0 = now_ns();
    last_progress = t0;
    for (int i = 0; i < opt.nconns; i++)
        open_conn(&conns[i], &addr);
    uint64_t warm_end = 0, last_overdue_check = t0;
    uint64_t timeout_ns = (uint64_t)(opt.timeout * 1e9);

    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, 50);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        uint64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == STDIN_TAG) {
                if (on_stdin()) {
                    if (phase != AFTER)
                        die("stopped before the measurement ended");
                    report();
                    return 0;
                }
                continue;
            }
            struct conn *c = &conns[events[i].data.u64];
            uint32_t ev = events[i].events;
            if (!c->connected) {
#ifdef LOADGEN_TLS
                if (c->handshaking) {
                    handshake(c, now);
                    continue;
                }
#endif
                if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_connected(c, now);
                continue;
            }
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (opt.udp)
                    on_datagram(c);
                else
                    on_readable(c);
            }
            if ((ev & EPOLLOUT) && c->writing)
                send_some(c);
        }
        now = now_ns();
        if (phase == CONNECTING && nconnected == opt.nconns) {
            phase = WARMUP;
            warm_end = now + (uint64_t)(opt.warmup * 1e9);
            for (int i = 0; i < opt.nconns; i++)
                start_request(&conns[i], now);
        } else if (phase == WARMUP && nwarm == opt.nconns && now >= warm_end) {
            phase = MEASURE;
            getrusage(RUSAGE_SELF, &ru_start);
            delay_start = run_delay();
            window_start = now_ns();
            printf("GO\n");
            fflush(stdout);
        } else if (phase == MEASURE && now >= window_start + (uint64_t)(opt.duration * 1e9)) {
            window_end = now;
            getrusage(RUSAGE_SELF, &ru_end);
            delay_end = run_delay();
            phase = AFTER;
            /* Sorting latencies waits for "quit": the load must not pause
             * while the caller takes the server's closing snapshot. */
            printf("END\n");
            fflush(stdout);
            if (!watching_stdin) {
                report();
                return 0;
            }
        }
        /* Every tenth of the resend time: scanning every socket at each
         * wakeup would add to the generator's cost per request. */
        if (opt.udp && phase != CONNECTING
                && now - last_overdue_check >= RESEND_MS * 100000ull) {
            give_up_overdue(now);
            last_overdue_check = now;
        }
        if (now - last_progress > timeout_ns) {
            int waiting = 0;
            for (int i = 0; i < opt.nconns; i++)
                waiting += !conns[i].connected || conns[i].got < conns[i].len;
            die("no progress for %.1f s: %d of %d connections waiting (%s)",
                opt.timeout, waiting, opt.nconns,
                phase != CONNECTING ? "awaiting responses"
                : opt.tls ? "connecting or in the TLS handshake" : "connecting");
        }
    }
}
