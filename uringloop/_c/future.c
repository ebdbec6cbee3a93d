/*
 * The completion of ops.FutureOp, the one op record for operations whose
 * only consumer is a future: it sets the future's result to the CQE's res,
 * or an OSError for a negative res other than ECANCELED; a future already
 * done (cancelled) is left alone.
 *
 * poll_future(table, fd, events, future) makes one and queues its POLL in
 * one call: the sock_* methods wait this way between non-blocking tries.
 */
#include "optable.h"
#include <errno.h>
#include <string.h>

#define FUTURE_OP_FIELDS(X) X(future)
FIELD_TABLE(future_op_fields, FUTURE_OP_FIELDS);

static PyTypeObject *future_op_type;
static PyObject *str_done, *str_set_result, *str_set_exception;

static int future_complete(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *fut = FIELD(op, future_op_fields.future), *r;
    if ((flags & UL_CQE_F_MORE) || !fut)
        return 1;
    PyObject *args[1] = {fut};
    r = PyObject_VectorcallMethod(str_done, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r)
        return -1;
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (done)
        return done < 0 ? -1 : 1;
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

/* install_future_op(cls): cls's records resolve their future in C; the
 * first class installed (ops.FutureOp) is the one poll_future makes, later
 * ones are its subclasses with slots of their own (the file requests'). */
static PyObject *install_future_op(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || FIND_FIELDS(cls, future_op_fields) < 0 ||
        ul_register_kind((PyTypeObject *)cls, future_complete, UL_NO_CONTEXT) < 0)
        return NULL;
    if (!future_op_type)
        hold((PyObject **)&future_op_type, cls);
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"poll_future", (PyCFunction)(void (*)(void))poll_future, METH_FASTCALL,
     "poll_future(table, fd, events, future) -> user_data: a single-shot POLL\n"
     "whose completion sets the future's result to the revents."},
    {"install_future_op", install_future_op, METH_O,
     "install_future_op(cls): completions of cls resolve their `future` in C."},
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
