"""Keystone's unified limits over the identity ASGI app: registered limits, limits, the flat model; Keystone's
checks (unknown ids 400, duplicates 409, a limit with no registered limit 403, a referenced registered limit
unchangeable 403), bad input 400, admin-only writes and project-narrowed reads."""
from __future__ import annotations

import pytest

from tests.unit.test_identity import auth, client, issue, service  # noqa: F401
from tests.unit.test_identity_resources import admin, error_of  # noqa: F401 - fixture


@pytest.fixture
async def demo(client):  # noqa: F811 - the demo member's headers and project id
    token, body = await issue(client, "demo", "demo")
    return auth(token), body["project"]["id"]


async def _compute(client, admin):  # noqa: F811
    return (await client.get("/v3/services?type=compute", headers=admin)).json()["services"][0]["id"]


async def _project(client, admin, name: str) -> str:  # noqa: F811
    return (await client.get(f"/v3/projects?name={name}", headers=admin)).json()["projects"][0]["id"]


async def test_registered_limit_and_limit_lifecycle(client, admin, demo):  # noqa: F811
    compute = await _compute(client, admin)
    response = await client.post("/v3/registered_limits", headers=admin, json={"registered_limits": [
        {"service_id": compute, "resource_name": "servers", "default_limit": 10},
        {"service_id": compute, "region_id": "RegionOne", "resource_name": "class:VCPU", "default_limit": 20,
         "description": "cores"}]})
    assert response.status_code == 201, response.text
    servers, vcpu = response.json()["registered_limits"]
    assert set(servers) == {"id", "service_id", "region_id", "resource_name", "default_limit", "description",
                            "links"}
    assert servers["region_id"] is None and servers["default_limit"] == 10
    assert servers["links"]["self"] == f"http://identity/v3/registered_limits/{servers['id']}"
    assert "links" not in response.json()

    listing = (await client.get(f"/v3/registered_limits?service_id={compute}&resource_name=servers",
                                headers=admin)).json()
    assert [r["id"] for r in listing["registered_limits"]] == [servers["id"]]
    assert set(listing["links"]) == {"self", "previous", "next"}
    by_region = (await client.get("/v3/registered_limits?region_id=RegionOne", headers=admin)).json()
    assert [r["id"] for r in by_region["registered_limits"]] == [vcpu["id"]]

    demo_headers, demo_project = demo
    response = await client.post("/v3/limits", headers=admin, json={"limits": [
        {"service_id": compute, "project_id": demo_project, "resource_name": "servers", "resource_limit": 5}]})
    assert response.status_code == 201, response.text
    limit = response.json()["limits"][0]
    assert limit["project_id"] == demo_project and limit["domain_id"] is None and limit["region_id"] is None
    assert limit["resource_name"] == "servers" and limit["resource_limit"] == 5
    assert limit["links"]["self"] == f"http://identity/v3/limits/{limit['id']}"

    # a registered limit that a limit refers to can be neither changed nor deleted (Keystone's 403)
    message = error_of(await client.patch(f"/v3/registered_limits/{servers['id']}", headers=admin,
                                          json={"registered_limit": {"default_limit": 3}}), 403, "Forbidden")
    assert message == (f"Unable to update or delete registered limit {servers['id']} because there are project "
                       "limits associated with it.")
    error_of(await client.delete(f"/v3/registered_limits/{servers['id']}", headers=admin), 403, "Forbidden")

    response = await client.patch(f"/v3/limits/{limit['id']}", headers=admin,
                                  json={"limit": {"resource_limit": 7, "description": "seven"}})
    assert response.json()["limit"]["resource_limit"] == 7 and response.json()["limit"]["description"] == "seven"
    # the demo member reads its own project's limits, and only those
    assert [x["id"] for x in (await client.get("/v3/limits", headers=demo_headers)).json()["limits"]] \
        == [limit["id"]]
    shown = await client.get(f"/v3/limits/{limit['id']}", headers=demo_headers)
    assert shown.json()["limit"]["resource_limit"] == 7
    assert (await client.get(f"/v3/registered_limits/{vcpu['id']}", headers=demo_headers)).status_code == 200
    assert (await client.get("/v3/limits/model", headers=demo_headers)).json() == {"model": {
        "name": "flat",
        "description": "Limit enforcement and validation does not take project hierarchy into consideration."}}
    filtered = (await client.get(f"/v3/limits?project_id={demo_project}&resource_name=class:VCPU",
                                 headers=admin)).json()["limits"]
    assert filtered == []

    assert (await client.delete(f"/v3/limits/{limit['id']}", headers=admin)).status_code == 204
    assert error_of(await client.get(f"/v3/limits/{limit['id']}", headers=admin), 404, "Not Found") \
        == f"Could not find limit for {limit['id']}."
    response = await client.patch(f"/v3/registered_limits/{servers['id']}", headers=admin,
                                  json={"registered_limit": {"default_limit": 3}})
    assert response.json()["registered_limit"]["default_limit"] == 3
    assert (await client.delete(f"/v3/registered_limits/{servers['id']}", headers=admin)).status_code == 204
    assert error_of(await client.get(f"/v3/registered_limits/{servers['id']}", headers=admin), 404,
                    "Not Found") == f"Could not find registered limit for {servers['id']}."


async def test_keystone_refusals(client, admin, demo):  # noqa: F811
    compute = await _compute(client, admin)
    demo_headers, demo_project = demo
    registered = {"service_id": compute, "resource_name": "servers", "default_limit": 10}
    assert (await client.post("/v3/registered_limits", headers=admin,
                              json={"registered_limits": [registered]})).status_code == 201
    message = error_of(await client.post("/v3/registered_limits", headers=admin,
                                         json={"registered_limits": [registered]}), 409, "Conflict")
    assert message == "Conflict occurred attempting to store registered_limit - Duplicate entry."
    message = error_of(await client.post("/v3/registered_limits", headers=admin, json={"registered_limits": [
        {**registered, "service_id": "0" * 32}]}), 400, "Bad Request")
    assert message.startswith("Expecting to find service_id in registered_limit.")
    error_of(await client.post("/v3/registered_limits", headers=admin, json={"registered_limits": [
        {**registered, "region_id": "Nowhere"}]}), 400, "Bad Request")

    limit = {"service_id": compute, "project_id": demo_project, "resource_name": "servers", "resource_limit": 5}
    assert (await client.post("/v3/limits", headers=admin, json={"limits": [limit]})).status_code == 201
    message = error_of(await client.post("/v3/limits", headers=admin, json={"limits": [limit]}), 409, "Conflict")
    assert message == "Conflict occurred attempting to store limit - Duplicate entry."
    message = error_of(await client.post("/v3/limits", headers=admin, json={"limits": [
        {**limit, "resource_name": "class:VCPU"}]}), 403, "Forbidden")
    assert message == "Unable to create a limit that has no corresponding registered limit."
    message = error_of(await client.post("/v3/limits", headers=admin, json={"limits": [
        {**limit, "project_id": "f" * 32}]}), 400, "Bad Request")
    assert message.startswith("Expecting to find project_id in limit.")

    # non-admins write nothing
    for method, path, document in (
            ("POST", "/v3/registered_limits", {"registered_limits": [registered]}),
            ("POST", "/v3/limits", {"limits": [limit]})):
        message = error_of(await client.request(method, path, headers=demo_headers, json=document), 403,
                           "Forbidden")
        assert message.startswith("You are not authorized to perform the requested action: identity:create_")
    # another project's limit (or none at all) is refused to a non-admin, as Keystone's get_limit rule does
    admin_project = await _project(client, admin, "admin")
    created = (await client.post("/v3/limits", headers=admin, json={"limits": [
        {**limit, "project_id": admin_project}]})).json()["limits"][0]
    error_of(await client.get(f"/v3/limits/{created['id']}", headers=demo_headers), 403, "Forbidden")
    error_of(await client.get("/v3/limits/nothing", headers=demo_headers), 403, "Forbidden")
    error_of(await client.delete(f"/v3/limits/{created['id']}", headers=demo_headers), 403, "Forbidden")


@pytest.mark.parametrize("document", [
    {}, {"registered_limits": []}, {"registered_limits": {}},
    {"registered_limits": [{"service_id": "x", "resource_name": "servers"}]},
    {"registered_limits": [{"service_id": "x", "resource_name": "servers", "default_limit": -2}]},
    {"registered_limits": [{"service_id": "x", "resource_name": "servers", "default_limit": 2 ** 31}]},
    {"registered_limits": [{"service_id": "x", "resource_name": "servers", "default_limit": "5"}]},
    {"registered_limits": [{"service_id": "x", "resource_name": "", "default_limit": 5}]},
    {"registered_limits": [{"service_id": "x", "resource_name": "s", "default_limit": 5, "other": 1}]},
])
async def test_registered_limit_bad_input(client, admin, document):  # noqa: F811
    error_of(await client.post("/v3/registered_limits", headers=admin, json=document), 400, "Bad Request")


@pytest.mark.parametrize("item", [
    {"service_id": "x", "resource_name": "servers", "resource_limit": 1},     # neither project nor domain
    {"service_id": "x", "resource_name": "servers", "resource_limit": 1, "project_id": "p", "domain_id": "d"},
    {"service_id": "x", "resource_name": "servers", "resource_limit": -5, "project_id": "p"},
    {"service_id": "x", "resource_name": "servers", "resource_limit": True, "project_id": "p"},
])
async def test_limit_bad_input(client, admin, item):  # noqa: F811
    error_of(await client.post("/v3/limits", headers=admin, json={"limits": [item]}), 400, "Bad Request")
    error_of(await client.patch("/v3/limits/whatever", headers=admin,
                                json={"limit": {"resource_name": "servers"}}), 400, "Bad Request")


async def test_a_deleted_projects_limits_go_with_it(client, admin):  # noqa: F811
    compute = await _compute(client, admin)
    assert (await client.post("/v3/registered_limits", headers=admin, json={"registered_limits": [
        {"service_id": compute, "resource_name": "servers", "default_limit": 10}]})).status_code == 201
    project = (await client.post("/v3/projects", headers=admin, json={"project": {"name": "brief"}})).json()["project"]
    created = (await client.post("/v3/limits", headers=admin, json={"limits": [
        {"service_id": compute, "project_id": project["id"], "resource_name": "servers", "resource_limit": 3}]}))
    limit = created.json()["limits"][0]
    assert (await client.delete(f"/v3/projects/{project['id']}", headers=admin)).status_code == 204
    error_of(await client.get(f"/v3/limits/{limit['id']}", headers=admin), 404, "Not Found")
    assert (await client.get(f"/v3/limits?project_id={project['id']}", headers=admin)).json()["limits"] == []
