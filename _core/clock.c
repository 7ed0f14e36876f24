/* The loop's clock as the scheduler reads it, and how an overridden time()
 * is noticed.
 *
 * asyncio's scheduler calls self.time() wherever it needs the time: in
 * call_later(), for the poll timeout and for the end of the due-timer window.
 * So a test double that replaces time() (mock.patch.object(loop, "time"),
 * a patched class, a subclass's method) moves the clock timers fire by.  The
 * C run loop reads CLOCK_MONOTONIC itself, which is what the core's time()
 * returns; it must call the Python time() instead whenever that is not the
 * core's.  Telling which costs the common path two loads and a compare:
 *
 * - an instance attribute "time" is seen when it is set or deleted (the
 *   type's tp_setattro below) and recorded in L->time_override;
 * - the type's "time" is looked up again only when the type's version tag
 *   differs from the one recorded in L->time_type_tag.  CPython gives a type
 *   a new tag whenever an attribute of it or of a base is assigned (and 0,
 *   "no valid tag", until the next lookup), so a tag seen once with the
 *   core's time() stays valid until the class is changed.
 *
 * Assigning into loop.__dict__ directly is not seen (asyncio's own code never
 * does that).  GIL held everywhere. */
#include "loop.h"

int aio_loop_time_recheck(LoopObject *L)
{
    if (L->time_override)
        return 1;
    PyTypeObject *tp = Py_TYPE(L);
    PyObject *found = PyObject_GetAttr((PyObject *)tp, L->st->str_time);
    if (found == NULL)
        return -1;
    int overridden = found != L->st->core_time;
    Py_DECREF(found);
    /* Read after the lookup, which gives the type a tag if it had none. */
    L->time_type_tag = overridden ? 0 : tp->tp_version_tag;
    return overridden;
}

int aio_loop_time_call(LoopObject *L, double *now)
{
    PyObject *t = PyObject_CallMethodNoArgs((PyObject *)L, L->st->str_time);
    if (t == NULL)
        return -1;
    double d = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    *now = d;
    return 0;
}

int aio_loop_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr(self, name, value) < 0)
        return -1;
    LoopObject *L = (LoopObject *)self;
    /* GenericSetAttr refused any name that is not a str. */
    if (name == L->st->str_time || PyUnicode_Compare(name, L->st->str_time) == 0)
        L->time_override = value != NULL;
    return 0;
}
