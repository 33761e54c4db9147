"""Facts about this host: which acceleration a guest can use, its capacity and its traits."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

import os_traits

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41

# CPU flags (as /proc/cpuinfo names them) whose os-traits name is not simply the upper-cased flag.
_FLAG_TRAITS = {"pni": "SSE3", "sse4_1": "SSE41", "sse4_2": "SSE42", "aes": "AESNI", "lm": "LM",
                "avx512f": "AVX512F", "sha_ni": "SHA", "fma": "FMA3", "abm": "ABM", "bmi1": "BMI"}

# Capabilities every libvirt host of this driver has, and only those it implements: virtio NICs and disks,
# hw_video_model cirrus or vga, qcow2/raw/ami disk images and aki/ari kernels and ramdisks. (No interface
# attach, no ISO boot, no config drive regeneration: those traits would draw requests it cannot serve.)
COMPUTE_TRAITS = [
    "COMPUTE_NODE", "COMPUTE_NET_VIF_MODEL_VIRTIO", "COMPUTE_STORAGE_BUS_VIRTIO",
    "COMPUTE_GRAPHICS_MODEL_VGA", "COMPUTE_GRAPHICS_MODEL_CIRRUS",
    "COMPUTE_IMAGE_TYPE_QCOW2", "COMPUTE_IMAGE_TYPE_RAW", "COMPUTE_IMAGE_TYPE_AKI", "COMPUTE_IMAGE_TYPE_ARI",
    "COMPUTE_IMAGE_TYPE_AMI",
]


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def kvm_usability(flags: set[str] | None = None, device: str = "/dev/kvm") -> tuple[bool, str]:
    """Whether a KVM guest can run here, and why (or why not)."""
    if not os.path.exists(device):
        return False, f"{device} does not exist"
    flags = cpu_flags() if flags is None else flags
    if not flags & {"vmx", "svm"}:
        return False, "the CPU offers no hardware virtualisation (no vmx/svm flag in /proc/cpuinfo)"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"{device} cannot be opened: {exc.strerror}"
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != 12:
            return False, f"{device} speaks an unknown KVM API"
        vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        try:
            os.close(fcntl.ioctl(vm, KVM_CREATE_VCPU, 0))
        finally:
            os.close(vm)
    except OSError as exc:
        return False, f"{device} refuses to create a virtual machine: {exc.strerror}"
    finally:
        os.close(fd)
    return True, f"{device} creates virtual machines and the CPU has {'vmx' if 'vmx' in flags else 'svm'}"


def choose_virt_type(configured: str, flags: set[str] | None = None, device: str = "/dev/kvm") -> tuple[str, str]:
    """(virt_type, why): the configured one, else kvm when usable, else qemu (TCG)."""
    if configured:
        if configured not in ("kvm", "qemu"):
            raise ValueError(f"[libvirt] virt_type must be kvm or qemu, not {configured!r}")
        return configured, "set in [libvirt] virt_type"
    usable, why = kvm_usability(flags, device)
    return ("kvm", why) if usable else ("qemu", f"software emulation (TCG): {why}")


def cpu_traits(flags: set[str]) -> list[str]:
    known = set(os_traits.get_traits("HW_CPU_X86_"))
    traits = set()
    for flag in flags:
        name = "HW_CPU_X86_" + _FLAG_TRAITS.get(flag, flag.upper())
        if name in known:
            traits.add(name)
    return sorted(traits)


def compute_traits() -> list[str]:
    known = set(os_traits.get_traits("COMPUTE_"))
    return sorted(trait for trait in COMPUTE_TRAITS if trait in known)


def memory_mb(meminfo: str | None = None) -> int:
    text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def disk_gb(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize // (1024 ** 3)


def free_hugepages() -> dict[int, int]:
    """Free huge pages by size in KiB."""
    result: dict[int, int] = {}
    for entry in Path("/sys/kernel/mm/hugepages").glob("hugepages-*kB"):
        size = int(entry.name.removeprefix("hugepages-").removesuffix("kB"))
        result[size] = int((entry / "free_hugepages").read_text())
    return result
