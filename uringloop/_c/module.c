/*
 * The CPython objects of the C code, put into uringloop._c's namespace.
 *
 * They are compiled into the cffi-built module (uringloop._uring) but are
 * real CPython objects, not cffi calls: each cffi call releases and
 * retakes the GIL and converts its arguments, which the per-completion
 * path cannot afford.  cffi sees one function, ul_install(); Python passes
 * id() of a dict (in CPython, the object's address) and gets them put
 * into it.
 *
 *   optable.c    OpTable (user_data -> op record, run + dispatch), register_kind
 *   future.c     the completion of ops.FutureOp; poll_future
 *   stream.c     the stream transport's fast paths
 *   datagram.c   the datagram transport's receive fast path
 *   sockets.c    recv_nowait, send_nowait
 *   files.c      pread_nowait, open_cached
 *   callbacks.c  install_loop: call_soon, the ready queue, Handle._run...
 *   timers.c     install_timers: call_at, call_later, the heap, TimerHandle.cancel
 */
#include "pyobj.h"
#include "ring.h"

int ul_optable_install(PyObject *dict);
int ul_future_install(PyObject *dict);
int ul_stream_install(PyObject *dict);
int ul_datagram_install(PyObject *dict);
int ul_sockets_install(PyObject *dict);
int ul_files_install(PyObject *dict);
int ul_callbacks_install(PyObject *dict);
int ul_timers_install(PyObject *dict);

static int install(PyObject *dict)
{
    if (ul_optable_install(dict) < 0 || ul_future_install(dict) < 0 ||
        ul_stream_install(dict) < 0 || ul_datagram_install(dict) < 0 ||
        ul_sockets_install(dict) < 0 || ul_files_install(dict) < 0 ||
        ul_callbacks_install(dict) < 0)
        return -1;
    return ul_timers_install(dict);
}

/* Called through cffi, which released the GIL; the dict at `dict_address`
 * is kept alive by the caller. */
int ul_install(uintptr_t dict_address)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *dict = (PyObject *)dict_address;
    int rc = PyDict_Check(dict) ? install(dict) : -1;
    if (rc < 0 && PyErr_Occurred())
        PyErr_WriteUnraisable(NULL);
    PyGILState_Release(g);
    return rc;
}
