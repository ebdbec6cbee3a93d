/*
 * The loop's timers in C: call_at(), call_later(), TimerHandle.cancel(),
 * and the two timer steps of each loop iteration (dropping cancelled
 * timers, moving the due ones to the ready queue).
 *
 * The timers stay asyncio's: instances of asyncio.TimerHandle (a subclass
 * with no fields of its own), with asyncio's when(), repr() and ordering.
 * What C saves is the Python frames (TimerHandle.__init__ and its super(),
 * cancel() and the loop's _timer_handle_cancelled(), and above all
 * TimerHandle.__lt__, which heapq calls about 2 log2(n) times per pop) and
 * the pointer chasing of a heap of objects: the loop's _scheduled is a
 * TimerHeap (below) instead of asyncio's list.  Debug mode, a closed loop
 * and unusual arguments take Python: loop.py's _call_at (asyncio's
 * call_at for this heap), asyncio's call_later and TimerHandle.cancel.
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

/* ---- TimerHeap: heapq's algorithms over (when, timer) pairs ---------------- */

/* The loop's _scheduled: what asyncio keeps as a list of TimerHandles
 * ordered by heapq, kept here as an array of (when as a double, timer), so
 * that a comparison reads the array, not two TimerHandles and their
 * floats: 2 log2(n) of them per pop, which at 100,000 timers were cache
 * misses.  The sifts are heapq's, step for step, and compare as
 * TimerHandle.__lt__ does (_when < _when; an int deadline is taken as the
 * float it converts to), so timers with equal deadlines run in the very
 * order asyncio's list would give them.  It is a sequence (len, [i],
 * iteration, clear(), as asyncio's close() uses) of the timers in heap
 * order. */
struct entry {
    double when;
    PyObject *timer;
};

typedef struct {
    PyObject_HEAD
    struct entry *items;
    Py_ssize_t n, cap;
} TimerHeap;

static PyTypeObject TimerHeap_Type;

static void swap(struct entry *a, struct entry *b)
{
    struct entry t = *a;
    *a = *b;
    *b = t;
}

/* heapq's _siftdown: move the entry at pos up towards startpos. */
static void sift_down(TimerHeap *h, Py_ssize_t startpos, Py_ssize_t pos)
{
    while (pos > startpos) {
        Py_ssize_t parent = (pos - 1) >> 1;
        if (!(h->items[pos].when < h->items[parent].when))
            break;
        swap(&h->items[pos], &h->items[parent]);
        pos = parent;
    }
}

/* heapq's _siftup: the smaller child up to a leaf, then sift_down. */
static void sift_up(TimerHeap *h, Py_ssize_t pos)
{
    Py_ssize_t startpos = pos, limit = h->n >> 1;
    while (pos < limit) {
        Py_ssize_t child = 2 * pos + 1;
        if (child + 1 < h->n)
            child += !(h->items[child].when < h->items[child + 1].when);
        swap(&h->items[child], &h->items[pos]);
        pos = child;
    }
    sift_down(h, startpos, pos);
}

/* heapq.heappush; takes a new reference to timer. */
static int heap_push(TimerHeap *h, double when, PyObject *timer)
{
    if (h->n == h->cap) {
        Py_ssize_t cap = h->cap ? h->cap * 2 : 64;
        struct entry *items = PyMem_Realloc(h->items, cap * sizeof *items);
        if (!items) {
            PyErr_NoMemory();
            return -1;
        }
        h->items = items;
        h->cap = cap;
    }
    Py_INCREF(timer);
    h->items[h->n] = (struct entry){when, timer};
    sift_down(h, 0, h->n++);
    return 0;
}

/* heapq.heappop of a non-empty heap: the timer, a new reference. */
static PyObject *heap_pop(TimerHeap *h)
{
    struct entry last = h->items[--h->n];
    if (h->n == 0)
        return last.timer;
    PyObject *first = h->items[0].timer;
    h->items[0] = last;
    sift_up(h, 0);
    return first;
}

static void heapify(TimerHeap *h)
{
    for (Py_ssize_t i = h->n / 2 - 1; i >= 0; i--)
        sift_up(h, i);
}

/* A timer's deadline as the heap compares it. */
static int deadline(PyObject *timer, double *when)
{
    PyObject *w = FIELD(timer, timer_fields._when);
    if (!w) {
        PyErr_SetString(PyExc_AttributeError, "_when");
        return -1;
    }
    *when = PyFloat_CheckExact(w) ? PyFloat_AS_DOUBLE(w) : PyFloat_AsDouble(w);
    return *when == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* push(timer): heapq.heappush, for loop.py's debug-mode call_at. */
static PyObject *heap_py_push(PyObject *self, PyObject *timer)
{
    double when;
    if (!PyObject_TypeCheck(timer, asyncio_timer_type)) {
        PyErr_Format(PyExc_TypeError, "expected a TimerHandle, not %R", timer);
        return NULL;
    }
    if (deadline(timer, &when) < 0 || heap_push((TimerHeap *)self, when, timer) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *heap_clear(PyObject *self, PyObject *unused)
{
    TimerHeap *h = (TimerHeap *)self;
    /* Drop the references last: a timer's callback may hold anything. */
    struct entry *items = h->items;
    Py_ssize_t n = h->n;
    h->items = NULL;
    h->n = h->cap = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(items[i].timer);
    PyMem_Free(items);
    Py_RETURN_NONE;
}

static Py_ssize_t heap_len(PyObject *self)
{
    return ((TimerHeap *)self)->n;
}

static PyObject *heap_item(PyObject *self, Py_ssize_t i)
{
    TimerHeap *h = (TimerHeap *)self;
    if (i < 0 || i >= h->n) {
        PyErr_SetString(PyExc_IndexError, "timer heap index out of range");
        return NULL;
    }
    Py_INCREF(h->items[i].timer);
    return h->items[i].timer;
}

static PyObject *heap_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "TimerHeap() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static int heap_traverse(PyObject *self, visitproc visit, void *arg)
{
    TimerHeap *h = (TimerHeap *)self;
    for (Py_ssize_t i = 0; i < h->n; i++)
        Py_VISIT(h->items[i].timer);
    return 0;
}

static int heap_tp_clear(PyObject *self)
{
    Py_XDECREF(heap_clear(self, NULL));
    return 0;
}

static void heap_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    heap_tp_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PySequenceMethods heap_as_sequence = {
    .sq_length = heap_len,
    .sq_item = heap_item,
};

static PyMethodDef heap_methods[] = {
    {"push", heap_py_push, METH_O, "Add a TimerHandle, as heapq.heappush does."},
    {"clear", heap_clear, METH_NOARGS, "Drop every timer."},
    {NULL}};

static PyTypeObject TimerHeap_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uringloop._c.TimerHeap",
    .tp_doc = "The loop's scheduled timers, in heap order.",
    .tp_basicsize = sizeof(TimerHeap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = heap_new,
    .tp_dealloc = heap_dealloc,
    .tp_traverse = heap_traverse,
    .tp_clear = heap_tp_clear,
    .tp_as_sequence = &heap_as_sequence,
    .tp_methods = heap_methods,
};

/* The loop's heap, or NULL with TypeError. */
static TimerHeap *heap_of(PyObject *loop)
{
    PyObject *h = FIELD(loop, loop_fields._scheduled);
    if (h && Py_IS_TYPE(h, &TimerHeap_Type))
        return (TimerHeap *)h;
    PyErr_SetString(PyExc_TypeError, "the loop's _scheduled is not its TimerHeap");
    return NULL;
}

/* ---- call_at, call_later ------------------------------------------------ */

/* Whether call_at's or call_later's arguments are for the C path: a number
 * of time, a callback, no keyword but context=, an open loop not in debug
 * mode. */
static int timer_in_c(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    if (kwnames && (PyTuple_GET_SIZE(kwnames) != 1 ||
                    PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "context")))
        return 0;
    return nargs >= 2 && (PyFloat_CheckExact(args[0]) || PyLong_CheckExact(args[0])) &&
           FIELD(self, loop_fields._ready) && !is_set(FIELD(self, loop_fields._closed)) &&
           !is_set(FIELD(self, loop_fields._debug));
}

/* A TimerHandle at `when` (a new reference, consumed) for callback
 * args[1](*args[2:]), pushed on the heap, as asyncio's call_at does. */
static PyObject *schedule(PyObject *self, PyObject *when, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    TimerHeap *heap = heap_of(self);
    PyObject *cbargs = heap ? PyTuple_New(nargs - 2) : NULL;
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
    double at;
    if (deadline(timer, &at) < 0 || heap_push(heap, at, timer) < 0) {
        Py_DECREF(timer);
        return NULL;
    }
    put_borrowed(timer, timer_fields._scheduled, Py_True);
    return timer;
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

/* Drop every cancelled timer and heapify the rest, keeping their order.
 * The dropped ones are released last: releasing one may run Python code,
 * which may schedule a timer. */
static int purge_all(TimerHeap *h)
{
    PyObject **dropped = PyMem_Malloc(h->n * sizeof(PyObject *));
    if (!dropped) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t live = 0, gone = 0;
    for (Py_ssize_t i = 0; i < h->n; i++) {
        PyObject *t = h->items[i].timer;
        if (is_set(FIELD(t, timer_fields._cancelled))) {
            put_borrowed(t, timer_fields._scheduled, Py_False);
            dropped[gone++] = t;
        } else {
            h->items[live++] = h->items[i];
        }
    }
    h->n = live;
    heapify(h);
    for (Py_ssize_t i = 0; i < gone; i++)
        Py_DECREF(dropped[i]);
    PyMem_Free(dropped);
    return 0;
}

/* Drop cancelled timers: all of them once they are most of the heap, else
 * those at its head, as asyncio's _run_once does. */
static PyObject *loop_purge_cancelled_timers(PyObject *self, PyObject *unused)
{
    TimerHeap *h = heap_of(self);
    long cancelled = get_long(self, loop_fields._timer_cancelled_count);
    if (!h || cancelled < 0) {
        if (h)
            PyErr_SetString(PyExc_TypeError, "_timer_cancelled_count is not an int");
        return NULL;
    }
    if (h->n > min_to_purge && (double)cancelled / h->n > max_cancelled_fraction) {
        if (purge_all(h) < 0)
            return NULL;
        cancelled = 0;
    } else {
        while (h->n && is_set(FIELD(h->items[0].timer, timer_fields._cancelled))) {
            PyObject *t = heap_pop(h);
            put_borrowed(t, timer_fields._scheduled, Py_False);
            Py_DECREF(t);
            cancelled--;
        }
    }
    if (put_long(self, loop_fields._timer_cancelled_count, cancelled) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Move the timers due by now plus the clock's resolution to the ready
 * queue; the deadline of the first left, or None. */
static PyObject *loop_schedule_due_timers(PyObject *self, PyObject *unused)
{
    TimerHeap *h = heap_of(self);
    PyObject *ready = FIELD(self, loop_fields._ready),
             *resolution = FIELD(self, loop_fields._clock_resolution);
    if (!h)
        return NULL;
    if (!ready || !resolution) {
        PyErr_SetString(PyExc_AttributeError, "_ready");
        return NULL;
    }
    PyObject *now = PyObject_CallMethodNoArgs(self, str_time);
    PyObject *horizon = now ? PyNumber_Add(now, resolution) : NULL;
    Py_XDECREF(now);
    double until = horizon ? PyFloat_AsDouble(horizon) : -1.0;
    Py_XDECREF(horizon);
    if (until == -1.0 && PyErr_Occurred())
        return NULL;
    Py_INCREF(h);
    int rc = 0;
    while (rc == 0 && h->n && h->items[0].when < until) {
        PyObject *t = heap_pop(h);
        put_borrowed(t, timer_fields._scheduled, Py_False);
        PyObject *r = call_method1(ready, str_append, t);
        Py_DECREF(t);
        rc = r ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_DECREF(h);
    if (rc < 0)
        return NULL;
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
 * max_cancelled_fraction): Loop._call_at is asyncio's call_at for a
 * TimerHeap, what C leaves to Python. */
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
    PyObject *call_at = PyObject_GetAttrString(loop_cls, "_call_at");
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
    if (intern_names(names, sizeof(names) / sizeof(*names)) < 0 ||
        PyType_Ready(&TimerHeap_Type) < 0 ||
        PyDict_SetItemString(dict, "TimerHeap", (PyObject *)&TimerHeap_Type) < 0)
        return -1;
    return add_functions(dict, defs);
}
