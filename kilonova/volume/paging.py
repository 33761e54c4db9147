"""Cinder's list paging: ``sort`` (``key:dir,...``) or ``sort_key``/``sort_dir``, ``limit``, ``marker``."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.volume.errors import bad_request

SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "availability_zone")
MAX_LIMIT = 1000


def _sort(params, sort_keys: tuple[str, ...]) -> list[tuple[str, bool]]:
    """(key, descending) pairs; Cinder's default is newest first."""
    if "sort" in params:
        pairs = []
        for part in params["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = params.get("sort_key", "created_at").split(",")
        dirs = params.get("sort_dir", "desc").split(",")
        pairs = [(key, dirs[i] if i < len(dirs) else dirs[-1]) for i, key in enumerate(keys)]
    result = []
    for key, direction in pairs:
        if key == "display_name":
            key = "name"
        if key not in sort_keys:
            raise bad_request(f"Invalid input received: Invalid sort key {key}")
        if direction.lower() not in ("asc", "desc"):
            raise bad_request(f"Invalid input received: Unknown sort direction, must be 'desc' or 'asc'")
        result.append((key, direction.lower() == "desc"))
    if not any(key == "id" for key, _ in result):
        result.append(("id", result[-1][1] if result else True))
    return result


def _limit(params) -> int:
    raw = params.get("limit")
    if raw is None:
        return MAX_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request("limit param must be an integer") from None
    if limit < 0:
        raise bad_request("limit param must be positive")
    return min(limit, MAX_LIMIT)


def page(request: Request, items: list[dict[str, Any]], collection: str,
         sort_keys: tuple[str, ...] = SORT_KEYS) -> tuple[list[dict], list[dict]]:
    params = request.query_params
    for key, descending in reversed(_sort(params, sort_keys)):
        items = sorted(items, key=lambda item: (item[key] is not None, item[key] or 0)
                       if key == "size" else (item[key] is not None, item[key] or ""), reverse=descending)
    marker = params.get("marker")
    if marker is not None:
        ids = [item["id"] for item in items]
        if marker not in ids:
            raise HTTPError(404, f"Marker {marker} could not be found.")
        items = items[ids.index(marker) + 1:]
    limit = _limit(params)
    chunk = items[:limit]
    links = []
    if "limit" in params and len(items) > limit and chunk:
        query = {k: v for k, v in params.items() if k != "marker"}
        query["marker"] = chunk[-1]["id"]
        links.append({"rel": "next", "href": f"{str(request.url).split('?')[0]}?{urlencode(query)}"})
    return chunk, links
