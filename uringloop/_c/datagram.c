/*
 * The datagram transport's fast path (uringloop/transports/datagram.py):
 * a multishot RECVMSG's datagram from an address seen before goes straight
 * to datagram_received(data, addr), where no callback is ready before it.  As for streams, it takes only the
 * common case (reading, the address already decoded) and leaves the rest
 * to the Python methods, which stay the one definition of the semantics.
 */
#include "optable.h"
#include <errno.h>
#include <string.h>

#define DGRAM_FIELDS(X) X(_protocol) X(_closing) X(_codec) X(_ready)
#define DRECV_FIELDS(X) X(transport) X(context) X(bgid) X(space)
#define CODEC_FIELDS(X) X(_unpacked)

FIELD_TABLE(dgram_fields, DGRAM_FIELDS);
FIELD_TABLE(drecv_fields, DRECV_FIELDS);
FIELD_TABLE(codec_fields, CODEC_FIELDS);

#define DGRAM(tr, name) FIELD(tr, dgram_fields.name)
#define DFLAG(tr, name) is_set(DGRAM(tr, name))

static PyObject *str_datagram_received, *str_received_failed;

/* ---- receiving ------------------------------------------------------------ */

/* The buffer a completion names, or NULL where it is not one of the group's. */
static const char *picked_buffer(OpTable *t, PyObject *op, uint32_t flags, int32_t res)
{
    long bgid = get_long(op, drecv_fields.bgid);
    if (bgid < 0 || bgid >= UL_BUFFER_GROUPS || !t->ring->bufrings[bgid])
        return NULL;
    return ul_bufring_data(t->ring->bufrings[bgid], flags >> UL_CQE_BUFFER_SHIFT,
                           (unsigned)res);
}

/* protocol.datagram_received(data, addr); its failure goes to
 * transport._datagram_received_failed(exc), as in Python.  1 or -1. */
static int deliver(PyObject *tr, PyObject *data, PyObject *addr)
{
    PyObject *protocol = DGRAM(tr, _protocol);
    Py_INCREF(protocol);
    PyObject *args[3] = {protocol, data, addr};
    PyObject *r = PyObject_VectorcallMethod(str_datagram_received, args,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(protocol);
    if (r) {
        Py_DECREF(r);
        return 1;
    }
    PyObject *exc = take_exception();
    if (!exc)
        return -1;
    r = call_method1(tr, str_received_failed, exc);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r ? 1 : -1;
}

static int recv_fast(OpTable *t, PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *tr = FIELD(op, drecv_fields.transport);
    long space = get_long(op, drecv_fields.space);
    if (res <= 0 || !(flags & UL_CQE_F_MORE) || !(flags & UL_CQE_F_BUFFER) || !tr ||
        space < 0 || DFLAG(tr, _closing) || !DGRAM(tr, _protocol))
        return 0;
    /* callbacks already ready run first, as on asyncio's loop (Python queues it) */
    PyObject *ready = DGRAM(tr, _ready);
    if (!ready || PyObject_Size(ready) != 0) {
        PyErr_Clear();
        return 0;
    }
    const char *buf = picked_buffer(t, op, flags, res);
    if (!buf || (size_t)res < sizeof(struct ul_recvmsg_out) + (size_t)space)
        return 0;
    struct ul_recvmsg_out out;
    memcpy(&out, buf, sizeof(out));
    size_t name_at = sizeof(out), data_at = name_at + (size_t)space + out.controllen;
    if (data_at > (size_t)res)
        return 0;
    PyObject *codec = DGRAM(tr, _codec);
    PyObject *cache = codec ? FIELD(codec, codec_fields._unpacked) : NULL;
    if (!cache || !PyDict_CheckExact(cache))
        return 0;
    size_t namelen = out.namelen < (size_t)space ? out.namelen : (size_t)space;
    PyObject *name = PyBytes_FromStringAndSize(buf + name_at, (Py_ssize_t)namelen);
    if (!name)
        return -1;
    PyObject *addr = PyDict_GetItemWithError(cache, name);   /* borrowed */
    Py_DECREF(name);
    if (!addr)
        return PyErr_Occurred() ? -1 : 0;    /* a new address: Python decodes it */
    Py_INCREF(addr);
    PyObject *data = PyBytes_FromStringAndSize(buf + data_at, (Py_ssize_t)(res - data_at));
    PyObject *entered = data ? ul_enter(FIELD(op, drecv_fields.context)) : NULL;
    int rc = -1;
    if (entered) {
        Py_INCREF(tr);
        rc = ul_leave(entered, deliver(tr, data, addr));
        Py_DECREF(tr);
    }
    Py_XDECREF(data);
    Py_DECREF(addr);
    return rc;
}

/* ---- install ----------------------------------------------------------------- */

/* install_datagram(transport_cls, recv_cls, codec_cls) */
static PyObject *install_datagram(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "install_datagram(transport_cls, recv_cls, codec_cls)");
        return NULL;
    }
    if (FIND_FIELDS(args[0], dgram_fields) < 0 || FIND_FIELDS(args[1], drecv_fields) < 0 ||
        FIND_FIELDS(args[2], codec_fields) < 0 ||
        ul_register_kind((PyTypeObject *)args[1], recv_fast, drecv_fields.context) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"install_datagram", (PyCFunction)(void (*)(void))install_datagram, METH_FASTCALL,
     "install_datagram(transport_cls, recv_cls, codec_cls): the datagram\n"
     "transport's receive fast path."},
    {NULL}};

int ul_datagram_install(PyObject *dict)
{
    static const struct ul_name names[] = {
        {&str_datagram_received, "datagram_received"},
        {&str_received_failed, "_datagram_received_failed"}};
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0)
        return -1;
    return add_functions(dict, defs);
}
