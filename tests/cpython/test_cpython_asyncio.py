"""CPython's own asyncio tests (the `test.test_asyncio` package installed
with every Python), run on uringloop.

Loop-level test classes (the ones CPython runs on its epoll selector loop)
are subclassed here with their loop factory replaced; the policy-driven
modules run as they are, with the loop kind's policy installed by
conftest.py.  Tests that cannot pass yet are listed, each with its reason,
in expected_failures.py; conftest.py marks them strict xfail, so a test
that starts passing must leave the list.

CPYTHON_SUITE_LOOP=asyncio|uvloop runs the same selection on asyncio's
own loop or on uvloop, for comparison (the list applies to uringloop only).
"""
import importlib
import unittest
from unittest import mock

import pytest
from test.test_asyncio import test_events
from test.test_asyncio import utils as test_utils

from . import expected_failures
from .suite_loops import make_loop

# Run at CPython's own warning settings: some tests provoke ResourceWarnings
# on purpose, which this project's pytest settings would turn into errors.
pytestmark = pytest.mark.filterwarnings("default")

# module -> the classes of it whose loop is replaced by the one under test.
LOOP_LEVEL = {
    "test_events": ["EPollEventLoopTests"],
    "test_sock_lowlevel": ["EPollEventLoopTests"],
    "test_server": ["SelectorStartServerTests"],
    "test_buffered_proto": ["BufferedProtocolSelectorTests"],
    "test_sendfile": ["EPollEventLoopTests"],
    "test_sslproto": ["SslProtoHandshakeTests", "SelectorStartTLSTests"],
    "test_ssl": ["TestSSL"],
    "test_streams": ["StreamTests"],
    "test_subprocess": ["SubprocessThreadedWatcherTests"],
    "test_unix_events": ["SelectorEventLoopUnixSocketTests",
                         "SelectorEventLoopUnixSockSendfileTests", "TestFunctional"],
}

# Modules whose every test class runs with the policy installed: their loops
# come from asyncio.new_event_loop(), asyncio.run() or IsolatedAsyncioTestCase.
POLICY_DRIVEN = ("test_tasks", "test_futures", "test_futures2", "test_locks", "test_queues",
                 "test_taskgroups", "test_timeouts", "test_waitfor", "test_threads",
                 "test_context", "test_runners", "test_pep492")


def _new_loop(self):
    return make_loop()


def _events_setUp(self):
    test_events.EventLoopTestsMixin.setUp(self)


def _events_tearDown(self):
    test_events.EventLoopTestsMixin.tearDown(self)


def _subprocess_setUp(self):
    test_utils.TestCase.setUp(self)
    self.loop = make_loop()
    self.set_event_loop(self.loop)


def _subprocess_tearDown(self):
    test_utils.TestCase.tearDown(self)


# The selector loop's classes attach a child watcher to their loop in setUp
# (3.11's machinery for reaping the selector loop's children; uvloop and
# uringloop reap their own, and 3.14 has no watchers): these set up the
# loop alone, as the mixin beneath does.
WITHOUT_CHILD_WATCHER = {
    "test_events": {"setUp": _events_setUp, "tearDown": _events_tearDown},
    "test_subprocess": {"setUp": _subprocess_setUp, "tearDown": _subprocess_tearDown},
}


def _loop_level(module_name, cls):
    def setUp(self):
        # Some classes build asyncio.SelectorEventLoop() in setUp itself.
        with mock.patch("asyncio.SelectorEventLoop", make_loop):
            cls.setUp(self)

    body = {"setUp": setUp, "create_event_loop": _new_loop, "new_loop": _new_loop}
    return {**body, **WITHOUT_CHILD_WATCHER.get(module_name, {})}


def _test_classes(module):
    for name, obj in vars(module).items():
        if (isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                and obj.__module__ == module.__name__):
            yield name, obj


def _add(module_name, name, cls, body):
    short = module_name.removeprefix("test_")
    alias = f"{short}_{name}"
    globals()[alias] = type(alias, (cls,), {"cpython_id": f"{module_name}.{name}", **body})


for _module_name in POLICY_DRIVEN:
    _module = importlib.import_module(f"test.test_asyncio.{_module_name}")
    for _name, _cls in _test_classes(_module):
        _add(_module_name, _name, _cls, {})

for _module_name, _names in LOOP_LEVEL.items():
    _module = importlib.import_module(f"test.test_asyncio.{_module_name}")
    for _name in _names:
        _cls = getattr(_module, _name)
        _add(_module_name, _name, _cls, _loop_level(_module_name, _cls))

# pytest collects every TestCase in the namespace, whatever its name.
del _module_name, _module, _name, _names, _cls


def test_every_expected_failure_names_a_test():
    """An entry whose test was renamed or removed would never be checked."""
    loader = unittest.TestLoader()
    ids = {f"{cls.cpython_id}.{name}"
           for cls in globals().values() if hasattr(cls, "cpython_id")
           for name in loader.getTestCaseNames(cls)}
    assert sorted(set(expected_failures.EXPECTED) - ids) == []
