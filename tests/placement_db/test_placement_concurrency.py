"""50 concurrent clients claim one provider through two `kilonova serve placement` processes sharing
one database (SQLite, PostgreSQL, MariaDB): the provider is never overcommitted.

Each client claims 1 VCPU of a provider that has 10 as a new consumer, all at once, half of them
through each process. Claims race on the provider's generation inside each process and across the
two; whatever the interleaving, at most 10 succeed, every other answer is a 409, and the usage and
the allocations in the database are exactly the successful claims. Topping the provider up one claim
at a time then reaches exactly 10. Inventory and trait writes racing on one provider's generation through
both processes: one wins, every other answer is a 409.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.placement_db.test_placement_databases import scratch_database
from tests.placement_db.test_placement_standalone import H, _base_port

CLIENTS = 50
CAPACITY = 10


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def shared_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared-placement.sqlite"
    else:
        with scratch_database(request.param) as url:
            yield url


def _serve(state: Path, database: str) -> tuple[subprocess.Popen, str]:
    state.mkdir()
    (state / "kilonova.conf").write_text(f"[placement]\nauth_strategy = noauth2\n"
                                         f"[placement_database]\nconnection = {database}\n")
    base = _base_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "kilonova"), "--config", str(state / "kilonova.conf"),
                                "--state-dir", str(state), "serve", "placement", "--base-port", str(base)],
                               stdout=open(state / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{base + 2}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"placement did not come up: {(state / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


async def _claim(url: str, provider: str, start: asyncio.Event) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=H, timeout=120) as http:
        body = {"allocations": {provider: {"resources": {"VCPU": 1}}}, "project_id": "p", "user_id": "u",
                "consumer_generation": None, "consumer_type": "INSTANCE"}
        await http.get("/")          # connected before the race starts
        await start.wait()
        return await http.put(f"/allocations/{uuid.uuid4()}", json=body)


async def _race(urls: list[str], provider: str) -> list[httpx.Response]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_claim(urls[i % len(urls)], provider, start)) for i in range(CLIENTS)]
    await asyncio.sleep(1.0)
    start.set()
    return await asyncio.gather(*tasks)


async def _write_race(urls: list[str], path: str, bodies: list[dict]) -> list[int]:
    """Each body PUT to ``path`` by a client of its own, all at once, alternately through each process."""
    start = asyncio.Event()

    async def put(url: str, body: dict) -> int:
        async with httpx.AsyncClient(base_url=url, headers=H, timeout=120) as http:
            await http.get("/")
            await start.wait()
            return (await http.put(path, json=body)).status_code

    tasks = [asyncio.create_task(put(urls[i % len(urls)], body)) for i, body in enumerate(bodies)]
    await asyncio.sleep(1.0)
    start.set()
    return await asyncio.gather(*tasks)


def _writes_race_on_generations(urls: list[str]) -> None:
    """Inventory and trait writes racing on one provider with the same generation: one wins, the others
    are told of the conflict (409), and the provider keeps the winner's write."""
    with httpx.Client(base_url=urls[0], headers=H, timeout=60) as http:
        rp = http.post("/resource_providers", json={"name": "raced"}).json()
        path = f"/resource_providers/{rp['uuid']}"
        totals = list(range(1, 13))
        statuses = asyncio.run(_write_race(urls, path + "/inventories", [
            {"resource_provider_generation": 0, "inventories": {"VCPU": {"total": t}, "DISK_GB": {"total": t}}}
            for t in totals]))
        assert sorted(statuses) == [200] + [409] * (len(totals) - 1), statuses
        inventories = http.get(path + "/inventories").json()
        assert inventories["resource_provider_generation"] == 1
        assert inventories["inventories"]["VCPU"]["total"] == inventories["inventories"]["DISK_GB"]["total"]
        traits = [["HW_CPU_X86_AVX2"], ["HW_CPU_X86_SSE"], ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE"]] * 4
        statuses = asyncio.run(_write_race(urls, path + "/traits", [
            {"resource_provider_generation": 1, "traits": names} for names in traits]))
        assert sorted(statuses) == [200] + [409] * (len(traits) - 1), statuses
        assert http.get(path + "/traits").json()["resource_provider_generation"] == 2


def test_fifty_clients_through_two_processes_never_overcommit(tmp_path, shared_database):
    first, url_a = _serve(tmp_path / "a", shared_database)    # the first one creates the schema
    try:
        second, url_b = _serve(tmp_path / "b", shared_database)
    except BaseException:
        _stop(first)
        raise
    try:
        with httpx.Client(base_url=url_a, headers=H, timeout=60) as http:
            rp = http.post("/resource_providers", json={"name": "contended"}).json()
            r = http.put(f"/resource_providers/{rp['uuid']}/inventories", json={
                "resource_provider_generation": 0, "inventories": {"VCPU": {"total": CAPACITY}}})
            assert r.status_code == 200, r.text
        results = asyncio.run(_race([url_a, url_b], rp["uuid"]))
        statuses = [r.status_code for r in results]
        assert set(statuses) <= {204, 409}, [r.text for r in results if r.status_code not in (204, 409)]
        won = statuses.count(204)
        assert 1 <= won <= CAPACITY, statuses
        with httpx.Client(headers=H, timeout=60) as http:
            for url in (url_a, url_b):   # both processes see the same, exact usage
                usages = http.get(f"{url}/resource_providers/{rp['uuid']}/usages").json()["usages"]
                assert usages == {"VCPU": won}
                allocations = http.get(f"{url}/resource_providers/{rp['uuid']}/allocations").json()["allocations"]
                assert len(allocations) == won
            # the rest of the capacity can still be claimed, one at a time, and not one unit more
            extra = 0
            while True:
                r = http.put(f"{url_b}/allocations/{uuid.uuid4()}", json={
                    "allocations": {rp["uuid"]: {"resources": {"VCPU": 1}}}, "project_id": "p", "user_id": "u",
                    "consumer_generation": None, "consumer_type": "INSTANCE"})
                if r.status_code == 409:
                    break
                assert r.status_code == 204, r.text
                extra += 1
                assert won + extra <= CAPACITY
            assert won + extra == CAPACITY
            usages = http.get(f"{url_a}/resource_providers/{rp['uuid']}/usages").json()["usages"]
            assert usages == {"VCPU": CAPACITY}
            candidates = http.get(f"{url_a}/allocation_candidates?resources=VCPU:1").json()
            assert candidates["allocation_requests"] == []
        _writes_race_on_generations([url_a, url_b])
    finally:
        _stop(second)
        _stop(first)
