"""The C load generator: its build on first use, its command line, its result.

The binary goes to benchmarks/.build/, named after a hash of the source and
the compiler command, so editing loadgen.c rebuilds it and nothing built is
ever committed (the directory ignores itself).
"""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loadgen.c"
BUILD_DIR = HERE / ".build"
CFLAGS = ["-O2", "-Wall", "-Wextra"]


class BuildError(RuntimeError):
    pass


def binary():
    """Path of the compiled generator, building it if needed."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError("the load generator needs a C compiler (gcc or cc on PATH, or $CC)")
    command = [cc, *CFLAGS]
    digest = hashlib.sha256(SOURCE.read_bytes() + repr(command).encode()).hexdigest()[:16]
    path = BUILD_DIR / f"loadgen-{digest}"
    if path.exists():
        return path
    BUILD_DIR.mkdir(exist_ok=True)
    (BUILD_DIR / ".gitignore").write_text("*\n")
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([*command, "-o", str(partial), str(SOURCE)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode:
        partial.unlink(missing_ok=True)
        raise BuildError(f"compiling {SOURCE.name} failed:\n{proc.stderr}")
    os.replace(partial, path)       # atomic: a concurrent run never sees half a binary
    for stale in BUILD_DIR.glob("loadgen-*"):
        if stale != path and not stale.name.endswith(".tmp"):
            stale.unlink(missing_ok=True)
    return path


def command(mode, port, connections, size, warmup, duration, stall_timeout, expect_body=None):
    args = [str(binary()), "--mode", mode, "--port", str(port), "--conns", str(connections),
            "--size", str(size), "--warmup", str(warmup), "--duration", str(duration),
            "--timeout", str(stall_timeout)]
    if expect_body is not None:
        args += ["--expect-body", expect_body]
    return args


def parse_result(line):
    """'RESULT key=value ...' -> {key: float}."""
    fields = line.split()
    if not fields or fields[0] != "RESULT":
        raise ValueError(f"not a RESULT line: {line!r}")
    return {k: float(v) for k, v in (f.split("=", 1) for f in fields[1:])}
