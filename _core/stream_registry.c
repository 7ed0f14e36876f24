/* The loop's streams: the engine lists them; the binding holds a strong
 * reference to each owner (a transport or a listener) from open until the
 * stream is freed, so an owner outlives every completion that names it.
 * Completions and the engine's end reach the owner through the callback
 * table it gave at open (aio_stream_ops): nothing here knows the kinds. */
#include "loop.h"

#include <errno.h>

static int transport_completion(void *owner, aio_req *r, int deliver)
{
    return aio_transport_stream_completion(owner, r, deliver);
}

static void transport_engine_gone(void *owner)
{
    aio_transport_engine_gone(owner);
}

static int listener_completion(void *owner, aio_req *r, int deliver)
{
    return aio_listener_completion(owner, r, deliver);
}

static void listener_engine_gone(void *owner)
{
    aio_listener_engine_gone(owner);
}

const aio_stream_ops aio_transport_stream_ops = {transport_completion, transport_engine_gone};
const aio_stream_ops aio_listener_stream_ops = {listener_completion, listener_engine_gone};

int aio_stream_open_owned(LoopObject *L, int fd, int kind, int credits, const aio_stream_ops *ops,
                          PyObject *owner, aio_stream **out)
{
    int rc = aio_stream_open(L->engine, fd, kind, credits, ops, owner, out);
    if (rc < 0) {
        if (rc == -ENOMEM)
            PyErr_NoMemory();
        else
            aio_set_errno_error(-rc);
        return -1;
    }
    /* A live stream holds a strong reference to its owner. */
    Py_INCREF(owner);
    return 0;
}

void aio_stream_unlink_free(LoopObject *L, aio_stream *s)
{
    if (s == NULL)
        return;
    PyObject *owner = aio_stream_owner(s);
    aio_stream_free(L->engine, s);
    Py_DECREF(owner);
}

/* Every stream completion, to its owner's callback; deliver=0 while the
 * loop closes (release memory, call nothing).  -1 only when SystemExit or
 * KeyboardInterrupt must propagate. */
int aio_stream_completion(LoopObject *L, aio_req *r, int deliver)
{
    (void)L;
    aio_stream *s = r->u.ctl.s;
    return aio_stream_ops_of(s)->completion(aio_stream_owner(s), r, deliver);
}

/* After the engine stopped: free every stream, telling its owner. */
void aio_streams_shutdown(LoopObject *L)
{
    aio_stream *s;
    while ((s = aio_engine_streams(L->engine)) != NULL) {
        aio_stream_ops_of(s)->engine_gone(aio_stream_owner(s));
        aio_stream_unlink_free(L, s);
    }
}

int aio_streams_traverse(LoopObject *L, visitproc visit, void *arg)
{
    if (L->engine == NULL)
        return 0;
    for (aio_stream *s = aio_engine_streams(L->engine); s != NULL; s = aio_stream_next(s))
        Py_VISIT((PyObject *)aio_stream_owner(s));
    return 0;
}

/* Runs fn(owner, r, deliver) inside ctx, as asyncio runs a handle's
 * callback in its context; directly when nothing is delivered (the loop
 * closes) or there is no context.  If ctx is entered already (a nested
 * dispatch cannot happen, but a user may have entered it), fn runs in the
 * current context rather than failing the completion. */
int aio_in_context(PyObject *ctx, int (*fn)(PyObject *, aio_req *, int), PyObject *owner,
                   aio_req *r, int deliver)
{
    if (!deliver || ctx == NULL)
        return fn(owner, r, deliver);
    /* The completion may drop the last reference to its owner (a CLOSE
     * frees the stream), and with it the context: hold both until the
     * context is exited. */
    Py_INCREF(ctx);
    Py_INCREF(owner);
    int rc;
    if (PyContext_Enter(ctx) < 0) {
        PyErr_Clear();
        rc = fn(owner, r, deliver);
    } else {
        rc = fn(owner, r, deliver);
        PyObject *exc = rc < 0 ? aio_err_fetch() : NULL;
        if (PyContext_Exit(ctx) < 0)
            PyErr_WriteUnraisable(owner);
        if (exc != NULL)
            aio_err_restore(exc);
    }
    Py_DECREF(owner);
    Py_DECREF(ctx);
    return rc;
}
