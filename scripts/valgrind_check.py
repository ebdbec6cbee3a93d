"""Reads valgrind's XML reports and fails on any error but one: CPython
3.11's own uninitialised int digit.

CPython 3.11's _PyLong_New leaves ob_digit[0] unset for a zero, and
maybe_small_long multiplies it by the size 0 (CPython gh-102509, fixed in
3.12, not backported).  Memcheck taints the small-int pointer that comes
out, and every later use of that pointer, anywhere, is reported: no stack
suppression can catch them all, so they are recognised by their origin,
which --track-origins=yes names: the allocation in _PyLong_New.

    python valgrind_check.py REPORT.xml...
"""
import re
import sys
import xml.etree.ElementTree as ET


def frames(stack):
    return [(f.findtext("fn") or f.findtext("obj") or "?", f.findtext("file"), f.findtext("line"))
            for f in stack.findall("frame")]


def cpython_int_digit(error):
    stacks = error.findall("stack")
    origin = frames(stacks[1])[:2] if len(stacks) > 1 else []
    return (error.findtext("kind", "").startswith("Uninit")
            and [fn for fn, _, _ in origin] == ["malloc", "_PyLong_New"])


def show(error):
    print(error.findtext("what") or error.findtext("xwhat/text"))
    aux = error.findall("auxwhat")
    for i, stack in enumerate(error.findall("stack")):
        if i:
            print(" ", aux[i - 1].text if i - 1 < len(aux) else "")
        for fn, file, line in frames(stack)[:20]:
            print(f"    {fn}" + (f" ({file}:{line})" if file else ""))


found = known = 0
for path in sys.argv[1:]:
    # Not parsed as one document: a forked child appends its own report to
    # its parent's file, and one that execs leaves it unfinished.
    text = open(path, encoding="utf-8", errors="replace").read()
    for block in re.findall(r"<error>.*?</error>", text, re.S):
        error = ET.fromstring(block)
        if error.findtext("kind").startswith("Leak_"):
            continue   # XML mode forces the leak check on; CPython keeps much alive at exit
        if cpython_int_digit(error):
            known += 1
        else:
            found += 1
            print(f"--- {path}")
            show(error)
print(f"valgrind: {found} error(s), {known} ignored (CPython 3.11's uninitialised int digit)")
sys.exit(1 if found else 0)
