"""Child processes: asyncio.create_subprocess_exec/_shell and
loop.subprocess_exec/_shell.

Exit statuses (exit codes, the shell's, signals: terminate(), kill(),
send_signal() to a child that handles it), the standard streams (PIPE,
DEVNULL, STDOUT, a file descriptor, a file object; stdin from a file), the
Popen options the loop passes on (cwd, env, start_new_session,
process_group, pass_fds, preexec_fn, user/group as root) and the arguments
it refuses (bufsize, universal_newlines, text, encoding, errors, shell);
communicate() with 64 MiB each way through cat and with both output pipes
busy at once; wait() and returncode.  A SubprocessProtocol sees the
callbacks in the order asyncio guarantees, and the SubprocessTransport's
pid, returncode and pipe transports behave as asyncio's.  A child that
exits while a grandchild still holds its stdout; 200 concurrent children;
1,000 sequential spawns (URINGLOOP_TEST_SPAWNS overrides the count) leave
no zombie and no fd behind; a loop closed while its child still runs; a
transport closed on a running child (it is killed); a cancelled wait();
a program that does not exist.

Every test runs on uringloop, uringloop-compat, asyncio's SelectorEventLoop
and uvloop.  asyncio (of the running Python) is the reference: each
assertion was first checked against it and must hold identically on
uringloop and uringloop-compat.  Payloads are checked byte for byte.
Zombies are found in /proc: a process whose parent is this one, in state Z.

Where uvloop parts from asyncio the test asserts each loop's own behaviour
and its docstring says so.  In short:
  - Process.wait() returns as soon as the child has exited, even while a
    grandchild still holds the child's stdout open (asyncio's wait() also
    waits for the EOF of every pipe, see below);
  - text=, encoding= and errors= are refused even when None or False
    (ValueError 'unexpected kwargs: text, ...'; asyncio: 'text must be
    False' etc., and only when set); a subprocess_shell() command that is
    not a string is a TypeError (asyncio: ValueError 'cmd must be a
    string');
  - no process_group=, user=, group=, extra_groups= (ValueError
    'unexpected kwargs: ...');
  - a program that does not exist: FileNotFoundError without a filename
    (asyncio's names the program);
  - a child still running when its loop is closed is never reaped: it stays
    a zombie once it has exited, and loop.close() itself warns 'unclosed
    resource' about its transport (asyncio on 3.11 reaps it in its watcher
    thread and logs a warning; its transport warns 'unclosed transport'
    when collected);
  - its subprocess and pipe transports are not instances of asyncio's
    SubprocessTransport, WriteTransport and ReadTransport;
  - a subprocess transport's is_closing() stays False right after close()
    of a running child (asyncio: True);
  - a loop's first spawn with pipes opens an fd on /dev/null that the loop
    keeps until it is closed (fd counts start after such a spawn).

Asyncio behaviours that depend on the Python version: Process.wait()
returns only once the child has exited and every pipe of it has reached
EOF (checked on 3.11 and 3.13); gh-119710, merged upstream in 2026, makes
it return at the exit (ASYNCIO_WAIT_AWAITS_PIPES says from which release
this suite expects that).  3.11's
default child watcher is the ThreadedChildWatcher, which reaps a child in
a thread of its own even after the loop is closed; from 3.12 the default
is the PidfdChildWatcher, which leaves that child a zombie until its
transport is collected and never closes its pidfd (the closed-loop test is
skipped for asyncio there, and still required of uringloop).

Waits are on events with generous deadlines (a broken loop fails instead
of hanging); "has not happened yet" checks necessarily watch for a short
while.  Nothing here measures speed.
"""
import asyncio
import errno
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

from support import MiB, payload, open_fds, settle_fds, wait, until, check_bytes, DEADLINE

pytestmark = pytest.mark.timeout(90)

PY = sys.executable
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

SPAWNS = int(os.environ.get("URINGLOOP_TEST_SPAWNS", "1000"))
CONCURRENT = 200             # children at once, each echoing ECHO_SIZE through cat
ECHO_SIZE = 1 * MiB
BIG = 64 * MiB               # communicate() each way through one cat
QUIET = 0.2                  # how long "has not happened yet" checks watch

# gh-119710 (merged upstream in 2026) lets Process.wait() return when the
# child exits; before it, wait() also waits for every pipe's EOF.
ASYNCIO_WAIT_AWAITS_PIPES = sys.version_info < (3, 15)
# 3.11's default child watcher reaps in a thread, even once the loop is
# closed; 3.12's PidfdChildWatcher does not (see the module docstring).
ASYNCIO_THREADED_WATCHER = sys.version_info < (3, 12)


def py(code):
    """The argv running `code` in this Python."""
    return (PY, "-c", code)


def is_uvloop(loop_kind):
    return loop_kind == "uvloop"


# -- processes in /proc


def _stat_fields(pid):
    """The fields of /proc/<pid>/stat after the command name (state first,
    then ppid), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()


def proc_state(pid):
    """The state letter of process `pid` ('Z' a zombie), or None once gone
    (reaped)."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[0].decode()


def our_zombies():
    """The pids of this process's children that are zombies."""
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is not None and fields[0] == b"Z" and int(fields[1]) == me:
            found.add(int(name))
    return found


def poll(predicate, timeout=DEADLINE, step=0.01):
    """until() for when no loop runs."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(step)


async def spawn_true():
    """One spawn of true with pipes, waited for: creates whatever a loop sets
    up for good at its first child (asyncio's child watcher; uvloop's
    signal pipe, and an fd on /dev/null that a uvloop loop opens at its
    first spawn with pipes and keeps until closed), before fds are
    counted."""
    proc = await asyncio.create_subprocess_exec("true", stdin=PIPE, stdout=PIPE, stderr=PIPE)
    assert await wait(proc.communicate()) == (b"", b"")
    assert proc.returncode == 0


# -- a SubprocessProtocol that records


class Recorder(asyncio.SubprocessProtocol):
    """Records every callback in order as tuples: ('made',),
    ('data', fd, bytes), ('pipe_lost', fd, exc), ('exited', returncode seen
    then), ('lost', exc).  Futures: made, exited, lost; data[fd] collects each
    pipe's bytes."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.events = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.made = loop.create_future()
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("made",))
        self.made.set_result(transport)

    def pipe_data_received(self, fd, data):
        self.events.append(("data", fd, bytes(data)))
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        returncode = self.transport.get_returncode()
        self.events.append(("exited", returncode))
        self.exited.set_result(returncode)

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)

    def names(self):
        return [e[0] for e in self.events]

    def index(self, event):
        return self.events.index(event)


def check_order(rec, pipes):
    """The ordering asyncio guarantees: connection_made first and once;
    process_exited once; each pipe in `pipes` lost once, with no error, after
    all of its data; connection_lost(None) last and once."""
    names = rec.names()
    assert names[0] == "made" and names.count("made") == 1
    assert names[-1] == "lost" and names.count("lost") == 1
    assert rec.events[-1] == ("lost", None)
    assert names.count("exited") == 1
    lost_at = {}
    for i, e in enumerate(rec.events):
        if e[0] == "pipe_lost":
            assert e[1] not in lost_at, f"pipe {e[1]} lost twice"
            assert e[2] is None
            lost_at[e[1]] = i
    assert sorted(lost_at) == sorted(pipes)
    for i, e in enumerate(rec.events):
        if e[0] == "data":
            assert e[1] in (1, 2)
            assert i < lost_at[e[1]], f"data of pipe {e[1]} after its pipe_connection_lost"


# -- exit statuses


@pytest.mark.parametrize("cmd, status", [("exit 3", 3),
                                         ("exec /nonexistent/uringloop-test 2>/dev/null", 127)],
                         ids=["exit-3", "not-found-127"])
def test_shell_exit_status(run, cmd, status):
    """create_subprocess_shell runs the command through /bin/sh: its exit
    status is the returncode (127 for a command the shell cannot find)."""
    async def main():
        proc = await asyncio.create_subprocess_shell(cmd, stdin=DEVNULL, stdout=DEVNULL)
        assert await wait(proc.wait()) == status
        assert proc.returncode == status
    run(main())


@pytest.mark.parametrize("status", [0, 1])
def test_exec_exit_status(run, status):
    """create_subprocess_exec of this Python exiting 0 or 1: that is the
    returncode."""
    async def main():
        proc = await asyncio.create_subprocess_exec(*py(f"import sys; sys.exit({status})"),
                                                    stdin=DEVNULL, stdout=DEVNULL)
        assert await wait(proc.wait()) == status
        assert proc.returncode == status
    run(main())


def test_returncode_none_until_exit(run):
    """returncode is None while the child runs (it waits for stdin's EOF);
    wait() returns the status and, called again, the same status at once."""
    async def main():
        proc = await asyncio.create_subprocess_exec(
            *py("import sys; sys.stdin.buffer.read(); sys.exit(2)"), stdin=PIPE, stdout=DEVNULL)
        await asyncio.sleep(QUIET)
        assert proc.returncode is None
        proc.stdin.close()
        assert await wait(proc.wait()) == 2
        assert proc.returncode == 2
        assert await wait(proc.wait(), 1.0) == 2
    run(main())


SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"


@pytest.mark.parametrize("method, status", [("terminate", -signal.SIGTERM),
                                            ("kill", -signal.SIGKILL)])
def test_terminate_and_kill(run, method, status):
    """terminate() and kill() of a running child: returncode is minus the
    signal's number."""
    async def main():
        proc = await asyncio.create_subprocess_exec(*py(SLEEPER), stdin=DEVNULL, stdout=PIPE)
        assert await wait(proc.stdout.readline()) == b"ready\n"
        getattr(proc, method)()
        assert await wait(proc.wait()) == status
        assert proc.returncode == status
        assert proc_state(proc.pid) is None
    run(main())


def test_send_signal_handled(run):
    """send_signal(SIGUSR1) to a child whose handler exits 7: returncode 7."""
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(*py(code), stdin=DEVNULL, stdout=PIPE)
        assert await wait(proc.stdout.readline()) == b"ready\n"
        proc.send_signal(signal.SIGUSR1)
        assert await wait(proc.wait()) == 7
    run(main())


def test_signals_after_exit(run):
    """Once connection_lost has been called (the child reaped, every pipe
    closed), send_signal(), terminate() and kill() raise ProcessLookupError
    (nothing is signalled: the pid may be another process's by now), before
    and after close()."""
    async def main():
        loop = asyncio.get_running_loop()
        transport, rec = await loop.subprocess_exec(Recorder, "true")
        try:
            assert await wait(rec.lost) is None
            for _ in range(2):
                with pytest.raises(ProcessLookupError):
                    transport.send_signal(signal.SIGUSR1)
                with pytest.raises(ProcessLookupError):
                    transport.terminate()
                with pytest.raises(ProcessLookupError):
                    transport.kill()
                transport.close()
        finally:
            transport.close()
    run(main())


# -- standard streams


def test_pipes_stdout_and_stderr_busy_at_once(run):
    """communicate(input) with all three pipes: the child reads 1 MiB, then
    writes it to stdout and each 64 KiB chunk reversed to stderr, in turn,
    so both output pipes fill at once: both arrive whole and in order."""
    data = payload(MiB, seed=1)
    code = ("import sys\n"
            "data = sys.stdin.buffer.read()\n"
            "for i in range(0, len(data), 65536):\n"
            "    chunk = data[i:i + 65536]\n"
            "    sys.stdout.buffer.write(chunk); sys.stdout.flush()\n"
            "    sys.stderr.buffer.write(chunk[::-1]); sys.stderr.flush()\n")
    want_err = b"".join(data[i:i + 65536][::-1] for i in range(0, len(data), 65536))

    async def main():
        proc = await asyncio.create_subprocess_exec(*py(code), stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await wait(proc.communicate(data))
        check_bytes(out, data)
        check_bytes(err, want_err)
        assert proc.returncode == 0
    run(main())


def test_devnull(run, tmp_path):
    """DEVNULL for all three: the child's fds 0, 1 and 2 are /dev/null, its
    stdin reads empty, and the Process has no stream objects."""
    report = tmp_path / "report"
    code = ("import os, sys\n"
            "null = os.stat('/dev/null')\n"
            "same = [int(os.path.samestat(os.fstat(fd), null)) for fd in (0, 1, 2)]\n"
            "print('written to /dev/null'); print('here too', file=sys.stderr)\n"
            "same.append(len(sys.stdin.buffer.read()))\n"
            "open(sys.argv[1], 'w').write(' '.join(map(str, same)))\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(*py(code), str(report),
                                                    stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        assert proc.stdin is None and proc.stdout is None and proc.stderr is None
        assert await wait(proc.communicate()) == (None, None)
        assert proc.returncode == 0
    run(main())
    assert report.read_text() == "1 1 1 0"


def test_stderr_to_stdout(run):
    """stderr=STDOUT: fd 2 is the stdout pipe; writes to fds 1 and 2
    arrive in the order they were made; proc.stderr is None."""
    code = ("import os\n"
            "assert os.path.samestat(os.fstat(1), os.fstat(2))\n"
            "for i in range(3):\n"
            "    os.write(1, b'out%d ' % i)\n"
            "    os.write(2, b'err%d ' % i)\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(*py(code), stdin=DEVNULL, stdout=PIPE,
                                                    stderr=STDOUT)
        assert proc.stderr is None
        out, err = await wait(proc.communicate())
        assert out == b"out0 err0 out1 err1 out2 err2 "
        assert err is None
        assert proc.returncode == 0
    run(main())


def test_fds(run, tmp_path):
    """File descriptors: stdin from a file's fd, stdout to a pipe's write
    end, stderr to a file's fd.  The parent's copies stay its own."""
    src, errfile = tmp_path / "in", tmp_path / "err"
    src.write_bytes(b"from a file descriptor")
    code = ("import os, sys\n"
            "os.write(1, sys.stdin.buffer.read().upper())\n"
            "os.write(2, b'to the file')\n")

    async def main():
        r, w = os.pipe()
        infd = os.open(src, os.O_RDONLY)
        errfd = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(*py(code), stdin=infd, stdout=w,
                                                        stderr=errfd)
            assert proc.stdin is None and proc.stdout is None and proc.stderr is None
            for fd in (infd, w, errfd):
                os.fstat(fd)            # still open in the parent
            os.close(w)
            assert await wait(proc.wait()) == 0
            got = b""
            while chunk := os.read(r, 65536):
                got += chunk
            assert got == b"FROM A FILE DESCRIPTOR"
        finally:
            for fd in (r, w, infd, errfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
    run(main())
    assert errfile.read_bytes() == b"to the file"


def test_file_objects(run, tmp_path):
    """File objects: stdin from open(..., 'rb'), stdout and stderr to
    open(..., 'wb'): 1 MiB copied through, byte for byte."""
    data = payload(MiB, seed=2)
    src, dst, errfile = tmp_path / "in", tmp_path / "out", tmp_path / "err"
    src.write_bytes(data)
    code = ("import shutil, sys\n"
            "shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)\n"
            "sys.stderr.write('done')\n")

    async def main():
        with open(src, "rb") as fin, open(dst, "wb") as fout, open(errfile, "wb") as ferr:
            proc = await asyncio.create_subprocess_exec(*py(code), stdin=fin, stdout=fout,
                                                        stderr=ferr)
            assert await wait(proc.wait()) == 0
            assert not (fin.closed or fout.closed or ferr.closed)
    run(main())
    check_bytes(dst.read_bytes(), data)
    assert errfile.read_bytes() == b"done"


# -- options passed on to the child


async def output(*args, **kwargs):
    """Run a child to completion: its stdout, after checking it exited 0."""
    proc = await asyncio.create_subprocess_exec(*args, stdin=DEVNULL, stdout=PIPE, **kwargs)
    out, _ = await wait(proc.communicate())
    assert proc.returncode == 0
    return out


def test_cwd(run, tmp_path):
    """cwd= as a str and as a path object."""
    code = "import os; print(os.getcwd())"

    async def main():
        for cwd in (str(tmp_path), tmp_path):
            assert await output(*py(code), cwd=cwd) == f"{tmp_path.resolve()}\n".encode()
    run(main())


def test_env(run):
    """env= is the child's whole environment (env(1) prints exactly it)."""
    env = {"UL_ONE": "1", "UL_TWO": "two words", "UL_EMPTY": ""}

    async def main():
        out = await output(shutil.which("env"), env=env)
        assert sorted(out.decode().splitlines()) == sorted(f"{k}={v}" for k, v in env.items())
    run(main())


def test_start_new_session(run):
    """start_new_session=True: the child leads a session of its own."""
    code = "import os; print(os.getpid(), os.getsid(0))"

    async def main():
        pid, sid = map(int, (await output(*py(code), start_new_session=True)).split())
        assert sid == pid
        assert sid != os.getsid(0)
    run(main())


def test_process_group(run, loop_kind):
    """process_group=0 (3.11+): the child leads a process group of its own
    in our session.  uvloop has no process_group=: ValueError."""
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"

    async def main():
        if is_uvloop(loop_kind):
            with pytest.raises(ValueError, match="unexpected kwargs: process_group"):
                await output(*py(code), process_group=0)
            return
        pid, pgid, sid = map(int, (await output(*py(code), process_group=0)).split())
        assert pgid == pid
        assert pgid != os.getpgid(0)
        assert sid == os.getsid(0)
    run(main())


def test_pass_fds(run):
    """pass_fds: the child writes to an inherited pipe; an fd not passed is
    not inherited (close_fds)."""
    async def main():
        r, w = os.pipe()
        r2, w2 = os.pipe()
        code = ("import os\n"
                f"os.write({w}, b'through an inherited fd')\n"
                "try:\n"
                f"    os.fstat({w2})\n"
                "except OSError as e:\n"
                "    print(e.errno)\n")
        try:
            out = await output(*py(code), pass_fds=(w,))
            assert int(out) == errno.EBADF
            os.close(w)
            assert os.read(r, 100) == b"through an inherited fd"
            assert os.read(r, 100) == b""
        finally:
            for fd in (r, w, r2, w2):
                try:
                    os.close(fd)
                except OSError:
                    pass
    run(main())


def test_preexec_fn(run, tmp_path):
    """preexec_fn runs in the child before exec: it writes the child's pid
    to a marker file and sets an environment variable the program sees."""
    marker = tmp_path / "marker"

    def preexec():
        marker.write_text(str(os.getpid()))
        os.putenv("UL_PREEXEC", "ran")

    code = "import os; print(os.environ.get('UL_PREEXEC'))"

    async def main():
        proc = await asyncio.create_subprocess_exec(*py(code), stdin=DEVNULL, stdout=PIPE,
                                                    preexec_fn=preexec)
        out, _ = await wait(proc.communicate())
        assert out == b"ran\n"
        assert marker.read_text() == str(proc.pid)
    run(main())
    assert "UL_PREEXEC" not in os.environ


@pytest.mark.skipif(os.geteuid() != 0, reason="user= and group= need root")
def test_user_and_group(run, loop_kind):
    """user=, group= and extra_groups= (as root): the child runs as nobody.
    uvloop has none of them: ValueError."""
    kwargs = dict(user=65534, group=65534, extra_groups=[65534])

    async def main():
        args = ("/bin/sh", "-c", "id -u; id -g; id -G")
        if is_uvloop(loop_kind):
            with pytest.raises(ValueError, match="unexpected kwargs: user, group, extra_groups"):
                await output(*args, **kwargs)
            return
        assert await output(*args, **kwargs) == b"65534\n65534\n65534\n"
    run(main())


# -- arguments refused

VALIDATION = [
    # (call, kwargs, asyncio's exception, uvloop's exception)
    ("exec", dict(bufsize=1), (ValueError, "bufsize must be 0"), None),
    ("exec", dict(bufsize=-1), (ValueError, "bufsize must be 0"), None),
    ("exec", dict(universal_newlines=True), (ValueError, "universal_newlines must be False"), None),
    ("exec", dict(text=True), (ValueError, "text must be False"),
     (ValueError, "unexpected kwargs: text")),
    ("exec", dict(encoding="utf-8"), (ValueError, "encoding must be None"),
     (ValueError, "unexpected kwargs: encoding")),
    ("exec", dict(errors="strict"), (ValueError, "errors must be None"),
     (ValueError, "unexpected kwargs: errors")),
    ("exec", dict(shell=True), (ValueError, "shell must be False"), None),
    ("shell", dict(shell=False), (ValueError, "shell must be True"), None),
    ("shell", dict(bufsize=1), (ValueError, "bufsize must be 0"), None),
    ("shell", dict(universal_newlines=True), (ValueError, "universal_newlines must be False"),
     None),
    ("shell", dict(text=True), (ValueError, "text must be False"),
     (ValueError, "unexpected kwargs: text")),
    ("shell", dict(encoding="utf-8"), (ValueError, "encoding must be None"),
     (ValueError, "unexpected kwargs: encoding")),
    ("shell", dict(errors="strict"), (ValueError, "errors must be None"),
     (ValueError, "unexpected kwargs: errors")),
    ("shell-list", {}, (ValueError, "cmd must be a string"), (TypeError, "expected str, bytes")),
]


@pytest.mark.parametrize("call, kwargs, expected, uvloop_expected", VALIDATION,
                         ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'cmd'}"
                              for c, kw, _, _ in VALIDATION])
def test_arguments_refused(run, loop_kind, call, kwargs, expected, uvloop_expected):
    """loop.subprocess_exec/_shell (and so create_subprocess_exec/_shell)
    refuse what asyncio's BaseEventLoop refuses, before the protocol
    factory is called and before any child is made.  uvloop refuses text=,
    encoding= and errors= by name ('unexpected kwargs'), and a shell
    command that is not a string with a TypeError from the spawn itself,
    after the protocol factory was called."""
    exc_type, message = uvloop_expected if is_uvloop(loop_kind) and uvloop_expected else expected
    made = []

    def factory():
        made.append(1)
        return asyncio.SubprocessProtocol()

    async def main():
        loop = asyncio.get_running_loop()
        await spawn_true()
        before = open_fds()
        with pytest.raises(exc_type, match=message):
            if call == "exec":
                await loop.subprocess_exec(factory, "true", **kwargs)
            elif call == "shell":
                await loop.subprocess_shell(factory, "true", **kwargs)
            else:
                await loop.subprocess_shell(factory, ["true"], **kwargs)
        assert made == ([1] if is_uvloop(loop_kind) and call == "shell-list" else [])
        await settle_fds(before)
        with pytest.raises(exc_type, match=message):
            if call == "exec":
                await asyncio.create_subprocess_exec("true", **kwargs)
            elif call == "shell":
                await asyncio.create_subprocess_shell("true", **kwargs)
            else:
                await asyncio.create_subprocess_shell(["true"], **kwargs)
    run(main())


def test_defaults_spelt_out_accepted(run, loop_kind):
    """The refused arguments at their default values are accepted by
    asyncio; uvloop refuses text=, encoding= and errors= whatever their
    value."""
    async def main():
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec("true", universal_newlines=False, shell=False,
                                                    bufsize=0)
        assert await wait(proc.wait()) == 0
        proc = await asyncio.create_subprocess_shell("true", universal_newlines=False, shell=True,
                                                     bufsize=0)
        assert await wait(proc.wait()) == 0
        for named in (dict(text=None, encoding=None, errors=None), dict(text=False)):
            if is_uvloop(loop_kind):
                with pytest.raises(ValueError, match="unexpected kwargs: " + ", ".join(named)):
                    await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **named)
                continue
            proc = await asyncio.create_subprocess_exec("true", **named)
            assert await wait(proc.wait()) == 0
    run(main())


# -- the protocol and the transport


def test_protocol_callbacks_and_transport(run, loop_kind):
    """A SubprocessProtocol with three pipes: 256 KiB written through
    get_pipe_transport(0).write(), then that transport closed; the child
    writes them reversed to stdout, its pid to stderr, and exits 5.
    Callbacks come in asyncio's guaranteed order (check_order); get_pid()
    is the child's pid; get_returncode() is None until the exit, 5 when
    process_exited is called and after; get_pipe_transport(0/1/2) are the
    pipes' transports (None for another fd).  uvloop's transports are not
    instances of asyncio's transport classes."""
    data = payload(256 * 1024, seed=4)
    code = ("import os, sys\n"
            "data = sys.stdin.buffer.read()\n"
            "sys.stdout.buffer.write(data[::-1]); sys.stdout.flush()\n"
            "sys.stderr.write(str(os.getpid())); sys.stderr.flush()\n"
            "sys.exit(5)\n")

    async def main():
        loop = asyncio.get_running_loop()
        transport, rec = await loop.subprocess_exec(Recorder, *py(code))
        try:
            assert await wait(rec.made) is transport
            assert rec.transport is transport
            assert transport.get_pid() > 0
            assert transport.get_returncode() is None
            stdin, stdout, stderr = (transport.get_pipe_transport(fd) for fd in (0, 1, 2))
            assert transport.get_pipe_transport(3) is None
            if not is_uvloop(loop_kind):
                assert isinstance(transport, asyncio.SubprocessTransport)
                assert isinstance(stdin, asyncio.WriteTransport)
                assert isinstance(stdout, asyncio.ReadTransport)
                assert isinstance(stderr, asyncio.ReadTransport)
            assert len({id(stdin), id(stdout), id(stderr)}) == 3
            stdin.write(data)
            stdin.close()
            assert await wait(rec.lost) is None
            assert ("exited", 5) in rec.events
            assert transport.get_returncode() == 5
            assert transport.get_pid() == int(rec.data[2])
            check_bytes(rec.data[1], data[::-1])
            check_order(rec, pipes=(0, 1, 2))
        finally:
            transport.close()
    run(main())


def test_protocol_without_pipes(run):
    """All three streams DEVNULL: no pipe transports, no pipe callbacks:
    connection_made, process_exited, connection_lost, in that order."""
    async def main():
        loop = asyncio.get_running_loop()
        transport, rec = await loop.subprocess_exec(Recorder, *py("raise SystemExit(6)"),
                                                    stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        try:
            assert await wait(rec.lost) is None
            assert rec.events == [("made",), ("exited", 6), ("lost", None)]
            assert [transport.get_pipe_transport(fd) for fd in (0, 1, 2)] == [None, None, None]
            assert transport.get_returncode() == 6
        finally:
            transport.close()
    run(main())


def test_transport_close_kills_child(run, loop_kind):
    """close() of the subprocess transport while the child runs kills it
    (SIGKILL): process_exited with returncode -9, every pipe lost,
    connection_lost last, and the child reaped.  asyncio's is_closing() is
    True right after close(); uvloop's stays False until the child's exit
    has been handled."""
    async def main():
        loop = asyncio.get_running_loop()
        transport, rec = await loop.subprocess_exec(Recorder, *py(SLEEPER))
        try:
            await until(lambda: rec.data[1] == b"ready\n")
            pid = transport.get_pid()
            transport.close()
            if not is_uvloop(loop_kind):
                assert transport.is_closing()
            assert await wait(rec.exited) == -signal.SIGKILL
            assert await wait(rec.lost) is None
            assert transport.get_returncode() == -signal.SIGKILL
            assert transport.is_closing()
            check_order(rec, pipes=(0, 1, 2))
            assert proc_state(pid) is None
        finally:
            transport.close()
    run(main())


# -- a grandchild holding the child's stdout


def grandchild_family(r):
    """A child that starts a grandchild holding its stdout (the grandchild
    blocks reading fd `r` until the test closes the pipe's write end, then
    writes 'grandchild' to that stdout), prints 'child', waits for its
    stdin's EOF and exits 4."""
    grand = (f"import os, sys; os.read({r}, 1); "
             f"sys.stdout.write('grandchild\\n'); sys.stdout.flush()")
    return py("import subprocess, sys\n"
              f"subprocess.Popen([sys.executable, '-c', {grand!r}], pass_fds=({r},),"
              " stdin=subprocess.DEVNULL)\n"
              "print('child', flush=True)\n"
              "sys.stdin.buffer.read()\n"
              "sys.exit(4)\n")


def test_grandchild_holds_stdout_protocol(run):
    """The child exits while a grandchild holds its stdout: process_exited
    (returncode 4) comes while stdout is still open; stdout's data and
    pipe_connection_lost(1) follow only once the grandchild has written
    and exited; connection_lost last."""
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        transport = None
        try:
            transport, rec = await loop.subprocess_exec(Recorder, *grandchild_family(r),
                                                        pass_fds=(r,), stderr=DEVNULL)
            os.close(r)
            await wait(rec.made)
            transport.get_pipe_transport(0).close()
            assert await wait(rec.exited) == 4
            assert transport.get_returncode() == 4
            await asyncio.sleep(QUIET)
            assert ("pipe_lost", 1, None) not in rec.events
            assert b"grandchild" not in rec.data[1]
            assert not rec.lost.done()
            os.close(w)
            assert await wait(rec.lost) is None
            assert rec.data[1] == b"child\ngrandchild\n"
            check_order(rec, pipes=(0, 1))
            assert rec.index(("exited", 4)) < rec.index(("pipe_lost", 1, None))
        finally:
            for fd in (r, w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if transport is not None:
                transport.close()
    run(main())


def test_grandchild_holds_stdout_wait(run, loop_kind):
    """The same family through create_subprocess_exec, wait() called
    before the child exits: returncode is 4 as soon as the child has
    exited, while stdout is still open.  asyncio's wait() (before
    gh-119710) returns only after stdout's EOF, that is once the grandchild
    is done; uvloop's wait() returns at the child's exit, the grandchild
    still running."""
    async def main():
        r, w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(*grandchild_family(r), pass_fds=(r,),
                                                        stdin=PIPE, stdout=PIPE, stderr=DEVNULL)
            os.close(r)
            # wait() called once the child has exited returns at once (asyncio
            # too): have it waiting first, then let the child exit.
            waiter = asyncio.ensure_future(proc.wait())
            await asyncio.sleep(0)
            assert not waiter.done()
            proc.stdin.close()
            await until(lambda: proc.returncode is not None)
            assert proc.returncode == 4
            assert not proc.stdout.at_eof()
            if ASYNCIO_WAIT_AWAITS_PIPES and not is_uvloop(loop_kind):
                await asyncio.sleep(QUIET)
                assert not waiter.done()
            else:
                assert await wait(waiter) == 4
                assert not proc.stdout.at_eof()
            os.close(w)
            assert await wait(waiter) == 4
            assert await wait(proc.stdout.read()) == b"child\ngrandchild\n"
        finally:
            for fd in (r, w):
                try:
                    os.close(fd)
                except OSError:
                    pass
    run(main())


# -- many spawns


def test_spawns_leave_no_zombie_or_fd(run):
    """SPAWNS sequential spawns of true, each waited for: each child is
    reaped by the time wait() returns, and afterwards no zombie child and
    no fd more than before."""
    async def main():
        await spawn_true()
        zombies = our_zombies()
        before = open_fds()
        for _ in range(SPAWNS):
            proc = await asyncio.create_subprocess_exec("true")
            assert await wait(proc.wait()) == 0
            assert proc_state(proc.pid) is None
        await settle_fds(before)
        assert our_zombies() - zombies == set()
    run(main())


# -- the loop closed under a running child


def test_loop_closed_with_child_running(new_loop, loop_kind, caplog):
    """A loop closed while its child (sleep 0.3) still runs, nothing waiting
    for it.  asyncio (3.11's ThreadedChildWatcher) reaps the child when it
    exits and logs a warning from its 'asyncio' logger that the loop
    handling that pid is closed; the transport, never closed, warns
    ResourceWarning('unclosed transport ...') when collected; no fd is left.
    uvloop never reaps the child: it stays a zombie (the test reaps it);
    its transport warns 'unclosed resource ...' from loop.close() itself.
    On 3.12+ asyncio's PidfdChildWatcher leaves a zombie and a pidfd: the
    asyncio case is skipped there; uringloop must still reap, without a
    leak."""
    if loop_kind == "asyncio" and not ASYNCIO_THREADED_WATCHER:
        pytest.skip("asyncio's PidfdChildWatcher (3.12+) neither reaps nor closes its pidfd "
                    "once the loop is closed")
    caplog.set_level(logging.WARNING, logger="asyncio")
    warm = new_loop()
    warm.run_until_complete(spawn_true())
    warm.close()
    before = open_fds()
    loop = new_loop()
    transport, protocol = loop.run_until_complete(
        loop.subprocess_exec(asyncio.SubprocessProtocol, *py("import time; time.sleep(0.3)"),
                             stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL))
    pid = transport.get_pid()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop.close()
            assert transport.get_returncode() is None
            poll(lambda: proc_state(pid) in (None, "Z"))
            if is_uvloop(loop_kind):
                time.sleep(QUIET)
                assert proc_state(pid) == "Z"
            else:
                poll(lambda: proc_state(pid) is None)
                if ASYNCIO_THREADED_WATCHER:
                    poll(lambda: any(r.name == "asyncio" and r.levelno == logging.WARNING
                                     and f"handles pid {pid} is closed" in r.getMessage()
                                     for r in caplog.records))
            del transport, protocol

            def unclosed():
                gc.collect()
                return [w for w in caught if issubclass(w.category, ResourceWarning)
                        and str(w.message).startswith("unclosed")]
            poll(unclosed)
            found = unclosed()
        assert len(found) == 1
        message = str(found[0].message)
        if is_uvloop(loop_kind):
            assert message.startswith("unclosed resource <UVProcessTransport")
            assert proc_state(pid) == "Z"
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        else:
            assert message.startswith("unclosed transport") and str(pid) in message
        poll(lambda: open_fds() == before, timeout=5.0)
    finally:
        if proc_state(pid) == "Z":       # a failed run leaves no zombie to later tests
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


# -- cancellation


def test_cancelled_wait_child_still_reaped(run):
    """A task awaiting proc.wait() is cancelled while the child runs (it
    waits for stdin's EOF): the child goes on; once stdin is closed it exits,
    is reaped without anyone waiting, and a later wait() returns 0."""
    async def main():
        proc = await asyncio.create_subprocess_exec(*py("import sys; sys.stdin.buffer.read()"),
                                                    stdin=PIPE, stdout=DEVNULL)
        task = asyncio.ensure_future(proc.wait())
        await asyncio.sleep(QUIET)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert proc.returncode is None
        assert proc_state(proc.pid) not in (None, "Z")
        proc.stdin.close()
        await until(lambda: proc_state(proc.pid) is None)
        await until(lambda: proc.returncode is not None)
        assert proc.returncode == 0
        assert await wait(proc.wait()) == 0
    run(main())


# -- a program that does not exist


def test_nonexistent_program(run, loop_kind):
    """create_subprocess_exec of a program that does not exist:
    FileNotFoundError (ENOENT), no child, no fd left (its three pipes
    closed).  asyncio's exception names the program; uvloop's has no
    filename."""
    program = "/nonexistent/uringloop-test-program"

    async def main():
        await spawn_true()
        zombies = our_zombies()
        before = open_fds()
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec(program, stdin=PIPE, stdout=PIPE, stderr=PIPE)
        assert info.value.errno == errno.ENOENT
        assert info.value.filename == (None if is_uvloop(loop_kind) else program)
        await settle_fds(before)
        assert our_zombies() - zombies == set()
    run(main())


# -- communicate()


def test_communicate_64mib_through_cat(run):
    """communicate(64 MiB) through cat: 64 MiB in and out at once, stdout
    equal to the input byte for byte, stderr empty."""
    data = payload(BIG, seed=3)

    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await wait(proc.communicate(data))
        check_bytes(out, data)
        assert err == b""
        assert proc.returncode == 0
    run(main())


# -- much data, many children at once


def test_concurrent_children(run):
    """CONCURRENT children at once, each echoing its own 1 MiB through cat
    (communicate(input)): every output equal to its input."""
    base = payload(ECHO_SIZE, seed=5)

    def data_of(i):
        k = (i * 4099) % len(base)
        return base[k:] + base[:k]

    async def echo(i):
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(data_of(i))
        assert proc.returncode == 0
        return out

    async def main():
        outs = await wait(asyncio.gather(*(echo(i) for i in range(CONCURRENT))), 60)
        for i, out in enumerate(outs):
            check_bytes(out, data_of(i))
    run(main())
