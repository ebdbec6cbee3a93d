"""Runs CPython's asyncio tests with the policy of the loop under test
installed, each test under its own timeout, and marks the reviewed
expected failures (uringloop only) as strict xfail."""
import asyncio
import gc
import os

import pytest

from . import expected_failures
from .suite_loops import KIND, POLICY

# A hang costs this much and no more: SIGALRM interrupts the loop's wait
# (io_uring_enter returns EINTR) and the rest of the suite goes on.
TEST_TIMEOUT = 30


@pytest.fixture(autouse=True, scope="module")
def private_cwd(tmp_path_factory):
    """The suite runs in a directory of its own, as regrtest runs it (and
    only the suite: other modules may rely on the current directory): some
    test classes make a file named after os_helper.TESTFN in the current
    directory for all their tests, which would otherwise come and go in the
    source tree while test_packaging copies it."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cpython-cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def loop_policy():
    asyncio.set_event_loop_policy(POLICY())
    yield
    asyncio.set_event_loop_policy(None)
    # What a failed test left behind is collected (and warned about) now,
    # not inside the next test, which may count ResourceWarnings.
    gc.collect()


def pytest_collection_modifyitems(items):
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is None or not hasattr(cls, "cpython_id"):
            continue
        item.add_marker(pytest.mark.timeout(TEST_TIMEOUT, method="signal"))
        if KIND != "uringloop":
            continue
        reason = expected_failures.EXPECTED.get(f"{cls.cpython_id}.{item.name}")
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=str(reason), strict=True,
                                              run=not reason.hangs))
