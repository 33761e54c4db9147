"""A project's first ports, created at once on PostgreSQL and MariaDB (a multi-create's hosts each making
one), share one `default` security group: the first use that loses the race retries and finds the winner's."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from kilonova.common.testing import FakeValidator, service_env
from kilonova.network.service import NetworkService
from tests.distributed.infra import Databases

SERVICE = {"X-Auth-Token": "nova"}


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_concurrent_first_ports_of_a_project_share_one_default_group(kind, tmp_path):
    databases = Databases(kind)
    service = None
    try:
        env = service_env(tmp_path, overrides={"network_database": {"connection": databases.url("first_use")}})
        service = NetworkService(env, validator=FakeValidator({"nova": ("kilonova", "p-service",
                                                                        ["service", "admin"])}))
        service.prepare()
        network = await service.ensure_default_network("p-admin")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://net") as api:
            for project in ("p-first", "p-second"):
                answers = await asyncio.gather(*(api.post("/v2.0/ports", headers=SERVICE, json={
                    "port": {"network_id": network["id"], "project_id": project}}) for _ in range(12)))
                assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers if a.status_code != 201]
                groups = {tuple(a.json()["port"]["security_groups"]) for a in answers}
                listed = (await api.get("/v2.0/security-groups", params={"project_id": project},
                                        headers=SERVICE)).json()["security_groups"]
                assert [g["name"] for g in listed] == ["default"] and groups == {(listed[0]["id"],)}
    finally:
        if service is not None:
            service.db.close()
        databases.drop_all()
