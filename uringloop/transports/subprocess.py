"""Subprocess transports: asyncio's BaseSubprocessTransport (the protocol's
pipe callbacks, process_exited, the order of connection_lost, wait()),
with the child started by subprocess.Popen and its stdio pipes served by
this loop's pipe transports.  The child's exit is observed by the loop
(subprocesses.py), which calls _process_exited.
"""
import subprocess
from asyncio import base_subprocess


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        self._proc = subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout,
                                      stderr=stderr, universal_newlines=False, bufsize=bufsize,
                                      **kwargs)
