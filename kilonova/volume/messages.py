"""``/v3/{project_id}/messages`` (3.3+): list (paged from 3.5), show and delete the user messages that say why
a volume went to ``error`` after its create was accepted."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response
from kilonova.volume import message_repo, policy
from kilonova.volume.lookup import context, owner_scope, service
from kilonova.volume.paging import page
from kilonova.volume.versions import require

MESSAGES = (3, 3)
SORT_KEYS = ("id", "created_at", "event_id", "resource_type", "message_level", "resource_uuid")


def view(request: Request, message: dict) -> dict:
    base = str(request.base_url).rstrip("/")
    shown = {key: message[key] for key in ("id", "message_level", "event_id", "user_message", "resource_type",
                                             "resource_uuid", "request_id", "created_at", "guaranteed_until")}
    shown["links"] = [{"rel": "self", "href": f"{base}/v3/{message['project_id']}/messages/{message['id']}"},
                      {"rel": "bookmark", "href": f"{base}/{message['project_id']}/messages/{message['id']}"}]
    return shown


async def index(request: Request, project_id: str):
    ctx = context(request, project_id)
    require(request, MESSAGES)
    policy.check_read(ctx, "message:get_all")
    messages = await service(request).db.read(message_repo.listing, owner_scope(ctx))
    params = request.query_params
    messages = [m for m in messages if all(m[k] == params[k] for k in ("event_id", "resource_uuid", "resource_type",
                                                                        "message_level") if k in params)]
    chunk, links = page(request, messages, "messages", SORT_KEYS)
    body = {"messages": [view(request, m) for m in chunk]}
    if links:
        body["messages_links"] = links
    return json_response(body)


async def show(request: Request, project_id: str, message_id: str):
    ctx = context(request, project_id)
    require(request, MESSAGES)
    policy.check_read(ctx, "message:get")
    message = await service(request).db.read(message_repo.get, message_id, owner_scope(ctx))
    return json_response({"message": view(request, message)})


async def delete(request: Request, project_id: str, message_id: str):
    ctx = context(request, project_id)
    require(request, MESSAGES)
    policy.check_write(ctx, "message:delete")
    await service(request).db.write(message_repo.delete, message_id, owner_scope(ctx))
    return empty_response(204)


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/messages"
    router.add("GET", prefix, index)
    router.add("GET", f"{prefix}/{{message_id}}", show)
    router.add("DELETE", f"{prefix}/{{message_id}}", delete)
