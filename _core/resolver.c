/* The resolver binding: getaddrinfo/getnameinfo run on the engine's
 * resolver threads; their completions settle the futures the Python side
 * awaits.  Also the sockaddr conversions the transports share.  Every
 * request in flight is on the loop's `inflight` list, so the GC sees its
 * owner and close() can free it.  GIL held everywhere. */
#include "loop.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

static PyObject *sockaddr_to_tuple(const struct sockaddr *sa);

static void inflight_add(LoopObject *L, pyreq *r)
{
    r->next = L->inflight.next;
    r->prev = &L->inflight;
    L->inflight.next->prev = r;
    L->inflight.next = r;
}

static void inflight_remove(pyreq *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = r;
}

static pyreq *pyreq_new(int op, PyObject *owner)
{
    pyreq *r = calloc(1, sizeof *r);
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->req.op = op;
    r->req.owner = Py_NewRef(owner);
    r->prev = r->next = r;
    return r;
}

static void pyreq_free(pyreq *r)
{
    PyObject *owner = r->req.owner;
    r->req.owner = NULL;
    aio_req_free(&r->req);
    Py_XDECREF(owner);
}

static int submit(LoopObject *L, pyreq *r)
{
    if (L->engine == NULL) {
        if (aio_loop_check_closed(L) == 0)
            PyErr_SetString(PyExc_RuntimeError, "the loop was not initialized");
        return -1;
    }
    int rc = aio_engine_submit(L->engine, &r->req);
    if (rc < 0)
        return aio_set_errno_error(-rc);
    inflight_add(L, r);
    return 0;
}

static PyObject *resolver_error(LoopObject *L, int code, int sys_errno)
{
    if (code == EAI_SYSTEM) {
        errno = sys_errno;
        return PyObject_CallFunction(PyExc_OSError, "is", sys_errno, strerror(sys_errno));
    }
    return PyObject_CallFunction(L->st->gaierror, "is", code, gai_strerror(code));
}

PyObject *aio_sockaddr_to_py(const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)(const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (len <= off)
            return PyUnicode_FromString("");
        size_t n = (size_t)len - off;
        if (u->sun_path[0] == 0)   /* Linux abstract namespace: bytes, as socket does */
            return PyBytes_FromStringAndSize(u->sun_path, (Py_ssize_t)n);
        n = strnlen(u->sun_path, n);
        return PyUnicode_DecodeFSDefaultAndSize(u->sun_path, (Py_ssize_t)n);
    }
    return sockaddr_to_tuple(sa);
}

static PyObject *sockaddr_to_tuple(const struct sockaddr *sa)
{
    char buf[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        return Py_BuildValue("(si)", buf, ntohs(a->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        return Py_BuildValue("(siII)", buf, ntohs(a->sin6_port),
                             (unsigned)ntohl(a->sin6_flowinfo), (unsigned)a->sin6_scope_id);
    }
    /* Other families: asyncio's callers only meet these through AF_UNSPEC
     * lookups of unusual services; give the raw family and bytes. */
    return Py_BuildValue("(iy#)", sa->sa_family, sa->sa_data, (Py_ssize_t)sizeof sa->sa_data);
}

static PyObject *gai_result(LoopObject *L, aio_req *r)
{
    if (r->result != 0)
        return resolver_error(L, r->result, r->u.gai.sys_errno);
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (struct addrinfo *ai = r->u.gai.res; ai != NULL; ai = ai->ai_next) {
        PyObject *addr = sockaddr_to_tuple(ai->ai_addr);
        if (addr == NULL)
            goto fail;
        PyObject *item = Py_BuildValue("(iiisN)", ai->ai_family, ai->ai_socktype,
                                       ai->ai_protocol,
                                       ai->ai_canonname ? ai->ai_canonname : "", addr);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyObject *gni_result(LoopObject *L, aio_req *r)
{
    if (r->result != 0)
        return resolver_error(L, r->result, r->u.gni.sys_errno);
    return Py_BuildValue("(ss)", r->u.gni.host, r->u.gni.serv);
}

/* Settles the future that owns a resolver request, unless it was cancelled. */
static int settle_future(LoopObject *L, PyObject *fut, PyObject *value, int is_exc)
{
    PyObject *done = PyObject_CallMethodNoArgs(fut, L->st->str_done);
    if (done == NULL)
        return -1;
    int d = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (d != 0)
        return d < 0 ? -1 : 0;
    PyObject *res = PyObject_CallMethodOneArg(
        fut, is_exc ? L->st->str_set_exception : L->st->str_set_result, value);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static int dispatch_completion(LoopObject *L, pyreq *r)
{
    PyObject *value = NULL;
    int is_exc = 0;
    switch (r->req.op) {
    case AIO_OP_GETADDRINFO:
        value = gai_result(L, &r->req);
        is_exc = r->req.result != 0;
        break;
    case AIO_OP_GETNAMEINFO:
        value = gni_result(L, &r->req);
        is_exc = r->req.result != 0;
        break;
    default:
        value = Py_NewRef(Py_None);
        break;
    }
    if (r->req.result == -ECANCELED) {
        Py_XDECREF(value);
        return 0;
    }
    if (value == NULL)
        return -1;
    int rc = settle_future(L, (PyObject *)r->req.owner, value, is_exc);
    Py_DECREF(value);
    return rc;
}

void aio_resolver_completion(LoopObject *L, aio_req *req, int deliver)
{
    pyreq *r = (pyreq *)(void *)req;
    inflight_remove(r);
    if (deliver && dispatch_completion(L, r) < 0)
        PyErr_WriteUnraisable((PyObject *)L);
    pyreq_free(r);
}

void aio_resolver_shutdown(LoopObject *L)
{
    while (L->inflight.next != &L->inflight) {
        pyreq *r = L->inflight.next;
        inflight_remove(r);
        pyreq_free(r);
    }
}

int aio_resolver_traverse(LoopObject *L, visitproc visit, void *arg)
{
    for (pyreq *r = L->inflight.next; r != &L->inflight; r = r->next)
        Py_VISIT((PyObject *)r->req.owner);
    return 0;
}

/* ---- resolver ---- */

static char *dup_bytes_or_null(PyObject *o)
{
    if (o == Py_None)
        return NULL;
    char *s = strdup(PyBytes_AS_STRING(o));
    if (s == NULL)
        PyErr_NoMemory();
    return s;
}

PyObject *aio_loop_getaddrinfo_raw(LoopObject *L, PyObject *args)
{
    PyObject *host, *port;
    int family, socktype, proto, flags;
    if (!PyArg_ParseTuple(args, "OOiiii:_getaddrinfo", &host, &port, &family, &socktype,
                          &proto, &flags))
        return NULL;
    if ((host != Py_None && !PyBytes_Check(host)) || (port != Py_None && !PyBytes_Check(port))) {
        PyErr_SetString(PyExc_TypeError, "host and port must be bytes or None");
        return NULL;
    }
    if (aio_loop_check_closed(L) < 0 || aio_loop_check_thread(L) < 0)
        return NULL;
    PyObject *fut = aio_loop_create_future(L);
    if (fut == NULL)
        return NULL;
    pyreq *r = pyreq_new(AIO_OP_GETADDRINFO, fut);
    if (r == NULL)
        goto fail;
    r->req.u.gai.family = family;
    r->req.u.gai.socktype = socktype;
    r->req.u.gai.protocol = proto;
    r->req.u.gai.flags = flags;
    if ((host != Py_None && (r->req.u.gai.host = dup_bytes_or_null(host)) == NULL) ||
        (port != Py_None && (r->req.u.gai.serv = dup_bytes_or_null(port)) == NULL) ||
        submit(L, r) < 0) {
        pyreq_free(r);
        goto fail;
    }
    return fut;
fail:
    Py_DECREF(fut);
    return NULL;
}

PyObject *aio_loop_getnameinfo_raw(LoopObject *L, PyObject *args)
{
    int family, port, flags;
    const char *host;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyArg_ParseTuple(args, "isiIIi:_getnameinfo", &family, &host, &port, &flowinfo,
                          &scope_id, &flags))
        return NULL;
    if (aio_loop_check_closed(L) < 0 || aio_loop_check_thread(L) < 0)
        return NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        len = sizeof *a;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto bad;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_flowinfo = htonl(flowinfo);
        a->sin6_scope_id = scope_id;
        len = sizeof *a;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto bad;
    } else {
        goto bad;
    }
    PyObject *fut = aio_loop_create_future(L);
    if (fut == NULL)
        return NULL;
    pyreq *r = pyreq_new(AIO_OP_GETNAMEINFO, fut);
    if (r == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    r->req.u.gni.addr = malloc(sizeof ss);
    r->req.u.gni.host = malloc(NI_MAXHOST);
    r->req.u.gni.serv = malloc(NI_MAXSERV);
    r->req.u.gni.addrlen = len;
    r->req.u.gni.flags = flags;
    if (r->req.u.gni.addr == NULL || r->req.u.gni.host == NULL || r->req.u.gni.serv == NULL) {
        PyErr_NoMemory();
        pyreq_free(r);
        Py_DECREF(fut);
        return NULL;
    }
    memcpy(r->req.u.gni.addr, &ss, sizeof ss);
    if (submit(L, r) < 0) {
        pyreq_free(r);
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
bad:
    PyErr_SetString(PyExc_ValueError, "_getnameinfo: not a numeric IPv4/IPv6 address");
    return NULL;
}

