/* The ceiling: a plain single-threaded C epoll echo server, no Python.
 *
 *   echo_epoll PORT      (prints "ready PORT" once listening; PORT 0 picks one)
 *
 * Level-triggered epoll, non-blocking sockets, one 256 KiB read buffer
 * shared by all connections; what a write leaves unsent is kept per
 * connection and the socket watched for EPOLLOUT until it drains. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    char *pend;
    size_t plen, pcap;
} conn_t;

static char buf[256 * 1024];

static void drop(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pend);
    free(c);
}

/* Sends the pending bytes; returns -1 on error, else 0. */
static int flush_pending(int ep, conn_t *c)
{
    size_t off = 0;
    while (off < c->plen) {
        ssize_t n = send(c->fd, c->pend + off, c->plen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN)
                return -1;
            break;
        }
        off += (size_t)n;
    }
    memmove(c->pend, c->pend + off, c->plen - off);
    c->plen -= off;
    struct epoll_event ev = {.events = EPOLLIN | (c->plen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static int on_readable(int ep, conn_t *c)
{
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n <= 0)
        return (n < 0 && errno == EAGAIN) ? 0 : -1;
    size_t off = 0;
    if (c->plen == 0) {
        ssize_t w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN)
            return -1;
        off = w < 0 ? 0 : (size_t)w;
        if (off == (size_t)n)
            return 0;
    }
    size_t rest = (size_t)n - off;
    if (c->plen + rest > c->pcap) {
        c->pcap = (c->plen + rest) * 2;
        c->pend = realloc(c->pend, c->pcap);
        if (!c->pend)
            return -1;
    }
    memcpy(c->pend + c->plen, buf + off, rest);
    c->plen += rest;
    return flush_pending(ep, c);
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argc > 1 ? argv[1] : "0")),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
        perror("listen");
        return 2;
    }
    printf("ready %d\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int bad = 0;
            if (evs[i].events & EPOLLOUT)
                bad = flush_pending(ep, c) < 0;
            if (!bad && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                bad = on_readable(ep, c) < 0;
            if (bad)
                drop(ep, c);
        }
    }
}
