"""Op records: what each in-flight io_uring operation belongs to.

Every SQE's user_data is the index of a slot in the loop's OpTable.  The
slot holds the op record, which owns everything the kernel may touch for
that operation (buffers, addresses) and whose ``complete(res, flags)`` the
loop calls for each of its CQEs.  A slot is released only at the op's final
CQE (one without IORING_CQE_F_MORE), so nothing the kernel may still write
to is freed or reused before then, whatever happens to the objects that
started it.  user_data 0 is reserved for requests whose completions the core
drops.

OpTable is C (_hot.c), as is its run(): the wait, and the dispatch of every
completion to its record, happen without leaving C.  install_stream() gives
the stream transport C fast paths over the same records; install_loop()
gives the loop C call_soon, ready queue and Handle (_callbacks.c).
"""
from ._uring import lib

if lib.ul_hot_install(id(globals())) != 0:
    raise ImportError("uringloop: the C hot path could not be set up (see the error above)")

OpTable = globals()["OpTable"]
install_stream = globals()["install_stream"]
install_loop = globals()["install_loop"]
BufferedRecv = globals()["BufferedRecv"]
recv_nowait = globals()["recv_nowait"]
send_nowait = globals()["send_nowait"]

# Op records that were still in flight when their ring had to be closed
# without draining them (a loop closed from a thread that may not reap).
# The kernel cancels them as the ring is torn down, at a moment this process
# cannot observe, so their memory is kept for the life of the process.
GRAVEYARD = []
