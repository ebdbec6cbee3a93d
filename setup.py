# cffi_modules and the build_ext check are setup() keywords with no
# pyproject.toml spelling; all other metadata lives in pyproject.toml.
import os
import shlex
import shutil
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError

NEEDS = ("uringloop compiles its C core at install time and needs a C compiler (gcc) "
         "and the Python headers (python3-dev)")
HINT = "Debian, Ubuntu: apt-get install gcc python3-dev; Fedora: dnf install gcc python3-devel"


def missing():
    """What the build needs and this machine lacks, in words, or None."""
    # distutils compiles with $CC if set, else the CC Python was built with,
    # and includes INCLUDEPY.
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = (shlex.split(cc) or ["cc"])[0]
    if not shutil.which(compiler):
        origin = "$CC" if os.environ.get("CC") else "the compiler Python was built with"
        return f"the C compiler {compiler!r} ({origin}) was not found"
    include = sysconfig.get_config_var("INCLUDEPY") or sysconfig.get_path("include")
    if not sysconfig.is_python_build() and not os.path.isfile(os.path.join(include, "Python.h")):
        return f"Python.h was not found in {include}"
    return None


class BuildExt(build_ext):
    """Names what is missing before cffi's sources are compiled."""

    def run(self):
        what = missing()
        if what:
            raise CompileError(f"{NEEDS}: {what}. {HINT}")
        try:
            super().run()
        except CCompilerError as exc:
            raise CompileError(f"{NEEDS}; compiling it failed ({exc}). {HINT}") from exc


setup(cffi_modules=["uringloop/_build.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
