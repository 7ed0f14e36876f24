/* What a worker does with each request.  Blocking calls (the resolver) run
 * only on the blocking group, so a slow DNS answer never delays socket I/O. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

static void do_getaddrinfo(aio_req *r)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = r->u.gai.family;
    hints.ai_socktype = r->u.gai.socktype;
    hints.ai_protocol = r->u.gai.protocol;
    hints.ai_flags = r->u.gai.flags;
    r->u.gai.res = NULL;
    errno = 0;
    int rc = getaddrinfo(r->u.gai.host, r->u.gai.serv, &hints, &r->u.gai.res);
    r->u.gai.sys_errno = errno;
    r->result = rc;          /* 0, or an EAI_* code (negative on glibc) */
}

static void do_getnameinfo(aio_req *r)
{
    errno = 0;
    int rc = getnameinfo((struct sockaddr *)r->u.gni.addr, r->u.gni.addrlen,
                         r->u.gni.host, NI_MAXHOST, r->u.gni.serv, NI_MAXSERV,
                         r->u.gni.flags);
    r->u.gni.sys_errno = errno;
    r->result = rc;
}

int aio__execute(aio_worker *w, aio_req *r, aio_chain *out)
{
    switch (r->op) {
    case AIO_OP_NOP:
        r->result = 0;
        break;
    case AIO_OP_GETADDRINFO:
        do_getaddrinfo(r);
        break;
    case AIO_OP_GETNAMEINFO:
        do_getnameinfo(r);
        break;
    case AIO_OP_STREAM_START:
    case AIO_OP_STREAM_REARM:
    case AIO_OP_STREAM_WRITE:
    case AIO_OP_STREAM_CLOSE:
        return aio__stream_execute(w, r, out);
    default:
        r->result = -ENOSYS;
        break;
    }
    return 1;
}

void aio_req_free(aio_req *r)
{
    if (r == NULL)
        return;
    switch (r->op) {
    case AIO_OP_GETADDRINFO:
        free(r->u.gai.host);
        free(r->u.gai.serv);
        if (r->u.gai.res != NULL)
            freeaddrinfo(r->u.gai.res);
        break;
    case AIO_OP_GETNAMEINFO:
        free(r->u.gni.addr);
        free(r->u.gni.host);
        free(r->u.gni.serv);
        break;
    case AIO_OP_STREAM_READ:
        if (AIO_RD(r)->release != NULL) {
            AIO_RD(r)->release(r);   /* the buffer goes back to its backend */
            return;
        }
        break;
    default:
        break;
    }
    free(r);
}
