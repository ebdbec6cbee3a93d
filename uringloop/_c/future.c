/*
 * The completion of ops.FutureOp, the one op record for operations whose
 * only consumer is a future: it sets the future's result to the CQE's res,
 * or an OSError for a negative res other than ECANCELED; a future already
 * done (cancelled) is left alone.
 *
 * poll_future(table, fd, events, future) makes one and queues its POLL in
 * one call: the sock_* methods wait this way between non-blocking tries.
 *
 * file_request(table, cls, future, keep, opcode, a, b, c) does the same for
 * the file and path requests of uringloop.open/uringloop.os, whose records
 * (fileops._FileOp and its open subclass) also keep the buffer or path the
 * kernel reads or writes.  An open's record closes the fd of a completion
 * nobody waits for any more (a cancelled open).
 */
#include "optable.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define FUTURE_OP_FIELDS(X) X(future)
FIELD_TABLE(future_op_fields, FUTURE_OP_FIELDS);
#define FILE_OP_FIELDS(X) X(keep)
FIELD_TABLE(file_op_fields, FILE_OP_FIELDS);

static PyTypeObject *future_op_type, *file_op_type;
static PyObject *str_done, *str_set_result, *str_set_exception;

/* fut.done(): 1, 0, or -1 with an exception set */
static int future_done(PyObject *fut)
{
    PyObject *args[1] = {fut};
    PyObject *r = PyObject_VectorcallMethod(str_done, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    if (!r)
        return -1;
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    return done;
}

static int resolve(PyObject *fut, int32_t res);

static int future_complete(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *fut = FIELD(op, future_op_fields.future);
    if ((flags & UL_CQE_F_MORE) || !fut)
        return 1;
    int done = future_done(fut);
    if (done)
        return done < 0 ? -1 : 1;
    return resolve(fut, res);
}

/* An open's: the fd of a completion whose future is done already is
 * nobody's, and closed here. */
static int open_complete(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *fut = FIELD(op, future_op_fields.future);
    int done = future_done(fut);
    if (done) {
        if (done > 0 && res >= 0)
            close(res);
        return done < 0 ? -1 : 1;
    }
    return resolve(fut, res);
}

/* The future's result is res, or an OSError for a negative res other
 * than ECANCELED; 1, or -1 with an exception set. */
static int resolve(PyObject *fut, int32_t res)
{
    PyObject *r;
    PyObject *name = str_set_result, *value;
    if (res < 0 && res != -ECANCELED) {
        value = PyObject_CallFunction(PyExc_OSError, "is", -res, strerror(-res));
        name = str_set_exception;
    } else {
        value = PyLong_FromLong(res);
    }
    if (!value)
        return -1;
    r = call_method1(fut, name, value);
    Py_DECREF(value);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

/* poll_future(table, fd, events, future) -> user_data */
static PyObject *poll_future(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 4 || !ul_is_optable(args[0]) || !future_op_type) {
        PyErr_SetString(PyExc_TypeError, "poll_future(table, fd, events, future)");
        return NULL;
    }
    OpTable *t = (OpTable *)args[0];
    long fd = PyLong_AsLong(args[1]), events = PyLong_AsLong(args[2]);
    if (PyErr_Occurred() || ul_need_ring(t) < 0)
        return NULL;
    PyObject *op = future_op_type->tp_alloc(future_op_type, 0);
    if (!op)
        return NULL;
    put_borrowed(op, future_op_fields.future, args[3]);
    uint32_t ud = ul_table_add(t, op);
    Py_DECREF(op);
    int err;
    while (ud && (err = ul_prep_poll(t->ring, ud, (int)fd, (unsigned)events)))
        if (ul_prep_failed(t, ud, err) < 0)
            return NULL;
    return ud ? PyLong_FromUnsignedLong(ud) : NULL;
}

/* The pointer and length of keep's bytes, for a request that reads them
 * (writable: one that writes them); 0, or -1 with an exception set.  keep
 * outlives the request in its record, and nothing else resizes it. */
static int keep_buffer(PyObject *keep, int writable, void **ptr, Py_ssize_t *len)
{
    Py_buffer view;
    if (PyObject_GetBuffer(keep, &view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    *ptr = view.buf;
    *len = view.len;
    PyBuffer_Release(&view);
    return 0;
}

/* keep's paths: itself (bytes), or both of its pair of bytes; 0, or -1
 * with an exception set. */
static int keep_paths(PyObject *keep, const char **one, const char **two)
{
    if (two) {
        if (!PyTuple_Check(keep) || PyTuple_GET_SIZE(keep) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(keep, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(keep, 1)))
            goto wrong;
        *one = PyBytes_AS_STRING(PyTuple_GET_ITEM(keep, 0));
        *two = PyBytes_AS_STRING(PyTuple_GET_ITEM(keep, 1));
        return 0;
    }
    if (!PyBytes_Check(keep))
        goto wrong;
    *one = PyBytes_AS_STRING(keep);
    return 0;
wrong:
    PyErr_SetString(PyExc_TypeError, "file_request: keep is not the request's paths");
    return -1;
}

/* Queue the request of `opcode` (its SQE flags in bits 8-15) into slot ud:
 * 0, -errno of a full SQ, or 1 with an exception set.  What each takes:
 *   OPENAT     keep: path;            a: dfd, b: flags, c: mode
 *   UNLINKAT   keep: path;            a: dfd, b: flags
 *   MKDIRAT    keep: path;            a: dfd, b: mode
 *   RENAMEAT   keep: (old, new);      a: old dfd, b: new dfd, c: flags
 *   LINKAT     keep: (old, new);      a: old dfd, b: new dfd, c: flags
 *   SYMLINKAT  keep: (target, link);  a: link's dfd
 *   STATX      keep: (path, buffer);  a: dfd, b: flags, c: mask
 *   READ       keep: buffer to fill;  a: fd, b: offset
 *   WRITE      keep: the bytes;       a: fd, b: offset
 *   CLOSE      a: fd;  FSYNC  a: fd, b: flags;  FTRUNCATE  a: fd, b: length */
static int prep_file(struct ul_ring *r, uint32_t ud, long opcode, PyObject *keep, long a,
                     long long b, long c)
{
    const char *one, *two;
    void *buf;
    Py_ssize_t len;
    switch (opcode & 0xff) {
    case UL_OP_OPENAT:
        if (keep_paths(keep, &one, NULL) < 0)
            return 1;
        return (opcode >> 8) & UL_SQE_ASYNC
                   ? ul_prep_openat_async(r, ud, (int)a, one, (int)b, (unsigned)c)
                   : ul_prep_openat(r, ud, (int)a, one, (int)b, (unsigned)c);
    case UL_OP_UNLINKAT:
        if (keep_paths(keep, &one, NULL) < 0)
            return 1;
        return ul_prep_unlinkat(r, ud, (int)a, one, (int)b);
    case UL_OP_MKDIRAT:
        if (keep_paths(keep, &one, NULL) < 0)
            return 1;
        return ul_prep_mkdirat(r, ud, (int)a, one, (unsigned)b);
    case UL_OP_RENAMEAT:
        if (keep_paths(keep, &one, &two) < 0)
            return 1;
        return ul_prep_renameat(r, ud, (int)a, one, (int)b, two, (unsigned)c);
    case UL_OP_LINKAT:
        if (keep_paths(keep, &one, &two) < 0)
            return 1;
        return ul_prep_linkat(r, ud, (int)a, one, (int)b, two, (int)c);
    case UL_OP_SYMLINKAT:
        if (keep_paths(keep, &one, &two) < 0)
            return 1;
        return ul_prep_symlinkat(r, ud, one, (int)a, two);
    case UL_OP_STATX:
        if (!PyTuple_Check(keep) || PyTuple_GET_SIZE(keep) != 2 ||
            keep_paths(PyTuple_GET_ITEM(keep, 0), &one, NULL) < 0 ||
            keep_buffer(PyTuple_GET_ITEM(keep, 1), 1, &buf, &len) < 0)
            return 1;
        if (len < (Py_ssize_t)sizeof(struct ul_statx)) {
            PyErr_SetString(PyExc_ValueError, "file_request: a statx buffer is too small");
            return 1;
        }
        return ul_prep_statx(r, ud, (int)a, one, (int)b, (unsigned)c, buf);
    case UL_OP_READ:
    case UL_OP_WRITE:
        if (keep_buffer(keep, (opcode & 0xff) == UL_OP_READ, &buf, &len) < 0)
            return 1;
        if (len > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "file_request: at most 4 GiB - 1 at once");
            return 1;
        }
        return (opcode & 0xff) == UL_OP_READ ? ul_prep_read(r, ud, (int)a, buf, (unsigned)len, b)
                                             : ul_prep_write(r, ud, (int)a, buf, (unsigned)len, b);
    case UL_OP_CLOSE:
        return ul_prep_close(r, ud, (int)a);
    case UL_OP_FSYNC:
        return ul_prep_fsync(r, ud, (int)a, (unsigned)b);
    case UL_OP_FTRUNCATE:
        return ul_prep_ftruncate(r, ud, (int)a, b);
    }
    PyErr_Format(PyExc_ValueError, "file_request: opcode %ld", opcode);
    return 1;
}

/* file_request(table, cls, future, keep, opcode, a, b, c) -> user_data */
static PyObject *file_request(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 8 || !ul_is_optable(args[0]) || !PyType_Check(args[1]) || !file_op_type ||
        !PyType_IsSubtype((PyTypeObject *)args[1], file_op_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "file_request(table, cls, future, keep, opcode, a, b, c)");
        return NULL;
    }
    OpTable *t = (OpTable *)args[0];
    long opcode = PyLong_AsLong(args[4]), a = PyLong_AsLong(args[5]), c = PyLong_AsLong(args[7]);
    long long b = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred() || ul_need_ring(t) < 0)
        return NULL;
    PyTypeObject *cls = (PyTypeObject *)args[1];
    PyObject *op = cls->tp_alloc(cls, 0);
    if (!op)
        return NULL;
    put_borrowed(op, future_op_fields.future, args[2]);
    put_borrowed(op, file_op_fields.keep, args[3]);
    uint32_t ud = ul_table_add(t, op);
    Py_DECREF(op);
    int err;
    while (ud && (err = prep_file(t->ring, ud, opcode, args[3], a, b, c))) {
        if (err > 0) {                      /* refused before any SQE was taken */
            Py_DECREF(ul_table_take(t, ud));
            return NULL;
        }
        if (ul_prep_failed(t, ud, err) < 0)
            return NULL;
    }
    return ud ? PyLong_FromUnsignedLong(ud) : NULL;
}

/* install_future_op(cls): cls's records resolve their future in C; the
 * first class installed (ops.FutureOp) is the one poll_future makes. */
static PyObject *install_future_op(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || FIND_FIELDS(cls, future_op_fields) < 0 ||
        ul_register_kind((PyTypeObject *)cls, future_complete, UL_NO_CONTEXT) < 0)
        return NULL;
    if (!future_op_type)
        hold((PyObject **)&future_op_type, cls);
    Py_RETURN_NONE;
}

/* install_file_ops(cls, open_cls): the records file_request makes, cls's
 * (a FutureOp with a `keep` slot) and open_cls's (its subclass for opens). */
static PyObject *install_file_ops(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 2 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], (PyTypeObject *)args[0])) {
        PyErr_SetString(PyExc_TypeError, "install_file_ops(cls, open_cls)");
        return NULL;
    }
    if (FIND_FIELDS(args[0], future_op_fields) < 0 || FIND_FIELDS(args[0], file_op_fields) < 0 ||
        ul_register_kind((PyTypeObject *)args[0], future_complete, UL_NO_CONTEXT) < 0 ||
        ul_register_kind((PyTypeObject *)args[1], open_complete, UL_NO_CONTEXT) < 0)
        return NULL;
    hold((PyObject **)&file_op_type, args[0]);
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"poll_future", (PyCFunction)(void (*)(void))poll_future, METH_FASTCALL,
     "poll_future(table, fd, events, future) -> user_data: a single-shot POLL\n"
     "whose completion sets the future's result to the revents."},
    {"install_future_op", install_future_op, METH_O,
     "install_future_op(cls): completions of cls resolve their `future` in C."},
    {"file_request", (PyCFunction)(void (*)(void))file_request, METH_FASTCALL,
     "file_request(table, cls, future, keep, opcode, a, b, c) -> user_data: a record of\n"
     "cls keeping keep, and its file request queued."},
    {"install_file_ops", (PyCFunction)(void (*)(void))install_file_ops, METH_FASTCALL,
     "install_file_ops(cls, open_cls): the records of file_request."},
    {NULL}};

int ul_future_install(PyObject *dict)
{
    static const struct ul_name names[] = {
        {&str_done, "done"}, {&str_set_result, "set_result"},
        {&str_set_exception, "set_exception"}};
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0)
        return -1;
    return add_functions(dict, defs);
}
