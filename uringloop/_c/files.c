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
 *
 * Opening and stat-ing likewise: openat2(RESOLVE_CACHED) (Linux 5.12)
 * resolves a path from the dentry cache or says EAGAIN, never reading a
 * directory from disk, which is what an inline OPENAT does.  STATX never
 * runs inline (io_uring hands every one to a worker thread): an O_PATH
 * open from the cache and fstat() answer it in three short syscalls.
 *
 * fs_type() names a file's filesystem, by which the file objects know
 * whether io_uring would close it inline (no flush on close) anyway.
 */
#include "pyobj.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RESOLVE_CACHED 0x20

struct ul_open_how {
    uint64_t flags, mode, resolve;
};

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

/* open_cached(dfd, path, flags) -> the fd, or -errno: -EAGAIN where the
 * path is not all in the dentry cache, -EINVAL or -ENOSYS before 5.12.
 * Opened with O_NONBLOCK, as an inline OPENAT is, so that no FIFO or device
 * waits; the fd keeps the status flags asked for (O_PATH fds have none). */
static PyObject *open_cached(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "open_cached(dfd, path: bytes, flags)");
        return NULL;
    }
    long dfd = PyLong_AsLong(args[0]), flags = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    int nonblock = !(flags & (O_PATH | O_NONBLOCK));
    struct ul_open_how how = {(uint64_t)(uint32_t)(flags | (nonblock ? O_NONBLOCK : 0)), 0,
                              RESOLVE_CACHED};
    long fd;
    do {
        fd = syscall(SYS_openat2, (int)dfd, PyBytes_AS_STRING(args[1]), &how, sizeof(how));
    } while (fd < 0 && errno == EINTR);
    /* F_SETFL changes the status flags only: to those asked for */
    if (fd >= 0 && nonblock && fcntl((int)fd, F_SETFL, (int)flags) < 0) {
        int err = errno;
        close((int)fd);
        errno = err;
        fd = -1;
    }
    return PyLong_FromLong(fd < 0 ? -errno : fd);
}

/* fs_type(fd) -> the f_type fstatfs() names for fd's filesystem */
static PyObject *fs_type(PyObject *module, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    struct statfs buf;
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fstatfs((int)fd, &buf) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLong((unsigned long)buf.f_type);
}

static PyMethodDef defs[] = {
    {"pread_nowait", (PyCFunction)(void (*)(void))pread_nowait, METH_FASTCALL,
     "pread_nowait(fd, n, offset) -> bytes, or None where they are not in the page cache."},
    {"open_cached", (PyCFunction)(void (*)(void))open_cached, METH_FASTCALL,
     "open_cached(dfd, path, flags) -> fd, or -errno (-EAGAIN: not in the dentry cache)."},
    {"fs_type", fs_type, METH_O, "fs_type(fd) -> fstatfs(fd).f_type"},
    {NULL}};

int ul_files_install(PyObject *dict)
{
    return add_functions(dict, defs);
}
