"""Identity resources over the ASGI app: CRUD shapes, errors, policy, grants, assignments, catalog."""
from __future__ import annotations

import pytest

from tests.unit.test_identity import auth, client, issue, password_auth, service  # noqa: F401


@pytest.fixture
async def admin(client):  # noqa: F811
    token, _ = await issue(client, "admin", "admin")
    return auth(token)


@pytest.fixture
async def demo(client):  # noqa: F811
    token, body = await issue(client, "demo", "demo")
    return auth(token), body


def error_of(response, code: int, title: str) -> str:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["title"] == title
    return error["message"]


async def role_id(client, admin, name: str) -> str:  # noqa: F811
    return (await client.get(f"/v3/roles?name={name}", headers=admin)).json()["roles"][0]["id"]


async def test_project_crud(client, admin):  # noqa: F811
    response = await client.post("/v3/projects", headers=admin,
                                 json={"project": {"name": "p1", "description": "first", "tags": ["a"]}})
    assert response.status_code == 201
    project = response.json()["project"]
    assert project["domain_id"] == "default" and project["parent_id"] == "default"
    assert project["is_domain"] is False and project["enabled"] is True and project["tags"] == ["a"]
    assert project["links"]["self"] == f"http://identity/v3/projects/{project['id']}"
    message = error_of(await client.post("/v3/projects", headers=admin, json={"project": {"name": "p1"}}),
                       409, "Conflict")
    assert "p1" in message
    listing = (await client.get("/v3/projects?name=p1", headers=admin)).json()
    assert [p["id"] for p in listing["projects"]] == [project["id"]]
    assert set(listing["links"]) == {"self", "previous", "next"}
    response = await client.get("/v3/projects?domain_id=default&enabled=true", headers=admin)
    assert {p["name"] for p in response.json()["projects"]} == {"admin", "demo", "service", "p1"}
    response = await client.patch(f"/v3/projects/{project['id']}", headers=admin,
                                  json={"project": {"description": "changed", "enabled": False}})
    assert response.json()["project"]["description"] == "changed"
    assert [p["name"] for p in (await client.get("/v3/projects?enabled=false", headers=admin)).json()["projects"]] \
        == ["p1"]
    assert (await client.delete(f"/v3/projects/{project['id']}", headers=admin)).status_code == 204
    message = error_of(await client.get(f"/v3/projects/{project['id']}", headers=admin), 404, "Not Found")
    assert message == f"Could not find project: {project['id']}."
    error_of(await client.delete(f"/v3/projects/{project['id']}", headers=admin), 404, "Not Found")


@pytest.mark.parametrize("document", [
    {}, {"project": {}}, {"project": {"name": ""}}, {"project": {"name": 5}}, {"project": {"name": "x" * 65}},
    {"project": {"name": "ok", "enabled": "yes"}}, {"project": {"name": "ok", "tags": "a"}}, [],
    {"project": {"name": "ok", "domain_id": "nope"}},
])
async def test_project_validation(client, admin, document):  # noqa: F811
    response = await client.post("/v3/projects", headers=admin, json=document)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["code"] == response.status_code


async def test_user_crud_and_filters(client, admin):  # noqa: F811
    response = await client.post("/v3/users", headers=admin, json={"user": {
        "name": "carol", "password": "pw", "email": "carol@example.com", "description": "c"}})
    assert response.status_code == 201
    user = response.json()["user"]
    assert user["email"] == "carol@example.com" and user["domain_id"] == "default"
    assert "password" not in user and user["password_expires_at"] is None
    error_of(await client.post("/v3/users", headers=admin, json={"user": {"name": "carol"}}), 409, "Conflict")
    found = (await client.get("/v3/users?name=carol&domain_id=default", headers=admin)).json()["users"]
    assert [u["id"] for u in found] == [user["id"]]
    response = await client.patch(f"/v3/users/{user['id']}", headers=admin, json={"user": {"email": "c@x.org"}})
    assert response.json()["user"]["email"] == "c@x.org" and response.json()["user"]["description"] == "c"
    assert (await client.get(f"/v3/users/{user['id']}/projects", headers=admin)).json()["projects"] == []
    assert (await client.delete(f"/v3/users/{user['id']}", headers=admin)).status_code == 204
    message = error_of(await client.get(f"/v3/users/{user['id']}", headers=admin), 404, "Not Found")
    assert message == f"Could not find user: {user['id']}."


async def test_demo_is_forbidden_admin_actions(client, demo):  # noqa: F811
    headers, body = demo
    message = error_of(await client.get("/v3/users", headers=headers), 403, "Forbidden")
    assert message == "You are not authorized to perform the requested action: identity:list_users."
    error_of(await client.get("/v3/projects", headers=headers), 403, "Forbidden")
    error_of(await client.post("/v3/projects", headers=headers, json={"project": {"name": "x"}}), 403, "Forbidden")
    error_of(await client.post("/v3/users", headers=headers, json={"user": {"name": "x"}}), 403, "Forbidden")
    error_of(await client.delete(f"/v3/projects/{body['project']['id']}", headers=headers), 403, "Forbidden")
    error_of(await client.get("/v3/role_assignments", headers=headers), 403, "Forbidden")
    error_of(await client.get("/v3/roles", headers=headers), 403, "Forbidden")
    error_of(await client.get("/v3/services", headers=headers), 403, "Forbidden")
    # ...but can see itself, its projects and its own project
    me = await client.get(f"/v3/users/{body['user']['id']}", headers=headers)
    assert me.status_code == 200 and me.json()["user"]["name"] == "demo"
    mine = await client.get(f"/v3/users/{body['user']['id']}/projects", headers=headers)
    assert [p["name"] for p in mine.json()["projects"]] == ["demo"]
    assert [p["name"] for p in (await client.get("/v3/auth/projects", headers=headers)).json()["projects"]] == ["demo"]
    assert (await client.get(f"/v3/projects/{body['project']['id']}", headers=headers)).status_code == 200
    assert (await client.get("/v3/regions", headers=headers)).status_code == 200


async def test_grants_and_role_assignments(client, admin):  # noqa: F811
    user = (await client.post("/v3/users", headers=admin, json={"user": {"name": "dave", "password": "pw"}})).json()["user"]
    project = (await client.post("/v3/projects", headers=admin, json={"project": {"name": "dp"}})).json()["project"]
    admin_role = await role_id(client, admin, "admin")
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{admin_role}"
    error_of(await client.get(grant, headers=admin), 404, "Not Found")
    assert (await client.head(grant, headers=admin)).status_code == 404
    assert (await client.post("/v3/auth/tokens", json=password_auth("dave", "pw", project="dp"))).status_code == 401
    assert (await client.put(grant, headers=admin)).status_code == 204
    assert (await client.head(grant, headers=admin)).status_code == 204
    assert (await client.get(grant, headers=admin)).status_code == 204
    listed = (await client.get(f"/v3/projects/{project['id']}/users/{user['id']}/roles", headers=admin)).json()
    assert [r["name"] for r in listed["roles"]] == ["admin"]
    error_of(await client.put(f"/v3/projects/{project['id']}/users/{user['id']}/roles/nope", headers=admin),
             404, "Not Found")
    response = await client.post("/v3/auth/tokens", json=password_auth("dave", "pw", project="dp"))
    assert response.status_code == 201
    assert sorted(r["name"] for r in response.json()["token"]["roles"]) == ["admin", "manager", "member", "reader"]
    dave_token = response.headers["X-Subject-Token"]

    direct = (await client.get(f"/v3/role_assignments?user.id={user['id']}", headers=admin)).json()
    assert direct["role_assignments"] == [{
        "role": {"id": admin_role}, "user": {"id": user["id"]}, "scope": {"project": {"id": project["id"]}},
        "links": {"assignment": f"http://identity{grant}"}}]
    effective = (await client.get(f"/v3/role_assignments?user.id={user['id']}&effective&include_names",
                                  headers=admin)).json()["role_assignments"]
    by_role = {a["role"]["name"]: a for a in effective}
    assert set(by_role) == {"admin", "manager", "member", "reader"}
    assert by_role["reader"]["links"]["prior_role"].endswith(f"/v3/roles/{by_role['member']['role']['id']}")
    assert by_role["reader"]["links"]["assignment"] == f"http://identity{grant}"
    assert by_role["admin"]["scope"]["project"]["name"] == "dp"
    assert by_role["admin"]["user"]["domain"] == {"id": "default", "name": "Default"}
    reader_id = by_role["reader"]["role"]["id"]
    only_reader = (await client.get(f"/v3/role_assignments?scope.project.id={project['id']}&role.id={reader_id}"
                                    "&effective", headers=admin)).json()["role_assignments"]
    assert [a["user"]["id"] for a in only_reader] == [user["id"]]
    assert (await client.get(f"/v3/role_assignments?scope.project.id={project['id']}&role.id={reader_id}",
                             headers=admin)).json()["role_assignments"] == []
    system = (await client.get("/v3/role_assignments?scope.system=all", headers=admin)).json()["role_assignments"]
    assert [a["scope"] for a in system] == [{"system": {"all": True}}]

    # removing the grant takes effect on the live token at once
    assert (await client.delete(grant, headers=admin)).status_code == 204
    assert (await client.get("/v3/auth/projects", headers=auth(dave_token))).status_code == 401
    error_of(await client.delete(grant, headers=admin), 404, "Not Found")


async def test_implied_roles(client, admin):  # noqa: F811
    inferences = (await client.get("/v3/role_inferences", headers=admin)).json()["role_inferences"]
    rules = {r["prior_role"]["name"]: [i["name"] for i in r["implies"]] for r in inferences}
    assert rules == {"admin": ["manager"], "manager": ["member"], "member": ["reader"]}
    viewer = (await client.post("/v3/roles", headers=admin, json={"role": {"name": "viewer"}})).json()["role"]
    error_of(await client.post("/v3/roles", headers=admin, json={"role": {"name": "viewer"}}), 409, "Conflict")
    reader = await role_id(client, admin, "reader")
    response = await client.put(f"/v3/roles/{viewer['id']}/implies/{reader}", headers=admin)
    assert response.status_code == 201
    assert response.json()["role_inference"]["implies"]["name"] == "reader"
    assert (await client.head(f"/v3/roles/{viewer['id']}/implies/{reader}", headers=admin)).status_code == 204
    assert (await client.get(f"/v3/roles/{viewer['id']}/implies/{reader}", headers=admin)).status_code == 200
    listed = (await client.get(f"/v3/roles/{viewer['id']}/implies", headers=admin)).json()["role_inference"]
    assert [r["name"] for r in listed["implies"]] == ["reader"]
    error_of(await client.put(f"/v3/roles/{reader}/implies/{viewer['id']}", headers=admin), 409, "Conflict")
    assert (await client.delete(f"/v3/roles/{viewer['id']}/implies/{reader}", headers=admin)).status_code == 204
    error_of(await client.get(f"/v3/roles/{viewer['id']}/implies/{reader}", headers=admin), 404, "Not Found")
    assert (await client.delete(f"/v3/roles/{viewer['id']}", headers=admin)).status_code == 204


async def test_catalog_contents(client, admin, service):  # noqa: F811
    token, body = await issue(client, "demo", "demo")
    catalog = {entry["type"]: entry for entry in body["catalog"]}
    assert {t: e["name"] for t, e in catalog.items()} == {
        "identity": "keystone", "compute": "nova", "placement": "placement", "image": "glance", "network": "neutron",
        "block-storage": "cinder", "volumev3": "cinderv3"}
    ports = {s: service.conf.getint("ports", "block-storage" if s == "volumev3" else s) for s in catalog}
    for service_type, entry in catalog.items():
        assert sorted(e["interface"] for e in entry["endpoints"]) == ["admin", "internal", "public"]
        assert all(e["region_id"] == "RegionOne" and e["region"] == "RegionOne" for e in entry["endpoints"])
        assert all(f":{ports[service_type]}" in e["url"] for e in entry["endpoints"])
    assert catalog["identity"]["endpoints"][0]["url"].endswith("/v3")
    assert catalog["compute"]["endpoints"][0]["url"].endswith("/v2.1")
    # As Keystone fills $(project_id)s in: Cinder's endpoint names the token's project.
    project_id = body["project"]["id"]
    for service_type in ("block-storage", "volumev3"):
        assert all(e["url"].endswith(f"/v3/{project_id}") for e in catalog[service_type]["endpoints"])
    response = await client.get("/v3/auth/catalog", headers=auth(token))
    assert response.status_code == 200 and len(response.json()["catalog"]) == 7
    services = (await client.get("/v3/services?type=compute", headers=admin)).json()["services"]
    assert [s["name"] for s in services] == ["nova"]
    endpoints = (await client.get(f"/v3/endpoints?service_id={services[0]['id']}&interface=public",
                                  headers=admin)).json()["endpoints"]
    assert len(endpoints) == 1 and endpoints[0]["url"] == catalog["compute"]["endpoints"][0]["url"]
    regions = (await client.get("/v3/regions", headers=admin)).json()["regions"]
    assert [r["id"] for r in regions] == ["RegionOne"]


async def test_catalog_crud(client, admin):  # noqa: F811
    response = await client.post("/v3/services", headers=admin, json={"service": {"type": "volumev3", "name": "cinder"}})
    assert response.status_code == 201
    svc = response.json()["service"]
    response = await client.post("/v3/endpoints", headers=admin, json={"endpoint": {
        "service_id": svc["id"], "interface": "public", "url": "http://127.0.0.1:8776/v3", "region_id": "RegionOne"}})
    assert response.status_code == 201
    endpoint = response.json()["endpoint"]
    error_of(await client.post("/v3/endpoints", headers=admin, json={"endpoint": {
        "service_id": svc["id"], "interface": "sideways", "url": "http://x"}}), 400, "Bad Request")
    error_of(await client.post("/v3/endpoints", headers=admin, json={"endpoint": {
        "service_id": "missing", "interface": "public", "url": "http://x"}}), 404, "Not Found")
    token, body = await issue(client, "admin", "admin")
    assert "volumev3" in {e["type"] for e in body["catalog"]}
    assert (await client.delete(f"/v3/endpoints/{endpoint['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"/v3/services/{svc['id']}", headers=admin)).status_code == 204
    error_of(await client.get(f"/v3/services/{svc['id']}", headers=admin), 404, "Not Found")
    response = await client.post("/v3/regions", headers=admin, json={"region": {"id": "RegionTwo"}})
    assert response.status_code == 201 and response.json()["region"]["id"] == "RegionTwo"
    error_of(await client.post("/v3/regions", headers=admin, json={"region": {"id": "RegionTwo"}}), 409, "Conflict")


async def test_domains_and_auth_views(client, admin):  # noqa: F811
    domain = (await client.get("/v3/domains/default", headers=admin)).json()["domain"]
    assert domain["name"] == "Default" and domain["enabled"] is True
    response = await client.post("/v3/domains", headers=admin, json={"domain": {"name": "other"}})
    assert response.status_code == 201
    other = response.json()["domain"]
    error_of(await client.delete(f"/v3/domains/{other['id']}", headers=admin), 403, "Forbidden")
    await client.patch(f"/v3/domains/{other['id']}", headers=admin, json={"domain": {"enabled": False}})
    assert (await client.delete(f"/v3/domains/{other['id']}", headers=admin)).status_code == 204
    system = (await client.get("/v3/auth/system", headers=admin)).json()
    assert system["system"] == [{"all": True}]
    assert (await client.get("/v3/auth/domains", headers=admin)).json()["domains"] == []


async def test_unknown_paths_and_methods_use_keystone_errors(client, admin):  # noqa: F811
    error_of(await client.get("/v3/nothing-here", headers=admin), 404, "Not Found")
    response = await client.put("/v3/users", headers=admin)
    error_of(response, 405, "Method Not Allowed")
    assert "GET" in response.headers["Allow"]


async def test_immutable_fields_and_odd_bodies_are_400(client, admin):  # noqa: F811
    demo_project = (await client.get("/v3/projects?name=demo", headers=admin)).json()["projects"][0]
    other = (await client.post("/v3/domains", headers=admin, json={"domain": {"name": "elsewhere"}})).json()["domain"]
    error_of(await client.patch(f"/v3/projects/{demo_project['id']}", headers=admin,
                                json={"project": {"domain_id": other["id"]}}), 400, "Bad Request")
    error_of(await client.patch(f"/v3/projects/{demo_project['id']}", headers=admin,
                                json={"project": {"id": "new-id"}}), 400, "Bad Request")
    same = await client.patch(f"/v3/projects/{demo_project['id']}", headers=admin,
                              json={"project": {"domain_id": "default", "name": "demo"}})
    assert same.status_code == 200
    demo_user = (await client.get("/v3/users?name=demo", headers=admin)).json()["users"][0]
    error_of(await client.patch(f"/v3/users/{demo_user['id']}", headers=admin,
                                json={"user": {"domain_id": other["id"]}}), 400, "Bad Request")
    error_of(await client.patch(f"/v3/users/{demo_user['id']}", headers=admin, json={"user": {}}), 400, "Bad Request")
    error_of(await client.patch(f"/v3/users/{demo_user['id']}", headers=admin, content=b"[1, 2"), 400, "Bad Request")
    error_of(await client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "x",
                                                                     "domain": {"id": 5}}}}}}), 400, "Bad Request")
    error_of(await client.post("/v3/auth/tokens", json={"auth": {
        **password_auth("admin")["auth"], "scope": {"project": {"id": ["x"]}}}}), 400, "Bad Request")
