"""A server moving from its build request into its cell while GET /servers runs is listed, whatever step of the
list it moves at: the conductor's own steps (the cell row written, then the build request dropped) are run after
1, 2, 3, ... turns of the event loop while the list is under way, so every interleaving of the two is tried.
Listing the cells before the build requests lost a server that moved in between (seen in CI as an empty list
right after a multi-create)."""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from datetime import datetime

from kilonova.compute.conductor import build
from kilonova.compute.db import build_requests
from tests.unit.test_compute_admin_harness import api, stub  # noqa: F401 - fixtures

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}
IMAGE = "0b6f3c55-2d4e-4a7b-9c1d-5e8f7a6b4c3d"
TURNS = 16  # more turns of the loop than one list takes (3 here; checked: the last move comes after the answer)


def _build_request(stub, name: str, reservation: str) -> str:
    uuid = str(uuidlib.uuid4())
    values = {"uuid": uuid, "display_name": name, "project_id": "demo-project", "user_id": "demo-user",
              "flavor": FLAVOR, "image_ref": IMAGE, "vm_state": "building", "task_state": "scheduling",
              "power_state": 0, "reservation_id": reservation, "launch_index": 0,
              "created_at": datetime.utcnow().isoformat(timespec="microseconds")}
    spec = {"project_id": "demo-project", "user_id": "demo-user", "flavor": FLAVOR, "image": {"id": IMAGE}}
    stub.api_db.run_sync(build_requests.create, values, spec)
    return uuid


async def _move_into_cell(stub, uuid: str, turns: int) -> None:
    """What the conductor does once the scheduler chose a host, after ``turns`` turns of the loop."""
    for _ in range(turns):
        await asyncio.sleep(0)
    pending = await stub.api_db.read(build_requests.get, uuid)
    values = {key: value for key, value in pending.items() if not key.startswith("_")}
    values.update(host="compute1", node="compute1", task_state=None)
    cell = stub.cells.default
    await cell.db.write(build._create_with_action, values, {})
    assert await stub.api_db.write(build._promote_build_request, uuid, cell.uuid)


async def test_a_server_moving_into_its_cell_during_a_list_is_listed(api, stub):
    lists = {"brief": ("/servers", {}), "detail": ("/servers/detail", {}),
             "by reservation_id": ("/servers", {"reservation_id": None}), "by name": ("/servers/detail", {"name": None})}
    for what, (path, params) in lists.items():
        moved_after_the_answer = False
        for turns in range(TURNS):
            name, reservation = f"{what}-{turns}", f"r-{uuidlib.uuid4().hex[:8]}"
            uuid = _build_request(stub, name, reservation)
            query = {key: (reservation if key == "reservation_id" else f"^{name}$") for key in params}
            mover = asyncio.create_task(_move_into_cell(stub, uuid, turns))
            answer = await api.get(path, token="demo-token", params=query)
            moved_after_the_answer = not mover.done()
            await mover
            assert answer.status_code == 200, answer.text
            listed = [server["id"] for server in answer.json()["servers"]]
            assert uuid in listed, f"{what}: the server moved into its cell at turn {turns} and was not listed"
        assert moved_after_the_answer, f"{what}: {TURNS} turns of the loop do not cover a whole list"
