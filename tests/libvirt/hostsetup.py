"""Prepare this machine for real-guest tests, from Debian packages only.

* installs QEMU, libvirt, dnsmasq and genisoimage when they are missing (apt-get);
* makes sure libvirt-python is importable by the interpreter running the tests;
* fixes ``/dev/kvm``'s group and mode (libvirt probes very slowly without access);
* starts ``virtlogd -d`` and ``libvirtd -d`` itself (there is no systemd);
* builds a tiny guest from Debian's cloud kernel and busybox-static: an initramfs
  whose init prints a marker on the serial console, takes a DHCP lease, mounts
  the config drive (label ``config-2``) and prints its meta_data and user_data.

Everything built is cached under ``$KILONOVA_TEST_CACHE`` (default
``/var/cache/kilonova-tests``) and reused by later runs.

``python -m tests.libvirt.hostsetup`` does it all and prints where the guest is.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("KILONOVA_TEST_CACHE", "/var/cache/kilonova-tests"))
MARKER = "KILONOVA-GUEST-MARKER"

# What must be there -> the Debian package that brings it.
REQUIRED = {
    "/usr/bin/qemu-system-x86_64": "qemu-system-x86",
    "/usr/bin/qemu-img": "qemu-utils",
    "/usr/sbin/libvirtd": "libvirt-daemon-system",
    "/usr/sbin/virtlogd": "libvirt-daemon-system",
    "/usr/bin/virsh": "libvirt-clients",
    "/usr/sbin/dnsmasq": "dnsmasq-base",
    "/usr/bin/genisoimage": "genisoimage",
    "/usr/sbin/ip": "iproute2",
    "/usr/bin/ping": "iputils-ping",
    "/usr/bin/arping": "iputils-arping",
    "/usr/sbin/nft": "nftables",
    "/usr/sbin/conntrack": "conntrack",
    "/usr/include/libvirt/libvirt.h": "libvirt-dev",
    "/usr/bin/pkg-config": "pkg-config",
    "/usr/bin/gcc": "gcc",
}

# Kernel modules the guest loads (their dependencies are found in the modules and loaded first).
GUEST_MODULES = ["virtio_pci", "virtio_net", "virtio_blk", "isofs", "evdev", "button"]


class HostSetupError(RuntimeError):
    """This machine cannot run real guests; the message says what is missing."""


def _run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise HostSetupError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    return result


# ---------------------------------------------------------------- packages and daemons

def ensure_packages() -> list[str]:
    """apt-get install whatever of REQUIRED is missing; returns the packages installed."""
    missing = sorted({package for path, package in REQUIRED.items() if not os.path.exists(path)})
    if not missing:
        return []
    if os.geteuid() != 0:
        raise HostSetupError(f"missing Debian packages {', '.join(missing)} and not root to install them")
    if not shutil.which("apt-get"):
        raise HostSetupError(f"missing Debian packages {', '.join(missing)} and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update"], env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    return missing


def ensure_libvirt_python(python: str = sys.executable) -> None:
    """libvirt-python in the interpreter that runs Kilonova (built against libvirt-dev)."""
    if subprocess.run([python, "-c", "import libvirt"], capture_output=True).returncode == 0:
        return
    _run([python, "-m", "pip", "install", "--quiet", "libvirt-python"])


def fix_kvm_permissions() -> None:
    if not os.path.exists("/dev/kvm"):
        return
    with_group = subprocess.run(["getent", "group", "kvm"], capture_output=True).returncode == 0
    if with_group:
        shutil.chown("/dev/kvm", group="kvm")
    os.chmod("/dev/kvm", 0o660 if with_group else 0o666)


def _libvirtd_answers(uri: str = "qemu:///system") -> bool:
    result = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, text=True, timeout=60)
    return result.returncode == 0


def ensure_daemons(timeout: float = 60) -> None:
    """Start virtlogd and libvirtd as daemons unless they already answer."""
    if subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True).returncode != 0:
        _run(["virtlogd", "-d"])
    if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode != 0:
        _run(["libvirtd", "-d"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists("/run/libvirt/libvirt-sock") and _libvirtd_answers():
            return
        time.sleep(0.2)
    raise HostSetupError("libvirtd did not answer on qemu:///system within {timeout:.0f}s")


# ---------------------------------------------------------------- the guest

@dataclass
class Guest:
    kernel: Path
    initrd: Path
    root: Path       # a small qcow2 root disk (the image Glance stores, with kernel_id/ramdisk_id)
    cmdline: str


GUEST_INIT = r"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko || echo "@MARKER@ insmod $m failed"; done
echo "@MARKER@ booted kernel $(uname -r)"
# What the guest was given (a resize shows here) and how it was booted (a rescue image says so).
memory=$(sed -n 's/^MemTotal: *//p' /proc/meminfo | tr -dc 0-9)
echo "@MARKER@ hardware cpus=$(grep -c ^processor /proc/cpuinfo) memtotal-kb=$memory"
echo "@MARKER@ cmdline $(cat /proc/cmdline)"
# A note at 1 MiB into the root disk says how the previous boot ended: the power button handler writes
# "acpi <mac>" just before it powers off; each boot writes "unclean <mac>" first (so a destroy leaves that).
note=$(dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | tr -d '\000' | head -n 1)
echo "@MARKER@ disk-note ${note:-empty}"
/etc/note.sh unclean
hostname kilonova-guest
acpid -c /etc/acpi -l /var/log/acpid.log -p /var/run/acpid.pid || echo "@MARKER@ acpid failed"
ip link set lo up
ip link set eth0 up 2>/dev/null && udhcpc -i eth0 -s /etc/udhcpc.sh -O staticroutes -q -f -n -t 20 -T 1 \
    || echo "@MARKER@ dhcp failed"
mkdir -p /mnt/config
dev=$(findfs LABEL=config-2 2>/dev/null)
if [ -n "$dev" ] && mount -t iso9660 -o ro "$dev" /mnt/config; then
    echo "@MARKER@ config-drive $dev"
    echo "@MARKER@ meta_data $(cat /mnt/config/openstack/latest/meta_data.json)"
    [ -f /mnt/config/openstack/latest/user_data ] && \
        echo "@MARKER@ user_data $(cat /mnt/config/openstack/latest/user_data)"
    echo "@MARKER@ network_data $(cat /mnt/config/openstack/latest/network_data.json)"
    # A user-data script runs, as cloud-init runs one, in the background (its output on the console).
    if [ "$(head -c 2 /mnt/config/openstack/latest/user_data 2>/dev/null)" = "#!" ]; then
        cp /mnt/config/openstack/latest/user_data /tmp/user-data && chmod +x /tmp/user-data
        /tmp/user-data > /dev/console 2>&1 &
        echo "@MARKER@ user-data script started"
    fi
else
    echo "@MARKER@ no config drive"
fi
# busybox-static's wget resolves names through glibc NSS and crashes without it: plain HTTP over nc.
meta=$(printf 'GET /openstack/latest/meta_data.json HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' \
    | nc -w 5 169.254.169.254 80 | sed '1,/^\r*$/d')
echo "@MARKER@ metadata-api ${meta:-unreachable}"
# Every disk: its size in 512-byte sectors and the swap signature where there is one; and which disk
# holds the file system labelled ephemeral0 (busybox-static has findfs but no blkid).
for d in /sys/block/vd*; do
    n=${d##*/}
    sig=$(dd if=/dev/$n bs=1 skip=4086 count=10 2>/dev/null | tr -dc 'A-Z0-9')
    echo "@MARKER@ disk $n sectors=$(cat $d/size) signature=${sig:-none}"
done
echo "@MARKER@ label ephemeral0 $(findfs LABEL=ephemeral0 2>/dev/null || echo none)"
echo "@MARKER@ ready"
# A heartbeat with the time since boot: after a live migration it goes on counting (no reboot).
# Its global IPv6 addresses (SLAAC from router advertisements comes when it comes), each time they change.
# A disk hot-plugged later (a volume) gets its note read or written (/etc/volume.sh).
v6=""
disks=$(ls /sys/block | grep '^vd' | tr '\n' ' ')
while true; do
    sleep 2
    now_disks=$(ls /sys/block | grep '^vd' | tr '\n' ' ')
    for n in $now_disks; do
        case " $disks " in *" $n "*) ;; *) /etc/volume.sh "$n" ;; esac
    done
    disks=$now_disks
    now=$(ip -6 -o addr show dev eth0 scope global 2>/dev/null | awk '{print $4}' | tr '\n' ' ')
    [ "$now" != "$v6" ] && v6=$now && echo "@MARKER@ ipv6 $now"
    echo "@MARKER@ alive $(cut -d' ' -f1 /proc/uptime)"
done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    bound|renew)
        ip -4 addr flush dev "$interface"  # its IPv6 addresses (link-local, SLAAC) stay
        ip addr add "$ip/${mask:-24}" dev "$interface"
        if [ -n "$staticroutes" ]; then  # option 121 (RFC 3442): it replaces the router option when sent
            set -- $staticroutes
            while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
        elif [ -n "$router" ]; then
            ip route replace default via "${router%% *}" dev "$interface"
        fi
        echo "@MARKER@ dhcp $interface $ip/${mask:-24} router ${router:-none}"
        ;;
esac
exit 0
"""

POWER_BUTTON = """#!/bin/sh
echo "@MARKER@ power button: shutting down" > /dev/console
/etc/note.sh acpi
poweroff -f
"""

# A disk plugged in after boot (a volume): the note on its first sector is printed, or, on a blank one,
# "KILONOVA-VOLUME-NOTE from <eth0's MAC>" is written there (and flushed) and printed.
VOLUME_NOTE = """#!/bin/sh
note=$(dd if=/dev/$1 bs=512 count=1 2>/dev/null | tr -d '\\000' | head -n 1)
case "$note" in
    KILONOVA-VOLUME-NOTE*) echo "@MARKER@ volume $1 holds: $note" ;;
    *) printf 'KILONOVA-VOLUME-NOTE from %s\\n' "$(cat /sys/class/net/eth0/address 2>/dev/null)" > /tmp/vnote
       dd if=/tmp/vnote of=/dev/$1 bs=512 conv=notrunc 2>/dev/null
       sync
       echo "@MARKER@ volume $1 written: $(head -n 1 /tmp/vnote)" ;;
esac
"""

# Writes "<word> <eth0's MAC>" as the first line at 1 MiB into the root disk, and flushes it.
DISK_NOTE = """#!/bin/sh
printf '%s %s\\n' "$1" "$(cat /sys/class/net/eth0/address 2>/dev/null)" > /tmp/note
dd if=/tmp/note of=/dev/vda bs=512 seek=2048 2>/dev/null
sync
"""


def _apt_download(package: str, into: Path) -> Path:
    _run(["apt-get", "download", package], cwd=into)
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise HostSetupError(f"apt-get download {package} produced no .deb")
    return found[-1]


def _kernel_package() -> str:
    """The versioned cloud kernel package the linux-image-cloud-amd64 metapackage points at."""
    result = _run(["apt-cache", "depends", "linux-image-cloud-amd64"])
    for line in result.stdout.splitlines():
        match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", line)
        if match:
            return match.group(1)
    raise HostSetupError("apt-cache knows no linux-image-cloud-amd64 (run apt-get update?)")


def _module_path(tree: Path, name: str) -> Path:
    for candidate in tree.glob("lib/modules/*/kernel/**/*.ko"):
        if candidate.stem == name or candidate.stem == name.replace("_", "-"):
            return candidate
    raise HostSetupError(f"kernel module {name} not found in the cloud kernel package")


def _modules_in_order(tree: Path, names: list[str]) -> list[tuple[str, bytes]]:
    """``names`` and what they depend on (their ``depends=`` modinfo), dependencies first."""
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        data = _module_path(tree, name).read_bytes()
        match = re.search(rb"\0depends=([^\0]*)\0", data)
        for dependency in (match.group(1).decode().split(",") if match else []):
            if dependency:
                visit(dependency)
        ordered.append((name, data))

    for name in names:
        visit(name)
    return ordered


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of (path, mode, data) entries (symlinks: data is the target)."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{value:08x}" for value in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        out.write(header.encode() + encoded)
        pad(110 + len(encoded))
        out.write(data)
        pad(len(data))
    return out.getvalue()


def _build_initrd(busybox: bytes, modules: list[tuple[str, bytes]]) -> bytes:
    directory, regular, link = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFLNK | 0o777
    entries: list[tuple[str, int, bytes]] = [(d, directory, b"") for d in (
        "bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc", "etc/acpi", "etc/acpi/PWRF", "lib",
        "lib/modules", "root", "usr", "usr/bin", "usr/sbin", "var", "var/log", "var/run", "run")]
    entries.append(("bin/busybox", regular, busybox))
    entries.append(("bin/sh", link, b"busybox"))
    entries.append(("init", regular, GUEST_INIT.replace("@MARKER@", MARKER).encode()))
    entries.append(("etc/udhcpc.sh", regular, UDHCPC_SCRIPT.replace("@MARKER@", MARKER).encode()))
    entries.append(("etc/volume.sh", regular, VOLUME_NOTE.replace("@MARKER@", MARKER).encode()))
    entries.append(("etc/note.sh", regular, DISK_NOTE.encode()))
    entries.append(("etc/acpi/PWRF/00000080", regular, POWER_BUTTON.replace("@MARKER@", MARKER).encode()))
    entries.append(("etc/modules", stat.S_IFREG | 0o644, "\n".join(name for name, _ in modules).encode() + b"\n"))
    for name, data in modules:
        entries.append((f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, data))
    return gzip.compress(_cpio_newc(entries), compresslevel=6, mtime=0)


def _recipe_digest() -> str:
    """Changes whenever this builder changes, so an edited recipe never reuses an old guest."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def build_guest(cache_dir: Path = CACHE_DIR) -> Guest:
    """The tiny guest, built once from the cloud kernel and busybox-static packages and cached."""
    kernel_package = _kernel_package()
    target = cache_dir / f"guest-{kernel_package.removeprefix('linux-image-')}-{_recipe_digest()}"
    cmdline = "console=ttyS0 quiet panic=-1"
    guest = Guest(target / "vmlinuz", target / "initrd.gz", target / "root.qcow2", cmdline)
    if all(path.exists() for path in (guest.kernel, guest.initrd, guest.root)):
        return guest
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        work = Path(tmp)
        tree = work / "tree"
        for package in (kernel_package, "busybox-static"):
            _run(["dpkg-deb", "-x", str(_apt_download(package, work)), str(tree)])
        kernels = sorted(tree.glob("boot/vmlinuz-*"))
        if not kernels:
            raise HostSetupError(f"{kernel_package} has no boot/vmlinuz")
        modules = _modules_in_order(tree, GUEST_MODULES)
        build = work / "out"
        build.mkdir()
        shutil.copyfile(kernels[-1], build / "vmlinuz")
        (build / "initrd.gz").write_bytes(_build_initrd((tree / "bin/busybox").read_bytes(), modules))
        _run(["qemu-img", "create", "-q", "-f", "qcow2", str(build / "root.qcow2"), "64M"])
        for path in build.iterdir():
            os.chmod(path, 0o644)
        os.chmod(build, 0o755)
        if target.exists():
            shutil.rmtree(target)
        build.rename(target)
    for older in cache_dir.glob("guest-*"):  # guests of earlier recipes
        if older != target:
            shutil.rmtree(older, ignore_errors=True)
    return guest


# ---------------------------------------------------------------- all of it

def prepare(python: str = sys.executable) -> Guest:
    """Everything a real-guest test needs; raises HostSetupError saying what is missing."""
    if sys.platform != "linux":
        raise HostSetupError("real guests need Linux (libvirt + QEMU)")
    if os.geteuid() != 0:
        raise HostSetupError("real-guest tests need root (to start libvirtd and create bridges and namespaces)")
    ensure_packages()
    ensure_libvirt_python(python)
    fix_kvm_permissions()
    ensure_daemons()
    return build_guest()


if __name__ == "__main__":
    started = time.monotonic()
    built = prepare()
    print(f"guest ready in {time.monotonic() - started:.1f}s: kernel {built.kernel}, initrd {built.initrd}, "
          f"root {built.root}, cmdline {built.cmdline!r}")
