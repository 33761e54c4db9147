"""A cell whose database stops answering: server lists keep working, its servers show as upstream shows them.

cell1 is the harness's SQLite cell; cell2 is a real PostgreSQL database reached through a TCP
forwarder owned by the test, so stopping the forwarder is a database outage (open connections
cut, new ones refused).
"""
from __future__ import annotations

import time
import uuid as uuidlib
from datetime import datetime, timedelta

import pytest

from kilonova.common.db import Database, migrate
from kilonova.compute import cells as cells_mod
from kilonova.compute.db import build_requests, instances, mappings
from kilonova.compute.db.cell_models import CellBase
from tests.distributed.forwarder import Forwarder
from tests.distributed.infra import POSTGRES, Databases
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

CELL2_UUID = "7c2e4d9a-3b1f-4f0e-8d55-2a9b6c1e0c02"
FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}
IMAGE = "0b6f3c55-2d4e-4a7b-9c1d-5e8f7a6b4c3d"


@pytest.fixture
def postgres():
    databases = Databases("postgresql")
    yield databases
    databases.drop_all()


@pytest.fixture
def two_cells(stub, postgres):
    """cell1 (SQLite) and cell2 (PostgreSQL behind a forwarder), two demo servers in each."""
    db_url = postgres.url("cell2")
    forwarder = Forwarder(POSTGRES)
    cell2_url = db_url.replace(f":{POSTGRES[1]}/", f":{forwarder.port}/")
    setup = Database(cell2_url, name="cell2-setup", workers=1)
    migrate(setup, cells_mod.CELL_MIGRATIONS, CellBase.metadata)
    setup.close()
    stub.api_db.run_sync(mappings.ensure_cell, CELL2_UUID, "cell2", "none:///", cell2_url)
    stub.api_db.run_sync(mappings.map_host, "cell2-compute", CELL2_UUID)
    stub.cells.load()
    start = datetime.utcnow() - timedelta(minutes=10)
    servers = {}
    for i, cell in enumerate([stub.cells.default, stub.cells.get(CELL2_UUID)] * 2):
        servers[f"vm{i}"] = (_server(stub, cell, f"vm{i}", start + timedelta(seconds=i)), cell)
    yield stub, forwarder, servers
    forwarder.stop()


def _server(stub, cell, name: str, created: datetime) -> str:
    uuid = str(uuidlib.uuid4())
    values = {"uuid": uuid, "display_name": name, "project_id": "demo-project", "user_id": "demo-user",
              "flavor": FLAVOR, "image_ref": IMAGE, "vm_state": "active", "power_state": 1, "host": "h1",
              "availability_zone": "nova", "created_at": created.isoformat(timespec="microseconds")}
    spec = {"project_id": "demo-project", "user_id": "demo-user", "flavor": FLAVOR, "image": {"id": IMAGE},
            "availability_zone": None}

    def record(session):
        build_requests.create(session, values, spec)
        build_requests.delete(session, uuid)
        mappings.set_instance_cell(session, uuid, cell.uuid)
        session.flush()
        mappings.get_instance_mapping(session, uuid).created_at = created  # the API records both at once

    stub.api_db.run_sync(record)
    cell.db.run_sync(instances.create, values)
    return uuid


async def _names(api, path="/servers", **kw):
    response = await api.get(path, token="demo-token", **kw)
    assert response.status_code == 200, response.text
    return response.json()["servers"]


async def test_lists_leave_a_down_cell_out_and_answer_fast(api, two_cells):
    stub, forwarder, servers = two_cells
    assert [s["name"] for s in await _names(api)] == ["vm3", "vm2", "vm1", "vm0"]
    forwarder.stop()

    began = time.monotonic()
    listed = await _names(api)
    first = time.monotonic() - began
    assert [s["name"] for s in listed] == ["vm2", "vm0"]  # before 2.69 the down cell's servers are left out
    detail = await _names(api, "/servers/detail")
    assert [(s["name"], s["status"]) for s in detail] == [("vm2", "ACTIVE"), ("vm0", "ACTIVE")]
    began = time.monotonic()
    for _ in range(5):
        assert len(await _names(api)) == 2
    cached = (time.monotonic() - began) / 5
    print(f"first list with cell2 down: {first * 1000:.0f} ms; later lists: {cached * 1000:.0f} ms")
    assert first < cells_mod.CONNECT_TIMEOUT + 2
    assert cached < 0.5

    shown = await api.get(f"/servers/{servers['vm1'][0]}", token="demo-token")
    assert shown.status_code == 503, shown.text
    assert "is not responding" in shown.json()["serviceUnavailable"]["message"]
    assert (await api.get(f"/servers/{servers['vm0'][0]}", token="demo-token")).status_code == 200
    deleted = await api.delete(f"/servers/{servers['vm3'][0]}", token="demo-token")
    assert deleted.status_code == 503, deleted.text
    assert (await api.get("/os-services")).status_code == 200
    assert (await api.get("/os-hypervisors/detail")).status_code == 200
    # Quota usage counts what can be counted: the live cell's two servers.
    limits = await api.get("/limits", token="demo-token")
    assert limits.status_code == 200, limits.text
    assert limits.json()["limits"]["absolute"]["totalInstancesUsed"] == 2


async def test_from_2_69_a_down_cell_servers_are_unknown(api, two_cells):
    stub, forwarder, servers = two_cells
    forwarder.stop()
    down_ids = {servers["vm1"][0], servers["vm3"][0]}

    listed = await _names(api, version="2.69")
    assert [s["id"] for s in listed] == [servers[f"vm{i}"][0] for i in (3, 2, 1, 0)]
    for server in listed:
        if server["id"] in down_ids:
            assert set(server) == {"id", "status", "links"} and server["status"] == "UNKNOWN"
        else:
            assert server["name"].startswith("vm") and "status" not in server

    detail = await _names(api, "/servers/detail", version="2.69")
    unknown = [s for s in detail if s["id"] in down_ids]
    assert len(unknown) == 2
    for server in unknown:
        assert set(server) == {"id", "status", "tenant_id", "created", "links"}
        assert server["status"] == "UNKNOWN" and server["tenant_id"] == "demo-project"
        assert server["created"].endswith("Z")
    assert {s["status"] for s in detail if s["id"] not in down_ids} == {"ACTIVE"}

    # Paging crosses the down cell's records in the same order.
    first = await api.get("/servers", token="demo-token", version="2.69", params={"limit": 2})
    page1 = first.json()
    assert [s["id"] for s in page1["servers"]] == [servers["vm3"][0], servers["vm2"][0]]
    assert page1["servers_links"][0]["rel"] == "next"
    assert f"marker={servers['vm2'][0]}" in page1["servers_links"][0]["href"]
    page2 = await _names(api, version="2.69", params={"limit": 2, "marker": servers["vm2"][0]})
    assert [s["id"] for s in page2] == [servers["vm1"][0], servers["vm0"][0]]
    # A filter cannot be checked against a server nobody can read: only the live cell answers it.
    assert [s["name"] for s in await _names(api, version="2.69", params={"name": "vm"})] == ["vm2", "vm0"]

    shown = await api.get(f"/servers/{servers['vm1'][0]}", token="demo-token", version="2.69")
    assert shown.status_code == 200, shown.text
    body = shown.json()["server"]
    assert body["status"] == "UNKNOWN" and body["user_id"] == "demo-user"
    assert body["flavor"]["original_name"] == "m1.tiny" and body["image"]["id"] == IMAGE
    assert body["OS-EXT-AZ:availability_zone"] == "UNKNOWN" and body["OS-EXT-STS:power_state"] == 0
    assert "name" not in body and "addresses" not in body
    assert (await api.get(f"/servers/{servers['vm1'][0]}", token="admin-token", version="2.68")).status_code == 503

    # os-services: the down cell's compute hosts from their host mappings, status UNKNOWN.
    listed = (await api.get("/os-services", version="2.69")).json()["services"]
    assert {"binary": "nova-compute", "host": "cell2-compute", "status": "UNKNOWN"} in listed
    before = (await api.get("/os-services", version="2.68")).json()["services"]
    assert "cell2-compute" not in {row["host"] for row in before}


async def test_a_cell_that_comes_back_is_read_again(api, two_cells, monkeypatch):
    monkeypatch.setattr(cells_mod, "DOWN_SECONDS", 0.5)
    stub, forwarder, servers = two_cells
    port = forwarder.port
    forwarder.stop()
    assert len(await _names(api)) == 2
    with Forwarder(POSTGRES, ("127.0.0.1", port)):
        time.sleep(0.6)
        assert [s["name"] for s in await _names(api)] == ["vm3", "vm2", "vm1", "vm0"]


async def test_a_failing_statement_does_not_mark_the_cell_down(two_cells):
    import sqlalchemy as sa

    stub, forwarder, servers = two_cells
    cell2 = stub.cells.get(CELL2_UUID)
    with pytest.raises(sa.exc.ProgrammingError):
        await cell2.read(lambda session: session.execute(sa.text("SELECT * FROM no_such_table")).all())
    assert not cell2.is_down
    forwarder.stop()
    with pytest.raises(cells_mod.CellDown):
        await cell2.read(instances.get, servers["vm1"][0])
    assert cell2.is_down
