/* Closed-loop TLS load generator for the TLS benchmarks (built by the bench
 * when OpenSSL's headers are there: cc ... -lssl -lcrypto).
 *
 *   tlsgen echo HOST PORT CONNS SIZE SECONDS [WARMUP]
 *       CONNS TLS connections (each handshaken before the clock starts),
 *       each sends SIZE bytes and waits for all SIZE bytes to come back
 *       before sending again.
 *   tlsgen conn HOST PORT PARALLEL SIZE SECONDS [WARMUP]
 *       Short TLS connections, PARALLEL at a time: connect, a full
 *       handshake, one SIZE-byte echo, a close_notify, close with an RST
 *       (SO_LINGER 0, so no TIME_WAIT piles up on the client's ports), then
 *       a new one.  A "request" is one whole connection (latency from
 *       connect() to the end of the echo).
 *
 * Both print "start" on a line of its own when the measured window opens
 * (after WARMUP seconds), so the caller can read the server's CPU time
 * then, and at the end one JSON line like loadgen's: requests, seconds,
 * requests/s, p50/p99/max latency (µs), errors, plus the TLS version and
 * cipher negotiated, the handshakes done and "stalled": connections whose
 * echo (or, in `conn`, whose whole exchange) had not come back after
 * STALL_NS.  In `conn` a stalled connection is counted as an error, closed
 * and replaced; in `echo` those still waiting at the end are counted.
 *
 * `echo` sends its first message on a connection only once the server's
 * TLS 1.3 session ticket has come back on it: the server has then read the
 * client's Finished, so the first message does not arrive with the end of
 * the handshake (the measured window is about the record layer; `conn`
 * sends at once, as real clients do).  A server that sends no ticket is
 * waited for 1 s at most.
 *
 * The client verifies nothing (the bench's certificate is self-signed),
 * keeps no session cache and never offers a session to resume: every
 * connection does a full handshake, TLS 1.3 where the server allows it
 * (OpenSSL's defaults otherwise).  One thread, epoll, non-blocking
 * sockets; latency in the same log-linear histogram as loadgen's. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "latency.h"

#define RBUF_SIZE (256 * 1024)

enum { HANDSHAKE, ECHO };

typedef struct {
    int fd;
    SSL *ssl;
    int state;
    int tickets;
    size_t sent, got;
    uint64_t t0;
} conn_t;

static struct sockaddr_in addr;
static size_t msg_size;
static char *msg, *rbuf;
static SSL_CTX *ctx;
static uint64_t handshakes;
static char version[32] = "?", cipher[64] = "?";
static int handshake_only;    /* drive() stops once the handshake is done */
static uint64_t stalled;

#define STALL_NS 2000000000ull

/* A session ticket came: counted, not kept (nothing is ever resumed). */
static int on_ticket(SSL *ssl, SSL_SESSION *sess)
{
    (void)sess;
    conn_t *c = SSL_get_app_data(ssl);
    if (c != NULL)
        c->tickets++;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A new non-blocking connection in the epoll set, its TLS handshake not
 * yet started; -1 when socket() or connect() fails outright. */
static int open_conn(int ep, conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        close(fd);
        return -1;
    }
    SSL_set_connect_state(ssl);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->ssl = ssl;
    c->state = HANDSHAKE;
    SSL_set_app_data(ssl, c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
}

/* Ends a connection: close_notify when `polite` (not waited for), then
 * close with an RST. */
static void close_conn(conn_t *c, int polite)
{
    struct linger lg = {1, 0};
    if (polite)
        SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);     /* also takes it out of the epoll set */
    c->fd = -1;
    c->ssl = NULL;
}

static int want_more(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Moves a connection on as far as its socket allows: the handshake, then
 * the unsent part of the message and whatever has come back (both, so a
 * message larger than the socket buffers cannot deadlock against a server
 * that echoes as it reads).  0 to wait for epoll, 1 when the whole echo is
 * back, -1 on an error or EOF. */
static int drive(conn_t *c)
{
    if (c->state == HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1)
            return want_more(c->ssl, r) ? 0 : -1;
        c->state = ECHO;
        handshakes++;
        if (version[0] == '?') {
            snprintf(version, sizeof version, "%s", SSL_get_version(c->ssl));
            snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
        }
        if (handshake_only)
            return 0;
    }
    for (;;) {
        int progress = 0;
        if (c->sent < msg_size) {
            int n = SSL_write(c->ssl, msg + c->sent, (int)(msg_size - c->sent));
            if (n > 0) {
                c->sent += (size_t)n;
                progress = 1;
            } else if (!want_more(c->ssl, n)) {
                return -1;
            }
        }
        int n = SSL_read(c->ssl, rbuf, RBUF_SIZE);
        if (n > 0) {
            c->got += (size_t)n;
            if (c->got >= msg_size)
                return 1;
            continue;
        }
        if (!want_more(c->ssl, n))
            return -1;
        if (!progress)
            return 0;
    }
}

static void print_result(uint64_t requests, double seconds, uint64_t maxlat, uint64_t errors)
{
    printf("{\"requests\": %llu, \"seconds\": %.3f, \"rps\": %.1f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"max_us\": %.1f, \"errors\": %llu, \"handshakes\": %llu, "
           "\"stalled\": %llu, \"tls_version\": \"%s\", \"cipher\": \"%s\"}\n",
           (unsigned long long)requests, seconds, (double)requests / seconds,
           percentile(requests, 0.50), percentile(requests, 0.99), (double)maxlat / 1000.0,
           (unsigned long long)errors, (unsigned long long)handshakes, (unsigned long long)stalled,
           version, cipher);
}

static void record(uint64_t t0, uint64_t done, uint64_t measure_from, uint64_t end,
                   uint64_t *requests, uint64_t *maxlat)
{
    if (t0 >= measure_from && done < end) {
        uint64_t lat = done - t0;
        hist[bucket_of(lat)]++;
        (*requests)++;
        if (lat > *maxlat)
            *maxlat = lat;
    }
}

/* Says "start" once, when the measured window opens. */
static void mark_start(uint64_t t, uint64_t measure_from, int *said)
{
    if (!*said && t >= measure_from) {
        printf("start\n");
        fflush(stdout);
        *said = 1;
    }
}

/* Moves an echo connection on: every echo that is back is recorded and
 * answered with the next message, until the socket would block. */
static void echo_event(conn_t *c, uint64_t measure_from, uint64_t end, uint64_t *requests,
                       uint64_t *maxlat, uint64_t *errors)
{
    int r;
    while ((r = drive(c)) == 1) {
        uint64_t done = now_ns();
        record(c->t0, done, measure_from, end, requests, maxlat);
        c->sent = c->got = 0;
        c->t0 = done;
    }
    if (r < 0) {
        (*errors)++;
        close_conn(c, 0);
    }
}

static int run_echo(int conns, double seconds, double warmup)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)conns, sizeof *cs);
    struct epoll_event evs[256];
    /* Every connection handshaken first, before the clock starts, and its
     * session ticket read (see the header). */
    int pending = conns;
    handshake_only = 1;
    for (int i = 0; i < conns; i++)
        if (open_conn(ep, &cs[i]) < 0)
            die("connect");
    uint64_t t_start = now_ns(), give_up = t_start + 10000000000ull, ticket_wait = 0;
    for (int round = 0; pending > 0; round++) {
        uint64_t t = now_ns();
        if (t > give_up) {
            fprintf(stderr, "tlsgen echo: %d handshake(s) not done after 10 s\n", pending);
            return 2;
        }
        int n = round == 0 ? conns : epoll_wait(ep, evs, 256, 100);
        int handshaking = 0;
        for (int i = 0; i < n; i++) {
            conn_t *c = round == 0 ? &cs[i] : evs[i].data.ptr;
            if (c->state == ECHO && c->tickets > 0)
                continue;
            int r = c->state == HANDSHAKE ? drive(c) : 0;
            if (r == 0 && c->state == ECHO) {
                /* Reads the ticket(s) that came, nothing else can. */
                r = SSL_read(c->ssl, rbuf, RBUF_SIZE);
                r = r > 0 ? -1 : want_more(c->ssl, r) ? 0 : -1;
            }
            if (r < 0) {
                fprintf(stderr, "tlsgen echo: handshake failed: ");
                ERR_print_errors_fp(stderr);
                fprintf(stderr, "\n");
                return 2;
            }
            if (c->state == ECHO && c->tickets > 0)
                pending--;
        }
        for (int i = 0; i < conns; i++)
            handshaking += cs[i].state == HANDSHAKE;
        if (!handshaking && pending > 0) {
            if (!ticket_wait)
                ticket_wait = now_ns() + 1000000000ull;
            else if (now_ns() > ticket_wait) {
                fprintf(stderr, "tlsgen echo: no session ticket on %d connection(s) after 1 s: "
                        "going on without\n", pending);
                break;
            }
        }
    }
    /* drive() sent nothing yet: msg_size bytes are to go on every one. */
    handshake_only = 0;
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t requests = 0, errors = 0, maxlat = 0;
    int said = 0;
    /* The first message on every connection; an echo may well be back
     * before drive() returns (it then returns 1), so the first call is
     * handled like any other. */
    for (int i = 0; i < conns; i++) {
        cs[i].t0 = now_ns();
        echo_event(&cs[i], measure_from, end, &requests, &maxlat, &errors);
    }
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        mark_start(t, measure_from, &said);
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd >= 0)
                echo_event(c, measure_from, end, &requests, &maxlat, &errors);
        }
    }
    mark_start(end, measure_from, &said);
    uint64_t t_end = now_ns();
    for (int i = 0; i < conns; i++)
        if (cs[i].fd >= 0 && t_end - cs[i].t0 > STALL_NS)
            stalled++;
    print_result(requests, seconds, maxlat, errors);
    return 0;
}

/* Timed short TLS connections, PARALLEL at a time (see the header). */
static int run_conn(int parallel, double seconds, double warmup)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)parallel, sizeof *cs);
    struct epoll_event evs[256];
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t requests = 0, errors = 0, maxlat = 0;
    uint64_t last_scan = start;
    int dead = 0, said = 0;
    for (int i = 0; i < parallel; i++) {
        uint64_t t0 = now_ns();
        if (open_conn(ep, &cs[i]) < 0) {
            cs[i].fd = -1;
            errors++;
            dead++;
        }
        cs[i].t0 = t0;
    }
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        mark_start(t, measure_from, &said);
        /* Slots whose connect() failed outright are retried, politely. */
        for (int i = 0; dead && i < parallel; i++) {
            if (cs[i].fd >= 0)
                continue;
            uint64_t t0 = now_ns();
            if (open_conn(ep, &cs[i]) == 0) {
                cs[i].t0 = t0;
                dead--;
            } else {
                cs[i].fd = -1;
            }
        }
        /* A connection stuck for STALL_NS is an error: replaced. */
        if (t - last_scan > STALL_NS / 20) {
            last_scan = t;
            for (int i = 0; i < parallel; i++) {
                conn_t *c = &cs[i];
                if (c->fd < 0 || t - c->t0 < STALL_NS)
                    continue;
                stalled++;
                errors++;
                close_conn(c, 0);
                if (open_conn(ep, c) < 0) {
                    c->fd = -1;
                    dead++;
                }
                c->t0 = now_ns();
            }
        }
        int n = epoll_wait(ep, evs, 256, dead ? 1 : 10);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            int r = drive(c);
            if (r == 0)
                continue;
            uint64_t done = now_ns();
            if (r < 0)
                errors++;
            else
                record(c->t0, done, measure_from, end, &requests, &maxlat);
            close_conn(c, r > 0);
            if (open_conn(ep, c) < 0) {
                c->fd = -1;
                errors++;
                dead++;
            }
            c->t0 = done;
        }
    }
    mark_start(end, measure_from, &said);
    print_result(requests, seconds, maxlat, errors);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7 || (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "conn") != 0)) {
        fprintf(stderr, "usage: tlsgen echo|conn HOST PORT CONNS SIZE SECONDS [WARMUP]\n");
        return 2;
    }
    raise_nofile();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", argv[2]);
        return 2;
    }
    int conns = atoi(argv[4]);
    msg_size = (size_t)atol(argv[5]);
    if (msg_size == 0 || conns < 1) {
        fprintf(stderr, "tlsgen: SIZE and CONNS must be at least 1\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        die("SSL_CTX_new");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Tickets are seen (on_ticket), never stored nor offered back. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_ticket);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    msg = malloc(msg_size);
    rbuf = malloc(RBUF_SIZE);
    memset(msg, 'x', msg_size);
    double seconds = atof(argv[6]), warmup = argc > 7 ? atof(argv[7]) : 0.5;
    if (strcmp(argv[1], "echo") == 0)
        return run_echo(conns, seconds, warmup);
    return run_conn(conns, seconds, warmup);
}
