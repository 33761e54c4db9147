"""Many server creates at once against a project's limit (raw HTTP from threads, all released together), and
what must be left afterwards: exactly the servers that were accepted, with their allocations and ports."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.cloud import wait_for


def race(conn, attempts: int, network_id: str | None, flavor_id: str = "1",
         endpoints: list[str] | None = None) -> list[httpx.Response]:
    """``attempts`` POST /servers of ``conn``'s project at once (sent to each of ``endpoints`` in turn, default
    the catalog's compute endpoint); the answers. ``network_id`` None: servers with no network."""
    endpoints = endpoints or [conn.compute.get_endpoint().rstrip("/")]
    image = conn.image.find_image("kilonova-tiny").id
    headers = {"X-Auth-Token": conn.auth_token, "OpenStack-API-Version": "compute 2.37"}
    start = threading.Barrier(attempts)

    def create(index: int) -> httpx.Response:
        body = {"server": {"name": f"race-{index}", "flavorRef": flavor_id, "imageRef": image,
                           "networks": [{"uuid": network_id}] if network_id else "none"}}
        with httpx.Client(timeout=120) as client:
            start.wait()
            return client.post(f"{endpoints[index % len(endpoints)]}/servers", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        return list(pool.map(create, range(attempts)))


def check_nothing_leaked(admin, conn, project_id: str, accepted: set[str], flavor: dict,
                         ports: bool = True) -> None:
    """Only the accepted servers exist (none left building), each ACTIVE with its allocation (and its port)."""
    def all_active() -> bool:
        servers = list(conn.compute.servers())
        return {s.id for s in servers} == accepted and all(s.status == "ACTIVE" for s in servers)
    wait_for(all_active, "the accepted servers to be ACTIVE and the only ones", timeout=180)
    usages = admin.placement.get(f"/usages?project_id={project_id}",
                                 headers={"OpenStack-API-Version": "placement 1.9"}).json()["usages"]
    assert usages.get("VCPU") == flavor["vcpus"] * len(accepted)
    assert usages.get("MEMORY_MB") == flavor["ram"] * len(accepted)
    if ports:
        made = list(admin.network.ports(project_id=project_id))
        assert sorted(p.device_id for p in made) == sorted(accepted)


def delete_all(conn) -> None:
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    wait_for(lambda: not list(conn.compute.servers()), "the servers to go", timeout=120)
