"""uringloop.os and uringloop.os.path against os and os.path, their oracle.

Each case is one call, made with the same arguments by the stdlib
function and by uringloop's, in the same place: a small tree (files,
directories, symlinks good, broken and looping, a FIFO, a non-UTF-8 name,
directories closed to their owner) that is the process's cwd.  The two
outcomes must be equal: results field by field (every st_* of a
stat_result, st_atime as a float, st_*_ns, st_dev, st_rdev; lists
sorted), exceptions by type, errno, strerror, filename and filename2 (and
message), warnings by category and message.  A call that changes the tree
runs twice, each time on a tree made anew at the same path, and the trees
after it must be equal too.  Cases denied by permission bits skip where
running as root lets them through; those of /proc and /sys are denied to
root as well.

Every case runs on the four loop kinds of conftest.py and on a fifth,
uringloop-ring: uringloop with file_nowait masked, so that each stat is a
STATX request (the dentry cache answers most of them first otherwise).
On uringloop-compat the path requests but STATX are masked, and
RingFileOps hands those calls to the executor.  No loop kind differs from
os.  Around each case the process's fd count must not change.

Then: the tree gives os the errors the cases are there for; the names of
aiofiles.os and aiofiles.os.path are all here, with os's signatures; the
calls that have a ring request make no executor call on uringloop (and
the rest, and odd arguments, do); many calls at once; cancelled calls.
"""
import asyncio
import concurrent.futures
import dataclasses
import errno
import inspect
import os
import pathlib
import stat
import warnings
from unittest import mock

import pytest

import uringloop
import uringloop.os as uos
from conftest import LOOP_KINDS, close_loop, make_loop
from support import open_fds

pytestmark = pytest.mark.timeout(30)

BAD_FD = 999_999            # not open in the test process
STAT_FIELDS = [name for name in dir(os.stat_result) if name.startswith("st_")]
# statvfs fields that do not move while other processes write to the disk.
STATVFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_files", "f_flag", "f_namemax", "f_fsid")


# uringloop with its tries before a ring request masked (file_nowait):
# every stat is a STATX request, which the dentry cache answers otherwise.
RING_ONLY = "uringloop-ring"


@pytest.fixture(params=(*LOOP_KINDS, RING_ONLY))
def loop_kind(request):
    return request.param


@pytest.fixture
def loop(loop_kind):
    if loop_kind == RING_ONLY:
        mask = ",".join(filter(None, (os.environ.get("URINGLOOP_DISABLE"), "file_nowait")))
        with mock.patch.dict(os.environ, URINGLOOP_DISABLE=mask):
            made = uringloop.new_event_loop()
        assert not made.features.has("file_nowait")
    else:
        made = make_loop(loop_kind)
    yield made
    close_loop(made)


# -- the tree


def build(root):
    for name in ("", "dir", "emptydir", "nest", "nest/a", "locked", "readonly", "readonly/sub"):
        os.mkdir(root / name)
    for name, data in [("file", b"12345"), ("empty", b""), ("dir/inner", b"x"), ("é", b""),
                       ("locked/secret", b""), ("readonly/f", b"")]:
        (root / name).write_bytes(data)
    os.close(os.open(bytes(root) + b"/\xff", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkfifo(root / "fifo")
    for name, target in [("link", "file"), ("dirlink", "dir"), ("broken", "missing"),
                         ("loop1", "loop2"), ("loop2", "loop1")]:
        os.symlink(target, root / name)
    (root / "locked").chmod(0)
    (root / "readonly").chmod(0o555)


class Tree:
    """The tree at base/t, the cwd; restore() puts it aside where a call
    changed it and makes it again at the same path, so that errors name the
    same files."""

    def __init__(self, base):
        self.base = base
        self.made = []
        self.renew()
        self.pristine = snapshot()

    def restore(self, now=None):
        """`now`: the tree's snapshot, where the caller has it."""
        if (snapshot() if now is None else now) != self.pristine:
            self.renew()

    def renew(self):
        os.chdir(self.base)
        root = self.base / "t"
        if self.made:
            root.rename(self.base / f"old{len(self.made)}")
            self.made[-1] = self.base / f"old{len(self.made)}"
        build(root)
        self.made.append(root)
        os.chdir(root)

    def open_up(self):
        """Modes back, for pytest to remove the trees."""
        for root in self.made:
            for name in ("locked", "readonly"):
                if (root / name).is_dir() and not (root / name).is_symlink():
                    (root / name).chmod(0o755)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = Tree(tmp_path)
    yield made
    made.open_up()


def snapshot(top="."):
    """What a call may change: each entry's kind, mode bits, link count,
    content or target."""
    seen = {}

    def visit(path):
        try:
            names = sorted(os.listdir(path))
        except PermissionError:
            return
        for name in names:
            full = os.path.join(path, name)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                seen[full] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                seen[full] = ("dir", mode)
                visit(full)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    seen[full] = ("file", mode, st.st_nlink, f.read())
            else:
                seen[full] = (stat.S_IFMT(st.st_mode), mode)

    visit(top)
    return seen


# -- arguments made in the tree


@dataclasses.dataclass(frozen=True)
class Fd:
    """An fd of `name` in the tree, opened for the call, closed after."""
    name: str
    flags: int = os.O_RDONLY

    def __repr__(self):
        return f"Fd({self.name})"


@dataclasses.dataclass(frozen=True)
class Abs:
    """The absolute path of `name` in the tree."""
    name: str

    def __repr__(self):
        return f"Abs({self.name})"


class FsPath:
    """An os.PathLike whose __fspath__ returns `value` or raises it."""

    def __init__(self, value):
        self.value = value

    def __fspath__(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return f"FsPath({self.value!r})"


def resolve(value, fds):
    if isinstance(value, Fd):
        fds.append(os.open(value.name, value.flags, 0o644))
        return fds[-1]
    if isinstance(value, Abs):
        return os.path.abspath(value.name)
    return value


# -- calls and outcomes


MUTATING = {"mkdir", "makedirs", "rmdir", "removedirs", "remove", "unlink", "rename", "renames",
            "replace", "link", "symlink", "sendfile"}


@dataclasses.dataclass(frozen=True)
class Call:
    name: str               # "stat", or "path.exists" for os.path's
    args: tuple
    kwargs: dict
    denied: bool = False    # expects PermissionError, unless running as root

    def __str__(self):
        parts = [_short(a) for a in self.args]
        parts += [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"

    def functions(self):
        """(the stdlib function, uringloop's)"""
        if self.name.startswith("path."):
            name = self.name[len("path."):]
            return getattr(os.path, name), getattr(uos.path, name)
        return getattr(os, self.name), getattr(uos, self.name)

    def arguments(self, fds):
        return ([resolve(a, fds) for a in self.args],
                {k: resolve(v, fds) for k, v in self.kwargs.items()})


def _short(value):
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def call(name, *args, **kwargs):
    return Call(name, args, kwargs)


def denied(name, *args, **kwargs):
    return Call(name, args, kwargs, denied=True)


def normal(result):
    """result as compared: every field of a stat_result, names sorted."""
    if isinstance(result, os.stat_result):
        return {name: getattr(result, name) for name in STAT_FIELDS}
    if isinstance(result, os.statvfs_result):
        return {name: getattr(result, name) for name in STATVFS_FIELDS}
    if isinstance(result, list):
        return sorted(result)
    if hasattr(result, "__next__"):         # a scandir iterator
        with result:
            return sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in result)
    return result


def outcome(func, *args, **kwargs):
    """What func(*args, **kwargs) did: its result or its exception, and the
    warnings it gave."""
    with warnings.catch_warnings(record=True) as given:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            did = ("raised", type(exc), str(exc), *_os_error(exc))
        else:
            did = ("returned", type(result), normal(result))
    return did, [(w.category, str(w.message)) for w in given]


def _os_error(exc):
    if isinstance(exc, OSError):
        return exc.errno, exc.strerror, exc.filename, exc.filename2
    return ()


def compare(call_, run, tree):
    """os's outcome of call_, and how uringloop's (or the tree after it)
    differs from it: None where it does not."""
    oracle, ours = call_.functions()
    mutating = call_.name in MUTATING
    if mutating:
        tree.restore()
    before = open_fds()
    fds = []
    args, kwargs = call_.arguments(fds)
    try:
        want = outcome(oracle, *args, **kwargs)
        if mutating:
            for fd in fds:
                os.close(fd)
            fds.clear()
            want_tree = snapshot()
            tree.restore(want_tree)
            args, kwargs = call_.arguments(fds)
        got = outcome(lambda: run(ours(*args, **kwargs)))
    finally:
        for fd in fds:
            os.close(fd)
    if got != want:
        return want, f"{call_}: os {want}, uringloop {got}"
    if mutating and snapshot() != want_tree:
        return want, f"{call_}: os left {want_tree}, uringloop {snapshot()}"
    if open_fds() != before:
        return want, f"{call_}: {open_fds() - before} more fds open"
    return want, None


# -- the cases


def stat_cases(name):
    return [
        call(name, "file"), call(name, "empty"), call(name, "dir"), call(name, "fifo"),
        call(name, "link"), call(name, "dirlink"), call(name, "broken"), call(name, "loop1"),
        call(name, "missing"), call(name, "file/x"), call(name, "file/"), call(name, "dirlink/"),
        call(name, ""), call(name, "/dev/null"), call(name, "é"), call(name, "\udcff"),
        call(name, b"file"), call(name, b"missing"), call(name, b"\xff"),
        call(name, pathlib.PurePath("link")), call(name, FsPath(b"missing")),
        call(name, "fi\0le"), call(name, b"fi\0le"), call(name, FsPath("a\0")),
        call(name, "\ud800"), call(name, "x" * 300), call(name, "d/" * 3000),
        call(name, 1.5), call(name, None), call(name, ["file"]), call(name, bytearray(b"file")),
        call(name, FsPath(3)), call(name, FsPath(TypeError("from __fspath__"))),
        call(name, "inner", dir_fd=Fd("dir")), call(name, b"inner", dir_fd=Fd("dir")),
        call(name, "missing", dir_fd=Fd("dir")), call(name, Abs("file"), dir_fd=Fd("dir")),
        call(name, "", dir_fd=Fd("dir")), call(name, "inner", dir_fd=Fd("file")),
        call(name, "inner", dir_fd=BAD_FD), call(name, "link", dir_fd=-100),
        call(name, "inner", dir_fd=1.5), call(name, "inner", dir_fd=2**40),
        call(name, "inner", dir_fd=True),
        call(name, Fd("file")),                 # os.stat: the open file; os.lstat: TypeError
        denied(name, "locked/secret"),
    ]


READS = [
    *stat_cases("stat"),
    call("stat", "link", follow_symlinks=False), call("stat", "broken", follow_symlinks=False),
    call("stat", "loop1", follow_symlinks=False), call("stat", "dirlink/", follow_symlinks=False),
    call("stat", "link", follow_symlinks=0), call("stat", "link", follow_symlinks=[]),
    call("stat", "link", dir_fd=Fd("."), follow_symlinks=False),
    call("stat", Fd("dir")), call("stat", Fd("file"), follow_symlinks=False),
    call("stat", Fd("fifo", os.O_RDONLY | os.O_NONBLOCK)),
    call("stat", BAD_FD), call("stat", -1), call("stat", -100), call("stat", 2**40),
    call("stat", False), call("stat", Fd("file"), dir_fd=Fd("dir")),
    *stat_cases("lstat"),
    *(call(f"path.{name}", path)
      for name in ("exists", "isfile", "isdir", "islink")
      for path in ("file", "dir", "fifo", "link", "dirlink", "broken", "loop1", "missing",
                   "file/", "", "fi\0le", b"dir", pathlib.PurePath("link"), Fd("file"), BAD_FD,
                   "x" * 300, "locked/secret", FsPath(AttributeError("x")), 1.5)),
    *(call(f"path.{name}", path)
      for name in ("getsize", "getmtime", "getatime", "getctime")
      for path in ("file", "dir", "link", "broken", "missing", b"file", Fd("file"), "a\0")),
    call("path.samefile", "file", "link"), call("path.samefile", "file", "dir"),
    call("path.samefile", "file", "missing"),
    call("path.sameopenfile", Fd("file"), Fd("link")),
    call("path.sameopenfile", Fd("file"), BAD_FD),
    call("path.ismount", "/"), call("path.ismount", "."), call("path.ismount", "link"),
    call("path.abspath", "x"), call("path.abspath", b"../x"), call("path.abspath", 1),
    call("listdir"), call("listdir", "dir"), call("listdir", b"."), call("listdir", Fd("dir")),
    call("listdir", "missing"), call("listdir", "file"),
    call("scandir", "."), call("scandir", b"dir"), call("scandir", "missing"),
    call("readlink", "link"), call("readlink", b"broken"), call("readlink", "file"),
    call("readlink", "missing"), call("readlink", "link", dir_fd=Fd(".")),
    call("access", "file", os.R_OK), call("access", "missing", os.F_OK),
    call("access", "broken", os.F_OK, follow_symlinks=False),
    call("access", "inner", os.W_OK, dir_fd=Fd("dir")), call("access", "file", "r"),
    call("getcwd"), call("statvfs", "."), call("statvfs", "missing"),
]

WRITES = [
    call("mkdir", "new"), call("mkdir", "new/"), call("mkdir", "new", 0o700),
    call("mkdir", "new", 0o1777), call("mkdir", "new", -1), call("mkdir", "new", mode=0),
    call("mkdir", "new", 1.5), call("mkdir", "new", 2**40), call("mkdir", "new", True),
    call("mkdir", "dir"), call("mkdir", "broken"), call("mkdir", "missing/new"),
    call("mkdir", "file/new"), call("mkdir", "new", dir_fd=Fd("dir")),
    call("mkdir", "new", dir_fd=BAD_FD), call("mkdir", b"new"),
    call("mkdir", pathlib.PurePath("new")),
    call("mkdir", "ne\0w"), call("mkdir", 1), call("mkdir", "x" * 300),
    call("mkdir", "/sys/uringloop-test"), denied("mkdir", "readonly/new"),
    call("makedirs", "a/b/c"), call("makedirs", "a/b", 0o700), call("makedirs", "dir"),
    call("makedirs", "dir", exist_ok=True), call("makedirs", "file/x"), call("makedirs", b"a/b"),
    call("rmdir", "emptydir"), call("rmdir", "emptydir/"), call("rmdir", "dir"),
    call("rmdir", "file"), call("rmdir", "missing"), call("rmdir", "dirlink"), call("rmdir", "."),
    call("rmdir", "emptydir", dir_fd=Fd(".")), call("rmdir", b"emptydir"),
    call("rmdir", "emptydir\0"), call("rmdir", Fd("emptydir")), denied("rmdir", "readonly/sub"),
    call("removedirs", "nest/a"), call("removedirs", "dir"),
    *(call(name, path) for name in ("remove", "unlink")
      for path in ("file", "dir", "missing", "link", "broken", "file/", "dirlink/", b"file",
                   FsPath(b"empty"), "fi\0le", 0, "/proc/version")),
    call("unlink", "inner", dir_fd=Fd("dir")), call("unlink", "inner", dir_fd=Fd("file")),
    call("unlink", "inner", dir_fd="dir"), denied("unlink", "readonly/f"),
    denied("remove", "locked/secret"),
    *(call(name, src, dst) for name in ("rename", "replace")
      for src, dst in [("file", "new"), ("file", "empty"), ("file", "dir"), ("dir", "file"),
                       ("dir", "emptydir"), ("emptydir", "dir"), ("missing", "new"),
                       ("file", "missing/new"), ("dir", "dir/sub"), ("link", "new"),
                       ("file", "file"), (b"file", "new"), (b"file", b"new"), ("file", "new\0"),
                       ("file", 1), (None, "new")]),
    call("rename", "inner", "moved", src_dir_fd=Fd("dir"), dst_dir_fd=Fd("emptydir")),
    call("replace", "inner", "file", src_dir_fd=Fd("dir")), denied("rename", "readonly/f", "g"),
    call("renames", "file", "a/b/new"), call("renames", "nest/a", "moved"),
    call("link", "file", "new"), call("link", "file", "empty"), call("link", "dir", "new"),
    call("link", "missing", "new"), call("link", "link", "new"), call("link", "broken", "new"),
    call("link", "link", "new", follow_symlinks=True),
    call("link", "link", "new", follow_symlinks=False),
    call("link", "link", "new", src_dir_fd=Fd(".")),
    call("link", "broken", "new", src_dir_fd=Fd(".")),
    call("link", "loop1", "new", dst_dir_fd=Fd(".")),
    call("link", "link", "new", src_dir_fd=Fd("."), follow_symlinks=False),
    call("link", "file", "new", dst_dir_fd=Fd("dir")), call("link", b"file", "new"),
    call("link", "file", "ne\0w"), call("link", 1, "new"),
    call("link", "file", "new", src_dir_fd=-2),
    call("symlink", "file", "new"), call("symlink", "missing", "new"),
    call("symlink", "file", "empty"),
    call("symlink", "file", "missing/new"), call("symlink", "", "new"),
    call("symlink", "dir", "new", True), call("symlink", "file", "new", dir_fd=Fd("dir")),
    call("symlink", b"file", b"new"), call("symlink", pathlib.PurePath("x"), "new"),
    call("symlink", "fi\0le", "new"), call("symlink", "file", None),
    denied("symlink", "file", "readonly/new"),
    call("sendfile", Fd("out", os.O_WRONLY | os.O_CREAT), Fd("file"), 0, 5),
    call("sendfile", Fd("out", os.O_WRONLY | os.O_CREAT), Fd("file"), 2, 100),
    call("sendfile", Fd("file"), Fd("empty"), 0, 1),
]


def by_name(calls):
    grouped = {}
    for call_ in calls:
        grouped.setdefault(call_.name, []).append(call_)
    return grouped


CASES = by_name(call_ for call_ in READS + WRITES if not call_.denied)
DENIED = [call_ for call_ in READS + WRITES if call_.denied]


@pytest.mark.parametrize("name", CASES)
def test_same_as_os(name, run, tree):
    """Every case of the function `name`, one after the other."""
    differences = [compare(call_, run, tree)[1] for call_ in CASES[name]]
    assert not any(differences), "\n".join(filter(None, differences))


@pytest.mark.parametrize("call_", DENIED, ids=str)
def test_denied_same_as_os(call_, run, tree):
    """A call that permission bits deny, where they deny it (not to root)."""
    (did, _), difference = compare(call_, run, tree)
    assert difference is None, difference
    if not (did[0] == "raised" and issubclass(did[1], PermissionError)):
        pytest.skip("running as root: permission bits deny nothing")


MEANT = [
    (call("stat", "loop1"), OSError, errno.ELOOP),
    (call("stat", "missing"), OSError, errno.ENOENT),
    (call("stat", b"missing"), OSError, errno.ENOENT),
    (call("stat", "broken"), OSError, errno.ENOENT),
    (call("mkdir", "dir"), OSError, errno.EEXIST),
    (call("rmdir", "dir"), OSError, errno.ENOTEMPTY),
    (call("rmdir", "file"), OSError, errno.ENOTDIR),
    (call("unlink", "dir"), OSError, errno.EISDIR),
    (call("stat", "fi\0le"), ValueError, None),
    (call("stat", 1.5), TypeError, None),
]


@pytest.mark.parametrize("call_, error, number", MEANT, ids=[str(m[0]) for m in MEANT])
def test_the_cases_meet_the_errors_meant(call_, error, number, tree):
    """The tree gives os the errors the cases are there for (so that
    the comparisons are not of two successes); bytes paths are named as
    bytes."""
    oracle = call_.functions()[0]
    with pytest.raises(error) as raised:
        oracle(*call_.args)
    assert getattr(raised.value, "errno", None) == number
    if isinstance(raised.value, OSError):
        assert raised.value.filename == call_.args[0]


# -- names, and where the work is done


def test_names_and_signatures_match_aiofiles_and_os():
    aiofiles_os = pytest.importorskip("aiofiles.os")
    assert set(uos.__all__) == {*aiofiles_os.__all__, "lstat"}
    assert set(uos.path.__all__) == set(aiofiles_os.path.__all__)
    for module, stdlib, names in [(uos, os, uos.__all__), (uos.path, os.path, uos.path.__all__)]:
        for name in set(names) - {"path", "wrap"}:
            ours = getattr(module, name)
            assert inspect.iscoroutinefunction(ours), name
            assert inspect.signature(ours) == inspect.signature(getattr(stdlib, name)), name
    assert uos.path is uringloop.ospath


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self):
        super().__init__(max_workers=2)
        self.calls = []

    def submit(self, fn, /, *args, **kwargs):
        self.calls.append(getattr(fn, "func", fn).__name__)
        return super().submit(fn, *args, **kwargs)


# Each call that has a ring request, and the request's opcode.
RING_CALLS = [
    (call("stat", "file"), "statx"), (call("stat", Fd("file")), "statx"),
    (call("lstat", "link"), "statx"), (call("mkdir", "new"), "mkdirat"),
    (call("rename", "new", "new2"), "renameat"), (call("replace", "new2", "new"), "renameat"),
    (call("link", "file", "hard"), "linkat"), (call("symlink", "file", "soft"), "symlinkat"),
    (call("unlink", "hard"), "unlinkat"), (call("remove", "soft"), "unlinkat"),
    (call("rmdir", "new"), "unlinkat"),
    *((call(f"path.{name}", "link"), "statx")
      for name in ("exists", "isfile", "isdir", "islink", "getsize", "getmtime", "getatime",
                   "getctime")),
]
EXECUTOR_CALLS = [
    call("listdir", "."), call("path.ismount", "."), call("stat", bytearray(b"file")),
    call("stat", "fi\0le"), call("stat", -1), call("mkdir", "new", -1),
]


def executor_calls(run, executor, call_):
    """How many calls call_ hands the default executor."""
    fds = []
    args, kwargs = call_.arguments(fds)
    before = len(executor.calls)
    try:
        run(call_.functions()[1](*args, **kwargs))
    except (OSError, ValueError, TypeError):     # TypeError: stat(bytearray) from 3.12
        pass
    finally:
        for fd in fds:
            os.close(fd)
    return len(executor.calls) - before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # stat(bytearray) in 3.11
def test_ring_requests_where_the_loop_has_them(loop, loop_kind, run, tree):
    """On uringloop each call with a ring request makes one where the ring
    has (and the mask leaves) its opcode, and no executor call; elsewhere,
    and for what the ring cannot take, the executor runs os's function."""
    executor = CountingExecutor()
    loop.set_default_executor(executor)
    ring = loop_kind.startswith("uringloop")
    for call_, opcode in RING_CALLS:
        expected = 0 if ring and loop.features.has(opcode) else 1
        assert executor_calls(run, executor, call_) == expected, (call_, executor.calls)
    for call_ in EXECUTOR_CALLS:
        assert executor_calls(run, executor, call_) == 1, call_


def test_many_calls_at_once(run, tree):
    """More requests at once than the ring's 512 entries."""
    paths = ["file", "dir", "link", "fifo", "broken", "missing"] * 200
    names = [f"d{i}" for i in range(100)]

    async def main():
        stats = await asyncio.gather(*(uos.path.exists(path) for path in paths))
        await asyncio.gather(*(uos.mkdir(name) for name in names))
        await asyncio.gather(*(uos.rename(name, name + "x") for name in names))
        await asyncio.gather(*(uos.rmdir(name + "x") for name in names))
        return stats

    assert run(main()) == [os.path.exists(path) for path in paths]
    assert snapshot() == tree.pristine


def test_cancelled_calls_leave_the_loop_working(run, tree):
    """Calls cancelled once their requests are queued: each either happened
    or not, nothing is left open, and the next calls are answered."""
    before = open_fds()

    async def main():
        tasks = [asyncio.ensure_future(uos.mkdir(f"c{i}")) for i in range(100)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for i, task in enumerate(tasks):
            if not task.cancelled():
                assert await uos.path.isdir(f"c{i}")
        return await uos.stat("file")

    assert normal(run(main())) == normal(os.stat("file"))
    assert open_fds() == before
