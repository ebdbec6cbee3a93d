/*
 * The stream transport's fast paths (uringloop/transports/stream_fields.py):
 *
 *   recv_fast        a multishot receive's bytes -> data_received()
 *   send_fast        a SEND that went out whole with nothing behind it
 *   write()          a lone bytes-like object on an idle transport -> a SEND
 *   BufferedRecv     a BufferedProtocol's receive: get_buffer(), a RECV
 *                    into it, buffer_updated(), again
 *
 * Each takes only the common state (reading normally, nothing paused,
 * closing, queued or partial) and leaves everything else to the Python
 * methods, which stay the one definition of the semantics.  Profiled, the
 * Python versions of these cost about 1.5 us of user CPU per echoed
 * request, twice uvloop's (README, Performance).
 */
#include "optable.h"
#include <errno.h>
#include <limits.h>

#define STREAM_FIELDS(X)                                                        \
    X(_fd) X(_protocol) X(_closing) X(_paused) X(_held) X(_eof) X(_conn_lost)   \
    X(_sending) X(_pending) X(_inflight_size) X(_live) X(_send_op) X(_released) \
    X(_protocol_paused) X(_high_water) X(_ops) X(_read_eof) X(_recv_ud) X(_buffered)  \
    X(_sendfile)
#define RECV_FIELDS(X) X(transport) X(context)
#define SEND_FIELDS(X) X(transport) X(context) X(chunks) X(size) X(pinned)

FIELD_TABLE(stream_fields, STREAM_FIELDS);
FIELD_TABLE(recv_fields, RECV_FIELDS);
FIELD_TABLE(send_fields, SEND_FIELDS);

/* A transport's field by name, and whether a flag field of it is set. */
#define TRANSPORT(tr, name) FIELD(tr, stream_fields.name)
#define FLAG(tr, name) is_set(TRANSPORT(tr, name))

static PyTypeObject *send_type;
/* stream.py's MESSAGES */
static PyObject *msg_data_received, *msg_buffer_updated, *msg_get_buffer, *msg_empty_buffer,
                *msg_read;
static PyObject *str_data_received, *str_write_slow, *str_maybe_pause, *str_get_buffer,
                *str_buffer_updated, *str_fatal_error, *str_received_into, *str_start_reading,
                *str_release_if_idle;

/* Nothing stands between a receive and the protocol: not closing, not
 * paused, nothing held back from earlier. */
static int reads_normally(PyObject *tr)
{
    return !FLAG(tr, _closing) && !FLAG(tr, _paused) &&
           !FLAG(tr, _held) && TRANSPORT(tr, _protocol);
}

/* No write queued behind the one in flight (the list is made by the first
 * write that must queue). */
static int nothing_queued(PyObject *tr)
{
    PyObject *pending = TRANSPORT(tr, _pending);
    return pending && (pending == Py_None ||
                       (PyList_CheckExact(pending) && PyList_GET_SIZE(pending) == 0));
}

static int call0(PyObject *obj, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(obj, name);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

/* The exception being raised is the transport's fatal error, as in Python:
 * transport._fatal_error(exc, message).  SystemExit and KeyboardInterrupt go
 * on up.  1 (handled) or -1. */
static int fatal(PyObject *tr, PyObject *message)
{
    PyObject *exc = take_exception();
    if (!exc)
        return -1;
    PyObject *args[3] = {tr, exc, message};
    PyObject *r = PyObject_VectorcallMethod(str_fatal_error, args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

/* protocol.<name>(arg), its failure the transport's fatal error.  1 or -1. */
static int call_protocol(PyObject *tr, PyObject *name, PyObject *arg, PyObject *message)
{
    PyObject *protocol = TRANSPORT(tr, _protocol);
    Py_INCREF(protocol);
    PyObject *r = call_method1(protocol, name, arg);
    Py_DECREF(protocol);
    Py_XDECREF(r);
    return r ? 1 : fatal(tr, message);
}

/* ---- receive and send completions ---------------------------------------- */

/* A multishot receive's bytes, delivered while the transport reads
 * normally and the receive stays armed. */
static int recv_fast(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *tr = FIELD(op, recv_fields.transport);
    struct ul_bufring *br = t->ring->bufrings[0];   /* the stream group */
    if (res <= 0 || !(flags & UL_CQE_F_MORE) || !(flags & UL_CQE_F_BUFFER) || !br || !tr ||
        !reads_normally(tr))
        return 0;
    const char *buf = ul_bufring_data(br, flags >> UL_CQE_BUFFER_SHIFT, (unsigned)res);
    PyObject *data = buf ? PyBytes_FromStringAndSize(buf, res) : NULL;
    if (!data)
        return buf ? -1 : 0;
    PyObject *entered = ul_enter(FIELD(op, recv_fields.context));
    int rc = -1;
    if (entered) {
        Py_INCREF(tr);
        rc = ul_leave(entered, call_protocol(tr, str_data_received, data, msg_data_received));
        Py_DECREF(tr);
    }
    Py_DECREF(data);
    return rc;
}

/* A send that went out whole, with nothing queued behind it and nothing
 * waiting for it (close, write_eof, a paused protocol, a sendfile). */
static int send_fast(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *tr = FIELD(op, send_fields.transport);
    if (res < 0 || (flags & UL_CQE_F_MORE) || !tr || get_long(op, send_fields.size) != res)
        return 0;
    if (FLAG(tr, _conn_lost) || FLAG(tr, _released) ||
        FLAG(tr, _closing) || FLAG(tr, _eof) || FLAG(tr, _sendfile) ||
        FLAG(tr, _protocol_paused) || !nothing_queued(tr))
        return 0;
    long live = get_long(tr, stream_fields._live);
    if (live < 1)
        return 0;
    put_borrowed(op, send_fields.chunks, Py_None);
    put_borrowed(op, send_fields.pinned, Py_None);
    put_borrowed(tr, stream_fields._sending, Py_False);
    if (put_long(tr, stream_fields._inflight_size, 0) < 0 ||
        put_long(tr, stream_fields._live, live - 1) < 0)
        return -1;
    return 1;
}

/* ---- write() --------------------------------------------------------------- */

/* A lone bytes object on an idle, open transport: straight into a SEND.
 * 0: not this path's case. */
static int write_fast(PyObject *self, PyObject *data)
{
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size == 0 || size > INT_MAX)
        return 0;
    if (FLAG(self, _eof) || FLAG(self, _conn_lost) || FLAG(self, _sendfile) ||
        FLAG(self, _sending) || !nothing_queued(self))
        return 0;
    PyObject *table = TRANSPORT(self, _ops), *op = TRANSPORT(self, _send_op);
    long fd = get_long(self, stream_fields._fd), live = get_long(self, stream_fields._live);
    if (!ul_is_optable(table) || !op || !Py_IS_TYPE(op, send_type) || fd < 0 || live < 0)
        return 0;
    OpTable *t = (OpTable *)table;
    if (!t->ring)
        return 0;
    PyObject *chunks = PyTuple_Pack(1, data);
    PyObject *nbytes = PyLong_FromSsize_t(size);
    uint32_t ud = chunks && nbytes ? ul_table_add(t, op) : 0;
    if (!ud) {
        Py_XDECREF(chunks);
        Py_XDECREF(nbytes);
        return -1;
    }
    if (ul_prep_send(t->ring, ud, (int)fd, PyBytes_AS_STRING(data), (unsigned)size)) {
        Py_DECREF(ul_table_take(t, ud));   /* the Python path retries or says why */
        Py_DECREF(chunks);
        Py_DECREF(nbytes);
        return 0;
    }
    put(op, send_fields.chunks, chunks);
    put_borrowed(op, send_fields.pinned, Py_None);
    put_borrowed(op, send_fields.size, nbytes);
    put(self, stream_fields._inflight_size, nbytes);
    put_borrowed(self, stream_fields._sending, Py_True);
    if (put_long(self, stream_fields._live, live + 1) < 0)
        return -1;
    PyObject *high = TRANSPORT(self, _high_water);
    if (high && PyLong_Check(high) && size > PyLong_AsSsize_t(high))
        return call0(self, str_maybe_pause);
    return 1;
}

/* A bytearray or memoryview is copied first, as _write() would: the caller
 * may reuse its buffer as soon as write() returns. */
static PyObject *transport_write(PyObject *self, PyObject *data)
{
    PyObject *copy = NULL;
    if (PyByteArray_CheckExact(data) || PyMemoryView_Check(data)) {
        if (!(copy = PyBytes_FromObject(data)))
            return NULL;
        data = copy;
    }
    int rc = PyBytes_CheckExact(data) ? write_fast(self, data) : 0;
    PyObject *r = rc < 0 ? NULL : rc > 0 ? (Py_INCREF(Py_None), Py_None)
                                         : call_method1(self, str_write_slow, data);
    Py_XDECREF(copy);
    return r;
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
    PyObject *context;         /* the transport's: completions run in it */
    Py_buffer view;            /* view.obj != NULL while exported */
} BufferedRecv;

/* Ask the protocol for a buffer and queue a RECV into it; a failing
 * get_buffer() is the transport's fatal error, as in asyncio. */
static int brecv_start(BufferedRecv *op)
{
    PyObject *tr = op->transport, *table = tr ? TRANSPORT(tr, _ops) : NULL;
    long fd = tr ? get_long(tr, stream_fields._fd) : -1;
    long live = tr ? get_long(tr, stream_fields._live) : -1;
    if (!ul_is_optable(table) || !TRANSPORT(tr, _protocol) || fd < 0 || live < 0 ||
        op->view.obj) {
        PyErr_SetString(PyExc_RuntimeError, "uringloop: receive started in a bad state");
        return -1;
    }
    OpTable *t = (OpTable *)table;
    if (ul_need_ring(t) < 0)
        return -1;
    PyObject *message = msg_get_buffer, *protocol = TRANSPORT(tr, _protocol);
    PyObject *hint = PyLong_FromLong(-1), *buf;
    Py_INCREF(protocol);
    buf = hint ? call_method1(protocol, str_get_buffer, hint) : NULL;
    Py_DECREF(protocol);
    Py_XDECREF(hint);
    /* asyncio's order: len(buf) first, then the receive refuses a
     * read-only buffer, which is a read error rather than get_buffer's */
    Py_ssize_t size = buf ? PyObject_Length(buf) : -1;
    if (size == 0)
        PyErr_SetObject(PyExc_RuntimeError, msg_empty_buffer);
    if (size > 0 && PyObject_GetBuffer(buf, &op->view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "get_buffer() returned a read-only %.100s",
                     Py_TYPE(buf)->tp_name);
        message = msg_read;
    }
    Py_XDECREF(buf);
    if (!op->view.obj)
        return fatal(tr, message) < 0 ? -1 : 0;
    uint32_t ud = ul_table_add(t, (PyObject *)op);
    unsigned len = op->view.len > UINT_MAX ? UINT_MAX : (unsigned)op->view.len;
    int err = ud ? 0 : -1;
    while (ud && (err = ul_prep_recv(t->ring, ud, (int)fd, op->view.buf, len)))
        if (ul_prep_failed(t, ud, err) < 0)
            break;
    if (err) {
        PyBuffer_Release(&op->view);
        return -1;
    }
    PyObject *pud = PyLong_FromUnsignedLong(ud);
    if (!pud)
        return -1;
    put(tr, stream_fields._recv_ud, pud);
    return put_long(tr, stream_fields._live, live + 1);
}

static int may_read_again(PyObject *tr)
{
    return !FLAG(tr, _recv_ud) && !FLAG(tr, _closing) &&
           !FLAG(tr, _paused) && !FLAG(tr, _read_eof) &&
           !FLAG(tr, _conn_lost);
}

/* The receive into the protocol's buffer completed.  Read normally, the
 * protocol is told how much arrived; otherwise the bytes are copied out of
 * its buffer first, so that held data stays intact whatever the protocol
 * does with that buffer meanwhile (a start_tls swaps the protocol). */
static int brecv_receive(BufferedRecv *op, PyObject *tr, int32_t res)
{
    if (res > 0 && reads_normally(tr)) {
        PyBuffer_Release(&op->view);
        PyObject *n = PyLong_FromLong(res);
        int rc = n ? call_protocol(tr, str_buffer_updated, n, msg_buffer_updated) : -1;
        Py_XDECREF(n);
        if (rc > 0 && may_read_again(tr))
            rc = FLAG(tr, _buffered) ? (brecv_start(op) < 0 ? -1 : 1)
                                                     : call0(tr, str_start_reading);
        return rc;
    }
    PyObject *data = res > 0 && !FLAG(tr, _closing)
                         ? PyBytes_FromStringAndSize(op->view.buf, res)
                         : (Py_INCREF(Py_None), Py_None);
    PyBuffer_Release(&op->view);
    if (!data)
        return -1;
    PyObject *n = PyLong_FromLong(res);
    PyObject *r = n ? PyObject_CallMethodObjArgs(tr, str_received_into, n, data, NULL) : NULL;
    Py_XDECREF(n);
    Py_DECREF(data);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

static int brecv_complete(OpTable *t, PyObject *self, int32_t res, uint32_t flags)
{
    BufferedRecv *op = (BufferedRecv *)self;
    PyObject *tr = op->transport, *entered;
    if (!tr) {
        PyBuffer_Release(&op->view);
        return 1;
    }
    if (!(entered = ul_enter(op->context)))
        return -1;
    Py_INCREF(tr);
    int rc = -1;
    put_long(tr, stream_fields._recv_ud, 0);
    if (put_long(tr, stream_fields._live, get_long(tr, stream_fields._live) - 1) == 0)
        rc = brecv_receive(op, tr, res);
    if (rc > 0 && FLAG(tr, _released))
        rc = call0(tr, str_release_if_idle);
    Py_DECREF(tr);
    return ul_leave(entered, rc);
}

static PyObject *brecv_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *transport, *context;
    if (!PyArg_ParseTuple(args, "OO:BufferedRecv", &transport, &context))
        return NULL;
    BufferedRecv *op = (BufferedRecv *)type->tp_alloc(type, 0);
    if (op) {
        hold(&op->transport, transport);
        hold(&op->context, context);
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
    Py_VISIT(op->context);
    return 0;
}

static int brecv_clear(BufferedRecv *op)
{
    Py_CLEAR(op->transport);
    Py_CLEAR(op->context);
    return 0;
}

/* Only once no slot holds the record, that is after its final completion
 * (or with the process, from the loop's abandoned ops): the kernel is done. */
static void brecv_dealloc(BufferedRecv *op)
{
    PyObject_GC_UnTrack(op);
    brecv_clear(op);
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
    {Py_tp_doc, "BufferedRecv(transport, context): a BufferedProtocol's receive, reused by "
                "its transport."},
    {Py_tp_new, brecv_new},
    {Py_tp_dealloc, brecv_dealloc},
    {Py_tp_traverse, brecv_traverse},
    {Py_tp_clear, brecv_clear},
    {Py_tp_repr, brecv_repr},
    {Py_tp_methods, brecv_methods},
    {0, NULL}};

static PyType_Spec brecv_spec = {
    "uringloop._c.BufferedRecv", sizeof(BufferedRecv), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, brecv_slots};

/* ---- install ----------------------------------------------------------------- */

/* The messages the fast paths need, from stream.py's MESSAGES. */
static int take_messages(PyObject *messages)
{
    struct { PyObject **where; const char *key; } wanted[] = {
        {&msg_data_received, "data_received"}, {&msg_buffer_updated, "buffer_updated"},
        {&msg_get_buffer, "get_buffer"}, {&msg_empty_buffer, "empty_buffer"},
        {&msg_read, "read"}};
    for (size_t i = 0; i < sizeof(wanted) / sizeof(*wanted); i++) {
        PyObject *m = PyDict_Check(messages) ? PyDict_GetItemString(messages, wanted[i].key)
                                             : NULL;
        if (!m || !PyUnicode_Check(m)) {
            PyErr_Format(PyExc_TypeError, "install_stream(): no message %R", wanted[i].key);
            return -1;
        }
        hold(wanted[i].where, m);
    }
    return 0;
}

/* install_stream(transport_cls, recv_cls, send_cls, messages) */
static PyObject *install_stream(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "install_stream(transport_cls, recv_cls, send_cls, messages)");
        return NULL;
    }
    PyObject *tcls = args[0], *rcls = args[1], *scls = args[2];
    if (FIND_FIELDS(tcls, stream_fields) < 0 || FIND_FIELDS(rcls, recv_fields) < 0 ||
        FIND_FIELDS(scls, send_fields) < 0 || take_messages(args[3]) < 0 ||
        set_method(tcls, &write_def) < 0 ||
        ul_register_kind((PyTypeObject *)rcls, recv_fast, recv_fields.context) < 0 ||
        ul_register_kind((PyTypeObject *)scls, send_fast, send_fields.context) < 0)
        return NULL;
    hold((PyObject **)&send_type, scls);
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"install_stream", (PyCFunction)(void (*)(void))install_stream, METH_FASTCALL,
     "install_stream(transport_cls, recv_cls, send_cls, messages): the stream\n"
     "transport's receive and send fast paths, and its write()."},
    {NULL}};

int ul_stream_install(PyObject *dict)
{
    static const struct ul_name names[] = {
        {&str_data_received, "data_received"}, {&str_write_slow, "_write"},
        {&str_maybe_pause, "_maybe_pause_protocol"}, {&str_get_buffer, "get_buffer"},
        {&str_buffer_updated, "buffer_updated"}, {&str_fatal_error, "_fatal_error"},
        {&str_received_into, "_received_into"}, {&str_start_reading, "_start_reading"},
        {&str_release_if_idle, "_release_if_idle"}};
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0)
        return -1;
    PyTypeObject *brecv_type = (PyTypeObject *)PyType_FromSpec(&brecv_spec);
    int rc = brecv_type ? PyDict_SetItemString(dict, "BufferedRecv", (PyObject *)brecv_type) : -1;
    if (rc == 0)
        rc = ul_register_kind(brecv_type, brecv_complete, offsetof(BufferedRecv, context));
    Py_XDECREF(brecv_type);
    return rc < 0 ? -1 : add_functions(dict, defs);
}
