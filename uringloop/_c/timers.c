/*
 * The loop's timers in C: call_at(), call_later(), TimerHandle.cancel(),
 * and the two timer steps of each loop iteration (dropping cancelled
 * timers, moving the due ones to the ready queue).
 *
 * The timers stay asyncio's: instances of asyncio.TimerHandle (a subclass
 * with no fields of its own) kept as a heap in the loop's _scheduled
 * list, so asyncio's own code (debug mode's call_at, close()) and anyone
 * reading _scheduled see what they expect.  What C saves is the Python
 * frames: TimerHandle.__init__ and its super(), cancel() and the loop's
 * _timer_handle_cancelled(), and above all TimerHandle.__lt__, which the
 * heapq functions call about 2 log2(n) times per pop.  The heap
 * functions below are heapq's algorithms step for step, comparing _when
 * as __lt__ does, so timers with equal deadlines run in the very order
 * asyncio's loop runs them.  Debug mode, a closed loop and unusual
 * arguments take asyncio's own Python methods.
 */
#include "pyobj.h"

PyObject *ul_handle_new(PyTypeObject *type, PyObject *callback, PyObject *args,
                        PyObject *loop, PyObject *context);

static PyTypeObject *timer_type, *asyncio_timer_type, *loop_type;
static PyObject *slow_call_at, *slow_call_later, *slow_cancel, *str_time, *str_append;
/* asyncio's thresholds (base_events.py): purge once more than half of more
 * than 100 timers are cancelled. */
static Py_ssize_t min_to_purge;
static double max_cancelled_fraction;

#define TIMER_FIELDS(X) X(_when) X(_scheduled) X(_cancelled) X(_callback) X(_args) X(_loop)
#define LOOP_FIELDS(X) \
    X(_scheduled) X(_timer_cancelled_count) X(_clock_resolution) X(_ready) X(_closed) X(_debug)

FIELD_TABLE(timer_fields, TIMER_FIELDS);
FIELD_TABLE(loop_fields, LOOP_FIELDS);

/* ---- the heap: heapq's algorithms, comparing as TimerHandle.__lt__ ------- */

/* heap[i] (borrowed), which C reads the fields of: an asyncio TimerHandle. */
static PyObject *timer_at(PyObject *heap, Py_ssize_t i)
{
    PyObject *t = PyList_GET_ITEM(heap, i);
    if (PyObject_TypeCheck(t, asyncio_timer_type))
        return t;
    PyErr_Format(PyExc_TypeError, "the loop's _scheduled holds %R, not a TimerHandle", t);
    return NULL;
}

/* a < b as heapq would find it: 1, 0, or -1 with an exception set. */
static int earlier(PyObject *a, PyObject *b)
{
    if (PyObject_TypeCheck(a, asyncio_timer_type) && PyObject_TypeCheck(b, asyncio_timer_type)) {
        PyObject *x = FIELD(a, timer_fields._when), *y = FIELD(b, timer_fields._when);
        if (x && y && PyFloat_CheckExact(x) && PyFloat_CheckExact(y))
            return PyFloat_AS_DOUBLE(x) < PyFloat_AS_DOUBLE(y);
        if (x && y)
            return PyObject_RichCompareBool(x, y, Py_LT);
    }
    return PyObject_RichCompareBool(a, b, Py_LT);
}

/* A comparison that ran Python code may have changed the list. */
static int check_size(PyObject *heap, Py_ssize_t size)
{
    if (PyList_GET_SIZE(heap) == size)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "list changed size during iteration");
    return -1;
}

/* heapq's _siftdown: move the item at pos up towards startpos. */
static int sift_down(PyObject *heap, Py_ssize_t startpos, Py_ssize_t pos)
{
    Py_ssize_t size = PyList_GET_SIZE(heap);
    while (pos > startpos) {
        Py_ssize_t parentpos = (pos - 1) >> 1;
        PyObject *item = PyList_GET_ITEM(heap, pos), *parent = PyList_GET_ITEM(heap, parentpos);
        Py_INCREF(item);
        Py_INCREF(parent);
        int lt = earlier(item, parent);
        Py_DECREF(item);
        Py_DECREF(parent);
        if (lt < 0 || check_size(heap, size) < 0)
            return -1;
        if (!lt)
            break;
        PyObject **items = ((PyListObject *)heap)->ob_item;
        PyObject *t = items[parentpos];
        items[parentpos] = items[pos];
        items[pos] = t;
        pos = parentpos;
    }
    return 0;
}

/* heapq's _siftup: the smaller child up to the leaf, then sift_down. */
static int sift_up(PyObject *heap, Py_ssize_t pos)
{
    Py_ssize_t endpos = PyList_GET_SIZE(heap), startpos = pos, limit = endpos >> 1;
    while (pos < limit) {
        Py_ssize_t child = 2 * pos + 1;
        if (child + 1 < endpos) {
            PyObject *a = PyList_GET_ITEM(heap, child), *b = PyList_GET_ITEM(heap, child + 1);
            Py_INCREF(a);
            Py_INCREF(b);
            int lt = earlier(a, b);
            Py_DECREF(a);
            Py_DECREF(b);
            if (lt < 0 || check_size(heap, endpos) < 0)
                return -1;
            child += lt ^ 1;
        }
        PyObject **items = ((PyListObject *)heap)->ob_item;
        PyObject *t = items[child];
        items[child] = items[pos];
        items[pos] = t;
        pos = child;
    }
    return sift_down(heap, startpos, pos);
}

static int heap_push(PyObject *heap, PyObject *item)
{
    if (PyList_Append(heap, item) < 0)
        return -1;
    return sift_down(heap, 0, PyList_GET_SIZE(heap) - 1);
}

/* heapq.heappop(heap) of a non-empty list: a new reference. */
static PyObject *heap_pop(PyObject *heap)
{
    Py_ssize_t n = PyList_GET_SIZE(heap) - 1;
    PyObject *last = PyList_GET_ITEM(heap, n);
    Py_INCREF(last);
    if (PyList_SetSlice(heap, n, n + 1, NULL) < 0) {
        Py_DECREF(last);
        return NULL;
    }
    if (n == 0)
        return last;
    PyObject *first = PyList_GET_ITEM(heap, 0);     /* the list's reference, now ours */
    PyList_SET_ITEM(heap, 0, last);
    if (sift_up(heap, 0) < 0) {
        Py_DECREF(first);
        return NULL;
    }
    return first;
}

static int heapify(PyObject *heap)
{
    for (Py_ssize_t i = PyList_GET_SIZE(heap) / 2 - 1; i >= 0; i--)
        if (sift_up(heap, i) < 0)
            return -1;
    return 0;
}

/* ---- call_at, call_later ------------------------------------------------ */

/* Whether call_at's or call_later's arguments are for the C path: a number
 * of time, a callback, no keyword but context=, an open loop not in debug
 * mode, and asyncio's heap list. */
static int timer_in_c(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    if (kwnames && (PyTuple_GET_SIZE(kwnames) != 1 ||
                    PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context")))
        return 0;
    PyObject *scheduled = FIELD(self, loop_fields._scheduled);
    return nargs >= 2 && (PyFloat_CheckExact(args[0]) || PyLong_CheckExact(args[0])) &&
           scheduled && PyList_CheckExact(scheduled) && FIELD(self, loop_fields._ready) &&
           !is_set(FIELD(self, loop_fields._closed)) && !is_set(FIELD(self, loop_fields._debug));
}

/* A TimerHandle at `when` (a new reference, consumed) for callback
 * args[1](*args[2:]), pushed on the heap, as asyncio's call_at does. */
static PyObject *schedule(PyObject *self, PyObject *when, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *cbargs = PyTuple_New(nargs - 2);
    if (!cbargs) {
        Py_DECREF(when);
        return NULL;
    }
    for (Py_ssize_t i = 2; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(cbargs, i - 2, args[i]);
    }
    PyObject *context = kwnames ? args[nargs] : Py_None;
    PyObject *timer = ul_handle_new(timer_type, args[1], cbargs, self, context);
    if (!timer) {
        Py_DECREF(when);
        return NULL;
    }
    FIELD(timer, timer_fields._when) = when;
    put_borrowed(timer, timer_fields._scheduled, Py_False);
    if (heap_push(FIELD(self, loop_fields._scheduled), timer) < 0) {
        Py_DECREF(timer);
        return NULL;
    }
    put_borrowed(timer, timer_fields._scheduled, Py_True);
    return timer;
}

static PyObject *call_slow(PyObject *method, PyObject *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **all = PyMem_Malloc((total + 1) * sizeof(PyObject *));
    if (!all)
        return PyErr_NoMemory();
    all[0] = self;
    memcpy(all + 1, args, total * sizeof(PyObject *));
    PyObject *r = PyObject_Vectorcall(method, all, nargs + 1, kwnames);
    PyMem_Free(all);
    return r;
}

static PyObject *loop_call_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    if (!timer_in_c(self, args, nargs, kwnames))
        return call_slow(slow_call_at, self, args, nargs, kwnames);
    Py_INCREF(args[0]);
    return schedule(self, args[0], args, nargs, kwnames);
}

/* call_at(self.time() + delay, ...): asyncio's call_later, which asks the
 * loop's time() (a test may have replaced it); a subclass of the loop,
 * which may have its own call_at, gets asyncio's. */
static PyObject *loop_call_later(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    if (!Py_IS_TYPE(self, loop_type) || !timer_in_c(self, args, nargs, kwnames))
        return call_slow(slow_call_later, self, args, nargs, kwnames);
    PyObject *now = PyObject_CallMethodNoArgs(self, str_time);
    if (!now)
        return NULL;
    PyObject *when = PyNumber_Add(now, args[0]);
    Py_DECREF(now);
    return when ? schedule(self, when, args, nargs, kwnames) : NULL;
}

/* ---- TimerHandle.cancel -------------------------------------------------- */

/* asyncio's TimerHandle.cancel() and Handle.cancel(), with the loop's
 * _timer_handle_cancelled() inline; debug mode keeps asyncio's (it keeps
 * the repr). */
static PyObject *timer_cancel(PyObject *self, PyObject *unused)
{
    if (is_set(FIELD(self, timer_fields._cancelled)))
        Py_RETURN_NONE;
    PyObject *loop = FIELD(self, timer_fields._loop);
    long count = loop && PyObject_TypeCheck(loop, loop_type)
                     ? get_long(loop, loop_fields._timer_cancelled_count) : -1;
    if (count < 0 || is_set(FIELD(loop, loop_fields._debug)))
        return PyObject_CallOneArg(slow_cancel, self);
    if (FIELD(self, timer_fields._scheduled) == Py_True &&
        put_long(loop, loop_fields._timer_cancelled_count, count + 1) < 0)
        return NULL;
    put_borrowed(self, timer_fields._cancelled, Py_True);
    put_borrowed(self, timer_fields._callback, Py_None);
    put_borrowed(self, timer_fields._args, Py_None);
    Py_RETURN_NONE;
}

/* ---- the loop iteration's timer steps ------------------------------------ */

/* Drop cancelled timers: all of them once they are most of the heap, else
 * those at its head, as asyncio's _run_once does. */
static PyObject *loop_purge_cancelled_timers(PyObject *self, PyObject *unused)
{
    PyObject *heap = FIELD(self, loop_fields._scheduled);
    long cancelled = get_long(self, loop_fields._timer_cancelled_count);
    if (!heap || !PyList_CheckExact(heap) || cancelled < 0) {
        PyErr_SetString(PyExc_TypeError, "the loop's timers are not asyncio's");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(heap);
    if (n > min_to_purge && (double)cancelled / n > max_cancelled_fraction) {
        PyObject *live = PyList_New(0);
        if (!live)
            return NULL;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(heap); i++) {
            PyObject *t = timer_at(heap, i);
            if (!t)
                goto failed;
            if (!is_set(FIELD(t, timer_fields._cancelled))) {
                if (PyList_Append(live, t) < 0)
                    goto failed;
            } else {
                put_borrowed(t, timer_fields._scheduled, Py_False);
            }
        }
        if (heapify(live) < 0)
            goto failed;
        put(self, loop_fields._scheduled, live);
        if (put_long(self, loop_fields._timer_cancelled_count, 0) < 0)
            return NULL;
        Py_RETURN_NONE;
    failed:
        Py_DECREF(live);
        return NULL;
    }
    while (PyList_GET_SIZE(heap)) {
        PyObject *head = timer_at(heap, 0);
        if (!head)
            return NULL;
        if (!is_set(FIELD(head, timer_fields._cancelled)))
            break;
        PyObject *t = heap_pop(heap);
        if (!t)
            return NULL;
        put_borrowed(t, timer_fields._scheduled, Py_False);
        Py_DECREF(t);
        if (put_long(self, loop_fields._timer_cancelled_count, --cancelled) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* Move the timers due by now plus the clock's resolution to the ready queue. */
static PyObject *loop_schedule_due_timers(PyObject *self, PyObject *unused)
{
    PyObject *heap = FIELD(self, loop_fields._scheduled), *ready = FIELD(self, loop_fields._ready),
             *resolution = FIELD(self, loop_fields._clock_resolution);
    if (!heap || !PyList_CheckExact(heap) || !ready || !resolution) {
        PyErr_SetString(PyExc_TypeError, "the loop's timers are not asyncio's");
        return NULL;
    }
    PyObject *now = PyObject_CallMethodNoArgs(self, str_time);
    PyObject *horizon = now ? PyNumber_Add(now, resolution) : NULL;
    Py_XDECREF(now);
    if (!horizon)
        return NULL;
    int rc = 0;
    Py_INCREF(heap);
    while (rc == 0 && PyList_GET_SIZE(heap)) {
        PyObject *head = timer_at(heap, 0), *when = head ? FIELD(head, timer_fields._when) : NULL;
        int due = !when ? -1
                  : PyFloat_CheckExact(when) && PyFloat_CheckExact(horizon)
                        ? PyFloat_AS_DOUBLE(when) < PyFloat_AS_DOUBLE(horizon)
                        : PyObject_RichCompareBool(when, horizon, Py_LT);
        if (due <= 0) {
            rc = due;
            break;
        }
        PyObject *t = heap_pop(heap);
        if (!t) {
            rc = -1;
            break;
        }
        put_borrowed(t, timer_fields._scheduled, Py_False);
        PyObject *r = call_method1(ready, str_append, t);
        Py_DECREF(t);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_DECREF(heap);
    Py_DECREF(horizon);
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "_when");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef loop_defs[] = {
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, METH_FASTCALL | METH_KEYWORDS,
     "Like call_later(), but uses an absolute time."},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called at a given time."},
    {"_purge_cancelled_timers", loop_purge_cancelled_timers, METH_NOARGS,
     "Drop cancelled timers from the heap."},
    {"_schedule_due_timers", loop_schedule_due_timers, METH_NOARGS,
     "Move the timers due now to the ready queue."},
    {NULL}};

static PyMethodDef cancel_def = {"cancel", timer_cancel, METH_NOARGS, "Cancel the call."};

/* ---- install_timers ------------------------------------------------------ */

/* install_timers(Loop, TimerHandle, BaseEventLoop, min_to_purge,
 * max_cancelled_fraction) */
static PyObject *install_timers(PyObject *module, PyObject *const *args, Py_ssize_t n)
{
    if (n != 5 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "install_timers(Loop, TimerHandle, BaseEventLoop, "
                                         "min_to_purge, max_cancelled_fraction)");
        return NULL;
    }
    PyObject *loop_cls = args[0], *tcls = args[1], *base_loop = args[2];
    PyObject *base = (PyObject *)((PyTypeObject *)tcls)->tp_base;
    if (((PyTypeObject *)tcls)->tp_basicsize != ((PyTypeObject *)base)->tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "TimerHandle must add no fields to asyncio's");
        return NULL;
    }
    min_to_purge = PyLong_AsSsize_t(args[3]);
    max_cancelled_fraction = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred() || FIND_FIELDS(base, timer_fields) < 0 ||
        FIND_FIELDS(loop_cls, loop_fields) < 0)
        return NULL;
    PyObject *call_at = PyObject_GetAttrString(base_loop, "call_at");
    PyObject *call_later = PyObject_GetAttrString(base_loop, "call_later");
    PyObject *cancel = PyObject_GetAttrString(base, "cancel");
    if (!call_at || !call_later || !cancel) {
        Py_XDECREF(call_at);
        Py_XDECREF(call_later);
        Py_XDECREF(cancel);
        return NULL;
    }
    Py_XSETREF(slow_call_at, call_at);
    Py_XSETREF(slow_call_later, call_later);
    Py_XSETREF(slow_cancel, cancel);
    if (set_method(tcls, &cancel_def) < 0)
        return NULL;
    for (PyMethodDef *d = loop_defs; d->ml_name; d++)
        if (set_method(loop_cls, d) < 0)
            return NULL;
    hold((PyObject **)&timer_type, tcls);
    hold((PyObject **)&asyncio_timer_type, base);
    hold((PyObject **)&loop_type, loop_cls);
    Py_RETURN_NONE;
}

static PyMethodDef defs[] = {
    {"install_timers", (PyCFunction)(void (*)(void))install_timers, METH_FASTCALL,
     "install_timers(Loop, TimerHandle, BaseEventLoop, min_to_purge,\n"
     "               max_cancelled_fraction): give the loop its C call_at,\n"
     "               call_later and timer steps, and TimerHandle its cancel()."},
    {NULL}};

int ul_timers_install(PyObject *dict)
{
    static const struct ul_name names[] = {{&str_time, "time"}, {&str_append, "append"}};
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0)
        return -1;
    return add_functions(dict, defs);
}
