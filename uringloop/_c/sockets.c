/*
 * The sock_* methods' non-blocking tries, in C.
 *
 * socket.recv() and socket.send() on a socket that is not ready raise
 * BlockingIOError, and building that exception costs more than the try
 * itself.  In a request-response exchange the first try of every receive
 * finds nothing, so these return None instead: the caller then waits for
 * readiness on the ring (poll_future, future.c) and tries again.  Other errors are
 * the OSError subclasses the socket module raises.
 */
#include "pyobj.h"
#include <errno.h>
#include <sys/socket.h>

/* Most receives fit here; the bytes object is then made at its final size. */
#define STACK_BYTES (64 * 1024)

/* recv_nowait(fd, n) -> bytes, or None when nothing is there yet */
static PyObject *recv_nowait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv_nowait(fd, n)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    static char stack[STACK_BYTES];      /* the GIL is held throughout */
    PyObject *big = n > STACK_BYTES ? PyBytes_FromStringAndSize(NULL, n) : NULL;
    if (n > STACK_BYTES && !big)
        return NULL;
    char *buf = big ? PyBytes_AS_STRING(big) : stack;
    ssize_t got;
    do {
        got = recv((int)fd, buf, (size_t)n, MSG_DONTWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        Py_XDECREF(big);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (!big)
        return PyBytes_FromStringAndSize(stack, got);
    if (got != n)
        _PyBytes_Resize(&big, got);
    return big;
}

/* A non-blocking send(2), or sendto(2) where name is given: bytes sent,
 * or None when the socket has no room. */
static PyObject *send_or_none(PyObject *pyfd, PyObject *data, const struct sockaddr *name,
                              socklen_t namelen)
{
    long fd = PyLong_AsLong(pyfd);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t sent = try_send((int)fd, view.buf, (size_t)view.len, name, namelen);
    PyBuffer_Release(&view);
    if (sent == -EAGAIN)
        Py_RETURN_NONE;
    return sent < 0 ? NULL : PyLong_FromSsize_t(sent);
}

/* send_nowait(fd, data) -> bytes sent, or None when the socket is full */
static PyObject *send_nowait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_nowait(fd, data)");
        return NULL;
    }
    return send_or_none(args[0], args[1], NULL, 0);
}

/* sendto_nowait(fd, data, name) -> bytes sent, or None when the socket has
 * no room; name is a raw sockaddr (bytes), or None for a connected socket */
static PyObject *sendto_nowait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || (args[2] != Py_None && !PyBytes_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "sendto_nowait(fd, data, name)");
        return NULL;
    }
    if (args[2] == Py_None)
        return send_or_none(args[0], args[1], NULL, 0);
    return send_or_none(args[0], args[1], (const struct sockaddr *)PyBytes_AS_STRING(args[2]),
                        (socklen_t)PyBytes_GET_SIZE(args[2]));
}

static PyMethodDef defs[] = {
    {"recv_nowait", (PyCFunction)(void (*)(void))recv_nowait, METH_FASTCALL,
     "recv_nowait(fd, n) -> bytes, or None when nothing is there yet."},
    {"send_nowait", (PyCFunction)(void (*)(void))send_nowait, METH_FASTCALL,
     "send_nowait(fd, data) -> bytes sent, or None when the socket is full."},
    {"sendto_nowait", (PyCFunction)(void (*)(void))sendto_nowait, METH_FASTCALL,
     "sendto_nowait(fd, data, name) -> bytes sent, or None when the socket has no room."},
    {NULL}};

int ul_sockets_install(PyObject *dict)
{
    return add_functions(dict, defs);
}
