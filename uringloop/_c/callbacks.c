/*
 * The loop's per-callback methods in C: call_soon(), call_soon_threadsafe(),
 * running the ready queue, Handle._run(), create_future(), create_task(),
 * time() and get_debug().
 *
 * call_soon_threadsafe() is call_soon() plus the doorbell (loop.py's
 * _write_to_self), rung only when no ring is pending yet.  From other
 * threads every Python frame is paid under the GIL they contend for, and
 * os.eventfd_write() would hand the GIL over around its write(2); C
 * writes the eventfd holding it, as uvloop's uv_async_send() does.
 *
 * A stream request wakes a task (call_soon, then a Handle run), makes a
 * Future and reads the clock; as asyncio's Python code that is several
 * frames per request, which uvloop runs as Cython.  Handles stay instances
 * of asyncio.Handle (a subclass with no fields of its own, so that
 * isinstance checks and repr() are asyncio's), and C reaches their
 * __slots__ through the member descriptors' offsets, as stream.c does
 * for transports.  Debug mode takes asyncio's own Python paths.
 */
#include "pyobj.h"
#include <stdint.h>
#include <time.h>
#include <unistd.h>

static PyTypeObject *handle_type, *base_handle_type, *timer_type;
static PyObject *future_type, *task_type, *callback_failed, *slow_call_soon,
                *slow_call_soon_threadsafe, *slow_create_task, *loop_kwnames;
static PyObject *str_append, *str_popleft, *str_run, *str_cancelled, *str_run_debug;
/* Pythons whose call_soon_threadsafe makes a _ThreadSafeHandle (its cancel()
 * takes a lock) keep asyncio's method. */
static int threadsafe_handles;
#define HANDLE_FIELDS(X) \
    X(_callback) X(_args) X(_cancelled) X(_loop) X(_source_traceback) X(_repr) X(_context)
#define LOOP_FIELDS(X) \
    X(_ready) X(_closed) X(_debug) X(_task_factory) X(_wakeup_pending) X(_wakeup_fd)

FIELD_TABLE(handle_fields, HANDLE_FIELDS);
FIELD_TABLE(loop_fields, LOOP_FIELDS);

/* ---- Handle -------------------------------------------------------------- */

/* A new Handle, or an instance of a subclass (timers.c: TimerHandle, whose
 * own fields it leaves unset); `args` (a tuple) is a new reference,
 * consumed. */
PyObject *ul_handle_new(PyTypeObject *type, PyObject *callback, PyObject *args,
                        PyObject *loop, PyObject *context)
{
    PyObject *h = type->tp_alloc(type, 0);
    if (!h) {
        Py_DECREF(args);
        return NULL;
    }
    if (context == Py_None) {
        context = PyContext_CopyCurrent();
        if (!context) {
            Py_DECREF(args);
            Py_DECREF(h);
            return NULL;
        }
    } else {
        Py_INCREF(context);
    }
    FIELD(h, handle_fields._context) = context;
    Py_INCREF(loop);
    FIELD(h, handle_fields._loop) = loop;
    Py_INCREF(callback);
    FIELD(h, handle_fields._callback) = callback;
    FIELD(h, handle_fields._args) = args;
    Py_INCREF(Py_False);
    FIELD(h, handle_fields._cancelled) = Py_False;
    Py_INCREF(Py_None);
    FIELD(h, handle_fields._repr) = Py_None;
    Py_INCREF(Py_None);
    FIELD(h, handle_fields._source_traceback) = Py_None;
    return h;
}

/* context.run(callback, *args); an exception other than SystemExit and
 * KeyboardInterrupt goes to callback_failed(handle, exc), as asyncio's
 * Handle._run passes it to the loop's exception handler. */
static int handle_run(PyObject *h)
{
    PyObject *ctx = FIELD(h, handle_fields._context), *cb = FIELD(h, handle_fields._callback),
             *args = FIELD(h, handle_fields._args), *res = NULL;
    if (!ctx || !cb || !args || !PyContext_CheckExact(ctx) || !PyTuple_Check(args)) {
        PyErr_SetString(PyExc_TypeError, "the handle has no callback to run");
    } else {
        Py_INCREF(ctx);
        Py_INCREF(cb);
        Py_INCREF(args);
        if (PyContext_Enter(ctx) == 0) {
            res = PyObject_Call(cb, args, NULL);
            if (PyContext_Exit(ctx) < 0)
                Py_CLEAR(res);
        }
        Py_DECREF(ctx);
        Py_DECREF(cb);
        Py_DECREF(args);
    }
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    PyObject *exc = take_exception();
    if (!exc)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(callback_failed, h, exc, NULL);
    Py_DECREF(exc);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *handle_py_run(PyObject *self, PyObject *unused)
{
    if (handle_run(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef handle_run_def = {
    "_run", handle_py_run, METH_NOARGS, "Run the callback in its context."};

/* ---- loop methods -------------------------------------------------------- */

/* Whether call_soon's arguments are for the C path: no keyword but
 * context=, an open loop, not in debug mode. */
static int soon_in_c(PyObject *self, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames && (PyTuple_GET_SIZE(kwnames) != 1 ||
                    PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context")))
        return 0;
    return nargs >= 1 && FIELD(self, loop_fields._ready) &&
           !is_set(FIELD(self, loop_fields._closed)) && !is_set(FIELD(self, loop_fields._debug));
}

/* A Handle of callback args[0](*args[1:]) appended to the ready queue. */
static PyObject *soon(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *context = kwnames ? args[nargs] : Py_None, *ready = FIELD(self, loop_fields._ready);
    PyObject *cbargs = PyTuple_New(nargs - 1);
    if (!cbargs)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(cbargs, i - 1, args[i]);
    }
    PyObject *h = ul_handle_new(handle_type, args[0], cbargs, self, context);
    if (!h)
        return NULL;
    PyObject *append_args[2] = {ready, h};
    PyObject *r = PyObject_VectorcallMethod(str_append, append_args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (!r) {
        Py_DECREF(h);
        return NULL;
    }
    Py_DECREF(r);
    return h;
}

static PyObject *loop_call_soon(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    if (!soon_in_c(self, nargs, kwnames))
        return call_slow(slow_call_soon, self, args, nargs, kwnames);
    return soon(self, args, nargs, kwnames);
}

/* loop.py's _write_to_self, with the GIL held from the look at the flag to
 * the write: the loop's close() sets _wakeup_fd to -1 before it closes the
 * fd, so the number written to is still the loop's eventfd. */
static int ring_doorbell(PyObject *self)
{
    PyObject *fd = FIELD(self, loop_fields._wakeup_fd);
    if (FIELD(self, loop_fields._wakeup_pending) == Py_True || !fd)
        return 0;
    Py_INCREF(Py_True);
    Py_XSETREF(FIELD(self, loop_fields._wakeup_pending), Py_True);
    long n = PyLong_AsLong(fd);
    if (n == -1 && PyErr_Occurred())
        return -1;
    uint64_t one = 1;
    if (n >= 0)     /* fails only with EAGAIN: saturated, the loop wakes anyway */
        (void)!write((int)n, &one, sizeof one);
    return 0;
}

static PyObject *loop_call_soon_threadsafe(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    if (threadsafe_handles || !soon_in_c(self, nargs, kwnames))
        return call_slow(slow_call_soon_threadsafe, self, args, nargs, kwnames);
    PyObject *h = soon(self, args, nargs, kwnames);
    if (h && ring_doorbell(self) < 0)
        Py_CLEAR(h);
    return h;
}

/* Run the callbacks ready now; those they schedule wait for the next
 * iteration, after the next look at the ring. */
static PyObject *loop_run_ready(PyObject *self, PyObject *unused)
{
    if (is_set(FIELD(self, loop_fields._debug)))
        return PyObject_CallMethodNoArgs(self, str_run_debug);
    PyObject *ready = FIELD(self, loop_fields._ready);
    if (!ready) {
        PyErr_SetString(PyExc_AttributeError, "_ready");
        return NULL;
    }
    Py_ssize_t n = PyObject_Length(ready);
    if (n < 0)
        return NULL;
    Py_INCREF(ready);
    PyObject *args[1] = {ready};
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        PyObject *h = PyObject_VectorcallMethod(str_popleft, args,
                                                1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (!h) {
            rc = -1;
            break;
        }
        if (Py_IS_TYPE(h, handle_type) || Py_IS_TYPE(h, base_handle_type) ||
            Py_IS_TYPE(h, timer_type)) {
            if (!is_set(FIELD(h, handle_fields._cancelled)))
                rc = handle_run(h);
        } else {
            PyObject *c = PyObject_GetAttr(h, str_cancelled);
            PyObject *r = !c ? NULL : is_set(c) ? (Py_INCREF(Py_None), Py_None)
                                                : PyObject_CallMethodNoArgs(h, str_run);
            rc = r ? 0 : -1;
            Py_XDECREF(c);
            Py_XDECREF(r);
        }
        Py_DECREF(h);
    }
    Py_DECREF(ready);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *loop_create_future(PyObject *self, PyObject *unused)
{
    PyObject *args[1] = {self};
    return PyObject_Vectorcall(future_type, args, 0, loop_kwnames);
}

/* create_task(coro): Task(coro, loop=self) where asyncio would make one
 * directly (no task factory, no keywords, not debug, not closed). */
static PyObject *loop_create_task(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    PyObject *factory = FIELD(self, loop_fields._task_factory);
    if (kwnames || nargs != 1 || (factory && factory != Py_None) ||
        is_set(FIELD(self, loop_fields._closed)) || is_set(FIELD(self, loop_fields._debug)))
        return call_slow(slow_create_task, self, args, nargs, kwnames);
    PyObject *task_args[2] = {args[0], self};
    return PyObject_Vectorcall(task_type, task_args, 1, loop_kwnames);
}

/* time.monotonic(), computed as Python does it (integer nanoseconds, then
 * one division), so the two clocks agree to the last bit. */
static PyObject *loop_time(PyObject *self, PyObject *unused)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return PyFloat_FromDouble((double)ns / 1e9);
}

static PyObject *loop_get_debug(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(is_set(FIELD(self, loop_fields._debug)));
}

static PyMethodDef loop_defs[] = {
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called as soon as possible."},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, "Like call_soon(), but thread-safe."},
    {"_run_ready", loop_run_ready, METH_NOARGS, "Run the callbacks that are ready now."},
    {"create_future", loop_create_future, METH_NOARGS,
     "Create a Future object attached to the loop."},
    {"create_task", (PyCFunction)(void (*)(void))loop_create_task,
     METH_FASTCALL | METH_KEYWORDS, "Schedule a coroutine object; return a Task."},
    {"time", loop_time, METH_NOARGS, "The loop's clock: time.monotonic()."},
    {"get_debug", loop_get_debug, METH_NOARGS, "Whether debug mode is on."},
    {NULL}};

/* ---- install_loop ---------------------------------------------------------- */

/* install_loop(Loop, Handle, TimerHandle, Future, Task, BaseEventLoop,
 * callback_failed) */
static PyObject *install_loop(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 7) {
        PyErr_SetString(PyExc_TypeError, "install_loop() takes 7 arguments");
        return NULL;
    }
    PyObject *loop_cls = args[0], *hcls = args[1], *timer = args[2], *asyncio_loop = args[5];
    for (int i = 0; i < 6; i++)
        if (!PyType_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "install_loop(): expected classes");
            return NULL;
        }
    PyObject *base = (PyObject *)((PyTypeObject *)hcls)->tp_base;
    if (!PyType_IsSubtype((PyTypeObject *)timer, (PyTypeObject *)base) ||
        ((PyTypeObject *)hcls)->tp_basicsize != ((PyTypeObject *)base)->tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "Handle must add no fields to asyncio's");
        return NULL;
    }
    if (FIND_FIELDS(base, handle_fields) < 0 || FIND_FIELDS(loop_cls, loop_fields) < 0)
        return NULL;
    PyObject *call_soon = PyObject_GetAttrString(asyncio_loop, "call_soon");
    PyObject *threadsafe = PyObject_GetAttrString(asyncio_loop, "call_soon_threadsafe");
    PyObject *create_task = PyObject_GetAttrString(asyncio_loop, "create_task");
    PyObject *events = PyImport_ImportModule("asyncio.events");
    if (!call_soon || !threadsafe || !create_task || !events) {
        Py_XDECREF(call_soon);
        Py_XDECREF(threadsafe);
        Py_XDECREF(create_task);
        Py_XDECREF(events);
        return NULL;
    }
    threadsafe_handles = PyObject_HasAttrString(events, "_ThreadSafeHandle");
    Py_DECREF(events);
    Py_XSETREF(slow_call_soon, call_soon);
    Py_XSETREF(slow_call_soon_threadsafe, threadsafe);
    Py_XSETREF(slow_create_task, create_task);
    if (set_method(hcls, &handle_run_def) < 0)
        return NULL;
    for (PyMethodDef *d = loop_defs; d->ml_name; d++)
        if (set_method(loop_cls, d) < 0)
            return NULL;
    hold((PyObject **)&handle_type, hcls);
    hold((PyObject **)&base_handle_type, base);
    hold((PyObject **)&timer_type, timer);
    hold(&future_type, args[3]);
    hold(&task_type, args[4]);
    hold(&callback_failed, args[6]);
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"install_loop", (PyCFunction)(void (*)(void))install_loop, METH_FASTCALL,
     "install_loop(Loop, Handle, TimerHandle, Future, Task, BaseEventLoop,\n"
     "             callback_failed): give the loop its C call_soon,\n"
     "             call_soon_threadsafe, _run_ready, create_future, create_task,\n"
     "             time and get_debug."},
    {NULL}};

int ul_callbacks_install(PyObject *dict)
{
    static const struct ul_name names[] = {
        {&str_append, "append"}, {&str_popleft, "popleft"}, {&str_run, "_run"},
        {&str_cancelled, "_cancelled"}, {&str_run_debug, "_run_ready_debug"}};
    loop_kwnames = Py_BuildValue("(s)", "loop");
    if (!loop_kwnames || intern_names(names, sizeof(names) / sizeof(*names)) < 0)
        return -1;
    return add_functions(dict, defs);
}
