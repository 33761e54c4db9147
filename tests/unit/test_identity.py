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
    return make_service(make_conf(tmp_path))


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
    assert sorted(r["name"] for r in body["roles"]) == ["admin", "member", "reader"]
    assert body["expires_at"].endswith(".000000Z") and len(body["audit_ids"]) == 1
    assert {entry["type"] for entry in body["catalog"]} >= {"identity", "compute"}


async def test_bad_password_is_401(client):
    response = await client.post("/v3/auth/tokens", json=password_auth("admin", "wrong", project="admin"))
    assert response.status_code == 401
    assert response.json()["error"] == {"code": 401, "title": "Unauthorized",
                                        "message": "The request you have made requires authentication."}
