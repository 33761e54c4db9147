"""Domain XML from a flavor, the image's properties and the instance's disks and ports.

``DomainSpec`` holds everything the XML depends on; ``build_xml`` is a pure function
of it, so it is unit-tested without libvirt. Flavor extra specs the host cannot
honour raise ``Unsupported`` with the reason (the agent turns it into a build failure).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "https://kilonova.dev/xmlns/libvirt/instance/1.0"

# quota:* extra specs -> the XML element that carries them (<cputune>, each disk's <iotune>, <blkiotune>,
# each interface's <bandwidth>); any other quota:* key is refused rather than silently ignored.
_CPU_TUNABLES = {"quota:cpu_shares": "shares", "quota:cpu_period": "period", "quota:cpu_quota": "quota"}
_DISK_TUNABLES = {"quota:disk_read_bytes_sec": "read_bytes_sec", "quota:disk_write_bytes_sec": "write_bytes_sec",
                  "quota:disk_total_bytes_sec": "total_bytes_sec", "quota:disk_read_iops_sec": "read_iops_sec",
                  "quota:disk_write_iops_sec": "write_iops_sec", "quota:disk_total_iops_sec": "total_iops_sec"}
_VIF_TUNABLES = {f"quota:vif_{direction}_{kind}": (direction, kind)
                 for direction in ("inbound", "outbound") for kind in ("average", "peak", "burst")}
_KNOWN_QUOTAS = {*_CPU_TUNABLES, *_DISK_TUNABLES, *_VIF_TUNABLES, "quota:disk_weight"}
_VIDEO_MODELS = ("cirrus", "vga")


class Unsupported(Exception):
    """The flavor or image asks for something this host cannot give."""


@dataclass
class Disk:
    path: str                   # a file; with ``protocol``, the export's name
    target: str                 # vda, vdb, ...
    format: str = "qcow2"       # qcow2 | raw
    readonly: bool = False
    cache: str = "none"
    protocol: str = ""          # a network disk (a volume served by another machine): "nbd"
    hosts: list[dict] = field(default_factory=list)  # its servers: [{"name": address, "port": "10809"}]
    serial: str = ""            # a volume's id: the guest sees it, and a move finds the volume's disk by it


def disk_type(disk: Disk) -> str:
    """libvirt's disk type: ``network`` (an export of another machine), ``block`` (a device of this one: an
    LVM volume, which QEMU's file driver refuses) or ``file``."""
    if disk.protocol:
        return "network"
    return "block" if disk.path.startswith("/dev/") else "file"


def disk_source(element: ET.Element, disk: Disk) -> ET.Element:
    """The disk's ``<source>``: the export and its servers, the device, or the file."""
    kind = disk_type(disk)
    if kind == "network":
        source = _sub(element, "source", protocol=disk.protocol, name=disk.path)
        for server in disk.hosts:
            _sub(source, "host", name=str(server["name"]), port=str(server["port"]))
        return source
    return _sub(element, "source", **({"dev": disk.path} if kind == "block" else {"file": disk.path}))


@dataclass
class Nic:
    mac: str
    bridge: str
    tap: str
    model: str = "virtio"


@dataclass
class DomainSpec:
    uuid: str
    name: str
    virt_type: str                        # kvm | qemu
    memory_mb: int
    vcpus: int
    disks: list[Disk]
    nics: list[Nic]
    console_log: str
    cpu_mode: str = ""                    # host-model | host-passthrough | custom | none | ""
    cpu_model: str = ""
    machine_type: str = "pc"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    vnc_listen: str | None = "127.0.0.1"
    extra_specs: dict[str, str] = field(default_factory=dict)
    image_properties: dict[str, Any] = field(default_factory=dict)
    pinned_cpus: list[int] = field(default_factory=list)   # host CPU of each vCPU (hw:cpu_policy=dedicated)
    shared_cpus: str = ""                                   # cpuset unpinned guests float over; "" = any
    host_numa_nodes: list[int] = field(default_factory=lambda: [0])
    free_hugepages_kb: dict[int, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def _sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


def _spec(spec: DomainSpec, key: str) -> str | None:
    """A flavor extra spec, else the matching image property (hw:cpu_cores <- hw_cpu_cores)."""
    if key in spec.extra_specs:
        return str(spec.extra_specs[key])
    value = spec.image_properties.get(key.replace(":", "_"))
    return None if value is None else str(value)


def cpu_policy(extra_specs: dict, image_properties: dict) -> str:
    """hw:cpu_policy of the flavor, else the image's hw_cpu_policy; shared by default."""
    return str(extra_specs.get("hw:cpu_policy") or image_properties.get("hw_cpu_policy") or "shared")


def _quota(spec: DomainSpec, key: str, minimum: int = 0) -> int | None:
    """A quota:* extra spec as a whole number of at least ``minimum``, or None when it is not given."""
    if key not in spec.extra_specs:
        return None
    value = spec.extra_specs[key]
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Unsupported(f"{key}={value!r} is not a whole number") from None
    if number < minimum:
        raise Unsupported(f"{key}={value!r} must be at least {minimum}")
    return number


def _check_quota_keys(spec: DomainSpec) -> None:
    unknown = sorted(key for key in spec.extra_specs if key.startswith("quota:") and key not in _KNOWN_QUOTAS)
    if unknown:
        raise Unsupported(f"{', '.join(unknown)}: not a quota this host can apply (it knows "
                          f"{', '.join(sorted(_KNOWN_QUOTAS))})")


def _int_spec(spec: DomainSpec, key: str) -> int | None:
    value = _spec(spec, key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise Unsupported(f"{key}={value!r} is not a whole number") from exc
    if number < 1:
        raise Unsupported(f"{key}={value!r} must be at least 1")
    return number


def topology(spec: DomainSpec) -> tuple[int, int, int] | None:
    """(sockets, cores, threads) from hw:cpu_sockets/cores/threads, or None when none is given."""
    sockets, cores, threads = (_int_spec(spec, f"hw:cpu_{part}") for part in ("sockets", "cores", "threads"))
    if sockets is None and cores is None and threads is None:
        return None
    threads = threads or 1
    if cores is None and sockets is None:
        sockets, cores = 1, max(1, spec.vcpus // threads)
    elif cores is None:
        cores = max(1, spec.vcpus // (sockets * threads))
    elif sockets is None:
        sockets = max(1, spec.vcpus // (cores * threads))
    if sockets * cores * threads != spec.vcpus:
        raise Unsupported(f"CPU topology {sockets} sockets x {cores} cores x {threads} threads does not give "
                          f"the flavor's {spec.vcpus} vCPUs")
    return sockets, cores, threads


def _numa_nodes(spec: DomainSpec) -> int | None:
    """hw:numa_nodes, checked against the flavor and the host (each guest node on a host node of its own)."""
    numa_nodes = _int_spec(spec, "hw:numa_nodes")
    if not numa_nodes:
        return None
    if numa_nodes > spec.vcpus:
        raise Unsupported(f"hw:numa_nodes={numa_nodes} is more than the flavor's {spec.vcpus} vCPUs")
    if spec.memory_mb % numa_nodes:
        raise Unsupported(f"hw:numa_nodes={numa_nodes} does not divide the flavor's {spec.memory_mb} MB")
    if numa_nodes > len(spec.host_numa_nodes):
        raise Unsupported(f"hw:numa_nodes={numa_nodes} needs {numa_nodes} host NUMA nodes; this host has "
                          f"{len(spec.host_numa_nodes)}")
    return numa_nodes


def _numatune(domain: ET.Element, spec: DomainSpec) -> None:
    """Guest NUMA node i takes its memory from host node i only (strict), as Nova does for NUMA guests."""
    numa_nodes = _numa_nodes(spec)
    if not numa_nodes:
        return
    hosts = spec.host_numa_nodes[:numa_nodes]
    tune = _sub(domain, "numatune")
    _sub(tune, "memory", mode="strict", nodeset=",".join(str(node) for node in hosts))
    for cell, node in enumerate(hosts):
        _sub(tune, "memnode", cellid=cell, mode="strict", nodeset=node)


def _cpu(domain: ET.Element, spec: DomainSpec) -> None:
    mode = spec.cpu_mode or ("host-model" if spec.virt_type == "kvm" else "none")
    if spec.virt_type == "qemu" and mode in ("host-model", "host-passthrough"):
        raise Unsupported(f"cpu_mode {mode} needs KVM; this host runs guests with software emulation")
    shape = topology(spec)
    numa_nodes = _numa_nodes(spec)
    if mode == "none" and shape is None and not numa_nodes:
        return
    attrs = {"mode": mode} if mode != "none" else {}
    cpu = _sub(domain, "cpu", **attrs)
    if mode == "custom":
        if not spec.cpu_model:
            raise Unsupported("[libvirt] cpu_mode = custom needs [libvirt] cpu_models")
        _sub(cpu, "model", spec.cpu_model, fallback="allow")
    if shape:
        _sub(cpu, "topology", sockets=shape[0], cores=shape[1], threads=shape[2])
    if numa_nodes:
        numa = _sub(cpu, "numa")
        per_cell, extra = divmod(spec.vcpus, numa_nodes)
        first = 0
        for cell in range(numa_nodes):
            count = per_cell + (1 if cell < extra else 0)
            cpus = f"{first}-{first + count - 1}" if count > 1 else str(first)
            _sub(numa, "cell", id=cell, cpus=cpus, memory=spec.memory_mb // numa_nodes * 1024, unit="KiB")
            first += count


def _vcpus(domain: ET.Element, spec: DomainSpec) -> None:
    """<vcpu>, and <cputune>: each vCPU of a dedicated guest on a host CPU of its own, then CPU quotas.

    The driver chose ``pinned_cpus`` from [compute] cpu_dedicated_set; an unpinned guest floats over
    cpu_shared_set (``shared_cpus``) when one is configured.
    """
    policy = cpu_policy(spec.extra_specs, spec.image_properties)
    if policy not in ("shared", "dedicated"):
        raise Unsupported(f"hw:cpu_policy={policy!r} is not one of shared, dedicated")
    cpuset = {} if policy == "dedicated" or not spec.shared_cpus else {"cpuset": spec.shared_cpus}
    _sub(domain, "vcpu", spec.vcpus, placement="static", **cpuset)
    cputune = ET.Element("cputune")
    if policy == "dedicated":
        if len(spec.pinned_cpus) != spec.vcpus:
            raise Unsupported(f"hw:cpu_policy=dedicated needs {spec.vcpus} host CPUs; "
                              f"{len(spec.pinned_cpus)} were set aside for this guest")
        for vcpu, host_cpu in enumerate(spec.pinned_cpus):
            _sub(cputune, "vcpupin", vcpu=vcpu, cpuset=host_cpu)
        _sub(cputune, "emulatorpin", cpuset=",".join(str(cpu) for cpu in spec.pinned_cpus))
    for key, tag in _CPU_TUNABLES.items():
        value = _quota(spec, key, minimum=-1 if key == "quota:cpu_quota" else 0)
        if value is not None:
            _sub(cputune, tag, value)
    if len(cputune):
        domain.append(cputune)


def _interface(devices: ET.Element, nic: Nic, spec: DomainSpec) -> ET.Element:
    element = _sub(devices, "interface", type="bridge")
    _sub(element, "mac", address=nic.mac)
    _sub(element, "source", bridge=nic.bridge)
    _sub(element, "target", dev=nic.tap)
    _sub(element, "model", type=nic.model)
    _bandwidth(element, spec)
    return element


def interface_xml(nic: Nic, spec: DomainSpec) -> str:
    """One port's ``<interface>`` as the domain has it: what a hot-plug attaches or detaches."""
    return ET.tostring(_interface(ET.Element("devices"), nic, spec), encoding="unicode")


def _bandwidth(interface: ET.Element, spec: DomainSpec) -> None:
    """quota:vif_{inbound,outbound}_{average,peak,burst} (KB/s, KB) -> the interface's <bandwidth>."""
    limits: dict[str, dict[str, int]] = {}
    for key, (direction, kind) in _VIF_TUNABLES.items():
        value = _quota(spec, key)
        if value is not None:
            limits.setdefault(direction, {})[kind] = value
    if not limits:
        return
    bandwidth = _sub(interface, "bandwidth")
    for direction, values in limits.items():
        if "average" not in values:
            raise Unsupported(f"quota:vif_{direction}_{next(iter(values))} needs quota:vif_{direction}_average")
        _sub(bandwidth, direction, **{kind: str(value) for kind, value in values.items()})


def _memory_backing(domain: ET.Element, spec: DomainSpec) -> None:
    size = _spec(spec, "hw:mem_page_size")
    if size in (None, "small", "any"):
        return
    wanted_kb = {"large": None, "2MB": 2048, "2048": 2048, "1GB": 1048576, "1048576": 1048576}
    if size not in wanted_kb:
        raise Unsupported(f"hw:mem_page_size={size!r} is not one of small, large, any, 2MB, 1GB")
    sizes = [wanted_kb[size]] if wanted_kb[size] else sorted(spec.free_hugepages_kb, reverse=True)
    for page_kb in sizes:
        if page_kb and spec.free_hugepages_kb.get(page_kb, 0) * page_kb >= spec.memory_mb * 1024:
            backing = _sub(domain, "memoryBacking")
            pages = _sub(backing, "hugepages")
            _sub(pages, "page", size=page_kb, unit="KiB")
            return
    raise Unsupported(f"hw:mem_page_size={size} needs {spec.memory_mb} MB of free huge pages; this host has "
                      + (", ".join(f"{n} x {kb} KiB" for kb, n in sorted(spec.free_hugepages_kb.items()))
                         or "none"))


def build_xml(spec: DomainSpec) -> str:
    domain = ET.Element("domain", {"type": spec.virt_type})
    _sub(domain, "uuid", spec.uuid)
    _sub(domain, "name", spec.name)
    metadata = _sub(domain, "metadata")
    ET.register_namespace("kilonova", NAMESPACE)
    owned = ET.SubElement(metadata, f"{{{NAMESPACE}}}instance")
    for key, value in spec.metadata.items():
        ET.SubElement(owned, f"{{{NAMESPACE}}}{key}").text = str(value)
    _sub(domain, "memory", spec.memory_mb, unit="MiB")
    _sub(domain, "currentMemory", spec.memory_mb, unit="MiB")
    _check_quota_keys(spec)
    _vcpus(domain, spec)
    _memory_backing(domain, spec)
    _numatune(domain, spec)
    disk_quota = {tag: value for key, tag in _DISK_TUNABLES.items() if (value := _quota(spec, key)) is not None}
    weight = _quota(spec, "quota:disk_weight", minimum=1)
    if weight is not None:
        _sub(_sub(domain, "blkiotune"), "weight", weight)

    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine=spec.machine_type)
    if spec.kernel:
        _sub(os_, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_, "cmdline", spec.cmdline)
    else:
        _sub(os_, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _cpu(domain, spec)
    _sub(domain, "clock", offset="utc")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")

    devices = _sub(domain, "devices")
    # No device of this guest sits on USB (VNC input is libvirt's implicit PS/2 keyboard and mouse), so no
    # USB controller: libvirt would otherwise add one that the firmware initialises on every boot. Upstream
    # Nova disables it the same way when a guest needs no USB device.
    _sub(devices, "controller", type="usb", model="none")
    for disk in spec.disks:
        element = _sub(devices, "disk", type=disk_type(disk), device="disk")
        _sub(element, "driver", name="qemu", type=disk.format, cache=disk.cache)
        disk_source(element, disk)
        _sub(element, "target", dev=disk.target, bus="virtio")
        if disk.serial:
            _sub(element, "serial", disk.serial[:20])
        if disk.readonly:
            _sub(element, "readonly")
        if disk_quota and not disk.readonly:
            tune = _sub(element, "iotune")
            for tag, value in disk_quota.items():
                _sub(tune, tag, value)
    for nic in spec.nics:
        _interface(devices, nic, spec)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=spec.console_log, append="off")
    _sub(serial, "target", port=0)
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port=0)
    video = str(spec.image_properties.get("hw_video_model") or "cirrus")
    if video not in _VIDEO_MODELS:
        raise Unsupported(f"hw_video_model={video!r} is not one of {', '.join(_VIDEO_MODELS)}")
    if spec.vnc_listen:
        _sub(devices, "graphics", type="vnc", autoport="yes", listen=spec.vnc_listen)
        _sub(_sub(devices, "video"), "model", type=video)
    if str(spec.image_properties.get("hw_qemu_guest_agent", "")).strip().lower() in ("yes", "true", "1", "on"):
        # The image has a QEMU guest agent (set_admin_password needs it); libvirt picks the socket's path.
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "source", mode="bind")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    _sub(devices, "memballoon", model="virtio")
    return ET.tostring(domain, encoding="unicode")
