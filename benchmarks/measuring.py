"""What the benchmark scripts share to measure a run: the kernel's accounts
of CPU time, run delay and busy CPUs; child processes and the lines they
print; repeating a run that other work disturbed; what the run measured on.

The scripts import it as a neighbour (`import measuring`: their directory
is first on sys.path when they run as `python benchmarks/X.py`)."""
import collections
import importlib.metadata
import json
import os
import platform
import resource
import select
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# /proc reports CPU time in clock ticks of this many per second.
TICK = os.sysconf("SC_CLK_TCK")
# A run in which other work took this share of its window is repeated
# (--retries), and flagged in the notes if the least disturbed attempt was too.
CONTENDED = 0.05


class RunFailed(Exception):
    pass


# -- the kernel's accounts ----------------------------------------------------

def cpu_seconds(who=resource.RUSAGE_SELF):
    """User + system CPU time of this process (all threads), this thread
    (RUSAGE_THREAD) or the reaped children (RUSAGE_CHILDREN)."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def process_ticks(pid):
    """(user, system) CPU time of process `pid`, all its threads, in clock
    ticks: another process's, which getrusage does not see."""
    # The command name, in parentheses, may hold spaces: fields count after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def process_seconds(pid):
    return sum(process_ticks(pid)) / TICK


def thread_run_delay():
    """Seconds the calling thread has been runnable but kept off its CPU
    (the kernel's schedstat run delay: what other work there took)."""
    return _run_delay_ns("/proc/thread-self/schedstat") / 1e9


def run_delay():
    """The same summed over this process's live threads."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            total += _run_delay_ns(f"/proc/self/task/{tid}/schedstat")
        except (OSError, IndexError, ValueError):
            pass            # the thread ended since the listing
    return total / 1e9


def _run_delay_ns(path):
    with open(path) as f:
        return int(f.read().split()[1])


CpuTicks = collections.namedtuple("CpuTicks", "user nice system idle iowait irq softirq steal")


def cpu_stat(cpus):
    """{cpu: CpuTicks since boot} of those of `cpus` that /proc/stat lists."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                out[int(name[3:])] = CpuTicks(*map(int, values[:8]))
    return out


def busy(ticks):
    """A CPU's busy ticks: everything but idle and iowait, the hypervisor's
    steal included (time the CPU was not there for anyone here)."""
    return ticks.user + ticks.nice + ticks.system + ticks.irq + ticks.softirq + ticks.steal


# -- runs -----------------------------------------------------------------------

def rotate(items, rnd):
    """items, round `rnd` starting with a different one, so that slow drift
    on a shared machine hits all alike."""
    k = rnd % len(items)
    return items[k:] + items[:k]


def least_disturbed(attempt, retries, tally=None):
    """attempt() until its result lost less than CONTENDED of its window to
    other work (result["lost"]), at most 1 + retries times: the least
    disturbed result.  tally["repeated"] counts the repeats as they complete,
    so that a repeat that fails leaves the count of those before it."""
    best = None
    for n in range(1 + retries):
        result = attempt()
        if tally is not None:
            tally["repeated"] += n > 0
        if best is None or result["lost"] < best["lost"]:
            best = result
        if result["lost"] < CONTENDED:
            break
    return best


def role_result(label, returncode, stdout_lines, stderr_tail):
    """The JSON object a script's role printed last; RunFailed with the tail
    of its stderr if it printed none or exited with a failure."""
    failure = f"{label}: status {returncode}\n" + "\n".join(stderr_tail)
    try:
        result = json.loads(stdout_lines[-1])
    except (IndexError, ValueError):
        raise RunFailed(failure) from None
    if returncode:
        raise RunFailed(failure)
    return result


# -- child processes ------------------------------------------------------------

def compile_bytecode():
    """Compile uringloop's modules to bytecode beside them, as pip does when
    it installs a package, so a server imports uringloop as an installed
    copy does.  From a source tree that has none (fresh, or where
    PYTHONDONTWRITEBYTECODE is set), each server would compile all of
    uringloop's source at import: about 2 MiB of the compiler's memory in
    its resident set, which uvloop and asyncio, installed with their
    bytecode, do not pay."""
    import compileall
    compileall.compile_dir(REPO / "uringloop", quiet=1)


def spawn(argv, cpu, stderr, stdin=subprocess.DEVNULL):
    """argv pinned to `cpu`, its stdout a pipe (see Lines)."""
    def pin():
        os.sched_setaffinity(0, {cpu})
    return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr,
                            preexec_fn=pin, cwd=REPO)


def send(proc, text):
    """A line to a child's stdin; a child that is gone has no use for it."""
    try:
        proc.stdin.write(text.encode() + b"\n")
        proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass


def end(proc, say=None):
    """Ask a child to end (a line, then EOF on stdin); kill it if it will
    not.  None: no child was started."""
    if proc is None:
        return
    if proc.poll() is None:
        if say:
            send(proc, say)
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass


class Lines:
    """Lines from a child's stdout, each awaited with a deadline."""

    def __init__(self, proc, name):
        self.proc = proc
        self.name = name
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def next(self, timeout, waiting_for):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunFailed(f"{self.name}: no {waiting_for} within {timeout:.0f} s")
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    code = self.proc.wait()
                    raise RunFailed(f"{self.name} exited (status {code}) "
                                    f"before {waiting_for}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()


# -- what a run measured on -------------------------------------------------------

def versions(packages):
    """{"python": its version, package: its version or "?"}; asyncio, part
    of python, left out."""
    out = {"python": platform.python_version()}
    for name in packages:
        if name != "asyncio" and name not in out:
            try:
                out[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                out[name] = "?"
    return out


def commit():
    """uringloop's commit, and whether uringloop/ differs from it; "?"
    outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "uringloop")
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + (" (uringloop/ modified)" if dirty else "")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), "?")
    except OSError:
        return "?"


def environment(packages, allowed=False):
    """'Linux <release>, <n> CPUs; python <version>, <package> <version>...;
    uringloop at <commit>'.  allowed: also how many CPUs this process may
    use, for a script that leaves its runs unpinned."""
    cpus = f"{os.cpu_count()} CPUs"
    if allowed:
        cpus += f" ({len(os.sched_getaffinity(0))} allowed)"
    return (f"Linux {platform.release()}, {cpus}; "
            + ", ".join(f"{k} {v}" for k, v in versions(packages).items())
            + f"; uringloop at {commit()}")
