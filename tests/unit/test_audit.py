"""``kilonova manage placement audit`` on SQLite: servers without allocations, and a cell it cannot read.

(Orphaned allocations, over the real deployment: tests/distributed/test_processes.py.)
"""
from __future__ import annotations

import uuid as uuidlib

import pytest

from kilonova.compute.db import mappings
from kilonova.manage import audit
from tests.unit.test_compute_admin_harness import stub  # noqa: F401 - fixture
from tests.unit.test_recovery import claims, provider, server  # noqa: F401 - provider: fixture
from tests.unit.test_scheduler import FLAVOR, placement  # noqa: F401 - fixture


@pytest.fixture
def auditor(stub, placement):  # noqa: F811
    found = audit.Auditor(stub.conf, placement.http)
    yield found
    found.close()


async def test_audit_finds_and_heals_a_server_without_allocations(stub, placement, provider, auditor,  # noqa: F811
                                                                  capsys):
    instance = await server(stub, placement, provider, vm_state="active")
    assert (await placement.http.delete(f"/allocations/{instance['uuid']}")).status_code == 204
    findings = await auditor.audit()
    assert [uuid for uuid, _ in findings.missing] == [instance["uuid"]]
    assert audit.report(findings, heal=False) == 3
    await auditor.heal(findings)
    assert audit.report(findings, heal=True) == 4
    assert (await claims(placement, instance["uuid"]))[provider]["resources"] == audit.resources_of(FLAVOR)
    assert audit.report(await auditor.audit(), heal=False) == 0
    assert "1 servers without allocations" in capsys.readouterr().out


async def test_audit_reports_a_cell_it_cannot_read_and_leaves_its_claims(stub, placement, provider, auditor,  # noqa: F811
                                                                         tmp_path, capsys):
    broken = str(uuidlib.uuid4())  # a cell whose database was never migrated: every query fails
    stub.api_db.run_sync(mappings.ensure_cell, broken, "broken", "none:///", f"sqlite:///{tmp_path}/broken.sqlite")
    uuid = str(uuidlib.uuid4())
    stub.api_db.run_sync(mappings.create_instance_mapping, uuid, "demo", "demo")
    stub.api_db.run_sync(mappings.set_instance_cell, uuid, broken)
    claimed = await placement.http.put(f"/allocations/{uuid}", json={
        "allocations": {provider: {"resources": {"MEMORY_MB": 64}}}, "project_id": "demo", "user_id": "demo",
        "consumer_generation": None})
    assert claimed.status_code == 204, claimed.text

    findings = await auditor.audit()
    await auditor.heal(findings)
    assert audit.report(findings, heal=True) == 1
    assert "Cell broken could not be audited" in capsys.readouterr().out
    assert list(await claims(placement, uuid)) == [provider]  # not taken for an orphan


def test_a_healed_claim_is_the_one_a_boot_makes():
    dedicated = {**FLAVOR, "extra_specs": {"hw:cpu_policy": "dedicated", "resources:VGPU": "1"}}
    resources = audit.resources_of(dedicated)
    assert resources["PCPU"] == dedicated["vcpus"] and "VCPU" not in resources
    assert resources["VGPU"] == 1
    assert "VCPU" in audit.resources_of(FLAVOR) and "PCPU" not in audit.resources_of(FLAVOR)


async def test_a_moving_servers_source_claim_is_its_migrations_until_the_move_ends(stub, placement, provider,  # noqa: F811
                                                                                  auditor):
    """During a resize the migration record holds the source's claim (move_claims): no leak while the move is
    in progress, orphaned once it ended; the server holds nothing while it is being scheduled."""
    from kilonova.compute import move_claims
    from kilonova.compute.db import migrations

    instance = await server(stub, placement, provider, vm_state="active", task_state="resize_prep")
    cell = stub.cells.default
    move = cell.db.run_sync(migrations.create, {"instance_uuid": instance["uuid"], "migration_type": "resize",
                                                "status": "pre-migrating", "source_compute": "host1",
                                                "source_node": instance["node"], "dest_node": instance["node"]})
    await move_claims.hand_to_migration(placement.http, instance["uuid"], move["uuid"], "demo", "demo")
    assert list(await claims(placement, move["uuid"])) == [provider]
    assert audit.report(await auditor.audit(), heal=False) == 0

    cell.db.run_sync(migrations.update, move["uuid"], {"status": "error"})
    findings = await auditor.audit()
    assert [(consumer, why) for consumer, _rp, why in findings.orphaned] == [
        (move["uuid"], f"held by migration {move['uuid']}, which is error")]
    await auditor.heal(findings)
    assert await claims(placement, move["uuid"]) == {}
