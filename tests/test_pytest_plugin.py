"""uringloop.pytest_plugin: pytest-asyncio's tests run on uringloop loops.

Each test here runs pytest on small sample files in a subprocess and reads
the outcome.  The samples assert the type of the loop they run on (the one
SAMPLE_LOOP names), so "passed=N" is the proof; their I/O (a server and a
client, a sleep, a subprocess) must pass on asyncio's loop and on
uringloop's alike.
"""
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

PLUGIN = ("-p", "uringloop.pytest_plugin")

# Every warning is an error, so a run that passes is also a run that warns
# of nothing (an unclosed loop, a deprecated fixture override).
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

HEADER = """
import asyncio
import os

import pytest
import pytest_asyncio

import uringloop

LOOP_TYPE = {"uringloop": uringloop.Loop,
             "asyncio": asyncio.SelectorEventLoop}[os.environ["SAMPLE_LOOP"]]
"""

# Function-scoped loops (pytest-asyncio's default), in strict mode.
FUNCTION_SCOPE = HEADER + """

@pytest_asyncio.fixture
async def echo_server():
    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_loop_type():
    assert type(asyncio.get_running_loop()) is LOOP_TYPE


@pytest.mark.asyncio
async def test_echo(echo_server):
    assert echo_server.get_loop() is asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*echo_server.sockets[0].getsockname())
    writer.write(b"ping\\n")
    assert await reader.readline() == b"ping\\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
async def test_sleep_and_subprocess():
    await asyncio.sleep(0.01)
    proc = await asyncio.create_subprocess_exec("echo", "hi", stdout=asyncio.subprocess.PIPE)
    assert await proc.communicate() == (b"hi\\n", None)
    assert proc.returncode == 0
"""

# A loop shared by a module's tests and a module-scoped async fixture, and
# one test on the session's loop.
WIDER_SCOPES = HEADER + """
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_loop():
    return asyncio.get_running_loop()


async def test_first(module_loop):
    assert type(module_loop) is LOOP_TYPE
    assert asyncio.get_running_loop() is module_loop


async def test_second(module_loop):
    assert asyncio.get_running_loop() is module_loop


@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop(module_loop):
    loop = asyncio.get_running_loop()
    assert type(loop) is LOOP_TYPE
    assert loop is not module_loop
"""

SAMPLE_TESTS = 6

# Auto mode: no marks, an async fixture made with plain @pytest.fixture.
AUTO_MODE = HEADER + """

@pytest.fixture
async def fixture_loop():
    return asyncio.get_running_loop()


async def test_unmarked(fixture_loop):
    assert type(fixture_loop) is LOOP_TYPE
    assert asyncio.get_running_loop() is fixture_loop
"""

# What pytest-asyncio 1.4+ documents for a custom loop, without the plugin.
HOOK_RECIPE = """
import uringloop


def pytest_asyncio_loop_factories(config, item):
    return {"uringloop": uringloop.new_event_loop}
"""

# What pytest-asyncio 0.23 to 1.3 documented; 1.4+ still honours it, with a
# deprecation warning.
POLICY_RECIPE = """
import pytest

import uringloop


@pytest.fixture(scope="session")
def event_loop_policy():
    return uringloop.Policy()
"""

# A project's own hook: the plugin must not override it.
OWN_HOOK = """
import asyncio


def pytest_asyncio_loop_factories(config, item):
    return {"selector": asyncio.SelectorEventLoop}
"""


@pytest.fixture
def run(pytester, monkeypatch):
    """run(loop, *args): pytest, in a subprocess, on the sample files, which
    expect the loop named (uringloop or asyncio)."""
    pytester.makeini(INI)
    pytester.makepyfile(test_function_scope=FUNCTION_SCOPE, test_wider_scopes=WIDER_SCOPES)

    def run(loop, *args):
        monkeypatch.setenv("SAMPLE_LOOP", loop)
        return pytester.runpytest_subprocess(*args, timeout=60)
    return run


def test_plugin_runs_tests_on_uringloop(run):
    run("uringloop", *PLUGIN).assert_outcomes(passed=SAMPLE_TESTS)


def test_without_plugin_asyncio_loop(run):
    """Installing uringloop registers no plugin: it is -p that switches."""
    run("asyncio").assert_outcomes(passed=SAMPLE_TESTS)


def test_plugin_auto_mode(pytester, run):
    pytester.makepyfile(test_auto_mode=AUTO_MODE)
    run("uringloop", *PLUGIN, "-o", "asyncio_mode=auto").assert_outcomes(passed=SAMPLE_TESTS + 1)


def test_hook_recipe_without_plugin(pytester, run):
    pytester.makeconftest(HOOK_RECIPE)
    run("uringloop").assert_outcomes(passed=SAMPLE_TESTS)


def test_policy_recipe_without_plugin(pytester, run):
    pytester.makeconftest(POLICY_RECIPE)
    result = run("uringloop", "-W", "default::pytest.PytestDeprecationWarning")
    result.assert_outcomes(passed=SAMPLE_TESTS, warnings=1)


def test_project_hook_comes_first(pytester, run):
    """The plugin's hook answers last: a conftest.py's own choice stands."""
    pytester.makeconftest(OWN_HOOK)
    run("asyncio", *PLUGIN).assert_outcomes(passed=SAMPLE_TESTS)


def test_importing_uringloop_leaves_pytest_alone():
    code = "import sys, uringloop; assert 'pytest' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
