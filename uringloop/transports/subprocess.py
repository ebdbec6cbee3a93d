"""Subprocess transports: asyncio's BaseSubprocessTransport (the protocol's
pipe callbacks, process_exited, the order of connection_lost, wait()),
with the child started by subprocess.Popen and its stdio pipes served by
this loop's pipe transports.  The child's exit is observed by the loop
(subprocesses.py), which calls _process_exited.
"""
from __future__ import annotations

import subprocess
from asyncio import base_subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import IO, Any, TypeAlias

    # what Popen takes for stdin, stdout and stderr (as base_subprocess's stub)
    _File: TypeAlias = int | IO[Any] | None


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):

    if TYPE_CHECKING:
        # the child is started by __init__, so it has a pid
        def get_pid(self) -> int: ...

    def _start(self, args: str | bytes | Sequence[str | bytes], shell: bool, stdin: _File,
               stdout: _File, stderr: _File, bufsize: int, **kwargs: Any) -> None:
        self._proc = subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout,
                                      stderr=stderr, universal_newlines=False, bufsize=bufsize,
                                      **kwargs)
