/* Closed-loop TCP load generator for the echo benchmarks (built by the bench).
 *
 *   loadgen echo  HOST PORT CONNS SIZE SECONDS [WARMUP]
 *       CONNS connections, each sends SIZE bytes and waits for all SIZE
 *       bytes to come back before sending again.  Prints one JSON line:
 *       requests, seconds, requests/s, p50/p99/max latency (µs), errors.
 *   loadgen idle  HOST PORT CONNS
 *       Opens CONNS connections, does one 16-byte echo on each (so the
 *       server has accepted and set up every one), prints "ready" and
 *       holds them open until stdin closes.
 *   loadgen short HOST PORT TOTAL PARALLEL REPORT_EVERY
 *       TOTAL short connections, PARALLEL at a time: connect, one 16-byte
 *       echo, close with an RST (SO_LINGER 0, so no TIME_WAIT piles up on
 *       the client's ports).  Prints "progress N" every REPORT_EVERY
 *       connections and waits for a line on stdin before going on, so the
 *       caller can sample the server's memory at fixed points.  Ends
 *       with "done FINISHED ERRORS STALLED": STALLED is 1 when no
 *       connection finished for 5 s and the run gave up (the open ones
 *       counted as errors).
 *   loadgen conn  HOST PORT PARALLEL SIZE SECONDS [WARMUP]
 *       Timed short connections, PARALLEL at a time: connect, one SIZE-byte
 *       echo, close with an RST (as in `short`), then a new one.  Prints one
 *       JSON line like `echo`'s, a "request" being one whole connection
 *       (latency from connect() to the end of the echo).
 *   loadgen udp   HOST PORT SOCKS INFLIGHT SIZE SECONDS [WARMUP]
 *       SOCKS UDP sockets, each keeping INFLIGHT datagrams of SIZE bytes
 *       (>= 16) outstanding: every echo that comes back is answered with a
 *       new datagram.  A datagram with no echo after 50 ms counts as lost
 *       and is sent again (a late echo of it is ignored), so loss cannot
 *       hang the run.  Prints `echo`'s JSON line plus "lost".
 *
 * One thread, epoll, non-blocking sockets.  Latency is kept in a
 * log-linear histogram (1/64 relative resolution), which is exact enough
 * for percentiles and costs no allocation per request. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "latency.h"

typedef struct {
    int fd;
    size_t sent, got;
    uint64_t t0;
    int connected;
} conn_t;

static struct sockaddr_in addr;
static size_t msg_size;
static char *msg, *rbuf;

static int open_conn(int ep, conn_t *c, int blocking_connect)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!blocking_connect)
        fcntl(fd, F_SETFL, O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    if (blocking_connect)
        fcntl(fd, F_SETFL, O_NONBLOCK);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");
    return 0;
}

/* Pushes the unsent part of the message; returns -1 on a socket error. */
static int pump_send(conn_t *c)
{
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0)
            return (errno == EAGAIN) ? 0 : -1;
        c->sent += (size_t)n;
    }
    return 0;
}

/* Reads what is there; returns 1 when the whole echo is back, -1 on error/EOF. */
static int pump_recv(conn_t *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, msg_size, 0);
        if (n < 0)
            return (errno == EAGAIN) ? (c->got >= msg_size) : -1;
        if (n == 0)
            return -1;
        c->got += (size_t)n;
        if (c->got >= msg_size)
            return 1;
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run_echo(int conns, double seconds, double warmup)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)conns, sizeof *cs);
    for (int i = 0; i < conns; i++)
        if (open_conn(ep, &cs[i], 1) < 0)
            die("connect");
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t requests = 0, errors = 0, maxlat = 0;
    for (int i = 0; i < conns; i++) {
        cs[i].t0 = now_ns();
        if (pump_send(&cs[i]) < 0)
            errors++;
    }
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if ((evs[i].events & EPOLLOUT) && pump_send(c) < 0)
                goto broken;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int r = pump_recv(c);
                if (r < 0)
                    goto broken;
                if (r == 1) {
                    uint64_t done = now_ns();
                    if (c->t0 >= measure_from && done < end) {
                        uint64_t lat = done - c->t0;
                        hist[bucket_of(lat)]++;
                        requests++;
                        if (lat > maxlat)
                            maxlat = lat;
                    }
                    c->sent = c->got = 0;
                    c->t0 = done;
                    if (pump_send(c) < 0)
                        goto broken;
                }
            }
            continue;
        broken:
            errors++;
            close(c->fd);
            c->fd = -1;
        }
    }
    printf("{\"requests\": %llu, \"seconds\": %.3f, \"rps\": %.1f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"max_us\": %.1f, \"errors\": %llu}\n",
           (unsigned long long)requests, seconds, (double)requests / seconds,
           percentile(requests, 0.50), percentile(requests, 0.99), (double)maxlat / 1000.0,
           (unsigned long long)errors);
    return errors ? 1 : 0;
}

/* One blocking echo of 16 bytes on a fresh connection (for idle); gives
 * up after STALL_NS, so a server that stops answering cannot hang the bench. */
#define STALL_NS 5000000000ull

static int echo_once(int fd)
{
    char b[16];
    size_t got = 0;
    uint64_t give_up = now_ns() + STALL_NS;
    if (send(fd, "0123456789abcdef", 16, MSG_NOSIGNAL) != 16)
        return -1;
    while (got < 16) {
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN && now_ns() < give_up) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                continue;
            }
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int blocking_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static int run_idle(int conns)
{
    int *fds = calloc((size_t)conns, sizeof *fds);
    for (int i = 0; i < conns; i++) {
        fds[i] = blocking_conn();
        if (fds[i] < 0 || echo_once(fds[i]) < 0)
            die("idle connect");
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        ;
    for (int i = 0; i < conns; i++)
        close(fds[i]);
    return 0;
}

/* Short connections, PARALLEL at a time, through epoll. */
/* One epoll event of a short-lived connection: 0 to go on, < 0 on an
 * error, > 0 when the exchange is over. */
static int conn_event(conn_t *c, uint32_t events)
{
    if (events & EPOLLERR)
        return -1;
    int r = 0;
    if (events & EPOLLOUT)
        r = pump_send(c);
    if (r == 0 && (events & (EPOLLIN | EPOLLHUP)))
        r = pump_recv(c);
    return r;
}

static int run_short(long total, int parallel, long report_every)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)parallel, sizeof *cs);
    long started = 0, finished = 0, errors = 0, next_report = report_every;
    int active = 0, stalled = 0;
    uint64_t last_done = now_ns();
    msg_size = 16;
    struct linger lg = {1, 0};
    struct epoll_event evs[256];
    for (int i = 0; i < parallel && started < total; i++, started++, active++)
        if (open_conn(ep, &cs[i], 0) < 0)
            die("connect");
    while (active) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (now_ns() - last_done > STALL_NS) {
            /* No connection has finished for that long: the server has
             * stopped accepting or answering.  What is open counts as
             * errors and the run ends rather than hangs. */
            fprintf(stderr, "loadgen short: no connection finished for %llu s, %d open\n",
                    (unsigned long long)(STALL_NS / 1000000000u), active);
            errors += active;
            stalled = 1;
            break;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            int r = conn_event(c, evs[i].events);
            if (r == 0)
                continue;
            if (r < 0)
                errors++;
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c->fd);
            c->fd = -1;
            finished++;
            last_done = now_ns();
            active--;
            if (finished >= next_report) {
                printf("progress %ld %ld\n", finished, errors);
                fflush(stdout);
                char line[64];
                if (!fgets(line, sizeof line, stdin))
                    return 1;
                next_report += report_every;
                last_done = now_ns();   /* the caller's pause is no stall */
            }
            if (started < total) {
                if (open_conn(ep, c, 0) < 0) {
                    errors++;
                    continue;
                }
                started++;
                active++;
            }
        }
    }
    printf("done %ld %ld %d\n", finished, errors, stalled);
    return errors ? 1 : 0;
}

static void print_result(uint64_t requests, double seconds, uint64_t maxlat, uint64_t errors,
                         const char *extra)
{
    printf("{\"requests\": %llu, \"seconds\": %.3f, \"rps\": %.1f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"max_us\": %.1f, \"errors\": %llu%s}\n",
           (unsigned long long)requests, seconds, (double)requests / seconds,
           percentile(requests, 0.50), percentile(requests, 0.99), (double)maxlat / 1000.0,
           (unsigned long long)errors, extra);
}

/* Timed short connections, PARALLEL at a time (see the header). */
static int run_conn(int parallel, double seconds, double warmup)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *cs = calloc((size_t)parallel, sizeof *cs);
    struct linger lg = {1, 0};
    struct epoll_event evs[256];
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t requests = 0, errors = 0, maxlat = 0;
    int dead = 0;
    for (int i = 0; i < parallel; i++) {
        uint64_t t0 = now_ns();
        if (open_conn(ep, &cs[i], 0) < 0) {
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
        /* Slots whose connect() failed outright are retried, politely. */
        for (int i = 0; dead && i < parallel; i++) {
            if (cs[i].fd >= 0)
                continue;
            uint64_t t0 = now_ns();
            if (open_conn(ep, &cs[i], 0) == 0) {
                cs[i].t0 = t0;
                dead--;
            } else {
                cs[i].fd = -1;
            }
        }
        int n = epoll_wait(ep, evs, 256, dead ? 1 : 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            int r = conn_event(c, evs[i].events);
            if (r == 0)
                continue;
            uint64_t done = now_ns();
            if (r < 0) {
                errors++;
            } else if (c->t0 >= measure_from && done < end) {
                uint64_t lat = done - c->t0;
                hist[bucket_of(lat)]++;
                requests++;
                if (lat > maxlat)
                    maxlat = lat;
            }
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(c->fd);      /* also takes it out of the epoll set */
            if (open_conn(ep, c, 0) < 0) {
                c->fd = -1;
                errors++;
                dead++;
            }
            c->t0 = done;
        }
    }
    print_result(requests, seconds, maxlat, errors, "");
    return 0;
}

/* UDP: one slot per datagram in flight; the datagram carries its socket,
 * slot and sequence number, so an echo is matched to the slot it answers
 * and a late echo of a datagram already given up on is told apart. */
typedef struct {
    uint64_t sent_ns;
    uint32_t seq;
} slot_t;

#define UDP_TIMEOUT_NS 50000000ull

static int udp_send(int fd, uint32_t sock, uint32_t slot, slot_t *sl)
{
    uint32_t hdr[3] = {sock, slot, ++sl->seq};
    memcpy(msg, hdr, sizeof hdr);
    sl->sent_ns = now_ns();
    return send(fd, msg, msg_size, 0) == (ssize_t)msg_size ? 0 : -1;
}

static int run_udp(int socks, int inflight, double seconds, double warmup)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = calloc((size_t)socks, sizeof *fds);
    slot_t *slots = calloc((size_t)socks * (size_t)inflight, sizeof *slots);
    uint64_t start = now_ns();
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t requests = 0, errors = 0, lost = 0, maxlat = 0, last_scan = start;
    for (int s = 0; s < socks; s++) {
        fds[s] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fds[s] < 0 || connect(fds[s], (struct sockaddr *)&addr, sizeof addr) < 0)
            die("udp socket");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[s], &ev) < 0)
            die("epoll_ctl");
        for (int k = 0; k < inflight; k++)
            if (udp_send(fds[s], (uint32_t)s, (uint32_t)k, &slots[s * inflight + k]) < 0)
                errors++;   /* the timeout below sends it again */
    }
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        if (t - last_scan >= UDP_TIMEOUT_NS / 10) {
            last_scan = t;
            for (int s = 0; s < socks; s++)
                for (int k = 0; k < inflight; k++) {
                    slot_t *sl = &slots[s * inflight + k];
                    if (t - sl->sent_ns >= UDP_TIMEOUT_NS) {
                        lost++;
                        if (udp_send(fds[s], (uint32_t)s, (uint32_t)k, sl) < 0)
                            errors++;
                    }
                }
        }
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            int s = (int)evs[i].data.u32;
            for (;;) {
                ssize_t got = recv(fds[s], rbuf, msg_size, 0);
                if (got < 0) {
                    if (errno != EAGAIN)
                        errors++;   /* ECONNREFUSED: an ICMP error came back */
                    break;
                }
                uint32_t hdr[3];
                if ((size_t)got != msg_size)
                    continue;
                memcpy(hdr, rbuf, sizeof hdr);
                if (hdr[0] != (uint32_t)s || hdr[1] >= (uint32_t)inflight)
                    continue;
                slot_t *sl = &slots[s * inflight + (int)hdr[1]];
                if (hdr[2] != sl->seq)
                    continue;       /* late echo of a datagram counted lost */
                uint64_t done = now_ns();
                if (sl->sent_ns >= measure_from && done < end) {
                    uint64_t lat = done - sl->sent_ns;
                    hist[bucket_of(lat)]++;
                    requests++;
                    if (lat > maxlat)
                        maxlat = lat;
                }
                if (udp_send(fds[s], (uint32_t)s, hdr[1], sl) < 0)
                    errors++;
            }
        }
    }
    char extra[64];
    snprintf(extra, sizeof extra, ", \"lost\": %llu", (unsigned long long)lost);
    print_result(requests, seconds, maxlat, errors, extra);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen echo|idle|short|conn|udp HOST PORT ...\n");
        return 2;
    }
    raise_nofile();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "echo") == 0 && argc >= 7) {
        msg_size = (size_t)atol(argv[5]);
        msg = malloc(msg_size);
        rbuf = malloc(msg_size);
        memset(msg, 'x', msg_size);
        return run_echo(atoi(argv[4]), atof(argv[6]), argc > 7 ? atof(argv[7]) : 0.5);
    }
    if (strcmp(argv[1], "idle") == 0)
        return run_idle(atoi(argv[4]));
    if (strcmp(argv[1], "short") == 0 && argc >= 7) {
        msg = "0123456789abcdef";
        rbuf = malloc(64);
        return run_short(atol(argv[4]), atoi(argv[5]), atol(argv[6]));
    }
    if (strcmp(argv[1], "conn") == 0 && argc >= 7) {
        msg_size = (size_t)atol(argv[5]);
        if (msg_size == 0 || atoi(argv[4]) < 1) {
            fprintf(stderr, "conn: SIZE and PARALLEL must be at least 1\n");
            return 2;
        }
        msg = malloc(msg_size);
        rbuf = malloc(msg_size);
        memset(msg, 'x', msg_size);
        return run_conn(atoi(argv[4]), atof(argv[6]), argc > 7 ? atof(argv[7]) : 0.5);
    }
    if (strcmp(argv[1], "udp") == 0 && argc >= 8) {
        msg_size = (size_t)atol(argv[6]);
        if (msg_size < 16 || msg_size > 65507 || atoi(argv[4]) < 1 || atoi(argv[5]) < 1) {
            fprintf(stderr, "udp: SIZE must be 16..65507, SOCKS and INFLIGHT at least 1\n");
            return 2;
        }
        msg = malloc(msg_size);
        rbuf = malloc(msg_size);
        memset(msg, 'x', msg_size);
        return run_udp(atoi(argv[4]), atoi(argv[5]), atof(argv[7]), argc > 8 ? atof(argv[8]) : 0.5);
    }
    fprintf(stderr, "bad arguments\n");
    return 2;
}
