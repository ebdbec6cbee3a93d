# cffi_modules is a setup() keyword with no pyproject.toml spelling; all
# other metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["uringloop/_build.py:ffibuilder"])
