"""Real-guest boot benchmark: Kilonova's control plane around QEMU, against a plain qemu-system boot.

Boots the tiny test guest (tests/libvirt/hostsetup.py: Debian's cloud kernel + a busybox
initramfs) through ``POST /servers`` on a ``kilonova up`` with the libvirt driver, and measures the
time to QEMU's launch (libvirt opens its console log), to the guest running (libvirt's lifecycle
event once it has resumed QEMU's vCPUs), to ACTIVE and to the guest's first marker line on its serial
console (read from the console log file). ACTIVE is the server's ``OS-SRV-USG:launched_at``, which the
agent stamps as it sets ACTIVE, read once the marker is seen: the benchmark sends no API requests while
the guest boots (a client polling every few milliseconds would load the machine the guest runs on).

Between those boots it boots the same guest with a plain ``qemu-system-x86_64`` it starts itself,
with the virtual hardware Kilonova's domain gives QEMU (machine, CPU model, memory, a qcow2 overlay on
a raw base on virtio, a virtio NIC, the video card and a VNC server, the memory balloon, a serial port;
no USB, no default devices) and only the host plumbing different (the NIC on an isolated QEMU hub instead
of a tap on a bridge, the serial port on a pipe instead of a pty logged by virtlogd, VNC on a UNIX socket):
plain, Kilonova, plain, Kilonova, ... so that both see the same machine load. A first Kilonova boot
(image download and cache) is reported on its own. It prints medians with their spread (min-max) and
the control-plane overhead (difference and ratio).

    .venv/bin/python benchmarks/real_boot.py [--runs 5]

Needs root (it installs QEMU/libvirt from Debian packages when missing and starts the daemons).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kilonova.compute.virt.libvirt import host  # noqa: E402
from tests.cloud import new_cloud  # noqa: E402
from tests.libvirt import hostsetup  # noqa: E402

FIRST_MARKER = f"{hostsetup.MARKER} booted"
MEMORY_MB = 128


def raw_base(guest: hostsetup.Guest, workdir: Path) -> Path:
    """The guest's root image converted to raw, as Kilonova's image cache keeps it (force_raw_images)."""
    base = workdir / "plain-base.raw"
    if not base.exists():
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(guest.root), str(base)], check=True)
    return base


def plain_command(guest: hostsetup.Guest, virt_type: str, workdir: Path) -> list[str]:
    """qemu-system with the virtual hardware of Kilonova's domain for the benchmark's flavor and image.

    The same as the command line libvirt builds from Kilonova's domain XML (see
    /var/log/libvirt/qemu/instance-*.log) but for the host plumbing: the NIC is on an isolated QEMU hub
    (nothing leaves the process) instead of a tap on the network's bridge, the serial port writes to a
    pipe instead of a pty that virtlogd logs, the VNC server listens on a UNIX socket instead of a port.
    """
    overlay = workdir / "plain-disk.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(raw_base(guest, workdir)),
                    str(overlay), "1G"], check=True)  # the flavor's 1 GB root disk
    return ["qemu-system-x86_64", "-machine", "pc", "-accel", "kvm" if virt_type == "kvm" else "tcg",
            "-cpu", "host" if virt_type == "kvm" else "qemu64", "-m", str(MEMORY_MB), "-smp", "1",
            "-nodefaults", "-no-user-config", "-rtc", "base=utc", "-no-reboot",
            "-display", "none", "-vnc", f"unix:{workdir / 'vnc.sock'}", "-device", "cirrus-vga",
            "-serial", "stdio",
            "-drive", f"file={overlay},if=virtio,format=qcow2,cache=none",
            "-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-balloon-pci",
            "-kernel", str(guest.kernel), "-initrd", str(guest.initrd), "-append", guest.cmdline]


def plain_boot(guest: hostsetup.Guest, virt_type: str, workdir: Path, timeout: float = 60) -> tuple[float, float]:
    """Seconds from starting qemu-system to the first marker on its serial console, and QEMU's CPU seconds."""
    command = plain_command(guest, virt_type, workdir)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        buffer = b""
        while time.monotonic() - started < timeout:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            buffer += chunk
            if FIRST_MARKER.encode() in buffer:
                return time.monotonic() - started, process_cpu(psutil.Process(proc.pid))
        raise RuntimeError(f"plain qemu boot printed no marker:\n{buffer.decode(errors='replace')[-2000:]}")
    finally:
        proc.kill()
        proc.wait()


def process_cpu(process: psutil.Process) -> float:
    """CPU seconds of a process (all its threads) and of its children it has reaped."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class CpuMeter:
    """CPU seconds a process tree spends between ``start()`` and ``stop()`` (live children included)."""

    def __init__(self, root: psutil.Process):
        self.root = root

    def _tree(self) -> dict[int, float]:
        usage = {self.root.pid: process_cpu(self.root)}
        for child in self.root.children(recursive=True):
            try:
                times = child.cpu_times()
                usage[child.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return usage

    def start(self) -> None:
        self.before = self._tree()

    def stop(self) -> float:
        after = self._tree()
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in after.items())


def libvirt_daemons() -> psutil.Process:
    """libvirtd (QEMU is not its child: libvirt daemonises it)."""
    return next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "libvirtd")


class GuestsRunning:
    """When libvirt reports each domain running (its lifecycle event), without polling libvirt."""

    def __init__(self) -> None:
        import libvirt  # installed by hostsetup.prepare() when missing

        self.libvirt = libvirt
        libvirt.virEventRegisterDefaultImpl()
        self.connection = libvirt.openReadOnly("qemu:///system")
        self.running: dict[str, float] = {}
        self.connection.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None)
        threading.Thread(target=self._loop, daemon=True).start()

    def _event(self, _connection, domain, event: int, _detail: int, _opaque) -> None:
        if event in (self.libvirt.VIR_DOMAIN_EVENT_STARTED, self.libvirt.VIR_DOMAIN_EVENT_RESUMED):
            self.running.setdefault(domain.UUIDString(), time.monotonic())

    def _loop(self) -> None:
        while True:
            self.libvirt.virEventRunDefaultImpl()


def upload(images: httpx.Client, name: str, path: Path, disk_format: str, **properties: str) -> str:
    container = disk_format if disk_format in ("aki", "ari") else "bare"
    created = images.post("/v2/images", json={"name": name, "disk_format": disk_format,
                                              "container_format": container, "visibility": "public",
                                              **properties})
    created.raise_for_status()
    image_id = created.json()["id"]
    images.put(f"/v2/images/{image_id}/file", content=path.read_bytes(),
               headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return image_id


def wait_for(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError


@dataclass
class Boot:
    """A boot through Kilonova: seconds from POST /servers, and CPU seconds from POST to the first marker."""
    to_qemu: float       # libvirt launches QEMU (it has virtlogd open the console log)
    to_running: float    # libvirt has resumed the vCPUs (its lifecycle event)
    to_active: float     # the server's launched_at
    to_marker: float     # the guest's first marker in the console log
    kilonova_cpu: float  # the cloud's processes (API, conductor, scheduler, agent, dataplane helpers)
    libvirtd_cpu: float
    qemu_cpu: float


class KilonovaBoots:
    """A ``kilonova up`` with the libvirt driver and the guest's images, booting one server at a time."""

    def __init__(self, guest: hostsetup.Guest):
        self.cloud = new_cloud(hosts=1, config={"compute": {"compute_driver": "libvirt"},
                                                "DEFAULT": {"host": "kilonova-bench"}})
        os.chmod(self.cloud.workdir, 0o755)
        self.guest = guest
        self.guests = GuestsRunning()

    def __enter__(self) -> "KilonovaBoots":
        cloud, guest = self.cloud, self.guest
        try:
            cloud.start(timeout=120)
            images, self.compute = cloud.http("image"), cloud.http("compute")
            kernel = upload(images, "bench-kernel", guest.kernel, "aki")
            ramdisk = upload(images, "bench-ramdisk", guest.initrd, "ari")
            self.image = upload(images, "bench-guest", guest.root, "qcow2", kernel_id=kernel, ramdisk_id=ramdisk,
                                os_command_line=guest.cmdline)
            self.compute.post("/flavors", json={"flavor": {"name": "bench.tiny", "ram": MEMORY_MB, "vcpus": 1,
                                                           "disk": 1, "id": "bench.tiny"}}).raise_for_status()
            self.net = cloud.http("network").get("/v2.0/networks", params={"name": "private"}).json()[
                "networks"][0]["id"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cloud.stop()
        shutil.rmtree(self.cloud.workdir, ignore_errors=True)

    def boot(self, name: str) -> Boot:
        """One server from POST /servers to its first marker, timed (see ``Boot``); then deleted."""
        compute = self.compute
        kilonova_cpu, libvirtd_cpu = CpuMeter(psutil.Process(self.cloud.proc.pid)), CpuMeter(libvirt_daemons())
        kilonova_cpu.start()
        libvirtd_cpu.start()
        posted_at = datetime.now(timezone.utc)
        started = time.monotonic()
        response = compute.post("/servers", json={"server": {
            "name": name, "flavorRef": "bench.tiny", "imageRef": self.image, "networks": [{"uuid": self.net}]}})
        response.raise_for_status()
        uuid = response.json()["server"]["id"]
        log = self.cloud.state_dir / "instances" / uuid / "console.log"
        wait_for(log.exists, 120, 0.005)  # libvirt has virtlogd open it just before it starts QEMU
        to_qemu = time.monotonic() - started
        wait_for(lambda: FIRST_MARKER.encode() in log.read_bytes(), 120, 0.01)
        to_marker = time.monotonic() - started
        cpu = (kilonova_cpu.stop(), libvirtd_cpu.stop(),
               process_cpu(psutil.Process(int(Path(f"/run/libvirt/qemu/instance-{uuid}.pid").read_text()))))

        def launched() -> str | None:
            server = compute.get(f"/servers/{uuid}").json()["server"]
            if server["status"] == "ERROR":
                raise RuntimeError(str(server.get("fault")))
            return server["OS-SRV-USG:launched_at"] if server["status"] == "ACTIVE" else None

        launched_at = datetime.fromisoformat(wait_for(launched, 120, 0.1)).replace(tzinfo=timezone.utc)
        boot = Boot(to_qemu, self.guests.running[uuid] - started, (launched_at - posted_at).total_seconds(),
                    to_marker, *cpu)
        compute.delete(f"/servers/{uuid}").raise_for_status()
        wait_for(lambda: compute.get(f"/servers/{uuid}").status_code == 404, 120, 0.1)
        return boot


def spread(values: list[float]) -> str:
    """median (min-max)"""
    return f"{statistics.median(values):.2f}s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of boots: one plain, one through Kilonova")
    args = parser.parse_args()
    guest = hostsetup.prepare()
    virt_type, why = host.choose_virt_type("")
    print(f"guest: {guest.kernel.parent.name}; accelerator: {virt_type} ({why}); load {os.getloadavg()[0]:.1f}")
    plain: list[tuple[float, float]] = []
    boots: list[Boot] = []
    with KilonovaBoots(guest) as kilonova, tempfile.TemporaryDirectory() as tmp:
        first = kilonova.boot("bench-first")
        print(f"  first Kilonova boot (image download, verification and conversion): QEMU launched "
              f"{first.to_qemu:.2f}s, running {first.to_running:.2f}s, ACTIVE {first.to_active:.2f}s, "
              f"marker {first.to_marker:.2f}s", flush=True)
        for run in range(1, args.runs + 1):
            plain.append(plain_boot(guest, virt_type, Path(tmp)))
            boots.append(kilonova.boot(f"bench-{run}"))
            b = boots[-1]
            print(f"  pair {run}: plain marker {plain[-1][0]:.2f}s (QEMU {plain[-1][1]:.2f} CPU s) | Kilonova QEMU "
                  f"launched {b.to_qemu:.2f}s, running {b.to_running:.2f}s, ACTIVE {b.to_active:.2f}s, marker "
                  f"{b.to_marker:.2f}s (CPU s: Kilonova {b.kilonova_cpu:.2f}, libvirtd {b.libvirtd_cpu:.2f}, "
                  f"QEMU {b.qemu_cpu:.2f}) load {os.getloadavg()[0]:.1f}", flush=True)
    markers = [b.to_marker for b in boots]
    plain_markers = [p[0] for p in plain]
    overheads = [ours - theirs for ours, theirs in zip(markers, plain_markers)]
    print(f"Kilonova, warm cache, median (min-max) of {len(boots)}: POST /servers -> QEMU launched "
          f"{spread([b.to_qemu for b in boots])}, -> guest running {spread([b.to_running for b in boots])}, "
          f"-> ACTIVE {spread([b.to_active for b in boots])}, -> first marker {spread(markers)}")
    print(f"  libvirt's start (QEMU launched -> guest running) {spread([b.to_running - b.to_qemu for b in boots])}, "
          f"guest running -> first marker {spread([b.to_marker - b.to_running for b in boots])}")
    print(f"  CPU seconds, POST -> marker: Kilonova {spread([b.kilonova_cpu for b in boots])}, libvirtd "
          f"{spread([b.libvirtd_cpu for b in boots])}, QEMU {spread([b.qemu_cpu for b in boots])}")
    print(f"plain qemu-system, median (min-max) of {len(plain)}: start -> first marker {spread(plain_markers)}, "
          f"QEMU CPU seconds {spread([p[1] for p in plain])}")
    baseline = statistics.median(plain_markers)
    print(f"control-plane overhead (Kilonova marker - plain marker): median {statistics.median(overheads):+.2f}s "
          f"(pairs: {min(overheads):+.2f} to {max(overheads):+.2f}); ratio of medians "
          f"{statistics.median(markers) / baseline:.2f}x; of which POST -> QEMU launched "
          f"{statistics.median(b.to_qemu for b in boots):.2f}s and libvirt's start "
          f"{statistics.median(b.to_running - b.to_qemu for b in boots):.2f}s")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
