"""What the compute API asks the network service about security groups, with the caller's token, as
upstream Nova does: a group by name or id in the caller's project, a server's ports, and the groups a
server create names (their ids go to the ports the server's host creates)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.clients import neutron_error, segment
from kilonova.common.http import HTTPError
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.floating_ips import network_get

DEFAULT = "default"


def neutron_message(response) -> str:
    return neutron_error(response).get("message") or response.text[:200]


def unavailable(response) -> HTTPError:
    """An answer of the network service the call did not expect: its refusal by policy, or a 502."""
    if response.status_code == 403:
        return HTTPError(403, neutron_message(response))
    return HTTPError(502, f"The network service answered {response.status_code}: {neutron_message(response)}")


async def find_group(request: Request, name_or_id: str) -> dict[str, Any] | None:
    """The caller's project's group named ``name_or_id`` (else the group with that id); None when there is
    none; 409 when several have that name (Neutron's names are not unique)."""
    project_id = request.state.context.project_id
    listed = await network_get(request, "/v2.0/security-groups", name=name_or_id, project_id=project_id)
    if listed.status_code != 200:
        raise unavailable(listed)
    named = listed.json()["security_groups"]
    if len(named) > 1:
        raise HTTPError(409, f"Multiple security_group matches found for name '{name_or_id}', use an ID to be "
                             "more specific.")
    if named:
        return named[0]
    by_id = await network_get(request, f"/v2.0/security-groups/{segment(name_or_id)}")
    if by_id.status_code == 200:
        return by_id.json()["security_group"]
    if by_id.status_code != 404:
        raise unavailable(by_id)
    return None


async def groups_for_create(request: Request, requested: list[dict[str, Any]] | None
                            ) -> tuple[list[str], list[str], list[str] | None]:
    """For a server create's ``security_groups``: (what the create answers -- ``default`` or the group's id,
    as upstream --, the names the server shows, the ids its new ports get -- None: the network's default);
    400 for a group that does not exist, as upstream."""
    names = [group["name"] for group in requested or []]
    if not names or names == [DEFAULT]:
        return [DEFAULT], [DEFAULT], None
    answered, shown, ids = [], [], []
    for name in dict.fromkeys(names):
        group = await find_group(request, name)
        if group is None:
            raise HTTPError(400, f"Unable to find security_group with name or id '{name}'")
        answered.append(DEFAULT if name == DEFAULT else group["id"])
        if group["id"] not in ids:
            ids.append(group["id"])
            shown.append(group["name"] or group["id"])
    return answered, shown, ids


async def server_ports(request: Request, server_uuid: str) -> list[dict[str, Any]]:
    response = await network_get(request, "/v2.0/ports", device_id=server_uuid)
    if response.status_code != 200:
        raise unavailable(response)
    return response.json()["ports"]


async def set_port_groups(request: Request, port_id: str, group_ids: list[str]):
    return await compute_api(request).network.put(
        f"/v2.0/ports/{segment(port_id)}", json={"port": {"security_groups": group_ids}},
        headers={"X-Auth-Token": request.state.context.token})


async def groups_by_id(request: Request, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    response = await network_get(request, "/v2.0/security-groups", id=ids)
    if response.status_code != 200:
        raise unavailable(response)
    return {group["id"]: group for group in response.json()["security_groups"]}
