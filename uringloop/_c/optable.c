/*
 * OpTable: op records by user_data, and run(): submit, wait (without the
 * GIL), reap and dispatch every completion without leaving C.  See
 * optable.h for the rules.
 */
#include "optable.h"
#include <errno.h>
#include <string.h>

static PyTypeObject *optable_type;
static PyObject *str_complete;

/* ---- the registry of kinds ----------------------------------------------- */

#define MAX_KINDS 16

static struct kind {
    PyTypeObject *type;
    ul_complete_fn complete;
    Py_ssize_t context;
} kinds[MAX_KINDS];
static int nkinds;

int ul_register_kind(PyTypeObject *type, ul_complete_fn complete, Py_ssize_t context_offset)
{
    int i = 0;
    while (i < nkinds && kinds[i].type != type)
        i++;
    if (i == MAX_KINDS) {
        PyErr_SetString(PyExc_RuntimeError, "uringloop: too many kinds of op record");
        return -1;
    }
    if (i == nkinds) {
        Py_INCREF(type);
        nkinds++;
    }
    kinds[i] = (struct kind){type, complete, context_offset};
    return 0;
}

/* Completions mostly come in runs of one kind: the last one is tried first. */
static const struct kind *kind_of(PyTypeObject *type)
{
    static const struct kind *last;
    if (last && last->type == type)
        return last;
    for (int i = 0; i < nkinds; i++)
        if (kinds[i].type == type)
            return last = &kinds[i];
    return NULL;
}

/* register_kind(cls): records of cls run their complete() in the Context
 * in their `context` slot (None: the loop's own). */
static PyObject *register_kind(PyObject *module, PyObject *cls)
{
    Py_ssize_t context;
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "register_kind() takes a class");
        return NULL;
    }
    if (slot_offset(cls, "context", &context) < 0 ||
        ul_register_kind((PyTypeObject *)cls, NULL, context) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"register_kind", register_kind, METH_O,
     "register_kind(cls): completions of cls's records run in their `context` slot."},
    {NULL}};

/* ---- slots ----------------------------------------------------------------- */

static int table_grow(OpTable *t)
{
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    PyObject **slots = PyMem_Realloc(t->slots, cap * sizeof(*slots));
    if (!slots)
        return -1;
    t->slots = slots;
    uint32_t *free_ = PyMem_Realloc(t->free, cap * sizeof(*free_));
    if (!free_)
        return -1;
    t->free = free_;
    memset(slots + t->cap, 0, (cap - t->cap) * sizeof(*slots));
    t->cap = cap;
    return 0;
}

uint32_t ul_table_add(OpTable *t, PyObject *op)
{
    uint32_t ud;
    if (t->nfree) {
        ud = t->free[--t->nfree];
    } else {
        if (t->used == t->cap && table_grow(t) < 0) {
            PyErr_NoMemory();
            return 0;
        }
        ud = t->used++;
    }
    Py_INCREF(op);
    t->slots[ud] = op;
    return ud;
}

PyObject *ul_table_take(OpTable *t, uint32_t ud)
{
    PyObject *op = t->slots[ud];
    t->slots[ud] = NULL;
    t->free[t->nfree++] = ud;
    return op;
}

static int table_valid(OpTable *t, unsigned long long ud)
{
    return ud > 0 && ud < t->used && t->slots[ud] != NULL;
}

int ul_is_optable(PyObject *obj)
{
    return obj && Py_IS_TYPE(obj, optable_type);
}

/* ---- errors ------------------------------------------------------------------ */

/* The loop's check(err) raises the error a ring call returned, or starts a
 * ring that the SQ filled before its first run and returns: retry. */
static int ring_error(OpTable *t, int err)
{
    PyObject *code = PyLong_FromLong(err);
    PyObject *r = code ? PyObject_CallOneArg(t->check, code) : NULL;
    Py_XDECREF(code);
    if (!r)
        return -1;
    Py_DECREF(r);
    if (t->ring)
        return 0;
    PyErr_SetString(PyExc_SystemError, "uringloop: check() passed a ring error it had to raise");
    return -1;
}

int ul_prep_failed(OpTable *t, uint32_t ud, int err)
{
    if (ring_error(t, err) == 0)
        return 0;
    Py_DECREF(ul_table_take(t, ud));
    return -1;
}

int ul_need_ring(OpTable *t)
{
    return t->ring ? 0 : ring_error(t, -EBADFD) < 0 ? -1 : 0;
}

/* ---- dispatch -------------------------------------------------------------- */

static int call_complete(PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *pres = PyLong_FromLong(res), *pflags = PyLong_FromUnsignedLong(flags);
    PyObject *r = NULL;
    if (pres && pflags) {
        PyObject *args[3] = {op, pres, pflags};
        r = PyObject_VectorcallMethod(str_complete, args,
                                      3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_XDECREF(pres);
    Py_XDECREF(pflags);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 1;
}

PyObject *ul_enter(PyObject *ctx)
{
    if (!ctx || !PyContext_CheckExact(ctx)) {
        Py_INCREF(Py_None);
        return Py_None;
    }
    if (PyContext_Enter(ctx) < 0)
        return NULL;
    Py_INCREF(ctx);
    return ctx;
}

int ul_leave(PyObject *entered, int rc)
{
    if (entered != Py_None) {
        if (rc < 0) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyContext_Exit(entered);
            PyErr_Restore(type, value, tb);     /* the handler's error is the one */
        } else if (PyContext_Exit(entered) < 0) {
            rc = -1;
        }
    }
    Py_DECREF(entered);
    return rc;
}

/* One completion to its record: the kind's fast path, else complete() in
 * the record's context. */
static int complete(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    const struct kind *k = kind_of(Py_TYPE(op));
    int rc = k && k->complete ? k->complete(t, op, res, flags) : 0;
    if (rc != 0)
        return rc;
    PyObject *entered = ul_enter(k && k->context != UL_NO_CONTEXT ? FIELD(op, k->context) : NULL);
    return entered ? ul_leave(entered, call_complete(op, res, flags)) : -1;
}

/* A handler raised: SystemExit and KeyboardInterrupt stop the dispatch,
 * anything else goes to on_error(op, exc) and the dispatch goes on. */
static int handler_failed(OpTable *t, PyObject *op)
{
    PyObject *exc = t->on_error ? take_exception() : NULL;
    if (!exc)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(t->on_error, op, exc, NULL);
    Py_DECREF(exc);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Hand each reaped completion to its op record.  A slot is freed at its
 * op's final CQE, before the handler runs, so the handler may start the
 * next op in the same slot; each CQE counts as consumed before its handler
 * runs, so one that raises loses none after it. */
static int dispatch(OpTable *t)
{
    struct ul_ring *r = t->ring;
    while (r && r->cqe_pos[0] < r->cqe_pos[1]) {
        uint32_t i = r->cqe_pos[0]++;
        unsigned long long ud = r->cqe_user_data[i];
        int32_t res = r->cqe_res[i];
        uint32_t flags = r->cqe_flags[i];
        if (!table_valid(t, ud))
            continue;
        PyObject *op;
        if (flags & UL_CQE_F_MORE) {
            op = t->slots[ud];
            Py_INCREF(op);
        } else {
            op = ul_table_take(t, (uint32_t)ud);
        }
        if (complete(t, op, res, flags) < 0 && handler_failed(t, op) < 0) {
            Py_DECREF(op);
            return -1;
        }
        Py_DECREF(op);
        r = t->ring;                    /* a handler may have detached it */
    }
    return 0;
}

/* ---- the Python type ------------------------------------------------------ */

static void table_clear_slots(OpTable *t)
{
    for (uint32_t ud = 1; ud < t->used; ud++)
        Py_CLEAR(t->slots[ud]);
    t->used = t->cap ? 1 : 0;
    t->nfree = 0;
}

static int table_attach(OpTable *t, PyObject *address)
{
    unsigned long long addr = PyLong_AsUnsignedLongLong(address);
    if (addr == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    t->ring = (struct ul_ring *)(uintptr_t)addr;
    return 0;
}

static PyObject *table_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *address, *on_error, *check;
    if (!PyArg_ParseTuple(args, "OOO:OpTable", &address, &on_error, &check))
        return NULL;
    OpTable *t = (OpTable *)type->tp_alloc(type, 0);
    if (!t)
        return NULL;
    if (table_grow(t) < 0) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    t->used = 1;
    hold(&t->on_error, on_error);
    hold(&t->check, check);
    if (table_attach(t, address) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static int table_traverse(OpTable *t, visitproc visit, void *arg)
{
    for (uint32_t ud = 1; ud < t->used; ud++)
        Py_VISIT(t->slots[ud]);
    Py_VISIT(t->on_error);
    Py_VISIT(t->check);
    return 0;
}

static int table_tp_clear(OpTable *t)
{
    table_clear_slots(t);
    Py_CLEAR(t->on_error);
    Py_CLEAR(t->check);
    return 0;
}

static void table_dealloc(OpTable *t)
{
    PyObject_GC_UnTrack(t);
    table_tp_clear(t);
    PyMem_Free(t->slots);
    PyMem_Free(t->free);
    PyTypeObject *type = Py_TYPE(t);
    type->tp_free((PyObject *)t);
    Py_DECREF(type);
}

static PyObject *table_py_add(OpTable *t, PyObject *op)
{
    uint32_t ud = ul_table_add(t, op);
    return ud ? PyLong_FromUnsignedLong(ud) : NULL;
}

static PyObject *table_release(OpTable *t, PyObject *arg)
{
    unsigned long long ud = PyLong_AsUnsignedLongLong(arg);
    if (ud == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (table_valid(t, ud))
        return ul_table_take(t, (uint32_t)ud);
    Py_RETURN_NONE;
}

static PyObject *table_records(OpTable *t, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    for (uint32_t ud = 1; list && ud < t->used; ud++) {
        if (t->slots[ud] && PyList_Append(list, t->slots[ud]) < 0)
            Py_CLEAR(list);
    }
    return list;
}

static PyObject *table_reset(OpTable *t, PyObject *address)
{
    if (table_attach(t, address) < 0)
        return NULL;
    table_clear_slots(t);
    Py_RETURN_NONE;
}

static Py_ssize_t table_len(OpTable *t)
{
    return (Py_ssize_t)(t->used ? t->used - 1 - t->nfree : 0);
}

/* run(timeout_ns): submit, wait up to timeout_ns (-1: no limit, 0: not at
 * all), reap and dispatch.  Returns what ul_wait returned: the number of
 * completions, or a negative errno for the caller to raise. */
static PyObject *table_run(OpTable *t, PyObject *arg)
{
    long long timeout = PyLong_AsLongLong(arg);
    if (timeout == -1 && PyErr_Occurred())
        return NULL;
    if (ul_need_ring(t) < 0)
        return NULL;
    int n;
    if (timeout != 0) {
        struct ul_ring *r = t->ring;
        Py_BEGIN_ALLOW_THREADS
        n = ul_wait(r, timeout);
        Py_END_ALLOW_THREADS
    } else {
        n = ul_wait(t->ring, 0);
    }
    if (n > 0 && dispatch(t) < 0)
        return NULL;
    return PyLong_FromLong(n);
}

static PyMethodDef table_methods[] = {
    {"add", (PyCFunction)table_py_add, METH_O, "Store an op record; returns its user_data."},
    {"release", (PyCFunction)table_release, METH_O, "Free a slot; the record it held, or None."},
    {"records", (PyCFunction)table_records, METH_NOARGS, "The op records in flight."},
    {"reset", (PyCFunction)table_reset, METH_O,
     "Drop every record and attach to the ring at this address (0: none)."},
    {"run", (PyCFunction)table_run, METH_O,
     "Submit, wait up to timeout_ns, reap and dispatch; returns ul_wait's result."},
    {NULL}};

static PyType_Slot table_slots[] = {
    {Py_tp_doc, "OpTable(ring_address, on_error, check): op records by user_data; "
                "slot 0 is reserved."},
    {Py_tp_new, table_new},
    {Py_tp_dealloc, table_dealloc},
    {Py_tp_traverse, table_traverse},
    {Py_tp_clear, table_tp_clear},
    {Py_tp_methods, table_methods},
    {Py_mp_length, table_len},
    {0, NULL}};

static PyType_Spec table_spec = {
    "uringloop._c.OpTable", sizeof(OpTable), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, table_slots};

int ul_optable_install(PyObject *dict)
{
    str_complete = PyUnicode_InternFromString("complete");
    optable_type = (PyTypeObject *)PyType_FromSpec(&table_spec);
    if (!str_complete || !optable_type ||
        PyDict_SetItemString(dict, "OpTable", (PyObject *)optable_type) < 0)
        return -1;
    return add_functions(dict, defs);
}
