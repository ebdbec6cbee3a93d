"""Op records: what each in-flight io_uring operation belongs to.

Every SQE's user_data is the index of a slot in an OpTable.  The slot holds
the op record, which owns everything the kernel may touch for that
operation (buffers, addresses) and whose ``complete(res, flags)`` the loop
calls for each of its CQEs.  A slot is released only at the op's final CQE
(one without IORING_CQE_F_MORE), so nothing the kernel may still write to is
freed or reused before then, whatever happens to the objects that started
it.  user_data 0 is reserved for requests whose completions the core drops.
"""


class OpTable:
    """Slots indexed by user_data, reused through a free list."""

    __slots__ = ("slots", "free")

    def __init__(self):
        self.slots = [None]          # slot 0: reserved
        self.free = []

    def add(self, op):
        """Store `op`; returns its user_data."""
        free = self.free
        if free:
            ud = free.pop()
            self.slots[ud] = op
            return ud
        self.slots.append(op)
        return len(self.slots) - 1

    def release(self, ud):
        self.slots[ud] = None
        self.free.append(ud)

    def __len__(self):
        """Ops in flight."""
        return len(self.slots) - 1 - len(self.free)

    def records(self):
        return [op for op in self.slots if op is not None]


# Op records that were still in flight when their ring had to be closed
# without draining them (a loop closed from a thread that may not reap).
# The kernel cancels them as the ring is torn down, at a moment this process
# cannot observe, so their memory is kept for the life of the process.
GRAVEYARD = []
