/*
 * The op table: user_data -> op record, and the dispatch of completions.
 *
 * Every SQE's user_data is a slot of the loop's OpTable; the slot holds the
 * op record, which owns everything the kernel may touch for that operation
 * and is released only at its final CQE (one without F_MORE).
 *
 * Dispatch knows no kind of I/O.  Each kind registers its op record types
 * (ul_register_kind): an optional C fast path, and where the record keeps
 * the contextvars.Context its completion runs in.  A record of a type with
 * no fast path, or one its fast path declines, gets its Python
 * complete(res, flags), in that context.  A fast path that calls Python
 * code enters the context itself (ul_enter/ul_leave): one that calls none,
 * such as a send's, costs no context switch.
 */
#ifndef URINGLOOP_OPTABLE_H
#define URINGLOOP_OPTABLE_H

#include "pyobj.h"
#include "ring.h"

typedef struct {
    PyObject_HEAD
    PyObject **slots;          /* [0] reserved; NULL marks a free slot */
    uint32_t *free;            /* stack of free slot numbers */
    uint32_t used, cap, nfree;
    struct ul_ring *ring;      /* NULL once detached */
    PyObject *on_error;        /* on_error(op, exc): a handler raised */
    PyObject *check;           /* check(err): raise a ring error, or return to retry */
} OpTable;

/* A kind's fast path: 1 handled, 0 not this path's case (the record's
 * complete() runs), -1 failed with an exception set. */
typedef int (*ul_complete_fn)(OpTable *t, PyObject *op, int32_t res, uint32_t flags);

/* No context field: the completion runs in the loop's own context. */
#define UL_NO_CONTEXT (-1)

int ul_register_kind(PyTypeObject *type, ul_complete_fn complete, Py_ssize_t context_offset);

/* Enter `ctx` where it is a Context; what ul_leave() takes (None where
 * nothing was entered), or NULL with an exception set. */
PyObject *ul_enter(PyObject *ctx);
/* Leave what ul_enter() entered; returns rc, or -1 where leaving failed.
 * A negative rc's exception is kept. */
int ul_leave(PyObject *entered, int rc);
int ul_is_optable(PyObject *obj);

/* Store a new reference to op; its user_data, or 0 with MemoryError set. */
uint32_t ul_table_add(OpTable *t, PyObject *op);
/* Empty slot ud; the caller gets the table's reference to its op. */
PyObject *ul_table_take(OpTable *t, uint32_t ud);
/* A prep into slot ud failed with err: 0 to retry (the ring was started),
 * or -1 with the loop's exception set and the slot free again. */
int ul_prep_failed(OpTable *t, uint32_t ud, int err);
/* -1 with the loop's exception set when the table has no ring, else 0. */
int ul_need_ring(OpTable *t);

#endif
