"""``.../{id}/metadata`` and ``.../{id}/metadata/{key}`` of volumes and of snapshots: the same six calls on
each, with the owner looked up (and hidden from other projects) by the resource's own module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.volume import policy
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, service
from kilonova.volume.validation import validate


@dataclass(frozen=True)
class MetadataOf:
    kind: str                                                  # "volume" / "snapshot": policy names, messages
    visible: Callable[[Request, Any, str], Awaitable[dict]]    # the owner, 404 when the caller cannot see it
    write: Callable                                            # repo fn(session, id, metadata, replace)
    delete: Callable                                           # repo fn(session, id, key)
    all_schema: dict                                           # the body of POST/PUT .../metadata
    one_schema: dict                                           # the body of PUT .../metadata/{key}

    def _rule(self, verb: str) -> str:
        return f"volume:{verb}_{self.kind}_metadata"

    async def index(self, request: Request, project_id: str, owner_id: str):
        ctx = context(request, project_id)
        policy.check_read(ctx, self._rule("get"))
        return json_response({"metadata": (await self.visible(request, ctx, owner_id))["metadata"]})

    async def _write(self, request: Request, project_id: str, owner_id: str, replace: bool):
        ctx = context(request, project_id)
        policy.check_write(ctx, self._rule("update"))
        metadata = validate(request, await read_json(request), self.all_schema)["metadata"]
        await self.visible(request, ctx, owner_id)
        return json_response({"metadata": await service(request).db.write(self.write, owner_id, metadata,
                                                                          replace)})

    async def create(self, request: Request, project_id: str, owner_id: str):
        return await self._write(request, project_id, owner_id, False)

    async def replace(self, request: Request, project_id: str, owner_id: str):
        return await self._write(request, project_id, owner_id, True)

    async def show(self, request: Request, project_id: str, owner_id: str, key: str):
        ctx = context(request, project_id)
        policy.check_read(ctx, self._rule("get"))
        metadata = (await self.visible(request, ctx, owner_id))["metadata"]
        if key not in metadata:
            raise HTTPError(404, f"{self.kind.capitalize()} {owner_id} has no metadata with key {key}.")
        return json_response({"meta": {key: metadata[key]}})

    async def update_key(self, request: Request, project_id: str, owner_id: str, key: str):
        ctx = context(request, project_id)
        policy.check_write(ctx, self._rule("update"))
        meta = validate(request, await read_json(request), self.one_schema)["meta"]
        if list(meta) != [key]:
            raise bad_request("Request body and URI mismatch")
        await self.visible(request, ctx, owner_id)
        await service(request).db.write(self.write, owner_id, meta, False)
        return json_response({"meta": meta})

    async def delete_key(self, request: Request, project_id: str, owner_id: str, key: str):
        ctx = context(request, project_id)
        policy.check_write(ctx, self._rule("delete"))
        await self.visible(request, ctx, owner_id)
        await service(request).db.write(self.delete, owner_id, key)
        return empty_response(200)

    def register(self, router: Router, collection: str) -> None:
        """``collection``: the owners' URL (``/v3/{project_id}/volumes``)."""
        prefix = f"{collection}/{{owner_id}}"
        router.add("GET", f"{prefix}/metadata", self.index)
        router.add("POST", f"{prefix}/metadata", self.create)
        router.add("PUT", f"{prefix}/metadata", self.replace)
        router.add("GET", f"{prefix}/metadata/{{key}}", self.show)
        router.add("PUT", f"{prefix}/metadata/{{key}}", self.update_key)
        router.add("DELETE", f"{prefix}/metadata/{{key}}", self.delete_key)
