"""The CPython objects of uringloop's C code (see module.c for the map).

    OpTable(ring_address, on_error, check)   op records by user_data; run()
    register_kind(cls)                       completions of cls run in its `context`
    install_future_op(cls), poll_future(...) ops whose only consumer is a future (and
                                             its subclasses: the file requests')
    install_stream(...)                      the stream transport's fast paths
    recv_nowait, send_nowait                 the sock_* methods' tries
    pread_nowait, open_cached                the files' page- and dentry-cache tries
    install_loop(...)                        call_soon, ready queue, Handle._run
"""
from .._uring import lib

if lib.ul_install(id(globals())) != 0:
    raise ImportError("uringloop: the C code could not be set up (see the error above)")
