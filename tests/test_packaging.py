"""Packaging: the sdist and wheel `python -m build` makes from a copy of the
tree, the sdist installed into a fresh venv and run there, and the message an
install ends with where the C compiler or the Python headers are missing.

Slow (two compiles and a fresh venv: about 25 s here): marker `packaging`,
left out with `-m "not packaging"`.  Needs the `build` package (test extras)
and pip's index (the build's setuptools and cffi).
"""
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import tomllib
import zipfile

import pytest

import uringloop

pytestmark = pytest.mark.packaging

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSION = uringloop.__version__
NEEDS = ("uringloop compiles its C core at install time and needs a C compiler (gcc) "
         "and the Python headers (python3-dev)")
# Not part of the tree: VCS, venvs, build products (the compiled module
# above all: setuptools must read the version without importing uringloop),
# caches.
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "results", "*.egg-info",
                                "__pycache__", ".mypy_cache", ".pytest_cache", "*.so", "*.o")
C_FILES = sorted(f"uringloop/_c/{p.name}" for p in (ROOT / "uringloop/_c").glob("*.[ch]"))
# The package's modules, stubs and py.typed (where the tree has them).
PACKAGE_FILES = sorted(str(p.relative_to(ROOT)) for pattern in ("*.py", "*.pyi", "py.typed")
                       for p in (ROOT / "uringloop").rglob(pattern))


def environ(**changes):
    """os.environ without PYTHONPATH (the tree's modules must not leak in), with changes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # pip draws its report with rich, which may wrap at the terminal's width.
    env["COLUMNS"] = "1000"
    return env | changes


def run(cmd, env=None, cwd=None):
    """Runs cmd; its stdout and stderr as one."""
    done = subprocess.run([str(c) for c in cmd], env=env or environ(), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist, and the wheel built from the sdist (as `python -m build` does)."""
    tmp = tmp_path_factory.mktemp("dists")
    shutil.copytree(ROOT, tmp / "src", ignore=IGNORE)
    rc, out = run([sys.executable, "-m", "build", "--outdir", tmp / "dist", tmp / "src"], cwd=tmp)
    assert rc == 0, out
    return tmp / "dist" / f"uringloop-{VERSION}.tar.gz", next((tmp / "dist").glob("*.whl"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv of the running Python; its python."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    rc, out = run([sys.executable, "-m", "venv", path])
    assert rc == 0, out
    return path / "bin" / "python"


def test_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "uringloop.__version__"}
    assert importlib.metadata.version("uringloop") == VERSION, "reinstall: pip install -e ."


def test_sdist_contents(dists):
    sdist, _ = dists
    prefix = f"uringloop-{VERSION}/"
    with tarfile.open(sdist) as tar:
        names = {m.name.removeprefix(prefix) for m in tar.getmembers()}
        pkg_info = tar.extractfile(prefix + "PKG-INFO").read().decode()
    needed = {"LICENSE", "README.md", "CHANGELOG.md", "setup.py", "pyproject.toml",
              "MANIFEST.in", "tests/conftest.py", "tests/test_packaging.py",
              *C_FILES, *PACKAGE_FILES}
    assert needed <= names, sorted(needed - names)
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc")) or "_uring.c" in n]
    assert f"Version: {VERSION}\n" in pkg_info
    assert "License-Expression: MIT\n" in pkg_info and "License-File: LICENSE\n" in pkg_info


def test_wheel_contents(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"uringloop-{VERSION}.dist-info/METADATA").decode()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"uringloop-{VERSION}-{tag}-{tag}-linux_"), wheel.name
    needed = {f"uringloop-{VERSION}.dist-info/licenses/LICENSE", *PACKAGE_FILES}
    assert needed <= names, sorted(needed - names)
    assert [n for n in names if re.fullmatch(rf"uringloop/_uring\.cpython-{tag[2:]}-.*\.so", n)]
    assert not [n for n in names if n.startswith("tests/")]
    assert f"Version: {VERSION}\n" in metadata and "License-Expression: MIT\n" in metadata


SMOKE = textwrap.dedent("""
    import asyncio, importlib.metadata, socket, sys
    import uringloop

    assert uringloop.__file__.startswith(sys.prefix), uringloop.__file__
    assert importlib.metadata.version("uringloop") == uringloop.__version__

    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, uringloop.Loop), loop
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)

        async def echo():
            while data := await loop.sock_recv(theirs, 65536):
                await loop.sock_sendall(theirs, data)
            theirs.close()

        task = asyncio.create_task(echo())
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(b"ping" * 10000)
        await writer.drain()
        got = await reader.readexactly(40000)
        writer.close()
        await writer.wait_closed()
        await task
        await asyncio.sleep(0.01)
        return got == b"ping" * 10000

    print("echo", uringloop.run(main()))
""")


def test_sdist_installs_and_runs(dists, venv, tmp_path):
    sdist, _ = dists
    # No wheel cache: a cached build of this sdist would hide the failures below.
    rc, out = run([venv, "-m", "pip", "install", "--no-cache-dir", sdist], cwd=tmp_path)
    assert rc == 0, out
    rc, out = run([venv, "-m", "uringloop", "info"], cwd=tmp_path)
    assert rc == 0 and "io_uring:  usable" in out, out
    rc, out = run([venv, "-c", SMOKE], cwd=tmp_path)
    assert rc == 0 and out.strip() == "echo True", out


def install_fails(venv, sdist, cwd, env, *options):
    rc, out = run([venv, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                   "--force-reinstall", *options, sdist], env=env, cwd=cwd)
    assert rc != 0, out
    return out


@pytest.mark.parametrize("hide", ["CC", "PATH"])
def test_no_compiler(dists, venv, tmp_path, hide):
    sdist, _ = dists
    if hide == "CC":        # setuptools compiles with $CC where it is set
        env, missing = environ(CC="/nonexistent/cc"), "'/nonexistent/cc' ($CC)"
    else:                   # the compiler Python was built with, not on PATH
        cc = sysconfig.get_config_var("CC").split()[0]
        if os.path.isabs(cc):
            pytest.skip(f"this Python's CC is a path ({cc}), found whatever PATH is")
        env = environ(PATH=str(tmp_path))
        env.pop("CC", None)
        missing = f"{cc!r} (the compiler Python was built with)"
    out = install_fails(venv, sdist, tmp_path, env)
    assert f"{NEEDS}: the C compiler {missing} was not found" in out, out


def test_no_python_headers(dists, venv, tmp_path):
    # The headers' directory is sysconfig's INCLUDEPY: a copy of the build
    # configuration points it elsewhere.  Without build isolation (pip would
    # replace PYTHONPATH), so setuptools and cffi go into the venv first.
    sdist, _ = dists
    rc, out = run([venv, "-m", "pip", "install", "setuptools>=77", "cffi>=1.16"], cwd=tmp_path)
    assert rc == 0, out
    rc, real = run([venv, "-c", "import sysconfig; print(sysconfig._get_sysconfigdata_name())"])
    assert rc == 0, real
    (tmp_path / "_sysconfigdata_noheaders.py").write_text(
        "import importlib\n"
        f"build_time_vars = dict(importlib.import_module({real.strip()!r}).build_time_vars,\n"
        "                       INCLUDEPY='/nonexistent/include')\n")
    env = environ(_PYTHON_SYSCONFIGDATA_NAME="_sysconfigdata_noheaders", PYTHONPATH=str(tmp_path))
    out = install_fails(venv, sdist, tmp_path, env, "--no-build-isolation")
    assert f"{NEEDS}: Python.h was not found in /nonexistent/include" in out, out
