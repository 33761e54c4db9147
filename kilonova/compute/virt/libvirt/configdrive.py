"""The config drive: an ISO 9660 volume labelled ``config-2`` that cloud-init style guests read.

Layout (as OpenStack's): ``openstack/{2012-08-10,latest}/meta_data.json``, ``user_data``,
``network_data.json``, ``vendor_data.json`` and ``vendor_data2.json``.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from kilonova.compute.virt.driver import BuildFailure

VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2018-08-27", "latest")


def wanted(instance: dict, force: bool) -> bool:
    return force or str(instance.get("config_drive") or "").lower() in ("true", "1", "yes")


def meta_data(instance: dict) -> dict:
    keys = []
    if instance.get("key_data"):
        key_type = "x509" if instance["key_data"].startswith("-----BEGIN") else "ssh"
        keys.append({"name": instance.get("key_name"), "type": key_type, "data": instance["key_data"]})
    data = {
        "uuid": instance["uuid"],
        "name": instance.get("display_name") or instance.get("hostname") or instance["uuid"],
        "hostname": instance.get("hostname") or instance["uuid"],
        "launch_index": instance.get("launch_index") or 0,
        "availability_zone": instance.get("availability_zone"),
        "project_id": instance.get("project_id"),
        "meta": {str(k): str(v) for k, v in (instance.get("metadata") or {}).items()},
        "public_keys": {key["name"]: key["data"] for key in keys if key["type"] == "ssh"},
        "keys": keys,
        "devices": [],
    }
    if instance.get("admin_password"):  # given at rebuild or rescue: the guest's tools set it at boot
        data["admin_pass"] = instance["admin_password"]
    return data


def _network_type(ip: dict, subnet: dict) -> str:
    """As upstream's network metadata: an IPv6 subnet's address mode in the type (``ipv6_slaac``,
    ``ipv6_dhcpv6-stateful``, ``ipv6_dhcpv6-stateless``), ``ipv6_dhcp`` for one with DHCP and no mode."""
    if ip.get("version") != 6:
        return "ipv4"
    if subnet.get("ipv6_address_mode"):
        return f"ipv6_{subnet['ipv6_address_mode']}"
    return "ipv6_dhcp" if subnet.get("enable_dhcp") else "ipv6"


def network_data(network_info: list[dict]) -> dict:
    links, networks = [], []
    for index, vif in enumerate(network_info):
        link_id = f"tap{vif['port_id'][:11]}"
        links.append({"id": link_id, "vif_id": vif["port_id"], "type": "bridge",
                      "ethernet_mac_address": vif["mac_address"], "mtu": vif.get("mtu") or 1500})
        subnets = {s["id"]: s for s in vif.get("subnets") or []}
        for number, ip in enumerate(vif.get("fixed_ips", [])):
            subnet = subnets.get(ip.get("subnet_id")) or {}
            kind = _network_type(ip, subnet)
            entry = {"id": f"network{index}-{number}" if number else f"network{index}", "link": link_id,
                     "network_id": vif["network_id"], "type": kind}
            if kind != "ipv6_dhcp":  # the guest asks DHCPv6 for its address
                entry["ip_address"] = ip["ip_address"]
            if subnet.get("cidr") and kind != "ipv6_dhcp":
                cidr = ipaddress.ip_network(subnet["cidr"])
                entry["netmask"] = str(cidr.netmask)
                entry["routes"] = [] if not subnet.get("gateway_ip") else [{
                    "network": "0.0.0.0" if cidr.version == 4 else "::",
                    "netmask": "0.0.0.0" if cidr.version == 4 else "::", "gateway": subnet["gateway_ip"]}]
                entry["services"] = [{"type": "dns", "address": dns} for dns in subnet.get("dns_nameservers", [])]
            networks.append(entry)
    services = [{"type": "dns", "address": dns} for vif in network_info for s in vif.get("subnets") or []
                for dns in s.get("dns_nameservers", [])]
    return {"links": links, "networks": networks, "services": services}


def user_data(instance: dict) -> bytes | None:
    raw = instance.get("user_data")
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=False)
    except (binascii.Error, ValueError):
        return raw.encode() if isinstance(raw, str) else raw


def write_tree(instance: dict, network_info: list[dict], root: Path) -> Path:
    """The config drive's files under ``root/openstack/<version>/`` (also what the metadata API serves)."""
    files = {"meta_data.json": json.dumps(meta_data(instance)).encode(),
             "network_data.json": json.dumps(network_data(network_info)).encode(),
             "vendor_data.json": b"{}", "vendor_data2.json": b"{}"}
    data = user_data(instance)
    if data is not None:
        files["user_data"] = data
    for version in VERSIONS:
        directory = root / "openstack" / version
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
    return root


def build(instance: dict, network_info: list[dict], target: Path, mkisofs: str = "genisoimage") -> Path:
    """Write the ISO for ``instance`` to ``target``."""
    if shutil.which(mkisofs) is None:
        raise BuildFailure(f"A config drive was requested but {mkisofs} is not installed on this host "
                           "(set [DEFAULT] mkisofs_cmd, or install genisoimage).")
    with tempfile.TemporaryDirectory(prefix="configdrive-") as tmp:
        root = write_tree(instance, network_info, Path(tmp))
        result = subprocess.run([mkisofs, "-o", str(target), "-ldots", "-allow-lowercase", "-allow-multidot",
                                 "-l", "-publisher", "Kilonova", "-quiet", "-J", "-r", "-V", "config-2", str(root)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise BuildFailure(f"The config drive could not be made: {result.stderr.strip()[-300:]}")
    target.chmod(0o644)
    return target
