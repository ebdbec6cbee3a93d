"""The C load generator: its build on first use, its command line, its result.

The binary goes to benchmarks/.build/, named after a hash of the source and
the compiler command, so editing loadgen.c rebuilds it and nothing built is
ever committed (the directory ignores itself).  The echo rows' floor, the C
io_uring echo server benchmarks/floor_echo.c, is built the same way
(floor_binary()); its hash covers the headers it includes.

The TLS rows need a second build, with OpenSSL (-DLOADGEN_TLS, -lssl
-lcrypto): binary(tls=True).  Its headers come with libssl-dev (Debian,
Ubuntu) or openssl-devel (Fedora); without them only that build fails, with
a BuildError that says so, and the plain generator still builds.
"""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "loadgen.c"
FLOOR_SOURCE = HERE / "floor_echo.c"
FLOOR_HEADERS = [HERE.parent / "uringloop" / "_c" / "abi.h", HERE / "bench_ring.h"]
BUILD_DIR = HERE / ".build"
CFLAGS = ["-O2", "-Wall", "-Wextra"]
TLS_CFLAGS = ["-DLOADGEN_TLS"]
TLS_LIBS = ["-lssl", "-lcrypto"]
TLS_PACKAGES = "libssl-dev (Debian/Ubuntu: apt-get install libssl-dev) or openssl-devel (Fedora)"


class BuildError(RuntimeError):
    pass


def binary(tls=False):
    """Path of the compiled generator, building it if needed; with tls, the
    variant that speaks TLS (--tls), linked with OpenSSL."""
    if not tls:
        return build(SOURCE, "loadgen-")
    try:
        return build(SOURCE, "loadgen-tls-", TLS_CFLAGS, TLS_LIBS, what=f"{SOURCE.name} with TLS")
    except BuildError as exc:
        if any(word in str(exc) for word in ("openssl/", "-lssl", "-lcrypto")):
            raise BuildError(f"the TLS build of {SOURCE.name} needs OpenSSL's headers and "
                             f"libraries: install {TLS_PACKAGES}\n{exc}") from None
        raise


def floor_binary():
    """Path of the compiled floor server (floor_echo.c), building it if needed."""
    return build(FLOOR_SOURCE, "floor-echo-", headers=FLOOR_HEADERS)


def build(source, prefix, flags=(), libs=(), headers=(), what=None):
    """benchmarks/.build/<prefix><hash>, compiled from `source` unless there
    already; the hash covers the source, the headers it includes from this
    repository and the compiler command.  `what` names the build in errors."""
    what = what or source.name
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError(f"{what} needs a C compiler (gcc or cc on PATH, or $CC)")
    command = [cc, *CFLAGS, *flags]
    blob = source.read_bytes() + b"".join(h.read_bytes() for h in headers)
    digest = hashlib.sha256(blob + repr(command + list(libs)).encode()).hexdigest()[:16]
    path = BUILD_DIR / f"{prefix}{digest}"
    if path.exists():
        return path
    BUILD_DIR.mkdir(exist_ok=True)
    (BUILD_DIR / ".gitignore").write_text("*\n")
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([*command, "-o", str(partial), str(source), *libs],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode:
        partial.unlink(missing_ok=True)
        raise BuildError(f"compiling {what} failed:\n{proc.stderr}")
    os.replace(partial, path)       # atomic: a concurrent run never sees half a binary
    # Older builds of the same program go; the others stay.
    same = re.compile(re.escape(prefix) + r"[0-9a-f]{16}")
    for stale in BUILD_DIR.glob(f"{prefix}*"):
        if stale != path and same.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    return path


def command(mode, port, connections, size, warmup, duration, stall_timeout, expect_body=None,
            tls=False, udp=False):
    args = [str(binary(tls)), "--mode", mode, "--port", str(port), "--conns", str(connections),
            "--size", str(size), "--warmup", str(warmup), "--duration", str(duration),
            "--timeout", str(stall_timeout)]
    if expect_body is not None:
        args += ["--expect-body", expect_body]
    if tls:
        args.append("--tls")
    if udp:
        args.append("--udp")
    return args


def parse_result(line):
    """'RESULT key=value ...' -> {key: float}."""
    fields = line.split()
    if not fields or fields[0] != "RESULT":
        raise ValueError(f"not a RESULT line: {line!r}")
    return {k: float(v) for k, v in (f.split("=", 1) for f in fields[1:])}
