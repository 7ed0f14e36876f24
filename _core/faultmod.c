/* The fault-injection switches for tests (engine/aio_fault.h), as module
 * functions: _core._fault_set(site, nth, count=1), _core._fault_calls(site),
 * _core._fault_failed(site), _core._fault_reset(), _core.FAULT_SITES. */
#include "core.h"
#include "engine/aio_fault.h"

static int site_arg(PyObject *name)
{
    const char *s = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "site must be a str, not %.100s",
                         Py_TYPE(name)->tp_name);
        return -1;
    }
    int site = aio_fault_site_named(s);
    if (site < 0)
        PyErr_Format(PyExc_ValueError, "unknown fault site %R", name);
    return site;
}

static PyObject *fault_set(PyObject *m, PyObject *args)
{
    (void)m;
    PyObject *name;
    long nth, count = 1;
    if (!PyArg_ParseTuple(args, "Ol|l:_fault_set", &name, &nth, &count))
        return NULL;
    int site = site_arg(name);
    if (site < 0)
        return NULL;
    aio_fault_set(site, nth, count);
    Py_RETURN_NONE;
}

static PyObject *fault_calls(PyObject *m, PyObject *name)
{
    (void)m;
    int site = site_arg(name);
    return site < 0 ? NULL : PyLong_FromLong(aio_fault_calls(site));
}

static PyObject *fault_failed(PyObject *m, PyObject *name)
{
    (void)m;
    int site = site_arg(name);
    return site < 0 ? NULL : PyLong_FromLong(aio_fault_failed(site));
}

static PyObject *fault_reset(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    (void)m;
    aio_fault_reset();
    Py_RETURN_NONE;
}

PyMethodDef aio_fault_methods[] = {
    {"_fault_set", fault_set, METH_VARARGS,
     "_fault_set(site, nth, count=1): calls nth..nth+count-1 at site fail "
     "(count < 0: all from nth on; nth <= 0 disarms).  Tests only."},
    {"_fault_calls", fault_calls, METH_O, "Calls counted at a site since it was armed."},
    {"_fault_failed", fault_failed, METH_O, "Failures injected at a site since it was armed."},
    {"_fault_reset", fault_reset, METH_NOARGS, "Disarms every fault site."},
    {NULL, NULL, 0, NULL},
};

int aio_fault_add_sites(PyObject *m)
{
    PyObject *t = PyTuple_New(AIO_FAULT_NSITES);
    if (t == NULL)
        return -1;
    for (int i = 0; i < AIO_FAULT_NSITES; i++) {
        PyObject *s = PyUnicode_FromString(aio_fault_site_name(i));
        if (s == NULL) {
            Py_DECREF(t);
            return -1;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    int rc = PyModule_AddObjectRef(m, "FAULT_SITES", t);
    Py_DECREF(t);
    return rc;
}
