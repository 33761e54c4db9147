"""Helpers for tests that drive one service's app without the identity service.

``FakeValidator`` stands in for ``kilonova.common.auth.TokenValidator``: each
token names a user, a project and roles, and validates to a Keystone-shaped
token document.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from kilonova.common.catalog import root_urls
from kilonova.common.clients import Endpoints
from kilonova.common.http import HTTPError
from kilonova.common.service import ServiceEnv
from kilonova.config import Config


class FakeValidator:
    def __init__(self, tokens: dict[str, tuple[str, str, list[str]]] | None = None, *, id_suffix: str = "-id"):
        """``tokens``: token -> (user name, project id, role names); a user's id is its name followed
        by ``id_suffix``."""
        self.tokens = dict(tokens or {})
        self.id_suffix = id_suffix

    def add(self, token: str, user: str, project_id: str, roles: list[str]) -> str:
        self.tokens[token] = (user, project_id, roles)
        return token

    async def validate(self, token: str) -> dict:
        if token not in self.tokens:
            raise HTTPError(401, "The request you have made requires authentication.",
                            headers={"WWW-Authenticate": 'Keystone uri=""'})
        user, project_id, roles = self.tokens[token]
        expires = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        return {"token": {"user": {"id": user + self.id_suffix, "name": user, "domain": {"id": "default"}},
                          "project": {"id": project_id, "name": project_id, "domain": {"id": "default"}},
                          "roles": [{"id": f"{r}-id", "name": r} for r in roles], "expires_at": expires}}


def service_env(state_dir: str | Path, overrides: dict[str, dict[str, str]] | None = None) -> ServiceEnv:
    """A ServiceEnv on ``state_dir`` with in-process RPC and the default endpoint URLs."""
    from kilonova.common.rpc import get_transport

    conf = Config.load(state_dir=state_dir, overrides=overrides)
    return ServiceEnv(conf=conf, endpoints=Endpoints(urls=root_urls(conf)),
                      transport=get_transport("inproc://"))
