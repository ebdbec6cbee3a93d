"""uringloop: an asyncio event loop for Linux driven by io_uring.

    import uringloop
    uringloop.run(main())                       # or
    asyncio.run(main(), loop_factory=uringloop.new_event_loop)   # or
    asyncio.set_event_loop_policy(uringloop.Policy())

    async with uringloop.open("data.bin", "rb") as f:   # files through the ring
        data = await f.read()
    await uringloop.os.remove("data.bin")
"""
from . import os        # aiofiles.os's functions (uringloop.os.stat, ...)
from .loop import Loop
from .opener import open, read_bytes, read_text, write_bytes, write_text
from .policy import EventLoopPolicy, Policy, install, new_event_loop, run
from .ring import Features, UnsupportedError, probe

__all__ = ["EventLoopPolicy", "Features", "Loop", "Policy", "UnsupportedError", "install",
           "new_event_loop", "open", "os", "probe", "read_bytes", "read_text", "run",
           "write_bytes", "write_text"]
__version__ = "0.1.0"  # a literal: pyproject.toml's version, read without importing
