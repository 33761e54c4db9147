"""The identity service driven over its ASGI app: tokens, scoping, validation and revocation."""
from __future__ import annotations

import httpx
import pytest

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.identity.service import IdentityService

PASSWORDS = {"admin": "admin-secret", "demo": "demo-secret", "kilonova": "service-secret"}


def make_conf(state_dir, **identity) -> Config:
    return Config.load(state_dir=state_dir, overrides={
        "identity": {"password_hash_rounds": "4", "admin_password": PASSWORDS["admin"],
                     "demo_password": PASSWORDS["demo"], **identity},
        "service_user": {"password": PASSWORDS["kilonova"]}})


def make_service(conf: Config) -> IdentityService:
    service = IdentityService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None))
    service.prepare()
    return service


def password_auth(user: str, password: str | None = None, project: str | None = None, **scope) -> dict:
    body: dict = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password or PASSWORDS[user]}}}}}
    if project:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    if scope:
        body["auth"]["scope"] = scope
    return body


@pytest.fixture
def service(tmp_path):
    service = make_service(make_conf(tmp_path))
    yield service
    service.db.close()


@pytest.fixture
async def client(service):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://identity") as c:
        yield c


async def issue(client, user: str, project: str | None = None, **kw) -> tuple[str, dict]:
    response = await client.post("/v3/auth/tokens", json=password_auth(user, project=project, **kw))
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"], response.json()["token"]


def auth(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


async def test_version_documents(client):
    response = await client.get("/")
    assert response.status_code == 300
    [v3] = response.json()["versions"]["values"]
    assert v3["id"].startswith("v3.") and v3["status"] == "stable"
    assert v3["links"][0]["href"] == "http://identity/v3/"
    response = await client.get("/v3")
    assert response.status_code == 200
    assert response.json()["version"]["media-types"][0]["base"] == "application/json"


async def test_admin_project_token(client):
    token, body = await issue(client, "admin", "admin")
    assert body["methods"] == ["password"]
    assert body["user"]["name"] == "admin" and body["user"]["domain"] == {"id": "default", "name": "Default"}
    assert body["project"]["name"] == "admin" and body["project"]["domain"]["id"] == "default"
    assert sorted(r["name"] for r in body["roles"]) == ["admin", "manager", "member", "reader"]
    assert body["expires_at"].endswith(".000000Z") and len(body["audit_ids"]) == 1
    assert {entry["type"] for entry in body["catalog"]} >= {"identity", "compute"}


async def test_bad_password_is_401(client):
    response = await client.post("/v3/auth/tokens", json=password_auth("admin", "wrong", project="admin"))
    assert response.status_code == 401
    assert response.json()["error"] == {"code": 401, "title": "Unauthorized",
                                        "message": "The request you have made requires authentication."}


async def test_every_bootstrap_user_gets_a_token(client):
    _, demo = await issue(client, "demo", "demo")
    assert sorted(r["name"] for r in demo["roles"]) == ["member", "reader"]
    _, svc = await issue(client, "kilonova", "service")
    assert sorted(r["name"] for r in svc["roles"]) == ["admin", "manager", "member", "reader", "service"]


async def test_scopes_by_id_domain_system_and_unscoped(client):
    _, scoped = await issue(client, "admin", "admin")
    project_id = scoped["project"]["id"]
    by_id = await client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": scoped["user"]["id"],
                                                                    "password": PASSWORDS["admin"]}}},
        "scope": {"project": {"id": project_id}}}})
    assert by_id.status_code == 201 and by_id.json()["token"]["project"]["id"] == project_id
    _, system = await issue(client, "admin", system={"all": True})
    assert system["system"] == {"all": True} and "project" not in system
    assert "admin" in [r["name"] for r in system["roles"]]
    _, unscoped = await issue(client, "admin")
    assert "roles" not in unscoped and "catalog" not in unscoped and "project" not in unscoped
    # demo has no system role and no domain role
    response = await client.post("/v3/auth/tokens", json=password_auth("demo", system={"all": True}))
    assert response.status_code == 401
    response = await client.post("/v3/auth/tokens", json=password_auth("demo", domain={"id": "default"}))
    assert response.status_code == 401


async def test_no_role_on_project_is_401(client):
    response = await client.post("/v3/auth/tokens", json=password_auth("demo", project="admin"))
    assert response.status_code == 401
    assert response.json()["error"]["title"] == "Unauthorized"
    response = await client.post("/v3/auth/tokens", json=password_auth("demo", project="no-such-project"))
    assert response.status_code == 401


async def test_malformed_auth_requests_are_400(client):
    for document in ({}, {"auth": {}}, {"auth": {"identity": {"methods": "password"}}},
                     {"auth": {"identity": {"methods": ["password"]}}},
                     {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                         "name": "admin", "password": "x"}}}}},
                     password_auth("admin", project="admin") | {"auth": {**password_auth("admin")["auth"],
                                                                          "scope": {"project": {"id": "x"},
                                                                                    "domain": {"id": "y"}}}}):
        response = await client.post("/v3/auth/tokens", json=document)
        assert response.status_code == 400, (document, response.text)
        assert response.json()["error"]["code"] == 400
    response = await client.post("/v3/auth/tokens", content=b"{not json")
    assert response.status_code == 400
    response = await client.post("/v3/auth/tokens", json={"auth": {"identity": {"methods": ["totp"], "totp": {}}}})
    assert response.status_code == 401


async def test_rescope_with_token_method(client):
    unscoped_token, unscoped = await issue(client, "admin")
    response = await client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"], "token": {"id": unscoped_token}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert response.status_code == 201
    body = response.json()["token"]
    assert body["project"]["name"] == "admin"
    assert body["expires_at"] == unscoped["expires_at"]
    assert body["audit_ids"][1] == unscoped["audit_ids"][0]
    assert "token" in body["methods"] and "password" in body["methods"]
    response = await client.post("/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"], "token": {"id": unscoped_token + "x"}}}})
    assert response.status_code == 401


async def test_validate_check_and_nocatalog(client):
    admin_token, _ = await issue(client, "admin", "admin")
    demo_token, demo = await issue(client, "demo", "demo")
    # a service validates a token with the token itself (kilonova.common.auth)
    response = await client.get("/v3/auth/tokens", headers={"X-Auth-Token": demo_token, "X-Subject-Token": demo_token})
    assert response.status_code == 200
    assert response.headers["X-Subject-Token"] == demo_token
    assert response.json()["token"]["project"]["name"] == "demo" and response.json()["token"]["catalog"]
    response = await client.get("/v3/auth/tokens?nocatalog",
                                headers={"X-Auth-Token": admin_token, "X-Subject-Token": demo_token})
    assert response.status_code == 200 and "catalog" not in response.json()["token"]
    assert response.json()["token"]["audit_ids"] == demo["audit_ids"]
    response = await client.head("/v3/auth/tokens", headers={"X-Auth-Token": admin_token, "X-Subject-Token": demo_token})
    assert response.status_code == 200
    # demo may not validate admin's token
    response = await client.get("/v3/auth/tokens", headers={"X-Auth-Token": demo_token, "X-Subject-Token": admin_token})
    assert response.status_code == 403
    response = await client.get("/v3/auth/tokens", headers={"X-Auth-Token": admin_token})
    assert response.status_code == 400


async def test_garbled_and_forged_tokens(client, tmp_path):
    admin_token, _ = await issue(client, "admin", "admin")
    garbled = admin_token[:40] + ("A" if admin_token[40] != "A" else "B") + admin_token[41:]
    from cryptography.fernet import Fernet
    import json
    forged = Fernet(Fernet.generate_key()).encrypt(json.dumps(
        [1, "x", ["password"], None, None, 0, 9e9, ["a"]]).encode()).decode()
    for bad in (garbled, forged, "not-a-token", "", "x" * 5000):
        response = await client.get("/v3/users", headers={"X-Auth-Token": bad})
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] == 401
        assert "WWW-Authenticate" in response.headers
        if bad:
            response = await client.get("/v3/auth/tokens", headers={"X-Auth-Token": admin_token, "X-Subject-Token": bad})
            assert response.status_code == 404
            assert response.json()["error"]["title"] == "Not Found"
    response = await client.get("/v3/users")
    assert response.status_code == 401


async def test_revoke_token(client):
    admin_token, _ = await issue(client, "admin", "admin")
    demo_token, _ = await issue(client, "demo", "demo")
    other_demo, _ = await issue(client, "demo", "demo")
    headers = {"X-Auth-Token": demo_token, "X-Subject-Token": demo_token}
    assert (await client.delete("/v3/auth/tokens", headers=headers)).status_code == 204
    response = await client.get("/v3/auth/tokens", headers={"X-Auth-Token": admin_token, "X-Subject-Token": demo_token})
    assert response.status_code == 404
    assert (await client.get("/v3/auth/projects", headers=auth(demo_token))).status_code == 401
    assert (await client.delete("/v3/auth/tokens", headers={"X-Auth-Token": admin_token,
                                                            "X-Subject-Token": demo_token})).status_code == 404
    # only that token: demo's other token still works
    assert (await client.get("/v3/auth/projects", headers=auth(other_demo))).status_code == 200


async def test_password_change_and_user_delete_revoke_tokens(client):
    admin_token, _ = await issue(client, "admin", "admin")
    demo_token, demo = await issue(client, "demo", "demo")
    response = await client.post(f"/v3/users/{demo['user']['id']}/password",
                                 json={"user": {"original_password": "wrong", "password": "new-pass"}})
    assert response.status_code == 401
    response = await client.post(f"/v3/users/{demo['user']['id']}/password",
                                 json={"user": {"original_password": PASSWORDS["demo"], "password": "new-pass"}})
    assert response.status_code == 204
    assert (await client.get("/v3/auth/projects", headers=auth(demo_token))).status_code == 401
    assert (await client.post("/v3/auth/tokens", json=password_auth("demo", project="demo"))).status_code == 401
    response = await client.post("/v3/auth/tokens", json=password_auth("demo", "new-pass", project="demo"))
    assert response.status_code == 201
    new_token = response.headers["X-Subject-Token"]
    assert (await client.get("/v3/auth/projects", headers=auth(new_token))).status_code == 200
    # admin resets the password with PATCH: the new token dies too
    response = await client.patch(f"/v3/users/{demo['user']['id']}", headers=auth(admin_token),
                                  json={"user": {"password": "third-pass"}})
    assert response.status_code == 200
    assert (await client.get("/v3/auth/projects", headers=auth(new_token))).status_code == 401
    # a user's tokens die with the user
    response = await client.post("/v3/users", headers=auth(admin_token),
                                 json={"user": {"name": "alice", "password": "alice-pw"}})
    alice = response.json()["user"]
    demo_project = demo["project"]["id"]
    member = (await client.get("/v3/roles?name=member", headers=auth(admin_token))).json()["roles"][0]["id"]
    assert (await client.put(f"/v3/projects/{demo_project}/users/{alice['id']}/roles/{member}",
                             headers=auth(admin_token))).status_code == 204
    response = await client.post("/v3/auth/tokens", json=password_auth("alice", "alice-pw", project="demo"))
    alice_token = response.headers["X-Subject-Token"]
    assert (await client.get(f"/v3/users/{alice['id']}", headers=auth(alice_token))).status_code == 200
    assert (await client.delete(f"/v3/users/{alice['id']}", headers=auth(admin_token))).status_code == 204
    assert (await client.get("/v3/auth/projects", headers=auth(alice_token))).status_code == 401


async def test_disabling_user_or_project_invalidates_tokens(client):
    admin_token, _ = await issue(client, "admin", "admin")
    demo_token, demo = await issue(client, "demo", "demo")
    response = await client.patch(f"/v3/projects/{demo['project']['id']}", headers=auth(admin_token),
                                  json={"project": {"enabled": False}})
    assert response.status_code == 200 and response.json()["project"]["enabled"] is False
    assert (await client.get("/v3/auth/projects", headers=auth(demo_token))).status_code == 401
    await client.patch(f"/v3/projects/{demo['project']['id']}", headers=auth(admin_token),
                       json={"project": {"enabled": True}})
    # the old token stays revoked even though the project is enabled again
    assert (await client.get("/v3/auth/projects", headers=auth(demo_token))).status_code == 401
    demo_token, _ = await issue(client, "demo", "demo")
    await client.patch(f"/v3/users/{demo['user']['id']}", headers=auth(admin_token), json={"user": {"enabled": False}})
    assert (await client.get("/v3/auth/projects", headers=auth(demo_token))).status_code == 401
    assert (await client.post("/v3/auth/tokens", json=password_auth("demo", project="demo"))).status_code == 401


async def test_tokens_expire(tmp_path):
    service = make_service(make_conf(tmp_path, token_expiration="0.5"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://identity") as c:
        token, body = await issue(c, "admin", "admin")
        headers = {"X-Auth-Token": token, "X-Subject-Token": token}
        assert (await c.get("/v3/auth/tokens", headers=headers)).status_code == 200
        import asyncio
        await asyncio.sleep(0.6)
        assert (await c.get("/v3/auth/tokens", headers=headers)).status_code == 401
        other, _ = await issue(c, "admin", "admin")
        response = await c.get("/v3/auth/tokens", headers={"X-Auth-Token": other, "X-Subject-Token": token})
        assert response.status_code == 404


async def test_restart_keeps_users_keys_and_tokens(tmp_path):
    first = make_service(make_conf(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first.app), base_url="http://identity") as c:
        token, body = await issue(c, "admin", "admin")
        admin_token = token
        response = await c.post("/v3/users", headers=auth(admin_token), json={"user": {"name": "bob", "password": "pw"}})
        assert response.status_code == 201
    keys = sorted(p.name for p in (tmp_path / "fernet-keys").iterdir())
    assert keys == ["0", "1"]
    assert all(((tmp_path / "fernet-keys" / k).stat().st_mode & 0o777) == 0o600 for k in keys)
    key_bytes = (tmp_path / "fernet-keys" / "1").read_bytes()
    # restart with a changed admin password: bob stays, the old admin token is revoked, the new password works
    second = make_service(make_conf(tmp_path, admin_password="rotated"))
    assert (tmp_path / "fernet-keys" / "1").read_bytes() == key_bytes
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second.app), base_url="http://identity") as c:
        demo_token, _ = await issue(c, "demo", "demo")
        response = await c.get("/v3/auth/tokens", headers={"X-Auth-Token": demo_token, "X-Subject-Token": demo_token})
        assert response.status_code == 200
        assert (await c.get("/v3/users", headers=auth(admin_token))).status_code == 401
        response = await c.post("/v3/auth/tokens", json=password_auth("admin", "rotated", project="admin"))
        assert response.status_code == 201
        new_admin = response.headers["X-Subject-Token"]
        names = [u["name"] for u in (await c.get("/v3/users", headers=auth(new_admin))).json()["users"]]
        assert names == ["admin", "bob", "demo", "kilonova"]
        projects = [p["name"] for p in (await c.get("/v3/projects", headers=auth(new_admin))).json()["projects"]]
        assert projects == ["admin", "demo", "service"]


async def test_start_and_stop(service):
    await service.start()
    await service.stop()


async def test_key_rotation_keeps_earlier_tokens_valid(service, client):
    from kilonova.identity.keys import rotate_keys
    token, _ = await issue(client, "admin", "admin")
    repository = service.conf.get("identity", "key_repository")
    rotate_keys(repository)
    service.core.load_keys()
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert (await client.get("/v3/auth/tokens", headers=headers)).status_code == 200
    new_token, _ = await issue(client, "admin", "admin")
    rotate_keys(repository)
    rotate_keys(repository)
    service.core.load_keys()
    import os
    assert sorted(os.listdir(repository)) == ["0", "3", "4"]
    # the token was sealed with key 1, which three rotations have retired
    assert (await client.get("/v3/auth/tokens", headers=headers)).status_code == 401


async def test_domain_scoped_token(client):
    admin_token, _ = await issue(client, "admin", "admin")
    users = (await client.get("/v3/users?name=demo", headers=auth(admin_token))).json()["users"]
    reader = (await client.get("/v3/roles?name=reader", headers=auth(admin_token))).json()["roles"][0]["id"]
    grant = f"/v3/domains/default/users/{users[0]['id']}/roles/{reader}"
    assert (await client.put(grant, headers=auth(admin_token))).status_code == 204
    token, body = await issue(client, "demo", domain={"name": "Default"})
    assert body["domain"] == {"id": "default", "name": "Default"} and "project" not in body
    assert [r["name"] for r in body["roles"]] == ["reader"]
    domains = (await client.get("/v3/auth/domains", headers=auth(token))).json()["domains"]
    assert [d["id"] for d in domains] == ["default"]
