"""The Placement HTTP API on PostgreSQL and on MariaDB, each on a throw-away database.

The servers are the machine's own (PostgreSQL at 127.0.0.1:5432, trust auth,
user postgres; MariaDB at 127.0.0.1:3306, root with no password). When one is
down, the set-up starts it with the machine's usual command; when it cannot be
had, the test is skipped with the reason. Each test creates its own database,
runs a Placement scenario over HTTP (providers, inventories, traits, aggregates,
allocations with generation conflicts, candidates, usages, reshaper-free
deletes) and drops the database.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement.service import PlacementService

POSTGRES = ("127.0.0.1", 5432)
MARIADB = ("127.0.0.1", 3306)
H = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement 1.39"}


def _open(address) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def _ensure(address, command: list[str]) -> None:
    if _open(address):
        return
    if shutil.which(command[0]) is None:
        pytest.skip(f"{address} is down and {command[0]} is not installed")
    subprocess.run(command, check=False, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _open(address):
            return
        time.sleep(0.5)
    pytest.skip(f"could not start the database server at {address}")


def _postgres() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else ["15"]
    _ensure(POSTGRES, ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"])
    return "postgresql+psycopg://postgres@127.0.0.1:5432/"


def _mariadb() -> str:
    _ensure(MARIADB, ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"])
    return "mysql+pymysql://root@127.0.0.1:3306/"


@contextlib.contextmanager
def scratch_database(kind: str):
    """The URL of a new, empty database on the machine's PostgreSQL or MariaDB, dropped afterwards."""
    server = _postgres() if kind == "postgresql" else _mariadb()
    name = f"kn_placement_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server + ("postgres" if kind == "postgresql" else ""), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    suffix = "?charset=utf8mb4" if kind == "mariadb" else ""
    try:
        yield server + name + suffix
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def database_url(request):
    with scratch_database(request.param) as url:
        yield url


def test_placement_api_on_a_real_database(tmp_path, database_url):
    conf = Config.load(state_dir=tmp_path, overrides={
        "placement": {"auth_strategy": "noauth2"}, "placement_database": {"connection": database_url}})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    svc.prepare()
    try:
        asyncio.run(_scenario(svc))
    finally:
        svc.db.close()


async def _scenario(svc) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p", headers=H) as http:
        assert (await http.put("/traits/CUSTOM_FAST")).status_code == 201
        assert (await http.post("/resource_classes", json={"name": "CUSTOM_GPU"})).status_code == 201
        hosts = []
        for i in range(3):
            rp = (await http.post("/resource_providers", json={"name": f"host-{i}"})).json()
            r = await http.put(f"/resource_providers/{rp['uuid']}/inventories", json={
                "resource_provider_generation": 0,
                "inventories": {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 4096}, "CUSTOM_GPU": {"total": 1}}})
            assert r.status_code == 200, r.text
            hosts.append(rp["uuid"])
        child = (await http.post("/resource_providers", json={"name": "host-0-nic",
                                                              "parent_provider_uuid": hosts[0]})).json()
        assert child["root_provider_uuid"] == hosts[0]
        r = await http.put(f"/resource_providers/{hosts[1]}/traits",
                           json={"resource_provider_generation": 1, "traits": ["CUSTOM_FAST"]})
        assert r.status_code == 200
        agg = str(uuid.uuid4())
        r = await http.put(f"/resource_providers/{hosts[2]}/aggregates",
                           json={"resource_provider_generation": 1, "aggregates": [agg]})
        assert r.status_code == 200
        # stale generation: 409 with the error code
        r = await http.put(f"/resource_providers/{hosts[2]}/aggregates",
                           json={"resource_provider_generation": 1, "aggregates": []})
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "placement.concurrent_update"

        body = (await http.get("/allocation_candidates?resources=VCPU:2,CUSTOM_GPU:1")).json()
        assert len(body["allocation_requests"]) == 3
        body = (await http.get("/allocation_candidates?resources=VCPU:2&required=CUSTOM_FAST")).json()
        assert [list(c["allocations"]) for c in body["allocation_requests"]] == [[hosts[1]]]
        body = (await http.get(f"/allocation_candidates?resources=VCPU:2&member_of={agg}")).json()
        assert [list(c["allocations"]) for c in body["allocation_requests"]] == [[hosts[2]]]

        consumer = str(uuid.uuid4())
        r = await http.put(f"/allocations/{consumer}", json={
            "allocations": {hosts[0]: {"resources": {"VCPU": 2, "CUSTOM_GPU": 1}}}, "project_id": "p",
            "user_id": "u", "consumer_generation": None, "consumer_type": "INSTANCE"})
        assert r.status_code == 204, r.text
        # the GPU of host-0 is taken: two candidates left, and usages say so
        body = (await http.get("/allocation_candidates?resources=VCPU:2,CUSTOM_GPU:1")).json()
        assert sorted(a for c in body["allocation_requests"] for a in c["allocations"]) == sorted(hosts[1:])
        usages = (await http.get("/usages?project_id=p")).json()["usages"]
        assert usages["INSTANCE"]["VCPU"] == 2 and usages["INSTANCE"]["CUSTOM_GPU"] == 1
        # over-claim refused; inventory in use cannot be removed
        r = await http.put(f"/allocations/{uuid.uuid4()}", json={
            "allocations": {hosts[0]: {"resources": {"CUSTOM_GPU": 1}}}, "project_id": "p", "user_id": "u",
            "consumer_generation": None, "consumer_type": "INSTANCE"})
        assert r.status_code == 409
        generation = (await http.get(f"/resource_providers/{hosts[0]}")).json()["generation"]
        r = await http.put(f"/resource_providers/{hosts[0]}/inventories", json={
            "resource_provider_generation": generation, "inventories": {"MEMORY_MB": {"total": 4096}}})
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "placement.inventory.inuse"
        # concurrent claims on one provider never overcommit
        results = await asyncio.gather(*[http.put(f"/allocations/{uuid.uuid4()}", json={
            "allocations": {hosts[1]: {"resources": {"VCPU": 1}}}, "project_id": "p", "user_id": "u",
            "consumer_generation": None, "consumer_type": "INSTANCE"}) for _ in range(12)])
        assert sum(r.status_code == 204 for r in results) == 8
        assert all(r.status_code in (204, 409) for r in results)
        usage = (await http.get(f"/resource_providers/{hosts[1]}/usages")).json()["usages"]
        assert usage["VCPU"] == 8
        assert (await http.delete(f"/allocations/{consumer}")).status_code == 204
        assert (await http.delete(f"/resource_providers/{child['uuid']}")).status_code == 204
        assert (await http.delete(f"/resource_providers/{hosts[0]}")).status_code == 204
        listing = (await http.get("/resource_providers")).json()["resource_providers"]
        assert sorted(p["uuid"] for p in listing) == sorted(hosts[1:])

        # another placement process sharing the database changes an inventory (and, as every
        # Placement write does, the provider's generation): the capacity index must follow
        query = "/allocation_candidates?resources=CUSTOM_GPU:1"
        assert len((await http.get(query)).json()["allocation_requests"]) == 2
        with svc.db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE inventories SET total = 0 WHERE resource_class_id = "
                                 "(SELECT id FROM resource_classes WHERE name = 'CUSTOM_GPU') AND "
                                 "resource_provider_id = (SELECT id FROM resource_providers WHERE uuid = :u)"),
                         {"u": hosts[2]})
            conn.execute(sa.text("UPDATE resource_providers SET generation = generation + 1 WHERE uuid = :u"),
                         {"u": hosts[2]})
        body = (await http.get(query)).json()
        assert [list(c["allocations"]) for c in body["allocation_requests"]] == [[hosts[1]]]
