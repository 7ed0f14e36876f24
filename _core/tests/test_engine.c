/* Unit tests of the completion engine.  One test per process run:
 *     test_engine NAME      exit 0 pass, 1 fail, 77 skip
 *     test_engine list      prints the test names
 * Built and run by tests/test_engine.py; `make sanitize` builds it with
 * ThreadSanitizer and AddressSanitizer+UBSan and runs every test. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../engine/engine_internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : dflt;
}

/* ---- MPSC queue: 4 producers x N items, none lost, none duplicated, order
 * per producer kept, and the wakeup coalesced (at most one eventfd write per
 * consumer sleep). ---- */

#define NPROD 4

typedef struct item {
    aio_qnode node;
    uint32_t producer;
    uint32_t seq;
} item;

typedef struct prod_arg {
    aio_mpsc *q;
    aio_wakeup *w;
    item *items;
    uint32_t id;
    uint32_t n;
} prod_arg;

static void *producer(void *p)
{
    prod_arg *a = p;
    for (uint32_t i = 0; i < a->n; i++) {
        item *it = &a->items[i];
        it->producer = a->id;
        it->seq = i;
        aio_mpsc_push(a->q, &it->node);
        aio_wakeup_signal(a->w);
    }
    return NULL;
}

static int test_mpsc_stress(void)
{
    uint32_t n = (uint32_t)env_long("AIO_TEST_ITEMS", 1000000);
    aio_mpsc q;
    aio_wakeup w;
    aio_mpsc_init(&q);
    CHECK(aio_wakeup_init(&w) == 0);
    pthread_t t[NPROD];
    prod_arg args[NPROD];
    for (uint32_t p = 0; p < NPROD; p++) {
        args[p] = (prod_arg){&q, &w, calloc(n, sizeof(item)), p, n};
        CHECK(args[p].items != NULL);
    }
    for (uint32_t p = 0; p < NPROD; p++)
        CHECK(pthread_create(&t[p], NULL, producer, &args[p]) == 0);

    uint32_t expect[NPROD] = {0};
    uint64_t total = 0, sleeps = 0, flushes = 0;
    while (total < (uint64_t)NPROD * n) {
        aio_wakeup_sleep_begin(&w);
        if (aio_mpsc_empty(&q)) {
            sleeps++;
            struct pollfd pfd = {.fd = w.fd, .events = POLLIN};
            poll(&pfd, 1, 1000);
        }
        aio_wakeup_sleep_end(&w);
        aio_wakeup_drain(&w);
        aio_qnode *qn = aio_mpsc_flush(&q);
        if (qn)
            flushes++;
        for (; qn != NULL; qn = qn->next) {
            item *it = (item *)qn;
            CHECK(it->producer < NPROD);
            /* Each producer's items arrive in the order it pushed them, so
             * a lost or duplicated item breaks the sequence. */
            CHECK(it->seq == expect[it->producer]);
            expect[it->producer]++;
            total++;
        }
    }
    for (uint32_t p = 0; p < NPROD; p++) {
        pthread_join(t[p], NULL);
        CHECK(expect[p] == n);
        free(args[p].items);
    }
    CHECK(aio_mpsc_flush(&q) == NULL);
    uint64_t writes = atomic_load(&w.writes);
    printf("items=%llu flushes=%llu sleeps=%llu eventfd_writes=%llu\n",
           (unsigned long long)total, (unsigned long long)flushes,
           (unsigned long long)sleeps, (unsigned long long)writes);
    /* Coalescing: a write happens only on a SLEEPING -> SIGNALLED transition,
     * and each sleep_begin allows one such transition. */
    CHECK(writes <= flushes + sleeps);
    aio_wakeup_close(&w);
    return 0;
}

/* ---- wakeup: no write while awake; one write for many signals per sleep ---- */

typedef struct sig_arg {
    aio_wakeup *w;
    int n;
} sig_arg;

static void *signaller(void *p)
{
    sig_arg *a = p;
    for (int i = 0; i < a->n; i++)
        aio_wakeup_signal(a->w);
    return NULL;
}

static int test_wakeup_coalescing(void)
{
    aio_wakeup w;
    CHECK(aio_wakeup_init(&w) == 0);
    /* Awake consumer: producers never write. */
    for (int i = 0; i < 1000; i++)
        aio_wakeup_signal(&w);
    CHECK(atomic_load(&w.writes) == 0);

    for (int round = 0; round < 100; round++) {
        aio_wakeup_sleep_begin(&w);
        pthread_t t[NPROD];
        sig_arg a = {&w, 1000};
        for (int p = 0; p < NPROD; p++)
            CHECK(pthread_create(&t[p], NULL, signaller, &a) == 0);
        for (int p = 0; p < NPROD; p++)
            pthread_join(t[p], NULL);
        struct pollfd pfd = {.fd = w.fd, .events = POLLIN};
        CHECK(poll(&pfd, 1, 1000) == 1);     /* the sleeper was woken */
        CHECK(aio_wakeup_sleep_end(&w) == 1);
        aio_wakeup_drain(&w);
        /* 4000 signals during one sleep: exactly one write. */
        CHECK(atomic_load(&w.writes) == (uint64_t)round + 1);
    }
    aio_wakeup_close(&w);
    return 0;
}

/* ---- buffer pool: concurrent get/put, no buffer handed out twice ---- */

typedef struct pool_arg {
    aio_pool *p;
    uint32_t id;
    long n;
} pool_arg;

static void *pool_worker(void *v)
{
    pool_arg *a = v;
    void *held[8];
    for (long i = 0; i < a->n; i++) {
        int k = (int)(i % 8) + 1;
        for (int j = 0; j < k; j++) {
            held[j] = aio_pool_get(a->p);
            CHECK(held[j] != NULL);
            memset(held[j], (int)a->id, a->p->bufsize);
        }
        for (int j = 0; j < k; j++) {
            unsigned char *b = held[j];
            /* Another owner of the same buffer would have overwritten it. */
            CHECK(b[0] == a->id && b[a->p->bufsize - 1] == a->id);
            aio_pool_put(a->p, held[j]);
        }
    }
    return NULL;
}

static int test_pool_stress(void)
{
    long n = env_long("AIO_TEST_ITEMS", 1000000) / 4;
    aio_pool p;
    CHECK(aio_pool_init(&p, 256) == 0);
    pthread_t t[NPROD];
    pool_arg a[NPROD];
    for (uint32_t i = 0; i < NPROD; i++) {
        a[i] = (pool_arg){&p, i + 1, n};
        CHECK(pthread_create(&t[i], NULL, pool_worker, &a[i]) == 0);
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&p.outstanding) == 0);
    /* At most 4 threads x 8 buffers were ever held at once. */
    printf("chunks=%u\n", atomic_load(&p.nchunks));
    CHECK(atomic_load(&p.nchunks) <= 2);
    aio_pool_destroy(&p);
    return 0;
}

/* ---- engine: requests travel loop -> worker -> loop exactly once ----
 * Each engine test runs once per backend built: "NAME@threads",
 * "NAME@uring" (skipped, exit 77, where the kernel refuses a ring). */

static const char *backend = "threads";
static int watch_epfd = -1;

static aio_engine *new_engine(int nio, int nres, size_t bufsize)
{
    if (watch_epfd < 0)
        CHECK((watch_epfd = epoll_create1(EPOLL_CLOEXEC)) >= 0);
    aio_engine_config cfg = {.backend = backend, .threads = nio, .resolver_threads = nres,
                             .bufsize = bufsize, .ring_buffers = 16, .watch_fd = watch_epfd};
    aio_engine *e = NULL;
    int rc = aio_engine_new(&e, &cfg);
    if (rc < 0 && strcmp(backend, "uring") == 0) {
        fprintf(stderr, "uring refused here (%d): skipped\n", rc);
        exit(77);
    }
    CHECK(rc == 0 && e != NULL);
    CHECK(strcmp(aio_engine_backend(e), backend) == 0);
    return e;
}

static aio_engine_stats stats_of(aio_engine *e)
{
    aio_engine_stats st;
    aio_engine_get_stats(e, &st);
    return st;
}

/* Waits up to timeout_ms for completions the way the loop does, then flushes. */
static aio_qnode *wait_flush(aio_engine *e, int timeout_ms)
{
    struct epoll_event ev[8];
    if (timeout_ms != 0)
        aio_engine_sleep_begin(e);
    int n = aio_engine_wait(e, timeout_ms, 0, ev, 8);
    CHECK(n >= 0 || n == -EINTR);
    return aio_engine_flush(e);
}

static uint64_t drain_engine(aio_engine *e, uint64_t want, int free_them)
{
    uint64_t got = 0;
    while (got < want) {
        aio_qnode *n = wait_flush(e, 1000);
        while (n != NULL) {
            aio_qnode *next = n->next;
            got++;
            if (free_them)
                aio_req_free(AIO_REQ_OF(n));
            n = next;
        }
    }
    return got;
}

static int test_engine_nop(void)
{
    aio_engine *e = new_engine(2, 1, 4096);
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        aio_req *r = calloc(1, sizeof *r);
        CHECK(r != NULL);
        r->op = AIO_OP_NOP;
        r->result = -1;
        CHECK(aio_engine_submit(e, r) == 0);
    }
    CHECK(drain_engine(e, N, 1) == (uint64_t)N);
    aio_engine_stats st = stats_of(e);
    CHECK(st.inflight == 0);
    CHECK(st.completions == (uint64_t)N && st.submissions == (uint64_t)N);
    printf("loop wakeups=%llu\n", (unsigned long long)st.wakeups);
    aio_engine_stop(e);
    CHECK(aio_engine_flush(e) == NULL);
    aio_engine_free(e);
    return 0;
}

static int test_engine_resolve(void)
{
    aio_engine *e = new_engine(1, 2, 4096);
    aio_req *r = calloc(1, sizeof *r);
    r->op = AIO_OP_GETADDRINFO;
    r->u.gai.host = strdup("127.0.0.1");
    r->u.gai.serv = strdup("80");
    r->u.gai.family = AF_INET;
    r->u.gai.socktype = SOCK_STREAM;
    r->u.gai.flags = AI_NUMERICHOST;
    CHECK(aio_engine_submit(e, r) == 0);
    aio_req *g = calloc(1, sizeof *g);
    g->op = AIO_OP_GETNAMEINFO;
    g->u.gni.addr = calloc(1, sizeof(struct sockaddr_storage));
    struct sockaddr_in *sin = (struct sockaddr_in *)g->u.gni.addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(80);
    sin->sin_addr.s_addr = htonl(0x7f000001);
    g->u.gni.addrlen = sizeof *sin;
    g->u.gni.flags = NI_NUMERICHOST | NI_NUMERICSERV;
    g->u.gni.host = malloc(NI_MAXHOST);
    g->u.gni.serv = malloc(NI_MAXSERV);
    CHECK(aio_engine_submit(e, g) == 0);
    int seen = 0;
    while (seen < 2) {
        aio_qnode *n = wait_flush(e, 100);
        while (n != NULL) {
            aio_qnode *next = n->next;
            aio_req *q = AIO_REQ_OF(n);
            CHECK(q->result == 0);
            if (q->op == AIO_OP_GETADDRINFO) {
                CHECK(q->u.gai.res != NULL);
                CHECK(q->u.gai.res->ai_family == AF_INET);
            } else {
                CHECK(strcmp(q->u.gni.host, "127.0.0.1") == 0);
                CHECK(strcmp(q->u.gni.serv, "80") == 0);
            }
            aio_req_free(q);
            seen++;
            n = next;
        }
    }
    aio_engine_stop(e);
    aio_engine_free(e);
    return 0;
}

/* Stop with requests in flight: every request comes back exactly once
 * (executed or -ECANCELED) and is freed; ASan's leak check runs at exit. */
static int test_engine_shutdown_inflight(void)
{
    for (int round = 0; round < 20; round++) {
        aio_engine *e = new_engine(2, 2, 4096);
        const int N = 20000;
        if (strcmp(backend, "threads") == 0) {
            void *bufs[16];
            for (int i = 0; i < 16; i++)
                CHECK((bufs[i] = aio_pool_get(&e->pool)) != NULL);
            for (int i = 0; i < 8; i++)
                aio_pool_put(&e->pool, bufs[i]);
        }
        for (int i = 0; i < N; i++) {
            aio_req *r = calloc(1, sizeof *r);
            if (i % 1000 == 0) {
                r->op = AIO_OP_GETADDRINFO;
                r->u.gai.host = strdup("localhost");
                r->u.gai.flags = AI_NUMERICSERV;
                r->u.gai.serv = strdup("1");
            } else {
                r->op = AIO_OP_NOP;
            }
            CHECK(aio_engine_submit(e, r) == 0);
        }
        aio_engine_stop(e);
        uint64_t got = 0, cancelled = 0;
        for (aio_qnode *n = aio_engine_flush(e); n != NULL;) {
            aio_qnode *next = n->next;
            if (AIO_REQ_OF(n)->result == -ECANCELED)
                cancelled++;
            aio_req_free(AIO_REQ_OF(n));
            got++;
            n = next;
        }
        CHECK(got == (uint64_t)N);
        CHECK(stats_of(e).inflight == 0);
        if (round == 0)
            printf("completed=%llu cancelled=%llu\n",
                   (unsigned long long)(got - cancelled),
                   (unsigned long long)cancelled);
        /* Buffers still held at destroy are freed with their chunk. */
        aio_engine_free(e);
    }
    return 0;
}


/* ---- streams: echo through a completion thread ----
 * The peer writes a pattern in many pieces while the stream is paused at
 * first and its credits run out (so the park/rearm handshake runs many
 * times); the "loop" echoes every read back with WRITE requests and checks
 * order and content, then CLOSEs.  Run under TSan this covers every
 * ordering point of stream.c. */

static int test_engine_stream_echo(void)
{
    const size_t total = (size_t)env_long("AIO_TEST_BYTES", 8 * 1024 * 1024);
    aio_engine *e = new_engine(1, 1, 4096);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    aio_stream *s = NULL;
    CHECK(aio_stream_open(e, sv[0], AIO_STREAM_CONN, 2, NULL, NULL, &s) == 0);
    CHECK(s != NULL);

    size_t sent = 0, got = 0, echoed = 0, writes_out = 0;
    int closed = 0, resumed = 0, eof = 0;
    while (!closed) {
        /* The peer: push the pattern, read the echo back and check it. */
        while (sent < total) {
            unsigned char buf[1000];
            size_t k = total - sent < sizeof buf ? total - sent : sizeof buf;
            for (size_t i = 0; i < k; i++)
                buf[i] = (unsigned char)((sent + i) * 7);
            ssize_t n = send(sv[1], buf, k, MSG_DONTWAIT);
            if (n <= 0)
                break;
            sent += (size_t)n;
        }
        if (sent == total && !eof) {
            shutdown(sv[1], SHUT_WR);
            eof = 1;
        }
        for (;;) {
            unsigned char buf[4096];
            ssize_t n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0)
                break;
            for (ssize_t i = 0; i < n; i++)
                CHECK(buf[i] == (unsigned char)((echoed + (size_t)i) * 7));
            echoed += (size_t)n;
        }
        if (!resumed && sent > 0) {
            CHECK(aio_stream_resume(e, s) == 0);   /* data already waiting */
            resumed = 1;
        }
        aio_qnode *n = wait_flush(e, 10);
        while (n != NULL) {
            aio_qnode *next = n->next;
            aio_req *r = AIO_REQ_OF(n);
            if (r->op == AIO_OP_STREAM_READ) {
                CHECK(r->result >= 0);
                if (r->result == 0) {
                    CHECK(got == total);
                } else {
                    /* Echo it: the WRITE owns a copy. */
                    aio_req *w = calloc(1, sizeof *w + sizeof(struct iovec) + (size_t)r->result);
                    CHECK(w != NULL);
                    struct iovec *iov = (struct iovec *)(void *)(w + 1);
                    iov->iov_base = (char *)(iov + 1);
                    iov->iov_len = (size_t)r->result;
                    memcpy(iov->iov_base, r->u.rd.data, (size_t)r->result);
                    w->op = AIO_OP_STREAM_WRITE;
                    w->u.wr.s = s;
                    w->u.wr.iov = iov;
                    w->u.wr.iovcnt = 1;
                    got += (size_t)r->result;
                    /* One write in flight at a time, as the binding does:
                     * keep them in a list until the previous one is back. */
                    CHECK(aio_stream_write(e, s, w) == 0);
                    writes_out++;
                }
                aio_req_free(r);
                CHECK(aio_stream_release(e, s, 1) == 0);
            } else if (r->op == AIO_OP_STREAM_WRITE) {
                CHECK(r->result == 0 || r->result == -EBUSY);
                if (r->result == -EBUSY) {
                    /* A write was still parked: resubmit after it. */
                    r->result = 0;
                    r->u.wr.iovpos = 0;
                    atomic_store(&r->u.wr.sent, 0);
                    CHECK(aio_stream_write(e, s, r) == 0);
                } else {
                    writes_out--;
                    free(r);
                }
            } else if (r->op == AIO_OP_STREAM_CLOSE) {
                closed = 1;
                aio_req_free(r);
            } else {
                CHECK(r->op == AIO_OP_STREAM_START || r->op == AIO_OP_STREAM_REARM);
                CHECK(r->result == 0);
                aio_req_free(r);
            }
            n = next;
        }
        if (got == total && writes_out == 0 && echoed == total && !closed) {
            aio_stream_close(e, s);
            while (!closed) {
                aio_qnode *m = wait_flush(e, 10);
                while (m != NULL) {
                    aio_qnode *nx = m->next;
                    if (AIO_REQ_OF(m)->op == AIO_OP_STREAM_CLOSE)
                        closed = 1;
                    aio_req_free(AIO_REQ_OF(m));
                    m = nx;
                }
            }
        }
    }
    CHECK(echoed == total);
    aio_engine_stats st = stats_of(e);
    CHECK(st.buffers_in_use == 0);
    CHECK(st.bytes_in == total && st.streams_open == 1);
    aio_stream_free(e, s);
    CHECK(stats_of(e).streams_open == 0);
    close(sv[0]);
    close(sv[1]);
    aio_engine_stop(e);
    CHECK(aio_engine_flush(e) == NULL);
    aio_engine_free(e);
    return 0;
}

/* ---- buffer pool trimming: the loop thread drops cold buffers' pages while
 * workers take and return buffers; a buffer in use is never dropped (its
 * pattern would turn to zeros), and a trimmed one comes back zeroed. ---- */

typedef struct trim_arg {
    aio_pool *p;
    _Atomic int *stop;
} trim_arg;

static void *trim_loop(void *v)
{
    trim_arg *a = v;
    while (!atomic_load(a->stop))
        (void)aio_pool_trim(a->p, 0);
    return NULL;
}

static int test_pool_trim(void)
{
    long n = env_long("AIO_TEST_ITEMS", 1000000) / 40;
    aio_pool p;
    CHECK(aio_pool_init(&p, 3 * 4096) == 0);
    /* Dirty a chunk's worth, then give all back: the first pass only marks,
     * the second (nothing put since) drops every page but the kept ones. */
    void *held[64];
    for (int i = 0; i < 64; i++) {
        CHECK((held[i] = aio_pool_get(&p)) != NULL);
        memset(held[i], 0xab, p.bufsize);
    }
    for (int i = 0; i < 64; i++)
        aio_pool_put(&p, held[i]);
    (void)aio_pool_trim(&p, 4);
    size_t dropped = aio_pool_trim(&p, 4);
    CHECK(dropped >= 60 * 2 * 4096u);
    CHECK(aio_pool_trim(&p, 4) == 0);   /* trimmed already */
    /* Concurrent: workers check their pattern, a trimmer runs flat out. */
    _Atomic int stop = 0;
    trim_arg ta = {&p, &stop};
    pthread_t tt, t[NPROD];
    pool_arg a[NPROD];
    CHECK(pthread_create(&tt, NULL, trim_loop, &ta) == 0);
    for (uint32_t i = 0; i < NPROD; i++) {
        a[i] = (pool_arg){&p, i + 1, n};
        CHECK(pthread_create(&t[i], NULL, pool_worker, &a[i]) == 0);
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(tt, NULL);
    CHECK(atomic_load(&p.outstanding) == 0);
    aio_pool_destroy(&p);
    return 0;
}

/* ---- fault injection: every error path of a stream's life ----
 * For each engine site, fail its 1st, 2nd, ... call (until a run passes the
 * site fewer times than that) during open or during close.  Open either
 * gives a started stream or fails with nothing left behind; CLOSE always
 * comes back; under ASan nothing is freed twice or leaked. */

/* Drains completions for up to ms; returns 1 once CLOSE came back. */
static int pump(aio_engine *e, aio_stream *s, int ms, size_t *got)
{
    int closed = 0;
    for (int i = 0; i < ms / 5 && !closed; i++) {
        aio_qnode *n = wait_flush(e, 5);
        while (n != NULL) {
            aio_qnode *next = n->next;
            aio_req *r = AIO_REQ_OF(n);
            int op = r->op;
            if (op == AIO_OP_STREAM_READ && r->result > 0 && got != NULL)
                *got += (size_t)r->result;
            if (op == AIO_OP_STREAM_CLOSE)
                closed = 1;
            aio_req_free(r);
            if (op == AIO_OP_STREAM_READ && !closed)
                (void)aio_stream_release(e, s, 1);
            n = next;
        }
    }
    return closed;
}

/* One life of a stream with `site` failing its nth call (at open, or from
 * close on).  Returns 1 when the nth call was reached. */
static int stream_life_with_fault(int site, long nth, int at_close)
{
    aio_engine *e = new_engine(1, 1, 4096);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    if (!at_close)
        CHECK(aio_fault_set(site, nth, 1) == 0);
    aio_stream *s = (aio_stream *)1;
    int rc = aio_stream_open(e, sv[0], AIO_STREAM_CONN, 2, NULL, NULL, &s);
    if (rc < 0) {
        CHECK(s == NULL);
        CHECK(stats_of(e).streams_open == 0);
    } else {
        CHECK(s != NULL);
        (void)aio_stream_resume(e, s);   /* may fail: a clean -errno */
        CHECK(send(sv[1], "ping", 4, 0) == 4);
        size_t got = 0;
        (void)pump(e, s, 50, &got);
        if (at_close)
            CHECK(aio_fault_set(site, nth, 1) == 0);
        aio_stream_close(e, s);
        aio_stream_close(e, s);   /* a second close does nothing */
        CHECK(pump(e, s, 5000, NULL));
        aio_stream_free(e, s);
    }
    int reached = aio_fault_failed(site) > 0;
    aio_fault_reset();
    close(sv[0]);
    close(sv[1]);
    aio_engine_stop(e);
    aio_qnode *n = aio_engine_flush(e);
    while (n != NULL) {
        aio_qnode *next = n->next;
        aio_req_free(AIO_REQ_OF(n));
        n = next;
    }
    aio_engine_free(e);
    return reached;
}

static int test_engine_stream_faults(void)
{
    static const int sites[] = {AIO_FAULT_STREAM, AIO_FAULT_REQ, AIO_FAULT_THREAD,
                                AIO_FAULT_SUBMIT, AIO_FAULT_CLOSE};
    long max = env_long("AIO_FAULT_MAX", 8);
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++)
        for (int at_close = 0; at_close < 2; at_close++) {
            long nth = 1;
            while (nth <= max && stream_life_with_fault(sites[i], nth, at_close))
                nth++;
            printf("%s %s: %ld failing call(s) walked\n", aio_fault_site_name(sites[i]),
                   at_close ? "at close" : "at open", nth - 1);
        }
    return 0;
}

/* Issue item 2: a stream operation whose submission fails never frees a
 * request twice.  Every submission fails while the stream is resumed; once
 * the site is disarmed the queued arm goes out and the data arrives. */
static int test_engine_submit_fails(void)
{
    aio_engine *e = new_engine(1, 1, 4096);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    aio_stream *s = NULL;
    CHECK(aio_stream_open(e, sv[0], AIO_STREAM_CONN, 2, NULL, NULL, &s) == 0);
    CHECK(pump(e, s, 20, NULL) == 0);
    CHECK(send(sv[1], "ping", 4, 0) == 4);
    CHECK(aio_fault_set(AIO_FAULT_SUBMIT, 1, -1) == 0);
    int rc = aio_stream_resume(e, s);
    CHECK(rc == 0 || rc == -EAGAIN);
    size_t got = 0;
    (void)pump(e, s, 20, &got);
    aio_fault_reset();
    if (rc < 0)
        CHECK(aio_stream_resume(e, s) == 0);
    for (int i = 0; i < 400 && got < 4; i++)
        (void)pump(e, s, 5, &got);
    CHECK(got == 4);
    CHECK(aio_fault_set(AIO_FAULT_SUBMIT, 1, -1) == 0);
    aio_stream_close(e, s);
    int closed = pump(e, s, 20, NULL);
    aio_fault_reset();
    CHECK(closed || pump(e, s, 5000, NULL));
    aio_stream_free(e, s);
    close(sv[0]);
    close(sv[1]);
    aio_engine_stop(e);
    CHECK(aio_engine_flush(e) == NULL);
    aio_engine_free(e);
    return 0;
}

/* Bounded thread counts (issue item 11). */
static int test_engine_thread_bound(void)
{
    if (watch_epfd < 0)
        CHECK((watch_epfd = epoll_create1(EPOLL_CLOEXEC)) >= 0);
    aio_engine_config cfg = {.backend = "threads", .threads = AIO_MAX_THREADS + 1,
                             .watch_fd = watch_epfd};
    aio_engine *e = NULL;
    CHECK(aio_engine_new(&e, &cfg) == -EINVAL && e == NULL);
    cfg.threads = 1;
    cfg.resolver_threads = 5000;
    CHECK(aio_engine_new(&e, &cfg) == -EINVAL && e == NULL);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(void);
    int per_backend;       /* 1: run once per backend built */
} tests[] = {
    {"mpsc_stress", test_mpsc_stress, 0},
    {"wakeup_coalescing", test_wakeup_coalescing, 0},
    {"pool_stress", test_pool_stress, 0},
    {"pool_trim", test_pool_trim, 0},
    {"engine_nop", test_engine_nop, 1},
    {"engine_resolve", test_engine_resolve, 1},
    {"engine_shutdown_inflight", test_engine_shutdown_inflight, 1},
    {"engine_stream_echo", test_engine_stream_echo, 1},
    {"engine_stream_faults", test_engine_stream_faults, 1},
    {"engine_submit_fails", test_engine_submit_fails, 1},
    {"engine_thread_bound", test_engine_thread_bound, 0},
};

static const char *backends[] = {"threads", "uring"};

int main(int argc, char **argv)
{
    size_t nt = sizeof tests / sizeof tests[0];
    int nb = aio_uring_compiled() ? 2 : 1;
    if (argc < 2 || strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < nt; i++) {
            if (!tests[i].per_backend)
                puts(tests[i].name);
            else
                for (int b = 0; b < nb; b++)
                    printf("%s@%s\n", tests[i].name, backends[b]);
        }
        return 0;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", argv[1]);
    char *at = strchr(name, '@');
    if (at != NULL) {
        *at = '\0';
        backend = at + 1;
    }
    for (size_t i = 0; i < nt; i++)
        if (strcmp(name, tests[i].name) == 0 && (at != NULL) == tests[i].per_backend)
            return tests[i].fn();
    fprintf(stderr, "unknown test %s\n", argv[1]);
    return 2;
}
