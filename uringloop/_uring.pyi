# The cffi-built extension module (uringloop/_build.py makes it).  cffi
# generates no stubs: `lib` holds the C functions and UL_* constants of the
# cdef, `ffi` makes and converts C data, and both are typed only at run
# time.  Any is the honest type at this boundary; the Python wrappers
# around it (ring.py, fileops.py...) carry the real types.
from typing import Any

ffi: Any
lib: Any
