"""Ports hot-plugged into and out of a libvirt guest (os-interface).

A port's network is made ready on this host first (bridge, DHCP: the dataplane's ``plug``), then its
``<interface>`` -- the very element the domain would have had with the port from the start -- is attached
to the running guest and to its definition (LIVE|CONFIG), or to the definition only when the guest is
off (CONFIG). A live detach is a request the guest answers (ACPI hot-unplug): the device is gone only
once the live definition no longer has it, which is waited for before the dataplane lets go of the port.
The guest's saved network information follows, so a later reboot, rebuild or move defines it the same.
"""
from __future__ import annotations

import json
import time

import libvirt

from kilonova.compute.virt.driver import BuildFailure
from kilonova.compute.virt.libvirt.domain import interface_xml

DETACH_TIMEOUT = 30.0


def _flags(domain) -> int:
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if domain.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def _xml(driver, instance: dict, vif: dict) -> str:
    spec = driver._spec(instance, [vif], driver._layout(instance) or {"disks": []})
    return interface_xml(spec.nics[0], spec)


def _save(driver, instance: dict, network_info: list[dict]) -> None:
    (driver._dir(instance) / "network_info.json").write_text(json.dumps(network_info))


def _has_mac(domain, mac: str, flags: int = 0) -> bool:
    xml = domain.XMLDesc(flags)
    return f"address='{mac}'" in xml or f'address="{mac}"' in xml


def attach(driver, instance: dict, vif: dict) -> None:
    domain = driver._domain(instance)
    xml = _xml(driver, instance, vif)
    driver.dataplane.plug(vif, instance["uuid"])
    try:
        domain.attachDeviceFlags(xml, _flags(domain))
    except libvirt.libvirtError as exc:
        driver.dataplane.unplug(vif)
        raise BuildFailure(f"Failed to attach network adapter device to {instance['uuid']}: {exc}") from exc
    others = [v for v in driver._network_info(instance) if v["port_id"] != vif["port_id"]]
    _save(driver, instance, others + [vif])


def detach(driver, instance: dict, vif: dict) -> None:
    domain = driver._domain(instance)
    flags = _flags(domain)
    try:
        domain.detachDeviceFlags(_xml(driver, instance, vif), flags)
    except libvirt.libvirtError as exc:
        if _has_mac(domain, vif["mac_address"], libvirt.VIR_DOMAIN_XML_INACTIVE) or \
                (flags & libvirt.VIR_DOMAIN_AFFECT_LIVE and _has_mac(domain, vif["mac_address"])):
            raise BuildFailure(f"Failed to detach network adapter device from {instance['uuid']}: {exc}") from exc
    if flags & libvirt.VIR_DOMAIN_AFFECT_LIVE:
        deadline = time.monotonic() + DETACH_TIMEOUT
        while _has_mac(domain, vif["mac_address"]):
            if time.monotonic() > deadline:
                raise BuildFailure(f"Failed to detach network adapter device from {instance['uuid']}: the guest "
                                   f"did not release it within {DETACH_TIMEOUT:g} s")
            time.sleep(0.2)
    driver.dataplane.unplug(vif)
    _save(driver, instance, [v for v in driver._network_info(instance) if v["port_id"] != vif["port_id"]])
