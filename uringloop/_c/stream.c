/*
 * The stream transport's fast paths (uringloop/transports/stream.py):
 *
 *   recv_fast        a multishot receive's bytes -> data_received(), or for
 *                    a BufferedProtocol get_buffer(), a copy, buffer_updated()
 *   send_fast        a SEND that went out whole with nothing behind it
 *   write()          a bytes-like object on an idle transport -> send(2) at
 *                    once if it is large, else (and for what the socket did
 *                    not take) a SEND
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
#include <sys/socket.h>

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
                *msg_read, *msg_write;
static PyObject *str_data_received, *str_write_slow, *str_maybe_pause, *str_get_buffer,
                *str_buffer_updated, *str_fatal_error, *str_received;
static PyObject *minus_one;    /* get_buffer()'s size hint, as asyncio's */

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

/* Received bytes not yet delivered: `len` of them, from offset `at` of
 * buffer `bid` of the stream group's ring on. */
struct received {
    const struct ul_bufring *br;
    unsigned bid, at, len;
};

/* The next n of them, copied into dest. */
static void take(struct received *rx, char *dest, unsigned n)
{
    ul_bufring_take(rx->br, &rx->bid, &rx->at, n, dest);
    rx->len -= n;
}

/* The next n of them as a new bytes object. */
static PyObject *take_bytes(struct received *rx, unsigned n)
{
    PyObject *data = PyBytes_FromStringAndSize(NULL, n);
    if (data)
        take(rx, PyBytes_AS_STRING(data), n);
    return data;
}

/* Bytes to a BufferedProtocol, as asyncio's loop gives them: get_buffer(-1),
 * as many bytes as that buffer takes, buffer_updated(n), until all are in.
 * If the protocol stops reading normally in between (pauses, closes, is
 * swapped), the rest takes the Python way (_received: held or dropped).
 * 1 or -1. */
static int feed_buffer(PyObject *tr, struct received *rx)
{
    while (rx->len > 0) {
        if (!reads_normally(tr) || !FLAG(tr, _buffered)) {
            PyObject *rest = take_bytes(rx, rx->len);
            PyObject *r = rest ? call_method1(tr, str_received, rest) : NULL;
            int rc = r ? 1 : -1;
            Py_XDECREF(rest);
            Py_XDECREF(r);
            return rc;
        }
        PyObject *message = msg_get_buffer, *protocol = TRANSPORT(tr, _protocol);
        Py_INCREF(protocol);
        PyObject *buf = call_method1(protocol, str_get_buffer, minus_one);
        Py_DECREF(protocol);
        /* asyncio's order: len(buf) first, then recv_into() refuses a
         * read-only buffer, which is a read error rather than get_buffer's */
        Py_ssize_t size = buf ? PyObject_Length(buf) : -1;
        Py_buffer view = {0};
        if (size == 0)
            PyErr_SetObject(PyExc_RuntimeError, msg_empty_buffer);
        if (size > 0 && PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "get_buffer() returned a read-only %.100s",
                         Py_TYPE(buf)->tp_name);
            message = msg_read;
        }
        Py_XDECREF(buf);
        if (!view.obj)
            return fatal(tr, message);
        unsigned n = view.len < (Py_ssize_t)rx->len ? (unsigned)view.len : rx->len;
        take(rx, view.buf, n);
        PyBuffer_Release(&view);
        PyObject *nbytes = PyLong_FromUnsignedLong(n);
        int rc = nbytes ? call_protocol(tr, str_buffer_updated, nbytes, msg_buffer_updated) : -1;
        Py_XDECREF(nbytes);
        if (rc < 0)
            return -1;
    }
    return 1;
}

/* A multishot receive's bytes (one buffer's, or a bundle's several),
 * delivered while the transport reads normally and the receive stays armed. */
static int recv_fast(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *tr = FIELD(op, recv_fields.transport);
    struct received rx = {t->ring->bufrings[0], flags >> UL_CQE_BUFFER_SHIFT, 0, res};
    if (res <= 0 || !(flags & UL_CQE_F_MORE) || !(flags & UL_CQE_F_BUFFER) || !rx.br || !tr ||
        !reads_normally(tr) || !ul_bufring_data(rx.br, rx.bid, 0))
        return 0;
    PyObject *entered = ul_enter(FIELD(op, recv_fields.context));
    if (!entered)
        return -1;
    int rc = -1;
    Py_INCREF(tr);
    if (FLAG(tr, _buffered)) {
        rc = feed_buffer(tr, &rx);
    } else {
        PyObject *data = take_bytes(&rx, rx.len);
        if (data)
            rc = call_protocol(tr, str_data_received, data, msg_data_received);
        Py_XDECREF(data);
    }
    Py_DECREF(tr);
    return ul_leave(entered, rc);
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

/* Writes of this size and more go out with send(2) inside write(), as
 * asyncio's and uvloop's do, when the transport is idle.  A SEND would keep
 * the bytes alive until its completion, a loop iteration later: with many
 * connections a batch of large messages then stays resident and out of the
 * CPU's caches, where a send now frees each at once.  Below this size the
 * SENDs batched into one enter cost less than a syscall each (README, "Where
 * the time went"). */
#define SEND_NOW_MIN (16 * 1024)

/* Nothing stands between a write and the socket: open, no write_eof, no
 * sendfile, nothing in flight or queued.  The transport's ring, fd and count
 * of live requests go to *t, *fd and *live.  0: take the Python path. */
static int idle_for_send(PyObject *self, OpTable **t, long *fd, long *live)
{
    if (FLAG(self, _eof) || FLAG(self, _conn_lost) || FLAG(self, _sendfile) ||
        FLAG(self, _sending) || !nothing_queued(self))
        return 0;
    PyObject *table = TRANSPORT(self, _ops), *op = TRANSPORT(self, _send_op);
    *fd = get_long(self, stream_fields._fd);
    *live = get_long(self, stream_fields._live);
    if (!ul_is_optable(table) || !op || !Py_IS_TYPE(op, send_type) || *fd < 0 || *live < 0)
        return 0;
    *t = (OpTable *)table;
    return (*t)->ring != NULL;
}

/* A bytes object into a SEND on an idle transport.  0: the ring refused the
 * request; the Python path retries or says why. */
static int send_on_ring(PyObject *self, OpTable *t, long fd, long live, PyObject *data)
{
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    PyObject *op = TRANSPORT(self, _send_op);
    PyObject *chunks = PyTuple_Pack(1, data);
    PyObject *nbytes = PyLong_FromSsize_t(size);
    uint32_t ud = chunks && nbytes ? ul_table_add(t, op) : 0;
    if (!ud) {
        Py_XDECREF(chunks);
        Py_XDECREF(nbytes);
        return -1;
    }
    if (ul_prep_send(t->ring, ud, (int)fd, PyBytes_AS_STRING(data), (unsigned)size)) {
        Py_DECREF(ul_table_take(t, ud));
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
    ul_submit_reply(t->ring);
    PyObject *high = TRANSPORT(self, _high_water);
    if (high && PyLong_Check(high) && size > PyLong_AsSsize_t(high))
        return call0(self, str_maybe_pause);
    return 1;
}

/* _write(data), the Python path, for what is left of a write.  1 or -1. */
static int write_slow(PyObject *self, PyObject *data)
{
    PyObject *r = call_method1(self, str_write_slow, data);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

/* A bytes-like object on an idle, open transport: a large one goes out at
 * once as far as the socket takes it, and the rest (or a small one) into a
 * SEND, copied to bytes first if it is not: the caller may reuse its buffer
 * as soon as write() returns.  A failed send(2) is the transport's fatal
 * error, inside write() as on asyncio's loop.  0: not this path's case. */
static int write_fast(PyObject *self, PyObject *data)
{
    OpTable *t;
    long fd, live;
    Py_buffer view = {0};
    if (!idle_for_send(self, &t, &fd, &live))
        return 0;
    if (PyBytes_CheckExact(data)) {
        view.buf = PyBytes_AS_STRING(data);
        view.len = PyBytes_GET_SIZE(data);
    } else if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();              /* not contiguous: _write() copies it */
        return 0;
    }
    Py_ssize_t sent = view.len >= SEND_NOW_MIN ? try_send((int)fd, view.buf, (size_t)view.len,
                                                          NULL, 0) : 0;
    if (sent == -EAGAIN)
        sent = 0;
    PyObject *rest = NULL;
    int rc = view.len > 0;          /* _write() ignores b"" after its checks */
    if (sent < 0)
        rc = fatal(self, msg_write);
    else if (sent == 0 && PyBytes_CheckExact(data))
        rest = (Py_INCREF(data), data);
    else if (sent < view.len && !(rest = PyBytes_FromStringAndSize((char *)view.buf + sent,
                                                                    view.len - sent)))
        rc = -1;
    PyBuffer_Release(&view);        /* (nothing to release for bytes) */
    if (rest && rc > 0 && (PyBytes_GET_SIZE(rest) > INT_MAX ||
                           !(rc = send_on_ring(self, t, fd, live, rest))))
        rc = rest == data ? 0 : write_slow(self, rest);
    Py_XDECREF(rest);
    return rc;
}

static PyObject *transport_write(PyObject *self, PyObject *data)
{
    int rc = PyBytes_CheckExact(data) || PyByteArray_CheckExact(data) ||
             PyMemoryView_Check(data) ? write_fast(self, data) : 0;
    if (rc == 0)
        rc = write_slow(self, data);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef write_def = {
    "write", (PyCFunction)transport_write, METH_O,
    "Write bytes to the transport: large ones go out at once, others with the\n"
    "loop's next enter, or at once as the reply to a lone completion."};

/* ---- install ----------------------------------------------------------------- */

/* The messages the fast paths need, from stream.py's MESSAGES. */
static int take_messages(PyObject *messages)
{
    struct { PyObject **where; const char *key; } wanted[] = {
        {&msg_data_received, "data_received"}, {&msg_buffer_updated, "buffer_updated"},
        {&msg_get_buffer, "get_buffer"}, {&msg_empty_buffer, "empty_buffer"},
        {&msg_read, "read"}, {&msg_write, "write"}};
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
        {&str_received, "_received"}};
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0 ||
        !(minus_one = PyLong_FromLong(-1)))
        return -1;
    return add_functions(dict, defs);
}
