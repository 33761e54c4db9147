"""A compute API app on temporary SQLite databases, with a fake token validator, for the admin API tests."""
from __future__ import annotations

import httpx
import pytest

from kilonova.common.db import Database, migrate
from kilonova.common.testing import FakeValidator
from kilonova.compute import cells as cells_mod
from kilonova.compute.api.app import create_app
from kilonova.compute.api.service import API_MIGRATIONS
from kilonova.compute.db import flavors
from kilonova.compute.db.api_models import APIBase
from kilonova.config import Config

TOKENS = {
    "admin-token": ("admin-user", "admin-project", ["admin", "member", "reader"]),
    "demo-token": ("demo-user", "demo-project", ["member", "reader"]),
}


class StubComputeAPI:
    """What the admin resources use of ComputeAPIService: api_db, cells and conf."""

    def __init__(self, state_dir, overrides=None):
        self.conf = Config.load(state_dir=state_dir, overrides=overrides or {})
        self.api_db = Database(self.conf.get("api_database", "connection"), name="api-test")
        migrate(self.api_db, API_MIGRATIONS, APIBase.metadata)
        cells_mod.setup_cells(self.conf, self.api_db)
        self.cells = cells_mod.Cells(self.api_db)
        self.cells.load()
        self.api_db.run_sync(flavors.ensure_defaults)
        # An identity service that knows every project (quota updates ask it whether theirs exists).
        self.identity = httpx.AsyncClient(base_url="http://identity", transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={"project": {"id": request.url.path.rsplit("/", 1)[-1]}})))

    def close(self):
        for cell in self.cells.all():
            cell.db.close()
        self.api_db.close()


@pytest.fixture
def stub(tmp_path):
    service = StubComputeAPI(tmp_path)
    yield service
    service.close()


class Client:
    """An httpx client on the app that sends a token and a microversion with every request."""

    def __init__(self, app):
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://compute")

    async def request(self, method, path, *, token="admin-token", version=None, **kwargs):
        headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
        if version:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return await self._client.request(method, "/v2.1" + path, headers=headers, **kwargs)

    async def get(self, path, **kw):
        return await self.request("GET", path, **kw)

    async def post(self, path, body=None, **kw):
        return await self.request("POST", path, json=body, **kw)

    async def put(self, path, body=None, **kw):
        return await self.request("PUT", path, json=body, **kw)

    async def delete(self, path, **kw):
        return await self.request("DELETE", path, **kw)

    async def aclose(self):
        await self._client.aclose()


@pytest.fixture
async def api(stub):
    client = Client(create_app(FakeValidator(TOKENS, id_suffix=""), stub))
    yield client
    await client.aclose()
