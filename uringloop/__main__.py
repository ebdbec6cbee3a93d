"""python -m uringloop info: what this kernel offers and what the loop uses."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .capabilities import probe_capabilities
from .ring import (CAPABILITIES, FEATURE_BITS, OPCODES, SETUP_FLAGS, USED_OPCODES, Mask,
                   UnsupportedError, probe)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

# The params->features bits the core takes a code path on.
USED_FEATURES = ("single_mmap", "ext_arg", "no_iowait", "recvsend_bundle")


def _mark(present: bool, used: bool, masked: bool = False) -> str:
    if masked:
        return "masked"
    if not present:
        return "no"
    return "yes, used" if used else "yes"


def info(out: TextIO = sys.stdout) -> int:
    print(f"kernel:    {os.uname().release}", file=out)
    try:
        features = probe()
    except UnsupportedError as exc:
        print(f"io_uring:  unavailable\n  {exc.strerror}", file=out)
        return 1
    mask = Mask.from_env()
    print(f"io_uring:  usable ({features.tier} ring)", file=out)
    if mask.names:
        print(f"masked:    {', '.join(sorted(mask.names))} (URINGLOOP_DISABLE)", file=out)
    print("setup flags (the kernel's answer to io_uring_setup; those it takes are all used):",
          file=out)
    for name in SETUP_FLAGS:
        print(f"  {name:16} {_mark(name in features.setup_flags, True, name in mask.names)}",
              file=out)
    print("features (io_uring_params.features, as the kernel reports them):", file=out)
    for name in FEATURE_BITS:
        print(f"  {name:16} {_mark(name in features.features, name in USED_FEATURES)}", file=out)
    print("opcodes (IORING_REGISTER_PROBE):", file=out)
    used = USED_OPCODES - ({"timeout"} if features.has("ext_arg") else set())
    for name in OPCODES:
        print(f"  {name:16} {_mark(name in features.opcodes, name in used)}", file=out)
    print("capabilities (each tried on a throwaway ring; the loop assumes them and falls back\n"
          "where the kernel answers EINVAL):", file=out)
    has = probe_capabilities(mask)
    for name in CAPABILITIES:
        print(f"  {name:16} {_mark(has[name], True, name in mask.names)}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uringloop")
    parser.add_argument("command", choices=["info"], nargs="?", default="info")
    parser.parse_args(argv)
    return info()


if __name__ == "__main__":
    sys.exit(main())
