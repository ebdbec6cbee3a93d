/*
 * Helpers shared by the C hot path (_hot.c, _callbacks.c): reaching Python
 * classes' __slots__ by offset, installing C methods on Python classes, and
 * taking an exception to hand it to a handler.
 */
#ifndef URINGLOOP_PYSLOTS_H
#define URINGLOOP_PYSLOTS_H

#include <Python.h>
#include <structmember.h>

/* The value of the __slots__ field at `off` in obj; NULL while unset. */
#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* A flag field's truth; an unset field is false. */
static inline int is_set(PyObject *o)
{
    if (o == Py_False || o == Py_None || o == NULL)
        return 0;
    if (o == Py_True)
        return 1;
    return PyObject_IsTrue(o) != 0;
}

/* The offset of a __slots__ field of cls (found along its MRO). */
static inline int slot_offset(PyObject *cls, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (!d)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok)
        PyErr_Format(PyExc_TypeError, "%R.%s is not a __slots__ field", cls, name);
    return ok ? 0 : -1;
}

/* cls.<def's name> = a method descriptor for def, bound like a Python method. */
static inline int set_method(PyObject *cls, PyMethodDef *def)
{
    PyObject *m = PyDescr_NewMethod((PyTypeObject *)cls, def);
    int rc = m ? PyObject_SetAttrString(cls, def->ml_name, m) : -1;
    Py_XDECREF(m);
    return rc;
}

/* The exception being raised, taken (normalized, with its traceback) for a
 * handler to be told of it; NULL, leaving it raised, for SystemExit and
 * KeyboardInterrupt, which always go on up. */
static inline PyObject *take_exception(void)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return NULL;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

#endif
