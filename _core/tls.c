/* The TLS byte path in C: see tls.h for the design.
 *
 * Ownership: a TLSPump owns strong references to the connection's
 * _ssl._SSLSocket and its two _ssl.MemoryBIO objects (so the SSL* and BIO*
 * it caches live as long as it does) and its scratch buffer for direct
 * reads (made on first use).  The protocol owns the pump (`_aioloop_pump`);
 * the pump never refers back to it, so no cycle forms.
 * Everything here runs on the loop thread with the GIL held. */
#include "tls.h"
#include "engine/aio_fault.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- OpenSSL, as loaded by Python's _ssl module ------------------------- */

typedef struct ssl_st SSL;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;

/* OpenSSL's constants (stable ABI values). */
#define X_BIO_TYPE_SOURCE_SINK 0x0400
#define X_BIO_FLAGS_RWS 0x07
#define X_BIO_FLAGS_SHOULD_RETRY 0x08
#define X_BIO_CTRL_PENDING 10
#define X_BIO_CTRL_WPENDING 13

enum {
    X_SSL_ERROR_NONE = 0,
    X_SSL_ERROR_WANT_READ = 2,
    X_SSL_ERROR_ZERO_RETURN = 6,
};

static struct {
    int (*SSL_read_ex)(SSL *, void *, size_t, size_t *);
    int (*SSL_write_ex)(SSL *, const void *, size_t, size_t *);
    int (*SSL_get_error)(const SSL *, int);
    int (*SSL_pending)(const SSL *);
    BIO *(*SSL_get_rbio)(const SSL *);
    BIO *(*SSL_get_wbio)(const SSL *);
    int (*BIO_write)(BIO *, const void *, int);
    int (*BIO_read)(BIO *, void *, int);
    size_t (*BIO_ctrl_pending)(BIO *);
    int ready;
    /* For the connection's own BIOs (passbio below); optional. */
    BIO_METHOD *(*BIO_meth_new)(int, const char *);
    int (*BIO_meth_set_write)(BIO_METHOD *, int (*)(BIO *, const char *, int));
    int (*BIO_meth_set_read)(BIO_METHOD *, int (*)(BIO *, char *, int));
    int (*BIO_meth_set_ctrl)(BIO_METHOD *, long (*)(BIO *, int, long, void *));
    int (*BIO_meth_set_destroy)(BIO_METHOD *, int (*)(BIO *));
    int (*BIO_get_new_index)(void);
    BIO *(*BIO_new)(const BIO_METHOD *);
    int (*BIO_free)(BIO *);
    int (*BIO_up_ref)(BIO *);
    void (*BIO_set_data)(BIO *, void *);
    void *(*BIO_get_data)(BIO *);
    void (*BIO_set_init)(BIO *, int);
    void (*BIO_set_flags)(BIO *, int);
    void (*BIO_clear_flags)(BIO *, int);
    int (*BIO_test_flags)(const BIO *, int);
    long (*BIO_ctrl)(BIO *, int, long, void *);
    void (*SSL_set0_rbio)(SSL *, BIO *);
    void (*SSL_set0_wbio)(SSL *, BIO *);
    BIO_METHOD *passbio_method;     /* made once; never freed (SSL objects may outlive modules) */
} ossl;

/* The prefixes of CPython's PySSLSocket and PySSLMemoryBIO (Modules/_ssl.c),
 * unchanged from 3.x's first releases to 3.15.  Used only after the type's
 * name and size are checked and the SSL*'s BIOs are seen to be the
 * MemoryBIOs' own. */
typedef struct {
    PyObject_HEAD
    PyObject *socket;
    SSL *ssl;
} py_sslsocket_prefix;

typedef struct {
    PyObject_HEAD
    BIO *bio;
} py_membio_prefix;

/* ossl.name = the function `name` in the library h, or return 0. */
#define SYM(name)                                                  \
    do {                                                           \
        *(void **)&ossl.name = dlsym(h, #name);                    \
        if (ossl.name == NULL)                                     \
            return 0;                                              \
    } while (0)

static int resolve(void *h)
{
    SYM(SSL_read_ex);
    SYM(SSL_write_ex);
    SYM(SSL_get_error);
    SYM(SSL_pending);
    SYM(SSL_get_rbio);
    SYM(SSL_get_wbio);
    SYM(BIO_write);
    SYM(BIO_read);
    SYM(BIO_ctrl_pending);
    return 1;
}

static int resolve_passbio(void *h);

/* ---- attribute names ------------------------------------------------------ */

enum {
    N_PUMP, N_STATE, N_APP_READING_PAUSED, N_APP_PROTOCOL_IS_BUFFER, N_APP_PROTOCOL,
    N_WRITE_BACKLOG, N_SSL_WRITING_PAUSED, N_APP_WRITING_PAUSED, N_SSL_READING_PAUSED,
    N_INCOMING_HIGH_WATER, N_TRANSPORT, N_SSL_PROTOCOL, N_FATAL_ERROR, N_DO_READ,
    N_DO_WRITE, N_PROCESS_OUTGOING, N_CONTROL_SSL_READING, N_CALL_EOF_RECEIVED,
    N_START_SHUTDOWN, N_WRITE_APPDATA, N_WRITE, N_SSLOBJ, N_APP_GET_BUFFER,
    N_APP_BUFFER_UPDATED, N_LOOP, N_CALL_SOON, N_COUNT
};

static const char *const names[N_COUNT] = {
    "_aioloop_pump", "_state", "_app_reading_paused", "_app_protocol_is_buffer",
    "_app_protocol", "_write_backlog", "_ssl_writing_paused", "_app_writing_paused",
    "_ssl_reading_paused", "_incoming_high_water", "_transport", "_ssl_protocol",
    "_fatal_error", "_do_read", "_do_write", "_process_outgoing", "_control_ssl_reading",
    "_call_eof_received", "_start_shutdown", "_write_appdata", "write", "_sslobj",
    "_app_protocol_get_buffer", "_app_protocol_buffer_updated", "_loop", "call_soon",
};

/* Module state for TLS, kept apart from aio_state's fields by one pointer. */
typedef struct aio_tls_state {
    PyTypeObject *PumpType;
    PyObject *proto_type;       /* aioloop._tls.SSLProtocol */
    PyObject *app_type;         /* aioloop._tls's application transport */
    PyObject *wrapped;          /* sslproto.SSLProtocolState.WRAPPED */
    PyObject *py_write;         /* asyncio's _SSLProtocolTransport.write */
    PyObject *py_writelines;    /* ... and writelines: the slow paths */
    PyObject *msg_fatal;        /* "Fatal error on SSL protocol" */
    PyObject *name[N_COUNT];
} aio_tls_state;

static aio_tls_state *tls_state(aio_state *st)
{
    return st->tls;
}

/* ---- the connection's own BIOs ------------------------------------------------
 *
 * Once established, a connection's SSL reads and writes through two BIOs of
 * ours, each in front of the MemoryBIO it replaces:
 *   read:  ciphertext the transport just read is served straight from the
 *          transport's buffer (`direct`) -- no BIO_write() copy into the
 *          MemoryBIO, no zeroing of its growth -- after whatever the
 *          MemoryBIO still holds; what is left of a partial record is moved
 *          into the MemoryBIO before any Python code runs.
 *   write: while the C write path encrypts, records go straight into the
 *          bytes object handed to the TCP transport (`capture`); otherwise
 *          into the MemoryBIO.
 * Everything else -- and every call that asyncio's Python code makes
 * through the SSLObject and the MemoryBIOs -- passes through to the
 * MemoryBIOs unchanged, so their contents and `pending` stay what asyncio
 * expects.  Ownership: the SSL owns our BIOs (SSL_set0_rbio/wbio); each of
 * ours owns a reference to its MemoryBIO's BIO and its passbio state, freed
 * with it. */

typedef struct passbio {
    BIO *inner;            /* the MemoryBIO's BIO */
    const char *direct;    /* read side: served after inner's bytes */
    size_t direct_len;
    PyObject *capture;     /* write side: bytes being filled, or NULL */
    size_t captured;
    int failed;            /* capture could not grow: MemoryError set */
} passbio;

static void copy_retry(BIO *b, BIO *inner)
{
    ossl.BIO_set_flags(b, ossl.BIO_test_flags(inner, X_BIO_FLAGS_RWS | X_BIO_FLAGS_SHOULD_RETRY));
}

static int pb_read(BIO *b, char *out, int len)
{
    passbio *d = ossl.BIO_get_data(b);
    ossl.BIO_clear_flags(b, X_BIO_FLAGS_RWS | X_BIO_FLAGS_SHOULD_RETRY);
    if (d == NULL || len <= 0)
        return 0;
    if (d->direct_len == 0 || ossl.BIO_ctrl_pending(d->inner) > 0) {
        int n = ossl.BIO_read(d->inner, out, len);
        if (n <= 0)
            copy_retry(b, d->inner);
        return n;
    }
    size_t k = d->direct_len < (size_t)len ? d->direct_len : (size_t)len;
    memcpy(out, d->direct, k);
    d->direct += k;
    d->direct_len -= k;
    return (int)k;
}

static int pb_write(BIO *b, const char *in, int len)
{
    passbio *d = ossl.BIO_get_data(b);
    ossl.BIO_clear_flags(b, X_BIO_FLAGS_RWS | X_BIO_FLAGS_SHOULD_RETRY);
    if (d == NULL || len < 0 || d->failed)
        return -1;
    if (d->capture == NULL) {
        int n = ossl.BIO_write(d->inner, in, len);
        if (n <= 0)
            copy_retry(b, d->inner);
        return n;
    }
    size_t need = d->captured + (size_t)len;
    if (need > (size_t)PyBytes_GET_SIZE(d->capture)) {
        if (_PyBytes_Resize(&d->capture, (Py_ssize_t)(need + need / 2)) < 0) {
            d->capture = NULL;   /* _PyBytes_Resize freed it; MemoryError is set */
            d->failed = 1;
            return -1;
        }
    }
    memcpy(PyBytes_AS_STRING(d->capture) + d->captured, in, (size_t)len);
    d->captured = need;
    return len;
}

static long pb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    passbio *d = ossl.BIO_get_data(b);
    if (d == NULL)
        return 0;
    long r = ossl.BIO_ctrl(d->inner, cmd, num, ptr);
    if (cmd == X_BIO_CTRL_PENDING)
        r += (long)d->direct_len;
    else if (cmd == X_BIO_CTRL_WPENDING && d->capture != NULL)
        r += (long)d->captured;
    return r;
}

static int pb_destroy(BIO *b)
{
    passbio *d = ossl.BIO_get_data(b);
    if (d != NULL) {
        ossl.BIO_free(d->inner);
        PyMem_RawFree(d);
        ossl.BIO_set_data(b, NULL);
    }
    return 1;
}

static int resolve_passbio(void *h)
{
    SYM(BIO_meth_new);
    SYM(BIO_meth_set_write);
    SYM(BIO_meth_set_read);
    SYM(BIO_meth_set_ctrl);
    SYM(BIO_meth_set_destroy);
    SYM(BIO_get_new_index);
    SYM(BIO_new);
    SYM(BIO_free);
    SYM(BIO_up_ref);
    SYM(BIO_set_data);
    SYM(BIO_get_data);
    SYM(BIO_set_init);
    SYM(BIO_set_flags);
    SYM(BIO_clear_flags);
    SYM(BIO_test_flags);
    SYM(BIO_ctrl);
    SYM(SSL_set0_rbio);
    SYM(SSL_set0_wbio);
#undef SYM
    int idx = ossl.BIO_get_new_index();
    BIO_METHOD *m = idx > 0 ? ossl.BIO_meth_new(idx | X_BIO_TYPE_SOURCE_SINK, "aioloop passbio")
                            : NULL;
    if (m == NULL || !ossl.BIO_meth_set_write(m, pb_write) || !ossl.BIO_meth_set_read(m, pb_read) ||
        !ossl.BIO_meth_set_ctrl(m, pb_ctrl) || !ossl.BIO_meth_set_destroy(m, pb_destroy))
        return 0;   /* (a method half set up is kept: never used) */
    ossl.passbio_method = m;
    return 1;
}

/* One of our BIOs in front of inner, or NULL (nothing changed). */
static BIO *passbio_new(BIO *inner, passbio **out)
{
    passbio *d = PyMem_RawCalloc(1, sizeof *d);
    BIO *b = d ? ossl.BIO_new(ossl.passbio_method) : NULL;
    if (b == NULL) {
        PyMem_RawFree(d);
        return NULL;
    }
    ossl.BIO_up_ref(inner);
    d->inner = inner;
    ossl.BIO_set_data(b, d);
    ossl.BIO_set_init(b, 1);
    *out = d;
    return b;
}

/* ---- TLSPump ---------------------------------------------------------------- */

/* A direct read's most, as the transport's (asyncio's 256 KiB). */
#define TLS_SCRATCH (256 * 1024)

typedef struct {
    PyObject_HEAD
    PyObject *sslsock;
    PyObject *inbio;
    PyObject *outbio;
    char *scratch;              /* direct reads land here: made on first use */
    SSL *ssl;
    BIO *rbio;                  /* the MemoryBIOs' BIOs */
    BIO *wbio;
    passbio *rd, *wd;           /* our BIOs' state (owned by the SSL), or NULL */
} PumpObject;

static int type_named(PyObject *o, const char *name, size_t min_size)
{
    return strcmp(Py_TYPE(o)->tp_name, name) == 0 &&
           (size_t)Py_TYPE(o)->tp_basicsize >= min_size;
}

static PyObject *pump_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *sslobject, *inbio, *outbio;
    static char *kwlist[] = {"sslobject", "incoming", "outgoing", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:TLSPump", kwlist,
                                     &sslobject, &inbio, &outbio))
        return NULL;
    if (!ossl.ready) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's functions are not available");
        return NULL;
    }
    PyObject *sslsock = PyObject_GetAttrString(sslobject, "_sslobj");
    if (sslsock == NULL)
        return NULL;
    if (!type_named(sslsock, "_ssl._SSLSocket", sizeof(py_sslsocket_prefix)) ||
        !type_named(inbio, "_ssl.MemoryBIO", sizeof(py_membio_prefix)) ||
        !type_named(outbio, "_ssl.MemoryBIO", sizeof(py_membio_prefix))) {
        Py_DECREF(sslsock);
        PyErr_SetString(PyExc_TypeError, "not an SSLObject over two MemoryBIOs");
        return NULL;
    }
    SSL *ssl = ((py_sslsocket_prefix *)sslsock)->ssl;
    BIO *rbio = ((py_membio_prefix *)inbio)->bio;
    BIO *wbio = ((py_membio_prefix *)outbio)->bio;
    if (ssl == NULL || rbio == NULL || wbio == NULL ||
        ossl.SSL_get_rbio(ssl) != rbio || ossl.SSL_get_wbio(ssl) != wbio) {
        Py_DECREF(sslsock);
        PyErr_SetString(PyExc_TypeError, "the SSLObject does not use these MemoryBIOs");
        return NULL;
    }
    PumpObject *p = (PumpObject *)type->tp_alloc(type, 0);
    if (p == NULL) {
        Py_DECREF(sslsock);
        return NULL;
    }
    p->sslsock = sslsock;
    p->inbio = Py_NewRef(inbio);
    p->outbio = Py_NewRef(outbio);
    p->ssl = ssl;
    p->rbio = rbio;
    p->wbio = wbio;
    if (ossl.passbio_method != NULL) {
        passbio *rd, *wd;
        BIO *r = passbio_new(rbio, &rd);
        BIO *w = r ? passbio_new(wbio, &wd) : NULL;
        if (w != NULL) {
            /* Each drops the SSL's reference to a MemoryBIO's BIO; the
             * MemoryBIO and our BIO hold theirs. */
            ossl.SSL_set0_rbio(ssl, r);
            ossl.SSL_set0_wbio(ssl, w);
            p->rd = rd;
            p->wd = wd;
        } else if (r != NULL) {
            ossl.BIO_free(r);   /* copies through the MemoryBIOs, then */
        }
    }
    return (PyObject *)p;
}

static int pump_traverse(PumpObject *p, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(p));
    Py_VISIT(p->sslsock);
    Py_VISIT(p->inbio);
    Py_VISIT(p->outbio);
    return 0;
}

static int pump_clear(PumpObject *p)
{
    PyMem_RawFree(p->scratch);
    p->scratch = NULL;
    p->ssl = NULL;
    p->rbio = p->wbio = NULL;
    p->rd = p->wd = NULL;
    Py_CLEAR(p->sslsock);
    Py_CLEAR(p->inbio);
    Py_CLEAR(p->outbio);
    return 0;
}

static void pump_dealloc(PumpObject *p)
{
    PyTypeObject *tp = Py_TYPE(p);
    PyObject_GC_UnTrack(p);
    pump_clear(p);
    tp->tp_free(p);
    Py_DECREF(tp);
}

static PyType_Slot pump_slots[] = {
    {Py_tp_doc, "TLSPump(sslobject, incoming, outgoing): the C byte path of "
                "one TLS connection (aioloop internal)."},
    {Py_tp_new, pump_new},
    {Py_tp_traverse, pump_traverse},
    {Py_tp_clear, pump_clear},
    {Py_tp_dealloc, pump_dealloc},
    {0, NULL},
};

static PyType_Spec pump_spec = {
    .name = "aioloop._core.TLSPump",
    .basicsize = sizeof(PumpObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = pump_slots,
};

/* A live pump (not cleared by the collector), or NULL. */
static PumpObject *pump_of(aio_tls_state *ts, PyObject *o)
{
    if (o == NULL || !Py_IS_TYPE(o, ts->PumpType))
        return NULL;
    PumpObject *p = (PumpObject *)o;
    return p->ssl != NULL ? p : NULL;
}

/* ---- small helpers ------------------------------------------------------ */

/* getattr(o, name) is true; -1 on error. */
static int attr_true(aio_tls_state *ts, PyObject *o, int name)
{
    PyObject *v = PyObject_GetAttr(o, ts->name[name]);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* After a call into the protocol's code failed: as asyncio's
 * `except Exception as ex: self._fatal_error(ex, 'Fatal error on SSL
 * protocol')` around its read and write paths.  Returns 0 when handled so,
 * -1 when the exception is to propagate (a BaseException, or _fatal_error
 * itself failed). */
static int fatal_on_exception(aio_tls_state *ts, PyObject *proto)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *r = exc ? PyObject_CallMethodObjArgs(proto, ts->name[N_FATAL_ERROR], exc,
                                                   ts->msg_fatal, NULL)
                      : NULL;
    Py_XDECREF(exc);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int call0(aio_tls_state *ts, PyObject *o, int name)
{
    PyObject *r = PyObject_CallMethodNoArgs(o, ts->name[name]);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Everything in the outgoing BIO as one bytes object (NULL with an
 * exception, or Py_None borrowed when there is nothing). */
static PyObject *take_outgoing(PumpObject *p)
{
    size_t n = ossl.BIO_ctrl_pending(p->wbio);
    if (n == 0)
        return Py_None;
    if (n > INT_MAX)
        n = INT_MAX;
    PyObject *b = aio_fault_hit(AIO_FAULT_PYOBJ)   /* a fault site, as every object the loop makes */
                      ? PyErr_NoMemory()
                      : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (b == NULL)
        return NULL;
    int got = ossl.BIO_read(p->wbio, PyBytes_AS_STRING(b), (int)n);
    if (got <= 0) {
        Py_DECREF(b);
        return Py_None;
    }
    if ((size_t)got < n && _PyBytes_Resize(&b, got) < 0)
        return NULL;
    return b;
}

/* asyncio's _process_outgoing() when the application's writing is not
 * paused: the ciphertext to the TCP transport.  0, or -1 with an exception
 * (from the transport's write). */
static int transport_write(aio_tls_state *ts, PyObject *proto, PyObject *b)
{
    PyObject *tr = PyObject_GetAttr(proto, ts->name[N_TRANSPORT]);
    PyObject *r = tr ? PyObject_CallMethodOneArg(tr, ts->name[N_WRITE], b) : NULL;
    Py_XDECREF(tr);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int flush_outgoing(aio_tls_state *ts, PyObject *proto, PumpObject *p)
{
    PyObject *b = take_outgoing(p);
    if (b == NULL)
        return -1;
    if (b == Py_None)
        return 0;
    int rc = transport_write(ts, proto, b);
    Py_DECREF(b);
    return rc;
}

/* The C write path's output: records encrypted after out_begin() go
 * straight into one bytes object (our write BIO's capture) when the
 * MemoryBIO holds nothing older; out_send() hands it, then anything in
 * the MemoryBIO, to the TCP transport. */
static void out_begin(PumpObject *p, size_t plain)
{
    passbio *d = p->wd;
    if (d == NULL || d->capture != NULL || ossl.BIO_ctrl_pending(p->wbio) > 0)
        return;
    size_t est = plain + (plain / 16384 + 1) * 64 + 64;   /* records' overhead */
    d->capture = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)est);
    if (d->capture == NULL)
        PyErr_Clear();   /* then through the MemoryBIO */
    d->captured = 0;
    d->failed = 0;
}

static int out_send(aio_tls_state *ts, PyObject *proto, PumpObject *p)
{
    passbio *d = p->wd;
    if (d != NULL && (d->capture != NULL || d->failed)) {
        PyObject *b = d->capture;
        size_t n = d->captured;
        int failed = d->failed;
        d->capture = NULL;
        d->captured = 0;
        d->failed = 0;
        if (failed) {
            Py_XDECREF(b);
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return -1;
        }
        if (n == 0) {
            Py_DECREF(b);
        } else {
            if (n < (size_t)PyBytes_GET_SIZE(b) && _PyBytes_Resize(&b, (Py_ssize_t)n) < 0)
                return -1;
            int rc = transport_write(ts, proto, b);
            Py_DECREF(b);
            if (rc < 0)
                return -1;
        }
    }
    return flush_outgoing(ts, proto, p);
}

/* ---- read --------------------------------------------------------------- */

int aio_tls_is_protocol(aio_state *st, PyObject *protocol)
{
    aio_tls_state *ts = tls_state(st);
    return ts != NULL && ts->proto_type != NULL && (PyObject *)Py_TYPE(protocol) == ts->proto_type;
}

PyObject *aio_tls_fast_pump(TransportObject *t)
{
    aio_tls_state *ts = tls_state(tr_state(t));
    PyObject *proto = t->protocol;
    if (ts == NULL || proto == NULL)
        return NULL;
    PyObject *pump = PyObject_GetAttr(proto, ts->name[N_PUMP]);
    if (pump == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (pump_of(ts, pump) == NULL)
        goto no;
    PyObject *state = PyObject_GetAttr(proto, ts->name[N_STATE]);
    if (state == NULL)
        goto error;
    int wrapped = state == ts->wrapped;
    Py_DECREF(state);
    if (!wrapped)
        goto no;
    int paused = attr_true(ts, proto, N_APP_READING_PAUSED);
    if (paused < 0)
        goto error;
    if (paused)
        goto no;
    return pump;
error:
    PyErr_Clear();
no:
    Py_DECREF(pump);
    return NULL;
}

char *aio_tls_scratch(PyObject *pump, size_t *len)
{
    /* Not zeroed, and allocated only for a connection that reads directly
     * (io_uring's reads of 8 KiB or more): asyncio's SSLProtocol zeroes a
     * 256 KiB bytearray for every connection, handshake or not. */
    PumpObject *p = (PumpObject *)pump;
    if (p->scratch == NULL)
        p->scratch = PyMem_RawMalloc(TLS_SCRATCH);
    *len = p->scratch != NULL ? TLS_SCRATCH : 0;
    return p->scratch;
}

/* Ciphertext waiting for SSL_read(): the MemoryBIO's and the direct bytes. */
static size_t in_pending(PumpObject *p)
{
    return ossl.BIO_ctrl_pending(p->rbio) + (p->rd != NULL ? p->rd->direct_len : 0);
}

/* The direct bytes SSL_read() left (a partial record) go into the
 * MemoryBIO, before any Python code can run.  0, or -1 with MemoryError. */
static int direct_done(PumpObject *p)
{
    passbio *d = p->rd;
    if (d == NULL)
        return 0;
    int rc = 0;
    while (d->direct_len > 0) {
        int chunk = d->direct_len > INT_MAX ? INT_MAX : (int)d->direct_len;
        if (ossl.BIO_write(d->inner, d->direct, chunk) != chunk) {
            PyErr_NoMemory();
            rc = -1;
            break;
        }
        d->direct += chunk;
        d->direct_len -= (size_t)chunk;
    }
    d->direct = NULL;
    d->direct_len = 0;
    return rc;
}

/* SSL_read() every whole record there is into one bytes object.  *status:
 * 0 more is needed, 1 close_notify came, 2 an SSL error (left in OpenSSL's
 * queue for asyncio's code to raise).  Returns the plaintext (maybe empty),
 * or NULL with an exception. */
static PyObject *read_records(PumpObject *p, int *status)
{
    size_t cap = in_pending(p) + (size_t)ossl.SSL_pending(p->ssl);
    if (cap < 1024)
        cap = 1024;
    PyObject *out = aio_fault_hit(AIO_FAULT_PYOBJ)   /* a fault site */
                        ? PyErr_NoMemory()
                        : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (out == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        (void)direct_done(p);   /* keep the bytes: the connection fails anyway */
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    size_t used = 0;
    for (;;) {
        if (used == cap) {
            cap *= 2;
            if (_PyBytes_Resize(&out, (Py_ssize_t)cap) < 0) {
                PyErr_Clear();
                (void)direct_done(p);
                return PyErr_NoMemory();
            }
        }
        size_t got = 0;
        if (ossl.SSL_read_ex(p->ssl, PyBytes_AS_STRING(out) + used, cap - used, &got)) {
            used += got;
            continue;
        }
        int err = ossl.SSL_get_error(p->ssl, 0);
        *status = err == X_SSL_ERROR_WANT_READ ? 0 : err == X_SSL_ERROR_ZERO_RETURN ? 1 : 2;
        break;
    }
    if (direct_done(p) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (used < cap && _PyBytes_Resize(&out, (Py_ssize_t)used) < 0)
        return NULL;
    return out;
}

/* asyncio's _do_read__buffered(): SSL_read() into the buffer the
 * application's get_buffer() gives (sized by the ciphertext pending), then
 * buffer_updated(); a buffer filled to the end schedules _do_read() for the
 * rest, as asyncio does.  *status as read_records().  0, or -1 with an
 * exception (from the application's callbacks or an object not made). */
static int read_buffered(aio_tls_state *ts, PyObject *proto, PumpObject *p, int *status)
{
    *status = 0;
    /* The direct bytes go to the MemoryBIO first: get_buffer() is the
     * application's code, and may do anything. */
    if (direct_done(p) < 0)
        return -1;
    PyObject *hint = aio_fault_hit(AIO_FAULT_PYOBJ)   /* a fault site */
                         ? PyErr_NoMemory()
                         : PyLong_FromSize_t(ossl.BIO_ctrl_pending(p->rbio));
    if (hint == NULL)
        return -1;
    PyObject *get = PyObject_GetAttr(proto, ts->name[N_APP_GET_BUFFER]);
    PyObject *buf = get ? PyObject_CallOneArg(get, hint) : NULL;
    Py_XDECREF(get);
    Py_DECREF(hint);
    if (buf == NULL)
        return -1;
    Py_buffer v;
    if (PyObject_GetBuffer(buf, &v, PyBUF_WRITABLE) < 0) {
        Py_DECREF(buf);
        return -1;
    }
    Py_DECREF(buf);   /* the export keeps it alive */
    size_t off = 0, len = (size_t)v.len;
    int filled = 0;
    if (len == 0) {
        *status = 1;   /* asyncio's read(0) returns 0: its close_notify branch */
    } else {
        for (;;) {
            size_t got = 0;
            if (ossl.SSL_read_ex(p->ssl, (char *)v.buf + off, len - off, &got)) {
                off += got;
                if (off == len) {
                    filled = 1;
                    break;
                }
                continue;
            }
            int err = ossl.SSL_get_error(p->ssl, 0);
            *status = err == X_SSL_ERROR_WANT_READ ? 0 : err == X_SSL_ERROR_ZERO_RETURN ? 1 : 2;
            break;
        }
    }
    PyBuffer_Release(&v);
    if (filled) {
        PyObject *loop = PyObject_GetAttr(proto, ts->name[N_LOOP]);
        PyObject *again = loop ? PyObject_GetAttr(proto, ts->name[N_DO_READ]) : NULL;
        PyObject *h = again ? PyObject_CallMethodOneArg(loop, ts->name[N_CALL_SOON], again) : NULL;
        Py_XDECREF(loop);
        Py_XDECREF(again);
        if (h == NULL)
            return -1;
        Py_DECREF(h);
    }
    if (off > 0) {
        PyObject *n = PyLong_FromSize_t(off);
        PyObject *upd = n ? PyObject_GetAttr(proto, ts->name[N_APP_BUFFER_UPDATED]) : NULL;
        PyObject *r = upd ? PyObject_CallOneArg(upd, n) : NULL;
        Py_XDECREF(n);
        Py_XDECREF(upd);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* The rest of asyncio's _do_read() after the application got its data:
 * _do_write() or _process_outgoing(), then _control_ssl_reading(); each
 * called only when it has something to do. */
static int after_read(aio_tls_state *ts, PyObject *proto, PumpObject *p)
{
    PyObject *backlog = PyObject_GetAttr(proto, ts->name[N_WRITE_BACKLOG]);
    if (backlog == NULL)
        return -1;
    int pending = PyObject_IsTrue(backlog);
    Py_DECREF(backlog);
    if (pending < 0)
        return -1;
    if (pending) {
        if (call0(ts, proto, N_DO_WRITE) < 0)
            return -1;
    } else {
        int app_paused = attr_true(ts, proto, N_APP_WRITING_PAUSED);
        if (app_paused < 0)
            return -1;
        if ((app_paused || ossl.BIO_ctrl_pending(p->wbio) > 0) &&
            call0(ts, proto, N_PROCESS_OUTGOING) < 0)
            return -1;
    }
    int ssl_paused = attr_true(ts, proto, N_SSL_READING_PAUSED);
    if (ssl_paused < 0)
        return -1;
    if (!ssl_paused) {
        PyObject *hw = PyObject_GetAttr(proto, ts->name[N_INCOMING_HIGH_WATER]);
        if (hw == NULL)
            return -1;
        Py_ssize_t high = PyLong_AsSsize_t(hw);
        Py_DECREF(hw);
        if (high == -1 && PyErr_Occurred())
            return -1;
        if ((Py_ssize_t)ossl.BIO_ctrl_pending(p->rbio) < high)
            return 0;
    }
    return call0(ts, proto, N_CONTROL_SSL_READING);
}

int aio_tls_feed(TransportObject *t, PyObject *pump, const char *data, size_t n)
{
    aio_tls_state *ts = tls_state(tr_state(t));
    PumpObject *p = pump_of(ts, pump);
    PyObject *proto = Py_NewRef(t->protocol);
    int rc = -1;
    if (p == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TLS pump gone");
        goto done;
    }
    Py_INCREF(p);
    int status = 0;
    int buffered = attr_true(ts, proto, N_APP_PROTOCOL_IS_BUFFER);
    if (buffered < 0) {
        /* Not read: into the MemoryBIO, so no byte is lost, then fatal. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        (void)ossl.BIO_write(p->rbio, data, n > INT_MAX ? INT_MAX : (int)n);
        PyErr_Restore(type, value, tb);
        goto fatal;
    }
    if (p->rd != NULL) {
        /* Served from the transport's buffer by our read BIO; whatever
         * SSL_read() leaves is moved into the MemoryBIO by direct_done(),
         * which read_records() and read_buffered() call before any Python
         * code runs. */
        p->rd->direct = data;
        p->rd->direct_len = n;
        n = 0;
    }
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (ossl.BIO_write(p->rbio, data, chunk) != chunk) {
            PyErr_NoMemory();
            goto done_p;
        }
        data += chunk;
        n -= (size_t)chunk;
    }
    if (buffered) {
        if (read_buffered(ts, proto, p, &status) < 0)
            goto fatal;
        goto read_done;
    }
    PyObject *plain = read_records(p, &status);
    if (plain == NULL)
        goto fatal;
    if (PyBytes_GET_SIZE(plain) > 0) {
        PyObject *app = PyObject_GetAttr(proto, ts->name[N_APP_PROTOCOL]);
        PyObject *r = app ? PyObject_CallMethodOneArg(app, tr_state(t)->str_data_received, plain)
                          : NULL;
        Py_XDECREF(app);
        Py_DECREF(plain);
        if (r == NULL)
            goto fatal;
        Py_DECREF(r);
    } else {
        Py_DECREF(plain);
    }
read_done:
    if (status == 2) {
        /* asyncio's _do_read() meets the same error again through the
         * SSLObject and raises (or ignores) it as asyncio does. */
        rc = call0(ts, proto, N_DO_READ);
        goto done_p;
    }
    if (status == 1) {
        /* close_notify */
        if (call0(ts, proto, N_CALL_EOF_RECEIVED) < 0 || call0(ts, proto, N_START_SHUTDOWN) < 0)
            goto fatal;
        rc = 0;
        goto done_p;
    }
    if (after_read(ts, proto, p) < 0)
        goto fatal;
    rc = 0;
    goto done_p;
fatal:
    rc = fatal_on_exception(ts, proto);
done_p:
    Py_DECREF(p);
done:
    Py_DECREF(proto);
    return rc;
}

/* ---- write: the application transport's write() and writelines() -------- */

/* The protocol and its pump when the fast write path applies (new
 * references), else *proto == NULL.  Always 0: whatever stands in the way
 * (even an attribute missing) means asyncio's write path. */
static int write_fast(aio_tls_state *ts, PyObject *self, PyObject **proto, PumpObject **pump)
{
    *proto = NULL;
    *pump = NULL;
    PyObject *pr = PyObject_GetAttr(self, ts->name[N_SSL_PROTOCOL]);
    if (pr == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (pr == Py_None)
        goto no;
    PyObject *o = PyObject_GetAttr(pr, ts->name[N_PUMP]);
    if (o == NULL)
        goto error;
    PumpObject *p = pump_of(ts, o);
    if (p == NULL) {
        Py_DECREF(o);
        goto no;
    }
    PyObject *state = PyObject_GetAttr(pr, ts->name[N_STATE]);
    PyObject *backlog = state ? PyObject_GetAttr(pr, ts->name[N_WRITE_BACKLOG]) : NULL;
    int fast = state == ts->wrapped;
    if (backlog != NULL && fast) {
        int b = PyObject_IsTrue(backlog);
        int sp = b == 0 ? attr_true(ts, pr, N_SSL_WRITING_PAUSED) : b;
        int ap = sp == 0 ? attr_true(ts, pr, N_APP_WRITING_PAUSED) : sp;
        fast = ap == 0;
        if (ap < 0) {
            Py_DECREF(state);
            Py_DECREF(backlog);
            Py_DECREF(o);
            goto error;
        }
    }
    Py_XDECREF(state);
    Py_XDECREF(backlog);
    if (state == NULL || backlog == NULL) {
        Py_DECREF(o);
        goto error;
    }
    if (!fast) {
        Py_DECREF(o);
        goto no;
    }
    *proto = pr;
    *pump = p;
    return 0;
error:
    /* An attribute this Python's SSLProtocol does not have: asyncio's
     * write path, which needs none of them. */
    PyErr_Clear();
    Py_DECREF(pr);
    return 0;
no:
    Py_DECREF(pr);
    return 0;
}

/* SSL_write() all of buf.  Returns the bytes written; *failed is set when
 * OpenSSL refused the rest (its error left queued for asyncio's code). */
static size_t encrypt(PumpObject *p, const char *buf, size_t len, int *failed)
{
    size_t done = 0;
    *failed = 0;
    while (done < len) {
        size_t w = 0;
        if (!ossl.SSL_write_ex(p->ssl, buf + done, len - done, &w)) {
            *failed = 1;
            break;
        }
        done += w;
    }
    return done;
}

/* What is left of a write the fast path could not finish, handed to
 * asyncio's _write_appdata((rest,)), which raises or queues it as asyncio
 * does. */
static int write_rest(aio_tls_state *ts, PyObject *proto, const char *buf, size_t len)
{
    PyObject *rest = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    PyObject *tup = rest ? PyTuple_Pack(1, rest) : NULL;
    Py_XDECREF(rest);
    if (tup == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(proto, ts->name[N_WRITE_APPDATA], tup);
    Py_DECREF(tup);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Records up to this size are made from coalesced writelines() pieces. */
#define TLS_COALESCE 16384

/* The write methods are plain method descriptors on a Python class, with
 * no module to hand: they find the TLS state here.  Set by _tls_setup for
 * the first module instance only (another interpreter's aioloop keeps
 * asyncio's Python write path), cleared with that module. */
static aio_tls_state *the_tls_state;

/* The end of a fast write: what was encrypted to the TCP transport, then,
 * when OpenSSL refused the rest (`failed`), the rest to asyncio's
 * _write_appdata(), which raises its error as asyncio does.  0, or -1 with
 * an exception to propagate. */
static int out_finish(aio_tls_state *ts, PyObject *proto, PumpObject *p, int failed,
                      const char *rest, size_t rest_len)
{
    if (out_send(ts, proto, p) < 0)
        return fatal_on_exception(ts, proto);
    if (failed)
        return write_rest(ts, proto, rest, rest_len);
    return 0;
}

/* bytes, bytearray or a C-contiguous memoryview: what the fast path takes
 * (anything else goes to asyncio's code, which accepts or fails it as
 * asyncio does). */
static int plain_buffer(PyObject *o)
{
    if (PyBytes_Check(o) || PyByteArray_Check(o))
        return 1;
    return PyMemoryView_Check(o) && PyBuffer_IsContiguous(PyMemoryView_GET_BUFFER(o), 'C');
}

static PyObject *app_write(PyObject *self, PyObject *data)
{
    aio_tls_state *ts = the_tls_state;
    if (ts == NULL || !plain_buffer(data))
        return ts ? PyObject_CallFunctionObjArgs(ts->py_write, self, data, NULL)
                  : (PyErr_SetString(PyExc_RuntimeError, "TLS layer not set up"), NULL);
    PyObject *proto;
    PumpObject *p;
    if (write_fast(ts, self, &proto, &p) < 0)
        return NULL;
    if (proto == NULL)
        return PyObject_CallFunctionObjArgs(ts->py_write, self, data, NULL);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(proto);
        Py_DECREF(p);
        return NULL;
    }
    int rc = 0;
    if (view.len > 0) {
        int failed;
        out_begin(p, (size_t)view.len);
        size_t done = encrypt(p, view.buf, (size_t)view.len, &failed);
        rc = out_finish(ts, proto, p, failed, (const char *)view.buf + done,
                        (size_t)view.len - done);
    }
    PyBuffer_Release(&view);
    Py_DECREF(proto);
    Py_DECREF(p);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *app_writelines(PyObject *self, PyObject *list_of_data)
{
    aio_tls_state *ts = the_tls_state;
    if (ts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TLS layer not set up");
        return NULL;
    }
    PyObject *proto;
    PumpObject *p;
    if (write_fast(ts, self, &proto, &p) < 0)
        return NULL;
    if (proto == NULL)
        return PyObject_CallFunctionObjArgs(ts->py_writelines, self, list_of_data, NULL);
    /* A tuple (immutable: an item's buffer export cannot change the
     * sequence under the loop below), with Python's own error for what is
     * not iterable, as asyncio's `for data in list_of_data`. */
    PyObject *items = PySequence_Tuple(list_of_data);
    PyObject *res = NULL;
    if (items == NULL)
        goto out;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    PyObject **it = PySequence_Fast_ITEMS(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!plain_buffer(it[i])) {
            /* Not bytes, bytearray or a contiguous memoryview: asyncio's
             * code takes or fails the whole call (it queues every item and
             * fails in _do_write() on one OpenSSL cannot take). */
            res = PyObject_CallFunctionObjArgs(ts->py_writelines, self, items, NULL);
            goto out;
        }
    }
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyObject_Length(it[i]);
        if (len < 0)
            PyErr_Clear();   /* an estimate only */
        else
            total += (size_t)len;
    }
    char small[TLS_COALESCE];
    size_t fill = 0;
    int failed = 0, rc = 0, finished = 0;
    out_begin(p, total);
    for (Py_ssize_t i = 0; i <= n && !finished; i++) {
        Py_buffer v = {0};
        if (i < n && PyObject_GetBuffer(it[i], &v, PyBUF_SIMPLE) < 0) {
            /* (checked above: an exporter that changed its mind) */
            if (out_send(ts, proto, p) < 0)
                PyErr_Clear();
            goto out;
        }
        size_t len = i < n ? (size_t)v.len : 0;
        /* Encrypt the coalesced pieces when this one does not fit (or at the end). */
        if (fill > 0 && (i == n || fill + len > sizeof(small))) {
            size_t d = encrypt(p, small, fill, &failed);
            if (failed) {
                /* asyncio would queue what follows behind the failure: it
                 * goes with the connection the failure ends. */
                rc = out_finish(ts, proto, p, 1, small + d, fill - d);
                finished = 1;
            }
            fill = 0;
        }
        if (!finished && i < n) {
            if (len <= sizeof(small) - fill) {
                memcpy(small + fill, v.buf, len);
                fill += len;
            } else {
                size_t d = encrypt(p, v.buf, len, &failed);
                if (failed) {
                    rc = out_finish(ts, proto, p, 1, (const char *)v.buf + d, len - d);
                    finished = 1;
                }
            }
        }
        if (i < n)
            PyBuffer_Release(&v);
    }
    if (!finished)
        rc = out_finish(ts, proto, p, 0, NULL, 0);
    if (rc == 0)
        res = Py_NewRef(Py_None);
out:
    Py_XDECREF(items);
    Py_DECREF(proto);
    Py_DECREF(p);
    return res;
}

static PyMethodDef app_write_def = {
    "write", (PyCFunction)app_write, METH_O,
    "Write some data bytes to the transport (encrypted in C when the connection is "
    "established; asyncio's SSL transport otherwise)."};

static PyMethodDef app_writelines_def = {
    "writelines", (PyCFunction)app_writelines, METH_O,
    "Write a list (or any iterable) of data bytes to the transport."};

/* ---- setup ---------------------------------------------------------------- */

/* _tls_setup(ssl_library_path, protocol_class, app_transport_class,
 *            wrapped_state) -> bool
 * Resolves OpenSSL's functions from the library Python's _ssl loaded and
 * installs the C write()/writelines() on the application transport class.
 * False (nothing installed) when the functions cannot be found. */
static PyObject *tls_setup(PyObject *m, PyObject *args)
{
    PyObject *path, *proto_type, *app_type, *wrapped;
    if (!PyArg_ParseTuple(args, "OO!O!O:_tls_setup", &path, &PyType_Type, &proto_type,
                          &PyType_Type, &app_type, &wrapped))
        return NULL;
    aio_state *st = PyModule_GetState(m);
    aio_tls_state *ts = tls_state(st);
    if (!ossl.ready) {
        const char *p = path == Py_None ? NULL : PyUnicode_AsUTF8(path);
        if (p == NULL && path != Py_None)
            return NULL;
        void *h = dlopen(p, RTLD_NOW | RTLD_NOLOAD);
        if (h == NULL || !resolve(h))
            Py_RETURN_FALSE;
        const char *bio = getenv("AIOLOOP_TLS_BIO");
        if (bio == NULL || strcmp(bio, "memory") != 0)
            (void)resolve_passbio(h);   /* else the MemoryBIOs, with their copies */
        ossl.ready = 1;
    }
    if (the_tls_state != NULL && the_tls_state != ts)
        Py_RETURN_FALSE;   /* another interpreter's aioloop has it */
    /* The slow paths: asyncio's own methods, from the class's base. */
    PyObject *base = (PyObject *)((PyTypeObject *)app_type)->tp_base;
    PyObject *py_write = PyObject_GetAttrString(base, "write");
    PyObject *py_writelines = py_write ? PyObject_GetAttrString(base, "writelines") : NULL;
    if (py_writelines == NULL) {
        Py_XDECREF(py_write);
        return NULL;
    }
    Py_XSETREF(ts->py_write, py_write);
    Py_XSETREF(ts->py_writelines, py_writelines);
    Py_XSETREF(ts->proto_type, Py_NewRef(proto_type));
    Py_XSETREF(ts->app_type, Py_NewRef(app_type));
    Py_XSETREF(ts->wrapped, Py_NewRef(wrapped));
    PyObject *w = PyDescr_NewMethod((PyTypeObject *)app_type, &app_write_def);
    PyObject *wl = w ? PyDescr_NewMethod((PyTypeObject *)app_type, &app_writelines_def) : NULL;
    int rc = wl ? PyObject_SetAttrString(app_type, "write", w) : -1;
    if (rc == 0)
        rc = PyObject_SetAttrString(app_type, "writelines", wl);
    Py_XDECREF(w);
    Py_XDECREF(wl);
    if (rc < 0)
        return NULL;
    the_tls_state = ts;
    Py_RETURN_TRUE;
}

PyMethodDef aio_tls_methods[] = {
    {"_tls_setup", tls_setup, METH_VARARGS,
     "_tls_setup(ssl_library_path, protocol_class, app_transport_class, wrapped_state): "
     "set up the C TLS byte path; False when OpenSSL's functions cannot be found."},
    {NULL, NULL, 0, NULL},
};

int aio_tls_add_types(PyObject *m, aio_state *st)
{
    aio_tls_state *ts = PyMem_Calloc(1, sizeof(*ts));
    if (ts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    st->tls = ts;
    for (int i = 0; i < N_COUNT; i++) {
        ts->name[i] = PyUnicode_InternFromString(names[i]);
        if (ts->name[i] == NULL)
            return -1;
    }
    ts->msg_fatal = PyUnicode_InternFromString("Fatal error on SSL protocol");
    if (ts->msg_fatal == NULL)
        return -1;
    ts->PumpType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pump_spec, NULL);
    if (ts->PumpType == NULL)
        return -1;
    return PyModule_AddObjectRef(m, "TLSPump", (PyObject *)ts->PumpType);
}

int aio_tls_traverse(aio_state *st, visitproc visit, void *arg)
{
    aio_tls_state *ts = tls_state(st);
    if (ts == NULL)
        return 0;
    Py_VISIT(ts->PumpType);
    Py_VISIT(ts->proto_type);
    Py_VISIT(ts->app_type);
    Py_VISIT(ts->wrapped);
    Py_VISIT(ts->py_write);
    Py_VISIT(ts->py_writelines);
    return 0;
}

void aio_tls_clear(aio_state *st)
{
    aio_tls_state *ts = tls_state(st);
    if (ts == NULL)
        return;
    if (the_tls_state == ts)
        the_tls_state = NULL;
    Py_CLEAR(ts->PumpType);
    Py_CLEAR(ts->proto_type);
    Py_CLEAR(ts->app_type);
    Py_CLEAR(ts->wrapped);
    Py_CLEAR(ts->py_write);
    Py_CLEAR(ts->py_writelines);
    Py_CLEAR(ts->msg_fatal);
    for (int i = 0; i < N_COUNT; i++)
        Py_CLEAR(ts->name[i]);
    PyMem_Free(ts);
    st->tls = NULL;
}
