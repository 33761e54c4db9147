"""Flavor extra specs that upstream Nova knows, checked from microversion 2.86 as it checks them.

A key with a known name (or name pattern) must have a value of its kind; a key in
one of the known namespaces (the part before ':') but not known is refused; any
other key is left alone. The rule table follows upstream's registry of Nova 34.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import os_resource_classes
import os_traits

from kilonova.common.http import HTTPError

CPU_SET = r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"
GROUP = r"([a-zA-Z0-9_-]{1,64})?"  # a granular request group suffix: resources1:VCPU, trait_foo:...
_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


@dataclass(frozen=True)
class Rule:
    name: str                       # the name, with {param} placeholders
    kind: type                      # bool, int or str
    enum: tuple = ()
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    params: dict = field(default_factory=dict)   # placeholder -> regex

    @functools.cached_property
    def name_regex(self) -> str:
        regex = self.name
        for param, pattern in self.params.items():
            regex = regex.replace("{" + param + "}", f"(?P<{param}>{pattern})")
        return regex

    def check(self, value: str) -> None:
        if self.kind is bool:
            if value.strip().lower() not in _TRUE + _FALSE:
                raise _invalid(f"'{value}' is not a valid boolean-like value.")
        elif self.kind is int:
            try:
                number = int(value)
            except ValueError:
                raise _invalid(f"'{value}' is not a valid integer value.") from None
            if self.maximum is not None and number > self.maximum:
                raise _invalid(f"'{value}' is greater than the max value of '{self.maximum}'.")
            if self.minimum is not None and number < self.minimum:
                raise _invalid(f"'{value}' is less than the min value of '{self.minimum}'.")
        elif self.pattern is not None:
            if not re.fullmatch(self.pattern, value):
                raise _invalid(f"'{value}' is not of the format '{self.pattern}'.")
        elif self.enum and value not in self.enum:
            raise _invalid(f"'{value}' is not one of: {', '.join(self.enum)}.")


def _invalid(why: str) -> HTTPError:
    return HTTPError(400, f"Validation failed; {why}")


def _bools(*names: str) -> list[Rule]:
    return [Rule(name, bool) for name in names]


def _counts(minimum: int | None, *names: str) -> list[Rule]:
    return [Rule(name, int, minimum=minimum) for name in names]


def _choices(name: str, *values: str) -> Rule:
    return Rule(name, str, enum=values)


_HW = [
    *_bools("hw:cpu_realtime", "hw:hide_hypervisor_id", "hw:locked_memory", "hw:boot_menu",
            "hw:vif_multiqueue_enabled", "hw:mem_encryption", "hw:pmu", "hw:virtio_packed_ring",
            "hw:ephemeral_encryption"),
    Rule("hw:cpu_realtime_mask", str, pattern=r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    Rule("hw:cpu_dedicated_mask", str, pattern=CPU_SET),
    _choices("hw:cpu_policy", "dedicated", "shared", "mixed"),
    _choices("hw:cpu_thread_policy", "prefer", "isolate", "require"),
    _choices("hw:emulator_threads_policy", "isolate", "share"),
    Rule("hw:mem_page_size", str, pattern=r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"),
    *_counts(1, "hw:numa_nodes", "hw:cpu_sockets", "hw:cpu_cores", "hw:cpu_threads", "hw:cpu_max_sockets",
             "hw:cpu_max_cores", "hw:cpu_max_threads"),
    Rule("hw:numa_cpus.{num}", str, pattern=CPU_SET, params={"num": r"\d+"}),
    Rule("hw:numa_mem.{num}", int, minimum=1, params={"num": r"\d+"}),
    _choices("hw:pci_numa_affinity_policy", "required", "preferred", "legacy", "socket"),
    _choices("hw:mem_encryption_model", "amd-sev", "amd-sev-es", "amd-sev-snp", "intel-tdx"),
    Rule("hw:pmem", str, pattern="([a-zA-Z0-9_]+(,)?)+"),
    *_counts(0, "hw:serial_port_count"),
    _choices("hw:tpm_model", "tpm-tis", "tpm-crb"),
    _choices("hw:tpm_version", "1.2", "2.0"),
    _choices("hw:tpm_secret_security", "user", "host", "deployment"),
    _choices("hw:watchdog_action", "none", "pause", "poweroff", "reset", "disabled"),
    _choices("hw:viommu_model", "intel", "smmuv3", "virtio", "auto"),
    _choices("hw:sound_model", "sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio"),
    _choices("hw:usb_model", "none", "nec-xhci", "qemu-xhci"),
    Rule("hw:redirected_usb_ports", int, minimum=0, maximum=15),
    _choices("hw:ephemeral_encryption_format", "plain", "luks", "luksv2"),
]

_OTHER = [
    Rule("accel:device_profile", str),
    Rule("aggregate_instance_extra_specs:{key}", str, params={"key": ".+"}),
    *_bools("hw_rng:allowed"),
    *_counts(0, "hw_rng:rate_bytes", "hw_rng:rate_period", "hw_video:ram_max_mb"),
    *_bools("hide_hypervisor_id"),
    _choices("group_policy", "isolate", "none"),
    _choices("os:secure_boot", "disabled", "required"),
    Rule("pci_passthrough:alias", str, pattern=r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*"),
    Rule("vmware:hw_version", str),
    Rule("vmware:storage_policy", str),
]


def _quota() -> list[Rule]:
    rules = []
    for resource in ("cpu", "memory", "disk_io", "vif"):  # VMware's
        rules += [Rule(f"quota:{resource}_limit", int, minimum=0), Rule(f"quota:{resource}_reservation", int),
                  _choices(f"quota:{resource}_shares_level", "custom", "high", "normal", "low"),
                  Rule(f"quota:{resource}_shares_share", int, minimum=0)]
    rules += _counts(0, "quota:cpu_shares", "quota:cpu_period") + [Rule("quota:cpu_quota", int)]  # libvirt's
    rules += _counts(0, *(f"quota:disk_{op}_{unit}_sec" for op in ("read", "write", "total")
                          for unit in ("bytes", "iops")))
    rules += _counts(0, *(f"quota:vif_{way}_{what}" for way in ("inbound", "outbound")
                          for what in ("average", "peak", "burst")))
    return rules


_CAPABILITIES = (
    "id", "uuid", "service_id", "host", "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
    "local_gb_used", "hypervisor_type", "hypervisor_version", "hypervisor_hostname", "free_ram_mb",
    "free_disk_gb", "current_workload", "running_vms", "disk_available_least", "host_ip", "mapped",
    "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio", "total_usable_ram_mb",
    "total_usable_disk_gb", "disk_mb_used", "free_disk_mb", "vcpus_total", "num_instances", "num_io_ops",
    "failed_builds", "aggregates", "cell_uuid", "updated")
_NESTED_CAPABILITIES = ("cpu_info", "metrics", "stats", "numa_topology", "supported_hv_specs", "pci_device_pools",
                        "nodename", "pci_stats", "supported_instances", "limits", "instances")


def _placement() -> list[Rule]:
    rules = [Rule(f"capabilities:{name}", str) for name in _CAPABILITIES]
    rules += [Rule(f"capabilities:{name}{{filter}}", str, params={"filter": r"(:\w+)*"})
              for name in _NESTED_CAPABILITIES]
    rules += [Rule(f"resources{{group}}:{rc}", int, params={"group": GROUP}) for rc in os_resource_classes.STANDARDS]
    rules.append(Rule("resources{group}:CUSTOM_{resource}", int, params={"group": GROUP, "resource": "[A-Z0-9_]+"}))
    rules += [Rule(f"trait{{group}}:{trait}", str, enum=("required", "forbidden"), params={"group": GROUP})
              for trait in os_traits.get_traits()]
    rules.append(Rule("trait{group}:CUSTOM_{trait}", str, enum=("required", "forbidden"),
                      params={"group": GROUP, "trait": "[A-Z0-9_]+"}))
    return rules


@functools.lru_cache(maxsize=1)
def _registry() -> tuple[dict[str, Rule], tuple[str, ...]]:
    rules = {rule.name: rule for rule in _HW + _OTHER + _quota() + _placement()}
    namespaces = {rule.name_regex.split(":", 1)[0] for rule in rules.values() if ":" in rule.name_regex}
    return rules, tuple(sorted(namespaces))


def check(name: str, value: str) -> None:
    """400 when upstream's validation (2.86 and later) refuses ``name`` = ``value``."""
    rules, namespaces = _registry()
    rule = rules.get(name) or next((r for r in rules.values() if re.fullmatch(r.name_regex, name)), None)
    if rule is not None:
        rule.check(value)
        return
    if ":" in name and any(re.fullmatch(space, name.split(":", 1)[0]) for space in namespaces):
        raise _invalid(f"extra spec '{name}' does not appear to be a valid extra spec.")
