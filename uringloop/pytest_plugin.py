"""Run pytest-asyncio's tests and async fixtures on uringloop loops.

Opt in with one line, on the command line or in the project's config:

    pytest -p uringloop.pytest_plugin

    # pyproject.toml
    [tool.pytest.ini_options]
    addopts = "-p uringloop.pytest_plugin"

Every loop pytest-asyncio makes is then a uringloop.Loop, whatever the
loop scope (function, class, module, package, session) and in strict and
auto mode alike; test names do not change.  Installing uringloop registers
no plugin: only a project that names this module gets it.

pytest-asyncio 1.4 and later take their loops from the
pytest_asyncio_loop_factories hook, which this module implements (no
event loop policy, so nothing that Python 3.14 deprecates).  A project's
own implementation of that hook, in a conftest.py, comes first: this
module's answer is the last one asked for.  Older pytest-asyncio releases
(0.23 to 1.3) take their loops from the event loop policy in force (their
event_loop_policy fixture returns it): with those, this module sets
uringloop.Policy() for the run, so asyncio.new_event_loop() and
asyncio.run() outside pytest-asyncio give uringloop loops too.
"""
import asyncio
import warnings
from collections.abc import Callable
from importlib.metadata import version

import pytest

import uringloop


def _release(distribution: str) -> tuple[int, ...]:
    """(major, minor) of an installed distribution."""
    return tuple(int(part) for part in version(distribution).split(".")[:2])


# pytest-asyncio 1.4 added the hook and deprecated the fixture.
if _release("pytest-asyncio") >= (1, 4):
    @pytest.hookimpl(trylast=True)
    def pytest_asyncio_loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        # One name, so pytest-asyncio keeps the test ids as they were; a
        # test can still select it: @pytest.mark.asyncio(loop_factories=["uringloop"]).
        return {"uringloop": uringloop.new_event_loop}
else:
    def pytest_configure(config: pytest.Config) -> None:
        # Not an event_loop_policy fixture: -p registers this module before
        # pytest-asyncio, whose own fixture would then take precedence.
        replaced = _swap_policy(uringloop.Policy())

        def restore() -> None:
            _swap_policy(replaced)
        config.add_cleanup(restore)

    def _swap_policy(policy: asyncio.AbstractEventLoopPolicy) -> asyncio.AbstractEventLoopPolicy:
        """Set the event loop policy; the one it replaces.  Python 3.14
        deprecates policies, which these releases have no way around."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            replaced = asyncio.get_event_loop_policy()
            asyncio.set_event_loop_policy(policy)
        return replaced
