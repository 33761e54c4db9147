"""The requests ``placement_compare.py`` sends to both Placements: every route at every microversion from
1.0 to 1.39, the bodies and query strings each refuses, the reshaper's moves, allocation mappings, HTTP
details (media types, Accept, methods) and secure-RBAC tokens.

Steps run in order on a fresh database and build on one another (providers made early are used later);
every uuid is derived from a name (``U("cn1")``), so both servers are given the same ones.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

NAMESPACE = uuid.UUID("6d1f0c7e-2b1a-4c55-9e11-5a3c0b9e7a42")
LATEST = 39
ADMIN = {"X-Auth-Token": "admin"}
SERVICE = {"X-Auth-Token": "admin", "X-Roles": "admin,service"}
_names: set[str] = set()


def U(name: str) -> str:
    _names.add(name)
    return str(uuid.uuid5(NAMESPACE, name))


def known_uuids() -> set[str]:
    return {U(n) for n in list(_names)}


@dataclass
class Step:
    label: str
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    content: bytes | None = None
    setup: bool = False   # kept when --only filters steps: later steps need what it makes


class Script:
    def __init__(self):
        self.steps: list[Step] = []

    def req(self, label: str, method: str, path: str, body=None, *, v: int | str | None = None, token=ADMIN,
            ct: str | None = "application/json", raw: bytes | None = None, headers: dict | None = None,
            setup: bool = False) -> None:
        hdrs = dict(token or {})
        if v is not None:
            hdrs["OpenStack-API-Version"] = f"placement {v if isinstance(v, str) else f'1.{v}'}"
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if content is not None and ct:
            hdrs["Content-Type"] = ct
        hdrs.update(headers or {})
        self.steps.append(Step(label, method, path, hdrs, content, setup))

    def setup(self, label, method, path, body=None, **kw):
        self.req(label, method, path, body, setup=True, **kw)


def inventory(total=16, **extra):
    return dict(total=total, **extra)


def steps() -> list[Step]:
    s = Script()
    world(s)
    root(s)
    providers(s)
    inventories(s)
    aggregates(s)
    traits(s)
    resource_classes(s)
    allocations(s)
    overcommit(s)
    mappings(s)
    usages(s)
    candidates(s)
    reshaper(s)
    http_details(s)
    rbac(s)
    odd(s)
    random_candidates(s)
    sweep(s)
    return s.steps


# ------------------------------------------------------------------ the world most steps use

def world(s: Script) -> None:
    """Two compute hosts (cn1 with a NUMA child, cn2), a sharing disk provider in an aggregate with cn1."""
    for name in ("cn1", "cn2", "nfs"):
        s.setup(f"world-{name}", "POST", "/resource_providers", {"name": name, "uuid": U(name)}, v=20)
    s.setup("world-numa", "POST", "/resource_providers",
            {"name": "cn1-numa0", "uuid": U("cn1-numa0"), "parent_provider_uuid": U("cn1")}, v=20)
    s.setup("world-cn1-inv", "PUT", f"/resource_providers/{U('cn1')}/inventories", {
        "resource_provider_generation": 0, "inventories": {
            "VCPU": inventory(8, allocation_ratio=2.0), "MEMORY_MB": inventory(4096, max_unit=2048),
            "DISK_GB": inventory(100, reserved=10, step_size=5)}})
    s.setup("world-cn2-inv", "PUT", f"/resource_providers/{U('cn2')}/inventories", {
        "resource_provider_generation": 0, "inventories": {"VCPU": inventory(4), "MEMORY_MB": inventory(2048)}})
    s.setup("world-numa-inv", "PUT", f"/resource_providers/{U('cn1-numa0')}/inventories", {
        "resource_provider_generation": 0, "inventories": {"VCPU": inventory(4), "SRIOV_NET_VF": inventory(8)}})
    s.setup("world-nfs-inv", "PUT", f"/resource_providers/{U('nfs')}/inventories", {
        "resource_provider_generation": 0, "inventories": {"DISK_GB": inventory(1000)}})
    s.setup("world-nfs-traits", "PUT", f"/resource_providers/{U('nfs')}/traits",
            {"resource_provider_generation": 1, "traits": ["MISC_SHARES_VIA_AGGREGATE"]}, v=6)
    for name, gen in (("nfs", 2), ("cn1", 1)):
        s.setup(f"world-{name}-agg", "PUT", f"/resource_providers/{U(name)}/aggregates",
                {"resource_provider_generation": gen, "aggregates": [U("agg1")]}, v=19)
    s.setup("world-cn2-traits", "PUT", f"/resource_providers/{U('cn2')}/traits",
            {"resource_provider_generation": 1, "traits": ["HW_CPU_X86_AVX2", "CUSTOM_GOLD"]}, v=6)
    s.setup("world-trait-gold", "PUT", "/traits/CUSTOM_GOLD", v=6)
    s.setup("world-cn2-traits-again", "PUT", f"/resource_providers/{U('cn2')}/traits",
            {"resource_provider_generation": 1, "traits": ["HW_CPU_X86_AVX2", "CUSTOM_GOLD"]}, v=6)
    s.setup("world-alloc-c1", "PUT", f"/allocations/{U('c1')}", {
        "allocations": {U("cn1"): {"resources": {"VCPU": 2, "MEMORY_MB": 512}}},
        "project_id": U("p1"), "user_id": U("u1"), "consumer_generation": None, "consumer_type": "INSTANCE"}, v=38)
    s.setup("world-alloc-c2", "PUT", f"/allocations/{U('c2')}", {
        "allocations": {U("cn2"): {"resources": {"VCPU": 1}}, U("nfs"): {"resources": {"DISK_GB": 20}}},
        "project_id": U("p2"), "user_id": U("u2")}, v=12)


# ------------------------------------------------------------------ GET / and versions

def root(s: Script) -> None:
    for v in (None, 0, 1, 15, 38, 39, "latest", "1.40", "2.0", "0.9", "1.a", "1", "LATEST", "1. 5", "1.05"):
        s.req(f"root-version-{v}", "GET", "/", v=v)
        s.req(f"root-version-providers-{v}", "GET", "/resource_providers", v=v)
    s.req("root-two-headers", "GET", "/resource_providers",
          headers={"OpenStack-API-Version": "compute 2.1, placement 1.14"})
    s.req("root-other-service", "GET", "/resource_providers", headers={"OpenStack-API-Version": "compute 2.1"})
    s.req("root-no-token", "GET", "/", token=None)
    s.req("root-no-token-providers", "GET", "/resource_providers", token=None)
    for accept in ("text/html", "text/plain", "application/xml", "application/json;q=0.5, text/html", "*/*", ""):
        s.req(f"root-accept-{accept}", "GET", "/", headers={"Accept": accept})
        s.req(f"root-accept-providers-{accept}", "GET", "/resource_providers", headers={"Accept": accept})
        s.req(f"root-accept-404-{accept}", "GET", f"/resource_providers/{U('nowhere')}", v=30,
              headers={"Accept": accept})


# ------------------------------------------------------------------ resource providers

def providers(s: Script) -> None:
    p = "/resource_providers"
    bad_bodies = {
        "empty": {}, "no-name": {"uuid": U("x")}, "name-null": {"name": None}, "name-int": {"name": 3},
        "name-long": {"name": "n" * 201}, "name-empty": {"name": ""}, "uuid-bad": {"name": "x", "uuid": "not-a-uuid"},
        "uuid-int": {"name": "x", "uuid": 5}, "extra": {"name": "x", "foo": 1},
        "parent-bad": {"name": "x", "parent_provider_uuid": "zzz"},
        "parent-unknown": {"name": "x-orphan", "parent_provider_uuid": U("nowhere")},
        "list": [], "string": "x",
    }
    for v in (0, 14, 20, 37, 39):
        for name, body in bad_bodies.items():
            s.req(f"rp-create-{name}", "POST", p, body, v=v)
    s.req("rp-create-malformed", "POST", p, raw=b"{not json", v=20)
    s.req("rp-create-dup-name", "POST", p, {"name": "cn1"}, v=20)
    s.req("rp-create-dup-uuid", "POST", p, {"name": "other", "uuid": U("cn1")}, v=20)
    s.req("rp-create-self-parent", "POST", p, {"name": "selfish", "uuid": U("selfish"),
                                               "parent_provider_uuid": U("selfish")}, v=20)
    s.req("rp-create-1.0", "POST", p, {"name": "made-1.0", "uuid": U("made-1.0")}, v=0)
    s.req("rp-create-1.19", "POST", p, {"name": "made-1.19", "uuid": U("made-1.19")}, v=19)
    s.req("rp-create-1.20", "POST", p, {"name": "made-1.20", "uuid": U("made-1.20")}, v=20)
    s.req("rp-create-no-uuid", "POST", p, {"name": "made-nouuid"}, v=20)
    s.req("rp-create-upper-uuid", "POST", p, {"name": "made-upper", "uuid": U("made-upper").upper()}, v=20)
    s.req("rp-create-child", "POST", p, {"name": "made-child", "uuid": U("made-child"),
                                          "parent_provider_uuid": U("made-1.20")}, v=14)
    s.req("rp-create-parent-before-1.14", "POST", p, {"name": "pp", "parent_provider_uuid": U("made-1.20")}, v=13)
    for v in (0, 11, 14, 15, 19, 20, 29, 37, 39):
        s.req(f"rp-get-{v}", "GET", f"{p}/{U('cn1')}", v=v)
        s.req(f"rp-get-child-{v}", "GET", f"{p}/{U('cn1-numa0')}", v=v)
    s.req("rp-get-missing", "GET", f"{p}/{U('nowhere')}", v=39)
    s.req("rp-get-bad-uuid", "GET", f"{p}/not-a-uuid", v=39)
    filters = ["name=cn1", "name=", "uuid=" + U("cn2"), "uuid=bad", "member_of=" + U("agg1"),
               "member_of=in:" + U("agg1") + "," + U("agg2"), "member_of=!" + U("agg1"), "member_of=bad",
               "member_of=" + U("agg1") + "&member_of=" + U("agg2"), "resources=VCPU:2",
               "resources=VCPU:2,MEMORY_MB:3000", "resources=VCPU", "resources=NOPE:1", "resources=VCPU:0",
               "in_tree=" + U("cn1"), "in_tree=" + U("nowhere"), "in_tree=bad", "required=HW_CPU_X86_AVX2",
               "required=!HW_CPU_X86_AVX2", "required=in:HW_CPU_X86_AVX2,CUSTOM_GOLD", "required=NOPE",
               "required=", "foo=bar", "name=cn1&name=cn2", "required=HW_CPU_X86_AVX2&required=CUSTOM_GOLD"]
    for v in (0, 3, 4, 14, 18, 22, 24, 32, 39):
        for f in filters:
            s.req(f"rp-list-{f}", "GET", f"{p}?{f}", v=v)
    # updates
    for v in (0, 14, 36, 37):
        s.req(f"rp-update-{v}", "PUT", f"{p}/{U('made-1.0')}", {"name": f"renamed-{v}"}, v=v)
        s.req(f"rp-update-bad-{v}", "PUT", f"{p}/{U('made-1.0')}", {"name": ""}, v=v)
        s.req(f"rp-update-extra-{v}", "PUT", f"{p}/{U('made-1.0')}", {"name": "x", "uuid": U("x")}, v=v)
        s.req(f"rp-update-missing-{v}", "PUT", f"{p}/{U('nowhere')}", {"name": "x"}, v=v)
        s.req(f"rp-update-dup-{v}", "PUT", f"{p}/{U('made-1.0')}", {"name": "cn1"}, v=v)
        s.req(f"rp-update-self-parent-{v}", "PUT", f"{p}/{U('made-1.0')}",
              {"name": "x", "parent_provider_uuid": U("made-1.0")}, v=v)
        s.req(f"rp-update-reparent-{v}", "PUT", f"{p}/{U('made-child')}",
              {"name": "made-child", "parent_provider_uuid": U("made-1.19")}, v=v)
        s.req(f"rp-update-unparent-{v}", "PUT", f"{p}/{U('made-child')}",
              {"name": "made-child", "parent_provider_uuid": None}, v=v)
        s.req(f"rp-update-loop-{v}", "PUT", f"{p}/{U('made-1.19')}",
              {"name": "made-1.19", "parent_provider_uuid": U("made-child")}, v=v)
        s.req(f"rp-update-parent-unknown-{v}", "PUT", f"{p}/{U('made-child')}",
              {"name": "made-child", "parent_provider_uuid": U("nowhere")}, v=v)
    s.req("rp-update-no-ct", "PUT", f"{p}/{U('made-1.0')}", {"name": "x"}, ct=None, v=20)
    # deletes
    s.req("rp-delete-parent", "DELETE", f"{p}/{U('cn1')}", v=39)
    s.req("rp-delete-in-use", "DELETE", f"{p}/{U('cn2')}", v=39)
    s.req("rp-delete-missing", "DELETE", f"{p}/{U('nowhere')}", v=39)
    s.req("rp-delete-1.20", "DELETE", f"{p}/{U('made-1.20')}", v=39)
    s.req("rp-delete-1.0", "DELETE", f"{p}/{U('made-1.0')}", v=0)
    s.req("rp-get-deleted", "GET", f"{p}/{U('made-1.0')}", v=0)


# ------------------------------------------------------------------ inventories

def inventories(s: Script) -> None:
    s.setup("inv-provider", "POST", "/resource_providers", {"name": "inv", "uuid": U("inv")}, v=20)
    base = f"/resource_providers/{U('inv')}/inventories"
    values = {"total-0": {"total": 0}, "total-neg": {"total": -1}, "total-str": {"total": "8"},
              "total-big": {"total": 2147483648}, "total-float": {"total": 1.5}, "total-missing": {"reserved": 1},
              "reserved-neg": {"total": 8, "reserved": -1}, "reserved-eq": {"total": 8, "reserved": 8},
              "reserved-over": {"total": 8, "reserved": 9}, "min-unit-0": {"total": 8, "min_unit": 0},
              "max-unit-0": {"total": 8, "max_unit": 0}, "step-0": {"total": 8, "step_size": 0},
              "ratio-neg": {"total": 8, "allocation_ratio": -1.0}, "ratio-zero": {"total": 8, "allocation_ratio": 0},
              "ratio-str": {"total": 8, "allocation_ratio": "2"}, "ratio-huge": {"total": 8, "allocation_ratio": 1e39},
              "extra": {"total": 8, "foo": 1}, "min-over-max": {"total": 8, "min_unit": 5, "max_unit": 2}}
    for v in (0, 25, 26):
        for name, record in values.items():
            s.req(f"inv-post-{name}", "POST", base, dict(record, resource_class="VCPU"), v=v)
            s.req(f"inv-put-all-{name}", "PUT", base, {"resource_provider_generation": 0,
                                                       "inventories": {"VCPU": record}}, v=v)
            s.req(f"inv-put-one-{name}", "PUT", f"{base}/VCPU", dict(record, resource_provider_generation=0), v=v)
    s.req("inv-post-no-class", "POST", base, {"total": 8}, v=0)
    s.req("inv-post-bad-class", "POST", base, {"total": 8, "resource_class": "vcpu"}, v=0)
    s.req("inv-post-unknown-class", "POST", base, {"total": 8, "resource_class": "CUSTOM_NOPE"}, v=0)
    s.req("inv-post-missing-provider", "POST", f"/resource_providers/{U('nowhere')}/inventories",
          {"total": 8, "resource_class": "VCPU"}, v=0)
    s.req("inv-post-missing-provider-bad", "POST", f"/resource_providers/{U('nowhere')}/inventories",
          {"total": 0, "resource_class": "VCPU"}, v=0)
    for v in (0, 15):
        s.req(f"inv-post-ok-{v}", "POST", base, {"total": 8, "resource_class": "VCPU" if v == 0 else "MEMORY_MB"}, v=v)
    s.req("inv-post-dup", "POST", base, {"total": 8, "resource_class": "VCPU"}, v=0)
    s.req("inv-post-gen", "POST", base, {"total": 8, "resource_class": "DISK_GB", "resource_provider_generation": 99},
          v=0)
    for v in (0, 14, 15, 39):
        s.req(f"inv-get-all-{v}", "GET", base, v=v)
        s.req(f"inv-get-one-{v}", "GET", f"{base}/VCPU", v=v)
    s.req("inv-get-one-none", "GET", f"{base}/SRIOV_NET_VF", v=0)
    s.req("inv-get-one-bad-class", "GET", f"{base}/vcpu", v=0)
    s.req("inv-get-missing-provider", "GET", f"/resource_providers/{U('nowhere')}/inventories", v=0)
    s.req("inv-get-one-missing-provider", "GET", f"/resource_providers/{U('nowhere')}/inventories/VCPU", v=0)
    s.req("inv-put-one-stale", "PUT", f"{base}/VCPU", {"total": 9, "resource_provider_generation": 0}, v=0)
    s.req("inv-put-one-ok", "PUT", f"{base}/VCPU", {"total": 9, "resource_provider_generation": 3}, v=15)
    s.req("inv-put-one-absent", "PUT", f"{base}/SRIOV_NET_VF", {"total": 9, "resource_provider_generation": 4}, v=0)
    s.req("inv-put-one-unknown", "PUT", f"{base}/CUSTOM_NOPE", {"total": 9, "resource_provider_generation": 4}, v=0)
    s.req("inv-put-all-stale", "PUT", base, {"resource_provider_generation": 0, "inventories": {}}, v=0)
    s.req("inv-put-all-bad-class", "PUT", base, {"resource_provider_generation": 4,
                                                 "inventories": {"vcpu": {"total": 1}}}, v=0)
    s.req("inv-put-all-unknown-class", "PUT", base, {"resource_provider_generation": 4,
                                                     "inventories": {"CUSTOM_NOPE": {"total": 1}}}, v=0)
    s.req("inv-put-all-no-gen", "PUT", base, {"inventories": {}}, v=0)
    s.req("inv-put-all-ok", "PUT", base, {"resource_provider_generation": 4, "inventories": {
        "VCPU": {"total": 4}, "DISK_GB": {"total": 100, "reserved": 100}}}, v=26)
    s.req("inv-put-all-ok-1.15", "PUT", base, {"resource_provider_generation": 5, "inventories": {
        "VCPU": {"total": 4}, "DISK_GB": {"total": 100}}}, v=15)
    # in use
    s.setup("inv-alloc", "PUT", f"/allocations/{U('inv-c')}", {
        "allocations": {U("inv"): {"resources": {"VCPU": 3}}}, "project_id": U("p1"), "user_id": U("u1")}, v=12)
    s.req("inv-shrink-below-use", "PUT", f"{base}/VCPU", {"total": 2, "resource_provider_generation": 7}, v=0)
    s.req("inv-shrink-all-below-use", "PUT", base, {"resource_provider_generation": 7,
                                                    "inventories": {"VCPU": {"total": 2}}}, v=0)
    s.req("inv-delete-in-use", "DELETE", f"{base}/VCPU", v=0)
    s.req("inv-delete-in-use-1.23", "DELETE", f"{base}/VCPU", v=23)
    s.req("inv-put-all-drop-in-use", "PUT", base, {"resource_provider_generation": 7,
                                                   "inventories": {"DISK_GB": {"total": 100}}}, v=23)
    s.req("inv-delete-all-in-use", "DELETE", base, v=5)
    s.req("inv-delete-all-1.4", "DELETE", base, v=4)
    s.req("inv-delete-one", "DELETE", f"{base}/DISK_GB", v=0)
    s.req("inv-delete-one-again", "DELETE", f"{base}/DISK_GB", v=0)
    s.req("inv-delete-one-missing-provider", "DELETE", f"/resource_providers/{U('nowhere')}/inventories/VCPU", v=0)
    s.req("inv-delete-all-missing-provider", "DELETE", f"/resource_providers/{U('nowhere')}/inventories", v=5)
    s.setup("inv-free", "DELETE", f"/allocations/{U('inv-c')}", v=0)
    s.req("inv-delete-all", "DELETE", base, v=5)
    s.req("inv-get-after-delete", "GET", base, v=15)


# ------------------------------------------------------------------ aggregates

def aggregates(s: Script) -> None:
    base = f"/resource_providers/{U('cn2')}/aggregates"
    for v in (0, 1, 15, 18, 19, 39):
        s.req(f"agg-get-{v}", "GET", base, v=v)
    bodies = {"list": [U("agg2")], "dict": {"aggregates": [U("agg2")]}, "bad-uuid": ["nope"],
              "dup": [U("agg2"), U("agg2")], "gen": {"aggregates": [U("agg2")], "resource_provider_generation": 99},
              "gen-ok": {"aggregates": [U("agg2")], "resource_provider_generation": 2}, "empty": [],
              "dict-no-gen": {"aggregates": []}, "extra": {"aggregates": [], "resource_provider_generation": 3, "x": 1}}
    for v in (1, 18, 19):
        for name, body in bodies.items():
            s.req(f"agg-put-{name}", "PUT", base, body, v=v)
    s.req("agg-put-1.0", "PUT", base, [U("agg2")], v=0)
    s.req("agg-missing-provider", "GET", f"/resource_providers/{U('nowhere')}/aggregates", v=19)
    s.req("agg-put-missing-provider", "PUT", f"/resource_providers/{U('nowhere')}/aggregates",
          {"aggregates": [], "resource_provider_generation": 0}, v=19)


# ------------------------------------------------------------------ traits

def traits(s: Script) -> None:
    for v in (5, 6, 39):
        s.req(f"trait-list-{v}", "GET", "/traits?name=startswith:CUSTOM", v=v)
    for q in ("name=in:HW_CPU_X86_AVX2,CUSTOM_GOLD,NOPE", "name=startswith:HW_CPU_X86_AVX", "name=bad",
              "name=in:", "associated=true", "associated=false", "associated=maybe", "foo=1",
              "name=startswith:CUSTOM&associated=true", ""):
        s.req(f"trait-list-q-{q}", "GET", f"/traits?{q}", v=6)
    for name in ("CUSTOM_NEW", "CUSTOM_NEW", "NOT_CUSTOM", "CUSTOM_lower", "CUSTOM_" + "X" * 300, "HW_CPU_X86_AVX2"):
        s.req(f"trait-put-{name[:20]}", "PUT", f"/traits/{name}", v=6)
        s.req(f"trait-get-{name[:20]}", "GET", f"/traits/{name}", v=6)
    s.req("trait-put-1.15", "PUT", "/traits/CUSTOM_NEW15", v=15)
    s.req("trait-get-1.15", "GET", "/traits/CUSTOM_NEW15", v=15)
    s.req("trait-get-1.5", "GET", "/traits/CUSTOM_NEW", v=5)
    s.req("trait-delete-standard", "DELETE", "/traits/HW_CPU_X86_AVX2", v=6)
    s.req("trait-delete-in-use", "DELETE", "/traits/CUSTOM_GOLD", v=6)
    s.req("trait-delete-missing", "DELETE", "/traits/CUSTOM_NOPE", v=6)
    s.req("trait-delete", "DELETE", "/traits/CUSTOM_NEW", v=6)
    rp = f"/resource_providers/{U('cn1')}/traits"
    for v in (5, 6, 15, 39):
        s.req(f"rp-traits-get-{v}", "GET", rp, v=v)
    bodies = {"ok": {"resource_provider_generation": 2, "traits": ["HW_CPU_X86_SSE"]},
              "stale": {"resource_provider_generation": 0, "traits": []},
              "unknown": {"resource_provider_generation": 3, "traits": ["CUSTOM_NOPE"]},
              "bad-name": {"resource_provider_generation": 3, "traits": ["lower"]},
              "dup": {"resource_provider_generation": 3, "traits": ["HW_CPU_X86_SSE", "HW_CPU_X86_SSE"]},
              "no-gen": {"traits": []}, "no-traits": {"resource_provider_generation": 3},
              "extra": {"resource_provider_generation": 3, "traits": [], "x": 1},
              "not-list": {"resource_provider_generation": 3, "traits": "HW_CPU_X86_SSE"}}
    for name, body in bodies.items():
        s.req(f"rp-traits-put-{name}", "PUT", rp, body, v=6)
    s.req("rp-traits-put-1.15", "PUT", rp, {"resource_provider_generation": 3, "traits": ["HW_CPU_X86_SSE2"]}, v=15)
    s.req("rp-traits-missing", "GET", f"/resource_providers/{U('nowhere')}/traits", v=6)
    s.req("rp-traits-put-missing", "PUT", f"/resource_providers/{U('nowhere')}/traits",
          {"resource_provider_generation": 0, "traits": []}, v=6)
    s.req("rp-traits-delete-missing", "DELETE", f"/resource_providers/{U('nowhere')}/traits", v=6)
    s.req("rp-traits-delete", "DELETE", rp, v=6)
    s.req("rp-traits-get-after", "GET", rp, v=6)


# ------------------------------------------------------------------ resource classes

def resource_classes(s: Script) -> None:
    for v in (1, 2, 15, 39):
        s.req(f"rc-list-{v}", "GET", "/resource_classes", v=v)
        s.req(f"rc-get-{v}", "GET", "/resource_classes/VCPU", v=v)
    bodies = {"ok": {"name": "CUSTOM_ONE"}, "dup": {"name": "CUSTOM_ONE"}, "standard": {"name": "VCPU"},
              "not-custom": {"name": "FOO"}, "lower": {"name": "CUSTOM_one"}, "long": {"name": "CUSTOM_" + "A" * 300},
              "empty": {}, "extra": {"name": "CUSTOM_TWO", "x": 1}, "int": {"name": 1}}
    for name, body in bodies.items():
        s.req(f"rc-post-{name}", "POST", "/resource_classes", body, v=2)
    s.req("rc-post-1.15", "POST", "/resource_classes", {"name": "CUSTOM_FIFTEEN"}, v=15)
    s.req("rc-post-1.1", "POST", "/resource_classes", {"name": "CUSTOM_OLD"}, v=1)
    s.req("rc-get-custom", "GET", "/resource_classes/CUSTOM_ONE", v=15)
    s.req("rc-get-missing", "GET", "/resource_classes/CUSTOM_NOPE", v=2)
    s.req("rc-get-bad", "GET", "/resource_classes/lower", v=2)
    for v in (2, 6):
        s.req(f"rc-put-rename-{v}", "PUT", "/resource_classes/CUSTOM_ONE", {"name": f"CUSTOM_ONE_{v}"}, v=v)
        s.req(f"rc-put-standard-{v}", "PUT", "/resource_classes/VCPU", {"name": "CUSTOM_V"}, v=v)
        s.req(f"rc-put-bad-{v}", "PUT", "/resource_classes/CUSTOM_ONE_2", {"name": "bad"}, v=v)
        s.req(f"rc-put-missing-{v}", "PUT", "/resource_classes/CUSTOM_NOPE", {"name": "CUSTOM_NOPE2"}, v=v)
        s.req(f"rc-put-dup-{v}", "PUT", "/resource_classes/CUSTOM_ONE_2", {"name": "CUSTOM_FIFTEEN"}, v=v)
    for v in (7, 15):
        s.req(f"rc-put-create-{v}", "PUT", f"/resource_classes/CUSTOM_PUT_{v}", v=v)
        s.req(f"rc-put-exists-{v}", "PUT", f"/resource_classes/CUSTOM_PUT_{v}", v=v)
        s.req(f"rc-put-body-{v}", "PUT", f"/resource_classes/CUSTOM_PUT_{v}", {"name": "CUSTOM_X"}, v=v)
        s.req(f"rc-put-standard-{v}", "PUT", "/resource_classes/VCPU", v=v)
        s.req(f"rc-put-bad-{v}", "PUT", "/resource_classes/NOT_CUSTOM", v=v)
    s.setup("rc-use", "POST", f"/resource_providers/{U('inv')}/inventories",
            {"resource_class": "CUSTOM_FIFTEEN", "total": 1}, v=15)
    s.req("rc-delete-in-use", "DELETE", "/resource_classes/CUSTOM_FIFTEEN", v=2)
    s.req("rc-delete-standard", "DELETE", "/resource_classes/VCPU", v=2)
    s.req("rc-delete-missing", "DELETE", "/resource_classes/CUSTOM_NOPE", v=2)
    s.req("rc-delete", "DELETE", "/resource_classes/CUSTOM_PUT_7", v=2)
    s.req("rc-delete-1.1", "DELETE", "/resource_classes/CUSTOM_PUT_15", v=1)


# ------------------------------------------------------------------ allocations

def allocations(s: Script) -> None:
    cn1, cn2, nfs = U("cn1"), U("cn2"), U("nfs")
    owner = {"project_id": U("p1"), "user_id": U("u1")}
    list_form = {"allocations": [{"resource_provider": {"uuid": cn1}, "resources": {"VCPU": 1}}]}
    dict_form = {"allocations": {cn1: {"resources": {"VCPU": 1}}}}
    for v in (0, 7, 8, 11, 12, 27, 28, 37, 38, 39):
        for name, body in {"list": list_form, "list-owner": dict(list_form, **owner), "dict": dict_form,
                           "dict-owner": dict(dict_form, **owner),
                           "dict-gen": dict(dict_form, consumer_generation=None, **owner),
                           "dict-type": dict(dict_form, consumer_generation=None, consumer_type="INSTANCE", **owner),
                           "empty": {"allocations": {}}, "nothing": {}}.items():
            s.req(f"alloc-put-{name}", "PUT", f"/allocations/{U(f'a-{v}-{name}')}", body, v=v)
    for v in (12, 28, 38):
        base = dict(consumer_generation=None, consumer_type="INSTANCE", **owner)
        bad = {"over-capacity": {cn2: {"resources": {"VCPU": 100}}},
               "zero": {cn1: {"resources": {"VCPU": 0}}}, "neg": {cn1: {"resources": {"VCPU": -1}}},
               "string-amount": {cn1: {"resources": {"VCPU": "1"}}},
               "unknown-class": {cn1: {"resources": {"CUSTOM_NOPE": 1}}},
               "no-inventory": {cn1: {"resources": {"SRIOV_NET_VF": 1}}},
               "bad-class": {cn1: {"resources": {"vcpu": 1}}},
               "missing-provider": {U("nowhere"): {"resources": {"VCPU": 1}}},
               "bad-provider": {"nope": {"resources": {"VCPU": 1}}},
               "no-resources": {cn1: {}}, "empty-resources": {cn1: {"resources": {}}},
               "max-unit": {cn1: {"resources": {"MEMORY_MB": 4000}}},
               "step": {cn1: {"resources": {"DISK_GB": 3}}},
               "reserved": {cn1: {"resources": {"DISK_GB": 95}}},
               "extra": {cn1: {"resources": {"VCPU": 1}, "generation": 1}}}
        for name, allocs in bad.items():
            s.req(f"alloc-put-{name}" if name != "missing-provider" else "alloc-missing-provider-leftover",
                  "PUT", f"/allocations/{U(f'bad-{v}-{name}')}", dict(base, allocations=allocs), v=v)
        s.req(f"alloc-put-bad-consumer-{v}", "PUT", "/allocations/not-a-uuid",
              dict(base, allocations=dict_form["allocations"]), v=v)
        s.req(f"alloc-put-bad-project-{v}", "PUT", f"/allocations/{U('bp')}",
              dict(base, project_id="", allocations=dict_form["allocations"]), v=v)
        s.req(f"alloc-put-bad-type-{v}", "PUT", f"/allocations/{U('bp')}",
              dict(base, consumer_type="lower", allocations=dict_form["allocations"]), v=v)
    # consumer generations
    c = f"/allocations/{U('gen-c')}"
    s.req("alloc-gen-create", "PUT", c, dict(dict_form, consumer_generation=None, **owner), v=28)
    s.req("alloc-gen-stale-null", "PUT", c, dict(dict_form, consumer_generation=None, **owner), v=28)
    s.req("alloc-gen-stale", "PUT", c, dict(dict_form, consumer_generation=5, **owner), v=28)
    s.req("alloc-gen-ok", "PUT", c, dict(dict_form, consumer_generation=1, **owner), v=28)
    s.req("alloc-gen-missing", "PUT", c, dict(dict_form, **owner), v=28)
    for v in (0, 12, 15, 28, 38):
        s.req(f"alloc-get-{v}", "GET", c, v=v)
        s.req(f"alloc-get-none-{v}", "GET", f"/allocations/{U('never')}", v=v)
        s.req(f"alloc-get-rp-{v}", "GET", f"/resource_providers/{cn1}/allocations", v=v)
    s.req("alloc-get-rp-missing", "GET", f"/resource_providers/{U('nowhere')}/allocations", v=0)
    s.req("alloc-get-bad", "GET", "/allocations/not-a-uuid", v=28)
    s.req("alloc-gen-type-change", "PUT", c, dict(dict_form, consumer_generation=2, consumer_type="MIGRATION",
                                                   **owner), v=38)
    s.req("alloc-gen-type-get", "GET", c, v=38)
    s.req("alloc-gen-empty", "PUT", c, dict(consumer_generation=3, allocations={}, **owner), v=28)
    s.req("alloc-gen-after-empty", "GET", c, v=28)
    s.req("alloc-delete-missing", "DELETE", f"/allocations/{U('never')}", v=28)
    s.req("alloc-delete", "DELETE", f"/allocations/{U('a-12-dict-owner')}", v=28)
    s.req("alloc-delete-again", "DELETE", f"/allocations/{U('a-12-dict-owner')}", v=28)
    # POST /allocations
    def post(label, body, v):
        s.req(label, "POST", "/allocations", body, v=v)
    one = {"allocations": {cn1: {"resources": {"VCPU": 1}}}, **owner}
    for v in (12, 13, 28, 34, 38):
        extra = {}
        if v >= 28:
            extra["consumer_generation"] = None
        if v >= 38:
            extra["consumer_type"] = "INSTANCE"
        post(f"alloc-post-ok-{v}", {U(f"post-{v}-1"): dict(one, **extra), U(f"post-{v}-2"): dict(one, **extra)}, v)
        post(f"alloc-post-empty-{v}", {}, v)
        post(f"alloc-post-bad-key-{v}", {"nope": dict(one, **extra)}, v)
        post(f"alloc-post-over-{v}", {U(f"post-{v}-3"): dict(one, allocations={cn2: {"resources": {"VCPU": 99}}},
                                                            **extra)}, v)
        post(f"alloc-post-missing-owner-{v}", {U(f"post-{v}-4"): {"allocations": one["allocations"], **extra}}, v)
        cleared = dict(extra, consumer_generation=1) if v >= 28 else extra
        post(f"alloc-post-clear-{v}", {U(f"post-{v}-1"): dict(one, allocations={}, **cleared)}, v)
        post(f"alloc-post-unknown-class-{v}", {U(f"post-{v}-5"): dict(
            one, allocations={cn1: {"resources": {"CUSTOM_NOPE": 1}}}, **extra)}, v)
        post(f"alloc-post-list-{v}", [], v)
    post("alloc-post-stale", {U("post-28-2"): dict(one, consumer_generation=0)}, 28)
    post("alloc-post-missing-provider", {U("post-x"): dict(one, allocations={U("nowhere"): {"resources": {"VCPU": 1}}},
                                                            consumer_generation=None)}, 28)


def overcommit(s: Script) -> None:
    """An inventory shrunk below what is allocated: a consumer may still shrink its claim (upstream only
    refuses what leaves the provider more used than before)."""
    oc, owner = U("oc"), {"project_id": U("p1"), "user_id": U("u1")}
    s.setup("oc-provider", "POST", "/resource_providers", {"name": "oc", "uuid": oc}, v=20)
    s.setup("oc-inv", "PUT", f"/resource_providers/{oc}/inventories",
            {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}}, v=20)
    s.req("oc-claim", "PUT", f"/allocations/{U('oc-c')}", {"allocations": {oc: {"resources": {"VCPU": 4}}},
                                                           "consumer_generation": None, **owner}, v=28)
    s.req("oc-shrink", "PUT", f"/resource_providers/{oc}/inventories",
          {"resource_provider_generation": 2, "inventories": {"VCPU": {"total": 2}}}, v=28)
    for step, amount, generation in (("less", 3, 1), ("same", 3, 2), ("more", 4, 3)):
        s.req(f"oc-{step}", "PUT", f"/allocations/{U('oc-c')}", {
            "allocations": {oc: {"resources": {"VCPU": amount}}}, "consumer_generation": generation, **owner}, v=28)
    s.req("oc-other", "PUT", f"/allocations/{U('oc-d')}", {"allocations": {oc: {"resources": {"VCPU": 1}}},
                                                           "consumer_generation": None, **owner}, v=28)
    s.req("oc-post", "POST", "/allocations", {U("oc-c"): {"allocations": {oc: {"resources": {"VCPU": 2}}},
                                                          "consumer_generation": 3, **owner}}, v=28)
    s.req("oc-usages", "GET", f"/resource_providers/{oc}/usages", v=28)


def mappings(s: Script) -> None:
    cn1, numa = U("mp"), U("mp-nic")   # a tree of its own, large enough for every claim below
    s.setup("map-root", "POST", "/resource_providers", {"name": "mp", "uuid": cn1}, v=20)
    s.setup("map-nic", "POST", "/resource_providers",
            {"name": "mp-nic", "uuid": numa, "parent_provider_uuid": cn1}, v=20)
    s.setup("map-root-inv", "PUT", f"/resource_providers/{cn1}/inventories",
            {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 1000}}}, v=20)
    s.setup("map-nic-inv", "PUT", f"/resource_providers/{numa}/inventories",
            {"resource_provider_generation": 0, "inventories": {"SRIOV_NET_VF": {"total": 1000}}}, v=20)
    owner = {"project_id": U("p1"), "user_id": U("u1"), "consumer_generation": None}
    allocs = {cn1: {"resources": {"VCPU": 1}}, numa: {"resources": {"SRIOV_NET_VF": 1}}}
    cases = {"ok": {"": [cn1], "_NIC": [numa]}, "empty": {}, "empty-list": {"": []}, "bad-uuid": {"": ["nope"]},
             "bad-suffix": {"!!": [cn1]}, "unknown-provider": {"": [U("nowhere")]},
             "not-in-allocations": {"": [U("cn2")]}, "not-dict": [cn1], "int-items": {"": [1]}}
    for v in (33, 34, 39):
        for name, mapping in cases.items():
            body = dict(owner, allocations=allocs, mappings=mapping)
            if v >= 38:
                body["consumer_type"] = "INSTANCE"
            s.req(f"map-put-{name}", "PUT", f"/allocations/{U(f'map-{v}-{name}')}", body, v=v)
            s.req(f"map-post-{name}", "POST", "/allocations", {U(f"mapp-{v}-{name}"): body}, v=v)
    # a POST whose consumers together want more than there is
    big = dict(owner, allocations={U("cn2"): {"resources": {"VCPU": 2}}}, mappings={"": [U("cn2")]})
    s.req("map-post-conflict", "POST", "/allocations", {U("mc1"): big, U("mc2"): big, U("mc3"): big}, v=34)
    s.req("map-post-conflict-get", "GET", f"/resource_providers/{U('cn2')}/usages", v=34)
    s.req("map-get", "GET", f"/allocations/{U('map-34-ok')}", v=34)


# ------------------------------------------------------------------ usages

def usages(s: Script) -> None:
    for v in (0, 8, 9, 15, 37, 38, 39):
        s.req(f"usage-rp-{v}", "GET", f"/resource_providers/{U('cn1')}/usages", v=v)
        for q in (f"project_id={U('p1')}", f"project_id={U('p1')}&user_id={U('u1')}", "", f"user_id={U('u1')}",
                  f"project_id={U('p1')}&consumer_type=INSTANCE", f"project_id={U('p1')}&consumer_type=all",
                  f"project_id={U('p1')}&consumer_type=unknown", f"project_id={U('p1')}&consumer_type=lower",
                  f"project_id={U('p1')}&foo=1", "project_id="):
            s.req(f"usage-total-{q}", "GET", f"/usages?{q}", v=v)
    s.req("usage-rp-missing", "GET", f"/resource_providers/{U('nowhere')}/usages", v=0)


# ------------------------------------------------------------------ allocation candidates

def candidates(s: Script) -> None:
    queries = [
        "resources=VCPU:1", "resources=VCPU:1,MEMORY_MB:512,DISK_GB:10", "resources=VCPU:1&limit=1",
        "resources=VCPU:100", "resources=VCPU:1,SRIOV_NET_VF:1", "resources=DISK_GB:10",
        "resources=VCPU:1&required=HW_CPU_X86_AVX2", "resources=VCPU:1&required=!HW_CPU_X86_AVX2",
        "resources=VCPU:1&required=in:HW_CPU_X86_AVX2,CUSTOM_GOLD", "resources=VCPU:1&member_of=" + U("agg1"),
        "resources=VCPU:1&member_of=!" + U("agg1"), "resources=VCPU:1&in_tree=" + U("cn1"),
        "resources=VCPU:1&resources1=SRIOV_NET_VF:1&group_policy=isolate",
        "resources=VCPU:1&resources1=SRIOV_NET_VF:1&group_policy=none",
        "resources1=VCPU:1&resources2=VCPU:1&group_policy=isolate",
        "resources1=VCPU:1&resources2=SRIOV_NET_VF:1", "resources_NIC=SRIOV_NET_VF:1&group_policy=none",
        "resources=VCPU:1&root_required=CUSTOM_GOLD", "resources=VCPU:1&root_required=!CUSTOM_GOLD",
        "resources=DISK_GB:10&root_required=!CUSTOM_GOLD",
        "resources=DISK_GB:10&root_required=MISC_SHARES_VIA_AGGREGATE",
        "resources=VCPU:1,DISK_GB:10&root_required=!HW_CPU_X86_AVX2",
        "resources1=SRIOV_NET_VF:1&required2=HW_CPU_X86_AVX2&same_subtree=1,2&group_policy=none",
        "resources=VCPU:1&resources1=SRIOV_NET_VF:1&same_subtree=,1&group_policy=none",
        "", "resources=", "resources=VCPU", "resources=VCPU:0", "resources=NOPE:1", "resources=vcpu:1",
        "resources=VCPU:1&limit=0", "resources=VCPU:1&limit=x", "resources=VCPU:1&required=NOPE",
        "resources=VCPU:1&required=", "resources=VCPU:1&member_of=bad", "resources=VCPU:1&in_tree=bad",
        "resources=VCPU:1&group_policy=bad", "resources1=VCPU:1&resources2=VCPU:1",
        "resources=VCPU:1&foo=1", "resources=VCPU:1&resources=MEMORY_MB:1", "resources1=VCPU:1&required2=CUSTOM_GOLD",
        "resources=VCPU:1&same_subtree=1", "resources=VCPU:1&root_required=NOPE",
        "resources=VCPU:2147483648", "resources=VCPU:-1",
        # root_required with a sharing provider in the tree's aggregate
        "resources=VCPU:1,DISK_GB:10&root_required=MISC_SHARES_VIA_AGGREGATE",
        "resources=DISK_GB:10&root_required=!MISC_SHARES_VIA_AGGREGATE",
        "resources=VCPU:1,DISK_GB:10&root_required=!MISC_SHARES_VIA_AGGREGATE",
        "resources=VCPU:1,DISK_GB:10&root_required=!CUSTOM_GOLD",
        "resources1=DISK_GB:10&resources2=VCPU:1&root_required=!MISC_SHARES_VIA_AGGREGATE&group_policy=none",
        "resources=DISK_GB:10&required=MISC_SHARES_VIA_AGGREGATE&root_required=MISC_SHARES_VIA_AGGREGATE",
        "resources=VCPU:1,DISK_GB:10&root_required=in:HW_CPU_X86_AVX2,CUSTOM_GOLD",
        "resources=VCPU:1,DISK_GB:10&root_required=!HW_CPU_X86_AVX2&root_required=!CUSTOM_GOLD",
        "resources=VCPU:1&resources1=DISK_GB:10&root_required=!HW_CPU_X86_AVX2&group_policy=isolate",
        "resources=DISK_GB:10&member_of=" + U("agg1") + "&root_required=!MISC_SHARES_VIA_AGGREGATE",
    ]
    for v in (10, 12, 16, 17, 21, 24, 25, 28, 29, 31, 32, 33, 34, 35, 36, 38, 39):
        for q in queries:
            s.req(f"ac-{q}", "GET", f"/allocation_candidates?{q}", v=v)
    s.req("ac-1.9", "GET", "/allocation_candidates?resources=VCPU:1", v=9)


# ------------------------------------------------------------------ the reshaper

def reshaper(s: Script) -> None:
    """A host that grows a child: its VCPU and the allocation on it move to the child, then back; then a
    consolidation (two children's inventory into the root) and refused reshapes."""
    host, child, child2 = U("rs-host"), U("rs-child"), U("rs-child2")
    s.setup("rs-host", "POST", "/resource_providers", {"name": "rs-host", "uuid": host}, v=30)
    s.setup("rs-child", "POST", "/resource_providers", {"name": "rs-child", "uuid": child,
                                                        "parent_provider_uuid": host}, v=30)
    s.setup("rs-host-inv", "PUT", f"/resource_providers/{host}/inventories", {
        "resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}}}, v=30)
    owner = {"project_id": U("p3"), "user_id": U("u3")}
    s.setup("rs-alloc", "PUT", f"/allocations/{U('rs-c')}", {
        "allocations": {host: {"resources": {"VCPU": 2, "MEMORY_MB": 256}}}, "consumer_generation": None, **owner},
        v=30)

    def look(tag):
        for rp in (host, child):
            s.req(f"rs-{tag}-rp", "GET", f"/resource_providers/{rp}", v=30)
            s.req(f"rs-{tag}-inv", "GET", f"/resource_providers/{rp}/inventories", v=30)
            s.req(f"rs-{tag}-usage", "GET", f"/resource_providers/{rp}/usages", v=30)
        s.req(f"rs-{tag}-alloc", "GET", f"/allocations/{U('rs-c')}", v=30)

    look("before")
    for v in (29, 30):
        s.req(f"rs-version-{v}", "POST", "/reshaper", {"inventories": {}, "allocations": {}}, v=v, token=SERVICE)
    s.req("rs-admin-only", "POST", "/reshaper", {"inventories": {host: {"resource_provider_generation": 1,
                                                                        "inventories": {}}}, "allocations": {}}, v=30)
    bad = {"empty": {}, "no-allocations": {"inventories": {}}, "inv-empty": {"inventories": {}, "allocations": {}},
           "bad-key": {"inventories": {"nope": {"resource_provider_generation": 1, "inventories": {}}},
                       "allocations": {}},
           "no-gen": {"inventories": {host: {"inventories": {}}}, "allocations": {}},
           "unknown-provider": {"inventories": {U("nowhere"): {"resource_provider_generation": 0, "inventories": {}}},
                                "allocations": {}},
           "stale": {"inventories": {host: {"resource_provider_generation": 0, "inventories": {}}},
                     "allocations": {}},
           "in-use": {"inventories": {host: {"resource_provider_generation": 2, "inventories": {}}},
                      "allocations": {}},
           "alloc-no-gen": {"inventories": {host: {"resource_provider_generation": 2, "inventories": {
               "VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}}}}, "allocations": {U("rs-c"): {
                   "allocations": {host: {"resources": {"VCPU": 1}}}, **owner}}},
           "alloc-stale": {"inventories": {host: {"resource_provider_generation": 2, "inventories": {
               "VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}}}}, "allocations": {U("rs-c"): {
                   "allocations": {host: {"resources": {"VCPU": 1}}}, "consumer_generation": 7, **owner}}}}
    for name, body in bad.items():
        s.req(f"rs-bad-{name}", "POST", "/reshaper", body, v=30, token=SERVICE)
    look("after-refusals")
    # parent -> child
    s.req("rs-move-down", "POST", "/reshaper", {
        "inventories": {host: {"resource_provider_generation": 2, "inventories": {"MEMORY_MB": {"total": 1024}}},
                        child: {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 8}}}},
        "allocations": {U("rs-c"): {"allocations": {host: {"resources": {"MEMORY_MB": 256}},
                                                    child: {"resources": {"VCPU": 2}}},
                                    "consumer_generation": 1, **owner}}}, v=30, token=SERVICE)
    look("after-down")
    # child -> parent
    s.req("rs-move-up", "POST", "/reshaper", {
        "inventories": {host: {"resource_provider_generation": 5, "inventories": {
            "VCPU": {"total": 8}, "MEMORY_MB": {"total": 1024}}},
            child: {"resource_provider_generation": 3, "inventories": {}}},
        "allocations": {U("rs-c"): {"allocations": {host: {"resources": {"VCPU": 2, "MEMORY_MB": 256}}},
                                    "consumer_generation": 2, **owner}}}, v=30, token=SERVICE)
    look("after-up")
    # consolidation: two children each with VCPU and an allocation, merged into the first
    s.setup("rs-child2", "POST", "/resource_providers", {"name": "rs-child2", "uuid": child2,
                                                         "parent_provider_uuid": host}, v=30)
    s.req("rs-split", "POST", "/reshaper", {
        "inventories": {host: {"resource_provider_generation": 8, "inventories": {"MEMORY_MB": {"total": 1024}}},
                        child: {"resource_provider_generation": 4, "inventories": {"VCPU": {"total": 4}}},
                        child2: {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}}}},
        "allocations": {U("rs-c"): {"allocations": {host: {"resources": {"MEMORY_MB": 256}},
                                                    child: {"resources": {"VCPU": 1}},
                                                    child2: {"resources": {"VCPU": 1}}},
                                    "consumer_generation": 3, **owner}}}, v=30, token=SERVICE)
    look("after-split")
    for rp in (child2,):
        s.req("rs-after-split-child2", "GET", f"/resource_providers/{rp}/usages", v=30)
    s.req("rs-consolidate", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 7, "inventories": {"VCPU": {"total": 8}}},
                        child2: {"resource_provider_generation": 3, "inventories": {}}},
        "allocations": {U("rs-c"): {"allocations": {host: {"resources": {"MEMORY_MB": 256}},
                                                    child: {"resources": {"VCPU": 2}}},
                                    "consumer_generation": 4, **owner}}}, v=30, token=SERVICE)
    look("after-consolidate")
    s.req("rs-after-consolidate-child2", "GET", f"/resource_providers/{child2}/usages", v=30)
    s.req("rs-after-consolidate-child2-rp", "GET", f"/resource_providers/{child2}", v=30)
    s.req("rs-consolidate-again", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 10, "inventories": {"VCPU": {"total": 8}}},
                        child2: {"resource_provider_generation": 4, "inventories": {}}},
        "allocations": {U("rs-c"): {"allocations": {host: {"resources": {"MEMORY_MB": 256}},
                                                    child: {"resources": {"VCPU": 2}}},
                                    "consumer_generation": 5, **owner}}}, v=30, token=SERVICE)
    s.req("rs-consolidate-over", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 13, "inventories": {"VCPU": {"total": 1}}}},
        "allocations": {}}, v=30, token=SERVICE)
    s.req("rs-new-consumer", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 15, "inventories": {"VCPU": {"total": 8}}}},
        "allocations": {U("rs-new"): {"allocations": {child: {"resources": {"VCPU": 1}}},
                                      "consumer_generation": None, **owner}}}, v=30, token=SERVICE)
    s.req("rs-new-consumer-1.38", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 18, "inventories": {"VCPU": {"total": 8}}}},
        "allocations": {U("rs-new2"): {"allocations": {child: {"resources": {"VCPU": 1}}},
                                       "consumer_generation": None, "consumer_type": "INSTANCE", **owner}}},
          v=38, token=SERVICE)
    look("end")
    # consolidation onto a provider too small even in the interim (the move is refused as a whole), and
    # one leaving the emptied provider's inventory out of the request
    s.setup("rs-child2-inv", "PUT", f"/resource_providers/{child2}/inventories", {
        "resource_provider_generation": 5, "inventories": {"VCPU": {"total": 4}}}, v=30)
    s.setup("rs-alloc2", "PUT", f"/allocations/{U('rs-c2')}", {
        "allocations": {child2: {"resources": {"VCPU": 2}}}, "consumer_generation": None, **owner}, v=30)
    s.req("rs-consolidate-too-small", "POST", "/reshaper", {
        "inventories": {child2: {"resource_provider_generation": 7, "inventories": {"VCPU": {"total": 1}}}},
        "allocations": {U("rs-c2"): {"allocations": {child2: {"resources": {"VCPU": 2}}},
                                     "consumer_generation": 1, **owner}}}, v=30, token=SERVICE)
    s.req("rs-consolidate-onto-full", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 21, "inventories": {"VCPU": {"total": 2}}}},
        "allocations": {U("rs-c2"): {"allocations": {child: {"resources": {"VCPU": 2}}},
                                     "consumer_generation": 1, **owner}}}, v=30, token=SERVICE)
    s.req("rs-consolidate-leave-inventory", "POST", "/reshaper", {
        "inventories": {child: {"resource_provider_generation": 21, "inventories": {"VCPU": {"total": 8}}}},
        "allocations": {U("rs-c2"): {"allocations": {child: {"resources": {"VCPU": 2}}},
                                     "consumer_generation": 1, **owner}}}, v=30, token=SERVICE)
    look("consolidated")
    s.req("rs-consolidated-child2", "GET", f"/resource_providers/{child2}/usages", v=30)
    s.req("rs-consolidated-child2-rp", "GET", f"/resource_providers/{child2}", v=30)


# ------------------------------------------------------------------ HTTP details

def http_details(s: Script) -> None:
    body = {"name": "ct-x"}
    for ct in (None, "text/plain", "application/json; charset=UTF-8", "APPLICATION/JSON", "application/jsonx"):
        s.req(f"http-ct-{ct}", "POST", "/resource_providers", body, ct=ct, v=20)
        s.req(f"http-ct-put-{ct}", "PUT", "/traits/CUSTOM_CT", body, ct=ct, v=6)
        s.req(f"http-ct-alloc-{ct}", "POST", "/allocations", {}, ct=ct, v=13)
    s.req("http-empty-body", "POST", "/resource_providers", raw=b"", v=20)
    s.req("http-post-no-body-no-ct", "POST", "/resource_providers", ct=None, v=20)
    s.req("http-put-no-body", "PUT", f"/allocations/{U('x')}", v=12)
    for method, path in (("DELETE", "/resource_providers"), ("PATCH", f"/resource_providers/{U('cn1')}"),
                         ("POST", "/traits"), ("GET", "/reshaper"), ("PUT", "/usages"), ("POST", "/"),
                         ("DELETE", "/allocations"), ("HEAD", "/resource_providers"), ("OPTIONS", "/"),
                         ("POST", f"/resource_providers/{U('cn1')}/usages")):
        for v in (0, 30):
            s.req(f"http-method-{method}-{path[:22]}", method, path, v=v)
    for path in ("/nope", "/resource_providers/", f"/resource_providers/{U('cn1')}/nope", "/traits/", "//"):
        s.req(f"http-path-{path}", "GET", path, v=30)
    s.req("http-accept-bad-get", "GET", "/traits", v=6, headers={"Accept": "text/plain"})
    s.req("http-accept-bad-post", "POST", "/resource_providers", {"name": "acc"}, v=20,
          headers={"Accept": "text/plain"})
    for accept in ("text/html", "text/plain", "application/json", "text/html;q=0.5, application/json"):
        s.req(f"http-accept-schema-{accept}", "POST", "/resource_providers", {"name": 1, "x": "<b>&"}, v=20,
              headers={"Accept": accept})
        s.req(f"http-accept-malformed-{accept}", "POST", "/resource_providers", raw=b"{<b>", v=20,
              headers={"Accept": accept})
        s.req(f"http-accept-conflict-{accept}", "POST", "/resource_providers", {"name": "cn1"}, v=20,
              headers={"Accept": accept})
        s.req(f"http-accept-policy-{accept}", "GET", "/resource_providers", v=20,
              token={"X-Auth-Token": "nobody"}, headers={"Accept": accept})
        s.req(f"http-accept-query-{accept}", "GET", "/resource_providers?foo=<i>", v=20, headers={"Accept": accept})
    s.req("http-location-rp", "POST", "/resource_providers", {"name": "loc", "uuid": U("loc")}, v=19)
    s.req("http-location-rc", "POST", "/resource_classes", {"name": "CUSTOM_LOC"}, v=15)
    s.req("http-location-trait", "PUT", "/traits/CUSTOM_LOC", v=15)
    s.req("http-location-rc-put", "PUT", "/resource_classes/CUSTOM_LOC2", v=15)
    s.req("http-location-inv", "POST", f"/resource_providers/{U('loc')}/inventories",
          {"resource_class": "VCPU", "total": 1}, v=15)


# ------------------------------------------------------------------ secure RBAC

def rbac(s: Script) -> None:
    p1 = U("p1")
    tokens = {
        "member": {"X-Auth-Token": f"alice:{p1}", "X-Roles": "member,reader"},
        "reader": {"X-Auth-Token": f"bob:{p1}", "X-Roles": "reader"},
        "other-reader": {"X-Auth-Token": f"carol:{U('p9')}", "X-Roles": "reader"},
        "service": {"X-Auth-Token": f"nova:{U('svc')}", "X-Roles": "service"},
        "no-roles": {"X-Auth-Token": f"dave:{p1}"},
        "system-admin": {"X-Auth-Token": "admin", "X-Roles": "admin", "OpenStack-System-Scope": "all"},
        "system-reader": {"X-Auth-Token": "sys", "X-Roles": "reader", "OpenStack-System-Scope": "all"},
    }
    for name, token in tokens.items():
        for v in (9, 38):
            s.req(f"rbac-{name}-usages", "GET", f"/usages?project_id={p1}", v=v, token=token)
            s.req(f"rbac-{name}-usages-other", "GET", f"/usages?project_id={U('p2')}", v=v, token=token)
        s.req(f"rbac-{name}-usages-none", "GET", "/usages", v=9, token=token)
        s.req(f"rbac-{name}-providers", "GET", "/resource_providers", v=30, token=token)
        s.req(f"rbac-{name}-rp-usages", "GET", f"/resource_providers/{U('cn1')}/usages", v=30, token=token)
        s.req(f"rbac-{name}-create", "POST", "/resource_providers", {"name": f"rbac-{name}"}, v=30, token=token)
        s.req(f"rbac-{name}-alloc", "GET", f"/allocations/{U('c1')}", v=30, token=token)
        s.req(f"rbac-{name}-ac", "GET", "/allocation_candidates?resources=VCPU:1", v=30, token=token)
        s.req(f"rbac-{name}-traits", "GET", "/traits", v=30, token=token)
        s.req(f"rbac-{name}-reshaper", "POST", "/reshaper", {}, v=30, token=token)


# ------------------------------------------------------------------ odd values and combinations

def odd(s: Script) -> None:
    """Numbers given as floats or booleans, unicode names, repeated query keys, trees and aggregates
    changed under their providers, several consumers in one POST with one refused."""
    root, kid = U("odd-root"), U("odd-kid")
    s.req("odd-unicode", "POST", "/resource_providers", {"name": "h\u00f4te \u2603", "uuid": root}, v=20)
    s.req("odd-unicode-filter", "GET", "/resource_providers?name=h%C3%B4te%20%E2%98%83", v=20)
    s.req("odd-name-200", "POST", "/resource_providers", {"name": "n" * 200, "uuid": U("odd-200")}, v=20)
    s.req("odd-kid", "POST", "/resource_providers", {"name": "odd-kid", "uuid": kid, "parent_provider_uuid": root},
          v=20)
    base = f"/resource_providers/{root}/inventories"
    for name, record in {"float-total": {"total": 8.0}, "bool-total": {"total": True}, "float-ratio": {
            "total": 8, "allocation_ratio": 1}, "str-gen": {"total": 8}, "null-total": {"total": None},
            "big-float": {"total": 1e10}, "exp-int": {"total": 8, "max_unit": 4.0}}.items():
        gen = "0" if name == "str-gen" else 0
        s.req(f"odd-inv-{name}", "PUT", base, {"resource_provider_generation": gen, "inventories": {"VCPU": record}},
              v=26)
    s.req("odd-inv-get", "GET", base, v=26)
    s.req("odd-dup-keys", "PUT", base, raw=b'{"resource_provider_generation": 1, "resource_provider_generation": 0,'
          b' "inventories": {}}', v=26)
    s.req("odd-not-utf8", "PUT", base, raw=b'{"resource_provider_generation": 1, "inventories": {"\xff": 1}}', v=26)
    s.req("odd-nan", "PUT", base, raw=b'{"resource_provider_generation": 1, "inventories": {"VCPU": {"total": NaN}}}',
          v=26)
    s.setup("odd-kid-inv", "PUT", f"/resource_providers/{kid}/inventories",
            {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": 4}, "MEMORY_MB": {"total": 512}}}, v=26)
    for q in ("in_tree=" + kid, "in_tree=" + root + "&resources=VCPU:1", "resources=VCPU:1&resources=MEMORY_MB:1",
              "name=odd-kid&name=nope", "uuid=" + kid.upper(), "uuid=" + kid.replace("-", ""), "in_tree=" + kid.upper(),
              "member_of=in:" + U("agg1") + "&member_of=!" + U("agg2"), "required=in:HW_CPU_X86_AVX2,!CUSTOM_GOLD",
              "required=HW_CPU_X86_AVX2,!CUSTOM_GOLD", "required=in:", "resources=VCPU:1,VCPU:2",
              "resources=VCPU:1%2CMEMORY_MB:1", "member_of=in:", "member_of=!in:" + U("agg1")):
        for v in (18, 39):
            s.req(f"odd-rp-list-{q}", "GET", f"/resource_providers?{q}", v=v)
    for q in ("resources=VCPU:1&resources=VCPU:2", "resources=VCPU:1&limit=1&limit=2", "resources=VCPU:1,VCPU:1",
              "resources=VCPU:1&in_tree=" + kid.upper(), "resources=VCPU:1&required=in:",
              "resources=VCPU:1&member_of=in:" + U("agg1") + ",bad", "resources_=VCPU:1", "resources1=VCPU:1&required1=",
              "resources=VCPU:1&root_required=in:HW_CPU_X86_AVX2", "resources=VCPU:1&same_subtree=",
              "resources1=VCPU:1&same_subtree=1,1", "resources=VCPU: 1", "resources=VCPU:1.5", "resources= VCPU:1",
              "resources=VCPU:1&required=HW_CPU_X86_AVX2&required=!HW_CPU_X86_AVX2"):
        for v in (25, 39):
            s.req(f"odd-ac-{q}", "GET", f"/allocation_candidates?{q}", v=v)
    owner = {"project_id": U("p1"), "user_id": U("u1"), "consumer_generation": None}
    s.req("odd-post-one-bad", "POST", "/allocations", {
        U("odd-c1"): dict(owner, allocations={kid: {"resources": {"VCPU": 1}}}),
        U("odd-c2"): dict(owner, allocations={kid: {"resources": {"VCPU": 100}}})}, v=28)
    s.req("odd-post-one-bad-get", "GET", f"/allocations/{U('odd-c1')}", v=28)
    s.req("odd-post-two", "POST", "/allocations", {
        U("odd-c1"): dict(owner, allocations={kid: {"resources": {"VCPU": 1}}}),
        U("odd-c2"): dict(owner, allocations={kid: {"resources": {"VCPU": 3, "MEMORY_MB": 512}}})}, v=28)
    s.req("odd-post-same-rp-over", "POST", "/allocations", {
        U("odd-c3"): dict(owner, allocations={kid: {"resources": {"MEMORY_MB": 1}}})}, v=28)
    s.req("odd-gen-string", "PUT", f"/allocations/{U('odd-c1')}", dict(
        owner, consumer_generation="1", allocations={kid: {"resources": {"VCPU": 1}}}), v=28)
    s.req("odd-gen-float", "PUT", f"/allocations/{U('odd-c1')}", dict(
        owner, consumer_generation=1.0, allocations={kid: {"resources": {"VCPU": 1}}}), v=28)
    s.req("odd-amount-float", "PUT", f"/allocations/{U('odd-c1')}", dict(
        owner, consumer_generation=1, allocations={kid: {"resources": {"VCPU": 1.0}}}), v=28)
    s.req("odd-get-c1", "GET", f"/allocations/{U('odd-c1')}", v=28)
    s.req("odd-rp-allocs", "GET", f"/resource_providers/{kid}/allocations", v=28)
    s.req("odd-delete-root", "DELETE", f"/resource_providers/{root}", v=28)
    s.req("odd-delete-kid-in-use", "DELETE", f"/resource_providers/{kid}", v=28)
    s.req("odd-agg-then-gen", "PUT", f"/resource_providers/{kid}/aggregates",
          {"aggregates": [U("agg3")], "resource_provider_generation": 2}, v=19)
    s.req("odd-agg-gen-after", "GET", f"/resource_providers/{kid}", v=19)
    s.req("odd-traits-then-gen", "PUT", f"/resource_providers/{kid}/traits",
          {"traits": ["HW_CPU_X86_AVX2"], "resource_provider_generation": 3}, v=19)
    s.req("odd-agg-list-after", "GET", f"/resource_providers?member_of={U('agg3')}", v=19)
    s.req("odd-traits-associated", "GET", "/traits?associated=true", v=19)
    s.req("odd-rc-lower-url", "GET", "/resource_classes/vcpu", v=19)
    s.req("odd-trait-url-encoded", "GET", "/traits/CUSTOM%5FGOLD", v=19)
    s.req("odd-usages-types", "GET", f"/usages?project_id={U('p1')}&consumer_type=INSTANCE", v=38)
    s.req("odd-alloc-type-1.37", "GET", f"/allocations/{U('c1')}", v=37)
    s.req("odd-alloc-type-1.38", "GET", f"/allocations/{U('c1')}", v=38)


# ------------------------------------------------------------------ random worlds and candidate queries

def random_candidates(s: Script, seed: int = 17, queries: int = 200) -> None:
    """A seeded random world (trees of one to three levels, sharing providers in aggregates, traits) and
    random candidate queries over it: groups, traits (required, forbidden, any-of), aggregates, in_tree,
    root_required, same_subtree, group policies, limits left out (upstream's order is a set's)."""
    import random
    rng = random.Random(seed)
    classes = ["VCPU", "MEMORY_MB", "DISK_GB", "SRIOV_NET_VF", "VGPU"]
    traits = ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE", "CUSTOM_RA", "CUSTOM_RB", "STORAGE_DISK_SSD"]
    aggs = [U(f"rnd-agg{i}") for i in range(3)]
    for t in traits:
        if t.startswith("CUSTOM_"):
            s.setup(f"rnd-trait-{t}", "PUT", f"/traits/{t}", v=6)
    providers = []

    def make(name, parent=None, inventory=None, own_traits=(), own_aggs=()):
        uuid_ = U(f"rnd-{name}")
        body = {"name": f"rnd-{name}", "uuid": uuid_}
        if parent:
            body["parent_provider_uuid"] = parent
        s.setup(f"rnd-rp-{name}", "POST", "/resource_providers", body, v=20)
        gen = 0
        if inventory:
            s.setup(f"rnd-inv-{name}", "PUT", f"/resource_providers/{uuid_}/inventories",
                    {"resource_provider_generation": gen, "inventories": inventory}, v=20)
            gen += 1
        if own_traits:
            s.setup(f"rnd-traits-{name}", "PUT", f"/resource_providers/{uuid_}/traits",
                    {"resource_provider_generation": gen, "traits": list(own_traits)}, v=20)
            gen += 1
        if own_aggs:
            s.setup(f"rnd-aggs-{name}", "PUT", f"/resource_providers/{uuid_}/aggregates",
                    {"resource_provider_generation": gen, "aggregates": list(own_aggs)}, v=20)
        providers.append(uuid_)
        return uuid_

    def inventory(pool):
        picked = rng.sample(pool, rng.randint(1, min(3, len(pool))))
        return {rc: {"total": rng.choice([2, 4, 8, 16]), "max_unit": rng.choice([2, 4, 16])} for rc in picked}

    for i in range(6):
        root = make(f"cn{i}", inventory=inventory(["VCPU", "MEMORY_MB", "DISK_GB"]),
                    own_traits=rng.sample(traits, rng.randint(0, 2)), own_aggs=rng.sample(aggs, rng.randint(0, 2)))
        for j in range(rng.randint(0, 2)):
            child = make(f"cn{i}-c{j}", parent=root, inventory=inventory(["VCPU", "SRIOV_NET_VF", "VGPU"]),
                         own_traits=rng.sample(traits, rng.randint(0, 2)))
            if rng.random() < 0.4:
                make(f"cn{i}-c{j}-g", parent=child, inventory=inventory(["VGPU", "SRIOV_NET_VF"]),
                     own_traits=rng.sample(traits, rng.randint(0, 1)))
    for i in range(2):
        make(f"share{i}", inventory={"DISK_GB": {"total": 100}}, own_traits=["MISC_SHARES_VIA_AGGREGATE"],
             own_aggs=[aggs[i]])

    def amounts():
        return ",".join(f"{rc}:{rng.choice([1, 2, 4])}" for rc in rng.sample(classes, rng.randint(1, 2)))

    def trait_filter():
        picked = rng.sample(traits, rng.randint(1, 2))
        if rng.random() < 0.3:
            return "in:" + ",".join(picked)
        return ",".join(("!" if rng.random() < 0.4 else "") + t for t in picked)

    for n in range(queries):
        parts = []
        groups = [""] + [f"_G{k}" for k in range(rng.randint(0, 2))]
        for suffix in groups:
            if suffix == "" and rng.random() < 0.2 and len(groups) > 1:
                continue
            if rng.random() < 0.9:
                parts.append(f"resources{suffix}={amounts()}")
            if rng.random() < 0.3:
                parts.append(f"required{suffix}={trait_filter()}")
            if rng.random() < 0.2:
                parts.append(f"member_of{suffix}=" + ("!" if rng.random() < 0.3 else "") + rng.choice(aggs))
            if rng.random() < 0.1:
                parts.append(f"in_tree{suffix}={rng.choice(providers)}")
        if len(groups) > 1:
            parts.append(f"group_policy={rng.choice(['none', 'isolate'])}")
            if rng.random() < 0.3:
                parts.append("same_subtree=" + ",".join(rng.sample(groups[1:], len(groups) - 1)))
        if rng.random() < 0.2:
            parts.append(f"root_required={trait_filter()}")
        s.req(f"rnd-ac-{n}", "GET", "/allocation_candidates?" + "&".join(parts), v=39)


# ------------------------------------------------------------------ every GET at every microversion

def sweep(s: Script) -> None:
    paths = ["/", "/resource_providers", f"/resource_providers/{U('cn2')}",
             f"/resource_providers/{U('cn2')}/inventories",
             f"/resource_providers/{U('cn2')}/inventories/VCPU", f"/resource_providers/{U('cn2')}/usages",
             f"/resource_providers/{U('cn2')}/aggregates", f"/resource_providers/{U('cn2')}/traits",
             f"/resource_providers/{U('cn2')}/allocations", "/traits/HW_CPU_X86_AVX2", "/resource_classes",
             "/resource_classes/VCPU", f"/allocations/{U('c1')}", f"/usages?project_id={U('p1')}",
             "/allocation_candidates?resources=VCPU:1,DISK_GB:5", f"/resource_providers/{U('nowhere')}"]
    for minor in range(0, LATEST + 1):
        for path in paths:
            s.req(f"sweep-{path[:40]}", "GET", path, v=minor)
