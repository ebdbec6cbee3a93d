"""The C load generator: its build on first use, its command line, its result.

The binary goes to benchmarks/.build/, named after a hash of the source and
the compiler command, so editing loadgen.c rebuilds it and nothing built is
ever committed (the directory ignores itself).

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
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        need = f", and its TLS build OpenSSL's headers: {TLS_PACKAGES}" if tls else ""
        raise BuildError(f"the load generator needs a C compiler (gcc or cc on PATH, or $CC){need}")
    command = [cc, *CFLAGS, *(TLS_CFLAGS if tls else [])]
    libs = TLS_LIBS if tls else []
    digest = hashlib.sha256(SOURCE.read_bytes() + repr(command + libs).encode()).hexdigest()[:16]
    prefix = "loadgen-tls-" if tls else "loadgen-"
    path = BUILD_DIR / f"{prefix}{digest}"
    if path.exists():
        return path
    BUILD_DIR.mkdir(exist_ok=True)
    (BUILD_DIR / ".gitignore").write_text("*\n")
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([*command, "-o", str(partial), str(SOURCE), *libs],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode:
        partial.unlink(missing_ok=True)
        if tls and ("openssl/" in proc.stderr or "-lssl" in proc.stderr
                    or "-lcrypto" in proc.stderr):
            raise BuildError(f"the TLS build of {SOURCE.name} needs OpenSSL's headers and "
                             f"libraries: install {TLS_PACKAGES}\n{proc.stderr.strip()}")
        raise BuildError(f"compiling {SOURCE.name}{' with TLS' if tls else ''} failed:\n"
                         f"{proc.stderr}")
    os.replace(partial, path)       # atomic: a concurrent run never sees half a binary
    # Older builds of the same variant go; the other variant stays.
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
