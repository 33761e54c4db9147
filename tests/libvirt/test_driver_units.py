"""The libvirt driver's pure parts: domain XML, host facts, CPU sets, config drive contents, the guest's
initramfs; and the driver's choices around libvirt (pinning, power fallbacks, VNC address) on fake domains."""
from __future__ import annotations

import asyncio
import base64
import gzip
import json
import shutil
import time
import xml.etree.ElementTree as ET

import pytest

from kilonova.compute.agent.resources import ProviderReporter
from kilonova.compute.virt.libvirt import configdrive, cpus, host
from kilonova.compute.virt.libvirt.domain import Disk, DomainSpec, Nic, Unsupported, build_xml, topology
from kilonova.config import Config
from tests.libvirt import hostsetup


def spec(**overrides) -> DomainSpec:
    values = dict(uuid="0e6e2f3c-6a4a-4c59-9c1b-2f1f1c3f0001", name="instance-x", virt_type="qemu",
                  memory_mb=256, vcpus=2, disks=[Disk("/i/disk", "vda"), Disk("/i/disk.config", "vdb", "raw",
                                                                            readonly=True)],
                  nics=[Nic("fa:16:3e:00:00:01", "kbr-net", "tapport")], console_log="/i/console.log")
    values.update(overrides)
    return DomainSpec(**values)


def parse(s: DomainSpec) -> ET.Element:
    return ET.fromstring(build_xml(s))


def test_basic_domain():
    root = parse(spec(kernel="/i/kernel", initrd="/i/ramdisk", cmdline="console=ttyS0"))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "256" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/i/kernel" and root.findtext("os/cmdline") == "console=ttyS0"
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert all(d.find("target").get("bus") == "virtio" for d in disks)
    assert disks[1].find("readonly") is not None and disks[1].find("driver").get("type") == "raw"
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge" and nic.find("mac").get("address") == "fa:16:3e:00:00:01"
    assert nic.find("source").get("bridge") == "kbr-net" and nic.find("target").get("dev") == "tapport"
    assert root.find("devices/serial/log").get("file") == "/i/console.log"
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.find("cpu") is None  # TCG, no topology: QEMU's default model
    # nothing on USB, so no USB controller (libvirt would add one the firmware probes at each boot)
    assert [(c.get("type"), c.get("model")) for c in root.findall("devices/controller")] == [("usb", "none")]


def test_kvm_defaults_to_host_model_and_qemu_refuses_it():
    assert parse(spec(virt_type="kvm")).find("cpu").get("mode") == "host-model"
    with pytest.raises(Unsupported, match="needs KVM"):
        build_xml(spec(cpu_mode="host-passthrough"))


def test_topology_from_extra_specs_and_image():
    assert topology(spec(vcpus=4, extra_specs={"hw:cpu_sockets": "2"})) == (2, 2, 1)
    assert topology(spec(vcpus=4, image_properties={"hw_cpu_threads": "2"})) == (1, 2, 2)
    cpu = parse(spec(vcpus=4, extra_specs={"hw:cpu_cores": "2"})).find("cpu/topology")
    assert (cpu.get("sockets"), cpu.get("cores"), cpu.get("threads")) == ("2", "2", "1")
    with pytest.raises(Unsupported, match="does not give"):
        build_xml(spec(vcpus=3, extra_specs={"hw:cpu_sockets": "2", "hw:cpu_cores": "2"}))


def test_numa_pinning_and_tunables():
    root = parse(spec(vcpus=4, memory_mb=512, pinned_cpus=[4, 5, 6, 7], host_numa_nodes=[0, 1], extra_specs={
        "hw:numa_nodes": "2", "hw:cpu_policy": "dedicated", "quota:cpu_shares": "2048",
        "quota:disk_read_bytes_sec": "1000000"}))
    cells = root.findall("cpu/numa/cell")
    assert [(c.get("cpus"), c.get("memory")) for c in cells] == [("0-1", "262144"), ("2-3", "262144")]
    # Each guest node's memory from its own host node only.
    assert root.find("numatune/memory").attrib == {"mode": "strict", "nodeset": "0,1"}
    assert [(m.get("cellid"), m.get("nodeset")) for m in root.findall("numatune/memnode")] == [("0", "0"), ("1", "1")]
    # The vCPUs on the host CPUs the driver set aside, the emulator threads on those too.
    assert [p.get("cpuset") for p in root.findall("cputune/vcpupin")] == ["4", "5", "6", "7"]
    assert root.find("cputune/emulatorpin").get("cpuset") == "4,5,6,7"
    assert root.find("vcpu").get("cpuset") is None
    assert root.findtext("cputune/shares") == "2048"
    assert root.find("devices/disk/iotune/read_bytes_sec").text == "1000000"
    assert root.findall("devices/disk")[1].find("iotune") is None  # not on the read-only config drive


def test_unpinned_guests_float_over_the_shared_set():
    assert parse(spec(shared_cpus="0-2,5")).find("vcpu").get("cpuset") == "0-2,5"
    assert parse(spec()).find("vcpu").get("cpuset") is None
    assert parse(spec()).find("cputune") is None


def test_quotas_are_applied_or_refused_saying_why():
    root = parse(spec(extra_specs={"quota:vif_inbound_average": "1000", "quota:vif_inbound_burst": "2048",
                                   "quota:vif_outbound_average": "500", "quota:vif_outbound_peak": "800",
                                   "quota:cpu_quota": "-1", "quota:disk_weight": "300"}))
    bandwidth = root.find("devices/interface/bandwidth")
    assert bandwidth.find("inbound").attrib == {"average": "1000", "burst": "2048"}
    assert bandwidth.find("outbound").attrib == {"average": "500", "peak": "800"}
    assert root.findtext("cputune/quota") == "-1" and root.findtext("blkiotune/weight") == "300"
    for extra_specs, reason in (
            ({"quota:cpu_shares": "lots"}, "quota:cpu_shares='lots' is not a whole number"),
            ({"quota:disk_read_iops_sec": "1.5"}, "quota:disk_read_iops_sec='1.5' is not a whole number"),
            ({"quota:vif_inbound_average": "-5"}, "must be at least 0"),
            ({"quota:vif_outbound_peak": "10"}, "quota:vif_outbound_peak needs quota:vif_outbound_average"),
            ({"quota:cpu_limit": "10", "quota:memory_limit": "1"},
             "quota:cpu_limit, quota:memory_limit: not a quota this host can apply")):
        with pytest.raises(Unsupported, match=reason):
            build_xml(spec(extra_specs=extra_specs))


def test_cpu_sets_as_nova_conf_spells_them():
    assert cpus.parse_set("0-3,^2,6") == {0, 1, 3, 6} and cpus.parse_set(" 1 , 3 ") == {1, 3}
    assert cpus.format_set({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8" and cpus.format_set(set()) == ""
    for bad in ("a-b", "3-1", "-1"):
        with pytest.raises(ValueError, match="CPU set"):
            cpus.parse_set(bad)
    assert cpus.host_sets("2-3", "0-1", {0, 1, 2, 3}) == ({2, 3}, {0, 1})
    with pytest.raises(ValueError, match="overlap on CPUs 1"):
        cpus.host_sets("1-2", "0-1", {0, 1, 2, 3})
    with pytest.raises(ValueError, match="cpu_dedicated_set names CPUs 8-9 that this host does not have"):
        cpus.host_sets("2,8-9", "", {0, 1, 2, 3})
    assert cpus.unpinned_count(set(), set(), {0, 1}) == 2 and cpus.unpinned_count({1}, set(), {0, 1}) == 0
    assert cpus.pick_dedicated(2, {1, 2, 3}, {1}) == [2, 3]
    with pytest.raises(Unsupported, match="needs 2 host CPUs of cpu_dedicated_set 2-3; 1 of them are free"):
        cpus.pick_dedicated(2, {2, 3}, {2})
    with pytest.raises(Unsupported, match="this host has none configured"):
        cpus.pick_dedicated(1, set(), set())


def test_what_the_host_cannot_honour_says_why():
    with pytest.raises(Unsupported, match="needs 2 host CPUs; 0 were set aside"):
        build_xml(spec(vcpus=2, extra_specs={"hw:cpu_policy": "dedicated"}))
    with pytest.raises(Unsupported, match="'mixed' is not one of shared, dedicated"):
        build_xml(spec(extra_specs={"hw:cpu_policy": "mixed"}))
    with pytest.raises(Unsupported, match="hw:numa_nodes=2 needs 2 host NUMA nodes; this host has 1"):
        build_xml(spec(vcpus=2, extra_specs={"hw:numa_nodes": "2"}))
    with pytest.raises(Unsupported, match="hw_video_model='qxl'"):
        build_xml(spec(image_properties={"hw_video_model": "qxl"}))
    assert parse(spec(image_properties={"hw_video_model": "vga"})).find("devices/video/model").get("type") == "vga"
    with pytest.raises(Unsupported, match="free huge pages; this host has none"):
        build_xml(spec(extra_specs={"hw:mem_page_size": "large"}))
    root = parse(spec(extra_specs={"hw:mem_page_size": "2MB"}, free_hugepages_kb={2048: 200}))
    assert root.find("memoryBacking/hugepages/page").get("size") == "2048"
    with pytest.raises(Unsupported, match="hw:numa_nodes=3 is more"):
        build_xml(spec(extra_specs={"hw:numa_nodes": "3"}))


def test_virt_type_choice():
    assert host.choose_virt_type("qemu") == ("qemu", "set in [libvirt] virt_type")
    virt_type, why = host.choose_virt_type("", flags={"sse2"})
    assert virt_type == "qemu" and "no vmx/svm" in why
    virt_type, why = host.choose_virt_type("", flags={"vmx"}, device="/nonexistent/kvm")
    assert virt_type == "qemu" and "/nonexistent/kvm does not exist" in why
    with pytest.raises(ValueError):
        host.choose_virt_type("xen")


def test_cpu_and_compute_traits():
    assert host.cpu_traits({"sse2", "sse4_2", "aes", "pni", "avx2", "no_such_flag"}) == [
        "HW_CPU_X86_AESNI", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2", "HW_CPU_X86_SSE3", "HW_CPU_X86_SSE42"]
    assert "COMPUTE_IMAGE_TYPE_QCOW2" in host.compute_traits() and "COMPUTE_NODE" in host.compute_traits()
    assert not set(host.compute_traits()) & {"COMPUTE_NET_ATTACH_INTERFACE", "COMPUTE_IMAGE_TYPE_ISO",
                                             "COMPUTE_CONFIG_DRIVE_REGENERATION"}  # not implemented


def test_config_drive_contents():
    instance = {"uuid": "u-1", "display_name": "vm", "hostname": "vm", "launch_index": 0,
                "availability_zone": "nova", "project_id": "p", "metadata": {"role": "web"},
                "key_name": "k", "key_data": "ssh-ed25519 AAAA test", "config_drive": "True",
                "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode()}
    meta = configdrive.meta_data(instance)
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA test"} and meta["meta"] == {"role": "web"}
    assert configdrive.user_data(instance) == b"#!/bin/sh\necho hi\n"
    assert configdrive.wanted(instance, False) and configdrive.wanted({}, True) and not configdrive.wanted({}, False)
    vif = {"port_id": "1234567890abcdef", "network_id": "n", "mac_address": "fa:16:3e:00:00:02",
           "fixed_ips": [{"ip_address": "10.0.0.5", "subnet_id": "s", "version": 4}],
           "subnets": [{"id": "s", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "dns_nameservers": []}]}
    data = configdrive.network_data([vif])
    assert data["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:02"
    assert data["networks"][0]["netmask"] == "255.255.255.0"
    assert data["networks"][0]["routes"][0]["gateway"] == "10.0.0.1"


def test_config_drive_iso(tmp_path):
    if not configdrive.shutil.which("genisoimage"):
        try:
            hostsetup.ensure_packages()
        except hostsetup.HostSetupError as exc:
            pytest.skip(f"genisoimage is missing: {exc}")
    target = configdrive.build({"uuid": "u-2", "user_data": base64.b64encode(b"data").decode()}, [],
                               tmp_path / "disk.config")
    blob = target.read_bytes()
    assert blob[0x8001:0x8006] == b"CD001" and b"config-2" in blob[0x8028:0x8048]


def test_guest_initramfs_is_a_newc_archive():
    archive = gzip.decompress(hostsetup._build_initrd(b"\x7fELF-busybox", [("virtio", b"module")]))
    assert archive.startswith(b"070701")
    assert b"init\0" in archive and b"lib/modules/virtio.ko\0" in archive and b"TRAILER!!!" in archive
    assert hostsetup.MARKER.encode() in archive
    json.dumps(hostsetup.GUEST_MODULES)


def test_metadata_api_answers_by_source_address(tmp_path):
    import threading
    import urllib.request

    from kilonova.compute.virt.libvirt import metadata

    instance = {"uuid": "u-3", "hostname": "vm3", "key_name": "k", "key_data": "ssh-ed25519 AAAA x",
                "user_data": base64.b64encode(b"ud").decode()}
    configdrive.write_tree(instance, [], tmp_path / "u-3" / "metadata")
    (tmp_path / "_networks" / "net").mkdir(parents=True)
    (tmp_path / "_networks" / "net" / "ports.json").write_text(json.dumps(
        {"p": {"mac": "m", "device_id": "u-3", "ips": ["127.0.0.1"]}}))
    server = metadata.MetadataServer(("127.0.0.1", 0), tmp_path, "net")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        def get(path: str) -> bytes:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.read()

        assert json.loads(get("/openstack/latest/meta_data.json"))["uuid"] == "u-3"
        assert get("/openstack/latest/user_data") == b"ud"
        assert b"latest" in get("/openstack").split(b"\n")
        assert get("/latest/meta-data/instance-id") == b"u-3"
        assert get("/latest/meta-data/public-keys/0/openssh-key") == b"ssh-ed25519 AAAA x"
        assert get("/latest/meta-data/public-ipv4") == b""  # no floating IP
        (tmp_path / "u-3" / "network_info.json").write_text(json.dumps([{"fixed_ips": [
            {"ip_address": "127.0.0.1", "floating_ips": ["172.24.4.77"]}]}]))
        assert get("/latest/meta-data/public-ipv4") == b"172.24.4.77"  # read at each request
        assert b"public-ipv4" in get("/latest/meta-data/").split(b"\n")
        (tmp_path / "_networks" / "net" / "ports.json").write_text("{}")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get("/openstack/latest/meta_data.json")
    finally:
        server.shutdown()
        server.server_close()


def test_two_clouds_on_one_machine_get_their_own_bridge_and_namespace(tmp_path):
    from kilonova.compute.virt.libvirt.dataplane import Dataplane

    network = "d4cb1a78-feac-5e0b-af95-859aa86b5cc9"  # default networks of two clouds share their id
    first, second = Dataplane(tmp_path / "a" / "_networks"), Dataplane(tmp_path / "b" / "_networks")
    assert first.bridge(network) != second.bridge(network)
    assert first.namespace(network) != second.namespace(network)
    assert first.veth(network) != second.veth(network)
    assert first.bridge(network) == Dataplane(tmp_path / "a" / "_networks").bridge(network)  # stable
    for name in (first.bridge(network), *first.veth(network)):
        assert len(name) <= 15  # Linux interface names


# ---------------------------------------------------------------- the driver, on fake domains

def _driver(tmp_path, **libvirt_options):
    pytest.importorskip("libvirt")
    from kilonova.compute.virt.libvirt.driver import LibvirtDriver

    conf = Config.load(state_dir=tmp_path, overrides={"libvirt": {"virt_type": "qemu", **libvirt_options}})
    return LibvirtDriver("h", conf, images=None)


class FakeDomain:
    """A libvirt domain whose guest obeys the ACPI power button, or ignores it."""

    def __init__(self, obeys_acpi: bool, graphics: str = ""):
        import libvirt
        self.libvirt = libvirt
        self.active, self.obeys_acpi, self.graphics = True, obeys_acpi, graphics
        self.calls: list[str] = []

    def isActive(self):
        return self.active

    def state(self):
        return [self.libvirt.VIR_DOMAIN_RUNNING if self.active else self.libvirt.VIR_DOMAIN_SHUTOFF, 0]

    def shutdown(self):
        self.calls.append("shutdown")
        self.active = self.active and not self.obeys_acpi

    def destroy(self):
        self.calls.append("destroy")
        self.active = False

    def create(self):
        self.calls.append("create")
        self.active = True

    def XMLDesc(self, flags=0):
        return f"<domain><devices>{self.graphics}</devices></domain>"


def _soft_reboot(driver, domain: FakeDomain) -> float:
    driver._lookup = lambda uuid: domain
    driver._rebuild = lambda instance: domain.calls.append("rebuild")  # the hard reboot, tested on real guests
    started = time.monotonic()
    driver._reboot({"uuid": "u-1", "network_info": []}, "SOFT")
    return time.monotonic() - started


def test_soft_reboot_is_acpi_then_hard_after_the_timeout(tmp_path):
    driver = _driver(tmp_path, wait_soft_reboot_seconds="0.4")
    obeying = FakeDomain(obeys_acpi=True)
    assert _soft_reboot(driver, obeying) < 0.4 and obeying.calls == ["shutdown", "create"]
    ignoring = FakeDomain(obeys_acpi=False)
    assert _soft_reboot(driver, ignoring) >= 0.4
    assert ignoring.calls == ["shutdown", "rebuild"]  # waited for the guest, then rebooted it hard


def test_stop_is_acpi_then_destroy_after_the_timeout(tmp_path):
    driver = _driver(tmp_path)
    for obeys, calls in ((True, ["shutdown"]), (False, ["shutdown", "destroy"])):
        domain = FakeDomain(obeys_acpi=obeys)
        driver._lookup = lambda uuid: domain
        started = time.monotonic()
        driver._power_off({"uuid": "u-1"}, 0.4)
        assert domain.calls == calls and not domain.active
        assert (time.monotonic() - started >= 0.4) == (not obeys)


def test_vnc_console_address_is_the_one_the_proxy_can_reach(tmp_path):
    graphics = "<graphics type='vnc' port='5901' listen='{}'/>"
    driver = _driver(tmp_path)
    driver._lookup = lambda uuid: FakeDomain(True, graphics.format("127.0.0.1"))
    assert asyncio.run(driver.get_vnc_console({"uuid": "u-1"})) == {"host": "127.0.0.1", "port": 5901}
    driver._lookup = lambda uuid: FakeDomain(True, graphics.format("0.0.0.0"))
    driver.conf.set("DEFAULT", "my_ip", "192.0.2.7")
    assert asyncio.run(driver.get_vnc_console({"uuid": "u-1"}))["host"] == "192.0.2.7"
    driver.conf.set("vnc", "server_proxyclient_address", "198.51.100.3")  # a proxy on another host
    assert asyncio.run(driver.get_vnc_console({"uuid": "u-1"}))["host"] == "198.51.100.3"


def _instance(driver, uuid: str, vcpus: int, policy: str = "dedicated") -> dict:
    instance = {"uuid": uuid, "flavor": {"vcpus": vcpus, "memory_mb": 64, "extra_specs": {"hw:cpu_policy": policy}}}
    driver._dir(instance).mkdir(parents=True)
    return instance


def test_dedicated_guests_get_host_cpus_of_their_own(tmp_path):
    driver = _driver(tmp_path)
    driver.dedicated_cpus, driver.shared_cpus = {4, 5, 6, 7}, {0, 1, 2, 3}
    first, second, third = (_instance(driver, f"u-{n}", vcpus) for n, vcpus in ((1, 2), (2, 2), (3, 1)))
    driver._pin(first, {})
    driver._pin(second, {})
    assert (driver._pinned(first), driver._pinned(second)) == ([4, 5], [6, 7])
    with pytest.raises(Unsupported, match="1 host CPUs of cpu_dedicated_set 4-7; 0 of them are free"):
        driver._pin(third, {})
    driver._pin(first, {})  # again (a rebuild): the same CPUs
    assert driver._pinned(first) == [4, 5]
    xml = ET.fromstring(build_xml(driver._spec(first, [], {"properties": {}, "disks": []})))
    assert [pin.get("cpuset") for pin in xml.findall("cputune/vcpupin")] == ["4", "5"]
    shared = _instance(driver, "u-4", 1, policy="shared")
    driver._pin(shared, {})
    assert ET.fromstring(build_xml(driver._spec(shared, [], {"properties": {}, "disks": []}))).find(
        "vcpu").get("cpuset") == "0-3"
    shutil.rmtree(driver._dir(first))  # deleted: its CPUs are free again
    driver._pin(third, {})
    assert driver._pinned(third) == [4]


def test_a_dedicated_set_is_reported_as_pcpu(tmp_path):
    host_cpus = sorted(cpus.online())
    if len(host_cpus) < 2:
        pytest.skip("needs a host with two CPUs")
    driver = _driver(tmp_path)
    conf = driver.conf
    reporter = ProviderReporter(None, conf)
    for dedicated, shared, vcpus, pcpus in ((str(host_cpus[-1]), str(host_cpus[0]), 1, 1),
                                            (cpus.format_set(host_cpus), "", None, len(host_cpus)),
                                            ("", "", len(host_cpus), None)):
        conf.set("compute", "cpu_dedicated_set", dedicated)
        conf.set("compute", "cpu_shared_set", shared)
        inventory = reporter.inventory(type(driver)("h", conf, None).get_available_resource())
        assert inventory.get("VCPU", {}).get("total") == vcpus
        assert inventory.get("PCPU", {}).get("total") == pcpus
        if pcpus:
            assert inventory["PCPU"]["allocation_ratio"] == 1.0 and inventory["PCPU"]["reserved"] == 0
    conf.set("compute", "cpu_dedicated_set", "0-4096")
    with pytest.raises(ValueError, match="cpu_dedicated_set names CPUs"):
        type(driver)("h", conf, None)
