#!/usr/bin/env bash
# Memory-safety runs of the core, stream, fault, TLS and sendfile tests, on uringloop's own
# loop kinds only (uringloop, uringloop-compat):
#
#   bash scripts/sanitize.sh [asan|valgrind|all] [extra pytest args]
#
#   asan      the C core built with AddressSanitizer + UBSan
#             (URINGLOOP_SANITIZE=address,undefined, see uringloop/_build.py)
#   valgrind  the normal build under valgrind's memcheck
#
# Any finding, like any failing test, makes the exit status non-zero.  Each
# mode installs a snapshot of this tree into its own venv under
# build/sanitize/, so .venv and uringloop/_uring*.so here are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/build/sanitize
MODE=${1:-all}
shift $(( $# > 0 ? 1 : 0 ))
EXTRA=("$@")

TESTS=(tests/test_core.py tests/test_streams.py tests/test_transport_semantics.py
       tests/test_faults.py tests/test_tls.py tests/test_sendfile.py tests/test_readiness.py
       tests/test_datagram.py tests/test_fd_libraries.py tests/test_signals.py
       tests/test_pipes.py tests/test_subprocess.py tests/test_files.py tests/test_fileos.py
       tests/test_timers.py tests/test_hot_paths.py)

# install DIR: a fresh copy of the tree (setuptools builds inside the tree it
# installs from) installed non-editable, with the test extras, into DIR/venv.
install() {
    local dir=$1
    rm -rf "$dir/src" && mkdir -p "$dir/src"
    tar -C "$ROOT" -c --exclude=./.git --exclude=./build --exclude='./.venv*' \
        --exclude='*.so' --exclude=__pycache__ --exclude='*.egg-info' . | tar -C "$dir/src" -x
    [ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --no-cache-dir --force-reinstall --no-deps "$dir/src"
    "$dir/venv/bin/pip" install --quiet "$dir/src[test]"
}

# run DIR PYTEST-ARGS... -- COMMAND-PREFIX...: pytest on DIR's build, run
# from DIR rather than the tree so that `import uringloop` finds the venv's
# build, after checking that it does.  A subshell: the cd and the exports
# stay in it.
run() (
    dir=$1 src=$1/src py=$1/venv/bin/python args=(); shift
    while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
    cd "$dir"
    # Python's own allocator would hide most heap errors from both tools;
    # PYTHONSAFEPATH keeps `python -m uringloop` in tests off the cwd too.
    export PYTHONMALLOC=malloc PYTHONSAFEPATH=1 PYTHONPATH=$src/scripts
    so=$("$@" "$py" -c 'import uringloop._uring as m; print(m.__file__)')
    [[ $so == "$dir/venv/"* ]] || { echo "wrong build imported: $so" >&2; exit 1; }
    echo "testing $so"
    # sanitize_select.py says which tests run, and why.
    "$@" "$py" -m pytest -p sanitize_select -p no:cacheprovider --rootdir="$src" \
        -c "$src/pyproject.toml" "${TESTS[@]/#/$src/}" "${args[@]}" "${EXTRA[@]}"
)

asan() {
    URINGLOOP_SANITIZE=address,undefined install "$WORK/asan"
    [[ $(ldd "$WORK"/asan/venv/lib/python3*/site-packages/uringloop/_uring*.so) == *libasan* ]] \
        || { echo "the build has no ASan in it" >&2; exit 1; }
    # Python is not built with ASan, so its runtime must be loaded first.
    # No leak check: CPython keeps much alive at exit on purpose.
    # --capture=sys: a report, written straight to fd 2, stays visible when
    # the sanitizer aborts the process in the middle of a test.
    run "$WORK/asan" -q --capture=sys -- env \
        LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
        ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
}

valgrind_() {
    command -v valgrind >/dev/null || { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
    install "$WORK/valgrind"
    rm -f "$WORK"/valgrind/report.*.xml
    # Errors go to XML with their origins, for valgrind_check.py to judge
    # (it explains the one CPython false positive it lets through); its
    # verdict, not valgrind's exit status, is the result.  A hang cannot be
    # interrupted while valgrind holds its lock (sanitize_select.py), hence
    # SIGKILL.
    local status=0
    run "$WORK/valgrind" -v -- timeout -s KILL 600 \
        valgrind --quiet --track-origins=yes --num-callers=30 \
        --suppressions="$ROOT/scripts/valgrind-python.supp" \
        --xml=yes --xml-file="$WORK/valgrind/report.%p.xml" || status=$?
    [ $status != 137 ] || echo "valgrind killed after 10 minutes: the last test above hung" >&2
    python3 scripts/valgrind_check.py "$WORK"/valgrind/report.*.xml && return $status
}

case $MODE in
    asan) asan ;;
    valgrind) valgrind_ ;;
    all) asan; valgrind_ ;;
    *) echo "usage: $0 [asan|valgrind|all] [pytest args]" >&2; exit 2 ;;
esac
