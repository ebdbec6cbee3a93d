/*
 * What the CPython side of the C code shares: reaching Python classes'
 * __slots__ by offset, installing C methods on Python classes, taking an
 * exception to hand it to a handler, and a send(2) that does not wait.
 *
 * Fields that C reads or writes are named once, in a list macro:
 *
 *     #define SEND_FIELDS(X) X(transport) X(chunks)
 *     FIELD_TABLE(send_fields, SEND_FIELDS);
 *     ... FIND_FIELDS(cls, send_fields) ...  FIELD(op, send_fields.chunks)
 *
 * FIELD_TABLE declares the struct of offsets and the array of names from
 * the same list, so the two cannot drift apart; FIND_FIELDS fills the
 * offsets from the Python class and fails at import if one is not a
 * __slots__ field there.
 */
#ifndef URINGLOOP_PYOBJ_H
#define URINGLOOP_PYOBJ_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <sys/socket.h>

/* The value of the __slots__ field at `off` in obj; NULL while unset. */
#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

#define UL_OFFSET_MEMBER(name) Py_ssize_t name;
#define UL_FIELD_NAME(name) #name,
#define FIELD_TABLE(table, LIST)                                   \
    static struct { LIST(UL_OFFSET_MEMBER) } table;                \
    static const char *const table##_names[] = { LIST(UL_FIELD_NAME) }
#define FIND_FIELDS(cls, table)                                    \
    find_fields((cls), table##_names, (Py_ssize_t *)&(table),       \
                sizeof(table##_names) / sizeof(*table##_names))

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

static inline int find_fields(PyObject *cls, const char *const *names, Py_ssize_t *offs,
                              size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (slot_offset(cls, names[i], &offs[i]) < 0)
            return -1;
    return 0;
}

/* A flag field's truth; an unset field is false. */
static inline int is_set(PyObject *o)
{
    if (o == Py_False || o == Py_None || o == NULL)
        return 0;
    if (o == Py_True)
        return 1;
    return PyObject_IsTrue(o) != 0;
}

/* Replace a field's value; `value` is a new reference, consumed. */
static inline void put(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = FIELD(obj, off);
    FIELD(obj, off) = value;
    Py_XDECREF(old);
}

static inline void put_borrowed(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    Py_INCREF(value);
    put(obj, off, value);
}

/* An int field's value; -1 where it is unset or not an int. */
static inline long get_long(PyObject *obj, Py_ssize_t off)
{
    PyObject *v = FIELD(obj, off);
    return v && PyLong_CheckExact(v) ? PyLong_AsLong(v) : -1;
}

static inline int put_long(PyObject *obj, Py_ssize_t off, long value)
{
    PyObject *v = PyLong_FromLong(value);
    if (!v)
        return -1;
    put(obj, off, v);
    return 0;
}

/* Keep a new reference to `what` in *where, dropping the old one. */
static inline void hold(PyObject **where, PyObject *what)
{
    Py_INCREF(what);
    Py_XSETREF(*where, what);
}

/* cls.<def's name> = a method descriptor for def, bound like a Python method. */
static inline int set_method(PyObject *cls, PyMethodDef *def)
{
    PyObject *m = PyDescr_NewMethod((PyTypeObject *)cls, def);
    int rc = m ? PyObject_SetAttrString(cls, def->ml_name, m) : -1;
    Py_XDECREF(m);
    return rc;
}

/* dict[name] = a module-level function, for each def up to {NULL}. */
static inline int add_functions(PyObject *dict, PyMethodDef *defs)
{
    for (PyMethodDef *d = defs; d->ml_name; d++) {
        PyObject *f = PyCFunction_New(d, NULL);
        int rc = f ? PyDict_SetItemString(dict, d->ml_name, f) : -1;
        Py_XDECREF(f);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Names that C calls methods by, interned once at install. */
struct ul_name {
    PyObject **where;
    const char *text;
};

static inline int intern_names(const struct ul_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(*names[i].where = PyUnicode_InternFromString(names[i].text)))
            return -1;
    return 0;
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

/* obj.name(arg) through vectorcall, for names interned once. */
static inline PyObject *call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* A Python method's function called as method(self, *args, **kwargs) from
 * a C method's vectorcall arguments: the path C leaves to Python (a closed
 * loop, debug mode, unusual arguments). */
static inline PyObject *call_slow(PyObject *method, PyObject *self, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **all = PyMem_Malloc((total + 1) * sizeof(PyObject *));
    if (!all)
        return PyErr_NoMemory();
    all[0] = self;
    memcpy(all + 1, args, total * sizeof(PyObject *));
    PyObject *r = PyObject_Vectorcall(method, all, nargs + 1, kwnames);
    PyMem_Free(all);
    return r;
}

/* send(2), or sendto(2) where name is given, without waiting and retried
 * on EINTR: the bytes sent; -EAGAIN where the socket has no room; -1 with
 * the error raised as the socket module raises it.  MSG_NOSIGNAL, as the
 * ring's own sends: no SIGPIPE where a program has not ignored it. */
static inline Py_ssize_t try_send(int fd, const void *buf, size_t len,
                                  const struct sockaddr *name, socklen_t namelen)
{
    ssize_t n;
    do {
        n = sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, name, namelen);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return -EAGAIN;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

#endif
