"""osc-placement against a running Kilonova: every command it has, driven as a subprocess.

Everything created here carries a unique name and is removed in ``finally``
blocks, so the other functional tests (which count providers == compute hosts)
never see it.
"""
from __future__ import annotations

import uuid

V = ("--os-placement-api-version", "1.39")


def osc(cloud, *args, fmt_json=True, check=True):
    return cloud.openstack(*V, *args, fmt_json=fmt_json, check=check)


def _cleanup(cloud, consumers, providers, classes, traits):
    for consumer in consumers:
        osc(cloud, "resource", "provider", "allocation", "delete", consumer, fmt_json=False, check=False)
    for provider in reversed(providers):
        osc(cloud, "resource", "provider", "delete", provider, fmt_json=False, check=False)
    for name in classes:
        osc(cloud, "resource", "class", "delete", name, fmt_json=False, check=False)
    for name in traits:
        osc(cloud, "trait", "delete", name, fmt_json=False, check=False)


def test_osc_placement_every_command(cloud):
    tag = uuid.uuid4().hex[:8].upper()
    name, trait, rclass = f"kn-cli-{tag.lower()}", f"CUSTOM_KN_CLI_{tag}", f"CUSTOM_KN_CLI_{tag}"
    consumers, providers, classes, traits = [], [], [], []
    try:
        # resource classes and traits
        osc(cloud, "resource", "class", "create", rclass, fmt_json=False)
        classes.append(rclass)
        assert osc(cloud, "resource", "class", "show", rclass)["name"] == rclass
        assert rclass in {c["name"] for c in osc(cloud, "resource", "class", "list")}
        for _ in range(2):   # create, then confirm (PUT from 1.7): both succeed
            osc(cloud, "resource", "class", "set", f"{rclass}_SET", fmt_json=False)
        classes.append(f"{rclass}_SET")
        assert osc(cloud, "resource", "class", "show", f"{rclass}_SET")["name"] == f"{rclass}_SET"
        osc(cloud, "trait", "create", trait, fmt_json=False)
        traits.append(trait)
        assert osc(cloud, "trait", "show", trait)["name"] == trait
        assert [t["name"] for t in osc(cloud, "trait", "list", "--name", f"in:{trait}")] == [trait]

        # providers: create, nested child, list, show, set
        root = osc(cloud, "resource", "provider", "create", name)
        providers.append(root["uuid"])
        child = osc(cloud, "resource", "provider", "create", f"{name}-child", "--parent-provider", root["uuid"])
        providers.append(child["uuid"])
        assert child["root_provider_uuid"] == root["uuid"]
        listed = osc(cloud, "resource", "provider", "list", "--name", name)
        assert [p["uuid"] for p in listed] == [root["uuid"]]
        tree = osc(cloud, "resource", "provider", "list", "--in-tree", root["uuid"])
        assert {p["uuid"] for p in tree} == {root["uuid"], child["uuid"]}
        renamed = osc(cloud, "resource", "provider", "set", root["uuid"], "--name", f"{name}-r")
        assert renamed["name"] == f"{name}-r"
        assert osc(cloud, "resource", "provider", "show", root["uuid"])["name"] == f"{name}-r"

        # inventories
        rows = osc(cloud, "resource", "provider", "inventory", "set", root["uuid"], "--resource", "VCPU=8",
                   "--resource", "MEMORY_MB=2048", "--resource", f"{rclass}=4",
                   "--resource", "VCPU:allocation_ratio=2.0")
        assert {r["resource_class"] for r in rows} == {"VCPU", "MEMORY_MB", rclass}
        inventory = {r["resource_class"]: r for r in
                     osc(cloud, "resource", "provider", "inventory", "list", root["uuid"])}
        assert inventory["VCPU"]["total"] == 8 and inventory["VCPU"]["allocation_ratio"] == 2.0
        osc(cloud, "resource", "provider", "inventory", "class", "set", root["uuid"], "MEMORY_MB", "--total", "4096")
        shown = osc(cloud, "resource", "provider", "inventory", "show", root["uuid"], "MEMORY_MB")
        assert shown["total"] == 4096
        osc(cloud, "resource", "provider", "inventory", "set", child["uuid"], "--resource", "SRIOV_NET_VF=4")

        # traits and aggregates on providers
        osc(cloud, "resource", "provider", "trait", "set", root["uuid"], "--trait", trait, "--trait",
            "HW_CPU_X86_AVX2")
        assert {t["name"] for t in osc(cloud, "resource", "provider", "trait", "list", root["uuid"])} == {
            trait, "HW_CPU_X86_AVX2"}
        aggregate = str(uuid.uuid4())
        generation = osc(cloud, "resource", "provider", "show", root["uuid"])["generation"]
        osc(cloud, "resource", "provider", "aggregate", "set", root["uuid"], "--aggregate", aggregate,
            "--generation", str(generation))
        assert [a["uuid"] for a in osc(cloud, "resource", "provider", "aggregate", "list", root["uuid"])] == [
            aggregate]

        # allocation candidates: only this tree has the trait
        found = osc(cloud, "allocation", "candidate", "list", "--resource", "VCPU=2", "--required", trait,
                    "--group", "1", "--resource", "SRIOV_NET_VF=1", "--group-policy", "none")
        by_candidate: dict[int, set[str]] = {}
        for row in found:
            by_candidate.setdefault(row["#"], set()).add(row["resource provider"])
        assert list(by_candidate.values()) == [{root["uuid"], child["uuid"]}]

        # allocations: set, show, unset, delete; usages
        consumer = str(uuid.uuid4())
        consumers.append(consumer)
        osc(cloud, "resource", "provider", "allocation", "set", consumer,
            "--allocation", f"rp={root['uuid']},VCPU=2,MEMORY_MB=512",
            "--allocation", f"rp={child['uuid']},SRIOV_NET_VF=1",
            "--project-id", "kn-cli-project", "--user-id", "kn-cli-user", "--consumer-type", "INSTANCE")
        allocations = {a["resource_provider"]: a["resources"] for a in
                       osc(cloud, "resource", "provider", "allocation", "show", consumer)}
        assert allocations[root["uuid"]] == {"VCPU": 2, "MEMORY_MB": 512}
        osc(cloud, "resource", "provider", "allocation", "unset", consumer, "--provider", child["uuid"])
        allocations = osc(cloud, "resource", "provider", "allocation", "show", consumer)
        assert [a["resource_provider"] for a in allocations] == [root["uuid"]]
        usage = {r["resource_class"]: r["usage"] for r in
                 osc(cloud, "resource", "provider", "usage", "show", root["uuid"])}
        assert usage["VCPU"] == 2 and usage["MEMORY_MB"] == 512
        # (from 1.38 the totals are grouped by consumer type; osc prints them as they come)
        totals = {r["resource_class"]: r["usage"] for r in cloud.openstack(
            "--os-placement-api-version", "1.37", "resource", "usage", "show", "kn-cli-project", fmt_json=True)}
        assert totals["VCPU"] == 2
        by_type = {r["resource_class"]: r["usage"] for r in cloud.openstack(
            "--os-placement-api-version", "1.38", "resource", "usage", "show", "kn-cli-project", fmt_json=True)}
        assert by_type == {"INSTANCE": {"consumer_count": 1, "VCPU": 2, "MEMORY_MB": 512}}
        shown = osc(cloud, "resource", "provider", "show", root["uuid"], "--allocations")
        assert consumer in shown["allocations"]
        osc(cloud, "resource", "provider", "allocation", "delete", consumer, fmt_json=False)
        consumers.remove(consumer)

        # deletes: provider trait, one inventory class, all inventories, providers, class, trait
        osc(cloud, "resource", "provider", "trait", "delete", root["uuid"], fmt_json=False)
        assert osc(cloud, "resource", "provider", "trait", "list", root["uuid"]) == []
        osc(cloud, "resource", "provider", "inventory", "delete", root["uuid"], "--resource-class", rclass,
            fmt_json=False)
        assert rclass not in {r["resource_class"] for r in
                              osc(cloud, "resource", "provider", "inventory", "list", root["uuid"])}
        osc(cloud, "resource", "provider", "inventory", "delete", root["uuid"], fmt_json=False)
        assert osc(cloud, "resource", "provider", "inventory", "list", root["uuid"]) == []
        refused = osc(cloud, "resource", "provider", "delete", root["uuid"], fmt_json=False, check=False)
        assert refused.returncode != 0   # it still has a child
        for provider in reversed(list(providers)):
            osc(cloud, "resource", "provider", "delete", provider, fmt_json=False)
            providers.remove(provider)
        osc(cloud, "resource", "class", "delete", rclass, fmt_json=False)
        classes.remove(rclass)
        osc(cloud, "trait", "delete", trait, fmt_json=False)
        traits.remove(trait)
        assert osc(cloud, "resource", "provider", "list", "--name", f"{name}-r") == []
    finally:
        _cleanup(cloud, consumers, providers, classes, traits)
