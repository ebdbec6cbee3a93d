/*
 * The file objects' page-cache try, in C.
 *
 * A read whose bytes are in the page cache costs what read(2) costs; going
 * through the ring adds a future and a loop iteration to it.  So a read
 * first asks preadv2(RWF_NOWAIT), the same non-blocking attempt io_uring
 * makes inline at submission: it answers from the cache or says EAGAIN
 * without blocking, and only then is a READ queued on the ring.  Files
 * whose filesystem has no such attempt answer EOPNOTSUPP once; the caller
 * then goes to the ring for every read of that file.
 */
#include "pyobj.h"
#include <errno.h>
#include <sys/uio.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* pread_nowait(fd, n, offset) -> bytes (b"" at the end), or None when the
 * bytes are not in the cache; offset -1 reads at the file's position */
static PyObject *pread_nowait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pread_nowait(fd, n, offset)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    long long offset = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n);
    if (!bytes)
        return NULL;
    struct iovec iov = {PyBytes_AS_STRING(bytes), (size_t)n};
    ssize_t got;
    do {
        got = preadv2((int)fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        Py_DECREF(bytes);
        if (errno == EAGAIN)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (got != n)
        _PyBytes_Resize(&bytes, got);
    return bytes;
}

static PyMethodDef defs[] = {
    {"pread_nowait", (PyCFunction)(void (*)(void))pread_nowait, METH_FASTCALL,
     "pread_nowait(fd, n, offset) -> bytes, or None where they are not in the page cache."},
    {NULL}};

int ul_files_install(PyObject *dict)
{
    return add_functions(dict, defs);
}
