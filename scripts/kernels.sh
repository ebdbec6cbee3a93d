#!/usr/bin/env bash
# The test suite on real kernels, not masks: Debian's own kernels booted
# under qemu, each running this checkout's tests in a Debian 12 guest.
#
#   bash scripts/kernels.sh                    # every kernel below, the whole suite
#   bash scripts/kernels.sh 6.1                # one kernel
#   PYTEST_ARGS="tests/test_streams.py" bash scripts/kernels.sh 6.12
#
# Kernels: 5.10 (Debian 11, whose io_uring is a backport of 5.15's: a plain
# ring without multishot receives or buffer rings), 6.1 (Debian 12) and
# 6.12 (Debian 13).  A kernel that refuses uringloop runs /refused.py
# instead: the UnsupportedError and fallback=True.  Needs root, 4 GB of disk and
# network access to deb.debian.org and PyPI; it installs qemu and
# debootstrap with apt-get where missing.  Not part of .ci/run: the guests
# run under qemu's software CPU (KVM, where the host offers it, is used),
# so the whole suite takes about an hour on 2 cores, and its tests that
# move tens of MiB over TLS or time themselves fail there on every loop.  Each kernel's report goes to
# $WORK/<kernel>/ (uname, `python -m uringloop info`, pytest's output).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${WORK:-/tmp/uringloop-kernels}
MIRROR=http://deb.debian.org/debian
declare -A SUITE=([5.10]=bullseye [6.1]=bookworm [6.12]=trixie)
KERNELS=("$@")
[ ${#KERNELS[@]} -gt 0 ] || KERNELS=(5.10 6.1 6.12)
PYTEST_ARGS=${PYTEST_ARGS:-"-q -n 2 -p no:cacheprovider tests --ignore=tests/cpython"}

need() { command -v "$1" >/dev/null || apt-get install -y -q "$2" >/dev/null; }
need qemu-system-x86_64 qemu-system-x86
need debootstrap debootstrap
need mkfs.ext4 e2fsprogs

# The newest linux-image-<version>*-amd64 of a Debian suite, as a pool path.
kernel_deb() {
    curl -fsS "$MIRROR/dists/$2/main/binary-amd64/Packages.xz" | xz -dc |
        awk -v want="^Package: linux-image-$1[.][0-9]+-[0-9]+-amd64\$|^Package: linux-image-$1[.][0-9]+[+]deb[0-9]+-amd64\$" \
            '$0 ~ want {p=1} p && /^Filename:/ {print $2; p=0}' | sort -V | tail -1
}

# A Debian 12 guest with Python 3.11, the project and its test extras,
# and each asked-for kernel with its initramfs.
build_root() {
    local root=$WORK/root
    if [ ! -x "$root/root/venv/bin/python" ]; then
        rm -rf "$root"
        debootstrap --variant=minbase \
            --include=linux-image-amd64,python3,python3-venv,python3-dev,gcc,libc6-dev,libssl-dev,procps,iproute2,kmod,udev \
            bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log"
        # the host's CAs, for a proxy that re-signs PyPI's certificates
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    fi
    rm -rf "$root/root/uringloop" && mkdir -p "$root/root/uringloop"
    git -C "$REPO" archive HEAD | tar -x -C "$root/root/uringloop"
    for k in "${KERNELS[@]}"; do
        ls "$root"/boot/vmlinuz-"$k".* >/dev/null 2>&1 && continue
        local deb; deb=$(kernel_deb "$k" "${SUITE[$k]}")
        curl -fsS -o "$root/tmp/kernel.deb" "$MIRROR/$deb"
        in_root "dpkg -i /tmp/kernel.deb && rm /tmp/kernel.deb" >"$WORK/dpkg-$k.log"
    done
    in_root "update-ca-certificates >/dev/null 2>&1; export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
        [ -x /root/venv/bin/python ] || python3 -m venv /root/venv
        cd /root/uringloop && /root/venv/bin/pip install -q -e '.[test]'" >"$WORK/pip.log" 2>&1
    cat >"$root/init-tests" <<'EOF'
#!/bin/sh
# PID 1 of the guest: the report, then power off.
mount -t proc proc /proc; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run
ip link set lo up; hostname guest; ulimit -n 65536
export HOME=/root PATH=/root/venv/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8
rm -rf /report; mkdir /report; cd /root/uringloop
uname -a >/report/uname.txt
python -m uringloop info >/report/info.txt 2>&1
if python -c "import uringloop; uringloop.new_event_loop().close()" 2>/dev/null; then
    timeout 3000 python -m pytest $(cat /pytest-args) >/report/pytest.txt 2>&1
else
    python /refused.py >/report/pytest.txt 2>&1      # a kernel uringloop turns down
fi
echo "exit status $?" >>/report/pytest.txt
sync; echo o >/proc/sysrq-trigger
EOF
    cat >"$root/refused.py" <<'EOF'
"""On a kernel too old for uringloop: the refusal a user sees, and the
opt-in fallback to asyncio's loop."""
import asyncio
import warnings

import uringloop

try:
    uringloop.new_event_loop()
except uringloop.UnsupportedError as exc:
    print(f"refused as documented: UnsupportedError errno={exc.errno}: {exc.strerror}")
else:
    raise SystemExit("FAILED: a loop was made on a kernel uringloop does not support")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    loop = uringloop.new_event_loop(fallback=True)
assert type(loop) is asyncio.SelectorEventLoop, loop
assert any(w.category is RuntimeWarning for w in caught), caught
assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
loop.close()
print("fallback=True: asyncio's SelectorEventLoop, with a RuntimeWarning: passed")
EOF
    chmod +x "$root/init-tests"
    echo "$PYTEST_ARGS" >"$root/pytest-args"
}

in_root() {
    local root=$WORK/root
    mount --bind /proc "$root/proc"; mount --bind /dev "$root/dev"; mount --bind /sys "$root/sys"
    local rc=0
    chroot "$root" bash -c "$1" || rc=$?
    umount "$root/proc" "$root/dev" "$root/sys"
    return $rc
}

# Boot kernel $1 on a fresh disk made from the root, wait, copy the report out.
run_kernel() {
    local k=$1 root=$WORK/root out=$WORK/$1 disk=$WORK/disk.img accel=tcg,thread=multi cpu=max
    local vmlinuz initrd; vmlinuz=$(ls "$root"/boot/vmlinuz-"$k".* | sort -V | tail -1)
    initrd=${vmlinuz/vmlinuz/initrd.img}
    # KVM where it works: a nested one that cannot boot a guest falls back.
    if [ -w /dev/kvm ] && timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 256M \
            -kernel "$vmlinuz" -append "console=ttyS0 panic=-1" -nographic -no-reboot 2>&1 |
            grep -q "Linux version"; then
        accel=kvm cpu=host
    fi
    rm -f "$disk"; truncate -s 6G "$disk"; mkfs.ext4 -q -F -d "$root" "$disk"
    timeout 3600 qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 8G -smp 2 \
        -kernel "$vmlinuz" -initrd "$initrd" \
        -append "root=/dev/vda rw console=ttyS0 init=/init-tests panic=-1 quiet" \
        -drive "file=$disk,format=raw,if=virtio" -nographic -no-reboot >"$WORK/console-$k.log" 2>&1 || true
    rm -rf "$out"; mkdir -p "$out"
    for f in uname.txt info.txt pytest.txt; do
        debugfs -R "cat /report/$f" "$disk" >"$out/$f" 2>/dev/null
    done
    echo "=== $k: $(cat "$out/uname.txt")"
    tail -3 "$out/pytest.txt"
}

mkdir -p "$WORK"
build_root
for k in "${KERNELS[@]}"; do run_kernel "$k"; done
