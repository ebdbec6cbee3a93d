"""python -m uringloop info: what this kernel offers and what the loop uses."""
import argparse
import os
import sys

from .ring import CAPABILITIES, FEATURE_BITS, OPCODES, SETUP_FLAGS, Mask, UnsupportedError, probe

# The opcodes and features the loop relies on or takes a fast path with.
USED_OPCODES = ("poll_add", "async_cancel", "timeout", "recv", "send", "sendmsg", "accept")
USED_FEATURES = ("single_mmap", "nodrop", "ext_arg", "no_iowait")


def _mark(present, used):
    if not present:
        return "no"
    return "yes, used" if used else "yes"


def info(out=sys.stdout):
    release = os.uname().release
    print(f"kernel:    {release}", file=out)
    try:
        features = probe()
    except UnsupportedError as exc:
        print(f"io_uring:  unavailable\n  {exc.strerror}", file=out)
        return 1
    mask = Mask.from_env()
    print(f"io_uring:  usable ({features.tier} ring)", file=out)
    if mask.names:
        print(f"masked:    {', '.join(sorted(mask.names))} (URINGLOOP_DISABLE)", file=out)
    print("setup flags (accepted ones are all used):", file=out)
    for name in SETUP_FLAGS:
        state = "masked" if name in mask.names else "yes, used" if name in features.setup_flags else "-"
        print(f"  {name:16} {state}", file=out)
    print("features:", file=out)
    for name in FEATURE_BITS:
        print(f"  {name:16} {_mark(name in features.features, name in USED_FEATURES)}", file=out)
    print("opcodes:", file=out)
    for name in OPCODES:
        print(f"  {name:16} {_mark(name in features.opcodes, name in USED_OPCODES)}", file=out)
    print("capabilities:", file=out)
    for name in CAPABILITIES:
        print(f"  {name:16} {_mark(features.has(name), features.has(name))}", file=out)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m uringloop")
    parser.add_argument("command", choices=["info"], nargs="?", default="info")
    parser.parse_args(argv)
    return info()


if __name__ == "__main__":
    sys.exit(main())
