/*
 * The completion hot path, in C, inside the same cffi-built module.
 *
 * Each cffi call releases and retakes the GIL and converts its arguments;
 * with the Python code around them, the loop spent about 1.5 us of user
 * CPU per echoed request, twice uvloop's (README, Performance).  So the
 * per-completion work is real CPython code here:
 *
 *   OpTable           user_data -> op record; run() waits on the ring and
 *                     dispatches every completion without leaving C.
 *   install_stream()  fast paths of the stream transport: its multishot
 *                     receive's data, its send completion, and write().
 *   BufferedRecv      a BufferedProtocol's receive: get_buffer(), a RECV
 *                     into it, buffer_updated(), again, all in C.
 *   PollWaiter        OpTable.poll(): readiness that resolves a future.
 *
 * _callbacks.c adds install_loop(): call_soon, the ready queue and Handle;
 * _sockets.c the sock_* methods' non-blocking tries.
 *
 * A fast path takes only the common state (nothing paused, closing, queued
 * or partial) and hands everything else to the Python methods, which stay
 * the one definition of the semantics.  It reads and writes the Python
 * classes' __slots__ through the offsets their member descriptors carry, so
 * both languages share one set of fields.
 *
 * cffi sees one function, ul_hot_install(): Python passes id() of a dict
 * (in CPython, the object's address) and gets these objects put into it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include "_core.h"
#include "_pyslots.h"

int ul_callbacks_install(PyObject *dict);      /* _callbacks.c */
int ul_sockets_install(PyObject *dict);        /* _sockets.c */

static PyObject *str_complete, *str_data_received,
                *str_write_slow, *str_maybe_pause, *str_get_buffer, *str_buffer_updated;

/* ---- op table ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject **slots;          /* [0] reserved; NULL marks a free slot */
    uint32_t *free;            /* stack of free slot numbers */
    uint32_t used, cap, nfree;
    struct ul_ring *ring;      /* NULL once detached */
    PyObject *on_error;        /* on_error(op, exc): a handler raised */
    PyObject *check;           /* check(err): raise a prep's error, or None to retry */
} OpTable;

static PyTypeObject *optable_type;

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

/* Store a new reference to op; its user_data, or 0 with MemoryError set. */
static uint32_t table_add(OpTable *t, PyObject *op)
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

/* Empty slot ud; the caller gets the table's reference to its op. */
static PyObject *table_take(OpTable *t, uint32_t ud)
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
    Py_INCREF(on_error);
    t->on_error = on_error;
    Py_INCREF(check);
    t->check = check;
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
    uint32_t ud = table_add(t, op);
    return ud ? PyLong_FromUnsignedLong(ud) : NULL;
}

static PyObject *table_py_release(OpTable *t, PyObject *arg)
{
    unsigned long long ud = PyLong_AsUnsignedLongLong(arg);
    if (ud == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (table_valid(t, ud))
        Py_DECREF(table_take(t, (uint32_t)ud));
    Py_RETURN_NONE;
}

static PyObject *table_py_get(OpTable *t, PyObject *arg)
{
    unsigned long long ud = PyLong_AsUnsignedLongLong(arg);
    if (ud == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *op = table_valid(t, ud) ? t->slots[ud] : Py_None;
    Py_INCREF(op);
    return op;
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

/* A prep into slot ud failed with err: the loop's check(err) raises it, or
 * starts a ring the SQ filled before its first run and says retry (0).  On
 * -1 the slot is free again and an exception is set. */
static int prep_failed(OpTable *t, uint32_t ud, int err)
{
    PyObject *code = PyLong_FromLong(err);
    PyObject *r = code ? PyObject_CallOneArg(t->check, code) : NULL;
    Py_XDECREF(code);
    Py_XDECREF(r);
    if (r && t->ring)
        return 0;
    Py_DECREF(table_take(t, ud));
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return -1;
}

/* ---- stream transport fields --------------------------------------------- */

static PyTypeObject *recv_type, *send_type, *brecv_type;
static struct {
    Py_ssize_t fd, protocol, closing, paused, held, eof, conn_lost, sending,
               pending, inflight_size, live, send_op, released,
               protocol_paused, high_water, ops, read_eof, recv_ud, buffered;
} tf;
static struct { Py_ssize_t transport; } rf;
static struct { Py_ssize_t transport, chunks, size, keep; } sf;

/* Replace a slot's value; `value` is a new reference, consumed. */
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

static inline int list_empty(PyObject *o)
{
    return o && PyList_CheckExact(o) && PyList_GET_SIZE(o) == 0;
}

/* The protocol callback raised: SystemExit and KeyboardInterrupt go on up;
 * anything else goes to transport._fatal_error(exc, message), as in
 * Python.  Returns 1 (handled) or -1 (exception set). */
static int protocol_failed(PyObject *transport, const char *message)
{
    PyObject *exc = take_exception();
    if (!exc)
        return -1;
    PyObject *r = PyObject_CallMethod(transport, "_fatal_error", "Os", exc, message);
    Py_DECREF(exc);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 1;
}

/* A multishot receive's bytes, delivered while the transport reads
 * normally and the receive stays armed.  0: not this path's case. */
static int recv_fast(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    struct ul_bufring *br = t->ring->bufring;
    if (res <= 0 || !(flags & UL_CQE_F_MORE) || !(flags & UL_CQE_F_BUFFER) || !br)
        return 0;
    unsigned bid = flags >> UL_CQE_BUFFER_SHIFT;
    PyObject *tr = FIELD(op, rf.transport);
    if (!tr || bid >= br->count || (uint32_t)res > br->size)
        return 0;
    if (is_set(FIELD(tr, tf.closing)) || is_set(FIELD(tr, tf.paused)) ||
        is_set(FIELD(tr, tf.held)) || !FIELD(tr, tf.protocol))
        return 0;
    PyObject *data = PyBytes_FromStringAndSize(br->base + (size_t)bid * br->size, res);
    if (!data)
        return -1;
    PyObject *protocol = FIELD(tr, tf.protocol);
    Py_INCREF(tr);
    Py_INCREF(protocol);
    PyObject *args[2] = {protocol, data};
    PyObject *r = PyObject_VectorcallMethod(str_data_received, args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    int rc = 1;
    if (r)
        Py_DECREF(r);
    else
        rc = protocol_failed(tr, "Fatal error: protocol.data_received() call failed.");
    Py_DECREF(data);
    Py_DECREF(protocol);
    Py_DECREF(tr);
    return rc;
}

/* A send that went out whole, with nothing queued behind it and nothing
 * waiting for it (close, write_eof, paused protocol). */
static int send_fast(PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *tr = FIELD(op, sf.transport);
    if (res < 0 || (flags & UL_CQE_F_MORE) || !tr || get_long(op, sf.size) != res)
        return 0;
    if (is_set(FIELD(tr, tf.conn_lost)) || is_set(FIELD(tr, tf.released)) ||
        is_set(FIELD(tr, tf.closing)) || is_set(FIELD(tr, tf.eof)) ||
        is_set(FIELD(tr, tf.protocol_paused)) || !list_empty(FIELD(tr, tf.pending)))
        return 0;
    long live = get_long(tr, tf.live);
    if (live < 1)
        return 0;
    put_borrowed(op, sf.chunks, Py_None);
    put_borrowed(op, sf.keep, Py_None);
    put_borrowed(tr, tf.sending, Py_False);
    if (put_long(tr, tf.inflight_size, 0) < 0 || put_long(tr, tf.live, live - 1) < 0)
        return -1;
    return 1;
}

/* transport.write(data) for a lone bytes object on an idle, open
 * transport: straight into a SEND.  0: not this path's case. */
static int write_fast(PyObject *self, PyObject *data)
{
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size == 0 || size > INT_MAX)
        return 0;
    if (is_set(FIELD(self, tf.eof)) || is_set(FIELD(self, tf.conn_lost)) ||
        is_set(FIELD(self, tf.sending)) || !list_empty(FIELD(self, tf.pending)))
        return 0;
    PyObject *table = FIELD(self, tf.ops), *op = FIELD(self, tf.send_op);
    long fd = get_long(self, tf.fd), live = get_long(self, tf.live);
    if (!table || !Py_IS_TYPE(table, optable_type) || !op || !Py_IS_TYPE(op, send_type) ||
        fd < 0 || live < 0)
        return 0;
    OpTable *t = (OpTable *)table;
    if (!t->ring)
        return 0;
    PyObject *chunks = PyTuple_Pack(1, data);
    PyObject *nbytes = PyLong_FromSsize_t(size);
    uint32_t ud = chunks && nbytes ? table_add(t, op) : 0;
    if (!ud) {
        Py_XDECREF(chunks);
        Py_XDECREF(nbytes);
        return -1;
    }
    if (ul_prep_send(t->ring, ud, (int)fd, PyBytes_AS_STRING(data), (unsigned)size, 0)) {
        Py_DECREF(table_take(t, ud));   /* the Python path says why */
        Py_DECREF(chunks);
        Py_DECREF(nbytes);
        return 0;
    }
    put(op, sf.chunks, chunks);
    put_borrowed(op, sf.keep, Py_None);
    put_borrowed(op, sf.size, nbytes);
    put(self, tf.inflight_size, nbytes);
    put_borrowed(self, tf.sending, Py_True);
    if (put_long(self, tf.live, live + 1) < 0)
        return -1;
    PyObject *high = FIELD(self, tf.high_water);
    if (high && PyLong_Check(high) && size > PyLong_AsSsize_t(high)) {
        PyObject *r = PyObject_CallMethodNoArgs(self, str_maybe_pause);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    return 1;
}

static PyObject *transport_write(PyObject *self, PyObject *data)
{
    if (PyBytes_CheckExact(data)) {
        int rc = write_fast(self, data);
        if (rc < 0)
            return NULL;
        if (rc > 0)
            Py_RETURN_NONE;
    }
    return PyObject_CallMethodOneArg(self, str_write_slow, data);
}

static PyMethodDef write_def = {
    "write", (PyCFunction)transport_write, METH_O,
    "Write bytes to the transport; they go out with the loop's next enter."};

/* ---- BufferedRecv -------------------------------------------------------- */

/* One transport's receive into its BufferedProtocol's buffer, reused for
 * every receive.  While the kernel may write, the record holds the buffer
 * exported (so a bytearray cannot be resized or freed under the kernel);
 * the export ends as the completion arrives, before buffer_updated(). */
typedef struct {
    PyObject_HEAD
    PyObject *transport;
    Py_buffer view;            /* view.obj != NULL while exported */
} BufferedRecv;

static PyObject *call_method0(PyObject *obj, const char *name)
{
    PyObject *r = PyObject_CallMethod(obj, name, NULL);
    Py_XDECREF(r);
    return r;
}

/* Ask the protocol for a buffer and queue a RECV into it; a failing
 * get_buffer() is the transport's fatal error, as in asyncio. */
static int brecv_start(BufferedRecv *op)
{
    PyObject *tr = op->transport, *table = tr ? FIELD(tr, tf.ops) : NULL;
    PyObject *protocol = tr ? FIELD(tr, tf.protocol) : NULL;
    long fd = tr ? get_long(tr, tf.fd) : -1, live = tr ? get_long(tr, tf.live) : -1;
    if (!table || !Py_IS_TYPE(table, optable_type) || !protocol || fd < 0 || live < 0 ||
        op->view.obj) {
        PyErr_SetString(PyExc_RuntimeError, "uringloop: receive started in a bad state");
        return -1;
    }
    OpTable *t = (OpTable *)table;
    if (!t->ring) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    PyObject *hint = PyLong_FromLong(-1), *buf = NULL;
    if (hint) {
        PyObject *args[2] = {protocol, hint};
        Py_INCREF(protocol);
        buf = PyObject_VectorcallMethod(str_get_buffer, args,
                                        2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(protocol);
        Py_DECREF(hint);
    }
    /* asyncio's order: len(buf) first, then the receive refuses a
     * read-only buffer, which is a read error rather than get_buffer's */
    Py_ssize_t size = buf ? PyObject_Length(buf) : -1;
    if (size == 0)
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    if (size <= 0) {
        Py_XDECREF(buf);
        return protocol_failed(tr, "Fatal error: protocol.get_buffer() call failed.") < 0 ? -1 : 0;
    }
    if (PyObject_GetBuffer(buf, &op->view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "get_buffer() returned a read-only %.100s",
                     Py_TYPE(buf)->tp_name);
    }
    Py_DECREF(buf);
    if (!op->view.obj)
        return protocol_failed(tr, "Fatal read error on socket transport") < 0 ? -1 : 0;
    uint32_t ud = table_add(t, (PyObject *)op);
    unsigned len = op->view.len > UINT_MAX ? UINT_MAX : (unsigned)op->view.len;
    int err = ud ? 0 : -1;
    while (ud && (err = ul_prep_recv(t->ring, ud, (int)fd, op->view.buf, len, 0, 0, -1)))
        if (prep_failed(t, ud, err) < 0)
            break;
    if (err) {
        PyBuffer_Release(&op->view);
        return -1;
    }
    PyObject *pud = PyLong_FromUnsignedLong(ud);
    if (!pud)
        return -1;
    put(tr, tf.recv_ud, pud);
    return put_long(tr, tf.live, live + 1);
}

static int can_read(PyObject *tr)
{
    return !is_set(FIELD(tr, tf.recv_ud)) && !is_set(FIELD(tr, tf.closing)) &&
           !is_set(FIELD(tr, tf.paused)) && !is_set(FIELD(tr, tf.read_eof)) &&
           !is_set(FIELD(tr, tf.conn_lost));
}

/* The receive completed: res bytes are in the protocol's buffer. */
static int brecv_complete(BufferedRecv *op, int32_t res)
{
    PyObject *tr = op->transport;
    if (!tr)
        return 0;
    Py_INCREF(tr);
    PyBuffer_Release(&op->view);
    int rc = 1;
    put_long(tr, tf.recv_ud, 0);
    if (put_long(tr, tf.live, get_long(tr, tf.live) - 1) < 0) {
        rc = -1;
    } else if (res > 0 && !is_set(FIELD(tr, tf.closing)) && !is_set(FIELD(tr, tf.paused)) &&
               !is_set(FIELD(tr, tf.held)) && FIELD(tr, tf.protocol)) {
        PyObject *protocol = FIELD(tr, tf.protocol), *n = PyLong_FromLong(res), *r = NULL;
        Py_INCREF(protocol);
        if (n) {
            PyObject *args[2] = {protocol, n};
            r = PyObject_VectorcallMethod(str_buffer_updated, args,
                                          2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(n);
        }
        Py_DECREF(protocol);
        if (r)
            Py_DECREF(r);
        else
            rc = protocol_failed(tr, "Fatal error: protocol.buffer_updated() call failed.");
        if (rc > 0 && can_read(tr)) {
            if (is_set(FIELD(tr, tf.buffered)))
                rc = brecv_start(op) < 0 ? -1 : 1;
            else
                rc = call_method0(tr, "_start_reading") ? 1 : -1;
        }
    } else {
        PyObject *r = PyObject_CallMethod(tr, "_received_into", "i", (int)res);
        rc = r ? 1 : -1;
        Py_XDECREF(r);
    }
    if (rc > 0 && is_set(FIELD(tr, tf.released)))
        rc = call_method0(tr, "_release_if_idle") ? 1 : -1;
    Py_DECREF(tr);
    return rc;
}

static PyObject *brecv_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *transport;
    if (!PyArg_ParseTuple(args, "O:BufferedRecv", &transport))
        return NULL;
    BufferedRecv *op = (BufferedRecv *)type->tp_alloc(type, 0);
    if (op) {
        Py_INCREF(transport);
        op->transport = transport;
    }
    return (PyObject *)op;
}

static PyObject *brecv_py_start(BufferedRecv *op, PyObject *unused)
{
    if (brecv_start(op) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int brecv_traverse(BufferedRecv *op, visitproc visit, void *arg)
{
    Py_VISIT(op->transport);
    return 0;
}

static int brecv_clear(BufferedRecv *op)
{
    Py_CLEAR(op->transport);
    return 0;
}

/* Only once no slot holds the record, that is after its final completion
 * (or with the process, from the graveyard): the kernel is done. */
static void brecv_dealloc(BufferedRecv *op)
{
    PyObject_GC_UnTrack(op);
    Py_CLEAR(op->transport);
    if (op->view.obj)
        PyBuffer_Release(&op->view);
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free((PyObject *)op);
    Py_DECREF(type);
}

static PyObject *brecv_repr(BufferedRecv *op)
{
    return PyUnicode_FromFormat("<BufferedRecv for %R>", op->transport ? op->transport : Py_None);
}

static PyMethodDef brecv_methods[] = {
    {"start", (PyCFunction)brecv_py_start, METH_NOARGS,
     "get_buffer() from the transport's protocol and queue a receive into it."},
    {NULL}};

static PyType_Slot brecv_slots[] = {
    {Py_tp_doc, "A BufferedProtocol's receive, reused by its transport."},
    {Py_tp_new, brecv_new},
    {Py_tp_dealloc, brecv_dealloc},
    {Py_tp_traverse, brecv_traverse},
    {Py_tp_clear, brecv_clear},
    {Py_tp_repr, brecv_repr},
    {Py_tp_methods, brecv_methods},
    {0, NULL}};

static PyType_Spec brecv_spec = {
    "uringloop.ops.BufferedRecv", sizeof(BufferedRecv), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, brecv_slots};

/* ---- PollWaiter ---------------------------------------------------------- */

/* A single-shot readiness poll whose completion resolves a future: what the
 * sock_* methods wait on between non-blocking tries. */
typedef struct {
    PyObject_HEAD
    PyObject *future;
} PollWaiter;

static PyTypeObject *pollwaiter_type;
static PyObject *str_done, *str_set_result, *str_set_exception;

static int poll_complete(PollWaiter *op, int32_t res, uint32_t flags)
{
    PyObject *fut = op->future, *r;
    if ((flags & UL_CQE_F_MORE) || !fut)
        return 1;
    PyObject *args[2] = {fut, NULL};
    r = PyObject_VectorcallMethod(str_done, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r)
        return -1;
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (done)
        return done < 0 ? -1 : 1;
    PyObject *name = str_set_result;
    if (res < 0 && res != -ECANCELED) {
        args[1] = PyObject_CallFunction(PyExc_OSError, "is", -res, strerror(-res));
        name = str_set_exception;
    } else {
        args[1] = PyLong_FromLong(res);
    }
    if (!args[1])
        return -1;
    r = PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[1]);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

static int poll_traverse(PollWaiter *op, visitproc visit, void *arg)
{
    Py_VISIT(op->future);
    return 0;
}

static int poll_clear(PollWaiter *op)
{
    Py_CLEAR(op->future);
    return 0;
}

static void poll_dealloc(PollWaiter *op)
{
    PyObject_GC_UnTrack(op);
    Py_CLEAR(op->future);
    PyTypeObject *type = Py_TYPE(op);
    type->tp_free((PyObject *)op);
    Py_DECREF(type);
}

static PyType_Slot poll_slots[] = {
    {Py_tp_doc, "A readiness poll resolving a future (OpTable.poll)."},
    {Py_tp_dealloc, poll_dealloc},
    {Py_tp_traverse, poll_traverse},
    {Py_tp_clear, poll_clear},
    {0, NULL}};

static PyType_Spec poll_spec = {
    "uringloop.ops.PollWaiter", sizeof(PollWaiter), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, poll_slots};

/* OpTable.poll(fd, events, future) -> user_data: a single-shot POLL_ADD
 * whose completion sets the future's result to the revents (an OSError for
 * a failed poll; nothing once the future is done). */
static PyObject *table_poll(OpTable *t, PyObject *const *args, Py_ssize_t n)
{
    if (n != 3) {
        PyErr_SetString(PyExc_TypeError, "poll(fd, events, future)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]), events = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (!t->ring) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    PollWaiter *op = PyObject_GC_New(PollWaiter, pollwaiter_type);
    if (!op)
        return NULL;
    Py_INCREF(args[2]);
    op->future = args[2];
    PyObject_GC_Track(op);
    uint32_t ud = table_add(t, (PyObject *)op);
    Py_DECREF(op);
    int err;
    while (ud && (err = ul_prep_poll_add(t->ring, ud, (int)fd, (unsigned)events, 0)))
        if (prep_failed(t, ud, err) < 0)
            return NULL;
    return ud ? PyLong_FromUnsignedLong(ud) : NULL;
}

/* ---- dispatch ------------------------------------------------------------ */

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
            op = table_take(t, (uint32_t)ud);
        }
        int rc = 0;
        if (Py_IS_TYPE(op, recv_type))
            rc = recv_fast(t, op, res, flags);
        else if (Py_IS_TYPE(op, send_type))
            rc = send_fast(op, res, flags);
        else if (Py_IS_TYPE(op, brecv_type))
            rc = brecv_complete((BufferedRecv *)op, res);
        else if (Py_IS_TYPE(op, pollwaiter_type))
            rc = poll_complete((PollWaiter *)op, res, flags);
        if (rc == 0)
            rc = call_complete(op, res, flags);
        if (rc < 0 && handler_failed(t, op) < 0) {
            Py_DECREF(op);
            return -1;
        }
        Py_DECREF(op);
        r = t->ring;                    /* a handler may have detached it */
    }
    return 0;
}

static PyObject *table_dispatch(OpTable *t, PyObject *unused)
{
    if (dispatch(t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* run(timeout_ns): submit, wait up to timeout_ns (-1: no limit, 0: not at
 * all), reap and dispatch.  Returns what ul_wait returned: the number of
 * completions, or a negative errno for the caller to raise. */
static PyObject *table_run(OpTable *t, PyObject *arg)
{
    long long timeout = PyLong_AsLongLong(arg);
    if (timeout == -1 && PyErr_Occurred())
        return NULL;
    if (!t->ring) {
        PyErr_SetString(PyExc_RuntimeError, "uringloop: the op table has no ring");
        return NULL;
    }
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
    {"release", (PyCFunction)table_py_release, METH_O, "Free a slot."},
    {"get", (PyCFunction)table_py_get, METH_O, "The op record in a slot, or None."},
    {"records", (PyCFunction)table_records, METH_NOARGS, "The op records in flight."},
    {"reset", (PyCFunction)table_reset, METH_O,
     "Drop every record and attach to the ring at this address (0: none)."},
    {"poll", (PyCFunction)(void (*)(void))table_poll, METH_FASTCALL,
     "poll(fd, events, future) -> user_data: a readiness poll resolving the future."},
    {"dispatch", (PyCFunction)table_dispatch, METH_NOARGS,
     "Dispatch the completions the ring holds."},
    {"run", (PyCFunction)table_run, METH_O,
     "Submit, wait up to timeout_ns, reap and dispatch; returns ul_wait's result."},
    {NULL}};

static PyType_Slot table_slots[] = {
    {Py_tp_doc, "Op records by user_data; slot 0 is reserved."},
    {Py_tp_new, table_new},
    {Py_tp_dealloc, table_dealloc},
    {Py_tp_traverse, table_traverse},
    {Py_tp_clear, table_tp_clear},
    {Py_tp_methods, table_methods},
    {Py_mp_length, table_len},
    {0, NULL}};

static PyType_Spec table_spec = {
    "uringloop.ops.OpTable", sizeof(OpTable), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, table_slots};

/* ---- install_stream ------------------------------------------------------ */

static PyObject *install_stream(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 3) {
        PyErr_SetString(PyExc_TypeError, "install_stream(transport, recv, send)");
        return NULL;
    }
    PyObject *tcls = args[0], *rcls = args[1], *scls = args[2];
    for (int i = 0; i < 3; i++)
        if (!PyType_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "install_stream() takes classes");
            return NULL;
        }
    static const char *tnames[] = {
        "_fd", "_protocol", "_closing", "_paused", "_held", "_eof", "_conn_lost",
        "_sending", "_pending", "_inflight_size", "_live", "_send_op", "_released",
        "_protocol_paused", "_high_water", "_ops", "_read_eof", "_recv_ud", "_buffered"};
    Py_ssize_t *toffs = (Py_ssize_t *)&tf;
    for (size_t i = 0; i < sizeof(tnames) / sizeof(*tnames); i++)
        if (slot_offset(tcls, tnames[i], &toffs[i]) < 0)
            return NULL;
    if (slot_offset(rcls, "transport", &rf.transport) < 0 ||
        slot_offset(scls, "transport", &sf.transport) < 0 ||
        slot_offset(scls, "chunks", &sf.chunks) < 0 ||
        slot_offset(scls, "size", &sf.size) < 0 ||
        slot_offset(scls, "keep", &sf.keep) < 0)
        return NULL;
    if (set_method(tcls, &write_def) < 0)
        return NULL;
    Py_INCREF(rcls);
    Py_XSETREF(recv_type, (PyTypeObject *)rcls);
    Py_INCREF(scls);
    Py_XSETREF(send_type, (PyTypeObject *)scls);
    Py_RETURN_NONE;
}

static PyMethodDef install_stream_def = {
    "install_stream", (PyCFunction)(void (*)(void))install_stream, METH_FASTCALL,
    "install_stream(transport_cls, recv_cls, send_cls): take over the stream\n"
    "transport's hot paths and its write() method."};

/* ---- entry --------------------------------------------------------------- */

static int install(PyObject *dict)
{
    str_complete = PyUnicode_InternFromString("complete");
    str_data_received = PyUnicode_InternFromString("data_received");
    str_write_slow = PyUnicode_InternFromString("_write");
    str_maybe_pause = PyUnicode_InternFromString("_maybe_pause_protocol");
    str_get_buffer = PyUnicode_InternFromString("get_buffer");
    str_buffer_updated = PyUnicode_InternFromString("buffer_updated");
    if (!str_complete || !str_data_received || !str_write_slow ||
        !str_maybe_pause || !str_get_buffer || !str_buffer_updated)
        return -1;
    optable_type = (PyTypeObject *)PyType_FromSpec(&table_spec);
    if (!optable_type || PyDict_SetItemString(dict, "OpTable", (PyObject *)optable_type) < 0)
        return -1;
    str_done = PyUnicode_InternFromString("done");
    str_set_result = PyUnicode_InternFromString("set_result");
    str_set_exception = PyUnicode_InternFromString("set_exception");
    pollwaiter_type = (PyTypeObject *)PyType_FromSpec(&poll_spec);
    if (!str_done || !str_set_result || !str_set_exception || !pollwaiter_type)
        return -1;
    brecv_type = (PyTypeObject *)PyType_FromSpec(&brecv_spec);
    if (!brecv_type || PyDict_SetItemString(dict, "BufferedRecv", (PyObject *)brecv_type) < 0)
        return -1;
    PyObject *f = PyCFunction_New(&install_stream_def, NULL);
    int rc = f ? PyDict_SetItemString(dict, "install_stream", f) : -1;
    Py_XDECREF(f);
    if (rc < 0 || ul_callbacks_install(dict) < 0)
        return -1;
    return ul_sockets_install(dict);
}

/* Called through cffi, which released the GIL; the dict at `dict_address`
 * is kept alive by the caller. */
int ul_hot_install(uintptr_t dict_address)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *dict = (PyObject *)dict_address;
    int rc = PyDict_Check(dict) ? install(dict) : -1;
    if (rc < 0 && PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
    PyGILState_Release(g);
    return rc;
}
