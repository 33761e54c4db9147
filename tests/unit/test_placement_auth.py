"""Placement's operator settings: noauth2, keystone tokens, policy defaults and overrides, scope, CORS,
and 401 before 404/405."""
from __future__ import annotations

import httpx
import pytest

from kilonova.common.clients import Endpoints
from kilonova.common.service import ServiceEnv
from kilonova.config import Config
from kilonova.placement import policy
from kilonova.placement.service import PlacementService
from kilonova.common.testing import FakeValidator
from tests.unit.test_placement_api import TOKENS

V = {"OpenStack-API-Version": "placement 1.39"}


async def _app(tmp_path, overrides=None, validator=None):
    conf = Config.load(state_dir=tmp_path, overrides=overrides or {})
    svc = PlacementService(ServiceEnv(conf=conf, endpoints=Endpoints(), transport=None), validator=validator)
    svc.prepare()
    return svc


@pytest.fixture
async def noauth(tmp_path):
    svc = await _app(tmp_path, {"placement": {"auth_strategy": "noauth2"}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        yield http
    svc.db.close()


async def test_noauth2_admin_user_and_plain_user(noauth):
    response = await noauth.get("/resource_providers", headers={"X-Auth-Token": "admin", **V})
    assert response.status_code == 200
    response = await noauth.get("/resource_providers", headers={"X-Auth-Token": "alice:proj", **V})
    assert response.status_code == 403
    assert response.json()["errors"][0]["detail"].endswith(
        "Policy does not allow placement:resource_providers:list to be performed.  ")
    # X-Roles replaces the roles derived from the user name.
    response = await noauth.get("/resource_providers", headers={"X-Auth-Token": "alice", "X-Roles": "service", **V})
    assert response.status_code == 200
    response = await noauth.get("/resource_providers", headers={"X-Auth-Token": "admin", "X-Roles": "reader", **V})
    assert response.status_code == 403


async def test_noauth2_without_token_is_webob_401_and_root_is_public(noauth):
    response = await noauth.get("/resource_providers", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.json()["code"] == "401 Unauthorized"
    response = await noauth.get("/resource_providers")   # */* counts as JSON, as upstream
    assert response.status_code == 401 and response.json()["code"] == "401 Unauthorized"
    response = await noauth.get("/resource_providers", headers={"Accept": "text/plain"})
    assert response.status_code == 401 and response.text.startswith("401 Unauthorized")
    assert (await noauth.get("/")).status_code == 200


async def test_unknown_path_and_method_401_before_404_405(noauth):
    for method, path in (("GET", "/nothing-here"), ("PATCH", "/resource_providers")):
        response = await noauth.request(method, path, headers=V)
        assert response.status_code == 401
    response = await noauth.get("/nothing-here", headers={"X-Auth-Token": "admin", **V})
    assert response.status_code == 404
    assert response.headers["openstack-api-version"] == "placement 1.39"
    assert response.json()["errors"][0]["code"] == "placement.undefined_code"
    response = await noauth.patch("/resource_providers", headers={"X-Auth-Token": "admin", **V})
    assert response.status_code == 405 and "GET" in response.headers["allow"]
    assert response.json()["errors"][0]["code"] == "placement.undefined_code"


async def test_system_scope_refused_when_scope_enforced(tmp_path):
    for enforce, expected in (("true", 403), ("false", 200)):
        svc = await _app(tmp_path / enforce, {"placement": {"auth_strategy": "noauth2"},
                                              "oslo_policy": {"enforce_scope": enforce}})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
            response = await http.get("/resource_providers", headers={
                "X-Auth-Token": "admin", "OpenStack-System-Scope": "all", **V})
            assert response.status_code == expected
        svc.db.close()


async def test_usages_project_reader_for_own_project_only(noauth):
    headers = {"X-Auth-Token": "bob:p1", "X-Roles": "reader,member", **V}
    assert (await noauth.get("/usages?project_id=p1", headers=headers)).status_code == 200
    assert (await noauth.get("/usages?project_id=p2", headers=headers)).status_code == 403
    assert (await noauth.get("/resource_providers", headers=headers)).status_code == 403


async def test_policy_file_overrides_a_rule(tmp_path):
    (tmp_path / "policy.yaml").write_text('"placement:resource_providers:list": "role:reader"\n')
    svc = await _app(tmp_path, {"placement": {"auth_strategy": "noauth2"}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        reader = {"X-Auth-Token": "bob", "X-Roles": "reader", **V}
        assert (await http.get("/resource_providers", headers=reader)).status_code == 200
        assert (await http.get("/traits", headers=reader)).status_code == 403
    svc.db.close()


async def test_keystone_strategy_uses_the_validator(tmp_path):
    svc = await _app(tmp_path, validator=FakeValidator(TOKENS))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        assert (await http.get("/traits", headers={"X-Auth-Token": "member-token", **V})).status_code == 403
        assert (await http.get("/traits", headers={"X-Auth-Token": "service-token", **V})).status_code == 200
        response = await http.get("/traits", headers=V)
        assert response.status_code == 401 and "www-authenticate" in response.headers
    svc.db.close()


def test_check_strings():
    from kilonova.common.context import RequestContext
    enforcer = policy.Enforcer()
    service = RequestContext(user_id="u", project_id="p", roles=["service"])
    reader = RequestContext(user_id="u", project_id="y", roles=["reader"])
    assert enforcer.authorize("placement:traits:list", {"project_id": "p"}, service)
    assert not enforcer.authorize("placement:usages", {"project_id": "x"}, reader)
    assert enforcer.authorize("placement:usages", {"project_id": "y"}, reader)
    assert not enforcer.authorize("placement:reshaper:reshape", {"project_id": "y"}, RequestContext(
        user_id="a", project_id="y", roles=["admin"]))
    assert not enforcer.authorize("no:such:rule", {}, reader)


async def test_cors_preflight_and_simple_requests(tmp_path):
    svc = await _app(tmp_path, {"placement": {"auth_strategy": "noauth2"},
                                "cors": {"allowed_origin": "http://ui.example", "expose_headers": "X-Foo",
                                         "allow_headers": "X-Auth-Token"}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://p") as http:
        response = await http.options("/resource_providers", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Auth-Token"})
        assert response.status_code == 200 and response.content == b""
        assert response.headers["access-control-allow-origin"] == "http://ui.example"
        assert response.headers["access-control-allow-methods"] == "GET"
        assert response.headers["access-control-allow-headers"] == "X-Auth-Token"
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["access-control-max-age"] == "3600"
        response = await http.options("/resource_providers", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        response = await http.get("/resource_providers", headers={"Origin": "http://ui.example",
                                                                 "X-Auth-Token": "admin", **V})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://ui.example"
        assert response.headers["access-control-expose-headers"] == "X-Foo"
        assert "Origin" in response.headers["vary"]
    svc.db.close()


def test_policy_file_changes_take_effect(tmp_path):
    from kilonova.common.context import RequestContext
    path = tmp_path / "policy.yaml"
    enforcer = policy.Enforcer(path)
    reader = RequestContext(user_id="u", project_id="p", roles=["reader"])
    assert not enforcer.authorize("placement:traits:list", {}, reader)
    path.write_text('"placement:traits:list": "role:reader"\n')
    enforcer.engine._oslo._checked = 0.0   # skip the once-a-second wait
    assert enforcer.authorize("placement:traits:list", {}, reader)
    path.write_text(": not yaml [")
    enforcer.engine._oslo._checked = 0.0
    assert enforcer.authorize("placement:traits:list", {}, reader)   # a broken file keeps the rules in force
