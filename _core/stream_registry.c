/* The loop's streams: the engine lists them; the binding holds a strong
 * reference to each owner (a transport or a listener) from START until the
 * stream is freed, so an owner outlives every completion that names it. */
#include "loop.h"

/* A live stream holds a strong reference to its owner: the owner outlives
 * every completion that names it. */
void aio_stream_link(LoopObject *L, aio_stream *s)
{
    (void)L;   /* the engine lists the stream; the binding holds its owner */
    Py_INCREF((PyObject *)aio_stream_owner(s));
}

void aio_stream_unlink_free(LoopObject *L, aio_stream *s)
{
    if (s == NULL)
        return;
    PyObject *owner = aio_stream_owner(s);
    aio_stream_free(L->engine, s);
    Py_DECREF(owner);
}

/* Every stream completion, to its owner by kind; deliver=0 while the loop
 * closes (release memory, call nothing).  -1 only when SystemExit or
 * KeyboardInterrupt must propagate. */
int aio_stream_completion(LoopObject *L, aio_req *r, int deliver)
{
    (void)L;
    aio_stream *s = r->u.ctl.s;
    PyObject *owner = aio_stream_owner(s);
    if (aio_stream_kind(s) == AIO_STREAM_LISTENER)
        return aio_listener_completion(owner, r, deliver);
    return aio_transport_stream_completion(owner, r, deliver);
}

/* After the engine stopped: free every stream, telling its owner. */
void aio_streams_shutdown(LoopObject *L)
{
    aio_stream *s;
    while ((s = aio_engine_streams(L->engine)) != NULL) {
        if (aio_stream_kind(s) == AIO_STREAM_LISTENER)
            aio_listener_engine_gone(aio_stream_owner(s));
        else
            aio_transport_engine_gone(aio_stream_owner(s));
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
